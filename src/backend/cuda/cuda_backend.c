/* SPDX-License-Identifier: Apache-2.0
 *
 * cuda_backend.c: the CUDA implementation of backend.h: device selection,
 * memory, the staging of the batch plan's host arrays, weight preparation,
 * and the light ops (embedding, RMSNorm, RoPE, KV store and copy, row
 * gathers). Matmuls and attention live in cuda_ops.c; kernels in kernels/,
 * reached only through the flat C ABI of inferd_kernels.h.
 *
 * Execution model: one stream; every op only enqueues work and returns
 * (backend.h: ops are ordered like a stream). The first failing CUDA or
 * cuBLAS call is latched, later ops of the step are skipped, and ->sync
 * returns it. Host arrays of the batch plan (positions, slot mapping, block
 * tables...) are copied through a pinned ring with async copies; the copy a
 * layer makes is reused by the next layers of the same step (cuda_stage),
 * which relies on backend.h's rule that a step's host arrays stay unchanged
 * until ->sync. Decode steps are recorded as CUDA graphs and replayed
 * (cuda_graph.c); their plan arrays come from one fixed input buffer
 * instead of the ring.
 *
 * Device choice: device 0 of those the runtime shows (CUDA_VISIBLE_DEVICES
 * is honoured by the runtime itself), or N with --device cuda:N; the count
 * always comes from cudaGetDeviceCount.
 *
 * Layer: backend/cuda.
 */
#include "cuda_backend.h"

#include "inferd/error.h"
#include "inferd/log.h"
#include "inferd_kernels.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(struct cuda_attn_tile) == sizeof(struct ik_attn_tile), "tile layouts differ");
_Static_assert(CUDA_PLAN_GEMV_MAX_N == IK_GEMV_MAX_N, "GEMV row limits differ");

#define STAGE_RING_BYTES (8u << 20)
#define BLAS_WORKSPACE_BYTES (32u << 20) /* what cuBLAS recommends for Hopper */
/* Keep bf16 copies of quantized weights while half the device stays free for KV and activations. */
#define BF16_COPY_KEEP_FREE 0.5
/* Device memory the plan leaves aside for what grows after the KV pool is
 * allocated (cuBLAS workspaces, split-K partials of long contexts): 1% of the
 * device, at least 256 MiB. */
#define PLAN_RESERVE_MIN (256u << 20)
#define PLAN_RESERVE_SHARE 0.01

/* ---- errors ---- */

static int map_cuda_error(int rc)
{
    return rc == cudaErrorMemoryAllocation ? IFD_ERR_NOMEM
           : rc == cudaErrorInvalidValue   ? IFD_ERR_UNSUPPORTED
                                           : IFD_ERR_INTERNAL;
}

int cuda_check(struct cuda_ctx *c, int rc, const char *what)
{
    if (rc == cudaSuccess) return 0;
    if (!c->error) {
        c->error = map_cuda_error(rc);
        LOG_ERROR("cuda", "%s: %s (%s)", what, cudaGetErrorString((cudaError_t)rc), cudaGetErrorName((cudaError_t)rc));
    }
    return 1;
}

int cuda_check_blas(struct cuda_ctx *c, int status, const char *what)
{
    if (status == CUBLAS_STATUS_SUCCESS) return 0;
    if (!c->error) {
        c->error = status == CUBLAS_STATUS_ALLOC_FAILED ? IFD_ERR_NOMEM : IFD_ERR_INTERNAL;
        LOG_ERROR("cuda", "%s: cuBLAS status %d", what, status);
    }
    return 1;
}

void cuda_enter(struct cuda_ctx *c)
{
    static _Thread_local int current = -1;
    if (current == c->device) return;
    cudaSetDevice(c->device);
    current = c->device;
}

/* ---- staging of host arrays ---- */

static void stage_reset(struct cuda_ctx *c)
{
    c->ring_off = 0;
    c->n_cache = 0;
    c->attn_qs_dev = c->attn_ctx_dev = NULL;
}

