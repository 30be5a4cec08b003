/* SPDX-License-Identifier: Apache-2.0
 *
 * llama.c: the Llama-family forward pass (SmolLM2, Llama 2/3, Mistral,
 * TinyLlama) over a batch plan, plus the paged KV storage and the activation
 * workspace it runs in.
 *
 * Per layer, as backend ops:
 *   xn = rmsnorm(x)               q,k,v = xn Wq, Wk, Wv     (one matmul call)
 *   rope(q, k)                    kv_store(k, v -> slots)
 *   att = paged_attention(q)      x += att Wo              (residual fused)
 *   xn = rmsnorm(x)               h = silu(xn Wg) * (xn Wu) (one fused call)
 *   x += h Wdown
 * then only the rows in plan->logits_index go through the final norm and
 * the output projection: a prefill chunk pays for one vocabulary projection,
 * not one per prompt token. A backend with ->run_step (CUDA) may run these
 * ops itself for a padded plan and replay them as a recorded graph.
 *
 * Layer: model.
 */
#include "inferd/error.h"
#include "inferd/model.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- KV cache storage ---- */

size_t kv_cache_block_bytes(const struct model_hparams *hp, int block_size, enum kv_dtype dtype)
{
    return (size_t)2 * hp->n_layer * block_size * kv_row_bytes(dtype, hp->n_head_kv * hp->head_dim);
}

int kv_dtype_parse(const char *name)
{
    if (!strcmp(name, "auto") || !strcmp(name, "f16")) return KV_F16;
    if (!strcmp(name, "q8_0")) return KV_Q8_0;
    return -1;
}

const char *kv_dtype_name(enum kv_dtype t) { return t == KV_Q8_0 ? "q8_0" : "f16"; }

int kv_cache_check_dtype(const struct model *m, enum kv_dtype dtype, char *err, size_t errlen)
{
    struct backend *be = m->be;
    if (dtype == KV_F16) return 0;
    if (!be->ops->kv_dtype_supported || !be->ops->kv_dtype_supported(be, dtype))
        return ifd_fail(err, errlen, IFD_ERR_UNSUPPORTED, "--kv-cache-dtype %s: the %s backend stores f16 only",
                        kv_dtype_name(dtype), be->ops->name);
    if (m->hp.head_dim % QK8_0)
        return ifd_fail(err, errlen, IFD_ERR_UNSUPPORTED,
                        "--kv-cache-dtype %s needs a head dimension that is a multiple of %d (this model: %d)",
                        kv_dtype_name(dtype), QK8_0, m->hp.head_dim);
    return 0;
}

void kv_cache_free(struct kv_cache *kv)
{
    if (!kv) return;
    if (kv->layers) {
        for (int l = 0; l < kv->n_layer; l++) {
            if (kv->layers[l].k) kv->be->ops->release(kv->be, kv->layers[l].k);
            if (kv->layers[l].v) kv->be->ops->release(kv->be, kv->layers[l].v);
        }
        free(kv->layers);
    }
    free(kv);
}

int kv_cache_init(struct kv_cache **out, const struct model *m, int n_blocks, int block_size, enum kv_dtype dtype)
{
    *out = NULL;
    if (n_blocks <= 0 || block_size <= 0 || block_size > 256) return IFD_ERR_INVALID;
    if (kv_cache_check_dtype(m, dtype, NULL, 0)) return IFD_ERR_UNSUPPORTED;
    struct kv_cache *kv = calloc(1, sizeof *kv);
    if (!kv) return IFD_ERR_NOMEM;
    kv->be = m->be;
    kv->n_layer = m->hp.n_layer;
    kv->n_blocks = n_blocks;
    kv->block_size = block_size;
    kv->kv_dim = m->hp.n_head_kv * m->hp.head_dim;
    kv->dtype = dtype;
    kv->layers = calloc((size_t)kv->n_layer, sizeof *kv->layers);
    if (!kv->layers) {
        kv_cache_free(kv);
        return IFD_ERR_NOMEM;
    }
    size_t bytes = (size_t)n_blocks * block_size * kv_row_bytes(dtype, kv->kv_dim);
    for (int l = 0; l < kv->n_layer; l++) {
        kv->layers[l].dtype = dtype;
        kv->layers[l].k = m->be->ops->alloc(m->be, bytes);
        kv->layers[l].v = m->be->ops->alloc(m->be, bytes);
        if (!kv->layers[l].k || !kv->layers[l].v) {
            kv_cache_free(kv);
            return IFD_ERR_NOMEM;
        }
    }
    *out = kv;
    return 0;
}

void kv_cache_copy_blocks(struct kv_cache *kv, const int32_t *src, const int32_t *dst, int n)
{
    size_t block_bytes = (size_t)kv->block_size * kv_row_bytes(kv->dtype, kv->kv_dim);
    for (int l = 0; l < kv->n_layer; l++) kv->be->ops->kv_copy(kv->be, kv->layers[l], src, dst, n, block_bytes);
}

