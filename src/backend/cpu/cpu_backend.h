/* SPDX-License-Identifier: Apache-2.0
 *
 * cpu_backend.h: state shared by the CPU backend's files (cpu_backend.c for
 * memory, weights and small ops; cpu_matmul.c; cpu_attention.c). Not a public
 * header: model/ sees only backend.h.
 *
 * Layer: backend/cpu.
 */
#ifndef INFERD_CPU_BACKEND_H
#define INFERD_CPU_BACKEND_H

#include <stddef.h>

#include "cpu_features.h"
#include "cpu_kernels.h"
#include "inferd/backend.h"
#include "util/pool.h"

/* Scratch that grows to the largest batch seen and is then reused: steady-state
 * forward passes allocate nothing. */
struct cpu_scratch {
    void *ptr;
    size_t cap;
};

struct cpu_ctx {
    struct pool *pool;
    const struct cpu_kernels *k;
    struct cpu_kernels avx512;   /* filled when the CPU has AVX-512 VNNI */
    struct cpu_features feat;
    struct cpu_scratch act[3];   /* quantized activations, one per activation format */
    struct cpu_scratch attn;     /* attention scores, one context-length row per worker */
    struct cpu_scratch attn_tasks; /* the three-phase attention's tasks and their n_vis */
    int error;                   /* first failure since the last sync (sticky, like a GPU stream) */
};

static inline struct cpu_ctx *cpu_ctx(struct backend *be) { return be->ctx; }

/* Ensures s holds at least n bytes; returns its memory or NULL when out of memory. */
void *cpu_scratch_get(struct cpu_scratch *s, size_t n);

/* Gemm for a prepared weight (plain or X8), falling back to the scalar set. */
cpu_gemm_fn cpu_gemm_for(const struct cpu_ctx *c, const struct be_weight *w);

void cpu_matmul(struct backend *be, const struct be_matmul *mm);
void cpu_ffn_swiglu(struct backend *be, const float *x, int n, const struct be_weight *gate,
                    const struct be_weight *up, float *h);
void cpu_rope(struct backend *be, const struct be_rope *r);
void cpu_kv_store(struct backend *be, struct be_kv_layer kv, const float *k, const float *v, int n, int kv_dim,
                  const int32_t *slot_mapping);
void cpu_attention(struct backend *be, const struct be_attention *a);

/* Splits [0, n) into nth near-equal parts; part ith is [*lo, *hi). */
static inline void cpu_split(int64_t n, int ith, int nth, int64_t *lo, int64_t *hi)
{
    *lo = n * ith / nth;
    *hi = n * (ith + 1) / nth;
}

#endif
