/* SPDX-License-Identifier: Apache-2.0
 *
 * cuda_backend.h: state shared by the CUDA backend's files (cuda_backend.c:
 * device, memory, staging, weights and light ops; cuda_ops.c: matmuls and
 * attention; cuda_graph.c: recorded decode steps). Not a public header: model/ sees only backend.h, and the
 * CUDA runtime types used here never leave backend/cuda.
 *
 * Layer: backend/cuda.
 */
#ifndef INFERD_CUDA_BACKEND_H
#define INFERD_CUDA_BACKEND_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stddef.h>
#include <stdint.h>

#include "cuda_plan.h"
#include "inferd/backend.h"

/* be_weight.layout values: quantized rows only, or rows followed (at
 * cuda_weight_bf16_offset) by a resident bf16 copy for cuBLAS GEMMs. The copy
 * lives inside the same allocation so a struct copy of the weight (the tied
 * output projection aliases the embedding) keeps finding it. */
enum cuda_layout { CUDA_LAYOUT_ROWS = 0, CUDA_LAYOUT_ROWS_BF16 = 1 };

/* Device scratch that grows to the largest need and is then reused. */
struct cuda_buf {
    void *ptr;
    size_t cap;
};

#define CUDA_STAGE_CACHE 16
#define CUDA_STAGE_ALIGN 256u

/* A host array already copied to the device during this step. */
struct cuda_stage_entry {
    const void *host;
    size_t bytes;
    void *dev;
};

/* The recorded graph of one decode batch size for one key (the model's
 * workspace, cache and weights: cuda_graph.c). A recording is replayed only
 * at the scratch epoch it was made under. */
struct cuda_graph_slot {
    int bucket;              /* padded batch size */
    int warm;                /* ran once uncaptured at `epoch`: buffers are at their final size */
    int failed;              /* capture failed: this bucket runs uncaptured from now on */
    uint64_t key;
    unsigned epoch;
    cudaGraphExec_t exec;    /* NULL until recorded */
};
#define CUDA_GRAPH_SLOTS 64
/* Largest decode batch recorded; bigger batches run uncaptured (launch costs
 * are small next to their work). */
#define CUDA_GRAPH_MAX_BATCH 512

struct cuda_graph_stats {
    long captures, replays, failures;
};

/* A host constant staged once for good (RoPE frequency factors): graphs
 * read it at a fixed device address. */
struct cuda_const {
    const void *host;
    size_t bytes;
    void *dev;
    void *copy;              /* host copy, to notice a reused address with new contents */
};
#define CUDA_CONSTS 4

struct cuda_ctx {
    int device;
    int n_sm;
    cudaStream_t stream;
    cublasHandle_t blas;
    int error;                    /* first failure since the last sync (IFD_ERR_*), like the CPU backend's */

    /* Memory plan inputs (cu_kv_blocks_fit): device memory free once the
     * context, cuBLAS and the staging ring exist, and the bytes of weights
     * uploaded since; everything else allocated since is workspace. */
    size_t free_at_open;
    size_t weight_bytes;

    /* Staging ring: host arrays of the batch plan go through pinned memory
     * into a device ring with async copies. Both reset at each sync (every
     * copy is done then); a step that outgrows the ring waits for the stream. */
    uint8_t *pin_ring;            /* (ring_cap) pinned host */
    uint8_t *dev_ring;            /* (ring_cap) device */
    size_t ring_cap, ring_off;
    struct cuda_stage_entry cache[CUDA_STAGE_CACHE];
    int n_cache;

    struct cuda_buf act_bf16;     /* activations converted to bf16 for GEMMs */
    struct cuda_buf w_bf16;       /* on-the-fly dequantized weight rows (weights without a bf16 copy) */
    struct cuda_buf up;           /* FFN up projection when it is not fused */
    struct cuda_buf attn_partial; /* split-K partial results */
    struct cuda_buf attn_counters; /* split-K arrival counters, zero between launches */
    struct cuda_attn_tile *tiles_host; /* (tiles_cap) */
    int tiles_cap;

