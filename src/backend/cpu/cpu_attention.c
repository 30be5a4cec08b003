/* SPDX-License-Identifier: Apache-2.0
 *
 * cpu_attention.c: RoPE, the paged KV store and paged attention for the CPU
 * backend.
 *
 * Attention reads K/V only through each sequence's block table (position t
 * lives in slot table[t / block_size] * block_size + t % block_size), with a
 * two-pass softmax whose rounding matches llama.cpp's (cpu_kernels.h,
 * struct cpu_attn_task). Work items are (sequence, chunk of up to 16 query
 * rows, KV head), pulled from an atomic counter, latest chunks first. The
 * kernel takes an item's rows together, so each K/V row is converted once
 * for up to 16 rows x all query heads of the GQA group instead of once per
 * row: prefill attention is bound by arithmetic, not by re-reading the
 * context. Their scores (rows x heads x context) are held whole, because the
 * softmax needs each row's global maximum; past a per-worker budget an item
 * is attended in fewer rows per call. A query at position p sees context
 * positions 0..p (causal order by position), which covers prefill chunks,
 * decodes and chained speculative verification alike; every row gets the
 * same bits however rows are grouped.
 *
 * Layer: backend/cpu.
 */
#include "cpu_backend.h"
#include "inferd/error.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

#define PARALLEL_MIN_ROWS 8
#define QUERY_CHUNK 16
#define MAX_HEAD_DIM 512

/* ---- RoPE ---- */

struct rope_job {
    const struct be_rope *r;
};

static void rotate_heads(float *x, int n_heads, const struct be_rope *r, const float *cs, const float *sn)
{
    int half = r->rope_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + h * r->head_dim;
        for (int i = 0; i < half; i++) {
            int a = r->neox ? i : 2 * i, b = r->neox ? i + half : 2 * i + 1;
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * cs[i] - x1 * sn[i];
            v[b] = x0 * sn[i] + x1 * cs[i];
        }
    }
}

static void rope_rows(void *arg, int ith, int nth)
{
    const struct be_rope *r = ((struct rope_job *)arg)->r;
    int64_t lo, hi;
    cpu_split(r->n, ith, nth, &lo, &hi);
    float cs[MAX_HEAD_DIM / 2], sn[MAX_HEAD_DIM / 2];
    for (int64_t t = lo; t < hi; t++) {
        float theta = (float)r->positions[t];
        for (int i = 0; i < r->rope_dim / 2; i++, theta *= r->theta_scale) {
            float a = r->freq_scale * (r->freq_factors ? theta / r->freq_factors[i] : theta);
            cs[i] = cosf(a);
            sn[i] = sinf(a);
        }
        rotate_heads(r->q + t * r->n_head * r->head_dim, r->n_head, r, cs, sn);
        rotate_heads(r->k + t * r->n_head_kv * r->head_dim, r->n_head_kv, r, cs, sn);
    }
}

void cpu_rope(struct backend *be, const struct be_rope *r)
{
    struct rope_job j = { r };
    if (r->n < PARALLEL_MIN_ROWS) rope_rows(&j, 0, 1);
    else pool_run(cpu_ctx(be)->pool, rope_rows, &j);
}

/* ---- KV store ---- */

struct store_job {
    struct cpu_ctx *c;
    struct be_kv_layer kv;
    const float *k, *v;
    int n, kv_dim;
    const int32_t *slots;
};

static void store_rows(void *arg, int ith, int nth)
{
    struct store_job *j = arg;
    int64_t lo, hi;
    cpu_split(j->n, ith, nth, &lo, &hi);
    for (int64_t t = lo; t < hi; t++) {
        if (j->slots[t] < 0) continue;
        size_t off = (size_t)j->slots[t] * j->kv_dim;
        j->c->k->to_f16(j->k + t * j->kv_dim, j->kv.k + off, j->kv_dim);
        j->c->k->to_f16(j->v + t * j->kv_dim, j->kv.v + off, j->kv_dim);
    }
}

void cpu_kv_store(struct backend *be, struct be_kv_layer kv, const float *k, const float *v, int n, int kv_dim,
                  const int32_t *slot_mapping)
{
    struct store_job j = { cpu_ctx(be), kv, k, v, n, kv_dim, slot_mapping };
    if (n < PARALLEL_MIN_ROWS) store_rows(&j, 0, 1);
    else pool_run(j.c->pool, store_rows, &j);
}

/* ---- attention ---- */

/* Floats of scores one worker keeps (2 MiB): a tile of 16 rows x 3 heads fits
 * up to ~11k positions; longer contexts are attended in fewer rows per call,
 * never fewer than one row (all of whose heads' scores the kernel needs). */
#define SCORE_BUDGET (1 << 19)

struct attn_job {
    struct cpu_ctx *c;
    const struct be_attention *a;
    int split;             /* parts each GQA group is split into (1, or G when work items are few) */
    int rows_per_call;     /* query rows per kernel call: QUERY_CHUNK unless their scores outgrow SCORE_BUDGET */
    int64_t n_chunks, n_items;
    float *scratch;        /* per worker: queries, then scores, then the kernel's tile */
    size_t q_floats, score_floats, scratch_per_worker;
    _Atomic int64_t next;
};

/* Query rows of one sequence for one item: [r0, r1) and the sequence index. */
static void item_rows(const struct batch_plan *p, int64_t chunk, int *seq, int *r0, int *r1)
{
    int s = 0;
    for (;; s++) { /* sequences are few: a walk is fine */
        int64_t nc = (p->query_start[s + 1] - p->query_start[s] + QUERY_CHUNK - 1) / QUERY_CHUNK;
        if (chunk < nc) break;
        chunk -= nc;
    }
    *seq = s;
    *r0 = p->query_start[s] + (int)chunk * QUERY_CHUNK;
    *r1 = *r0 + QUERY_CHUNK < p->query_start[s + 1] ? *r0 + QUERY_CHUNK : p->query_start[s + 1];
}

