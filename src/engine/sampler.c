/* SPDX-License-Identifier: Apache-2.0
 *
 * sampler.c: the sampler declared in sampler.h.
 *
 * Truncation without sorting the whole vocabulary: candidates are first cut to
 * the top k (or, with top-p alone, to the top TOP_P_WINDOW) by a linear-time
 * selection, then only those are sorted. If the window's probability mass is
 * below top_p the full vocabulary is sorted instead, so the result is exact
 * either way.
 *
 * Layer: engine.
 */
#include "inferd/sampler.h"
#include "inferd/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOP_P_WINDOW 1024

void sampler_params_default(struct sampler_params *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.f;
    p->top_p = 1.f;
    p->repetition_penalty = 1.f;
}

const char *sampler_params_check(const struct sampler_params *p)
{
    if (!(p->temperature >= 0 && p->temperature <= 100)) return "temperature must be in [0, 100]";
    if (!(p->top_p > 0 && p->top_p <= 1)) return "top_p must be in (0, 1]";
    if (!(p->min_p >= 0 && p->min_p <= 1)) return "min_p must be in [0, 1]";
    if (!(p->repetition_penalty > 0 && p->repetition_penalty <= 100)) return "repetition_penalty must be in (0, 100]";
    if (!(p->presence_penalty >= -2 && p->presence_penalty <= 2)) return "presence_penalty must be in [-2, 2]";
    if (!(p->frequency_penalty >= -2 && p->frequency_penalty <= 2)) return "frequency_penalty must be in [-2, 2]";
    return NULL;
}

int sampler_init(struct sampler *s, const struct sampler_params *p, int n_vocab)
{
    memset(s, 0, sizeof *s);
    s->p = *p;
    s->n_vocab = n_vocab;
    rng_seed(&s->rng, p->seed);
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    int penalties = p->repetition_penalty != 1.f || p->presence_penalty != 0 || p->frequency_penalty != 0;
    if (penalties) s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
    if (p->repetition_penalty != 1.f) s->in_prompt = calloc((size_t)n_vocab, 1);
    if (!s->cand || (penalties && !s->counts) || (p->repetition_penalty != 1.f && !s->in_prompt)) {
        sampler_free(s);
        return IFD_ERR_NOMEM;
    }
    return 0;
}

void sampler_free(struct sampler *s)
{
    free(s->cand);
    free(s->counts);
    free(s->in_prompt);
    s->cand = NULL;
    s->counts = NULL;
    s->in_prompt = NULL;
}

void sampler_add_prompt(struct sampler *s, const int32_t *ids, int n)
{
    if (!s->in_prompt) return;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < s->n_vocab) s->in_prompt[ids[i]] = 1;
}

void sampler_accept(struct sampler *s, int32_t id)
{
    if (s->counts && id >= 0 && id < s->n_vocab && s->counts[id] < UINT16_MAX) s->counts[id]++;
}

int32_t sampler_argmax(const float *logits, int n)
{
    /* Eight independent running maxima break the compare-and-select chain of a
     * one-pass loop (which costs ~5 cycles per logit, a few % of a batch-32
     * step on the engine thread); then the first index holding the maximum:
     * ties still go to the lowest id. */
    float lane[8], best = -INFINITY;
    for (int k = 0; k < 8; k++) lane[k] = -INFINITY;
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) lane[k] = logits[i + k] > lane[k] ? logits[i + k] : lane[k];
    for (int k = 0; k < 8; k++) best = lane[k] > best ? lane[k] : best;
    for (; i < n; i++) best = logits[i] > best ? logits[i] : best;
    for (i = 0; i < n; i++)
        if (logits[i] == best) return i;
    return 0; /* every logit NaN */
}

