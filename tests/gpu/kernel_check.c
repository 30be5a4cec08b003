/* SPDX-License-Identifier: Apache-2.0
 *
 * kernel_check.c: every backend op of the CUDA backend against the CPU
 * backend (the reference), on fresh random inputs of several shapes, with
 * GPU outputs poisoned with NaN before each run (a NaN or Inf never passes).
 * Also the model-level greedy check and the decode/prefill benchmark
 * (model_check.c). Run by tests/gpu/run.sh; see tests/gpu/README.md for the
 * tolerances and why each is what it is.
 *
 *   inferd_gpu_check [--quick] [--seed N] [--results FILE]
 *                    [--ops] [--greedy PRESET:TYPE]... [--graphs PRESET:TYPE] [--bench PRESET:TYPE]
 * Exit status: 0 if every check passed, 1 otherwise, 2 on a setup error.
 *
 * Layer: tests/gpu.
 */
#include "gpu_check.h"

#include "inferd/error.h"
#include "inferd/log.h"
#include "inferd/quant.h"
#include "inferd_kernels.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

void gc_fill(struct gc *g, float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) x[i] = (2.f * rng_uniform(&g->rng) - 1.f) * scale;
}

void gc_poison(struct gc *g, void *dev, size_t n_floats)
{
    float *nan = malloc(n_floats * sizeof *nan);
    for (size_t i = 0; i < n_floats; i++) nan[i] = NAN;
    g->gpu->ops->copy_in(g->gpu, dev, nan, n_floats * sizeof *nan);
    free(nan);
}

void *gc_gpu_upload(struct gc *g, const void *host, size_t bytes)
{
    void *d = g->gpu->ops->alloc(g->gpu, bytes);
    if (!d) {
        fprintf(stderr, "gpu alloc of %zu bytes failed\n", bytes);
        exit(2);
    }
    if (host) g->gpu->ops->copy_in(g->gpu, d, host, bytes);
    else if (bytes % 4 == 0) gc_poison(g, d, bytes / 4);
    return d;
}

void *gc_gpu_download(struct gc *g, const void *dev, size_t bytes, int *rc)
{
    *rc = g->gpu->ops->sync(g->gpu);
    void *h = malloc(bytes ? bytes : 1);
    g->gpu->ops->copy_out(g->gpu, h, dev, bytes);
    int rc2 = g->gpu->ops->sync(g->gpu);
    if (!*rc) *rc = rc2;
    return h;
}

void gc_record(struct gc *g, const char *op, const char *shape, int pass, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (pass) g->n_pass++;
    else g->n_fail++;
    printf("%-4s %-14s %-40s %s\n", pass ? "ok" : "FAIL", op, shape, msg);
    if (g->results) fprintf(g->results, "%s\t%s\t%s\t%s\n", pass ? "ok" : "FAIL", op, shape, msg);
    fflush(stdout);
}

/* Compares got with want: element i passes when |got - want| <= bound[i] if
 * bound is given, else atol + rtol * (rms of want, or |want[i]|). Non-finite
 * values never pass. */
static int compare_bounded(struct gc *g, const char *op, const char *shape, const float *got, const float *want,
                           size_t n, double atol, double rtol, int rms_scaled, const float *bound)
{
    double ss = 0, max_err = 0, worst_allowed = 0;
    size_t bad = 0, nonfinite = 0, first_bad = (size_t)-1;
    for (size_t i = 0; i < n; i++) ss += (double)want[i] * want[i];
    double rms = n ? sqrt(ss / (double)n) : 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i])) {
            nonfinite++;
            if (first_bad == (size_t)-1) first_bad = i;
            continue;
        }
        double err = fabs((double)got[i] - want[i]);
        double allowed = bound ? bound[i] : atol + rtol * (rms_scaled ? rms : fabs(want[i]));
        if (err > max_err) max_err = err, worst_allowed = allowed;
        if (err > allowed) {
            bad++;
            if (first_bad == (size_t)-1) first_bad = i;
        }
    }
    int pass = bad == 0 && nonfinite == 0;
    if (pass)
        gc_record(g, op, shape, 1, "max|err| %.3g (allowed %.3g; rms %.3g)", max_err, worst_allowed, rms);
    else
        gc_record(g, op, shape, 0, "%zu over tolerance, %zu non-finite; first at %zu: got %.7g want %.7g; max|err| %.3g",
                  bad, nonfinite, first_bad, got[first_bad], want[first_bad], max_err);
    return pass;
}

int gc_compare(struct gc *g, const char *op, const char *shape, const float *got, const float *want, size_t n,
               double atol, double rtol, int rms_scaled)
{
    return compare_bounded(g, op, shape, got, want, n, atol, rtol, rms_scaled, NULL);
}

static int op_rc(struct gc *g, const char *op, const char *shape, int rc)
{
    if (rc) gc_record(g, op, shape, 0, "backend error %d (%s)", rc, ifd_strerror(rc));
    return rc;
}

/* Downloads n floats of the GPU buffer dev and compares them with want (gc_compare), or records the backend error. */
static void expect_gpu(struct gc *g, const char *op, const char *shape, const void *dev, const float *want, size_t n,
                       double atol, double rtol, int rms_scaled)
{
    int rc;
    float *got = gc_gpu_download(g, dev, n * sizeof *got, &rc);
    if (!op_rc(g, op, shape, rc)) gc_compare(g, op, shape, got, want, n, atol, rtol, rms_scaled);
    free(got);
}

/* Releases GPU buffers (NULL entries are skipped by the backend). */
static void release_gpu(struct gc *g, void *const *bufs, size_t n)
{
    for (size_t i = 0; i < n; i++) g->gpu->ops->release(g->gpu, bufs[i]);
}
#define RELEASE_GPU(g, ...) \
    release_gpu(g, (void *const[]){ __VA_ARGS__ }, sizeof((void *const[]){ __VA_ARGS__ }) / sizeof(void *))

/* ---- weights ---- */

/* A random weight in GGUF layout (host) plus its exact dequantization (the float the GPU should see). */
struct hweight {
    enum qtype type;
    int64_t n_in, n_out;
    void *q;      /* GGUF rows */
    float *deq;   /* (n_out, n_in) */
};

