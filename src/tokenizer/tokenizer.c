/* SPDX-License-Identifier: Apache-2.0
 *
 * tokenizer.c: loading a tokenizer from GGUF metadata, the special-token
 * bookkeeping llama.cpp does by token text, splitting input around special
 * tokens, and the encode driver that hands the pieces in between to BPE or
 * SPM.
 *
 * Loading mirrors llama_vocab::impl::load step by step, because its side
 * effects decide token ids: empty token texts become "[EMPTY_<id>]", a later
 * duplicate text wins the text -> id map, BOS/EOS/UNK defaults depend on the
 * model type (a BPE vocabulary without bos_token_id really gets id 11), and
 * tokens whose text looks like an end-of-turn or FIM marker are forced to
 * CONTROL, which changes whether they are matched without parse_special.
 * Metadata is untrusted: every key is type-checked, arrays must be as long as
 * the vocabulary, merges must name real tokens, and a BOS/EOS/EOT/EOM id
 * outside the vocabulary is an error (these change what we emit or where we
 * stop); bad UNK/SEP/PAD/FIM ids are ignored with a warning, as llama.cpp
 * does, since real files carry them.
 *
 * Special tokens are found as llama.cpp's tokenizer_st_partition finds them:
 * longest text first, each claiming its leftmost non-overlapping occurrences
 * in the text not yet claimed. A trie pass first finds which specials occur
 * at all and where, so only those are searched for.
 *
 * What it does not do: the merge algorithms (bpe.c, spm.c), word splitting
 * (pretok.c), rendering (detok.c), or WordPiece/Unigram/RWKV vocabularies.
 *
 * Layer: tokenizer.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif

#include "tok_internal.h"

#include "inferd/error.h"
#include "inferd/log.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOK_MAX_VOCAB (1 << 26)

/* ---- pre-tokenizer names ---- */

struct pre_def {
    const char *name;
    enum tok_pre pre;
    bool ignore_merges;
    bool add_bos;
    bool no_bos;
};

/* The tokenizer.ggml.pre values llama.cpp maps onto the regex lists we run. */
static const struct pre_def g_pres[] = {
    {"default", TOK_PRE_DEFAULT, false, false, false},
    {"llama3", TOK_PRE_LLAMA3, true, true, false},
    {"llama-v3", TOK_PRE_LLAMA3, true, true, false},
    {"llama-bpe", TOK_PRE_LLAMA3, true, true, false},
    {"falcon3", TOK_PRE_LLAMA3, true, true, false},
    {"falcon-h1", TOK_PRE_LLAMA3, true, true, false},
    {"pixtral", TOK_PRE_LLAMA3, true, true, false},
    {"midm-2.0", TOK_PRE_LLAMA3, true, true, false},
    {"lfm2", TOK_PRE_LLAMA3, true, true, false},
    {"jina-v5-nano", TOK_PRE_LLAMA3, true, true, false},
    {"dbrx", TOK_PRE_LLAMA3, false, false, false},
    {"smaug-bpe", TOK_PRE_LLAMA3, false, false, false},
    {"chatglm-bpe", TOK_PRE_LLAMA3, false, false, true},
    {"glm4", TOK_PRE_LLAMA3, true, false, true},
    {"glm5", TOK_PRE_LLAMA3, true, false, true},
    {"gpt-2", TOK_PRE_GPT2, false, false, false},
    {"phi-2", TOK_PRE_GPT2, false, false, false},
    {"jina-es", TOK_PRE_GPT2, false, false, false},
    {"jina-de", TOK_PRE_GPT2, false, false, false},
    {"gigachat", TOK_PRE_GPT2, false, false, false},
    {"jina-v2-es", TOK_PRE_GPT2, false, false, false},
    {"jina-v2-de", TOK_PRE_GPT2, false, false, false},
    {"a.x-4.0", TOK_PRE_GPT2, false, false, false},
    {"mellum", TOK_PRE_GPT2, false, false, false},
    {"modern-bert", TOK_PRE_GPT2, false, false, false},
    {"mpt", TOK_PRE_GPT2, false, false, false},
    {"olmo", TOK_PRE_GPT2, false, false, false},
    {"jais", TOK_PRE_GPT2, false, false, false},
    {"trillion", TOK_PRE_GPT2, false, false, false},
    {"granite-docling", TOK_PRE_GPT2, false, false, false},
    {"exaone4", TOK_PRE_GPT2, false, false, false},
    {"smollm", TOK_PRE_STARCODER, false, false, false},
    {"starcoder", TOK_PRE_STARCODER, false, false, false},
    {"refact", TOK_PRE_STARCODER, false, false, false},
    {"command-r", TOK_PRE_STARCODER, false, false, false},
    {"codeshell", TOK_PRE_STARCODER, false, false, false},
    {"exaone", TOK_PRE_STARCODER, false, false, false},
    {"minerva-7b", TOK_PRE_STARCODER, false, false, false},
    {"mellum2", TOK_PRE_STARCODER, false, false, false},
    {"qwen2", TOK_PRE_QWEN2, false, false, false},
    {"deepseek-r1-qwen", TOK_PRE_QWEN2, false, false, false},
    {"kormo", TOK_PRE_QWEN2, false, false, false},
    {"f2llmv2", TOK_PRE_QWEN2, false, false, false},
    {"stablelm2", TOK_PRE_QWEN2, false, false, false},
    {"megrez", TOK_PRE_QWEN2, false, false, false},
    {"hunyuan", TOK_PRE_QWEN2, false, false, false},
    {"solar-open", TOK_PRE_QWEN2, false, false, false},
    {"grok-2", TOK_PRE_QWEN2, false, false, false},
};

