/* SPDX-License-Identifier: Apache-2.0
 *
 * backend.h: the compute backend interface (the ggml-backend pattern: a table
 * of function pointers plus a context). model/ is written once against these
 * ops; backend/cpu implements them with SIMD kernels and a worker pool,
 * backend/cuda with kernels/ and cuBLAS.
 *
 * Conventions
 *  - Pointers passed to ops are backend memory (from ->alloc), except the
 *    batch plan's index arrays, which are host memory.
 *  - Ops are ordered: each one sees the results of the previous one. On the
 *    CPU they are synchronous; a GPU backend may queue them on a stream and
 *    synchronize in ->sync.
 *  - Matrices are row-major. A weight W has n_out rows of n_in elements; every
 *    matmul computes y[t] = W x[t] for each activation row t.
 *  - Ops marked (optional) may be NULL; model/ then composes them from others.
 *
 * Layer: backend (interface). No CUDA or SIMD types appear here.
 */
#ifndef INFERD_BACKEND_H
#define INFERD_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "inferd/batch.h"
#include "inferd/quant.h"

struct backend;

/* A weight matrix prepared for one backend (possibly repacked for its kernels). */
struct be_weight {
    enum qtype type;   /* element type of the stored data */
    int64_t n_in;      /* row length */
    int64_t n_out;     /* number of rows */
    int layout;        /* backend-private layout tag (0 = plain GGUF rows) */
    const void *data;  /* (n_out, n_in) in `layout`, backend memory */
    void *owned;       /* what ->weight_release frees; NULL if data is borrowed */
};

/* One or more weights applied to the same input rows: y_i[t] (+)= W_i x[t]. */
#define BE_MATMUL_MAX_W 3
struct be_matmul {
    const float *x;                            /* (n, n_in) */
    int n;                                     /* activation rows */
    int n_w;                                   /* 1..BE_MATMUL_MAX_W, all with the same n_in */
    const struct be_weight *w[BE_MATMUL_MAX_W];
    float *y[BE_MATMUL_MAX_W];                 /* (n, w[i]->n_out) */
    int accumulate;                            /* 1: y += W x (fuses the residual add) */
};

/* Element type of the paged KV cache (--kv-cache-dtype). f16 is the
 * default and what llama.cpp uses; q8_0 stores each 32 values of a head as
 * one GGUF Q8_0 block (34 bytes: a half scale and 32 int8), half the bytes
 * of f16, so twice the tokens fit and attention streams half the memory. */
enum kv_dtype { KV_F16 = 0, KV_Q8_0 = 1 };

/* Bytes of one token's K (or V) row of kv_dim values. Q8_0 needs every head
 * to be whole blocks (head_dim % 32 == 0), checked where the cache is made. */
static inline size_t kv_row_bytes(enum kv_dtype t, int kv_dim)
{
    return t == KV_Q8_0 ? (size_t)kv_dim / QK8_0 * sizeof(block_q8_0) : (size_t)kv_dim * sizeof(f16_t);
}

/* Paged KV storage of one layer: (n_blocks, block_size) rows of
 * kv_row_bytes(dtype, kv_dim) bytes each, for K and for V. */
struct be_kv_layer {
    void *k;
    void *v;
    enum kv_dtype dtype;
};

struct be_attention {
    const float *q;                   /* (n_tokens, n_head * head_dim) already rotated */
    float *out;                       /* (n_tokens, n_head * head_dim) */
    struct be_kv_layer kv;
    int n_head, n_head_kv, head_dim;
    int block_size;
    float scale;                      /* usually 1/sqrt(head_dim) */
    const struct batch_plan *plan;    /* positions, query_start, context_len, block_tables */
};

struct be_rope {
    float *q;                         /* (n, n_head * head_dim), rotated in place */
    float *k;                         /* (n, n_head_kv * head_dim), rotated in place */
    int n, n_head, n_head_kv, head_dim;
    int rope_dim;                     /* leading dims of each head that rotate (<= head_dim) */
    int neox;                         /* 0: pairs (2i, 2i+1) as GGUF llama; 1: (i, i + rope_dim/2) */
    const int32_t *positions;         /* (n) host */
    /* angle of pair i at position p: freq_scale * (p * theta_scale^i) / freq_factors[i],
     * with p * theta_scale^i formed by repeated float multiplication as ggml does */
    float theta_scale;                /* base^(-2 / rope_dim) */
    float freq_scale;                 /* linear position scaling (1 = none) */
    const float *freq_factors;        /* (rope_dim / 2) host, or NULL */
};

struct backend_ops {
    const char *name;
    void (*destroy)(struct backend *be);

    /* memory: zeroed, 64-byte aligned */
    void *(*alloc)(struct backend *be, size_t nbytes);
    void (*release)(struct backend *be, void *p);
    void (*copy_in)(struct backend *be, void *dst, const void *host_src, size_t n);
    void (*copy_out)(struct backend *be, void *host_dst, const void *src, size_t n);
    /* Waits for queued work; returns the first error any op hit since the last
     * sync (ops themselves return nothing, like a GPU stream), or 0. */
    int (*sync)(struct backend *be);
    /* Pre-sizes per-step scratch so that a matmul of up to max_tokens rows
     * against w allocates nothing; called once per weight when a workspace is
     * made, so steady-state steps never allocate. */
    int (*reserve)(struct backend *be, int max_tokens, const struct be_weight *w);

