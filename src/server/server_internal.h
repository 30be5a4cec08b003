/* SPDX-License-Identifier: Apache-2.0
 *
 * server_internal.h: state shared by the server's files:
 *   http.c           daemon, routing, bodies, auth, completion, access log, watchdog
 *   http_util.c      responses and OpenAI-shaped errors
 *   openai_parse.c   request JSON -> a generation request (prompt ids + engine params)
 *   openai_gen.c     one generation in flight: SSE or one JSON body
 *   endpoints.c      models, tokenize, detokenize, health, ping, metrics, invocations
 *
 * Lock order: engine stream lock (inside the engine) -> gen->mu -> srv->mu.
 * The engine calls gen_notify with its stream lock held; the HTTP side never
 * holds gen->mu while calling into the engine.
 *
 * Layer: server.
 */
#ifndef INFERD_SERVER_INTERNAL_H
#define INFERD_SERVER_INTERNAL_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>

#include "inferd/sys.h"
#include "inferd/chat_template.h"
#include "inferd/server.h"

enum route {
    ROUTE_CHAT, ROUTE_COMPLETIONS, ROUTE_MODELS, ROUTE_TOKENIZE, ROUTE_DETOKENIZE, ROUTE_HEALTH, ROUTE_PING,
    ROUTE_INVOCATIONS, ROUTE_METRICS, ROUTE_NOT_FOUND, ROUTE_COUNT
};

enum server_state { SERVER_LOADING, SERVER_READY, SERVER_DRAINING };

struct gen;

/* One HTTP request (MHD's per-request pointer). */
struct http_req {
    struct server *srv;
    struct MHD_Connection *conn;
    enum route route;
    char method[8];
    uint64_t id;
    char *body;
    size_t body_len, body_cap;
    bool too_large;
    bool answered;
    double t_start;
    int status;                     /* HTTP status sent, for the access log and counters */
    struct gen *gen;                /* a generation in flight, or NULL */
    char custom_attrs[1025];        /* X-Amzn-SageMaker-Custom-Attributes, echoed */
    struct http_req *prev, *next;   /* in-flight list (srv->mu) */
};

/* What the client asked to generate, parsed and validated. */
struct gen_request {
    bool chat;
    bool stream, include_usage;
    int legacy_logprobs;            /* completions: logprobs n, -1 when absent */
    struct engine_params params;
    int32_t *prompt;                /* (n_prompt) malloc'd */
    int n_prompt;
    char stop_buf[ENGINE_MAX_STOP][ENGINE_MAX_STOP_LEN + 1];
    int32_t bias_ids[1024];
    float bias[1024];
};

/* One generation in flight. */
struct gen {
    struct http_req *hr;
    struct engine_stream *stream;
    struct gen_request req;
    char id[48];
    long created;
    pthread_mutex_t mu;
    bool suspended, news;           /* mu: the connection waits for engine output */
    bool keepalive_due;             /* mu: the watchdog asks for an SSE comment */
    _Atomic bool client_gone;       /* the watchdog saw the socket closed */
    _Atomic bool done;              /* the request's last chunk was taken */
    bool role_sent[ENGINE_MAX_N];
    char *out;                      /* SSE bytes not yet handed to MHD */
    size_t out_len, out_pos, out_cap;
    double t_last_write;
    /* non-streaming: the whole answer */
    char *text[ENGINE_MAX_N];
    size_t text_len[ENGINE_MAX_N];
    json_t *logprobs[ENGINE_MAX_N];
    enum engine_finish finish[ENGINE_MAX_N];
    int prompt_tokens, completion_tokens, cached_tokens;
    double ttft_s;
    char error[160];
};

struct server {
    struct server_config cfg;
    char model_name[256];
    char *api_keys[SERVER_MAX_API_KEYS];
    size_t key_len_max;
    struct MHD_Daemon *mhd;
    _Atomic int state;              /* enum server_state */
    struct engine *engine;
    struct tokenizer *tok;
    const struct jinja_template *tmpl;
    int n_vocab;
    long started;                   /* unix time, for /v1/models */
    pthread_mutex_t mu;
    struct http_req *in_flight;     /* requests being handled */
    int n_in_flight;
    pthread_t watchdog;
    bool watchdog_started;
    _Atomic bool stopping;
    _Atomic uint64_t next_id;
    _Atomic uint64_t http_count[ROUTE_COUNT][6]; /* responses per route and status class 1xx..5xx (index 1..5) */
    _Atomic uint64_t http_status[600];           /* responses per exact status */
};

/* ---- http_util.c ---- */
int http_respond(struct http_req *r, int status, const char *content_type, const char *body, size_t len);
int http_respond_json(struct http_req *r, int status, json_t *body); /* steals body */
/* OpenAI error object {"error":{"message","type","param","code"}}. */
int http_respond_error(struct http_req *r, int status, const char *type, const char *param, const char *code,
                       const char *fmt, ...) __attribute__((format(printf, 6, 7)));
const char *http_header(struct http_req *r, const char *name);
void http_add_common_headers(struct http_req *r, struct MHD_Response *resp);

/* ---- openai_parse.c ---- */
/* Parses a chat or completions body into req; on failure responds 400/404 and returns nonzero. */
int openai_parse(struct http_req *r, json_t *body, bool chat, struct gen_request *req);
void gen_request_free(struct gen_request *req);

/* ---- openai_gen.c ---- */
/* Submits req (taking its prompt) and answers the HTTP request (SSE or JSON). */
int gen_start(struct http_req *r, struct gen_request *req);
/* Called again by MHD after a resume (non-streaming). */
int gen_continue(struct http_req *r);
void gen_free(struct gen *g);
void gen_cancel(struct gen *g);
/* Watchdog: probes the client socket, asks for keep-alives, resumes as needed. */
void gen_watch(struct gen *g, double now);

/* ---- endpoints.c ---- */
int ep_models(struct http_req *r);
int ep_tokenize(struct http_req *r, json_t *body);
int ep_detokenize(struct http_req *r, json_t *body);
int ep_health(struct http_req *r);
int ep_metrics(struct http_req *r);
int ep_invocations(struct http_req *r, json_t *body);
int ep_generate(struct http_req *r, json_t *body, bool chat);

/* ---- http.c ---- */

#endif
