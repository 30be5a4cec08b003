// SPDX-License-Identifier: Apache-2.0
//
// rope.cu: rotary position embedding of q and k in place, GGUF llama pairing
// (2i, 2i+1) or neox (i, i + rope_dim/2), with optional per-pair frequency
// divisors (Llama 3.1 rope_freqs). One thread per (token, pair): the angle
// p * theta_scale^i is formed by i repeated float multiplications, exactly as
// the CPU backend and ggml form it, because a pow() would differ in the last
// bits and long positions amplify that.
//
// Layer: kernels.
#include "../common/ik_common.cuh"
#include "../inferd_kernels.h"

namespace {

using namespace ik;

__device__ __forceinline__ void rotate(float *v, int a, int b, float c, float s)
{
    float x0 = v[a], x1 = v[b];
    v[a] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
    v[b] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
}

__global__ void rope_kernel(struct ik_rope_args a)
{
    const int half = a.rope_dim / 2;
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)a.n * half) return;
    int t = (int)(idx / half), i = (int)(idx % half);
    float theta = (float)a.positions[t];
    for (int j = 0; j < i; j++) theta = __fmul_rn(theta, a.theta_scale);
    float ang = a.freq_factors ? __fdiv_rn(theta, a.freq_factors[i]) : theta;
    ang = __fmul_rn(a.freq_scale, ang);
    float c = cosf(ang), s = sinf(ang);
    int pa = a.neox ? i : 2 * i, pb = a.neox ? i + half : 2 * i + 1;
    float *q = a.q + (int64_t)t * a.n_head * a.head_dim;
    for (int h = 0; h < a.n_head; h++) rotate(q + h * a.head_dim, pa, pb, c, s);
    float *k = a.k + (int64_t)t * a.n_head_kv * a.head_dim;
    for (int h = 0; h < a.n_head_kv; h++) rotate(k + h * a.head_dim, pa, pb, c, s);
}

} // namespace

extern "C" int ik_rope(const struct ik_rope_args *a, void *stream)
{
    if (a->rope_dim <= 0 || a->rope_dim > a->head_dim || a->rope_dim % 2) return cudaErrorInvalidValue;
    int64_t total = (int64_t)a->n * (a->rope_dim / 2);
    if (total <= 0) return cudaSuccess;
    rope_kernel<<<grid_for(total, 128), 128, 0, (cudaStream_t)stream>>>(*a);
    return launch_status();
}
