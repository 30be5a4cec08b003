/* SPDX-License-Identifier: Apache-2.0
 *
 * model_check.c: whole-model checks of the CUDA backend, on dummy weights
 * (the GPU host has no network and no model files):
 *  - graphs: decode steps replayed from recorded CUDA graphs against the
 *    same steps run eagerly, at two padded batch sizes;
 *  - greedy equality: the same dummy model on the CPU and the CUDA backend,
 *    5 random prompts, 32 greedy tokens each. A divergence passes only as a
 *    near-tie: where the CPU's margin between its token and the GPU's token
 *    is below 5x the largest logit difference between the backends at that
 *    step (the two are not bit-identical: see README.md);
 *  - benchmark: decode (batch 1 and 64) and prefill (512-token chunk)
 *    through model_forward on the GPU, the HBM roofline of decode (weight
 *    bytes per token over the measured device-to-device copy bandwidth), and
 *    the backend's matmul against a bare cuBLAS bf16 GEMM on the same shape.
 *    The CUDA runtime and cuBLAS are used directly here only to measure.
 *
 * Layer: tests/gpu.
 */
#include "gpu_check.h"

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_plan.h"
#include "inferd/error.h"
#include "inferd/model.h"
#include "inferd/quant.h"
#include "inferd_kernels.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define BLOCK 16

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static enum qtype parse_type(const char *name)
{
    for (int t = 0; t < QT_COUNT; t++) {
        const struct qtype_info *ti = qtype_get((uint32_t)t);
        if (ti && ti->weight_ok && !strcasecmp(ti->name, name)) return (enum qtype)t;
    }
    return QT_COUNT;
}

/* A "preset" ending in .gguf is a model file (the GPU host's cut model), loaded as it is. */
static int is_gguf_path(const char *preset)
{
    size_t n = strlen(preset);
    return n > 5 && !strcmp(preset + n - 5, ".gguf");
}

static int load(struct backend *be, const char *preset, enum qtype t, struct model **m)
{
    char err[256];
    struct model_load_opts o = { .dummy = 1, .dummy_preset = preset, .dummy_type = t, .seed = 42 };
    if (is_gguf_path(preset)) o = (struct model_load_opts){ .path = preset };
    int rc = model_load(m, be, &o, err, sizeof err);
    if (rc) fprintf(stderr, "model_load(%s, %s): %s\n", preset, qtype_name(t), err);
    return rc;
}

/* A batch plan over n_seqs sequences; sequence s owns blocks [s * per_seq, (s + 1) * per_seq). */
struct step {
    int32_t *tokens, *pos, *slots, *qs, *ctx, *tables, *logits_idx;
    int per_seq;
    struct batch_plan p;
};

static void step_init(struct step *st, int max_tokens, int max_seqs, int per_seq)
{
    st->tokens = calloc((size_t)max_tokens, 4);
    st->pos = calloc((size_t)max_tokens, 4);
    st->slots = calloc((size_t)max_tokens, 4);
    st->qs = calloc((size_t)max_seqs + 1, 4);
    st->ctx = calloc((size_t)max_seqs, 4);
    st->logits_idx = calloc((size_t)max_seqs, 4);
    st->tables = calloc((size_t)max_seqs * per_seq, 4);
    st->per_seq = per_seq;
    for (int i = 0; i < max_seqs * per_seq; i++) st->tables[i] = i;
}

static void step_free(struct step *st)
{
    free(st->tokens);
    free(st->pos);
    free(st->slots);
    free(st->qs);
    free(st->ctx);
    free(st->logits_idx);
    free(st->tables);
}

