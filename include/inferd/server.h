/* SPDX-License-Identifier: Apache-2.0
 *
 * server.h: the OpenAI-compatible HTTP front end (libmicrohttpd).
 *
 * The server listens as soon as it is created, so health checks get answers
 * (503) while the model loads; server_set_ready() hands it the engine and
 * turns /health and /ping to 200. Requests are parsed, templated and
 * tokenized on the HTTP threads, submitted to the engine, and answered from
 * the engine's per-request stream: as Server-Sent Events with the connection
 * suspended between tokens (thousands of open streams cost no threads), or as
 * one JSON body at the end.
 *
 * Layer: server. libmicrohttpd and jansson types never leave src/server.
 */
#ifndef INFERD_SERVER_H
#define INFERD_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inferd/engine.h"
#include "inferd/tokenizer.h"

struct server;
struct jinja_template;

#define SERVER_MAX_API_KEYS 16

struct server_config {
    const char *host;            /* "0.0.0.0", "127.0.0.1", "::" ... */
    int port;
    int threads;                 /* HTTP polling threads */
    int max_connections;
    size_t max_body_size;        /* bytes; larger bodies get 413 */
    size_t max_header_size;      /* bytes of request line + headers per connection */
    int timeout_s;               /* idle read/write timeout of a connection */
    int keepalive_s;             /* SSE comment after this long without output */
    int n_api_keys;
    const char *api_keys[SERVER_MAX_API_KEYS];
    bool auth_health;            /* also require the key on /health, /ping and /metrics */
    const char *served_model_name;
};

int server_create(struct server **out, const struct server_config *cfg, char *err, size_t errlen);
/* Makes the server serve: tmpl may be NULL (chat requests then get 400). */
void server_set_ready(struct server *s, struct engine *e, struct tokenizer *tok, const struct jinja_template *tmpl,
                      int n_vocab);
/* Stops accepting, answers /health with 503, and waits up to timeout_s for
 * in-flight requests; what remains is cancelled. Returns the number cancelled. */
int server_drain(struct server *s, double timeout_s);
void server_destroy(struct server *s);
/* Requests being handled right now (tests, logs). */
int server_in_flight(struct server *s);

#endif
