/* SPDX-License-Identifier: Apache-2.0
 *
 * log.c: the logger behind log.h (util layer). Formats a whole line into a
 * stack buffer and emits it with one write() so concurrent threads never
 * interleave partial lines. Knows nothing about requests beyond an id.
 */
#include "inferd/log.h"
#include "inferd/error.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int g_level = LOG_LEVEL_INFO;
static _Atomic int g_fd = 2;
static _Atomic int g_json = 0;

void log_set_level(enum log_level level) { atomic_store(&g_level, (int)level); }
enum log_level log_get_level(void) { return (enum log_level)atomic_load(&g_level); }
void log_set_json(int on) { atomic_store(&g_json, on ? 1 : 0); }

int log_level_parse(const char *name)
{
    static const char *names[] = { "debug", "info", "warn", "error", "off" };
    for (int i = 0; i < 5; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

int log_open(const char *path)
{
    int fd = 2;
    if (path) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0) return IFD_ERR_IO;
    }
    int old = atomic_exchange(&g_fd, fd);
    if (old > 2) close(old);
    return 0;
}

/* Escapes s into a JSON string body; returns bytes written (always NUL-terminated). */
static size_t json_escape(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { out[n++] = '\\'; out[n++] = (char)c; }
        else if (c == '\n') { out[n++] = '\\'; out[n++] = 'n'; }
        else if (c < 0x20) n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        else out[n++] = (char)c;
    }
    out[n] = 0;
    return n;
}

void log_write(enum log_level level, const char *tag, uint64_t req_id, const char *fmt, ...)
{
    static const char *lv[] = { "DEBUG", "INFO", "WARN", "ERROR" };
    if ((int)level < atomic_load(&g_level) || level >= LOG_LEVEL_OFF) return;

    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[64];
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);

    char line[4200];
    int n;
    if (atomic_load(&g_json)) {
        char esc[4096];
        json_escape(esc, sizeof esc, msg);
        n = snprintf(line, sizeof line, "{\"ts\":\"%s\",\"level\":\"%s\",\"tag\":\"%s\",\"req\":%llu,\"msg\":\"%s\"}\n",
                     when, lv[level], tag, (unsigned long long)req_id, esc);
    } else if (req_id) {
        n = snprintf(line, sizeof line, "%s %-5s %-7.7s r=%llu | %s\n", when, lv[level], tag,
                     (unsigned long long)req_id, msg);
    } else {
        n = snprintf(line, sizeof line, "%s %-5s %-7.7s | %s\n", when, lv[level], tag, msg);
    }
    if (n < 0) return;
    if ((size_t)n >= sizeof line) { n = (int)sizeof line - 1; line[n - 1] = '\n'; }
    ssize_t w = write(atomic_load(&g_fd), line, (size_t)n);
    (void)w;
}