int cuda_capture_refuse(struct cuda_ctx *c, const char *what)
{
    if (!c->capturing) return 0;
    if (!c->error) {
        c->error = IFD_ERR_UNSUPPORTED;
        LOG_WARN("cuda", "%s while recording a graph: the recording is dropped", what);
    }
    return 1;
}

int cuda_stage_reserve(struct cuda_ctx *c, size_t bytes)
{
    if (c->error) return -1;
    size_t o = (c->ring_off + CUDA_STAGE_ALIGN - 1) & ~(size_t)(CUDA_STAGE_ALIGN - 1);
    if (o + bytes <= c->ring_cap) return 0;
    if (cuda_capture_refuse(c, "staging ring full")) return -1;
    /* past the end: every queued copy out of the ring (and kernel reading it) must be done */
    if (cuda_check(c, cudaStreamSynchronize(c->stream), "stream synchronize (staging ring full)")) return -1;
    stage_reset(c);
    if (bytes <= c->ring_cap) return 0;
    size_t cap = (bytes + (1u << 20)) & ~(size_t)((1u << 20) - 1); /* rare: e.g. huge block tables */
    cudaFreeHost(c->pin_ring);
    cudaFree(c->dev_ring);
    c->pin_ring = c->dev_ring = NULL;
    c->ring_cap = 0;
    if (cuda_check(c, cudaHostAlloc((void **)&c->pin_ring, cap, cudaHostAllocDefault), "pinned staging ring") ||
        cuda_check(c, cudaMalloc((void **)&c->dev_ring, cap), "device staging ring"))
        return -1;
    c->ring_cap = cap;
    return 0;
}

/* A padded decode plan's arrays already sit in gin_pin, copied to gin_dev in one piece (cuda_graph.c). */
static void *graph_input(struct cuda_ctx *c, const void *host, size_t bytes)
{
    const uint8_t *h = host;
    if (!c->gin_pin || h < c->gin_pin || h >= c->gin_pin + c->gin_cap || bytes > (size_t)(c->gin_pin + c->gin_cap - h))
        return NULL;
    return c->gin_dev + (h - c->gin_pin);
}

void *cuda_stage(struct cuda_ctx *c, const void *host, size_t bytes, int cached)
{
    if (c->error || !host || bytes == 0) return c->error ? NULL : c->dev_ring;
    void *fixed = graph_input(c, host, bytes);
    if (fixed) return fixed;
    /* a recorded copy would replay out of ring memory that later steps overwrite */
    if (cuda_capture_refuse(c, "a host array outside the graph inputs")) return NULL;
    if (cached)
        for (int i = 0; i < c->n_cache; i++)
            if (c->cache[i].host == host && c->cache[i].bytes == bytes) return c->cache[i].dev;
    if (cuda_stage_reserve(c, bytes)) return NULL;
    size_t off = (c->ring_off + CUDA_STAGE_ALIGN - 1) & ~(size_t)(CUDA_STAGE_ALIGN - 1);
    memcpy(c->pin_ring + off, host, bytes);
    if (cuda_check(c, cudaMemcpyAsync(c->dev_ring + off, c->pin_ring + off, bytes, cudaMemcpyHostToDevice, c->stream),
                   "staging copy"))
        return NULL;
    c->ring_off = off + bytes;
    if (cached) {
        int slot = c->n_cache < CUDA_STAGE_CACHE ? c->n_cache++ : (int)((uintptr_t)host / 64 % CUDA_STAGE_CACHE);
        c->cache[slot] = (struct cuda_stage_entry){ host, bytes, c->dev_ring + off };
    }
    return c->dev_ring + off;
}

void *cuda_buf_get(struct cuda_ctx *c, struct cuda_buf *b, size_t n, const char *what)
{
    if (c->error) return NULL;
    if (n <= b->cap) return b->ptr;
    if (cuda_capture_refuse(c, what)) return NULL;
    size_t cap = (n + (1u << 20) - 1) & ~(size_t)((1u << 20) - 1);
    cuda_graphs_invalidate(c); /* recordings may point into the old buffer */
    if (b->ptr) {
        /* queued kernels may still read the old buffer */
        if (cuda_check(c, cudaStreamSynchronize(c->stream), what)) return NULL;
        cudaFree(b->ptr);
        b->ptr = NULL;
        b->cap = 0;
    }
    if (cuda_check(c, cudaMalloc(&b->ptr, cap), what)) return NULL;
    b->cap = cap;
    LOG_DEBUG("cuda", "scratch %s grown to %.1f MiB", what, (double)cap / (1 << 20));
    return b->ptr;
}

