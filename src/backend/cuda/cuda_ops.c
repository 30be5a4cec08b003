/* SPDX-License-Identifier: Apache-2.0
 *
 * cuda_ops.c: the CUDA backend's heavy ops: matmuls (GEMV kernel for decode
 * and small batches, cuBLAS bf16 GEMM above), the fused SwiGLU FFN, and paged
 * attention (plan from cuda_plan.c, kernel from kernels/attention; a
 * recorded decode step uses the fixed plan of cuda_plan_attention_decode).
 *
 * GEMM operands: activations are converted to bf16 once per call (shared by
 * the up to three weights of a fused Q/K/V matmul). BF16 weights are used
 * as they are; other types use the bf16 copy made at load when the memory
 * plan allowed it, else are dequantized on the fly in row chunks of at most
 * W_CHUNK_BYTES (so even a 128k-vocabulary output layer needs a small
 * scratch). cuBLAS accumulates in f32 and writes f32; beta = 1 fuses the
 * residual add. Row-major y (n, n_out) = x (n, n_in) W^T is, in cuBLAS's
 * column-major terms, C (n_out x n) = op_T(W as n_in x n_out) * (x as n_in x n).
 *
 * Layer: backend/cuda.
 */
#include "cuda_backend.h"

#include "inferd/error.h"
#include "inferd_kernels.h"

#include <stdlib.h>

#define W_CHUNK_BYTES ((size_t)64 << 20)

/* ---- matmul ---- */

/* Rows of w per dequantize-then-GEMM pass. */
static int64_t chunk_rows(const struct be_weight *w)
{
    int64_t rows = (int64_t)(W_CHUNK_BYTES / ((size_t)w->n_in * 2));
    if (rows < 1) rows = 1;
    return rows < w->n_out ? rows : w->n_out;
}

static int gemm_bf16(struct cuda_ctx *c, const void *a_bf16, int64_t rows, int64_t n_in, const uint16_t *xb, int n,
                     float *y, int64_t ldy, int accumulate)
{
    const float alpha = 1.f, beta = accumulate ? 1.f : 0.f;
    cublasStatus_t s = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, n, (int)n_in, &alpha, a_bf16,
                                    CUDA_R_16BF, (int)n_in, xb, CUDA_R_16BF, (int)n_in, &beta, y, CUDA_R_32F, (int)ldy,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return cuda_check_blas(c, (int)s, "cublasGemmEx");
}

/* y (+)= W x through cuBLAS; xb holds x in bf16. */
static void matmul_gemm(struct cuda_ctx *c, const struct be_weight *w, const uint16_t *xb, int n, float *y, int acc)
{
    if (w->type == QT_BF16) {
        gemm_bf16(c, w->data, w->n_out, w->n_in, xb, n, y, w->n_out, acc);
        return;
    }
    if (w->layout == CUDA_LAYOUT_ROWS_BF16) {
        gemm_bf16(c, (const uint8_t *)w->data + cuda_weight_bf16_offset(w), w->n_out, w->n_in, xb, n, y, w->n_out, acc);
        return;
    }
    int64_t rows = chunk_rows(w);
    uint16_t *wb = cuda_buf_get(c, &c->w_bf16, (size_t)rows * (size_t)w->n_in * 2, "dequantized weight rows");
    if (!wb) return;
    size_t row_bytes = qtype_row_bytes(w->type, w->n_in);
    for (int64_t r0 = 0; r0 < w->n_out && !c->error; r0 += rows) {
        int64_t nr = w->n_out - r0 < rows ? w->n_out - r0 : rows;
        if (cuda_check(c, ik_dequant_to_bf16((const uint8_t *)w->data + (size_t)r0 * row_bytes, wb, w->type, nr, w->n_in,
                                             c->stream),
                       "dequantize weight"))
            return;
        gemm_bf16(c, wb, nr, w->n_in, xb, n, y + r0, w->n_out, acc);
    }
}

static const uint16_t *to_bf16(struct cuda_ctx *c, const float *x, int n, int64_t n_in)
{
    size_t count = (size_t)n * (size_t)n_in;
    uint16_t *xb = cuda_buf_get(c, &c->act_bf16, count * 2, "bf16 activations");
    if (!xb || cuda_check(c, ik_f32_to_bf16(x, xb, (int64_t)count, c->stream), "activations to bf16")) return NULL;
    return xb;
}

static void matmul_one(struct cuda_ctx *c, const struct be_weight *w, const float *x, const uint16_t **xb, int n,
                       float *y, int acc)
{
    if (cuda_plan_use_gemv(n, w->type)) {
        cuda_check(c, ik_gemv(w->data, NULL, w->type, x, n, w->n_in, w->n_out, y, acc, c->stream), "gemv");
        return;
    }
    if (!*xb && !(*xb = to_bf16(c, x, n, w->n_in))) return;
    matmul_gemm(c, w, *xb, n, y, acc);
}

