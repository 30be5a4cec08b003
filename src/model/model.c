/* SPDX-License-Identifier: Apache-2.0
 *
 * model.c: loading a Llama-family model: hyper-parameters from GGUF metadata
 * (or a dummy preset), tensors bound by name with their shapes checked, and
 * weights handed to the backend, which may repack them.
 *
 * The GGUF file is mapped copy-on-write, so the CPU backend repacks weights in
 * place: resident memory stays about one copy of the file. Every shape, type
 * and hyper-parameter is checked before use; a mismatch names the tensor or
 * key and what was expected.
 *
 * --load-format dummy fills every matrix with random but valid quantized
 * blocks (norms are 1), for benchmarks of shapes whose checkpoints are not at
 * hand. It writes block bytes directly instead of quantizing random floats,
 * so an 8B-parameter model builds in seconds.
 *
 * Layer: model.
 */
#include "inferd/model.h"
#include "inferd/error.h"
#include "inferd/log.h"
#include "inferd/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 1024
#define MAX_HEAD_DIM 512
#define MAX_DIM (1 << 20)

struct dummy_preset {
    const char *name;
    struct model_hparams hp;
};

/* Shapes of public checkpoints (from their config.json). */
static const struct dummy_preset g_presets[] = {
    { "smollm2-135m", { .n_vocab = 49152, .n_embd = 576, .n_layer = 30, .n_head = 9, .n_head_kv = 3, .n_ff = 1536,
                        .n_ctx_train = 8192, .rope_base = 100000, .tied_output = 1 } },
    { "tinyllama-1.1b", { .n_vocab = 32000, .n_embd = 2048, .n_layer = 22, .n_head = 32, .n_head_kv = 4,
                          .n_ff = 5632, .n_ctx_train = 2048, .rope_base = 10000 } },
    { "llama2-7b", { .n_vocab = 32000, .n_embd = 4096, .n_layer = 32, .n_head = 32, .n_head_kv = 32, .n_ff = 11008,
                     .n_ctx_train = 4096, .rope_base = 10000 } },
    { "llama3-8b", { .n_vocab = 128256, .n_embd = 4096, .n_layer = 32, .n_head = 32, .n_head_kv = 8, .n_ff = 14336,
                     .n_ctx_train = 8192, .rope_base = 500000 } },
    { "mistral-7b", { .n_vocab = 32000, .n_embd = 4096, .n_layer = 32, .n_head = 32, .n_head_kv = 8, .n_ff = 14336,
                      .n_ctx_train = 32768, .rope_base = 1000000 } },
    /* a few-layer toy for fast tests of the whole forward pass */
    { "tiny", { .n_vocab = 512, .n_embd = 128, .n_layer = 2, .n_head = 4, .n_head_kv = 2, .n_ff = 256,
                .n_ctx_train = 1024, .rope_base = 10000 } },
};

const char *model_dummy_presets(void) { return "smollm2-135m, tinyllama-1.1b, llama2-7b, llama3-8b, mistral-7b, tiny"; }

/* ---- hyper-parameters ---- */

static int get_u32_key(const struct gguf_file *f, const char *arch, const char *suffix, uint32_t *out, int required,
                       char *err, size_t errlen)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_u32(f, key, out);
    if (rc == IFD_ERR_NOT_FOUND && !required) return 0;
    if (rc == IFD_ERR_NOT_FOUND) return ifd_fail(err, errlen, IFD_ERR_FORMAT, "required metadata '%s' is missing", key);
    if (rc) return ifd_fail(err, errlen, IFD_ERR_FORMAT, "metadata '%s' is not an integer in range", key);
    return 0;
}

static int get_f32_key(const struct gguf_file *f, const char *arch, const char *suffix, float *out, char *err,
                       size_t errlen)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int rc = gguf_get_f32(f, key, out);
    if (rc == IFD_ERR_NOT_FOUND) return 0;
    if (rc || !isfinite(*out)) return ifd_fail(err, errlen, IFD_ERR_FORMAT, "metadata '%s' is not a finite float", key);
    return 0;
}

