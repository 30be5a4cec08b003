/* SPDX-License-Identifier: Apache-2.0
 *
 * cmd_serve.c: `inferd serve` (also `inferd` with no command, and the
 * container's `serve` argument): the daemon.
 *
 * Order of events: listen first (health checks get 503 while loading), load
 * the model, tokenizer, chat template and engine, then serve until SIGTERM or
 * SIGINT: stop accepting, let in-flight requests finish for up to
 * --shutdown-timeout seconds (25 by default, inside SageMaker's 30 s between
 * SIGTERM and SIGKILL), cancel the rest, exit 0. SIGHUP reopens --log-file.
 *
 * Signals are blocked in every thread and taken synchronously here with
 * sigwait, so no handler ever runs in the middle of library code.
 *
 * Layer: cli.
 */
#include "cli_common.h"
#include "inferd/chat_template.h"
#include "inferd/error.h"
#include "inferd/log.h"
#include "inferd/server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *g_usage = "usage: inferd [serve] [options]\n"
                             "Serves the model over an OpenAI-compatible HTTP API (chat, completions, SSE streaming),\n"
                             "plus /tokenize, /detokenize, /health, /ping, /invocations and /metrics.";

/* API keys from --api-key (comma separated) and --api-key-file (one per line). */
static int collect_keys(const struct config *c, struct server_config *sc, char store[][256], char *err, size_t errlen)
{
    char list[sizeof c->api_key];
    snprintf(list, sizeof list, "%s", c->api_key);
    for (char *save, *k = strtok_r(list, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
        while (*k == ' ') k++;
        if (!*k) continue;
        if (sc->n_api_keys == SERVER_MAX_API_KEYS) return ifd_fail(err, errlen, IFD_ERR_INVALID, "at most 16 API keys");
        snprintf(store[sc->n_api_keys], 256, "%s", k);
        sc->api_keys[sc->n_api_keys] = store[sc->n_api_keys];
        sc->n_api_keys++;
    }
    if (!c->api_key_file[0]) return 0;
    FILE *f = fopen(c->api_key_file, "r");
    if (!f) return ifd_fail(err, errlen, IFD_ERR_IO, "cannot read --api-key-file %s", c->api_key_file);
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0] || line[0] == '#') continue;
        if (sc->n_api_keys == SERVER_MAX_API_KEYS) {
            fclose(f);
            return ifd_fail(err, errlen, IFD_ERR_INVALID, "at most 16 API keys");
        }
        size_t n = strlen(line);
        if (n > 255) {
            fclose(f);
            return ifd_fail(err, errlen, IFD_ERR_INVALID, "--api-key-file: keys are at most 255 bytes");
        }
        memcpy(store[sc->n_api_keys], line, n + 1);
        sc->api_keys[sc->n_api_keys] = store[sc->n_api_keys];
        sc->n_api_keys++;
    }
    fclose(f);
    if (sc->n_api_keys == 0) return ifd_fail(err, errlen, IFD_ERR_INVALID, "--api-key-file %s holds no key", c->api_key_file);
    return 0;
}

/* The chat template: --chat-template FILE, else the model's own (NULL if it has none). */
static int load_template(const struct config *c, const struct tokenizer *tok, struct jinja_template **out, char *err,
                         size_t errlen)
{
    *out = NULL;
    size_t len = 0;
    char *owned = NULL;
    const char *src = NULL;
    if (c->chat_template[0]) {
        FILE *f = fopen(c->chat_template, "rb");
        if (!f) return ifd_fail(err, errlen, IFD_ERR_IO, "cannot read --chat-template %s", c->chat_template);
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        fseek(f, 0, SEEK_SET);
        owned = n >= 0 && n < (1 << 24) ? malloc((size_t)n + 1) : NULL;
        if (!owned || fread(owned, 1, (size_t)n, f) != (size_t)n) {
            fclose(f);
            free(owned);
            return ifd_fail(err, errlen, IFD_ERR_IO, "cannot read --chat-template %s", c->chat_template);
        }
        fclose(f);
        owned[n] = 0;
        src = owned;
        len = (size_t)n;
    } else {
        src = tokenizer_chat_template(tok, &len);
        if (!src) {
            LOG_WARN("serve", "the model has no chat template: /v1/chat/completions answers 400 (use --chat-template)");
            return 0;
        }
    }
    char terr[512];
    int rc = jinja_compile(out, src, len, terr, sizeof terr);
    free(owned);
    if (rc && c->chat_template[0]) return ifd_fail(err, errlen, rc, "--chat-template %s: %s", c->chat_template, terr);
    if (rc) LOG_WARN("serve", "the model's chat template does not compile (%s): chat requests answer 400", terr);
    return 0;
}

