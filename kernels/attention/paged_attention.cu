// SPDX-License-Identifier: Apache-2.0
//
// paged_attention.cu: attention of query rows to their sequence's paged K/V
// (f16, (n_blocks, block_size, kv_dim) per layer), for decode and prefill
// chunks alike, GQA-aware, with an online softmax (flash attention) and an
// optional split of the context across blocks (flash-decoding).
//
// Work decomposition. The host (backend/cuda, cuda_plan.c) cuts the batch
// into tiles of up to rows_per_tile query rows of one sequence. A CUDA block
// handles (tile, KV head, context split): one warp per (row, query head of
// the GQA group) pair, so the K/V rows it stages in shared memory serve
// rows_per_tile * G pairs. Decode uses 1-row tiles and splits long contexts
// so that even batch 1 fills the GPU (each of the n_split blocks takes an
// even share of the step's context, in whole 32-position tiles, so a CUDA
// graph planned for the longest context still spreads a short one); prefill
// uses several rows per tile and no split. Rows see positions
// 0..min(position, context_len - 1): causal by position, which covers
// prefill chunks over a cached prefix and decodes.
//
// Per 32-position K/V tile: lane j scores position p0 + j against the warp's
// query (q rounded to half, as the CPU backend does, dot in float), the warp
// updates its running max / sum, then lanes own head_dim/32 output dims and
// add the 32 weighted V rows. Shared rows are padded by one 4-byte word so
// that 32 lanes reading 32 different K rows hit 32 different banks.
//
// Numerics vs the CPU reference: the CPU normalizes the weights and rounds
// them to half before weighting V; here they stay float and the sum divides
// at the end. The difference is below 1e-3 relative (tests/gpu tolerance).
//
// Aliasing: out may equal q (the model's workspace aliases them). A block
// reads its pairs' queries before writing the same pairs' outputs and no
// other block touches those heads of those rows; with a split, only the
// last split block of a (tile, KV head) writes out, after every split has
// read q (each counted itself in after its reads).
//
// Layer: kernels.
#include "../common/ik_common.cuh"
#include "../inferd_kernels.h"
#include "attn_split.h"

