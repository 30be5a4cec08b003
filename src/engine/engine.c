/* SPDX-License-Identifier: Apache-2.0
 *
 * engine.c: the engine thread and everything that crosses threads: creation
 * (sizing the KV pool), the libuv loop, submission and cancellation through a
 * locked inbox plus uv_async, per-request streams, and statistics.
 *
 * The loop: uv_async wakes the thread when something arrives; while there is
 * work a uv_idle handle runs one engine step per loop iteration, so arrivals
 * and cancellations are taken in between steps; with no work the loop blocks.
 *
 * Layer: engine.
 */
#include "engine_internal.h"
#include "inferd/error.h"
#include "inferd/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void engine_config_default(struct engine_config *c)
{
    *c = (struct engine_config){ .block_size = 16, .max_num_batched_tokens = 512, .max_num_seqs = 64,
                                 .max_queued_requests = 256, .enable_prefix_caching = true,
                                 .gpu_memory_utilization = 0.9 };
}

void engine_params_default(struct engine_params *p)
{
    memset(p, 0, sizeof *p);
    sampler_params_default(&p->sampling);
    p->n = 1;
    p->logprobs = -1;
}

const char *engine_finish_name(enum engine_finish f)
{
    static const char *names[] = { "none", "stop", "length", "cancelled", "error" };
    return f <= ENGINE_FINISH_ERROR ? names[f] : "unknown";
}

/* ---- histograms (Prometheus-style cumulative buckets, vLLM's bounds) ---- */

static void hist_init(struct engine_histogram *h, const double *bounds, int n)
{
    memset(h, 0, sizeof *h);
    memcpy(h->bounds, bounds, (size_t)n * sizeof *bounds);
    h->n_bounds = n;
}

void engine_hist_add(struct engine_histogram *h, double v)
{
    int i = 0;
    while (i < h->n_bounds && v > h->bounds[i]) i++;
    h->counts[i]++;
    h->sum += v;
    h->total++;
}

double engine_histogram_quantile(const struct engine_histogram *h, double q)
{
    if (!h->total) return 0;
    double target = q * (double)h->total, seen = 0;
    for (int i = 0; i <= h->n_bounds; i++) {
        if (seen + (double)h->counts[i] >= target && h->counts[i]) {
            double lo = i ? h->bounds[i - 1] : 0, hi = i < h->n_bounds ? h->bounds[i] : h->bounds[h->n_bounds - 1];
            return lo + (hi - lo) * (target - seen) / (double)h->counts[i];
        }
        seen += (double)h->counts[i];
    }
    return h->bounds[h->n_bounds - 1];
}

static void stats_init(struct engine_stats *s)
{
    static const double ttft[] = { 0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0 };
    static const double itl[] = { 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 1.0 };
    static const double e2e[] = { 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0 };
    memset(s, 0, sizeof *s);
    hist_init(&s->ttft, ttft, 16);
    hist_init(&s->itl, itl, 16);
    hist_init(&s->e2e, e2e, 16);
    hist_init(&s->queue, e2e, 16);
}

void engine_get_stats(struct engine *e, struct engine_stats *out)
{
    pthread_mutex_lock(&e->stats_mu);
    *out = e->stats;
    pthread_mutex_unlock(&e->stats_mu);
}

int engine_validate(struct engine *e, char *err, size_t errlen)
{
    const char *msg = kvb_validate(&e->blocks);
    if (msg) return ifd_fail(err, errlen, IFD_ERR_INTERNAL, "KV blocks: %s", msg);
    if (e->n_running || e->n_waiting)
        return ifd_fail(err, errlen, IFD_ERR_INTERNAL, "%d running and %d waiting sequences remain", e->n_running,
                        e->n_waiting);
    return 0;
}

int engine_max_model_len(const struct engine *e) { return e->max_model_len; }
int engine_kv_blocks(const struct engine *e) { return e->blocks.n_blocks; }

/* ---- streams ---- */

struct chunk_node {
    struct engine_chunk *chunk;
    struct chunk_node *next;
};

static struct engine_stream *stream_new(struct engine *e, uint64_t id, engine_notify_fn notify, void *arg)
{
    struct engine_stream *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&s->refs, 2);
    s->notify = notify;
    s->notify_arg = arg;
    s->id = id;
    s->e = e;
    return s;
}

