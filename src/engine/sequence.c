/* SPDX-License-Identifier: Apache-2.0
 *
 * sequence.c: what happens to one sequence (a choice) once its logits are
 * there: logprobs of the raw distribution, end-token suppression before
 * min_tokens, sampling, stop conditions (end-of-generation and stop tokens,
 * stop strings across token boundaries, max_tokens, the context limit), text
 * through the streaming detokenizer, and the chunk that carries it all to the
 * request's stream. Also: forking a request into n choices after its prompt,
 * and finishing a choice (blocks returned, last chunk, usage when the whole
 * request is done).
 *
 * Layer: engine.
 */
#include "engine_internal.h"
#include "inferd/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct seq *seq_create(struct engine *e, struct request *r, int choice, const int32_t *tokens, int n)
{
    struct seq *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->req = r;
    s->choice = choice;
    s->cap_tokens = e->max_model_len + 1;
    s->cap_blocks = e->max_blocks_per_seq;
    s->tokens = malloc((size_t)s->cap_tokens * sizeof *s->tokens);
    s->blocks = malloc((size_t)s->cap_blocks * sizeof *s->blocks);
    s->hashes = malloc((size_t)s->cap_blocks * sizeof *s->hashes);
    struct sampler_params sp = r->params.sampling;
    /* choice i of a seeded request draws from seed + i: reproducible, and distinct per choice */
    sp.seed = r->params.has_seed ? r->params.sampling.seed + (uint64_t)choice : rng_next(&e->rng);
    if (!s->tokens || !s->blocks || !s->hashes || sampler_init(&s->sampler, &sp, e->model->hp.n_vocab)) {
        seq_destroy(s);
        return NULL;
    }
    memcpy(s->tokens, tokens, (size_t)n * sizeof *tokens);
    s->n_tokens = n;
    sampler_add_prompt(&s->sampler, tokens, r->n_prompt);
    detok_init(&s->detok, e->tok, false);
    stop_init(&s->stop, r->params.stop, r->params.n_stop);
    s->order = r->seqs[0] ? r->seqs[0]->order : e->next_order++;
    return s;
}

void seq_destroy(struct seq *s)
{
    if (!s) return;
    sampler_free(&s->sampler);
    stop_free(&s->stop);
    free(s->tokens);
    free(s->blocks);
    free(s->hashes);
    free(s);
}

int seq_fork(struct engine *e, struct request *r)
{
    struct seq *parent = r->seqs[0];
    for (int i = 1; i < r->params.n; i++) {
        struct seq *c = seq_create(e, r, i, parent->tokens, parent->n_tokens);
        if (!c) return IFD_ERR_NOMEM;
        /* share every block: the prompt is computed once; writes copy on demand */
        memcpy(c->blocks, parent->blocks, (size_t)parent->n_blocks * sizeof *c->blocks);
        memcpy(c->hashes, parent->hashes, (size_t)parent->n_hashed * sizeof *c->hashes);
        for (int b = 0; b < parent->n_blocks; b++) kvb_ref(&e->blocks, parent->blocks[b]);
        c->n_blocks = parent->n_blocks;
        c->n_hashed = parent->n_hashed;
        c->n_computed = parent->n_computed;
        r->seqs[r->n_seqs++] = c;
        if (sched_add_running(e, c)) return IFD_ERR_NOMEM;
    }
    return 0;
}

/* ---- logprobs ---- */

/* log-sum-exp of a logits row, for log-softmax. */
static double logsumexp(const float *x, int n)
{
    float max = x[sampler_argmax(x, n)];
    double sum = 0;
    for (int i = 0; i < n; i++) sum += exp((double)x[i] - max);
    return max + log(sum);
}

