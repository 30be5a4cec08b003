/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_generate.c: `inferd generate`: one request through the engine (the
 * same path the server takes): tokenize the prompt, submit it, and stream the
 * text to stdout until -n tokens, a stop string or end of generation. Timing
 * goes to stderr so stdout is exactly the generated text.
 *
 * Layer: cli.
 */
#include "cli_common.h"
#include "inferd/error.h"
#include "inferd/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *g_usage = "usage: inferd generate [options] --prompt TEXT\n"
                             "Generates text from a prompt on the local model and streams it to stdout.";

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

static void print_chunk(const struct engine_chunk *ch)
{
    if (ch->text_len && fwrite(ch->text, 1, ch->text_len, stdout) != ch->text_len) return;
    fflush(stdout);
}

/* Request parameters from the options (the CLI seeds every request: reproducible by default). */
static void request_params(const struct config *c, struct engine_params *p)
{
    engine_params_default(p);
    p->sampling.temperature = c->temperature;
    p->sampling.top_k = c->top_k;
    p->sampling.top_p = c->top_p;
    p->sampling.min_p = c->min_p;
    p->sampling.repetition_penalty = c->repeat_penalty;
    p->sampling.seed = c->seed;
    p->has_seed = true;
    p->max_tokens = c->n_predict;
    p->ignore_eos = c->ignore_eos != 0;
    if (c->stop[0]) {
        p->n_stop = 1;
        p->stop[0] = c->stop;
    }
}

static int generate(const struct config *c, struct cli_runtime *rt)
{
    int32_t *prompt = NULL;
    int n_prompt = tokenize_prompt(rt->tok, c->prompt, &prompt);
    if (n_prompt < 0) {
        fprintf(stderr, "inferd: cannot tokenize the prompt: %s\n", ifd_strerror(n_prompt));
        return 1;
    }
    struct engine_config ec;
    cli_engine_config(c, &ec);
    if (!c->kv_cache_memory) ec.max_num_seqs = 1; /* one request: size the pool for one context */
    if (ec.max_num_seqs > ec.max_num_batched_tokens) ec.max_num_seqs = ec.max_num_batched_tokens;
    struct engine *e = NULL;
    struct engine_stream *s = NULL;
    struct engine_params p;
    request_params(c, &p);
    char err[512];
    int status = 1;
    if (engine_create(&e, rt->model, rt->tok, &ec, err, sizeof err) ||
        engine_submit(e, prompt, n_prompt, &p, NULL, NULL, &s, err, sizeof err)) {
        fprintf(stderr, "inferd: %s\n", err);
        goto out;
    }
    struct engine_chunk *ch;
    while (engine_stream_next(s, &ch, -1) == 0) {
        print_chunk(ch);
        if (ch->request_done) {
            fputc('\n', stdout);
            if (ch->finish == ENGINE_FINISH_ERROR) fprintf(stderr, "inferd: generation failed: %s\n", ch->error);
            else status = 0;
            double gen_s = ch->e2e_s - ch->ttft_s;
            fprintf(stderr,
                    "prompt: %d tokens, first token after %.1f ms; generated %d tokens in %.1f ms (%.1f tok/s); "
                    "finish: %s\n",
                    ch->prompt_tokens, ch->ttft_s * 1e3, ch->completion_tokens, ch->e2e_s * 1e3,
                    ch->completion_tokens > 1 && gen_s > 0 ? (ch->completion_tokens - 1) / gen_s : 0.0,
                    engine_finish_name(ch->finish));
        }
        engine_chunk_free(ch);
    }
out:
    if (s) engine_stream_release(s);
    engine_destroy(e);
    free(prompt);
    return status;
}

/* Checks what generate needs beyond the common options. */
static const char *check_generate(const struct config *c, const struct cli_runtime *rt)
{
    if (!c->prompt[0]) return "generate needs --prompt";
    if (c->n_predict < 1) return "--n-predict must be >= 1";
    if (rt && !rt->tok) return "a dummy model without --model has no tokenizer; pass --model FILE for the vocabulary";
    return NULL;
}

int cmd_generate(int argc, char **argv)
{
    return cli_run(argc, argv, CMD_GENERATE, g_usage, check_generate, generate);
}
