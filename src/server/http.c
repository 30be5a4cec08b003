/* SPDX-License-Identifier: Apache-2.0
 *
 * http.c: the libmicrohttpd daemon and the request lifecycle around the
 * endpoints: routing, body accumulation under --max-body-size, API-key
 * checks (constant time), the completion callback (cancels what a vanished
 * client left behind, writes the access log line, counts responses), the
 * watchdog thread (disconnects during long prefills, SSE keep-alives), and
 * draining on shutdown.
 *
 * MHD runs its own polling threads with suspend/resume: a request waiting
 * for the engine holds no thread.
 *
 * Layer: server.
 */
#include "server_internal.h"
#include "inferd/error.h"
#include "inferd/log.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WATCH_INTERVAL_MS 250

/* ---- routing ---- */

struct route_def {
    const char *path;
    enum route route;
    bool get, post, public_route;
};

static const struct route_def g_routes[] = {
    { "/v1/chat/completions", ROUTE_CHAT, false, true, false },
    { "/v1/completions", ROUTE_COMPLETIONS, false, true, false },
    { "/v1/models", ROUTE_MODELS, true, false, false },
    { "/tokenize", ROUTE_TOKENIZE, false, true, false },
    { "/detokenize", ROUTE_DETOKENIZE, false, true, false },
    { "/health", ROUTE_HEALTH, true, false, true },
    { "/ping", ROUTE_PING, true, true, true },
    { "/invocations", ROUTE_INVOCATIONS, false, true, false },
    { "/metrics", ROUTE_METRICS, true, false, true },
};

static const struct route_def *find_route(const char *url)
{
    for (size_t i = 0; i < sizeof g_routes / sizeof g_routes[0]; i++)
        if (strcmp(url, g_routes[i].path) == 0) return &g_routes[i];
    return NULL;
}

static const char *route_name(enum route r)
{
    for (size_t i = 0; i < sizeof g_routes / sizeof g_routes[0]; i++)
        if (g_routes[i].route == r) return g_routes[i].path;
    return "other";
}

/* ---- auth ---- */

/* Compares against every key, each over the longest key length, so timing says
 * nothing about how much of a key matched or which one. */
static bool key_ok(const struct server *s, const char *given)
{
    size_t gl = strlen(given);
    unsigned ok = 0;
    for (int k = 0; k < s->cfg.n_api_keys; k++) {
        const char *key = s->api_keys[k];
        size_t kl = strlen(key);
        unsigned diff = (unsigned)(gl ^ kl);
        for (size_t i = 0; i < s->key_len_max; i++) {
            unsigned char a = i < gl ? (unsigned char)given[i] : 0, b = i < kl ? (unsigned char)key[i] : 0;
            diff |= (unsigned)(a ^ b);
        }
        ok |= diff == 0;
    }
    return ok != 0;
}

static bool authorized(struct http_req *r, const struct route_def *rd)
{
    const struct server *s = r->srv;
    if (s->cfg.n_api_keys == 0 || (rd && rd->public_route && !s->cfg.auth_health)) return true;
    const char *h = http_header(r, "Authorization");
    if (!h || strncasecmp(h, "Bearer ", 7) != 0) return false;
    return key_ok(s, h + 7);
}

/* ---- request lifecycle ---- */

static void track(struct server *s, struct http_req *r)
{
    pthread_mutex_lock(&s->mu);
    r->next = s->in_flight;
    if (s->in_flight) s->in_flight->prev = r;
    s->in_flight = r;
    s->n_in_flight++;
    pthread_mutex_unlock(&s->mu);
}

static void untrack(struct server *s, struct http_req *r)
{
    pthread_mutex_lock(&s->mu);
    if (r->prev) r->prev->next = r->next;
    else s->in_flight = r->next;
    if (r->next) r->next->prev = r->prev;
    s->n_in_flight--;
    pthread_mutex_unlock(&s->mu);
}