/* Sequence s gets q_len[s] query tokens starting at position start[s]; logits for each sequence's last row. */
static void step_plan(struct step *st, int n_seqs, const int *start, const int *q_len)
{
    int n = 0;
    st->qs[0] = 0;
    for (int s = 0; s < n_seqs; s++) {
        for (int r = 0; r < q_len[s]; r++, n++) {
            st->pos[n] = start[s] + r;
            st->slots[n] = st->tables[s * st->per_seq + st->pos[n] / BLOCK] * BLOCK + st->pos[n] % BLOCK;
        }
        st->qs[s + 1] = n;
        st->ctx[s] = start[s] + q_len[s];
        st->logits_idx[s] = n - 1;
    }
    st->p = (struct batch_plan){ .n_tokens = n, .tokens = st->tokens, .positions = st->pos, .slot_mapping = st->slots,
                                 .n_seqs = n_seqs, .query_start = st->qs, .context_len = st->ctx,
                                 .block_tables = st->tables, .max_blocks = st->per_seq, .n_logits = n_seqs,
                                 .logits_index = st->logits_idx };
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Largest |got - ref| over V logits into *maxd (NaN if any is NaN); returns it relative to rms(ref). */
static double logit_diff(const float *ref, const float *got, int V, double *maxd)
{
    double m = 0, ss = 0;
    for (int i = 0; i < V; i++) {
        double d = fabs((double)ref[i] - got[i]);
        m = d > m || isnan(d) ? d : m;
        ss += (double)ref[i] * ref[i];
    }
    *maxd = m;
    return m / (sqrt(ss / V) + 1e-30);
}

struct runner {
    struct model *m;
    struct model_workspace *ws;
    struct kv_cache *kv;
};

static int runner_open(struct backend *be, const char *preset, enum qtype t, int max_tokens, int max_seqs, int blocks,
                       struct runner *r)
{
    memset(r, 0, sizeof *r);
    int rc = load(be, preset, t, &r->m);
    if (!rc) rc = model_workspace_init(&r->ws, r->m, max_tokens, max_seqs);
    if (!rc) rc = kv_cache_init(&r->kv, r->m, blocks, BLOCK, KV_F16);
    return rc;
}

static void runner_close(struct runner *r)
{
    if (!r->m) return;
    kv_cache_free(r->kv);
    model_workspace_free(r->m, r->ws);
    model_free(r->m);
}

/* ---- greedy equality ---- */

int gc_model_greedy(struct gc *g, const char *preset, const char *type, int n_prompts, int n_gen)
{
    char shape[600];
    snprintf(shape, sizeof shape, "%s %s, %d prompts x %d tokens", preset, type, n_prompts, n_gen);
    enum qtype t = is_gguf_path(preset) ? QT_F32 : parse_type(type); /* a file has its own types */
    const int lens[] = { 7, 33, 64, 100, 130 }, max_len = 130;
    int per_seq = (max_len + n_gen + BLOCK - 1) / BLOCK;
    struct runner rc_, rg;
    int rc = t == QT_COUNT ? IFD_ERR_INVALID : runner_open(g->cpu, preset, t, max_len, 1, per_seq, &rc_);
    if (!rc) rc = runner_open(g->gpu, preset, t, max_len, 1, per_seq, &rg);
    if (rc) {
        gc_record(g, "greedy", shape, 0, "setup failed: %s", ifd_strerror(rc));
        return rc;
    }
    int V = rc_.m->hp.n_vocab, equal = 0, total = 0, near_ties = 0, failed = 0;
    float *lc = malloc((size_t)V * 4), *lg = malloc((size_t)V * 4);
    double worst_rel = 0;
    struct step sc, sg;
    step_init(&sc, max_len, 1, per_seq);
    step_init(&sg, max_len, 1, per_seq);
    for (int p = 0; p < n_prompts && !failed; p++) {
        int len = lens[p % 5], start = 0, q = len, diverged = 0;
        for (int i = 0; i < len; i++) sc.tokens[i] = sg.tokens[i] = (int32_t)(rng_next(&g->rng) % (uint64_t)V);
        for (int k = 0; k < n_gen && !failed; k++) {
            step_plan(&sc, 1, &start, &q);
            step_plan(&sg, 1, &start, &q);
            int e1 = model_forward(rc_.m, rc_.ws, rc_.kv, &sc.p, lc), e2 = model_forward(rg.m, rg.ws, rg.kv, &sg.p, lg);
            if (e1 || e2) {
                gc_record(g, "greedy", shape, 0, "forward failed: cpu %d, cuda %d", e1, e2);
                failed = 1;
                break;
            }
            double maxd, rel = logit_diff(lc, lg, V, &maxd);
            if (rel > worst_rel || isnan(rel)) worst_rel = rel;
            int tc = argmax(lc, V), tg = argmax(lg, V);
            total++;
            if (!diverged && tc == tg) equal++;
            if (!diverged && tc != tg) {
                diverged = 1;
                double margin = (double)lc[tc] - lc[tg];
                if (margin < 5 * maxd && isfinite(maxd)) {
                    near_ties++;
                    printf("     greedy prompt %d diverges at token %d: cpu %d vs cuda %d, cpu margin %.3g < 5 x "
                           "max|dlogit| %.3g (near-tie)\n", p, k, tc, tg, margin, maxd);
                } else {
                    failed = 1;
                    printf("     greedy prompt %d diverges at token %d: cpu %d vs cuda %d, cpu margin %.3g, max|dlogit| "
                           "%.3g\n", p, k, tc, tg, margin, maxd);
                }
            }
            /* each backend follows its own greedy path */
            start += q;
            q = 1;
            sc.tokens[0] = tc;
            sg.tokens[0] = tg;
        }
    }
    if (!failed)
        gc_record(g, "greedy", shape, 1, "%d/%d tokens equal before any divergence, %d near-tie divergences, "
                  "max|dlogit|/rms %.3g", equal, total, near_ties, worst_rel);
    else
        gc_record(g, "greedy", shape, 0, "%d/%d tokens equal; a divergence was not a near-tie (max|dlogit|/rms %.3g)",
                  equal, total, worst_rel);
    free(lc);
    free(lg);
    step_free(&sc);
    step_free(&sg);
    runner_close(&rc_);
    runner_close(&rg);
    return failed;
}

/* ---- CUDA graphs: replayed decode steps against eager ones ---- */

/* Prompts of lens[s] tokens for sequences 0..n-1 of r, in one step. */
static int prefill_all(struct runner *r, struct step *st, int n, const int *lens, float *logits)
{
    int start[64] = { 0 };
    step_plan(st, n, start, lens);
    for (int i = 0; i < st->p.n_tokens; i++) st->tokens[i] = (int32_t)((i * 131 + 3) % r->m->hp.n_vocab);
    return model_forward(r->m, r->ws, r->kv, &st->p, logits);
}

/* The same dummy model twice on the GPU: one runner decodes through recorded
 * graphs, the other eagerly, batch sizes 3 then 5 (buckets 4 and 8), 16
 * steps each, from the same prompts. Each step's logits must agree to a
 * relative 1e-3 (the graph's attention plan is the one for the longest
 * context, so split sums differ) and the graph runner must have replayed. */
int gc_model_graphs(struct gc *g, const char *preset, const char *type)
{
    char shape[96];
    snprintf(shape, sizeof shape, "%s %s, batches 3 and 5 x 16 steps", preset, type);
    enum qtype t = parse_type(type);
    enum { MAXS = 5, STEPS = 16 };
    const int lens[MAXS] = { 9, 40, 17, 70, 3 };
    int per_seq = (70 + 2 * STEPS + BLOCK - 1) / BLOCK;
    struct runner ra, rb;
    memset(&rb, 0, sizeof rb);
    int rc = t == QT_COUNT ? IFD_ERR_INVALID : runner_open(g->gpu, preset, t, 160, 16, MAXS * per_seq, &ra);
    if (!rc) rc = runner_open(g->gpu, preset, t, 160, 16, MAXS * per_seq, &rb);
    if (rc) {
        gc_record(g, "graphs", shape, 0, "setup failed: %s", ifd_strerror(rc));
        runner_close(&ra);
        runner_close(&rb);
        return rc;
    }
    int V = ra.m->hp.n_vocab;
    float *la = malloc((size_t)MAXS * V * 4), *lb = malloc((size_t)MAXS * V * 4);
    struct step sa, sb;
    step_init(&sa, 160, MAXS, per_seq);
    step_init(&sb, 160, MAXS, per_seq);
    cuda_backend_set_graphs(g->gpu, 0);
    int failed = prefill_all(&ra, &sa, MAXS, lens, la) || prefill_all(&rb, &sb, MAXS, lens, lb);
    struct cuda_graph_stats before = cuda_backend_graph_stats(g->gpu);
    double worst = 0;
    int steps = 0, argmax_diff = 0;
    int ctx[MAXS];
    for (int s = 0; s < MAXS; s++) ctx[s] = lens[s];
    for (int k = 0; k < 2 * STEPS && !failed; k++) {
        int n = k < STEPS ? 3 : 5, q[MAXS];
        for (int s = 0; s < n; s++) {
            q[s] = 1;
            sa.tokens[s] = sb.tokens[s] = (int32_t)((k * 7 + s * 13 + 1) % V);
        }
        step_plan(&sa, n, ctx, q);
        step_plan(&sb, n, ctx, q);
        cuda_backend_set_graphs(g->gpu, 1);
        int e1 = model_forward(ra.m, ra.ws, ra.kv, &sa.p, la);
        cuda_backend_set_graphs(g->gpu, 0);
        int e2 = model_forward(rb.m, rb.ws, rb.kv, &sb.p, lb);
        if (e1 || e2) {
            gc_record(g, "graphs", shape, 0, "forward failed at step %d: graph %d, eager %d", k, e1, e2);
            failed = 1;
            break;
        }
        for (int s = 0; s < n; s++) {
            const float *a = la + (size_t)s * V, *b = lb + (size_t)s * V;
            double maxd, rel = logit_diff(b, a, V, &maxd);
            if (rel > worst || isnan(rel)) worst = rel;
            argmax_diff += argmax(a, V) != argmax(b, V);
            ctx[s]++;
        }
        steps++;
    }
    cuda_backend_set_graphs(g->gpu, 1);
    struct cuda_graph_stats after = cuda_backend_graph_stats(g->gpu);
    long captures = after.captures - before.captures, replays = after.replays - before.replays;
    long failures = after.failures - before.failures;
    if (!failed) {
        /* per bucket: one warm-up, one recording, then replays */
        int ok = worst < 1e-3 && !isnan(worst) && captures == 2 && replays == 2 * (STEPS - 2) && failures == 0;
        gc_record(g, "graphs", shape, ok,
                  "%d steps: max|dlogit|/rms graph vs eager %.3g (limit 1e-3), argmax differs in %d rows; "
                  "%ld recorded, %ld replayed, %ld failed (want 2, %d, 0)", steps, worst, argmax_diff, captures,
                  replays, failures, 2 * (STEPS - 2));
    }
    free(la);
    free(lb);
    step_free(&sa);
    step_free(&sb);
    runner_close(&ra);
    runner_close(&rb);
    return failed;
}

/* ---- benchmark ---- */

static double median(double *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v[n / 2];
}

/* Device-to-device copy bandwidth (read + write bytes per second) over a 2 GiB buffer. */
static double d2d_bandwidth(void)
{
    size_t bytes = (size_t)1 << 31;
    void *a = NULL, *b = NULL;
    if (cudaMalloc(&a, bytes) || cudaMalloc(&b, bytes)) {
        cudaFree(a);
        cudaGetLastError();
        return 0;
    }
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    cudaDeviceSynchronize();
    double t[5];
    for (int i = 0; i < 5; i++) {
        double t0 = now_s();
        cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
        cudaDeviceSynchronize();
        t[i] = now_s() - t0;
    }
    cudaFree(a);
    cudaFree(b);
    return 2.0 * (double)bytes / median(t, 5);
}

/* Seconds per forward of n_seqs sequences with q_len rows each at context depth `depth` (median of reps). */
static double time_forward(struct runner *r, struct step *st, int n_seqs, int q_len, int depth, int reps, float *logits)
{
    int start[64], q[64];
    for (int s = 0; s < n_seqs; s++) start[s] = depth, q[s] = q_len;
    step_plan(st, n_seqs, start, q);
    for (int i = 0; i < st->p.n_tokens; i++) st->tokens[i] = (int32_t)(i * 7919 % r->m->hp.n_vocab);
    if (model_forward(r->m, r->ws, r->kv, &st->p, logits)) return -1; /* warm-up (and first-use scratch) */
    double t[32];
    reps = reps > 32 ? 32 : reps;
    for (int i = 0; i < reps; i++) {
        double t0 = now_s();
        if (model_forward(r->m, r->ws, r->kv, &st->p, logits)) return -1;
        t[i] = now_s() - t0;
    }
    return median(t, reps);
}

/* Copies of a `bytes` weight to cycle through so that none is still in the
 * 50 MB L2 when it is read again: 256 MB of them, at least one, at most cap. */
static int l2_copies(size_t bytes, int cap)
{
    size_t n = ((size_t)256 << 20) / bytes + 1;
    return n > (size_t)cap ? cap : (int)n;
}

/* bench/matmul64: the backend's matmul at n = 64 (what a batch-64 decode
 * step runs: bf16 activations into cuBLAS on the resident bf16 weights) on
 * each Llama-3-8B decode matrix, with its weight bytes per second against
 * the copy bandwidth; then how much of the batch-64 step the matmuls of 32
 * layers and the head are (the rest: attention over 64 contexts, the small
 * kernels, the host). Gate and up are timed as one 28,672-row matrix. Small
 * matrices cycle through copies so that none is still in L2 when it is read
 * again; R calls are queued between two syncs, so a line is the matmul and
 * its launch, not a sync round trip. */
static void bench_matmul64(struct gc *g, double bw, double t_step64, FILE *out)
{
    static const struct {
        const char *name;
        int n_in, n_out, per_step;
    } shapes[] = {
        { "qkv 4096->6144", 4096, 6144, 32 },       { "o 4096->4096", 4096, 4096, 32 },
        { "gate+up 4096->28672", 4096, 28672, 32 }, { "down 14336->4096", 14336, 4096, 32 },
        { "head 4096->128256", 4096, 128256, 1 },
    };
    enum { N = 64, R = 20, MAX_COPIES = 8 };
    struct backend *be = g->gpu;
    double total = 0;
    int ok = 1;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const int k = shapes[i].n_in, m = shapes[i].n_out;
        size_t wb = (size_t)m * k * 2;
        const int copies = l2_copies(wb, MAX_COPIES);
        uint16_t *hw = malloc(wb);
        struct be_weight w[MAX_COPIES];
        int n_w = 0;
        if (hw) {
            memset(hw, 0x3c, wb); /* bf16 0x3c3c = 0.0115: cuBLAS's speed does not depend on the values */
            for (; n_w < copies; n_w++)
                if (be->ops->weight_prepare(be, &w[n_w], QT_BF16, k, m, hw, 0)) break;
        }
        free(hw);
        float *x = be->ops->alloc(be, (size_t)N * k * 4), *y = be->ops->alloc(be, (size_t)N * m * 4);
        double t = -1;
        if (n_w > 0 && x && y && !be->ops->reserve(be, N, &w[0])) {
            struct be_matmul mm = { .x = x, .n = N, .n_w = 1, .w = { &w[0] }, .y = { y } };
            be->ops->matmul(be, &mm); /* warm-up: first-use scratch */
            double v[5];
            int rc = be->ops->sync(be);
            for (int rep = 0; rep < 5 && !rc; rep++) {
                double t0 = now_s();
                for (int c = 0; c < R; c++) {
                    mm.w[0] = &w[c % n_w];
                    be->ops->matmul(be, &mm);
                }
                rc = be->ops->sync(be);
                v[rep] = (now_s() - t0) / R;
            }
            if (!rc) t = median(v, 5);
        }
        be->ops->release(be, x);
        be->ops->release(be, y);
        for (int c = 0; c < n_w; c++) be->ops->weight_release(be, &w[c]);
        gc_record(g, "bench/matmul64", shapes[i].name, t > 0, "%.1f us, %.0f GB/s of weights = %.0f%% of copy bandwidth",
                  t * 1e6, (double)wb / t * 1e-9, 100 * (double)wb / t / bw);
        if (t <= 0) ok = 0;
        total += shapes[i].per_step * t;
    }
    if (!ok || t_step64 <= 0) return;
    gc_record(g, "bench/matmul64", "llama3-8b decode step of 64", 1,
              "matmuls alone %.2f ms of the %.2f ms step (%.0f%%); the rest is attention over 64 contexts, the other "
              "kernels and the host",
              total * 1e3, t_step64 * 1e3, 100 * total / t_step64);
    if (out) fprintf(out, "metric\tdecode64_matmul_ms\t%.3f\n", total * 1e3);
}

