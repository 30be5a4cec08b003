/* SPDX-License-Identifier: Apache-2.0
 *
 * test_tokenizer_meta.c: the tokenizer on GGUF images built in memory: corrupt
 * or hostile tokenizer metadata must fail to load with IFD_ERR_FORMAT (or
 * UNSUPPORTED) and a message, never crash; tiny hand-made vocabularies pin
 * down llama.cpp behaviours the real models do not exercise; and the API's
 * buffer and argument conventions.
 */
#include "test.h"

#include "inferd/gguf.h"
#include "inferd/log.h"
#include "inferd/tokenizer.h"
#include "tokenizer/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a minimal GGUF writer ---- */

struct gb {
    uint8_t *p;
    size_t n, cap;
    uint64_t n_kv;
};

static void gb_raw(struct gb *g, const void *src, size_t n)
{
    if (g->n + n > g->cap) {
        g->cap = (g->n + n) * 2 + 64;
        g->p = realloc(g->p, g->cap);
        ASSERT(g->p);
    }
    memcpy(g->p + g->n, src, n);
    g->n += n;
}

static void gb_u32(struct gb *g, uint32_t v) { gb_raw(g, &v, 4); }
static void gb_u64(struct gb *g, uint64_t v) { gb_raw(g, &v, 8); }

static void gb_strn(struct gb *g, const char *s, size_t n)
{
    gb_u64(g, n);
    gb_raw(g, s, n);
}

static void gb_str(struct gb *g, const char *s) { gb_strn(g, s, strlen(s)); }

static void gb_key(struct gb *g, const char *key, enum gguf_vtype type)
{
    gb_str(g, key);
    gb_u32(g, type);
    g->n_kv++;
}

static void kv_str(struct gb *g, const char *key, const char *v)
{
    gb_key(g, key, GGUF_VT_STRING);
    gb_str(g, v);
}

static void kv_u32(struct gb *g, const char *key, uint32_t v)
{
    gb_key(g, key, GGUF_VT_UINT32);
    gb_u32(g, v);
}

static void kv_u64(struct gb *g, const char *key, uint64_t v)
{
    gb_key(g, key, GGUF_VT_UINT64);
    gb_u64(g, v);
}

static void kv_bool(struct gb *g, const char *key, bool v)
{
    gb_key(g, key, GGUF_VT_BOOL);
    uint8_t b = v;
    gb_raw(g, &b, 1);
}

/* Strings given as NUL-terminated C strings, except that lens[i] (when lens is
 * not NULL) overrides the length, so texts may contain NUL or be empty. */
static void kv_arr_str(struct gb *g, const char *key, const char *const *v, const size_t *lens, size_t n)
{
    gb_key(g, key, GGUF_VT_ARRAY);
    gb_u32(g, GGUF_VT_STRING);
    gb_u64(g, n);
    for (size_t i = 0; i < n; i++) gb_strn(g, v[i], lens ? lens[i] : strlen(v[i]));
}

static void kv_arr_i32(struct gb *g, const char *key, const int32_t *v, size_t n)
{
    gb_key(g, key, GGUF_VT_ARRAY);
    gb_u32(g, GGUF_VT_INT32);
    gb_u64(g, n);
    gb_raw(g, v, 4 * n);
}

static void kv_arr_f32(struct gb *g, const char *key, const float *v, size_t n)
{
    gb_key(g, key, GGUF_VT_ARRAY);
    gb_u32(g, GGUF_VT_FLOAT32);
    gb_u64(g, n);
    gb_raw(g, v, 4 * n);
}

/* Header + key/values + alignment padding (no tensors). */
static uint8_t *gb_finish(struct gb *g, size_t *size)
{
    struct gb out = {0};
    gb_raw(&out, "GGUF", 4);
    gb_u32(&out, 3);
    gb_u64(&out, 0);
    gb_u64(&out, g->n_kv);
    gb_raw(&out, g->p, g->n);
    static const uint8_t zeros[32];
    gb_raw(&out, zeros, (32 - out.n % 32) % 32);
    free(g->p);
    memset(g, 0, sizeof *g);
    *size = out.n;
    return out.p;
}

