/* SPDX-License-Identifier: Apache-2.0
 *
 * attn_split.h: which positions each block of split attention
 * (flash-decoding) takes. Plain C, callable from the kernel and from the
 * host, so that tests/unit/test_cuda_plan.c checks on the CPU the very
 * arithmetic paged_attention.cu runs.
 *
 * The n_split blocks of a (tile, KV head) share the context the tile sees in
 * this step, kv_end positions, evenly and in whole 32-position K/V tiles:
 * block z takes [z * len, (z + 1) * len) clipped to kv_end. The plan's
 * n_split comes from the longest context a graph's block tables can hold,
 * so for a short context the later blocks get nothing.
 *
 * Layer: kernels.
 */
#ifndef INFERD_ATTN_SPLIT_H
#define INFERD_ATTN_SPLIT_H

#include "../common/ik_host_device.h"

#define IK_ATTN_TILE 32 /* positions per staged K/V tile */
#define IK_ATTN_MAX_SPLITS 64 /* the merge reads two splits per lane of a warp */

/* Positions per split: all of kv_end, or an even share rounded up to whole tiles. */
static inline IK_HOST_DEVICE int ik_attn_split_len(int kv_end, int n_split)
{
    if (n_split <= 1) return kv_end;
    int per = (kv_end + n_split - 1) / n_split;
    return (per + IK_ATTN_TILE - 1) / IK_ATTN_TILE * IK_ATTN_TILE;
}

/* Block z's positions [*s0, *s1) (empty when *s0 == *s1). */
static inline IK_HOST_DEVICE void ik_attn_split_range(int kv_end, int n_split, int z, int *s0, int *s1)
{
    long long len = ik_attn_split_len(kv_end, n_split), start = (long long)z * len;
    *s0 = start < kv_end ? (int)start : kv_end;
    *s1 = *s0 + len < kv_end ? (int)(*s0 + len) : kv_end;
}

#endif
