/* SPDX-License-Identifier: Apache-2.0
 *
 * cpu_backend.c: the CPU implementation of backend.h: memory, weight
 * preparation (repacking into the kernel set's layout), and the light ops
 * (embedding, RMSNorm, row gathers). Matmuls live in cpu_matmul.c, attention
 * and RoPE in cpu_attention.c.
 *
 * Small ops on a handful of rows run on the calling thread: waking the pool
 * costs more than normalizing one 576-float vector.
 *
 * Layer: backend/cpu.
 */
#include "cpu_backend.h"
#include "inferd/error.h"
#include "inferd/log.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PARALLEL_MIN_ROWS 8

void *cpu_scratch_get(struct cpu_scratch *s, size_t n)
{
    if (n <= s->cap) return s->ptr;
    size_t cap = (n + 4095) & ~(size_t)4095;
    void *p = aligned_alloc(64, cap);
    if (!p) return NULL;
    free(s->ptr);
    s->ptr = p;
    s->cap = cap;
    return p;
}

/* ---- memory ---- */

/* Large buffers (the KV pool) come straight from mmap: zero pages cost no
 * memory until written, so a generous pool does not inflate RSS until used.
 * A 64-byte header before each buffer records how to give it back. */
#define MMAP_MIN_BYTES (2u << 20)
#define HDR 64u

struct alloc_hdr {
    size_t map_bytes; /* 0: from aligned_alloc */
};

static void *cpu_alloc(struct backend *be, size_t nbytes)
{
    (void)be;
    size_t n = (nbytes + 63) & ~(size_t)63;
    if (n >= MMAP_MIN_BYTES) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE), map = n + page;
        uint8_t *base = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED) return NULL;
        uint8_t *user = base + page; /* page aligned, header in the page before */
        ((struct alloc_hdr *)(user - HDR))->map_bytes = map;
        return user;
    }
    uint8_t *p = aligned_alloc(64, HDR + (n ? n : 64));
    if (!p) return NULL;
    memset(p, 0, HDR + n);
    return p + HDR;
}

static void cpu_release(struct backend *be, void *p)
{
    (void)be;
    if (!p) return;
    uint8_t *user = p;
    size_t map = ((struct alloc_hdr *)(user - HDR))->map_bytes;
    if (map) munmap(user - (size_t)sysconf(_SC_PAGESIZE), map);
    else free(user - HDR);
}

static void cpu_copy(struct backend *be, void *dst, const void *src, size_t n)
{
    (void)be;
    memcpy(dst, src, n);
}

static int cpu_sync(struct backend *be)
{
    struct cpu_ctx *c = cpu_ctx(be);
    int rc = c->error;
    c->error = 0;
    return rc;
}

static int cpu_reserve(struct backend *be, int max_tokens, const struct be_weight *w)
{
    enum cpu_act f = cpu_act_for(w->type);
    if (f == CPU_ACT_F32) return 0; /* float weights read the activations as they are */
    size_t need = cpu_act_row_bytes(f, w->n_in) * (size_t)max_tokens;
    return cpu_scratch_get(&cpu_ctx(be)->act[f], need) ? 0 : IFD_ERR_NOMEM;
}

/* ---- weights ---- */

cpu_gemm_fn cpu_gemm_for(const struct cpu_ctx *c, const struct be_weight *w)
{
    if (w->layout == CPU_LAYOUT_X8) return c->k->gemm_x8[w->type];
    return c->k->gemm[w->type] ? c->k->gemm[w->type] : cpu_kernels_scalar.gemm[w->type];
}

/* Repacks in place, one 8-row group at a time: group g of the X8 layout covers
 * exactly the bytes of rows 8g..8g+7, so a group-sized buffer suffices. */
static int repack_in_place(enum qtype t, void *data, int64_t n_in, int64_t n_out)
{
    size_t group_bytes = 8 * qtype_row_bytes(t, n_in);
    uint8_t *tmp = malloc(group_bytes);
    if (!tmp) return IFD_ERR_NOMEM;
    for (int64_t g = 0; g < n_out / 8; g++) {
        uint8_t *p = (uint8_t *)data + (size_t)g * group_bytes;
        memcpy(tmp, p, group_bytes);
        cpu_repack_x8(t, tmp, p, n_in, 8);
    }
    free(tmp);
    return 0;
}

