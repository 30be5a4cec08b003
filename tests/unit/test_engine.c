/* SPDX-License-Identifier: Apache-2.0
 *
 * test_engine.c: the engine end to end on the default model: batch
 * invariance under chunked prefill and preemption, prefix caching, seeded
 * sampling, stop strings across tokens, n choices sharing blocks,
 * cancellation and refusals, decode steps padded as the CUDA graphs pad
 * them, and a randomized stress run. After each test
 * every KV block is back in the pool and the block manager's invariants hold.
 */
#include "test.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_plan.h"
#include "inferd/backend.h"
#include "inferd/engine.h"
#include "inferd/error.h"
#include "inferd/log.h"
#include "inferd/rng.h"

struct fixture {
    struct backend *be;
    struct model *m;
    struct tokenizer *tok;
    int32_t *text;      /* the teacher text, tokenized: a source of varied prompts */
    int n_text;
};

static void fx_init(struct fixture *f)
{
    char err[512];
    memset(f, 0, sizeof *f);
    log_set_level(LOG_LEVEL_WARN);
    struct backend_opts bo = { .device = "cpu", .n_threads = 2 };
    struct model_load_opts mo = { .path = test_model_path() };
    ASSERT_MSG(backend_create(&f->be, &bo, err, sizeof err) == 0, "%s", err);
    ASSERT_MSG(model_load(&f->m, f->be, &mo, err, sizeof err) == 0, "%s", err);
    ASSERT_MSG(tokenizer_load(&f->tok, f->m->gguf, err, sizeof err) == 0, "%s", err);
    char path[4096];
    size_t len;
    char *txt = test_read_file(test_data_path("model/teacher_text.txt", path, sizeof path), &len);
    f->text = malloc((len + 16) * sizeof *f->text);
    f->n_text = tokenizer_encode(f->tok, txt, len, false, false, f->text, (int)len + 16);
    ASSERT(f->n_text > 1000);
    free(txt);
}

static void fx_free(struct fixture *f)
{
    free(f->text);
    tokenizer_free(f->tok);
    model_free(f->m);
    backend_destroy(f->be);
}

static int g_sampling_threads; /* make_engine's engine_config.sampling_threads (0: the default) */

static struct engine *make_engine(struct fixture *f, int kv_blocks, int budget, int max_seqs, int max_queued,
                                  bool prefix)
{
    struct engine_config c;
    engine_config_default(&c);
    c.sampling_threads = g_sampling_threads;
    if (kv_blocks) c.kv_cache_bytes = (size_t)kv_blocks * kv_cache_block_bytes(&f->m->hp, c.block_size, KV_F16);
    if (budget) c.max_num_batched_tokens = budget;
    if (max_seqs) c.max_num_seqs = max_seqs;
    if (max_queued) c.max_queued_requests = max_queued;
    c.enable_prefix_caching = prefix;
    if (!kv_blocks) c.kv_cache_bytes = 64u << 20;
    c.max_model_len = 2048;
    struct engine *e;
    char err[512];
    ASSERT_MSG(engine_create(&e, f->m, f->tok, &c, err, sizeof err) == 0, "%s", err);
    return e;
}

/* Everything one request produced, per choice. */
struct result {
    int32_t ids[ENGINE_MAX_N][512];
    int n[ENGINE_MAX_N];
    float logprob[ENGINE_MAX_N][512]; /* of each sampled token, when requested */
    int32_t top_id[ENGINE_MAX_N][512]; /* the most likely alternative, when requested */
    char text[ENGINE_MAX_N][4096];
    size_t text_len[ENGINE_MAX_N];
    enum engine_finish finish[ENGINE_MAX_N];
    char stop[ENGINE_MAX_N][ENGINE_MAX_STOP_LEN + 1];
    int prompt_tokens, completion_tokens, cached_tokens;
    int chunks;
    bool done;
};

enum take_result { TAKE_END = 0, TAKE_CHUNK, TAKE_NOTHING };

/* Takes one chunk into res: TAKE_CHUNK, TAKE_NOTHING (timeout) or TAKE_END (stream exhausted). */
static enum take_result take(struct engine_stream *s, struct result *res, int timeout_ms)
{
    struct engine_chunk *c;
    int rc = engine_stream_next(s, &c, timeout_ms);
    if (rc == IFD_ERR_RANGE) return TAKE_END;
    if (rc) return TAKE_NOTHING;
    int k = c->choice;
    ASSERT(k >= 0 && k < ENGINE_MAX_N);
    for (int i = 0; i < c->n_tokens && res->n[k] < 512; i++) {
        if (c->logprobs) {
            res->logprob[k][res->n[k]] = c->logprobs[i].logprob;
            res->top_id[k][res->n[k]] = c->logprobs[i].n_top ? c->logprobs[i].top_ids[0] : -1;
        }
        res->ids[k][res->n[k]++] = c->token_ids[i];
    }
    if (c->text_len && res->text_len[k] + c->text_len < sizeof res->text[k]) {
        memcpy(res->text[k] + res->text_len[k], c->text, c->text_len);
        res->text_len[k] += c->text_len;
    }
    if (c->finish) res->finish[k] = c->finish;
    if (c->stop_reason) snprintf(res->stop[k], sizeof res->stop[k], "%s", c->stop_reason);
    ASSERT_MSG(c->finish != ENGINE_FINISH_ERROR, "request failed: %s", c->error);
    if (c->request_done) {
        ASSERT(!res->done);
        res->done = true;
        res->prompt_tokens = c->prompt_tokens;
        res->completion_tokens = c->completion_tokens;
        res->cached_tokens = c->cached_tokens;
    }
    res->chunks++;
    engine_chunk_free(c);
    return TAKE_CHUNK;
}