const void *cuda_stage_const(struct cuda_ctx *c, const void *host, size_t bytes)
{
    if (c->error) return NULL;
    for (int i = 0; i < c->n_consts; i++) {
        struct cuda_const *k = &c->consts[i];
        if (k->host == host && k->bytes == bytes && memcmp(k->copy, host, bytes) == 0) return k->dev;
    }
    if (cuda_capture_refuse(c, "a new constant")) return NULL;
    struct cuda_const *k = &c->consts[c->n_consts < CUDA_CONSTS ? c->n_consts++ : (int)((uintptr_t)host / 64 % CUDA_CONSTS)];
    if (k->dev) {
        cuda_graphs_invalidate(c); /* replaced: recordings may read it */
        cudaStreamSynchronize(c->stream);
        cudaFree(k->dev);
        free(k->copy);
        memset(k, 0, sizeof *k);
    }
    if (!(k->copy = malloc(bytes))) {
        c->error = IFD_ERR_NOMEM;
        return NULL;
    }
    memcpy(k->copy, host, bytes);
    if (cuda_check(c, cudaMalloc(&k->dev, bytes), "constant") ||
        cuda_check(c, cudaMemcpyAsync(k->dev, k->copy, bytes, cudaMemcpyHostToDevice, c->stream), "constant copy")) {
        cudaFree(k->dev);
        free(k->copy);
        memset(k, 0, sizeof *k);
        return NULL;
    }
    k->host = host;
    k->bytes = bytes;
    return k->dev;
}

/* ---- memory ---- */

static void *cu_alloc(struct backend *be, size_t nbytes)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    void *p = NULL;
    size_t n = nbytes ? nbytes : 64;
    if (cudaMalloc(&p, n) != cudaSuccess) {
        cudaGetLastError(); /* an allocation failure is not sticky: clear it */
        return NULL;
    }
    /* zeroed in stream order, so the memory reads as zeros to every later op */
    if (cudaMemsetAsync(p, 0, n, c->stream) != cudaSuccess) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

static void cu_release(struct backend *be, void *p)
{
    if (!p) return;
    cuda_enter(cuda_ctx(be));
    cudaStreamSynchronize(cuda_ctx(be)->stream); /* queued work may still use it */
    cudaFree(p);
}

static void cu_copy_in(struct backend *be, void *dst, const void *host_src, size_t n)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    if (c->error || n == 0) return;
    /* From pageable memory the call returns once the source is consumed, so callers may reuse it. */
    cuda_check(c, cudaMemcpyAsync(dst, host_src, n, cudaMemcpyHostToDevice, c->stream), "copy to device");
}

static void cu_copy_out(struct backend *be, void *host_dst, const void *src, size_t n)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    if (c->error || n == 0) return;
    if (!cuda_check(c, cudaMemcpyAsync(host_dst, src, n, cudaMemcpyDeviceToHost, c->stream), "copy to host"))
        cuda_check(c, cudaStreamSynchronize(c->stream), "copy to host (wait)");
}

static void *cu_host_alloc(struct backend *be, size_t nbytes)
{
    cuda_enter(cuda_ctx(be));
    void *p = NULL;
    if (cudaHostAlloc(&p, nbytes ? nbytes : 64, cudaHostAllocDefault) == cudaSuccess) return p;
    cudaGetLastError(); /* pinned memory is scarcer than memory: fall back to pageable */
    return malloc(nbytes ? nbytes : 64);
}

static void cu_host_free(struct backend *be, void *p)
{
    cuda_enter(cuda_ctx(be));
    struct cudaPointerAttributes at;
    if (cudaPointerGetAttributes(&at, p) == cudaSuccess && at.type == cudaMemoryTypeHost) {
        cudaFreeHost(p);
    } else {
        cudaGetLastError();
        free(p);
    }
}

