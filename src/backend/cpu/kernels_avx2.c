/* SPDX-License-Identifier: Apache-2.0
 *
 * kernels_avx2.c: the AVX2 + FMA + F16C kernel set (compiled with those flags
 * only for this file; picked at runtime when the CPU has them).
 *
 * Q4_0, Q4_1 and Q8_0 weights use the X8 layout (cpu_kernels.h): per block,
 * eight rows' scales load as one vector, and each 32-byte register holds four
 * consecutive weights of eight rows. vpmaddubsw against a broadcast of four
 * activation bytes then yields partial dot products for eight rows at once,
 * so the float scaling is one vector op per block instead of one per row. A
 * tile is 8 rows x up to 4 tokens; weights are unpacked once per tile.
 *
 * K-quants use the plain layout with ggml-style 256-element block dots.
 *
 * Integer ranges (why int16 accumulation is safe): 4-bit weights are 0..15 and
 * activations -127..127, so one vpmaddubsw lane is at most 2*15*127 = 3810 and
 * eight of them sum to 30480 < 32767. 8-bit weights use sign tricks and widen
 * to int32 after every vpmaddubsw (2*127*127 = 32258).
 *
 * Layer: backend/cpu.
 */
#include "cpu_kernels.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Software prefetch distance for streaming weights. Decode reads every weight
 * byte once per token; the hardware prefetcher alone leaves bandwidth unused
 * when two threads stream at once (measured: 10-11 GB/s without, 14-16 GB/s
 * with a 1 KiB lead on a 2-core EPYC VM). */
#define PREFETCH_AHEAD 1024

/* Prefetches the bytes [p + PREFETCH_AHEAD, +n) into L1, one line at a time. */
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

ALWAYS_INLINE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

ALWAYS_INLINE int hsum_i32(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

/* Scalar half conversions with F16C instead of quant.c's portable bit
 * manipulation: the same results for every non-NaN value (checked over all
 * 2^32 floats), at one instruction each. */
static inline float half_to_f32(f16_t h) { return _cvtsh_ss(h); }
static inline float round_to_half(float x) { return _cvtsh_ss(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT)); }

/* ---- activation quantization ---- */

static void avx2_quant_q8_1f(const float *x, block_q8_1f *y, int64_t n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
        __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        float amax = _mm_cvtss_f32(m4);
        /* same formula as quant_row_q8_1f so both produce identical blocks */
        float d = amax / 127.f, id = amax != 0.f ? 127.f / amax : 0.f;
        __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, vid)), i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, vid));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, vid)), i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, vid));
        int sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
        /* packs interleave 128-bit lanes; the permute restores element order */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[i].qs, p);
        y[i].d = round_to_half(d);
        y[i].s = round_to_half(d * (float)sum);
    }
}

/* ---- X8 kernels for Q4_0 / Q4_1 ---- */

/* One tile: 8 rows (one X8 group) x NT tokens. HAS_M: Q4_1 (stored min) vs Q4_0 (-8 offset). */
ALWAYS_INLINE void q4x8_tile(const uint8_t *grp, int64_t nb, const int HAS_M, const uint8_t *xa, size_t xa_stride,
                             const int NT, float *y, int64_t ldy, int accumulate)
{
    const size_t bb = HAS_M ? 160 : 144, hdr = HAS_M ? 32 : 16;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const block_q8_1f *a[4];
    for (int t = 0; t < NT; t++) a[t] = (const block_q8_1f *)(xa + t * xa_stride);
    __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = grp + b * bb;
        prefetch_ahead(blk, (int)bb);
        const uint8_t *qs = blk + hdr;
        __m256i sum16[4];
        for (int j = 0; j < 4; j++) {
            __m256i c = _mm256_loadu_si256((const __m256i *)(qs + 32 * j));
            __m256i lo = _mm256_and_si256(c, m4), hi = _mm256_and_si256(_mm256_srli_epi16(c, 4), m4);
            for (int t = 0; t < NT; t++) {
                __m256i pl = _mm256_maddubs_epi16(lo, bcast4(a[t][b].qs + 4 * j));
                __m256i ph = _mm256_maddubs_epi16(hi, bcast4(a[t][b].qs + 16 + 4 * j));
                sum16[t] = j ? _mm256_add_epi16(_mm256_add_epi16(sum16[t], pl), ph) : _mm256_add_epi16(pl, ph);
            }
        }
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        __m256 mw = HAS_M ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 16)))
                          : _mm256_mul_ps(dw, _mm256_set1_ps(-8.f));
        for (int t = 0; t < NT; t++) {
            __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(sum16[t], _mm256_set1_epi16(1)));
            acc[t] = _mm256_fmadd_ps(s, _mm256_mul_ps(dw, _mm256_broadcast_ss(&a[t][b].d)), acc[t]);
            acc[t] = _mm256_fmadd_ps(mw, _mm256_broadcast_ss(&a[t][b].s), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) {
        float *out = y + t * ldy;
        if (accumulate) acc[t] = _mm256_add_ps(acc[t], _mm256_loadu_ps(out));
        _mm256_storeu_ps(out, acc[t]);
    }
}