static void drain(struct engine_stream *s, struct result *res)
{
    while (take(s, res, -1)) {}
    ASSERT(res->done);
    engine_stream_release(s);
}

static struct engine_stream *submit(struct engine *e, const int32_t *prompt, int n, const struct engine_params *p)
{
    struct engine_stream *s;
    char err[512];
    int rc = engine_submit(e, prompt, n, p, NULL, NULL, &s, err, sizeof err);
    ASSERT_MSG(rc == 0, "submit: %s", err);
    return s;
}

static void greedy_params(struct engine_params *p, int max_tokens)
{
    engine_params_default(p);
    p->sampling.temperature = 0;
    p->max_tokens = max_tokens;
}

/* Runs n requests on e: request i is prompt f->text + start[i] of len[i]
 * tokens with params p (max_tokens gen[i] when gen is given), one at a time,
 * or all submitted before any is drained; results in out[i]. */
static void run_requests(struct fixture *f, struct engine *e, int n, const int *start, const int *len, const int *gen,
                         const struct engine_params *p, bool together, struct result *out)
{
    struct engine_stream **s = malloc((size_t)n * sizeof *s);
    ASSERT(s);
    struct engine_params q = *p;
    for (int i = 0; i < n; i++) {
        memset(&out[i], 0, sizeof out[i]);
        if (gen) q.max_tokens = gen[i];
        s[i] = submit(e, f->text + start[i], len[i], &q);
        if (!together) drain(s[i], &out[i]);
    }
    for (int i = 0; together && i < n; i++) drain(s[i], &out[i]);
    free(s);
}

/* got's first choice has exactly want's tokens (what), logprobs and finish reason. */
static void assert_same_output(const struct result *got, const struct result *want, const char *what)
{
    ASSERT_EQ(got->n[0], want->n[0]);
    ASSERT_MSG(memcmp(got->ids[0], want->ids[0], (size_t)want->n[0] * 4) == 0, "%s", what);
    ASSERT_MSG(memcmp(got->logprob[0], want->logprob[0], (size_t)want->n[0] * 4) == 0, "%s (logprobs)", what);
    ASSERT_MSG(memcmp(got->top_id[0], want->top_id[0], (size_t)want->n[0] * 4) == 0, "%s (top logprobs)", what);
    ASSERT_EQ(got->finish[0], want->finish[0]);
}

/* Idle, every block back, invariants intact. */
static void assert_pool_intact(struct engine *e)
{
    char err[256];
    engine_wait_idle(e);
    struct engine_stats st;
    engine_get_stats(e, &st);
    ASSERT_MSG(st.kv_blocks_used == 0, "%d KV blocks still in use", st.kv_blocks_used);
    ASSERT_MSG(engine_validate(e, err, sizeof err) == 0, "%s", err);
}

/* What the engine asked a device backend's memory plan (fake_kv_blocks_fit). */
static struct {
    int calls;
    double utilization;
    size_t block_bytes;
    int64_t min_blocks, max_blocks;
} g_fit;

/* Stands in for the CUDA backend's plan: 40 blocks, or "does not fit" below 50%. */
static int fake_kv_blocks_fit(struct backend *be, double utilization, size_t block_bytes, int64_t min_blocks,
                              int64_t max_blocks, int64_t *n_blocks, char *err, size_t errlen)
{
    (void)be;
    g_fit.calls++;
    g_fit.utilization = utilization;
    g_fit.block_bytes = block_bytes;
    g_fit.min_blocks = min_blocks;
    g_fit.max_blocks = max_blocks;
    if (utilization < 0.5) return ifd_fail(err, errlen, IFD_ERR_NOMEM, "the model does not fit (test plan)");
    *n_blocks = 40;
    return 0;
}

/* On a backend with a device memory plan, the engine sizes its pool from the
 * plan (after the workspace exists), passes one full sequence as the minimum
 * and max_num_seqs full sequences as the cap, surfaces the plan's error, and
 * an explicit --kv-cache-memory still wins. */
