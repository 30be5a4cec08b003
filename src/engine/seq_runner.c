/* SPDX-License-Identifier: Apache-2.0
 * seq_runner.c: single-sequence driver of the forward pass (see seq_runner.h). Layer: engine. */
#include "inferd/seq_runner.h"
#include "inferd/error.h"

#include <stdlib.h>
#include <string.h>

#define SEQ_BLOCK_SIZE 16

void seq_runner_free(struct seq_runner *r)
{
    if (!r->m) return;
    kv_cache_free(r->kv);
    model_workspace_free(r->m, r->ws);
    free(r->block_table);
    free(r->positions);
    free(r->slots);
    backend_host_free(r->m->be, r->logits);
    memset(r, 0, sizeof *r);
}

int seq_runner_init(struct seq_runner *r, const struct model *m, int n_ctx, int batch, enum kv_dtype kv_dtype)
{
    memset(r, 0, sizeof *r);
    if (n_ctx <= 0 || batch <= 0) return IFD_ERR_INVALID;
    r->m = m;
    int n_blocks = (n_ctx + SEQ_BLOCK_SIZE - 1) / SEQ_BLOCK_SIZE;
    r->n_ctx = n_blocks * SEQ_BLOCK_SIZE;
    r->batch = batch;
    r->block_table = malloc((size_t)n_blocks * sizeof *r->block_table);
    r->positions = malloc((size_t)batch * sizeof *r->positions);
    r->slots = malloc((size_t)batch * sizeof *r->slots);
    r->logits = backend_host_alloc(m->be, (size_t)m->hp.n_vocab * sizeof *r->logits);
    int rc = (!r->block_table || !r->positions || !r->slots || !r->logits) ? IFD_ERR_NOMEM : 0;
    if (!rc) rc = kv_cache_init(&r->kv, m, n_blocks, SEQ_BLOCK_SIZE, kv_dtype);
    if (!rc) rc = model_workspace_init(&r->ws, m, batch, 1);
    if (rc) {
        seq_runner_free(r);
        return rc;
    }
    for (int i = 0; i < n_blocks; i++) r->block_table[i] = i;
    return 0;
}

void seq_runner_reset(struct seq_runner *r) { r->n_past = 0; }

int seq_runner_feed(struct seq_runner *r, const int32_t *tokens, int n)
{
    if (n <= 0) return IFD_ERR_INVALID;
    if (n > r->n_ctx - r->n_past) return IFD_ERR_RANGE;
    for (int done = 0; done < n;) {
        int chunk = n - done < r->batch ? n - done : r->batch;
        for (int i = 0; i < chunk; i++) {
            r->positions[i] = r->n_past + i; /* the identity block table makes slot == position */
            r->slots[i] = r->n_past + i;
        }
        int last = done + chunk == n;
        int32_t query_start[2] = { 0, chunk }, context_len = r->n_past + chunk, logits_row = chunk - 1;
        struct batch_plan plan = {
            .n_tokens = chunk, .tokens = tokens + done, .positions = r->positions, .slot_mapping = r->slots,
            .n_seqs = 1, .query_start = query_start, .context_len = &context_len, .block_tables = r->block_table,
            .max_blocks = r->n_ctx / SEQ_BLOCK_SIZE, .n_logits = last ? 1 : 0, .logits_index = &logits_row,
        };
        int rc = model_forward(r->m, r->ws, r->kv, &plan, r->logits);
        if (rc) return rc;
        r->n_past += chunk;
        done += chunk;
    }
    return 0;
}