/* One tile of Q8_0 X8: the sign of w is moved onto the activation so vpmaddubsw sees |w| (unsigned). */
ALWAYS_INLINE void q8x8_tile(const uint8_t *grp, int64_t nb, const uint8_t *xa, size_t xa_stride, const int NT,
                             float *y, int64_t ldy, int accumulate)
{
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps() };
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *blk = grp + b * 272;
        prefetch_ahead(blk, 272);
        __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)blk));
        __m256i sum32[4];
        for (int j = 0; j < 8; j++) {
            __m256i w = _mm256_loadu_si256((const __m256i *)(blk + 16 + 32 * j));
            __m256i aw = _mm256_sign_epi8(w, w);
            for (int t = 0; t < NT; t++) {
                const block_q8_1f *a = (const block_q8_1f *)(xa + t * xa_stride) + b;
                __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(bcast4(a->qs + 4 * j), w)), ones);
                sum32[t] = j ? _mm256_add_epi32(sum32[t], p) : p;
            }
        }
        for (int t = 0; t < NT; t++) {
            const block_q8_1f *a = (const block_q8_1f *)(xa + t * xa_stride) + b;
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum32[t]), _mm256_mul_ps(dw, _mm256_set1_ps(a->d)), acc[t]);
        }
    }
    for (int t = 0; t < NT; t++) {
        float *out = y + t * ldy;
        if (accumulate) acc[t] = _mm256_add_ps(acc[t], _mm256_loadu_ps(out));
        _mm256_storeu_ps(out, acc[t]);
    }
}

/* Walks groups [r0/8, r1/8) x tokens in tiles of 4, with a 1..3 token tail. The
 * tile function is inlined with constant NT so each variant is fully unrolled. */
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

/* ---- K-quants, plain layout, one (row, token) per call ---- */

/* One Q4_K or Q5_K super-block against Q8_K activations: adds d*a.d*sum(sc*q*a)
 * to *acc and returns dmin*a.d*sum(m*bsum) (subtracted by the caller).
 * qh is NULL for Q4_K; for Q5_K bit 2c of qh[l] is the 5th bit of chunk c's low
 * half, bit 2c+1 of its high half. */
ALWAYS_INLINE float q45_K_block(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, f16_t dd, f16_t ddmin,
                                const block_q8_K *a, __m256 *acc)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    uint8_t sc[8], m[8];
    for (int j = 0; j < 8; j++) kq_scale_min(j, scales, &sc[j], &m[j]);
    int summ = 0;
    for (int j = 0; j < 8; j++) summ += m[j] * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
    __m256i hbits = qh ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    __m256i sumi = _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
        __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (qh) { /* masked to one bit per byte first, so <<4 in 16-bit lanes cannot cross bytes */
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 2 * c + 1), one), 4));
        }
        __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(a->qs + 64 * c)));
        __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(a->qs + 64 * c + 32)));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * c])));
        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * c + 1])));
    }
    *acc = _mm256_fmadd_ps(_mm256_set1_ps(half_to_f32(dd) * a->d), _mm256_cvtepi32_ps(sumi), *acc);
    return half_to_f32(ddmin) * a->d * (float)summ;
}

static float dot_q4_K(const block_q4_K *w, const block_q8_K *a, int64_t nb)
{
    __m256 acc = _mm256_setzero_ps();
    float mins = 0;
    for (int64_t b = 0; b < nb; b++) mins += q45_K_block(w[b].scales, w[b].qs, NULL, w[b].d, w[b].dmin, &a[b], &acc);
    return hsum(acc) - mins;
}

