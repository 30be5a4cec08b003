/* SPDX-License-Identifier: Apache-2.0
 *
 * openai_parse.c: turns an OpenAI chat or completions request body into a
 * generation request: the prompt as token ids (chat messages through the
 * model's chat template) and validated engine parameters. Every problem gets
 * a 400 (404 for an unknown model) whose error names the parameter; unknown
 * fields are ignored, as OpenAI and vLLM do.
 *
 * Accepted beyond OpenAI's fields (vLLM's extensions): top_k, min_p,
 * repetition_penalty, min_tokens, ignore_eos, stop_token_ids, priority,
 * chat_template_kwargs, add_generation_prompt.
 *
 * Layer: server.
 */
#include "server_internal.h"
#include "inferd/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A failed check has already answered the request; parsing stops. */
#define CHECK(expr)                                                                                                   \
    do {                                                                                                              \
        if (expr) return -1;                                                                                          \
    } while (0)

static int bad(struct http_req *r, const char *param, const char *fmt, const char *detail)
{
    http_respond_error(r, 400, NULL, param, NULL, fmt, param, detail ? detail : "");
    return -1;
}

/* Reads an optional number in [lo, hi]; *out is left alone when absent or null. */
static int opt_number(struct http_req *r, json_t *body, const char *name, double lo, double hi, double *out)
{
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return bad(r, name, "'%s' must be a number%s", NULL);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) {
        char range[64];
        snprintf(range, sizeof range, " in [%g, %g]", lo, hi);
        return bad(r, name, "'%s' must be%s", range);
    }
    *out = x;
    return 0;
}

static int opt_int(struct http_req *r, json_t *body, const char *name, long long lo, long long hi, long long *out)
{
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return bad(r, name, "'%s' must be an integer%s", NULL);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) {
        char range[64];
        snprintf(range, sizeof range, " in [%lld, %lld]", lo, hi);
        return bad(r, name, "'%s' must be%s", range);
    }
    *out = x;
    return 0;
}

static int opt_bool(struct http_req *r, json_t *body, const char *name, bool *out)
{
    json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return bad(r, name, "'%s' must be a boolean%s", NULL);
    *out = json_is_true(v);
    return 0;
}

/* model: absent, empty (SageMaker may send it so) or the served name. */
static int check_model(struct http_req *r, json_t *body)
{
    json_t *m = json_object_get(body, "model");
    if (!m || json_is_null(m)) return 0;
    if (!json_is_string(m)) return bad(r, "model", "'%s' must be a string%s", NULL);
    const char *name = json_string_value(m);
    if (!*name || strcmp(name, r->srv->model_name) == 0) return 0;
    http_respond_error(r, 404, "invalid_request_error", "model", "model_not_found",
                       "The model '%s' does not exist (this server serves '%s')", name, r->srv->model_name);
    return -1;
}

/* Fields that name features this server does not have yet: refuse rather than ignore. */
static int check_unsupported(struct http_req *r, json_t *body, bool chat)
{
    json_t *tools = json_object_get(body, "tools");
    if (tools && !json_is_null(tools) && !(json_is_array(tools) && json_array_size(tools) == 0))
        return bad(r, "tools", "'%s': tool calling is not supported yet%s", NULL);
    json_t *choice = json_object_get(body, "tool_choice");
    if (choice && !json_is_null(choice) && !(json_is_string(choice) && strcmp(json_string_value(choice), "none") == 0))
        return bad(r, "tool_choice", "'%s': tool calling is not supported yet%s", NULL);
    json_t *rf = json_object_get(body, "response_format");
    if (rf && !json_is_null(rf)) {
        json_t *type = json_is_object(rf) ? json_object_get(rf, "type") : NULL;
        if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0)
            return bad(r, "response_format", "'%s': only {\"type\": \"text\"} is supported yet%s", NULL);
    }
    if (!chat) {
        bool echo = false;
        CHECK(opt_bool(r, body, "echo", &echo));
        if (echo) return bad(r, "echo", "'%s' is not supported yet%s", NULL);
        json_t *suffix = json_object_get(body, "suffix");
        if (suffix && !json_is_null(suffix)) return bad(r, "suffix", "'%s' is not supported%s", NULL);
        long long best_of = 1;
        CHECK(opt_int(r, body, "best_of", 1, 1, &best_of));
    }
    return 0;
}

