// SPDX-License-Identifier: Apache-2.0
//
// swiglu.cu: h = silu(h) * u elementwise, for the FFN when gate and up come
// from separate GEMMs (prefill through cuBLAS, or gate and up of different
// weight types). Decode fuses this into the GEMV instead (gemv.cu).
//
// Layer: kernels.
#include "../common/ik_common.cuh"
#include "../inferd_kernels.h"

namespace {

__global__ void silu_mul_kernel(float *h, const float *u, int64_t n)
{
    int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float g = h[i];
    h[i] = g / (1.f + expf(-g)) * u[i];
}

} // namespace

extern "C" int ik_silu_mul(float *h, const float *u, int64_t n, void *stream)
{
    if (n <= 0) return cudaSuccess;
    silu_mul_kernel<<<ik::grid_for(n, 256), 256, 0, (cudaStream_t)stream>>>(h, u, n);
    return ik::launch_status();
}