static void hweight_make(struct gc *g, struct hweight *w, enum qtype t, int64_t n_in, int64_t n_out)
{
    w->type = t;
    w->n_in = n_in;
    w->n_out = n_out;
    size_t rb = qtype_row_bytes(t, n_in);
    w->q = malloc(rb * (size_t)n_out);
    w->deq = malloc(sizeof(float) * (size_t)(n_in * n_out));
    float *row = malloc(sizeof(float) * (size_t)n_in);
    for (int64_t r = 0; r < n_out; r++) {
        gc_fill(g, row, (size_t)n_in, 1.f / sqrtf((float)n_in) * 2.f);
        quant_row(t, row, (uint8_t *)w->q + (size_t)r * rb, n_in);
        dequant_row(t, (uint8_t *)w->q + (size_t)r * rb, w->deq + r * n_in, n_in);
    }
    free(row);
}

static void hweight_free(struct hweight *w)
{
    free(w->q);
    free(w->deq);
}

static int prepare_both(struct gc *g, const struct hweight *h, struct be_weight *wc, struct be_weight *wg)
{
    int rc = g->cpu->ops->weight_prepare(g->cpu, wc, h->type, h->n_in, h->n_out, h->q, 0);
    if (!rc) rc = g->gpu->ops->weight_prepare(g->gpu, wg, h->type, h->n_in, h->n_out, h->q, 0);
    return rc;
}

/* y = W x in double from the exact dequantized weights. */
static void ref_matmul(const struct hweight *w, const float *x, int n, float *y)
{
    for (int t = 0; t < n; t++)
        for (int64_t r = 0; r < w->n_out; r++) {
            double s = 0;
            for (int64_t k = 0; k < w->n_in; k++) s += (double)w->deq[r * w->n_in + k] * x[t * w->n_in + k];
            y[t * w->n_out + r] = (float)s;
        }
}

static const enum qtype ALL_TYPES[] = { QT_Q4_0, QT_Q4_1, QT_Q8_0, QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_F16, QT_BF16, QT_F32 };
#define N_TYPES (sizeof ALL_TYPES / sizeof ALL_TYPES[0])

/* ---- embedding ---- */

static void check_embed(struct gc *g)
{
    int64_t widths[] = { 256, 2048 };
    for (size_t ti = 0; ti < N_TYPES; ti++)
        for (size_t wi = 0; wi < 2; wi++) {
            struct hweight h;
            hweight_make(g, &h, ALL_TYPES[ti], widths[wi], 300);
            struct be_weight wc, wg;
            char shape[96];
            snprintf(shape, sizeof shape, "%s vocab 300 x %lld, 37 ids", qtype_name(h.type), (long long)h.n_in);
            if (op_rc(g, "embed", shape, prepare_both(g, &h, &wc, &wg))) continue;
            int n = 37;
            int32_t ids[37];
            for (int i = 0; i < n; i++) ids[i] = (int32_t)(rng_next(&g->rng) % 300);
            ids[0] = 299;
            size_t bytes = sizeof(float) * (size_t)(n * h.n_in);
            float *want = malloc(bytes);
            g->cpu->ops->embed(g->cpu, &wc, ids, n, want);
            float *d = gc_gpu_upload(g, NULL, bytes);
            g->gpu->ops->embed(g->gpu, &wg, ids, n, d);
            /* dequantization is bit-exact by construction (ik_quant.cuh follows quant.c operation by operation) */
            expect_gpu(g, "embed", shape, d, want, (size_t)(n * h.n_in), 0, 0, 0);
            free(want);
            g->gpu->ops->release(g->gpu, d);
            g->cpu->ops->weight_release(g->cpu, &wc);
            g->gpu->ops->weight_release(g->gpu, &wg);
            hweight_free(&h);
        }
}

/* ---- RMSNorm ---- */

/* x += r, then the CPU backend's norm of the sum: what ik_rms_norm_residual must produce. */
static void check_rms_norm_residual(struct gc *g, int n, int dim, const float *x, const float *w)
{
    char shape[96];
    snprintf(shape, sizeof shape, "%d x %d + residual", n, dim);
    size_t cnt = (size_t)n * dim;
    float *r = malloc(cnt * 4), *sum = malloc(cnt * 4), *want = malloc(cnt * 4);
    gc_fill(g, r, cnt, 2.f);
    for (size_t i = 0; i < cnt; i++) sum[i] = x[i] + r[i];
    g->cpu->ops->rms_norm(g->cpu, sum, w, want, n, dim, 1e-5f);
    float *dx = gc_gpu_upload(g, x, cnt * 4), *dr = gc_gpu_upload(g, r, cnt * 4);
    float *dw = gc_gpu_upload(g, w, (size_t)dim * 4);
    float *dout = gc_gpu_upload(g, NULL, cnt * 4);
    g->gpu->ops->sync(g->gpu); /* the uploads ran on the backend's stream; the kernel runs on the default one */
    int rc = ik_rms_norm_residual(dx, dr, dw, dout, n, dim, 1e-5f, NULL);
    if (!rc) rc = (int)cudaDeviceSynchronize();
    if (rc) {
        gc_record(g, "rms_norm+res", shape, 0, "CUDA error %d", rc);
    } else {
        expect_gpu(g, "rms_norm+res", shape, dout, want, cnt, 1e-6, 1e-5, 0);
        expect_gpu(g, "rms_norm+res/x", shape, dx, sum, cnt, 0, 0, 0); /* the updated residual stream, exactly */
    }
    free(r);
    free(sum);
    free(want);
    RELEASE_GPU(g, dx, dr, dw, dout);
}

/* Shapes cover the plain kernel (130: not a multiple of 4; 20000: wider
 * than the vector kernel takes) and each vector width (1, 2 and 4 float4s
 * per thread at 576/4096, 5120/8192 and 16384). */
