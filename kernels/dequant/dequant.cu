// SPDX-License-Identifier: Apache-2.0
//
// dequant.cu: GGUF quantized blocks to bf16, one thread per 32-element block
// half-row segment. Bit layouts are those of include/inferd/quant.h (the CPU
// reference, quant.c, defines them); this kernel is checked against it by
// tests/gpu/run.sh.
//
// Layer: kernels.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../inferd_kernels.h"

namespace {

enum { T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q8_0 = 8 };

__device__ inline float half_at(const uint8_t *p)
{
    __half h;
    memcpy(&h, p, 2);
    return __half2float(h);
}

// One thread per 32-element block: reads the block's scale(s), writes 32 bf16.
__global__ void dequant_blocks(const uint8_t *src, __nv_bfloat16 *dst, int type, int64_t n_blocks)
{
    int64_t b = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= n_blocks) return;
    __nv_bfloat16 *y = dst + b * 32;
    if (type == T_Q4_0 || type == T_Q4_1) {
        const int bytes = type == T_Q4_0 ? 18 : 20;
        const uint8_t *blk = src + b * bytes;
        float d = half_at(blk), m = type == T_Q4_1 ? half_at(blk + 2) : -8.f * d;
        const uint8_t *qs = blk + (type == T_Q4_0 ? 2 : 4);
        for (int j = 0; j < 16; j++) {
            y[j] = __float2bfloat16((qs[j] & 0xF) * d + m);
            y[j + 16] = __float2bfloat16((qs[j] >> 4) * d + m);
        }
    } else if (type == T_Q8_0) {
        const uint8_t *blk = src + b * 34;
        float d = half_at(blk);
        const int8_t *qs = (const int8_t *)(blk + 2);
        for (int j = 0; j < 32; j++) y[j] = __float2bfloat16(qs[j] * d);
    } else { // F16: 32 halves per "block"
        const uint8_t *blk = src + b * 64;
        for (int j = 0; j < 32; j++) y[j] = __float2bfloat16(half_at(blk + 2 * j));
    }
}

} // namespace

extern "C" int ik_dequant_to_bf16(const void *src, uint16_t *dst, int type, int64_t n_rows, int64_t n_cols, void *stream)
{
    if ((type != T_F16 && type != T_Q4_0 && type != T_Q4_1 && type != T_Q8_0) || n_cols % 32) return cudaErrorInvalidValue;
    int64_t n_blocks = n_rows * (n_cols / 32);
    if (n_blocks == 0) return cudaSuccess;
    const int threads = 256;
    dequant_blocks<<<(unsigned)((n_blocks + threads - 1) / threads), threads, 0, (cudaStream_t)stream>>>(
        (const uint8_t *)src, (__nv_bfloat16 *)dst, type, n_blocks);
    return (int)cudaGetLastError();
}