/* The backend's matmul vs a bare cuBLAS bf16 GEMM on (n x k) * (m x k)^T. */
static void gemm_vs_cublas(struct gc *g, int m, int k, int n, FILE *out)
{
    struct backend *be = g->gpu;
    size_t wb = (size_t)m * k * 2;
    uint16_t *hw = malloc(wb);
    for (size_t i = 0; i < (size_t)m * k; i++) hw[i] = f32_to_bf16((rng_uniform(&g->rng) - 0.5f) * 0.05f);
    struct be_weight w;
    if (be->ops->weight_prepare(be, &w, QT_BF16, k, m, hw, 0)) {
        free(hw);
        return;
    }
    float *x = be->ops->alloc(be, (size_t)n * k * 4), *y = be->ops->alloc(be, (size_t)n * m * 4);
    uint16_t *xb = be->ops->alloc(be, (size_t)n * k * 2);
    be->ops->reserve(be, n, &w);
    struct be_matmul mm = { .x = x, .n = n, .n_w = 1, .w = { &w }, .y = { y } };
    double t[10];
    be->ops->matmul(be, &mm);
    be->ops->sync(be);
    for (int i = 0; i < 10; i++) {
        double t0 = now_s();
        be->ops->matmul(be, &mm);
        be->ops->sync(be);
        t[i] = now_s() - t0;
    }
    double t_op = median(t, 10);
    cublasHandle_t h;
    cublasCreate(&h);
    const float alpha = 1, beta = 0;
    for (int i = 0; i < 11; i++) {
        double t0 = now_s();
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &alpha, w.data, CUDA_R_16BF, k, xb, CUDA_R_16BF, k, &beta, y,
                     CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        cudaDeviceSynchronize();
        if (i) t[i - 1] = now_s() - t0;
    }
    cublasDestroy(h);
    double t_ref = median(t, 10), flop = 2.0 * m * (double)k * n;
    char shape[96];
    snprintf(shape, sizeof shape, "%dx%d x n=%d bf16", m, k, n);
    gc_record(g, "bench/gemm", shape, t_op > 0 && t_ref / t_op >= 0.5,
              "backend %.1f TFLOP/s, bare cuBLAS %.1f TFLOP/s (%.0f%%)", flop / t_op * 1e-12, flop / t_ref * 1e-12,
              100 * t_ref / t_op);
    if (out) fprintf(out, "metric\tgemm_%dx%dx%d_pct_of_cublas\t%.1f\n", m, k, n, 100 * t_ref / t_op);
    be->ops->release(be, x);
    be->ops->release(be, y);
    be->ops->release(be, xb);
    be->ops->weight_release(be, &w);
    free(hw);
}