void engine_stream_put(struct engine_stream *s)
{
    if (atomic_fetch_sub(&s->refs, 1) != 1) return;
    for (struct chunk_node *n = s->head, *next; n; n = next) {
        next = n->next;
        engine_chunk_free(n->chunk);
        free(n);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

uint64_t engine_stream_id(const struct engine_stream *s) { return s->id; }

int engine_stream_next(struct engine_stream *s, struct engine_chunk **chunk, int timeout_ms)
{
    *chunk = NULL;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) deadline.tv_sec++, deadline.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&s->mu);
    while (!s->head && !s->last_queued && timeout_ms != 0) {
        if (timeout_ms < 0) pthread_cond_wait(&s->cv, &s->mu);
        else if (pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT) break;
    }
    struct chunk_node *n = s->head;
    if (n) {
        s->head = n->next;
        if (!s->head) s->tail = NULL;
    }
    int rc = n ? 0 : s->last_queued ? IFD_ERR_RANGE : IFD_ERR_NOT_FOUND;
    pthread_mutex_unlock(&s->mu);
    if (n) {
        *chunk = n->chunk;
        free(n);
    }
    return rc;
}

void engine_stream_cancel(struct engine_stream *s)
{
    if (atomic_exchange(&s->cancel, true)) return;
    atomic_fetch_add(&s->e->inbox_cancels, 1);
    uv_async_send(&s->e->wake);
}

void engine_stream_release(struct engine_stream *s)
{
    pthread_mutex_lock(&s->mu);
    bool done = s->last_queued;
    s->notify = NULL; /* the consumer's notify argument may be freed from now on */
    pthread_mutex_unlock(&s->mu);
    if (!done) engine_stream_cancel(s);
    engine_stream_put(s);
}

/* ---- requests ---- */

static void request_free(struct request *r)
{
    for (int i = 0; i < r->n_seqs; i++) seq_destroy(r->seqs[i]);
    free(r->prompt);
    free(r);
}

void engine_emit(struct engine *e, struct request *r, struct engine_chunk *c, bool request_done)
{
    struct engine_stream *s = r->stream;
    if (request_done) {
        double now = ifd_now();
        enum engine_finish f = c ? c->finish : ENGINE_FINISH_ERROR;
        if (c) {
            c->request_done = true;
            c->prompt_tokens = r->n_prompt;
            c->completion_tokens = r->completion_tokens;
            c->cached_tokens = r->cached_tokens;
            c->queue_s = r->t_scheduled ? r->t_scheduled - r->t_arrival : now - r->t_arrival;
            c->ttft_s = r->t_first_token ? r->t_first_token - r->t_arrival : 0;
            c->e2e_s = now - r->t_arrival;
        }
        pthread_mutex_lock(&e->stats_mu);
        e->stats.finished[f]++;
        engine_hist_add(&e->stats.e2e, now - r->t_arrival);
        if (r->t_scheduled) engine_hist_add(&e->stats.queue, r->t_scheduled - r->t_arrival);
        pthread_mutex_unlock(&e->stats_mu);
        if (r->state == REQ_WAITING) {
            pthread_mutex_lock(&e->inbox_mu);
            e->n_queued--;
            pthread_mutex_unlock(&e->inbox_mu);
        }
        r->state = f == ENGINE_FINISH_CANCELLED ? REQ_CANCELLED : REQ_FINISHED;
    }
    struct chunk_node *n = c ? malloc(sizeof *n) : NULL;
    pthread_mutex_lock(&s->mu);
    if (n) {
        *n = (struct chunk_node){ c, NULL };
        if (s->tail) s->tail->next = n;
        else s->head = n;
        s->tail = n;
    } else if (c) {
        engine_chunk_free(c); /* out of memory: drop the chunk, keep the stream consistent */
    }
    if (request_done) s->last_queued = true;
    pthread_cond_broadcast(&s->cv);
    /* under the lock: once engine_stream_release returns, notify is never called again */
    if (s->notify) s->notify(s->notify_arg);
    pthread_mutex_unlock(&s->mu);
    if (request_done) {
        request_free(r);
        engine_stream_put(s);
    }
}

