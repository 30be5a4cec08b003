/* SPDX-License-Identifier: Apache-2.0
 *
 * tok_map.c: the tokenizer's hash maps and growable arrays: token text -> id
 * and BPE merge pair -> rank, both open addressing with linear probing, built
 * once at load and read-only afterwards (so lookups need no locking).
 *
 * What it does not do: deletion or resizing after load (the vocabulary never
 * changes), or any tokenization logic.
 *
 * Layer: tokenizer.
 */
#include "tok_internal.h"

#include "inferd/error.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

int tok_ids_push(struct tok_ids *a, int32_t id)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return IFD_ERR_NOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return 0;
}

void tok_ids_free(struct tok_ids *a)
{
    free(a->v);
    memset(a, 0, sizeof *a);
}

int tok_offs_push(struct tok_offs *a, uint32_t off)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        uint32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return IFD_ERR_NOMEM;
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = off;
    return 0;
}

void tok_offs_free(struct tok_offs *a)
{
    free(a->v);
    memset(a, 0, sizeof *a);
}

/* ---- bigram heap ---- */

static inline bool bigram_before(const struct tok_bigram *a, const struct tok_bigram *b)
{
    /* !(<) && !(>) rather than ==, so a NaN score orders like a tie */
    return a->key < b->key || (!(a->key > b->key) && a->left < b->left);
}

int tok_heap_push(struct tok_heap *h, struct tok_bigram b)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct tok_bigram *v = realloc(h->v, cap * sizeof *v);
        if (!v) return IFD_ERR_NOMEM;
        h->v = v;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&b, &h->v[parent])) break;
        h->v[i] = h->v[parent];
        i = parent;
    }
    h->v[i] = b;
    return 0;
}

struct tok_bigram tok_heap_pop(struct tok_heap *h)
{
    struct tok_bigram top = h->v[0], last = h->v[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && bigram_before(&h->v[c + 1], &h->v[c])) c++;
        if (!bigram_before(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (n > 0) h->v[i] = last;
    return top;
}

void tok_heap_free(struct tok_heap *h)
{
    free(h->v);
    memset(h, 0, sizeof *h);
}

/* ---- hashing ---- */

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

/* Eight bytes at a time; quality is enough for a table at most half full. The
 * seed is per process so a crafted vocabulary cannot plan collisions that turn
 * loading quadratic. */
uint64_t tok_hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const uint8_t *s = p;
    uint64_t h = seed ^ (n * 0x9e3779b97f4a7c15ull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ mix64(v)) * 0x9e3779b97f4a7c15ull;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, n);
    return mix64(h ^ v);
}

/* At most two thirds full: short probe runs without doubling the table. */
static uint32_t capacity_for(uint32_t n_keys)
{
    uint32_t cap = 16;
    while (cap < 3ull * n_keys / 2 + 1) cap *= 2;
    return cap;
}

static uint64_t process_seed(void)
{
    int local = 0;
    return mix64((uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&local ^ (uint64_t)(uintptr_t)&process_seed);
}

int tok_strmap_init(struct tok_strmap *m, uint32_t n_keys)
{
    memset(m, 0, sizeof *m);
    if (n_keys > (1u << 30)) return IFD_ERR_NOMEM;
    uint32_t cap = capacity_for(n_keys);
    m->slots = malloc((size_t)cap * sizeof *m->slots);
    if (!m->slots) return IFD_ERR_NOMEM;
    memset(m->slots, 0xff, (size_t)cap * sizeof *m->slots);
    m->mask = cap - 1;
    m->seed = process_seed();
    return 0;
}

void tok_strmap_free(struct tok_strmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof *m);
}