TEST(engine_device_memory_plan_sizes_the_pool)
{
    struct fixture f;
    fx_init(&f);
    struct backend_ops ops = *f.be->ops;
    ops.kv_blocks_fit = fake_kv_blocks_fit;
    const struct backend_ops *cpu_ops = f.be->ops;
    f.be->ops = &ops;
    struct engine_config c;
    engine_config_default(&c);
    c.max_model_len = 256;
    c.max_num_seqs = 4;
    c.gpu_memory_utilization = 0.8;
    struct engine *e;
    struct engine_stats st;
    char err[512];
    ASSERT_MSG(engine_create(&e, f.m, f.tok, &c, err, sizeof err) == 0, "%s", err);
    engine_get_stats(e, &st);
    ASSERT_EQ(st.kv_blocks_total, 40);
    ASSERT_EQ(g_fit.calls, 1);
    ASSERT_NEAR(g_fit.utilization, 0.8, 1e-9);
    ASSERT_EQ(g_fit.block_bytes, kv_cache_block_bytes(&f.m->hp, c.block_size, KV_F16));
    ASSERT_EQ(g_fit.min_blocks, 256 / 16 + 1);
    ASSERT_EQ(g_fit.max_blocks, 4 * (256 / 16));
    engine_destroy(e);
    /* one sequence (`inferd generate`): the cap still holds the minimum */
    c.max_num_seqs = 1;
    ASSERT_MSG(engine_create(&e, f.m, f.tok, &c, err, sizeof err) == 0, "%s", err);
    ASSERT_EQ(g_fit.max_blocks, g_fit.min_blocks);
    engine_destroy(e);
    c.max_num_seqs = 4;

    c.gpu_memory_utilization = 0.3;
    ASSERT_EQ(engine_create(&e, f.m, f.tok, &c, err, sizeof err), IFD_ERR_NOMEM);
    ASSERT(strstr(err, "does not fit"));

    c.kv_cache_bytes = 8 * kv_cache_block_bytes(&f.m->hp, c.block_size, KV_F16);
    ASSERT_MSG(engine_create(&e, f.m, f.tok, &c, err, sizeof err) == 0, "%s", err);
    engine_get_stats(e, &st);
    ASSERT_EQ(st.kv_blocks_total, 8);
    ASSERT_EQ(g_fit.calls, 3); /* the explicit size asked no plan */
    engine_destroy(e);
    f.be->ops = cpu_ops;
    fx_free(&f);
}

/* ---- the backend hooks a GPU backend uses, stood in for on the CPU ---- */

static struct {
    int steps, padded, rows_added;
    uint64_t last_key;
    int keys_seen;
    uint8_t *buf;
    size_t cap;
    long host_allocs, host_frees;
} g_hook;

/* Pads plain decode steps exactly as the CUDA backend does before recording
 * a graph (cuda_plan.c), then runs the padded plan on the CPU. */
static int padding_run_step(struct backend *be, const struct batch_plan *plan, int max_rows, uint64_t key,
                            void (*enqueue)(void *arg, const struct batch_plan *p), void *arg)
{
    (void)be;
    g_hook.steps++;
    if (key != g_hook.last_key) g_hook.keys_seen++, g_hook.last_key = key;
    if (!cuda_plan_graph_eligible(plan)) return 0;
    int buckets[64];
    int nb = cuda_plan_graph_buckets(max_rows, buckets, 64);
    int bucket = cuda_plan_graph_bucket(plan->n_seqs, buckets, nb);
    if (bucket < 0) return 0;
    struct cuda_graph_layout lay;
    cuda_plan_graph_layout(bucket, cuda_plan_graph_stride(plan->max_blocks, 0), &lay);
    if (lay.bytes > g_hook.cap) {
        free(g_hook.buf);
        g_hook.buf = malloc(lay.bytes);
        g_hook.cap = lay.bytes;
        ASSERT(g_hook.buf);
    }
    struct batch_plan padded;
    cuda_plan_graph_fill(plan, &lay, g_hook.buf, &padded);
    g_hook.padded++;
    g_hook.rows_added += bucket - plan->n_seqs;
    enqueue(arg, &padded);
    return 1;
}

static void *counting_host_alloc(struct backend *be, size_t n)
{
    (void)be;
    g_hook.host_allocs++;
    return malloc(n);
}

static void counting_host_free(struct backend *be, void *p)
{
    (void)be;
    g_hook.host_frees++;
    free(p);
}

/* Through the engine, with decode steps padded as for CUDA graphs: every
 * request's greedy output equals its unpadded solo run (model/llama.c's
 * run_step plumbing and the padding contract of backend.h), the step key is
 * stable, and the logits buffer comes from (and goes back to) the backend's
 * host allocator. */