static void access_log(const struct http_req *r, const char *method, enum MHD_RequestTerminationCode toe)
{
    const struct gen *g = r->gen;
    double total = ifd_now() - r->t_start;
    log_write(LOG_LEVEL_INFO, "access", r->id, "%s %s %d in=%d out=%d ttft_ms=%.1f total_ms=%.1f%s", method,
              route_name(r->route), r->status, g ? g->prompt_tokens : 0, g ? g->completion_tokens : 0,
              g ? g->ttft_s * 1e3 : 0.0, total * 1e3, toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (aborted)");
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe)
{
    (void)c;
    struct server *s = cls;
    struct http_req *r = *req_cls;
    if (!r) return;
    untrack(s, r); /* first: the watchdog must not see it any more */
    int status = r->answered ? r->status : 499;
    if (status < 600) atomic_fetch_add(&s->http_status[status], 1);
    atomic_fetch_add(&s->http_count[r->route][status / 100 < 6 ? status / 100 : 5], 1);
    access_log(r, r->method, toe);
    gen_free(r->gen); /* cancels an unfinished generation: its KV blocks go back within a step */
    free(r->body);
    free(r);
    *req_cls = NULL;
}

/* Appends upload data; false (and too_large) past the limit. */
static bool append_body(struct http_req *r, const char *data, size_t n)
{
    size_t max = r->srv->cfg.max_body_size;
    if (r->too_large || r->body_len + n > max) {
        r->too_large = true;
        return false;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + n + 1) cap *= 2;
        if (cap > max + 1) cap = max + 1;
        char *p = realloc(r->body, cap);
        if (!p) {
            r->too_large = true;
            return false;
        }
        r->body = p;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
    return true;
}

/* Parses the body as JSON (an empty body is an error for POST endpoints). */
static json_t *parse_body(struct http_req *r)
{
    json_error_t e;
    json_t *j = r->body_len ? json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &e) : NULL;
    if (!j)
        http_respond_error(r, 400, NULL, NULL, "invalid_json", "the body is not valid JSON: %s (line %d, column %d)",
                           r->body_len ? e.text : "empty body", r->body_len ? e.line : 0, r->body_len ? e.column : 0);
    return j;
}

/* The whole body is in: run the endpoint. */
static int dispatch(struct http_req *r, const char *method)
{
    struct server *s = r->srv;
    enum server_state st = (enum server_state)atomic_load(&s->state);
    switch (r->route) {
    case ROUTE_HEALTH:
    case ROUTE_PING: return ep_health(r);
    case ROUTE_METRICS: return ep_metrics(r);
    default: break;
    }
    if (st != SERVER_READY)
        return http_respond_error(r, 503, NULL, NULL, st == SERVER_LOADING ? "loading" : "draining",
                                  st == SERVER_LOADING ? "the model is still loading" : "the server is shutting down");
    if (r->route == ROUTE_MODELS) return ep_models(r);
    (void)method;
    json_t *body = parse_body(r);
    if (!body) return MHD_YES;
    int rc;
    switch (r->route) {
    case ROUTE_CHAT: rc = ep_generate(r, body, true); break;
    case ROUTE_COMPLETIONS: rc = ep_generate(r, body, false); break;
    case ROUTE_TOKENIZE: rc = ep_tokenize(r, body); break;
    case ROUTE_DETOKENIZE: rc = ep_detokenize(r, body); break;
    case ROUTE_INVOCATIONS: rc = ep_invocations(r, body); break;
    default: rc = http_respond_error(r, 404, NULL, NULL, NULL, "not found"); break;
    }
    json_decref(body);
    return rc;
}

/* First call for a request: route, method and auth checks, limits from headers. */
static int begin(struct server *s, struct MHD_Connection *c, const char *url, const char *method, void **req_cls)
{
    struct http_req *r = calloc(1, sizeof *r);
    if (!r) return MHD_NO;
    r->srv = s;
    r->conn = c;
    r->id = atomic_fetch_add(&s->next_id, 1) + 1;
    r->t_start = ifd_now();
    snprintf(r->method, sizeof r->method, "%s", method);
    const struct route_def *rd = find_route(url);
    r->route = rd ? rd->route : ROUTE_NOT_FOUND;
    *req_cls = r;
    track(s, r);
    const char *attrs = http_header(r, "X-Amzn-SageMaker-Custom-Attributes");
    if (attrs) snprintf(r->custom_attrs, sizeof r->custom_attrs, "%s", attrs);
    if (!authorized(r, rd))
        return http_respond_error(r, 401, NULL, NULL, "invalid_api_key", "missing or invalid API key");
    if (!rd) return http_respond_error(r, 404, NULL, NULL, "not_found", "no route %s", url);
    bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0, post = strcmp(method, "POST") == 0;
    if ((get && !rd->get) || (post && !rd->post) || (!get && !post))
        return http_respond_error(r, 405, NULL, NULL, "method_not_allowed", "%s is not allowed on %s", method, url);
    const char *cl = http_header(r, "Content-Length");
    if (cl && strtoull(cl, NULL, 10) > s->cfg.max_body_size)
        return http_respond_error(r, 413, NULL, NULL, "request_too_large", "the body is larger than %zu bytes",
                                  s->cfg.max_body_size);
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    (void)version;
    struct server *s = cls;
    struct http_req *r = *req_cls;
    if (!r) return (enum MHD_Result)begin(s, c, url, method, req_cls);
    if (r->answered) { /* refused early: swallow any upload */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (!append_body(r, upload_data, *upload_data_size)) {
            *upload_data_size = 0;
            return (enum MHD_Result)http_respond_error(r, 413, NULL, NULL, "request_too_large",
                                                       "the body is larger than %zu bytes", s->cfg.max_body_size);
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->gen) return (enum MHD_Result)gen_continue(r); /* resumed: the engine has news */
    return (enum MHD_Result)dispatch(r, method);
}

/* ---- watchdog ---- */

static void *watchdog_main(void *arg)
{
    struct server *s = arg;
    while (!atomic_load(&s->stopping)) {
        usleep(WATCH_INTERVAL_MS * 1000);
        double now = ifd_now();
        pthread_mutex_lock(&s->mu);
        for (struct http_req *r = s->in_flight; r; r = r->next)
            if (r->gen) gen_watch(r->gen, now);
        pthread_mutex_unlock(&s->mu);
    }
    return NULL;
}

/* ---- lifecycle ---- */

static int bind_address(const struct server_config *cfg, struct sockaddr_storage *ss, char *err, size_t errlen)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    const char *host = cfg->host && *cfg->host ? cfg->host : "0.0.0.0";
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)cfg->port);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)cfg->port);
        return 0;
    }
    return ifd_fail(err, errlen, IFD_ERR_INVALID, "--host '%s' is not an IPv4 or IPv6 address", host);
}