static float dot_q5_K(const block_q5_K *w, const block_q8_K *a, int64_t nb)
{
    __m256 acc = _mm256_setzero_ps();
    float mins = 0;
    for (int64_t b = 0; b < nb; b++) mins += q45_K_block(w[b].scales, w[b].qs, w[b].qh, w[b].d, w[b].dmin, &a[b], &acc);
    return hsum(acc) - mins;
}

/* int16 scale pair: sc_lo for the low 128-bit half (elements 0..15), sc_hi for the high half. */
ALWAYS_INLINE __m256i scale_pair(int sc_lo, int sc_hi)
{
    return _mm256_set_m128i(_mm_set1_epi16((short)sc_hi), _mm_set1_epi16((short)sc_lo));
}

static float dot_q6_K(const block_q6_K *w, const block_q8_K *a, int64_t nb)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(3);
    __m256 acc = _mm256_setzero_ps();
    float corr = 0;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *ql = w[b].ql, *qhp = w[b].qh;
        const int8_t *sc = w[b].scales, *aq = a[b].qs;
        int offset = 0; /* the stored q is q + 32: subtract 32 * sum(a) per 16-group via bsums */
        for (int g = 0; g < 16; g++) offset += sc[g] * a[b].bsums[g];
        __m256i sumi = _mm256_setzero_si256();
        for (int half = 0; half < 2; half++, ql += 64, qhp += 32, sc += 8, aq += 128) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql), l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *)qhp);
            __m256i q1 = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(h, m2), 4));
            __m256i q2 = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m2), 4));
            __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m2), 4));
            __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                         _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m2), 4));
            __m256i p1 = _mm256_maddubs_epi16(q1, _mm256_loadu_si256((const __m256i *)aq));
            __m256i p2 = _mm256_maddubs_epi16(q2, _mm256_loadu_si256((const __m256i *)(aq + 32)));
            __m256i p3 = _mm256_maddubs_epi16(q3, _mm256_loadu_si256((const __m256i *)(aq + 64)));
            __m256i p4 = _mm256_maddubs_epi16(q4, _mm256_loadu_si256((const __m256i *)(aq + 96)));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p1, scale_pair(sc[0], sc[1])));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p2, scale_pair(sc[2], sc[3])));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p3, scale_pair(sc[4], sc[5])));
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p4, scale_pair(sc[6], sc[7])));
        }
        float d = half_to_f32(w[b].d) * a[b].d;
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi), acc);
        corr += d * (float)(32 * offset);
    }
    return hsum(acc) - corr;
}

/* ---- float weights ---- */

static float dot_f32w(const float *w, const float *x, int64_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static float dot_f16w(const f16_t *w, const float *x, int64_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8))), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += half_to_f32(w[i]) * x[i];
    return s;
}

ALWAYS_INLINE __m256 bf16x8_to_f32(const bf16_t *p)
{
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static float dot_bf16w(const bf16_t *w, const float *x, int64_t n)
{
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(bf16x8_to_f32(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(bf16x8_to_f32(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float s = hsum(_mm256_add_ps(a0, a1));
    for (; i < n; i++) s += bf16_to_f32(w[i]) * x[i];
    return s;
}

CPU_DEFINE_ROWS_GEMM(gemm_q4_K, block_q4_K, block_q8_K, QK_K, dot_q4_K)
CPU_DEFINE_ROWS_GEMM(gemm_q5_K, block_q5_K, block_q8_K, QK_K, dot_q5_K)
CPU_DEFINE_ROWS_GEMM(gemm_q6_K, block_q6_K, block_q8_K, QK_K, dot_q6_K)
CPU_DEFINE_ROWS_GEMM(gemm_f32, float, float, 1, dot_f32w)
CPU_DEFINE_ROWS_GEMM(gemm_f16, f16_t, float, 1, dot_f16w)
CPU_DEFINE_ROWS_GEMM(gemm_bf16, bf16_t, float, 1, dot_bf16w)

/* ---- attention ---- */

/* exp(x) for 8 lanes: Cephes-style range reduction x = n ln2 + r and a degree-5
 * polynomial for exp(r); within ~2 ulp of expf over [-87.3, 88.4], 0 below. */
ALWAYS_INLINE __m256 exp8(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.37f));
    __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500E-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073E-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894E-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459E-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201E-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.f)));
    __m256i n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(n));
}


/* Softmax of one head's scores in place, then rounded to half (llama.cpp's points):
 * exp against the max, sum in double, scale by the float reciprocal. */
