/* SPDX-License-Identifier: Apache-2.0
 *
 * test_quant.c: the format definitions in quant.c: half/bfloat conversion
 * against the compiler's own _Float16 and exhaustively on all halves;
 * quantize -> dequantize error bounds for every weight type; and
 * dequantization of real tensor blocks against the `gguf` Python package
 * (tests/data/quant/dequant_golden.bin, made by scripts/gen_dequant_golden.py).
 */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>

#include "inferd/quant.h"
#include "inferd/rng.h"

TEST(quant_f16_conversion_exact)
{
    /* every half survives half -> float -> half (NaNs stay NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((f16_t)h);
        _Float16 ref;
        memcpy(&ref, &h, 2);
        if (isnan(f)) {
            ASSERT(isnan((float)ref));
            continue;
        }
        ASSERT_MSG(f == (float)ref, "half %04x: %g vs %g", h, f, (double)ref);
        ASSERT_EQ(f32_to_f16(f), h);
    }
    /* rounding of arbitrary floats matches the compiler's IEEE conversion */
    struct rng r;
    rng_seed(&r, 7);
    for (int i = 0; i < 2000000; i++) {
        uint32_t bits = (uint32_t)rng_next(&r);
        if (i % 3 == 0) bits = (bits & 0x807FFFFFu) | ((uint32_t)(100 + rng_next(&r) % 60) << 23); /* near half range */
        float f;
        memcpy(&f, &bits, 4);
        if (isnan(f)) continue;
        _Float16 ref = (_Float16)f;
        uint16_t rb;
        memcpy(&rb, &ref, 2);
        ASSERT_MSG(f32_to_f16(f) == rb, "float %a: %04x vs %04x", (double)f, f32_to_f16(f), rb);
    }
    /* bfloat16: round to nearest even on a few hand-picked values */
    ASSERT_EQ(f32_to_bf16(1.0f), 0x3F80);
    ASSERT_NEAR(bf16_to_f32(f32_to_bf16(3.14159f)), 3.140625, 0);
    ASSERT(isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

static const enum qtype k_weight_types[] = { QT_F32, QT_F16, QT_BF16, QT_Q4_0, QT_Q4_1,
                                             QT_Q8_0, QT_Q4_K, QT_Q5_K, QT_Q6_K };

TEST(quant_roundtrip_all_types)
{
    enum { N = 4096 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    void *q = malloc(N * 4);
    struct rng r;
    rng_seed(&r, 11);
    for (int i = 0; i < N; i++) x[i] = (rng_uniform(&r) - 0.5f) * (i % 256 < 8 ? 8.f : 1.f); /* some outliers */
    for (size_t k = 0; k < sizeof k_weight_types / sizeof k_weight_types[0]; k++) {
        enum qtype t = k_weight_types[k];
        ASSERT_OK(quant_row(t, x, q, N));
        ASSERT_OK(dequant_row(t, q, y, N));
        /* error bound per block: a fraction of the block's magnitude (its range, or its
         * largest |x| for one-element "blocks" of float types), by bits per weight */
        const struct qtype_info *ti = qtype_get(t);
        double worst = 0;
        for (int b = 0; b < N / (int)ti->block; b++) {
            float lo = x[b * ti->block], hi = lo;
            for (uint32_t j = 0; j < ti->block; j++) {
                lo = fminf(lo, x[b * ti->block + j]);
                hi = fmaxf(hi, x[b * ti->block + j]);
            }
            double scale = fmax(fmax(hi - lo, fmax(fabsf(hi), fabsf(lo))), 1e-6);
            for (uint32_t j = 0; j < ti->block; j++) {
                double e = fabs(x[b * ti->block + j] - y[b * ti->block + j]) / scale;
                if (e > worst) worst = e;
            }
        }
        double bound = t == QT_F32 ? 0 : t == QT_F16 ? 1e-3 : t == QT_BF16 ? 8e-3 : t == QT_Q8_0 ? 0.01
                     : t == QT_Q6_K ? 0.06 : t == QT_Q5_K ? 0.06 : 0.12;
        ASSERT_MSG(worst <= bound, "%s: worst error %.4f of the block range (bound %.3f)", ti->name, worst, bound);
    }
    free(x), free(y), free(q);
}

TEST(quant_dequant_matches_gguf_python)
{
    char path[4096];
    size_t len;
    uint8_t *buf = (uint8_t *)test_read_file(test_data_path("quant/dequant_golden.bin", path, sizeof path), &len);
    ASSERT(len > 8 && memcmp(buf, "IDQG", 4) == 0);
    uint32_t n_cases;
    memcpy(&n_cases, buf + 4, 4);
    size_t off = 8;
    int seen[QT_COUNT] = { 0 };
    for (uint32_t c = 0; c < n_cases; c++) {
        uint32_t hdr[3];
        ASSERT(off + 12 + 64 <= len);
        memcpy(hdr, buf + off, 12);
        const char *src = (const char *)buf + off + 12;
        off += 12 + 64;
        uint32_t type = hdr[0], n = hdr[1], n_bytes = hdr[2];
        ASSERT(off + n_bytes + 4ull * n <= len);
        const uint8_t *blocks = buf + off;
        float *want = malloc(4ull * n), *got = malloc(4ull * n);
        memcpy(want, buf + off + n_bytes, 4ull * n);
        off += n_bytes + 4ull * n;
        ASSERT_EQ(qtype_row_bytes((enum qtype)type, n), n_bytes);
        ASSERT_OK(dequant_row((enum qtype)type, blocks, got, n));
        for (uint32_t i = 0; i < n; i++) {
            /* gguf-py computes in float32 too, with the same formulas, but may round
             * intermediate products differently: allow one ulp-scale difference */
            double tol = 1e-6 * fmax(1.0, fabs(want[i]));
            ASSERT_MSG(fabs(got[i] - want[i]) <= tol, "%s (%s) element %u: %.9g vs %.9g", qtype_name(type), src, i,
                       got[i], want[i]);
        }
        seen[type] = 1;
        free(want), free(got);
    }
    for (size_t k = 0; k < sizeof k_weight_types / sizeof k_weight_types[0]; k++)
        ASSERT_MSG(seen[k_weight_types[k]], "golden file has no %s case", qtype_name(k_weight_types[k]));
    free(buf);
}