/* One decode-step matrix of the model: rows x row length, and whether the
 * fused SwiGLU reads a second (up) matrix of the same shape. */
struct gemv_shape {
    const char *name;
    int64_t n_in, n_out;
    int up;
    int per_step;    /* launches in one Llama-3-8B decode step (32 layers); 0: shown, not counted */
    int64_t kv_rows; /* > 0: Q with K and V of kv_rows each, in one ik_gemv_multi launch */
    int after_norm;  /* its input is an RMSNorm's output (Q/K/V, gate+up) */
};

/* What bench/gemv times on a shape: the production kernel, or one of
 * gemv.cu's experiments beside what it would replace. */
enum gemv_variant {
    GEMV_PRODUCTION,
    GEMV_HALF_ROWS,          /* ik_gemv_half_rows, whatever the row count */
    GEMV_NORM_THEN_PRODUCTION, /* ik_rms_norm, then the production kernel: what a layer runs now */
    GEMV_FUSED_NORM,         /* ik_gemv_rms_norm */
};

struct gemv_bufs {
    float *x, *y, *norm_w, *xn; /* activations (up to 14,336), outputs (up to 128,256), norm weights, normed x */
};

static void gemv_bufs_free(struct gemv_bufs *b)
{
    cudaFree(b->x);
    cudaFree(b->y);
    cudaFree(b->norm_w);
    cudaFree(b->xn);
}