/* ---- tiny vocabularies ---- */

/* A byte-level BPE vocabulary: specials, all 256 mapped bytes, a few merges. */
struct tiny_bpe {
    const char *texts[400];
    size_t lens[400];
    int32_t types[400];
    int n;
    const char *merges[16];
    int n_merges;
    char bytes[256][3];
};

static void tiny_bpe_init(struct tiny_bpe *v)
{
    memset(v, 0, sizeof *v);
    static const char *const specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
    for (int i = 0; i < 3; i++) {
        v->texts[v->n] = specials[i];
        v->types[v->n++] = TOK_TYPE_CONTROL;
    }
    for (int b = 0; b < 256; b++) {
        uint8_t enc[2];
        int k = bpe_byte_to_utf8((uint8_t)b, enc);
        memcpy(v->bytes[b], enc, (size_t)k);
        v->texts[v->n] = v->bytes[b];
        v->types[v->n++] = TOK_TYPE_NORMAL;
    }
    static const char *const words[] = {"he", "ll", "hell", "hello", "\xc4\xa0w", "\xc4\xa0wo"};
    for (int i = 0; i < 6; i++) {
        v->texts[v->n] = words[i];
        v->types[v->n++] = TOK_TYPE_NORMAL;
    }
    static const char *const merges[] = {"h e", "l l", "he ll", "hell o", "\xc4\xa0 w", "\xc4\xa0w o"};
    for (int i = 0; i < 6; i++) v->merges[v->n_merges++] = merges[i];
}

static int32_t tiny_id(const struct tiny_bpe *v, const char *text)
{
    for (int i = v->n - 1; i >= 0; i--)
        if (strlen(text) == (v->lens[i] ? v->lens[i] : strlen(v->texts[i])) && strcmp(v->texts[i], text) == 0) return i;
    return -1;
}

/* Writes every standard key except `skip` (a key name, or NULL). */
static void tiny_bpe_keys(struct gb *g, const struct tiny_bpe *v, const char *pre, const char *skip)
{
    size_t lens[400];
    for (int i = 0; i < v->n; i++) lens[i] = v->lens[i] ? v->lens[i] : strlen(v->texts[i]);
    if (!skip || strcmp(skip, "tokenizer.ggml.model")) kv_str(g, "tokenizer.ggml.model", "gpt2");
    if (!skip || strcmp(skip, "tokenizer.ggml.pre")) kv_str(g, "tokenizer.ggml.pre", pre);
    if (!skip || strcmp(skip, "tokenizer.ggml.tokens")) kv_arr_str(g, "tokenizer.ggml.tokens", v->texts, lens, (size_t)v->n);
    if (!skip || strcmp(skip, "tokenizer.ggml.token_type"))
        kv_arr_i32(g, "tokenizer.ggml.token_type", v->types, (size_t)v->n);
    if (!skip || strcmp(skip, "tokenizer.ggml.merges"))
        kv_arr_str(g, "tokenizer.ggml.merges", v->merges, NULL, (size_t)v->n_merges);
    if (!skip || strcmp(skip, "tokenizer.ggml.eos_token_id")) kv_u32(g, "tokenizer.ggml.eos_token_id", 2);
}

struct loaded {
    uint8_t *image;
    struct gguf_file *f;
    struct tokenizer *t;
    int rc;
    char err[512];
};

static struct loaded load_image(struct gb *g)
{
    struct loaded l;
    memset(&l, 0, sizeof l);
    size_t size;
    l.image = gb_finish(g, &size);
    int rc = gguf_parse(&l.f, l.image, size, l.err, sizeof l.err);
    ASSERT_MSG(rc == 0, "gguf_parse of a test image: %s", l.err);
    l.rc = tokenizer_load(&l.t, l.f, l.err, sizeof l.err);
    ASSERT_MSG((l.rc == 0) == (l.t != NULL), "tokenizer_load returned %d with tokenizer %p", l.rc, (void *)l.t);
    return l;
}

static void free_loaded(struct loaded *l)
{
    tokenizer_free(l->t);
    gguf_close(l->f);
    free(l->image);
}

