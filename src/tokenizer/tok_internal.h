/* SPDX-License-Identifier: Apache-2.0
 *
 * tok_internal.h: the private shape of a loaded tokenizer, shared by the
 * tokenizer/ source files (tokenizer.c loads and partitions, pretok.c splits
 * words with PCRE2, bpe.c and spm.c merge, detok.c turns ids back into bytes,
 * tok_map.c holds the hash maps).
 *
 * Not part of the public API: nothing outside src/tokenizer/ (and its tests)
 * includes this header.
 *
 * Layer: tokenizer.
 */
#ifndef INFERD_TOK_INTERNAL_H
#define INFERD_TOK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inferd/tokenizer.h"

/* Token attributes, the same bits llama.cpp derives from token types and then
 * adjusts by token text (llama_token_attr). They, not the raw GGUF types, decide
 * special-token matching and rendering, so we keep them bit for bit. */
enum tok_attr {
    TOK_ATTR_UNDEFINED = 0,
    TOK_ATTR_UNKNOWN = 1 << 0,
    TOK_ATTR_UNUSED = 1 << 1,
    TOK_ATTR_NORMAL = 1 << 2,
    TOK_ATTR_CONTROL = 1 << 3,
    TOK_ATTR_USER_DEFINED = 1 << 4,
    TOK_ATTR_BYTE = 1 << 5,
    TOK_ATTR_LSTRIP = 1 << 7,
    TOK_ATTR_RSTRIP = 1 << 8,
};

/* Pre-tokenizer families: each is one fixed list of regex passes (pretok.c). */
enum tok_pre {
    TOK_PRE_NONE = 0,   /* SentencePiece: no word splitting */
    TOK_PRE_DEFAULT,    /* llama.cpp's fallback list for BPE without a known pre */
    TOK_PRE_GPT2,       /* the GPT-2 regex */
    TOK_PRE_STARCODER,  /* \p{N} split, then the GPT-2 regex (smollm, starcoder, ...) */
    TOK_PRE_LLAMA3,     /* the Llama-3 regex (digits in groups of up to three) */
    TOK_PRE_QWEN2,      /* the Llama-3 regex with single digits */
};

/* ---- growable arrays ---- */

struct tok_ids {
    int32_t *v;
    size_t n, cap;
};

int tok_ids_push(struct tok_ids *a, int32_t id);
void tok_ids_free(struct tok_ids *a);

struct tok_offs {
    uint32_t *v;
    size_t n, cap;
};

int tok_offs_push(struct tok_offs *a, uint32_t off);
void tok_offs_free(struct tok_offs *a);

/* ---- bigram heap (tok_map.c), shared by BPE and SPM merging ---- */

/* A candidate merge of adjacent symbols left and right. Smaller key first, ties
 * to the leftmost pair: BPE uses the merge rank, SPM the negated token score.
 * size is the combined length when queued; a later mismatch marks it stale. */
struct tok_bigram {
    float key;
    int32_t left, right;
    int32_t result;
    uint32_t size;
};

struct tok_heap {
    struct tok_bigram *v;
    size_t n, cap;
};

int tok_heap_push(struct tok_heap *h, struct tok_bigram b);
struct tok_bigram tok_heap_pop(struct tok_heap *h); /* h->n must be > 0 */
void tok_heap_free(struct tok_heap *h);

/* ---- hash maps (tok_map.c) ---- */

/* Byte string -> token id. Keys are views into the tokenizer's text arena. */
struct tok_strmap_slot {
    int32_t id;             /* token id, or -1 when empty */
    uint32_t hash;          /* high bits of the key hash, to skip most memcmp */
};

struct tok_strmap {
    uint32_t mask;          /* capacity - 1 (capacity a power of two) */
    struct tok_strmap_slot *slots; /* (capacity) */
    uint64_t seed;
};

uint64_t tok_hash_bytes(const void *p, size_t n, uint64_t seed);
int tok_strmap_init(struct tok_strmap *m, uint32_t n_keys);
void tok_strmap_free(struct tok_strmap *m);
/* Inserts ids 0..n_ids-1 in order, so that a later duplicate text wins (as
 * in llama.cpp's token_to_id). */
void tok_strmap_put_all(struct tok_strmap *m, const struct tokenizer *t, int32_t n_ids);
int32_t tok_strmap_get(const struct tok_strmap *m, const struct tokenizer *t, const char *s, size_t n);

/* (left id, right id) -> merge rank and the id of the merged text (or -1). */
struct tok_pairmap {
    uint32_t mask;
    uint64_t *keys;         /* (capacity) left << 32 | right, or UINT64_MAX when empty */
    int32_t *ranks;
    int32_t *results;
};

int tok_pairmap_init(struct tok_pairmap *m, uint32_t n_keys);
void tok_pairmap_free(struct tok_pairmap *m);
/* Keeps the first rank for a repeated pair (llama.cpp's bpe_ranks.emplace). */
void tok_pairmap_put(struct tok_pairmap *m, int32_t left, int32_t right, int32_t rank, int32_t result);
bool tok_pairmap_get(const struct tok_pairmap *m, int32_t left, int32_t right, int32_t *rank, int32_t *result);

