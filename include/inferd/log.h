/* SPDX-License-Identifier: Apache-2.0
 *
 * log.h: leveled logging with a fixed-width subsystem tag and an optional
 * request id, one line per call, to stderr (or a file set by log_open).
 *
 *   2026-11-28T05:47:26.123Z INFO  model   | loaded 272 tensors in 41 ms
 *   2026-11-28T05:47:26.200Z WARN  sched   r=42 | preempting request
 *
 * Does not buffer: each line is written with a single write() so lines from
 * different threads never interleave.
 */
#ifndef INFERD_LOG_H
#define INFERD_LOG_H

#include <stdint.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR, LOG_LEVEL_OFF };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "debug|info|warn|error|off"; returns -1 on an unknown name. */
int log_level_parse(const char *name);
/* Redirects output to path (append); NULL means stderr. Returns 0 or IFD_ERR_IO. */
int log_open(const char *path);
/* Makes later lines JSON objects instead of text. */
void log_set_json(int on);

/* tag: up to 7 characters, padded; req_id: 0 when not about a request. */
void log_write(enum log_level level, const char *tag, uint64_t req_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define LOG_DEBUG(tag, ...) do { if (log_get_level() <= LOG_LEVEL_DEBUG) log_write(LOG_LEVEL_DEBUG, tag, 0, __VA_ARGS__); } while (0)
#define LOG_INFO(tag, ...)  log_write(LOG_LEVEL_INFO, tag, 0, __VA_ARGS__)
#define LOG_WARN(tag, ...)  log_write(LOG_LEVEL_WARN, tag, 0, __VA_ARGS__)
#define LOG_ERROR(tag, ...) log_write(LOG_LEVEL_ERROR, tag, 0, __VA_ARGS__)

#endif
