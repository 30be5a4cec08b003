/* SPDX-License-Identifier: Apache-2.0
 *
 * test_model.c: the Llama forward pass end to end.
 *  - corrupt model files (tests/data/model_corrupt) fail with named errors;
 *  - splitting a sequence into different chunks gives bit-identical logits;
 *  - teacher-forced top-1 agreement and greedy decoding against llama.cpp on
 *    the same file (goldens made by scripts/gen_model_golden.py with
 *    llama-cpp-python).
 *
 * How close is close enough. SmolLM2-135M with Q4_1 weights and 8-bit
 * activations is numerically chaotic: any change of float summation order
 * flips some activation roundings and moves logits by ~0.15 on average. So two
 * correct implementations agree on top-1 only where the top-2 gap exceeds that
 * noise. Measured on the teacher text (1000 positions): llama.cpp's flash and
 * default attention paths agree on 96.7%; an exact float64 forward pass of the
 * same weights agrees with llama.cpp on 96.2%; inferd's own scalar and AVX2
 * kernels agree on ~96%. Every such disagreement sits where llama.cpp's top-2
 * gap is below 0.34. The tests therefore require inferd to be at least as
 * consistent with llama.cpp as llama.cpp is with itself (its flash-attention
 * path, recorded in the goldens), and every divergence to be a near-tie:
 * llama.cpp's own top-2 gap below NEAR_TIE.
 */
#include "test.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#include "inferd/backend.h"
#include "inferd/model.h"
#include "inferd/sampler.h"
#include "inferd/seq_runner.h"

#define NEAR_TIE 0.5 /* logits; disagreements between correct implementations were all below 0.34 */

static struct backend *cpu(void)
{
    struct backend *be;
    char err[256];
    struct backend_opts o = { .device = "cpu", .n_threads = 2 };
    if (backend_create(&be, &o, err, sizeof err)) test_fail(__FILE__, __LINE__, "backend: %s", err);
    return be;
}

static struct model *load(struct backend *be, const char *path)
{
    struct model *m;
    char err[512];
    struct model_load_opts o = { .path = path };
    if (model_load(&m, be, &o, err, sizeof err)) test_fail(__FILE__, __LINE__, "model_load(%s): %s", path, err);
    return m;
}

/* Runs tokens through one sequence in chunks of `chunk` with a KV cache of
 * dtype, writing logits of every position into logits (n, n_vocab). */
static void run_all_logits_kv(const struct model *m, const int32_t *tokens, int n, int chunk, enum kv_dtype dtype,
                              float *logits)
{
    struct kv_cache *kv;
    struct model_workspace *ws;
    int n_blocks = (n + 15) / 16;
    ASSERT_OK(kv_cache_init(&kv, m, n_blocks, 16, dtype));
    ASSERT_OK(model_workspace_init(&ws, m, chunk, chunk));
    int32_t *table = malloc((size_t)n_blocks * 4), *pos = malloc((size_t)chunk * 4), *rows = malloc((size_t)chunk * 4);
    for (int i = 0; i < n_blocks; i++) table[i] = n_blocks - 1 - i; /* reversed: exercises the block table */
    for (int done = 0; done < n; done += chunk) {
        int c = n - done < chunk ? n - done : chunk;
        int32_t slots[4096];
        for (int i = 0; i < c; i++) {
            pos[i] = done + i;
            slots[i] = table[(done + i) / 16] * 16 + (done + i) % 16;
            rows[i] = i;
        }
        int32_t qs[2] = { 0, c }, ctx = done + c;
        struct batch_plan plan = { .n_tokens = c, .tokens = tokens + done, .positions = pos, .slot_mapping = slots,
                                   .n_seqs = 1, .query_start = qs, .context_len = &ctx, .block_tables = table,
                                   .max_blocks = n_blocks, .n_logits = c, .logits_index = rows };
        ASSERT_OK(model_forward(m, ws, kv, &plan, logits + (size_t)done * m->hp.n_vocab));
    }
    free(table), free(pos), free(rows);
    model_workspace_free(m, ws);
    kv_cache_free(kv);
}

static void run_all_logits(const struct model *m, const int32_t *tokens, int n, int chunk, float *logits)
{
    run_all_logits_kv(m, tokens, n, chunk, KV_F16, logits);
}

