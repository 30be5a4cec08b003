/* SPDX-License-Identifier: Apache-2.0
 *
 * openai_gen.c: one generation in flight, from engine_submit to the last
 * byte: OpenAI chat.completion(.chunk) and text_completion objects, as
 * Server-Sent Events or as one JSON body.
 *
 * The connection is suspended whenever the engine has nothing new, and
 * gen_notify (called on the engine thread) resumes it. The news flag closes
 * the race between "found nothing" and "suspend": a notify that arrives in
 * between sets news, and the suspend is skipped.
 *
 * Layer: server.
 */
#include "server_internal.h"
#include "inferd/error.h"
#include "inferd/log.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static void gen_notify(void *arg)
{
    struct gen *g = arg;
    pthread_mutex_lock(&g->mu);
    g->news = true;
    if (g->suspended) {
        g->suspended = false;
        MHD_resume_connection(g->hr->conn);
    }
    pthread_mutex_unlock(&g->mu);
}

/* Suspends the connection unless news arrived since news was last cleared.
 * Returns true if it suspended. */
static bool suspend_unless_news(struct gen *g)
{
    pthread_mutex_lock(&g->mu);
    bool suspend = !g->news;
    if (suspend) {
        g->suspended = true;
        MHD_suspend_connection(g->hr->conn);
    } else {
        g->news = false;
    }
    pthread_mutex_unlock(&g->mu);
    return suspend;
}

static void clear_news(struct gen *g)
{
    pthread_mutex_lock(&g->mu);
    g->news = false;
    pthread_mutex_unlock(&g->mu);
}

void gen_cancel(struct gen *g)
{
    if (g->stream) engine_stream_release(g->stream); /* cancels if unfinished; no notify after this */
    g->stream = NULL;
}

void gen_free(struct gen *g)
{
    if (!g) return;
    gen_cancel(g);
    gen_request_free(&g->req);
    for (int k = 0; k < ENGINE_MAX_N; k++) {
        free(g->text[k]);
        json_decref(g->logprobs[k]);
    }
    free(g->out);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

/* ---- JSON pieces ---- */

static const char *finish_reason(enum engine_finish f)
{
    switch (f) {
    case ENGINE_FINISH_STOP: return "stop";
    case ENGINE_FINISH_LENGTH: return "length";
    case ENGINE_FINISH_CANCELLED: return "abort";
    default: return "error";
    }
}

/* Token text as valid UTF-8 (bytes of partial characters become U+FFFD), plus its bytes. */
static json_t *token_string(const struct tokenizer *tok, int32_t id, json_t **bytes)
{
    char piece[512], clean[1536];
    int n = tokenizer_token_to_piece(tok, id, true, piece, sizeof piece);
    if (n < 0 || n > (int)sizeof piece) n = 0;
    size_t o = 0;
    if (bytes) *bytes = json_array();
    for (int i = 0; i < n;) {
        unsigned char c = (unsigned char)piece[i];
        int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (int k = 1; ok && k < len; k++) ok = ((unsigned char)piece[i + k] & 0xC0) == 0x80;
        if (ok) {
            memcpy(clean + o, piece + i, (size_t)len);
            o += (size_t)len;
        } else {
            memcpy(clean + o, "\xEF\xBF\xBD", 3);
            o += 3;
            len = 1;
        }
        for (int k = 0; bytes && k < len; k++) json_array_append_new(*bytes, json_integer((unsigned char)piece[i + k]));
        i += len;
    }
    return json_stringn(clean, o);
}

/* Chat logprobs entries for a chunk's tokens: [{token, logprob, bytes, top_logprobs}]. */
static json_t *chat_logprob_entries(const struct tokenizer *tok, const struct engine_chunk *c)
{
    json_t *content = json_array();
    for (int i = 0; i < c->n_tokens; i++) {
        const struct engine_logprob *lp = &c->logprobs[i];
        json_t *bytes, *top = json_array();
        json_t *tokstr = token_string(tok, lp->id, &bytes);
        for (int k = 0; k < lp->n_top; k++) {
            json_t *tb, *ts = token_string(tok, lp->top_ids[k], &tb);
            json_array_append_new(top, json_pack("{s:o, s:f, s:o}", "token", ts, "logprob", (double)lp->top_logprobs[k],
                                                 "bytes", tb));
        }
        json_array_append_new(content, json_pack("{s:o, s:f, s:o, s:o}", "token", tokstr, "logprob", (double)lp->logprob,
                                                 "bytes", bytes, "top_logprobs", top));
    }
    return content;
}

/* Legacy completions logprobs: parallel arrays. text_offset is filled by the caller. */
static json_t *completion_logprobs(const struct tokenizer *tok, const struct engine_chunk *c)
{
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array();
    for (int i = 0; i < c->n_tokens; i++) {
        const struct engine_logprob *lp = &c->logprobs[i];
        json_array_append_new(tokens, token_string(tok, lp->id, NULL));
        json_array_append_new(lps, json_real(lp->logprob));
        json_t *top = json_object();
        for (int k = 0; k < lp->n_top; k++) {
            json_t *ts = token_string(tok, lp->top_ids[k], NULL);
            json_object_set_new(top, json_string_value(ts), json_real(lp->top_logprobs[k]));
            json_decref(ts);
        }
        json_array_append_new(tops, top);
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps, "top_logprobs", tops, "text_offset",
                     json_array());
}

static json_t *usage_json(const struct gen *g)
{
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", g->prompt_tokens, "completion_tokens",
                     g->completion_tokens, "total_tokens", g->prompt_tokens + g->completion_tokens,
                     "prompt_tokens_details", "cached_tokens", g->cached_tokens);
}

