// SPDX-License-Identifier: Apache-2.0
//
// rms_norm.cu: RMSNorm, one block per row, and the fused variant that first
// adds a residual into the row (x += r; out = norm(x) * w) so the residual
// stream is read once. Squares are formed in float and summed in double, as
// the CPU backend (and ggml) does, so norms agree with the reference to the
// last bits of the sum's order. out may equal x: every element is read and
// written by the same thread.
//
// Layer: kernels.
#include "../common/ik_common.cuh"
#include "../inferd_kernels.h"

namespace {

using namespace ik;

constexpr int THREADS = 256;

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

} // namespace

extern "C" int ik_rms_norm(const float *x, const float *w, float *out, int n, int dim, float eps, void *stream)
{
    if (n <= 0 || dim <= 0) return cudaSuccess;
    rms_norm_rows<<<n, THREADS, 0, (cudaStream_t)stream>>>((float *)x, nullptr, w, out, dim, eps);
    return launch_status();
}

extern "C" int ik_rms_norm_residual(float *x, const float *r, const float *w, float *out, int n, int dim, float eps,
                                    void *stream)
{
    if (n <= 0 || dim <= 0) return cudaSuccess;
    rms_norm_rows<<<n, THREADS, 0, (cudaStream_t)stream>>>(x, r, w, out, dim, eps);
    return launch_status();
}