/* Fills lp (except the chosen token) with the k most likely ids of the raw distribution. */
static void top_logprobs(const float *raw, int n, int k, double lse, struct engine_logprob *lp)
{
    lp->n_top = 0;
    for (int i = 0; i < n && k > 0; i++) {
        int pos = lp->n_top < k ? lp->n_top++ : k; /* insertion into a sorted list of k */
        if (pos == k && raw[i] <= lp->top_logprobs[k - 1]) continue;
        if (pos == k) pos = k - 1;
        while (pos > 0 && lp->top_logprobs[pos - 1] < raw[i]) {
            lp->top_ids[pos] = lp->top_ids[pos - 1];
            lp->top_logprobs[pos] = lp->top_logprobs[pos - 1];
            pos--;
        }
        lp->top_ids[pos] = i;
        lp->top_logprobs[pos] = raw[i];
    }
    for (int j = 0; j < lp->n_top; j++) lp->top_logprobs[j] = (float)(lp->top_logprobs[j] - lse);
}

/* ---- output ---- */

static struct engine_chunk *chunk_new(int choice)
{
    struct engine_chunk *c = calloc(1, sizeof *c);
    if (c) c->choice = choice;
    return c;
}

void engine_chunk_free(struct engine_chunk *c)
{
    if (!c) return;
    free(c->token_ids);
    free(c->logprobs);
    free(c->text);
    free(c->stop_reason);
    free(c);
}

static bool is_stop_id(const struct engine_params *p, int32_t id)
{
    for (int i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] == id) return true;
    return false;
}

/* Why the sequence ends after appending id, or NONE. */
static enum engine_finish finish_after(const struct engine *e, const struct seq *s, int32_t id, bool *hide)
{
    const struct engine_params *p = &s->req->params;
    *hide = false;
    if ((!p->ignore_eos && e->tok && tokenizer_is_eog(e->tok, id)) || is_stop_id(p, id)) {
        *hide = true; /* end tokens are not text (as vLLM with skip_special_tokens) */
        return ENGINE_FINISH_STOP;
    }
    if (p->max_tokens > 0 && s->n_generated >= p->max_tokens) return ENGINE_FINISH_LENGTH;
    if (s->n_tokens >= e->max_model_len) return ENGINE_FINISH_LENGTH;
    return ENGINE_FINISH_NONE;
}

/* Turns id into text on c, through the stop matcher (*matched: stop index or -1).
 * Returns 0 or IFD_ERR_NOMEM. */
static int add_text(struct engine *e, struct seq *s, int32_t id, struct engine_chunk *c, int *matched)
{
    *matched = -1;
    if (!e->tok) return 0; /* token-ids-only mode */
    char piece[1024];
    int cap = tokenizer_max_piece_len(e->tok) + 4, n;
    char *buf = cap <= (int)sizeof piece ? piece : malloc((size_t)cap);
    if (!buf) return IFD_ERR_NOMEM;
    n = detok_push(&s->detok, id, buf, cap);
    int rc = n > 0 ? stop_feed(&s->stop, buf, (size_t)n, &c->text, &c->text_len, matched) : 0;
    if (buf != piece) free(buf);
    return rc;
}

/* Retires a choice: blocks back to the pool, its last chunk (c may be NULL when
 * out of memory) out, and the request closed when it was the last choice. */
static void end_choice(struct engine *e, struct seq *s, struct engine_chunk *c, double now)
{
    struct request *r = s->req;
    sched_remove(e, s);
    sched_release_blocks(e, s);
    s->finished = true;
    r->n_done++;
    (void)now;
    engine_emit(e, r, c, r->n_done == r->n_seqs);
}

