/* SPDX-License-Identifier: Apache-2.0
 *
 * scheduler.c: iteration-level scheduling over the paged KV cache.
 *
 * Each step, under a token budget (max_num_batched_tokens) and a sequence cap
 * (max_num_seqs):
 *   1. running sequences that decode (one token each), in priority order;
 *   2. running sequences still prefilling, one chunk each;
 *   3. waiting sequences, in priority order: prefix-cache lookup on first
 *      admission, then a first prompt chunk, if blocks are free.
 * When a running sequence needs a block and none is free, the lowest-priority,
 * newest running sequence is preempted: its blocks go back to the pool and it
 * returns to the waiting queue to be recomputed (the prefix cache usually
 * recovers most of it). The oldest sequence is never a victim, so progress is
 * guaranteed; submit refuses what could never fit the pool alone.
 *
 * Writing into a block another sequence also references (n > 1 choices after
 * the prompt) first copies it: copy-on-write.
 *
 * Layer: engine.
 */
#include "engine_internal.h"
#include "inferd/error.h"

#include <stdlib.h>
#include <string.h>

/* ---- sorted sequence sets (small: linear shifts are fine) ---- */

static bool seq_before(const struct seq *a, const struct seq *b)
{
    int pa = a->req->params.priority, pb = b->req->params.priority;
    return pa < pb || (pa == pb && a->order < b->order);
}

static int set_insert(struct seq ***set, int *n, int *cap, struct seq *s)
{
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 64;
        struct seq **p = realloc(*set, (size_t)c * sizeof *p);
        if (!p) return IFD_ERR_NOMEM;
        *set = p;
        *cap = c;
    }
    int i = *n;
    while (i > 0 && seq_before(s, (*set)[i - 1])) {
        (*set)[i] = (*set)[i - 1];
        i--;
    }
    (*set)[i] = s;
    (*n)++;
    return 0;
}

static void set_remove(struct seq **set, int *n, struct seq *s)
{
    for (int i = 0; i < *n; i++)
        if (set[i] == s) {
            memmove(&set[i], &set[i + 1], (size_t)(*n - i - 1) * sizeof *set);
            (*n)--;
            return;
        }
}

int sched_add_waiting(struct engine *e, struct seq *s)
{
    s->running = false;
    return set_insert(&e->waiting, &e->n_waiting, &e->cap_waiting, s);
}

int sched_add_running(struct engine *e, struct seq *s)
{
    s->running = true;
    return set_insert(&e->running, &e->n_running, &e->cap_running, s);
}

void sched_remove(struct engine *e, struct seq *s)
{
    if (s->running) set_remove(e->running, &e->n_running, s);
    else set_remove(e->waiting, &e->n_waiting, s);
    s->running = false;
}

/* ---- blocks ---- */

void sched_release_blocks(struct engine *e, struct seq *s)
{
    for (int i = s->n_blocks - 1; i >= 0; i--) kvb_unref(&e->blocks, s->blocks[i]);
    s->n_blocks = s->n_hashed = 0;
}

void sched_register_blocks(struct engine *e, struct seq *s)
{
    if (!e->cfg.enable_prefix_caching) return;
    int bs = e->cfg.block_size, full = s->n_computed / bs;
    for (int b = s->n_hashed; b < full && b < s->n_blocks; b++) {
        uint64_t parent = b ? s->hashes[b - 1] : 0;
        s->hashes[b] = kvb_hash(parent, s->tokens + (size_t)b * bs, bs, s->req->params.adapter_id);
        kvb_register(&e->blocks, s->blocks[b], s->hashes[b], s->tokens + (size_t)b * bs);
        s->n_hashed = b + 1;
    }
}

/* Takes cached blocks for the longest known prefix; at least one token is left
 * to compute so the step produces logits. */
static void lookup_prefix(struct engine *e, struct seq *s)
{
    int bs = e->cfg.block_size, full = (s->n_tokens - 1) / bs;
    uint64_t parent = 0;
    int found = 0;
    for (int b = 0; b < full; b++) {
        const int32_t *toks = s->tokens + (size_t)b * bs;
        uint64_t h = kvb_hash(parent, toks, bs, s->req->params.adapter_id);
        int32_t id = kvb_lookup(&e->blocks, h, toks);
        if (id < 0) break;
        s->blocks[b] = id;
        s->hashes[b] = h;
        parent = h;
        found++;
    }
    s->n_blocks = s->n_hashed = found;
    s->n_computed = found * bs;
    e->blocks.queries += (uint64_t)s->n_tokens;
    e->blocks.hits += (uint64_t)found * bs;
}