/* The served model name: --served-model-name, else the model file's name without ".gguf". */
static void model_name(const struct config *c, const char *path, char *out, size_t cap)
{
    if (c->served_model_name[0]) {
        snprintf(out, cap, "%s", c->served_model_name);
        return;
    }
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".gguf") == 0) n -= 5;
    snprintf(out, cap, "%.*s", (int)n, base);
}

static void server_config_from(const struct config *c, struct server_config *sc)
{
    memset(sc, 0, sizeof *sc);
    sc->host = c->host;
    sc->port = c->port;
    sc->threads = c->http_threads;
    sc->max_connections = c->max_connections;
    sc->max_body_size = (size_t)c->max_body_size;
    sc->max_header_size = (size_t)c->max_header_size;
    sc->timeout_s = c->timeout_s;
    sc->keepalive_s = c->keepalive_s;
    sc->auth_health = c->auth_health != 0;
}

/* Waits for SIGTERM/SIGINT, reopening logs on SIGHUP. */
static int wait_for_stop(const sigset_t *set, const struct config *c)
{
    for (;;) {
        int sig = 0;
        if (sigwait(set, &sig) != 0) continue;
        if (sig == SIGHUP) {
            if (c->log_file[0] && log_open(c->log_file)) fprintf(stderr, "inferd: cannot reopen %s\n", c->log_file);
            LOG_INFO("serve", "SIGHUP: log file reopened");
            continue;
        }
        return sig;
    }
}

static int serve(struct config *c, const sigset_t *set)
{
    double t0 = ifd_now();
    struct server_config sc;
    char keys[SERVER_MAX_API_KEYS][256], err[512], name[256], path[CONFIG_PATH_MAX];
    server_config_from(c, &sc);
    struct server *srv = NULL;
    struct cli_runtime rt = { 0 };
    struct jinja_template *tmpl = NULL;
    struct engine *e = NULL;
    int status = 1;
    if (collect_keys(c, &sc, keys, err, sizeof err) || cli_model_path(c, path, sizeof path, err, sizeof err)) goto fail;
    model_name(c, path, name, sizeof name);
    sc.served_model_name = name;
    if (server_create(&srv, &sc, err, sizeof err)) goto fail;
    snprintf(c->model, sizeof c->model, "%s", path);
    if (cli_load(&rt, c, err, sizeof err)) goto fail;
    if (!rt.tok) {
        snprintf(err, sizeof err, "serving needs a tokenizer: pass --model FILE");
        goto fail;
    }
    if (load_template(c, rt.tok, &tmpl, err, sizeof err)) goto fail;
    struct engine_config ec;
    cli_engine_config(c, &ec);
    if (engine_create(&e, rt.model, rt.tok, &ec, err, sizeof err)) goto fail;
    server_set_ready(srv, e, rt.tok, tmpl, rt.model->hp.n_vocab);
    LOG_INFO("serve", "ready in %.0f ms: model '%s' on %s:%d", (ifd_now() - t0) * 1e3, name, c->host, c->port);
    int sig = wait_for_stop(set, c);
    LOG_INFO("serve", "%s: draining for up to %.0f s (%d requests in flight)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
             c->shutdown_timeout, server_in_flight(srv));
    int cancelled = server_drain(srv, c->shutdown_timeout);
    LOG_INFO("serve", "stopped (%d requests cancelled at the deadline)", cancelled);
    status = 0;
    goto out;
fail:
    fprintf(stderr, "inferd: %s\n", err);
    LOG_ERROR("serve", "%s", err);
out:
    server_destroy(srv); /* before the engine: no request may still reach it */
    engine_destroy(e);
    jinja_free(tmpl);
    cli_unload(&rt);
    return status;
}

int cmd_serve(int argc, char **argv, int first)
{
    /* block before any thread exists, so every thread inherits the mask */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that hangs up must not kill the daemon */
    struct config *c = malloc(sizeof *c);
    if (!c) return 1;
    int p = cli_parse(c, CMD_SERVE, g_usage, argc, argv, first);
    int status = p < 0 ? 1 : p > 0 ? 0 : serve(c, &set);
    free(c);
    return status;
}