    /* CUDA graphs for decode steps (cuda_graph.c) */
    int graphs_on;                /* 0 with --enforce-eager */
    struct cuda_graph_slot graphs[CUDA_GRAPH_SLOTS];
    int n_graphs, graph_evict;
    unsigned graph_epoch;         /* bumped whenever a buffer a recording may point into moves */
    int graph_stride;             /* block-table stride of the padded plans */
    uint8_t *gin_pin, *gin_dev;   /* padded plans: pinned host and its device copy, at fixed addresses */
    size_t gin_cap;
    int capturing;                /* ops are being recorded: nothing may allocate, sync or stage */
    int graph_step;               /* a padded decode step is being queued (recorded or not) */
    const void *graph_tiles_dev;  /* its attention tiles, inside gin_dev */
    struct cuda_graph_stats graph_stats;
    struct cuda_const consts[CUDA_CONSTS];
    int n_consts;
    void *blas_workspace;         /* cuBLAS never allocates while a graph is recorded */

    /* attention plan of the last step, reused by every layer of the step */
    const void *attn_qs_dev, *attn_ctx_dev;
    int attn_heads, attn_heads_kv;
    struct cuda_attn_plan attn_plan;
    void *attn_tiles_dev;
};

static inline struct cuda_ctx *cuda_ctx(struct backend *be) { return be->ctx; }

/* Makes c's device current on the calling thread: the runtime's current
 * device is per thread, and the engine runs ops on its own thread. */
void cuda_enter(struct cuda_ctx *c);
/* Latches the first failure (a cudaError_t value, or a cuBLAS status when
 * `blas`), logging what failed. Returns 1 if rc was an error. */
int cuda_check(struct cuda_ctx *c, int rc, const char *what);
int cuda_check_blas(struct cuda_ctx *c, int status, const char *what);
/* Ensures the next `bytes` (plus CUDA_STAGE_ALIGN per array) of staging fit
 * without wrapping the ring, so that arrays one op stages together stay valid
 * until its kernel runs. An op staging several arrays calls it first. */
int cuda_stage_reserve(struct cuda_ctx *c, size_t bytes);
/* Copies a host array to the device in stream order; returns its device copy
 * or NULL (error latched). cached: may reuse a copy of the same (pointer, size)
 * made since the last sync, for the batch plan's arrays that every layer reads. */
void *cuda_stage(struct cuda_ctx *c, const void *host, size_t bytes, int cached);
/* Ensures b holds n bytes (waiting for the stream before replacing it); NULL on error (latched). */
void *cuda_buf_get(struct cuda_ctx *c, struct cuda_buf *b, size_t n, const char *what);
/* Device copy of a host constant that stays put for the backend's life
 * (staged once; NULL on error, latched). */
const void *cuda_stage_const(struct cuda_ctx *c, const void *host, size_t bytes);
/* Latches a failure of what cannot happen while a graph is recorded
 * (allocation, synchronization, ring staging): the capture is then dropped
 * and the step runs uncaptured. Returns 1 if capturing. */
int cuda_capture_refuse(struct cuda_ctx *c, const char *what);
/* Byte offset of the resident bf16 copy inside a CUDA_LAYOUT_ROWS_BF16 weight. */
size_t cuda_weight_bf16_offset(const struct be_weight *w);

/* cuda_ops.c */
void cuda_matmul(struct backend *be, const struct be_matmul *mm);
void cuda_ffn_swiglu(struct backend *be, const float *x, int n, const struct be_weight *gate,
                     const struct be_weight *up, float *h);
void cuda_attention(struct backend *be, const struct be_attention *a);
int cuda_reserve(struct backend *be, int max_tokens, const struct be_weight *w);

/* cuda_graph.c */
int cuda_run_step(struct backend *be, const struct batch_plan *plan, int max_rows, uint64_t key,
                  void (*enqueue)(void *arg, const struct batch_plan *p), void *arg);
/* Drops every recording (they point at something that moved). */
void cuda_graphs_invalidate(struct cuda_ctx *c);
void cuda_graphs_free(struct cuda_ctx *c);
/* Turns recording on or off at run time (tests compare both paths). */
void cuda_backend_set_graphs(struct backend *be, int on);
struct cuda_graph_stats cuda_backend_graph_stats(struct backend *be);

#endif