/* Ends every unfinished choice of r (which is freed with the last). */
static void cancel_request(struct engine *e, struct request *r, enum engine_finish f, const char *error)
{
    double now = ifd_now();
    struct seq *seqs[ENGINE_MAX_N];
    int n = r->n_seqs;
    memcpy(seqs, r->seqs, (size_t)n * sizeof *seqs);
    for (int i = 0; i < n; i++)
        if (!seqs[i]->finished) seq_finish(e, seqs[i], f, NULL, error, now);
}

/* Cancels requests whose stream asked for it. A cancelled request's choices
 * all sit at or after the position where the first one is found. */
static void process_cancels(struct engine *e)
{
    if (!atomic_exchange(&e->inbox_cancels, 0)) return;
    for (int i = 0; i < e->n_running;) {
        struct request *r = e->running[i]->req;
        if (atomic_load(&r->stream->cancel)) cancel_request(e, r, ENGINE_FINISH_CANCELLED, NULL);
        else i++;
    }
    for (int i = 0; i < e->n_waiting;) {
        struct request *r = e->waiting[i]->req;
        if (atomic_load(&r->stream->cancel)) cancel_request(e, r, ENGINE_FINISH_CANCELLED, NULL);
        else i++;
    }
}

static void admit_inbox(struct engine *e)
{
    pthread_mutex_lock(&e->inbox_mu);
    struct request *list = e->inbox;
    e->inbox = NULL;
    pthread_mutex_unlock(&e->inbox_mu);
    /* the inbox is LIFO; admit in arrival order */
    struct request *rev = NULL;
    while (list) {
        struct request *next = list->next_in_inbox;
        list->next_in_inbox = rev;
        rev = list;
        list = next;
    }
    for (struct request *r = rev, *next; r; r = next) {
        next = r->next_in_inbox;
        struct seq *s = seq_create(e, r, 0, r->prompt, r->n_prompt);
        if (!s) {
            struct engine_chunk *c = calloc(1, sizeof *c);
            if (c) {
                c->finish = ENGINE_FINISH_ERROR;
                snprintf(c->error, sizeof c->error, "out of memory");
            }
            engine_emit(e, r, c, true);
            continue;
        }
        r->seqs[0] = s;
        r->n_seqs = 1;
        if (sched_add_waiting(e, s)) {
            cancel_request(e, r, ENGINE_FINISH_ERROR, "out of memory");
            continue;
        }
        if (atomic_load(&r->stream->cancel)) cancel_request(e, r, ENGINE_FINISH_CANCELLED, NULL);
    }
    process_cancels(e);
}

/* ---- one step ---- */

static void fail_scheduled(struct engine *e, int rc)
{
    char msg[96];
    snprintf(msg, sizeof msg, "forward pass failed: %s", ifd_strerror(rc));
    LOG_ERROR("engine", "%s", msg);
    /* a request may have several scheduled choices: collect requests first */
    for (int j = 0; j < e->p_n; j++) {
        struct seq *s = e->p_seqs[j];
        if (!s) continue;
        struct request *r = s->req;
        for (int k = j + 1; k < e->p_n; k++)
            if (e->p_seqs[k] && e->p_seqs[k]->req == r) e->p_seqs[k] = NULL;
        cancel_request(e, r, ENGINE_FINISH_ERROR, msg);
    }
}

/* An n > 1 request's first token: its one sequence has not been forked into the n choices yet. */
static bool needs_fork(const struct seq *s)
{
    return s->req->n_seqs != s->req->params.n && s->choice == 0;
}

/* Forks s's request into its n choices, then samples each from the same row. */
static void fork_and_advance(struct engine *e, struct seq *s, float *row, double now)
{
    struct request *r = s->req;
    if (seq_fork(e, r)) {
        cancel_request(e, r, ENGINE_FINISH_ERROR, "out of memory");
        return;
    }
    size_t bytes = (size_t)e->model->hp.n_vocab * sizeof *row;
    float *pristine = malloc(bytes);
    if (!pristine) {
        cancel_request(e, r, ENGINE_FINISH_ERROR, "out of memory");
        return;
    }
    memcpy(pristine, row, bytes);
    struct seq *seqs[ENGINE_MAX_N];
    int n = r->n_seqs;
    memcpy(seqs, r->seqs, (size_t)n * sizeof *seqs);
    for (int i = 0; i < n; i++) { /* the last call may free r */
        if (i) memcpy(row, pristine, bytes);
        seq_advance(e, seqs[i], row, now);
    }
    free(pristine);
}