static int cu_sync(struct backend *be)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    cuda_check(c, cudaStreamSynchronize(c->stream), "stream synchronize");
    stage_reset(c);
    int rc = c->error;
    c->error = 0;
    return rc;
}

/* ---- weights ---- */

size_t cuda_weight_bf16_offset(const struct be_weight *w)
{
    size_t q = qtype_row_bytes(w->type, w->n_in) * (size_t)w->n_out;
    return (q + 255) & ~(size_t)255;
}

/* Device bytes of a prepared weight: its GGUF blocks, plus the resident bf16 copy when it has one. */
static size_t weight_device_bytes(const struct be_weight *w)
{
    if (w->layout == CUDA_LAYOUT_ROWS_BF16) return cuda_weight_bf16_offset(w) + (size_t)w->n_in * (size_t)w->n_out * 2;
    return qtype_row_bytes(w->type, w->n_in) * (size_t)w->n_out;
}

static int cu_weight_prepare(struct backend *be, struct be_weight *w, enum qtype type, int64_t n_in, int64_t n_out,
                             void *src, int src_writable)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    const struct qtype_info *ti = qtype_get(type);
    memset(w, 0, sizeof *w);
    if (!ti || !cuda_plan_type_supported(type)) return IFD_ERR_UNSUPPORTED;
    if (n_in <= 0 || n_out <= 0 || n_in % ti->block) return IFD_ERR_INVALID;
    w->type = type;
    w->n_in = n_in;
    w->n_out = n_out;
    size_t qbytes = qtype_row_bytes(type, n_in) * (size_t)n_out, copy = (size_t)n_in * (size_t)n_out * 2;
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    /* INFERD_CUDA_BF16_COPIES=0 forces on-the-fly dequantization (tests/gpu checks both paths) */
    const char *env = getenv("INFERD_CUDA_BF16_COPIES");
    int allowed = !(env && strcmp(env, "0") == 0);
    int keep = allowed && type != QT_BF16 &&
               cuda_plan_keep_bf16_copy(free_b, total_b, cuda_weight_bf16_offset(w) + copy, BF16_COPY_KEEP_FREE);
    size_t bytes = keep ? cuda_weight_bf16_offset(w) + copy : qbytes;
    void *p = NULL;
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError();
        return IFD_ERR_NOMEM;
    }
    int rc = (int)cudaMemcpyAsync(p, src, qbytes, cudaMemcpyHostToDevice, c->stream);
    if (!rc && keep)
        rc = ik_dequant_to_bf16(p, (uint16_t *)((uint8_t *)p + cuda_weight_bf16_offset(w)), type, n_out, n_in, c->stream);
    if (!rc) rc = (int)cudaStreamSynchronize(c->stream);
    if (rc) {
        LOG_ERROR("cuda", "weight upload: %s", cudaGetErrorString((cudaError_t)rc));
        cudaFree(p);
        memset(w, 0, sizeof *w);
        return map_cuda_error(rc);
    }
    w->layout = keep ? CUDA_LAYOUT_ROWS_BF16 : CUDA_LAYOUT_ROWS;
    w->data = p;
    w->owned = p;
    c->weight_bytes += bytes;
    return 0;
}

/* The device memory plan (cuda_plan.h): KV blocks that fit next to the weights
 * and the workspace, both measured from what has been allocated so far. */
