/* SPDX-License-Identifier: Apache-2.0
 *
 * engine.h: the inference engine: many requests served at once, vLLM style,
 * on one model replica. Used by `inferd generate`, `inferd bench` and the
 * HTTP server alike.
 *
 * One engine thread runs a libuv loop and owns all mutable state: the
 * scheduler, the paged KV cache and its block manager, the model workspace.
 * Other threads talk to it through engine_submit / engine_stream_cancel (a
 * locked inbox plus uv_async_send) and read results from per-request streams.
 *
 * Each engine step: admit and schedule (running decodes first, then prefill
 * chunks under a token budget), build one flat batch plan, run the forward
 * pass, sample, and push outputs to the streams. Finished or cancelled
 * requests give their KV blocks back in the same step. Sampling reads whole
 * vocabulary rows, so a step's rows may be sampled on a small thread pool
 * (engine_config.sampling_threads; by default only on device backends);
 * everything else stays on the engine thread.
 *
 * Request life (defined in engine.c, struct request):
 *
 *                submit            schedule            finish (eos/stop/length)
 *   (caller) ───────────> WAITING ──────────> RUNNING ─────────────────────> FINISHED
 *                           ▲  │ │                │
 *                           │  │ │   preempt      │ cancel (client gone, shutdown)
 *                           │  │ │  (recompute)   ▼
 *                           └──┼─┼──────────── RUNNING      ──────────────> CANCELLED
 *                              │ └───────────────────────────────────────────────▲
 *                              └──── error (cannot ever fit) ──────────> FINISHED(error)
 *   submit ................. engine_submit (inbox) -> admit_inbox: WAITING
 *   schedule ............... schedule_step: blocks allocated, RUNNING
 *   preempt ................ preempt_seq: blocks freed, back to the front of WAITING,
 *                            every token of the sequence recomputed later
 *   finish ................. finish_seq / finish_request: blocks freed, final output
 *   cancel ................. cancel_request: blocks freed within one step
 *
 * Ready for what comes next:
 *  - Speculative decoding: a sequence may schedule several query tokens in one
 *    step (its verification tokens); the batch plan's logits_index then lists
 *    each of them and batch_plan.tree_mask carries a per-sequence tree mask for
 *    EAGLE trees. The KV of rejected tokens is simply overwritten (chains) or
 *    compacted with kv copy (trees); n_computed is rolled back accordingly.
 *  - Multi-LoRA: engine_params.adapter_id reaches the batch plan as a per-token
 *    adapter slot (batch_plan.adapter_slot) and the prefix-cache hash, so
 *    requests on different adapters share a batch but never share KV.
 *
 * Layer: engine. No HTTP or JSON types here.
 */
#ifndef INFERD_ENGINE_H
#define INFERD_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "inferd/model.h"
#include "inferd/sampler.h"
#include "inferd/tokenizer.h"

struct engine;
struct engine_stream;

struct engine_config {
    int block_size;             /* tokens per KV block (default 16) */
    size_t kv_cache_bytes;      /* KV pool size; 0: derived from available memory */
    enum kv_dtype kv_cache_dtype; /* KV element type (default KV_F16; KV_Q8_0 halves the bytes per token) */
    double gpu_memory_utilization; /* device backends, kv_cache_bytes 0: share of device memory in use at most (0.9) */
    int max_num_batched_tokens; /* token budget of one step (default 512) */
    int max_num_seqs;           /* running sequences at most (default 64) */
    int max_queued_requests;    /* waiting requests at most before IFD_ERR_FULL (default 256) */
    int max_model_len;          /* context length cap; 0: the model's, capped by the pool */
    bool enable_prefix_caching; /* default true */
    int sampling_threads;       /* threads sampling a step's rows; 0: 1 on the CPU backend (its workers run
                                 * the forward pass and sampling is ~1% of a step there), else up to 8 */
};

void engine_config_default(struct engine_config *c);

#define ENGINE_MAX_STOP 8        /* stop strings per request */
#define ENGINE_MAX_STOP_LEN 256  /* bytes per stop string */
#define ENGINE_MAX_STOP_IDS 64
#define ENGINE_MAX_LOGPROBS 20
#define ENGINE_MAX_N 16          /* choices per request */

struct engine_params {
    struct sampler_params sampling; /* sampling.seed used when has_seed */
    bool has_seed;
    int max_tokens;             /* 0: until the context is full */
    int min_tokens;             /* EOS and stop tokens are suppressed until this many */
    bool ignore_eos;
    int n;                      /* choices (1..ENGINE_MAX_N), sharing the prompt's KV blocks */
    int logprobs;               /* -1: none; 0..ENGINE_MAX_LOGPROBS alternatives per token */
    int priority;               /* lower runs first (vLLM convention); ties by arrival */
    int n_stop;
    const char *stop[ENGINE_MAX_STOP];
    int n_stop_ids;
    int32_t stop_ids[ENGINE_MAX_STOP_IDS];
    uint32_t adapter_id;        /* 0: base model (reserved for LoRA) */
};

void engine_params_default(struct engine_params *p);