static int read_rope_scaling(const struct gguf_file *f, struct model_hparams *hp, char *err, size_t errlen)
{
    struct gguf_str type;
    hp->rope_scale = 1.f;
    if (gguf_get_str(f, "llama.rope.scaling.type", &type) != 0 || gguf_str_eq(type, "none")) return 0;
    if (!gguf_str_eq(type, "linear")) {
        char t[32];
        return ifd_fail(err, errlen, IFD_ERR_UNSUPPORTED, "rope scaling type '%s' is not supported (none or linear)",
                        gguf_str_copy(type, t, sizeof t));
    }
    float factor = 1.f;
    int rc = get_f32_key(f, "llama", "rope.scaling.factor", &factor, err, errlen);
    if (rc) return rc;
    if (!(factor > 0 && factor <= 1024))
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "rope scaling factor %g is out of range", factor);
    hp->rope_scale = 1.f / factor;
    return 0;
}

static int read_hparams(const struct gguf_file *f, struct model_hparams *hp, char *err, size_t errlen)
{
    struct gguf_str arch;
    if (gguf_get_str(f, "general.architecture", &arch) != 0)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "metadata 'general.architecture' is missing");
    if (!gguf_str_eq(arch, "llama")) {
        char a[64];
        return ifd_fail(err, errlen, IFD_ERR_UNSUPPORTED, "architecture '%s' is not supported (this build runs llama)",
                        gguf_str_copy(arch, a, sizeof a));
    }
    memset(hp, 0, sizeof *hp);
    hp->arch = MODEL_ARCH_LLAMA;
    struct gguf_str name;
    if (gguf_get_str(f, "general.name", &name) == 0) gguf_str_copy(name, hp->name, sizeof hp->name);
    uint32_t v[7] = { 0 };
    int rc;
    if ((rc = get_u32_key(f, "llama", "embedding_length", &v[0], 1, err, errlen)) ||
        (rc = get_u32_key(f, "llama", "block_count", &v[1], 1, err, errlen)) ||
        (rc = get_u32_key(f, "llama", "attention.head_count", &v[2], 1, err, errlen)) ||
        (rc = get_u32_key(f, "llama", "feed_forward_length", &v[3], 1, err, errlen)) ||
        (rc = get_u32_key(f, "llama", "context_length", &v[4], 1, err, errlen)))
        return rc;
    hp->n_embd = (int)(v[0] <= MAX_DIM ? v[0] : 0);
    hp->n_layer = (int)(v[1] <= MAX_LAYERS ? v[1] : 0);
    hp->n_head = (int)(v[2] <= 4096 ? v[2] : 0);
    hp->n_ff = (int)(v[3] <= MAX_DIM ? v[3] : 0);
    hp->n_ctx_train = (int)(v[4] <= (1u << 24) ? v[4] : 1u << 24);
    uint32_t kv = v[2], kl = 0, rd = 0, nv = 0;
    if ((rc = get_u32_key(f, "llama", "attention.head_count_kv", &kv, 0, err, errlen)) ||
        (rc = get_u32_key(f, "llama", "attention.key_length", &kl, 0, err, errlen)) ||
        (rc = get_u32_key(f, "llama", "rope.dimension_count", &rd, 0, err, errlen)) ||
        (rc = get_u32_key(f, "llama", "vocab_size", &nv, 0, err, errlen)))
        return rc;
    hp->n_head_kv = (int)(kv <= 4096 ? kv : 0);
    hp->head_dim = kl ? (int)(kl <= MAX_HEAD_DIM ? kl : 0) : (hp->n_head ? hp->n_embd / hp->n_head : 0);
    hp->rope_dim = rd ? (int)(rd <= MAX_HEAD_DIM ? rd : 0) : hp->head_dim;
    hp->n_vocab = (int)(nv <= (1u << 24) ? nv : 0); /* 0: taken from token_embd below */
    hp->rope_base = 10000.f;
    hp->rms_eps = 1e-5f;
    if ((rc = get_f32_key(f, "llama", "rope.freq_base", &hp->rope_base, err, errlen)) ||
        (rc = get_f32_key(f, "llama", "attention.layer_norm_rms_epsilon", &hp->rms_eps, err, errlen)))
        return rc;
    return read_rope_scaling(f, hp, err, errlen);
}