int server_create(struct server **out, const struct server_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    struct server *s = calloc(1, sizeof *s);
    if (!s) return ifd_fail(err, errlen, IFD_ERR_NOMEM, "out of memory");
    s->cfg = *cfg;
    snprintf(s->model_name, sizeof s->model_name, "%s", cfg->served_model_name ? cfg->served_model_name : "default");
    for (int k = 0; k < cfg->n_api_keys; k++) {
        s->api_keys[k] = strdup(cfg->api_keys[k]);
        if (s->api_keys[k] && strlen(s->api_keys[k]) > s->key_len_max) s->key_len_max = strlen(s->api_keys[k]);
    }
    s->started = (long)time(NULL);
    pthread_mutex_init(&s->mu, NULL);
    struct sockaddr_storage addr;
    int rc = bind_address(cfg, &addr, err, errlen);
    if (rc) {
        server_destroy(s);
        return rc;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO;
    if (addr.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->mhd = MHD_start_daemon(flags, (uint16_t)cfg->port, NULL, NULL, on_request, s,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                              MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(cfg->threads > 0 ? cfg->threads : 2),
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg->timeout_s,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->max_header_size,
                              MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)1024,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->mhd) {
        server_destroy(s);
        return ifd_fail(err, errlen, IFD_ERR_IO, "cannot listen on %s:%d (address in use, or no permission)",
                        cfg->host && *cfg->host ? cfg->host : "0.0.0.0", cfg->port);
    }
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s) == 0) s->watchdog_started = true;
    LOG_INFO("http", "listening on %s:%d (%d threads, %d API keys)", cfg->host && *cfg->host ? cfg->host : "0.0.0.0",
             cfg->port, cfg->threads > 0 ? cfg->threads : 2, cfg->n_api_keys);
    *out = s;
    return 0;
}

void server_set_ready(struct server *s, struct engine *e, struct tokenizer *tok, const struct jinja_template *tmpl,
                      int n_vocab)
{
    s->engine = e;
    s->tok = tok;
    s->tmpl = tmpl;
    s->n_vocab = n_vocab;
    atomic_store(&s->state, SERVER_READY);
}

int server_in_flight(struct server *s)
{
    pthread_mutex_lock(&s->mu);
    int n = s->n_in_flight;
    pthread_mutex_unlock(&s->mu);
    return n;
}

int server_drain(struct server *s, double timeout_s)
{
    atomic_store(&s->state, SERVER_DRAINING);
    MHD_socket listen_fd = s->mhd ? MHD_quiesce_daemon(s->mhd) : MHD_INVALID_SOCKET;
    if (listen_fd != MHD_INVALID_SOCKET) close(listen_fd); /* new connections are refused, not queued */
    double deadline = ifd_now() + timeout_s;
    while (server_in_flight(s) > 0 && ifd_now() < deadline) usleep(20000);
    int cancelled = 0;
    pthread_mutex_lock(&s->mu);
    for (struct http_req *r = s->in_flight; r; r = r->next)
        if (r->gen && r->gen->stream && !r->gen->done) {
            engine_stream_cancel(r->gen->stream);
            cancelled++;
        }
    pthread_mutex_unlock(&s->mu);
    /* give cancelled requests a moment to send their last bytes */
    for (int i = 0; i < 100 && server_in_flight(s) > 0; i++) usleep(10000);
    return cancelled;
}

void server_destroy(struct server *s)
{
    if (!s) return;
    atomic_store(&s->stopping, true);
    if (s->watchdog_started) pthread_join(s->watchdog, NULL);
    if (s->mhd) MHD_stop_daemon(s->mhd); /* completes (and so cancels) whatever is left */
    for (int k = 0; k < SERVER_MAX_API_KEYS; k++) free(s->api_keys[k]);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
