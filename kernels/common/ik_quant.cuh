// SPDX-License-Identifier: Apache-2.0
//
// ik_quant.cuh: GGUF block formats on the device. Every quantized type is
// read in "chunks" of 32 consecutive elements of a row (one Q4_0/Q4_1/Q8_0
// block, or one 32-element sub-block of a 256-element K-quant super-block),
// so the GEMV, the embedding and the bf16 dequantizer share one decoder per
// type. The arithmetic is that of src/model/quant.c (dequant_row), operation
// for operation with explicit _rn intrinsics so the compiler cannot contract
// it into FMAs: dequantized values are bit-identical to the CPU's.
//
// Layer: kernels (internal).
#ifndef INFERD_IK_QUANT_CUH
#define INFERD_IK_QUANT_CUH

#include "ik_common.cuh"

namespace ik {

// Bytes per block and elements per block of each quantized type.
template <int T> struct qtraits;
template <> struct qtraits<T_Q4_0> { static constexpr int block = 32, bytes = 18; };
template <> struct qtraits<T_Q4_1> { static constexpr int block = 32, bytes = 20; };
template <> struct qtraits<T_Q8_0> { static constexpr int block = 32, bytes = 34; };
template <> struct qtraits<T_Q4_K> { static constexpr int block = 256, bytes = 144; };
template <> struct qtraits<T_Q5_K> { static constexpr int block = 256, bytes = 176; };
template <> struct qtraits<T_Q6_K> { static constexpr int block = 256, bytes = 210; };

// Scale and min of sub-block j of a Q4_K/Q5_K super-block (kq_scale_min in quant.h).
__device__ __forceinline__ void kq_scale_min(int j, const uint8_t *q, int &sc, int &m)
{
    if (j < 4) {
        sc = q[j] & 63;
        m = q[j + 4] & 63;
    } else {
        sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

// Decodes chunk c (elements 32c..32c+31) of a row that starts at `row`.
template <int T> __device__ __forceinline__ void dequant_chunk(const uint8_t *row, int64_t c, float v[32]);

template <> __device__ __forceinline__ void dequant_chunk<T_Q4_0>(const uint8_t *row, int64_t c, float v[32])
{
    const uint8_t *b = row + c * 18;
    float d = half_at(b);
#pragma unroll
    for (int j = 0; j < 16; j++) {
        int q = b[2 + j];
        v[j] = __fmul_rn((float)((q & 0xF) - 8), d);
        v[j + 16] = __fmul_rn((float)((q >> 4) - 8), d);
    }
}

template <> __device__ __forceinline__ void dequant_chunk<T_Q4_1>(const uint8_t *row, int64_t c, float v[32])
{
    const uint8_t *b = row + c * 20;
    float d = half_at(b), m = half_at(b + 2);
#pragma unroll
    for (int j = 0; j < 16; j++) {
        int q = b[4 + j];
        v[j] = __fadd_rn(__fmul_rn((float)(q & 0xF), d), m);
        v[j + 16] = __fadd_rn(__fmul_rn((float)(q >> 4), d), m);
    }
}

template <> __device__ __forceinline__ void dequant_chunk<T_Q8_0>(const uint8_t *row, int64_t c, float v[32])
{
    const uint8_t *b = row + c * 34;
    float d = half_at(b);
    const int8_t *qs = (const int8_t *)(b + 2);
#pragma unroll
    for (int j = 0; j < 32; j++) v[j] = __fmul_rn((float)qs[j], d);
}

// Q4_K (qh_off < 0) and Q5_K share the sub-block arithmetic: y = (d*sc)*q - dmin*m.
template <int BYTES, int QS_OFF, int QH_OFF>
__device__ __forceinline__ void dequant_q45_K_chunk(const uint8_t *row, int64_t c, float v[32])
{
    const uint8_t *b = row + (c >> 3) * BYTES;
    int j = (int)(c & 7), sc, m;
    kq_scale_min(j, b + 4, sc, m);
    float d1 = __fmul_rn(half_at(b), (float)sc), m1 = __fmul_rn(half_at(b + 2), (float)m);
    const uint8_t *qs = b + QS_OFF + 32 * (j >> 1);
    const int shift = (j & 1) ? 4 : 0;
#pragma unroll
    for (int l = 0; l < 32; l++) {
        int q = (qs[l] >> shift) & 0xF;
        if (QH_OFF >= 0) q += ((b[QH_OFF + l] >> j) & 1) << 4;
        v[l] = __fsub_rn(__fmul_rn(d1, (float)q), m1);
    }
}

template <> __device__ __forceinline__ void dequant_chunk<T_Q4_K>(const uint8_t *row, int64_t c, float v[32])
{
    dequant_q45_K_chunk<144, 16, -1>(row, c, v);
}

template <> __device__ __forceinline__ void dequant_chunk<T_Q5_K>(const uint8_t *row, int64_t c, float v[32])
{
    dequant_q45_K_chunk<176, 48, 16>(row, c, v);
}

// Q6_K: { ql[128], qh[64], scales[16], d }; sub-block j covers elements 32j..32j+31
// (half = j/4 of 128 elements, quarter = j%4 within it), as q6_K_levels in quant.c.
template <> __device__ __forceinline__ void dequant_chunk<T_Q6_K>(const uint8_t *row, int64_t c, float v[32])
{
    const uint8_t *b = row + (c >> 3) * 210;
    int j = (int)(c & 7), half = j >> 2, quarter = j & 3;
    const uint8_t *ql = b + 64 * half + 32 * (quarter & 1);
    const uint8_t *qh = b + 128 + 32 * half;
    const int8_t *scales = (const int8_t *)(b + 192) + 8 * half + 2 * quarter;
    const int lshift = quarter >= 2 ? 4 : 0, hshift = 2 * quarter;
    float d = half_at(b + 208);
    float s0 = __fmul_rn(d, (float)scales[0]), s1 = __fmul_rn(d, (float)scales[1]);
#pragma unroll
    for (int l = 0; l < 32; l++) {
        int q = (((ql[l] >> lshift) & 0xF) | (((qh[l] >> hshift) & 3) << 4)) - 32;
        v[l] = __fmul_rn(l < 16 ? s0 : s1, (float)q);
    }
}

} // namespace ik

#endif