TEST(engine_padded_decode_steps_keep_outputs)
{
    struct fixture f;
    fx_init(&f);
    enum { N = 11 };
    static struct result alone[N], padded[N];
    int start[N], len[N], gen[N];
    for (int i = 0; i < N; i++)
        start[i] = 50 * i, len[i] = 5 + 9 * i, gen[i] = 4 + 2 * i; /* finishing one by one: every bucket down to 1 */
    struct engine_params p;
    greedy_params(&p, 4);
    struct engine *e = make_engine(&f, 0, 0, 0, 0, false);
    run_requests(&f, e, N, start, len, gen, &p, false, alone);
    engine_destroy(e);

    struct backend_ops ops = *f.be->ops;
    const struct backend_ops *cpu_ops = f.be->ops;
    ops.run_step = padding_run_step;
    ops.host_alloc = counting_host_alloc;
    ops.host_free = counting_host_free;
    f.be->ops = &ops;
    memset(&g_hook, 0, sizeof g_hook);
    e = make_engine(&f, 0, 0, 16, 0, false);
    ASSERT_EQ(g_hook.host_allocs, 1);
    run_requests(&f, e, N, start, len, gen, &p, true, padded);
    for (int i = 0; i < N; i++) assert_same_output(&padded[i], &alone[i], "output differs when decode steps are padded");
    assert_pool_intact(e);
    engine_destroy(e);
    test_note("%d steps, %d padded decode steps, %d padding rows", g_hook.steps, g_hook.padded, g_hook.rows_added);
    ASSERT(g_hook.padded > 0 && g_hook.rows_added > 0);
    ASSERT_EQ(g_hook.keys_seen, 1);
    ASSERT_EQ(g_hook.host_frees, g_hook.host_allocs);
    f.be->ops = cpu_ops;
    free(g_hook.buf);
    fx_free(&f);
}

TEST(engine_batch_invariance_with_preemption)
{
    struct fixture f;
    fx_init(&f);
    enum { N = 32, GEN = 16 };
    static struct result alone[N], together[N];
    int start[N], len[N];
    for (int i = 0; i < N; i++) {
        start[i] = (i * 37) % (f.n_text - 200);
        len[i] = 8 + (i * 29) % 113; /* 8..120 tokens */
    }
    struct engine_params p;
    greedy_params(&p, GEN);
    struct engine *e = make_engine(&f, 0, 0, 0, 0, false);
    run_requests(&f, e, N, start, len, NULL, &p, false, alone);
    assert_pool_intact(e);
    engine_destroy(e);

    /* 24 blocks for ~170 blocks of demand, 48-token steps: chunked prefill and preemption */
    e = make_engine(&f, 24, 48, 32, 64, true);
    run_requests(&f, e, N, start, len, NULL, &p, true, together);
    for (int i = 0; i < N; i++) assert_same_output(&together[i], &alone[i], "batched output differs from its solo run");
    struct engine_stats st;
    assert_pool_intact(e);
    engine_get_stats(e, &st);
    test_note("32 requests, 24-block pool: %llu preemptions, %llu steps, peak %d blocks",
              (unsigned long long)st.preemptions, (unsigned long long)st.steps, st.kv_blocks_peak);
    ASSERT_MSG(st.preemptions > 0, "the pool was meant to force preemptions");
    ASSERT_EQ(st.finished[ENGINE_FINISH_ERROR], 0);
    engine_destroy(e);
    fx_free(&f);
}

TEST(engine_prefix_cache_reuses_shared_prefix)
{
    struct fixture f;
    fx_init(&f);
    int32_t a[1100], b[1100];
    const char *sa = " So, to sum up:", *sb = " The main lesson here is";
    memcpy(a, f.text, 1000 * 4);
    memcpy(b, f.text, 1000 * 4);
    int na = 1000 + tokenizer_encode(f.tok, sa, strlen(sa), false, false, a + 1000, 100);
    int nb = 1000 + tokenizer_encode(f.tok, sb, strlen(sb), false, false, b + 1000, 100);
    struct engine_params p;
    greedy_params(&p, 8);
    static struct result ra, rb, rb_ref;
    memset(&ra, 0, sizeof ra), memset(&rb, 0, sizeof rb), memset(&rb_ref, 0, sizeof rb_ref);

    struct engine *e = make_engine(&f, 0, 0, 0, 0, true);
    drain(submit(e, a, na, &p), &ra);
    engine_wait_idle(e);
    struct engine_stats s0, s1;
    engine_get_stats(e, &s0);
    drain(submit(e, b, nb, &p), &rb);
    engine_wait_idle(e);
    engine_get_stats(e, &s1);
    uint64_t hits = s1.prefix_hits - s0.prefix_hits, computed = s1.prompt_tokens - s0.prompt_tokens;
    test_note("second request: %d prompt tokens, %llu from the prefix cache, %llu computed", nb,
              (unsigned long long)hits, (unsigned long long)computed);
    ASSERT_EQ(hits, 992); /* 62 full 16-token blocks of the 1000-token shared prefix */
    ASSERT_EQ(computed, (uint64_t)nb - 992);
    ASSERT_EQ(rb.cached_tokens, 992);
    assert_pool_intact(e);
    engine_destroy(e);

    e = make_engine(&f, 0, 0, 0, 0, false);
    drain(submit(e, b, nb, &p), &rb_ref);
    assert_same_output(&rb, &rb_ref, "cached prefix changed the output");
    assert_pool_intact(e);
    engine_destroy(e);
    fx_free(&f);
}