/* ---- small metadata helpers ---- */

static int key_error(int rc, const char *key, const char *want, char *err, size_t errlen)
{
    return ifd_fail(err, errlen, IFD_ERR_FORMAT, "%s: expected %s (%s)", key, want, ifd_strerror(rc));
}

/* Optional bool: absent leaves *v unchanged. */
static int opt_bool(const struct gguf_file *f, const char *key, bool *v, char *err, size_t errlen)
{
    int rc = gguf_get_bool(f, key, v);
    if (rc == IFD_ERR_NOT_FOUND) return 0;
    return rc ? key_error(rc, key, "a bool", err, errlen) : 0;
}

/* Optional string copied into buf (truncated); absent gives "". */
static int opt_str(const struct gguf_file *f, const char *key, char *buf, size_t cap, char *err, size_t errlen)
{
    struct gguf_str s;
    buf[0] = 0;
    int rc = gguf_get_str(f, key, &s);
    if (rc == IFD_ERR_NOT_FOUND) return 0;
    if (rc) return key_error(rc, key, "a string", err, errlen);
    gguf_str_copy(s, buf, cap);
    return 0;
}

/* Optional array of one of two element types with at least n elements. */
static int opt_arr(const struct gguf_file *f, const char *key, enum gguf_vtype t1, enum gguf_vtype t2, uint64_t n,
                   const struct gguf_array **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = gguf_get_arr(f, key, out);
    if (rc == IFD_ERR_NOT_FOUND) return 0;
    if (rc) return key_error(rc, key, "an array", err, errlen);
    if ((*out)->type != t1 && (*out)->type != t2)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "%s: array of %s, expected %s", key, gguf_vtype_name((*out)->type),
                        gguf_vtype_name(t1));
    if ((*out)->count < n)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "%s: %llu entries for %llu tokens", key,
                        (unsigned long long)(*out)->count, (unsigned long long)n);
    return 0;
}

/* A token id key. A strict id must lie in the vocabulary; a lenient one that
 * does not is ignored (the default stays). */
static int opt_id(const struct tokenizer *t, const struct gguf_file *f, const char *key, bool strict, int32_t *id,
                  char *err, size_t errlen)
{
    int64_t v;
    int rc = gguf_get_i64(f, key, &v);
    if (rc == IFD_ERR_NOT_FOUND) return 0;
    if (rc) return key_error(rc, key, "an integer token id", err, errlen);
    if (v >= 0 && v < t->n_vocab) {
        *id = (int32_t)v;
        return 0;
    }
    if (strict)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "%s = %lld is outside the vocabulary (%d tokens)", key,
                        (long long)v, (int)t->n_vocab);
    LOG_WARN("tok", "%s = %lld is outside the vocabulary (%d tokens); ignored", key, (long long)v, (int)t->n_vocab);
    return 0;
}

/* ---- vocabulary ---- */

static int load_texts(struct tokenizer *t, const struct gguf_array *toks, char *err, size_t errlen)
{
    uint64_t total = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) total += toks->strs[i].len ? toks->strs[i].len : 20;
    if (total > UINT32_MAX - 1) return ifd_fail(err, errlen, IFD_ERR_FORMAT, "token texts total %llu bytes", (unsigned long long)total);
    t->text_arena = malloc((size_t)total + 1);
    t->text_off = malloc(((size_t)t->n_vocab + 1) * sizeof *t->text_off);
    if (!t->text_arena || !t->text_off) return IFD_ERR_NOMEM;
    uint32_t o = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        t->text_off[i] = o;
        const struct gguf_str *s = &toks->strs[i];
        if (s->len) {
            memcpy(t->text_arena + o, s->ptr, s->len);
            o += (uint32_t)s->len;
        } else {
            /* llama.cpp renames empty tokens so they can be told apart (and matched). */
            o += (uint32_t)snprintf(t->text_arena + o, 21, "[EMPTY_%d]", (int)i);
        }
        if ((int)(o - t->text_off[i]) > t->max_token_len) t->max_token_len = (int)(o - t->text_off[i]);
    }
    t->text_off[t->n_vocab] = o;
    return 0;
}

static uint16_t attr_of_type(int64_t type)
{
    switch (type) {
    case TOK_TYPE_UNKNOWN: return TOK_ATTR_UNKNOWN;
    case TOK_TYPE_UNUSED: return TOK_ATTR_UNUSED;
    case TOK_TYPE_NORMAL: return TOK_ATTR_NORMAL;
    case TOK_TYPE_CONTROL: return TOK_ATTR_CONTROL;
    case TOK_TYPE_USER_DEFINED: return TOK_ATTR_USER_DEFINED;
    case TOK_TYPE_BYTE: return TOK_ATTR_BYTE;
    default: return TOK_ATTR_UNDEFINED;
    }
}

