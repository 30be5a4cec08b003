/* SPDX-License-Identifier: Apache-2.0
 *
 * cpu_matmul.c: quantized matrix multiplication on the worker pool, for
 * backend->matmul (up to three weights sharing one input, e.g. Q/K/V) and
 * backend->ffn_swiglu (gate and up fused with the SiLU product).
 *
 * One pool job per call, in two phases:
 *   1. every worker quantizes a share of the activation rows into each
 *      format the weights need (see cpu_kernels.h), then a barrier;
 *   2. workers pull (token chunk, row chunk) items from an atomic counter
 *      and run the kernel set's gemm on each.
 * Items are ordered token-chunk-major so that workers share the activation
 * chunk in cache while sweeping different weight rows; dynamic pulling keeps
 * workers busy when one is slowed down by the OS.
 *
 * Each output element is produced by exactly one item with arithmetic that
 * does not depend on the tile shape, so results are deterministic and do not
 * depend on which other tokens share the batch.
 *
 * Layer: backend/cpu.
 */
#include "cpu_backend.h"
#include "inferd/error.h"

#include <stdatomic.h>
#include <string.h>

#define TOKEN_CHUNK 64     /* activation rows per item: keeps a chunk's activations in L2 */
#define ITEMS_PER_THREAD 8 /* row chunks per weight per thread, for load balance */
#define SWIGLU_ROWS 64     /* row chunk of the fused FFN; the up tile lives on the stack */
/* A job of at most STREAM_MAX_TOKENS tokens (decoding a few sequences) is
 * bound by streaming its weights, not by arithmetic. There items are few and
 * long, because each item starts a cold stream that the prefetchers ramp up
 * again: 2 per weight per thread, 256 rows of the fused FFN. Measured on the
 * 2-core VM against 8 per thread and 64 rows: batch-1 decode +15% (median of
 * six interleaved rounds), 4 sequences +9%, no difference at 8 or 16. */
#define STREAM_MAX_TOKENS 4
#define STREAM_ITEMS_PER_THREAD 2
#define SWIGLU_STREAM_ROWS 256
_Static_assert(STREAM_MAX_TOKENS * SWIGLU_STREAM_ROWS <= TOKEN_CHUNK * SWIGLU_ROWS, "the up tile holds a stream item");

struct mm_job {
    struct cpu_ctx *c;
    const float *x;
    int n;
    int64_t n_in;
    int n_w;
    const struct be_weight *w[BE_MATMUL_MAX_W];
    float *y[BE_MATMUL_MAX_W];
    cpu_gemm_fn fn[BE_MATMUL_MAX_W];
    const void *xa[BE_MATMUL_MAX_W];      /* activations in each weight's format */
    size_t xa_stride[BE_MATMUL_MAX_W];
    void *act[3];                         /* per enum cpu_act; NULL if not needed */
    size_t act_stride[3];
    int64_t row_chunk[BE_MATMUL_MAX_W];
    int64_t n_row_chunks[BE_MATMUL_MAX_W];
    int64_t row_items;                    /* sum of n_row_chunks */
    int n_tok_chunks;
    int accumulate;
    int swiglu;                           /* w[0] = gate -> y[0] = h, w[1] = up */
    _Atomic int64_t next;
};

static void quantize_rows(struct mm_job *j, int ith, int nth)
{
    int64_t lo, hi;
    cpu_split(j->n, ith, nth, &lo, &hi);
    for (int f = CPU_ACT_Q8_1F; f <= CPU_ACT_Q8_K; f++) {
        if (!j->act[f]) continue;
        for (int64_t t = lo; t < hi; t++) {
            const float *xr = j->x + t * j->n_in;
            void *dst = (char *)j->act[f] + (size_t)t * j->act_stride[f];
            if (f == CPU_ACT_Q8_1F) j->c->k->quant_q8_1f(xr, dst, j->n_in);
            else j->c->k->quant_q8_K(xr, dst, j->n_in);
        }
    }
}

/* Runs one (token chunk, row chunk) item of a plain matmul. */
static void run_item(struct mm_job *j, int64_t item)
{
    int tc = (int)(item / j->row_items);
    int64_t rc = item % j->row_items;
    int i = 0;
    while (rc >= j->n_row_chunks[i]) rc -= j->n_row_chunks[i++];
    const struct be_weight *w = j->w[i];
    int64_t r0 = rc * j->row_chunk[i], r1 = r0 + j->row_chunk[i];
    if (r1 > w->n_out) r1 = w->n_out;
    int t0 = tc * TOKEN_CHUNK, nt = j->n - t0 < TOKEN_CHUNK ? j->n - t0 : TOKEN_CHUNK;
    j->fn[i](w->data, w->n_in, w->n_out, r0, r1, (const char *)j->xa[i] + (size_t)t0 * j->xa_stride[i],
             j->xa_stride[i], nt, j->y[i] + (int64_t)t0 * w->n_out + r0, w->n_out, j->accumulate);
}