/* Checks relations between hyper-parameters that the forward pass relies on. */
static int check_hparams(const struct model_hparams *hp, char *err, size_t errlen)
{
    if (hp->n_embd <= 0 || hp->n_layer <= 0 || hp->n_head <= 0 || hp->n_head_kv <= 0 || hp->n_ff <= 0 ||
        hp->head_dim <= 0 || hp->n_vocab <= 0)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT,
                        "invalid hyper-parameters (embd %d, layers %d, heads %d/%d, head_dim %d, ff %d, vocab %d)",
                        hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff, hp->n_vocab);
    if (hp->n_head % hp->n_head_kv)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "head count %d is not a multiple of the KV head count %d",
                        hp->n_head, hp->n_head_kv);
    if (hp->head_dim > MAX_HEAD_DIM || hp->head_dim % 2)
        return ifd_fail(err, errlen, IFD_ERR_UNSUPPORTED, "head dimension %d is not supported", hp->head_dim);
    if (hp->rope_dim <= 0 || hp->rope_dim > hp->head_dim || hp->rope_dim % 2)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "rope dimension %d is invalid for head dimension %d", hp->rope_dim,
                        hp->head_dim);
    if (!(hp->rms_eps > 0 && hp->rms_eps < 1) || !(hp->rope_base > 1))
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "invalid rms epsilon %g or rope base %g", hp->rms_eps,
                        hp->rope_base);
    if (hp->n_ctx_train <= 0) return ifd_fail(err, errlen, IFD_ERR_FORMAT, "invalid context length %d", hp->n_ctx_train);
    return 0;
}

/* ---- tensors ---- */

struct loader {
    struct model *m;
    char *err;
    size_t errlen;
    struct rng rng;            /* dummy weights */
    enum qtype dummy_type;
    uint8_t *dummy_cursor;     /* next free byte in m->dummy_data */
    float *norm_cursor;        /* next free float in the host staging of norms */
};

static const char *dims_str(const uint64_t *ne, uint32_t n, char *buf, size_t cap)
{
    int k = snprintf(buf, cap, "[");
    for (uint32_t i = 0; i < n && k > 0 && (size_t)k < cap; i++)
        k += snprintf(buf + k, cap - (size_t)k, "%s%llu", i ? ", " : "", (unsigned long long)ne[i]);
    if (k > 0 && (size_t)k < cap) snprintf(buf + k, cap - (size_t)k, "]");
    return buf;
}

/* Finds a tensor and checks it has exactly the expected dimensions. */
static int find_shaped(struct loader *L, const char *name, int64_t ne0, int64_t ne1, const struct gguf_tensor **out)
{
    const struct gguf_tensor *t = gguf_find_tensor(L->m->gguf, name);
    *out = t;
    if (!t) return IFD_ERR_NOT_FOUND;
    uint32_t want_dims = ne1 ? 2 : 1;
    if (t->n_dims != want_dims || (int64_t)t->ne[0] != ne0 || (ne1 && (int64_t)t->ne[1] != ne1)) {
        char got[96];
        return ifd_fail(L->err, L->errlen, IFD_ERR_FORMAT, "tensor '%s' has shape %s, expected [%lld%s%lld%s]", name,
                        dims_str(t->ne, t->n_dims, got, sizeof got), (long long)ne0, ne1 ? ", " : "",
                        (long long)ne1, "");
    }
    return 0;
}

/* Random but valid block bytes: random quants, with every scale field set to a
 * small positive half so values stay in a sane range (~0.02 spread). */