static int parse_stop(struct http_req *r, json_t *body, struct gen_request *q)
{
    json_t *v = json_object_get(body, "stop");
    if (!v || json_is_null(v)) return 0;
    json_t *one[1] = { v };
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (!json_is_array(v) && !json_is_string(v)) return bad(r, "stop", "'%s' must be a string or an array of strings%s", NULL);
    if (n > ENGINE_MAX_STOP) return bad(r, "stop", "'%s' takes at most 8 strings%s", NULL);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_array(v) ? json_array_get(v, i) : one[0];
        if (!json_is_string(s)) return bad(r, "stop", "'%s' must be a string or an array of strings%s", NULL);
        size_t len = json_string_length(s);
        if (len == 0 || len > ENGINE_MAX_STOP_LEN) return bad(r, "stop", "'%s' strings must be 1 to 256 bytes%s", NULL);
        memcpy(q->stop_buf[i], json_string_value(s), len + 1);
        q->params.stop[i] = q->stop_buf[i];
    }
    q->params.n_stop = (int)n;
    return 0;
}

static int parse_token_list(struct http_req *r, json_t *v, const char *param, int32_t *out, int cap, int *n)
{
    if (!json_is_array(v)) return bad(r, param, "'%s' must be an array of token ids%s", NULL);
    if ((int)json_array_size(v) > cap) return bad(r, param, "'%s' has too many entries%s", NULL);
    *n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) >= r->srv->n_vocab)
            return bad(r, param, "'%s' entries must be token ids in the vocabulary%s", NULL);
        out[(*n)++] = (int32_t)json_integer_value(e);
    }
    return 0;
}

static int parse_logit_bias(struct http_req *r, json_t *body, struct gen_request *q)
{
    json_t *v = json_object_get(body, "logit_bias");
    if (!v || json_is_null(v)) return 0;
    if (!json_is_object(v)) return bad(r, "logit_bias", "'%s' must be an object of token id -> bias%s", NULL);
    if (json_object_size(v) > 1024) return bad(r, "logit_bias", "'%s' has more than 1024 entries%s", NULL);
    const char *key;
    json_t *b;
    int n = 0;
    json_object_foreach(v, key, b)
    {
        char *end;
        long id = strtol(key, &end, 10);
        if (!*key || *end || id < 0 || id >= r->srv->n_vocab)
            return bad(r, "logit_bias", "'%s' keys must be token ids in the vocabulary%s", NULL);
        if (!json_is_number(b) || json_number_value(b) < -100 || json_number_value(b) > 100)
            return bad(r, "logit_bias", "'%s' values must be numbers in [-100, 100]%s", NULL);
        q->bias_ids[n] = (int32_t)id;
        q->bias[n++] = (float)json_number_value(b);
    }
    q->params.sampling.n_logit_bias = n;
    q->params.sampling.logit_bias_ids = q->bias_ids;
    q->params.sampling.logit_bias = q->bias;
    return 0;
}