/* One batch-1 launch (two for GEMV_NORM_THEN_PRODUCTION) of `variant` on the
 * matrices of sh stacked at m (Q, K, V; or gate then up). */
static void launch_gemv(const struct gemv_shape *sh, enum qtype t, enum gemv_variant variant, const uint8_t *m,
                        const struct gemv_bufs *b)
{
    size_t rb = qtype_row_bytes(t, sh->n_in), q_bytes = rb * (size_t)sh->n_out, kv_bytes = rb * (size_t)sh->kv_rows;
    const void *ws[3] = { m, m + q_bytes, m + q_bytes + kv_bytes };
    const int64_t rows[3] = { sh->n_out, sh->kv_rows, sh->kv_rows };
    float *ys[3] = { b->y, b->y + sh->n_out, b->y + sh->n_out + sh->kv_rows };
    int n_w = sh->kv_rows ? 3 : 1;
    const void *up = sh->up ? m + q_bytes : NULL;
    const float *x = b->x;
    switch (variant) {
    case GEMV_HALF_ROWS:
        ik_gemv_half_rows(ws, rows, ys, n_w, up, (int)t, x, sh->n_in, 0, NULL);
        return;
    case GEMV_FUSED_NORM:
        ik_gemv_rms_norm(ws, rows, ys, n_w, up, (int)t, x, b->norm_w, 1e-5f, sh->n_in, 0, NULL);
        return;
    case GEMV_NORM_THEN_PRODUCTION:
        ik_rms_norm(b->x, b->norm_w, b->xn, 1, (int)sh->n_in, 1e-5f, NULL);
        x = b->xn;
        break;
    case GEMV_PRODUCTION: break;
    }
    if (up) ik_gemv(m, up, (int)t, x, 1, sh->n_in, sh->n_out, b->y, 0, NULL);
    else ik_gemv_multi(ws, rows, ys, n_w, (int)t, x, 1, sh->n_in, 0, NULL);
}

/* Seconds per launch_gemv at batch 1 on `shape`, cycling through enough
 * copies of the weights that none is still in the 50 MB L2 when it is read
 * again. */
static double time_gemv(const struct gemv_shape *sh, enum qtype t, enum gemv_variant variant, const struct gemv_bufs *b)
{
    size_t bytes = qtype_row_bytes(t, sh->n_in) * (size_t)(sh->n_out + 2 * sh->kv_rows) * (sh->up ? 2 : 1);
    const int copies = l2_copies(bytes, 64);
    void *w[64] = { 0 };
    int n_w = 0;
    for (; n_w < copies; n_w++) {
        if (cudaMalloc(&w[n_w], bytes)) break;
        cudaMemset(w[n_w], 0x3c, bytes); /* bf16 0x3c3c = 0.0115: finite for every type */
    }
    double t_s = -1;
    if (n_w > 0) {
        const int reps = 40;
        double v[5];
        for (int k = 0; k < 5; k++) {
            cudaDeviceSynchronize();
            double t0 = now_s();
            for (int i = 0; i < reps; i++) launch_gemv(sh, t, variant, w[i % n_w], b);
            cudaDeviceSynchronize();
            v[k] = (now_s() - t0) / reps;
        }
        t_s = cudaGetLastError() ? -1 : median(v, 5);
    }
    for (int i = 0; i < n_w; i++) cudaFree(w[i]);
    return t_s;
}

/* bench/gemv-half and bench/gemv-norm: gemv.cu's two-warps-per-row kernel
 * and its folded-norm experiment against the production path, on one decode
 * shape. The production path is the two-warps kernel itself for matrices of
 * up to 8,192 rows (1.00x there): the line says whether it would pay on the
 * larger ones too. */
static void bench_gemv_experiments(struct gc *g, const struct gemv_shape *sh, enum qtype t, const char *shape,
                                   double t_prod, double bytes, double bw, const struct gemv_bufs *b)
{
    if (!sh->per_step || (t != QT_BF16 && t != QT_F16) || sh->n_in % 16) return;
    double th = time_gemv(sh, t, GEMV_HALF_ROWS, b);
    gc_record(g, "bench/gemv-half", shape, th > 0, "%.1f us = %.0f%% of copy bandwidth, %.2fx the production path",
              th * 1e6, 100 * bytes / th / bw, t_prod / th);
    if (!sh->after_norm) return;
    double tn = time_gemv(sh, t, GEMV_NORM_THEN_PRODUCTION, b), tf = time_gemv(sh, t, GEMV_FUSED_NORM, b);
    gc_record(g, "bench/gemv-norm", shape, tn > 0 && tf > 0,
              "norm folded in: %.1f us; rms_norm then GEMV: %.1f us (%.2fx), launched one by one", tf * 1e6,
              tn * 1e6, tn / tf);
}

