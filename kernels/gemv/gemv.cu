// SPDX-License-Identifier: Apache-2.0
//
// gemv.cu: the fused dequantizing matrix-vector kernel for decode and small
// batches (up to IK_GEMV_MAX_N activation rows): y[t] (+)= W x[t] read
// straight from the GGUF blocks, so a decode step streams each weight byte
// from HBM exactly once, whatever the batch size up to the limit.
//
// One warp per weight row; lanes walk the row in chunks (32 elements of a
// quantized type, decoded by ik_quant.cuh; 8 elements of F16/BF16/F32, read
// as 16-byte vectors) so neighbouring lanes read neighbouring bytes. Each
// lane keeps one float accumulator per activation row; a warp reduction
// finishes the dot products. Activations are read in f32 (not quantized to
// 8 bits as the CPU backend does): the results match the CPU's within the
// activation-quantization error, which tests/gpu states as its tolerance.
//
// The SwiGLU variant computes gate and up rows of the same index in one warp
// and writes silu(g) * u, so the FFN hidden never makes a round trip.
//
// Layer: kernels.
#include "../common/ik_quant.cuh"
#include "../inferd_kernels.h"

namespace {

using namespace ik;

constexpr int WARPS = 4;

// Chunk readers: CH elements of row `row` starting at element CH*c.
template <int T> struct chunk {
    static constexpr int CH = 32;
    static __device__ __forceinline__ int64_t row_bytes(int64_t n_in)
    {
        return n_in / qtraits<T>::block * qtraits<T>::bytes;
    }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t c, float v[32]) { dequant_chunk<T>(row, c, v); }
};

template <> struct chunk<T_BF16> {
    static constexpr int CH = 8;
    static __device__ __forceinline__ int64_t row_bytes(int64_t n_in) { return n_in * 2; }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t c, float v[8])
    {
        uint4 u = __ldg((const uint4 *)(row + c * 16));
        const unsigned w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
        for (int i = 0; i < 4; i++) {
            v[2 * i] = __uint_as_float(w[i] << 16);
            v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    }
    static __device__ __forceinline__ float load1(const uint8_t *row, int64_t k)
    {
        return bf16_bits_to_float(((const unsigned short *)row)[k]);
    }
};

template <> struct chunk<T_F16> {
    static constexpr int CH = 8;
    static __device__ __forceinline__ int64_t row_bytes(int64_t n_in) { return n_in * 2; }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t c, float v[8])
    {
        uint4 u = __ldg((const uint4 *)(row + c * 16));
        const __half2 *h = (const __half2 *)&u;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 f = __half22float2(h[i]);
            v[2 * i] = f.x;
            v[2 * i + 1] = f.y;
        }
    }
    static __device__ __forceinline__ float load1(const uint8_t *row, int64_t k)
    {
        return __half2float(((const __half *)row)[k]);
    }
};

template <> struct chunk<T_F32> {
    static constexpr int CH = 8;
    static __device__ __forceinline__ int64_t row_bytes(int64_t n_in) { return n_in * 4; }
    static __device__ __forceinline__ void load(const uint8_t *row, int64_t c, float v[8])
    {
        float4 a = __ldg((const float4 *)(row + c * 32)), b = __ldg((const float4 *)(row + c * 32 + 16));
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    }
    static __device__ __forceinline__ float load1(const uint8_t *row, int64_t k) { return ((const float *)row)[k]; }
};

// acc[t] += w . x[t] over this lane's chunks of one row (and its scalar tail, for float types).
template <int T>
__device__ __forceinline__ void row_dot(const uint8_t *row, const float *x, int n, int64_t n_in, int lane,
                                        float acc[IK_GEMV_MAX_N])
{
    constexpr int CH = chunk<T>::CH;
    // 16-byte vector reads need 16-byte aligned rows: n_in % 8 for 16-bit types, % 4 for f32
    const bool vec = CH == 32 || (n_in * (T == T_F32 ? 4 : 2)) % 16 == 0;
    const int64_t n_chunks = vec ? n_in / CH : 0;
#pragma unroll 2
    for (int64_t c = lane; c < n_chunks; c += 32) {
        float v[CH];
        chunk<T>::load(row, c, v);
#pragma unroll
        for (int t = 0; t < IK_GEMV_MAX_N; t++) {
            if (t >= n) break;
            const float4 *xv = (const float4 *)(x + (int64_t)t * n_in + c * CH);
            float s = 0.f;
#pragma unroll
            for (int i = 0; i < CH / 4; i++) {
                float4 a = __ldg(xv + i);
                s += v[4 * i] * a.x + v[4 * i + 1] * a.y + v[4 * i + 2] * a.z + v[4 * i + 3] * a.w;
            }
            acc[t] += s;
        }
    }
    if constexpr (CH != 32) {
        for (int64_t k = n_chunks * CH + lane; k < n_in; k += 32) {
            float w = chunk<T>::load1(row, k);
            for (int t = 0; t < n; t++) acc[t] += w * x[(int64_t)t * n_in + k];
        }
    }
}

