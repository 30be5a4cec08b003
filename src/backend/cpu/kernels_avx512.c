/* SPDX-License-Identifier: Apache-2.0
 *
 * kernels_avx512.c: X8 matmul kernels for CPUs with AVX-512 VNNI (with the
 * VL extension, on 256-bit registers). vpdpbusd multiplies unsigned by signed
 * bytes and accumulates groups of four into int32 in one instruction, replacing
 * the vpmaddubsw + vpmaddwd + add sequence of the AVX2 kernels; the layout,
 * tiling, prefetching and float arithmetic are the AVX2 kernels' (results are
 * bit-identical: the integer sums are exact either way).
 *
 * The rest of this kernel set is the AVX2 set (cpu_backend.c builds it from
 * cpu_kernels_avx2 plus the entries here).
 *
 * Layer: backend/cpu. Compiled with -mavx512f -mavx512bw -mavx512vl
 * -mavx512vnni, chosen at runtime only when CPUID reports all of them.
 */
#include "cpu_kernels.h"

#include <immintrin.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define PREFETCH_AHEAD 1024 /* as kernels_avx2.c */

ALWAYS_INLINE void prefetch_ahead(const uint8_t *p, int n)
{
    for (int off = 0; off < n; off += 64) _mm_prefetch((const char *)p + PREFETCH_AHEAD + off, _MM_HINT_T0);
}

ALWAYS_INLINE __m256i bcast4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

ALWAYS_INLINE void store_tile(__m256 *acc, const int NT, float *y, int64_t ldy, int accumulate)
{
    for (int t = 0; t < NT; t++) {
        float *out = y + t * ldy;
        if (accumulate) acc[t] = _mm256_add_ps(acc[t], _mm256_loadu_ps(out));
        _mm256_storeu_ps(out, acc[t]);
    }
}

/* 8 rows x NT tokens of Q4_0 (HAS_M = 0) or Q4_1 (HAS_M = 1), see kernels_avx2.c q4x8_tile. */
ALWAYS_INLINE void q4x8_tile(const uint8_t *grp, int64_t nb, const int HAS_M, const uint8_t *xa, size_t xa_stride,
                             const int NT, float *y, int64_t ldy, int accumulate)
{
    const size_t bb = HAS_M ? 160 : 144, hdr = HAS_M ? 32 : 16;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = grp + b * bb;
        prefetch_ahead(blk, (int)bb);
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        __m256 mw = HAS_M ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16)))
                          : _mm256_mul_ps(dw, _mm256_set1_ps(-8.f));
        const uint8_t *qs = blk + hdr;
        __m256i sum[4] = { _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                           _mm256_setzero_si256() };
        for (int j = 0; j < 4; j++) {
            __m256i c = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
            __m256i lo = _mm256_and_si256(c, m4), hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), m4);
            for (int t = 0; t < NT; t++) {
                const block_q8_1f *a = (const block_q8_1f *)(xa + t * xa_stride) + b;
                sum[t] = _mm256_dpbusd_epi32(sum[t], lo, bcast4(a->qs + 4 * j));
                sum[t] = _mm256_dpbusd_epi32(sum[t], hi, bcast4(a->qs + 16 + 4 * j));
            }
        }
        for (int t = 0; t < NT; t++) {
            const block_q8_1f *a = (const block_q8_1f *)(xa + t * xa_stride) + b;
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[t]), _mm256_mul_ps(dw, _mm256_set1_ps(a->d)), acc[t]);
            acc[t] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a->s), acc[t]);
        }
    }
    store_tile(acc, NT, y, ldy, accumulate);
}

/* 8 rows x NT tokens of Q8_0: |w| as the unsigned operand, w's sign moved onto the activation. */
ALWAYS_INLINE void q8x8_tile(const uint8_t *grp, int64_t nb, const uint8_t *xa, size_t xa_stride, const int NT,
                             float *y, int64_t ldy, int accumulate)
{
    __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = grp + b * 272;
        prefetch_ahead(blk, 272);
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        __m256i sum[4] = { _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                           _mm256_setzero_si256() };
        for (int j = 0; j < 8; j++) {
            __m256i w = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * j));
            __m256i aw = _mm256_abs_epi8(w);
            for (int t = 0; t < NT; t++) {
                const block_q8_1f *a = (const block_q8_1f *)(xa + t * xa_stride) + b;
                sum[t] = _mm256_dpbusd_epi32(sum[t], aw, _mm256_sign_epi8(bcast4(a->qs + 4 * j), w));
            }
        }
        for (int t = 0; t < NT; t++) {
            const block_q8_1f *a = (const block_q8_1f *)(xa + t * xa_stride) + b;
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[t]), _mm256_mul_ps(dw, _mm256_set1_ps(a->d)), acc[t]);
        }
    }
    store_tile(acc, NT, y, ldy, accumulate);
}

#define DEFINE_X8_GEMM(NAME, TILE_CALL, BLOCK_BYTES)                                                                  \
    static void NAME(const void *w, int64_t n_in, int64_t n_out, int64_t r0, int64_t r1, const void *xa,             \
                     size_t xa_stride, int n, float *y, int64_t ldy, int accumulate)                                  \
    {                                                                                                                 \
        (void)n_out;                                                                                                  \
        int64_t nb = n_in / 32;                                                                                       \
        const uint8_t *xb = xa;                                                                                       \
        for (int64_t g = r0 / 8; g < r1 / 8; g++) {                                                                   \
            const uint8_t *grp = (const uint8_t *)w + (size_t)g * nb * (BLOCK_BYTES);                                \
            float *yg = y + (8 * g - r0);                                                                             \
            int t = 0;                                                                                                \
            for (; t + 4 <= n; t += 4) TILE_CALL(4);                                                                  \
            switch (n - t) {                                                                                          \
            case 3: TILE_CALL(3); break;                                                                              \
            case 2: TILE_CALL(2); break;                                                                              \
            case 1: TILE_CALL(1); break;                                                                              \
            default: break;                                                                                           \
            }                                                                                                         \
        }                                                                                                             \
    }

#define Q4_0_TILE(NT) q4x8_tile(grp, nb, 0, xb + t * xa_stride, xa_stride, NT, yg + t * ldy, ldy, accumulate)
#define Q4_1_TILE(NT) q4x8_tile(grp, nb, 1, xb + t * xa_stride, xa_stride, NT, yg + t * ldy, ldy, accumulate)
#define Q8_0_TILE(NT) q8x8_tile(grp, nb, xb + t * xa_stride, xa_stride, NT, yg + t * ldy, ldy, accumulate)
DEFINE_X8_GEMM(gemm_q4_0_x8, Q4_0_TILE, 144)
DEFINE_X8_GEMM(gemm_q4_1_x8, Q4_1_TILE, 160)
DEFINE_X8_GEMM(gemm_q8_0_x8, Q8_0_TILE, 272)

void cpu_kernels_avx512_init(struct cpu_kernels *k)
{
    *k = cpu_kernels_avx2;
    k->name = "avx512vnni";
    k->gemm_x8[QT_Q4_0] = gemm_q4_0_x8;
    k->gemm_x8[QT_Q4_1] = gemm_q4_1_x8;
    k->gemm_x8[QT_Q8_0] = gemm_q8_0_x8;
}
