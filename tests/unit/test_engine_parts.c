/* SPDX-License-Identifier: Apache-2.0
 *
 * test_engine_parts.c: the engine's self-contained pieces: the KV block
 * manager (reference counts, LRU reuse of cached blocks, prefix hits verified
 * token by token, invariants after random operation sequences), the stop
 * matcher (stop strings split across feeds, never emitted, UTF-8 safe), and
 * the sampler's truncations and penalties.
 */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>

#include "engine/kv_blocks.h"
#include "engine/stop.h"
#include "inferd/rng.h"
#include "inferd/sampler.h"

TEST(kv_blocks_refcount_and_prefix_cache)
{
    struct kv_blocks b;
    ASSERT_OK(kvb_init(&b, 4, 2));
    int32_t t1[2] = { 1, 2 }, t2[2] = { 3, 4 };
    int32_t a = kvb_alloc(&b), c = kvb_alloc(&b);
    ASSERT(a >= 0 && c >= 0 && a != c);
    ASSERT_EQ(kvb_used(&b), 2);
    uint64_t h1 = kvb_hash(0, t1, 2, 0), h2 = kvb_hash(h1, t2, 2, 0);
    ASSERT(h1 != kvb_hash(0, t1, 2, 7)); /* the adapter changes the hash */
    kvb_register(&b, a, h1, t1);
    kvb_register(&b, c, h2, t2);
    /* a hit takes a reference; a hash hit with different tokens is not a hit */
    ASSERT_EQ(kvb_lookup(&b, h1, t1), a);
    ASSERT_EQ(b.ref[a], 2);
    ASSERT_EQ(kvb_lookup(&b, h1, t2), -1);
    kvb_unref(&b, a);
    kvb_unref(&b, a);
    kvb_unref(&b, c);
    ASSERT_EQ(kvb_used(&b), 0);
    /* freed cached blocks stay findable until reused, least recently freed first */
    ASSERT_EQ(kvb_lookup(&b, h2, t2), c);
    kvb_unref(&b, c);
    /* free list now: two never-used blocks, then a, then c (least recently freed first) */
    int32_t x = kvb_alloc(&b), y = kvb_alloc(&b), z = kvb_alloc(&b);
    ASSERT(x >= 0 && y >= 0 && x != a && y != a && x != c && y != c);
    ASSERT_EQ(z, a);                    /* a is recycled before c ... */
    ASSERT_EQ(kvb_lookup(&b, h1, t1), -1); /* ... and forgets its prefix */
    ASSERT_EQ(kvb_lookup(&b, h2, t2), c);
    ASSERT_EQ(kvb_alloc(&b), -1); /* all four in use */
    ASSERT(kvb_validate(&b) == NULL);
    kvb_free(&b);
}

TEST(kv_blocks_random_operations_keep_invariants)
{
    struct kv_blocks b;
    ASSERT_OK(kvb_init(&b, 64, 4));
    struct rng r;
    rng_seed(&r, 77);
    int32_t held[4096];
    int n_held = 0;
    for (int step = 0; step < 200000; step++) {
        int op = (int)(rng_next(&r) % 4);
        int32_t toks[4] = { (int32_t)(rng_next(&r) % 8), 1, 2, 3 };
        uint64_t h = kvb_hash(0, toks, 4, 0);
        if (op == 0 && n_held < 4096) {
            int32_t id = kvb_alloc(&b);
            if (id >= 0) held[n_held++] = id;
        } else if (op == 1 && n_held) {
            int k = (int)(rng_next(&r) % (uint64_t)n_held);
            kvb_unref(&b, held[k]);
            held[k] = held[--n_held];
        } else if (op == 2 && n_held) {
            kvb_register(&b, held[rng_next(&r) % (uint64_t)n_held], h, toks);
        } else if (op == 3 && n_held < 4096) {
            int32_t id = kvb_lookup(&b, h, toks);
            if (id >= 0) held[n_held++] = id;
        }
        if (step % 997 == 0) ASSERT_MSG(kvb_validate(&b) == NULL, "step %d: %s", step, kvb_validate(&b));
    }
    while (n_held) kvb_unref(&b, held[--n_held]);
    ASSERT_EQ(kvb_used(&b), 0);
    ASSERT(kvb_validate(&b) == NULL);
    kvb_free(&b);
}

/* Feeds pieces through a matcher and returns the emitted text (static buffer). */
static const char *feed_all(const char *const *stops, int n_stops, const char *const *pieces, int n, int *matched)
{
    static char result[1024];
    struct stop_matcher m;
    stop_init(&m, stops, n_stops);
    char *out = NULL;
    size_t len = 0;
    *matched = -1;
    for (int i = 0; i < n && *matched < 0; i++) ASSERT_OK(stop_feed(&m, pieces[i], strlen(pieces[i]), &out, &len, matched));
    if (*matched < 0) ASSERT_OK(stop_flush(&m, &out, &len));
    snprintf(result, sizeof result, "%.*s", (int)len, out ? out : "");
    free(out);
    stop_free(&m);
    return result;
}

