/* SPDX-License-Identifier: Apache-2.0
 *
 * test_cuda_plan.c: the CUDA backend's host-side planning (cuda_plan.c), on
 * the CPU: matmul path choice, attention tiles and context splits, CUDA-graph
 * buckets and padded inputs (with the padding checked to be inert on the CPU
 * backend, the reference), the device memory plan, how split attention
 * shares a context among its blocks and which elements a RoPE pair covers
 * (kernels/attention/attn_split.h, kernels/rope/rope_pairs.h: the kernels'
 * own arithmetic); and that --device cuda either opens a device or
 * fails with a clear message (never crashes) on this host.
 */
#include "test.h"

#include "attention/attn_split.h"
#include "backend/cuda/cuda_plan.h"
#include "inferd/backend.h"
#include "inferd/model.h"
#include "rope/rope_pairs.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    ASSERT(p.n_split > 1 && p.n_split <= IK_ATTN_MAX_SPLITS); /* the merge reads two splits per lane */
    ASSERT_EQ(p.split_len % 32, 0);
    ASSERT(p.split_len >= 64);
    ASSERT((int64_t)p.n_split * p.split_len >= 4096);
    ASSERT((int64_t)(p.n_split - 1) * p.split_len < 4096); /* no empty split */
    check_tiles(qs, 1, &p);

    /* 512 tokens (the GPU check's decode depth): 8 KV heads alone are 8 blocks;
     * splits of 64 positions give 64 blocks, where 256-position splits gave 16 */
    ctx[0] = 512;
    ASSERT_OK(cuda_plan_attention(qs, ctx, 1, 32, 8, 132, &p));
    ASSERT_EQ(p.n_split, 8);
    ASSERT_EQ(p.split_len, 64);

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

    /* whatever the GPU and context, never more splits than the kernel's merge takes (it refuses more) */
    const int sms[] = { 1, 132, 4096 }, kv_heads[] = { 1, 2, 8 }, ctxs[] = { 65, 4096, 131072, 1 << 20 };
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) {
                ASSERT_OK(cuda_plan_attention_decode(1, ctxs[k], 8 * kv_heads[j], kv_heads[j], sms[i], &p));
                ASSERT(p.n_split >= 1 && p.n_split <= IK_ATTN_MAX_SPLITS);
            }
}

/* Non-empty splits of a kv_end context over n_split blocks, and the longest. */
static int used_splits(int kv_end, int n_split, int *longest)
{
    int used = 0;
    *longest = 0;
    for (int z = 0; z < n_split; z++) {
        int s0, s1;
        ik_attn_split_range(kv_end, n_split, z, &s0, &s1);
        if (s1 > s0) used++;
        if (s1 - s0 > *longest) *longest = s1 - s0;
    }
    return used;
}

TEST(cuda_attention_split_ranges_cover_context)
{
    const int splits[] = { 1, 2, 3, 7, 11, 16, 32, 33, 64 };
    for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++) {
        int n = splits[i];
        for (int kv_end = 0; kv_end <= 4200; kv_end++) {
            int next = 0, share = (kv_end + n - 1) / n;
            for (int z = 0; z < n; z++) {
                int s0, s1;
                ik_attn_split_range(kv_end, n, z, &s0, &s1);
                ASSERT_EQ(s0, next); /* in order, no gap, no overlap */
                ASSERT(s1 >= s0 && s1 <= kv_end);
                if (n > 1 && s0 < kv_end) { /* whole K/V tiles, an even share each */
                    ASSERT_EQ(s0 % IK_ATTN_TILE, 0);
                    ASSERT(s1 - s0 <= (share + IK_ATTN_TILE - 1) / IK_ATTN_TILE * IK_ATTN_TILE);
                }
                next = s1;
            }
            ASSERT_EQ(next, kv_end); /* every position, exactly once */
        }
    }
    /* a graph step plans for its tables' length; a 513-token decode still
     * spreads: 17 one-tile splits of the 32 planned for 8,192 positions,
     * 9 splits of at most two tiles of the 11 planned for 1,056 */
    struct cuda_attn_plan p;
    int longest;
    ASSERT_OK(cuda_plan_attention_decode(1, 8192, 32, 8, 132, &p));
    ASSERT_EQ(p.n_split, 32);
    ASSERT_EQ(used_splits(513, p.n_split, &longest), 17);
    ASSERT_EQ(longest, 32);
    ASSERT_OK(cuda_plan_attention_decode(1, 1056, 32, 8, 132, &p));
    ASSERT_EQ(p.n_split, 11);
    ASSERT_EQ(used_splits(513, p.n_split, &longest), 9);
    ASSERT_EQ(longest, 64);
}

