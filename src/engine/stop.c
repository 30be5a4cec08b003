/* SPDX-License-Identifier: Apache-2.0
 * stop.c: the stop-string matcher of stop.h. Layer: engine. */
#include "stop.h"
#include "inferd/error.h"

#include <stdlib.h>
#include <string.h>

void stop_init(struct stop_matcher *m, const char *const *stops, int n)
{
    memset(m, 0, sizeof *m);
    m->stops = stops;
    m->n = n;
}

void stop_free(struct stop_matcher *m)
{
    free(m->held);
    memset(m, 0, sizeof *m);
}

int stop_append(char **buf, size_t *len, const char *src, size_t n)
{
    if (!n) return 0;
    char *p = realloc(*buf, *len + n + 1);
    if (!p) return IFD_ERR_NOMEM;
    memcpy(p + *len, src, n);
    *len += n;
    p[*len] = 0;
    *buf = p;
    return 0;
}

/* Length of the longest suffix of s[0..n) that is a proper prefix of some stop string. */
static size_t partial_tail(const struct stop_matcher *m, const char *s, size_t n)
{
    size_t best = 0;
    for (int i = 0; i < m->n; i++) {
        size_t sl = strlen(m->stops[i]);
        if (!sl) continue;
        for (size_t k = sl - 1 < n ? sl - 1 : n; k > best; k--)
            if (memcmp(s + n - k, m->stops[i], k) == 0) {
                best = k;
                break;
            }
    }
    /* never split a character: widen the held tail back to a lead byte */
    while (best < n && ((unsigned char)s[n - best] & 0xC0) == 0x80) best++;
    return best;
}

int stop_feed(struct stop_matcher *m, const char *text, size_t len, char **out, size_t *out_len, int *matched)
{
    *matched = -1;
    if (m->n == 0) return stop_append(out, out_len, text, len);
    if (stop_append(&m->held, &m->n_held, text, len)) return IFD_ERR_NOMEM;
    /* earliest complete match wins (and, at equal positions, the first listed) */
    size_t best_pos = m->n_held;
    int best = -1;
    for (int i = 0; i < m->n; i++) {
        size_t sl = strlen(m->stops[i]);
        if (!sl || sl > m->n_held) continue;
        for (size_t p = 0; p + sl <= m->n_held && p < best_pos; p++)
            if (memcmp(m->held + p, m->stops[i], sl) == 0) {
                best_pos = p;
                best = i;
                break;
            }
    }
    if (best >= 0) {
        *matched = best;
        int rc = stop_append(out, out_len, m->held, best_pos);
        m->n_held = 0;
        return rc;
    }
    size_t keep = partial_tail(m, m->held, m->n_held), emit = m->n_held - keep;
    if (stop_append(out, out_len, m->held, emit)) return IFD_ERR_NOMEM;
    memmove(m->held, m->held + emit, keep);
    m->n_held = keep;
    return 0;
}

int stop_flush(struct stop_matcher *m, char **out, size_t *out_len)
{
    int rc = stop_append(out, out_len, m->held, m->n_held);
    m->n_held = 0;
    return rc;
}
