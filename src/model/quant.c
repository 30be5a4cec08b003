/* SPDX-License-Identifier: Apache-2.0
 *
 * quant.c: the ggml type table and the reference (scalar) converters declared
 * in quant.h: half/bfloat conversion, dequantization of every weight type we
 * load, and simple quantizers for activations, dummy weights and tests.
 *
 * The quantizers for weight types are plain min/max schemes, not ggml's
 * error-minimizing searches: inferd never re-quantizes a real checkpoint, it
 * only needs valid blocks for --load-format dummy and kernel tests.
 *
 * Layer: model. Backends use their own vectorized kernels and test them
 * against these.
 */
#include "inferd/quant.h"
#include "inferd/error.h"

#include <math.h>
#include <string.h>

_Static_assert(sizeof(block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(block_q4_1) == 20, "q4_1 layout");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(block_q8_K) == 292, "q8_K layout");

/* Sizes are ggml's (ggml.c type_traits); weight_ok marks what inferd computes with. */
static const struct qtype_info g_types[QT_COUNT] = {
    [QT_F32] = { "F32", 1, 4, 1 },          [QT_F16] = { "F16", 1, 2, 1 },
    [QT_Q4_0] = { "Q4_0", 32, 18, 1 },      [QT_Q4_1] = { "Q4_1", 32, 20, 1 },
    [QT_Q5_0] = { "Q5_0", 32, 22, 0 },      [QT_Q5_1] = { "Q5_1", 32, 24, 0 },
    [QT_Q8_0] = { "Q8_0", 32, 34, 1 },      [QT_Q8_1] = { "Q8_1", 32, 36, 0 },
    [QT_Q2_K] = { "Q2_K", 256, 84, 0 },     [QT_Q3_K] = { "Q3_K", 256, 110, 0 },
    [QT_Q4_K] = { "Q4_K", 256, 144, 1 },    [QT_Q5_K] = { "Q5_K", 256, 176, 1 },
    [QT_Q6_K] = { "Q6_K", 256, 210, 1 },    [QT_Q8_K] = { "Q8_K", 256, 292, 0 },
    [QT_IQ2_XXS] = { "IQ2_XXS", 256, 66, 0 }, [QT_IQ2_XS] = { "IQ2_XS", 256, 74, 0 },
    [QT_IQ3_XXS] = { "IQ3_XXS", 256, 98, 0 }, [QT_IQ1_S] = { "IQ1_S", 256, 50, 0 },
    [QT_IQ4_NL] = { "IQ4_NL", 32, 18, 0 },  [QT_IQ3_S] = { "IQ3_S", 256, 110, 0 },
    [QT_IQ2_S] = { "IQ2_S", 256, 82, 0 },   [QT_IQ4_XS] = { "IQ4_XS", 256, 136, 0 },
    [QT_I8] = { "I8", 1, 1, 0 },            [QT_I16] = { "I16", 1, 2, 0 },
    [QT_I32] = { "I32", 1, 4, 0 },          [QT_I64] = { "I64", 1, 8, 0 },
    [QT_F64] = { "F64", 1, 8, 0 },          [QT_IQ1_M] = { "IQ1_M", 256, 56, 0 },
    [QT_BF16] = { "BF16", 1, 2, 1 },        [QT_TQ1_0] = { "TQ1_0", 256, 54, 0 },
    [QT_TQ2_0] = { "TQ2_0", 256, 66, 0 },   [QT_MXFP4] = { "MXFP4", 32, 17, 0 },
};

const struct qtype_info *qtype_get(uint32_t type)
{
    if (type >= QT_COUNT || !g_types[type].name) return NULL;
    return &g_types[type];
}

const char *qtype_name(uint32_t type)
{
    const struct qtype_info *ti = qtype_get(type);
    return ti ? ti->name : "unknown";
}

size_t qtype_row_bytes(enum qtype t, int64_t n)
{
    const struct qtype_info *ti = qtype_get(t);
    return ti ? (size_t)(n / ti->block) * ti->bytes : 0;
}

/* ---- half precision ---- */

float f16_to_f32(f16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F;
    uint32_t man = h & 0x3FF;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalize */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3FF) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