static void fill_dummy(struct rng *r, enum qtype t, uint8_t *dst, int64_t n_in, int64_t n_out)
{
    size_t bytes = qtype_row_bytes(t, n_in) * (size_t)n_out;
    if (t == QT_F32 || t == QT_F16 || t == QT_BF16) {
        int64_t n = n_in * n_out;
        for (int64_t i = 0; i < n; i++) {
            float v = (rng_uniform(r) - 0.5f) * 0.07f;
            if (t == QT_F32) memcpy(dst + 4 * i, &v, 4);
            else if (t == QT_F16) ((f16_t *)dst)[i] = f32_to_f16(v);
            else ((bf16_t *)dst)[i] = f32_to_bf16(v);
        }
        return;
    }
    for (size_t i = 0; i + 8 <= bytes; i += 8) {
        uint64_t x = rng_next(r);
        memcpy(dst + i, &x, 8);
    }
    size_t bb = qtype_get(t)->bytes;
    f16_t small = f32_to_f16(t == QT_Q8_0 ? 0.0003f : 0.004f), neg = f32_to_f16(-0.032f);
    for (size_t off = 0; off + bb <= bytes; off += bb) {
        uint8_t *b = dst + off;
        switch (t) {
        case QT_Q4_0: case QT_Q8_0: memcpy(b, &small, 2); break;
        case QT_Q4_1: memcpy(b, &small, 2); memcpy(b + 2, &neg, 2); break;
        case QT_Q4_K: case QT_Q5_K: {
            f16_t d = f32_to_f16(0.0002f);
            memcpy(b, &d, 2);
            memcpy(b + 2, &d, 2);
            break;
        }
        case QT_Q6_K: {
            f16_t d = f32_to_f16(0.00001f);
            memcpy(b + 208, &d, 2);
            break;
        }
        default: break;
        }
    }
}

/* Binds a 2-D weight: from the file, or random when building a dummy model. */
static int load_matrix(struct loader *L, const char *name, int64_t n_in, int64_t n_out, struct be_weight *w)
{
    struct model *m = L->m;
    void *data;
    enum qtype type;
    int writable;
    if (m->dummy_data) {
        type = L->dummy_type;
        data = L->dummy_cursor;
        size_t bytes = qtype_row_bytes(type, n_in) * (size_t)n_out;
        fill_dummy(&L->rng, type, data, n_in, n_out);
        L->dummy_cursor += (bytes + 63) & ~(size_t)63;
        writable = 1;
    } else {
        const struct gguf_tensor *t;
        int rc = find_shaped(L, name, n_in, n_out, &t);
        if (rc == IFD_ERR_NOT_FOUND)
            return ifd_fail(L->err, L->errlen, IFD_ERR_FORMAT, "required tensor '%s' is missing", name);
        if (rc) return rc;
        const struct qtype_info *ti = qtype_get(t->type);
        if (!ti->weight_ok)
            return ifd_fail(L->err, L->errlen, IFD_ERR_UNSUPPORTED, "tensor '%s' has type %s, which is not supported yet",
                            name, ti->name);
        type = (enum qtype)t->type;
        data = (void *)t->data; /* the mapping is private and writable (GGUF_OPEN_WRITABLE) */
        writable = 1;
    }
    int rc = m->be->ops->weight_prepare(m->be, w, type, n_in, n_out, data, writable);
    if (rc)
        return ifd_fail(L->err, L->errlen, rc, "backend cannot prepare tensor '%s' (%s, %lld x %lld): %s", name,
                        qtype_name(type), (long long)n_out, (long long)n_in, ifd_strerror(rc));
    m->weight_bytes += qtype_row_bytes(type, n_in) * (size_t)n_out;
    return 0;
}

