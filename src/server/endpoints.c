/* SPDX-License-Identifier: Apache-2.0
 *
 * endpoints.c: the small endpoints and the dispatch of generation requests:
 * /v1/models, /tokenize, /detokenize, /health and /ping, /metrics
 * (Prometheus text with vLLM's metric names), and SageMaker's /invocations,
 * which routes on the body's shape (messages -> chat, prompt -> completions).
 *
 * Layer: server.
 */
#include "server_internal.h"
#include "inferd/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ep_generate(struct http_req *r, json_t *body, bool chat)
{
    struct gen_request req;
    if (openai_parse(r, body, chat, &req)) {
        gen_request_free(&req);
        return MHD_YES; /* answered with the error */
    }
    return gen_start(r, &req);
}

int ep_invocations(struct http_req *r, json_t *body)
{
    if (json_is_object(body) && json_object_get(body, "messages")) return ep_generate(r, body, true);
    if (json_is_object(body) && json_object_get(body, "prompt")) return ep_generate(r, body, false);
    return http_respond_error(r, 400, NULL, "body", NULL,
                              "/invocations takes an OpenAI chat body (\"messages\") or completions body (\"prompt\")");
}

int ep_models(struct http_req *r)
{
    struct server *s = r->srv;
    json_t *model = json_pack("{s:s, s:s, s:I, s:s, s:i}", "id", s->model_name, "object", "model", "created",
                              (json_int_t)s->started, "owned_by", "inferd", "max_model_len",
                              engine_max_model_len(s->engine));
    return http_respond_json(r, 200, json_pack("{s:s, s:[o]}", "object", "list", "data", model));
}

int ep_health(struct http_req *r)
{
    enum server_state st = (enum server_state)atomic_load(&r->srv->state);
    if (st == SERVER_READY) return http_respond(r, 200, r->route == ROUTE_PING ? "application/json" : "text/plain",
                                                r->route == ROUTE_PING ? "{}" : "", r->route == ROUTE_PING ? 2 : 0);
    return http_respond_error(r, 503, NULL, NULL, st == SERVER_LOADING ? "loading" : "draining",
                              st == SERVER_LOADING ? "the model is still loading" : "the server is shutting down");
}

int ep_tokenize(struct http_req *r, json_t *body)
{
    struct server *s = r->srv;
    json_t *prompt = json_object_get(body, "prompt");
    if (!json_is_string(prompt)) return http_respond_error(r, 400, NULL, "prompt", NULL, "'prompt' must be a string");
    json_t *as = json_object_get(body, "add_special_tokens");
    if (as && !json_is_boolean(as))
        return http_respond_error(r, 400, NULL, "add_special_tokens", NULL, "'add_special_tokens' must be a boolean");
    size_t len = json_string_length(prompt);
    int cap = (int)(len < (size_t)1 << 28 ? len : (size_t)1 << 28) + 8;
    int32_t *ids = malloc((size_t)cap * sizeof *ids);
    if (!ids) return http_respond_error(r, 500, NULL, NULL, NULL, "out of memory");
    int n = tokenizer_encode(s->tok, json_string_value(prompt), len, !as || json_is_true(as), true, ids, cap);
    if (n < 0 || n > cap) {
        free(ids);
        return http_respond_error(r, 400, NULL, "prompt", NULL, "'prompt' cannot be tokenized");
    }
    json_t *tokens = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(tokens, json_integer(ids[i]));
    free(ids);
    return http_respond_json(r, 200, json_pack("{s:o, s:i, s:i}", "tokens", tokens, "count", n, "max_model_len",
                                               engine_max_model_len(s->engine)));
}

int ep_detokenize(struct http_req *r, json_t *body)
{
    struct server *s = r->srv;
    json_t *tokens = json_object_get(body, "tokens");
    if (!json_is_array(tokens)) return http_respond_error(r, 400, NULL, "tokens", NULL, "'tokens' must be an array of ids");
    size_t n = json_array_size(tokens);
    int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) return http_respond_error(r, 500, NULL, NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(tokens, i);
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= s->n_vocab) {
            free(ids);
            return http_respond_error(r, 400, NULL, "tokens", NULL, "'tokens' entries must be token ids in the vocabulary");
        }
        ids[i] = (int32_t)json_integer_value(t);
    }
    int need = tokenizer_decode(s->tok, ids, (int)n, false, NULL, 0);
    char *text = need >= 0 ? malloc((size_t)need + 1) : NULL;
    if (!text) {
        free(ids);
        return http_respond_error(r, 500, NULL, NULL, NULL, "cannot decode");
    }
    tokenizer_decode(s->tok, ids, (int)n, false, text, need + 1);
    free(ids);
    /* decoded bytes may end inside a character: keep the JSON valid */
    json_t *str = json_stringn(text, (size_t)need);
    if (!str) {
        for (int i = 0; i < need; i++)
            if ((unsigned char)text[i] >= 0x80) text[i] = '?';
        str = json_stringn(text, (size_t)need);
    }
    free(text);
    return http_respond_json(r, 200, json_pack("{s:o}", "prompt", str));
}

/* ---- metrics ---- */

struct text {
    char *p;
    size_t len, cap;
};

static void emit(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void emit(struct text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (t->p && t->len + (size_t)n < t->cap) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap ? t->cap * 2 : 8192;
        while (cap < t->len + (size_t)n + 1) cap *= 2;
        char *p = realloc(t->p, cap);
        if (!p) return;
        t->p = p;
        t->cap = cap;
    }
}

