// SPDX-License-Identifier: Apache-2.0
//
// ik_common.cuh: helpers every kernel family shares: type ids, half/bf16
// loads from unaligned GGUF bytes, warp and block reductions, and the launch
// check that turns a failed launch into the int error the flat ABI returns.
//
// Layer: kernels (internal; never included from C).
#ifndef INFERD_IK_COMMON_CUH
#define INFERD_IK_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace ik {

// ggml type ids (include/inferd/quant.h, enum qtype); kernels may not include C model headers.
enum {
    T_F32 = 0, T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q8_0 = 8,
    T_Q4_K = 12, T_Q5_K = 13, T_Q6_K = 14, T_BF16 = 30
};

// GGUF blocks are only 2-byte aligned: read halves as 16-bit words.
__device__ __forceinline__ float half_at(const uint8_t *p)
{
    return __half2float(__ushort_as_half(*(const unsigned short *)p));
}

__device__ __forceinline__ float bf16_bits_to_float(unsigned short b) { return __uint_as_float((unsigned)b << 16); }

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ double warp_sum_d(double v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Blocks of enough threads for n items, capped so the grid's x dimension stays in range.
inline unsigned grid_for(int64_t n, int threads)
{
    int64_t g = (n + threads - 1) / threads;
    return (unsigned)(g < 1 ? 1 : g > 0x7fffffff ? 0x7fffffff : g);
}

// Launch errors come from cudaGetLastError: a bad configuration or an earlier sticky fault.
inline int launch_status() { return (int)cudaGetLastError(); }

} // namespace ik

#endif