/* The batch-1 GEMV kernel alone on Llama-3-8B's decode matrices: its HBM
 * bandwidth per shape, and how much of a decode step the matrices of 32
 * layers and the output head account for (the rest is every other kernel,
 * launch gaps and the host). */
static double bench_gemv(struct gc *g, enum qtype t, double bw, double t_step, FILE *out)
{
    static const struct gemv_shape shapes[] = {
        /* k,v alone: what one launch per matrix cost before Q, K and V shared one */
        { "k,v alone 4096->1024", 4096, 1024, 0, 0, 0, 0 },
        { "qkv 4096->4096+2x1024", 4096, 4096, 0, 32, 1024, 1 }, { "o 4096->4096", 4096, 4096, 0, 32, 0, 0 },
        { "gate+up 4096->2x14336", 4096, 14336, 1, 32, 0, 1 },   { "down 14336->4096", 14336, 4096, 0, 32, 0, 0 },
        { "head 4096->128256", 4096, 128256, 0, 1, 0, 1 },
    };
    struct gemv_bufs b = { 0 };
    if (cudaMalloc((void **)&b.x, 14336 * 4) || cudaMalloc((void **)&b.y, 128256 * 4) ||
        cudaMalloc((void **)&b.norm_w, 14336 * 4) || cudaMalloc((void **)&b.xn, 14336 * 4)) {
        gc_record(g, "bench/gemv", qtype_name(t), 0, "cannot allocate activations");
        gemv_bufs_free(&b);
        return -1;
    }
    cudaMemset(b.x, 0x3c, 14336 * 4); /* finite, nonzero: the norm divides by the rms */
    cudaMemset(b.norm_w, 0x3c, 14336 * 4);
    double total = 0;
    int ok = 1;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const struct gemv_shape *sh = &shapes[i];
        double ts = time_gemv(sh, t, GEMV_PRODUCTION, &b);
        char shape[96];
        snprintf(shape, sizeof shape, "%s %s n=1", qtype_name(t), sh->name);
        if (ts <= 0) {
            gc_record(g, "bench/gemv", shape, 0, "the kernel failed");
            ok = 0;
            continue;
        }
        double bytes = (double)qtype_row_bytes(t, sh->n_in) * (double)(sh->n_out + 2 * sh->kv_rows) * (sh->up ? 2 : 1);
        gc_record(g, "bench/gemv", shape, 1, "%.1f us, %.0f GB/s = %.0f%% of copy bandwidth", ts * 1e6,
                  bytes / ts * 1e-9, 100 * bytes / ts / bw);
        total += ts * sh->per_step;
        bench_gemv_experiments(g, sh, t, shape, ts, bytes, bw, &b);
    }
    if (ok)
        gc_record(g, "bench/gemv", "llama3-8b decode step", 1,
                  "GEMVs alone %.2f ms of the %.2f ms step (%.0f%%); the rest is other kernels, gaps and the host",
                  total * 1e3, t_step * 1e3, 100 * total / t_step);
    if (out && ok) fprintf(out, "metric\tdecode1_gemv_ms\t%.3f\n", total * 1e3);
    gemv_bufs_free(&b);
    return ok ? total : -1;
}

/* ---- the other kernels of a decode step, each timed inside a CUDA graph ---- */

/* One launch of a kernel under test on stream s; returns a CUDA error. */
typedef int (*graph_op)(void *arg, cudaStream_t s);

/* GPU seconds per launch of op when a CUDA graph replays `reps` of them back
 * to back: the kernel plus the gap a graph node costs, what a recorded decode
 * step pays (launching one by one would time the host instead). */
static double time_in_graph(graph_op op, void *arg, int reps)
{
    cudaStream_t s;
    if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking)) return -1;
    double t = -1;
    cudaGraph_t gr;
    if (cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal) == cudaSuccess) {
        int rc = 0;
        for (int i = 0; i < reps && !rc; i++) rc = op(arg, s);
        cudaError_t e = cudaStreamEndCapture(s, &gr);
        cudaGraphExec_t ex;
        if (!rc && e == cudaSuccess && cudaGraphInstantiate(&ex, gr, 0) == cudaSuccess) {
            double v[5];
            int bad = cudaGraphLaunch(ex, s) || cudaStreamSynchronize(s); /* warm-up */
            for (int k = 0; k < 5 && !bad; k++) {
                double t0 = now_s();
                bad = cudaGraphLaunch(ex, s) || cudaStreamSynchronize(s);
                v[k] = (now_s() - t0) / reps;
            }
            if (!bad) t = median(v, 5);
            cudaGraphExecDestroy(ex);
        }
        if (e == cudaSuccess) cudaGraphDestroy(gr);
    }
    cudaGetLastError();
    cudaStreamDestroy(s);
    return t;
}

/* Llama-3-8B's decode-step buffers for one sequence at a given depth. */
struct step_ops {
    float *x, *w, *xn, *q, *k, *v, *partial;
    unsigned *counters;
    uint16_t *kc, *vc;
    int32_t *pos, *slot, *ctx, *tables;
    struct ik_attn_tile *tile;
    struct ik_rope_args rope;
    struct ik_attention_args att;
};

static int op_rms_norm(void *arg, cudaStream_t s)
{
    struct step_ops *o = arg;
    return ik_rms_norm(o->x, o->w, o->xn, 1, 4096, 1e-5f, s);
}

static int op_rope(void *arg, cudaStream_t s) { return ik_rope(&((struct step_ops *)arg)->rope, s); }

static int op_kv_store(void *arg, cudaStream_t s)
{
    struct step_ops *o = arg;
    return ik_kv_store(o->kc, o->vc, o->k, o->v, 1, 1024, o->slot, s);
}

static int op_rope_kv_store(void *arg, cudaStream_t s)
{
    struct step_ops *o = arg;
    return ik_rope_kv_store(&o->rope, o->kc, o->vc, o->v, o->slot, s);
}

static int op_attention(void *arg, cudaStream_t s)
{
    struct step_ops *o = arg;
    return ik_paged_attention(&o->att, s);
}