static void check_rms_norm(struct gc *g)
{
    int shapes[][2] = { { 1, 128 }, { 7, 576 }, { 64, 4096 }, { 3, 5120 }, { 1, 130 }, { 1, 8192 }, { 2, 16384 },
                        { 1, 20000 } };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int inplace = 0; inplace < 2; inplace++) {
            int n = shapes[s][0], dim = shapes[s][1];
            char shape[96];
            snprintf(shape, sizeof shape, "%d x %d%s", n, dim, inplace ? " in place" : "");
            size_t cnt = (size_t)n * dim;
            float *x = malloc(cnt * 4), *w = malloc((size_t)dim * 4), *want = malloc(cnt * 4);
            gc_fill(g, x, cnt, 3.f);
            gc_fill(g, w, (size_t)dim, 1.5f);
            g->cpu->ops->rms_norm(g->cpu, x, w, want, n, dim, 1e-5f);
            float *dx = gc_gpu_upload(g, x, cnt * 4), *dw = gc_gpu_upload(g, w, (size_t)dim * 4);
            float *dout = inplace ? dx : gc_gpu_upload(g, NULL, cnt * 4);
            g->gpu->ops->rms_norm(g->gpu, dx, dw, dout, n, dim, 1e-5f);
            expect_gpu(g, "rms_norm", shape, dout, want, cnt, 1e-6, 1e-5, 0);
            if (!inplace) check_rms_norm_residual(g, n, dim, x, w);
            free(x);
            free(w);
            free(want);
            RELEASE_GPU(g, dx, dw, inplace ? NULL : dout);
        }
}

/* ---- matmul and SwiGLU ---- */

/* Tolerances, relative to the rms of the exact result:
 *  - against the exact double reference: the GEMV reads f32 activations
 *    (float accumulation only), the GEMM rounds activations and weights to bf16;
 *  - against the CPU backend, which quantizes activations to 8 bits for
 *    quantized weights (an error of the order of 1/127 per block). */
static double tol_exact(int n, enum qtype t)
{
    (void)t;
    return n <= 8 ? 2e-5 : 1.5e-2;
}

static double tol_cpu(int n, enum qtype t)
{
    int float_w = t == QT_F32 || t == QT_F16 || t == QT_BF16;
    if (n <= 8) return float_w ? 2e-5 : 3e-2;
    return float_w ? 1.5e-2 : 4e-2;
}

static void check_matmul_case(struct gc *g, enum qtype t, int64_t n_in, int64_t n_out, int n, int accumulate, int n_w)
{
    char shape[96];
    snprintf(shape, sizeof shape, "%s %lldx%lld n=%d%s%s%s", qtype_name(t), (long long)n_out, (long long)n_in, n,
             accumulate ? " acc" : "", n_w > 1 ? " 3w" : "", getenv("INFERD_CUDA_BF16_COPIES") ? " no-bf16-copy" : "");
    struct hweight h[3];
    struct be_weight wc[3], wg[3];
    for (int i = 0; i < n_w; i++) {
        hweight_make(g, &h[i], t, n_in, n_out / (i ? 4 : 1));
        if (op_rc(g, "matmul", shape, prepare_both(g, &h[i], &wc[i], &wg[i]))) return;
    }
    size_t xc = (size_t)n * n_in;
    float *x = malloc(xc * 4);
    gc_fill(g, x, xc, 1.f);
    float *dx = gc_gpu_upload(g, x, xc * 4);
    struct be_matmul mc = { .x = x, .n = n, .n_w = n_w, .accumulate = accumulate }, mg = mc;
    mg.x = dx;
    float *init[3], *want[3], *exact[3];
    for (int i = 0; i < n_w; i++) {
        size_t yc = (size_t)n * h[i].n_out;
        init[i] = malloc(yc * 4);
        gc_fill(g, init[i], yc, accumulate ? 1.f : 0.f);
        want[i] = malloc(yc * 4);
        memcpy(want[i], init[i], yc * 4);
        exact[i] = malloc(yc * 4);
        ref_matmul(&h[i], x, n, exact[i]);
        if (accumulate)
            for (size_t k = 0; k < yc; k++) exact[i][k] += init[i][k];
        mc.w[i] = &wc[i];
        mc.y[i] = want[i];
        mg.w[i] = &wg[i];
        /* accumulate reads y: start from the same values; otherwise poison */
        mg.y[i] = gc_gpu_upload(g, accumulate ? init[i] : NULL, yc * 4);
    }
    g->cpu->ops->matmul(g->cpu, &mc);
    g->gpu->ops->reserve(g->gpu, n, &wg[0]);
    g->gpu->ops->matmul(g->gpu, &mg);
    for (int i = 0; i < n_w; i++) {
        size_t yc = (size_t)n * h[i].n_out;
        int rc;
        float *got = gc_gpu_download(g, mg.y[i], yc * 4, &rc);
        if (!op_rc(g, "matmul", shape, rc)) {
            gc_compare(g, "matmul/exact", shape, got, exact[i], yc, 0, tol_exact(n, t), 1);
            gc_compare(g, "matmul/cpu", shape, got, want[i], yc, 0, tol_cpu(n, t), 1);
        }
        free(got);
        free(init[i]);
        free(want[i]);
        free(exact[i]);
        g->gpu->ops->release(g->gpu, mg.y[i]);
        g->cpu->ops->weight_release(g->cpu, &wc[i]);
        g->gpu->ops->weight_release(g->gpu, &wg[i]);
        hweight_free(&h[i]);
    }
    RELEASE_GPU(g, dx);
    free(x);
}

static void check_matmul(struct gc *g)
{
    int ns_full[] = { 1, 3, 8, 9, 64 }, ns_quick[] = { 1, 9 };
    int *ns = g->quick ? ns_quick : ns_full, n_ns = g->quick ? 2 : 5;
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        enum qtype t = ALL_TYPES[ti];
        for (int i = 0; i < n_ns; i++) check_matmul_case(g, t, 1024, 384, ns[i], 0, 1);
        check_matmul_case(g, t, 4096, 512, 1, 1, 1);
        check_matmul_case(g, t, 4096, 512, 17, 1, 1);
        check_matmul_case(g, t, 768, 256, 1, 0, 3);
        check_matmul_case(g, t, 768, 256, 2, 0, 3);
        check_matmul_case(g, t, 768, 256, 33, 0, 3);
    }
    /* GEMMs again without resident bf16 copies: weights dequantized on the fly, in row chunks */
    setenv("INFERD_CUDA_BF16_COPIES", "0", 1);
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        check_matmul_case(g, ALL_TYPES[ti], 1024, 384, 12, 0, 1);
        check_matmul_case(g, ALL_TYPES[ti], 768, 256, 40, 1, 3);
    }
    if (!g->quick) check_matmul_case(g, QT_Q4_K, 4096, 8448, 9, 1, 1); /* 2 chunks of 64 MiB of bf16 rows */
    unsetenv("INFERD_CUDA_BF16_COPIES");
    /* a row count that is not a multiple of the GEMV block's 4 warps, and an odd float width */
    check_matmul_case(g, QT_BF16, 264, 131, 5, 0, 1);
    check_matmul_case(g, QT_F16, 1024, 261, 1, 1, 1); /* batch 1, two warps per row, an odd row count */
    check_matmul_case(g, QT_F32, 20, 7, 3, 1, 1);
}

