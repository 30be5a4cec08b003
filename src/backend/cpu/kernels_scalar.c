/* SPDX-License-Identifier: Apache-2.0
 *
 * kernels_scalar.c: the portable kernel set. Plain C, plain GGUF row layout,
 * one (row, token) dot product at a time. It is the fallback on CPUs without
 * AVX2 and the reference the SIMD sets are tested against, so clarity wins
 * over speed here.
 *
 * Layer: backend/cpu.
 */
#include "cpu_kernels.h"

#include <math.h>
#include <string.h>

/* ---- per-block dot products against quantized activations ---- */

static float dot_q4_0(const block_q4_0 *w, const block_q8_1f *a, int64_t nb)
{
    float sum = 0;
    for (int64_t b = 0; b < nb; b++) {
        int s = 0;
        for (int j = 0; j < 16; j++) s += (w[b].qs[j] & 0xF) * a[b].qs[j] + (w[b].qs[j] >> 4) * a[b].qs[j + 16];
        float d = f16_to_f32(w[b].d);
        sum += d * (a[b].d * (float)s - 8.f * a[b].s);
    }
    return sum;
}

static float dot_q4_1(const block_q4_1 *w, const block_q8_1f *a, int64_t nb)
{
    float sum = 0;
    for (int64_t b = 0; b < nb; b++) {
        int s = 0;
        for (int j = 0; j < 16; j++) s += (w[b].qs[j] & 0xF) * a[b].qs[j] + (w[b].qs[j] >> 4) * a[b].qs[j + 16];
        sum += f16_to_f32(w[b].d) * a[b].d * (float)s + f16_to_f32(w[b].m) * a[b].s;
    }
    return sum;
}

static float dot_q8_0(const block_q8_0 *w, const block_q8_1f *a, int64_t nb)
{
    float sum = 0;
    for (int64_t b = 0; b < nb; b++) {
        int s = 0;
        for (int j = 0; j < 32; j++) s += w[b].qs[j] * a[b].qs[j];
        sum += f16_to_f32(w[b].d) * a[b].d * (float)s;
    }
    return sum;
}

/* Q4_K and Q5_K share the sub-block arithmetic; qh is NULL for Q4_K. */
static float dot_q45_K(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, f16_t dd, f16_t ddmin,
                       const block_q8_K *a)
{
    int sumi = 0, summ = 0;
    for (int c = 0; c < 4; c++) {
        for (int half = 0; half < 2; half++) {
            int j = 2 * c + half;
            uint8_t sc, m;
            kq_scale_min(j, scales, &sc, &m);
            int s = 0;
            for (int l = 0; l < 32; l++) {
                int q = half ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 0xF;
                if (qh && (qh[l] >> j & 1)) q += 16;
                s += q * a->qs[32 * j + l];
            }
            sumi += sc * s;
            summ += m * (a->bsums[2 * j] + a->bsums[2 * j + 1]);
        }
    }
    return f16_to_f32(dd) * a->d * (float)sumi - f16_to_f32(ddmin) * a->d * (float)summ;
}

static float dot_q4_K(const block_q4_K *w, const block_q8_K *a, int64_t nb)
{
    float sum = 0;
    for (int64_t b = 0; b < nb; b++) sum += dot_q45_K(w[b].scales, w[b].qs, NULL, w[b].d, w[b].dmin, &a[b]);
    return sum;
}

static float dot_q5_K(const block_q5_K *w, const block_q8_K *a, int64_t nb)
{
    float sum = 0;
    for (int64_t b = 0; b < nb; b++) sum += dot_q45_K(w[b].scales, w[b].qs, w[b].qh, w[b].d, w[b].dmin, &a[b]);
    return sum;
}

static float dot_q6_K(const block_q6_K *w, const block_q8_K *a, int64_t nb)
{
    float sum = 0;
    int8_t q[QK_K];
    for (int64_t b = 0; b < nb; b++) {
        q6_K_levels(&w[b], q);
        int sumi = 0;
        for (int g = 0; g < QK_K / 16; g++) {
            int s = 0;
            for (int l = 0; l < 16; l++) s += q[16 * g + l] * a[b].qs[16 * g + l];
            sumi += w[b].scales[g] * s;
        }
        sum += f16_to_f32(w[b].d) * a[b].d * (float)sumi;
    }
    return sum;
}

static float dot_f32(const float *w, const float *x, int64_t n)
{
    float sum = 0;
    for (int64_t i = 0; i < n; i++) sum += w[i] * x[i];
    return sum;
}

static float dot_f16w(const f16_t *w, const float *x, int64_t n)
{
    float sum = 0;
    for (int64_t i = 0; i < n; i++) sum += f16_to_f32(w[i]) * x[i];
    return sum;
}

static float dot_bf16w(const bf16_t *w, const float *x, int64_t n)
{
    float sum = 0;
    for (int64_t i = 0; i < n; i++) sum += bf16_to_f32(w[i]) * x[i];
    return sum;
}

/* ---- gemm drivers: one generic loop over (row, token) per type ---- */