static json_t *object_head(const struct gen *g, const char *object)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", g->id, "object", object, "created", (json_int_t)g->created, "model",
                     g->hr->srv->model_name, "system_fingerprint", "inferd-0.1.0");
}

/* ---- streaming (SSE) ---- */

static int out_append(struct gen *g, const char *s, size_t n)
{
    if (g->out_len + n > g->out_cap) {
        size_t cap = g->out_cap ? g->out_cap * 2 : 4096;
        while (cap < g->out_len + n) cap *= 2;
        char *p = realloc(g->out, cap);
        if (!p) return IFD_ERR_NOMEM;
        g->out = p;
        g->out_cap = cap;
    }
    memcpy(g->out + g->out_len, s, n);
    g->out_len += n;
    return 0;
}

static void sse_event(struct gen *g, json_t *obj)
{
    char *text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!text) return;
    out_append(g, "data: ", 6);
    out_append(g, text, strlen(text));
    out_append(g, "\n\n", 2);
    free(text);
}

/* One SSE event for one engine chunk (and one more for its finish). */
static void sse_chunk(struct gen *g, const struct engine_chunk *c)
{
    const struct tokenizer *tok = g->hr->srv->tok;
    int k = c->choice;
    bool first = !g->role_sent[k], has_lp = c->logprobs && c->n_tokens;
    if (c->text_len || first || has_lp) {
        json_t *choice;
        if (g->req.chat) {
            json_t *delta = json_object();
            if (first) json_object_set_new(delta, "role", json_string("assistant"));
            json_object_set_new(delta, "content", json_stringn(c->text ? c->text : "", c->text_len));
            choice = json_pack("{s:i, s:o, s:o, s:n}", "index", k, "delta", delta, "logprobs",
                               has_lp ? json_pack("{s:o}", "content", chat_logprob_entries(tok, c)) : json_null(),
                               "finish_reason");
        } else {
            choice = json_pack("{s:i, s:s%, s:o, s:n}", "index", k, "text", c->text ? c->text : "", c->text_len,
                               "logprobs", has_lp ? completion_logprobs(tok, c) : json_null(), "finish_reason");
        }
        g->role_sent[k] = true;
        json_t *ev = object_head(g, g->req.chat ? "chat.completion.chunk" : "text_completion");
        json_object_set_new(ev, "choices", json_pack("[o]", choice));
        if (g->req.include_usage) json_object_set_new(ev, "usage", json_null());
        sse_event(g, ev);
    }
    if (c->finish && c->finish != ENGINE_FINISH_ERROR) {
        json_t *choice = g->req.chat ? json_pack("{s:i, s:{}, s:n, s:s}", "index", k, "delta", "logprobs", "finish_reason",
                                                 finish_reason(c->finish))
                                     : json_pack("{s:i, s:s, s:n, s:s}", "index", k, "text", "", "logprobs",
                                                 "finish_reason", finish_reason(c->finish));
        json_t *ev = object_head(g, g->req.chat ? "chat.completion.chunk" : "text_completion");
        json_object_set_new(ev, "choices", json_pack("[o]", choice));
        if (g->req.include_usage) json_object_set_new(ev, "usage", json_null());
        sse_event(g, ev);
    } else if (c->finish == ENGINE_FINISH_ERROR) {
        sse_event(g, json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", c->error[0] ? c->error : "generation failed",
                               "type", "server_error", "param", "code"));
    }
}

static void record_usage(struct gen *g, const struct engine_chunk *c)
{
    g->prompt_tokens = c->prompt_tokens;
    g->completion_tokens = c->completion_tokens;
    g->cached_tokens = c->cached_tokens;
    g->ttft_s = c->ttft_s;
    g->done = true;
}

