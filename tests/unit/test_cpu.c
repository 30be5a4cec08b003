/* SPDX-License-Identifier: Apache-2.0
 *
 * test_cpu.c: the CPU backend's kernels against plain double-precision
 * references, for every kernel set this CPU can run (scalar always, AVX2
 * when present; the set in use is printed). Inputs are random but seeded.
 *
 * Tolerances: matmuls see the same quantized activations as the reference,
 * so the only differences are float summation order: |diff| <= 1e-4 of
 * sum |w * a| (the scale of the terms, robust to cancellation). Attention
 * compares against softmax in double with the kernel's rounding points (q, K,
 * V and the probabilities at half precision): 1e-4 absolute on outputs of
 * order 1 covers float-vs-double scores shifting a probability across a half
 * rounding boundary (one half ulp of ~0.05 weights times |v| <= 1).
 */
#include "test.h"
#include "test_backend.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "util/pool.h"
#include "inferd/backend.h"
#include "inferd/model.h"
#include "inferd/quant.h"
#include "inferd/rng.h"

static void fill_random(struct rng *r, float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++) x[i] = (rng_uniform(r) - 0.5f) * 2 * scale;
}

/* Reference dot product of weight row w (plain layout) with activation row x,
 * in double, following each activation format's definition: for q8_1f the
 * stored scaled sum s stands for d * sum(q) (it is rounded separately, as in
 * ggml), so the Q4_0/Q4_1 offset terms use s. Returns the value and, through
 * mag, the sum of |terms| for the tolerance. */
static double reference_dot(enum qtype wt, const void *w, const float *x, int64_t n, double *mag)
{
    float *wd = malloc((size_t)n * 4);
    dequant_row(wt, w, wd, n);
    double ref = 0;
    *mag = 0;
    enum cpu_act f = cpu_act_for(wt);
    if (f == CPU_ACT_F32) {
        for (int64_t i = 0; i < n; i++) ref += (double)wd[i] * x[i], *mag += fabs((double)wd[i] * x[i]);
    } else if (f == CPU_ACT_Q8_K) {
        block_q8_K *b = malloc((size_t)(n / QK_K) * sizeof *b);
        quant_row_q8_K(x, b, n);
        for (int64_t i = 0; i < n; i++) {
            double t = (double)wd[i] * b[i / QK_K].d * b[i / QK_K].qs[i % QK_K];
            ref += t, *mag += fabs(t);
        }
        free(b);
    } else {
        block_q8_1f *b = malloc((size_t)(n / 32) * sizeof *b);
        quant_row_q8_1f(x, b, n);
        const uint8_t *wb = w;
        size_t bb = qtype_get(wt)->bytes;
        for (int64_t blk = 0; blk < n / 32; blk++) {
            double d = f16_to_f32(*(const f16_t *)(wb + blk * bb)), offset = 0;
            if (wt == QT_Q4_0) offset = -8 * d;
            if (wt == QT_Q4_1) offset = f16_to_f32(*(const f16_t *)(wb + blk * bb + 2));
            long sumi = 0;
            for (int j = 0; j < 32; j++) {
                double q = offset ? (wd[blk * 32 + j] - offset) / d : wd[blk * 32 + j] / d; /* the weight's integer level */
                sumi += lround(q) * b[blk].qs[j];
            }
            double t = d * b[blk].d * (double)sumi + offset * b[blk].s;
            ref += t;
            *mag += fabs(d * b[blk].d * (double)sumi) + fabs(offset * b[blk].s);
        }
        free(b);
    }
    free(wd);
    return ref;
}

struct mm_case {
    enum qtype type;
    int64_t n_in, n_out;
};