static int encode_small(const struct tokenizer *t, const char *s, bool add_special, bool parse_special, int32_t *ids,
                        int cap)
{
    int n = tokenizer_encode(t, s, strlen(s), add_special, parse_special, ids, cap);
    ASSERT_MSG(n >= 0 && n <= cap, "encode(\"%s\") returned %d", s, n);
    return n;
}

/* ---- corrupt metadata ---- */

enum corrupt_case {
    C_NO_MODEL, C_MODEL_INT, C_MODEL_UNKNOWN, C_PRE_UNKNOWN, C_PRE_INT, C_NO_TOKENS, C_TOKENS_STR, C_TOKENS_I32,
    C_TOKENS_EMPTY, C_TOKENS_NESTED, C_SCORES_SHORT, C_SCORES_STR, C_TYPES_SHORT, C_TYPES_F32, C_NO_MERGES,
    C_MERGES_I32, C_MERGE_NO_SPACE, C_MERGE_EMPTY_RIGHT, C_MERGE_LEADING_SPACE, C_MERGE_UNKNOWN, C_BOS_RANGE,
    C_EOS_HUGE, C_EOS_STR, C_EOT_NEG, C_ADD_BOS_INT, C_TEMPLATE_INT, C_SPM_OF_BPE_VOCAB, C_COUNT
};

static void build_corrupt(struct gb *g, enum corrupt_case c)
{
    struct tiny_bpe *v = malloc(sizeof *v);
    ASSERT(v);
    tiny_bpe_init(v);
    static const char *const skip_for[C_COUNT] = {
        [C_NO_MODEL] = "tokenizer.ggml.model", [C_MODEL_INT] = "tokenizer.ggml.model",
        [C_MODEL_UNKNOWN] = "tokenizer.ggml.model", [C_PRE_INT] = "tokenizer.ggml.pre",
        [C_NO_TOKENS] = "tokenizer.ggml.tokens", [C_TOKENS_STR] = "tokenizer.ggml.tokens",
        [C_TOKENS_I32] = "tokenizer.ggml.tokens", [C_TOKENS_EMPTY] = "tokenizer.ggml.tokens",
        [C_TOKENS_NESTED] = "tokenizer.ggml.tokens", [C_TYPES_SHORT] = "tokenizer.ggml.token_type",
        [C_TYPES_F32] = "tokenizer.ggml.token_type", [C_NO_MERGES] = "tokenizer.ggml.merges",
        [C_MERGES_I32] = "tokenizer.ggml.merges", [C_EOS_HUGE] = "tokenizer.ggml.eos_token_id",
        [C_EOS_STR] = "tokenizer.ggml.eos_token_id", [C_SPM_OF_BPE_VOCAB] = "tokenizer.ggml.model",
    };
    if (c == C_MERGE_NO_SPACE) v->merges[v->n_merges++] = "hello";
    if (c == C_MERGE_EMPTY_RIGHT) v->merges[v->n_merges++] = "h ";
    if (c == C_MERGE_LEADING_SPACE) v->merges[v->n_merges++] = " h";
    if (c == C_MERGE_UNKNOWN) v->merges[v->n_merges++] = "zzz qqq";
    tiny_bpe_keys(g, v, c == C_PRE_UNKNOWN ? "no-such-pre" : "gpt-2", skip_for[c]);
    int32_t i32s[4] = {1, 2, 3, 4};
    float f32s[4] = {0, 0, 0, 0};
    switch (c) {
    case C_MODEL_INT: kv_u32(g, "tokenizer.ggml.model", 7); break;
    case C_MODEL_UNKNOWN: kv_str(g, "tokenizer.ggml.model", "bert"); break;
    case C_PRE_INT: kv_u32(g, "tokenizer.ggml.pre", 3); break;
    case C_TOKENS_STR: kv_str(g, "tokenizer.ggml.tokens", "hello"); break;
    case C_TOKENS_I32: kv_arr_i32(g, "tokenizer.ggml.tokens", i32s, 4); break;
    case C_TOKENS_EMPTY: kv_arr_str(g, "tokenizer.ggml.tokens", NULL, NULL, 0); break;
    case C_TOKENS_NESTED:
        gb_key(g, "tokenizer.ggml.tokens", GGUF_VT_ARRAY);
        gb_u32(g, GGUF_VT_ARRAY);
        gb_u64(g, 1);
        gb_u32(g, GGUF_VT_INT32);
        gb_u64(g, 1);
        gb_u32(g, 5);
        break;
    case C_SCORES_SHORT: kv_arr_f32(g, "tokenizer.ggml.scores", f32s, 4); break;
    case C_SCORES_STR: kv_arr_str(g, "tokenizer.ggml.scores", v->texts, NULL, (size_t)v->n); break;
    case C_TYPES_SHORT: kv_arr_i32(g, "tokenizer.ggml.token_type", i32s, 4); break;
    case C_TYPES_F32: {
        float *f = calloc((size_t)v->n, sizeof *f);
        ASSERT(f);
        kv_arr_f32(g, "tokenizer.ggml.token_type", f, (size_t)v->n);
        free(f);
        break;
    }
    case C_MERGES_I32: kv_arr_i32(g, "tokenizer.ggml.merges", i32s, 4); break;
    case C_BOS_RANGE: kv_u32(g, "tokenizer.ggml.bos_token_id", (uint32_t)v->n); break;
    case C_EOS_HUGE: kv_u64(g, "tokenizer.ggml.eos_token_id", 1ull << 40); break;
    case C_EOS_STR: kv_str(g, "tokenizer.ggml.eos_token_id", "2"); break;
    case C_EOT_NEG: {
        gb_key(g, "tokenizer.ggml.eot_token_id", GGUF_VT_INT32);
        int32_t neg = -1;
        gb_raw(g, &neg, 4);
        break;
    }
    case C_ADD_BOS_INT: kv_u32(g, "tokenizer.ggml.add_bos_token", 1); break;
    case C_TEMPLATE_INT: kv_u32(g, "tokenizer.chat_template", 1); break;
    case C_SPM_OF_BPE_VOCAB: kv_str(g, "tokenizer.ggml.model", "llama"); break;
    default: break;
    }
    free(v);
}