static void softmax_to_half(float *sc, int n)
{
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int p = 0;
    for (; p + 8 <= n; p += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(sc + p));
    float max = -INFINITY, lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    for (int i = 0; i < 8; i++) max = lanes[i] > max ? lanes[i] : max;
    for (; p < n; p++) max = sc[p] > max ? sc[p] : max; /* not fmaxf: a libm call per element */
    __m256 vm = _mm256_set1_ps(max);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    for (p = 0; p + 8 <= n; p += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(sc + p), vm));
        _mm256_storeu_ps(sc + p, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double sums[4];
    _mm256_storeu_pd(sums, _mm256_add_pd(s0, s1));
    double sum = sums[0] + sums[1] + sums[2] + sums[3];
    for (; p < n; p++) sum += (sc[p] = expf(sc[p] - max));
    float inv = (float)(1.0 / sum);
    __m256 vi = _mm256_set1_ps(inv);
    for (p = 0; p + 8 <= n; p += 8)
        _mm256_storeu_ps(sc + p, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(sc + p), vi),
                                                                 _MM_FROUND_TO_NEAREST_INT)));
    for (; p < n; p++) sc[p] = round_to_half(sc[p] * inv);
}

#define ATTN_PREFETCH_ROWS 8

/* Walks positions in order through the block table without dividing per row. */
struct kv_cursor {
    const uint8_t *base; /* the pool at the KV head */
    int block, off;      /* position = block * block_size + off */
};

ALWAYS_INLINE struct kv_cursor kv_at(const struct cpu_attn_task *t, const uint8_t *base, int p)
{
    return (struct kv_cursor){ base, p / t->block_size, p % t->block_size };
}

/* The cursor's row, then the cursor moves to the next position. */
ALWAYS_INLINE const uint8_t *kv_next(const struct cpu_attn_task *t, struct kv_cursor *c)
{
    const uint8_t *row = c->base + ((size_t)t->table[c->block] * t->block_size + c->off) * t->row_bytes;
    if (++c->off == t->block_size) c->off = 0, c->block++;
    return row;
}

/* Dims [d, d + 8) of an f16 row as floats (d a multiple of 8). */
ALWAYS_INLINE __m256 f16_load8(const uint8_t *row, int d)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + (size_t)d * 2)));
}

/* The broadcast scale of the Q8_0 block holding dim d of a row. */
ALWAYS_INLINE __m256 q8_scale(const uint8_t *row, int d)
{
    return _mm256_set1_ps(half_to_f32(((const block_q8_0 *)row)[d / QK8_0].d));
}

/* Dims [d, d + 8) of a Q8_0 row as floats: the block's half scale times the
 * int8, as ggml dequantizes it. The caller hoists the scale per block. */
ALWAYS_INLINE __m256 q8_load8(const uint8_t *row, int d, __m256 scale)
{
    const block_q8_0 *b = (const block_q8_0 *)row + d / QK8_0;
    __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + d % QK8_0))));
    return _mm256_mul_ps(scale, q);
}

/* Prefetches the bytes of dims [d0, d0 + w) of a cached row. */
ALWAYS_INLINE void kv_prefetch(const uint8_t *row, int d0, int w, enum kv_dtype dtype)
{
    size_t from = (size_t)d0 * 2, to = (size_t)(d0 + w) * 2;
    if (dtype == KV_Q8_0)
        from = (size_t)(d0 / QK8_0) * sizeof(block_q8_0), to = (size_t)((d0 + w + QK8_0 - 1) / QK8_0) * sizeof(block_q8_0);
    for (size_t off = from; off < to; off += 64) _mm_prefetch((const char *)row + off, _MM_HINT_T0);
}

/* Converts dims [d0, d0 + w) of V rows [p0, p0 + n) to float rows of
 * t->tile (w apart), zeroing the rest of the last 8-row group. The cache is
 * streamed once per tile, so rows are prefetched ahead, up to end (the last
 * position any row sees). */