static void check_swiglu_case(struct gc *g, enum qtype t, int64_t n_in, int64_t n_ff, int n)
{
    char shape[96];
    snprintf(shape, sizeof shape, "%s %lldx%lld n=%d", qtype_name(t), (long long)n_ff, (long long)n_in, n);
    struct hweight hg, hu;
    struct be_weight gc_, gu, gg, ggu;
    hweight_make(g, &hg, t, n_in, n_ff);
    hweight_make(g, &hu, t, n_in, n_ff);
    if (op_rc(g, "ffn_swiglu", shape, prepare_both(g, &hg, &gc_, &gg)) ||
        op_rc(g, "ffn_swiglu", shape, prepare_both(g, &hu, &gu, &ggu)))
        return;
    size_t xc = (size_t)n * n_in, hc = (size_t)n * n_ff;
    float *x = malloc(xc * 4), *want = malloc(hc * 4), *eg = malloc(hc * 4), *eu = malloc(hc * 4);
    float *eh = malloc(hc * 4), *b_exact = malloc(hc * 4), *b_cpu = malloc(hc * 4);
    gc_fill(g, x, xc, 1.f);
    g->cpu->ops->ffn_swiglu(g->cpu, x, n, &gc_, &gu, want);
    ref_matmul(&hg, x, n, eg);
    ref_matmul(&hu, x, n, eu);
    /* The bound is the matmul tolerance carried through h = silu(g) * u: an
     * error of e_g in the gate and e_u in the up row moves h by at most
     * |silu'(g)| |u| e_g + |silu(g)| e_u, with |silu'| <= 1.1 and e_g, e_u the
     * matmul check's rms-scaled tolerances. A flat bound on h's own rms fails
     * where |u| is large, which is where h is most sensitive to the gate. */
    double sg = 0, su = 0;
    for (size_t i = 0; i < hc; i++) sg += (double)eg[i] * eg[i], su += (double)eu[i] * eu[i];
    double rms_g = sqrt(sg / (double)hc), rms_u = sqrt(su / (double)hc);
    for (size_t i = 0; i < hc; i++) {
        double gate = eg[i], silu = gate / (1.0 + exp(-gate));
        double spread = 1.1 * fabs((double)eu[i]) * rms_g + fabs(silu) * rms_u;
        eh[i] = (float)(silu * eu[i]);
        b_exact[i] = (float)(1e-6 + tol_exact(n, t) * spread);
        b_cpu[i] = (float)(1e-6 + tol_cpu(n, t) * spread);
    }
    float *dx = gc_gpu_upload(g, x, xc * 4), *dh = gc_gpu_upload(g, NULL, hc * 4);
    g->gpu->ops->reserve(g->gpu, n, &gg);
    g->gpu->ops->ffn_swiglu(g->gpu, dx, n, &gg, &ggu, dh);
    int rc;
    float *got = gc_gpu_download(g, dh, hc * 4, &rc);
    if (!op_rc(g, "ffn_swiglu", shape, rc)) {
        compare_bounded(g, "swiglu/exact", shape, got, eh, hc, 0, 0, 0, b_exact);
        compare_bounded(g, "swiglu/cpu", shape, got, want, hc, 0, 0, 0, b_cpu);
    }
    free(eh);
    free(b_exact);
    free(b_cpu);
    free(got);
    free(x);
    free(want);
    free(eg);
    free(eu);
    RELEASE_GPU(g, dx, dh);
    g->cpu->ops->weight_release(g->cpu, &gc_);
    g->cpu->ops->weight_release(g->cpu, &gu);
    g->gpu->ops->weight_release(g->gpu, &gg);
    g->gpu->ops->weight_release(g->gpu, &ggu);
    hweight_free(&hg);
    hweight_free(&hu);
}

static void check_swiglu(struct gc *g)
{
    for (size_t ti = 0; ti < N_TYPES; ti++) {
        check_swiglu_case(g, ALL_TYPES[ti], 512, 1536, 1);
        check_swiglu_case(g, ALL_TYPES[ti], 512, 1536, 6);
        check_swiglu_case(g, ALL_TYPES[ti], 512, 1536, 24);
    }
}

/* gemv.cu's batch-1 variants against the one-warp-per-row kernel on the same
 * device data: ik_gemv_half_rows (two warps per row) and ik_gemv_rms_norm
 * (the input RMSNorm folded in; reference: ik_rms_norm, then the GEMV).
 * Only the order of float sums differs (and the norm's sum of squares, float
 * instead of double), so 1e-5 x rms. Shapes: stacked Q/K/V with an odd row
 * count (part of a block), O accumulating, SwiGLU; every one above the
 * 8,192 rows up to which the production path is ik_gemv_half_rows itself, so
 * that the reference is the one-warp kernel. (The production path at small
 * row counts is checked against the CPU by the matmul and swiglu ops.) */
enum gemv_experiment { EXP_HALF_ROWS, EXP_RMS_NORM };