TEST(tokenizer_rejects_corrupt_metadata)
{
    static const char *const names[C_COUNT] = {
        "no model", "model is an int", "unknown model", "unknown pre", "pre is an int", "no tokens",
        "tokens is a string", "tokens are ints", "empty vocabulary", "tokens are arrays", "scores too short",
        "scores are strings", "token types too short", "token types are floats", "no merges", "merges are ints",
        "merge without a space", "merge with an empty half", "merge starting with a space", "merge of unknown tokens",
        "bos outside the vocabulary", "eos far outside the vocabulary", "eos is a string", "eot is negative",
        "add_bos_token is an int", "chat template is an int", "byte-level vocabulary as SPM",
    };
    for (int c = 0; c < C_COUNT; c++) {
        struct gb g = {0};
        build_corrupt(&g, (enum corrupt_case)c);
        struct loaded l = load_image(&g);
        if (c == C_SPM_OF_BPE_VOCAB) {
            /* Not corrupt: a byte-level vocabulary read as SentencePiece still loads. */
            ASSERT_MSG(l.rc == 0, "%s: %s", names[c], l.err);
        } else {
            int want = c == C_MODEL_UNKNOWN || c == C_PRE_UNKNOWN ? IFD_ERR_UNSUPPORTED : IFD_ERR_FORMAT;
            ASSERT_MSG(l.rc == want, "%s: tokenizer_load returned %d (%s), want %d", names[c], l.rc, l.err, want);
            ASSERT_MSG(strlen(l.err) > 10, "%s: no error message", names[c]);
            test_note("%-32s -> %s", names[c], l.err);
        }
        free_loaded(&l);
    }
}

/* Random byte flips in a valid image: whatever gguf_parse accepts must load or
 * fail cleanly, and whatever loads must encode anything. */