static int cpu_weight_prepare(struct backend *be, struct be_weight *w, enum qtype type, int64_t n_in, int64_t n_out,
                              void *src, int src_writable)
{
    struct cpu_ctx *c = cpu_ctx(be);
    const struct qtype_info *ti = qtype_get(type);
    memset(w, 0, sizeof *w);
    if (!ti || !cpu_kernels_scalar.gemm[type]) return IFD_ERR_UNSUPPORTED;
    if (n_in <= 0 || n_out <= 0 || n_in % ti->block) return IFD_ERR_INVALID;
    w->type = type;
    w->n_in = n_in;
    w->n_out = n_out;
    w->data = src;
    if (!c->k->gemm_x8[type] || n_out % 8) return 0;
    w->layout = CPU_LAYOUT_X8;
    if (src_writable) return repack_in_place(type, src, n_in, n_out);
    size_t bytes = qtype_row_bytes(type, n_in) * (size_t)n_out;
    w->owned = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!w->owned) return IFD_ERR_NOMEM;
    cpu_repack_x8(type, src, w->owned, n_in, n_out);
    w->data = w->owned;
    return 0;
}

static void cpu_weight_release(struct backend *be, struct be_weight *w)
{
    (void)be;
    free(w->owned);
    memset(w, 0, sizeof *w);
}

/* ---- light ops ---- */

struct rows_job {
    struct cpu_ctx *c;
    const struct be_weight *table;
    const int32_t *ids;
    const float *x, *w;
    float *out;
    int n, dim;
    float eps;
};

static void embed_rows(void *arg, int ith, int nth)
{
    struct rows_job *j = arg;
    int64_t lo, hi;
    cpu_split(j->n, ith, nth, &lo, &hi);
    const struct be_weight *t = j->table;
    for (int64_t i = lo; i < hi; i++)
        cpu_weight_row_dequant(t->type, t->layout, t->data, t->n_in, t->n_out, j->ids[i], j->out + i * t->n_in);
}

static void cpu_embed(struct backend *be, const struct be_weight *table, const int32_t *ids, int n, float *out)
{
    struct rows_job j = { .c = cpu_ctx(be), .table = table, .ids = ids, .out = out, .n = n };
    if (n < PARALLEL_MIN_ROWS) embed_rows(&j, 0, 1);
    else pool_run(j.c->pool, embed_rows, &j);
}

static void norm_rows(void *arg, int ith, int nth)
{
    struct rows_job *j = arg;
    int64_t lo, hi;
    cpu_split(j->n, ith, nth, &lo, &hi);
    for (int64_t i = lo; i < hi; i++) j->c->k->rms_norm(j->x + i * j->dim, j->w, j->out + i * j->dim, j->dim, j->eps);
}

static void cpu_rms_norm(struct backend *be, const float *x, const float *w, float *out, int n, int dim, float eps)
{
    struct rows_job j = { .c = cpu_ctx(be), .x = x, .w = w, .out = out, .n = n, .dim = dim, .eps = eps };
    if (n < PARALLEL_MIN_ROWS) norm_rows(&j, 0, 1);
    else pool_run(j.c->pool, norm_rows, &j);
}

static void cpu_kv_copy(struct backend *be, struct be_kv_layer kv, const int32_t *src, const int32_t *dst, int n,
                        size_t block_bytes)
{
    (void)be;
    uint8_t *k = kv.k, *v = kv.v;
    for (int i = 0; i < n; i++) {
        memcpy(k + (size_t)dst[i] * block_bytes, k + (size_t)src[i] * block_bytes, block_bytes);
        memcpy(v + (size_t)dst[i] * block_bytes, v + (size_t)src[i] * block_bytes, block_bytes);
    }
}

static int cpu_kv_dtype_supported(struct backend *be, enum kv_dtype t)
{
    (void)be;
    return t == KV_F16 || t == KV_Q8_0;
}

