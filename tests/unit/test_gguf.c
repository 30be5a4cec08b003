/* SPDX-License-Identifier: Apache-2.0
 *
 * test_gguf.c: the GGUF reader on the real default model, on the hand-made
 * corpus of corrupt files (tests/data/gguf_corrupt, made by
 * scripts/gen_corrupt_gguf.py: each must fail with the expected message),
 * and on every truncation and many byte flips of a valid file (must never
 * crash; ASan/UBSan builds check the memory side).
 */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>

#include "inferd/gguf.h"
#include "inferd/quant.h"
#include "inferd/rng.h"

TEST(gguf_parses_default_model)
{
    char err[512] = "";
    struct gguf_file *f;
    ASSERT_MSG(gguf_open(&f, test_model_path(), 0, err, sizeof err) == 0, "open failed: %s", err);
    ASSERT_EQ(f->version, 3);
    ASSERT_EQ(f->n_tensors, 272);
    ASSERT_EQ(f->n_kv, 33);
    struct gguf_str arch;
    ASSERT_OK(gguf_get_str(f, "general.architecture", &arch));
    ASSERT(gguf_str_eq(arch, "llama"));
    uint32_t blocks;
    ASSERT_OK(gguf_get_u32(f, "llama.block_count", &blocks));
    ASSERT_EQ(blocks, 30);
    float eps;
    ASSERT_OK(gguf_get_f32(f, "llama.attention.layer_norm_rms_epsilon", &eps));
    ASSERT_NEAR(eps, 1e-5, 1e-9);
    const struct gguf_array *tokens;
    ASSERT_OK(gguf_get_arr(f, "tokenizer.ggml.tokens", &tokens));
    ASSERT_EQ(tokens->type, GGUF_VT_STRING);
    ASSERT_EQ(tokens->count, 49152);
    ASSERT(gguf_str_eq(tokens->strs[1], "<|im_start|>"));
    ASSERT_EQ(gguf_get_u32(f, "no.such.key", &blocks), IFD_ERR_NOT_FOUND);
    ASSERT_EQ(gguf_get_u32(f, "general.architecture", &blocks), IFD_ERR_FORMAT);
    const struct gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    ASSERT(emb);
    ASSERT_EQ(emb->type, QT_Q8_0);
    ASSERT_EQ(emb->ne[0], 576);
    ASSERT_EQ(emb->ne[1], 49152);
    ASSERT_EQ(emb->nbytes, 576 / 32 * 34 * 49152);
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        const struct gguf_tensor *t = &f->tensors[i];
        ASSERT((const uint8_t *)t->data + t->nbytes <= f->base + f->size);
        ASSERT(((const uint8_t *)t->data - f->base) % f->alignment == 0);
    }
    gguf_close(f);
}

/* Checks every value of valid_small.gguf, which uses every metadata type. */
static void check_valid_small(const struct gguf_file *f)
{
    uint64_t u;
    int64_t i;
    float x;
    bool b;
    struct gguf_str s;
    ASSERT_OK(gguf_get_u64(f, "t.u8", &u)); ASSERT_EQ(u, 200);
    ASSERT_OK(gguf_get_i64(f, "t.i8", &i)); ASSERT_EQ(i, -100);
    ASSERT_OK(gguf_get_u64(f, "t.u16", &u)); ASSERT_EQ(u, 60000);
    ASSERT_OK(gguf_get_i64(f, "t.i16", &i)); ASSERT_EQ(i, -30000);
    ASSERT_OK(gguf_get_u64(f, "t.u32", &u)); ASSERT_EQ(u, 4000000000u);
    ASSERT_OK(gguf_get_i64(f, "t.i32", &i)); ASSERT_EQ(i, -2000000000);
    ASSERT_OK(gguf_get_f32(f, "t.f32", &x)); ASSERT_NEAR(x, 1.5, 0);
    ASSERT_OK(gguf_get_bool(f, "t.bool", &b)); ASSERT(b);
    ASSERT_OK(gguf_get_str(f, "t.str", &s)); ASSERT(gguf_str_eq(s, "h\xc3\xa9llo"));
    ASSERT_OK(gguf_get_u64(f, "t.u64", &u)); ASSERT(u == 9223372036854775813ull);
    ASSERT_OK(gguf_get_i64(f, "t.i64", &i)); ASSERT(i == -4611686018427387904ll);
    ASSERT_OK(gguf_get_f32(f, "t.f64", &x)); ASSERT_NEAR(x, 2.25, 0);
    ASSERT_EQ(gguf_get_u32(f, "t.u64", (uint32_t *)&u), IFD_ERR_FORMAT); /* does not fit */
    ASSERT_EQ(gguf_get_u64(f, "t.i8", &u), IFD_ERR_FORMAT);               /* negative */
    const struct gguf_array *a;
    ASSERT_OK(gguf_get_arr(f, "t.arr_u32", &a));
    ASSERT_EQ(a->count, 3); ASSERT_EQ(gguf_arr_i64(a, 2), 3);
    ASSERT_OK(gguf_get_arr(f, "t.arr_str", &a));
    ASSERT_EQ(a->count, 3); ASSERT(gguf_str_eq(a->strs[1], "bc")); ASSERT_EQ(a->strs[2].len, 0);
    ASSERT_OK(gguf_get_arr(f, "t.arr_nested", &a));
    ASSERT_EQ(a->type, GGUF_VT_ARRAY); ASSERT_EQ(a->count, 2);
    ASSERT_EQ(a->items[0].v.arr.type, GGUF_VT_INT16); ASSERT_EQ(gguf_arr_i64(&a->items[0].v.arr, 0), -1);
    ASSERT_NEAR(gguf_arr_f64(&a->items[1].v.arr, 0), 0.5, 0);
    ASSERT_EQ(f->n_tensors, 2);
    const struct gguf_tensor *t = gguf_find_tensor(f, "b.weight");
    ASSERT(t); ASSERT_EQ(t->type, QT_Q4_0); ASSERT_EQ(t->nbytes, 36);
}