/* Fills q with t's queries (heads h0.. of rows row.. of sequence seq) and n_vis with their visible lengths.
 * The query meets K at half precision, as in llama.cpp. Copying it here, before
 * attend writes the same rows and heads of out, is what lets the model's
 * workspace alias out onto q (model.h). */
static void load_queries(const struct attn_job *j, const struct cpu_attn_task *t, int seq, int row, int h0, float *q,
                         int *n_vis)
{
    const struct be_attention *a = j->a;
    const struct batch_plan *p = a->plan;
    int hd = a->head_dim;
    f16_t q16[MAX_HEAD_DIM];
    for (int r = 0; r < t->n_rows; r++) {
        for (int g = 0; g < t->G; g++) {
            j->c->k->to_f16(a->q + (size_t)(row + r) * a->n_head * hd + (size_t)(h0 + g) * hd, q16, hd);
            for (int i = 0; i < hd; i++) q[((size_t)r * t->G + g) * hd + i] = f16_to_f32(q16[i]);
        }
        int pos = p->positions[row + r];
        n_vis[r] = pos + 1 < p->context_len[seq] ? pos + 1 : p->context_len[seq];
    }
}

static void attn_rows(void *arg, int ith, int nth)
{
    (void)nth;
    struct attn_job *j = arg;
    const struct be_attention *a = j->a;
    const struct batch_plan *p = a->plan;
    int hd = a->head_dim, G = a->n_head / a->n_head_kv, g_len = G / j->split, n_vis[QUERY_CHUNK];
    float *q = j->scratch + (size_t)ith * j->scratch_per_worker;
    struct cpu_attn_task t = {
        .q = q, .out_stride = (size_t)a->n_head * hd, .G = g_len, .head_dim = hd, .n_vis = n_vis,
        .kv_dim = a->n_head_kv * hd, .block_size = a->block_size, .scale = a->scale,
        .scores = q + j->q_floats, .tile = q + j->q_floats + j->score_floats,
    };
    for (;;) {
        int64_t item = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (item >= j->n_items) break;
        int part = (int)(item % j->split), kvh = (int)(item / j->split % a->n_head_kv);
        int seq, r0, r1;
        /* last chunks first: they see the most context, and the short ones then even out the workers' ends */
        item_rows(p, j->n_chunks - 1 - item / j->split / a->n_head_kv, &seq, &r0, &r1);
        int h0 = kvh * G + part * g_len;
        t.k = a->kv.k + (size_t)kvh * hd;
        t.v = a->kv.v + (size_t)kvh * hd;
        t.table = p->block_tables + (size_t)seq * p->max_blocks;
        for (int row = r0; row < r1; row += t.n_rows) {
            t.n_rows = r1 - row < j->rows_per_call ? r1 - row : j->rows_per_call;
            load_queries(j, &t, seq, row, h0, q, n_vis);
            t.out = a->out + (size_t)row * a->n_head * hd + (size_t)h0 * hd;
            j->c->k->attend(&t);
        }
    }
}

/* Sizes the per-worker scratch for the job's widest context; returns it or NULL. */
static float *attn_scratch(struct cpu_ctx *c, struct attn_job *j, int max_ctx)
{
    const struct be_attention *a = j->a;
    size_t g_len = (size_t)(a->n_head / a->n_head_kv / j->split), stride = cpu_attn_score_stride(max_ctx);
    size_t rows = SCORE_BUDGET / (g_len * stride);
    j->rows_per_call = rows < 1 ? 1 : rows > QUERY_CHUNK ? QUERY_CHUNK : (int)rows;
    j->q_floats = (size_t)j->rows_per_call * g_len * a->head_dim;
    j->score_floats = (size_t)j->rows_per_call * g_len * stride;
    /* whole cache lines per worker, so workers never share one */
    j->scratch_per_worker = (j->q_floats + j->score_floats + CPU_ATTN_TILE_FLOATS + 15) & ~(size_t)15;
    return cpu_scratch_get(&c->attn, (size_t)pool_size(c->pool) * j->scratch_per_worker * sizeof(float));
}

void cpu_attention(struct backend *be, const struct be_attention *a)
{
    struct cpu_ctx *c = cpu_ctx(be);
    if (c->error) return;
    if (a->head_dim > MAX_HEAD_DIM || a->head_dim % 8) {
        c->error = IFD_ERR_UNSUPPORTED;
        return;
    }
    struct attn_job j = { .c = c, .a = a, .split = 1 };
    const struct batch_plan *p = a->plan;
    int max_ctx = 1;
    for (int s = 0; s < p->n_seqs; s++) {
        j.n_chunks += (p->query_start[s + 1] - p->query_start[s] + QUERY_CHUNK - 1) / QUERY_CHUNK;
        if (p->context_len[s] > max_ctx) max_ctx = p->context_len[s];
    }
    /* few items (a decode of one sequence): give each query head its own item for balance,
     * at the price of reading K/V once per head instead of once per group */
    if (j.n_chunks * a->n_head_kv < 4 * pool_size(c->pool)) j.split = a->n_head / a->n_head_kv;
    j.n_items = j.n_chunks * a->n_head_kv * j.split;
    j.scratch = attn_scratch(c, &j, max_ctx);
    if (!j.scratch) {
        c->error = IFD_ERR_NOMEM;
        return;
    }
    atomic_init(&j.next, 0);
    pool_run(c->pool, attn_rows, &j);
}
