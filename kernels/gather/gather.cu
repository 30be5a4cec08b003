// SPDX-License-Identifier: Apache-2.0
//
// gather.cu: dst[i] = src[rows[i]] for f32 rows (the rows that need logits).
// One thread per element; the row index is read once per element, which costs
// nothing next to the copy at the few hundred rows this sees.
//
// Layer: kernels.
#include "../common/ik_common.cuh"
#include "../inferd_kernels.h"

namespace {

__global__ void gather_kernel(const float *src, const int32_t *rows, int n, int dim, float *dst)
{
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (int64_t)n * dim) return;
    int i = (int)(e / dim), j = (int)(e % dim);
    dst[e] = src[(int64_t)rows[i] * dim + j];
}

} // namespace

extern "C" int ik_gather_rows(const float *src, const int32_t *rows, int n, int dim, float *dst, void *stream)
{
    int64_t total = (int64_t)n * dim;
    if (total <= 0) return cudaSuccess;
    gather_kernel<<<ik::grid_for(total, 256), 256, 0, (cudaStream_t)stream>>>(src, rows, n, dim, dst);
    return ik::launch_status();
}