TEST(gguf_rejects_corrupt_corpus)
{
    char path[4096], list[4096];
    size_t len;
    char *expected = test_read_file(test_data_path("gguf_corrupt/EXPECTED", list, sizeof list), &len);
    int n_cases = 0;
    for (char *line = strtok(expected, "\n"); line; line = strtok(NULL, "\n")) {
        char *tab = strchr(line, '\t');
        ASSERT(tab);
        *tab = 0;
        char rel[512], err[512] = "";
        snprintf(rel, sizeof rel, "gguf_corrupt/%s", line);
        struct gguf_file *f = NULL;
        int rc = gguf_open(&f, test_data_path(rel, path, sizeof path), 0, err, sizeof err);
        ASSERT_MSG(rc == IFD_ERR_FORMAT || rc == IFD_ERR_UNSUPPORTED, "%s: expected a format error, got %d (%s)", line,
                   rc, err);
        ASSERT(f == NULL);
        ASSERT_MSG(strstr(err, tab + 1) != NULL, "%s: error \"%s\" does not mention \"%s\"", line, err, tab + 1);
        n_cases++;
    }
    free(expected);
    ASSERT(n_cases >= 25);
    struct gguf_file *f;
    char err[512] = "";
    ASSERT_MSG(gguf_open(&f, test_data_path("gguf_corrupt/valid_small.gguf", path, sizeof path), 0, err, sizeof err) == 0,
               "valid_small: %s", err);
    check_valid_small(f);
    gguf_close(f);
}

TEST(gguf_rejects_every_truncation)
{
    char path[4096], err[512];
    size_t len;
    char *img = test_read_file(test_data_path("gguf_corrupt/valid_small.gguf", path, sizeof path), &len);
    struct gguf_file *f;
    for (size_t n = 0; n < len; n++) {
        /* a copy of exactly n bytes, so ASan sees any read past the end */
        char *cut = malloc(n ? n : 1);
        memcpy(cut, img, n);
        int rc = gguf_parse(&f, cut, n, err, sizeof err);
        ASSERT_MSG(rc == IFD_ERR_FORMAT, "truncation at %zu: rc %d", n, rc);
        free(cut);
    }
    /* random byte flips must parse or fail, never crash or leak */
    struct rng r;
    rng_seed(&r, 42);
    int ok = 0;
    for (int i = 0; i < 20000; i++) {
        char *mut = malloc(len);
        memcpy(mut, img, len);
        for (int k = 0; k < 1 + (int)(rng_next(&r) % 4); k++) mut[rng_next(&r) % len] = (char)rng_next(&r);
        if (gguf_parse(&f, mut, len, err, sizeof err) == 0) {
            ok++;
            gguf_close(f);
        }
        free(mut);
    }
    test_note("byte-flip trials: %d of 20000 still parsed", ok);
    free(img);
}