/* Samples rows ith, ith + nth, ... of the step (seq_sample touches only its
 * own sequence's sampler and this worker's scratch row). */
static void sample_rows(void *arg, int ith, int nth)
{
    struct engine *e = arg;
    size_t V = (size_t)e->model->hp.n_vocab;
    float *scratch = e->sample_pool ? e->sample_scratch + (size_t)ith * V : e->scratch_logits;
    for (int i = ith; i < e->n_samples; i += nth) {
        struct row_sample *rs = &e->samples[i];
        if (!rs->forks) rs->id = seq_sample(e, rs->s, rs->row, scratch, &rs->lp);
    }
}

/* After the forward pass: every scheduled sequence takes its chunk; those
 * whose chunk completed a token are sampled (all rows at once, on the
 * sampling pool when there is one: at batch 64 with a 128k vocabulary that is
 * milliseconds of argmax on one thread) and then advanced one by one, in
 * plan order, on the engine thread. */
static void postprocess(struct engine *e)
{
    double now = ifd_now();
    size_t V = (size_t)e->model->hp.n_vocab;
    int row = 0;
    uint64_t prompt_tokens = 0, gen_tokens = 0;
    e->n_samples = 0;
    for (int j = 0; j < e->p_n; j++) {
        struct seq *s = e->p_seqs[j];
        int chunk = e->p_chunk[j];
        bool prompt_part = s->n_computed < s->req->n_prompt;
        if (prompt_part) prompt_tokens += (uint64_t)(s->req->n_prompt - s->n_computed < chunk ? s->req->n_prompt - s->n_computed : chunk);
        s->n_computed += chunk;
        sched_register_blocks(e, s);
        if (s->n_computed == s->n_tokens) {
            gen_tokens++;
            struct row_sample *rs = &e->samples[e->n_samples++];
            *rs = (struct row_sample){ .s = s, .row = e->logits + (size_t)row++ * V, .forks = needs_fork(s) };
        }
    }
    if (e->sample_pool && e->n_samples > 1) pool_run(e->sample_pool, sample_rows, e);
    else sample_rows(e, 0, 1);
    for (int i = 0; i < e->n_samples; i++) {
        struct row_sample *rs = &e->samples[i];
        if (rs->forks) fork_and_advance(e, rs->s, rs->row, now);
        else seq_advance_sampled(e, rs->s, rs->id, rs->lp, now);
    }
    pthread_mutex_lock(&e->stats_mu);
    e->stats.steps++;
    e->stats.prompt_tokens += prompt_tokens;
    e->stats.generation_tokens += gen_tokens;
    pthread_mutex_unlock(&e->stats_mu);
}

static void update_gauges(struct engine *e)
{
    pthread_mutex_lock(&e->stats_mu);
    e->stats.running = e->n_running;
    e->stats.waiting = e->n_waiting;
    e->stats.kv_blocks_total = e->blocks.n_blocks;
    e->stats.kv_blocks_used = kvb_used(&e->blocks);
    if (e->stats.kv_blocks_used > e->stats.kv_blocks_peak) e->stats.kv_blocks_peak = e->stats.kv_blocks_used;
    e->stats.prefix_queries = e->blocks.queries;
    e->stats.prefix_hits = e->blocks.hits;
    pthread_mutex_unlock(&e->stats_mu);
}

/* Runs one step; returns false when there is nothing to do. */
static bool engine_step(struct engine *e)
{
    double t_start = ifd_now();
    admit_inbox(e);
    int n = sched_step(e);
    if (n > 0) {
        double t_forward = ifd_now();
        int rc = model_forward(e->model, e->ws, e->kv, &e->plan, e->logits);
        double forward = ifd_now() - t_forward;
        if (rc) fail_scheduled(e, rc);
        else postprocess(e);
        double step = ifd_now() - t_start;
        pthread_mutex_lock(&e->stats_mu);
        e->stats.step_seconds += step;
        e->stats.forward_seconds += forward;
        pthread_mutex_unlock(&e->stats_mu);
    } else if (e->n_running == 0 && e->n_waiting > 0) {
        /* defensive: submit refuses what cannot fit alone, so this means a bug;
         * fail the request rather than stall or spin */
        LOG_ERROR("engine", "request %llu cannot be scheduled", (unsigned long long)e->waiting[0]->req->id);
        cancel_request(e, e->waiting[0]->req, ENGINE_FINISH_ERROR, "cannot be scheduled: the KV pool is too small");
    }
    update_gauges(e);
    return e->n_running > 0 || (n > 0 && e->n_waiting > 0);
}

