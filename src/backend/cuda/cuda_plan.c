/* SPDX-License-Identifier: Apache-2.0
 *
 * cuda_plan.c: host-side planning for the CUDA backend (see cuda_plan.h).
 * Pure functions of their arguments, compiled in every build and unit-tested
 * on the CPU, so the choices that decide GPU speed and memory can be checked
 * where there is no GPU.
 *
 * Layer: backend/cuda (host logic).
 */
#include "cuda_plan.h"

#include "attention/attn_split.h"
#include "inferd/error.h"

#include <stdint.h>

/* ---- matmul path ---- */

int cuda_plan_type_supported(enum qtype t)
{
    switch (t) {
    case QT_Q4_0: case QT_Q4_1: case QT_Q8_0: case QT_Q4_K: case QT_Q5_K: case QT_Q6_K:
    case QT_F16: case QT_BF16: case QT_F32:
        return 1;
    default:
        return 0;
    }
}

/* Decode is bound by reading weights: the GEMV reads each byte once for up to
 * 8 rows. Beyond that the GEMM's tensor cores win even after paying for the
 * bf16 conversion of the activations. */
int cuda_plan_use_gemv(int n, enum qtype t)
{
    return cuda_plan_type_supported(t) && n >= 1 && n <= CUDA_PLAN_GEMV_MAX_N;
}

/* ---- attention ---- */

#define ATTN_MAX_WARPS 32       /* 1024 threads per block */
#define ATTN_PREFILL_WARPS 16   /* pairs per block for multi-row tiles: K/V staged once for 16 */
/* positions per split (2 K/V tiles); 256 left a 512-token decode on 16 blocks of 132 SMs */
#define ATTN_MIN_SPLIT_LEN 64
#define ATTN_BLOCKS_PER_SM 2    /* enough blocks to fill every SM twice */

static int ceil_div(int64_t a, int64_t b) { return (int)((a + b - 1) / b); }

/* Fills the plan for n_tiles tiles of `rows` query rows and contexts up to
 * max_ctx: the context is split only when the batch alone cannot fill the
 * GPU (small decode batches). */
static void plan_splits(int n_tiles, int rows, int G, int n_head_kv, int max_ctx, int n_sm, struct cuda_attn_plan *out)
{
    out->rows_per_tile = rows;
    out->warps = rows * G;
    out->n_tiles = n_tiles;
    out->max_ctx = max_ctx;
    out->n_split = 1;
    out->split_len = INT32_MAX;
    int64_t blocks = (int64_t)n_tiles * n_head_kv, want = (int64_t)(n_sm > 0 ? n_sm : 1) * ATTN_BLOCKS_PER_SM;
    if (blocks == 0 || blocks >= want || max_ctx <= ATTN_MIN_SPLIT_LEN) return;
    int split = ceil_div(want, blocks);
    int by_len = max_ctx / ATTN_MIN_SPLIT_LEN;
    if (split > by_len) split = by_len;
    if (split > IK_ATTN_MAX_SPLITS) split = IK_ATTN_MAX_SPLITS;
    if (split <= 1) return;
    int len = ceil_div(max_ctx, split);
    len = ceil_div(len, IK_ATTN_TILE) * IK_ATTN_TILE; /* splits start at K/V tile boundaries */
    out->split_len = len;
    out->n_split = ceil_div(max_ctx, len);
    if (out->n_split <= 1) {
        out->n_split = 1;
        out->split_len = INT32_MAX;
    }
}

int cuda_plan_attention(const int32_t *query_start, const int32_t *context_len, int n_seqs, int n_head, int n_head_kv,
                        int n_sm, struct cuda_attn_plan *out)
{
    if (n_seqs < 0 || n_head_kv <= 0 || n_head <= 0 || n_head % n_head_kv) return IFD_ERR_INVALID;
    int G = n_head / n_head_kv;
    if (G > ATTN_MAX_WARPS) return IFD_ERR_UNSUPPORTED;
    int max_q = 0, max_ctx = 0;
    for (int s = 0; s < n_seqs; s++) {
        int q = query_start[s + 1] - query_start[s];
        if (q < 0 || context_len[s] < 0) return IFD_ERR_INVALID;
        if (q > max_q) max_q = q;
        if (context_len[s] > max_ctx) max_ctx = context_len[s];
    }
    int rows = 1;
    if (max_q > 1) {
        rows = ATTN_PREFILL_WARPS / G;
        if (rows < 1) rows = 1;
        if (rows > max_q) rows = max_q;
    }
    int n_tiles = 0;
    for (int s = 0; s < n_seqs; s++) n_tiles += ceil_div(query_start[s + 1] - query_start[s], rows);
    plan_splits(n_tiles, rows, G, n_head_kv, max_ctx, n_sm, out);
    return 0;
}