/* Reads a norm vector (F32, F16 or BF16 in the file; ones for dummy) into host staging. */
static int load_norm(struct loader *L, const char *name, int n, float *out)
{
    if (L->m->dummy_data) {
        for (int i = 0; i < n; i++) out[i] = 1.f;
        return 0;
    }
    const struct gguf_tensor *t;
    int rc = find_shaped(L, name, n, 0, &t);
    if (rc == IFD_ERR_NOT_FOUND)
        return ifd_fail(L->err, L->errlen, IFD_ERR_FORMAT, "required tensor '%s' is missing", name);
    if (rc) return rc;
    if (t->type != QT_F32 && t->type != QT_F16 && t->type != QT_BF16)
        return ifd_fail(L->err, L->errlen, IFD_ERR_UNSUPPORTED, "norm tensor '%s' has type %s (need F32/F16/BF16)", name,
                        qtype_name(t->type));
    dequant_row((enum qtype)t->type, t->data, out, n);
    for (int i = 0; i < n; i++)
        if (!isfinite(out[i]))
            return ifd_fail(L->err, L->errlen, IFD_ERR_FORMAT, "norm tensor '%s' holds a non-finite value", name);
    return 0;
}

/* RoPE constants. Llama 3.1+ files carry per-pair frequency divisors in an
 * optional rope_freqs tensor (long-context scaling). */
static int load_rope(struct loader *L)
{
    struct model *m = L->m;
    int half = m->hp.rope_dim / 2;
    m->rope_theta_scale = powf(m->hp.rope_base, -2.0f / (float)m->hp.rope_dim);
    if (!m->gguf) return 0;
    const struct gguf_tensor *ff = NULL;
    int rc = find_shaped(L, "rope_freqs.weight", half, 0, &ff);
    if (rc == IFD_ERR_NOT_FOUND) return 0;
    if (rc) return rc;
    if (ff->type != QT_F32)
        return ifd_fail(L->err, L->errlen, IFD_ERR_UNSUPPORTED, "rope_freqs.weight has type %s (need F32)",
                        qtype_name(ff->type));
    m->rope_factors = malloc((size_t)half * sizeof *m->rope_factors);
    if (!m->rope_factors) return ifd_fail(L->err, L->errlen, IFD_ERR_NOMEM, "out of memory");
    memcpy(m->rope_factors, ff->data, (size_t)half * sizeof *m->rope_factors);
    for (int i = 0; i < half; i++)
        if (!(m->rope_factors[i] > 0) || !isfinite(m->rope_factors[i]))
            return ifd_fail(L->err, L->errlen, IFD_ERR_FORMAT, "rope_freqs.weight[%d] = %g is not a positive factor", i,
                            m->rope_factors[i]);
    return 0;
}

static int load_layers(struct loader *L, float *norms)
{
    struct model *m = L->m;
    const struct model_hparams *hp = &m->hp;
    int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    char name[96];
    int rc;
    for (int l = 0; l < hp->n_layer; l++) {
        struct model_layer *ly = &m->layers[l];
#define TNAME(suffix) (snprintf(name, sizeof name, "blk.%d." suffix, l), name)
        if ((rc = load_norm(L, TNAME("attn_norm.weight"), (int)E, norms + (2 * l) * E)) ||
            (rc = load_norm(L, TNAME("ffn_norm.weight"), (int)E, norms + (2 * l + 1) * E)) ||
            (rc = load_matrix(L, TNAME("attn_q.weight"), E, Q, &ly->wq)) ||
            (rc = load_matrix(L, TNAME("attn_k.weight"), E, KV, &ly->wk)) ||
            (rc = load_matrix(L, TNAME("attn_v.weight"), E, KV, &ly->wv)) ||
            (rc = load_matrix(L, TNAME("attn_output.weight"), Q, E, &ly->wo)) ||
            (rc = load_matrix(L, TNAME("ffn_gate.weight"), E, hp->n_ff, &ly->w_gate)) ||
            (rc = load_matrix(L, TNAME("ffn_up.weight"), E, hp->n_ff, &ly->w_up)) ||
            (rc = load_matrix(L, TNAME("ffn_down.weight"), hp->n_ff, E, &ly->w_down)))
            return rc;
#undef TNAME
    }
    return 0;
}