/* Several weights of one type on the GEMV path (Q, K and V of a decode step):
 * one launch for all, so the small K and V rows share the ramp and tail of Q's. */
static int matmul_gemv_together(struct cuda_ctx *c, const struct be_matmul *mm)
{
    if (mm->n_w < 2 || mm->n_w > IK_GEMV_MAX_W || !cuda_plan_use_gemv(mm->n, mm->w[0]->type)) return 0;
    const void *w[IK_GEMV_MAX_W];
    int64_t rows[IK_GEMV_MAX_W];
    for (int i = 0; i < mm->n_w; i++) {
        if (mm->w[i]->type != mm->w[0]->type || mm->w[i]->n_in != mm->w[0]->n_in) return 0;
        w[i] = mm->w[i]->data;
        rows[i] = mm->w[i]->n_out;
    }
    cuda_check(c, ik_gemv_multi(w, rows, mm->y, mm->n_w, mm->w[0]->type, mm->x, mm->n, mm->w[0]->n_in,
                                mm->accumulate, c->stream), "gemv");
    return 1;
}

void cuda_matmul(struct backend *be, const struct be_matmul *mm)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    if (c->error || matmul_gemv_together(c, mm)) return;
    const uint16_t *xb = NULL;
    for (int i = 0; i < mm->n_w && !c->error; i++) matmul_one(c, mm->w[i], mm->x, &xb, mm->n, mm->y[i], mm->accumulate);
}

void cuda_ffn_swiglu(struct backend *be, const float *x, int n, const struct be_weight *gate,
                     const struct be_weight *up, float *h)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    if (c->error) return;
    if (gate->type == up->type && cuda_plan_use_gemv(n, gate->type)) {
        cuda_check(c, ik_gemv(gate->data, up->data, gate->type, x, n, gate->n_in, gate->n_out, h, 0, c->stream),
                   "gemv swiglu");
        return;
    }
    float *u = cuda_buf_get(c, &c->up, (size_t)n * (size_t)up->n_out * sizeof(float), "ffn up");
    if (!u) return;
    const uint16_t *xb = NULL;
    matmul_one(c, gate, x, &xb, n, h, 0);
    if (!c->error) matmul_one(c, up, x, &xb, n, u, 0);
    if (!c->error) cuda_check(c, ik_silu_mul(h, u, (int64_t)n * gate->n_out, c->stream), "silu_mul");
}

/* Sizes the GEMM scratch for max_tokens rows once, so steady-state steps allocate nothing. */
int cuda_reserve(struct backend *be, int max_tokens, const struct be_weight *w)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    if (max_tokens <= CUDA_PLAN_GEMV_MAX_N) return 0;
    size_t act = (size_t)max_tokens * (size_t)w->n_in * 2, up = (size_t)max_tokens * (size_t)w->n_out * sizeof(float);
    int ok = cuda_buf_get(c, &c->act_bf16, act, "bf16 activations") && cuda_buf_get(c, &c->up, up, "ffn up");
    if (ok && w->type != QT_BF16 && w->layout != CUDA_LAYOUT_ROWS_BF16)
        ok = cuda_buf_get(c, &c->w_bf16, (size_t)chunk_rows(w) * (size_t)w->n_in * 2, "dequantized weight rows") != NULL;
    if (ok) return 0;
    int rc = c->error;
    c->error = 0;
    return rc ? rc : IFD_ERR_NOMEM;
}

/* ---- attention ---- */

/* The step's attention plan and device tile list: computed by the first layer, reused by the rest. */
static int attention_plan(struct cuda_ctx *c, const struct be_attention *a, const int32_t *qs_dev,
                          const int32_t *ctx_dev)
{
    if (c->attn_qs_dev == qs_dev && c->attn_ctx_dev == ctx_dev && c->attn_heads == a->n_head &&
        c->attn_heads_kv == a->n_head_kv)
        return 0;
    const struct batch_plan *p = a->plan;
    struct cuda_attn_plan ap;
    int rc = cuda_plan_attention(p->query_start, p->context_len, p->n_seqs, a->n_head, a->n_head_kv, c->n_sm, &ap);
    if (rc) {
        if (!c->error) c->error = rc;
        return rc;
    }
    if (ap.n_tiles > c->tiles_cap) {
        struct cuda_attn_tile *t = realloc(c->tiles_host, (size_t)ap.n_tiles * sizeof *t);
        if (!t) {
            if (!c->error) c->error = IFD_ERR_NOMEM;
            return IFD_ERR_NOMEM;
        }
        c->tiles_host = t;
        c->tiles_cap = ap.n_tiles;
    }
    cuda_plan_attn_tiles(p->query_start, p->n_seqs, &ap, c->tiles_host);
    /* uncached: the host tile buffer is rewritten for every new plan */
    void *tiles = cuda_stage(c, c->tiles_host, (size_t)ap.n_tiles * sizeof *c->tiles_host, 0);
    if (!tiles) return -1;
    c->attn_plan = ap;
    c->attn_tiles_dev = tiles;
    c->attn_qs_dev = qs_dev;
    c->attn_ctx_dev = ctx_dev;
    c->attn_heads = a->n_head;
    c->attn_heads_kv = a->n_head_kv;
    return 0;
}