TEST(engine_seeded_sampling_batch_independent)
{
    struct fixture f;
    fx_init(&f);
    struct engine_params p;
    engine_params_default(&p);
    p.sampling.temperature = 0.9f;
    p.sampling.top_p = 0.95f;
    p.sampling.seed = 1234;
    p.has_seed = true;
    p.max_tokens = 24;
    static struct result solo, batched, other[7];
    memset(&solo, 0, sizeof solo), memset(&batched, 0, sizeof batched), memset(other, 0, sizeof other);
    struct engine *e = make_engine(&f, 0, 0, 0, 0, true);
    drain(submit(e, f.text + 100, 40, &p), &solo);
    struct engine_stream *s[8];
    for (int i = 0; i < 7; i++) {
        struct engine_params q = p;
        q.sampling.seed = 77 + (uint64_t)i;
        q.sampling.temperature = 1.2f;
        s[i] = submit(e, f.text + 300 + 50 * i, 10 + 9 * i, &q);
    }
    s[7] = submit(e, f.text + 100, 40, &p);
    for (int i = 0; i < 7; i++) drain(s[i], &other[i]);
    drain(s[7], &batched);
    assert_same_output(&batched, &solo, "the same seed drew different tokens inside a batch");
    assert_pool_intact(e);
    engine_destroy(e);
    fx_free(&f);
}

/* Rows sampled on a pool of sampling threads (what a GPU host gets by
 * default) give what the engine thread alone gives: seeded top-p sampling
 * with penalties and logprobs, greedy rows, and an n = 2 request whose first
 * token forks on the engine thread. */
TEST(engine_sampling_threads_same_output)
{
    struct fixture f;
    fx_init(&f);
    enum { N = 6 };
    const int start[N] = { 0, 90, 170, 260, 350, 440 }, len[N] = { 30, 12, 50, 7, 41, 23 };
    struct engine_params p;
    engine_params_default(&p);
    p.sampling.temperature = 0.8f;
    p.sampling.top_p = 0.9f;
    p.sampling.repetition_penalty = 1.1f;
    p.sampling.seed = 99;
    p.has_seed = true;
    p.logprobs = 2;
    p.max_tokens = 20;
    static struct result alone[N], together[N], greedy_alone[N], greedy_together[N], pair;
    struct engine *e = make_engine(&f, 0, 0, 0, 0, true);
    run_requests(&f, e, N, start, len, NULL, &p, false, alone);
    struct engine_params g;
    greedy_params(&g, 16);
    run_requests(&f, e, N, start, len, NULL, &g, false, greedy_alone);
    engine_destroy(e);

    struct engine_config c;
    engine_config_default(&c);
    c.kv_cache_bytes = 64u << 20;
    c.max_model_len = 2048;
    c.sampling_threads = 3;
    char err[512];
    ASSERT_MSG(engine_create(&e, f.m, f.tok, &c, err, sizeof err) == 0, "%s", err);
    run_requests(&f, e, N, start, len, NULL, &p, true, together);
    run_requests(&f, e, N, start, len, NULL, &g, true, greedy_together);
    for (int i = 0; i < N; i++) {
        assert_same_output(&together[i], &alone[i], "sampled on the pool: different tokens");
        assert_same_output(&greedy_together[i], &greedy_alone[i], "greedy on the pool: different tokens");
    }
    g.n = 2;
    memset(&pair, 0, sizeof pair);
    drain(submit(e, f.text + start[2], len[2], &g), &pair);
    assert_same_output(&pair, &greedy_alone[2], "a forked request on the pool differs");
    ASSERT_EQ(pair.n[1], greedy_alone[2].n[0]);
    assert_pool_intact(e);
    engine_destroy(e);
    c.sampling_threads = 300;
    ASSERT_EQ(engine_create(&e, f.m, f.tok, &c, err, sizeof err), IFD_ERR_INVALID);
    ASSERT(strstr(err, "sampling_threads"));
    fx_free(&f);
}

TEST(engine_stop_strings_across_tokens)
{
    struct fixture f;
    fx_init(&f);
    const char *prompt = "Once upon a time, in a small village by the sea,";
    int32_t ids[64];
    int n = tokenizer_encode(f.tok, prompt, strlen(prompt), true, true, ids, 64);
    struct engine_params p;
    greedy_params(&p, 40);
    p.ignore_eos = true;
    static struct result full, stopped;
    memset(&full, 0, sizeof full), memset(&stopped, 0, sizeof stopped);
    struct engine *e = make_engine(&f, 0, 0, 0, 0, true);
    drain(submit(e, ids, n, &p), &full);
    /* a stop string made of the end of one token's text and the start of the next's,
     * at the first boundary from token 8 on where both pieces have two letters */
    size_t offset = 0, at = 0;
    int k = -1;
    char piece[256], next[256];
    for (int i = 0; i + 1 < full.n[0] && k < 0; i++) {
        int a = tokenizer_token_to_piece(f.tok, full.ids[0][i], false, piece, sizeof piece);
        int b = tokenizer_token_to_piece(f.tok, full.ids[0][i + 1], false, next, sizeof next);
        ASSERT(a >= 0 && b >= 0);
        offset += (size_t)a;
        if (i >= 8 && a >= 2 && b >= 2 && piece[a - 2] != ' ' && piece[a - 1] != ' ' && next[0] != ' ' && next[1] != ' ') {
            k = i;
            at = offset - 2;
        }
    }
    ASSERT(k >= 0 && at + 4 <= full.text_len[0]);
    char stop[64];
    snprintf(stop, sizeof stop, "%.4s", full.text[0] + at);
    const char *first = strstr(full.text[0], stop);
    size_t expect_len = (size_t)(first - full.text[0]);
    p.n_stop = 1;
    p.stop[0] = stop;
    drain(submit(e, ids, n, &p), &stopped);
    test_note("stop string \"%s\" spans tokens %d and %d; output stops after %zu bytes", stop, k, k + 1, expect_len);
    ASSERT_EQ(stopped.finish[0], ENGINE_FINISH_STOP);
    ASSERT_STR_EQ(stopped.stop[0], stop);
    ASSERT_EQ(stopped.text_len[0], expect_len);
    ASSERT(memcmp(stopped.text[0], full.text[0], expect_len) == 0);
    ASSERT(strstr(stopped.text[0], stop) == NULL);
    assert_pool_intact(e);
    engine_destroy(e);
    fx_free(&f);
}

