/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_generate.c: `inferd generate`: tokenize a prompt, prefill it, then
 * sample and stream tokens to stdout until -n tokens or end of generation.
 * Timing goes to stderr so stdout is exactly the generated text.
 *
 * Layer: cli.
 */
#include "cli_common.h"
#include "inferd/error.h"
#include "inferd/sampler.h"
#include "inferd/seq_runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *g_usage = "usage: inferd generate [options] --prompt TEXT\n"
                             "Generates text from a prompt on the local model and streams it to stdout.";

static int emit(const char *text, int n)
{
    if (n > 0 && fwrite(text, 1, (size_t)n, stdout) != (size_t)n) return -1;
    fflush(stdout);
    return 0;
}

/* Tokenizes the prompt into a malloc'd array; returns the count or a negative error. */
static int tokenize_prompt(const struct tokenizer *tok, const char *prompt, int32_t **out)
{
    size_t len = strlen(prompt);
    int cap = (int)len + 8, n;
    *out = NULL;
    for (;;) {
        int32_t *ids = malloc((size_t)cap * sizeof *ids);
        if (!ids) return IFD_ERR_NOMEM;
        n = tokenizer_encode(tok, prompt, len, true, true, ids, cap);
        if (n >= 0 && n <= cap) {
            *out = ids;
            return n;
        }
        free(ids);
        if (n < 0) return n;
        cap = n;
    }
}

static int generate(const struct config *c, struct cli_runtime *rt)
{
    const struct model_hparams *hp = &rt->model->hp;
    int32_t *prompt = NULL;
    int n_prompt = tokenize_prompt(rt->tok, c->prompt, &prompt);
    if (n_prompt < 0) {
        fprintf(stderr, "inferd: cannot tokenize the prompt: %s\n", ifd_strerror(n_prompt));
        return 1;
    }
    if (n_prompt == 0) {
        fprintf(stderr, "inferd: the prompt is empty\n");
        free(prompt);
        return 1;
    }
    int n_ctx = c->ctx_size ? c->ctx_size : n_prompt + c->n_predict;
    if (n_ctx > hp->n_ctx_train) n_ctx = hp->n_ctx_train;
    if (n_prompt >= n_ctx) {
        fprintf(stderr, "inferd: the prompt has %d tokens, the context holds %d\n", n_prompt, n_ctx);
        free(prompt);
        return 1;
    }
    struct seq_runner sr;
    struct sampler smp;
    struct sampler_params sp;
    sampler_params_default(&sp);
    sp.temperature = c->temperature;
    sp.top_k = c->top_k;
    sp.top_p = c->top_p;
    sp.min_p = c->min_p;
    sp.repetition_penalty = c->repeat_penalty;
    sp.seed = c->seed;
    int rc = seq_runner_init(&sr, rt->model, n_ctx, c->batch_size);
    if (rc || (rc = sampler_init(&smp, &sp, hp->n_vocab))) {
        fprintf(stderr, "inferd: %s\n", ifd_strerror(rc));
        seq_runner_free(&sr);
        free(prompt);
        return 1;
    }
    for (int i = 0; i < n_prompt; i++) sampler_accept(&smp, prompt[i]);

    double t0 = cli_now_s();
    rc = seq_runner_feed(&sr, prompt, n_prompt);
    double t1 = cli_now_s();
    struct detok dt;
    detok_init(&dt, rt->tok, false);
    int text_cap = tokenizer_max_piece_len(rt->tok) + 4; /* a piece plus up to 3 held bytes */
    char *text = malloc((size_t)text_cap);
    int n_gen = 0;
    if (!text) rc = IFD_ERR_NOMEM;
    while (!rc && n_gen < c->n_predict && sr.n_past < sr.n_ctx) {
        int32_t id = sampler_sample(&smp, sr.logits);
        if (!c->ignore_eos && tokenizer_is_eog(rt->tok, id)) break;
        n_gen++;
        if (emit(text, detok_push(&dt, id, text, text_cap))) break;
        sampler_accept(&smp, id);
        rc = seq_runner_feed(&sr, &id, 1);
    }
    if (text) emit(text, detok_flush(&dt, text, text_cap));
    emit("\n", 1);
    free(text);
    double t2 = cli_now_s();
    if (rc) fprintf(stderr, "inferd: generation failed: %s\n", ifd_strerror(rc));
    fprintf(stderr, "prompt: %d tokens in %.1f ms (%.1f tok/s); generated %d tokens in %.1f ms (%.1f tok/s)\n",
            n_prompt, (t1 - t0) * 1e3, n_prompt / (t1 - t0), n_gen, (t2 - t1) * 1e3, n_gen ? n_gen / (t2 - t1) : 0.0);
    sampler_free(&smp);
    seq_runner_free(&sr);
    free(prompt);
    return rc ? 1 : 0;
}

/* Checks what generate needs beyond the common options. */
static const char *check_generate(const struct config *c, const struct cli_runtime *rt)
{
    if (!c->prompt[0]) return "generate needs --prompt";
    if (rt && !rt->tok) return "a dummy model without --model has no tokenizer; pass --model FILE for the vocabulary";
    return NULL;
}

int cmd_generate(int argc, char **argv)
{
    return cli_run(argc, argv, CMD_GENERATE, g_usage, check_generate, generate);
}
