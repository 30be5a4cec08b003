/* SPDX-License-Identifier: Apache-2.0
 *
 * test_cuda_plan.c: the CUDA backend's host-side planning (cuda_plan.c), on
 * the CPU: matmul path choice, attention tiles and context splits, CUDA-graph
 * buckets, the device memory plan; and that --device cuda either opens a
 * device or fails with a clear message (never crashes) on this host.
 */
#include "test.h"

#include "backend/cuda/cuda_plan.h"
#include "inferd/backend.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

TEST(cuda_plan_gemv_threshold_and_types)
{
    ASSERT(cuda_plan_use_gemv(1, QT_Q4_0));
    ASSERT(cuda_plan_use_gemv(CUDA_PLAN_GEMV_MAX_N, QT_BF16));
    ASSERT(!cuda_plan_use_gemv(CUDA_PLAN_GEMV_MAX_N + 1, QT_BF16));
    ASSERT(!cuda_plan_use_gemv(0, QT_Q8_0));
    enum qtype ok[] = { QT_Q4_0, QT_Q4_1, QT_Q8_0, QT_Q4_K, QT_Q5_K, QT_Q6_K, QT_F16, QT_BF16, QT_F32 };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) ASSERT(cuda_plan_type_supported(ok[i]));
    ASSERT(!cuda_plan_type_supported(QT_Q2_K));
    ASSERT(!cuda_plan_type_supported(QT_IQ4_NL));
    ASSERT(!cuda_plan_use_gemv(1, QT_Q5_0));
}

/* Every query row lands in exactly one tile of its own sequence, in order. */
static void check_tiles(const int32_t *qs, int n_seqs, const struct cuda_attn_plan *p)
{
    struct cuda_attn_tile *t = calloc((size_t)p->n_tiles, sizeof *t);
    ASSERT(t);
    cuda_plan_attn_tiles(qs, n_seqs, p, t);
    int next_row = 0;
    for (int i = 0; i < p->n_tiles; i++) {
        ASSERT(t[i].n_rows >= 1 && t[i].n_rows <= p->rows_per_tile);
        ASSERT_EQ(t[i].row0, next_row);
        ASSERT(t[i].row0 >= qs[t[i].seq] && t[i].row0 + t[i].n_rows <= qs[t[i].seq + 1]);
        next_row += t[i].n_rows;
    }
    ASSERT_EQ(next_row, qs[n_seqs]);
    free(t);
}

TEST(cuda_plan_attention_decode_splits)
{
    /* batch-1 decode of Llama-3-8B shape at 4k context on 132 SMs: split so the GPU fills */
    int32_t qs[2] = { 0, 1 }, ctx[1] = { 4096 };
    struct cuda_attn_plan p;
    ASSERT_OK(cuda_plan_attention(qs, ctx, 1, 32, 8, 132, &p));
    ASSERT_EQ(p.rows_per_tile, 1);
    ASSERT_EQ(p.warps, 4);
    ASSERT_EQ(p.n_tiles, 1);
    ASSERT(p.n_split > 1 && p.n_split <= 64);
    ASSERT_EQ(p.split_len % 32, 0);
    ASSERT(p.split_len >= 256);
    ASSERT((int64_t)p.n_split * p.split_len >= 4096);
    ASSERT((int64_t)(p.n_split - 1) * p.split_len < 4096); /* no empty split */
    check_tiles(qs, 1, &p);

    /* a short context is not split: the combine would cost more than it saves */
    ctx[0] = 100;
    ASSERT_OK(cuda_plan_attention(qs, ctx, 1, 32, 8, 132, &p));
    ASSERT_EQ(p.n_split, 1);
    ASSERT_EQ(p.split_len, INT32_MAX);

    /* 64 decodes x 8 KV heads = 512 blocks already fill 132 SMs: no split */
    int32_t qs64[65], ctx64[64];
    for (int s = 0; s <= 64; s++) qs64[s] = s;
    for (int s = 0; s < 64; s++) ctx64[s] = 2000 + s;
    ASSERT_OK(cuda_plan_attention(qs64, ctx64, 64, 32, 8, 132, &p));
    ASSERT_EQ(p.n_split, 1);
    ASSERT_EQ(p.n_tiles, 64);
    ASSERT_EQ(p.max_ctx, 2063);
    check_tiles(qs64, 64, &p);
}