/* Weights, norms and rope tables; hyper-parameters are already set. */
static int load_weights(struct loader *L)
{
    struct model *m = L->m;
    const struct model_hparams *hp = &m->hp;
    int64_t E = hp->n_embd;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    size_t n_norm = (size_t)(2 * hp->n_layer + 1) * (size_t)E;
    float *norms = malloc(n_norm * sizeof *norms);
    if (!m->layers || !norms) {
        free(norms);
        return ifd_fail(L->err, L->errlen, IFD_ERR_NOMEM, "out of memory");
    }
    int rc = load_matrix(L, "token_embd.weight", E, hp->n_vocab, &m->tok_embd);
    if (!rc && !hp->tied_output) rc = load_matrix(L, "output.weight", E, hp->n_vocab, &m->output);
    if (!rc) rc = load_norm(L, "output_norm.weight", (int)E, norms + 2 * hp->n_layer * E);
    if (!rc) rc = load_layers(L, norms);
    if (!rc) rc = load_rope(L);
    if (!rc && !(m->norms = m->be->ops->alloc(m->be, n_norm * sizeof *norms)))
        rc = ifd_fail(L->err, L->errlen, IFD_ERR_NOMEM, "out of memory");
    if (!rc) {
        m->be->ops->copy_in(m->be, m->norms, norms, n_norm * sizeof *norms);
        const float *base = m->norms;
        for (int l = 0; l < hp->n_layer; l++) {
            m->layers[l].attn_norm = base + (2 * l) * E;
            m->layers[l].ffn_norm = base + (2 * l + 1) * E;
        }
        m->output_norm = base + 2 * hp->n_layer * E;
        if (hp->tied_output) {
            m->output = m->tok_embd;
            m->output.owned = NULL; /* released once, through tok_embd */
        }
    }
    free(norms);
    return rc;
}

/* Vocabulary size and tied output from the file's tensors. */
static int read_tensor_facts(struct loader *L)
{
    struct model *m = L->m;
    const struct gguf_tensor *emb = gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!emb) return ifd_fail(L->err, L->errlen, IFD_ERR_FORMAT, "required tensor 'token_embd.weight' is missing");
    if (emb->n_dims != 2 || emb->ne[1] > (1u << 24))
        return ifd_fail(L->err, L->errlen, IFD_ERR_FORMAT, "tensor 'token_embd.weight' is not a [n_embd, n_vocab] matrix");
    if (!m->hp.n_vocab) m->hp.n_vocab = (int)emb->ne[1];
    m->hp.tied_output = gguf_find_tensor(m->gguf, "output.weight") == NULL;
    return 0;
}

static size_t dummy_bytes(const struct model_hparams *hp, enum qtype t)
{
    int64_t E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    size_t per_layer = qtype_row_bytes(t, E) * (size_t)(Q + 2 * KV + 2 * hp->n_ff) + qtype_row_bytes(t, Q) * (size_t)E +
                       qtype_row_bytes(t, hp->n_ff) * (size_t)E + 7 * 64;
    return per_layer * (size_t)hp->n_layer + qtype_row_bytes(t, E) * (size_t)hp->n_vocab * (hp->tied_output ? 1 : 2) + 128;
}

