/* SPDX-License-Identifier: Apache-2.0
 *
 * bench_engine.c: `inferd bench --requests N --concurrency C`: offline
 * serving throughput through the engine, the way the HTTP server drives it
 * but without HTTP: C requests in flight, a new one submitted as each
 * finishes, until N are done. Prompts are pseudo-random token ids (fixed
 * seed); outputs run to their length (ignore_eos), greedy. Reports input and
 * output tokens/s over the wall time, TTFT, inter-token latency and
 * end-to-end percentiles (exact, from every sample), and the KV pool's peak.
 *
 * Layer: cli.
 */
#include "cli_common.h"
#include "inferd/error.h"
#include "inferd/rng.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bench_req {
    struct engine_stream *s;
    double t_submit, t_last;
    int n_chunks;
    bool open;
};

struct samples {
    double *v;
    size_t n, cap;
};

static int push(struct samples *s, double x)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 256;
        double *v = realloc(s->v, cap * sizeof *v);
        if (!v) return IFD_ERR_NOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = x;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(struct samples *s, double q)
{
    if (!s->n) return 0;
    qsort(s->v, s->n, sizeof *s->v, cmp_double);
    size_t i = (size_t)(q * (double)(s->n - 1) + 0.5);
    return s->v[i];
}

/* Wakes the consumer loop when any stream has news (called on the engine thread). */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static uint64_t g_news;

static void on_news(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&g_mu);
    g_news++;
    pthread_cond_signal(&g_cv);
    pthread_mutex_unlock(&g_mu);
}

struct bench_run {
    const struct config *c;
    struct engine *e;
    struct rng rng;
    int32_t *prompt;
    int n_vocab;
    struct samples ttft, itl, e2e;
    uint64_t in_tokens, out_tokens;
};

/* Lengths of request i: fixed, or drawn from [1/4, 2] x the given length. */
static int pick_len(struct bench_run *b, int base)
{
    if (!b->c->mixed) return base;
    int lo = base / 4 > 1 ? base / 4 : 1, hi = 2 * base;
    return lo + (int)(rng_next(&b->rng) % (uint64_t)(hi - lo + 1));
}

static int submit_one(struct bench_run *b, struct bench_req *q, char *err, size_t errlen)
{
    int n = pick_len(b, b->c->prompt_len);
    int max_len = engine_max_model_len(b->e) - 1;
    if (n > max_len) n = max_len;
    for (int i = 0; i < n; i++) b->prompt[i] = (int32_t)(rng_next(&b->rng) % (uint64_t)b->n_vocab);
    struct engine_params p;
    engine_params_default(&p);
    p.sampling.temperature = 0;
    p.ignore_eos = true;
    p.max_tokens = pick_len(b, b->c->gen_len);
    *q = (struct bench_req){ .t_submit = ifd_now(), .open = true };
    return engine_submit(b->e, b->prompt, n, &p, on_news, NULL, &q->s, err, errlen);
}

/* Takes every queued chunk of q; returns 1 when its request is done. */
static int drain_ready(struct bench_run *b, struct bench_req *q)
{
    struct engine_chunk *ch;
    while (engine_stream_next(q->s, &ch, 0) == 0) {
        double now = ifd_now();
        if (ch->n_tokens) {
            if (q->n_chunks++) push(&b->itl, now - q->t_last);
            else push(&b->ttft, now - q->t_submit);
            q->t_last = now;
        }
        bool done = ch->request_done;
        if (done) {
            push(&b->e2e, now - q->t_submit);
            b->in_tokens += (uint64_t)ch->prompt_tokens;
            b->out_tokens += (uint64_t)ch->completion_tokens;
        }
        engine_chunk_free(ch);
        if (done) return 1;
    }
    return 0;
}