/* Turns every ready engine chunk into SSE bytes. */
static void sse_drain(struct gen *g)
{
    struct engine_chunk *c;
    while (!g->done && engine_stream_next(g->stream, &c, 0) == 0) {
        sse_chunk(g, c);
        if (c->request_done) {
            record_usage(g, c);
            if (g->req.include_usage) {
                json_t *ev = object_head(g, g->req.chat ? "chat.completion.chunk" : "text_completion");
                json_object_set_new(ev, "choices", json_array());
                json_object_set_new(ev, "usage", usage_json(g));
                sse_event(g, ev);
            }
            out_append(g, "data: [DONE]\n\n", 14);
        }
        engine_chunk_free(c);
    }
}

static ssize_t gen_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct gen *g = cls;
    for (;;) {
        if (g->out_pos < g->out_len) {
            size_t n = g->out_len - g->out_pos < max ? g->out_len - g->out_pos : max;
            memcpy(buf, g->out + g->out_pos, n);
            g->out_pos += n;
            pthread_mutex_lock(&g->mu);
            g->t_last_write = ifd_now();
            pthread_mutex_unlock(&g->mu);
            return (ssize_t)n;
        }
        g->out_len = g->out_pos = 0;
        if (g->client_gone) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (g->done) return MHD_CONTENT_READER_END_OF_STREAM;
        pthread_mutex_lock(&g->mu);
        g->news = false;
        bool keepalive = g->keepalive_due;
        g->keepalive_due = false;
        pthread_mutex_unlock(&g->mu);
        sse_drain(g);
        if (g->out_len) continue;
        if (keepalive) { /* an SSE comment: clients ignore it, proxies see traffic */
            out_append(g, ": keep-alive\n\n", 14);
            continue;
        }
        if (suspend_unless_news(g)) return 0;
    }
}

/* ---- one JSON body ---- */

static int collect(struct gen *g, const struct engine_chunk *c)
{
    int k = c->choice;
    if (c->text_len) {
        char *p = realloc(g->text[k], g->text_len[k] + c->text_len + 1);
        if (!p) return IFD_ERR_NOMEM;
        memcpy(p + g->text_len[k], c->text, c->text_len);
        g->text[k] = p;
        g->text_len[k] += c->text_len;
        p[g->text_len[k]] = 0;
    }
    if (c->logprobs && c->n_tokens) {
        if (!g->logprobs[k]) g->logprobs[k] = g->req.chat ? json_array() : NULL;
        if (g->req.chat) {
            json_t *entries = chat_logprob_entries(g->hr->srv->tok, c);
            json_array_extend(g->logprobs[k], entries); /* extend does not steal */
            json_decref(entries);
        } else {
            json_t *part = completion_logprobs(g->hr->srv->tok, c);
            if (!g->logprobs[k]) {
                g->logprobs[k] = part;
            } else {
                const char *keys[] = { "tokens", "token_logprobs", "top_logprobs" };
                for (int i = 0; i < 3; i++) json_array_extend(json_object_get(g->logprobs[k], keys[i]), json_object_get(part, keys[i]));
                json_decref(part);
            }
        }
    }
    if (c->finish) g->finish[k] = c->finish;
    if (c->finish == ENGINE_FINISH_ERROR) snprintf(g->error, sizeof g->error, "%s", c->error);
    return 0;
}

/* Legacy completions: character offset of each token within the text. */
static void fill_text_offsets(json_t *lp)
{
    json_t *tokens = json_object_get(lp, "tokens"), *offs = json_object_get(lp, "text_offset");
    size_t i, off = 0;
    json_t *t;
    json_array_foreach(tokens, i, t)
    {
        json_array_append_new(offs, json_integer((json_int_t)off));
        off += json_string_length(t);
    }
}