/* Runs one item of the fused FFN: gate rows into h, up rows into a stack tile, then h = silu(h) * up. */
static void run_swiglu_item(struct mm_job *j, int64_t item)
{
    const struct be_weight *g = j->w[0], *u = j->w[1];
    int tc = (int)(item / j->row_items);
    int64_t r0 = (item % j->row_items) * j->row_chunk[0], r1 = r0 + j->row_chunk[0];
    if (r1 > g->n_out) r1 = g->n_out;
    int t0 = tc * TOKEN_CHUNK, nt = j->n - t0 < TOKEN_CHUNK ? j->n - t0 : TOKEN_CHUNK;
    int64_t nr = r1 - r0;
    float up[TOKEN_CHUNK * SWIGLU_ROWS];
    float *h = j->y[0] + (int64_t)t0 * g->n_out + r0;
    j->fn[0](g->data, g->n_in, g->n_out, r0, r1, (const char *)j->xa[0] + (size_t)t0 * j->xa_stride[0],
             j->xa_stride[0], nt, h, g->n_out, 0);
    j->fn[1](u->data, u->n_in, u->n_out, r0, r1, (const char *)j->xa[1] + (size_t)t0 * j->xa_stride[1],
             j->xa_stride[1], nt, up, nr, 0);
    for (int t = 0; t < nt; t++) j->c->k->silu_mul(h + (int64_t)t * g->n_out, up + t * nr, (int)nr);
}

static void mm_job_run(void *arg, int ith, int nth)
{
    struct mm_job *j = arg;
    quantize_rows(j, ith, nth);
    pool_barrier(j->c->pool);
    int64_t total = j->row_items * j->n_tok_chunks;
    for (;;) {
        int64_t item = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (item >= total) break;
        if (j->swiglu) run_swiglu_item(j, item);
        else run_item(j, item);
    }
}

/* Fills kernels, activation buffers and the item grid. Returns 0 or -1 on OOM. */
static int mm_job_setup(struct mm_job *j, int nth)
{
    struct cpu_ctx *c = j->c;
    size_t need[3] = { 0, 0, 0 };
    for (int i = 0; i < j->n_w; i++) {
        enum cpu_act f = cpu_act_for(j->w[i]->type);
        j->fn[i] = cpu_gemm_for(c, j->w[i]);
        j->act_stride[f] = cpu_act_row_bytes(f, j->n_in);
        need[f] = j->act_stride[f] * (size_t)j->n;
    }
    for (int f = CPU_ACT_Q8_1F; f <= CPU_ACT_Q8_K; f++)
        if (need[f] && !(j->act[f] = cpu_scratch_get(&c->act[f], need[f]))) return -1;
    for (int i = 0; i < j->n_w; i++) {
        enum cpu_act f = cpu_act_for(j->w[i]->type);
        j->xa[i] = f == CPU_ACT_F32 ? (const void *)j->x : j->act[f];
        j->xa_stride[i] = j->act_stride[f];
    }
    j->n_tok_chunks = (j->n + TOKEN_CHUNK - 1) / TOKEN_CHUNK;
    j->row_items = 0;
    int streaming = j->n <= STREAM_MAX_TOKENS;
    int64_t per_thread = streaming ? STREAM_ITEMS_PER_THREAD : ITEMS_PER_THREAD;
    for (int i = 0; i < j->n_w; i++) {
        int64_t n_out = j->w[i]->n_out;
        int64_t chunk = j->swiglu ? (streaming ? SWIGLU_STREAM_ROWS : SWIGLU_ROWS)
                                  : (n_out + nth * per_thread - 1) / (nth * per_thread);
        chunk = (chunk + 7) & ~(int64_t)7; /* X8 kernels work on whole 8-row groups */
        if (chunk < 8) chunk = 8;
        j->row_chunk[i] = chunk;
        j->n_row_chunks[i] = (n_out + chunk - 1) / chunk;
        if (!j->swiglu || i == 0) j->row_items += j->n_row_chunks[i];
    }
    atomic_init(&j->next, 0);
    return 0;
}

static void run_job(struct mm_job *j)
{
    if (j->c->error) return; /* a failed step is abandoned; sync reports it */
    if (mm_job_setup(j, pool_size(j->c->pool))) {
        j->c->error = IFD_ERR_NOMEM;
        return;
    }
    pool_run(j->c->pool, mm_job_run, j);
}

void cpu_matmul(struct backend *be, const struct be_matmul *mm)
{
    struct mm_job j;
    memset(&j, 0, sizeof j);
    j.c = cpu_ctx(be);
    j.x = mm->x;
    j.n = mm->n;
    j.n_in = mm->w[0]->n_in;
    j.n_w = mm->n_w;
    j.accumulate = mm->accumulate;
    for (int i = 0; i < mm->n_w; i++) {
        j.w[i] = mm->w[i];
        j.y[i] = mm->y[i];
    }
    run_job(&j);
}

void cpu_ffn_swiglu(struct backend *be, const float *x, int n, const struct be_weight *gate,
                    const struct be_weight *up, float *h)
{
    struct mm_job j;
    memset(&j, 0, sizeof j);
    j.c = cpu_ctx(be);
    j.x = x;
    j.n = n;
    j.n_in = gate->n_in;
    j.n_w = 2;
    j.w[0] = gate;
    j.w[1] = up;
    j.y[0] = h;
    j.swiglu = 1;
    run_job(&j);
}