static int load_vocab(struct tokenizer *t, const struct gguf_file *f, char *err, size_t errlen)
{
    const struct gguf_array *toks, *scores, *types;
    int rc = gguf_get_arr(f, "tokenizer.ggml.tokens", &toks);
    if (rc == IFD_ERR_NOT_FOUND) return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tokenizer.ggml.tokens is missing");
    if (rc) return key_error(rc, "tokenizer.ggml.tokens", "an array", err, errlen);
    if (toks->type != GGUF_VT_STRING)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tokenizer.ggml.tokens: array of %s, expected string",
                        gguf_vtype_name(toks->type));
    if (toks->count == 0 || toks->count > TOK_MAX_VOCAB)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tokenizer.ggml.tokens: %llu tokens", (unsigned long long)toks->count);
    t->n_vocab = (int32_t)toks->count;
    if ((rc = opt_arr(f, "tokenizer.ggml.scores", GGUF_VT_FLOAT32, GGUF_VT_INT32, toks->count, &scores, err, errlen)) ||
        (rc = opt_arr(f, "tokenizer.ggml.token_type", GGUF_VT_INT32, GGUF_VT_INT32, toks->count, &types, err, errlen)) ||
        (rc = load_texts(t, toks, err, errlen)))
        return rc;
    size_t n = (size_t)t->n_vocab;
    t->scores = malloc(n * sizeof *t->scores);
    t->attr = malloc(n * sizeof *t->attr);
    t->eog = calloc(n, 1);
    if (!t->scores || !t->attr || !t->eog) return IFD_ERR_NOMEM;
    /* GGUF arrays are little-endian, like every host we build for. */
    if (scores && scores->type == GGUF_VT_FLOAT32)
        memcpy(t->scores, scores->data, n * sizeof *t->scores);
    for (size_t i = 0; i < n; i++) {
        if (scores && scores->type == GGUF_VT_INT32) {
            int32_t v;
            memcpy(&v, scores->data + 4 * i, 4);
            t->scores[i] = (float)v;
        } else if (!scores) {
            t->scores[i] = 0.0f;
        }
        int32_t ty = TOK_TYPE_NORMAL;
        if (types) memcpy(&ty, types->data + 4 * i, 4);
        t->attr[i] = types ? attr_of_type(ty) : TOK_ATTR_NORMAL;
    }
    if ((rc = tok_strmap_init(&t->text_map, (uint32_t)n))) return rc;
    tok_strmap_put_all(&t->text_map, t, t->n_vocab);
    return 0;
}

static int32_t find_text(const struct tokenizer *t, const char *s)
{
    return tok_strmap_get(&t->text_map, t, s, strlen(s));
}

/* ---- model type, flags and special ids ---- */

static int load_model_type(struct tokenizer *t, const struct gguf_file *f, const struct pre_def **pre, char *err,
                           size_t errlen)
{
    char model[64], pre_name[64];
    int rc = opt_str(f, "tokenizer.ggml.model", model, sizeof model, err, errlen);
    if (!rc) rc = opt_str(f, "tokenizer.ggml.pre", pre_name, sizeof pre_name, err, errlen);
    if (rc) return rc;
    *pre = NULL;
    if (!model[0]) return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tokenizer.ggml.model is missing");
    if (strcmp(model, "llama") == 0) {
        t->kind = TOK_KIND_SPM;
        t->pre = TOK_PRE_NONE;
        return 0;
    }
    if (strcmp(model, "gpt2") != 0)
        return ifd_fail(err, errlen, IFD_ERR_UNSUPPORTED, "tokenizer model '%s' is not supported (only gpt2 and llama)", model);
    t->kind = TOK_KIND_BPE;
    const char *name = pre_name[0] ? pre_name : "default";
    if (!pre_name[0]) LOG_WARN("tok", "tokenizer.ggml.pre is missing; using 'default' (token ids may be poor)");
    for (size_t i = 0; i < sizeof g_pres / sizeof g_pres[0]; i++)
        if (strcmp(g_pres[i].name, name) == 0) *pre = &g_pres[i];
    if (!*pre) return ifd_fail(err, errlen, IFD_ERR_UNSUPPORTED, "pre-tokenizer '%s' is not supported", name);
    t->pre = (*pre)->pre;
    t->ignore_merges = (*pre)->ignore_merges;
    return 0;
}

struct fim_ids {
    int32_t pre, suf, mid, pad, rep, sep;
};