static void load_v_tile(const struct cpu_attn_task *t, int p0, int n, int end, int d0, int w)
{
    struct kv_cursor at = kv_at(t, t->v, p0), ahead = kv_at(t, t->v, p0 + ATTN_PREFETCH_ROWS);
    for (int j = 0; j < n; j++) {
        if (p0 + j + ATTN_PREFETCH_ROWS < end) kv_prefetch(kv_next(t, &ahead), d0, w, t->dtype);
        const uint8_t *src = kv_next(t, &at);
        float *dst = t->tile + (size_t)j * w;
        if (t->dtype == KV_Q8_0) {
            __m256 sc = q8_scale(src, d0);
            for (int i = 0; i < w; i += 8) {
                if (i && (d0 + i) % QK8_0 == 0) sc = q8_scale(src, d0 + i);
                _mm256_storeu_ps(dst + i, q8_load8(src, d0 + i, sc));
            }
        } else {
            for (int i = 0; i < w; i += 8) _mm256_storeu_ps(dst + i, f16_load8(src, d0 + i));
        }
    }
    int padded = (n + 7) & ~7;
    memset(t->tile + (size_t)n * w, 0, (size_t)(padded - n) * w * sizeof(float));
}

/* In-register transpose of an 8x8 block of floats (r[i] becomes column i). */
ALWAYS_INLINE void transpose8(__m256 r[8])
{
    __m256 t[8], u[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* Converts K rows [p0, p0 + n) to a dims-major float tile: dim d of row j at
 * tile[d * tr + j], tr = n rounded up to 8, rows past n zero. Scores then
 * take eight positions per load with no horizontal sums. The cache is
 * streamed once per tile, so rows are prefetched ahead, up to end. */
static void load_k_tile(const struct cpu_attn_task *t, int p0, int n, int end, int tr)
{
    int hd = t->head_dim;
    struct kv_cursor at = kv_at(t, t->k, p0), ahead = kv_at(t, t->k, p0 + ATTN_PREFETCH_ROWS);
    for (int j0 = 0; j0 < tr; j0 += 8) {
        const uint8_t *rows[8];
        for (int r = 0; r < 8; r++) {
            int p = p0 + j0 + r;
            rows[r] = j0 + r < n ? kv_next(t, &at) : NULL;
            if (j0 + r < n && p + ATTN_PREFETCH_ROWS < end) kv_prefetch(kv_next(t, &ahead), 0, hd, t->dtype);
        }
        __m256 sc[8];
        for (int r = 0; r < 8; r++) sc[r] = _mm256_setzero_ps();
        for (int d0 = 0; d0 < hd; d0 += 8) {
            __m256 v[8];
            if (t->dtype == KV_Q8_0) {
                if (d0 % QK8_0 == 0) /* one scale per row and block */
                    for (int r = 0; r < 8; r++) sc[r] = rows[r] ? q8_scale(rows[r], d0) : _mm256_setzero_ps();
                for (int r = 0; r < 8; r++) v[r] = rows[r] ? q8_load8(rows[r], d0, sc[r]) : _mm256_setzero_ps();
            } else {
                for (int r = 0; r < 8; r++) v[r] = rows[r] ? f16_load8(rows[r], d0) : _mm256_setzero_ps();
            }
            transpose8(v);
            for (int i = 0; i < 8; i++) _mm256_storeu_ps(t->tile + (size_t)(d0 + i) * tr + j0, v[i]);
        }
    }
}

/* Scores of PB consecutive pairs (queries q, hd apart) at tile positions
 * [j, j + 8 * NV): PB * NV accumulators, one FMA chain per score over the
 * dimensions in order, so a score has the same bits whichever pairs and
 * positions it is computed with. */
ALWAYS_INLINE void score_block(const float *tile, int tr, int j, const float *q, int hd, float scale, float *dst,
                               size_t stride, const int PB, const int NV)
{
    __m256 acc[4][2];
    for (int b = 0; b < PB; b++)
        for (int v = 0; v < NV; v++) acc[b][v] = _mm256_setzero_ps();
    for (int d = 0; d < hd; d++) {
        const float *kd = tile + (size_t)d * tr + j;
        __m256 k0 = _mm256_loadu_ps(kd), k1 = NV > 1 ? _mm256_loadu_ps(kd + 8) : k0;
        for (int b = 0; b < PB; b++) {
            __m256 qd = _mm256_broadcast_ss(q + (size_t)b * hd + d);
            acc[b][0] = _mm256_fmadd_ps(qd, k0, acc[b][0]);
            if (NV > 1) acc[b][1] = _mm256_fmadd_ps(qd, k1, acc[b][1]);
        }
    }
    const __m256 vs = _mm256_set1_ps(scale);
    for (int b = 0; b < PB; b++)
        for (int v = 0; v < NV; v++) _mm256_storeu_ps(dst + b * stride + 8 * v, _mm256_mul_ps(acc[b][v], vs));
}

/* Positions [0, lim8) of the tile for PB pairs: 16 at a time, then 8. */
ALWAYS_INLINE void score_pairs(const float *tile, int tr, int lim8, const float *q, int hd, float scale, float *dst,
                               size_t stride, const int PB)
{
    int j = 0;
    for (; j + 16 <= lim8; j += 16) score_block(tile, tr, j, q, hd, scale, dst + j, stride, PB, 2);
    for (; j < lim8; j += 8) score_block(tile, tr, j, q, hd, scale, dst + j, stride, PB, 1);
}

/* Scores of every pair against the tile's positions [p0, p0 + n), four
 * pairs at a time so each K load feeds four FMAs. A block runs to its
 * longest pair's visible end in groups of eight: the others' extra scores
 * (past their n_vis, still inside the range) are never read. */
static void tile_scores(const struct cpu_attn_task *t, int p0, int n, int tr, size_t stride)
{
    int hd = t->head_dim, n_pairs = t->n_rows * t->G;
    for (int pr = 0; pr < n_pairs; pr += 4) {
        int pb = n_pairs - pr < 4 ? n_pairs - pr : 4, lim = 0;
        for (int b = 0; b < pb; b++) {
            int l = t->n_vis[(pr + b) / t->G] - p0;
            lim = l > lim ? l : lim;
        }
        lim = lim < n ? lim : n;
        if (lim <= 0) continue;
        int lim8 = (lim + 7) & ~7;
        const float *q = t->q + (size_t)pr * hd;
        float *dst = t->scores + pr * stride + p0;
        switch (pb) {
        case 4: score_pairs(t->tile, tr, lim8, q, hd, t->scale, dst, stride, 4); break;
        case 3: score_pairs(t->tile, tr, lim8, q, hd, t->scale, dst, stride, 3); break;
        case 2: score_pairs(t->tile, tr, lim8, q, hd, t->scale, dst, stride, 2); break;
        default: score_pairs(t->tile, tr, lim8, q, hd, t->scale, dst, stride, 1); break;
        }
    }
}

/* out[0, 8 * NS) += w[p] * v row p for p in [0, n) in order. The NS
 * accumulators stay in registers across the rows; 8 of them keep both FMA
 * pipes busy despite each row's dependency on the last. */
ALWAYS_INLINE void weigh_rows(float *out, const float *v, int hd, const float *w, int n, const int NS)
{
    __m256 acc[8];
    for (int s = 0; s < NS; s++) acc[s] = _mm256_loadu_ps(out + 8 * s);
    for (int p = 0; p < n; p++) {
        if (w[p] == 0.f) continue; /* underflowed weights add nothing */
        __m256 vw = _mm256_set1_ps(w[p]);
        for (int s = 0; s < NS; s++) acc[s] = _mm256_fmadd_ps(vw, _mm256_loadu_ps(v + (size_t)p * hd + 8 * s), acc[s]);
    }
    for (int s = 0; s < NS; s++) _mm256_storeu_ps(out + 8 * s, acc[s]);
}

/* Adds every pair's weighted tile rows [p0, p0 + n) of V (dims [d0, d0 + w),
 * w apart in the tile) to its output, 64 dimensions at a time, then the
 * remaining 8-float slices in 4, 2 and 1. Each output float is its own FMA
 * chain over the positions in order, so any cut of the dimensions gives the
 * same bits. */
static void tile_values(const struct cpu_attn_task *t, int p0, int n, size_t stride, int d0, int w)
{
    int n_pairs = t->n_rows * t->G;
    for (int pr = 0; pr < n_pairs; pr++) {
        int lim = t->n_vis[pr / t->G] - p0 < n ? t->n_vis[pr / t->G] - p0 : n;
        if (lim <= 0) continue;
        const float *wt = t->scores + pr * stride + p0;
        float *out = cpu_attn_pair_out(t, pr) + d0;
        int i = 0;
        for (; i + 64 <= w; i += 64) weigh_rows(out + i, t->tile + i, w, wt, lim, 8);
        if (w - i >= 32) {
            weigh_rows(out + i, t->tile + i, w, wt, lim, 4);
            i += 32;
        }
        if (w - i >= 16) {
            weigh_rows(out + i, t->tile + i, w, wt, lim, 2);
            i += 16;
        }
        if (w - i >= 8) weigh_rows(out + i, t->tile + i, w, wt, lim, 1);
    }
}

/* Scores of positions [p0, p0 + n), in tiles: each K row is converted to
 * float once and serves all n_rows * G pairs. */
static void avx2_attn_scores(const struct cpu_attn_task *t, int p0, int n)
{
    int hd = t->head_dim, max_vis = cpu_attn_max_vis(t), tile_rows = (CPU_ATTN_TILE_FLOATS / hd) & ~7;
    size_t stride = cpu_attn_score_stride(max_vis);
    for (int end = p0 + n; p0 < end; p0 += tile_rows) {
        int m = end - p0 < tile_rows ? end - p0 : tile_rows, tr = (m + 7) & ~7;
        load_k_tile(t, p0, m, max_vis, tr);
        tile_scores(t, p0, m, tr, stride);
    }
}

static void avx2_attn_softmax(const struct cpu_attn_task *t, int pr)
{
    softmax_to_half(t->scores + pr * cpu_attn_score_stride(cpu_attn_max_vis(t)), t->n_vis[pr / t->G]);
    memset(cpu_attn_pair_out(t, pr), 0, (size_t)t->head_dim * sizeof(float));
}

/* Weighted V rows of every position into dims [d0, d1), in tiles of positions. */
static void avx2_attn_values(const struct cpu_attn_task *t, int d0, int d1)
{
    int w = d1 - d0, max_vis = cpu_attn_max_vis(t), tile_rows = (CPU_ATTN_TILE_FLOATS / w) & ~7;
    size_t stride = cpu_attn_score_stride(max_vis);
    for (int p0 = 0; p0 < max_vis; p0 += tile_rows) {
        int n = max_vis - p0 < tile_rows ? max_vis - p0 : tile_rows;
        load_v_tile(t, p0, n, max_vis, d0, w);
        tile_values(t, p0, n, stride, d0, w);
    }
}

/* ---- norm ---- */

/* Squares in float, summed in double (as ggml, so norms agree with llama.cpp's). */
static void avx2_rms_norm(const float *x, const float *w, float *out, int dim, float eps)
{
    __m256d acc = _mm256_setzero_pd();
    int i = 0;
    for (; i + 4 <= dim; i += 4) {
        __m128 v = _mm_loadu_ps(x + i);
        acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm_mul_ps(v, v)));
    }
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(acc), _mm256_extractf128_pd(acc, 1));
    double ss = _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
    for (; i < dim; i++) ss += (double)(x[i] * x[i]);
    float mean = (float)(ss / dim);
    float scale = 1.f / sqrtf(mean + eps);
    __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= dim; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), _mm256_loadu_ps(w + i)));
    for (; i < dim; i++) out[i] = x[i] * scale * w[i];
}