TEST(model_rejects_bad_hparams)
{
    char path[4096], list[4096];
    size_t len;
    struct backend *be = cpu();
    char *expected = test_read_file(test_data_path("model_corrupt/EXPECTED", list, sizeof list), &len);
    int n = 0;
    for (char *line = strtok(expected, "\n"); line; line = strtok(NULL, "\n"), n++) {
        char *tab = strchr(line, '\t');
        ASSERT(tab);
        *tab = 0;
        char rel[512], err[512] = "";
        snprintf(rel, sizeof rel, "model_corrupt/%s", line);
        struct model *m = NULL;
        struct model_load_opts o = { .path = test_data_path(rel, path, sizeof path) };
        int rc = model_load(&m, be, &o, err, sizeof err);
        ASSERT_MSG(rc != 0 && m == NULL, "%s: loaded although it is broken", line);
        ASSERT_MSG(strstr(err, tab + 1) != NULL, "%s: error \"%s\" does not mention \"%s\"", line, err, tab + 1);
    }
    ASSERT(n >= 9);
    /* the valid tiny file loads and produces finite logits */
    struct model *m = load(be, test_data_path("model_corrupt/valid_tiny_llama.gguf", path, sizeof path));
    int32_t toks[5] = { 1, 2, 3, 4, 5 };
    float *logits = malloc(5 * (size_t)m->hp.n_vocab * 4);
    run_all_logits(m, toks, 5, 5, logits);
    for (int i = 0; i < 5 * m->hp.n_vocab; i++) ASSERT(isfinite(logits[i]));
    free(logits);
    model_free(m);
    free(expected);
    backend_destroy(be);
}

TEST(model_batch_split_invariance)
{
    struct backend *be = cpu();
    struct model *m = load(be, test_model_path());
    enum { N = 45 };
    int32_t toks[N];
    for (int i = 0; i < N; i++) toks[i] = (i * 7919 + 13) % m->hp.n_vocab;
    size_t V = (size_t)m->hp.n_vocab;
    float *a = malloc(N * V * 4), *b = malloc(N * V * 4), *c = malloc(N * V * 4);
    run_all_logits(m, toks, N, N, a);
    run_all_logits(m, toks, N, 7, b);
    run_all_logits(m, toks, N, 1, c);
    /* per-token arithmetic does not depend on what else is in the batch: bit-identical */
    ASSERT_MSG(memcmp(a, b, N * V * 4) == 0, "chunks of 7 differ from one chunk");
    ASSERT_MSG(memcmp(a, c, N * V * 4) == 0, "token-by-token differs from one chunk");
    free(a), free(b), free(c);
    model_free(m);
    backend_destroy(be);
}

static json_t *load_json(const char *rel)
{
    char path[4096];
    json_error_t e;
    json_t *j = json_load_file(test_data_path(rel, path, sizeof path), 0, &e);
    if (!j) test_fail(__FILE__, __LINE__, "%s: %s", rel, e.text);
    return j;
}

static int32_t *json_ids(json_t *arr, int *n)
{
    *n = (int)json_array_size(arr);
    int32_t *ids = malloc((size_t)(*n ? *n : 1) * 4);
    for (int i = 0; i < *n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(arr, (size_t)i));
    return ids;
}

static double top2_gap(json_t *top_row)
{
    return json_real_value(json_array_get(json_array_get(top_row, 0), 1)) -
           json_real_value(json_array_get(json_array_get(top_row, 1), 1));
}

