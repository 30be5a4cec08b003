/* SPDX-License-Identifier: Apache-2.0
 *
 * sampler.h: turns one row of logits into a token id under per-request
 * sampling parameters. Each sequence owns a sampler (its RNG state is seeded
 * per request), so a seeded request draws the same tokens whatever else is in
 * the batch.
 *
 * Order of operations (as vLLM and llama.cpp): penalties -> logit bias ->
 * temperature -> top-k -> top-p -> min-p -> draw. Temperature 0 is greedy
 * (argmax, lowest id on ties).
 *
 * Layer: engine. Pure computation on host memory; no model or backend types.
 */
#ifndef INFERD_SAMPLER_H
#define INFERD_SAMPLER_H

#include <stdint.h>

#include "inferd/rng.h"

struct sampler_params {
    float temperature;         /* 0: greedy */
    int top_k;                 /* 0 or <0: off */
    float top_p;               /* 1: off */
    float min_p;               /* 0: off */
    float repetition_penalty;  /* 1: off; divides positive logits of tokens in the prompt or output,
                                  multiplies negative ones (as vLLM/HF) */
    float presence_penalty;    /* 0: off; subtracted once per token present in the output */
    float frequency_penalty;   /* 0: off; subtracted per occurrence in the output */
    uint64_t seed;
    int n_logit_bias;
    const int32_t *logit_bias_ids; /* (n_logit_bias) */
    const float *logit_bias;       /* (n_logit_bias) added to those logits */
};

void sampler_params_default(struct sampler_params *p);
/* Returns NULL if p is valid, else a message naming the bad field. */
const char *sampler_params_check(const struct sampler_params *p);

struct sampler_candidate {
    int32_t id;
    float logit;
};

struct sampler {
    struct sampler_params p;
    int n_vocab;
    struct rng rng;
    struct sampler_candidate *cand; /* (n_vocab) scratch */
    uint16_t *counts;               /* (n_vocab) occurrences in the output, for penalties, or NULL */
    uint8_t *in_prompt;             /* (n_vocab) 1 if in the prompt (repetition penalty), or NULL */
};

int sampler_init(struct sampler *s, const struct sampler_params *p, int n_vocab);
void sampler_free(struct sampler *s);
/* Records the prompt (the repetition penalty also covers prompt tokens). */
void sampler_add_prompt(struct sampler *s, const int32_t *ids, int n);
/* Records a generated token for the penalties. */
void sampler_accept(struct sampler *s, int32_t id);
/* Samples from logits (n_vocab floats; modified in place by penalties/bias). */
int32_t sampler_sample(struct sampler *s, float *logits);
/* Index of the largest logit, lowest id on ties. */
int32_t sampler_argmax(const float *logits, int n);

#endif
