/* SPDX-License-Identifier: Apache-2.0
 *
 * rope_pairs.h: the two elements of a head that pair j of rope.cu's kernels
 * handles. Pairs j < rope_dim / 2 rotate: (2j, 2j + 1) in GGUF's llama
 * order, (j, j + rope_dim / 2) in neox order. The fused RoPE + KV store also
 * walks the pairs past those, which carry the unrotated tail of a head
 * (rope_dim .. head_dim - 1, two by two) into the cache. Plain C so that
 * tests/unit/test_cuda_plan.c checks every element is written exactly once.
 *
 * Layer: kernels.
 */
#ifndef INFERD_ROPE_PAIRS_H
#define INFERD_ROPE_PAIRS_H

#include "../common/ik_host_device.h"

static inline IK_HOST_DEVICE void ik_rope_pair(int j, int rope_dim, int neox, int *e0, int *e1)
{
    int half = rope_dim / 2;
    if (j < half) {
        *e0 = neox ? j : 2 * j;
        *e1 = neox ? j + half : 2 * j + 1;
    } else {
        *e0 = rope_dim + 2 * (j - half);
        *e1 = *e0 + 1;
    }
}

#endif