static void check_gemv_experiment_case(struct gc *g, enum gemv_experiment e, enum qtype t, int64_t n_in,
                                       const int64_t *rows, int n_w, int up, int accumulate)
{
    const char *op = e == EXP_HALF_ROWS ? "gemv_half_rows" : "gemv_rms_norm";
    char shape[96];
    snprintf(shape, sizeof shape, "%s %lldx%lld%s%s%s", qtype_name(t), (long long)rows[0], (long long)n_in,
             n_w > 1 ? " +2w" : "", up ? " swiglu" : "", accumulate ? " acc" : "");
    size_t rb = qtype_row_bytes(t, n_in), total_rows = 0;
    for (int i = 0; i < n_w; i++) total_rows += (size_t)rows[i];
    size_t wbytes = rb * total_rows * (up ? 2 : 1);
    uint8_t *hw = malloc(wbytes);
    float *row = malloc((size_t)n_in * 4), *x = malloc((size_t)n_in * 4), *nw = malloc((size_t)n_in * 4);
    float *y0 = malloc(total_rows * 4);
    for (size_t r = 0; r < total_rows * (up ? 2 : 1); r++) {
        gc_fill(g, row, (size_t)n_in, 0.05f);
        quant_row(t, row, hw + r * rb, n_in);
    }
    gc_fill(g, x, (size_t)n_in, 3.f);
    gc_fill(g, nw, (size_t)n_in, 1.5f);
    gc_fill(g, y0, total_rows, accumulate ? 1.f : 0.f);
    uint8_t *dw = gc_gpu_upload(g, hw, wbytes);
    float *dx = gc_gpu_upload(g, x, (size_t)n_in * 4), *dnw = gc_gpu_upload(g, nw, (size_t)n_in * 4);
    float *dxn = gc_gpu_upload(g, NULL, (size_t)n_in * 4);
    float *dy_ref = gc_gpu_upload(g, y0, total_rows * 4), *dy = gc_gpu_upload(g, y0, total_rows * 4);
    const void *w[3];
    float *y_ref[3], *y[3];
    size_t at = 0;
    for (int i = 0; i < n_w; i++) {
        w[i] = dw + at * rb;
        y_ref[i] = dy_ref + at;
        y[i] = dy + at;
        at += (size_t)rows[i];
    }
    const void *w_up = up ? dw + total_rows * rb : NULL;
    g->gpu->ops->sync(g->gpu); /* uploads ran on the backend's stream; these kernels on the default one */
    int rc = 0;
    const float *xin = dx;
    if (e == EXP_RMS_NORM) {
        rc = ik_rms_norm(dx, dnw, dxn, 1, (int)n_in, 1e-5f, NULL);
        xin = dxn;
    }
    if (!rc)
        rc = up ? ik_gemv(w[0], w_up, (int)t, xin, 1, n_in, rows[0], y_ref[0], 0, NULL)
                : ik_gemv_multi(w, rows, y_ref, n_w, (int)t, xin, 1, n_in, accumulate, NULL);
    if (!rc)
        rc = e == EXP_HALF_ROWS
                 ? ik_gemv_half_rows(w, rows, y, n_w, w_up, (int)t, dx, n_in, accumulate, NULL)
                 : ik_gemv_rms_norm(w, rows, y, n_w, w_up, (int)t, dx, dnw, 1e-5f, n_in, accumulate, NULL);
    if (!rc) rc = (int)cudaDeviceSynchronize();
    if (rc) {
        gc_record(g, op, shape, 0, "CUDA error %d", rc);
    } else {
        int rc2;
        float *want = gc_gpu_download(g, dy_ref, total_rows * 4, &rc2);
        expect_gpu(g, op, shape, dy, want, total_rows, 1e-6, 1e-5, 1);
        free(want);
    }
    free(hw);
    free(row);
    free(x);
    free(nw);
    free(y0);
    RELEASE_GPU(g, dw, dx, dnw, dxn, dy_ref, dy);
}

static void check_gemv_experiments(struct gc *g)
{
    const enum qtype types[2] = { QT_BF16, QT_F16 };
    const int64_t qkv[3] = { 8193, 128, 128 }, o[1] = { 8203 }, ff[1] = { 8301 };
    for (int e = EXP_HALF_ROWS; e <= EXP_RMS_NORM; e++)
        for (int i = 0; i < 2; i++) {
            /* short rows keep 8,000-odd of them small (memcheck runs these too) */
            check_gemv_experiment_case(g, e, types[i], 1024, qkv, 3, 0, 0);
            check_gemv_experiment_case(g, e, types[i], 512, o, 1, 0, 1);
            check_gemv_experiment_case(g, e, types[i], 256, ff, 1, 1, 0);
        }
}

/* ---- RoPE ---- */