static int cu_kv_blocks_fit(struct backend *be, double utilization, size_t block_bytes, int64_t min_blocks,
                            int64_t max_blocks, int64_t *n_blocks, char *err, size_t errlen)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    size_t free_now = 0, total = 0;
    cudaError_t e = cudaMemGetInfo(&free_now, &total);
    if (e != cudaSuccess) return ifd_fail(err, errlen, map_cuda_error(e), "cudaMemGetInfo: %s", cudaGetErrorString(e));
    size_t ours = c->free_at_open > free_now ? c->free_at_open - free_now : 0;
    size_t weights = c->weight_bytes < ours ? c->weight_bytes : ours, reserve = (size_t)(PLAN_RESERVE_SHARE * (double)total);
    struct cuda_mem_in in = {
        .total_bytes = total, .free_bytes = c->free_at_open, .utilization = utilization,
        .weight_bytes = weights, .workspace_bytes = ours - weights,
        .reserve_bytes = reserve > PLAN_RESERVE_MIN ? reserve : PLAN_RESERVE_MIN,
        .kv_block_bytes = block_bytes, .min_blocks = min_blocks, .max_blocks = max_blocks,
    };
    struct cuda_mem_plan plan;
    int rc = cuda_plan_memory(&in, &plan, err, errlen);
    if (rc) return rc;
    LOG_INFO("cuda", "memory plan: %.2f GiB budget (%.2f of %.2f GiB): weights %.2f, workspace %.2f, reserve %.2f, "
             "KV %.2f GiB = %lld blocks", (double)plan.budget_bytes / (1 << 30), utilization, (double)total / (1 << 30),
             (double)in.weight_bytes / (1 << 30), (double)in.workspace_bytes / (1 << 30),
             (double)in.reserve_bytes / (1 << 30), (double)plan.kv_bytes / (1 << 30), (long long)plan.n_blocks);
    *n_blocks = plan.n_blocks;
    return 0;
}

static void cu_weight_release(struct backend *be, struct be_weight *w)
{
    if (w->owned) {
        struct cuda_ctx *c = cuda_ctx(be);
        size_t bytes = weight_device_bytes(w);
        c->weight_bytes -= bytes < c->weight_bytes ? bytes : c->weight_bytes;
        cuda_enter(c);
        cudaStreamSynchronize(c->stream);
        cudaFree(w->owned);
    }
    memset(w, 0, sizeof *w);
}

/* ---- light ops ---- */

static void cu_embed(struct backend *be, const struct be_weight *table, const int32_t *ids, int n, float *out)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    const int32_t *d_ids = cuda_stage(c, ids, (size_t)n * sizeof *ids, 1);
    if (!d_ids) return;
    cuda_check(c, ik_embed(table->data, table->type, table->n_in, d_ids, n, out, c->stream), "embedding");
}

static void cu_rms_norm(struct backend *be, const float *x, const float *w, float *out, int n, int dim, float eps)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    if (c->error) return;
    cuda_check(c, ik_rms_norm(x, w, out, n, dim, eps, c->stream), "rms_norm");
}

/* The kernel's rope arguments, with positions (and the model's frequency
 * factors) staged on the device; -1 when staging failed (error recorded). */
static int rope_args(struct cuda_ctx *c, const struct be_rope *r, struct ik_rope_args *a)
{
    *a = (struct ik_rope_args){ .q = r->q, .k = r->k, .n = r->n, .n_head = r->n_head, .n_head_kv = r->n_head_kv,
                                .head_dim = r->head_dim, .rope_dim = r->rope_dim, .neox = r->neox,
                                .theta_scale = r->theta_scale, .freq_scale = r->freq_scale };
    /* the model's frequency factors never change: staged once, at an address graphs can keep */
    if (r->freq_factors &&
        !(a->freq_factors = cuda_stage_const(c, r->freq_factors, (size_t)(r->rope_dim / 2) * sizeof(float))))
        return -1;
    a->positions = cuda_stage(c, r->positions, (size_t)r->n * sizeof *r->positions, 1);
    return a->positions ? 0 : -1;
}

static void cu_rope(struct backend *be, const struct be_rope *r)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    struct ik_rope_args a;
    if (!rope_args(c, r, &a)) cuda_check(c, ik_rope(&a, c->stream), "rope");
}

static void cu_kv_store(struct backend *be, struct be_kv_layer kv, const float *k, const float *v, int n, int kv_dim,
                        const int32_t *slot_mapping)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    const int32_t *slots = cuda_stage(c, slot_mapping, (size_t)n * sizeof *slot_mapping, 1);
    if (!slots) return;
    cuda_check(c, ik_kv_store(kv.k, kv.v, k, v, n, kv_dim, slots, c->stream), "kv_store");
}