namespace {

using namespace ik;

constexpr int KT = IK_ATTN_TILE; // positions per staged K/V tile (one per lane when scoring)

struct pair_ctx {
    int valid, row, head, n_vis;
};

__device__ __forceinline__ pair_ctx pair_of(const ik_attention_args &a, const ik_attn_tile &t, int kvh, int w, int G)
{
    pair_ctx p;
    int r = w / G;
    p.valid = r < t.n_rows;
    p.row = t.row0 + r;
    p.head = kvh * G + w % G;
    int ctx = a.context_len[t.seq];
    p.n_vis = p.valid ? min(a.positions[p.row] + 1, ctx) : 0;
    return p;
}

// Stages K and V of positions [p0, p0 + KT) (zeros past `end`) for KV head kvh into shared memory.
// Each thread takes its 16-byte units SU at a time and issues their block-
// table reads, then their K/V reads, before the first store: a decode block
// of 4 warps stages a tile's 512 units in 2 batches of 2 dependent memory
// round trips, where a unit at a time took 4 batches. (SU = 4 spills at
// the kernel's 64-register bound.)
constexpr int SU = 2;
__device__ __forceinline__ void stage_kv(const ik_attention_args &a, const int32_t *table, int kvh, int p0, int end,
                                         __half *ks, __half *vs, int stride)
{
    const int hd = a.head_dim, units_per_row = hd / 8, kv_dim = a.n_head_kv * hd, n_units = KT * units_per_row;
    for (int u0 = threadIdx.x; u0 < n_units; u0 += SU * blockDim.x) {
        int j[SU], c[SU];     // unit u: tile row j (position p0 + j), 16-byte column c
        int32_t blk[SU];      // its cache block, -1 past `end` (zeros)
#pragma unroll
        for (int i = 0; i < SU; i++) {
            int u = u0 + i * blockDim.x, p = p0 + u / units_per_row;
            j[i] = u / units_per_row, c[i] = u % units_per_row;
            blk[i] = u < n_units && p < end ? __ldg(table + p / a.block_size) : -1;
        }
        uint4 kk[SU], vv[SU];
#pragma unroll
        for (int i = 0; i < SU; i++) {
            kk[i] = vv[i] = make_uint4(0, 0, 0, 0);
            if (blk[i] >= 0) {
                int64_t slot = (int64_t)blk[i] * a.block_size + (p0 + j[i]) % a.block_size;
                int64_t off = slot * kv_dim + (int64_t)kvh * hd + 8 * c[i];
                kk[i] = __ldg((const uint4 *)(a.k_cache + off));
                vv[i] = __ldg((const uint4 *)(a.v_cache + off));
            }
        }
#pragma unroll
        for (int i = 0; i < SU; i++) {
            if (u0 + i * (int)blockDim.x >= n_units) break;
            unsigned *kd = (unsigned *)(ks + j[i] * stride + 8 * c[i]), *vd = (unsigned *)(vs + j[i] * stride + 8 * c[i]);
            kd[0] = kk[i].x, kd[1] = kk[i].y, kd[2] = kk[i].z, kd[3] = kk[i].w;
            vd[0] = vv[i].x, vd[1] = vv[i].y, vd[2] = vv[i].z, vd[3] = vv[i].w;
        }
    }
}

__device__ __forceinline__ float score(const __half *q, const __half *k, int hd)
{
    const __half2 *q2 = (const __half2 *)q, *k2 = (const __half2 *)k;
    float s = 0.f;
    for (int c = 0; c < hd / 2; c++) {
        float2 a = __half22float2(q2[c]), b = __half22float2(k2[c]);
        s += a.x * b.x + a.y * b.y;
    }
    return s;
}

// Merges the splits of one pair (one warp; n_split <= IK_ATTN_MAX_SPLITS =
// 64): lanes z and z + 32 read split z's and z + 32's max and sum at once,
// the warp agrees on the global max M and the total L, and each split's
// weight exp(m_z - M) / L is broadcast while every lane adds its head_dim/32
// output dims over the live splits (independent loads, batched by the
// unroll). Reads go through L2 (__ldcg): other blocks wrote them. Splits
// with a zero sum saw no position of this pair; their accumulators are zero.
template <int ND>
__device__ void combine_pair(const ik_attention_args &a, const pair_ctx &pc, const float *part, int lane)
{
    const int hd = a.head_dim, stride = hd + 2, n = a.n_split;
    float m_lo = -INFINITY, l_lo = 0.f, m_hi = -INFINITY, l_hi = 0.f;
    if (lane < n) m_lo = __ldcg(part + lane * stride), l_lo = __ldcg(part + lane * stride + 1);
    if (lane + 32 < n) m_hi = __ldcg(part + (lane + 32) * stride), l_hi = __ldcg(part + (lane + 32) * stride + 1);
    const float M = warp_max(fmaxf(l_lo > 0.f ? m_lo : -INFINITY, l_hi > 0.f ? m_hi : -INFINITY));
    float w_lo = l_lo > 0.f ? expf(m_lo - M) : 0.f, w_hi = l_hi > 0.f ? expf(m_hi - M) : 0.f;
    const float L = warp_sum(w_lo * l_lo + w_hi * l_hi), inv = L > 0.f ? 1.f / L : 0.f;
    w_lo *= inv, w_hi *= inv;
    // splits past the last one this pair saw add nothing: stop there
    const unsigned live_lo = __ballot_sync(0xffffffffu, w_lo > 0.f), live_hi = __ballot_sync(0xffffffffu, w_hi > 0.f);
    const int n_live = live_hi ? 64 - __clz((int)live_hi) : 32 - __clz((int)live_lo);

    float o[ND];
#pragma unroll
    for (int i = 0; i < ND; i++) o[i] = 0.f;
#pragma unroll 4
    for (int z = 0; z < n_live; z++) {
        const float wz = __shfl_sync(0xffffffffu, z < 32 ? w_lo : w_hi, z & 31);
        const float *pz = part + z * stride + 2;
#pragma unroll
        for (int i = 0; i < ND; i++)
            if (lane + 32 * i < hd) o[i] += wz * __ldcg(pz + lane + 32 * i);
    }
    float *out = a.out + (int64_t)pc.row * a.n_head * hd + (int64_t)pc.head * hd;
#pragma unroll
    for (int i = 0; i < ND; i++)
        if (lane + 32 * i < hd) out[lane + 32 * i] = o[i];
}

// Up to 32 warps per block (rows_per_tile * G): the bound keeps the kernel
// within the 64 registers a 1,024-thread block can have.
template <int ND>
__global__ void __launch_bounds__(1024) attn_kernel(ik_attention_args a)
{
    extern __shared__ __align__(16) unsigned char smem[];
    const int hd = a.head_dim, G = a.n_head / a.n_head_kv, W = blockDim.x >> 5, stride = hd + 2;
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, kvh = blockIdx.y, z = blockIdx.z;
    const ik_attn_tile t = a.tiles[blockIdx.x];
    __half *qs = (__half *)smem, *ks = qs + W * hd, *vs = ks + KT * stride;
    int *kv_end = (int *)(vs + KT * stride);

    pair_ctx pc = pair_of(a, t, kvh, w, G);
    for (int d = lane; d < hd; d += 32)
        qs[w * hd + d] = __float2half_rn(pc.valid ? a.q[(int64_t)pc.row * a.n_head * hd + (int64_t)pc.head * hd + d] : 0.f);
    if (threadIdx.x == 0) *kv_end = 0;
    __syncthreads();
    if (lane == 0 && pc.n_vis > 0) atomicMax(kv_end, pc.n_vis);
    __syncthreads();
    int s0, s1;
    ik_attn_split_range(*kv_end, a.n_split, z, &s0, &s1);
    const int32_t *table = a.block_tables + (int64_t)t.seq * a.max_blocks;

    float m = -INFINITY, l = 0.f, acc[ND];
#pragma unroll
    for (int i = 0; i < ND; i++) acc[i] = 0.f;
    for (int p0 = s0; p0 < s1; p0 += KT) {
        stage_kv(a, table, kvh, p0, s1, ks, vs, stride);
        __syncthreads();
        int p = p0 + lane;
        float s = p < pc.n_vis && p < s1 ? score(qs + w * hd, ks + lane * stride, hd) * a.scale : -INFINITY;
        float mt = warp_max(s);
        if (mt > -INFINITY) { // uniform across the warp
            float mn = fmaxf(m, mt), corr = expf(m - mn), e = expf(s - mn);
            l = l * corr + warp_sum(e);
#pragma unroll
            for (int i = 0; i < ND; i++) acc[i] *= corr;
            for (int j = 0; j < KT; j++) {
                float ej = __shfl_sync(0xffffffffu, e, j);
                if (ej == 0.f) continue; // masked (or underflowed) positions add nothing, even where V is not finite
                const __half *vr = vs + j * stride;
#pragma unroll
                for (int i = 0; i < ND; i++)
                    if (lane + 32 * i < hd) acc[i] += ej * __half2float(vr[lane + 32 * i]);
            }
            m = mn;
        }
        __syncthreads();
    }

    if (a.n_split == 1) {
        if (!pc.valid) return;
        float inv = l > 0.f ? 1.f / l : 0.f;
        float *o = a.out + (int64_t)pc.row * a.n_head * hd + (int64_t)pc.head * hd;
#pragma unroll
        for (int i = 0; i < ND; i++)
            if (lane + 32 * i < hd) o[lane + 32 * i] = acc[i] * inv;
        return;
    }
    float *pair_part = a.partial + (((int64_t)blockIdx.x * a.n_head_kv + kvh) * W + w) * a.n_split * (hd + 2);
    float *part = pair_part + z * (hd + 2);
    if (lane == 0) {
        part[0] = pc.valid ? m : -INFINITY;
        part[1] = pc.valid ? l : 0.f;
    }
#pragma unroll
    for (int i = 0; i < ND; i++)
        if (lane + 32 * i < hd) part[2 + lane + 32 * i] = acc[i];

    // The last of the n_split blocks of this (tile, KV head) to get here
    // merges them all (no second launch). Each thread fences its partial
    // writes before thread 0 counts the block in; the last block resets the
    // counter for the next launch (graph replays included).
    __shared__ int is_last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned *count = a.counters + (int64_t)blockIdx.x * a.n_head_kv + kvh;
        is_last = atomicAdd(count, 1u) == (unsigned)(a.n_split - 1);
        if (is_last) *count = 0;
    }
    __syncthreads();
    if (!is_last || !pc.valid) return;
    __threadfence();
    combine_pair<ND>(a, pc, pair_part, lane);
}