/* Makes s hold blocks for positions [0, upto) and an unshared block at its
 * first write position. Returns false (changing nothing it cannot keep) when
 * the pool is out of blocks. */
static bool ensure_blocks(struct engine *e, struct seq *s, int upto)
{
    int bs = e->cfg.block_size, first = s->n_computed / bs;
    if (first < s->n_blocks && e->blocks.ref[s->blocks[first]] > 1) {
        int32_t fresh = kvb_alloc(&e->blocks);
        if (fresh < 0) return false;
        /* copied now, before anything else this step can reuse either block */
        kv_cache_copy_blocks(e->kv, &s->blocks[first], &fresh, 1);
        kvb_unref(&e->blocks, s->blocks[first]);
        s->blocks[first] = fresh;
        if (first < s->n_hashed) s->n_hashed = first; /* the copy is not (yet) a cached block */
    }
    int need = (upto + bs - 1) / bs;
    while (s->n_blocks < need) {
        int32_t id = kvb_alloc(&e->blocks);
        if (id < 0) return false;
        s->blocks[s->n_blocks++] = id;
    }
    return true;
}

/* Takes a sequence out of this step's plan, giving its tokens back to the budget. */
static void unschedule(struct engine *e, struct seq *s, int *budget)
{
    for (int j = 0; j < e->p_n; j++)
        if (e->p_seqs[j] == s) {
            *budget += e->p_chunk[j];
            memmove(&e->p_seqs[j], &e->p_seqs[j + 1], (size_t)(e->p_n - j - 1) * sizeof *e->p_seqs);
            memmove(&e->p_chunk[j], &e->p_chunk[j + 1], (size_t)(e->p_n - j - 1) * sizeof *e->p_chunk);
            e->p_n--;
            return;
        }
}

/* Sends the newest, lowest-priority running sequence back to waiting (and out
 * of this step's plan if it was already in it: decodes are planned before
 * prefill chunks of higher-priority sequences). */
static struct seq *preempt_one(struct engine *e, int *budget)
{
    struct seq *victim = e->running[e->n_running - 1];
    unschedule(e, victim, budget);
    sched_remove(e, victim);
    sched_release_blocks(e, victim);
    victim->n_computed = 0;
    sched_add_waiting(e, victim); /* cannot fail: waiting has room for every sequence */
    pthread_mutex_lock(&e->stats_mu);
    e->stats.preemptions++;
    pthread_mutex_unlock(&e->stats_mu);
    return victim;
}

/* ---- one step ---- */

static void add_entry(struct engine *e, struct seq *s, int chunk)
{
    e->p_seqs[e->p_n] = s;
    e->p_chunk[e->p_n++] = chunk;
}

/* Schedules running sequences (decodes if want_decode, else prefill chunks). */
static void schedule_running(struct engine *e, bool want_decode, int *budget)
{
    for (int i = 0; i < e->n_running && *budget > 0 && e->p_n < e->cfg.max_num_seqs; i++) {
        struct seq *s = e->running[i];
        int want = s->n_tokens - s->n_computed;
        if ((want == 1) != want_decode) continue;
        bool preempted_self = false;
        while (!ensure_blocks(e, s, s->n_computed + (want < *budget ? want : *budget))) {
            if (preempt_one(e, budget) == s) {
                preempted_self = true;
                break;
            }
        }
        if (preempted_self) break; /* s was the last: nothing after it remains */
        int chunk = want < *budget ? want : *budget; /* a preempted victim may have returned budget */
        add_entry(e, s, chunk);
        *budget -= chunk;
    }
}

static void schedule_waiting(struct engine *e, int *budget)
{
    int watermark = e->blocks.n_blocks / 100 > 0 ? e->blocks.n_blocks / 100 : 1;
    while (e->n_waiting > 0 && *budget > 0 && e->n_running < e->cfg.max_num_seqs && e->p_n < e->cfg.max_num_seqs) {
        struct seq *s = e->waiting[0];
        if (s->n_blocks == 0 && e->cfg.enable_prefix_caching) lookup_prefix(e, s);
        int want = s->n_tokens - s->n_computed, chunk = want < *budget ? want : *budget;
        int bs = e->cfg.block_size, need = (s->n_computed + chunk + bs - 1) / bs - s->n_blocks;
        /* keep a few blocks for running decodes, unless nothing else is running */
        int reserve = e->n_running ? watermark : 0;
        if (e->blocks.n_free < need + reserve || !ensure_blocks(e, s, s->n_computed + chunk)) {
            sched_release_blocks(e, s); /* give back cache hits; the lookup repeats next time */
            s->n_computed = 0;
            break;
        }
        set_remove(e->waiting, &e->n_waiting, s);
        sched_add_running(e, s); /* cannot fail: running holds at most max_num_seqs here */
        struct request *r = s->req;
        if (r->state == REQ_WAITING) {
            r->state = REQ_RUNNING;
            r->t_scheduled = ifd_now();
            r->cached_tokens = s->n_computed;
            pthread_mutex_lock(&e->inbox_mu); /* the request no longer counts against max_queued_requests */
            e->n_queued--;
            pthread_mutex_unlock(&e->inbox_mu);
        }
        add_entry(e, s, chunk);
        *budget -= chunk;
    }
}