/* ---- thread and loop ---- */

static void set_idle(struct engine *e, bool idle)
{
    pthread_mutex_lock(&e->stats_mu);
    e->settled = idle;
    if (idle) pthread_cond_broadcast(&e->idle_cv);
    pthread_mutex_unlock(&e->stats_mu);
}

void engine_wait_idle(struct engine *e)
{
    pthread_mutex_lock(&e->stats_mu);
    while (!e->settled) pthread_cond_wait(&e->idle_cv, &e->stats_mu);
    pthread_mutex_unlock(&e->stats_mu);
}

static void on_idle(uv_idle_t *h)
{
    struct engine *e = h->data;
    if (engine_step(e)) return;
    pthread_mutex_lock(&e->inbox_mu);
    bool more = e->inbox != NULL || atomic_load(&e->inbox_cancels);
    pthread_mutex_unlock(&e->inbox_mu);
    if (more) return; /* arrived during the step: keep going */
    uv_idle_stop(&e->idle);
    e->idle_active = false;
    if (e->n_waiting == 0) set_idle(e, true);
}

static void on_close(uv_handle_t *h) { (void)h; }

static void on_wake(uv_async_t *h)
{
    struct engine *e = h->data;
    if (atomic_load(&e->stopping)) {
        admit_inbox(e);
        while (e->n_running) cancel_request(e, e->running[0]->req, ENGINE_FINISH_CANCELLED, "engine stopped");
        while (e->n_waiting) cancel_request(e, e->waiting[0]->req, ENGINE_FINISH_CANCELLED, "engine stopped");
        uv_close((uv_handle_t *)&e->wake, on_close);
        uv_close((uv_handle_t *)&e->idle, on_close);
        return;
    }
    if (!e->idle_active) {
        uv_idle_start(&e->idle, on_idle);
        e->idle_active = true;
    }
}