static void check_rope(struct gc *g)
{
    struct { int n, n_head, n_head_kv, head_dim, rope_dim, neox, factors; } cases[] = {
        { 5, 32, 8, 128, 128, 0, 0 }, { 33, 9, 3, 64, 64, 1, 0 }, { 17, 32, 8, 128, 128, 0, 1 },
        { 4, 8, 8, 128, 64, 1, 1 }, { 64, 4, 2, 32, 32, 0, 0 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int n = cases[c].n, hd = cases[c].head_dim, qd = cases[c].n_head * hd, kd = cases[c].n_head_kv * hd;
        char shape[96];
        snprintf(shape, sizeof shape, "n=%d %d/%d heads x %d, rot %d%s%s", n, cases[c].n_head, cases[c].n_head_kv, hd,
                 cases[c].rope_dim, cases[c].neox ? " neox" : "", cases[c].factors ? " freq_factors" : "");
        float *q = malloc((size_t)n * qd * 4), *k = malloc((size_t)n * kd * 4);
        gc_fill(g, q, (size_t)n * qd, 2.f);
        gc_fill(g, k, (size_t)n * kd, 2.f);
        int32_t *pos = malloc((size_t)n * 4);
        for (int i = 0; i < n; i++) pos[i] = i == 0 ? 0 : (int32_t)(rng_next(&g->rng) % 8192);
        float ff[256];
        for (int i = 0; i < cases[c].rope_dim / 2; i++) ff[i] = 1.f + 7.f * rng_uniform(&g->rng);
        float *dq = gc_gpu_upload(g, q, (size_t)n * qd * 4), *dk = gc_gpu_upload(g, k, (size_t)n * kd * 4);
        struct be_rope r = { .q = q, .k = k, .n = n, .n_head = cases[c].n_head, .n_head_kv = cases[c].n_head_kv,
                             .head_dim = hd, .rope_dim = cases[c].rope_dim, .neox = cases[c].neox, .positions = pos,
                             .theta_scale = powf(500000.f, -2.f / (float)cases[c].rope_dim), .freq_scale = 1.f,
                             .freq_factors = cases[c].factors ? ff : NULL };
        g->cpu->ops->rope(g->cpu, &r);
        r.q = dq;
        r.k = dk;
        g->gpu->ops->rope(g->gpu, &r);
        int rc;
        float *gq = gc_gpu_download(g, dq, (size_t)n * qd * 4, &rc);
        float *gk = gc_gpu_download(g, dk, (size_t)n * kd * 4, &rc);
        /* same angles bit for bit; cosf/sinf differ by an ulp or two between libm and CUDA */
        if (!op_rc(g, "rope", shape, rc)) {
            gc_compare(g, "rope/q", shape, gq, q, (size_t)n * qd, 2e-6, 2e-6, 0);
            gc_compare(g, "rope/k", shape, gk, k, (size_t)n * kd, 2e-6, 2e-6, 0);
        }
        free(gq);
        free(gk);
        free(q);
        free(k);
        free(pos);
        RELEASE_GPU(g, dq, dk);
    }
}

/* Two f16 caches agree when unwritten (NaN) slots match and written halves
 * differ by at most one f16 rounding of inputs that differ by an ulp. */
static void compare_f16_caches(struct gc *g, const char *op, const char *shape, const f16_t *got, const f16_t *want,
                               size_t n)
{
    size_t nan_mismatch = 0, written = 0;
    double max_rel = 0;
    for (size_t i = 0; i < n; i++) {
        float a = f16_to_f32(got[i]), b = f16_to_f32(want[i]);
        if (isnan(a) || isnan(b)) {
            nan_mismatch += isnan(a) != isnan(b);
            continue;
        }
        written++;
        double rel = fabs((double)a - b) / (fabs((double)b) + 1e-3);
        if (rel > max_rel) max_rel = rel;
    }
    gc_record(g, op, shape, nan_mismatch == 0 && written > 0 && max_rel <= 2e-3,
              "%zu halves written, %zu written/unwritten mismatches, max rel err %.3g (allowed 2e-3)", written,
              nan_mismatch, max_rel);
}

/* The fused RoPE + KV store against the CPU's rope then kv_store: q and k
 * rotated in place as rope does, the rotated k (unrotated tail included) and
 * v at their slots, slot -1 skipped. */
static void check_rope_kv_store(struct gc *g)
{
    struct { int n, n_head, n_head_kv, head_dim, rope_dim, neox; } cases[] = {
        { 1, 32, 8, 128, 128, 0 }, { 9, 9, 3, 64, 64, 1 }, { 6, 8, 2, 128, 64, 1 }, { 5, 4, 4, 80, 32, 0 },
    };
    const int bs = 16, n_blocks = 8;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int n = cases[c].n, hd = cases[c].head_dim, qd = cases[c].n_head * hd, kd = cases[c].n_head_kv * hd;
        char shape[96];
        snprintf(shape, sizeof shape, "n=%d %d/%d heads x %d, rot %d%s", n, cases[c].n_head, cases[c].n_head_kv, hd,
                 cases[c].rope_dim, cases[c].neox ? " neox" : "");
        size_t cache = (size_t)n_blocks * bs * kd;
        float *q = malloc((size_t)n * qd * 4), *k = malloc((size_t)n * kd * 4), *v = malloc((size_t)n * kd * 4);
        f16_t *kc = malloc(cache * 2), *vc = malloc(cache * 2);
        for (size_t i = 0; i < cache; i++) kc[i] = vc[i] = 0x7E00;
        gc_fill(g, q, (size_t)n * qd, 2.f);
        gc_fill(g, k, (size_t)n * kd, 2.f);
        gc_fill(g, v, (size_t)n * kd, 2.f);
        int32_t pos[16], slots[16];
        for (int i = 0; i < n; i++) {
            pos[i] = (int32_t)(rng_next(&g->rng) % 8192);
            slots[i] = i % 4 == 2 ? -1 : (int32_t)((i * 29 + 3) % (n_blocks * bs));
        }
        float *dq = gc_gpu_upload(g, q, (size_t)n * qd * 4), *dk = gc_gpu_upload(g, k, (size_t)n * kd * 4);
        float *dv = gc_gpu_upload(g, v, (size_t)n * kd * 4);
        f16_t *dkc = gc_gpu_upload(g, kc, cache * 2), *dvc = gc_gpu_upload(g, vc, cache * 2);
        struct be_rope r = { .q = q, .k = k, .n = n, .n_head = cases[c].n_head, .n_head_kv = cases[c].n_head_kv,
                             .head_dim = hd, .rope_dim = cases[c].rope_dim, .neox = cases[c].neox, .positions = pos,
                             .theta_scale = powf(10000.f, -2.f / (float)cases[c].rope_dim), .freq_scale = 1.f };
        g->cpu->ops->rope(g->cpu, &r);
        g->cpu->ops->kv_store(g->cpu, (struct be_kv_layer){ kc, vc, KV_F16 }, k, v, n, kd, slots);
        r.q = dq;
        r.k = dk;
        g->gpu->ops->rope_kv_store(g->gpu, &r, (struct be_kv_layer){ dkc, dvc, KV_F16 }, dv, slots);
        int rc;
        float *gq = gc_gpu_download(g, dq, (size_t)n * qd * 4, &rc);
        float *gk = gc_gpu_download(g, dk, (size_t)n * kd * 4, &rc);
        f16_t *gkc = gc_gpu_download(g, dkc, cache * 2, &rc), *gvc = gc_gpu_download(g, dvc, cache * 2, &rc);
        if (!op_rc(g, "rope+kv_store", shape, rc)) {
            gc_compare(g, "rope+kv_store/q", shape, gq, q, (size_t)n * qd, 2e-6, 2e-6, 0);
            gc_compare(g, "rope+kv_store/k", shape, gk, k, (size_t)n * kd, 2e-6, 2e-6, 0);
            compare_f16_caches(g, "rope+kv_store/kc", shape, gkc, kc, cache);
            compare_f16_caches(g, "rope+kv_store/vc", shape, gvc, vc, cache);
        }
        free(gq);
        free(gk);
        free(gkc);
        free(gvc);
        free(q);
        free(k);
        free(v);
        free(kc);
        free(vc);
        RELEASE_GPU(g, dq, dk, dv, dkc, dvc);
    }
}

/* ---- KV store and copy, row gathers ---- */

