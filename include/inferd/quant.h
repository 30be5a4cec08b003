/* SPDX-License-Identifier: Apache-2.0
 *
 * quant.h: ggml tensor types as they appear in GGUF files: the type table
 * (block size, bytes per block, name), the block layouts we compute with, and
 * reference (scalar) conversion routines.
 *
 * The scalar routines here are the *definition* of each format inside inferd:
 * backend kernels (AVX2, CUDA, ...) are tested against them. They are plain C on
 * purpose; nothing here is on a hot path except during model load.
 *
 * Layer: model (format knowledge). No backend or threading code here.
 */
#ifndef INFERD_QUANT_H
#define INFERD_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* ggml type ids, as stored in GGUF tensor infos. */
enum qtype {
    QT_F32 = 0, QT_F16 = 1, QT_Q4_0 = 2, QT_Q4_1 = 3, QT_Q5_0 = 6, QT_Q5_1 = 7,
    QT_Q8_0 = 8, QT_Q8_1 = 9, QT_Q2_K = 10, QT_Q3_K = 11, QT_Q4_K = 12, QT_Q5_K = 13,
    QT_Q6_K = 14, QT_Q8_K = 15, QT_IQ2_XXS = 16, QT_IQ2_XS = 17, QT_IQ3_XXS = 18,
    QT_IQ1_S = 19, QT_IQ4_NL = 20, QT_IQ3_S = 21, QT_IQ2_S = 22, QT_IQ4_XS = 23,
    QT_I8 = 24, QT_I16 = 25, QT_I32 = 26, QT_I64 = 27, QT_F64 = 28, QT_IQ1_M = 29,
    QT_BF16 = 30, QT_TQ1_0 = 34, QT_TQ2_0 = 35, QT_MXFP4 = 39,
    QT_COUNT = 40
};

struct qtype_info {
    const char *name;   /* NULL: id not assigned (or retired) in ggml */
    uint32_t block;     /* elements per block */
    uint32_t bytes;     /* bytes per block */
    int weight_ok;      /* 1 if inferd can compute with weights of this type */
};

/* Info for a type id; returns NULL for ids that ggml does not define. */
const struct qtype_info *qtype_get(uint32_t type);
const char *qtype_name(uint32_t type); /* "Q4_1", or "unknown" */
/* Bytes of one row of n elements; n must be a multiple of the block size. */
size_t qtype_row_bytes(enum qtype t, int64_t n);

/* ---- block layouts (exact sizes are checked by static asserts in quant.c) ---- */
typedef uint16_t f16_t;  /* IEEE half, raw bits */
typedef uint16_t bf16_t; /* bfloat16, raw bits */

#define QK4_0 32
#define QK4_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef struct { f16_t d; uint8_t qs[QK4_0 / 2]; } block_q4_0;            /* 18 B */
typedef struct { f16_t d, m; uint8_t qs[QK4_1 / 2]; } block_q4_1;         /* 20 B */
typedef struct { f16_t d; int8_t qs[QK8_0]; } block_q8_0;                 /* 34 B */
/* Activation-side block: s = d * sum(qs), which lets Q4_0/Q4_1 dots skip a pass. */
typedef struct { float d, s; int8_t qs[QK8_1]; } block_q8_1f;             /* 40 B, inferd-internal */
typedef struct { f16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qs[QK_K / 2]; } block_q4_K; /* 144 B */
typedef struct { f16_t d, dmin; uint8_t scales[K_SCALE_SIZE]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K; /* 176 B */
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; f16_t d; } block_q6_K; /* 210 B */
/* Activation-side block for K-quant dots (as ggml's Q8_K): bsums are sums of 16 qs. */
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K; /* 292 B */

/* ---- scalar conversions ---- */
float f16_to_f32(f16_t h);
f16_t f32_to_f16(float f);       /* round to nearest even */
float bf16_to_f32(bf16_t h);
bf16_t f32_to_bf16(float f);     /* round to nearest even, NaN kept */

/* Dequantizes n elements (a multiple of the block size) of type t at src into dst.
 * Returns 0, or IFD_ERR_UNSUPPORTED for types without a dequantizer. */
int dequant_row(enum qtype t, const void *src, float *dst, int64_t n);

/* The 256 signed 6-bit levels of a Q6_K block (value = d * scales[l/16] * q[l]). */
void q6_K_levels(const block_q6_K *b, int8_t q[QK_K]);

/* Quantizers used for activations and for dummy/test weights (reference versions). */
void quant_row_q8_0(const float *x, block_q8_0 *y, int64_t n);
void quant_row_q8_1f(const float *x, block_q8_1f *y, int64_t n);
void quant_row_q8_K(const float *x, block_q8_K *y, int64_t n);
void quant_row_q4_0(const float *x, block_q4_0 *y, int64_t n);
void quant_row_q4_1(const float *x, block_q4_1 *y, int64_t n);
void quant_row_q4_K(const float *x, block_q4_K *y, int64_t n);
void quant_row_q5_K(const float *x, block_q5_K *y, int64_t n);
void quant_row_q6_K(const float *x, block_q6_K *y, int64_t n);
/* Quantizes a row of any weight type we support; IFD_ERR_UNSUPPORTED otherwise. */
int quant_row(enum qtype t, const float *x, void *y, int64_t n);

/* Unpacks the 6-bit scale and min of sub-block j of a Q4_K/Q5_K super-block. */
static inline void kq_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

#endif
