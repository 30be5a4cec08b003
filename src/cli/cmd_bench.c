/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_bench.c: `inferd bench`: offline single-sequence speed of the model as
 * llama-bench measures it: prefill tokens/s for a prompt of --prompt-len
 * tokens, decode tokens/s for --gen-len tokens generated after --decode-depth
 * tokens of context, and the process's peak RSS. Each measurement runs once
 * to warm up and then --repetitions times; the median is reported.
 *
 * Token ids are pseudo-random (fixed seed) as in llama-bench: speed does not
 * depend on which tokens they are.
 *
 * Layer: cli.
 */
#include "cli_common.h"
#include "inferd/error.h"
#include "inferd/rng.h"
#include "inferd/sampler.h"
#include "inferd/seq_runner.h"

#include <stdio.h>
#include <stdlib.h>

static const char *g_usage = "usage: inferd bench [options]\n"
                             "Measures prefill and decode tokens/s and peak memory on one sequence, or with\n"
                             "--requests N --concurrency C serving throughput and latency through the engine.";

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Seconds to prefill n tokens from an empty cache. */
static int time_prefill(struct seq_runner *sr, const int32_t *tokens, int n, double *secs)
{
    seq_runner_reset(sr);
    double t0 = ifd_now();
    int rc = seq_runner_feed(sr, tokens, n);
    *secs = ifd_now() - t0;
    return rc;
}

/* Seconds to decode n tokens one by one (greedy) after depth tokens of context. */
static int time_decode(struct seq_runner *sr, const int32_t *tokens, int depth, int n, int n_vocab, double *secs)
{
    seq_runner_reset(sr);
    int rc = depth ? seq_runner_feed(sr, tokens, depth) : 0;
    int32_t id = tokens[depth];
    double t0 = ifd_now();
    for (int i = 0; !rc && i < n; i++) {
        rc = seq_runner_feed(sr, &id, 1);
        id = sampler_argmax(sr->logits, n_vocab);
    }
    *secs = ifd_now() - t0;
    return rc;
}

static int bench(const struct config *c, struct cli_runtime *rt)
{
    const struct model_hparams *hp = &rt->model->hp;
    int need = c->prompt_len > c->decode_depth + c->gen_len ? c->prompt_len : c->decode_depth + c->gen_len;
    int n_ctx = c->ctx_size > need ? c->ctx_size : need;
    int reps = c->repetitions;
    int32_t *tokens = malloc((size_t)(need + 1) * sizeof *tokens);
    double *pp = malloc((size_t)reps * sizeof *pp), *tg = malloc((size_t)reps * sizeof *tg);
    struct seq_runner sr;
    char why[256] = "";
    int rc = (!tokens || !pp || !tg) ? ifd_fail(why, sizeof why, IFD_ERR_NOMEM, "out of memory")
                                     : kv_cache_check_dtype(rt->model, cli_kv_dtype(c), why, sizeof why);
    if (!rc && (rc = seq_runner_init(&sr, rt->model, n_ctx, c->max_num_batched_tokens, cli_kv_dtype(c))))
        snprintf(why, sizeof why, "%s", ifd_strerror(rc));
    if (rc) {
        fprintf(stderr, "inferd: %s\n", why);
        free(tokens), free(pp), free(tg);
        return 1;
    }
    struct rng r;
    rng_seed(&r, 1234);
    for (int i = 0; i <= need; i++) tokens[i] = (int32_t)(rng_next(&r) % (uint64_t)hp->n_vocab);
    double warm;
    rc = time_prefill(&sr, tokens, c->prompt_len, &warm);
    for (int i = 0; !rc && i < reps; i++) rc = time_prefill(&sr, tokens, c->prompt_len, &pp[i]);
    if (!rc) rc = time_decode(&sr, tokens, c->decode_depth, c->gen_len < 8 ? c->gen_len : 8, hp->n_vocab, &warm);
    for (int i = 0; !rc && i < reps; i++) rc = time_decode(&sr, tokens, c->decode_depth, c->gen_len, hp->n_vocab, &tg[i]);
    if (rc) {
        fprintf(stderr, "inferd: benchmark failed: %s\n", ifd_strerror(rc));
    } else {
        double pp_tps = c->prompt_len / median(pp, reps), tg_tps = c->gen_len / median(tg, reps);
        double rss_mib = (double)ifd_proc_bytes("/proc/self/status", "VmHWM") / (1 << 20);
        if (c->json)
            printf("{\"model\":\"%s\",\"threads\":%d,\"prompt_len\":%d,\"prefill_tok_s\":%.2f,\"decode_depth\":%d,"
                   "\"gen_len\":%d,\"decode_tok_s\":%.2f,\"ctx\":%d,\"peak_rss_mib\":%.1f,\"repetitions\":%d}\n",
                   hp->name, rt->be->n_threads, c->prompt_len, pp_tps, c->decode_depth, c->gen_len, tg_tps, sr.n_ctx,
                   rss_mib, reps);
        else
            printf("model %s, %d threads, ctx %d, median of %d\n"
                   "  prefill %5d tokens      %9.2f tok/s\n"
                   "  decode  %5d tokens @%-5d %8.2f tok/s\n"
                   "  peak RSS %.1f MiB\n",
                   hp->name, rt->be->n_threads, sr.n_ctx, reps, c->prompt_len, pp_tps, c->gen_len, c->decode_depth,
                   tg_tps, rss_mib);
    }
    seq_runner_free(&sr);
    free(tokens);
    free(pp);
    free(tg);
    return rc ? 1 : 0;
}

static int bench_main(const struct config *c, struct cli_runtime *rt)
{
    if (c->requests > 0) return bench_engine(c, rt);
    return bench(c, rt);
}

int cmd_bench(int argc, char **argv)
{
    return cli_run(argc, argv, CMD_BENCH, g_usage, NULL, bench_main);
}
