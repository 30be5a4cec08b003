// SPDX-License-Identifier: Apache-2.0
//
// gemv.cu: the fused dequantizing matrix-vector kernel for decode and small
// batches (up to IK_GEMV_MAX_N activation rows): y[t] (+)= W x[t] read
// straight from the GGUF blocks, so a decode step streams each weight byte
// from HBM exactly once, whatever the batch size up to the limit.
//
// One warp per weight row (two, each taking half, for batch 1 over the
// 16-bit weights of a matrix small enough to leave the GPU part idle: see
// gemv_half_rows); lanes walk the row in chunks (32 elements of a
// quantized type, decoded by ik_quant.cuh; 16-byte vectors of F16/BF16/F32,
// several issued before any math) so neighbouring lanes read neighbouring
// bytes and each lane keeps enough reads in flight to stream HBM. Each
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

// ---- quantized types: 32-element chunks decoded by ik_quant.cuh ----

// acc[t] += w . x[t] over this lane's 32-element chunks of one quantized row.
template <int T, int NMAX>
__device__ __forceinline__ void row_dot_quant(const uint8_t *row, const float *x, int n, int64_t n_in, int lane,
                                              float acc[NMAX])
{
    const int64_t n_chunks = n_in / 32;
#pragma unroll 2
    for (int64_t c = lane; c < n_chunks; c += 32) {
        float v[32];
        dequant_chunk<T>(row, c, v);
#pragma unroll
        for (int t = 0; t < NMAX; t++) {
            if (t >= n) break;
            const float4 *xv = (const float4 *)(x + (int64_t)t * n_in + c * 32);
            float s = 0.f;
#pragma unroll
            for (int i = 0; i < 8; i++) {
                float4 a = __ldg(xv + i);
                s += v[4 * i] * a.x + v[4 * i + 1] * a.y + v[4 * i + 2] * a.z + v[4 * i + 3] * a.w;
            }
            acc[t] += s;
        }
    }
}

// ---- float types: 16-byte vectors (8 bf16/f16 or 4 f32 elements) ----