static void check_kv(struct gc *g)
{
    const int n_blocks = 64, bs = 16, kv_dim = 1024, n = 40;
    size_t cache = (size_t)n_blocks * bs * kv_dim;
    f16_t *kc = malloc(cache * 2), *vc = malloc(cache * 2);
    for (size_t i = 0; i < cache; i++) kc[i] = vc[i] = 0x7E00; /* f16 NaN: slots no one writes stay NaN in both */
    float *k = malloc((size_t)n * kv_dim * 4), *v = malloc((size_t)n * kv_dim * 4);
    gc_fill(g, k, (size_t)n * kv_dim, 4.f);
    gc_fill(g, v, (size_t)n * kv_dim, 4.f);
    int32_t slots[40];
    for (int i = 0; i < n; i++) slots[i] = i % 7 == 3 ? -1 : (int32_t)(i * 13 + 5) % (n_blocks * bs);
    f16_t *dkc = gc_gpu_upload(g, kc, cache * 2), *dvc = gc_gpu_upload(g, vc, cache * 2);
    float *dk = gc_gpu_upload(g, k, (size_t)n * kv_dim * 4), *dv = gc_gpu_upload(g, v, (size_t)n * kv_dim * 4);
    g->cpu->ops->kv_store(g->cpu, (struct be_kv_layer){ kc, vc, KV_F16 }, k, v, n, kv_dim, slots);
    g->gpu->ops->kv_store(g->gpu, (struct be_kv_layer){ dkc, dvc, KV_F16 }, dk, dv, n, kv_dim, slots);
    /* then copy-on-write of a few blocks, over the stored content */
    int32_t src[5] = { 0, 3, 10, 40, 2 }, dst[5] = { 50, 51, 63, 1, 60 };
    g->cpu->ops->kv_copy(g->cpu, (struct be_kv_layer){ kc, vc, KV_F16 }, src, dst, 5, (size_t)bs * kv_dim * 2);
    g->gpu->ops->kv_copy(g->gpu, (struct be_kv_layer){ dkc, dvc, KV_F16 }, src, dst, 5, (size_t)bs * kv_dim * 2);
    int rc;
    f16_t *gk = gc_gpu_download(g, dkc, cache * 2, &rc), *gv = gc_gpu_download(g, dvc, cache * 2, &rc);
    const char *shape = "64 blocks x 16 x 1024, 40 rows, 5 copies";
    if (!op_rc(g, "kv_store+copy", shape, rc)) {
        /* bitwise: both round to nearest even; NaN slots must match NaN slots */
        size_t diff = 0;
        for (size_t i = 0; i < cache; i++) diff += gk[i] != kc[i] || gv[i] != vc[i];
        size_t written = 0;
        for (size_t i = 0; i < cache; i++) written += kc[i] != 0x7E00;
        gc_record(g, "kv_store+copy", shape, diff == 0 && written > 0, "%zu of %zu halves differ (%zu written)", diff,
                  cache * 2, written);
    }
    free(gk);
    free(gv);
    free(kc);
    free(vc);
    free(k);
    free(v);
    RELEASE_GPU(g, dkc, dvc, dk, dv);
}

static void check_gather(struct gc *g)
{
    const int rows = 70, dim = 4096, n = 9;
    float *src = malloc((size_t)rows * dim * 4), *want = malloc((size_t)n * dim * 4);
    gc_fill(g, src, (size_t)rows * dim, 5.f);
    int32_t idx[9] = { 0, 5, 6, 20, 21, 22, 50, 68, 69 };
    g->cpu->ops->gather_rows(g->cpu, src, idx, n, dim, want);
    float *dsrc = gc_gpu_upload(g, src, (size_t)rows * dim * 4), *dd = gc_gpu_upload(g, NULL, (size_t)n * dim * 4);
    g->gpu->ops->gather_rows(g->gpu, dsrc, idx, n, dim, dd);
    expect_gpu(g, "gather_rows", "9 of 70 rows x 4096", dd, want, (size_t)n * dim, 0, 0, 0);
    free(src);
    free(want);
    RELEASE_GPU(g, dsrc, dd);
}

/* ---- attention ---- */

struct attn_case {
    const char *name;
    int n_head, n_head_kv, head_dim, block_size;
    int n_seqs;
    int q_len[6], ctx[6]; /* query rows and visible context (after this step's stores) per sequence */
    int inplace;          /* out == q, as the model's workspace has it */
};