static void *dev_fill(size_t bytes, int byte)
{
    void *p = NULL;
    if (cudaMalloc(&p, bytes)) return NULL;
    cudaMemset(p, byte, bytes);
    return p;
}

static void *dev_copy(const void *host, size_t bytes)
{
    void *p = NULL;
    if (cudaMalloc(&p, bytes)) return NULL;
    cudaMemcpy(p, host, bytes, cudaMemcpyHostToDevice);
    return p;
}

/* Times RMSNorm, RoPE and the KV store (apart and fused) and attention at
 * Llama-3-8B's batch-1 decode shapes (depth 512; attention as a graph plans
 * it for block tables of max_ctx positions: the bench's 1,056 and the
 * engine's default 8,192) and
 * accounts for the step: the GEMVs, these kernels of 32 layers, and the
 * remainder (embedding, output norm, graph launch, staging, logits copy). */
static void bench_step_ops(struct gc *g, double t_step, double t_gemv, FILE *out)
{
    enum { DEPTH = 513, MAX_CTX = 8192, BS = 16 };
    int n_sm = 0;
    cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, 0);
    struct step_ops o = { 0 };
    int32_t host_tables[MAX_CTX / BS], depth = DEPTH, slot = DEPTH - 1;
    for (int i = 0; i < MAX_CTX / BS; i++) host_tables[i] = (i * 37) % (MAX_CTX / BS); /* scattered blocks */
    struct ik_attn_tile tile = { 0, 0, 1, 0 };
    size_t cache = (size_t)MAX_CTX * 1024 * 2;
    o.x = dev_fill(4096 * 4, 0x3c), o.w = dev_fill(4096 * 4, 0x3c), o.xn = dev_fill(4096 * 4, 0);
    o.q = dev_fill(4096 * 4, 0x3c), o.k = dev_fill(1024 * 4, 0x3c), o.v = dev_fill(1024 * 4, 0x3c);
    o.kc = dev_fill(cache, 0x1c), o.vc = dev_fill(cache, 0x1c); /* f16 0x1c1c: 0.0041 */
    o.partial = dev_fill(ik_attention_partial_floats(1, 8, 4, 64, 128) * 4, 0);
    o.counters = dev_fill(8 * sizeof(unsigned), 0);
    o.pos = dev_copy(&slot, 4), o.slot = dev_copy(&slot, 4), o.ctx = dev_copy(&depth, 4);
    o.tables = dev_copy(host_tables, sizeof host_tables), o.tile = dev_copy(&tile, sizeof tile);
    int ok = o.x && o.w && o.xn && o.q && o.k && o.v && o.kc && o.vc && o.partial && o.counters && o.pos && o.slot &&
             o.ctx && o.tables && o.tile;
    if (!ok) gc_record(g, "bench/ops", "llama3-8b decode", 0, "cannot allocate the buffers");
    o.rope = (struct ik_rope_args){ .q = o.q, .k = o.k, .n = 1, .n_head = 32, .n_head_kv = 8, .head_dim = 128,
                                    .rope_dim = 128, .neox = 0, .positions = o.pos,
                                    .theta_scale = powf(500000.f, -2.f / 128), .freq_scale = 1.f };
    o.att = (struct ik_attention_args){ .q = o.q, .out = o.xn, .k_cache = o.kc, .v_cache = o.vc, .n_head = 32,
                                        .n_head_kv = 8, .head_dim = 128, .block_size = BS,
                                        .scale = 1.f / sqrtf(128.f), .positions = o.pos, .context_len = o.ctx,
                                        .block_tables = o.tables, .max_blocks = MAX_CTX / BS, .tiles = o.tile,
                                        .n_tiles = 1, .rows_per_tile = 1, .partial = o.partial,
                                        .counters = o.counters };
    const int reps = 200;
    double t_norm = ok ? time_in_graph(op_rms_norm, &o, reps) : -1;
    double t_rope = ok ? time_in_graph(op_rope, &o, reps) : -1;
    double t_store = ok ? time_in_graph(op_kv_store, &o, reps) : -1;
    double t_fused = ok ? time_in_graph(op_rope_kv_store, &o, reps) : -1;
    double t_att[2] = { -1, -1 };
    const int plan_ctx[2] = { 1056, MAX_CTX };
    for (int i = 0; i < 2 && ok; i++) {
        struct cuda_attn_plan ap;
        if (cuda_plan_attention_decode(1, plan_ctx[i], 32, 8, n_sm, &ap)) continue;
        o.att.n_split = ap.n_split;
        t_att[i] = time_in_graph(op_attention, &o, reps);
        char shape[96];
        snprintf(shape, sizeof shape, "attention d%d, plan for %d (%d splits)", DEPTH, plan_ctx[i], ap.n_split);
        gc_record(g, "bench/ops", shape, t_att[i] > 0, "%.1f us per launch in a graph (K/V warm in L2)",
                  t_att[i] * 1e6);
    }
    const char *names[4] = { "rms_norm 4096 n=1", "rope 32+8 heads x 128 n=1", "kv_store 1024 n=1",
                             "rope+kv_store (what a layer runs)" };
    const double times[4] = { t_norm, t_rope, t_store, t_fused };
    for (int i = 0; i < 4; i++)
        gc_record(g, "bench/ops", names[i], times[i] > 0, "%.1f us per launch in a graph", times[i] * 1e6);
    if (ok && t_norm > 0 && t_fused > 0 && t_att[0] > 0 && t_gemv > 0) {
        double layers = 32 * (2 * t_norm + t_fused + t_att[0]);
        gc_record(g, "bench/ops", "llama3-8b decode step", 1,
                  "%.2f ms step = GEMVs %.2f + norms, rope+KV store, attention of 32 layers %.2f + rest %.2f "
                  "(embedding, output norm, launch, staging, logits copy)",
                  t_step * 1e3, t_gemv * 1e3, layers * 1e3, (t_step - t_gemv - layers) * 1e3);
        if (out)
            fprintf(out, "metric\tdecode1_layer_ops_ms\t%.3f\nmetric\tdecode1_rest_ms\t%.3f\n", layers * 1e3,
                    (t_step - t_gemv - layers) * 1e3);
    }
    void *bufs[] = { o.x, o.w, o.xn, o.q, o.k, o.v, o.kc, o.vc, o.partial, o.counters, o.pos, o.slot, o.ctx, o.tables,
                     o.tile };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
}


