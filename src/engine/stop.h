/* SPDX-License-Identifier: Apache-2.0
 *
 * stop.h: stop strings found across token boundaries and never emitted.
 *
 * Generated text passes through the matcher before it is emitted. Text that
 * could still turn out to be the start of a stop string is held back; once a
 * stop string is complete, everything before it is released and the rest is
 * dropped. The held tail always starts on a UTF-8 character boundary.
 *
 * Layer: engine.
 */
#ifndef INFERD_STOP_H
#define INFERD_STOP_H

#include <stdbool.h>
#include <stddef.h>

struct stop_matcher {
    int n;
    const char *const *stops; /* (n) borrowed, NUL-terminated */
    char *held;               /* text withheld so far */
    size_t n_held, cap_held;
};

void stop_init(struct stop_matcher *m, const char *const *stops, int n);
void stop_free(struct stop_matcher *m);

/* Feeds new text. Appends to *out (malloc'd, grown as needed, *out_len bytes)
 * the text that is safe to emit, and sets *matched to the index of the stop
 * string that completed (everything from it on is dropped) or -1.
 * Returns 0 or IFD_ERR_NOMEM. */
int stop_feed(struct stop_matcher *m, const char *text, size_t len, char **out, size_t *out_len, int *matched);
/* Releases held text at the end of generation (no stop string completed). */
int stop_flush(struct stop_matcher *m, char **out, size_t *out_len);

/* Appends bytes to a malloc'd buffer; 0 or IFD_ERR_NOMEM. */
int stop_append(char **buf, size_t *len, const char *src, size_t n);

#endif