static int respond_final(struct http_req *r, struct gen *g)
{
    if (g->error[0]) return http_respond_error(r, 500, NULL, NULL, NULL, "generation failed: %s", g->error);
    if (g->client_gone || g->finish[0] == ENGINE_FINISH_CANCELLED)
        return http_respond_error(r, 503, NULL, NULL, "cancelled", "the request was cancelled (shutdown or client gone)");
    json_t *choices = json_array();
    for (int k = 0; k < g->req.params.n; k++) {
        json_t *lp = g->logprobs[k] ? json_incref(g->logprobs[k]) : json_null();
        json_t *choice;
        if (g->req.chat) {
            if (g->logprobs[k]) lp = json_pack("{s:o}", "content", lp);
            choice = json_pack("{s:i, s:{s:s, s:s%}, s:o, s:s}", "index", k, "message", "role", "assistant", "content",
                               g->text[k] ? g->text[k] : "", g->text_len[k], "logprobs", lp, "finish_reason",
                               finish_reason(g->finish[k]));
        } else {
            if (g->logprobs[k]) fill_text_offsets(lp);
            choice = json_pack("{s:i, s:s%, s:o, s:s}", "index", k, "text", g->text[k] ? g->text[k] : "", g->text_len[k],
                               "logprobs", lp, "finish_reason", finish_reason(g->finish[k]));
        }
        json_array_append_new(choices, choice);
    }
    json_t *body = object_head(g, g->req.chat ? "chat.completion" : "text_completion");
    json_object_set_new(body, "choices", choices);
    json_object_set_new(body, "usage", usage_json(g));
    return http_respond_json(r, 200, body);
}

int gen_continue(struct http_req *r)
{
    struct gen *g = r->gen;
    for (;;) {
        clear_news(g);
        struct engine_chunk *c;
        while (!g->done && engine_stream_next(g->stream, &c, 0) == 0) {
            if (collect(g, c)) snprintf(g->error, sizeof g->error, "out of memory");
            if (c->request_done) record_usage(g, c);
            engine_chunk_free(c);
        }
        if (g->done) return respond_final(r, g);
        if (suspend_unless_news(g)) return MHD_YES;
    }
}

/* ---- start ---- */

static void make_id(struct gen *g, bool chat, uint64_t n)
{
    static _Atomic uint64_t salt;
    uint64_t x = atomic_fetch_add(&salt, 0x9E3779B97F4A7C15ull) ^ (uint64_t)time(NULL) * 0xBF58476D1CE4E5B9ull ^ n;
    snprintf(g->id, sizeof g->id, "%s-%016llx", chat ? "chatcmpl" : "cmpl", (unsigned long long)x);
}

int gen_start(struct http_req *r, struct gen_request *req)
{
    struct gen *g = calloc(1, sizeof *g);
    if (!g) {
        gen_request_free(req);
        return http_respond_error(r, 500, NULL, NULL, NULL, "out of memory");
    }
    g->hr = r;
    g->req = *req; /* the struct holds its own buffers: re-point into the copy */
    for (int i = 0; i < g->req.params.n_stop; i++) g->req.params.stop[i] = g->req.stop_buf[i];
    g->req.params.sampling.logit_bias_ids = g->req.bias_ids;
    g->req.params.sampling.logit_bias = g->req.bias;
    req->prompt = NULL;
    pthread_mutex_init(&g->mu, NULL);
    g->created = (long)time(NULL);
    g->t_last_write = ifd_now();
    make_id(g, req->chat, r->id);
    char err[512];
    int rc = engine_submit(r->srv->engine, g->req.prompt, g->req.n_prompt, &g->req.params, gen_notify, g, &g->stream,
                           err, sizeof err);
    if (rc) {
        gen_free(g);
        if (rc == IFD_ERR_FULL) return http_respond_error(r, 429, NULL, NULL, "rate_limit_exceeded", "%s; retry later", err);
        if (rc == IFD_ERR_RANGE || rc == IFD_ERR_INVALID) return http_respond_error(r, 400, NULL, NULL, NULL, "%s", err);
        return http_respond_error(r, 500, NULL, NULL, NULL, "%s", err);
    }
    r->gen = g;
    if (!g->req.stream) return gen_continue(r);
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, gen_reader, g, NULL);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    http_add_common_headers(r, resp);
    rc = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    r->status = 200;
    r->answered = true;
    return rc;
}

/* ---- watchdog ---- */

/* True if the peer has closed its side (a streaming or waiting client went away). */
static bool peer_closed(struct http_req *r)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd p = { .fd = ci->connect_fd, .events = POLLIN | POLLRDHUP };
    if (poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char c;
    return recv(ci->connect_fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

void gen_watch(struct gen *g, double now)
{
    if (g->done || g->client_gone) return;
    if (peer_closed(g->hr)) {
        g->client_gone = true;
        LOG_INFO("http", "request %llu: client went away, cancelling", (unsigned long long)g->hr->id);
        engine_stream_cancel(g->stream); /* the engine frees its blocks and notifies */
        return;
    }
    if (!g->req.stream) return;
    pthread_mutex_lock(&g->mu);
    if (g->suspended && now - g->t_last_write >= g->hr->srv->cfg.keepalive_s) {
        g->keepalive_due = true;
        g->t_last_write = now;
        g->suspended = false;
        MHD_resume_connection(g->hr->conn);
    }
    pthread_mutex_unlock(&g->mu);
}
