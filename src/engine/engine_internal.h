/* SPDX-License-Identifier: Apache-2.0
 *
 * engine_internal.h: state shared by the engine's files:
 *   engine.c     thread, libuv loop, inbox, streams, stats
 *   scheduler.c  admission, block allocation, preemption, the batch plan
 *   sequence.c   per-sequence sampling, stop conditions, outputs
 *   kv_blocks.c  the block manager
 * Everything here is touched by the engine thread only, except the inbox,
 * the streams and the stats, which have their own locks.
 *
 * Layer: engine.
 */
#ifndef INFERD_ENGINE_INTERNAL_H
#define INFERD_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

#include "inferd/sys.h"
#include "inferd/engine.h"
#include "inferd/rng.h"
#include "kv_blocks.h"
#include "util/pool.h"
#include "stop.h"

/* A request's state; see the diagram in engine.h. */
enum req_state { REQ_WAITING, REQ_RUNNING, REQ_FINISHED, REQ_CANCELLED };

struct request;

/* A row of a step's logits whose token is sampled before its sequence
 * advances (engine.c postprocess): on the sampling pool when there is one. */
struct row_sample {
    struct seq *s;
    float *row;
    bool forks;                 /* an n > 1 request's first token: sampled after forking (fork_and_advance) */
    int32_t id;                 /* -1: out of memory */
    struct engine_logprob *lp;  /* when the request wants logprobs */
};

/* One generated continuation (a choice) and its KV blocks. */
struct seq {
    struct request *req;
    int choice;
    int32_t *tokens;            /* (cap_tokens) prompt then generated tokens */
    int n_tokens, cap_tokens;
    int n_computed;             /* leading tokens whose K/V are in the cache */
    int32_t *blocks;            /* (cap_blocks) block table */
    uint64_t *hashes;           /* (cap_blocks) prefix hash of each full block, once known */
    int n_blocks, n_hashed, cap_blocks;
    int n_generated;
    bool running;               /* in the running set (else waiting or finished) */
    bool finished;
    uint64_t order;             /* arrival order for FCFS among equal priorities */
    struct sampler sampler;
    struct detok detok;
    struct stop_matcher stop;
    double t_last_token;
};

struct request {
    uint64_t id;
    struct engine_params params;
    char stop_text[ENGINE_MAX_STOP][ENGINE_MAX_STOP_LEN + 1]; /* params.stop points here */
    int32_t *prompt;            /* (n_prompt) until the engine thread creates the first sequence */
    int n_prompt;
    struct seq *seqs[ENGINE_MAX_N];
    int n_seqs;                 /* 1 until the prompt is prefilled, then params.n */
    int n_done;                 /* finished choices */
    enum req_state state;
    struct engine_stream *stream;
    int cached_tokens;          /* prompt tokens served from the prefix cache */
    int completion_tokens;
    double t_arrival, t_scheduled, t_first_token;
    struct request *next_in_inbox;
};

/* The consumer-facing end of a request (engine.c). */
struct engine_stream {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct chunk_node *head, *tail;
    bool last_queued, last_taken;
    _Atomic int refs;           /* engine + consumer */
    _Atomic bool cancel;
    engine_notify_fn notify;
    void *notify_arg;
    uint64_t id;
    struct engine *e;
};

struct engine {
    struct model *model;
    struct tokenizer *tok;
    struct engine_config cfg;
    int max_model_len;
    int max_blocks_per_seq;
    struct kv_cache *kv;
    struct kv_blocks blocks;
    struct model_workspace *ws;

    /* scheduler state (engine thread) */
    struct seq **waiting;       /* sorted by (priority, order) */
    int n_waiting, cap_waiting;
    struct seq **running;       /* sorted by (priority, order) */
    int n_running, cap_running;
    uint64_t next_order;
    struct rng rng;             /* seeds for requests without one */
    int32_t *eog_ids;           /* ids that end generation (suppressed before min_tokens) */
    int n_eog;