int32_t seq_sample(struct engine *e, struct seq *s, float *logits, float *scratch, struct engine_logprob **lp_out)
{
    const struct engine_params *p = &s->req->params;
    int V = e->model->hp.n_vocab;
    double lse = 0;
    struct engine_logprob *lp = NULL;
    *lp_out = NULL;
    if (p->logprobs >= 0 && !(lp = calloc(1, sizeof *lp))) return -1;
    *lp_out = lp;
    if (lp) {
        memcpy(scratch, logits, (size_t)V * sizeof *logits); /* raw row, before penalties */
        lse = logsumexp(logits, V);
        top_logprobs(logits, V, p->logprobs, lse, lp);
    }
    if (s->n_generated < p->min_tokens) {
        for (int i = 0; i < e->n_eog; i++) logits[e->eog_ids[i]] = -INFINITY;
        for (int i = 0; i < p->n_stop_ids; i++) logits[p->stop_ids[i]] = -INFINITY;
    }
    int32_t id = sampler_sample(&s->sampler, logits);
    if (lp) {
        lp->id = id;
        lp->logprob = (float)(scratch[id] - lse);
    }
    return id;
}

void seq_advance(struct engine *e, struct seq *s, float *logits, double now)
{
    struct engine_logprob *lp;
    int32_t id = seq_sample(e, s, logits, e->scratch_logits, &lp);
    seq_advance_sampled(e, s, id, lp, now);
}

void seq_advance_sampled(struct engine *e, struct seq *s, int32_t id, struct engine_logprob *lp, double now)
{
    if (id < 0) {
        seq_finish(e, s, ENGINE_FINISH_ERROR, NULL, "out of memory", now);
        return;
    }
    struct request *r = s->req;
    const struct engine_params *p = &r->params;
    struct engine_chunk *c = chunk_new(s->choice);
    if (!c) {
        free(lp);
        seq_finish(e, s, ENGINE_FINISH_ERROR, NULL, "out of memory", now);
        return;
    }
    c->logprobs = lp;
    sampler_accept(&s->sampler, id);
    s->tokens[s->n_tokens++] = id;
    s->n_generated++;
    r->completion_tokens++;
    c->token_ids = malloc(sizeof *c->token_ids);
    if (c->token_ids) c->token_ids[c->n_tokens++] = id;

    if (r->t_first_token == 0) {
        r->t_first_token = now;
        pthread_mutex_lock(&e->stats_mu);
        engine_hist_add(&e->stats.ttft, now - r->t_arrival);
        pthread_mutex_unlock(&e->stats_mu);
    } else if (s->t_last_token > 0) {
        pthread_mutex_lock(&e->stats_mu);
        engine_hist_add(&e->stats.itl, now - s->t_last_token);
        pthread_mutex_unlock(&e->stats_mu);
    }
    s->t_last_token = now;

    bool hide;
    enum engine_finish f = finish_after(e, s, id, &hide);
    int stop_idx = -1;
    if ((!hide && add_text(e, s, id, c, &stop_idx)) || !c->token_ids) {
        engine_chunk_free(c);
        seq_finish(e, s, ENGINE_FINISH_ERROR, NULL, "out of memory", now);
        return;
    }
    if (stop_idx >= 0) {
        f = ENGINE_FINISH_STOP;
        c->stop_reason = strdup(p->stop[stop_idx]);
    }
    if (f == ENGINE_FINISH_NONE) {
        engine_emit(e, r, c, false);
        return;
    }
    if (stop_idx < 0) { /* release what the detokenizer and stop matcher still hold */
        char tail[8];
        int n = detok_flush(&s->detok, tail, sizeof tail), late = -1;
        if (n > 0) stop_feed(&s->stop, tail, (size_t)n, &c->text, &c->text_len, &late);
        if (late < 0) stop_flush(&s->stop, &c->text, &c->text_len);
        else c->stop_reason = strdup(p->stop[late]);
    }
    c->finish = f;
    end_choice(e, s, c, now);
}

void seq_finish(struct engine *e, struct seq *s, enum engine_finish f, const char *stop_reason, const char *error,
                double now)
{
    if (s->finished) return;
    struct engine_chunk *c = chunk_new(s->choice);
    if (c) {
        c->finish = f;
        if (stop_reason) c->stop_reason = strdup(stop_reason);
        if (error) snprintf(c->error, sizeof c->error, "%s", error);
    }
    end_choice(e, s, c, now);
}