/* The plan of a padded decode step (cuda_graph.c): fixed for any context the block tables can hold. */
static int graph_attention_plan(struct cuda_ctx *c, const struct be_attention *a, struct cuda_attn_plan *ap)
{
    const struct batch_plan *p = a->plan;
    int64_t max_ctx = (int64_t)p->max_blocks * a->block_size;
    int rc = cuda_plan_attention_decode(p->n_seqs, max_ctx < INT32_MAX ? (int)max_ctx : INT32_MAX, a->n_head,
                                        a->n_head_kv, c->n_sm, ap);
    if (rc && !c->error) c->error = rc;
    return rc;
}

/* n arrival counters for split attention. The kernel leaves them zero, so
 * they are zeroed only when (re)allocated, which never happens while a
 * graph is being recorded (cuda_buf_get refuses). */
static unsigned *split_counters(struct cuda_ctx *c, size_t n)
{
    size_t cap = c->attn_counters.cap;
    unsigned *p = cuda_buf_get(c, &c->attn_counters, n * sizeof(unsigned), "attention split counters");
    if (p && c->attn_counters.cap != cap &&
        cuda_check(c, cudaMemsetAsync(p, 0, c->attn_counters.cap, c->stream), "zero attention split counters"))
        return NULL;
    return p;
}

void cuda_attention(struct backend *be, const struct be_attention *a)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    const struct batch_plan *p = a->plan;
    if (c->error || p->n_seqs <= 0) return;
    size_t n_tables = (size_t)p->n_seqs * (size_t)p->max_blocks;
    size_t need = ((size_t)(2 * p->n_seqs + 1) + (size_t)p->n_tokens + n_tables) * sizeof(int32_t) +
                  (size_t)p->n_tokens * sizeof(struct cuda_attn_tile) + 5 * CUDA_STAGE_ALIGN;
    if (!c->graph_step && cuda_stage_reserve(c, need)) return; /* a graph step's arrays are already on the device */
    const int32_t *qs = cuda_stage(c, p->query_start, (size_t)(p->n_seqs + 1) * sizeof(int32_t), 1);
    const int32_t *ctx = cuda_stage(c, p->context_len, (size_t)p->n_seqs * sizeof(int32_t), 1);
    const int32_t *pos = cuda_stage(c, p->positions, (size_t)p->n_tokens * sizeof(int32_t), 1);
    const int32_t *tables = cuda_stage(c, p->block_tables, n_tables * sizeof(int32_t), 1);
    if (!qs || !ctx || !pos || !tables) return;
    struct cuda_attn_plan graph_plan;
    const struct cuda_attn_plan *ap = &graph_plan;
    const void *tiles = c->graph_tiles_dev;
    if (c->graph_step) {
        if (graph_attention_plan(c, a, &graph_plan)) return;
    } else {
        if (attention_plan(c, a, qs, ctx)) return;
        ap = &c->attn_plan;
        tiles = c->attn_tiles_dev;
    }
    struct ik_attention_args args = {
        .q = a->q, .out = a->out, .k_cache = a->kv.k, .v_cache = a->kv.v, .n_head = a->n_head,
        .n_head_kv = a->n_head_kv, .head_dim = a->head_dim, .block_size = a->block_size, .scale = a->scale,
        .positions = pos, .context_len = ctx, .block_tables = tables, .max_blocks = p->max_blocks,
        .tiles = tiles, .n_tiles = ap->n_tiles, .rows_per_tile = ap->rows_per_tile,
        .n_split = ap->n_split,
    };
    if (ap->n_split > 1) {
        size_t floats = ik_attention_partial_floats(ap->n_tiles, a->n_head_kv, ap->warps, ap->n_split, a->head_dim);
        if (!(args.partial = cuda_buf_get(c, &c->attn_partial, floats * sizeof(float), "attention partials")) ||
            !(args.counters = split_counters(c, (size_t)ap->n_tiles * (size_t)a->n_head_kv)))
            return;
    }
    cuda_check(c, ik_paged_attention(&args, c->stream), "paged attention");
}