static void check_matmul(struct backend *be, const struct mm_case *c, int n, int accumulate, struct rng *r)
{
    int64_t K = c->n_in, N = c->n_out;
    float *wf = malloc((size_t)(K * N) * 4);
    float *x = malloc((size_t)(K * n) * 4);
    float *y = malloc((size_t)(N * n) * 4), *y0 = malloc((size_t)(N * n) * 4);
    void *wq = malloc(qtype_row_bytes(c->type, K) * (size_t)N);
    fill_random(r, wf, K * N, 0.1f);
    fill_random(r, x, K * n, 1.f);
    fill_random(r, y0, N * n, 1.f);
    for (int64_t i = 0; i < N; i++) quant_row(c->type, wf + i * K, (char *)wq + i * qtype_row_bytes(c->type, K), K);
    void *plain = malloc(qtype_row_bytes(c->type, K) * (size_t)N);
    memcpy(plain, wq, qtype_row_bytes(c->type, K) * (size_t)N); /* prepare may repack wq in place */
    struct be_weight w;
    ASSERT_OK(be->ops->weight_prepare(be, &w, c->type, K, N, wq, 1));
    memcpy(y, y0, (size_t)(N * n) * 4);
    struct be_matmul mm = { .x = x, .n = n, .n_w = 1, .w = { &w }, .y = { y }, .accumulate = accumulate };
    be->ops->matmul(be, &mm);
    ASSERT_OK(be->ops->sync(be));
    for (int t = 0; t < n; t++) {
        for (int64_t o = 0; o < N; o++) {
            double mag;
            double ref = (accumulate ? y0[t * N + o] : 0) +
                         reference_dot(c->type, (char *)plain + o * qtype_row_bytes(c->type, K), x + t * K, K, &mag);
            ASSERT_MSG(fabs(y[t * N + o] - ref) <= 1e-4 * mag + 1e-6, "%s %lldx%lld n=%d acc=%d: y[%d][%lld] = %.7g, ref %.7g",
                       qtype_name(c->type), (long long)N, (long long)K, n, accumulate, t, (long long)o, y[t * N + o], ref);
        }
    }
    be->ops->weight_release(be, &w);
    free(wf), free(x), free(y), free(y0), free(wq), free(plain);
}

TEST(cpu_matmul_all_types_vs_reference)
{
    static const struct mm_case cases[] = {
        { QT_Q4_0, 256, 24 }, { QT_Q4_1, 256, 24 }, { QT_Q8_0, 256, 24 }, { QT_Q4_1, 96, 20 }, /* 20: plain-layout fallback */
        { QT_Q4_K, 512, 16 }, { QT_Q5_K, 512, 16 }, { QT_Q6_K, 512, 16 },
        { QT_F32, 80, 12 }, { QT_F16, 80, 12 }, { QT_BF16, 80, 12 },
    };
    static const int ns[] = { 1, 3, 4, 5, 9, 70 };
    struct rng r;
    rng_seed(&r, 3);
    int tested_sets = 0;
    for (size_t s = 0; s < sizeof k_isas / sizeof k_isas[0]; s++) {
        struct backend *be = make_backend(k_isas[s], 3);
        if (!be) {
            test_note("kernel set %s: not available on this CPU", k_isas[s]);
            continue;
        }
        tested_sets++;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
            for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
                check_matmul(be, &cases[c], ns[k], (int)(k % 2), &r);
        test_note("kernel set %s: %zu weight cases x %zu batch sizes match", k_isas[s], sizeof cases / sizeof cases[0],
                  sizeof ns / sizeof ns[0]);
        backend_destroy(be);
    }
    ASSERT(tested_sets >= 1);
}

