/* SPDX-License-Identifier: Apache-2.0
 *
 * test_attention_tiled.c: the CPU attention kernels take a tile of query rows
 * (cpu_kernels.h, struct cpu_attn_task) and must give every row exactly the
 * bits it gets alone, for every kernel set this CPU can run. Two levels:
 *   - the kernel: a tile of rows with differing n_vis against one row at a
 *     time, one (row, head) pair at a time, and the per-row kernel (scalar or
 *     AVX2) that the tiled one replaced, kept below as the definition of the
 *     rounding points and summation orders;
 *   - the backend: cpu_attention over several sequences (chunks of varying
 *     length, GQA groups, contexts that are not whole blocks, shuffled block
 *     tables, scores too wide for a full tile of rows, decode-only batches)
 *     against the kernel run once per (row, head).
 * Comparisons are memcmp: any change to a rounding point or summation order
 * fails here before it shows up as a logits drift.
 */
#include "test.h"
#include "test_backend.h"

#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "inferd/backend.h"
#include "inferd/quant.h"
#include "inferd/rng.h"

static int rand_int(struct rng *r, int lo, int hi) /* [lo, hi] */
{
    return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

static float rand_sym(struct rng *r, float scale) { return (rng_uniform(r) - 0.5f) * 2 * scale; }

/* A shuffled block table for a context of n_blocks blocks out of a pool of pool_blocks. */
static void shuffled_table(struct rng *r, int32_t *table, int n_blocks, int pool_blocks)
{
    int32_t *perm = malloc((size_t)pool_blocks * sizeof *perm);
    for (int i = 0; i < pool_blocks; i++) perm[i] = i;
    for (int i = pool_blocks - 1; i > 0; i--) {
        int j = rand_int(r, 0, i);
        int32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    memcpy(table, perm, (size_t)n_blocks * sizeof *perm);
    free(perm);
}

/* ---- the per-row kernels that the tiled ones replaced ----
 * Verbatim but for the task fields (and without prefetches): one query row of
 * G heads against n_vis positions, scores in (G, n_vis). They define the
 * rounding points and summation orders that every tile must reproduce (the
 * AVX2 score's order changed with the dims-major K tile: ref_dot_f32_chain). */

static size_t ref_slot(const struct cpu_attn_task *t, int p)
{
    return (size_t)t->table[p / t->block_size] * t->block_size + p % t->block_size;
}

/* Value i of the cached row at position p (base: the pool at the KV head), as every kernel set reads it. */
static float ref_kv(const struct cpu_attn_task *t, const uint8_t *base, int p, int i)
{
    const uint8_t *row = base + ref_slot(t, p) * t->row_bytes;
    if (t->dtype == KV_Q8_0) {
        const block_q8_0 *b = (const block_q8_0 *)row + i / QK8_0;
        return f16_to_f32(b->d) * (float)b->qs[i % QK8_0];
    }
    return f16_to_f32(((const f16_t *)row)[i]);
}

static void per_row_scalar_attend(const struct cpu_attn_task *t, int n_vis, float *scores)
{
    int hd = t->head_dim;
    for (int g = 0; g < t->G; g++) {
        float *sc = scores + (size_t)g * n_vis, max = -INFINITY;
        for (int p = 0; p < n_vis; p++) {
            float sum = 0;
            for (int i = 0; i < hd; i++) sum += ref_kv(t, t->k, p, i) * t->q[(size_t)g * hd + i];
            sc[p] = sum * t->scale;
            if (sc[p] > max) max = sc[p];
        }
        double sum = 0;
        for (int p = 0; p < n_vis; p++) sum += (sc[p] = expf(sc[p] - max));
        float inv = (float)(1.0 / sum), *out = t->out + (size_t)g * hd;
        memset(out, 0, (size_t)hd * sizeof *out);
        for (int p = 0; p < n_vis; p++) {
            float w = f16_to_f32(f32_to_f16(sc[p] * inv));
            for (int i = 0; i < hd; i++) out[i] += w * ref_kv(t, t->v, p, i);
        }
    }
}

#define AVX2_FN static __attribute__((target("avx2,fma,f16c")))

AVX2_FN __m256 ref_exp8(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.37f));
    __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.f)));
    __m256i n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(n));
}