static void *engine_main(void *arg)
{
    struct engine *e = arg;
    uv_run(&e->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---- creation ---- */

/* The sampling pool: cfg.sampling_threads, or by default none on the CPU
 * backend (its workers own the cores during the forward pass) and up to 8
 * threads on a device backend, whose host cores are otherwise idle. */
static int sampling_pool_init(struct engine *e)
{
    int n = e->cfg.sampling_threads;
    if (n <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        n = strcmp(e->model->be->ops->name, "cpu") == 0 ? 1 : cores > 8 ? 8 : cores < 1 ? 1 : (int)cores;
    }
    if (n > e->cfg.max_num_seqs) n = e->cfg.max_num_seqs;
    if (n <= 1) return 0;
    e->sample_scratch = malloc((size_t)n * (size_t)e->model->hp.n_vocab * sizeof(float));
    if (!e->sample_scratch) return IFD_ERR_NOMEM;
    return pool_init_spin(&e->sample_pool, n, 100000); /* one job per step: spin 0.1 ms, then sleep */
}

static void engine_destroy_state(struct engine *e)
{
    if (e->sample_pool) pool_free(e->sample_pool);
    free(e->sample_scratch);
    sched_free(e);
    free(e->eog_ids);
    kvb_free(&e->blocks);
    kv_cache_free(e->kv);
    model_workspace_free(e->model, e->ws);
    pthread_mutex_destroy(&e->inbox_mu);
    pthread_mutex_destroy(&e->stats_mu);
    pthread_cond_destroy(&e->idle_cv);
    free(e);
}

/* Everything about a request that can be refused before it is queued. */
static int check_params(const struct engine *e, const int32_t *prompt, int n_prompt, const struct engine_params *p,
                        char *err, size_t errlen)
{
    int V = e->model->hp.n_vocab;
    const char *bad = sampler_params_check(&p->sampling);
    if (bad) return ifd_fail(err, errlen, IFD_ERR_INVALID, "%s", bad);
    if (n_prompt < 1) return ifd_fail(err, errlen, IFD_ERR_INVALID, "the prompt is empty");
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= V)
            return ifd_fail(err, errlen, IFD_ERR_INVALID, "prompt token %d is %d, outside the vocabulary (0..%d)", i,
                            prompt[i], V - 1);
    if (n_prompt >= e->max_model_len)
        return ifd_fail(err, errlen, IFD_ERR_RANGE,
                        "the prompt has %d tokens; this model's context holds %d, including at least one generated token",
                        n_prompt, e->max_model_len);
    if (p->n < 1 || p->n > ENGINE_MAX_N) return ifd_fail(err, errlen, IFD_ERR_INVALID, "n must be in [1, %d]", ENGINE_MAX_N);
    if (p->logprobs < -1 || p->logprobs > ENGINE_MAX_LOGPROBS)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "logprobs must be in [0, %d]", ENGINE_MAX_LOGPROBS);
    if (p->max_tokens < 0 || p->min_tokens < 0)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "max_tokens and min_tokens must be >= 0");
    if (p->max_tokens && p->min_tokens > p->max_tokens)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "min_tokens must not exceed max_tokens");
    if (p->n_stop < 0 || p->n_stop > ENGINE_MAX_STOP)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "at most %d stop strings", ENGINE_MAX_STOP);
    if (p->n_stop && !e->tok) return ifd_fail(err, errlen, IFD_ERR_INVALID, "stop strings need a tokenizer");
    for (int i = 0; i < p->n_stop; i++) {
        size_t len = p->stop[i] ? strlen(p->stop[i]) : 0;
        if (len == 0 || len > ENGINE_MAX_STOP_LEN)
            return ifd_fail(err, errlen, IFD_ERR_INVALID, "stop strings must be 1..%d bytes", ENGINE_MAX_STOP_LEN);
    }
    if (p->n_stop_ids < 0 || p->n_stop_ids > ENGINE_MAX_STOP_IDS)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "at most %d stop token ids", ENGINE_MAX_STOP_IDS);
    for (int i = 0; i < p->n_stop_ids; i++)
        if (p->stop_ids[i] < 0 || p->stop_ids[i] >= V)
            return ifd_fail(err, errlen, IFD_ERR_INVALID, "stop token id %d is outside the vocabulary", p->stop_ids[i]);
    for (int i = 0; i < p->sampling.n_logit_bias; i++)
        if (p->sampling.logit_bias_ids[i] < 0 || p->sampling.logit_bias_ids[i] >= V)
            return ifd_fail(err, errlen, IFD_ERR_INVALID, "logit_bias token id %d is outside the vocabulary",
                            p->sampling.logit_bias_ids[i]);
    return 0;
}

/* Pool size: the configured bytes; else, on a device backend, what fits in
 * --gpu-memory-utilization of device memory next to the weights and the
 * workspace (allocated before, so measured, not estimated); else a quarter of
 * available RAM. The derived sizes are capped at what max_num_seqs
 * full-length sequences could use and never below one sequence of
 * max_model_len. Host pages are only touched when used (cpu_alloc). */