CPU_DEFINE_ROWS_GEMM(gemm_q4_0, block_q4_0, block_q8_1f, 32, dot_q4_0)
CPU_DEFINE_ROWS_GEMM(gemm_q4_1, block_q4_1, block_q8_1f, 32, dot_q4_1)
CPU_DEFINE_ROWS_GEMM(gemm_q8_0, block_q8_0, block_q8_1f, 32, dot_q8_0)
CPU_DEFINE_ROWS_GEMM(gemm_q4_K, block_q4_K, block_q8_K, QK_K, dot_q4_K)
CPU_DEFINE_ROWS_GEMM(gemm_q5_K, block_q5_K, block_q8_K, QK_K, dot_q5_K)
CPU_DEFINE_ROWS_GEMM(gemm_q6_K, block_q6_K, block_q8_K, QK_K, dot_q6_K)
CPU_DEFINE_ROWS_GEMM(gemm_f32, float, float, 1, dot_f32)
CPU_DEFINE_ROWS_GEMM(gemm_f16, f16_t, float, 1, dot_f16w)
CPU_DEFINE_ROWS_GEMM(gemm_bf16, bf16_t, float, 1, dot_bf16w)

/* ---- attention ---- */

/* Converts position p's K or V row (base: the pool at the KV head) to float. */
static void load_row(const struct cpu_attn_task *t, const uint8_t *base, int p, float *row)
{
    size_t slot = (size_t)t->table[p / t->block_size] * t->block_size + p % t->block_size;
    /* a head is whole Q8_0 blocks (kv_cache_check_dtype), so quant.c's row dequantizer applies */
    dequant_row(t->dtype == KV_Q8_0 ? QT_Q8_0 : QT_F16, base + slot * t->row_bytes, row, t->head_dim);
}

/* In place: scores -> exp against the max, sum in double, weights rounded to half. */
static void softmax_to_half(float *sc, int n)
{
    float max = -INFINITY;
    for (int p = 0; p < n; p++)
        if (sc[p] > max) max = sc[p];
    double sum = 0;
    for (int p = 0; p < n; p++) sum += (sc[p] = expf(sc[p] - max));
    float inv = (float)(1.0 / sum);
    for (int p = 0; p < n; p++) sc[p] = f16_to_f32(f32_to_f16(sc[p] * inv));
}

/* Position-major: each K row is converted once and serves every pair that sees it. */
static void scalar_attn_scores(const struct cpu_attn_task *t, int p0, int n)
{
    int hd = t->head_dim, G = t->G, n_pairs = t->n_rows * G;
    size_t stride = cpu_attn_score_stride(cpu_attn_max_vis(t));
    float *row = t->tile;
    for (int p = p0; p < p0 + n; p++) {
        load_row(t, t->k, p, row);
        for (int pr = 0; pr < n_pairs; pr++)
            if (p < t->n_vis[pr / G]) t->scores[pr * stride + p] = dot_f32(row, t->q + (size_t)pr * hd, hd) * t->scale;
    }
}

static void scalar_attn_softmax(const struct cpu_attn_task *t, int pr)
{
    softmax_to_half(t->scores + pr * cpu_attn_score_stride(cpu_attn_max_vis(t)), t->n_vis[pr / t->G]);
    memset(cpu_attn_pair_out(t, pr), 0, (size_t)t->head_dim * sizeof(float));
}

/* Each output float accumulates over the positions in order, whatever [d0, d1) is. */
static void scalar_attn_values(const struct cpu_attn_task *t, int d0, int d1)
{
    int G = t->G, n_pairs = t->n_rows * G, max_vis = cpu_attn_max_vis(t);
    size_t stride = cpu_attn_score_stride(max_vis);
    float *row = t->tile;
    for (int p = 0; p < max_vis; p++) {
        load_row(t, t->v, p, row);
        for (int pr = 0; pr < n_pairs; pr++) {
            if (p >= t->n_vis[pr / G]) continue;
            float w = t->scores[pr * stride + p], *out = cpu_attn_pair_out(t, pr);
            for (int i = d0; i < d1; i++) out[i] += w * row[i];
        }
    }
}

/* ---- helpers ---- */

/* Squares in float, summed in double (as ggml, so norms agree with llama.cpp's). */
static void scalar_rms_norm(const float *x, const float *w, float *out, int dim, float eps)
{
    double ss = 0;
    for (int i = 0; i < dim; i++) ss += (double)(x[i] * x[i]);
    float mean = (float)(ss / dim);
    float scale = 1.f / sqrtf(mean + eps);
    for (int i = 0; i < dim; i++) out[i] = x[i] * scale * w[i];
}

static void scalar_silu_mul(float *h, const float *u, int n)
{
    for (int i = 0; i < n; i++) h[i] = h[i] / (1.f + expf(-h[i])) * u[i];
}


static void scalar_round_half(const float *x, float *y, int n)
{
    for (int i = 0; i < n; i++) y[i] = f16_to_f32(f32_to_f16(x[i]));
}

static void scalar_to_f16(const float *x, f16_t *y, int n)
{
    for (int i = 0; i < n; i++) y[i] = f32_to_f16(x[i]);
}

const struct cpu_kernels cpu_kernels_scalar = {
    .name = "scalar",
    .gemm = {
        [QT_Q4_0] = gemm_q4_0, [QT_Q4_1] = gemm_q4_1, [QT_Q8_0] = gemm_q8_0,
        [QT_Q4_K] = gemm_q4_K, [QT_Q5_K] = gemm_q5_K, [QT_Q6_K] = gemm_q6_K,
        [QT_F32] = gemm_f32, [QT_F16] = gemm_f16, [QT_BF16] = gemm_bf16,
    },
    .quant_q8_1f = quant_row_q8_1f,
    .quant_q8_K = quant_row_q8_K,
    .attn_scores = scalar_attn_scores,
    .attn_softmax = scalar_attn_softmax,
    .attn_values = scalar_attn_values,
    .rms_norm = scalar_rms_norm,
    .silu_mul = scalar_silu_mul,
    .to_f16 = scalar_to_f16,
    .round_half = scalar_round_half,
};