/* A score as the AVX2 kernel sums it: one fused multiply-add chain over the
 * dimensions in order (each lane of its score_block is such a chain). */
AVX2_FN float ref_dot_f32_chain(const float *a, const float *b, int n)
{
    __m128 s = _mm_setzero_ps();
    for (int i = 0; i < n; i++) s = _mm_fmadd_ss(_mm_set_ss(a[i]), _mm_set_ss(b[i]), s);
    return _mm_cvtss_f32(s);
}

AVX2_FN void ref_softmax_to_half(float *sc, int n)
{
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int p = 0;
    for (; p + 8 <= n; p += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(sc + p));
    float max = -INFINITY, lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    for (int i = 0; i < 8; i++) max = fmaxf(max, lanes[i]);
    for (; p < n; p++) max = fmaxf(max, sc[p]);
    __m256 vm = _mm256_set1_ps(max);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (p = 0; p + 8 <= n; p += 8) {
        __m256 e = ref_exp8(_mm256_sub_ps(_mm256_loadu_ps(sc + p), vm));
        _mm256_storeu_ps(sc + p, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double sums[4];
    _mm256_storeu_pd(sums, _mm256_add_pd(s0, s1));
    double sum = sums[0] + sums[1] + sums[2] + sums[3];
    for (; p < n; p++) sum += (sc[p] = expf(sc[p] - max));
    float inv = (float)(1.0 / sum);
    __m256 vi = _mm256_set1_ps(inv);
    for (p = 0; p + 8 <= n; p += 8)
        _mm256_storeu_ps(sc + p, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(sc + p), vi),
                                                                 _MM_FROUND_TO_NEAREST_INT)));
    for (; p < n; p++) sc[p] = f16_to_f32(f32_to_f16(sc[p] * inv));
}

AVX2_FN void per_row_avx2_attend(const struct cpu_attn_task *t, int n_vis, float *scores)
{
    int hd = t->head_dim, G = t->G;
    float row[512];
    for (int p = 0; p < n_vis; p++) {
        for (int i = 0; i < hd; i++) row[i] = ref_kv(t, t->k, p, i);
        for (int g = 0; g < G; g++) scores[(size_t)g * n_vis + p] = ref_dot_f32_chain(row, t->q + (size_t)g * hd, hd) * t->scale;
    }
    for (int g = 0; g < G; g++) {
        ref_softmax_to_half(scores + (size_t)g * n_vis, n_vis);
        memset(t->out + (size_t)g * hd, 0, (size_t)hd * sizeof(float));
    }
    for (int p = 0; p < n_vis; p++) {
        for (int i = 0; i < hd; i++) row[i] = ref_kv(t, t->v, p, i);
        for (int g = 0; g < G; g++) {
            float w = scores[(size_t)g * n_vis + p];
            if (w == 0.f) continue; /* underflowed weights add nothing */
            __m256 vw = _mm256_set1_ps(w);
            float *out = t->out + (size_t)g * hd;
            for (int i = 0; i < hd; i += 8)
                _mm256_storeu_ps(out + i, _mm256_fmadd_ps(vw, _mm256_loadu_ps(row + i), _mm256_loadu_ps(out + i)));
        }
    }
}

/* Runs kernel k on n_rows rows of G pairs starting at row r0 / head g0 of the
 * full problem in `full`, writing into out (row stride out_stride), with
 * scratch sized exactly (so ASan sees any overrun). */
static void run_kernel(const struct cpu_kernels *k, const struct cpu_attn_task *full, int r0, int n_rows, int g0, int G,
                       float *out, size_t out_stride)
{
    int hd = full->head_dim, max_vis = 0;
    float *q = malloc((size_t)n_rows * G * hd * sizeof *q);
    for (int r = 0; r < n_rows; r++) {
        for (int g = 0; g < G; g++)
            memcpy(q + ((size_t)r * G + g) * hd, full->q + ((size_t)(r0 + r) * full->G + g0 + g) * hd,
                   (size_t)hd * sizeof *q);
        if (full->n_vis[r0 + r] > max_vis) max_vis = full->n_vis[r0 + r];
    }
    struct cpu_attn_task t = *full;
    t.q = q;
    t.out = out;
    t.out_stride = out_stride;
    t.n_rows = n_rows;
    t.G = G;
    t.n_vis = full->n_vis + r0;
    t.scores = malloc((size_t)n_rows * G * cpu_attn_score_stride(max_vis) * sizeof(float));
    t.tile = malloc(CPU_ATTN_TILE_FLOATS * sizeof(float));
    cpu_attend(k, &t);
    free(t.scores), free(t.tile), free(q);
}