TEST(engine_n_choices_share_prompt_blocks)
{
    struct fixture f;
    fx_init(&f);
    struct engine_params p;
    engine_params_default(&p);
    p.n = 4;
    p.sampling.temperature = 1.0f;
    p.sampling.seed = 7;
    p.has_seed = true;
    p.max_tokens = 8;
    p.ignore_eos = true;
    p.logprobs = 3;
    static struct result r;
    memset(&r, 0, sizeof r);
    struct engine *e = make_engine(&f, 0, 0, 0, 0, true);
    drain(submit(e, f.text, 100, &p), &r); /* 6 full blocks + 4 tokens */
    engine_wait_idle(e);
    struct engine_stats st;
    engine_get_stats(e, &st);
    test_note("n = 4 on a 100-token prompt: peak %d KV blocks (unshared would be 28)", st.kv_blocks_peak);
    /* 7 prompt blocks shared; each choice but one copies the partial 7th on its first write */
    ASSERT(st.kv_blocks_peak >= 7 && st.kv_blocks_peak <= 10);
    ASSERT_EQ(r.completion_tokens, 32);
    ASSERT_EQ(r.prompt_tokens, 100);
    int distinct = 0;
    for (int k = 0; k < 4; k++) {
        ASSERT_EQ(r.n[k], 8);
        ASSERT_EQ(r.finish[k], ENGINE_FINISH_LENGTH);
        if (k && memcmp(r.ids[k], r.ids[0], 32) != 0) distinct++;
    }
    ASSERT_MSG(distinct > 0, "four samples at temperature 1 were all identical");
    assert_pool_intact(e);
    engine_destroy(e);
    fx_free(&f);
}

/* --kv-cache-dtype q8_0: the same bytes hold ~1.9x the blocks; batching,
 * preemption and copy-on-write of shared blocks (kv_copy of Q8_0 rows) give
 * every request its solo output; a backend without the type refuses it. */
TEST(engine_q8_0_kv_cache)
{
    struct fixture f;
    fx_init(&f);
    enum { N = 8, GEN = 24 };
    struct engine_config c;
    engine_config_default(&c);
    c.kv_cache_dtype = KV_Q8_0;
    c.max_model_len = 512;
    c.max_num_batched_tokens = 64; /* chunked prefill */
    c.kv_cache_bytes = 12 * kv_cache_block_bytes(&f.m->hp, c.block_size, KV_F16); /* ~40 blocks wanted: preemptions */
    struct engine *e;
    char err[512];
    ASSERT_MSG(engine_create(&e, f.m, f.tok, &c, err, sizeof err) == 0, "%s", err);
    struct engine_stats st;
    engine_get_stats(e, &st);
    ASSERT_EQ(st.kv_blocks_total, (int)(c.kv_cache_bytes / kv_cache_block_bytes(&f.m->hp, c.block_size, KV_Q8_0)));
    ASSERT(st.kv_blocks_total >= 22); /* the bytes of 12 f16 blocks */
    static struct result alone[N], together[N], pair;
    memset(&pair, 0, sizeof pair);
    int start[N], len[N];
    for (int i = 0; i < N; i++) start[i] = 40 * i, len[i] = 20 + 12 * i;
    struct engine_params p;
    greedy_params(&p, GEN);
    run_requests(&f, e, N, start, len, NULL, &p, false, alone);
    run_requests(&f, e, N, start, len, NULL, &p, true, together);
    for (int i = 0; i < N; i++) assert_same_output(&together[i], &alone[i], "q8_0 cache: batched output differs");
    /* two greedy choices share the prompt's blocks and copy the partial last one: both equal the solo run */
    p.n = 2;
    drain(submit(e, f.text + start[3], len[3], &p), &pair);
    ASSERT_EQ(pair.n[1], alone[3].n[0]);
    ASSERT_MSG(memcmp(pair.ids[1], alone[3].ids[0], (size_t)alone[3].n[0] * 4) == 0, "copied q8_0 block differs");
    assert_same_output(&pair, &alone[3], "first of two choices differs");
    assert_pool_intact(e);
    engine_get_stats(e, &st);
    test_note("q8_0 cache: %d blocks in the bytes of 12 f16 blocks, %llu preemptions", st.kv_blocks_total,
              (unsigned long long)st.preemptions);
    ASSERT_MSG(st.preemptions > 0, "the pool was meant to force preemptions");
    engine_destroy(e);

    struct backend_ops ops = *f.be->ops;
    const struct backend_ops *cpu_ops = f.be->ops;
    ops.kv_dtype_supported = NULL; /* a backend that stores f16 only */
    f.be->ops = &ops;
    ASSERT_EQ(engine_create(&e, f.m, f.tok, &c, err, sizeof err), IFD_ERR_UNSUPPORTED);
    ASSERT_MSG(strstr(err, "q8_0") && strstr(err, "f16 only"), "%s", err);
    f.be->ops = cpu_ops;
    fx_free(&f);
}