static int setup_dummy(struct loader *L, const struct model_load_opts *o)
{
    struct model *m = L->m;
    if (!m->gguf) {
        const char *want = o->dummy_preset ? o->dummy_preset : "smollm2-135m";
        const struct dummy_preset *p = NULL;
        for (size_t i = 0; i < sizeof g_presets / sizeof g_presets[0]; i++)
            if (strcmp(g_presets[i].name, want) == 0) p = &g_presets[i];
        if (!p)
            return ifd_fail(L->err, L->errlen, IFD_ERR_INVALID, "unknown dummy preset '%s' (one of: %s)", want,
                            model_dummy_presets());
        m->hp = p->hp;
        m->hp.head_dim = m->hp.n_embd / m->hp.n_head;
        m->hp.rope_dim = m->hp.head_dim;
        m->hp.rms_eps = 1e-5f;
        m->hp.rope_scale = 1.f;
        snprintf(m->hp.name, sizeof m->hp.name, "dummy-%s", p->name);
    }
    L->dummy_type = o->dummy_type ? o->dummy_type : QT_Q4_1;
    const struct qtype_info *ti = qtype_get(L->dummy_type);
    if (!ti || !ti->weight_ok)
        return ifd_fail(L->err, L->errlen, IFD_ERR_UNSUPPORTED, "dummy weight type %s is not supported",
                        qtype_name(L->dummy_type));
    int64_t widths[3] = { m->hp.n_embd, (int64_t)m->hp.n_head * m->hp.head_dim, m->hp.n_ff };
    for (int i = 0; i < 3; i++)
        if (widths[i] % ti->block)
            return ifd_fail(L->err, L->errlen, IFD_ERR_UNSUPPORTED, "width %lld is not a multiple of the %s block (%u)",
                            (long long)widths[i], ti->name, ti->block);
    size_t bytes = dummy_bytes(&m->hp, L->dummy_type);
    m->dummy_data = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!m->dummy_data)
        return ifd_fail(L->err, L->errlen, IFD_ERR_NOMEM, "cannot allocate %.1f GiB for dummy weights",
                        (double)bytes / (1 << 30));
    L->dummy_cursor = m->dummy_data;
    rng_seed(&L->rng, o->seed ? o->seed : 0x1FEEDull);
    return 0;
}

int model_load(struct model **out, struct backend *be, const struct model_load_opts *o, char *err, size_t errlen)
{
    *out = NULL;
    struct model *m = calloc(1, sizeof *m);
    if (!m) return ifd_fail(err, errlen, IFD_ERR_NOMEM, "out of memory");
    m->be = be;
    struct loader L = { .m = m, .err = err, .errlen = errlen };
    int rc = 0;
    if (o->path) {
        rc = gguf_open(&m->gguf, o->path, GGUF_OPEN_WRITABLE, err, errlen);
        if (!rc) rc = read_hparams(m->gguf, &m->hp, err, errlen);
        if (!rc) rc = read_tensor_facts(&L);
    } else if (!o->dummy) {
        rc = ifd_fail(err, errlen, IFD_ERR_INVALID, "no model path given");
    }
    if (!rc && o->dummy) rc = setup_dummy(&L, o);
    if (!rc) rc = check_hparams(&m->hp, err, errlen);
    if (!rc) rc = load_weights(&L);
    if (rc) {
        model_free(m);
        return rc;
    }
    LOG_INFO("model", "%s: %d layers, embd %d, heads %d/%d x %d, ff %d, vocab %d, %.1f MiB of weights%s",
             m->hp.name[0] ? m->hp.name : "model", m->hp.n_layer, m->hp.n_embd, m->hp.n_head, m->hp.n_head_kv,
             m->hp.head_dim, m->hp.n_ff, m->hp.n_vocab, (double)m->weight_bytes / (1 << 20),
             o->dummy ? " (dummy)" : "");
    *out = m;
    return 0;
}

void model_free(struct model *m)
{
    if (!m) return;
    struct backend *be = m->be;
    if (m->layers) {
        for (int l = 0; l < m->hp.n_layer; l++) {
            struct model_layer *ly = &m->layers[l];
            struct be_weight *ws[] = { &ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->w_gate, &ly->w_up, &ly->w_down };
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) be->ops->weight_release(be, ws[i]);
        }
        free(m->layers);
    }
    be->ops->weight_release(be, &m->tok_embd);
    if (!m->hp.tied_output) be->ops->weight_release(be, &m->output);
    if (m->norms) be->ops->release(be, m->norms);
    free(m->rope_factors);
    free(m->dummy_data);
    gguf_close(m->gguf);
    free(m);
}
