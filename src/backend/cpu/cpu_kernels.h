/* SPDX-License-Identifier: Apache-2.0
 *
 * cpu_kernels.h: the CPU backend's kernel table, one instance per instruction
 * set (scalar reference, AVX2, AVX-512), chosen once at backend creation.
 *
 * Quantized weights are multiplied without dequantizing: activations are
 * quantized on the fly to 8-bit blocks (as llama.cpp does) and the kernels do
 * integer dot products per block, scaled in float.
 *   weight type          activation format
 *   Q4_0 Q4_1 Q8_0       block_q8_1f  (32 int8 + scale + scaled sum)
 *   Q4_K Q5_K Q6_K       block_q8_K   (256 int8 + scale + 16 partial sums)
 *   F32 F16 BF16         float
 *
 * Layouts: a kernel set may ask for a weight type to be stored in
 * CPU_LAYOUT_X8 (when n_out is a multiple of 8), eight rows interleaved per 32-element block, so that one SIMD
 * register holds four consecutive weights of eight different rows and one
 * activation broadcast feeds all eight dot products:
 *   Q4_0: { f16 d[8];           u8 qs[4][8][4]; }   per block of 8 rows
 *   Q4_1: { f16 d[8]; f16 m[8]; u8 qs[4][8][4]; }   byte [j][r][t] = row r's qs[4j+t]
 *   Q8_0: { f16 d[8];           i8 qs[8][8][4]; }   byte [j][r][t] = row r's qs[4j+t]
 * Low nibbles of qs[j] are elements 4j..4j+3, high nibbles 16+4j..16+4j+3,
 * exactly as in the GGUF block, so the repack only shuffles 4-byte groups.
 * Groups of 8 rows are contiguous ([group][block]).
 *
 * Layer: backend/cpu (internal).
 */
#ifndef INFERD_CPU_KERNELS_H
#define INFERD_CPU_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "inferd/backend.h"
#include "inferd/quant.h"

enum cpu_layout { CPU_LAYOUT_ROWS = 0, CPU_LAYOUT_X8 = 1 };
enum cpu_act { CPU_ACT_F32 = 0, CPU_ACT_Q8_1F, CPU_ACT_Q8_K };

/* y[t * ldy + (r - r0)] (+)= W[r] . x[t] for r in [r0, r1), t in [0, n).
 * w is the whole weight (n_out rows of n_in, in the kernel's layout);
 * xa holds n activation rows, each xa_stride bytes, in the type's activation format.
 * X8 kernels need r0 and r1 to be multiples of 8. */
typedef void (*cpu_gemm_fn)(const void *w, int64_t n_in, int64_t n_out, int64_t r0, int64_t r1, const void *xa,
                            size_t xa_stride, int n, float *y, int64_t ldy, int accumulate);

/* Query rows of one sequence, each with the G query heads that share a KV
 * head, against that sequence's paged context: row r sees positions
 * 0..n_vis[r]-1 (rows may see different lengths). Rounding follows llama.cpp's
 * default CPU attention: q (already rounded to half by the caller) . k in
 * float, softmax against the global maximum with the sum in double, and the
 * normalized weights rounded to half before weighting V. Each (row, head)
 * pair's arithmetic does not depend on the other rows: a kernel gives every
 * row the same bits whether it comes alone or in a tile, so K and V rows are
 * converted once per call and shared by all n_rows * G pairs. */
struct cpu_attn_task {
    const float *q;          /* (n_rows, G, head_dim): pair (r, g) at q + (r * G + g) * head_dim */
    float *out;              /* pair (r, g) at out + r * out_stride + g * head_dim */
    size_t out_stride;
    int n_rows, G, head_dim;
    const int *n_vis;        /* (n_rows) visible context length of each row, >= 1 */
    const uint8_t *k, *v;    /* this layer's pool, already offset to the KV head */
    size_t row_bytes;        /* bytes between consecutive slots (kv_row_bytes of the pool) */
    enum kv_dtype dtype;     /* f16 values, or Q8_0 blocks of 32 */
    const int32_t *table;    /* the sequence's block table */
    int block_size;
    float scale;
    float *scores;           /* (n_rows * G, cpu_attn_score_stride(max n_vis)) scratch */
    float *tile;             /* (CPU_ATTN_TILE_FLOATS) scratch for K/V rows converted to float */
};

/* Floats of converted K/V rows a kernel keeps at once: small enough to stay in
 * L1 next to the queries, at least 8 rows of the widest head (512). */
#define CPU_ATTN_TILE_FLOATS 4096

/* Floats between consecutive pairs' scores: the widest row rounded up to whole
 * 8-float vectors, so scores of eight positions store as one. */
static inline size_t cpu_attn_score_stride(int max_vis) { return ((size_t)max_vis + 7) & ~(size_t)7; }

