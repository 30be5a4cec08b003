/* SPDX-License-Identifier: Apache-2.0
 *
 * tokenizer.h: text <-> token ids from a GGUF file's tokenizer.* metadata,
 * matching llama.cpp's tokenizer on the same file id for id.
 *
 *   byte-level BPE  (tokenizer.ggml.model = "gpt2"): GPT-2 byte mapping,
 *                   merges by rank, the pre-tokenizer chosen by
 *                   tokenizer.ggml.pre (smollm, llama-bpe/llama3, qwen2,
 *                   gpt-2, default), regexes run with PCRE2 Unicode classes
 *   SentencePiece   (tokenizer.ggml.model = "llama"): score-driven bigram
 *                   merges, "▁" for spaces, <0xNN> byte fallback
 *
 * Special and control tokens (e.g. "<|im_start|>") are matched in the input
 * only when parse_special is set, as llama.cpp does; otherwise their text is
 * tokenized as ordinary text (user-defined tokens, e.g. Gemma's whitespace
 * runs, match either way). Invalid UTF-8 in the input: byte-level BPE reads
 * each malformed byte as U+FFFD (overlong forms and surrogates as the code
 * point they spell), SentencePiece falls back to <0xNN> byte tokens, both as
 * llama.cpp does; any bytes encode without error.
 *
 * The streaming detokenizer (struct detok) turns ids into text pieces and
 * never emits a partial UTF-8 character: bytes of an incomplete character
 * are held until the next token completes it (or flushed as-is at the end).
 *
 * Layer: tokenizer. Reads GGUF metadata; knows nothing about models or HTTP.
 * A loaded tokenizer is immutable and safe to use from many threads.
 */
#ifndef INFERD_TOKENIZER_H
#define INFERD_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inferd/gguf.h"

struct tokenizer;

enum tok_kind { TOK_KIND_BPE = 0, TOK_KIND_SPM = 1 };

/* GGUF token types (tokenizer.ggml.token_type). */
enum tok_type {
    TOK_TYPE_UNDEFINED = 0, TOK_TYPE_NORMAL = 1, TOK_TYPE_UNKNOWN = 2, TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4, TOK_TYPE_UNUSED = 5, TOK_TYPE_BYTE = 6,
};

/* Reads the tokenizer.* keys of f (untrusted: a bad key is IFD_ERR_FORMAT,
 * an unsupported model or pre-tokenizer IFD_ERR_UNSUPPORTED, with err saying
 * which). The tokenizer copies what it keeps, so f may be closed afterwards. */
int tokenizer_load(struct tokenizer **out, const struct gguf_file *f, char *err, size_t errlen);
void tokenizer_free(struct tokenizer *t);

enum tok_kind tokenizer_kind(const struct tokenizer *t);
int tokenizer_n_vocab(const struct tokenizer *t);
int32_t tokenizer_bos(const struct tokenizer *t);      /* -1 if none */
int32_t tokenizer_eos(const struct tokenizer *t);      /* -1 if none */
bool tokenizer_add_bos(const struct tokenizer *t);     /* does the model want BOS prepended */
/* True for ids that end generation (EOS, EOT, <|im_end|>-style end-of-turn tokens). */
bool tokenizer_is_eog(const struct tokenizer *t, int32_t id);
/* The type the tokenizer treats id as: the GGUF type, except where llama.cpp's
 * text-based detection overrides it (an "<|im_end|>" typed NORMAL is CONTROL).
 * TOK_TYPE_UNDEFINED for ids outside the vocabulary. */
enum tok_type tokenizer_token_type(const struct tokenizer *t, int32_t id);
/* The model's chat template (tokenizer.chat_template), or NULL: a
 * NUL-terminated copy owned by the tokenizer; *len (if len) gets its length. */
const char *tokenizer_chat_template(const struct tokenizer *t, size_t *len);

/* Encodes len bytes of text. add_special: prepend BOS (and append EOS) as the
 * model's metadata asks. parse_special: recognize special/control token text.
 * Writes up to cap ids and returns the total count (which may exceed cap: call
 * again with a bigger buffer), or a negative IFD_ERR_* code. */
int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                     int32_t *out, int cap);

/* Raw bytes of one token (byte-level mapping undone, "▁" -> " ", <0xNN> -> byte).
 * Control tokens produce their text only if render_special. Returns the byte
 * count (may exceed cap: then nothing is written and the caller retries with a
 * bigger buffer) or a negative error (IFD_ERR_RANGE for an id outside the
 * vocabulary). */
int tokenizer_token_to_piece(const struct tokenizer *t, int32_t id, bool render_special, char *buf, int cap);

/* Decodes ids to bytes (concatenated pieces; SPM drops the leading space of the
 * first piece when the model adds a space prefix). Same return convention;
 * when the result exceeds cap, buf holds an unspecified prefix. This is
 * llama.cpp's llama_detokenize without its optional space clean-up. */
int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, int n, bool render_special, char *buf, int cap);

/* The longest piece any token renders to (render_special on): a buffer of
 * this many bytes plus 3 always holds one detok_push result. */
int tokenizer_max_piece_len(const struct tokenizer *t);

/* Streaming detokenizer: feed ids one at a time, get complete UTF-8 text. */
struct detok {
    const struct tokenizer *t;
    bool render_special;
    bool first;          /* SPM: strip the space prefix of the first piece */
    int n_pending;
    char pending[4];     /* bytes of an incomplete UTF-8 character */
};

void detok_init(struct detok *d, const struct tokenizer *t, bool render_special);
/* Appends the text completed by id to out (at most cap bytes; cap >=
 * tokenizer_max_piece_len(t) + 3 always suffices, and real vocabularies need
 * well under 512). Returns bytes written, IFD_ERR_RANGE for an id outside the
 * vocabulary, or IFD_ERR_FULL when cap is too small (the state is then
 * unchanged, so the call can be repeated with a bigger buffer). */
int detok_push(struct detok *d, int32_t id, char *out, int cap);
/* Emits any held bytes (an unfinished character at the end of generation),
 * as they are, and resets the hold. */
int detok_flush(struct detok *d, char *out, int cap);

#endif