/* n_rows cached rows of kv_dim random values (center +- spread) stored as
 * dtype: halves, or Q8_0 blocks quantized as the KV store quantizes them. */
static uint8_t *random_pool(struct rng *r, size_t n_rows, int kv_dim, enum kv_dtype dtype, float center, float spread)
{
    size_t row_bytes = kv_row_bytes(dtype, kv_dim);
    uint8_t *pool = malloc(n_rows * row_bytes);
    float *row = malloc((size_t)kv_dim * sizeof *row);
    for (size_t i = 0; i < n_rows; i++) {
        for (int d = 0; d < kv_dim; d++) row[d] = center + rand_sym(r, spread);
        if (dtype == KV_Q8_0) {
            quant_row_q8_0(row, (block_q8_0 *)(pool + i * row_bytes), kv_dim);
        } else {
            for (int d = 0; d < kv_dim; d++) ((f16_t *)(pool + i * row_bytes))[d] = f32_to_f16(row[d]);
        }
    }
    free(row);
    return pool;
}

/* A random kernel problem: n_rows rows of G heads against a shuffled paged context. */
struct problem {
    struct cpu_attn_task full; /* q, n_vis and the KV fields; no out or scratch */
    uint8_t *kc, *vc;
    int32_t *table;
    float *q;
    int n_vis[16], ctx;
};

static void make_problem(struct problem *pb, struct rng *r, int trial)
{
    static const int hds[] = { 8, 24, 40, 64, 72, 80, 128, 512 }, bss[] = { 1, 8, 16, 32 };
    int hd = hds[rand_int(r, 0, 7)], G = rand_int(r, 1, 5), n_rows = rand_int(r, 1, 16), bs = bss[rand_int(r, 0, 3)];
    int n_kv = rand_int(r, 1, 3), kvh = rand_int(r, 0, n_kv - 1);
    pb->ctx = rand_int(r, 1, trial % 4 == 0 ? 700 : 90);
    int n_blocks = (pb->ctx + bs - 1) / bs, pool_blocks = n_blocks + rand_int(r, 0, 5);
    size_t pool_rows = (size_t)pool_blocks * bs;
    enum kv_dtype dtype = hd % QK8_0 == 0 && trial % 2 ? KV_Q8_0 : KV_F16; /* every other trial that can */
    /* Three kinds of scores. Peaked: weights that round to zero. Large with a
     * small spread: one rounding step of a score moves its weight across a
     * half rounding boundary often, so a changed summation order shows in the
     * output (with plain scores the half-rounded weights hide it). */
    int peaked = trial % 3 == 0, sensitive = trial % 3 == 1;
    pb->kc = random_pool(r, pool_rows, n_kv * hd, dtype, sensitive ? 1.f : 0.f, sensitive ? 0.05f : 1.f);
    pb->vc = random_pool(r, pool_rows, n_kv * hd, dtype, 0.f, 1.f);
    if (trial % 5 == 0 && dtype == KV_F16) /* +inf: only a zero weight may skip it */
        ((f16_t *)pb->vc)[rand_int(r, 0, (int)(pool_rows * n_kv * hd) - 1)] = 0x7C00;
    pb->table = malloc((size_t)n_blocks * sizeof *pb->table);
    shuffled_table(r, pb->table, n_blocks, pool_blocks);
    for (int i = 0; i < n_rows; i++) pb->n_vis[i] = rand_int(r, 1, pb->ctx); /* any order, repeats allowed */
    pb->q = malloc((size_t)n_rows * G * hd * sizeof *pb->q);
    for (int i = 0; i < n_rows * G * hd; i++)
        pb->q[i] = f16_to_f32(f32_to_f16(sensitive ? 50.f + rand_sym(r, 40.f) : rand_sym(r, peaked ? 30.f : 1.f)));
    pb->full = (struct cpu_attn_task){ .q = pb->q, .n_rows = n_rows, .G = G, .head_dim = hd, .n_vis = pb->n_vis,
                                       .k = pb->kc + kv_row_bytes(dtype, kvh * hd),
                                       .v = pb->vc + kv_row_bytes(dtype, kvh * hd),
                                       .row_bytes = kv_row_bytes(dtype, n_kv * hd), .dtype = dtype,
                                       .table = pb->table, .block_size = bs,
                                       .scale = 1.f / sqrtf((float)hd) };
}