    /* one step's batch plan, sized for the token budget and max_num_seqs */
    struct batch_plan plan;
    int32_t *p_tokens, *p_positions, *p_slots;
    int32_t *p_query_start, *p_context_len, *p_block_tables, *p_logits_index;
    struct seq **p_seqs;        /* (max_num_seqs) sequence of each plan entry */
    int *p_chunk;               /* tokens scheduled for it */
    int p_n;
    float *logits;              /* (max_num_seqs, n_vocab) */
    float *scratch_logits;      /* (n_vocab) a sampler's private copy (n > 1, logprobs) */
    struct pool *sample_pool;   /* NULL: rows are sampled on the engine thread */
    float *sample_scratch;      /* (pool size, n_vocab): each sampling worker's raw-row copy */
    struct row_sample *samples; /* (max_num_seqs) one step's rows sampled ahead of advancing */
    int n_samples;

    /* thread and loop */
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_idle_t idle;
    bool idle_active;
    _Atomic bool stopping;

    /* inbox: requests and cancellations from other threads */
    pthread_mutex_t inbox_mu;
    struct request *inbox;
    _Atomic int inbox_cancels;
    int n_queued;               /* waiting + inbox, for the queue bound (inbox_mu) */

    /* stats (stats_mu); settled: no work left after the last step (stats_mu, idle_cv) */
    pthread_mutex_t stats_mu;
    pthread_cond_t idle_cv;
    bool settled;
    struct engine_stats stats;
    _Atomic uint64_t next_id;
};

/* scheduler.c */
int sched_init(struct engine *e);
void sched_free(struct engine *e);
int sched_add_waiting(struct engine *e, struct seq *s);
int sched_add_running(struct engine *e, struct seq *s);
void sched_remove(struct engine *e, struct seq *s);
/* Fills e->plan for one step (and performs copy-on-write copies); returns the
 * number of sequences scheduled. */
int sched_step(struct engine *e);
/* Frees a sequence's blocks (in reverse, so its tail is evicted first). */
void sched_release_blocks(struct engine *e, struct seq *s);
/* Registers the sequence's newly completed full blocks in the prefix cache. */
void sched_register_blocks(struct engine *e, struct seq *s);

/* sequence.c */
struct seq *seq_create(struct engine *e, struct request *r, int choice, const int32_t *tokens, int n);
void seq_destroy(struct seq *s);
/* Forks the request's first sequence into params.n choices sharing its blocks. */
int seq_fork(struct engine *e, struct request *r);
/* Samples the next token of s from its logits row and emits output:
 * seq_sample then seq_advance_sampled. */
void seq_advance(struct engine *e, struct seq *s, float *logits, double now);
/* The part of seq_advance that reads the whole row: min_tokens masking, the
 * sampler and, when the request asks for logprobs, the log-softmax into a new
 * *lp (raw row copied to scratch, n_vocab floats; else *lp is NULL). Returns
 * the token, or -1 when out of memory. Touches only s's sampler and the
 * arguments, so rows of different sequences may be sampled on different threads. */
int32_t seq_sample(struct engine *e, struct seq *s, float *logits, float *scratch, struct engine_logprob **lp);
/* The rest: records id (-1: fails the choice, out of memory), emits text and
 * logprobs (lp is consumed), finishes the choice when due. */
void seq_advance_sampled(struct engine *e, struct seq *s, int32_t id, struct engine_logprob *lp, double now);
/* Ends a choice (finished, cancelled or failed), frees its blocks, emits its last chunk. */
void seq_finish(struct engine *e, struct seq *s, enum engine_finish f, const char *stop_reason, const char *error,
                double now);

/* engine.c */
/* Queues c (may be NULL) on r's stream and wakes the consumer. With request_done
 * the chunk also gets the usage, the stream is closed and r is freed. */
void engine_emit(struct engine *e, struct request *r, struct engine_chunk *c, bool request_done);
void engine_stream_put(struct engine_stream *s);
void engine_hist_add(struct engine_histogram *h, double v);

#endif
