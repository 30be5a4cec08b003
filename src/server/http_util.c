/* SPDX-License-Identifier: Apache-2.0
 *
 * http_util.c: building responses: bodies with the common headers, JSON,
 * and OpenAI's nested error object with the right type for each status.
 *
 * Layer: server.
 */
#include "server_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *http_header(struct http_req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

void http_add_common_headers(struct http_req *r, struct MHD_Response *resp)
{
    char id[32];
    snprintf(id, sizeof id, "%llu", (unsigned long long)r->id);
    MHD_add_response_header(resp, "X-Request-Id", id);
    MHD_add_response_header(resp, "Server", "inferd");
    if (r->custom_attrs[0]) MHD_add_response_header(resp, "X-Amzn-SageMaker-Custom-Attributes", r->custom_attrs);
}

int http_respond(struct http_req *r, int status, const char *content_type, const char *body, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    if (content_type) MHD_add_response_header(resp, "Content-Type", content_type);
    http_add_common_headers(r, resp);
    if (status == 429 || status == 503) MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 405) MHD_add_response_header(resp, "Allow", r->route == ROUTE_PING ? "GET, POST" : "GET, POST");
    if (status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    int rc = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->status = status;
    r->answered = true;
    return rc;
}

int http_respond_json(struct http_req *r, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) return http_respond(r, 500, "application/json", "{\"error\":{\"message\":\"out of memory\"}}", 37);
    int rc = http_respond(r, status, "application/json", text, strlen(text));
    free(text);
    return rc;
}

/* OpenAI's error type for a status, when the caller does not name one. */
static const char *error_type(int status)
{
    switch (status) {
    case 400: case 404: case 405: case 413: case 422: return "invalid_request_error";
    case 401: return "authentication_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    default: return "server_error";
    }
}

/* Replaces bytes that are not valid UTF-8 with '?': messages may quote client input,
 * and JSON strings must be valid UTF-8. */
static void utf8_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
        int ok = n > 0;
        for (int i = 1; ok && i < n; i++) ok = (p[i] & 0xC0) == 0x80;
        if (!ok) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
}

int http_respond_error(struct http_req *r, int status, const char *type, const char *param, const char *code,
                       const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    utf8_sanitize(msg);
    json_t *err = json_pack("{s:s, s:s, s:o, s:o}", "message", msg, "type", type ? type : error_type(status), "param",
                            param ? json_string(param) : json_null(), "code", code ? json_string(code) : json_null());
    return http_respond_json(r, status, json_pack("{s:o}", "error", err));
}