/* Sampling and length parameters shared by chat and completions. */
static int parse_params(struct http_req *r, json_t *body, bool chat, struct gen_request *q)
{
    struct engine_params *p = &q->params;
    engine_params_default(p);
    double temp = 1, top_p = 1, min_p = 0, pres = 0, freq = 0, rep = 1;
    long long max_tokens = chat ? 0 : 16, n = 1, top_k = 0, min_tokens = 0, priority = 0, seed = 0;
    CHECK(opt_number(r, body, "temperature", 0, 2, &temp));
    CHECK(opt_number(r, body, "top_p", 1e-9, 1, &top_p));
    CHECK(opt_number(r, body, "min_p", 0, 1, &min_p));
    CHECK(opt_number(r, body, "presence_penalty", -2, 2, &pres));
    CHECK(opt_number(r, body, "frequency_penalty", -2, 2, &freq));
    CHECK(opt_number(r, body, "repetition_penalty", 1e-6, 100, &rep));
    CHECK(opt_int(r, body, "max_tokens", 1, 1 << 30, &max_tokens));
    CHECK(opt_int(r, body, "max_completion_tokens", 1, 1 << 30, &max_tokens));
    CHECK(opt_int(r, body, "n", 1, ENGINE_MAX_N, &n));
    CHECK(opt_int(r, body, "top_k", -1, 1 << 30, &top_k));
    CHECK(opt_int(r, body, "min_tokens", 0, 1 << 30, &min_tokens));
    CHECK(opt_int(r, body, "priority", -1000000, 1000000, &priority));
    json_t *sv = json_object_get(body, "seed");
    if (sv && !json_is_null(sv)) {
        CHECK(opt_int(r, body, "seed", INT64_MIN, INT64_MAX, &seed));
        p->has_seed = true;
    }
    bool ignore_eos = false;
    CHECK(opt_bool(r, body, "ignore_eos", &ignore_eos));
    if (max_tokens && min_tokens > max_tokens) return bad(r, "min_tokens", "'%s' must not exceed max_tokens%s", NULL);
    p->sampling.temperature = (float)temp;
    p->sampling.top_p = (float)top_p;
    p->sampling.min_p = (float)min_p;
    p->sampling.presence_penalty = (float)pres;
    p->sampling.frequency_penalty = (float)freq;
    p->sampling.repetition_penalty = (float)rep;
    p->sampling.top_k = top_k > 0 ? (int)top_k : 0;
    p->sampling.seed = (uint64_t)seed;
    p->max_tokens = (int)max_tokens;
    p->min_tokens = (int)min_tokens;
    p->n = (int)n;
    p->priority = (int)priority;
    p->ignore_eos = ignore_eos;
    CHECK(parse_stop(r, body, q));
    CHECK(parse_logit_bias(r, body, q));
    json_t *ids = json_object_get(body, "stop_token_ids");
    if (ids && !json_is_null(ids)) CHECK(parse_token_list(r, ids, "stop_token_ids", p->stop_ids, ENGINE_MAX_STOP_IDS, &p->n_stop_ids));
    return 0;
}

static int parse_logprobs(struct http_req *r, json_t *body, bool chat, struct gen_request *q)
{
    q->legacy_logprobs = -1;
    if (chat) {
        bool want = false;
        long long top = 0;
        CHECK(opt_bool(r, body, "logprobs", &want));
        json_t *t = json_object_get(body, "top_logprobs");
        CHECK(opt_int(r, body, "top_logprobs", 0, ENGINE_MAX_LOGPROBS, &top));
        if (t && !json_is_null(t) && !want) return bad(r, "top_logprobs", "'%s' requires logprobs to be true%s", NULL);
        q->params.logprobs = want ? (int)top : -1;
        return 0;
    }
    long long n = -1;
    json_t *v = json_object_get(body, "logprobs");
    if (json_is_boolean(v)) return bad(r, "logprobs", "'%s' is an integer (0-20) for completions%s", NULL);
    CHECK(opt_int(r, body, "logprobs", 0, ENGINE_MAX_LOGPROBS, &n));
    q->legacy_logprobs = (int)n;
    q->params.logprobs = (int)n;
    return 0;
}

static int parse_stream(struct http_req *r, json_t *body, struct gen_request *q)
{
    CHECK(opt_bool(r, body, "stream", &q->stream));
    json_t *so = json_object_get(body, "stream_options");
    if (!so || json_is_null(so)) return 0;
    if (!json_is_object(so)) return bad(r, "stream_options", "'%s' must be an object%s", NULL);
    if (!q->stream) return bad(r, "stream_options", "'%s' is only allowed with stream: true%s", NULL);
    json_t *iu = json_object_get(so, "include_usage");
    if (iu && !json_is_boolean(iu)) return bad(r, "stream_options.include_usage", "'%s' must be a boolean%s", NULL);
    q->include_usage = json_is_true(iu);
    return 0;
}

/* Tokenizes text into q->prompt. */
static int tokenize_into(struct http_req *r, const char *text, size_t len, bool add_special, struct gen_request *q,
                         const char *param)
{
    int cap = (int)(len < (size_t)1 << 28 ? len : (size_t)1 << 28) + 8;
    q->prompt = malloc((size_t)cap * sizeof *q->prompt);
    if (!q->prompt) return http_respond_error(r, 500, NULL, NULL, NULL, "out of memory"), -1;
    int n = tokenizer_encode(r->srv->tok, text, len, add_special, true, q->prompt, cap);
    if (n < 0 || n > cap) return http_respond_error(r, 400, NULL, param, NULL, "'%s' cannot be tokenized", param), -1;
    if (n == 0) return bad(r, param, "'%s' is empty%s", NULL);
    q->n_prompt = n;
    return 0;
}