static void check_attention_case(struct gc *g, const struct attn_case *ac)
{
    int hd = ac->head_dim, bs = ac->block_size, qd = ac->n_head * hd, kv_dim = ac->n_head_kv * hd;
    int max_blocks = 0, n_tokens = 0, total_blocks = 0;
    for (int s = 0; s < ac->n_seqs; s++) {
        int nb = (ac->ctx[s] + bs - 1) / bs;
        max_blocks = nb > max_blocks ? nb : max_blocks;
        total_blocks += nb;
        n_tokens += ac->q_len[s];
    }
    int n_pool = total_blocks + 3;
    /* block tables: a random permutation of the pool, so sequences interleave */
    int32_t *perm = malloc((size_t)n_pool * 4), *tables = calloc((size_t)ac->n_seqs * max_blocks, 4);
    for (int i = 0; i < n_pool; i++) perm[i] = i;
    for (int i = n_pool - 1; i > 0; i--) {
        int j = (int)(rng_next(&g->rng) % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    int32_t qs[7], ctx[6], *pos = malloc((size_t)n_tokens * 4);
    int used = 0;
    qs[0] = 0;
    for (int s = 0; s < ac->n_seqs; s++) {
        int nb = (ac->ctx[s] + bs - 1) / bs;
        for (int b = 0; b < nb; b++) tables[s * max_blocks + b] = perm[used++];
        qs[s + 1] = qs[s] + ac->q_len[s];
        ctx[s] = ac->ctx[s];
        for (int r = 0; r < ac->q_len[s]; r++) pos[qs[s] + r] = ac->ctx[s] - ac->q_len[s] + r;
    }
    size_t cache = (size_t)n_pool * bs * kv_dim;
    f16_t *kc = malloc(cache * 2), *vc = malloc(cache * 2);
    float *tmp = malloc(cache * 4);
    gc_fill(g, tmp, cache, 2.f);
    for (size_t i = 0; i < cache; i++) kc[i] = f32_to_f16(tmp[i]);
    gc_fill(g, tmp, cache, 1.f);
    for (size_t i = 0; i < cache; i++) vc[i] = f32_to_f16(tmp[i]);
    free(tmp);
    size_t qc = (size_t)n_tokens * qd;
    float *q = malloc(qc * 4), *want = malloc(qc * 4);
    gc_fill(g, q, qc, 1.f);
    struct batch_plan p = { .n_tokens = n_tokens, .positions = pos, .n_seqs = ac->n_seqs, .query_start = qs,
                            .context_len = ctx, .block_tables = tables, .max_blocks = max_blocks };
    struct be_attention a = { .q = q, .out = want, .kv = { kc, vc }, .n_head = ac->n_head, .n_head_kv = ac->n_head_kv,
                              .head_dim = hd, .block_size = bs, .scale = 1.f / sqrtf((float)hd), .plan = &p };
    g->cpu->ops->attention(g->cpu, &a);
    int rc = g->cpu->ops->sync(g->cpu);
    f16_t *dk = gc_gpu_upload(g, kc, cache * 2), *dv = gc_gpu_upload(g, vc, cache * 2);
    float *dq = gc_gpu_upload(g, q, qc * 4), *dout = ac->inplace ? dq : gc_gpu_upload(g, NULL, qc * 4);
    a.q = dq;
    a.out = dout;
    a.kv = (struct be_kv_layer){ dk, dv, KV_F16 };
    g->gpu->ops->attention(g->gpu, &a);
    char shape[96];
    snprintf(shape, sizeof shape, "%s h%d/%d d%d bs%d%s", ac->name, ac->n_head, ac->n_head_kv, hd, bs,
             ac->inplace ? " in place" : "");
    /* the CPU rounds softmax weights to half before weighting V; the GPU keeps them in float */
    if (!op_rc(g, "attention", shape, rc)) expect_gpu(g, "attention", shape, dout, want, qc, 2e-3, 2e-3, 0);
    free(q);
    free(want);
    free(kc);
    free(vc);
    free(perm);
    free(tables);
    free(pos);
    RELEASE_GPU(g, dk, dv, dq, ac->inplace ? NULL : dout);
}

static void check_attention(struct gc *g)
{
    const struct attn_case cases[] = {
        { "decode b1 ctx1", 32, 8, 128, 16, 1, { 1 }, { 1 }, 0 },
        { "decode b1 ctx4100 (split)", 32, 8, 128, 16, 1, { 1 }, { 4100 }, 1 },
        { "decode b1 ctx4096 (64 splits)", 16, 2, 128, 16, 1, { 1 }, { 4096 }, 1 },
        { "decode b5 mixed ctx", 32, 8, 128, 16, 5, { 1, 1, 1, 1, 1 }, { 17, 300, 2000, 33, 5000 }, 0 },
        { "prefill 100 over prefix 600", 32, 8, 128, 16, 1, { 100 }, { 700 }, 1 },
        { "mixed decode+prefill", 9, 3, 64, 16, 3, { 1, 45, 1 }, { 800, 45, 3 }, 0 },
        { "mha prefill", 16, 16, 64, 32, 2, { 20, 7 }, { 20, 300 }, 1 },
        { "gqa8 d256 decode", 16, 2, 256, 16, 2, { 1, 1 }, { 999, 64 }, 0 },
        { "gqa8 d256 prefill", 16, 2, 256, 16, 1, { 37 }, { 90 }, 0 },
        { "d80 odd block", 8, 2, 80, 8, 2, { 3, 1 }, { 50, 7 }, 0 },
    };
    size_t nc = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < nc; i++) check_attention_case(g, &cases[i]);
}

/* ---- main ---- */

static int open_backends(struct gc *g)
{
    char err[256];
    struct backend_opts co = { .device = "cpu" }, go = { .device = "cuda" };
    if (backend_create(&g->cpu, &co, err, sizeof err)) {
        fprintf(stderr, "cpu backend: %s\n", err);
        return 2;
    }
    if (backend_create(&g->gpu, &go, err, sizeof err)) {
        fprintf(stderr, "cuda backend: %s\n", err);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct gc g = { 0 };
    uint64_t seed = 0x5eed;
    int ops = 0, n_greedy = 0;
    const char *greedy[8], *bench = NULL, *results = NULL, *graphs = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) g.quick = 1;
        else if (!strcmp(argv[i], "--ops")) ops = 1;
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--results") && i + 1 < argc) results = argv[++i];
        else if (!strcmp(argv[i], "--greedy") && i + 1 < argc && n_greedy < 8) greedy[n_greedy++] = argv[++i];
        else if (!strcmp(argv[i], "--bench") && i + 1 < argc) bench = argv[++i];
        else if (!strcmp(argv[i], "--graphs") && i + 1 < argc) graphs = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--quick] [--seed N] [--results FILE] [--ops] [--greedy PRESET:TYPE]... "
                            "[--graphs PRESET:TYPE] [--bench PRESET:TYPE]\n", argv[0]);
            return 2;
        }
    }
    if (!ops && !n_greedy && !bench && !graphs) ops = 1;
    log_set_level(LOG_LEVEL_INFO);
    rng_seed(&g.rng, seed);
    if (results && !(g.results = fopen(results, "a"))) {
        fprintf(stderr, "cannot open %s\n", results);
        return 2;
    }
    int rc = open_backends(&g);
    if (rc) return rc;
    printf("seed 0x%llx\n", (unsigned long long)seed);
    if (ops) {
        check_embed(&g);
        check_rms_norm(&g);
        check_rope(&g);
        check_rope_kv_store(&g);
        check_kv(&g);
        check_gather(&g);
        check_attention(&g);
        check_matmul(&g);
        check_swiglu(&g);
        check_gemv_experiments(&g);
    }
    for (int i = 0; i < n_greedy; i++) {
        char preset[512], type[16];
        /* PRESET:TYPE, or a GGUF file (models/x.gguf) */
        if (sscanf(greedy[i], "%511[^:]:%15s", preset, type) != 2 &&
            !(strlen(greedy[i]) < sizeof preset && sscanf(greedy[i], "%511s", preset) == 1 && (type[0] = 0, 1)))
            return 2;
        gc_model_greedy(&g, preset, type, 5, 32);
    }
    if (graphs) {
        char preset[64], type[16];
        if (sscanf(graphs, "%63[^:]:%15s", preset, type) != 2) return 2;
        gc_model_graphs(&g, preset, type);
    }
    if (bench) {
        char preset[64], type[16];
        if (sscanf(bench, "%63[^:]:%15s", preset, type) != 2) return 2;
        gc_bench(&g, preset, type, g.results);
    }
    printf("%d passed, %d failed\n", g.n_pass, g.n_fail);
    backend_destroy(g.gpu);
    backend_destroy(g.cpu);
    if (g.results) fclose(g.results);
    return g.n_fail ? 1 : 0;
}