static void report(struct bench_run *b, double wall, const struct engine_stats *st)
{
    const struct config *c = b->c;
    double p50t = pct(&b->ttft, .5), p90t = pct(&b->ttft, .9), p99t = pct(&b->ttft, .99);
    double p50i = pct(&b->itl, .5), p90i = pct(&b->itl, .9), p99i = pct(&b->itl, .99);
    double p50e = pct(&b->e2e, .5), p99e = pct(&b->e2e, .99);
    double kv_peak = 100.0 * st->kv_blocks_peak / st->kv_blocks_total;
    double overhead = st->step_seconds > 0 ? 100.0 * (1.0 - st->forward_seconds / st->step_seconds) : 0.0;
    if (c->json) {
        printf("{\"requests\":%d,\"concurrency\":%d,\"prompt_len\":%d,\"gen_len\":%d,\"mixed\":%s,\"wall_s\":%.3f,"
               "\"input_tok_s\":%.2f,\"output_tok_s\":%.2f,\"requests_per_s\":%.3f,"
               "\"ttft_ms\":{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f},\"itl_ms\":{\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f},"
               "\"e2e_s\":{\"p50\":%.3f,\"p99\":%.3f},\"kv_peak_pct\":%.1f,\"preemptions\":%llu,"
               "\"steps\":%llu,\"engine_overhead_pct\":%.2f}\n",
               c->requests, c->concurrency, c->prompt_len, c->gen_len, c->mixed ? "true" : "false", wall,
               b->in_tokens / wall, b->out_tokens / wall, c->requests / wall, p50t * 1e3, p90t * 1e3, p99t * 1e3,
               p50i * 1e3, p90i * 1e3, p99i * 1e3, p50e, p99e, kv_peak, (unsigned long long)st->preemptions,
               (unsigned long long)st->steps, overhead);
        return;
    }
    printf("%d requests, concurrency %d, prompt %d, output %d%s, %.2f s\n"
           "  throughput   input %9.1f tok/s   output %9.1f tok/s   %.2f req/s\n"
           "  TTFT         p50 %8.1f ms   p90 %8.1f ms   p99 %8.1f ms\n"
           "  ITL          p50 %8.1f ms   p90 %8.1f ms   p99 %8.1f ms\n"
           "  end to end   p50 %8.2f s    p99 %8.2f s\n"
           "  KV cache     peak %.1f%% of %d blocks, %llu preemptions\n"
           "  engine       %llu steps, %.2f%% of step time outside the forward pass (scheduling, sampling, streams)\n",
           c->requests, c->concurrency, c->prompt_len, c->gen_len, c->mixed ? " (mixed)" : "", wall,
           b->in_tokens / wall, b->out_tokens / wall, c->requests / wall, p50t * 1e3, p90t * 1e3, p99t * 1e3,
           p50i * 1e3, p90i * 1e3, p99i * 1e3, p50e, p99e, kv_peak, st->kv_blocks_total,
           (unsigned long long)st->preemptions, (unsigned long long)st->steps, overhead);
}

int bench_engine(const struct config *c, struct cli_runtime *rt)
{
    struct engine_config ec;
    cli_engine_config(c, &ec);
    struct bench_run b = { .c = c, .n_vocab = rt->model->hp.n_vocab };
    rng_seed(&b.rng, 4321);
    char err[512];
    int C = c->concurrency < c->requests ? c->concurrency : c->requests, status = 1, submitted = 0, done = 0;
    struct bench_req *reqs = calloc((size_t)c->requests, sizeof *reqs);
    b.prompt = malloc((size_t)(2 * c->prompt_len + 1) * sizeof *b.prompt);
    if (!reqs || !b.prompt || engine_create(&b.e, rt->model, rt->tok, &ec, err, sizeof err)) {
        fprintf(stderr, "inferd: %s\n", reqs && b.prompt ? err : "out of memory");
        goto out;
    }
    double t0 = ifd_now();
    uint64_t seen = 0;
    while (done < c->requests) {
        while (submitted < c->requests && submitted - done < C) {
            if (submit_one(&b, &reqs[submitted], err, sizeof err)) {
                fprintf(stderr, "inferd: request %d: %s\n", submitted, err);
                goto out;
            }
            submitted++;
        }
        pthread_mutex_lock(&g_mu);
        while (g_news == seen) pthread_cond_wait(&g_cv, &g_mu);
        seen = g_news;
        pthread_mutex_unlock(&g_mu);
        for (int i = 0; i < submitted; i++) {
            if (!reqs[i].open || !drain_ready(&b, &reqs[i])) continue;
            engine_stream_release(reqs[i].s);
            reqs[i].open = false;
            done++;
        }
    }
    double wall = ifd_now() - t0;
    struct engine_stats st;
    engine_wait_idle(b.e);
    engine_get_stats(b.e, &st);
    report(&b, wall, &st);
    status = 0;
out:
    for (int i = 0; reqs && i < submitted; i++)
        if (reqs[i].open) engine_stream_release(reqs[i].s);
    engine_destroy(b.e);
    free(reqs);
    free(b.prompt);
    free(b.ttft.v);
    free(b.itl.v);
    free(b.e2e.v);
    return status;
}
