/* SPDX-License-Identifier: Apache-2.0
 *
 * cuda_graph.c: decode steps recorded once as CUDA graphs and replayed
 * (backend.h run_step). A decode step of a small model is a few hundred
 * short kernels; launching them one by one costs more host time than the GPU
 * spends on them. A replayed graph launches them all at once.
 *
 * What a replay needs, and how it gets it:
 *  - Every kernel argument fixed. Batch sizes are padded up to a bucket
 *    (cuda_plan_graph_buckets: 1, 2, 4, 8, 16, 24, ...), one graph per
 *    bucket; padding sequences attend to nothing and store nothing. The
 *    attention plan is the one for the longest context the block tables can
 *    describe (cuda_plan_attention_decode), not this step's.
 *  - Per-step data at fixed device addresses. The padded plan is written
 *    into one pinned buffer (gin_pin, layout from cuda_plan_graph_layout)
 *    and copied in one piece to gin_dev before the replay; cuda_stage maps
 *    the plan's arrays into gin_dev instead of the staging ring. Constants
 *    (RoPE frequency factors) are staged once for good (cuda_stage_const).
 *  - Buffers that do not move. Scratch only grows; each growth bumps
 *    graph_epoch, and a recording is replayed only at the epoch and key
 *    (workspace, cache, weights: model/llama.c step_key) it was made under.
 *
 * Life of a (bucket, key): the first step at an epoch runs uncaptured but
 * padded exactly as it will be recorded (the warm-up: scratch reaches its
 * final size, kernel attributes are set); the next one is recorded with
 * cudaStreamBeginCapture and launched; later ones only copy the inputs and
 * launch. Anything that cannot be recorded (an allocation, a sync, a ring
 * staging while capturing: cuda_capture_refuse) or a failed capture drops
 * the recording, logs a warning, and leaves that bucket uncaptured for
 * good: the step then runs eagerly and unpadded, as with --enforce-eager.
 *
 * Layer: backend/cuda.
 */
#include "cuda_backend.h"

#include "inferd/log.h"

#include <string.h>

void cuda_backend_set_graphs(struct backend *be, int on)
{
    cuda_ctx(be)->graphs_on = on; /* recordings stay valid for when it is turned back on */
}

struct cuda_graph_stats cuda_backend_graph_stats(struct backend *be) { return cuda_ctx(be)->graph_stats; }

void cuda_graphs_invalidate(struct cuda_ctx *c)
{
    for (int i = 0; i < c->n_graphs; i++) {
        struct cuda_graph_slot *g = &c->graphs[i];
        /* an exec still running is freed when it completes (cudaGraphExecDestroy) */
        if (g->exec) cudaGraphExecDestroy(g->exec);
        g->exec = NULL;
        g->warm = 0;
    }
    c->graph_epoch++;
}

void cuda_graphs_free(struct cuda_ctx *c)
{
    cuda_graphs_invalidate(c);
    c->n_graphs = 0;
    if (c->gin_pin) cudaFreeHost(c->gin_pin);
    cudaFree(c->gin_dev);
    c->gin_pin = c->gin_dev = NULL;
    c->gin_cap = 0;
}

/* The slot of (bucket, key); a full table recycles slots in turn. */
static struct cuda_graph_slot *slot_for(struct cuda_ctx *c, int bucket, uint64_t key)
{
    for (int i = 0; i < c->n_graphs; i++)
        if (c->graphs[i].bucket == bucket && c->graphs[i].key == key) return &c->graphs[i];
    struct cuda_graph_slot *g;
    if (c->n_graphs < CUDA_GRAPH_SLOTS) {
        g = &c->graphs[c->n_graphs++];
    } else {
        g = &c->graphs[c->graph_evict++ % CUDA_GRAPH_SLOTS];
        if (g->exec) cudaGraphExecDestroy(g->exec);
    }
    memset(g, 0, sizeof *g);
    g->bucket = bucket;
    g->key = key;
    g->epoch = c->graph_epoch - 1; /* not warm yet */
    return g;
}

/* Room for the padded plan of the largest bucket at the current stride. */
static int grow_inputs(struct cuda_ctx *c, size_t need)
{
    /* the previous step's copy out of gin_pin is done: every step ends in ->sync */
    cudaFreeHost(c->gin_pin);
    cudaFree(c->gin_dev);
    c->gin_pin = c->gin_dev = NULL;
    c->gin_cap = 0;
    cuda_graphs_invalidate(c); /* recordings read the old gin_dev */
    if (cuda_check(c, cudaHostAlloc((void **)&c->gin_pin, need, cudaHostAllocDefault), "graph input buffer (host)") ||
        cuda_check(c, cudaMalloc((void **)&c->gin_dev, need), "graph input buffer (device)"))
        return -1;
    c->gin_cap = need;
    return 0;
}

