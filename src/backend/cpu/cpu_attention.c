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
 * When items are few (a decode of one or two sequences), one item per worker
 * would leave workers idle, so each (chunk, KV head) task is spread over all
 * workers in three phases with barriers between: scores by tiles of
 * positions, softmax by pair, weighted V by slices of the head dimension.
 * Every K and V byte is still read once per task, and the kernels' phase
 * functions are what cpu_attend() runs (cpu_kernels.h), so a sequence's
 * output does not depend on which path its batch took.
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
/* Three-phase path: at most this many score floats in all (else one item per task). */
#define PHASED_SCORE_BUDGET (16u << 20)
/* Positions per scores item at least, and V dims per values item at least (a
 * 64-byte line of f16, so no two items read the same line). */
#define PHASED_MIN_POSITIONS 64
#define PHASED_MIN_DIMS 32

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
    size_t row_bytes = kv_row_bytes(j->kv.dtype, j->kv_dim);
    for (int64_t t = lo; t < hi; t++) {
        if (j->slots[t] < 0) continue;
        uint8_t *k = (uint8_t *)j->kv.k + (size_t)j->slots[t] * row_bytes;
        uint8_t *v = (uint8_t *)j->kv.v + (size_t)j->slots[t] * row_bytes;
        if (j->kv.dtype == KV_Q8_0) { /* GGUF's Q8_0 rounding, as llama.cpp's q8_0 cache */
            quant_row_q8_0(j->k + t * j->kv_dim, (block_q8_0 *)k, j->kv_dim);
            quant_row_q8_0(j->v + t * j->kv_dim, (block_q8_0 *)v, j->kv_dim);
        } else {
            j->c->k->to_f16(j->k + t * j->kv_dim, (f16_t *)k, j->kv_dim);
            j->c->k->to_f16(j->v + t * j->kv_dim, (f16_t *)v, j->kv_dim);
        }
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

/* Points t at KV head kvh of the layer's pools, in their element type. */
static void task_kv(struct cpu_attn_task *t, const struct be_attention *a, int kvh)
{
    size_t head = kv_row_bytes(a->kv.dtype, kvh * a->head_dim);
    t->k = (const uint8_t *)a->kv.k + head;
    t->v = (const uint8_t *)a->kv.v + head;
    t->row_bytes = kv_row_bytes(a->kv.dtype, a->n_head_kv * a->head_dim);
    t->dtype = a->kv.dtype;
}

/* Floats of scores one worker keeps (2 MiB): a tile of 16 rows x 3 heads fits
 * up to ~11k positions; longer contexts are attended in fewer rows per call,
 * never fewer than one row (all of whose heads' scores the kernel needs). */
#define SCORE_BUDGET (1 << 19)

struct attn_job {
    struct cpu_ctx *c;
    const struct be_attention *a;
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
static void load_queries(const struct cpu_ctx *c, const struct be_attention *a, const struct cpu_attn_task *t, int seq,
                         int row, int h0, float *q, int *n_vis)
{
    const struct batch_plan *p = a->plan;
    int hd = a->head_dim;
    for (int r = 0; r < t->n_rows; r++) {
        for (int g = 0; g < t->G; g++)
            c->k->round_half(a->q + (size_t)(row + r) * a->n_head * hd + (size_t)(h0 + g) * hd,
                             q + ((size_t)r * t->G + g) * hd, hd);
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
    int hd = a->head_dim, G = a->n_head / a->n_head_kv, n_vis[QUERY_CHUNK];
    float *q = j->scratch + (size_t)ith * j->scratch_per_worker;
    struct cpu_attn_task t = {
        .q = q, .out_stride = (size_t)a->n_head * hd, .G = G, .head_dim = hd, .n_vis = n_vis,
        .block_size = a->block_size, .scale = a->scale,
        .scores = q + j->q_floats, .tile = q + j->q_floats + j->score_floats,
    };
    for (;;) {
        int64_t item = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (item >= j->n_items) break;
        int kvh = (int)(item % a->n_head_kv), seq, r0, r1;
        /* last chunks first: they see the most context, and the short ones then even out the workers' ends */
        item_rows(p, j->n_chunks - 1 - item / a->n_head_kv, &seq, &r0, &r1);
        int h0 = kvh * G;
        task_kv(&t, a, kvh);
        t.table = p->block_tables + (size_t)seq * p->max_blocks;
        for (int row = r0; row < r1; row += t.n_rows) {
            t.n_rows = r1 - row < j->rows_per_call ? r1 - row : j->rows_per_call;
            load_queries(j->c, a, &t, seq, row, h0, q, n_vis);
            t.out = a->out + (size_t)row * a->n_head * hd + (size_t)h0 * hd;
            cpu_attend(j->c->k, &t);
        }
    }
}

/* Sizes the per-worker scratch for the job's widest context; returns it or NULL. */
static float *attn_scratch(struct cpu_ctx *c, struct attn_job *j, int max_ctx)
{
    const struct be_attention *a = j->a;
    size_t g_len = (size_t)(a->n_head / a->n_head_kv), stride = cpu_attn_score_stride(max_ctx);
    size_t rows = SCORE_BUDGET / (g_len * stride);
    j->rows_per_call = rows < 1 ? 1 : rows > QUERY_CHUNK ? QUERY_CHUNK : (int)rows;
    j->q_floats = (size_t)j->rows_per_call * g_len * a->head_dim;
    j->score_floats = (size_t)j->rows_per_call * g_len * stride;
    /* whole cache lines per worker, so workers never share one */
    j->scratch_per_worker = (j->q_floats + j->score_floats + CPU_ATTN_TILE_FLOATS + 15) & ~(size_t)15;
    return cpu_scratch_get(&c->attn, (size_t)pool_size(c->pool) * j->scratch_per_worker * sizeof(float));
}

/* ---- few tasks: three phases over all workers ---- */

struct phased_job {
    struct cpu_ctx *c;
    struct cpu_attn_task *tasks; /* one per (chunk, KV head), tile unset */
    int n_tasks, max_pairs;
    int pos_tile, pos_items;     /* scores: positions per item (a multiple of 8), items per task */
    int dim_slice, dim_items;    /* values: dims per item, items per task */
    float *tiles;                /* CPU_ATTN_TILE_FLOATS per worker */
    _Atomic int64_t next[3];
};

static void phased_rows(void *arg, int ith, int nth)
{
    (void)nth;
    struct phased_job *j = arg;
    const struct cpu_kernels *k = j->c->k;
    struct cpu_attn_task t;
    int64_t it;
    /* tasks interleave in item order, so every worker gets a share of each */
    while ((it = atomic_fetch_add_explicit(&j->next[0], 1, memory_order_relaxed)) < (int64_t)j->n_tasks * j->pos_items) {
        t = j->tasks[it % j->n_tasks];
        t.tile = j->tiles + (size_t)ith * CPU_ATTN_TILE_FLOATS;
        int p0 = (int)(it / j->n_tasks) * j->pos_tile, max_vis = cpu_attn_max_vis(&t);
        if (p0 < max_vis) k->attn_scores(&t, p0, max_vis - p0 < j->pos_tile ? max_vis - p0 : j->pos_tile);
    }
    pool_barrier(j->c->pool);
    while ((it = atomic_fetch_add_explicit(&j->next[1], 1, memory_order_relaxed)) < (int64_t)j->n_tasks * j->max_pairs) {
        const struct cpu_attn_task *tk = &j->tasks[it % j->n_tasks];
        int pr = (int)(it / j->n_tasks);
        if (pr < tk->n_rows * tk->G) k->attn_softmax(tk, pr);
    }
    pool_barrier(j->c->pool);
    while ((it = atomic_fetch_add_explicit(&j->next[2], 1, memory_order_relaxed)) < (int64_t)j->n_tasks * j->dim_items) {
        t = j->tasks[it % j->n_tasks];
        t.tile = j->tiles + (size_t)ith * CPU_ATTN_TILE_FLOATS;
        int d0 = (int)(it / j->n_tasks) * j->dim_slice;
        k->attn_values(&t, d0, d0 + j->dim_slice);
    }
}

/* Builds one task per (chunk, KV head) with its queries loaded and its own
 * scores region, cuts the work into items for nth workers, and runs the
 * phases. Returns 0, or 1 when the scores would exceed PHASED_SCORE_BUDGET
 * (the caller then takes the one-item-per-task path); sets c->error on OOM. */
static int attend_phased(struct cpu_ctx *c, const struct be_attention *a, int64_t n_chunks, int max_ctx)
{
    const struct batch_plan *p = a->plan;
    int hd = a->head_dim, G = a->n_head / a->n_head_kv, nth = pool_size(c->pool);
    int n_tasks = (int)n_chunks * a->n_head_kv, max_rows = 1;
    for (int s = 0; s < p->n_seqs; s++) {
        int len = p->query_start[s + 1] - p->query_start[s];
        if (len > max_rows) max_rows = len < QUERY_CHUNK ? len : QUERY_CHUNK;
    }
    /* a task's queries and scores: decode-only batches need one row's worth */
    size_t per_task_max = (size_t)max_rows * G * (hd + cpu_attn_score_stride(max_ctx));
    if ((size_t)n_tasks * per_task_max > PHASED_SCORE_BUDGET) return 1;
    struct phased_job j = { .c = c, .n_tasks = n_tasks };
    size_t task_bytes = (size_t)n_tasks * (sizeof *j.tasks + QUERY_CHUNK * sizeof(int));
    float *f = cpu_scratch_get(&c->attn, ((size_t)n_tasks * per_task_max + (size_t)nth * CPU_ATTN_TILE_FLOATS) * sizeof(float));
    j.tasks = cpu_scratch_get(&c->attn_tasks, task_bytes);
    if (!f || !j.tasks) {
        c->error = IFD_ERR_NOMEM;
        return 0;
    }
    int *n_vis = (int *)(j.tasks + n_tasks);
    j.tiles = f + (size_t)n_tasks * per_task_max;
    for (int i = 0; i < n_tasks; i++) {
        int kvh = i % a->n_head_kv, seq, r0, r1;
        item_rows(p, i / a->n_head_kv, &seq, &r0, &r1);
        struct cpu_attn_task *t = &j.tasks[i];
        *t = (struct cpu_attn_task){
            .q = f + (size_t)i * per_task_max, .out_stride = (size_t)a->n_head * hd, .n_rows = r1 - r0, .G = G,
            .head_dim = hd, .n_vis = n_vis + i * QUERY_CHUNK, .table = p->block_tables + (size_t)seq * p->max_blocks,
            .block_size = a->block_size, .scale = a->scale,
            .out = a->out + (size_t)r0 * a->n_head * hd + (size_t)kvh * G * hd,
        };
        task_kv(t, a, kvh);
        load_queries(c, a, t, seq, r0, kvh * G, (float *)t->q, (int *)t->n_vis);
        t->scores = (float *)t->q + (size_t)t->n_rows * G * hd;
        if (t->n_rows * G > j.max_pairs) j.max_pairs = t->n_rows * G;
    }
    int pos_items = (4 * nth + n_tasks - 1) / n_tasks;
    j.pos_tile = ((max_ctx + pos_items - 1) / pos_items + 7) & ~7;
    if (j.pos_tile < PHASED_MIN_POSITIONS) j.pos_tile = PHASED_MIN_POSITIONS;
    j.pos_items = (max_ctx + j.pos_tile - 1) / j.pos_tile;
    j.dim_items = 1;
    /* halve the slices while they stay whole 8-float groups of at least PHASED_MIN_DIMS */
    while (hd % (16 * j.dim_items) == 0 && hd / (2 * j.dim_items) >= PHASED_MIN_DIMS && j.dim_items * n_tasks < 2 * nth)
        j.dim_items *= 2;
    j.dim_slice = hd / j.dim_items;
    for (int i = 0; i < 3; i++) atomic_init(&j.next[i], 0);
    pool_run(c->pool, phased_rows, &j);
    return 0;
}

void cpu_attention(struct backend *be, const struct be_attention *a)
{
    struct cpu_ctx *c = cpu_ctx(be);
    if (c->error) return;
    if (a->head_dim > MAX_HEAD_DIM || a->head_dim % 8) {
        c->error = IFD_ERR_UNSUPPORTED;
        return;
    }
    struct attn_job j = { .c = c, .a = a };
    const struct batch_plan *p = a->plan;
    int max_ctx = 1;
    for (int s = 0; s < p->n_seqs; s++) {
        j.n_chunks += (p->query_start[s + 1] - p->query_start[s] + QUERY_CHUNK - 1) / QUERY_CHUNK;
        if (p->context_len[s] > max_ctx) max_ctx = p->context_len[s];
    }
    /* few items (a decode of one sequence): spread each over the workers */
    if (pool_size(c->pool) > 1 && j.n_chunks * a->n_head_kv < 4 * pool_size(c->pool) &&
        !attend_phased(c, a, j.n_chunks, max_ctx))
        return;
    j.n_items = j.n_chunks * a->n_head_kv;
    j.scratch = attn_scratch(c, &j, max_ctx);
    if (!j.scratch) {
        c->error = IFD_ERR_NOMEM;
        return;
    }
    atomic_init(&j.next, 0);
    pool_run(c->pool, attn_rows, &j);
}