static void avx2_silu_mul(float *h, const float *u, int n)
{
    const __m256 one = _mm256_set1_ps(1.f), zero = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = _mm256_loadu_ps(h + i);
        __m256 e = exp8(_mm256_sub_ps(zero, x));
        _mm256_storeu_ps(h + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) h[i] = h[i] / (1.f + expf(-h[i])) * u[i];
}


static void avx2_to_f16(const float *x, f16_t *y, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = (f16_t)_cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT);
}

static void avx2_round_half(const float *x, float *y, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
    for (; i < n; i++) y[i] = round_to_half(x[i]);
}

const struct cpu_kernels cpu_kernels_avx2 = {
    .name = "avx2",
    .gemm = {
        [QT_Q4_K] = gemm_q4_K, [QT_Q5_K] = gemm_q5_K, [QT_Q6_K] = gemm_q6_K,
        [QT_F32] = gemm_f32, [QT_F16] = gemm_f16, [QT_BF16] = gemm_bf16,
    },
    .gemm_x8 = { [QT_Q4_0] = gemm_q4_0_x8, [QT_Q4_1] = gemm_q4_1_x8, [QT_Q8_0] = gemm_q8_0_x8 },
    .quant_q8_1f = avx2_quant_q8_1f,
    .quant_q8_K = quant_row_q8_K,
    .attn_scores = avx2_attn_scores,
    .attn_softmax = avx2_attn_softmax,
    .attn_values = avx2_attn_values,
    .rms_norm = avx2_rms_norm,
    .silu_mul = avx2_silu_mul,
    .to_f16 = avx2_to_f16,
    .round_half = avx2_round_half,
};