TEST(engine_cancel_queue_full_and_refusals)
{
    struct fixture f;
    fx_init(&f);
    char err[512];
    struct engine_params p;
    greedy_params(&p, 400);
    p.ignore_eos = true;
    struct engine *e = make_engine(&f, 0, 0, 1, 2, true);
    /* cancel mid-stream: the stream ends with CANCELLED, blocks come back */
    static struct result r;
    memset(&r, 0, sizeof r);
    struct engine_stream *s = submit(e, f.text, 50, &p);
    while (r.chunks < 3) take(s, &r, -1);
    engine_stream_cancel(s);
    drain(s, &r);
    ASSERT_EQ(r.finish[0], ENGINE_FINISH_CANCELLED);
    ASSERT(r.n[0] < 400);
    assert_pool_intact(e);
    /* queue bound: one running (max_num_seqs 1), two queued, the next refused */
    memset(&r, 0, sizeof r);
    struct engine_stream *run = submit(e, f.text, 30, &p), *q1, *q2, *q3;
    while (r.chunks < 1) take(run, &r, -1);
    q1 = submit(e, f.text + 10, 20, &p);
    q2 = submit(e, f.text + 20, 20, &p);
    ASSERT_EQ(engine_submit(e, f.text, 20, &p, NULL, NULL, &q3, err, sizeof err), IFD_ERR_FULL);
    ASSERT(strstr(err, "queue is full"));
    engine_stream_release(run); /* unread and unfinished: cancelled */
    engine_stream_release(q1);
    engine_stream_release(q2);
    assert_pool_intact(e);
    /* refusals that name the problem */
    int32_t big[2100];
    for (int i = 0; i < 2100; i++) big[i] = f.text[i % f.n_text];
    ASSERT_EQ(engine_submit(e, big, 2048, &p, NULL, NULL, &q3, err, sizeof err), IFD_ERR_RANGE);
    ASSERT(strstr(err, "context holds 2048"));
    struct engine_params bad = p;
    bad.n = 0;
    ASSERT_EQ(engine_submit(e, f.text, 5, &bad, NULL, NULL, &q3, err, sizeof err), IFD_ERR_INVALID);
    bad = p;
    bad.logprobs = 21;
    ASSERT_EQ(engine_submit(e, f.text, 5, &bad, NULL, NULL, &q3, err, sizeof err), IFD_ERR_INVALID);
    int32_t oob[2] = { 1, 1 << 20 };
    ASSERT_EQ(engine_submit(e, oob, 2, &p, NULL, NULL, &q3, err, sizeof err), IFD_ERR_INVALID);
    ASSERT_EQ(engine_submit(e, oob, 0, &p, NULL, NULL, &q3, err, sizeof err), IFD_ERR_INVALID);
    /* destroying the engine with requests in flight ends their streams cleanly */
    struct engine_stream *inflight[2]; /* two: the queue bound is two */
    for (int i = 0; i < 2; i++) inflight[i] = submit(e, f.text + 40 * i, 30, &p);
    engine_destroy(e);
    for (int i = 0; i < 2; i++) {
        static struct result rr;
        memset(&rr, 0, sizeof rr);
        drain(inflight[i], &rr);
        ASSERT_EQ(rr.finish[0], ENGINE_FINISH_CANCELLED);
    }
    fx_free(&f);
}

/* Consumer state of one stress request. */
struct stress_req {
    struct engine_stream *s;
    struct result r;
    int cancel_after; /* chunks before cancelling, or -1 */
    bool open;
};

