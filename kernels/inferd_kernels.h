/* SPDX-License-Identifier: Apache-2.0
 *
 * inferd_kernels.h: the flat C ABI of every CUDA kernel in kernels/. One
 * folder per op family (.cu + this header's section); CUDA types never cross
 * this boundary: streams are passed as void * (cudaStream_t), results are
 * cudaError_t values returned as int (0 = success; cudaErrorInvalidValue = 1
 * for arguments a kernel does not support). Every function only enqueues
 * work on the stream; pointers are device memory unless said otherwise.
 * Weight `type` arguments are ggml type ids (include/inferd/quant.h): Q4_0,
 * Q4_1, Q8_0, Q4_K, Q5_K, Q6_K, F16, BF16, F32.
 *
 * Layer: kernels (called only from backend/cuda).
 */
#ifndef INFERD_KERNELS_H
#define INFERD_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- dequant/: GGUF rows -> bf16 (operands of cuBLAS GEMMs in prefill) ----
 * src: n_rows rows of n_cols elements of `type`; dst: (n_rows, n_cols) bf16.
 * n_cols must be a multiple of the type's block. Values are quant.c's
 * dequantization rounded once to bf16. */
int ik_dequant_to_bf16(const void *src, uint16_t *dst, int type, int64_t n_rows, int64_t n_cols, void *stream);
/* dst[i] = bf16(src[i]), round to nearest even (activations for cuBLAS). */
int ik_f32_to_bf16(const float *src, uint16_t *dst, int64_t n, void *stream);

/* ---- gemv/: fused dequantizing matmul for decode and small batches ----
 * y[t * n_out + r] (+)= W[r] . x[t] for t < n <= IK_GEMV_MAX_N, reading W's
 * GGUF rows directly; x is (n, n_in) f32, 16-byte aligned. With w_up
 * (same type and shape as w), writes silu(W x) * (W_up x) instead (no
 * accumulate). */
#define IK_GEMV_MAX_N 8
int ik_gemv(const void *w, const void *w_up, int type, const float *x, int n, int64_t n_in, int64_t n_out, float *y,
            int accumulate, void *stream);
/* The same for n_w <= IK_GEMV_MAX_W matrices of one type and row length in one
 * launch (Q, K and V): y[i] (+)= W[i] x, W[i] having n_out[i] rows. */
#define IK_GEMV_MAX_W 3
int ik_gemv_multi(const void *const *w, const int64_t *n_out, float *const *y, int n_w, int type, const float *x,
                  int n, int64_t n_in, int accumulate, void *stream);

/* Batch 1, BF16/F16 weights, n_in % 16 == 0, two warps per row whatever the
 * row count (see gemv.cu): what ik_gemv and ik_gemv_multi run at n = 1 on
 * matrices of up to 8,192 rows, exposed so that tests/gpu can check and time
 * it on larger ones. The semantics of ik_gemv_multi at n = 1; with w_up
 * (n_w == 1, no accumulate) those of ik_gemv's SwiGLU. */
int ik_gemv_half_rows(const void *const *w, const int64_t *n_out, float *const *y, int n_w, const void *w_up, int type,
                      const float *x, int64_t n_in, int accumulate, void *stream);

/* Experiment, called by tests/gpu only: batch 1, BF16/F16 weights, n_in % 8 == 0, the
 * product of RMSNorm(x) * norm_w (as ik_rms_norm would make it) instead of
 * x, in one launch (see gemv.cu). */
int ik_gemv_rms_norm(const void *const *w, const int64_t *n_out, float *const *y, int n_w, const void *w_up, int type,
                     const float *x, const float *norm_w, float eps, int64_t n_in, int accumulate, void *stream);

/* ---- embed/: out[i] = row ids[i] of the table, dequantized; (n, n_in) f32 ---- */
int ik_embed(const void *table, int type, int64_t n_in, const int32_t *ids, int n, float *out, void *stream);

/* ---- norm/: RMSNorm, sums of squares in double as the CPU backend ----
 * out[i] = x[i] / rms(x[i]) * w for n rows of dim; out may equal x.
 * The residual variant first does x[i] += r[i] (x updated in place). */
int ik_rms_norm(const float *x, const float *w, float *out, int n, int dim, float eps, void *stream);
int ik_rms_norm_residual(float *x, const float *r, const float *w, float *out, int n, int dim, float eps, void *stream);