int cuda_plan_attention_decode(int n_seqs, int max_ctx, int n_head, int n_head_kv, int n_sm, struct cuda_attn_plan *out)
{
    if (n_seqs < 1 || max_ctx < 1 || n_head_kv <= 0 || n_head <= 0 || n_head % n_head_kv) return IFD_ERR_INVALID;
    if (n_head / n_head_kv > ATTN_MAX_WARPS) return IFD_ERR_UNSUPPORTED;
    plan_splits(n_seqs, 1, n_head / n_head_kv, n_head_kv, max_ctx, n_sm, out);
    return 0;
}

void cuda_plan_attn_tiles(const int32_t *query_start, int n_seqs, const struct cuda_attn_plan *plan,
                          struct cuda_attn_tile *tiles)
{
    int k = 0;
    for (int s = 0; s < n_seqs; s++) {
        for (int r = query_start[s]; r < query_start[s + 1]; r += plan->rows_per_tile) {
            int left = query_start[s + 1] - r;
            tiles[k++] = (struct cuda_attn_tile){ .seq = s, .row0 = r,
                                                  .n_rows = left < plan->rows_per_tile ? left : plan->rows_per_tile };
        }
    }
}

/* ---- CUDA graphs ---- */

int cuda_plan_graph_buckets(int max_seqs, int *out, int cap)
{
    int n = 0;
    for (int b = 1; b <= max_seqs && n < cap;) {
        out[n++] = b;
        b = b < 8 ? b * 2 : b < 64 ? b + 8 : b + 16;
    }
    /* the largest batch must be capturable without padding past max_seqs */
    if (max_seqs >= 1 && n > 0 && out[n - 1] != max_seqs) {
        if (n < cap) out[n++] = max_seqs;
        else out[n - 1] = max_seqs;
    }
    return n;
}

int cuda_plan_graph_bucket(int n, const int *buckets, int n_buckets)
{
    for (int i = 0; i < n_buckets; i++)
        if (buckets[i] >= n) return buckets[i];
    return -1;
}

int cuda_plan_graph_eligible(const struct batch_plan *p)
{
    if (p->n_seqs < 1 || p->n_tokens != p->n_seqs || p->n_logits != p->n_tokens || p->max_blocks < 1) return 0;
    if (p->adapter_slot || p->tree_mask) return 0;
    for (int s = 0; s <= p->n_seqs; s++)
        if (p->query_start[s] != s) return 0;
    for (int i = 0; i < p->n_logits; i++)
        if (p->logits_index[i] != i) return 0;
    return 1;
}

int cuda_plan_graph_stride(int max_blocks, int current)
{
    int s = current > CUDA_GRAPH_MIN_STRIDE ? current : CUDA_GRAPH_MIN_STRIDE;
    while (s < max_blocks && s <= INT32_MAX / 2) s *= 2;
    return s;
}

static size_t take(size_t *off, size_t bytes)
{
    size_t at = *off;
    *off = (at + bytes + CUDA_GRAPH_ALIGN - 1) & ~(size_t)(CUDA_GRAPH_ALIGN - 1);
    return at;
}

void cuda_plan_graph_layout(int bucket, int stride, struct cuda_graph_layout *out)
{
    size_t off = 0, B = (size_t)bucket, i32 = sizeof(int32_t);
    out->bucket = bucket;
    out->stride = stride;
    out->tokens = take(&off, B * i32);
    out->positions = take(&off, B * i32);
    out->slots = take(&off, B * i32);
    out->query_start = take(&off, (B + 1) * i32);
    out->context_len = take(&off, B * i32);
    out->logits_index = take(&off, B * i32);
    out->tiles = take(&off, B * sizeof(struct cuda_attn_tile));
    out->block_tables = take(&off, B * (size_t)stride * i32);
    out->bytes = off;
}

