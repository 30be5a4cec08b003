// SPDX-License-Identifier: Apache-2.0
//
// embed.cu: token embedding lookup, dequantizing rows of the (possibly
// quantized) table to f32. One thread per 32-element chunk of an output row
// for quantized tables (ik_quant.cuh, bit-identical to quant.c), one per
// element for F16/BF16/F32. Ids are trusted here: model/ range-checks them.
//
// Layer: kernels.
#include "../common/ik_quant.cuh"
#include "../inferd_kernels.h"

namespace {

using namespace ik;

template <int T>
__global__ void embed_chunks(const uint8_t *table, int64_t row_bytes, int64_t chunks_per_row, const int32_t *ids, int n,
                             float *out)
{
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= (int64_t)n * chunks_per_row) return;
    int64_t i = c / chunks_per_row, cc = c % chunks_per_row;
    float v[32];
    dequant_chunk<T>(table + (int64_t)ids[i] * row_bytes, cc, v);
    float4 *o = (float4 *)(out + c * 32);
#pragma unroll
    for (int j = 0; j < 8; j++) o[j] = make_float4(v[4 * j], v[4 * j + 1], v[4 * j + 2], v[4 * j + 3]);
}

__global__ void embed_floats(const void *table, int type, int64_t n_in, const int32_t *ids, int n, float *out)
{
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= (int64_t)n * n_in) return;
    int64_t i = e / n_in, k = (int64_t)ids[i] * n_in + e % n_in;
    if (type == T_BF16) out[e] = bf16_bits_to_float(((const unsigned short *)table)[k]);
    else if (type == T_F16) out[e] = __half2float(((const __half *)table)[k]);
    else out[e] = ((const float *)table)[k];
}

template <int T> int launch(const void *table, int64_t n_in, const int32_t *ids, int n, float *out, cudaStream_t s)
{
    if (n_in % qtraits<T>::block) return cudaErrorInvalidValue;
    int64_t per_row = n_in / 32, total = (int64_t)n * per_row;
    embed_chunks<T><<<grid_for(total, 128), 128, 0, s>>>((const uint8_t *)table,
                                                         n_in / qtraits<T>::block * qtraits<T>::bytes, per_row, ids,
                                                         n, out);
    return launch_status();
}

} // namespace

extern "C" int ik_embed(const void *table, int type, int64_t n_in, const int32_t *ids, int n, float *out, void *stream)
{
    cudaStream_t s = (cudaStream_t)stream;
    if (n <= 0 || n_in <= 0) return cudaSuccess;
    switch (type) {
    case T_Q4_0: return launch<T_Q4_0>(table, n_in, ids, n, out, s);
    case T_Q4_1: return launch<T_Q4_1>(table, n_in, ids, n, out, s);
    case T_Q8_0: return launch<T_Q8_0>(table, n_in, ids, n, out, s);
    case T_Q4_K: return launch<T_Q4_K>(table, n_in, ids, n, out, s);
    case T_Q5_K: return launch<T_Q5_K>(table, n_in, ids, n, out, s);
    case T_Q6_K: return launch<T_Q6_K>(table, n_in, ids, n, out, s);
    case T_F16:
    case T_BF16:
    case T_F32: {
        int64_t total = (int64_t)n * n_in;
        embed_floats<<<grid_for(total, 256), 256, 0, s>>>(table, type, n_in, ids, n, out);
        return launch_status();
    }
    default: return cudaErrorInvalidValue;
    }
}