/* ---- rope/: rotary embedding in place (semantics of struct be_rope) ---- */
struct ik_rope_args {
    float *q;                   /* (n, n_head * head_dim) */
    float *k;                   /* (n, n_head_kv * head_dim) */
    int n, n_head, n_head_kv, head_dim, rope_dim;
    int neox;                   /* 0: pairs (2i, 2i+1); 1: (i, i + rope_dim/2) */
    const int32_t *positions;   /* (n) device */
    float theta_scale, freq_scale;
    const float *freq_factors;  /* (rope_dim / 2) device, or NULL */
};
int ik_rope(const struct ik_rope_args *a, void *stream);
/* ik_rope, then rows t of the rotated k and of v (n, n_head_kv * head_dim)
 * stored at slot slots[t] of the f16 caches (device; -1 = skip), as
 * ik_kv_store would: one launch instead of two. */
int ik_rope_kv_store(const struct ik_rope_args *a, uint16_t *k_cache, uint16_t *v_cache, const float *v,
                     const int32_t *slots, void *stream);

/* ---- kv/: paged KV cache writes (caches are f16 bits) ----
 * kv_store: rows t of k and v (n, kv_dim) f32 -> slot slots[t] (device; -1 = skip).
 * kv_copy: whole blocks src[i] -> dst[i] (device arrays), block_elems halves each, K and V. */
int ik_kv_store(uint16_t *k_cache, uint16_t *v_cache, const float *k, const float *v, int n, int kv_dim,
                const int32_t *slots, void *stream);
int ik_kv_copy(uint16_t *k_cache, uint16_t *v_cache, const int32_t *src, const int32_t *dst, int n, int64_t block_elems,
               void *stream);

/* ---- gather/: dst[i] = src[rows[i]] (rows device), rows of dim f32 ---- */
int ik_gather_rows(const float *src, const int32_t *rows, int n, int dim, float *dst, void *stream);

/* ---- ffn/: h = silu(h) * u elementwise over n floats ---- */
int ik_silu_mul(float *h, const float *u, int64_t n, void *stream);

/* ---- attention/: paged attention for decode and prefill chunks ----
 * Query rows are grouped into tiles of up to rows_per_tile rows of one
 * sequence; a CUDA block takes (tile, KV head, context split) with one warp
 * per (row, query head) pair, so rows_per_tile * (n_head / n_head_kv) <= 32.
 * Row r sees positions 0..min(positions[r], context_len[seq] - 1).
 * n_split > 1 (at most IK_ATTN_MAX_SPLITS, attention/attn_split.h) splits
 * each tile's visible context evenly (in multiples of 32
 * positions) over n_split blocks; the last of them to finish merges the
 * others' results from `partial` (ik_attention_partial_floats() floats),
 * counting arrivals in `counters`. The split follows
 * the context of this step, not the one n_split was planned for, so a CUDA
 * graph's plan (sized for the longest context) spreads short ones too. */
#define IK_ATTN_MAX_HEAD_DIM 256
struct ik_attn_tile {
    int32_t seq, row0, n_rows, pad;
};
struct ik_attention_args {
    const float *q;                 /* (n_tokens, n_head * head_dim), already rotated */
    float *out;                     /* (n_tokens, n_head * head_dim); may equal q */
    const uint16_t *k_cache, *v_cache; /* this layer's pools, (n_blocks, block_size, kv_dim) f16 */
    int n_head, n_head_kv, head_dim, block_size;
    float scale;
    const int32_t *positions;       /* (n_tokens) */
    const int32_t *context_len;     /* (n_seqs) */
    const int32_t *block_tables;    /* (n_seqs, max_blocks) */
    int max_blocks;
    const struct ik_attn_tile *tiles; /* (n_tiles) */
    int n_tiles, rows_per_tile;
    int n_split;
    float *partial;
    unsigned *counters;             /* n_split > 1: (n_tiles * n_head_kv) zeros; left zero */
};
static inline size_t ik_attention_partial_floats(int n_tiles, int n_head_kv, int warps, int n_split, int head_dim)
{
    return (size_t)n_tiles * (size_t)n_head_kv * (size_t)warps * (size_t)n_split * (size_t)(head_dim + 2);
}
int ik_paged_attention(const struct ik_attention_args *a, void *stream);

#ifdef __cplusplus
}
#endif

#endif