template <int ND> int launch(const ik_attention_args &a, int warps, cudaStream_t s)
{
    size_t smem = (size_t)warps * a.head_dim * 2 + 2 * (size_t)KT * (a.head_dim + 2) * 2 + 16;
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(attn_kernel<ND>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (e != cudaSuccess) return (int)e;
    }
    dim3 grid((unsigned)a.n_tiles, (unsigned)a.n_head_kv, (unsigned)a.n_split);
    attn_kernel<ND><<<grid, warps * 32, smem, s>>>(a);
    return launch_status();
}

} // namespace

extern "C" int ik_paged_attention(const struct ik_attention_args *a, void *stream)
{
    cudaStream_t s = (cudaStream_t)stream;
    if (a->n_head_kv <= 0 || a->n_head % a->n_head_kv || a->head_dim % 8 || a->head_dim > IK_ATTN_MAX_HEAD_DIM ||
        a->rows_per_tile < 1 || a->n_split < 1 || a->n_split > IK_ATTN_MAX_SPLITS ||
        (a->n_split > 1 && (!a->partial || !a->counters)) ||
        a->block_size < 1)
        return cudaErrorInvalidValue;
    int warps = a->rows_per_tile * (a->n_head / a->n_head_kv);
    if (warps > 32) return cudaErrorInvalidValue;
    if (a->n_tiles <= 0) return cudaSuccess;
    switch ((a->head_dim + 31) / 32) {
    case 1: return launch<1>(*a, warps, s);
    case 2: return launch<2>(*a, warps, s);
    case 3: return launch<3>(*a, warps, s);
    case 4: return launch<4>(*a, warps, s);
    case 5: return launch<5>(*a, warps, s);
    case 6: return launch<6>(*a, warps, s);
    case 7: return launch<7>(*a, warps, s);
    default: return launch<8>(*a, warps, s);
    }
}