TEST(tokenizer_survives_mutated_metadata)
{
    log_set_level(LOG_LEVEL_ERROR); /* mutated keys make for many warnings */
    struct tiny_bpe *v = malloc(sizeof *v);
    ASSERT(v);
    tiny_bpe_init(v);
    struct gb g = {0};
    tiny_bpe_keys(&g, v, "gpt-2", NULL);
    kv_u32(&g, "tokenizer.ggml.bos_token_id", 1);
    size_t size;
    uint8_t *image = gb_finish(&g, &size);
    uint8_t *copy = malloc(size);
    ASSERT(copy);
    uint64_t rng = 88172645463325252ull;
    int parsed = 0, loaded = 0;
    for (int iter = 0; iter < 3000; iter++) {
        memcpy(copy, image, size);
        int flips = 1 + iter % 4;
        for (int k = 0; k < flips; k++) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            copy[rng % size] ^= (uint8_t)(1u << (rng >> 40) % 8);
        }
        struct gguf_file *f;
        char err[256];
        if (gguf_parse(&f, copy, size, err, sizeof err)) continue;
        parsed++;
        struct tokenizer *t;
        if (tokenizer_load(&t, f, err, sizeof err) == 0) {
            loaded++;
            int32_t ids[256];
            static const char *const inputs[] = {"hello world", "<|im_start|>hi<|im_end|>", "\xff\xc0\x80 x", ""};
            for (int i = 0; i < 4; i++) {
                int n = tokenizer_encode(t, inputs[i], strlen(inputs[i]), true, i & 1, ids, 256);
                ASSERT(n >= 0 && n <= 256);
                char text[4096];
                ASSERT(tokenizer_decode(t, ids, n, true, text, sizeof text) >= 0);
            }
            tokenizer_free(t);
        } else {
            ASSERT(strlen(err) > 0);
        }
        gguf_close(f);
    }
    test_note("3000 mutated images: %d parsed, %d loaded", parsed, loaded);
    free(copy);
    free(image);
    free(v);
}

/* ---- behaviours the real models do not exercise ---- */

TEST(tokenizer_tiny_bpe_semantics)
{
    struct tiny_bpe *v = malloc(sizeof *v);
    ASSERT(v);
    tiny_bpe_init(v);
    /* A duplicate text: llama.cpp maps the text to the later id. */
    v->texts[v->n] = "hello";
    v->types[v->n++] = TOK_TYPE_NORMAL;
    /* An empty control token becomes "[EMPTY_<id>]" and can be matched as such. */
    int32_t empty_id = v->n;
    v->texts[v->n] = "";
    v->types[v->n++] = TOK_TYPE_CONTROL;
    /* A merge whose result is not a token: its symbol falls back to bytes. */
    v->merges[v->n_merges++] = "x y";
    struct gb g = {0};
    tiny_bpe_keys(&g, v, "gpt-2", NULL);
    struct loaded l = load_image(&g);
    ASSERT_MSG(l.rc == 0, "%s", l.err);
    const struct tokenizer *t = l.t;
    int32_t ids[64];

    ASSERT_EQ(tokenizer_bos(t), 11); /* llama.cpp's BPE default when the file names none */
    ASSERT(!tokenizer_add_bos(t));
    ASSERT_EQ(tokenizer_eos(t), 2);
    ASSERT(tokenizer_is_eog(t, 2) && tokenizer_is_eog(t, 0)); /* eos, and <|endoftext|> by text */
    ASSERT(!tokenizer_is_eog(t, 1));

    int n = encode_small(t, "hello", true, false, ids, 64);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(ids[0], v->n - 2);

    n = encode_small(t, "hell", false, false, ids, 64);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(ids[0], tiny_id(v, "hell"));

    n = encode_small(t, " wo", false, false, ids, 64);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(ids[0], tiny_id(v, "\xc4\xa0wo"));

    n = encode_small(t, "xy", false, false, ids, 64);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(ids[0], tiny_id(v, "x"));
    ASSERT_EQ(ids[1], tiny_id(v, "y"));

    char text[64];
    snprintf(text, sizeof text, "a[EMPTY_%d]b", (int)empty_id);
    n = encode_small(t, text, false, true, ids, 64);
    ASSERT_EQ(n, 3);
    ASSERT_EQ(ids[1], empty_id);
    n = encode_small(t, text, false, false, ids, 64);
    ASSERT(n > 3);

    /* Special tokens: only with parse_special, longest first, nothing inside. */
    n = encode_small(t, "<|im_start|>hello<|im_end|>", false, true, ids, 64);
    ASSERT_EQ(n, 3);
    ASSERT(ids[0] == 1 && ids[2] == 2);
    n = encode_small(t, "<|im_start|>", false, false, ids, 64);
    ASSERT(n > 1);
    free_loaded(&l);
    free(v);
}