TEST(cpu_ffn_swiglu_vs_reference)
{
    struct rng r;
    rng_seed(&r, 5);
    for (size_t s = 0; s < sizeof k_isas / sizeof k_isas[0]; s++) {
        struct backend *be = make_backend(k_isas[s], 2);
        if (!be) continue;
        const int64_t K = 128, F = 200; /* F not a multiple of the 64-row chunk */
        const int n = 67;
        float *wg = malloc(K * F * 4), *wu = malloc(K * F * 4), *x = malloc(K * n * 4), *h = malloc(F * n * 4);
        float *xa = malloc(K * 4);
        fill_random(&r, wg, K * F, 0.2f);
        fill_random(&r, wu, K * F, 0.2f);
        fill_random(&r, x, K * n, 1.f);
        struct be_weight g, u;
        ASSERT_OK(be->ops->weight_prepare(be, &g, QT_F32, K, F, wg, 0));
        ASSERT_OK(be->ops->weight_prepare(be, &u, QT_F32, K, F, wu, 0));
        be->ops->ffn_swiglu(be, x, n, &g, &u, h);
        ASSERT_OK(be->ops->sync(be));
        for (int t = 0; t < n; t++)
            for (int64_t o = 0; o < F; o++) {
                double a = 0, b = 0;
                for (int64_t i = 0; i < K; i++) {
                    a += (double)wg[o * K + i] * x[t * K + i];
                    b += (double)wu[o * K + i] * x[t * K + i];
                }
                double ref = a / (1 + exp(-a)) * b;
                ASSERT_MSG(fabs(h[t * F + o] - ref) <= 1e-4 * (1 + fabs(ref)), "%s h[%d][%lld] = %g, ref %g", k_isas[s], t,
                           (long long)o, h[t * F + o], ref);
            }
        be->ops->weight_release(be, &g);
        be->ops->weight_release(be, &u);
        free(wg), free(wu), free(x), free(h), free(xa);
        backend_destroy(be);
    }
}

TEST(cpu_repack_x8_roundtrip)
{
    static const enum qtype types[] = { QT_Q4_0, QT_Q4_1, QT_Q8_0 };
    struct rng r;
    rng_seed(&r, 9);
    const int64_t K = 160, N = 24;
    float *w = malloc(K * N * 4), *a = malloc(K * 4), *b = malloc(K * 4);
    fill_random(&r, w, K * N, 1.f);
    for (size_t i = 0; i < 3; i++) {
        size_t rb = qtype_row_bytes(types[i], K);
        uint8_t *plain = malloc(rb * N), *packed = malloc(rb * N);
        for (int64_t o = 0; o < N; o++) quant_row(types[i], w + o * K, plain + o * rb, K);
        cpu_repack_x8(types[i], plain, packed, K, N);
        ASSERT(memcmp(plain, packed, rb * N) != 0);
        for (int64_t o = 0; o < N; o++) {
            dequant_row(types[i], plain + o * rb, a, K);
            cpu_weight_row_dequant(types[i], CPU_LAYOUT_X8, packed, K, N, o, b);
            ASSERT_MSG(memcmp(a, b, K * 4) == 0, "%s row %lld differs after repack", qtype_name(types[i]), (long long)o);
        }
        free(plain), free(packed);
    }
    free(w), free(a), free(b);
}

TEST(cpu_quant_act_avx2_matches_scalar)
{
    struct backend *be = make_backend("avx2", 1);
    ASSERT_MSG(be != NULL, "this test needs AVX2 (the project's x86-64 baseline for speed)");
    backend_destroy(be);
    enum { N = 32 * 64 };
    float x[N];
    struct rng r;
    rng_seed(&r, 13);
    for (int round = 0; round < 50; round++) {
        fill_random(&r, x, N, round % 5 == 0 ? 1e-30f : 10.f);
        if (round % 7 == 0) memset(x, 0, sizeof x / 2); /* all-zero blocks */
        if (round % 11 == 0) x[5] = 65000.f;
        block_q8_1f a[N / 32], b[N / 32];
        cpu_kernels_scalar.quant_q8_1f(x, a, N);
        cpu_kernels_avx2.quant_q8_1f(x, b, N);
        for (int i = 0; i < N / 32; i++) {
            ASSERT_MSG(memcmp(a[i].qs, b[i].qs, 32) == 0, "round %d block %d: quants differ", round, i);
            ASSERT(a[i].d == b[i].d);
            ASSERT(a[i].s == b[i].s);
        }
    }
}