/* The pairs of the fused RoPE + KV store cover each element of a head
 * exactly once; the rotated ones lie inside rope_dim, in the right order. */
TEST(cuda_rope_pairs_cover_each_head_element_once)
{
    const int dims[][2] = { { 64, 64 }, { 128, 128 }, { 128, 64 }, { 80, 32 }, { 256, 128 }, { 96, 2 } };
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++)
        for (int neox = 0; neox < 2; neox++) {
            int hd = dims[d][0], rot = dims[d][1], seen[256] = { 0 };
            for (int j = 0; j < hd / 2; j++) {
                int e0, e1;
                ik_rope_pair(j, rot, neox, &e0, &e1);
                ASSERT(e0 >= 0 && e0 < e1 && e1 < hd);
                seen[e0]++;
                seen[e1]++;
                if (j < rot / 2) {
                    ASSERT(e1 < rot);
                    ASSERT_EQ(e1 - e0, neox ? rot / 2 : 1);
                } else {
                    ASSERT(e0 >= rot);
                }
            }
            for (int e = 0; e < hd; e++) ASSERT_EQ(seen[e], 1);
        }
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

TEST(cuda_plan_graph_decode_attention_plan)
{
    /* a graph is recorded for the longest context its tables describe: the
     * plan must be what cuda_plan_attention gives when every context is that long */
    int32_t qs[65], ctx[64];
    for (int s = 0; s <= 64; s++) qs[s] = s;
    const int batches[] = { 1, 4, 64 }, lens[] = { 100, 1024, 8192 };
    for (size_t b = 0; b < 3; b++) {
        for (size_t l = 0; l < 3; l++) {
            for (int s = 0; s < batches[b]; s++) ctx[s] = lens[l];
            struct cuda_attn_plan want, got;
            ASSERT_OK(cuda_plan_attention(qs, ctx, batches[b], 32, 8, 132, &want));
            ASSERT_OK(cuda_plan_attention_decode(batches[b], lens[l], 32, 8, 132, &got));
            ASSERT_EQ(got.n_tiles, want.n_tiles);
            ASSERT_EQ(got.rows_per_tile, 1);
            ASSERT_EQ(got.warps, want.warps);
            ASSERT_EQ(got.n_split, want.n_split);
            ASSERT_EQ(got.split_len, want.split_len);
        }
    }
    struct cuda_attn_plan p;
    ASSERT_OK(cuda_plan_attention_decode(1, 8192, 32, 8, 132, &p));
    ASSERT((int64_t)p.n_split * p.split_len >= 8192 && p.split_len >= 64);
    ASSERT_EQ(cuda_plan_attention_decode(0, 8192, 32, 8, 132, &p), IFD_ERR_INVALID);
    ASSERT_EQ(cuda_plan_attention_decode(1, 8192, 64, 1, 132, &p), IFD_ERR_UNSUPPORTED);
}

/* A decode plan of n sequences over blocks [s * per, (s + 1) * per), at the given context lengths. */
struct dplan {
    int32_t tok[8], pos[8], slots[8], qs[9], ctx[8], li[8], tables[8 * 16];
    struct batch_plan p;
};

static void dplan_make(struct dplan *d, int n, int per, const int *ctx, const int *tok)
{
    for (int s = 0; s < n; s++) {
        for (int j = 0; j < per; j++) d->tables[s * per + j] = s * per + (per - 1 - j);
        d->tok[s] = tok[s];
        d->pos[s] = ctx[s] - 1;
        d->ctx[s] = ctx[s];
        d->slots[s] = d->tables[s * per + d->pos[s] / 16] * 16 + d->pos[s] % 16;
        d->qs[s] = s;
        d->li[s] = s;
    }
    d->qs[n] = n;
    d->p = (struct batch_plan){ .n_tokens = n, .tokens = d->tok, .positions = d->pos, .slot_mapping = d->slots,
                                .n_seqs = n, .query_start = d->qs, .context_len = d->ctx, .block_tables = d->tables,
                                .max_blocks = per, .n_logits = n, .logits_index = d->li };
}