static int size_pool(struct engine *e, char *err, size_t errlen)
{
    const struct model_hparams *hp = &e->model->hp;
    int bs = e->cfg.block_size;
    int rc = kv_cache_check_dtype(e->model, e->cfg.kv_cache_dtype, err, errlen);
    if (rc) return rc;
    size_t per_block = kv_cache_block_bytes(hp, bs, e->cfg.kv_cache_dtype);
    int want_len = e->cfg.max_model_len ? e->cfg.max_model_len : hp->n_ctx_train;
    if (want_len > hp->n_ctx_train) want_len = hp->n_ctx_train;
    int64_t blocks, one_seq = (want_len + bs - 1) / bs + 1, cap = (int64_t)e->cfg.max_num_seqs * ((want_len + bs - 1) / bs);
    if (cap < one_seq) cap = one_seq; /* max_num_seqs 1 (`inferd generate`): the cap must still hold the minimum */
    struct backend *be = e->model->be;
    if (e->cfg.kv_cache_bytes) {
        blocks = (int64_t)(e->cfg.kv_cache_bytes / per_block);
    } else if (be->ops->kv_blocks_fit) {
        rc = be->ops->kv_blocks_fit(be, e->cfg.gpu_memory_utilization, per_block, one_seq, cap, &blocks, err, errlen);
        if (rc) return rc;
    } else {
        blocks = (int64_t)(ifd_proc_bytes("/proc/meminfo", "MemAvailable") / 4 / per_block);
        if (blocks > cap) blocks = cap;
        if (blocks < one_seq) blocks = one_seq;
    }
    if (blocks < 2) return ifd_fail(err, errlen, IFD_ERR_INVALID, "KV cache of %zu bytes holds less than 2 blocks of %zu bytes",
                                     e->cfg.kv_cache_bytes, per_block);
    if (blocks > INT32_MAX / bs) blocks = INT32_MAX / bs;
    e->max_model_len = want_len < blocks * bs ? want_len : (int)(blocks * bs);
    e->max_blocks_per_seq = (e->max_model_len + bs - 1) / bs;
    rc = kv_cache_init(&e->kv, e->model, (int)blocks, bs, e->cfg.kv_cache_dtype);
    if (!rc) rc = kvb_init(&e->blocks, (int)blocks, bs);
    if (rc)
        return ifd_fail(err, errlen, rc, "cannot allocate a KV cache of %lld blocks (%.1f MiB)", (long long)blocks,
                        (double)blocks * per_block / (1 << 20));
    return 0;
}

static int check_config(const struct engine_config *c, char *err, size_t errlen)
{
    if (c->block_size < 1 || c->block_size > 256)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "block size must be in [1, 256]");
    if (c->max_num_batched_tokens < 1 || c->max_num_batched_tokens > 65536)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "max_num_batched_tokens must be in [1, 65536]");
    if (c->max_num_seqs < 1 || c->max_num_seqs > 4096 || c->max_num_seqs > c->max_num_batched_tokens)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "max_num_seqs must be in [1, min(4096, max_num_batched_tokens)]");
    if (c->max_queued_requests < 1) return ifd_fail(err, errlen, IFD_ERR_INVALID, "max_queued_requests must be >= 1");
    if (c->max_model_len < 0) return ifd_fail(err, errlen, IFD_ERR_INVALID, "max_model_len must be >= 0");
    if (c->kv_cache_dtype != KV_F16 && c->kv_cache_dtype != KV_Q8_0)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "unknown KV cache type %d", (int)c->kv_cache_dtype);
    if (!(c->gpu_memory_utilization > 0 && c->gpu_memory_utilization <= 1))
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "gpu_memory_utilization must be in (0, 1]");
    if (c->sampling_threads < 0 || c->sampling_threads > 256)
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "sampling_threads must be in [0, 256]");
    return 0;
}

static int collect_eog(struct engine *e)
{
    int V = e->model->hp.n_vocab;
    e->eog_ids = malloc((size_t)V * sizeof *e->eog_ids);
    if (!e->eog_ids) return IFD_ERR_NOMEM;
    for (int i = 0; e->tok && i < V; i++)
        if (tokenizer_is_eog(e->tok, i)) e->eog_ids[e->n_eog++] = i;
    return 0;
}

