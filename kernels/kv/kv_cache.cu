// SPDX-License-Identifier: Apache-2.0
//
// kv_cache.cu: the paged KV cache's two writers. kv_store rounds new K/V rows
// (f32) to half (round to nearest even, as the CPU's to_f16) into the slots of
// the slot mapping (-1 = skip, e.g. padding); kv_copy duplicates whole blocks
// for copy-on-write. One thread per element; 16-bit elements are copied as
// such because a block's offset need not be 16-byte aligned for every kv_dim.
//
// Layer: kernels.
#include "../common/ik_common.cuh"
#include "../inferd_kernels.h"

namespace {

using namespace ik;

__global__ void store_kernel(__half *kc, __half *vc, const float *k, const float *v, int n, int kv_dim,
                             const int32_t *slots)
{
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (int64_t)n * kv_dim) return;
    int t = (int)(e / kv_dim), i = (int)(e % kv_dim);
    int32_t slot = slots[t];
    if (slot < 0) return;
    int64_t dst = (int64_t)slot * kv_dim + i;
    kc[dst] = __float2half_rn(k[e]);
    vc[dst] = __float2half_rn(v[e]);
}

__global__ void copy_kernel(uint16_t *k, uint16_t *v, const int32_t *src, const int32_t *dst, int n, int64_t block_elems)
{
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (int64_t)n * block_elems) return;
    int b = (int)(e / block_elems);
    int64_t i = e % block_elems, from = (int64_t)src[b] * block_elems + i, to = (int64_t)dst[b] * block_elems + i;
    k[to] = k[from];
    v[to] = v[from];
}

} // namespace

extern "C" int ik_kv_store(uint16_t *k_cache, uint16_t *v_cache, const float *k, const float *v, int n, int kv_dim,
                           const int32_t *slots, void *stream)
{
    int64_t total = (int64_t)n * kv_dim;
    if (total <= 0) return cudaSuccess;
    store_kernel<<<grid_for(total, 256), 256, 0, (cudaStream_t)stream>>>((__half *)k_cache, (__half *)v_cache, k, v, n,
                                                                          kv_dim, slots);
    return launch_status();
}

extern "C" int ik_kv_copy(uint16_t *k_cache, uint16_t *v_cache, const int32_t *src, const int32_t *dst, int n,
                          int64_t block_elems, void *stream)
{
    int64_t total = (int64_t)n * block_elems;
    if (total <= 0) return cudaSuccess;
    copy_kernel<<<grid_for(total, 256), 256, 0, (cudaStream_t)stream>>>(k_cache, v_cache, src, dst, n, block_elems);
    return launch_status();
}