static void cu_rope_kv_store(struct backend *be, const struct be_rope *r, struct be_kv_layer kv, const float *v,
                             const int32_t *slot_mapping)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    /* positions and slots must both survive until the kernel: no ring wrap between them */
    size_t need = 2 * ((size_t)r->n * sizeof(int32_t) + CUDA_STAGE_ALIGN);
    if (c->error || (!c->graph_step && cuda_stage_reserve(c, need))) return;
    struct ik_rope_args a;
    if (rope_args(c, r, &a)) return;
    const int32_t *slots = cuda_stage(c, slot_mapping, (size_t)r->n * sizeof *slot_mapping, 1);
    if (!slots) return;
    cuda_check(c, ik_rope_kv_store(&a, kv.k, kv.v, v, slots, c->stream), "rope + kv_store");
}

static void cu_kv_copy(struct backend *be, struct be_kv_layer kv, const int32_t *src, const int32_t *dst, int n,
                       size_t block_bytes)
{
    size_t block_elems = block_bytes / sizeof(uint16_t); /* the CUDA cache is f16 (no kv_dtype_supported) */
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    if (n <= 0) return;
    /* not cached: copy-on-write lists may be rewritten in place between steps without a sync */
    if (cuda_stage_reserve(c, 2 * (size_t)n * sizeof *src + 2 * CUDA_STAGE_ALIGN)) return;
    const int32_t *d_src = cuda_stage(c, src, (size_t)n * sizeof *src, 0);
    const int32_t *d_dst = cuda_stage(c, dst, (size_t)n * sizeof *dst, 0);
    if (!d_src || !d_dst) return;
    cuda_check(c, ik_kv_copy(kv.k, kv.v, d_src, d_dst, n, (int64_t)block_elems, c->stream), "kv_copy");
}

static void cu_gather_rows(struct backend *be, const float *src, const int32_t *rows, int n, int dim, float *dst)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    const int32_t *d_rows = cuda_stage(c, rows, (size_t)n * sizeof *rows, 1);
    if (!d_rows) return;
    cuda_check(c, ik_gather_rows(src, d_rows, n, dim, dst, c->stream), "gather_rows");
}

/* ---- lifetime ---- */

static void cuda_ctx_free(struct cuda_ctx *c)
{
    if (c->stream) cudaStreamSynchronize(c->stream);
    cuda_graphs_free(c);
    for (int i = 0; i < c->n_consts; i++) {
        cudaFree(c->consts[i].dev);
        free(c->consts[i].copy);
    }
    struct cuda_buf *bufs[] = { &c->act_bf16, &c->w_bf16, &c->up, &c->attn_partial, &c->attn_counters };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]->ptr);
    if (c->blas) cublasDestroy(c->blas);
    cudaFree(c->blas_workspace);
    if (c->pin_ring) cudaFreeHost(c->pin_ring);
    cudaFree(c->dev_ring);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c->tiles_host);
    free(c);
}

static void cu_destroy(struct backend *be)
{
    cuda_enter(cuda_ctx(be));
    cuda_ctx_free(cuda_ctx(be));
    free(be);
}

static const struct backend_ops cuda_ops = {
    .name = "cuda",
    .destroy = cu_destroy,
    .alloc = cu_alloc,
    .release = cu_release,
    .copy_in = cu_copy_in,
    .copy_out = cu_copy_out,
    .sync = cu_sync,
    .reserve = cuda_reserve,
    .weight_prepare = cu_weight_prepare,
    .weight_release = cu_weight_release,
    .embed = cu_embed,
    .rms_norm = cu_rms_norm,
    .matmul = cuda_matmul,
    .ffn_swiglu = cuda_ffn_swiglu,
    .rope = cu_rope,
    .kv_store = cu_kv_store,
    .rope_kv_store = cu_rope_kv_store,
    .attention = cuda_attention,
    .kv_copy = cu_kv_copy,
    .gather_rows = cu_gather_rows,
    .kv_blocks_fit = cu_kv_blocks_fit,
    .run_step = cuda_run_step,
    .host_alloc = cu_host_alloc,
    .host_free = cu_host_free,
};