static void cpu_gather_rows(struct backend *be, const float *src, const int32_t *rows, int n, int dim, float *dst)
{
    (void)be;
    for (int i = 0; i < n; i++) memcpy(dst + (size_t)i * dim, src + (size_t)rows[i] * dim, (size_t)dim * sizeof *dst);
}

static void cpu_destroy(struct backend *be)
{
    struct cpu_ctx *c = cpu_ctx(be);
    pool_free(c->pool);
    for (int i = 0; i < 3; i++) free(c->act[i].ptr);
    free(c->attn.ptr);
    free(c->attn_tasks.ptr);
    free(c);
    free(be);
}

static const struct backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .copy_in = cpu_copy,
    .copy_out = cpu_copy,
    .sync = cpu_sync,
    .reserve = cpu_reserve,
    .weight_prepare = cpu_weight_prepare,
    .weight_release = cpu_weight_release,
    .embed = cpu_embed,
    .rms_norm = cpu_rms_norm,
    .matmul = cpu_matmul,
    .ffn_swiglu = cpu_ffn_swiglu,
    .rope = cpu_rope,
    .kv_store = cpu_kv_store,
    .kv_dtype_supported = cpu_kv_dtype_supported,
    .attention = cpu_attention,
    .kv_copy = cpu_kv_copy,
    .gather_rows = cpu_gather_rows,
};

static int pick_kernels(struct cpu_ctx *c, const char *isa, char *err, size_t errlen)
{
    int have_avx2 = c->feat.avx2 && c->feat.fma && c->feat.f16c;
    int have_avx512 = have_avx2 && c->feat.avx512f && c->feat.avx512bw && c->feat.avx512vl && c->feat.avx512vnni;
    if (have_avx512) cpu_kernels_avx512_init(&c->avx512);
    if (!isa || !*isa) {
        c->k = have_avx512 ? &c->avx512 : have_avx2 ? &cpu_kernels_avx2 : &cpu_kernels_scalar;
        return 0;
    }
    if (strcmp(isa, "avx512") == 0) {
        if (!have_avx512) return ifd_fail(err, errlen, IFD_ERR_UNSUPPORTED, "this CPU lacks AVX-512 VNNI");
        c->k = &c->avx512;
        return 0;
    }
    if (strcmp(isa, "scalar") == 0) {
        c->k = &cpu_kernels_scalar;
        return 0;
    }
    if (strcmp(isa, "avx2") == 0) {
        if (!have_avx2) return ifd_fail(err, errlen, IFD_ERR_UNSUPPORTED, "this CPU lacks AVX2/FMA/F16C");
        c->k = &cpu_kernels_avx2;
        return 0;
    }
    return ifd_fail(err, errlen, IFD_ERR_INVALID, "unknown instruction set '%s' (use scalar, avx2 or avx512)", isa);
}

int cpu_backend_create(struct backend **out, const struct backend_opts *opts, char *err, size_t errlen)
{
    *out = NULL;
    struct backend *be = calloc(1, sizeof *be);
    struct cpu_ctx *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return ifd_fail(err, errlen, IFD_ERR_NOMEM, "out of memory");
    }
    cpu_features_detect(&c->feat);
    int rc = pick_kernels(c, opts ? opts->isa : NULL, err, errlen);
    int n_threads = opts && opts->n_threads > 0 ? opts->n_threads : cpu_count_available();
    if (!rc && n_threads > 1024) rc = ifd_fail(err, errlen, IFD_ERR_INVALID, "--threads %d is too many", n_threads);
    if (!rc && (rc = pool_init(&c->pool, n_threads))) ifd_fail(err, errlen, rc, "cannot start %d worker threads", n_threads);
    if (rc) {
        free(c);
        free(be);
        return rc;
    }
    be->ops = &cpu_ops;
    be->ctx = c;
    be->n_threads = n_threads;
    char feats[128];
    LOG_INFO("cpu", "backend: %d threads, kernels %s (cpu: %s)", n_threads, c->k->name,
             cpu_features_str(&c->feat, feats, sizeof feats));
    *out = be;
    return 0;
}
