/* SPDX-License-Identifier: Apache-2.0
 *
 * cpu_layout.c: weight layouts and activation formats of the CPU backend
 * (see cpu_kernels.h for the X8 layout): the repack, row access for
 * embedding lookups, and activation sizes. Plain C; runs at load time.
 *
 * Layer: backend/cpu.
 */
#include "cpu_kernels.h"

#include <string.h>

enum cpu_act cpu_act_for(enum qtype t)
{
    switch (t) {
    case QT_Q4_0: case QT_Q4_1: case QT_Q8_0: return CPU_ACT_Q8_1F;
    case QT_Q4_K: case QT_Q5_K: case QT_Q6_K: return CPU_ACT_Q8_K;
    default: return CPU_ACT_F32;
    }
}

size_t cpu_act_row_bytes(enum cpu_act a, int64_t n_in)
{
    switch (a) {
    case CPU_ACT_Q8_1F: return (size_t)(n_in / QK8_1) * sizeof(block_q8_1f);
    case CPU_ACT_Q8_K: return (size_t)(n_in / QK_K) * sizeof(block_q8_K);
    default: return (size_t)n_in * sizeof(float);
    }
}

/* Bytes of the scale header (d, and m for Q4_1) of one X8 block. */
static size_t x8_header_bytes(enum qtype t) { return t == QT_Q4_1 ? 32 : 16; }
/* Bytes of quants per row per block. */
static size_t qs_bytes(enum qtype t) { return t == QT_Q8_0 ? 32 : 16; }

size_t cpu_x8_block_bytes(enum qtype t) { return 8 * qtype_get(t)->bytes; }

/* Scatters one plain block (of row r within its group) into an X8 block. */
static void x8_put(enum qtype t, uint8_t *xb, int r, const uint8_t *src)
{
    memcpy(xb + 2 * r, src, 2); /* d */
    const uint8_t *qs = src + 2;
    if (t == QT_Q4_1) {
        memcpy(xb + 16 + 2 * r, src + 2, 2); /* m */
        qs = src + 4;
    }
    uint8_t *dq = xb + x8_header_bytes(t);
    for (size_t j = 0; j < qs_bytes(t) / 4; j++) memcpy(dq + 32 * j + 4 * r, qs + 4 * j, 4);
}

/* Gathers row r's plain block back out of an X8 block. */
static void x8_get(enum qtype t, const uint8_t *xb, int r, uint8_t *dst)
{
    memcpy(dst, xb + 2 * r, 2);
    uint8_t *qs = dst + 2;
    if (t == QT_Q4_1) {
        memcpy(dst + 2, xb + 16 + 2 * r, 2);
        qs = dst + 4;
    }
    const uint8_t *sq = xb + x8_header_bytes(t);
    for (size_t j = 0; j < qs_bytes(t) / 4; j++) memcpy(qs + 4 * j, sq + 32 * j + 4 * r, 4);
}

void cpu_repack_x8(enum qtype t, const void *src, void *dst, int64_t n_in, int64_t n_out)
{
    size_t bb = qtype_get(t)->bytes, row_bytes = qtype_row_bytes(t, n_in);
    int64_t nb = n_in / 32, n_groups = n_out / 8; /* callers guarantee n_out % 8 == 0 */
    const uint8_t *s = src;
    uint8_t *d = dst;
    for (int64_t g = 0; g < n_groups; g++)
        for (int64_t b = 0; b < nb; b++) {
            uint8_t *xb = d + ((size_t)g * nb + b) * 8 * bb;
            for (int r = 0; r < 8; r++) x8_put(t, xb, r, s + (size_t)(8 * g + r) * row_bytes + b * bb);
        }
}

void cpu_weight_row_dequant(enum qtype t, int layout, const void *w, int64_t n_in, int64_t n_out, int64_t r, float *out)
{
    size_t row_bytes = qtype_row_bytes(t, n_in);
    (void)n_out;
    if (layout != CPU_LAYOUT_X8) {
        dequant_row(t, (const uint8_t *)w + (size_t)r * row_bytes, out, n_in);
        return;
    }
    size_t bb = qtype_get(t)->bytes;
    int64_t nb = n_in / 32, g = r / 8;
    uint8_t block[64];
    for (int64_t b = 0; b < nb; b++) {
        x8_get(t, (const uint8_t *)w + ((size_t)g * nb + b) * 8 * bb, (int)(r % 8), block);
        dequant_row(t, block, out + 32 * b, 32);
    }
}
