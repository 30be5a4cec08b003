/* SPDX-License-Identifier: Apache-2.0
 *
 * jinja_api.c: the entry points of chat_template.h. Compiling checks UTF-8,
 * lexes and parses into an arena the template owns. Rendering builds a fresh
 * render state (its own arena, output buffer and limits), binds the
 * template's free names to the caller's JSON (or to the globals range, dict,
 * namespace, raise_exception, strftime_now), runs the tree and hands the
 * output over. chat_template_apply binds the variables the way transformers'
 * apply_chat_template passes them (messages, tools, documents,
 * add_generation_prompt, the special tokens, then the extra kwargs over the
 * special tokens) without building or touching a JSON object.
 *
 * Only names the template mentions are converted, so a large context costs
 * what the template reads.
 *
 * Not here: anything about HTTP requests (which fields of a chat request
 * become messages/tools/kwargs is the server's business), caching compiled
 * templates, or tokenizing the result.
 *
 * Layer: server.
 */
#include "jinja_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JINJA_MAX_SOURCE ((size_t)4 << 20)
#define JINJA_COMPILE_MEMORY ((size_t)64 << 20)

int jinja_compile(struct jinja_template **out, const char *src, size_t len, char *err, size_t errlen)
{
    *out = NULL;
    if (err && errlen) err[0] = 0;
    if (!src && len) return ifd_fail(err, errlen, IFD_ERR_INVALID, "template source is NULL");
    if (len > JINJA_MAX_SOURCE)
        return ifd_fail(err, errlen, IFD_ERR_RANGE, "template is %zu bytes, more than the %zu allowed", len, JINJA_MAX_SOURCE);
    size_t bad;
    if (!u8_valid(src, len, &bad)) {
        size_t line = 1, col = 1;
        for (size_t i = 0; i < bad; i++) {
            col++;
            if (src[i] == '\n') line++, col = 1;
        }
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "template is not valid UTF-8 at line %zu, column %zu", line, col);
    }
    struct jinja_template *t = calloc(1, sizeof *t);
    if (!t) return ifd_fail(err, errlen, IFD_ERR_NOMEM, "out of memory");
    ja_init(&t->a, JINJA_COMPILE_MEMORY);
    struct jtoks toks;
    int rc = jinja_lex(&t->a, src ? src : "", len, &toks, err, errlen);
    if (rc == 0) rc = jinja_parse(t, &toks, err, errlen);
    if (rc < 0) {
        jinja_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void jinja_free(struct jinja_template *t)
{
    if (!t) return;
    ja_free(&t->a);
    free(t);
}

/* ------------------------------------------------------------------ binding the context */

/* Where the template's variables come from. */
struct jsources {
    const json_t *ctx;      /* jinja_render: the context object */
    bool chat;              /* chat_template_apply: the fields below */
    const json_t *messages, *tools, *kwargs;
    bool add_generation_prompt;
    const char *bos, *eos;
};

static bool sym_is(const struct jsym *s, const char *lit) { return strlen(lit) == s->n && memcmp(s->s, lit, s->n) == 0; }

/* A value for name s, or JV_UNBOUND. */
static int bind_one(struct jr *r, const struct jsources *src, const struct jsym *s, struct jv *out)
{
    *out = jv_unbound();
    const json_t *j = NULL;
    if (src->ctx) {
        j = json_object_getn(src->ctx, s->s, s->n);
    } else if (src->chat) {
        if (sym_is(s, "messages")) j = src->messages;
        else if (sym_is(s, "tools")) {
            if (!src->tools) return *out = jv_none(), 0;
            j = src->tools;
        } else if (sym_is(s, "documents")) {
            return *out = jv_none(), 0;
        } else if (sym_is(s, "add_generation_prompt")) {
            return *out = jv_bool(src->add_generation_prompt), 0;
        } else if (src->kwargs && (j = json_object_getn(src->kwargs, s->s, s->n))) {
            /* chat_template_kwargs override the special tokens, as in HF */
        } else if (sym_is(s, "bos_token") && src->bos) {
            return *out = jv_str(src->bos, strlen(src->bos)), 0;
        } else if (sym_is(s, "eos_token") && src->eos) {
            return *out = jv_str(src->eos, strlen(src->eos)), 0;
        }
    }
    if (j) return jv_from_json(r, j, out, 0);
    int f = jinja_func_lookup(s->s, s->n);
    if (f >= 0) {
        memset(out, 0, sizeof *out);
        out->kind = JV_FUNC;
        out->u.i = f;
    }
    return 0;
}

static void apply_limits(struct jinja_limits *lim, const struct jinja_render_opts *opts)
{
    memset(lim, 0, sizeof *lim);
    if (opts) *lim = opts->limits;
    if (!lim->max_output) lim->max_output = JINJA_DEFAULT_MAX_OUTPUT;
    if (!lim->max_memory) lim->max_memory = JINJA_DEFAULT_MAX_MEMORY;
    if (!lim->max_steps) lim->max_steps = JINJA_DEFAULT_MAX_STEPS;
    if (lim->max_depth <= 0) lim->max_depth = JINJA_DEFAULT_MAX_DEPTH;
}

static int render(const struct jinja_template *t, const struct jsources *src, const struct jinja_render_opts *opts,
                  char **out, size_t *out_len, char *err, size_t errlen)
{
    *out = NULL;
    if (out_len) *out_len = 0;
    char local_err[512];
    if (!err || !errlen) {
        err = local_err;
        errlen = sizeof local_err;
    }
    err[0] = 0;
    if (!t) return ifd_fail(err, errlen, IFD_ERR_INVALID, "no template");
    struct jr r;
    memset(&r, 0, sizeof r);
    r.t = t;
    r.err = err;
    r.errlen = errlen;
    r.now = opts ? opts->now : 0;
    apply_limits(&r.lim, opts);
    ja_init(&r.a, r.lim.max_memory);
    int rc = 0;
    r.root = jr_alloc(&r, ((size_t)t->nsyms + 1) * sizeof *r.root);
    if (!r.root) rc = IFD_ERR_NOMEM;
    for (int32_t i = 0; i < t->nsyms && rc == 0; i++) rc = bind_one(&r, src, &t->syms[i], &r.root[i]);
    if (rc == 0) rc = jinja_exec(&r, t->root);
    if (rc < 0) {
        if (!err[0]) ifd_fail(err, errlen, rc, "%s", ifd_strerror(rc));
        size_t used = strlen(err);
        if (!r.err_raised && r.err_line && used + 24 < errlen)
            snprintf(err + used, errlen - used, " (template line %u)", r.err_line);
        free(r.out);
    } else {
        /* shrink to fit; an empty render still gets its own buffer */
        char *p = r.out ? realloc(r.out, r.out_n + 1) : malloc(1);
        if (!p) {
            free(r.out);
            rc = ifd_fail(err, errlen, IFD_ERR_NOMEM, "out of memory");
        } else {
            p[r.out_n] = 0;
            *out = p;
            if (out_len) *out_len = r.out_n;
            rc = 0;
        }
    }
    ja_free(&r.a);
    return rc;
}

int jinja_render_opts(const struct jinja_template *t, const json_t *ctx, const struct jinja_render_opts *opts,
                      char **out, size_t *out_len, char *err, size_t errlen)
{
    if (ctx && !json_is_object(ctx)) {
        *out = NULL;
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "template context must be a JSON object");
    }
    struct jsources src = {0};
    src.ctx = ctx; /* NULL: only the globals are defined */
    return render(t, &src, opts, out, out_len, err, errlen);
}

int jinja_render(const struct jinja_template *t, const json_t *ctx, char **out, size_t *out_len, char *err,
                 size_t errlen)
{
    return jinja_render_opts(t, ctx, NULL, out, out_len, err, errlen);
}

int chat_template_apply(const struct jinja_template *t, const json_t *messages, const json_t *tools,
                        bool add_generation_prompt, const char *bos, const char *eos, const json_t *kwargs,
                        const struct jinja_render_opts *opts, char **out, size_t *out_len, char *err, size_t errlen)
{
    *out = NULL;
    if (!messages || !json_is_array(messages))
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "messages must be a JSON array");
    if (tools && !json_is_array(tools) && !json_is_null(tools))
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "tools must be a JSON array");
    if (kwargs && !json_is_object(kwargs))
        return ifd_fail(err, errlen, IFD_ERR_INVALID, "chat_template_kwargs must be a JSON object");
    struct jsources src = {0};
    src.chat = true;
    src.messages = messages;
    src.tools = tools && !json_is_null(tools) ? tools : NULL;
    src.kwargs = kwargs;
    src.add_generation_prompt = add_generation_prompt;
    src.bos = bos;
    src.eos = eos;
    return render(t, &src, opts, out, out_len, err, errlen);
}