/* Writes the padded plan into gin_pin and queues its copy to gin_dev. */
static int stage_inputs(struct cuda_ctx *c, const struct batch_plan *plan, int bucket, int max_bucket,
                        struct batch_plan *padded, struct cuda_graph_layout *lay)
{
    int stride = cuda_plan_graph_stride(plan->max_blocks, c->graph_stride);
    if (stride != c->graph_stride) {
        c->graph_stride = stride;
        cuda_graphs_invalidate(c); /* their attention plans and table strides were for shorter contexts */
    }
    struct cuda_graph_layout biggest;
    cuda_plan_graph_layout(max_bucket, stride, &biggest);
    cuda_plan_graph_layout(bucket, stride, lay);
    if (lay->bytes > c->gin_cap && grow_inputs(c, biggest.bytes > lay->bytes ? biggest.bytes : lay->bytes)) return -1;
    cuda_plan_graph_fill(plan, lay, c->gin_pin, padded);
    return cuda_check(c, cudaMemcpyAsync(c->gin_dev, c->gin_pin, lay->bytes, cudaMemcpyHostToDevice, c->stream),
                      "graph inputs");
}

/* Records the padded step into g->exec. Returns 0, or -1 with nothing
 * recorded and no error left latched. */
static int record(struct cuda_ctx *c, struct cuda_graph_slot *g, void (*enqueue)(void *, const struct batch_plan *),
                  void *arg, const struct batch_plan *padded)
{
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal);
    if (e == cudaSuccess) {
        c->capturing = 1;
        enqueue(arg, padded);
        c->capturing = 0;
        e = cudaStreamEndCapture(c->stream, &graph);
    }
    int op_failed = c->error;
    if (e == cudaSuccess && !op_failed) e = cudaGraphInstantiate(&g->exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (e == cudaSuccess && !op_failed) return 0;
    LOG_WARN("cuda", "decode graph for batch %d not recorded (%s): that batch size runs uncaptured", g->bucket,
             e != cudaSuccess ? cudaGetErrorString(e) : "an op could not be recorded");
    cudaGetLastError();
    c->error = 0;
    g->exec = NULL;
    return -1;
}

int cuda_run_step(struct backend *be, const struct batch_plan *plan, int max_rows, uint64_t key,
                  void (*enqueue)(void *arg, const struct batch_plan *p), void *arg)
{
    struct cuda_ctx *c = cuda_ctx(be);
    cuda_enter(c);
    if (!c->graphs_on || c->error || !cuda_plan_graph_eligible(plan)) return 0;
    int buckets[CUDA_GRAPH_SLOTS];
    int nb = cuda_plan_graph_buckets(max_rows < CUDA_GRAPH_MAX_BATCH ? max_rows : CUDA_GRAPH_MAX_BATCH, buckets,
                                     CUDA_GRAPH_SLOTS);
    int bucket = cuda_plan_graph_bucket(plan->n_seqs, buckets, nb);
    struct cuda_graph_slot *g = bucket > 0 ? slot_for(c, bucket, key) : NULL;
    if (!g || g->failed) return 0;

    struct batch_plan padded;
    struct cuda_graph_layout lay;
    if (stage_inputs(c, plan, bucket, buckets[nb - 1], &padded, &lay)) return 1; /* error latched: sync reports it */
    int current = g->epoch == c->graph_epoch;
    c->graph_step = 1;
    c->graph_tiles_dev = c->gin_dev + lay.tiles;
    if (current && g->exec) {
        cuda_check(c, cudaGraphLaunch(g->exec, c->stream), "graph launch");
        c->graph_stats.replays++;
    } else if (current && g->warm) {
        if (record(c, g, enqueue, arg, &padded)) {
            g->failed = 1;
            c->graph_stats.failures++;
            c->graph_step = 0;
            return 0;
        }
        c->graph_stats.captures++;
        LOG_DEBUG("cuda", "decode graph recorded for batch %d (stride %d blocks)", bucket, c->graph_stride);
        cuda_check(c, cudaGraphLaunch(g->exec, c->stream), "graph launch");
    } else {
        if (g->exec) cudaGraphExecDestroy(g->exec);
        g->exec = NULL;
        enqueue(arg, &padded); /* warm-up: exactly what the recording will hold */
        g->warm = 1;
        g->epoch = c->graph_epoch; /* after the run: it may have grown scratch */
    }
    c->graph_step = 0;
    return 1;
}
