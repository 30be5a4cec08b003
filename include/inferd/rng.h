/* SPDX-License-Identifier: Apache-2.0
 *
 * rng.h: a small, fast, seedable PRNG (xoshiro256**, seeded by splitmix64).
 * Used for sampling (per-request seeds must reproduce exactly) and for dummy
 * weights. Not cryptographic. Layer: util (header-only).
 */
#ifndef INFERD_RNG_H
#define INFERD_RNG_H

#include <stdint.h>

struct rng {
    uint64_t s[4];
};

static inline uint64_t rng_splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline void rng_seed(struct rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) r->s[i] = rng_splitmix64(&seed);
}

static inline uint64_t rng_next(struct rng *r)
{
    uint64_t *s = r->s;
    uint64_t x = s[1] * 5;
    uint64_t result = ((x << 7) | (x >> 57)) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = (s[3] << 45) | (s[3] >> 19);
    return result;
}

/* Uniform in [0, 1) with 24 bits of precision. */
static inline float rng_uniform(struct rng *r) { return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f); }

#endif