static void emit_histogram(struct text *t, const char *name, const char *help, const char *model,
                           const struct engine_histogram *h)
{
    emit(t, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (int i = 0; i < h->n_bounds; i++) {
        cum += h->counts[i];
        emit(t, "%s_bucket{model_name=\"%s\",le=\"%g\"} %llu\n", name, model, h->bounds[i], (unsigned long long)cum);
    }
    emit(t, "%s_bucket{model_name=\"%s\",le=\"+Inf\"} %llu\n", name, model, (unsigned long long)h->total);
    emit(t, "%s_sum{model_name=\"%s\"} %.6f\n%s_count{model_name=\"%s\"} %llu\n", name, model, h->sum, name, model,
         (unsigned long long)h->total);
}

static void emit_counter(struct text *t, const char *name, const char *help, const char *model, uint64_t v)
{
    emit(t, "# HELP %s %s\n# TYPE %s counter\n%s{model_name=\"%s\"} %llu\n", name, help, name, name, model,
         (unsigned long long)v);
}

int ep_metrics(struct http_req *r)
{
    struct server *s = r->srv;
    struct text t = { 0 };
    const char *m = s->model_name;
    if (s->engine) {
        struct engine_stats st;
        engine_get_stats(s->engine, &st);
        emit(&t, "# HELP vllm:num_requests_running Requests being decoded or prefilled.\n"
                 "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"%s\"} %d\n", m, st.running);
        emit(&t, "# HELP vllm:num_requests_waiting Requests waiting to be scheduled.\n"
                 "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"%s\"} %d\n", m, st.waiting);
        emit(&t, "# HELP vllm:kv_cache_usage_perc KV cache usage (1 = full).\n"
                 "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{model_name=\"%s\"} %.6f\n", m,
             st.kv_blocks_total ? (double)st.kv_blocks_used / st.kv_blocks_total : 0.0);
        emit(&t, "# HELP inferd_kv_cache_blocks KV cache blocks by state.\n# TYPE inferd_kv_cache_blocks gauge\n"
                 "inferd_kv_cache_blocks{model_name=\"%s\",state=\"used\"} %d\n"
                 "inferd_kv_cache_blocks{model_name=\"%s\",state=\"total\"} %d\n", m, st.kv_blocks_used, m, st.kv_blocks_total);
        emit_counter(&t, "vllm:prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache.", m, st.prefix_queries);
        emit_counter(&t, "vllm:prefix_cache_hits_total", "Prompt tokens found in the prefix cache.", m, st.prefix_hits);
        emit_counter(&t, "vllm:prompt_tokens_total", "Prompt tokens prefilled.", m, st.prompt_tokens);
        emit_counter(&t, "vllm:generation_tokens_total", "Tokens generated.", m, st.generation_tokens);
        emit_counter(&t, "vllm:num_preemptions_total", "Sequences preempted to free KV blocks.", m, st.preemptions);
        emit(&t, "# HELP inferd_engine_step_seconds_total Wall time of engine steps that ran a forward pass.\n"
                 "# TYPE inferd_engine_step_seconds_total counter\ninferd_engine_step_seconds_total{model_name=\"%s\"} %.6f\n"
                 "# HELP inferd_engine_forward_seconds_total The model forward part of those steps.\n"
                 "# TYPE inferd_engine_forward_seconds_total counter\ninferd_engine_forward_seconds_total{model_name=\"%s\"} %.6f\n",
             m, st.step_seconds, m, st.forward_seconds);
        emit(&t, "# HELP vllm:request_success_total Finished requests by reason.\n# TYPE vllm:request_success_total counter\n");
        static const char *reasons[] = { NULL, "stop", "length", "abort", "error" };
        for (int f = ENGINE_FINISH_STOP; f <= ENGINE_FINISH_ERROR; f++)
            emit(&t, "vllm:request_success_total{model_name=\"%s\",finished_reason=\"%s\"} %llu\n", m, reasons[f],
                 (unsigned long long)st.finished[f]);
        emit_histogram(&t, "vllm:time_to_first_token_seconds", "Time to first token.", m, &st.ttft);
        emit_histogram(&t, "vllm:inter_token_latency_seconds", "Time between output tokens.", m, &st.itl);
        emit_histogram(&t, "vllm:e2e_request_latency_seconds", "Arrival to last token.", m, &st.e2e);
        emit_histogram(&t, "vllm:request_queue_time_seconds", "Arrival to first scheduling.", m, &st.queue);
    }
    emit(&t, "# HELP http_requests_total HTTP responses by route and status.\n# TYPE http_requests_total counter\n");
    static const char *paths[] = { "/v1/chat/completions", "/v1/completions", "/v1/models", "/tokenize", "/detokenize",
                                   "/health", "/ping", "/invocations", "/metrics", "other" };
    for (int rt = 0; rt < ROUTE_COUNT; rt++)
        for (int c = 1; c <= 5; c++) {
            uint64_t v = atomic_load(&s->http_count[rt][c]);
            if (v) emit(&t, "http_requests_total{handler=\"%s\",status=\"%dxx\"} %llu\n", paths[rt], c, (unsigned long long)v);
        }
    emit(&t, "# HELP inferd_http_responses_total HTTP responses by exact status.\n"
             "# TYPE inferd_http_responses_total counter\n");
    for (int code = 100; code < 600; code++) {
        uint64_t v = atomic_load(&s->http_status[code]);
        if (v) emit(&t, "inferd_http_responses_total{status=\"%d\"} %llu\n", code, (unsigned long long)v);
    }
    emit(&t, "# HELP inferd_http_in_flight HTTP requests being handled.\n# TYPE inferd_http_in_flight gauge\n"
             "inferd_http_in_flight %d\n", server_in_flight(s) - 1);
    int rc = http_respond(r, 200, "text/plain; version=0.0.4", t.p ? t.p : "", t.len);
    free(t.p);
    return rc;
}