void cuda_plan_graph_fill(const struct batch_plan *p, const struct cuda_graph_layout *lay, void *buf,
                          struct batch_plan *padded)
{
    uint8_t *b = buf;
    int n = p->n_seqs, B = lay->bucket, S = lay->stride;
    int32_t *tok = (int32_t *)(b + lay->tokens), *pos = (int32_t *)(b + lay->positions);
    int32_t *slots = (int32_t *)(b + lay->slots), *qs = (int32_t *)(b + lay->query_start);
    int32_t *ctx = (int32_t *)(b + lay->context_len), *li = (int32_t *)(b + lay->logits_index);
    int32_t *tables = (int32_t *)(b + lay->block_tables);
    struct cuda_attn_tile *tiles = (struct cuda_attn_tile *)(b + lay->tiles);
    for (int s = 0; s < B; s++) {
        int real = s < n;
        tok[s] = real ? p->tokens[s] : 0;
        pos[s] = real ? p->positions[s] : 0;
        slots[s] = real ? p->slot_mapping[s] : -1; /* padding stores nothing */
        ctx[s] = real ? p->context_len[s] : 0;     /* and attends to nothing */
        qs[s] = s;
        li[s] = s;
        tiles[s] = (struct cuda_attn_tile){ .seq = s, .row0 = s, .n_rows = 1 };
        int32_t *row = tables + (size_t)s * S;
        int have = real ? p->max_blocks : 0;
        for (int j = 0; j < have; j++) row[j] = p->block_tables[(size_t)s * p->max_blocks + j];
        for (int j = have; j < S; j++) row[j] = 0;
    }
    qs[B] = B;
    *padded = (struct batch_plan){ .n_tokens = B, .tokens = tok, .positions = pos, .slot_mapping = slots,
                                   .n_seqs = B, .query_start = qs, .context_len = ctx, .block_tables = tables,
                                   .max_blocks = S, .n_logits = B, .logits_index = li };
}

/* ---- memory ---- */

int cuda_plan_keep_bf16_copy(size_t free_bytes, size_t total_bytes, size_t copy_bytes, double keep_free_fraction)
{
    if (copy_bytes > free_bytes) return 0;
    return (double)(free_bytes - copy_bytes) >= keep_free_fraction * (double)total_bytes;
}

static double gib(size_t b) { return (double)b / (1024.0 * 1024.0 * 1024.0); }

int cuda_plan_memory(const struct cuda_mem_in *in, struct cuda_mem_plan *out, char *err, size_t errlen)
{
    if (!(in->utilization > 0 && in->utilization <= 1))
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "--gpu-memory-utilization %.3g is not in (0, 1]", in->utilization);
    if (in->kv_block_bytes == 0) return ifd_fail(err, errlen, IFD_ERR_INVALID, "KV block size is zero");
    size_t budget = (size_t)((double)in->total_bytes * in->utilization);
    size_t fixed = in->weight_bytes + in->workspace_bytes + in->reserve_bytes;
    out->budget_bytes = budget;
    out->n_blocks = 0;
    out->kv_bytes = 0;
    if (fixed > budget)
        return ifd_fail(err, errlen, IFD_ERR_NOMEM,
                        "the model does not fit: weights %.2f GiB + workspace %.2f GiB + reserve %.2f GiB exceed "
                        "%.2f GiB (--gpu-memory-utilization %.2f of %.2f GiB)",
                        gib(in->weight_bytes), gib(in->workspace_bytes), gib(in->reserve_bytes), gib(budget),
                        in->utilization, gib(in->total_bytes));
    size_t kv = budget - fixed;
    /* other processes may hold memory: never plan past what is free now */
    if (fixed > in->free_bytes)
        return ifd_fail(err, errlen, IFD_ERR_NOMEM,
                        "the model does not fit: it needs %.2f GiB but only %.2f GiB of %.2f GiB are free "
                        "(other processes on this GPU?)", gib(fixed), gib(in->free_bytes), gib(in->total_bytes));
    if (kv > in->free_bytes - fixed) kv = in->free_bytes - fixed;
    int64_t blocks = (int64_t)(kv / in->kv_block_bytes);
    /* a cap below the minimum would refuse a device with room to spare: the minimum wins */
    int64_t cap = in->max_blocks > 0 && in->max_blocks < in->min_blocks ? in->min_blocks : in->max_blocks;
    if (cap > 0 && blocks > cap) blocks = cap;
    if (blocks < in->min_blocks || blocks < 2)
        return ifd_fail(err, errlen, IFD_ERR_NOMEM,
                        "no room for the KV cache: %.2f GiB left after weights and workspace hold %lld blocks, "
                        "one sequence needs %lld (raise --gpu-memory-utilization or lower --max-model-len)",
                        gib(kv), (long long)blocks, (long long)(in->min_blocks > 2 ? in->min_blocks : 2));
    out->n_blocks = blocks;
    out->kv_bytes = (size_t)blocks * in->kv_block_bytes;
    return 0;
}