static void apply_penalties(const struct sampler *s, float *logits)
{
    if (!s->counts) return;
    const struct sampler_params *p = &s->p;
    for (int i = 0; i < s->n_vocab; i++) {
        int in_output = s->counts[i] > 0;
        if (!in_output && !(s->in_prompt && s->in_prompt[i])) continue;
        float l = logits[i];
        if (p->repetition_penalty != 1.f) l = l > 0 ? l / p->repetition_penalty : l * p->repetition_penalty;
        if (in_output) l -= p->presence_penalty + p->frequency_penalty * (float)s->counts[i];
        logits[i] = l;
    }
}

static int cand_desc(const void *a, const void *b)
{
    const struct sampler_candidate *x = a, *y = b;
    if (x->logit != y->logit) return x->logit < y->logit ? 1 : -1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Moves the k largest candidates to the front (unordered), in expected linear time. */
static void select_top(struct sampler_candidate *c, int n, int k)
{
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = c[(lo + hi) / 2].logit;
        int i = lo, j = hi;
        while (i <= j) {
            while (c[i].logit > pivot) i++;
            while (c[j].logit < pivot) j--;
            if (i <= j) {
                struct sampler_candidate t = c[i];
                c[i++] = c[j];
                c[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
}

/* Fills candidates with every id at logit / temperature. */
static void fill_candidates(struct sampler_candidate *c, const float *logits, int n, float temperature)
{
    for (int i = 0; i < n; i++) c[i] = (struct sampler_candidate){ i, logits[i] / temperature };
}

static int draw(struct sampler *s, const struct sampler_candidate *c, int n)
{
    float total = 0;
    for (int i = 0; i < n; i++) total += c[i].logit;
    float r = rng_uniform(&s->rng) * total, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += c[i].logit;
        if (r < acc) return c[i].id;
    }
    return c[n - 1].id;
}

int32_t sampler_sample(struct sampler *s, float *logits)
{
    const struct sampler_params *p = &s->p;
    apply_penalties(s, logits);
    for (int i = 0; i < p->n_logit_bias; i++)
        if (p->logit_bias_ids[i] >= 0 && p->logit_bias_ids[i] < s->n_vocab) logits[p->logit_bias_ids[i]] += p->logit_bias[i];
    if (p->temperature == 0.f || p->top_k == 1) return sampler_argmax(logits, s->n_vocab);

    int n = s->n_vocab;
    struct sampler_candidate *c = s->cand;
    int topk = p->top_k > 0 && p->top_k < n;
    int window = topk ? p->top_k : (p->top_p < 1.f && TOP_P_WINDOW < n ? TOP_P_WINDOW : n);
    fill_candidates(c, logits, n, p->temperature);
    if (window < n) select_top(c, n, window);
    qsort(c, (size_t)window, sizeof *c, cand_desc);

    /* After top-k the distribution renormalizes over the k survivors (as vLLM and
     * llama.cpp do); without top-k, top-p is measured against the full vocabulary. */
    float max = c[0].logit;
    double z = 0;
    if (topk || window == n)
        for (int i = 0; i < window; i++) z += exp((double)c[i].logit - max);
    else
        for (int i = 0; i < n; i++) z += exp((double)logits[i] / p->temperature - max);
    double mass = 0;
    for (int i = 0; i < window; i++) {
        c[i].logit = (float)(exp((double)c[i].logit - max) / z);
        mass += c[i].logit;
    }
    if (!topk && window < n && mass < p->top_p) { /* the window is too small: sort everything */
        fill_candidates(c, logits, n, p->temperature);
        qsort(c, (size_t)n, sizeof *c, cand_desc);
        window = n;
        for (int i = 0; i < n; i++) c[i].logit = (float)(exp((double)c[i].logit - max) / z);
    }
    int m = window;
    if (p->top_p < 1.f) {
        double cum = 0;
        int keep = 0;
        while (keep < m && cum < p->top_p) cum += c[keep++].logit;
        m = keep;
    }
    if (p->min_p > 0) {
        float floor = c[0].logit * p->min_p;
        int keep = 1;
        while (keep < m && c[keep].logit >= floor) keep++;
        m = keep;
    }
    return draw(s, c, m);
}