static int load_special_ids(struct tokenizer *t, const struct gguf_file *f, const struct pre_def *pre,
                            struct fim_ids *fim, char *err, size_t errlen)
{
    /* llama.cpp's defaults, dropped when outside the vocabulary. */
    t->bos = t->kind == TOK_KIND_SPM ? 1 : (pre && pre->no_bos ? -1 : 11);
    t->eos = t->kind == TOK_KIND_SPM ? 2 : 11;
    t->unk = t->kind == TOK_KIND_SPM ? 0 : -1;
    t->eot = t->eom = t->sep = t->pad = -1;
    *fim = (struct fim_ids){-1, -1, -1, -1, -1, -1};
    int32_t *defaults[] = {&t->bos, &t->eos, &t->unk};
    for (size_t i = 0; i < 3; i++)
        if (*defaults[i] >= t->n_vocab) *defaults[i] = -1;
    static const char *const fim_keys[] = {"tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.fim_suf_token_id",
                                           "tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.fim_pad_token_id",
                                           "tokenizer.ggml.fim_rep_token_id", "tokenizer.ggml.fim_sep_token_id",
                                           "tokenizer.ggml.prefix_token_id", "tokenizer.ggml.suffix_token_id",
                                           "tokenizer.ggml.middle_token_id"};
    int32_t *fim_dst[] = {&fim->pre, &fim->suf, &fim->mid, &fim->pad, &fim->rep, &fim->sep,
                          &fim->pre, &fim->suf, &fim->mid};
    int rc;
    if ((rc = opt_id(t, f, "tokenizer.ggml.bos_token_id", true, &t->bos, err, errlen)) ||
        (rc = opt_id(t, f, "tokenizer.ggml.eos_token_id", true, &t->eos, err, errlen)) ||
        (rc = opt_id(t, f, "tokenizer.ggml.eot_token_id", true, &t->eot, err, errlen)) ||
        (rc = opt_id(t, f, "tokenizer.ggml.eom_token_id", true, &t->eom, err, errlen)) ||
        (rc = opt_id(t, f, "tokenizer.ggml.unknown_token_id", false, &t->unk, err, errlen)) ||
        (rc = opt_id(t, f, "tokenizer.ggml.seperator_token_id", false, &t->sep, err, errlen)) ||
        (rc = opt_id(t, f, "tokenizer.ggml.padding_token_id", false, &t->pad, err, errlen)))
        return rc;
    for (size_t i = 0; i < sizeof fim_keys / sizeof fim_keys[0]; i++)
        if ((rc = opt_id(t, f, fim_keys[i], false, fim_dst[i], err, errlen))) return rc;
    return 0;
}

static int load_flags(struct tokenizer *t, const struct gguf_file *f, const struct pre_def *pre, char *err,
                      size_t errlen)
{
    t->add_bos = t->kind == TOK_KIND_SPM || (pre && pre->add_bos);
    t->add_eos = false;
    t->add_space_prefix = t->kind == TOK_KIND_SPM;
    int rc;
    if ((rc = opt_bool(f, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix, err, errlen)) ||
        (rc = opt_bool(f, "tokenizer.ggml.add_bos_token", &t->add_bos, err, errlen)) ||
        (rc = opt_bool(f, "tokenizer.ggml.add_eos_token", &t->add_eos, err, errlen)))
        return rc;
    return 0;
}

/* ---- text-based special-token detection (llama.cpp's workarounds) ---- */

static const char *const g_eot_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                                          "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]",
                                          "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                          "<end_of_utterance>", NULL};