/* The longest n_vis of a task's rows. */
static inline int cpu_attn_max_vis(const struct cpu_attn_task *t)
{
    int m = 0;
    for (int r = 0; r < t->n_rows; r++) m = t->n_vis[r] > m ? t->n_vis[r] : m;
    return m;
}

/* Output of pair pr = r * G + g. */
static inline float *cpu_attn_pair_out(const struct cpu_attn_task *t, int pr)
{
    return t->out + (size_t)(pr / t->G) * t->out_stride + (size_t)(pr % t->G) * t->head_dim;
}

struct cpu_kernels {
    const char *name;
    cpu_gemm_fn gemm[QT_COUNT];    /* plain layout; NULL: use the scalar set's */
    cpu_gemm_fn gemm_x8[QT_COUNT]; /* non-NULL: this set wants the type in CPU_LAYOUT_X8 */
    void (*quant_q8_1f)(const float *x, block_q8_1f *y, int64_t n);
    void (*quant_q8_K)(const float *x, block_q8_K *y, int64_t n);
    /* Attention of one task in three phases (cpu_attend runs them in order;
     * cpu_attention.c spreads them over workers when tasks are few, with the
     * same bits): attn_scores for positions [p0, p0 + n) of every pair (p0 a
     * multiple of 8, n too unless the range ends at the task's longest
     * n_vis); attn_softmax of pair pr, which also zeroes its output;
     * attn_values adds every position's weighted V row into output dims
     * [d0, d1) (multiples of 8). t->tile is the caller's scratch and is
     * clobbered by scores and values. Bit-identical for any grouping of rows. */
    void (*attn_scores)(const struct cpu_attn_task *t, int p0, int n);
    void (*attn_softmax)(const struct cpu_attn_task *t, int pr);
    void (*attn_values)(const struct cpu_attn_task *t, int d0, int d1);
    void (*rms_norm)(const float *x, const float *w, float *out, int dim, float eps);
    void (*silu_mul)(float *h, const float *u, int n);        /* h = silu(h) * u */
    void (*to_f16)(const float *x, f16_t *y, int n);           /* round to nearest even */
    void (*round_half)(const float *x, float *y, int n);       /* y = x rounded to half (nearest even) */
};

/* Defines a plain-layout gemm from a per-row dot product
 * `float DOT(const WTYPE *row, const ATYPE *act, int64_t n_blocks)`: one
 * (row, token) pair at a time. Each kernel set instantiates it with its dots. */
#define CPU_DEFINE_ROWS_GEMM(NAME, WTYPE, ATYPE, BLOCK, DOT)                                                          \
    static void NAME(const void *w, int64_t n_in, int64_t n_out, int64_t r0, int64_t r1, const void *xa,             \
                     size_t xa_stride, int n, float *y, int64_t ldy, int accumulate)                                  \
    {                                                                                                                 \
        (void)n_out;                                                                                                  \
        int64_t nb = n_in / (BLOCK);                                                                                  \
        for (int64_t r = r0; r < r1; r++) {                                                                           \
            for (int t = 0; t < n; t++) {                                                                             \
                const ATYPE *a = (const ATYPE *)((const char *)xa + (size_t)t * xa_stride);                          \
                float v = DOT((const WTYPE *)w + r * nb, a, nb);                                                     \
                float *out = &y[t * ldy + (r - r0)];                                                                  \
                *out = accumulate ? *out + v : v;                                                                     \
            }                                                                                                         \
        }                                                                                                             \
    }

/* One task's attention: the three phases over the whole task. */
static inline void cpu_attend(const struct cpu_kernels *k, const struct cpu_attn_task *t)
{
    k->attn_scores(t, 0, cpu_attn_max_vis(t));
    for (int pr = 0; pr < t->n_rows * t->G; pr++) k->attn_softmax(t, pr);
    k->attn_values(t, 0, t->head_dim);
}

extern const struct cpu_kernels cpu_kernels_scalar;
extern const struct cpu_kernels cpu_kernels_avx2;
/* The AVX-512 VNNI set: the AVX2 set with VNNI X8 matmuls (kernels_avx512.c). */
void cpu_kernels_avx512_init(struct cpu_kernels *k);

/* Activation format for a weight type. */
enum cpu_act cpu_act_for(enum qtype t);
/* Bytes of one activation row of n_in elements in format a. */
size_t cpu_act_row_bytes(enum cpu_act a, int64_t n_in);

/* Plain-layout row r of a weight stored in `layout` (for embedding lookups). */
void cpu_weight_row_dequant(enum qtype t, int layout, const void *w, int64_t n_in, int64_t n_out, int64_t r, float *out);
/* Converts n_out plain rows at src into the X8 layout at dst (dst != src). */
void cpu_repack_x8(enum qtype t, const void *src, void *dst, int64_t n_in, int64_t n_out);
/* Bytes of one X8 block of 8 rows for type t (8 * GGUF block size). */
size_t cpu_x8_block_bytes(enum qtype t);

#endif