TEST(model_logits_match_llama_cpp)
{
    json_t *g = load_json("model/teacher_golden.json");
    int n, n_fa;
    int32_t *ids = json_ids(json_object_get(g, "ids"), &n);
    int32_t *fa_top1 = json_ids(json_object_get(g, "flash_attn_top1"), &n_fa);
    json_t *top = json_object_get(g, "top_logits");
    ASSERT(n >= 1000 && (int)json_array_size(top) == n && n_fa == n);
    struct backend *be = cpu();
    struct model *m = load(be, test_model_path());
    size_t V = (size_t)m->hp.n_vocab;
    float *logits = malloc((size_t)n * V * 4);
    run_all_logits(m, ids, n, 256, logits);
    int agree = 0, fa_agree = 0;
    double max_diff = 0, sum_diff = 0, worst_gap = 0;
    for (int i = 0; i < n; i++) {
        const float *row = logits + (size_t)i * V;
        json_t *ref = json_array_get(top, (size_t)i);
        int ref_top1 = (int)json_integer_value(json_array_get(json_array_get(ref, 0), 0));
        fa_agree += fa_top1[i] == ref_top1;
        if (sampler_argmax(row, (int)V) == ref_top1) {
            agree++;
        } else {
            double gap = top2_gap(ref);
            if (gap > worst_gap) worst_gap = gap;
            ASSERT_MSG(gap < NEAR_TIE, "position %d: top-1 differs where llama.cpp is sure (gap %.3f)", i, gap);
        }
        for (size_t k = 0; k < json_array_size(ref); k++) {
            json_t *e = json_array_get(ref, k);
            double d = fabs(row[json_integer_value(json_array_get(e, 0))] - json_real_value(json_array_get(e, 1)));
            sum_diff += d;
            if (d > max_diff) max_diff = d;
        }
    }
    double rate = (double)agree / n, fa_rate = (double)fa_agree / n;
    test_note("teacher-forced top-1 agreement with llama.cpp: %d/%d = %.1f%% (llama.cpp's flash-attention path: %.1f%%); "
              "largest llama.cpp top-2 gap at a disagreement %.3f",
              agree, n, 100 * rate, 100 * fa_rate, worst_gap);
    test_note("|logit diff| over llama.cpp's top-10 logits: max %.4f, mean %.4f", max_diff, sum_diff / (n * 10.0));
    ASSERT_MSG(rate >= fa_rate - 0.02 && rate >= 0.95, "agreement %.3f is below llama.cpp's self-agreement %.3f", rate,
               fa_rate);
    ASSERT_MSG(max_diff < 2.0, "max |logit diff| %.4f is more than rounding noise", max_diff);
    free(logits), free(ids), free(fa_top1);
    model_free(m);
    backend_destroy(be);
    json_decref(g);
}

/* The q8_0 KV cache (--kv-cache-dtype q8_0) on the teacher text: top-1
 * agreement with llama.cpp (f16 cache) and with inferd's own f16 cache. */
TEST(model_q8_0_kv_cache_stays_close)
{
    json_t *g = load_json("model/teacher_golden.json");
    int n;
    int32_t *ids = json_ids(json_object_get(g, "ids"), &n);
    json_t *top = json_object_get(g, "top_logits");
    struct backend *be = cpu();
    struct model *m = load(be, test_model_path());
    size_t V = (size_t)m->hp.n_vocab;
    float *lf = malloc((size_t)n * V * 4), *lq = malloc((size_t)n * V * 4);
    run_all_logits_kv(m, ids, n, 256, KV_F16, lf);
    run_all_logits_kv(m, ids, n, 256, KV_Q8_0, lq);
    int vs_ref = 0, vs_f16 = 0;
    double max_diff = 0;
    for (int i = 0; i < n; i++) {
        int ref_top1 = (int)json_integer_value(json_array_get(json_array_get(json_array_get(top, (size_t)i), 0), 0));
        int q = sampler_argmax(lq + (size_t)i * V, (int)V);
        vs_ref += q == ref_top1;
        vs_f16 += q == sampler_argmax(lf + (size_t)i * V, (int)V);
        for (size_t k = 0; k < V; k++) {
            double d = fabs((double)lq[(size_t)i * V + k] - lf[(size_t)i * V + k]);
            if (d > max_diff) max_diff = d;
        }
    }
    test_note("q8_0 KV cache: top-1 agreement %.1f%% with llama.cpp (f16 cache), %.1f%% with inferd's f16 cache; "
              "max |logit diff| vs f16 cache %.3f", 100.0 * vs_ref / n, 100.0 * vs_f16 / n, max_diff);
    ASSERT_MSG(vs_ref >= n * 93 / 100, "q8_0 cache agrees with llama.cpp on only %d/%d", vs_ref, n);
    ASSERT_MSG(vs_f16 >= n * 93 / 100, "q8_0 cache agrees with the f16 cache on only %d/%d", vs_f16, n);
    free(lf), free(lq), free(ids);
    model_free(m);
    backend_destroy(be);
    json_decref(g);
}