template <int T>
__global__ void __launch_bounds__(WARPS * 32)
    gemv_kernel(const uint8_t *w, const uint8_t *w_up, const float *x, int n, int64_t n_in, int64_t n_out, float *y,
                int accumulate)
{
    const int lane = threadIdx.x & 31;
    const int64_t r = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (r >= n_out) return;
    const int64_t rb = chunk<T>::row_bytes(n_in);
    float acc[IK_GEMV_MAX_N], up[IK_GEMV_MAX_N];
#pragma unroll
    for (int t = 0; t < IK_GEMV_MAX_N; t++) acc[t] = up[t] = 0.f;
    row_dot<T>(w + r * rb, x, n, n_in, lane, acc);
    if (w_up) row_dot<T>(w_up + r * rb, x, n, n_in, lane, up);
#pragma unroll
    for (int t = 0; t < IK_GEMV_MAX_N; t++) {
        if (t >= n) break;
        float s = warp_sum(acc[t]);
        if (w_up) {
            float u = warp_sum(up[t]);
            s = s / (1.f + expf(-s)) * u;
        }
        if (lane == 0) {
            float *o = y + (int64_t)t * n_out + r;
            *o = accumulate ? *o + s : s;
        }
    }
}

template <int T>
int launch(const void *w, const void *w_up, const float *x, int n, int64_t n_in, int64_t n_out, float *y, int acc,
           cudaStream_t s)
{
    gemv_kernel<T><<<grid_for(n_out, WARPS), WARPS * 32, 0, s>>>((const uint8_t *)w, (const uint8_t *)w_up, x, n,
                                                                  n_in, n_out, y, acc);
    return launch_status();
}

int block_of(int type)
{
    switch (type) {
    case T_Q4_0: case T_Q4_1: case T_Q8_0: return 32;
    case T_Q4_K: case T_Q5_K: case T_Q6_K: return 256;
    case T_F16: case T_BF16: case T_F32: return 1;
    default: return 0;
    }
}

} // namespace

extern "C" int ik_gemv_supported(int type) { return block_of(type) != 0; }

extern "C" int ik_gemv(const void *w, const void *w_up, int type, const float *x, int n, int64_t n_in, int64_t n_out,
                       float *y, int accumulate, void *stream)
{
    cudaStream_t s = (cudaStream_t)stream;
    int blk = block_of(type);
    if (!blk || n_in % blk || n < 0 || n > IK_GEMV_MAX_N || (w_up && accumulate)) return cudaErrorInvalidValue;
    if (n == 0 || n_out <= 0) return cudaSuccess;
    switch (type) {
    case T_Q4_0: return launch<T_Q4_0>(w, w_up, x, n, n_in, n_out, y, accumulate, s);
    case T_Q4_1: return launch<T_Q4_1>(w, w_up, x, n, n_in, n_out, y, accumulate, s);
    case T_Q8_0: return launch<T_Q8_0>(w, w_up, x, n, n_in, n_out, y, accumulate, s);
    case T_Q4_K: return launch<T_Q4_K>(w, w_up, x, n, n_in, n_out, y, accumulate, s);
    case T_Q5_K: return launch<T_Q5_K>(w, w_up, x, n, n_in, n_out, y, accumulate, s);
    case T_Q6_K: return launch<T_Q6_K>(w, w_up, x, n, n_in, n_out, y, accumulate, s);
    case T_F16: return launch<T_F16>(w, w_up, x, n, n_in, n_out, y, accumulate, s);
    case T_BF16: return launch<T_BF16>(w, w_up, x, n, n_in, n_out, y, accumulate, s);
    default: return launch<T_F32>(w, w_up, x, n, n_in, n_out, y, accumulate, s);
    }
}