TEST(cuda_plan_attention_prefill_tiles)
{
    /* a 512-token prefill chunk after a decode: multi-row tiles, 16 warps per block at G = 4 */
    int32_t qs[3] = { 0, 1, 513 }, ctx[2] = { 77, 1024 };
    struct cuda_attn_plan p;
    ASSERT_OK(cuda_plan_attention(qs, ctx, 2, 32, 8, 132, &p));
    ASSERT_EQ(p.rows_per_tile, 4);
    ASSERT_EQ(p.warps, 16);
    ASSERT_EQ(p.n_tiles, 1 + 128);
    ASSERT_EQ(p.n_split, 1);
    check_tiles(qs, 2, &p);

    /* MHA (G = 1): 16 rows per tile; a 3-row chunk gets one 3-row tile */
    int32_t qs3[2] = { 0, 3 }, ctx3[1] = { 3 };
    ASSERT_OK(cuda_plan_attention(qs3, ctx3, 1, 32, 32, 132, &p));
    ASSERT_EQ(p.rows_per_tile, 3);
    ASSERT_EQ(p.n_tiles, 1);
    check_tiles(qs3, 1, &p);

    /* G = 32 still fits a block (32 warps); G = 64 does not */
    ASSERT_OK(cuda_plan_attention(qs3, ctx3, 1, 32, 1, 132, &p));
    ASSERT_EQ(p.warps, 32);
    ASSERT_EQ(cuda_plan_attention(qs3, ctx3, 1, 64, 1, 132, &p), IFD_ERR_UNSUPPORTED);
    ASSERT_EQ(cuda_plan_attention(qs3, ctx3, 1, 30, 8, 132, &p), IFD_ERR_INVALID);
}

TEST(cuda_plan_graph_buckets_cover_batches)
{
    int b[64];
    int n = cuda_plan_graph_buckets(64, b, 64);
    int want[] = { 1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64 };
    ASSERT_EQ(n, (int)(sizeof want / sizeof want[0]));
    for (int i = 0; i < n; i++) ASSERT_EQ(b[i], want[i]);
    ASSERT_EQ(cuda_plan_graph_bucket(1, b, n), 1);
    ASSERT_EQ(cuda_plan_graph_bucket(3, b, n), 4);
    ASSERT_EQ(cuda_plan_graph_bucket(9, b, n), 16);
    ASSERT_EQ(cuda_plan_graph_bucket(64, b, n), 64);
    ASSERT_EQ(cuda_plan_graph_bucket(65, b, n), -1);
    /* an odd max_num_seqs is itself a bucket, so the full batch never pads past it */
    n = cuda_plan_graph_buckets(10, b, 64);
    ASSERT_EQ(b[n - 1], 10);
    ASSERT_EQ(cuda_plan_graph_bucket(9, b, n), 10);
    for (int m = 1; m <= 300; m++) {
        n = cuda_plan_graph_buckets(m, b, 64);
        ASSERT(n >= 1 && n <= 64);
        ASSERT_EQ(b[n - 1], m);
        for (int i = 1; i < n; i++) ASSERT(b[i] > b[i - 1]);
        for (int k = 1; k <= m; k++) {
            int bk = cuda_plan_graph_bucket(k, b, n);
            ASSERT(bk >= k && bk <= m);
        }
    }
}

