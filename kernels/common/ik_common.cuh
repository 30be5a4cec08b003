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
#include <stdlib.h>

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

// ---- programmatic dependent launch (Hopper) ----
// A decode step is ~10 kernels per layer, most of them a few microseconds
// long, so each launch's ramp and tail is a large share of the step. With
// PDL a kernel may be launched while the one before it still runs: it does
// what needs no input (a GEMV's first weight loads) and then waits in
// wait_for_inputs() until the previous grid has completed and its writes are
// visible. Every read of a previous kernel's output and every write must come
// after that wait. allow_dependents() lets the next kernel launch early; it is
// always safe, since that kernel still waits for this one to complete.
// Both are no-ops before sm_90 and for kernels launched without PDL.
__device__ __forceinline__ void wait_for_inputs()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void allow_dependents()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// Whether kernels that call wait_for_inputs() first may be launched with PDL:
// on sm_90+ unless INFERD_CUDA_PDL=0 (an A/B switch for benchmarks). Read once.
inline bool pdl_enabled()
{
    static int on = -1;
    if (on < 0) {
        int dev = 0, major = 0;
        const char *env = getenv("INFERD_CUDA_PDL");
        on = cudaGetDevice(&dev) == cudaSuccess &&
             cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9 &&
             !(env && env[0] == '0');
    }
    return on == 1;
}

// Launches kernel<<<grid, block, 0, s>>>(args...), with PDL where enabled.
template <typename... P, typename... A>
int launch_pdl(void (*kernel)(P...), unsigned grid, unsigned block, cudaStream_t s, A &&...args)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(grid);
    cfg.blockDim = dim3(block);
    cfg.stream = s;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl_enabled() ? 1 : 0;
    cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, static_cast<A &&>(args)...);
    return e != cudaSuccess ? (int)e : launch_status();
}

} // namespace ik

#endif