int gc_bench(struct gc *g, const char *preset, const char *type, FILE *out)
{
    enum qtype t = parse_type(type);
    const int prompt = 512, depth = 512, big_batch = 64;
    int per_seq = (depth + prompt + BLOCK) / BLOCK + 1;
    struct runner r;
    char shape[96];
    snprintf(shape, sizeof shape, "%s %s", preset, type);
    double t0 = now_s();
    int rc = t == QT_COUNT ? IFD_ERR_INVALID : runner_open(g->gpu, preset, t, prompt, big_batch, big_batch * per_seq, &r);
    if (rc) {
        gc_record(g, "bench", shape, 0, "setup failed: %s", ifd_strerror(rc));
        runner_close(&r);
        return rc;
    }
    printf("     model loaded in %.1f s (%.2f GiB of weights)\n", now_s() - t0, (double)r.m->weight_bytes / (1 << 30));
    struct step st;
    step_init(&st, prompt, big_batch, per_seq);
    /* pinned, as the engine's logits are: a pageable 0.5 MB copy-back would be timed as part of every step */
    float *logits = backend_host_alloc(g->gpu, (size_t)big_batch * r.m->hp.n_vocab * 4);
    if (!logits) {
        gc_record(g, "bench", shape, 0, "cannot allocate the logits buffer");
        step_free(&st);
        runner_close(&r);
        return IFD_ERR_NOMEM;
    }
    double bw = d2d_bandwidth();
    double t_pre = time_forward(&r, &st, 1, prompt, 0, 5, logits);
    double t_dec1 = time_forward(&r, &st, 1, 1, depth, 20, logits);
    double t_dec64 = time_forward(&r, &st, big_batch, 1, depth, 10, logits);
    /* the same decodes with every kernel launched one by one (--enforce-eager) */
    cuda_backend_set_graphs(g->gpu, 0);
    double e_dec1 = time_forward(&r, &st, 1, 1, depth, 20, logits);
    double e_dec64 = time_forward(&r, &st, big_batch, 1, depth, 10, logits);
    cuda_backend_set_graphs(g->gpu, 1);
    if (t_pre < 0 || t_dec1 < 0 || t_dec64 < 0) {
        gc_record(g, "bench", shape, 0, "a forward pass failed");
    } else {
        /* bytes a decode step must read: every weight but the embedding table,
         * of which it reads one row (unless the output projection reuses it) */
        const struct be_weight *te = &r.m->tok_embd;
        double embd_bytes = (double)qtype_row_bytes(te->type, te->n_in) * (double)te->n_out;
        double step_bytes = (double)r.m->weight_bytes - (r.m->hp.tied_output ? 0.0 : embd_bytes);
        double roof = step_bytes / t_dec1 / bw;
        gc_record(g, "bench/decode1", shape, roof >= 0.6,
                  "%.1f tok/s (%.2f ms), %.0f GB/s of weights read per token = %.0f%% of measured copy bandwidth %.0f "
                  "GB/s (target 60%%)",
                  1 / t_dec1, t_dec1 * 1e3, step_bytes / t_dec1 * 1e-9, 100 * roof, bw * 1e-9);
        double t_gemv = bench_gemv(g, t, bw, t_dec1, out);
        bench_step_ops(g, t_dec1, t_gemv, out);
        gc_record(g, "bench/decode64", shape, 1, "%.0f tok/s (%.2f ms per step of 64)", big_batch / t_dec64,
                  t_dec64 * 1e3);
        if (t == QT_BF16 && r.m->hp.n_embd == 4096 && r.m->hp.n_ff == 14336) bench_matmul64(g, bw, t_dec64, out);
        gc_record(g, "bench/graphs", shape, e_dec1 > 0 && e_dec64 > 0,
                  "eager (no CUDA graphs): decode1 %.1f tok/s (graphs %.2fx), decode64 %.0f tok/s (graphs %.2fx)",
                  1 / e_dec1, e_dec1 / t_dec1, big_batch / e_dec64, e_dec64 / t_dec64);
        double flop = 2.0 * (double)r.m->weight_bytes / qtype_row_bytes(t, 256) * 256 * prompt;
        gc_record(g, "bench/prefill", shape, 1, "%.0f tok/s (%.1f ms per 512), ~%.0f TFLOP/s in matmuls", prompt / t_pre,
                  t_pre * 1e3, flop / t_pre * 1e-12);
        if (out) {
            fprintf(out, "metric\tdecode1_tok_s\t%.1f\nmetric\tdecode1_roofline_pct\t%.1f\n", 1 / t_dec1, 100 * roof);
            fprintf(out, "metric\tdecode64_tok_s\t%.1f\nmetric\tprefill512_tok_s\t%.1f\n", big_batch / t_dec64,
                    prompt / t_pre);
            fprintf(out, "metric\td2d_bandwidth_GBs\t%.0f\n", bw * 1e-9);
            fprintf(out, "metric\tdecode1_eager_tok_s\t%.1f\nmetric\tdecode64_eager_tok_s\t%.1f\n", 1 / e_dec1,
                    big_batch / e_dec64);
        }
    }
    backend_host_free(g->gpu, logits);
    step_free(&st);
    int E = r.m->hp.n_embd, F = r.m->hp.n_ff;
    runner_close(&r);
    gemm_vs_cublas(g, F, E, prompt, out);
    gemm_vs_cublas(g, E, F, prompt, out);
    return 0;
}