TEST(stop_strings_across_pieces)
{
    int matched;
    const char *stops[] = { "###", "END" };
    const char *p1[] = { "Hello #", "#", "# world" };
    ASSERT_STR_EQ(feed_all(stops, 2, p1, 3, &matched), "Hello ");
    ASSERT_EQ(matched, 0);
    const char *p2[] = { "E", "N", "D" };
    ASSERT_STR_EQ(feed_all(stops, 2, p2, 3, &matched), "");
    ASSERT_EQ(matched, 1);
    const char *p3[] = { "a#", "#b", "EN", "x" }; /* near misses are released */
    ASSERT_STR_EQ(feed_all(stops, 2, p3, 4, &matched), "a##bENx");
    ASSERT_EQ(matched, -1);
    const char *p4[] = { "ok E" }; /* a held partial match is flushed at the end */
    ASSERT_STR_EQ(feed_all(stops, 2, p4, 1, &matched), "ok E");
    /* the held tail never splits a UTF-8 character */
    const char *stops_u[] = { "\xc3\xa9t\xc3\xa9" }; /* été */
    struct stop_matcher m;
    stop_init(&m, stops_u, 1);
    char *out = NULL;
    size_t len = 0;
    ASSERT_OK(stop_feed(&m, "caf\xc3\xa9", 5, &out, &len, &matched));
    ASSERT_EQ(len, 3); /* "caf" out, "é" held */
    ASSERT_OK(stop_feed(&m, "s", 1, &out, &len, &matched));
    ASSERT_EQ(matched, -1);
    ASSERT_EQ(len, 6);
    ASSERT(memcmp(out, "caf\xc3\xa9s", 6) == 0);
    free(out);
    stop_free(&m);
}

TEST(sampler_truncation_and_penalties)
{
    enum { V = 2000 };
    float logits[V], work[V];
    struct rng r;
    rng_seed(&r, 1);
    for (int i = 0; i < V; i++) logits[i] = (rng_uniform(&r) - 0.5f) * 8;
    logits[17] = 20; /* a clear favourite */
    struct sampler s;
    struct sampler_params p;
    sampler_params_default(&p);
    p.temperature = 0;
    ASSERT_OK(sampler_init(&s, &p, V));
    memcpy(work, logits, sizeof work);
    ASSERT_EQ(sampler_sample(&s, work), 17);
    sampler_free(&s);
    /* top_k = 1 is greedy at any temperature; top_p tiny keeps only the favourite */
    p.temperature = 2;
    p.top_k = 1;
    ASSERT_OK(sampler_init(&s, &p, V));
    for (int i = 0; i < 50; i++) { memcpy(work, logits, sizeof work); ASSERT_EQ(sampler_sample(&s, work), 17); }
    sampler_free(&s);
    p.top_k = 0;
    p.top_p = 0.01f;
    ASSERT_OK(sampler_init(&s, &p, V));
    for (int i = 0; i < 50; i++) { memcpy(work, logits, sizeof work); ASSERT_EQ(sampler_sample(&s, work), 17); }
    sampler_free(&s);
    /* min_p keeps tokens within a factor of the best: with the favourite far ahead, only it */
    p.top_p = 1;
    p.min_p = 0.5f;
    ASSERT_OK(sampler_init(&s, &p, V));
    for (int i = 0; i < 50; i++) { memcpy(work, logits, sizeof work); ASSERT_EQ(sampler_sample(&s, work), 17); }
    sampler_free(&s);
    /* a huge frequency penalty after one occurrence moves greedy off the favourite */
    sampler_params_default(&p);
    p.temperature = 0;
    p.frequency_penalty = 2;
    p.presence_penalty = 2;
    ASSERT_OK(sampler_init(&s, &p, V));
    sampler_accept(&s, 17);
    for (int k = 0; k < 10; k++) sampler_accept(&s, 17);
    memcpy(work, logits, sizeof work);
    ASSERT(sampler_sample(&s, work) != 17);
    sampler_free(&s);
    /* logit bias can force a token; the same seed draws the same sequence */
    sampler_params_default(&p);
    int32_t id = 5;
    float bias = 100;
    p.n_logit_bias = 1;
    p.logit_bias_ids = &id;
    p.logit_bias = &bias;
    ASSERT_OK(sampler_init(&s, &p, V));
    memcpy(work, logits, sizeof work);
    ASSERT_EQ(sampler_sample(&s, work), 5);
    sampler_free(&s);
    sampler_params_default(&p);
    p.seed = 99;
    int32_t a[20], b[20];
    for (int run = 0; run < 2; run++) {
        ASSERT_OK(sampler_init(&s, &p, V));
        for (int i = 0; i < 20; i++) {
            memcpy(work, logits, sizeof work);
            (run ? b : a)[i] = sampler_sample(&s, work);
        }
        sampler_free(&s);
    }
    ASSERT(memcmp(a, b, sizeof a) == 0);
    ASSERT(sampler_params_check(&p) == NULL);
    p.top_p = 0;
    ASSERT(sampler_params_check(&p) != NULL);
}
