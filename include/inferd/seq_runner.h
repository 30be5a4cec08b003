/* SPDX-License-Identifier: Apache-2.0
 *
 * seq_runner.h: the simplest driver of model_forward: one sequence, its own
 * KV blocks laid out in order (block i of the sequence is physical block i).
 * It builds the same batch plan the engine builds for many sequences, chunks
 * long inputs by the workspace size, and asks for logits of the last token
 * only. Used by `inferd generate`, `inferd bench` and the model tests.
 *
 * Layer: engine.
 */
#ifndef INFERD_SEQ_RUNNER_H
#define INFERD_SEQ_RUNNER_H

#include <stdint.h>

#include "inferd/model.h"

struct seq_runner {
    const struct model *m;
    struct kv_cache *kv;
    struct model_workspace *ws;
    int n_ctx;              /* capacity in tokens */
    int n_past;             /* tokens already in the cache */
    int batch;              /* max tokens per forward pass */
    int32_t *block_table;   /* (n_ctx / block_size) identity */
    int32_t *positions;     /* (batch) */
    int32_t *slots;         /* (batch) */
    float *logits;          /* (n_vocab) logits of the last token fed */
};

int seq_runner_init(struct seq_runner *r, const struct model *m, int n_ctx, int batch, enum kv_dtype kv_dtype);
void seq_runner_free(struct seq_runner *r);
/* Appends n tokens; on return r->logits holds the last token's logits.
 * IFD_ERR_RANGE if the context would overflow. */
int seq_runner_feed(struct seq_runner *r, const int32_t *tokens, int n);
/* Forgets the sequence (the cache is simply overwritten next time). */
void seq_runner_reset(struct seq_runner *r);

#endif