static void put_hashed(struct tok_strmap *m, const struct tokenizer *t, int32_t id, uint64_t h)
{
    size_t n;
    const char *s = tok_text(t, id, &n);
    for (uint32_t i = (uint32_t)h & m->mask;; i = (i + 1) & m->mask) {
        struct tok_strmap_slot *slot = &m->slots[i];
        if (slot->id < 0) {
            *slot = (struct tok_strmap_slot){id, (uint32_t)(h >> 32)};
            return;
        }
        if (slot->hash != (uint32_t)(h >> 32)) continue;
        size_t cn;
        const char *cs = tok_text(t, slot->id, &cn);
        if (cn == n && memcmp(cs, s, n) == 0) {
            slot->id = id;
            return;
        }
    }
}

/* Slots are random accesses into a table far bigger than the caches: hash a
 * batch ahead and prefetch its slots so the misses overlap. */
void tok_strmap_put_all(struct tok_strmap *m, const struct tokenizer *t, int32_t n_ids)
{
    enum { BATCH = 16 };
    uint64_t h[BATCH];
    for (int32_t base = 0; base < n_ids; base += BATCH) {
        int32_t k = n_ids - base < BATCH ? n_ids - base : BATCH;
        for (int32_t j = 0; j < k; j++) {
            size_t n;
            const char *s = tok_text(t, base + j, &n);
            h[j] = tok_hash_bytes(s, n, m->seed);
            __builtin_prefetch(&m->slots[(uint32_t)h[j] & m->mask], 1);
        }
        for (int32_t j = 0; j < k; j++) put_hashed(m, t, base + j, h[j]);
    }
}

int32_t tok_strmap_get(const struct tok_strmap *m, const struct tokenizer *t, const char *s, size_t n)
{
    uint64_t h = tok_hash_bytes(s, n, m->seed);
    for (uint32_t i = (uint32_t)h & m->mask;; i = (i + 1) & m->mask) {
        const struct tok_strmap_slot *slot = &m->slots[i];
        if (slot->id < 0) return -1;
        if (slot->hash != (uint32_t)(h >> 32)) continue;
        size_t cn;
        const char *cs = tok_text(t, slot->id, &cn);
        if (cn == n && memcmp(cs, s, n) == 0) return slot->id;
    }
}

int tok_pairmap_init(struct tok_pairmap *m, uint32_t n_keys)
{
    memset(m, 0, sizeof *m);
    if (n_keys > (1u << 30)) return IFD_ERR_NOMEM;
    uint32_t cap = capacity_for(n_keys);
    m->keys = malloc((size_t)cap * sizeof *m->keys);
    m->ranks = malloc((size_t)cap * sizeof *m->ranks);
    m->results = malloc((size_t)cap * sizeof *m->results);
    if (!m->keys || !m->ranks || !m->results) {
        tok_pairmap_free(m);
        return IFD_ERR_NOMEM;
    }
    memset(m->keys, 0xff, (size_t)cap * sizeof *m->keys);
    m->mask = cap - 1;
    return 0;
}

void tok_pairmap_free(struct tok_pairmap *m)
{
    free(m->keys);
    free(m->ranks);
    free(m->results);
    memset(m, 0, sizeof *m);
}

static inline uint64_t pair_key(int32_t left, int32_t right)
{
    return (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
}

void tok_pairmap_put(struct tok_pairmap *m, int32_t left, int32_t right, int32_t rank, int32_t result)
{
    uint64_t key = pair_key(left, right);
    for (uint32_t i = (uint32_t)mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) return;
        if (m->keys[i] == UINT64_MAX) {
            m->keys[i] = key;
            m->ranks[i] = rank;
            m->results[i] = result;
            return;
        }
    }
}

bool tok_pairmap_get(const struct tok_pairmap *m, int32_t left, int32_t right, int32_t *rank, int32_t *result)
{
    if (!m->keys) return false;
    uint64_t key = pair_key(left, right);
    for (uint32_t i = (uint32_t)mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->keys[i] == key) {
            *rank = m->ranks[i];
            *result = m->results[i];
            return true;
        }
        if (m->keys[i] == UINT64_MAX) return false;
    }
}