enum engine_finish {
    ENGINE_FINISH_NONE = 0,     /* more output follows */
    ENGINE_FINISH_STOP,         /* end-of-sequence token, stop token or stop string */
    ENGINE_FINISH_LENGTH,       /* max_tokens or the context limit */
    ENGINE_FINISH_CANCELLED,
    ENGINE_FINISH_ERROR,
};
const char *engine_finish_name(enum engine_finish f); /* "stop", "length", ... */

struct engine_logprob {
    int32_t id;
    float logprob;
    int n_top;
    int32_t top_ids[ENGINE_MAX_LOGPROBS];
    float top_logprobs[ENGINE_MAX_LOGPROBS];
};

/* One piece of output of one choice. Owned by the consumer after
 * engine_stream_next; release with engine_chunk_free. */
struct engine_chunk {
    int choice;
    int n_tokens;
    int32_t *token_ids;         /* (n_tokens) new tokens */
    struct engine_logprob *logprobs; /* (n_tokens) when requested, else NULL */
    char *text;                 /* new text: whole UTF-8 characters, stop strings withheld */
    size_t text_len;
    enum engine_finish finish;  /* set on the choice's last chunk */
    char *stop_reason;          /* the matched stop string, if any */
    /* on the request's last chunk (all choices finished): */
    bool request_done;
    int prompt_tokens, completion_tokens, cached_tokens;
    double queue_s, ttft_s, e2e_s;
    char error[128];            /* finish == ERROR */
};

void engine_chunk_free(struct engine_chunk *c);

/* Called from the engine thread when a stream has new chunks, with the stream's
 * lock held: it must not block or call back into the stream. It is never
 * called after engine_stream_release returns. */
typedef void (*engine_notify_fn)(void *arg);

/* tok may be NULL (token-ids-only mode, for dummy models in benchmarks): no
 * text in the chunks, no stop strings, and no end-of-generation tokens. */
int engine_create(struct engine **out, struct model *m, struct tokenizer *tok, const struct engine_config *cfg,
                  char *err, size_t errlen);
/* Stops the engine thread (cancelling what is in flight) and frees everything. */
void engine_destroy(struct engine *e);

/* Queues a request. The prompt is copied. Returns 0 and a stream, or
 * IFD_ERR_FULL (queue full), IFD_ERR_RANGE (the prompt can never fit the
 * context or the KV pool), IFD_ERR_INVALID (bad params), with a message. */
int engine_submit(struct engine *e, const int32_t *prompt, int n_prompt, const struct engine_params *p,
                  engine_notify_fn notify, void *notify_arg, struct engine_stream **out, char *err, size_t errlen);

/* Takes the next chunk: waits up to timeout_ms (-1: forever, 0: poll).
 * Returns 0 with *chunk set, IFD_ERR_NOT_FOUND on timeout, or IFD_ERR_RANGE
 * when the stream is exhausted (the request's last chunk was already taken). */
int engine_stream_next(struct engine_stream *s, struct engine_chunk **chunk, int timeout_ms);
uint64_t engine_stream_id(const struct engine_stream *s);
/* Asks the engine to stop the request (its blocks are freed within one step). */
void engine_stream_cancel(struct engine_stream *s);
/* The consumer is done with the stream (cancels the request if unfinished). */
void engine_stream_release(struct engine_stream *s);

/* ---- observability ---- */

#define ENGINE_HIST_BUCKETS 16

struct engine_histogram {
    double bounds[ENGINE_HIST_BUCKETS]; /* upper bounds, seconds */
    int n_bounds;
    uint64_t counts[ENGINE_HIST_BUCKETS + 1]; /* last: above every bound */
    double sum;
    uint64_t total;
};

struct engine_stats {
    int running, waiting;
    int kv_blocks_total, kv_blocks_used, kv_blocks_peak;
    uint64_t prefix_queries, prefix_hits;      /* tokens */
    uint64_t prompt_tokens, generation_tokens;
    uint64_t preemptions, steps;
    /* Wall time of the steps that ran a forward pass, and the model_forward part
     * of it: the rest (scheduling, sampling, stops, streams) is the engine's
     * overhead, reported by `inferd bench --requests` and /metrics. */
    double step_seconds, forward_seconds;
    uint64_t finished[ENGINE_FINISH_ERROR + 1];
    struct engine_histogram ttft, itl, e2e, queue;
};

/* A consistent snapshot, safe from any thread. */
void engine_get_stats(struct engine *e, struct engine_stats *out);
/* Effective limits after sizing the pool. */
int engine_max_model_len(const struct engine *e);
int engine_kv_blocks(const struct engine *e);

/* Blocks until every submitted request has finished and the engine thread
 * has settled (stats then reflect the final state). For tests and shutdown. */
void engine_wait_idle(struct engine *e);

/* Debug and test hook, only while no request is in flight: checks the KV
 * block manager's invariants. 0, or IFD_ERR_INTERNAL with a message. */
int engine_validate(struct engine *e, char *err, size_t errlen);

/* Percentile (0..1) estimate from a histogram (linear within the bucket). */
double engine_histogram_quantile(const struct engine_histogram *h, double q);

#endif