int engine_create(struct engine **out, struct model *m, struct tokenizer *tok, const struct engine_config *cfg,
                  char *err, size_t errlen)
{
    *out = NULL;
    int rc = check_config(cfg, err, errlen);
    if (rc) return rc;
    if (tok && tokenizer_n_vocab(tok) > m->hp.n_vocab)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tokenizer has %d tokens, the model only %d", tokenizer_n_vocab(tok),
                        m->hp.n_vocab);
    struct engine *e = calloc(1, sizeof *e);
    if (!e) return ifd_fail(err, errlen, IFD_ERR_NOMEM, "out of memory");
    e->model = m;
    e->tok = tok;
    e->cfg = *cfg;
    pthread_mutex_init(&e->inbox_mu, NULL);
    pthread_mutex_init(&e->stats_mu, NULL);
    pthread_cond_init(&e->idle_cv, NULL);
    e->settled = true;
    stats_init(&e->stats);
    rng_seed(&e->rng, (uint64_t)ifd_now() * 1000003u ^ (uint64_t)(uintptr_t)e);
    /* the workspace first: a device backend sizes the KV pool from what is left */
    if ((rc = model_workspace_init(&e->ws, m, cfg->max_num_batched_tokens, cfg->max_num_seqs)))
        ifd_fail(err, errlen, rc, "cannot allocate the model workspace");
    if (!rc) rc = size_pool(e, err, errlen);
    if (!rc && ((rc = sched_init(e)) || (rc = collect_eog(e)))) ifd_fail(err, errlen, rc, "out of memory");
    if (!rc && (rc = sampling_pool_init(e))) ifd_fail(err, errlen, rc, "cannot start the sampling threads");
    if (!rc && (uv_loop_init(&e->loop) || uv_async_init(&e->loop, &e->wake, on_wake) || uv_idle_init(&e->loop, &e->idle)))
        rc = ifd_fail(err, errlen, IFD_ERR_INTERNAL, "cannot set up the event loop");
    if (rc) {
        engine_destroy_state(e);
        return rc;
    }
    e->wake.data = e->idle.data = e;
    update_gauges(e); /* the pool's size is visible (stats, /metrics) before the first step */
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        rc = ifd_fail(err, errlen, IFD_ERR_INTERNAL, "cannot start the engine thread");
        uv_close((uv_handle_t *)&e->wake, NULL);
        uv_close((uv_handle_t *)&e->idle, NULL);
        uv_run(&e->loop, UV_RUN_DEFAULT);
        uv_loop_close(&e->loop);
        engine_destroy_state(e);
        return rc;
    }
    LOG_INFO("engine", "KV cache: %d blocks of %d tokens (%.1f MiB, %s), max model len %d, batch %d tokens / %d seqs",
             e->blocks.n_blocks, cfg->block_size,
             (double)e->blocks.n_blocks * kv_cache_block_bytes(&m->hp, cfg->block_size, cfg->kv_cache_dtype) / (1 << 20),
             kv_dtype_name(cfg->kv_cache_dtype), e->max_model_len, cfg->max_num_batched_tokens, cfg->max_num_seqs);
    *out = e;
    return 0;
}

void engine_destroy(struct engine *e)
{
    if (!e) return;
    atomic_store(&e->stopping, true);
    uv_async_send(&e->wake);
    pthread_join(e->thread, NULL);
    uv_loop_close(&e->loop);
    engine_destroy_state(e);
}

int engine_submit(struct engine *e, const int32_t *prompt, int n_prompt, const struct engine_params *p,
                  engine_notify_fn notify, void *notify_arg, struct engine_stream **out, char *err, size_t errlen)
{
    *out = NULL;
    int rc = check_params(e, prompt, n_prompt, p, err, errlen);
    if (rc) return rc;
    struct request *r = calloc(1, sizeof *r);
    if (r) r->prompt = malloc((size_t)n_prompt * sizeof *prompt);
    uint64_t id = atomic_fetch_add(&e->next_id, 1) + 1;
    struct engine_stream *s = r && r->prompt ? stream_new(e, id, notify, notify_arg) : NULL;
    if (!s) {
        if (r) free(r->prompt);
        free(r);
        return ifd_fail(err, errlen, IFD_ERR_NOMEM, "out of memory");
    }
    r->id = id;
    r->params = *p;
    for (int i = 0; i < p->n_stop; i++) {
        snprintf(r->stop_text[i], sizeof r->stop_text[i], "%s", p->stop[i]);
        r->params.stop[i] = r->stop_text[i];
    }
    memcpy(r->prompt, prompt, (size_t)n_prompt * sizeof *prompt);
    r->n_prompt = n_prompt;
    r->stream = s;
    r->t_arrival = ifd_now();
    pthread_mutex_lock(&e->inbox_mu);
    bool full = e->n_queued >= e->cfg.max_queued_requests;
    if (!full) {
        e->n_queued++;
        r->next_in_inbox = e->inbox;
        e->inbox = r;
        set_idle(e, false); /* before the wake-up, so a waiter cannot miss this request */
    }
    pthread_mutex_unlock(&e->inbox_mu);
    if (full) {
        free(r->prompt);
        free(r);
        engine_stream_put(s);
        engine_stream_put(s);
        return ifd_fail(err, errlen, IFD_ERR_FULL, "the queue is full (%d requests waiting)", e->cfg.max_queued_requests);
    }
    uv_async_send(&e->wake);
    *out = s;
    return 0;
}