/* Lays the scheduled entries out as one flat batch plan. */
static void build_plan(struct engine *e)
{
    int bs = e->cfg.block_size, row = 0, n_logits = 0, mb = e->max_blocks_per_seq;
    for (int j = 0; j < e->p_n; j++) {
        struct seq *s = e->p_seqs[j];
        int start = s->n_computed, c = e->p_chunk[j];
        e->p_query_start[j] = row;
        for (int t = 0; t < c; t++, row++) {
            int pos = start + t;
            e->p_tokens[row] = s->tokens[pos];
            e->p_positions[row] = pos;
            e->p_slots[row] = s->blocks[pos / bs] * bs + pos % bs;
        }
        e->p_context_len[j] = start + c;
        memcpy(e->p_block_tables + (size_t)j * mb, s->blocks, (size_t)s->n_blocks * sizeof *s->blocks);
        if (start + c == s->n_tokens) e->p_logits_index[n_logits++] = row - 1;
    }
    e->p_query_start[e->p_n] = row;
    e->plan = (struct batch_plan){
        .n_tokens = row, .tokens = e->p_tokens, .positions = e->p_positions, .slot_mapping = e->p_slots,
        .n_seqs = e->p_n, .query_start = e->p_query_start, .context_len = e->p_context_len,
        .block_tables = e->p_block_tables, .max_blocks = mb, .n_logits = n_logits,
        .logits_index = e->p_logits_index,
    };
}

int sched_step(struct engine *e)
{
    e->p_n = 0;
    int budget = e->cfg.max_num_batched_tokens;
    schedule_running(e, true, &budget);
    schedule_running(e, false, &budget);
    schedule_waiting(e, &budget);
    if (e->p_n == 0) return 0;
    build_plan(e);
    return e->p_n;
}

int sched_init(struct engine *e)
{
    int T = e->cfg.max_num_batched_tokens, S = e->cfg.max_num_seqs;
    size_t V = (size_t)e->model->hp.n_vocab;
    e->p_tokens = malloc((size_t)T * sizeof(int32_t));
    e->p_positions = malloc((size_t)T * sizeof(int32_t));
    e->p_slots = malloc((size_t)T * sizeof(int32_t));
    e->p_query_start = malloc((size_t)(S + 1) * sizeof(int32_t));
    e->p_context_len = malloc((size_t)S * sizeof(int32_t));
    e->p_block_tables = malloc((size_t)S * (size_t)e->max_blocks_per_seq * sizeof(int32_t));
    e->p_logits_index = malloc((size_t)S * sizeof(int32_t));
    e->p_seqs = malloc((size_t)S * sizeof *e->p_seqs);
    e->p_chunk = malloc((size_t)S * sizeof *e->p_chunk);
    e->logits = backend_host_alloc(e->model->be, (size_t)S * V * sizeof(float)); /* pinned on a GPU */
    e->scratch_logits = malloc(V * sizeof(float));
    e->samples = malloc((size_t)S * sizeof *e->samples);
    e->running = malloc((size_t)S * sizeof *e->running);
    e->cap_running = S;
    if (!e->p_tokens || !e->p_positions || !e->p_slots || !e->p_query_start || !e->p_context_len ||
        !e->p_block_tables || !e->p_logits_index || !e->p_seqs || !e->p_chunk || !e->logits || !e->scratch_logits ||
        !e->samples || !e->running)
        return IFD_ERR_NOMEM;
    return 0;
}

void sched_free(struct engine *e)
{
    free(e->p_tokens);
    free(e->p_positions);
    free(e->p_slots);
    free(e->p_query_start);
    free(e->p_context_len);
    free(e->p_block_tables);
    free(e->p_logits_index);
    free(e->p_seqs);
    free(e->p_chunk);
    if (e->model) backend_host_free(e->model->be, e->logits);
    free(e->scratch_logits);
    free(e->samples);
    free(e->running);
    free(e->waiting);
}