/* ---- workspace ---- */

void model_workspace_free(const struct model *m, struct model_workspace *ws)
{
    if (!ws) return;
    float *bufs[] = { ws->x, ws->xn, ws->q, ws->h, ws->xl, ws->logits }; /* att, k, v are aliases */
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) m->be->ops->release(m->be, bufs[i]);
    free(ws);
}

/* Lets the backend size its per-step scratch for every weight once. */
static int reserve_weights(const struct model *m, int max_tokens, int max_logits)
{
    struct backend *be = m->be;
    int rc = be->ops->reserve(be, max_logits, &m->output);
    for (int l = 0; !rc && l < m->hp.n_layer; l++) {
        const struct model_layer *ly = &m->layers[l];
        const struct be_weight *ws[] = { &ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->w_gate, &ly->w_up, &ly->w_down };
        for (size_t i = 0; !rc && i < sizeof ws / sizeof ws[0]; i++) rc = be->ops->reserve(be, max_tokens, ws[i]);
    }
    return rc;
}

int model_workspace_init(struct model_workspace **out, const struct model *m, int max_tokens, int max_logits)
{
    *out = NULL;
    if (max_tokens <= 0 || max_logits <= 0 || max_logits > max_tokens) return IFD_ERR_INVALID;
    struct model_workspace *ws = calloc(1, sizeof *ws);
    if (!ws) return IFD_ERR_NOMEM;
    const struct model_hparams *hp = &m->hp;
    struct backend *be = m->be;
    size_t T = (size_t)max_tokens, Lg = (size_t)max_logits, F = sizeof(float);
    size_t qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
    ws->max_tokens = max_tokens;
    ws->max_logits = max_logits;
    /* Buffers whose lifetimes do not overlap share memory (peak RSS counts):
     *  - att aliases q: attention copies a row's query before writing that
     *    row's output for the same heads (cpu_attention.c, and the CUDA
     *    kernels must keep this property);
     *  - k and v live inside h: they are dead after the KV store, before the FFN. */
    size_t h_elems = T * (size_t)hp->n_ff > 2 * T * kvd ? T * (size_t)hp->n_ff : 2 * T * kvd;
    ws->x = be->ops->alloc(be, T * hp->n_embd * F);
    ws->xn = be->ops->alloc(be, T * hp->n_embd * F);
    ws->q = be->ops->alloc(be, T * qd * F);
    ws->h = be->ops->alloc(be, h_elems * F);
    ws->xl = be->ops->alloc(be, Lg * hp->n_embd * F);
    ws->logits = be->ops->alloc(be, Lg * hp->n_vocab * F);
    ws->att = ws->q;
    ws->k = ws->h;
    ws->v = ws->h ? ws->h + T * kvd : NULL;
    int rc = (!ws->x || !ws->xn || !ws->q || !ws->h || !ws->xl || !ws->logits) ? IFD_ERR_NOMEM : 0;
    if (!rc) rc = reserve_weights(m, max_tokens, max_logits);
    if (rc) {
        model_workspace_free(m, ws);
        return rc;
    }
    *out = ws;
    return 0;
}

/* ---- forward ---- */

static void attention_block(const struct model *m, struct model_workspace *ws, struct kv_cache *kv, int l,
                            const struct batch_plan *plan)
{
    const struct model_hparams *hp = &m->hp;
    const struct model_layer *ly = &m->layers[l];
    struct backend *be = m->be;
    int n = plan->n_tokens, kv_dim = hp->n_head_kv * hp->head_dim;

    be->ops->rms_norm(be, ws->x, ly->attn_norm, ws->xn, n, hp->n_embd, hp->rms_eps);
    struct be_matmul qkv = { .x = ws->xn, .n = n, .n_w = 3, .w = { &ly->wq, &ly->wk, &ly->wv },
                             .y = { ws->q, ws->k, ws->v } };
    be->ops->matmul(be, &qkv);
    struct be_rope rope = { .q = ws->q, .k = ws->k, .n = n, .n_head = hp->n_head, .n_head_kv = hp->n_head_kv,
                            .head_dim = hp->head_dim, .rope_dim = hp->rope_dim, .neox = hp->rope_neox,
                            .positions = plan->positions, .theta_scale = m->rope_theta_scale,
                            .freq_scale = hp->rope_scale, .freq_factors = m->rope_factors };
    if (be->ops->rope_kv_store) {
        be->ops->rope_kv_store(be, &rope, kv->layers[l], ws->v, plan->slot_mapping);
    } else {
        be->ops->rope(be, &rope);
        be->ops->kv_store(be, kv->layers[l], ws->k, ws->v, n, kv_dim, plan->slot_mapping);
    }
    struct be_attention att = { .q = ws->q, .out = ws->att, .kv = kv->layers[l], .n_head = hp->n_head,
                                .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim, .block_size = kv->block_size,
                                .scale = 1.f / sqrtf((float)hp->head_dim), .plan = plan };
    be->ops->attention(be, &att);
    struct be_matmul o = { .x = ws->att, .n = n, .n_w = 1, .w = { &ly->wo }, .y = { ws->x }, .accumulate = 1 };
    be->ops->matmul(be, &o);
}