TEST(tokenizer_llama3_ignore_merges)
{
    struct tiny_bpe *v = malloc(sizeof *v);
    ASSERT(v);
    tiny_bpe_init(v);
    /* Tokens no merge builds: only whole-word lookup finds them. */
    static const char *const whole[] = {"123", "456", "'LL", "abc"};
    for (int i = 0; i < 4; i++) {
        v->texts[v->n] = whole[i];
        v->types[v->n++] = TOK_TYPE_NORMAL;
    }
    struct gb g = {0};
    tiny_bpe_keys(&g, v, "llama-bpe", NULL);
    kv_u32(&g, "tokenizer.ggml.bos_token_id", 1);
    struct loaded l = load_image(&g);
    ASSERT_MSG(l.rc == 0, "%s", l.err);
    int32_t ids[64];
    ASSERT(tokenizer_add_bos(l.t)); /* the llama3 family defaults to BOS */
    int n = encode_small(l.t, "abc", true, false, ids, 64);
    ASSERT_EQ(n, 2);
    ASSERT(ids[0] == 1 && ids[1] == v->n - 1);
    /* Digits go in threes, contractions are case-insensitive words. */
    n = encode_small(l.t, "1234567", false, false, ids, 64);
    ASSERT_EQ(n, 3);
    ASSERT(ids[0] == tiny_id(v, "123") && ids[1] == tiny_id(v, "456") && ids[2] == tiny_id(v, "7"));
    n = encode_small(l.t, "'LL", false, false, ids, 64);
    ASSERT_EQ(n, 1);
    free_loaded(&l);

    /* The same vocabulary under gpt-2 rules only merges: three bytes each. */
    struct gb g2 = {0};
    tiny_bpe_keys(&g2, v, "gpt-2", NULL);
    l = load_image(&g2);
    ASSERT_MSG(l.rc == 0, "%s", l.err);
    ASSERT_EQ(encode_small(l.t, "abc", false, false, ids, 64), 3);
    ASSERT_EQ(encode_small(l.t, "'LL", false, false, ids, 64), 3);
    free_loaded(&l);
    free(v);
}

/* A SentencePiece vocabulary with a space prefix, scores, missing byte
 * tokens and a Phi-3 style right-strip special. */