/* ---- attention ---- */

struct attn_fixture {
    int n_head, n_head_kv, hd, bs, n_blocks;
    int n_seqs;
    int32_t query_start[4], context_len[3], table[3][8];
    int32_t positions[64], slots[64];
    int n_tokens;
};

/* Rows of x (n, kv_dim) replaced by the values a cache of dtype holds for them. */
static void as_cached(float *x, int n, int kv_dim, enum kv_dtype dtype)
{
    block_q8_0 *b = malloc((size_t)kv_dim / QK8_0 * sizeof *b);
    for (int r = 0; r < n; r++) {
        float *row = x + (size_t)r * kv_dim;
        if (dtype == KV_Q8_0) {
            quant_row_q8_0(row, b, kv_dim);
            ASSERT_OK(dequant_row(QT_Q8_0, b, row, kv_dim));
        } else {
            for (int i = 0; i < kv_dim; i++) row[i] = f16_to_f32(f32_to_f16(row[i]));
        }
    }
    free(b);
}

TEST(cpu_attention_vs_reference)
{
    struct attn_fixture fx = { .n_head = 4, .n_head_kv = 2, .hd = 64, .bs = 16, .n_blocks = 24, .n_seqs = 3 };
    /* seq 0: prefill of 20 tokens from 0; seq 1: one decode at position 37; seq 2: 5 tokens at 10..14 */
    int q_len[3] = { 20, 1, 5 }, first_pos[3] = { 0, 37, 10 };
    struct rng r;
    rng_seed(&r, 21);
    int perm[24];
    for (int i = 0; i < 24; i++) perm[i] = i;
    for (int i = 23; i > 0; i--) {
        int j = (int)(rng_next(&r) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (int s = 0, k = 0; s < 3; s++)
        for (int b = 0; b < 8; b++) fx.table[s][b] = perm[k++];
    int kv_dim = fx.n_head_kv * fx.hd, qd = fx.n_head * fx.hd;
    size_t pool_rows = (size_t)fx.n_blocks * fx.bs;
    for (size_t s = 0; s < 2 * (sizeof k_isas / sizeof k_isas[0]); s++) {
        enum kv_dtype dtype = s % 2 ? KV_Q8_0 : KV_F16; /* each kernel set with both cache types */
        struct backend *be = make_backend(k_isas[s / 2], 3);
        if (!be) continue;
        size_t bytes = pool_rows * kv_row_bytes(dtype, kv_dim);
        struct be_kv_layer kv = { be->ops->alloc(be, bytes), be->ops->alloc(be, bytes), dtype };
        /* store K/V for every position of every sequence's context */
        int total = 0, row = 0;
        fx.query_start[0] = 0;
        for (int q = 0; q < 3; q++) {
            fx.context_len[q] = first_pos[q] + q_len[q];
            total += fx.context_len[q];
        }
        float *k = malloc((size_t)total * kv_dim * 4), *v = malloc((size_t)total * kv_dim * 4);
        int32_t *slot_all = malloc((size_t)total * 4);
        fill_random(&r, k, (int64_t)total * kv_dim, 1.f);
        fill_random(&r, v, (int64_t)total * kv_dim, 1.f);
        for (int q = 0, i = 0; q < 3; q++)
            for (int p = 0; p < fx.context_len[q]; p++, i++) slot_all[i] = fx.table[q][p / fx.bs] * fx.bs + p % fx.bs;
        be->ops->kv_store(be, kv, k, v, total, kv_dim, slot_all);
        as_cached(k, total, kv_dim, dtype);
        as_cached(v, total, kv_dim, dtype);
        for (int q = 0; q < 3; q++) {
            for (int i = 0; i < q_len[q]; i++) fx.positions[row++] = first_pos[q] + i;
            fx.query_start[q + 1] = row;
        }
        fx.n_tokens = row;
        float *qv = malloc((size_t)row * qd * 4), *out = malloc((size_t)row * qd * 4);
        fill_random(&r, qv, (int64_t)row * qd, 1.f);
        struct batch_plan plan = { .n_tokens = row, .positions = fx.positions, .n_seqs = 3, .query_start = fx.query_start,
                                   .context_len = fx.context_len, .block_tables = &fx.table[0][0], .max_blocks = 8 };
        struct be_attention a = { .q = qv, .out = out, .kv = kv, .n_head = fx.n_head, .n_head_kv = fx.n_head_kv,
                                  .head_dim = fx.hd, .block_size = fx.bs, .scale = 0.125f, .plan = &plan };
        be->ops->attention(be, &a);
        ASSERT_OK(be->ops->sync(be));
        for (int q = 0, base = 0; q < 3; base += fx.context_len[q], q++)
            for (int t = fx.query_start[q]; t < fx.query_start[q + 1]; t++)
                for (int h = 0; h < fx.n_head; h++) {
                    int kvh = h / (fx.n_head / fx.n_head_kv), n_vis = fx.positions[t] + 1;
                    double sc[64], mx = -1e300, sum = 0;
                    for (int p = 0; p < n_vis; p++) {
                        double d = 0; /* q and k both at half precision, as the kernel (and llama.cpp) */
                        for (int i = 0; i < fx.hd; i++)
                            d += (double)f16_to_f32(f32_to_f16(qv[t * qd + h * fx.hd + i])) *
                                 k[(size_t)(base + p) * kv_dim + kvh * fx.hd + i];
                        sc[p] = d * 0.125;
                        if (sc[p] > mx) mx = sc[p];
                    }
                    for (int p = 0; p < n_vis; p++) sum += (sc[p] = exp(sc[p] - mx));
                    for (int i = 0; i < fx.hd; i++) {
                        double ref = 0;
                        for (int p = 0; p < n_vis; p++) /* probabilities rounded to half before weighting V */
                            ref += f16_to_f32(f32_to_f16((float)(sc[p] / sum))) *
                                   v[(size_t)(base + p) * kv_dim + kvh * fx.hd + i];
                        float got = out[t * qd + h * fx.hd + i];
                        ASSERT_MSG(fabs(got - ref) <= 1e-4, "%s %s cache seq %d row %d head %d dim %d: %g vs %g",
                                   k_isas[s / 2], kv_dtype_name(dtype), q, t, h, i, got, ref);
                    }
                }
        free(k), free(v), free(slot_all), free(qv), free(out);
        be->ops->release(be, kv.k);
        be->ops->release(be, kv.v);
        backend_destroy(be);
    }
}

/* ---- worker pool ---- */

struct pool_probe {
    struct pool *p;
    _Atomic int ran[8];
    _Atomic int counter;
    _Atomic int violations;
};

static void probe_job(void *arg, int ith, int nth)
{
    struct pool_probe *pr = arg;
    atomic_fetch_add(&pr->ran[ith], 1);
    for (int round = 0; round < 100; round++) {
        atomic_fetch_add(&pr->counter, 1);
        pool_barrier(pr->p);
        /* after the barrier every worker has added for this round */
        if (atomic_load(&pr->counter) < (round + 1) * nth) atomic_fetch_add(&pr->violations, 1);
        pool_barrier(pr->p);
    }
}

TEST(cpu_pool_runs_every_worker)
{
    struct pool_probe pr;
    memset(&pr, 0, sizeof pr);
    ASSERT_OK(pool_init(&pr.p, 4));
    for (int job = 0; job < 20; job++) {
        atomic_store(&pr.counter, 0);
        pool_run(pr.p, probe_job, &pr);
    }
    for (int i = 0; i < 4; i++) ASSERT_EQ(atomic_load(&pr.ran[i]), 20);
    ASSERT_EQ(atomic_load(&pr.violations), 0);
    pool_free(pr.p);
}
