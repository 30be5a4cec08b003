/* SPDX-License-Identifier: Apache-2.0
 *
 * cpu_attention.c: RoPE, the paged KV store and paged attention for the CPU
 * backend.
 *
 * Attention reads K/V only through each sequence's block table (position t
 * lives in slot table[t / block_size] * block_size + t % block_size), with a
 * two-pass softmax whose rounding matches llama.cpp's (see attend_row).
 * Work items are (sequence, query head, chunk of query rows),
 * pulled from an atomic counter. A query at position p sees context positions
 * 0..p (causal order by position), which covers prefill chunks, decodes and
 * chained speculative verification alike.
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

struct attn_job {
    struct cpu_ctx *c;
    const struct be_attention *a;
    int64_t n_items;
    int max_ctx;           /* longest visible context: size of each worker's score row */
    float *scores;         /* (nth, max_ctx) scratch */
    _Atomic int64_t next;
};

/* One query row of one head against its visible context.
 *
 * The rounding points are those of llama.cpp's default (non flash-attention)
 * CPU path, so logits agree with it closely: the query is rounded to half
 * precision like the K it meets, scores are exponentiated against the global
 * maximum and summed in double, and the normalized probabilities are rounded
 * to half before weighting V. Two passes over the context, so scores for the
 * whole context are kept (one float per position per worker). */
static void attend_row(const struct cpu_kernels *k, const struct be_attention *a, int seq, int row, int head,
                       float *score)
{
    const struct batch_plan *p = a->plan;
    int hd = a->head_dim, kv_dim = a->n_head_kv * hd, bs = a->block_size;
    int kvh = head / (a->n_head / a->n_head_kv);
    const float *q = a->q + (size_t)row * a->n_head * hd + (size_t)head * hd;
    float *out = a->out + (size_t)row * a->n_head * hd + (size_t)head * hd;
    int n_vis = p->positions[row] + 1;
    if (n_vis > p->context_len[seq]) n_vis = p->context_len[seq];
    const int32_t *table = p->block_tables + (size_t)seq * p->max_blocks;

    f16_t q16[MAX_HEAD_DIM];
    float qr[MAX_HEAD_DIM], acc[MAX_HEAD_DIM];
    k->to_f16(q, q16, hd);
    for (int i = 0; i < hd; i++) qr[i] = f16_to_f32(q16[i]);
    float max = -INFINITY;
    for (int t = 0; t < n_vis; t++) {
        size_t off = ((size_t)table[t / bs] * bs + t % bs) * kv_dim + (size_t)kvh * hd;
        score[t] = k->dot_f16(a->kv.k + off, qr, hd) * a->scale;
        if (score[t] > max) max = score[t];
    }
    k->exp_sub(score, n_vis, max);
    double sum = 0;
    for (int t = 0; t < n_vis; t++) sum += score[t];
    float inv = (float)(1.0 / sum);
    memset(acc, 0, (size_t)hd * sizeof *acc);
    for (int t = 0; t < n_vis; t++) {
        size_t off = ((size_t)table[t / bs] * bs + t % bs) * kv_dim + (size_t)kvh * hd;
        float w = f16_to_f32(f32_to_f16(score[t] * inv));
        if (w != 0.f) k->axpy_f16(acc, w, a->kv.v + off, hd);
    }
    memcpy(out, acc, (size_t)hd * sizeof *acc);
}

static void attn_rows(void *arg, int ith, int nth)
{
    (void)nth;
    struct attn_job *j = arg;
    const struct be_attention *a = j->a;
    const struct batch_plan *p = a->plan;
    float *score = j->scores + (size_t)ith * j->max_ctx;
    for (;;) {
        int64_t item = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (item >= j->n_items) break;
        /* item -> (sequence, query chunk, head); sequences are few, a walk is fine */
        int head = (int)(item % a->n_head);
        int64_t chunk = item / a->n_head;
        int seq = 0;
        for (;; seq++) {
            int64_t q_len = p->query_start[seq + 1] - p->query_start[seq];
            int64_t nc = (q_len + QUERY_CHUNK - 1) / QUERY_CHUNK;
            if (chunk < nc) break;
            chunk -= nc;
        }
        int r0 = p->query_start[seq] + (int)chunk * QUERY_CHUNK;
        int r1 = r0 + QUERY_CHUNK < p->query_start[seq + 1] ? r0 + QUERY_CHUNK : p->query_start[seq + 1];
        for (int row = r0; row < r1; row++) attend_row(j->c->k, a, seq, row, head, score);
    }
}

void cpu_attention(struct backend *be, const struct be_attention *a)
{
    struct cpu_ctx *c = cpu_ctx(be);
    if (c->error) return;
    if (a->head_dim > MAX_HEAD_DIM) {
        c->error = IFD_ERR_UNSUPPORTED;
        return;
    }
    struct attn_job j = { .c = c, .a = a };
    const struct batch_plan *p = a->plan;
    int64_t chunks = 0;
    for (int s = 0; s < p->n_seqs; s++) {
        chunks += (p->query_start[s + 1] - p->query_start[s] + QUERY_CHUNK - 1) / QUERY_CHUNK;
        if (p->context_len[s] > j.max_ctx) j.max_ctx = p->context_len[s];
    }
    j.n_items = chunks * a->n_head;
    int nth = pool_size(c->pool);
    j.scores = cpu_scratch_get(&c->attn, (size_t)nth * (size_t)(j.max_ctx > 0 ? j.max_ctx : 1) * sizeof(float));
    if (!j.scores) {
        c->error = IFD_ERR_NOMEM;
        return;
    }
    atomic_init(&j.next, 0);
    pool_run(c->pool, attn_rows, &j);
}