static void random_params(struct rng *g, struct engine_params *p, char stops[2][8])
{
    engine_params_default(p);
    p->sampling.temperature = (float)(rng_next(g) % 4) * 0.4f;
    p->sampling.top_k = (int)(rng_next(g) % 3) * 20;
    p->sampling.top_p = rng_next(g) % 2 ? 0.9f : 1.0f;
    p->sampling.min_p = rng_next(g) % 3 == 0 ? 0.05f : 0;
    p->sampling.repetition_penalty = rng_next(g) % 4 == 0 ? 1.1f : 1.0f;
    p->sampling.presence_penalty = rng_next(g) % 4 == 0 ? 0.5f : 0;
    p->sampling.frequency_penalty = rng_next(g) % 4 == 0 ? 0.3f : 0;
    p->has_seed = rng_next(g) % 2;
    p->sampling.seed = rng_next(g);
    p->n = 1 + (int)(rng_next(g) % 8 == 0 ? rng_next(g) % 4 : 0);
    p->max_tokens = 1 + (int)(rng_next(g) % 24);
    p->min_tokens = rng_next(g) % 5 == 0 ? (int)(rng_next(g) % (uint64_t)p->max_tokens) : 0;
    p->logprobs = rng_next(g) % 4 == 0 ? (int)(rng_next(g) % 6) : -1;
    p->priority = (int)(rng_next(g) % 3);
    p->ignore_eos = rng_next(g) % 3 == 0;
    if (rng_next(g) % 3 == 0) {
        snprintf(stops[0], 8, "%c", "aeiou .,"[rng_next(g) % 8]);
        snprintf(stops[1], 8, "the");
        p->n_stop = 1 + (int)(rng_next(g) % 2);
        p->stop[0] = stops[0];
        p->stop[1] = stops[1];
    }
}

/* Stream notifications wake the stress consumer instead of it spinning. */
static pthread_mutex_t g_note_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_note_cv = PTHREAD_COND_INITIALIZER;
static uint64_t g_notes;

static void on_note(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_note_mu);
    g_notes++;
    pthread_cond_signal(&g_note_cv);
    pthread_mutex_unlock(&g_note_mu);
}

static void run_stress(int n_requests, int max_prompt, uint64_t seed, int sampling_threads)
{
    struct fixture f;
    fx_init(&f);
    g_sampling_threads = sampling_threads;
    struct engine *e = make_engine(&f, 40, 64, 16, 32, true);
    g_sampling_threads = 0;
    struct rng g;
    rng_seed(&g, seed);
    struct stress_req *reqs = calloc((size_t)n_requests, sizeof *reqs);
    static char stops[4096][2][8];
    int submitted = 0, open = 0, cancelled = 0, refused = 0;
    uint64_t seen_notes = 0;
    while (submitted < n_requests || open > 0) {
        pthread_mutex_lock(&g_note_mu); /* sleep until some stream has news */
        while (g_notes == seen_notes && open > 0 && (open == 24 || submitted == n_requests)) pthread_cond_wait(&g_note_cv, &g_note_mu);
        seen_notes = g_notes;
        pthread_mutex_unlock(&g_note_mu);
        while (submitted < n_requests && open < 24) {
            struct stress_req *q = &reqs[submitted];
            struct engine_params p;
            random_params(&g, &p, stops[submitted % 4096]);
            int len = 1 + (int)(rng_next(&g) % (uint64_t)max_prompt), start = (int)(rng_next(&g) % (uint64_t)(f.n_text - len));
            char err[256];
            int rc = engine_submit(e, f.text + start, len, &p, on_note, NULL, &q->s, err, sizeof err);
            submitted++;
            if (rc == IFD_ERR_FULL) {
                refused++;
                continue;
            }
            ASSERT_MSG(rc == 0, "submit %d: %s", submitted, err);
            q->cancel_after = rng_next(&g) % 6 == 0 ? (int)(rng_next(&g) % 4) : -1;
            q->open = true;
            open++;
        }
        for (int i = 0; i < submitted; i++) {
            struct stress_req *q = &reqs[i];
            if (!q->open) continue;
            if (q->cancel_after >= 0 && q->r.chunks >= q->cancel_after) {
                if (rng_next(&g) % 2) engine_stream_cancel(q->s);
                else { /* a consumer that just goes away */
                    engine_stream_release(q->s);
                    q->open = false;
                    open--;
                    cancelled++;
                    continue;
                }
                q->cancel_after = -1;
                cancelled++;
            }
            enum take_result t;
            while ((t = take(q->s, &q->r, 0)) == TAKE_CHUNK) {} /* everything queued: no new note may come */
            if (t == TAKE_END) {
                ASSERT(q->r.done);
                engine_stream_release(q->s);
                q->open = false;
                open--;
            }
        }
    }
    struct engine_stats st;
    assert_pool_intact(e);
    engine_get_stats(e, &st);
    test_note("%d requests (%d refused by the queue bound, %d cancelled): %llu steps, %llu preemptions, %llu generated tokens",
              n_requests, refused, cancelled, (unsigned long long)st.steps, (unsigned long long)st.preemptions,
              (unsigned long long)st.generation_tokens);
    ASSERT_EQ(st.finished[ENGINE_FINISH_ERROR], 0);
    ASSERT(st.preemptions > 0);
    free(reqs);
    engine_destroy(e);
    fx_free(&f);
}

/* the short run samples on 3 threads (a GPU host's default path), the long one on the engine thread */
TEST(engine_stress_random) { run_stress(150, 100, 2024, 3); }
TEST(engine_stress_random_long) { run_stress(1500, 300, 7, 0); }