/* "cuda" -> 0, "cuda:N" -> N; -1 if malformed. */
static int parse_device_index(const char *dev)
{
    if (!dev || strcmp(dev, "cuda") == 0) return 0;
    if (strncmp(dev, "cuda:", 5) != 0 || !dev[5]) return -1;
    char *end;
    long v = strtol(dev + 5, &end, 10);
    return *end || v < 0 || v > 1024 ? -1 : (int)v;
}

static int open_device(struct cuda_ctx *c, int index, char *err, size_t errlen)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    if (e != cudaSuccess || count == 0)
        return ifd_fail(err, errlen, IFD_ERR_UNSUPPORTED, "--device cuda: no usable CUDA device (%s%s%s)",
                        e != cudaSuccess ? cudaGetErrorString(e) : "the runtime sees none",
                        vis ? ", CUDA_VISIBLE_DEVICES=" : "", vis ? vis : "");
    if (index >= count)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--device cuda:%d: only %d CUDA device(s) visible", index, count);
    c->device = index;
    struct cudaDeviceProp prop;
    if ((e = cudaSetDevice(index)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, index)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
        return ifd_fail(err, errlen, IFD_ERR_INTERNAL, "cannot open CUDA device %d: %s", index, cudaGetErrorString(e));
    c->n_sm = prop.multiProcessorCount;
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    LOG_INFO("cuda", "device %d of %d: %s (sm_%d%d, %d SMs, %.1f of %.1f GiB free), driver %d.%d, runtime %d.%d", index,
             count, prop.name, prop.major, prop.minor, c->n_sm, (double)free_b / (1 << 30),
             (double)total_b / (1 << 30), driver / 1000, driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    return 0;
}

static int open_libraries(struct cuda_ctx *c, char *err, size_t errlen)
{
    cublasStatus_t s = cublasCreate(&c->blas);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetStream(c->blas, c->stream);
    /* a workspace of our own: cuBLAS then allocates nothing while a graph is recorded */
    if (s == CUBLAS_STATUS_SUCCESS && cudaMalloc(&c->blas_workspace, BLAS_WORKSPACE_BYTES) != cudaSuccess)
        return ifd_fail(err, errlen, IFD_ERR_NOMEM, "cannot allocate the cuBLAS workspace");
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetWorkspace(c->blas, c->blas_workspace, BLAS_WORKSPACE_BYTES);
    if (s != CUBLAS_STATUS_SUCCESS) return ifd_fail(err, errlen, IFD_ERR_INTERNAL, "cuBLAS initialization failed (%d)", s);
    c->ring_cap = STAGE_RING_BYTES;
    if (cudaHostAlloc((void **)&c->pin_ring, c->ring_cap, cudaHostAllocDefault) != cudaSuccess ||
        cudaMalloc((void **)&c->dev_ring, c->ring_cap) != cudaSuccess)
        return ifd_fail(err, errlen, IFD_ERR_NOMEM, "cannot allocate the %u MiB staging ring", STAGE_RING_BYTES >> 20);
    size_t total = 0;
    cudaMemGetInfo(&c->free_at_open, &total);
    return 0;
}

int cuda_backend_create(struct backend **out, const struct backend_opts *opts, char *err, size_t errlen)
{
    *out = NULL;
    int index = parse_device_index(opts ? opts->device : NULL);
    if (index < 0) return ifd_fail(err, errlen, IFD_ERR_INVALID, "bad device '%s' (use cuda or cuda:N)", opts->device);
    struct backend *be = calloc(1, sizeof *be);
    struct cuda_ctx *c = calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return ifd_fail(err, errlen, IFD_ERR_NOMEM, "out of memory");
    }
    int rc = open_device(c, index, err, errlen);
    if (!rc) rc = open_libraries(c, err, errlen);
    /* INFERD_CUDA_GRAPHS=0 does what --enforce-eager does (for tools without the flag) */
    const char *env = getenv("INFERD_CUDA_GRAPHS");
    c->graphs_on = !(opts && opts->enforce_eager) && !(env && strcmp(env, "0") == 0);
    if (rc) {
        cudaGetLastError();
        cuda_ctx_free(c);
        free(be);
        return rc;
    }
    be->ops = &cuda_ops;
    be->ctx = c;
    be->n_threads = 1;
    *out = be;
    return 0;
}