TEST(tokenizer_tiny_spm_semantics)
{
    static const char *const texts[] = {"<unk>", "<s>", "</s>", "<|end|>", "<0x41>", "\xe2\x96\x81", "a", "b", "c",
                                        "\xe2\x96\x81" "a", "ab", "\xe2\x96\x81" "ab", "bc", "abc"};
    static const float scores[] = {0, 0, 0, 0, 0, -1, -2, -2, -2, -3, -1, -0.5f, -0.1f, -9};
    static const int32_t types[] = {TOK_TYPE_UNKNOWN, TOK_TYPE_CONTROL, TOK_TYPE_CONTROL, TOK_TYPE_CONTROL,
                                    TOK_TYPE_BYTE, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const size_t n_tok = sizeof texts / sizeof texts[0];
    struct gb g = {0};
    kv_str(&g, "general.name", "Phi-3 tiny");
    kv_str(&g, "tokenizer.ggml.model", "llama");
    kv_arr_str(&g, "tokenizer.ggml.tokens", texts, NULL, n_tok);
    kv_arr_f32(&g, "tokenizer.ggml.scores", scores, n_tok);
    kv_arr_i32(&g, "tokenizer.ggml.token_type", types, n_tok);
    struct loaded l = load_image(&g);
    ASSERT_MSG(l.rc == 0, "%s", l.err);
    const struct tokenizer *t = l.t;
    int32_t ids[64];
    ASSERT(tokenizer_add_bos(t) && tokenizer_bos(t) == 1 && tokenizer_eos(t) == 2);
    ASSERT(tokenizer_is_eog(t, 2) && tokenizer_is_eog(t, 3));

    /* "▁abc": score order picks "bc" (-0.1) before "▁a"/"ab", leaving ▁a + bc. */
    int n = encode_small(t, "abc", true, false, ids, 64);
    ASSERT_EQ(n, 3);
    ASSERT(ids[0] == 1 && ids[1] == 9 && ids[2] == 12);
    char out[64];
    int len = tokenizer_decode(t, ids + 1, n - 1, false, out, sizeof out);
    ASSERT(len == 3 && memcmp(out, "abc", 3) == 0); /* the space prefix comes off again */

    /* Bytes without a token: A has <0x41>, the others become <unk>. */
    n = encode_small(t, "AZ", false, false, ids, 64);
    ASSERT_EQ(n, 3);
    ASSERT(ids[0] == 5 && ids[1] == 4 && ids[2] == 0);

    /* <|end|> right-strips (phi-3), and the text after it gets a space prefix. */
    n = encode_small(t, "a<|end|>   a", false, true, ids, 64);
    ASSERT_EQ(n, 3);
    ASSERT(ids[0] == 9 && ids[1] == 3 && ids[2] == 9);

    /* Rendering: control hidden unless asked, unknown likewise, bytes as bytes. */
    ASSERT_EQ(tokenizer_token_to_piece(t, 3, false, out, sizeof out), 0);
    ASSERT_EQ(tokenizer_token_to_piece(t, 3, true, out, sizeof out), 7);
    ASSERT_EQ(tokenizer_token_to_piece(t, 0, false, out, sizeof out), 0);
    ASSERT(tokenizer_token_to_piece(t, 4, false, out, sizeof out) == 1 && out[0] == 'A');
    ASSERT(tokenizer_token_to_piece(t, 11, false, out, sizeof out) == 3 && memcmp(out, " ab", 3) == 0);
    ASSERT_EQ(tokenizer_token_type(t, 4), TOK_TYPE_BYTE);
    ASSERT_EQ(tokenizer_token_type(t, 0), TOK_TYPE_UNKNOWN);
    ASSERT_EQ(tokenizer_token_type(t, 99), TOK_TYPE_UNDEFINED);
    free_loaded(&l);
}

/* ---- API conventions ---- */

TEST(tokenizer_api_conventions)
{
    struct tiny_bpe *v = malloc(sizeof *v);
    ASSERT(v);
    tiny_bpe_init(v);
    struct gb g = {0};
    tiny_bpe_keys(&g, v, "smollm", NULL);
    kv_str(&g, "tokenizer.chat_template", "{{ messages }}");
    kv_u32(&g, "tokenizer.ggml.bos_token_id", 1);
    kv_bool(&g, "tokenizer.ggml.add_bos_token", true);
    kv_bool(&g, "tokenizer.ggml.add_eos_token", true);
    struct loaded l = load_image(&g);
    ASSERT_MSG(l.rc == 0, "%s", l.err);
    const struct tokenizer *t = l.t;
    int32_t ids[8];

    /* Too small a buffer: the full count comes back, only cap ids are written. */
    ids[2] = -77;
    int n = tokenizer_encode(t, "abc def", 7, false, false, ids, 2);
    ASSERT(n > 2 && ids[2] == -77);
    ASSERT_EQ(tokenizer_encode(t, "abc def", 7, false, false, NULL, 0), n);
    ASSERT_EQ(tokenizer_encode(t, "", 0, false, false, NULL, 0), 0);
    ASSERT_EQ(tokenizer_encode(t, NULL, 0, false, false, NULL, 0), 0);
    ASSERT_EQ(tokenizer_encode(t, NULL, 3, false, false, ids, 8), IFD_ERR_INVALID);
    ASSERT_EQ(tokenizer_encode(t, "abc", 3, false, false, NULL, 8), IFD_ERR_INVALID);
    ASSERT_EQ(tokenizer_encode(t, "abc", 3, false, false, ids, -1), IFD_ERR_INVALID);
    ASSERT_EQ(tokenizer_encode(NULL, "abc", 3, false, false, ids, 8), IFD_ERR_INVALID);
    /* add_special: BOS and EOS as the metadata asks, even around nothing. */
    ASSERT_EQ(tokenizer_encode(t, "", 0, true, false, ids, 8), 2);
    ASSERT(ids[0] == 1 && ids[1] == 2);
    n = tokenizer_encode(t, "hello", 5, true, false, ids, 8);
    ASSERT(n == 3 && ids[0] == 1 && ids[1] == tiny_id(v, "hello") && ids[2] == 2);

    char buf[64];
    int32_t bad[2] = {5, v->n};
    ASSERT_EQ(tokenizer_decode(t, bad, 2, false, buf, sizeof buf), IFD_ERR_RANGE);
    ASSERT_EQ(tokenizer_token_to_piece(t, -1, false, buf, sizeof buf), IFD_ERR_RANGE);
    ASSERT_EQ(tokenizer_decode(t, NULL, 1, false, buf, sizeof buf), IFD_ERR_INVALID);
    ASSERT_EQ(tokenizer_decode(t, NULL, 0, false, NULL, 0), 0);
    int32_t hello[2] = {tiny_id(v, "hello"), tiny_id(v, "\xc4\xa0wo")};
    ASSERT_EQ(tokenizer_decode(t, hello, 2, false, NULL, 0), 8);
    ASSERT_EQ(tokenizer_decode(t, hello, 2, false, buf, 8), 8);
    ASSERT(memcmp(buf, "hello wo", 8) == 0);
    ASSERT_EQ(tokenizer_token_to_piece(t, hello[0], false, buf, 2), 5);

    /* Streaming: a 4-byte emoji split over four byte tokens comes out whole. */
    const uint8_t emoji[4] = {0xf0, 0x9f, 0x98, 0x80};
    struct detok d;
    detok_init(&d, t, false);
    for (int i = 0; i < 3; i++) ASSERT_EQ(detok_push(&d, t->byte_tok[emoji[i]], buf, sizeof buf), 0);
    ASSERT_EQ(detok_push(&d, 1, buf, 0), 0); /* a hidden control token completes nothing */
    ASSERT_EQ(detok_push(&d, t->byte_tok[emoji[3]], buf, 3), IFD_ERR_FULL);
    ASSERT_EQ(detok_push(&d, t->byte_tok[emoji[3]], buf, 4), 4);
    ASSERT(memcmp(buf, emoji, 4) == 0);
    /* An unfinished character is flushed as it is; bytes that can never
     * complete one are not held back. */
    ASSERT_EQ(detok_push(&d, t->byte_tok[0xe2], buf, sizeof buf), 0);
    ASSERT_EQ(detok_push(&d, t->byte_tok['x'], buf, sizeof buf), 2);
    ASSERT(memcmp(buf, "\xe2x", 2) == 0);
    ASSERT_EQ(detok_push(&d, t->byte_tok[0xed], buf, sizeof buf), 0);
    ASSERT_EQ(detok_push(&d, t->byte_tok[0xa0], buf, sizeof buf), 2); /* a surrogate: never valid */
    ASSERT_EQ(detok_push(&d, t->byte_tok[0xf0], buf, sizeof buf), 0);
    ASSERT_EQ(detok_flush(&d, buf, sizeof buf), 1);
    ASSERT_EQ(detok_flush(&d, buf, sizeof buf), 0);
    ASSERT_EQ(detok_push(&d, v->n + 5, buf, sizeof buf), IFD_ERR_RANGE);

    size_t tl;
    const char *tmpl = tokenizer_chat_template(t, &tl);
    ASSERT(tmpl && tl == 14 && strcmp(tmpl, "{{ messages }}") == 0);
    ASSERT(tokenizer_max_piece_len(t) >= 13);
    free_loaded(&l);
    free(v);
}