static void ffn_block(const struct model *m, struct model_workspace *ws, int l, int n)
{
    const struct model_hparams *hp = &m->hp;
    const struct model_layer *ly = &m->layers[l];
    struct backend *be = m->be;
    be->ops->rms_norm(be, ws->x, ly->ffn_norm, ws->xn, n, hp->n_embd, hp->rms_eps);
    be->ops->ffn_swiglu(be, ws->xn, n, &ly->w_gate, &ly->w_up, ws->h);
    struct be_matmul down = { .x = ws->h, .n = n, .n_w = 1, .w = { &ly->w_down }, .y = { ws->x }, .accumulate = 1 };
    be->ops->matmul(be, &down);
}

/* Everything one step queues, for the plan it is given (possibly padded by
 * the backend, see backend.h run_step); no sync. */
struct step_ctx {
    const struct model *m;
    struct model_workspace *ws;
    struct kv_cache *kv;
};

static void enqueue_step(void *arg, const struct batch_plan *plan)
{
    const struct step_ctx *sc = arg;
    const struct model *m = sc->m;
    const struct model_hparams *hp = &m->hp;
    struct model_workspace *ws = sc->ws;
    struct backend *be = m->be;
    int n = plan->n_tokens;

    be->ops->embed(be, &m->tok_embd, plan->tokens, n, ws->x);
    for (int l = 0; l < hp->n_layer; l++) {
        attention_block(m, ws, sc->kv, l, plan);
        ffn_block(m, ws, l, n);
    }
    if (plan->n_logits > 0) {
        be->ops->gather_rows(be, ws->x, plan->logits_index, plan->n_logits, hp->n_embd, ws->xl);
        be->ops->rms_norm(be, ws->xl, m->output_norm, ws->xl, plan->n_logits, hp->n_embd, hp->rms_eps);
        struct be_matmul out = { .x = ws->xl, .n = plan->n_logits, .n_w = 1, .w = { &m->output }, .y = { ws->logits } };
        be->ops->matmul(be, &out);
    }
}

static uint64_t mix_address(uint64_t h, const void *p)
{
    h ^= (uint64_t)(uintptr_t)p;
    return h * 0x100000001b3ull;
}

/* The device addresses a recorded step bakes in besides the plan: model,
 * weights (fixed by the model), workspace buffers and every layer's KV pool.
 * A workspace or cache freed and made again elsewhere changes the key. */
static uint64_t step_key(const struct model *m, const struct model_workspace *ws, const struct kv_cache *kv)
{
    uint64_t h = 0xcbf29ce484222325ull;
    const void *ptrs[] = { m, m->tok_embd.data, m->output.data, ws->x, ws->xn, ws->q, ws->h, ws->xl, ws->logits };
    for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++) h = mix_address(h, ptrs[i]);
    for (int l = 0; l < kv->n_layer; l++) h = mix_address(mix_address(h, kv->layers[l].k), kv->layers[l].v);
    return h;
}

int model_forward(const struct model *m, struct model_workspace *ws, struct kv_cache *kv, const struct batch_plan *plan,
                  float *logits)
{
    const struct model_hparams *hp = &m->hp;
    struct backend *be = m->be;
    int n = plan->n_tokens;
    if (n <= 0 || n > ws->max_tokens || plan->n_logits > ws->max_logits || plan->n_logits < 0) return IFD_ERR_RANGE;
    if (kv->n_layer != hp->n_layer || kv->kv_dim != hp->n_head_kv * hp->head_dim) return IFD_ERR_INVALID;
    for (int i = 0; i < n; i++) /* ids can come from clients (prompt token arrays): never index out of the table */
        if (plan->tokens[i] < 0 || plan->tokens[i] >= hp->n_vocab) return IFD_ERR_RANGE;

    struct step_ctx sc = { m, ws, kv };
    int max_rows = ws->max_logits < ws->max_tokens ? ws->max_logits : ws->max_tokens;
    if (!be->ops->run_step || !be->ops->run_step(be, plan, max_rows, step_key(m, ws, kv), enqueue_step, &sc))
        enqueue_step(&sc, plan);
    int rc = be->ops->sync(be);
    if (!rc && plan->n_logits > 0)
        be->ops->copy_out(be, logits, ws->logits, (size_t)plan->n_logits * hp->n_vocab * sizeof(float));
    return rc;
}