    /* Prepares a weight from host data in GGUF row layout. If src_writable, the
     * backend may transform src in place and keep pointing into it (the CPU
     * backend repacks inside a private file mapping to avoid a second copy). */
    int (*weight_prepare)(struct backend *be, struct be_weight *w, enum qtype type, int64_t n_in,
                          int64_t n_out, void *src, int src_writable);
    void (*weight_release)(struct backend *be, struct be_weight *w);

    /* out[i] = row ids[i] of table, dequantized; (n, table->n_in) */
    void (*embed)(struct backend *be, const struct be_weight *table, const int32_t *ids, int n, float *out);
    /* out[i] = x[i] / rms(x[i]) * w; (n, dim); out may equal x */
    void (*rms_norm)(struct backend *be, const float *x, const float *w, float *out, int n, int dim, float eps);
    void (*matmul)(struct backend *be, const struct be_matmul *mm);
    /* h[t] = silu(Wg x[t]) * (Wu x[t]); h is (n, gate->n_out) */
    void (*ffn_swiglu)(struct backend *be, const float *x, int n, const struct be_weight *gate,
                       const struct be_weight *up, float *h);
    void (*rope)(struct backend *be, const struct be_rope *r);
    /* Writes k and v rows (n, kv_dim) into the paged cache at slot_mapping (host, -1 = skip). */
    void (*kv_store)(struct backend *be, struct be_kv_layer kv, const float *k, const float *v, int n, int kv_dim,
                     const int32_t *slot_mapping);
    /* (optional) ->rope, then ->kv_store of the rotated k and of v (r->n rows
     * of r->n_head_kv * r->head_dim) in one pass: on a GPU one launch per
     * layer instead of two. NULL: model/ calls the two. */
    void (*rope_kv_store)(struct backend *be, const struct be_rope *r, struct be_kv_layer kv, const float *v,
                          const int32_t *slot_mapping);
    void (*attention)(struct backend *be, const struct be_attention *a);
    /* Copies whole KV blocks src[i] -> dst[i] of one layer (block_bytes per
     * block for K and for V): copy-on-write of shared blocks. */
    void (*kv_copy)(struct backend *be, struct be_kv_layer kv, const int32_t *src, const int32_t *dst, int n,
                    size_t block_bytes);
    /* (optional) 1 if the backend's KV ops take this element type; NULL: KV_F16 only. */
    int (*kv_dtype_supported)(struct backend *be, enum kv_dtype t);
    /* dst[i] = src[rows[i]] for row length dim (gathers logits rows) */
    void (*gather_rows)(struct backend *be, const float *src, const int32_t *rows, int n, int dim, float *dst);

    /* Device-memory backends (NULL for host memory, where the engine sizes the
     * KV pool from available RAM): how many KV blocks of block_bytes fit once
     * the weights and every workspace are allocated, keeping weights +
     * workspace + KV within `utilization` of the device's memory and within
     * what is free; at most max_blocks (0: no cap). Returns 0 and *n_blocks,
     * or an error with a message naming what does not fit (fewer than
     * min_blocks). Called once, after the model workspace exists. */
    int (*kv_blocks_fit)(struct backend *be, double utilization, size_t block_bytes, int64_t min_blocks,
                         int64_t max_blocks, int64_t *n_blocks, char *err, size_t errlen);

    /* (optional) Runs the ops of one forward step itself, so that a backend
     * can record a step once and replay the recording (CUDA graphs for decode
     * steps). `enqueue(arg, p)` queues every op of the step for plan p, which
     * may be `plan` padded to a larger batch: the extra sequences come after
     * the real ones, attend to nothing, store no KV and get logits nobody
     * reads, so row i of every output is still the caller's row i. Nothing
     * of p may exceed max_rows rows (the workspace's capacity). `key`
     * identifies every device address the step's ops use besides the plan
     * (workspace, KV cache, weights): a recording is replayed only under the
     * same key. Returns 1 when it ran the step (the caller then syncs as
     * usual), 0 when the caller must enqueue `plan` itself. */
    int (*run_step)(struct backend *be, const struct batch_plan *plan, int max_rows, uint64_t key,
                    void (*enqueue)(void *arg, const struct batch_plan *p), void *arg);

    /* (optional) Host memory that ->copy_out fills fastest (CUDA: pinned, so
     * a step's logits come back by DMA at full bus speed instead of through
     * the driver's bounce buffer). NULL: malloc and free. */
    void *(*host_alloc)(struct backend *be, size_t nbytes);
    void (*host_free)(struct backend *be, void *p);
};

struct backend {
    const struct backend_ops *ops;
    void *ctx;
    int n_threads; /* CPU: worker pool size; informational elsewhere */
};

struct backend_opts {
    const char *device; /* "cpu" (default), "cuda" or "cuda:N" (N-th visible device) */
    int n_threads;      /* 0 = number of online cores */
    const char *isa;    /* CPU: force "scalar", "avx2", "avx512"; NULL = best available */
    int enforce_eager;  /* CUDA: never capture or replay graphs (--enforce-eager) */
};

int backend_create(struct backend **out, const struct backend_opts *opts, char *err, size_t errlen);
void backend_destroy(struct backend *be);
/* Host buffers for ->copy_out destinations (->host_alloc, else malloc); NULL when out of memory. */
void *backend_host_alloc(struct backend *be, size_t nbytes);
void backend_host_free(struct backend *be, void *p);

/* CPU backend entry (always built). */
int cpu_backend_create(struct backend **out, const struct backend_opts *opts, char *err, size_t errlen);
/* CUDA backend entry (built with CUDA only; device "cuda" or "cuda:N"). */
int cuda_backend_create(struct backend **out, const struct backend_opts *opts, char *err, size_t errlen);

#endif
