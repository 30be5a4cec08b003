/* SPDX-License-Identifier: Apache-2.0
 *
 * model.h: a loaded model (hyper-parameters + backend weights), the paged KV
 * cache storage, and the forward pass over a batch plan.
 *
 * Architectures are data plus small functions: model.c reads hyper-parameters
 * and binds tensors by name, llama.c runs the Llama-family forward pass against
 * backend ops. The forward pass already takes the flat batch plan (batch.h) and
 * a paged cache, so the engine schedules many sequences without changing it.
 *
 * Layer: model. Knows GGUF and the backend interface; knows nothing about
 * requests, scheduling or HTTP.
 */
#ifndef INFERD_MODEL_H
#define INFERD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "inferd/backend.h"
#include "inferd/batch.h"
#include "inferd/gguf.h"

enum model_arch { MODEL_ARCH_LLAMA = 0 };

struct model_hparams {
    enum model_arch arch;
    char name[128];
    int n_vocab, n_embd, n_layer;
    int n_head, n_head_kv, head_dim;
    int n_ff;
    int n_ctx_train;
    int rope_dim;        /* rotated dims per head */
    float rope_base;
    float rope_scale;    /* linear position scaling (1 = none) */
    int rope_neox;       /* 0: GGUF llama pairs (2i, 2i+1) */
    float rms_eps;
    int tied_output;     /* output projection reuses token_embd */
};

struct model_layer {
    const float *attn_norm;          /* (n_embd) backend */
    const float *ffn_norm;           /* (n_embd) backend */
    struct be_weight wq, wk, wv, wo; /* (n_head*hd, n_embd) (kv_dim, n_embd) x2 (n_embd, n_head*hd) */
    struct be_weight w_gate, w_up;   /* (n_ff, n_embd) */
    struct be_weight w_down;         /* (n_embd, n_ff) */
};

struct model {
    struct model_hparams hp;
    struct backend *be;
    struct gguf_file *gguf;    /* NULL for dummy weights built from a preset */
    struct be_weight tok_embd; /* (n_vocab, n_embd) */
    struct be_weight output;   /* (n_vocab, n_embd); aliases tok_embd when tied */
    const float *output_norm;  /* (n_embd) backend */
    struct model_layer *layers;/* (n_layer) */
    float rope_theta_scale;    /* rope_base^(-2 / rope_dim) */
    float *rope_factors;       /* (rope_dim / 2) host divisors from rope_freqs.weight, or NULL */
    void *norms;               /* backend block holding every norm vector */
    void *dummy_data;          /* host block holding dummy weights, if any */
    size_t weight_bytes;       /* bytes of all weights as loaded */
};

struct model_load_opts {
    const char *path;          /* GGUF file; may be NULL with a dummy preset */
    int dummy;                 /* --load-format dummy: random weights */
    const char *dummy_preset;  /* shape when path is NULL: see model_dummy_presets() */
    enum qtype dummy_type;     /* weight type of dummy matrices (default Q4_1) */
    uint64_t seed;             /* dummy weight seed */
};

int model_load(struct model **out, struct backend *be, const struct model_load_opts *o, char *err, size_t errlen);
void model_free(struct model *m);
/* "smollm2-135m, llama3-8b, ..." for help texts. */
const char *model_dummy_presets(void);

/* Paged KV storage for every layer: (n_layer) x (n_blocks, block_size) rows
 * of kv_dim values of `dtype` for K and for V. */
struct kv_cache {
    int n_layer, n_blocks, block_size, kv_dim;
    enum kv_dtype dtype;
    struct be_kv_layer *layers;
    struct backend *be;
};

/* Bytes one block takes over all layers, K and V. */
size_t kv_cache_block_bytes(const struct model_hparams *hp, int block_size, enum kv_dtype dtype);
/* 0, or IFD_ERR_UNSUPPORTED (with a message) when the model or backend cannot store dtype. */
int kv_cache_check_dtype(const struct model *m, enum kv_dtype dtype, char *err, size_t errlen);
/* Parses "auto" (= f16), "f16" or "q8_0" (config.c checks the same names); -1 for anything else. */
int kv_dtype_parse(const char *name);
const char *kv_dtype_name(enum kv_dtype t);
int kv_cache_init(struct kv_cache **out, const struct model *m, int n_blocks, int block_size, enum kv_dtype dtype);
void kv_cache_free(struct kv_cache *kv);
/* Copies whole blocks src[i] -> dst[i] in every layer (copy-on-write). */
void kv_cache_copy_blocks(struct kv_cache *kv, const int32_t *src, const int32_t *dst, int n);

/* Activation buffers for batches of up to max_tokens rows and max_logits logits rows. */
struct model_workspace {
    int max_tokens, max_logits;
    float *x, *xn;        /* (max_tokens, n_embd) residual stream and its norm */
    float *q, *k, *v;     /* (max_tokens, n_head*hd) (max_tokens, kv_dim) x2; k, v inside h */
    float *att;           /* (max_tokens, n_head*hd) attention output; aliases q */
    float *h;             /* (max_tokens, n_ff) FFN hidden */
    float *xl;            /* (max_logits, n_embd) rows that need logits */
    float *logits;        /* (max_logits, n_vocab) backend */
};

int model_workspace_init(struct model_workspace **out, const struct model *m, int max_tokens, int max_logits);
void model_workspace_free(const struct model *m, struct model_workspace *ws);

/* Runs the batch: stores its K/V, and writes (plan->n_logits, n_vocab) logits to
 * host memory. Returns 0, IFD_ERR_RANGE when the batch exceeds the workspace, or
 * the backend's error. */
int model_forward(const struct model *m, struct model_workspace *ws, struct kv_cache *kv, const struct batch_plan *plan,
                  float *logits);

#endif