TEST(cuda_plan_memory_fits_and_refuses)
{
    const size_t GiB = (size_t)1 << 30;
    char err[256];
    /* H200-like: 141 GiB, Llama-3-8B bf16 (15 GiB), 2 GiB workspace, 2 MiB KV blocks */
    struct cuda_mem_in in = { .total_bytes = 141 * GiB, .free_bytes = 140 * GiB, .utilization = 0.9,
                              .weight_bytes = 15 * GiB, .workspace_bytes = 2 * GiB, .reserve_bytes = GiB / 2,
                              .kv_block_bytes = 2u << 20, .min_blocks = 512 };
    struct cuda_mem_plan p;
    ASSERT_OK(cuda_plan_memory(&in, &p, err, sizeof err));
    size_t budget = (size_t)(141.0 * 0.9 * (double)GiB);
    ASSERT_EQ(p.budget_bytes, budget);
    ASSERT_EQ(p.n_blocks, (int64_t)((budget - in.weight_bytes - in.workspace_bytes - in.reserve_bytes) / (2u << 20)));
    ASSERT(p.kv_bytes + in.weight_bytes + in.workspace_bytes + in.reserve_bytes <= budget);

    /* capped by what max_num_seqs full contexts can use */
    in.max_blocks = 1000;
    ASSERT_OK(cuda_plan_memory(&in, &p, err, sizeof err));
    ASSERT_EQ(p.n_blocks, 1000);
    in.max_blocks = 0;

    /* another process holds most of the device: plan only what is free */
    in.free_bytes = 20 * GiB;
    ASSERT_OK(cuda_plan_memory(&in, &p, err, sizeof err));
    ASSERT(p.kv_bytes <= 20 * GiB - in.weight_bytes - in.workspace_bytes - in.reserve_bytes);

    /* a 70B bf16 model does not fit in 80 GiB: clear error naming the numbers */
    struct cuda_mem_in big = { .total_bytes = 80 * GiB, .free_bytes = 79 * GiB, .utilization = 0.9,
                               .weight_bytes = 131 * GiB, .workspace_bytes = GiB, .kv_block_bytes = 5u << 20,
                               .min_blocks = 256 };
    ASSERT_EQ(cuda_plan_memory(&big, &p, err, sizeof err), IFD_ERR_NOMEM);
    ASSERT(strstr(err, "does not fit") && strstr(err, "131.00 GiB") && strstr(err, "gpu-memory-utilization"));

    /* weights fit but not one sequence's KV */
    big.weight_bytes = 70 * GiB;
    ASSERT_EQ(cuda_plan_memory(&big, &p, err, sizeof err), IFD_ERR_NOMEM);
    ASSERT(strstr(err, "KV cache"));

    big.utilization = 1.5;
    ASSERT_EQ(cuda_plan_memory(&big, &p, err, sizeof err), IFD_ERR_INVALID);

    /* bf16 copies are kept while half the device stays free */
    ASSERT(cuda_plan_keep_bf16_copy(100 * GiB, 141 * GiB, 1 * GiB, 0.5));
    ASSERT(!cuda_plan_keep_bf16_copy(71 * GiB, 141 * GiB, 1 * GiB, 0.5));
    ASSERT(!cuda_plan_keep_bf16_copy(GiB / 2, 141 * GiB, 1 * GiB, 0.0));
}

/* Built with CUDA on a host without a GPU (or CUDA-less): a clear error, never a crash. */
TEST(cuda_backend_unavailable_or_reports)
{
    struct backend *be = NULL;
    char err[256] = "";
    struct backend_opts o = { .device = "cuda" };
    int rc = backend_create(&be, &o, err, sizeof err);
    if (rc == 0) { /* a GPU is here: the backend must be the CUDA one */
        ASSERT_STR_EQ(be->ops->name, "cuda");
        backend_destroy(be);
        test_note("a CUDA device is visible: the backend opened");
    } else {
        ASSERT(be == NULL);
        ASSERT(strstr(err, "cuda") || strstr(err, "CUDA"));
        test_note("--device cuda here: %s", err);
    }
    o.device = "cuda:x";
    rc = backend_create(&be, &o, err, sizeof err);
    ASSERT(rc != 0 && be == NULL);
}
