// SPDX-License-Identifier: Apache-2.0
//
// rms_norm.cu: RMSNorm, one block per row, and the fused variant that first
// adds a residual into the row (x += r; out = norm(x) * w) so the residual
// stream is read once. Squares are formed in float and summed in double, as
// the CPU backend (and ggml) does, so norms agree with the reference to the
// last bits of the sum's order.
//
// Latency, not bandwidth, decides this kernel: at decode a row is 16 KB and
// the whole step waits on it. So when rows allow 16-byte vectors, each
// thread loads its (at most VPT) float4 pieces of x, r and w into registers
// before doing anything else, one round trip instead of a chain of them, and
// the block is as wide as the row (up to 1024 threads). Other rows take the
// plain strided loop.
//
// out may equal x: in the vector kernel every load of the row happens before
// the block-wide barrier that precedes the first store; in the plain one each
// element is read and written by the same thread.
//
// Layer: kernels.
#include "../common/ik_common.cuh"
#include "../inferd_kernels.h"

#include <stdint.h>

namespace {

using namespace ik;

constexpr int THREADS = 256;     // plain kernel
constexpr int MAX_THREADS = 1024; // vector kernel: one thread per float4 up to 4096-wide rows
constexpr int MAX_VPT = 4;        // float4s per thread (8 spills at 1024 threads): rows up to 16384 wide

__global__ void __launch_bounds__(THREADS)
    rms_norm_rows(float *x, const float *r, const float *w, float *out, int dim, float eps)
{
    __shared__ double part[THREADS / 32];
    float *xr = x + (int64_t)blockIdx.x * dim;
    float *orow = out + (int64_t)blockIdx.x * dim;
    double ss = 0;
    for (int i = threadIdx.x; i < dim; i += THREADS) {
        float v = xr[i];
        if (r) {
            v += r[(int64_t)blockIdx.x * dim + i];
            xr[i] = v;
        }
        ss += (double)(v * v);
    }
    ss = warp_sum_d(ss);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads();
    double total = 0;
#pragma unroll
    for (int i = 0; i < THREADS / 32; i++) total += part[i];
    float mean = (float)(total / dim);
    float scale = 1.f / sqrtf(mean + eps);
    for (int i = threadIdx.x; i < dim; i += THREADS) orow[i] = xr[i] * scale * w[i];
}

__device__ __forceinline__ double sq4(float4 v)
{
    return (double)(v.x * v.x) + (double)(v.y * v.y) + (double)(v.z * v.z) + (double)(v.w * v.w);
}

__device__ __forceinline__ float4 add4(float4 a, float4 b)
{
    return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}

// The same result per element as rms_norm_rows (x * scale * w, in that order).
__device__ __forceinline__ float4 norm4(float4 v, float scale, float4 w)
{
    return make_float4(v.x * scale * w.x, v.y * scale * w.y, v.z * scale * w.z, v.w * scale * w.w);
}

// Row of dim = 4 * n4 floats, 16-byte aligned; thread i owns float4s i, i + T, ... (VPT of them at most).
template <int VPT>
__global__ void __launch_bounds__(MAX_THREADS)
    rms_norm_vec(float *x, const float *r, const float *w, float *out, int n4, float eps)
{
    __shared__ double part[MAX_THREADS / 32];
    const int T = blockDim.x;
    float4 *xr = (float4 *)x + (int64_t)blockIdx.x * n4;
    const float4 *rr = r ? (const float4 *)r + (int64_t)blockIdx.x * n4 : nullptr;
    const float4 *w4 = (const float4 *)w;
    float4 v[VPT], wv[VPT];
#pragma unroll
    for (int j = 0; j < VPT; j++) {
        int i = threadIdx.x + j * T;
        v[j] = wv[j] = make_float4(0.f, 0.f, 0.f, 0.f);
        if (i < n4) {
            v[j] = xr[i];
            wv[j] = __ldg(w4 + i);
            if (rr) v[j] = add4(v[j], rr[i]);
        }
    }
    double ss = 0;
#pragma unroll
    for (int j = 0; j < VPT; j++)
        if (threadIdx.x + j * T < n4) ss += sq4(v[j]);
    ss = warp_sum_d(ss);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
    __syncthreads(); // also: every load of the row is done before any store below (out may be x)
    double total = 0;
    for (int i = 0; i < T / 32; i++) total += part[i];
    float mean = (float)(total / (4.0 * n4));
    float scale = 1.f / sqrtf(mean + eps);
    float4 *o = (float4 *)out + (int64_t)blockIdx.x * n4;
#pragma unroll
    for (int j = 0; j < VPT; j++) {
        int i = threadIdx.x + j * T;
        if (i < n4) {
            if (rr) xr[i] = v[j];
            o[i] = norm4(v[j], scale, wv[j]);
        }
    }
}

template <int VPT> void launch_vec(float *x, const float *r, const float *w, float *out, int n, int n4, float eps,
                                   cudaStream_t s)
{
    int per_thread = (n4 + VPT - 1) / VPT, threads = (per_thread + 31) / 32 * 32;
    rms_norm_vec<VPT><<<n, threads, 0, s>>>(x, r, w, out, n4, eps);
}

bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

int launch(float *x, const float *r, const float *w, float *out, int n, int dim, float eps, cudaStream_t s)
{
    if (n <= 0 || dim <= 0) return cudaSuccess;
    const int n4 = dim / 4;
    bool vec = dim % 4 == 0 && n4 <= MAX_THREADS * MAX_VPT && aligned16(x) && aligned16(w) && aligned16(out) &&
               (!r || aligned16(r));
    if (!vec) rms_norm_rows<<<n, THREADS, 0, s>>>(x, r, w, out, dim, eps);
    else if (n4 <= MAX_THREADS) launch_vec<1>(x, r, w, out, n, n4, eps, s);
    else if (n4 <= 2 * MAX_THREADS) launch_vec<2>(x, r, w, out, n, n4, eps, s);
    else launch_vec<4>(x, r, w, out, n, n4, eps, s);
    return launch_status();
}

} // namespace

extern "C" int ik_rms_norm(const float *x, const float *w, float *out, int n, int dim, float eps, void *stream)
{
    return launch((float *)x, nullptr, w, out, n, dim, eps, (cudaStream_t)stream);
}

extern "C" int ik_rms_norm_residual(float *x, const float *r, const float *w, float *out, int n, int dim, float eps,
                                    void *stream)
{
    return launch(x, r, w, out, n, dim, eps, (cudaStream_t)stream);
}