TEST(model_greedy_matches_llama_cpp)
{
    json_t *g = load_json("model/greedy_golden.json");
    json_t *prompts = json_object_get(g, "prompts");
    struct backend *be = cpu();
    struct model *m = load(be, test_model_path());
    int identical = 0, fa_identical = 0, n_prompts = (int)json_array_size(prompts), total_match = 0;
    for (int p = 0; p < n_prompts; p++) {
        json_t *pr = json_array_get(prompts, (size_t)p);
        int np, ng;
        int32_t *prompt = json_ids(json_object_get(pr, "prompt_ids"), &np);
        int32_t *want = json_ids(json_object_get(pr, "greedy_ids"), &ng);
        json_t *gaps = json_object_get(pr, "top2_gap");
        fa_identical += json_integer_value(json_object_get(pr, "flash_attn_first_diff")) < 0;
        struct seq_runner sr;
        ASSERT_OK(seq_runner_init(&sr, m, np + ng, 64, KV_F16));
        ASSERT_OK(seq_runner_feed(&sr, prompt, np));
        int first_diff = -1;
        for (int i = 0; i < ng; i++) {
            int32_t id = sampler_argmax(sr.logits, m->hp.n_vocab);
            if (id != want[i]) {
                first_diff = i;
                break;
            }
            ASSERT_OK(seq_runner_feed(&sr, &id, 1));
        }
        total_match += first_diff < 0 ? ng : first_diff;
        if (first_diff < 0) {
            identical++;
        } else {
            double gap = json_real_value(json_array_get(gaps, (size_t)first_diff));
            test_note("prompt %d: identical for %d tokens, then a near-tie (llama.cpp top-2 gap %.4f)", p, first_diff, gap);
            ASSERT_MSG(gap < NEAR_TIE, "prompt %d diverges at token %d where llama.cpp is sure (gap %.4f)", p,
                       first_diff, gap);
        }
        seq_runner_free(&sr);
        free(prompt), free(want);
    }
    test_note("greedy: %d of %d prompts identical to llama.cpp for 64 tokens (llama.cpp's flash-attention path: %d); "
              "%d of %d tokens before the first divergence",
              identical, n_prompts, fa_identical, total_match, n_prompts * 64);
    ASSERT(n_prompts == 10);
    ASSERT_MSG(identical >= fa_identical, "fewer identical prompts (%d) than llama.cpp's own paths share (%d)",
               identical, fa_identical);
    model_free(m);
    backend_destroy(be);
    json_decref(g);
}

TEST(model_dummy_preset_runs)
{
    struct backend *be = cpu();
    struct model *m;
    char err[512];
    struct model_load_opts o = { .dummy = 1, .dummy_preset = "tiny", .dummy_type = QT_Q4_1, .seed = 5 };
    ASSERT_MSG(model_load(&m, be, &o, err, sizeof err) == 0, "%s", err);
    ASSERT_EQ(m->hp.n_layer, 2);
    int32_t toks[20];
    for (int i = 0; i < 20; i++) toks[i] = i * 13 % m->hp.n_vocab;
    float *a = malloc(20 * (size_t)m->hp.n_vocab * 4);
    run_all_logits(m, toks, 20, 8, a);
    for (int i = 0; i < 20 * m->hp.n_vocab; i++) ASSERT(isfinite(a[i]));
    model_free(m);
    /* same seed, same weights, same logits; unknown presets are refused */
    ASSERT_OK(model_load(&m, be, &o, err, sizeof err));
    float *b = malloc(20 * (size_t)m->hp.n_vocab * 4);
    run_all_logits(m, toks, 20, 20, b);
    ASSERT(memcmp(a, b, 20 * (size_t)m->hp.n_vocab * 4) == 0);
    model_free(m);
    o.dummy_preset = "nope";
    ASSERT_EQ(model_load(&m, be, &o, err, sizeof err), IFD_ERR_INVALID);
    free(a), free(b);
    backend_destroy(be);
}
