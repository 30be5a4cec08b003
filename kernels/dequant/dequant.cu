// SPDX-License-Identifier: Apache-2.0
//
// dequant.cu: GGUF rows to bf16 (the operand of cuBLAS GEMMs in prefill),
// one thread per 32-element chunk for quantized types (ik_quant.cuh decodes
// it exactly as quant.c does, then it is rounded once to bf16) and one thread
// per element for F16/BF16/F32. Also f32 activations to bf16.
//
// Layer: kernels.
#include "../common/ik_quant.cuh"
#include "../inferd_kernels.h"

namespace {

using namespace ik;

template <int T>
__global__ void dequant_chunks(const uint8_t *src, __nv_bfloat16 *dst, int64_t chunks_per_row, int64_t row_bytes,
                               int64_t n_chunks)
{
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= n_chunks) return;
    int64_t r = c / chunks_per_row, cc = c % chunks_per_row;
    float v[32];
    dequant_chunk<T>(src + r * row_bytes, cc, v);
    __nv_bfloat16 *y = dst + c * 32;
#pragma unroll
    for (int j = 0; j < 32; j += 2) *(__nv_bfloat162 *)(y + j) = __floats2bfloat162_rn(v[j], v[j + 1]);
}

__global__ void dequant_floats(const void *src, __nv_bfloat16 *dst, int type, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (type == T_BF16) dst[i] = ((const __nv_bfloat16 *)src)[i];
    else if (type == T_F16) dst[i] = __float2bfloat16_rn(__half2float(((const __half *)src)[i]));
    else dst[i] = __float2bfloat16_rn(((const float *)src)[i]);
}

__global__ void f32_to_bf16(const float *src, __nv_bfloat16 *dst, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __float2bfloat16_rn(src[i]);
}

template <int T> int launch_chunks(const void *src, uint16_t *dst, int64_t n_rows, int64_t n_cols, cudaStream_t s)
{
    if (n_cols % qtraits<T>::block) return cudaErrorInvalidValue;
    int64_t per_row = n_cols / 32, n = n_rows * per_row;
    int64_t row_bytes = n_cols / qtraits<T>::block * qtraits<T>::bytes;
    dequant_chunks<T><<<grid_for(n, 256), 256, 0, s>>>((const uint8_t *)src, (__nv_bfloat16 *)dst, per_row,
                                                       row_bytes, n);
    return launch_status();
}

} // namespace

extern "C" int ik_dequant_to_bf16(const void *src, uint16_t *dst, int type, int64_t n_rows, int64_t n_cols, void *stream)
{
    cudaStream_t s = (cudaStream_t)stream;
    if (n_rows <= 0 || n_cols <= 0) return cudaSuccess;
    switch (type) {
    case T_Q4_0: return launch_chunks<T_Q4_0>(src, dst, n_rows, n_cols, s);
    case T_Q4_1: return launch_chunks<T_Q4_1>(src, dst, n_rows, n_cols, s);
    case T_Q8_0: return launch_chunks<T_Q8_0>(src, dst, n_rows, n_cols, s);
    case T_Q4_K: return launch_chunks<T_Q4_K>(src, dst, n_rows, n_cols, s);
    case T_Q5_K: return launch_chunks<T_Q5_K>(src, dst, n_rows, n_cols, s);
    case T_Q6_K: return launch_chunks<T_Q6_K>(src, dst, n_rows, n_cols, s);
    case T_F16:
    case T_BF16:
    case T_F32: {
        int64_t n = n_rows * n_cols;
        dequant_floats<<<grid_for(n, 256), 256, 0, s>>>(src, (__nv_bfloat16 *)dst, type, n);
        return launch_status();
    }
    default: return cudaErrorInvalidValue;
    }
}

extern "C" int ik_f32_to_bf16(const float *src, uint16_t *dst, int64_t n, void *stream)
{
    if (n <= 0) return cudaSuccess;
    f32_to_bf16<<<grid_for(n, 256), 256, 0, (cudaStream_t)stream>>>(src, (__nv_bfloat16 *)dst, n);
    return launch_status();
}