f16_t f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7FFFFFFFu;
    if (absx >= 0x7F800000u) /* inf or nan */
        return (f16_t)(sign | 0x7C00 | (absx > 0x7F800000u ? 0x200 : 0));
    if (absx >= 0x477FF000u) /* rounds to >= 65520: overflow to inf */
        return (f16_t)(sign | 0x7C00);
    if (absx < 0x38800000u) { /* result is subnormal or zero */
        if (absx < 0x33000000u) return (f16_t)sign; /* below half the smallest subnormal */
        uint32_t man = (absx & 0x7FFFFF) | 0x800000;
        int shift = 126 - (int)(absx >> 23); /* 14..24 */
        uint32_t r = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (f16_t)(sign | r);
    }
    uint32_t r = absx - 0x38000000u; /* rebias exponent 127 -> 15 (in place) */
    uint32_t h = r >> 13, rem = r & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (f16_t)(sign | h);
}

float bf16_to_f32(bf16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

bf16_t f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return (bf16_t)((x >> 16) | 64); /* quiet nan */
    return (bf16_t)((x + (0x7FFF + ((x >> 16) & 1))) >> 16);
}

/* ---- dequantization ---- */

static void dequant_q4_0(const block_q4_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = f16_to_f32(b[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = ((b[i].qs[j] & 0xF) - 8) * d;
            y[j + 16] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequant_q4_1(const block_q4_1 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = f16_to_f32(b[i].d), m = f16_to_f32(b[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = (b[i].qs[j] & 0xF) * d + m;
            y[j + 16] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void dequant_q8_0(const block_q8_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, y += 32) {
        float d = f16_to_f32(b[i].d);
        for (int j = 0; j < 32; j++) y[j] = b[i].qs[j] * d;
    }
}

/* Q4_K and Q5_K differ only in the 5th bit (qh, NULL for Q4_K). */
static void dequant_q45_K(const uint8_t *scales, const uint8_t *qs, const uint8_t *qh, f16_t dd, f16_t ddmin, float *y)
{
    float d = f16_to_f32(dd), dmin = f16_to_f32(ddmin);
    for (int c = 0; c < 4; c++, qs += 32, y += 64) {
        uint8_t sc, m;
        kq_scale_min(2 * c, scales, &sc, &m);
        float d1 = d * sc, m1 = dmin * m;
        kq_scale_min(2 * c + 1, scales, &sc, &m);
        float d2 = d * sc, m2 = dmin * m;
        for (int l = 0; l < 32; l++) {
            int h1 = qh && (qh[l] >> (2 * c) & 1) ? 16 : 0, h2 = qh && (qh[l] >> (2 * c + 1) & 1) ? 16 : 0;
            y[l] = d1 * ((qs[l] & 0xF) + h1) - m1;
            y[32 + l] = d2 * ((qs[l] >> 4) + h2) - m2;
        }
    }
}

void q6_K_levels(const block_q6_K *b, int8_t q[QK_K])
{
    const uint8_t *ql = b->ql, *qh = b->qh;
    for (int half = 0; half < 2; half++, ql += 64, qh += 32, q += 128) {
        for (int l = 0; l < 32; l++) {
            q[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
            q[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
            q[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            q[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

static void dequant_q6_K(const block_q6_K *b, float *y, int64_t nb)
{
    int8_t q[QK_K];
    for (int64_t i = 0; i < nb; i++, y += QK_K) {
        float d = f16_to_f32(b[i].d);
        q6_K_levels(&b[i], q);
        for (int l = 0; l < QK_K; l++) y[l] = d * b[i].scales[l / 16] * q[l];
    }
}

int dequant_row(enum qtype t, const void *src, float *dst, int64_t n)
{
    switch (t) {
    case QT_F32: memcpy(dst, src, (size_t)n * 4); return 0;
    case QT_F16: {
        const f16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(s[i]);
        return 0;
    }
    case QT_BF16: {
        const bf16_t *s = src;
        for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i]);
        return 0;
    }
    case QT_Q4_0: dequant_q4_0(src, dst, n / 32); return 0;
    case QT_Q4_1: dequant_q4_1(src, dst, n / 32); return 0;
    case QT_Q8_0: dequant_q8_0(src, dst, n / 32); return 0;
    case QT_Q4_K:
        for (int64_t i = 0; i < n / QK_K; i++) {
            const block_q4_K *b = (const block_q4_K *)src + i;
            dequant_q45_K(b->scales, b->qs, NULL, b->d, b->dmin, dst + i * QK_K);
        }
        return 0;
    case QT_Q5_K:
        for (int64_t i = 0; i < n / QK_K; i++) {
            const block_q5_K *b = (const block_q5_K *)src + i;
            dequant_q45_K(b->scales, b->qs, b->qh, b->d, b->dmin, dst + i * QK_K);
        }
        return 0;
    case QT_Q6_K: dequant_q6_K(src, dst, n / QK_K); return 0;
    default: return IFD_ERR_UNSUPPORTED;
    }
}

/* ---- quantization ---- */

static int nearest_int(float f) { return (int)lrintf(f); }

void quant_row_q8_0(const float *x, block_q8_0 *y, int64_t n)
{
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.f, id = d ? 1.f / d : 0.f;
        y[i].d = f32_to_f16(d);
        for (int j = 0; j < 32; j++) y[i].qs[j] = (int8_t)nearest_int(x[j] * id);
    }
}

/* Rounding points follow ggml's quantize_row_q8_1 so dot products agree with
 * llama.cpp's: quants use 127/amax, the stored scale and scaled sum are
 * rounded through half precision (ggml stores them as f16). */
void quant_row_q8_1f(const float *x, block_q8_1f *y, int64_t n)
{
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.f, id = amax != 0.f ? 127.f / amax : 0.f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            y[i].qs[j] = (int8_t)nearest_int(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].d = f16_to_f32(f32_to_f16(d));
        y[i].s = f16_to_f32(f32_to_f16(d * (float)sum));
    }
}

void quant_row_q8_K(const float *x, block_q8_K *y, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        if (amax == 0) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* as ggml: the signed extreme maps to -127, so |q| <= 127 always */
        float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            int v = nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v > 127 ? 127 : v);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int s = 0;
            for (int k = 0; k < 16; k++) s += y[i].qs[16 * j + k];
            y[i].bsums[j] = (int16_t)s;
        }
        y[i].d = 1.f / iscale;
    }
}

void quant_row_q4_0(const float *x, block_q4_0 *y, int64_t n)
{
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        float d = max / -8.f, id = d ? 1.f / d : 0.f;
        y[i].d = f32_to_f16(d);
        for (int j = 0; j < 16; j++) {
            int a = (int)(x[j] * id + 8.5f), b = (int)(x[j + 16] * id + 8.5f);
            a = a < 0 ? 0 : a > 15 ? 15 : a;
            b = b < 0 ? 0 : b > 15 ? 15 : b;
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

void quant_row_q4_1(const float *x, block_q4_1 *y, int64_t n)
{
    for (int64_t i = 0; i < n / 32; i++, x += 32) {
        float lo = x[0], hi = x[0];
        for (int j = 1; j < 32; j++) { lo = fminf(lo, x[j]); hi = fmaxf(hi, x[j]); }
        float d = (hi - lo) / 15.f, id = d ? 1.f / d : 0.f;
        y[i].d = f32_to_f16(d);
        y[i].m = f32_to_f16(lo);
        for (int j = 0; j < 16; j++) {
            int a = (int)((x[j] - lo) * id + 0.5f), b = (int)((x[j + 16] - lo) * id + 0.5f);
            a = a > 15 ? 15 : a;
            b = b > 15 ? 15 : b;
            y[i].qs[j] = (uint8_t)(a | (b << 4));
        }
    }
}

/* Shared by Q4_K and Q5_K: per 32-element sub-block an affine (scale, -min) pair,
 * then both quantized to 6 bits against super-block d and dmin. Writes the packed
 * scales and returns the integer level of every element through L. */
static void kq_affine(const float *x, int nmax, f16_t *dd, f16_t *ddmin, uint8_t *scales, uint8_t *L)
{
    float sub_scale[8], sub_min[8], max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float lo = xs[0], hi = xs[0];
        for (int l = 1; l < 32; l++) { lo = fminf(lo, xs[l]); hi = fmaxf(hi, xs[l]); }
        if (lo > 0) lo = 0; /* the format stores a non-negative min subtracted */
        sub_scale[j] = (hi - lo) / nmax;
        sub_min[j] = -lo;
        max_scale = fmaxf(max_scale, sub_scale[j]);
        max_min = fmaxf(max_min, sub_min[j]);
    }
    float d = max_scale / 63.f, dmin = max_min / 63.f;
    float id = d ? 1.f / d : 0.f, idmin = dmin ? 1.f / dmin : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        int a = nearest_int(id * sub_scale[j]), b = nearest_int(idmin * sub_min[j]);
        ls[j] = (uint8_t)(a > 63 ? 63 : a);
        lm[j] = (uint8_t)(b > 63 ? 63 : b);
    }
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            scales[j] = ls[j];
            scales[j + 4] = lm[j];
        } else {
            scales[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            scales[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            scales[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
    *dd = f32_to_f16(d);
    *ddmin = f32_to_f16(dmin);
    /* levels use the *stored* (rounded) scales so dequant reproduces them */
    float df = f16_to_f32(*dd), dminf = f16_to_f32(*ddmin);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        kq_scale_min(j, scales, &sc, &m);
        float s = df * sc, mm = dminf * m;
        for (int l = 0; l < 32; l++) {
            int q = s ? nearest_int((x[32 * j + l] + mm) / s) : 0;
            L[32 * j + l] = (uint8_t)(q < 0 ? 0 : q > nmax ? nmax : q);
        }
    }
}

void quant_row_q4_K(const float *x, block_q4_K *y, int64_t n)
{
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        memset(y[i].scales, 0, sizeof y[i].scales);
        kq_affine(x, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                y[i].qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    }
}

void quant_row_q5_K(const float *x, block_q5_K *y, int64_t n)
{
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        memset(y[i].scales, 0, sizeof y[i].scales);
        memset(y[i].qh, 0, sizeof y[i].qh);
        kq_affine(x, 31, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int c = 0; c < 4; c++) {
            for (int l = 0; l < 32; l++) {
                int lo = L[64 * c + l], hi = L[64 * c + 32 + l];
                y[i].qs[32 * c + l] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
                if (lo & 16) y[i].qh[l] |= (uint8_t)(1 << (2 * c));
                if (hi & 16) y[i].qh[l] |= (uint8_t)(1 << (2 * c + 1));
            }
        }
    }
}

void quant_row_q6_K(const float *x, block_q6_K *y, int64_t n)
{
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float sub[16], max_sub = 0;
        for (int j = 0; j < 16; j++) {
            float amax = 0;
            for (int l = 0; l < 16; l++) amax = fmaxf(amax, fabsf(x[16 * j + l]));
            sub[j] = amax / 31.f;
            max_sub = fmaxf(max_sub, sub[j]);
        }
        float d = max_sub / 127.f, id = d ? 1.f / d : 0.f;
        y[i].d = f32_to_f16(d);
        float df = f16_to_f32(y[i].d);
        int8_t L[QK_K];
        for (int j = 0; j < 16; j++) {
            int s = nearest_int(id * sub[j]);
            y[i].scales[j] = (int8_t)(s > 127 ? 127 : s);
            float step = df * y[i].scales[j];
            for (int l = 0; l < 16; l++) {
                int q = step ? nearest_int(x[16 * j + l] / step) : 0;
                L[16 * j + l] = (int8_t)(q < -32 ? -32 : q > 31 ? 31 : q);
            }
        }
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int half = 0; half < 2; half++) {
            uint8_t *ql = y[i].ql + 64 * half, *qh = y[i].qh + 32 * half;
            const int8_t *Lh = L + 128 * half;
            for (int l = 0; l < 32; l++) {
                int q1 = Lh[l] + 32, q2 = Lh[l + 32] + 32, q3 = Lh[l + 64] + 32, q4 = Lh[l + 96] + 32;
                ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

int quant_row(enum qtype t, const float *x, void *y, int64_t n)
{
    switch (t) {
    case QT_F32: memcpy(y, x, (size_t)n * 4); return 0;
    case QT_F16:
        for (int64_t i = 0; i < n; i++) ((f16_t *)y)[i] = f32_to_f16(x[i]);
        return 0;
    case QT_BF16:
        for (int64_t i = 0; i < n; i++) ((bf16_t *)y)[i] = f32_to_bf16(x[i]);
        return 0;
    case QT_Q4_0: quant_row_q4_0(x, y, n); return 0;
    case QT_Q4_1: quant_row_q4_1(x, y, n); return 0;
    case QT_Q8_0: quant_row_q8_0(x, y, n); return 0;
    case QT_Q4_K: quant_row_q4_K(x, y, n); return 0;
    case QT_Q5_K: quant_row_q5_K(x, y, n); return 0;
    case QT_Q6_K: quant_row_q6_K(x, y, n); return 0;
    default: return IFD_ERR_UNSUPPORTED;
    }
}
