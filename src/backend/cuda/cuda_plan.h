/* SPDX-License-Identifier: Apache-2.0
 *
 * cuda_plan.h: the CUDA backend's host-side decisions, as plain C with no
 * CUDA types so that every build compiles them and the CPU unit tests check
 * them (tests/unit/test_cuda_plan.c):
 *  - GEMV vs cuBLAS GEMM for a matmul of n rows;
 *  - how paged attention is cut into (tile, KV head, split) blocks;
 *  - which captured CUDA-graph batch size a decode step pads up to;
 *  - whether a weight also keeps a resident bf16 copy for prefill GEMMs;
 *  - the device memory plan: weights, workspace, then KV blocks within
 *    --gpu-memory-utilization, with a clear error when the model does not fit.
 *
 * Layer: backend/cuda (host logic; built with or without CUDA).
 */
#ifndef INFERD_CUDA_PLAN_H
#define INFERD_CUDA_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "inferd/batch.h"
#include "inferd/quant.h"

/* ---- matmul path ---- */

/* Activation rows the fused GEMV kernel takes (IK_GEMV_MAX_N in kernels/). */
#define CUDA_PLAN_GEMV_MAX_N 8

/* Weight types the CUDA kernels read (GEMV, embedding, dequantization). */
int cuda_plan_type_supported(enum qtype t);
/* 1: multiply n rows with the GEMV kernel straight from the quantized blocks;
 * 0: convert activations to bf16 and use a cuBLAS GEMM. */
int cuda_plan_use_gemv(int n, enum qtype t);

/* ---- attention ---- */

/* Same layout as struct ik_attn_tile (checked where both are visible). */
struct cuda_attn_tile {
    int32_t seq, row0, n_rows, pad;
};

struct cuda_attn_plan {
    int rows_per_tile; /* query rows per tile (1 for pure decode batches) */
    int warps;         /* rows_per_tile * (n_head / n_head_kv): warps per CUDA block */
    int n_tiles;
    int n_split;       /* context splits per tile (flash-decoding); 1 = none */
    int split_len;     /* positions per split at max_ctx, a multiple of 32 (INT32_MAX when n_split == 1); it
                          sets n_split, and the kernel shares each step's own context over the n_split blocks */
    int max_ctx;       /* longest context of the batch */
};

/* Plans attention for a batch: query rows of sequence s are
 * query_start[s]..query_start[s+1]-1, seeing up to context_len[s] positions;
 * n_sm is the device's multiprocessor count. Returns 0, or IFD_ERR_UNSUPPORTED
 * when a GQA group exceeds 32 query heads, IFD_ERR_INVALID for bad shapes. */
int cuda_plan_attention(const int32_t *query_start, const int32_t *context_len, int n_seqs, int n_head, int n_head_kv,
                        int n_sm, struct cuda_attn_plan *out);
/* The plan of a padded decode step (one query row per sequence) that a CUDA
 * graph records: it must hold for every context up to max_ctx, the longest
 * the graph's block tables can describe, since it is baked into the graph;
 * splits past a sequence's context find nothing to do and cost one launch. */
int cuda_plan_attention_decode(int n_seqs, int max_ctx, int n_head, int n_head_kv, int n_sm, struct cuda_attn_plan *out);
/* Fills tiles[0..plan->n_tiles) (sequence order, each sequence's rows cut in rows_per_tile). */
void cuda_plan_attn_tiles(const int32_t *query_start, int n_seqs, const struct cuda_attn_plan *plan,
                          struct cuda_attn_tile *tiles);

/* ---- CUDA graphs ---- */

/* Batch sizes to capture decode graphs for, up to max_seqs: 1, 2, 4, 8, then
 * every multiple of 8 up to 64, then of 16 (vLLM's choice: padding wastes at most
 * a few rows, and the set stays small). Returns how many were written (<= cap). */
int cuda_plan_graph_buckets(int max_seqs, int *out, int cap);
/* The smallest bucket >= n, or -1 when n is above every bucket (run uncaptured). */
int cuda_plan_graph_bucket(int n, const int *buckets, int n_buckets);

/* 1 if a step can run as a recorded graph: decode only (one query row per
 * sequence, logits for every row in order), no adapters, no tree mask. */
int cuda_plan_graph_eligible(const struct batch_plan *p);

/* Block-table row stride of the graphs' padded plans: at least `current`
 * (and CUDA_GRAPH_MIN_STRIDE), doubled until max_blocks fits. A graph is
 * recorded for one stride; a longer one means recording again. */
#define CUDA_GRAPH_MIN_STRIDE 64
int cuda_plan_graph_stride(int max_blocks, int current);

/* Where each array of a padded decode plan of `bucket` sequences lives in
 * the graphs' input buffer (byte offsets, CUDA_GRAPH_ALIGN-aligned). The
 * buffer is copied to the device in one piece before each replay, at the
 * same device address every time, which is what lets a graph be replayed. */
#define CUDA_GRAPH_ALIGN 256
struct cuda_graph_layout {
    int bucket, stride;
    size_t tokens, positions, slots, query_start, context_len, logits_index, tiles, block_tables;
    size_t bytes;
};
void cuda_plan_graph_layout(int bucket, int stride, struct cuda_graph_layout *out);
/* Writes the eligible plan p (n_seqs <= bucket, max_blocks <= stride),
 * padded to lay->bucket sequences, into buf (lay->bytes) and points padded's
 * arrays there. Padding sequences have context 0, slot -1, token 0, and
 * come after the real ones; tiles are one row each, in sequence order. */
void cuda_plan_graph_fill(const struct batch_plan *p, const struct cuda_graph_layout *lay, void *buf,
                          struct batch_plan *padded);

/* ---- memory ---- */

/* Keep a bf16 copy of a weight (faster prefill, no per-step dequantization)
 * only while free device memory after it stays above keep_free_fraction of the total. */
int cuda_plan_keep_bf16_copy(size_t free_bytes, size_t total_bytes, size_t copy_bytes, double keep_free_fraction);

struct cuda_mem_in {
    size_t total_bytes;       /* device memory (cudaMemGetInfo total) */
    size_t free_bytes;        /* free now, before anything below is allocated */
    double utilization;       /* --gpu-memory-utilization, (0, 1] */
    size_t weight_bytes;      /* weights as the backend stores them (with bf16 copies) */
    size_t workspace_bytes;   /* activations + scratch at the largest batch (measured by a dry run) */
    size_t reserve_bytes;     /* cuBLAS workspace, CUDA graphs, fragmentation */
    size_t kv_block_bytes;    /* one KV block over all layers (kv_cache_block_bytes) */
    int64_t min_blocks;       /* blocks one max-length sequence needs */
    int64_t max_blocks;       /* more than this is useless (max_num_seqs full contexts); 0 = no cap */
};

struct cuda_mem_plan {
    size_t budget_bytes;      /* total * utilization */
    int64_t n_blocks;         /* KV blocks to allocate */
    size_t kv_bytes;
};

/* Returns 0 with the plan, or IFD_ERR_NOMEM with a message saying what does not fit. */
int cuda_plan_memory(const struct cuda_mem_in *in, struct cuda_mem_plan *out, char *err, size_t errlen);

#endif