/* Appends one message, with text-part arrays joined into a string, to msgs. */
static int add_message(struct http_req *r, json_t *m, size_t i, json_t *msgs)
{
    char where[64];
    snprintf(where, sizeof where, "messages[%zu]", i);
    if (!json_is_object(m)) return bad(r, where, "'%s' must be an object%s", NULL);
    json_t *role = json_object_get(m, "role");
    static const char *roles[] = { "system", "developer", "user", "assistant", "tool", "function" };
    bool known = false;
    for (size_t k = 0; json_is_string(role) && k < sizeof roles / sizeof roles[0]; k++)
        known |= strcmp(json_string_value(role), roles[k]) == 0;
    if (!known) return bad(r, where, "'%s.role' must be system, developer, user, assistant or tool%s", NULL);
    json_t *content = json_object_get(m, "content"), *copy = json_deep_copy(m);
    if (!copy) return http_respond_error(r, 500, NULL, NULL, NULL, "out of memory"), -1;
    if (json_is_array(content)) { /* [{"type":"text","text":...}, ...] -> one string, parts joined by newlines */
        size_t j, total = 0;
        json_t *part;
        char *joined = NULL;
        json_array_foreach(content, j, part)
        {
            json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
            if (!json_is_string(type) || strcmp(json_string_value(type), "text") != 0 || !json_is_string(text)) {
                free(joined);
                json_decref(copy);
                return bad(r, where, "'%s.content' parts must be {\"type\": \"text\", \"text\": ...}%s", NULL);
            }
            size_t len = json_string_length(text);
            char *p = realloc(joined, total + len + 2);
            if (!p) {
                free(joined);
                json_decref(copy);
                return http_respond_error(r, 500, NULL, NULL, NULL, "out of memory"), -1;
            }
            joined = p;
            if (j) joined[total++] = '\n';
            memcpy(joined + total, json_string_value(text), len);
            total += len;
        }
        json_object_set_new(copy, "content", json_stringn(joined ? joined : "", total));
        free(joined);
    } else if (!content || json_is_null(content)) {
        /* An assistant turn that only carries tool_calls has content null. Most
         * templates concatenate content as a string, and jinja2 itself would fail
         * on None, so hand them "" (falsy too, for the templates that test it). */
        json_object_set_new(copy, "content", json_string(""));
    } else if (!json_is_string(content)) {
        json_decref(copy);
        return bad(r, where, "'%s.content' must be a string, an array of text parts or null%s", NULL);
    }
    json_array_append_new(msgs, copy);
    return 0;
}