template <int T> struct fvec;
template <> struct fvec<T_BF16> {
    static constexpr int E = 8, SIZE = 2;
    static __device__ __forceinline__ void expand(uint4 u, float v[8])
    {
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
template <> struct fvec<T_F16> {
    static constexpr int E = 8, SIZE = 2;
    static __device__ __forceinline__ void expand(uint4 u, float v[8])
    {
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
template <> struct fvec<T_F32> {
    static constexpr int E = 4, SIZE = 4;
    static __device__ __forceinline__ void expand(uint4 u, float v[4])
    {
        v[0] = __uint_as_float(u.x), v[1] = __uint_as_float(u.y), v[2] = __uint_as_float(u.z),
        v[3] = __uint_as_float(u.w);
    }
    static __device__ __forceinline__ float load1(const uint8_t *row, int64_t k) { return ((const float *)row)[k]; }
};

// acc[t] += (the E weights in u) . x[t][k0 .. k0+E). NORM (the fused-norm
// experiment below): x is scaled by the norm weights wn on the way in and,
// with SS, ss[t] gathers the squares of x for the row's RMS (once per
// vector, not again for SwiGLU's up row).
template <int T, int NMAX, bool NORM = false, bool SS = false>
__device__ __forceinline__ void dot_vec(uint4 u, const float *x, int n, int64_t n_in, int64_t k0, float acc[NMAX],
                                        const float *wn = nullptr, float *ss = nullptr)
{
    constexpr int E = fvec<T>::E;
    float v[E];
    fvec<T>::expand(u, v);
#pragma unroll
    for (int t = 0; t < NMAX; t++) {
        if (t >= n) break;
        const float4 *xv = (const float4 *)(x + (int64_t)t * n_in + k0);
        float s = 0.f, q = 0.f;
#pragma unroll
        for (int i = 0; i < E / 4; i++) {
            float4 a = __ldg(xv + i);
            if (NORM) {
                float4 nw = __ldg((const float4 *)(wn + k0) + i);
                if (SS) q += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
                a = make_float4(a.x * nw.x, a.y * nw.y, a.z * nw.z, a.w * nw.w);
            }
            s += v[4 * i] * a.x + v[4 * i + 1] * a.y + v[4 * i + 2] * a.z + v[4 * i + 3] * a.w;
        }
        acc[t] += s;
        if (SS) ss[t] += q;
    }
}

// U 16-byte weight vectors (and U of the up row) of this lane, 32 vectors apart, streaming.
template <int U, bool UP>
__device__ __forceinline__ void load_batch(const uint4 *w, const uint4 *wu, int64_t c, uint4 a[U], uint4 b[U])
{
#pragma unroll
    for (int j = 0; j < U; j++) {
        a[j] = __ldcs(w + c + 32 * j);
        if (UP) b[j] = __ldcs(wu + c + 32 * j);
    }
}

// acc[t] += w . x[t] (and up[t] += w_up . x[t] for SwiGLU) over this lane's
// vectors of one row. Decode is bound by how many bytes are in flight, not by
// arithmetic, so each lane issues U loads (2U with the up row) before any math:
// 128 bytes per lane at batch 1, where a load-then-use loop keeps only 16-32.
// Weights are read once per step, so they are loaded with the streaming hint
// and leave L1 to the activations every warp rereads. NORM: see dot_vec.
template <int T, int NMAX, bool UP, bool NORM = false>
__device__ __forceinline__ void row_dot_float(const uint8_t *row, const uint8_t *row_up, const float *x, int n,
                                              int64_t n_in, int lane, float acc[NMAX], float up[NMAX],
                                              const float *wn = nullptr, float *ss = nullptr)
{
    constexpr int E = fvec<T>::E, U = (NMAX == 1 ? 8 : 4) / (UP ? 2 : 1);
    // 16-byte vector reads need 16-byte aligned rows (every row starts at r * n_in * SIZE)
    const bool vec = (n_in * fvec<T>::SIZE) % 16 == 0;
    const int64_t n_vec = vec ? n_in / E : 0;
    const uint4 *w = (const uint4 *)row, *wu = (const uint4 *)row_up;
    int64_t c = lane;
    uint4 a[U], b[U];
    bool full = c + 32 * (U - 1) < n_vec;
    if (full) load_batch<U, UP>(w, wu, c, a, b);
    while (full) {
#pragma unroll
        for (int j = 0; j < U; j++) {
            dot_vec<T, NMAX, NORM, NORM>(a[j], x, n, n_in, (c + 32 * j) * E, acc, wn, ss);
            if (UP) dot_vec<T, NMAX, NORM, false>(b[j], x, n, n_in, (c + 32 * j) * E, up, wn);
        }
        c += 32 * U;
        full = c + 32 * (U - 1) < n_vec;
        if (full) load_batch<U, UP>(w, wu, c, a, b);
    }
    for (; c < n_vec; c += 32) {
        dot_vec<T, NMAX, NORM, NORM>(__ldcs(w + c), x, n, n_in, c * E, acc, wn, ss);
        if (UP) dot_vec<T, NMAX, NORM, false>(__ldcs(wu + c), x, n, n_in, c * E, up, wn);
    }
    // elements past the last whole vector (all of them when rows are unaligned)
    for (int64_t k = n_vec * E + lane; k < n_in; k += 32) {
        float wk = fvec<T>::load1(row, k), uk = UP ? fvec<T>::load1(row_up, k) : 0.f;
        for (int t = 0; t < n; t++) {
            float xk = x[(int64_t)t * n_in + k];
            if (NORM) {
                ss[t] += xk * xk;
                xk *= wn[k];
            }
            acc[t] += wk * xk;
            if (UP) up[t] += uk * xk;
        }
    }
}

template <int T> struct is_float { static constexpr bool value = T == T_BF16 || T == T_F16 || T == T_F32; };

template <int T> __device__ __forceinline__ int64_t row_bytes_of(int64_t n_in)
{
    if constexpr (is_float<T>::value) return n_in * fvec<T>::SIZE;
    else return n_in / qtraits<T>::block * qtraits<T>::bytes;
}

// Up to IK_GEMV_MAX_W matrices of the same row length and type, stacked row
// after row: one launch computes Q, K and V (a 1024-row K or V alone is too
// small to reach full bandwidth before the launch's ramp and tail dominate).
struct gemv_mats {
    const uint8_t *w[IK_GEMV_MAX_W];
    float *y[IK_GEMV_MAX_W];
    int64_t row_end[IK_GEMV_MAX_W]; // exclusive end of matrix i in the stacked rows
    int64_t rows;                   // row_end[n_w - 1], so the kernel never indexes m at run time
    int n_w;
};

// Stacked row r: its matrix's weights, output and row count; returns the row
// within that matrix. Warp-uniform; constant indices keep m out of local memory.
__device__ __forceinline__ int64_t matrix_of(const gemv_mats &m, int64_t r, const uint8_t **w, float **y,
                                             int64_t *n_out)
{
    *w = m.w[0];
    *y = m.y[0];
    int64_t row0 = 0;
    *n_out = m.row_end[0];
#pragma unroll
    for (int j = 1; j < IK_GEMV_MAX_W; j++)
        if (j < m.n_w && r >= m.row_end[j - 1]) {
            *w = m.w[j], *y = m.y[j], row0 = m.row_end[j - 1];
            *n_out = m.row_end[j] - row0;
        }
    return r - row0;
}

// This warp's row (one warp per row, WARPS per block): false past the last.
__device__ __forceinline__ bool warp_row(const gemv_mats &m, int64_t *r, const uint8_t **w, float **y, int64_t *n_out)
{
    int64_t row = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (row >= m.rows) return false;
    *r = matrix_of(m, row, w, y, n_out);
    return true;
}

// 16-bit weights at batch 1: capped at 64 registers so 8 blocks fit per SM (no spills)
template <int T, int NMAX>
__global__ void __launch_bounds__(WARPS * 32, NMAX == 1 && (T == T_BF16 || T == T_F16) ? 8 : 1)
    gemv_kernel(gemv_mats m, const uint8_t *w_up, const float *x, int n, int64_t n_in, int accumulate)
{
    const int lane = threadIdx.x & 31;
    const uint8_t *w;
    float *y;
    int64_t r, n_out;
    if (!warp_row(m, &r, &w, &y, &n_out)) return;
    const int64_t rb = row_bytes_of<T>(n_in);
    float acc[NMAX], up[NMAX];
#pragma unroll
    for (int t = 0; t < NMAX; t++) acc[t] = up[t] = 0.f;
    if constexpr (is_float<T>::value) {
        if (w_up) row_dot_float<T, NMAX, true>(w + r * rb, w_up + r * rb, x, n, n_in, lane, acc, up);
        else row_dot_float<T, NMAX, false>(w + r * rb, nullptr, x, n, n_in, lane, acc, up);
    } else {
        row_dot_quant<T, NMAX>(w + r * rb, x, n, n_in, lane, acc);
        if (w_up) row_dot_quant<T, NMAX>(w_up + r * rb, x, n, n_in, lane, up);
    }
#pragma unroll
    for (int t = 0; t < NMAX; t++) {
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

// Batch 1 (every decode step of a single stream) gets its own instantiation:
// one accumulator instead of IK_GEMV_MAX_N, so registers go to loads in flight.
template <int T>
int launch(const gemv_mats &m, const void *w_up, const float *x, int n, int64_t n_in, int acc, cudaStream_t s)
{
    const unsigned grid = grid_for(m.rows, WARPS);
    const uint8_t *wu = (const uint8_t *)w_up;
    if (n == 1) gemv_kernel<T, 1><<<grid, WARPS * 32, 0, s>>>(m, wu, x, n, n_in, acc);
    else gemv_kernel<T, IK_GEMV_MAX_N><<<grid, WARPS * 32, 0, s>>>(m, wu, x, n, n_in, acc);
    return launch_status();
}

// Batch 1, 16-bit weights, two warps per row: each streams one half and the
// pair adds its halves through shared memory. A matrix becomes twice as many
// half-size pieces of work, so the last wave of a small matrix is fuller
// (Q/K/V: 6,144 one-row warps on 4,224 resident ones is 1.45 waves) at the
// price of a block barrier. dispatch() sends matrices of up to
// HALF_ROWS_MAX_ROWS rows here: on an H200 (tests/gpu bench/gemv-half,
// Llama-3-8B shapes) it took Q/K/V from 20.9 to 15.9 us, O from 14.3 to
// 11.6 and down from 36.0 to 32.0, while gate+up (14,336 rows) was even and
// the 128,256-row head 3% slower.
constexpr int64_t HALF_ROWS_MAX_ROWS = 8192;

template <int T, bool UP>
__global__ void __launch_bounds__(WARPS * 32, 8)
    gemv_half_rows(gemv_mats m, const uint8_t *w_up, const float *x, int64_t n_in, int accumulate)
{
    __shared__ float other[WARPS / 2][2]; // the second half's dot (and up dot) of each row
    const int lane = threadIdx.x & 31, pair = (threadIdx.x >> 5) / 2, side = (threadIdx.x >> 5) & 1;
    int64_t r = (int64_t)blockIdx.x * (WARPS / 2) + pair;
    const bool live = r < m.rows;
    float acc = 0.f, up = 0.f, *o = nullptr;
    if (live) {
        const uint8_t *w;
        float *y;
        int64_t n_out;
        r = matrix_of(m, r, &w, &y, &n_out);
        o = y + r;
        const int64_t half = n_in / 2, rb = n_in * fvec<T>::SIZE, off = side * half * fvec<T>::SIZE;
        row_dot_float<T, 1, UP>(w + r * rb + off, UP ? w_up + r * rb + off : nullptr, x + side * half, 1, half, lane,
                                &acc, &up);
        acc = warp_sum(acc);
        if (UP) up = warp_sum(up);
    }
    if (side == 1 && lane == 0) other[pair][0] = acc, other[pair][1] = up;
    __syncthreads();
    if (!live || side == 1 || lane != 0) return;
    float s = acc + other[pair][0];
    if (UP) s = s / (1.f + expf(-s)) * (up + other[pair][1]);
    *o = accumulate ? *o + s : s;
}

// ---- experiment (tests/gpu checks and times it; not on the production path) ----
//
// Batch 1, float weights, with the RMSNorm of x folded in: the product is of
// x / rms(x) * wn, the RMS taken from the squares the warp gathers while it
// reads x for the dot products anyway, so the norm needs no launch and no
// pass of its own. At 8 blocks per SM this needs more than 64 registers
// (ptxas: 84 bytes of spills), so it runs 6 blocks per SM: fewer loads in
// flight for one launch less. bench/gemv-norm times it against ik_rms_norm
// followed by the production GEMV.
template <int T, bool UP>
__global__ void __launch_bounds__(WARPS * 32, 6)
    gemv_rms_norm(gemv_mats m, const uint8_t *w_up, const float *x, const float *wn, float eps, int64_t n_in,
                  int accumulate)
{
    const int lane = threadIdx.x & 31;
    const uint8_t *w;
    float *y;
    int64_t r, n_out;
    if (!warp_row(m, &r, &w, &y, &n_out)) return;
    const int64_t rb = n_in * fvec<T>::SIZE;
    float acc = 0.f, up = 0.f, ss = 0.f;
    row_dot_float<T, 1, UP, true>(w + r * rb, UP ? w_up + r * rb : nullptr, x, 1, n_in, lane, &acc, &up, wn, &ss);
    const float scale = 1.f / sqrtf(warp_sum(ss) / (float)n_in + eps);
    float s = warp_sum(acc) * scale;
    if (UP) s = s / (1.f + expf(-s)) * (warp_sum(up) * scale);
    if (lane == 0) y[r] = accumulate ? y[r] + s : s;
}

template <int T>
void launch_half_rows_t(const gemv_mats &m, const uint8_t *wu, const float *x, int64_t n_in, int acc, cudaStream_t s)
{
    const unsigned grid = grid_for(m.rows, WARPS / 2);
    if (wu) gemv_half_rows<T, true><<<grid, WARPS * 32, 0, s>>>(m, wu, x, n_in, acc);
    else gemv_half_rows<T, false><<<grid, WARPS * 32, 0, s>>>(m, wu, x, n_in, acc);
}

// type: T_BF16 or T_F16 (the callers check).
int launch_half_rows(const gemv_mats &m, const void *w_up, int type, const float *x, int64_t n_in, int acc,
                     cudaStream_t s)
{
    const uint8_t *wu = (const uint8_t *)w_up;
    if (type == T_BF16) launch_half_rows_t<T_BF16>(m, wu, x, n_in, acc, s);
    else launch_half_rows_t<T_F16>(m, wu, x, n_in, acc, s);
    return launch_status();
}

template <int T>
void launch_rms_norm_t(const gemv_mats &m, const uint8_t *wu, const float *x, const float *wn, float eps, int64_t n_in,
                       int acc, cudaStream_t s)
{
    const unsigned grid = grid_for(m.rows, WARPS);
    if (wu) gemv_rms_norm<T, true><<<grid, WARPS * 32, 0, s>>>(m, wu, x, wn, eps, n_in, acc);
    else gemv_rms_norm<T, false><<<grid, WARPS * 32, 0, s>>>(m, wu, x, wn, eps, n_in, acc);
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

static int dispatch(const gemv_mats &m, const void *w_up, int type, const float *x, int n, int64_t n_in, int acc,
                    cudaStream_t s)
{
    // halves of 16-byte vectors need n_in % 16; w_up comes only with one matrix and no accumulate
    if (n == 1 && (type == T_BF16 || type == T_F16) && n_in % 16 == 0 && m.rows <= HALF_ROWS_MAX_ROWS)
        return launch_half_rows(m, w_up, type, x, n_in, acc, s);
    switch (type) {
    case T_Q4_0: return launch<T_Q4_0>(m, w_up, x, n, n_in, acc, s);
    case T_Q4_1: return launch<T_Q4_1>(m, w_up, x, n, n_in, acc, s);
    case T_Q8_0: return launch<T_Q8_0>(m, w_up, x, n, n_in, acc, s);
    case T_Q4_K: return launch<T_Q4_K>(m, w_up, x, n, n_in, acc, s);
    case T_Q5_K: return launch<T_Q5_K>(m, w_up, x, n, n_in, acc, s);
    case T_Q6_K: return launch<T_Q6_K>(m, w_up, x, n, n_in, acc, s);
    case T_F16: return launch<T_F16>(m, w_up, x, n, n_in, acc, s);
    case T_BF16: return launch<T_BF16>(m, w_up, x, n, n_in, acc, s);
    default: return launch<T_F32>(m, w_up, x, n, n_in, acc, s);
    }
}

// n_w matrices stacked row after row; nonzero for a negative row count.
static int stack_mats(const void *const *w, const int64_t *n_out, float *const *y, int n_w, gemv_mats *m)
{
    *m = gemv_mats{};
    m->n_w = n_w;
    int64_t rows = 0;
    for (int i = 0; i < n_w; i++) {
        if (n_out[i] < 0) return 1;
        m->w[i] = (const uint8_t *)w[i];
        m->y[i] = y[i];
        m->row_end[i] = rows += n_out[i];
    }
    m->rows = rows;
    return 0;
}

extern "C" int ik_gemv_multi(const void *const *w, const int64_t *n_out, float *const *y, int n_w, int type,
                             const float *x, int n, int64_t n_in, int accumulate, void *stream)
{
    int blk = block_of(type);
    if (!blk || n_in % blk || n < 0 || n > IK_GEMV_MAX_N || n_w < 1 || n_w > IK_GEMV_MAX_W)
        return cudaErrorInvalidValue;
    gemv_mats m;
    if (stack_mats(w, n_out, y, n_w, &m)) return cudaErrorInvalidValue;
    if (n == 0 || m.rows == 0) return cudaSuccess;
    return dispatch(m, nullptr, type, x, n, n_in, accumulate, (cudaStream_t)stream);
}

extern "C" int ik_gemv_half_rows(const void *const *w, const int64_t *n_out, float *const *y, int n_w, const void *w_up,
                                 int type, const float *x, int64_t n_in, int accumulate, void *stream)
{
    // halves of 16-byte vectors: every half row starts 16-byte aligned
    if ((type != T_BF16 && type != T_F16) || n_in % 16 || n_w < 1 || n_w > IK_GEMV_MAX_W ||
        (w_up && (n_w > 1 || accumulate)))
        return cudaErrorInvalidValue;
    gemv_mats m;
    if (stack_mats(w, n_out, y, n_w, &m)) return cudaErrorInvalidValue;
    if (m.rows == 0) return cudaSuccess;
    return launch_half_rows(m, w_up, type, x, n_in, accumulate, (cudaStream_t)stream);
}

extern "C" int ik_gemv_rms_norm(const void *const *w, const int64_t *n_out, float *const *y, int n_w, const void *w_up,
                                int type, const float *x, const float *norm_w, float eps, int64_t n_in, int accumulate,
                                void *stream)
{
    if ((type != T_BF16 && type != T_F16) || n_in % 8 || !norm_w || n_w < 1 || n_w > IK_GEMV_MAX_W ||
        (w_up && (n_w > 1 || accumulate)))
        return cudaErrorInvalidValue;
    gemv_mats m;
    if (stack_mats(w, n_out, y, n_w, &m)) return cudaErrorInvalidValue;
    if (m.rows == 0) return cudaSuccess;
    const uint8_t *wu = (const uint8_t *)w_up;
    cudaStream_t s = (cudaStream_t)stream;
    if (type == T_BF16) launch_rms_norm_t<T_BF16>(m, wu, x, norm_w, eps, n_in, accumulate, s);
    else launch_rms_norm_t<T_F16>(m, wu, x, norm_w, eps, n_in, accumulate, s);
    return launch_status();
}

extern "C" int ik_gemv(const void *w, const void *w_up, int type, const float *x, int n, int64_t n_in, int64_t n_out,
                       float *y, int accumulate, void *stream)
{
    int blk = block_of(type);
    if (!blk || n_in % blk || n < 0 || n > IK_GEMV_MAX_N || (w_up && accumulate)) return cudaErrorInvalidValue;
    if (n == 0 || n_out <= 0) return cudaSuccess;
    gemv_mats m;
    stack_mats(&w, &n_out, &y, 1, &m);
    return dispatch(m, w_up, type, x, n, n_in, accumulate, (cudaStream_t)stream);
}