static void free_problem(struct problem *pb) { free(pb->kc), free(pb->vc), free(pb->table), free(pb->q); }

/* The problem through the per-row kernel that k's attend replaced (the
 * AVX-512 set attends with the AVX2 kernel). */
static void run_per_row_reference(const struct cpu_kernels *k, const struct problem *pb, float *out, size_t stride)
{
    const struct cpu_attn_task *f = &pb->full;
    float *sc = malloc((size_t)f->G * pb->ctx * sizeof *sc);
    for (int i = 0; i < f->n_rows; i++) {
        struct cpu_attn_task t = *f;
        t.q = f->q + (size_t)i * f->G * f->head_dim;
        t.out = out + i * stride;
        if (k->attn_scores == cpu_kernels_scalar.attn_scores) per_row_scalar_attend(&t, pb->n_vis[i], sc);
        else per_row_avx2_attend(&t, pb->n_vis[i], sc);
    }
    free(sc);
}

#define FILL -1234.5f

static void fill(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++) x[i] = FILL;
}

/* One random problem for kernel set k: the whole tile, each row alone, each
 * (row, head) pair alone and the replaced per-row kernel must agree bit for bit. */
static void check_kernel_trial(const char *isa, const struct cpu_kernels *k, struct rng *r, int trial)
{
    struct problem pb;
    make_problem(&pb, r, trial);
    int hd = pb.full.head_dim, G = pb.full.G, n_rows = pb.full.n_rows;
    /* outputs with a gap between rows that must stay untouched; each way
     * starts from the fill, so none can pass on an earlier one's results */
    size_t stride = (size_t)G * hd + 8, n_out = (size_t)n_rows * stride;
    float *tiled = malloc(n_out * sizeof(float)), *alone = malloc(n_out * sizeof(float));
    fill(tiled, n_out);
    run_kernel(k, &pb.full, 0, n_rows, 0, G, tiled, stride);
    for (int i = 0; i < n_rows; i++)
        for (int j = G * hd; j < (int)stride; j++) ASSERT(tiled[i * stride + j] == FILL);
    fill(alone, n_out);
    for (int i = 0; i < n_rows; i++) run_kernel(k, &pb.full, i, 1, 0, G, alone + i * stride, stride);
    ASSERT_MSG(memcmp(tiled, alone, n_out * sizeof(float)) == 0, "%s trial %d (hd %d G %d rows %d): tile != rows", isa,
               trial, hd, G, n_rows);
    fill(alone, n_out);
    for (int i = 0; i < n_rows; i++)
        for (int g = 0; g < G; g++) run_kernel(k, &pb.full, i, 1, g, 1, alone + i * stride + (size_t)g * hd, stride);
    ASSERT_MSG(memcmp(tiled, alone, n_out * sizeof(float)) == 0, "%s trial %d: tile != single pairs", isa, trial);
    fill(alone, n_out);
    run_per_row_reference(k, &pb, alone, stride);
    ASSERT_MSG(memcmp(tiled, alone, n_out * sizeof(float)) == 0, "%s trial %d: tile != the per-row kernel it replaced",
               isa, trial);
    free(tiled), free(alone);
    free_problem(&pb);
}

TEST(cpu_attention_tiled_kernel_matches_single_rows)
{
    struct rng r;
    rng_seed(&r, 7);
    for (size_t s = 0; s < sizeof k_isas / sizeof k_isas[0]; s++) {
        struct backend *be = make_backend(k_isas[s], 1);
        if (!be) continue;
        const struct cpu_kernels *k = cpu_ctx(be)->k;
        for (int trial = 0; trial < 90; trial++) check_kernel_trial(k_isas[s], k, &r, trial);
        test_note("%s: 90 tiles bit-identical to single rows", k->name);
        backend_destroy(be);
    }
}

