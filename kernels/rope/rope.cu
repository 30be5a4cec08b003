// SPDX-License-Identifier: Apache-2.0
//
// rope.cu: rotary position embedding of q and k in place, GGUF llama pairing
// (2i, 2i+1) or neox (i, i + rope_dim/2), with optional per-pair frequency
// divisors (Llama 3.1 rope_freqs); and the fused variant that also writes
// the rotated k and v of each token into the paged f16 cache at its slot
// (what kv/ik_kv_store does), saving a launch per layer of every step.
//
// The angle p * theta_scale^i is formed by i repeated float multiplications,
// exactly as the CPU backend and ggml form it, because a pow() would differ
// in the last bits and long positions amplify that.
//
// One thread per (token, head, pair): every rotation of a step runs at once.
// (A thread per (token, pair) looping over the heads chained 40 dependent
// round trips to memory per layer of a decode step.) Each thread forms its
// own angle; the repeated work is a few hundred cycles. The fused kernel's
// heads are q, then k, then v, and its pairs span the whole head: pairs past
// rope_dim / 2 carry k's unrotated tail dims (and v's pairs) to the cache.
//
// Layer: kernels.
#include "../common/ik_common.cuh"
#include "../inferd_kernels.h"
#include "rope_pairs.h"

namespace {

using namespace ik;

// Rotates elements a and b of v by the angle of (c, s); returns the new pair.
__device__ __forceinline__ float2 rotate(float *v, int a, int b, float c, float s)
{
    float x0 = v[a], x1 = v[b];
    float2 r = make_float2(__fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s)),
                           __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c)));
    v[a] = r.x;
    v[b] = r.y;
    return r;
}

// cos and sin of pair i's angle at token t's position.
__device__ __forceinline__ void angle_of(const ik_rope_args &a, int t, int i, float *c, float *s)
{
    float theta = (float)a.positions[t];
    for (int j = 0; j < i; j++) theta = __fmul_rn(theta, a.theta_scale);
    float ang = a.freq_factors ? __fdiv_rn(theta, a.freq_factors[i]) : theta;
    ang = __fmul_rn(a.freq_scale, ang);
    *c = cosf(ang);
    *s = sinf(ang);
}

struct kv_dst {
    __half *k, *v;        // the layer's caches (f16), or null for rope alone
    const float *v_rows;  // (n, kv_dim)
    const int32_t *slots; // (n) device; -1: not stored
};

// STORE: heads q, k, v and head_dim / 2 pairs per head; else q, k and rope_dim / 2 pairs.
template <bool STORE>
__global__ void rope_kernel(ik_rope_args a, kv_dst d)
{
    const int half = a.rope_dim / 2, pairs = STORE ? a.head_dim / 2 : half;
    const int qk_heads = a.n_head + a.n_head_kv, heads = qk_heads + (STORE ? a.n_head_kv : 0);
    int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (int64_t)a.n * heads * pairs) return;
    const int j = (int)(idx % pairs);
    const int64_t th = idx / pairs;
    const int t = (int)(th / heads), h = (int)(th % heads), hd = a.head_dim;
    const int64_t kv_dim = (int64_t)a.n_head_kv * hd;
    const int32_t slot = STORE ? d.slots[t] : -1;
    if (STORE && h >= qk_heads) { // a pair of v, stored as it is
        if (slot < 0) return;
        const int64_t off = (int64_t)(h - qk_heads) * hd + 2 * j;
        const float *src = d.v_rows + t * kv_dim + off;
        d.v[slot * kv_dim + off] = __float2half_rn(src[0]);
        d.v[slot * kv_dim + off + 1] = __float2half_rn(src[1]);
        return;
    }
    const bool is_k = h >= a.n_head;
    float *row = is_k ? a.k + ((int64_t)t * a.n_head_kv + (h - a.n_head)) * hd : a.q + ((int64_t)t * a.n_head + h) * hd;
    int e0, e1;
    ik_rope_pair(j, a.rope_dim, a.neox, &e0, &e1);
    float2 val;
    if (j < half) {
        float c, s;
        angle_of(a, t, j, &c, &s);
        val = rotate(row, e0, e1, c, s);
    } else { // past the rotated dims (STORE only): k's tail goes to the cache unchanged
        if (!is_k) return;
        val = make_float2(row[e0], row[e1]);
    }
    if (STORE && is_k && slot >= 0) {
        __half *dst = d.k + slot * kv_dim + (int64_t)(h - a.n_head) * hd;
        dst[e0] = __float2half_rn(val.x);
        dst[e1] = __float2half_rn(val.y);
    }
}

int check_args(const ik_rope_args *a)
{
    return a->rope_dim <= 0 || a->rope_dim > a->head_dim || a->rope_dim % 2 || a->head_dim % 2 || a->n_head < 0 ||
           a->n_head_kv < 0;
}

} // namespace

extern "C" int ik_rope(const struct ik_rope_args *a, void *stream)
{
    if (check_args(a)) return cudaErrorInvalidValue;
    int64_t total = (int64_t)a->n * (a->n_head + a->n_head_kv) * (a->rope_dim / 2);
    if (total <= 0) return cudaSuccess;
    rope_kernel<false><<<grid_for(total, 128), 128, 0, (cudaStream_t)stream>>>(*a, kv_dst{});
    return launch_status();
}

extern "C" int ik_rope_kv_store(const struct ik_rope_args *a, uint16_t *k_cache, uint16_t *v_cache, const float *v,
                                const int32_t *slots, void *stream)
{
    if (check_args(a) || !k_cache || !v_cache || !v || !slots) return cudaErrorInvalidValue;
    int64_t total = (int64_t)a->n * (a->n_head + 2 * a->n_head_kv) * (a->head_dim / 2);
    if (total <= 0) return cudaSuccess;
    kv_dst d = { (__half *)k_cache, (__half *)v_cache, v, slots };
    rope_kernel<true><<<grid_for(total, 128), 128, 0, (cudaStream_t)stream>>>(*a, d);
    return launch_status();
}