/* ---- special-token matcher (tokenizer.c) ---- */

struct tok_trie_node {
    int32_t first_child;    /* index into nodes, -1 if none */
    int32_t next_sibling;
    int32_t term_all;       /* special index (priority order) matched here when parse_special, or -1 */
    int32_t term_plain;     /* same, among those also matched without parse_special */
    uint8_t byte;
};

struct tok_trie {
    struct tok_trie_node *nodes;
    int32_t n_nodes, cap_nodes;
    int32_t root_child[256];/* the root's children by first byte */
};

/* ---- the tokenizer ---- */

struct tokenizer {
    enum tok_kind kind;
    enum tok_pre pre;
    int32_t n_vocab;

    char *text_arena;       /* all token texts back to back (empty ones replaced as llama.cpp does) */
    uint32_t *text_off;     /* (n_vocab + 1) text of id i is [text_off[i], text_off[i+1]) */
    float *scores;          /* (n_vocab) SPM merge priority */
    uint16_t *attr;         /* (n_vocab) enum tok_attr bits */
    uint8_t *eog;           /* (n_vocab) 1 for end-of-generation ids */

    char *piece_arena;      /* rendering of every token with render_special on */
    uint32_t *piece_off;    /* (n_vocab + 1) */
    int max_piece_len;
    int max_token_len;

    struct tok_strmap text_map;
    struct tok_pairmap merges;
    bool ignore_merges;     /* Llama-3 style: a pre-token that is itself a token skips merging */
    int32_t byte_tok[256];  /* BPE: id of each byte's GPT-2 character; SPM: <0xNN> (or unk); -1 if none */
    int32_t byte_fallback[256][2]; /* BPE: ids of the single-byte texts a byte's GPT-2 character is made of */

    int32_t *specials;      /* (n_specials) control/user-defined/unknown ids, longest text first */
    int32_t n_specials;
    struct tok_trie trie;

    int32_t bos, eos, eot, eom, unk, sep, pad;
    bool add_bos, add_eos, add_space_prefix;

    char *chat_template;
    size_t chat_template_len;

    struct tok_pretok *pretok;
};

static inline const char *tok_text(const struct tokenizer *t, int32_t id, size_t *len)
{
    *len = t->text_off[id + 1] - t->text_off[id];
    return t->text_arena + t->text_off[id];
}

/* ---- UTF-8 (pretok.c) ---- */

/* Byte length llama.cpp assumes from a lead byte (its unicode_len_utf8). */
static inline size_t tok_utf8_len(uint8_t lead)
{
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[lead >> 4];
}

/* Decodes one code point the way llama.cpp does (overlongs and surrogates are
 * accepted; anything else malformed is U+FFFD for one byte). Returns the code
 * point and stores the bytes consumed. */
uint32_t tok_utf8_decode(const uint8_t *s, size_t n, size_t *used);
/* Encodes cpt (<= 0x10FFFF, surrogates allowed) into out[4]; returns the length. */
int tok_utf8_encode(uint32_t cpt, uint8_t *out);

/* Rewrites text as llama.cpp's pre-tokenizer sees it: decoded with
 * tok_utf8_decode and re-encoded. `word` gets the bytes BPE will merge;
 * `subj` the same with surrogates replaced by U+E000 (same length, same
 * character class) so that PCRE2 can run on it. Both need 3 * n bytes. */
size_t tok_utf8_normalize(const uint8_t *in, size_t n, uint8_t *word, uint8_t *subj);

/* ---- pre-tokenizer (pretok.c) ---- */

struct tok_pretok;
int tok_pretok_create(struct tok_pretok **out, enum tok_pre pre, char *err, size_t errlen);
void tok_pretok_free(struct tok_pretok *p);
/* Splits subj[0, len) (valid UTF-8) into words: appends each word's end offset. */
int tok_pretok_split(const struct tok_pretok *p, const uint8_t *subj, size_t len, struct tok_offs *ends);

/* ---- the two merge algorithms ---- */

/* GPT-2 byte-level BPE of one raw-text fragment (bpe.c). */
int bpe_encode_fragment(const struct tokenizer *t, const uint8_t *text, size_t len, struct tok_ids *out);
/* Builds byte_tok / byte_fallback and validates the merges (bpe.c). */
int bpe_init(struct tokenizer *t, const struct gguf_array *merges, char *err, size_t errlen);
/* The UTF-8 of byte b under the GPT-2 bytes-to-unicode mapping; returns its length. */
int bpe_byte_to_utf8(uint8_t b, uint8_t out[2]);
/* The byte a GPT-2 mapped code point stands for, or -1. */
int bpe_cpt_to_byte(uint32_t cpt);

/* SentencePiece-style merging of one fragment (spm.c); prefix_space adds "▁". */
int spm_encode_fragment(const struct tokenizer *t, const uint8_t *text, size_t len, bool prefix_space,
                        struct tok_ids *out);
void spm_init(struct tokenizer *t);

/* ---- rendering (detok.c) ---- */

/* Fills piece_arena/piece_off with each token's bytes as llama.cpp renders them. */
int detok_build_pieces(struct tokenizer *t, char *err, size_t errlen);

#endif