TEST(cuda_plan_graph_inputs_padding)
{
    struct dplan d;
    const int ctx[3] = { 5, 40, 17 }, tok[3] = { 11, 12, 13 };
    dplan_make(&d, 3, 4, ctx, tok);
    ASSERT(cuda_plan_graph_eligible(&d.p));

    /* strides: at least 64 blocks, doubled to fit, never shrinking */
    ASSERT_EQ(cuda_plan_graph_stride(4, 0), 64);
    ASSERT_EQ(cuda_plan_graph_stride(65, 64), 128);
    ASSERT_EQ(cuda_plan_graph_stride(513, 64), 1024);
    ASSERT_EQ(cuda_plan_graph_stride(10, 256), 256);

    struct cuda_graph_layout lay;
    cuda_plan_graph_layout(4, 64, &lay);
    size_t offs[] = { lay.tokens, lay.positions, lay.slots, lay.query_start, lay.context_len, lay.logits_index,
                      lay.tiles, lay.block_tables };
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        ASSERT_EQ(offs[i] % CUDA_GRAPH_ALIGN, 0);
        if (i) ASSERT(offs[i] > offs[i - 1]);
    }
    ASSERT(lay.bytes >= lay.block_tables + 4 * 64 * sizeof(int32_t));
    uint8_t *buf = malloc(lay.bytes);
    memset(buf, 0x5a, lay.bytes);
    struct batch_plan pp;
    cuda_plan_graph_fill(&d.p, &lay, buf, &pp);
    ASSERT_EQ(pp.n_tokens, 4);
    ASSERT_EQ(pp.n_seqs, 4);
    ASSERT_EQ(pp.n_logits, 4);
    ASSERT_EQ(pp.max_blocks, 64);
    ASSERT((const uint8_t *)pp.tokens == buf + lay.tokens && (const uint8_t *)pp.block_tables == buf + lay.block_tables);
    ASSERT(cuda_plan_graph_eligible(&pp)); /* a padded plan is itself a plain decode plan */
    for (int s = 0; s < 3; s++) { /* real rows unchanged, in place */
        ASSERT_EQ(pp.tokens[s], tok[s]);
        ASSERT_EQ(pp.positions[s], d.pos[s]);
        ASSERT_EQ(pp.slot_mapping[s], d.slots[s]);
        ASSERT_EQ(pp.context_len[s], ctx[s]);
        for (int j = 0; j < 4; j++) ASSERT_EQ(pp.block_tables[s * 64 + j], d.tables[s * 4 + j]);
        for (int j = 4; j < 64; j++) ASSERT_EQ(pp.block_tables[s * 64 + j], 0);
    }
    /* the padding row: stores nothing, sees nothing */
    ASSERT_EQ(pp.slot_mapping[3], -1);
    ASSERT_EQ(pp.context_len[3], 0);
    ASSERT_EQ(pp.tokens[3], 0);
    ASSERT_EQ(pp.query_start[4], 4);
    const struct cuda_attn_tile *t = (const struct cuda_attn_tile *)(buf + lay.tiles);
    for (int s = 0; s < 4; s++) ASSERT(t[s].seq == s && t[s].row0 == s && t[s].n_rows == 1);
    free(buf);

    /* what a graph cannot take: prefill rows, a subset of logits, adapters */
    int32_t qs2[3] = { 0, 2, 3 };
    struct batch_plan bad = d.p;
    bad.query_start = qs2;
    ASSERT(!cuda_plan_graph_eligible(&bad));
    bad = d.p;
    bad.n_logits = 2;
    ASSERT(!cuda_plan_graph_eligible(&bad));
    int32_t li[3] = { 0, 2, 1 };
    bad = d.p;
    bad.logits_index = li;
    ASSERT(!cuda_plan_graph_eligible(&bad));
    int32_t ad[3] = { -1, -1, -1 };
    bad = d.p;
    bad.adapter_slot = ad;
    ASSERT(!cuda_plan_graph_eligible(&bad));
}