static const char *const g_eom_texts[] = {"<|eom_id|>", NULL};
static const char *const g_fim_pre_texts[] = {"<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
                                              "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>",
                                              "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL};
static const char *const g_fim_suf_texts[] = {"<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
                                              "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>", "<SUF>",
                                              "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL};
static const char *const g_fim_mid_texts[] = {"<|fim_middle|>", "<fim-middle>", "<fim_middle>",
                                              "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>",
                                              "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL};
static const char *const g_fim_pad_texts[] = {"<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL};
static const char *const g_fim_rep_texts[] = {"<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL};
static const char *const g_fim_sep_texts[] = {"<|file_sep|>", NULL};
static const char *const g_eog_texts[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
                                          "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
                                          "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
                                          "<turn|>", "<|tool_response>",
                                          "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
                                          "[e~[", NULL};

/* When *id is unset, takes the first listed text present (llama.cpp takes the
 * first in hash-map order; with one candidate per vocabulary, the same) and
 * forces it to CONTROL. */
static void detect_by_text(struct tokenizer *t, int32_t *id, const char *const *texts)
{
    if (*id >= 0) return;
    int32_t best = -1;
    for (size_t i = 0; texts[i]; i++) {
        int32_t found = find_text(t, texts[i]);
        if (found >= 0 && (best < 0 || found < best)) best = found;
    }
    if (best < 0) return;
    *id = best;
    t->attr[best] |= TOK_ATTR_CONTROL;
}

static void mark_unused(struct tokenizer *t)
{
    for (int32_t i = 0; i < t->n_vocab; i++) {
        if (!(t->attr[i] & TOK_ATTR_CONTROL) || (t->attr[i] & TOK_ATTR_UNUSED)) continue;
        size_t n;
        const char *s = tok_text(t, i, &n);
        if (memmem(s, n, "unused", 6)) t->attr[i] |= TOK_ATTR_UNUSED;
    }
}

static void set_eog(struct tokenizer *t, int32_t id, bool force_control)
{
    if (id < 0) return;
    t->eog[id] = 1;
    if (force_control) t->attr[id] |= TOK_ATTR_CONTROL;
}

/* A text's id only if that id is in the EOG set. */
static int32_t eog_with_text(const struct tokenizer *t, const char *s)
{
    int32_t id = find_text(t, s);
    return id >= 0 && t->eog[id] ? id : -1;
}

static void build_eog(struct tokenizer *t, const struct fim_ids *fim)
{
    set_eog(t, fim->pad, false);
    set_eog(t, fim->rep, false);
    set_eog(t, fim->sep, false);
    for (size_t i = 0; g_eog_texts[i]; i++) set_eog(t, find_text(t, g_eog_texts[i]), true);
    /* gpt-oss: always render these. */
    static const char *const harmony_ud[] = {"<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"};
    for (size_t i = 0; i < 4; i++) {
        int32_t id = find_text(t, harmony_ud[i]);
        if (id >= 0) t->attr[id] = TOK_ATTR_USER_DEFINED;
    }
    set_eog(t, t->eos, false);
    set_eog(t, t->eot, false);
    set_eog(t, t->eom, false);
    /* o200k_harmony / solar-open: <|end|> ends a message, not generation. */
    int32_t end = eog_with_text(t, "<|end|>");
    bool has_call = eog_with_text(t, "<|call|>") >= 0 || eog_with_text(t, "<|calls|>") >= 0;
    bool has_return = eog_with_text(t, "<|return|>") >= 0, has_flush = eog_with_text(t, "<|flush|>") >= 0;
    if (end >= 0 && has_call && (has_return || has_flush)) {
        t->eog[end] = 0;
        t->attr[end] = TOK_ATTR_USER_DEFINED;
    }
    /* gemma4 / plamo: </s> is an ordinary token there. */
    int32_t s_end = eog_with_text(t, "</s>");
    if (s_end >= 0 && (eog_with_text(t, "<|tool_response>") >= 0 || eog_with_text(t, "<|plamo:eos|>") >= 0)) {
        t->eog[s_end] = 0;
        t->attr[s_end] = TOK_ATTR_NORMAL;
    }
}

static void detect_specials(struct tokenizer *t, struct fim_ids *fim)
{
    detect_by_text(t, &t->eot, g_eot_texts);
    detect_by_text(t, &t->eom, g_eom_texts);
    detect_by_text(t, &fim->pre, g_fim_pre_texts);
    detect_by_text(t, &fim->suf, g_fim_suf_texts);
    detect_by_text(t, &fim->mid, g_fim_mid_texts);
    detect_by_text(t, &fim->pad, g_fim_pad_texts);
    detect_by_text(t, &fim->rep, g_fim_rep_texts);
    detect_by_text(t, &fim->sep, g_fim_sep_texts);
    mark_unused(t);
    build_eog(t, fim);
}

/* Per-model strip attributes, applied (as in llama.cpp) after the caches. */
static void set_strip_attrs(struct tokenizer *t, const struct gguf_file *f)
{
    char name[256], pre[64], arch[64];
    if (opt_str(f, "general.name", name, sizeof name, NULL, 0)) name[0] = 0;
    if (opt_str(f, "tokenizer.ggml.pre", pre, sizeof pre, NULL, 0)) pre[0] = 0;
    if (opt_str(f, "general.architecture", arch, sizeof arch, NULL, 0)) arch[0] = 0;
    for (char *p = name; *p; p++) *p = (char)tolower((unsigned char)*p);
    if (strstr(pre, "jina-v2-de") || strstr(pre, "jina-v2-es") || strstr(pre, "jina-v2-code") ||
        strstr(arch, "nomic-bert-moe") || strstr(arch, "jina-bert-v3")) {
        int32_t id = find_text(t, "<mask>");
        if (id >= 0) t->attr[id] |= TOK_ATTR_LSTRIP;
    } else if (strstr(name, "phi-3") || strstr(name, "phi3")) {
        for (int32_t i = 0; i < t->n_specials; i++) t->attr[t->specials[i]] |= TOK_ATTR_RSTRIP;
        int32_t id = find_text(t, "</s>");
        if (id >= 0) t->attr[id] |= TOK_ATTR_RSTRIP;
        static const char *const keep[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (size_t i = 0; i < 3; i++)
            if ((id = find_text(t, keep[i])) >= 0) t->attr[id] &= (uint16_t)~TOK_ATTR_RSTRIP;
    } else if (strstr(name, "modern-bert")) {
        int32_t id = find_text(t, "[MASK]");
        if (id >= 0) t->attr[id] |= TOK_ATTR_LSTRIP;
    }
}

/* ---- special-token trie ---- */

static int trie_new_node(struct tok_trie *tr, uint8_t byte)
{
    if (tr->n_nodes == tr->cap_nodes) {
        int32_t cap = tr->cap_nodes ? tr->cap_nodes * 2 : 256;
        struct tok_trie_node *n = realloc(tr->nodes, (size_t)cap * sizeof *n);
        if (!n) return -1;
        tr->nodes = n;
        tr->cap_nodes = cap;
    }
    tr->nodes[tr->n_nodes] = (struct tok_trie_node){-1, -1, -1, -1, byte};
    return tr->n_nodes++;
}

static int32_t trie_child(const struct tok_trie *tr, int32_t node, uint8_t byte)
{
    for (int32_t c = tr->nodes[node].first_child; c >= 0; c = tr->nodes[c].next_sibling)
        if (tr->nodes[c].byte == byte) return c;
    return -1;
}

/* Inserts the special with priority index idx; earlier (higher priority)
 * specials with the same text keep the node. */
static int trie_insert(struct tok_trie *tr, const char *s, size_t n, int32_t idx, bool plain)
{
    int32_t node = tr->root_child[(uint8_t)s[0]];
    if (node < 0) {
        if ((node = trie_new_node(tr, (uint8_t)s[0])) < 0) return IFD_ERR_NOMEM;
        tr->root_child[(uint8_t)s[0]] = node;
    }
    for (size_t i = 1; i < n; i++) {
        int32_t c = trie_child(tr, node, (uint8_t)s[i]);
        if (c < 0) {
            if ((c = trie_new_node(tr, (uint8_t)s[i])) < 0) return IFD_ERR_NOMEM;
            tr->nodes[c].next_sibling = tr->nodes[node].first_child;
            tr->nodes[node].first_child = c;
        }
        node = c;
    }
    if (tr->nodes[node].term_all < 0) tr->nodes[node].term_all = idx;
    if (plain && tr->nodes[node].term_plain < 0) tr->nodes[node].term_plain = idx;
    return 0;
}

struct special_key {
    uint32_t len;
    int32_t id;
};

/* Longest text first; llama.cpp's std::sort leaves equal lengths in an
 * unspecified order, we use ascending id. */
static int cmp_special(const void *a, const void *b)
{
    const struct special_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int build_specials(struct tokenizer *t)
{
    const uint16_t special = TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED | TOK_ATTR_UNKNOWN;
    int32_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) n += (t->attr[i] & special) != 0;
    for (int b = 0; b < 256; b++) t->trie.root_child[b] = -1;
    if (n == 0) return 0;
    struct special_key *keys = malloc((size_t)n * sizeof *keys);
    t->specials = malloc((size_t)n * sizeof *t->specials);
    if (!keys || !t->specials) {
        free(keys);
        return IFD_ERR_NOMEM;
    }
    for (int32_t i = 0, k = 0; i < t->n_vocab; i++)
        if (t->attr[i] & special) keys[k++] = (struct special_key){t->text_off[i + 1] - t->text_off[i], i};
    qsort(keys, (size_t)n, sizeof *keys, cmp_special);
    int rc = 0;
    for (int32_t i = 0; i < n && !rc; i++) {
        int32_t id = keys[i].id;
        t->specials[t->n_specials++] = id;
        bool plain = !(t->attr[id] & (TOK_ATTR_CONTROL | TOK_ATTR_UNKNOWN));
        rc = trie_insert(&t->trie, t->text_arena + t->text_off[id], keys[i].len, i, plain) ? IFD_ERR_NOMEM : 0;
    }
    free(keys);
    return rc;
}

/* ---- load / free ---- */

static int load_chat_template(struct tokenizer *t, const struct gguf_file *f, char *err, size_t errlen)
{
    struct gguf_str s;
    int rc = gguf_get_str(f, "tokenizer.chat_template", &s);
    if (rc == IFD_ERR_NOT_FOUND) return 0;
    if (rc) return key_error(rc, "tokenizer.chat_template", "a string", err, errlen);
    t->chat_template = malloc(s.len + 1);
    if (!t->chat_template) return IFD_ERR_NOMEM;
    memcpy(t->chat_template, s.ptr, s.len);
    t->chat_template[s.len] = 0;
    t->chat_template_len = s.len;
    return 0;
}

static int load_merges(struct tokenizer *t, const struct gguf_file *f, char *err, size_t errlen)
{
    const struct gguf_array *merges;
    int rc = gguf_get_arr(f, "tokenizer.ggml.merges", &merges);
    if (rc == IFD_ERR_NOT_FOUND) return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tokenizer.ggml.merges is missing");
    if (rc) return key_error(rc, "tokenizer.ggml.merges", "an array", err, errlen);
    if (merges->type != GGUF_VT_STRING)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tokenizer.ggml.merges: array of %s, expected string",
                        gguf_vtype_name(merges->type));
    return bpe_init(t, merges, err, errlen);
}

static int load_all(struct tokenizer *t, const struct gguf_file *f, char *err, size_t errlen)
{
    const struct pre_def *pre = NULL;
    struct fim_ids fim;
    int rc;
    if ((rc = load_model_type(t, f, &pre, err, errlen)) || (rc = load_vocab(t, f, err, errlen)) ||
        (rc = load_special_ids(t, f, pre, &fim, err, errlen)) || (rc = load_flags(t, f, pre, err, errlen)))
        return rc;
    detect_specials(t, &fim);
    if (t->kind == TOK_KIND_BPE) {
        if ((rc = load_merges(t, f, err, errlen)) || (rc = tok_pretok_create(&t->pretok, t->pre, err, errlen))) return rc;
    } else {
        spm_init(t);
    }
    if ((rc = build_specials(t)) || (rc = detok_build_pieces(t, err, errlen)) ||
        (rc = load_chat_template(t, f, err, errlen)))
        return rc;
    set_strip_attrs(t, f);
    return 0;
}

int tokenizer_load(struct tokenizer **out, const struct gguf_file *f, char *err, size_t errlen)
{
    if (!out) return IFD_ERR_INVALID;
    *out = NULL;
    if (!f) return ifd_fail(err, errlen, IFD_ERR_INVALID, "no GGUF file");
    struct tokenizer *t = calloc(1, sizeof *t);
    if (!t) return IFD_ERR_NOMEM;
    int rc = load_all(t, f, err, errlen);
    if (rc) {
        if (rc == IFD_ERR_NOMEM) ifd_fail(err, errlen, rc, "out of memory loading the tokenizer");
        tokenizer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void tokenizer_free(struct tokenizer *t)
{
    if (!t) return;
    tok_pretok_free(t->pretok);
    free(t->text_arena);
    free(t->text_off);
    free(t->scores);
    free(t->attr);
    free(t->eog);
    free(t->piece_arena);
    free(t->piece_off);
    tok_strmap_free(&t->text_map);
    tok_pairmap_free(&t->merges);
    free(t->specials);
    free(t->trie.nodes);
    free(t->chat_template);
    free(t);
}

/* ---- getters ---- */

enum tok_kind tokenizer_kind(const struct tokenizer *t) { return t->kind; }
int tokenizer_n_vocab(const struct tokenizer *t) { return t->n_vocab; }
int32_t tokenizer_bos(const struct tokenizer *t) { return t->bos; }
int32_t tokenizer_eos(const struct tokenizer *t) { return t->eos; }
bool tokenizer_add_bos(const struct tokenizer *t) { return t->add_bos; }

bool tokenizer_is_eog(const struct tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

enum tok_type tokenizer_token_type(const struct tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_vocab) return TOK_TYPE_UNDEFINED;
    uint16_t a = t->attr[id];
    if (a & TOK_ATTR_UNKNOWN) return TOK_TYPE_UNKNOWN;
    if (a & TOK_ATTR_CONTROL) return TOK_TYPE_CONTROL;
    if (a & TOK_ATTR_USER_DEFINED) return TOK_TYPE_USER_DEFINED;
    if (a & TOK_ATTR_BYTE) return TOK_TYPE_BYTE;
    if (a & TOK_ATTR_UNUSED) return TOK_TYPE_UNUSED;
    if (a & TOK_ATTR_NORMAL) return TOK_TYPE_NORMAL;
    return TOK_TYPE_UNDEFINED;
}

const char *tokenizer_chat_template(const struct tokenizer *t, size_t *len)
{
    if (len) *len = t->chat_template_len;
    return t->chat_template;
}

/* ---- splitting around special tokens ---- */

struct frag {
    size_t start, len;  /* raw text when token < 0 */
    int32_t token;
};

struct frags {
    struct frag *v;
    size_t n, cap;
};

static int frag_push(struct frags *a, size_t start, size_t len, int32_t token)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        struct frag *v = realloc(a->v, cap * sizeof *v);
        if (!v) return IFD_ERR_NOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = (struct frag){start, len, token};
    return 0;
}

/* Where each special that occurs at all first and last starts (first > last if absent). */
struct occ {
    size_t *first, *last;
    bool any;
};

static int find_occurrences(const struct tokenizer *t, const uint8_t *text, size_t len, bool parse_special,
                            struct occ *o)
{
    const struct tok_trie *tr = &t->trie;
    o->any = false;
    o->first = o->last = NULL;
    for (size_t i = 0; i < len; i++) {
        int32_t node = tr->root_child[text[i]];
        for (size_t d = 1; node >= 0; d++) {
            int32_t idx = parse_special ? tr->nodes[node].term_all : tr->nodes[node].term_plain;
            if (idx >= 0) {
                if (!o->any) {
                    o->first = malloc((size_t)t->n_specials * sizeof *o->first);
                    o->last = calloc((size_t)t->n_specials, sizeof *o->last);
                    if (!o->first || !o->last) return IFD_ERR_NOMEM;
                    memset(o->first, 0xff, (size_t)t->n_specials * sizeof *o->first);
                    o->any = true;
                }
                if (o->first[idx] == SIZE_MAX) o->first[idx] = i;
                o->last[idx] = i;
            }
            if (i + d >= len) break;
            node = trie_child(tr, node, text[i + d]);
        }
    }
    return 0;
}

static inline bool is_space(uint8_t c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

struct claim {
    size_t start, end;  /* claimed bytes, whitespace stripped around the token included */
    int32_t token;
};

static int cmp_claim(const void *a, const void *b)
{
    const struct claim *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

/* Claims the occurrences of one special in [from, to) that do not overlap
 * anything claimed before, leftmost first. */
static int claim_token(const struct tokenizer *t, int32_t id, const uint8_t *text, size_t len, size_t from,
                       size_t to, uint8_t *claimed, struct claim **claims, size_t *n_claims, size_t *cap_claims)
{
    size_t tl;
    const char *tt = tok_text(t, id, &tl);
    size_t pos = from;
    while (pos < to && to - pos >= tl) {
        const uint8_t *p = memmem(text + pos, to - pos, tt, tl);
        if (!p) break;
        size_t q = (size_t)(p - text), c = q;
        while (c < q + tl && !claimed[c]) c++;
        if (c < q + tl) {
            /* Any occurrence starting before the end of this claimed run overlaps it. */
            while (c < to && claimed[c]) c++;
            pos = c;
            continue;
        }
        size_t a = q, b = q + tl;
        if (t->attr[id] & TOK_ATTR_LSTRIP)
            while (a > 0 && !claimed[a - 1] && is_space(text[a - 1])) a--;
        if (t->attr[id] & TOK_ATTR_RSTRIP)
            while (b < len && !claimed[b] && is_space(text[b])) b++;
        memset(claimed + a, 1, b - a);
        if (*n_claims == *cap_claims) {
            size_t cap = *cap_claims ? *cap_claims * 2 : 16;
            struct claim *v = realloc(*claims, cap * sizeof *v);
            if (!v) return IFD_ERR_NOMEM;
            *claims = v;
            *cap_claims = cap;
        }
        (*claims)[(*n_claims)++] = (struct claim){a, b, id};
        pos = b;
    }
    return 0;
}

static int fragments_from_claims(struct claim *claims, size_t n, size_t len, struct frags *out)
{
    qsort(claims, n, sizeof *claims, cmp_claim);
    size_t cur = 0;
    for (size_t i = 0; i < n; i++) {
        if (claims[i].start > cur && frag_push(out, cur, claims[i].start - cur, -1)) return IFD_ERR_NOMEM;
        if (frag_push(out, 0, 0, claims[i].token)) return IFD_ERR_NOMEM;
        cur = claims[i].end;
    }
    if (cur < len && frag_push(out, cur, len - cur, -1)) return IFD_ERR_NOMEM;
    return 0;
}

static int partition(const struct tokenizer *t, const uint8_t *text, size_t len, bool parse_special, struct frags *out)
{
    if (len == 0) return 0;
    struct occ o = {NULL, NULL, false};
    int rc = t->n_specials ? find_occurrences(t, text, len, parse_special, &o) : 0;
    if (rc || !o.any) {
        if (!rc) rc = frag_push(out, 0, len, -1);
        free(o.first);
        free(o.last);
        return rc;
    }
    uint8_t *claimed = calloc(len, 1);
    struct claim *claims = NULL;
    size_t n_claims = 0, cap_claims = 0;
    rc = claimed ? 0 : IFD_ERR_NOMEM;
    for (int32_t s = 0; !rc && s < t->n_specials; s++) {
        if (o.first[s] == SIZE_MAX) continue;
        int32_t id = t->specials[s];
        size_t tl = t->text_off[id + 1] - t->text_off[id];
        rc = claim_token(t, id, text, len, o.first[s], o.last[s] + tl, claimed, &claims, &n_claims, &cap_claims);
    }
    if (!rc) rc = fragments_from_claims(claims, n_claims, len, out);
    free(claims);
    free(claimed);
    free(o.first);
    free(o.last);
    return rc;
}

/* ---- encode ---- */

static int encode_fragments(const struct tokenizer *t, const uint8_t *text, const struct frags *fr, bool add_special,
                            struct tok_ids *ids)
{
    int rc = 0;
    bool prev_special = true; /* SPM: the first text gets the space prefix */
    if (add_special && t->add_bos && t->bos >= 0) rc = tok_ids_push(ids, t->bos);
    for (size_t i = 0; !rc && i < fr->n; i++) {
        const struct frag *f = &fr->v[i];
        if (f->token >= 0) {
            rc = tok_ids_push(ids, f->token);
            prev_special = true;
        } else if (t->kind == TOK_KIND_BPE) {
            rc = bpe_encode_fragment(t, text + f->start, f->len, ids);
        } else {
            rc = spm_encode_fragment(t, text + f->start, f->len, t->add_space_prefix && prev_special, ids);
            prev_special = false;
        }
    }
    if (!rc && add_special && t->add_eos && t->eos >= 0) rc = tok_ids_push(ids, t->eos);
    return rc;
}

int tokenizer_encode(const struct tokenizer *t, const char *text, size_t len, bool add_special, bool parse_special,
                     int32_t *out, int cap)
{
    if (!t || (len > 0 && !text) || cap < 0 || (cap > 0 && !out)) return IFD_ERR_INVALID;
    /* One input byte yields at most three ids (an invalid byte is U+FFFD). */
    if (len > (size_t)(INT_MAX - 2) / 3) return IFD_ERR_RANGE;
    struct frags fr = {0};
    struct tok_ids ids = {0};
    int rc = partition(t, (const uint8_t *)text, len, parse_special, &fr);
    if (!rc) rc = encode_fragments(t, (const uint8_t *)text, &fr, add_special, &ids);
    if (!rc && ids.n > INT_MAX) rc = IFD_ERR_RANGE;
    if (!rc) {
        size_t k = ids.n < (size_t)cap ? ids.n : (size_t)cap;
        if (k) memcpy(out, ids.v, k * sizeof *out);
        rc = (int)ids.n;
    }
    free(fr.v);
    tok_ids_free(&ids);
    return rc;
}
