/* SPDX-License-Identifier: Apache-2.0
 *
 * batch.h: the flat batch plan one forward pass consumes (vLLM-style attention
 * metadata). A prefill chunk, a decode token and a speculative verification are
 * all the same thing here: query tokens of a sequence attending to that
 * sequence's paged context.
 *
 *   tokens      t0 t1 t2 t3 | t4 | t5 t6      <- n_tokens rows, grouped by sequence
 *   seq         0  0  0  0  | 1  | 2  2
 *   query_start 0           | 4  | 5     7    <- n_seqs + 1 offsets
 *
 * Layer: shared by engine/ (which fills it) and model/ + backend/ (which read it).
 * All arrays are host memory owned by the caller; a backend copies what it needs.
 */
#ifndef INFERD_BATCH_H
#define INFERD_BATCH_H

#include <stdint.h>

struct batch_plan {
    int n_tokens;
    const int32_t *tokens;        /* (n_tokens) token ids */
    const int32_t *positions;     /* (n_tokens) position of each token in its sequence */
    const int32_t *slot_mapping;  /* (n_tokens) KV slot = block * block_size + offset; -1: do not store */

    int n_seqs;
    const int32_t *query_start;   /* (n_seqs + 1) first row of each sequence; last = n_tokens */
    const int32_t *context_len;   /* (n_seqs) KV tokens visible to the sequence after this step's stores */
    const int32_t *block_tables;  /* (n_seqs, max_blocks) physical block of each logical block */
    int max_blocks;               /* row stride of block_tables */

    int n_logits;
    const int32_t *logits_index;  /* (n_logits) rows whose logits the caller wants, ascending */

    /* Reserved for the multi-LoRA and speculative-decoding issues; NULL today.
     * adapter_slot: (n_tokens) adapter of each token, -1 = base model.
     * tree_mask: per sequence, (q_len, q_len) visibility among its query tokens;
     *            NULL means plain causal order by position. */
    const int32_t *adapter_slot;
    const uint8_t *const *tree_mask;
};

#endif