/* ---- through the backend ---- */

struct seq_spec {
    int q_len, ctx, first_pos; /* rows at positions first_pos.. (past ctx - 1 they see ctx positions) */
};

struct batch_case {
    int n_head, n_head_kv, hd, bs, n_seqs;
    struct seq_spec seqs[5];
};

/* A case's batch: random K/V behind shuffled block tables, random queries. */
struct batch {
    struct be_kv_layer kv;
    int32_t *table, *pos, query_start[6], context_len[5];
    int max_blocks, n_tok;
    float *q, *out;
    struct batch_plan plan;
};

static void make_batch(struct backend *be, const struct batch_case *bc, enum kv_dtype dtype, struct rng *r,
                       struct batch *b)
{
    int pool_blocks = 0;
    b->max_blocks = b->n_tok = 0;
    for (int s = 0; s < bc->n_seqs; s++) {
        int nb = (bc->seqs[s].ctx + bc->bs - 1) / bc->bs;
        b->max_blocks = nb > b->max_blocks ? nb : b->max_blocks;
        pool_blocks += nb;
        b->n_tok += bc->seqs[s].q_len;
    }
    size_t pool_rows = (size_t)pool_blocks * bc->bs, qd = (size_t)bc->n_head * bc->hd;
    size_t bytes = pool_rows * kv_row_bytes(dtype, bc->n_head_kv * bc->hd);
    uint8_t *k = random_pool(r, pool_rows, bc->n_head_kv * bc->hd, dtype, 0.f, 1.f);
    uint8_t *v = random_pool(r, pool_rows, bc->n_head_kv * bc->hd, dtype, 0.f, 1.f);
    b->kv = (struct be_kv_layer){ be->ops->alloc(be, bytes), be->ops->alloc(be, bytes), dtype };
    memcpy(b->kv.k, k, bytes);
    memcpy(b->kv.v, v, bytes);
    free(k), free(v);
    b->table = calloc((size_t)bc->n_seqs * b->max_blocks, sizeof *b->table);
    b->pos = malloc((size_t)b->n_tok * sizeof *b->pos);
    b->query_start[0] = 0;
    for (int s = 0, row = 0; s < bc->n_seqs; s++) {
        const struct seq_spec *sp = &bc->seqs[s];
        shuffled_table(r, b->table + (size_t)s * b->max_blocks, (sp->ctx + bc->bs - 1) / bc->bs, pool_blocks);
        for (int i = 0; i < sp->q_len; i++) b->pos[row++] = sp->first_pos + i;
        b->query_start[s + 1] = row;
        b->context_len[s] = sp->ctx;
    }
    b->q = malloc(b->n_tok * qd * sizeof *b->q);
    b->out = malloc(b->n_tok * qd * sizeof *b->out);
    for (size_t i = 0; i < b->n_tok * qd; i++) b->q[i] = rand_sym(r, 3.f);
    b->plan = (struct batch_plan){ .n_tokens = b->n_tok, .positions = b->pos, .n_seqs = bc->n_seqs,
                                   .query_start = b->query_start, .context_len = b->context_len,
                                   .block_tables = b->table, .max_blocks = b->max_blocks };
}

static void free_batch(struct backend *be, struct batch *b)
{
    be->ops->release(be, b->kv.k);
    be->ops->release(be, b->kv.v);
    free(b->table), free(b->pos), free(b->q), free(b->out);
}