/* Runs prompts of the given lengths, one sequence at a time, into kv (blocks as dplan_make lays them out). */
static void prefill_seqs(const struct model *m, struct model_workspace *ws, struct kv_cache *kv, int n, int per,
                         const int *len)
{
    for (int s = 0; s < n; s++) {
        int32_t tok[64], pos[64], slots[64], table[16], qs[2] = { 0, len[s] }, ctx = len[s], last = len[s] - 1;
        for (int j = 0; j < per; j++) table[j] = s * per + (per - 1 - j);
        for (int i = 0; i < len[s]; i++) {
            tok[i] = (i * 31 + s * 7 + 1) % m->hp.n_vocab;
            pos[i] = i;
            slots[i] = table[i / 16] * 16 + i % 16;
        }
        struct batch_plan p = { .n_tokens = len[s], .tokens = tok, .positions = pos, .slot_mapping = slots,
                                .n_seqs = 1, .query_start = qs, .context_len = &ctx, .block_tables = table,
                                .max_blocks = per, .n_logits = 1, .logits_index = &last };
        float *lg = malloc((size_t)m->hp.n_vocab * 4);
        ASSERT_OK(model_forward(m, ws, kv, &p, lg));
        free(lg);
    }
}

/* The padding contract of backend.h run_step, on the reference backend: a
 * decode step padded as the CUDA graphs pad it gives the real rows exactly
 * the logits and KV writes of the unpadded step. */
TEST(cuda_plan_graph_padding_is_inert_on_cpu)
{
    struct backend *be;
    char err[256];
    struct backend_opts bo = { .device = "cpu", .n_threads = 2 };
    ASSERT_OK(backend_create(&be, &bo, err, sizeof err));
    struct model *m;
    struct model_load_opts o = { .dummy = 1, .dummy_preset = "tiny", .dummy_type = QT_Q4_1, .seed = 7 };
    ASSERT_MSG(model_load(&m, be, &o, err, sizeof err) == 0, "%s", err);
    enum { N = 3, PER = 4, BUCKET = 8, STEPS = 6 };
    struct model_workspace *ws;
    struct kv_cache *kv_a, *kv_b;
    ASSERT_OK(model_workspace_init(&ws, m, 64, BUCKET));
    ASSERT_OK(kv_cache_init(&kv_a, m, N * PER, 16, KV_F16));
    ASSERT_OK(kv_cache_init(&kv_b, m, N * PER, 16, KV_F16));
    const int len[N] = { 5, 33, 17 };
    prefill_seqs(m, ws, kv_a, N, PER, len);
    prefill_seqs(m, ws, kv_b, N, PER, len);

    size_t V = (size_t)m->hp.n_vocab;
    float *la = malloc(N * V * 4), *lb = malloc(BUCKET * V * 4);
    struct cuda_graph_layout lay;
    cuda_plan_graph_layout(BUCKET, CUDA_GRAPH_MIN_STRIDE, &lay);
    uint8_t *buf = malloc(lay.bytes);
    int ctx[N], tok[N];
    for (int s = 0; s < N; s++) ctx[s] = len[s] + 1, tok[s] = 100 + s;
    for (int step = 0; step < STEPS; step++) {
        struct dplan d;
        dplan_make(&d, N, PER, ctx, tok);
        struct batch_plan padded;
        cuda_plan_graph_fill(&d.p, &lay, buf, &padded);
        ASSERT_OK(model_forward(m, ws, kv_a, &d.p, la));
        ASSERT_OK(model_forward(m, ws, kv_b, &padded, lb));
        ASSERT_MSG(memcmp(la, lb, N * V * 4) == 0, "step %d: real rows' logits differ when padded", step);
        for (int s = 0; s < N; s++) ctx[s]++, tok[s] = (tok[s] * 17 + 3) % m->hp.n_vocab;
    }
    size_t layer_bytes = (size_t)N * PER * 16 * kv_a->kv_dim * sizeof(f16_t);
    for (int l = 0; l < kv_a->n_layer; l++) {
        ASSERT_MSG(memcmp(kv_a->layers[l].k, kv_b->layers[l].k, layer_bytes) == 0, "layer %d K differs", l);
        ASSERT_MSG(memcmp(kv_a->layers[l].v, kv_b->layers[l].v, layer_bytes) == 0, "layer %d V differs", l);
    }
    free(buf), free(la), free(lb);
    kv_cache_free(kv_a);
    kv_cache_free(kv_b);
    model_workspace_free(m, ws);
    model_free(m);
    backend_destroy(be);
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
    /* a cap below one sequence (one max_num_seqs sequence and its spare block)
     * must not refuse a device with room: the minimum wins (the GPU check's
     * `inferd generate` hit "hold 512 blocks, one sequence needs 513") */
    in.max_blocks = 511;
    ASSERT_OK(cuda_plan_memory(&in, &p, err, sizeof err));
    ASSERT_EQ(p.n_blocks, 512);
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