static int chat_prompt(struct http_req *r, json_t *body, struct gen_request *q)
{
    struct server *s = r->srv;
    json_t *messages = json_object_get(body, "messages");
    if (!json_is_array(messages) || json_array_size(messages) == 0)
        return bad(r, "messages", "'%s' must be a non-empty array%s", NULL);
    if (!s->tmpl) {
        http_respond_error(r, 400, NULL, "messages", NULL,
                           "this model has no chat template (start the server with --chat-template FILE)");
        return -1;
    }
    bool gen_prompt = true;
    CHECK(opt_bool(r, body, "add_generation_prompt", &gen_prompt));
    json_t *kwargs = json_object_get(body, "chat_template_kwargs");
    if (kwargs && !json_is_null(kwargs) && !json_is_object(kwargs))
        return bad(r, "chat_template_kwargs", "'%s' must be an object%s", NULL);
    json_t *msgs = json_array(), *ctx = json_object();
    size_t i;
    json_t *m;
    json_array_foreach(messages, i, m)
    {
        if (add_message(r, m, i, msgs)) {
            json_decref(msgs);
            json_decref(ctx);
            return -1;
        }
    }
    if (json_is_object(kwargs)) json_object_update(ctx, kwargs);
    json_object_set_new(ctx, "messages", msgs);
    json_object_set_new(ctx, "add_generation_prompt", json_boolean(gen_prompt));
    char piece[256];
    int32_t bos = tokenizer_bos(s->tok), eos = tokenizer_eos(s->tok);
    int n = bos >= 0 ? tokenizer_token_to_piece(s->tok, bos, true, piece, sizeof piece - 1) : 0;
    json_object_set_new(ctx, "bos_token", json_stringn(piece, n > 0 && n < (int)sizeof piece ? (size_t)n : 0));
    n = eos >= 0 ? tokenizer_token_to_piece(s->tok, eos, true, piece, sizeof piece - 1) : 0;
    json_object_set_new(ctx, "eos_token", json_stringn(piece, n > 0 && n < (int)sizeof piece ? (size_t)n : 0));
    char *text = NULL, err[512];
    size_t len = 0;
    int rc = jinja_render(s->tmpl, ctx, &text, &len, err, sizeof err);
    json_decref(ctx);
    if (rc) {
        free(text);
        return http_respond_error(r, 400, NULL, "messages", NULL, "chat template: %s", err), -1;
    }
    rc = tokenize_into(r, text, len, false, q, "messages"); /* the template wrote any BOS itself */
    free(text);
    return rc;
}

static int completion_prompt(struct http_req *r, json_t *body, struct gen_request *q)
{
    json_t *prompt = json_object_get(body, "prompt");
    if (json_is_array(prompt) && json_array_size(prompt) == 1 && !json_is_integer(json_array_get(prompt, 0)))
        prompt = json_array_get(prompt, 0); /* ["text"] or [[ids]] */
    if (json_is_string(prompt)) return tokenize_into(r, json_string_value(prompt), json_string_length(prompt), true, q, "prompt");
    if (json_is_array(prompt) && json_array_size(prompt) > 0 && json_is_integer(json_array_get(prompt, 0))) {
        int cap = (int)json_array_size(prompt);
        q->prompt = malloc((size_t)cap * sizeof *q->prompt);
        if (!q->prompt) return http_respond_error(r, 500, NULL, NULL, NULL, "out of memory"), -1;
        return parse_token_list(r, prompt, "prompt", q->prompt, cap, &q->n_prompt);
    }
    if (json_is_array(prompt) && json_array_size(prompt) > 1)
        return bad(r, "prompt", "'%s': batched prompts (more than one) are not supported yet%s", NULL);
    return bad(r, "prompt", "'%s' must be a string or an array of token ids%s", NULL);
}

int openai_parse(struct http_req *r, json_t *body, bool chat, struct gen_request *q)
{
    memset(q, 0, sizeof *q);
    q->chat = chat;
    if (!json_is_object(body)) return bad(r, "body", "the request %s must be a JSON object%s", NULL);
    json_t *user = json_object_get(body, "user");
    if (user && !json_is_null(user) && !json_is_string(user)) return bad(r, "user", "'%s' must be a string%s", NULL);
    CHECK(check_model(r, body));
    CHECK(check_unsupported(r, body, chat));
    CHECK(parse_params(r, body, chat, q));
    CHECK(parse_logprobs(r, body, chat, q));
    CHECK(parse_stream(r, body, q));
    CHECK(chat ? chat_prompt(r, body, q) : completion_prompt(r, body, q));
    int ctx = engine_max_model_len(r->srv->engine);
    if (q->n_prompt >= ctx)
        return http_respond_error(r, 400, NULL, chat ? "messages" : "prompt", "context_length_exceeded",
                                  "This model's maximum context length is %d tokens, but the prompt has %d tokens", ctx,
                                  q->n_prompt),
               -1;
    if (q->params.max_tokens && q->n_prompt + q->params.max_tokens > ctx)
        return http_respond_error(r, 400, NULL, "max_tokens", "context_length_exceeded",
                                  "This model's maximum context length is %d tokens; the prompt (%d tokens) plus "
                                  "max_tokens (%d) exceeds it",
                                  ctx, q->n_prompt, q->params.max_tokens),
               -1;
    return 0;
}

void gen_request_free(struct gen_request *q)
{
    free(q->prompt);
    q->prompt = NULL;
}