/* Row t of sequence s, every head run through the kernel alone, into ref (n_head * hd). */
static void attend_row_alone(const struct cpu_kernels *k, const struct batch_case *bc, const struct batch *b, int s,
                             int t, float *ref)
{
    int qd = bc->n_head * bc->hd, G = bc->n_head / bc->n_head_kv;
    int n_vis = b->pos[t] + 1 < b->context_len[s] ? b->pos[t] + 1 : b->context_len[s];
    float *qh = malloc((size_t)qd * sizeof *qh); /* the query at half precision, as the backend rounds it */
    for (int i = 0; i < qd; i++) qh[i] = f16_to_f32(f32_to_f16(b->q[(size_t)t * qd + i]));
    for (int h = 0; h < bc->n_head; h++) {
        struct cpu_attn_task one = { .q = qh, .n_rows = 1, .G = bc->n_head, .head_dim = bc->hd, .n_vis = &n_vis,
                                     .k = (const uint8_t *)b->kv.k + kv_row_bytes(b->kv.dtype, (h / G) * bc->hd),
                                     .v = (const uint8_t *)b->kv.v + kv_row_bytes(b->kv.dtype, (h / G) * bc->hd),
                                     .row_bytes = kv_row_bytes(b->kv.dtype, bc->n_head_kv * bc->hd),
                                     .dtype = b->kv.dtype, .table = b->table + (size_t)s * b->max_blocks,
                                     .block_size = bc->bs, .scale = 0.125f };
        run_kernel(k, &one, 0, 1, h, 1, ref + (size_t)h * bc->hd, (size_t)qd);
    }
    free(qh);
}

/* Attends one batch through be and checks every row against its heads run alone. */
static void check_batch(struct backend *be, const char *isa, const struct batch_case *bc, enum kv_dtype dtype,
                        struct rng *r)
{
    struct batch b;
    make_batch(be, bc, dtype, r, &b);
    struct be_attention a = { .q = b.q, .out = b.out, .kv = b.kv, .n_head = bc->n_head, .n_head_kv = bc->n_head_kv,
                              .head_dim = bc->hd, .block_size = bc->bs, .scale = 0.125f, .plan = &b.plan };
    be->ops->attention(be, &a);
    ASSERT_OK(be->ops->sync(be));
    size_t qd = (size_t)bc->n_head * bc->hd;
    float *ref = malloc(qd * sizeof *ref);
    for (int s = 0; s < bc->n_seqs; s++)
        for (int t = b.query_start[s]; t < b.query_start[s + 1]; t++) {
            attend_row_alone(cpu_ctx(be)->k, bc, &b, s, t, ref);
            ASSERT_MSG(memcmp(b.out + t * qd, ref, qd * sizeof *ref) == 0,
                       "%s (heads %d/%d hd %d): seq %d row %d differs from its single-row result", isa, bc->n_head,
                       bc->n_head_kv, bc->hd, s, t - b.query_start[s]);
        }
    free(ref);
    free_batch(be, &b);
}

TEST(cpu_attention_tiled_backend_matches_single_rows)
{
    static const struct batch_case cases[] = {
        /* prefill chunks of 1..40 rows next to decodes, GQA 3, contexts not whole blocks */
        { 9, 3, 64, 16, 5, { { 40, 40, 0 }, { 17, 150, 133 }, { 1, 77, 76 }, { 5, 300, 295 }, { 33, 1000, 967 } } },
        /* GQA 4, head_dim 128, block 32; one sequence's last rows sit past its context */
        { 8, 2, 128, 32, 3, { { 16, 16, 0 }, { 29, 500, 480 }, { 3, 45, 43 } } },
        /* scores of 16 rows x 8 heads x 4500 positions exceed the budget: fewer rows per call */
        { 32, 4, 32, 16, 1, { { 40, 4500, 4460 } } },
        /* few items (fewer than 4 per worker): the three-phase path, which cuts
         * positions and head dimensions across workers (hd 128: 4 slices; 80: 2 of 40) */
        { 9, 3, 64, 16, 2, { { 1, 700, 699 }, { 1, 33, 32 } } },
        { 4, 4, 80, 8, 1, { { 1, 123, 122 } } },
        { 9, 3, 64, 16, 1, { { 16, 2000, 1984 } } },
        { 8, 1, 128, 16, 1, { { 1, 3001, 3000 } } },
    };
    struct rng r;
    rng_seed(&r, 11);
    for (size_t s = 0; s < sizeof k_isas / sizeof k_isas[0]; s++) {
        struct backend *be = make_backend(k_isas[s], 3);
        if (!be) continue;
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            check_batch(be, k_isas[s], &cases[c], KV_F16, &r);
            if (cases[c].hd % QK8_0 == 0) check_batch(be, k_isas[s], &cases[c], KV_Q8_0, &r); /* the q8_0 cache too */
        }
        test_note("%s: every row of %zu batches bit-identical to its single-row result", k_isas[s],
                  sizeof cases / sizeof cases[0]);
        backend_destroy(be);
    }
}
