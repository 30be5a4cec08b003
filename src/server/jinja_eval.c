/* SPDX-License-Identifier: Apache-2.0
 *
 * jinja_eval.c: the tree-walking evaluator. Statements write into the render
 * output; expressions produce values. Implements jinja2's runtime rules as
 * seen through transformers' ImmutableSandboxedEnvironment:
 *   - scopes: for-loop iterations, macro calls, with/call/generation blocks
 *     get fresh frames; if-blocks do not; free names in a macro resolve
 *     where it was defined, at call time;
 *   - sandboxed attribute and item lookup: obj.name tries the Python
 *     attribute (a method) first and then obj["name"]; obj[key] tries the
 *     item first and then the attribute; a miss is Undefined, which prints as
 *     "" and fails when used, with jinja2's messages;
 *   - Python operator semantics (int/float/str/list/tuple), chained
 *     comparisons, `in`, inline if (without else: Undefined);
 *   - for-loops with the loop variable (index, first, last, length, revindex,
 *     previtem, nextitem, cycle, changed), else-blocks, lazily filtered
 *     `for x in xs if cond`, tuple unpacking, break/continue;
 *   - macros with defaults, varargs/kwargs/caller as jinja2 decides them.
 *
 * Every statement, loop iteration and element operation counts against
 * max_steps, every nested evaluation against max_depth; the output and the
 * arena have byte limits. The first error wins and records its line.
 *
 * Not here: filters/tests (jinja_filters.c), methods and global functions
 * (jinja_builtins.c), value printing (jinja_value.c).
 *
 * Layer: server.
 */
#include "jinja_internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { JR_BREAK = 1, JR_CONTINUE = 2 };

/* ------------------------------------------------------------------ render state helpers */

int jr_fail(struct jr *r, int code, const char *fmt, ...)
{
    if (r->err && r->errlen && !r->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
        if (!r->err[0]) snprintf(r->err, r->errlen, "%s", ifd_strerror(code));
    }
    return code;
}

int jr_nomem(struct jr *r)
{
    return jr_fail(r, IFD_ERR_NOMEM, "template rendering ran out of memory (limit %zu bytes)", r->lim.max_memory);
}

int jr_step(struct jr *r)
{
    if (++r->steps > r->lim.max_steps)
        return jr_fail(r, IFD_ERR_RANGE, "template rendering exceeded %llu evaluation steps",
                       (unsigned long long)r->lim.max_steps);
    return 0;
}

int jr_steps(struct jr *r, uint64_t n)
{
    r->steps += n;
    if (r->steps > r->lim.max_steps)
        return jr_fail(r, IFD_ERR_RANGE, "template rendering exceeded %llu evaluation steps",
                       (unsigned long long)r->lim.max_steps);
    return 0;
}

void *jr_alloc(struct jr *r, size_t n)
{
    void *p = ja_alloc(&r->a, n);
    if (!p) jr_nomem(r);
    return p;
}

int jr_new_list(struct jr *r, uint8_t kind, uint32_t n, struct jv *out)
{
    struct jlist *l = jr_alloc(r, sizeof *l + (size_t)n * sizeof(struct jv));
    if (!l) return IFD_ERR_NOMEM;
    memset(l, 0, sizeof *l);
    l->n = n;
    l->v = (struct jv *)(l + 1);
    memset(l->v, 0, (size_t)n * sizeof(struct jv));
    out->kind = kind;
    out->sub = JL_LIST;
    out->aux = 0;
    out->n = 0;
    out->u.l = l;
    return 0;
}

int jr_new_dict(struct jr *r, uint32_t cap, struct jv *out)
{
    struct jdict *d = jr_alloc(r, sizeof *d);
    if (!d) return IFD_ERR_NOMEM;
    d->n = 0;
    d->idx = NULL;
    d->idx_mask = 0;
    d->cap = cap ? cap : 4;
    d->k = jr_alloc(r, d->cap * sizeof *d->k);
    d->v = jr_alloc(r, d->cap * sizeof *d->v);
    if (!d->k || !d->v) return IFD_ERR_NOMEM;
    memset(out, 0, sizeof *out);
    out->kind = JV_DICT;
    out->u.d = d;
    return 0;
}

int jr_dict_set(struct jr *r, struct jdict *d, struct jv k, struct jv v)
{
    if (k.kind == JV_LIST || k.kind == JV_DICT || k.kind == JV_NS || k.kind == JV_UNDEF)
        return jr_fail(r, IFD_ERR_INVALID, "unhashable type: '%s'", jv_type_name(k));
    int64_t at = jd_find(d, k);
    if (at >= 0) {
        d->v[at] = v; /* Python keeps the first key object */
        return 0;
    }
    JTRY(jr_step(r));
    if (d->n == d->cap) {
        uint32_t cap = d->cap * 2;
        struct jv *nk = jr_alloc(r, cap * sizeof *nk), *nv = jr_alloc(r, cap * sizeof *nv);
        if (!nk || !nv) return IFD_ERR_NOMEM;
        memcpy(nk, d->k, d->n * sizeof *nk);
        memcpy(nv, d->v, d->n * sizeof *nv);
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->v[d->n] = v;
    d->n++;
    return jd_index_add(&r->a, d) ? 0 : jr_nomem(r);
}

int jr_sb_done(struct jr *r, struct jsb *b, struct jv *out)
{
    if (b->too_deep) return jr_fail(r, IFD_ERR_RANGE, "maximum recursion depth exceeded while getting the repr of an object");
    if (b->oom) return jr_nomem(r);
    *out = jv_str(b->n ? b->p : "", b->n);
    return 0;
}

int jr_undef(struct jr *r, uint8_t why, const char *name, size_t name_len, struct jv obj, struct jv key, struct jv *out)
{
    struct jundef *u = jr_alloc(r, sizeof *u);
    if (!u) return IFD_ERR_NOMEM;
    memset(u, 0, sizeof *u);
    u->why = why;
    u->name = name;
    u->name_len = (uint32_t)name_len;
    u->obj_type = why == JU_ATTR || why == JU_ELEM ? jv_object_type_repr(obj) : NULL;
    u->key = key;
    memset(out, 0, sizeof *out);
    out->kind = JV_UNDEF;
    out->u.ud = u;
    return 0;
}

int jr_undef_hint(struct jr *r, const char *hint, struct jv *out)
{
    return jr_undef(r, JU_HINT, hint, strlen(hint), jv_none(), jv_none(), out);
}

int jr_undef_fail(struct jr *r, struct jv u)
{
    const struct jundef *d = u.u.ud;
    if (!d) return jr_fail(r, IFD_ERR_INVALID, "value is undefined");
    switch (d->why) {
    case JU_NAME: return jr_fail(r, IFD_ERR_INVALID, "'%.*s' is undefined", (int)d->name_len, d->name);
    case JU_ATTR:
        return jr_fail(r, IFD_ERR_INVALID, "'%s' has no attribute '%.*s'", d->obj_type, (int)d->name_len, d->name);
    case JU_ELEM: {
        struct jsb b;
        jsb_init(&b, &r->a);
        jv_put_repr(&b, d->key);
        if (b.oom) return jr_nomem(r);
        return jr_fail(r, IFD_ERR_INVALID, "%s has no element %.*s", d->obj_type, (int)b.n, b.p);
    }
    default: return jr_fail(r, IFD_ERR_INVALID, "%.*s", (int)d->name_len, d->name);
    }
}

/* obj[key] / obj.key missed: Undefined with jinja2's wording */
static int undef_member(struct jr *r, struct jv obj, struct jv key, struct jv *out)
{
    if (key.kind == JV_STR) return jr_undef(r, JU_ATTR, key.u.s, key.n, obj, key, out);
    return jr_undef(r, JU_ELEM, NULL, 0, obj, key, out);
}

/* ------------------------------------------------------------------ output */

static int out_put(struct jr *r, const char *s, size_t n)
{
    if (!n) return 0;
    if (n > r->lim.max_output || r->out_n > r->lim.max_output - n)
        return jr_fail(r, IFD_ERR_RANGE, "template output exceeds %zu bytes", r->lim.max_output);
    if (r->out_n + n + 1 > r->out_cap) {
        size_t cap = r->out_cap ? r->out_cap : 1024;
        while (cap < r->out_n + n + 1) cap *= 2;
        char *p = realloc(r->out, cap);
        if (!p) return jr_fail(r, IFD_ERR_NOMEM, "out of memory");
        r->out = p;
        r->out_cap = cap;
    }
    memcpy(r->out + r->out_n, s, n);
    r->out_n += n;
    return 0;
}

static int out_value(struct jr *r, struct jv v)
{
    if (v.kind == JV_STR) return out_put(r, v.u.s, v.n);
    if (v.kind == JV_UNDEF) return 0;
    struct jv s;
    JTRY(jv_to_str(r, v, &s));
    return out_put(r, s.u.s, s.n);
}

/* Output written since mark, moved into the arena as a string. */
static int capture_end(struct jr *r, size_t mark, struct jv *out)
{
    size_t n = r->out_n - mark;
    char *s = ja_memdup(&r->a, r->out ? r->out + mark : "", n);
    if (!s) return jr_nomem(r);
    r->out_n = mark;
    *out = jv_str(s, n);
    return 0;
}

/* ------------------------------------------------------------------ variables */

static const struct jv *lookup(struct jr *r, int32_t sym)
{
    for (struct jframe *f = r->frame; f; f = f->parent)
        for (uint32_t i = f->n; i-- > 0;)
            if (f->vars[i].sym == sym) return &f->vars[i].v;
    const struct jv *v = &r->root[sym];
    return v->kind == JV_UNBOUND ? NULL : v;
}

static int frame_set(struct jr *r, struct jframe *f, int32_t sym, struct jv v)
{
    for (uint32_t i = 0; i < f->n; i++)
        if (f->vars[i].sym == sym) {
            f->vars[i].v = v;
            return 0;
        }
    if (f->n == f->cap) {
        uint32_t cap = f->cap ? f->cap * 2 : 8;
        struct jvar *nv = jr_alloc(r, cap * sizeof *nv);
        if (!nv) return IFD_ERR_NOMEM;
        if (f->n) memcpy(nv, f->vars, f->n * sizeof *nv);
        f->vars = nv;
        f->cap = cap;
    }
    f->vars[f->n].sym = sym;
    f->vars[f->n].v = v;
    f->n++;
    return 0;
}

static int set_var(struct jr *r, int32_t sym, struct jv v)
{
    if (!r->frame) {
        r->root[sym] = v;
        return 0;
    }
    return frame_set(r, r->frame, sym, v);
}

/* Frames live in the arena: a macro defined in a loop may outlive the loop. */
static struct jframe *push_frame(struct jr *r, struct jframe *parent)
{
    struct jframe *f = jr_alloc(r, sizeof *f);
    if (!f) return NULL;
    memset(f, 0, sizeof *f);
    f->parent = parent;
    return f;
}

static int unpack(struct jr *r, const struct jnode *target, struct jv v);

static int assign(struct jr *r, const struct jnode *target, struct jv v)
{
    if (target->kind == JN_NAME) return set_var(r, target->id, v);
    if (target->kind == JN_NSREF) {
        const struct jv *ns = lookup(r, target->id);
        if (!ns || ns->kind != JV_NS)
            return jr_fail(r, IFD_ERR_INVALID, "cannot assign attribute on non-namespace object");
        return jr_dict_set(r, ns->u.d, target->val, v);
    }
    return unpack(r, target, v);
}

static int unpack(struct jr *r, const struct jnode *target, struct jv v)
{
    const struct jv *items;
    uint32_t n;
    if (!(v.kind == JV_LIST || v.kind == JV_TUPLE || v.kind == JV_STR || v.kind == JV_DICT))
        return jr_fail(r, IFD_ERR_INVALID, "cannot unpack non-iterable %s object", jv_type_name(v));
    JTRY(jv_iter(r, v, &items, &n));
    if (n > target->nkids)
        return jr_fail(r, IFD_ERR_INVALID, "too many values to unpack (expected %u)", target->nkids);
    if (n < target->nkids)
        return jr_fail(r, IFD_ERR_INVALID, "not enough values to unpack (expected %u, got %u)", target->nkids, n);
    for (uint32_t i = 0; i < n; i++) JTRY(assign(r, target->kids[i], items[i]));
    return 0;
}

/* ------------------------------------------------------------------ argument binding */

int jargs_bind(struct jr *r, const struct jargs *a, const char *fname, const char *const *names, int nnames,
               int nreq, struct jv *out)
{
    for (int i = 0; i < nnames; i++) out[i] = jv_unbound();
    if (a->npos > (uint32_t)nnames)
        return jr_fail(r, IFD_ERR_INVALID, "%s() takes at most %d argument%s (%u given)", fname, nnames,
                       nnames == 1 ? "" : "s", a->npos);
    for (uint32_t i = 0; i < a->npos; i++) out[i] = a->pos[i];
    for (uint32_t k = 0; k < a->nkw; k++) {
        int hit = -1;
        for (int i = 0; i < nnames; i++)
            if (strlen(names[i]) == a->kw[k].n && memcmp(names[i], a->kw[k].name, a->kw[k].n) == 0) hit = i;
        if (hit < 0)
            return jr_fail(r, IFD_ERR_INVALID, "%s() got an unexpected keyword argument '%.*s'", fname,
                           (int)a->kw[k].n, a->kw[k].name);
        if (out[hit].kind != JV_UNBOUND)
            return jr_fail(r, IFD_ERR_INVALID, "%s() got multiple values for argument '%s'", fname, names[hit]);
        out[hit] = a->kw[k].v;
    }
    for (int i = 0; i < nreq; i++)
        if (out[i].kind == JV_UNBOUND)
            return jr_fail(r, IFD_ERR_INVALID, "%s() missing required argument '%s'", fname, names[i]);
    return 0;
}

/* Evaluates the arguments of a call-shaped node (kids after kid 0). */
static int eval_args(struct jr *r, const struct jnode *n, const struct jkwarg *extra, struct jargs *out)
{
    uint32_t k = 1;
    uint32_t npos = n->npos, nkw = n->nkw + (extra ? 1 : 0);
    struct jv star = jv_unbound(), dstar = jv_unbound();
    /* evaluate in source order */
    struct jv *pos_vals = NULL;
    if (npos) {
        pos_vals = jr_alloc(r, npos * sizeof *pos_vals);
        if (!pos_vals) return IFD_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < n->npos; i++) JTRY(jinja_eval_expr(r, n->kids[k++], &pos_vals[i]));
    const struct jv *star_items = NULL;
    uint32_t n_star = 0;
    if (n->flags & JNF_STAR_ARGS) {
        JTRY(jinja_eval_expr(r, n->kids[k++], &star));
        JTRY(jv_iter(r, star, &star_items, &n_star));
    }
    struct jv *kw_vals = NULL;
    if (n->nkw) {
        kw_vals = jr_alloc(r, n->nkw * sizeof *kw_vals);
        if (!kw_vals) return IFD_ERR_NOMEM;
    }
    for (uint32_t i = 0; i < n->nkw; i++) JTRY(jinja_eval_expr(r, n->kids[k++], &kw_vals[i]));
    uint32_t n_dstar = 0;
    if (n->flags & JNF_STAR_KWARGS) {
        JTRY(jinja_eval_expr(r, n->kids[k++], &dstar));
        if (dstar.kind != JV_DICT)
            return jr_fail(r, IFD_ERR_INVALID, "argument after ** must be a mapping, not %s", jv_type_name(dstar));
        n_dstar = dstar.u.d->n;
    }
    struct jv *pos = jr_alloc(r, (npos + n_star + 1) * sizeof *pos);
    struct jkwarg *kw = jr_alloc(r, (nkw + n_dstar + 1) * sizeof *kw);
    if (!pos || !kw) return IFD_ERR_NOMEM;
    for (uint32_t i = 0; i < npos; i++) pos[i] = pos_vals[i];
    for (uint32_t i = 0; i < n_star; i++) pos[npos + i] = star_items[i];
    uint32_t m = 0;
    for (uint32_t i = 0; i < n->nkw; i++) kw[m++] = (struct jkwarg){n->kwnames[i].u.s, n->kwnames[i].n, kw_vals[i]};
    for (uint32_t i = 0; i < n_dstar; i++) {
        struct jv key = dstar.u.d->k[i];
        if (key.kind != JV_STR) return jr_fail(r, IFD_ERR_INVALID, "keywords must be strings");
        kw[m++] = (struct jkwarg){key.u.s, key.n, dstar.u.d->v[i]};
    }
    if (extra) kw[m++] = *extra;
    out->pos = pos;
    out->npos = npos + n_star;
    out->kw = kw;
    out->nkw = m;
    return 0;
}

/* ------------------------------------------------------------------ attribute and item access */

static int loop_attr(struct jr *r, struct jv obj, const char *name, size_t n, struct jv *out);

/* groupby()'s items are namedtuples: (grouper, list) */
static bool group_attr(struct jv obj, const char *name, size_t n, struct jv *out)
{
    if (obj.kind != JV_TUPLE || obj.sub != JTU_GROUP) return false;
    if (n == 7 && memcmp(name, "grouper", 7) == 0) *out = obj.u.l->v[0];
    else if (n == 4 && memcmp(name, "list", 4) == 0) *out = obj.u.l->v[1];
    else return false;
    return true;
}

int jinja_getattr(struct jr *r, struct jv obj, const char *name, size_t n, struct jv *out)
{
    struct jv key = jv_str(name, n);
    if (n >= 4 && name[0] == '_' && name[1] == '_' && name[n - 1] == '_' && name[n - 2] == '_') {
        /* Python attributes such as __class__ exist but the sandbox refuses them */
        char hint[200];
        snprintf(hint, sizeof hint, "access to attribute '%.*s' of '%s' object is unsafe.", (int)(n > 60 ? 60 : n),
                 name, jv_type_name(obj));
        char *h = ja_memdup(&r->a, hint, strlen(hint));
        if (!h) return jr_nomem(r);
        JTRY(jr_undef_hint(r, h, out));
        return 0;
    }
    if (obj.kind == JV_UNDEF) return jr_undef_fail(r, obj);
    if (obj.kind == JV_LOOP) return loop_attr(r, obj, name, n, out);
    if (group_attr(obj, name, n, out)) return 0;
    int rc = 0;
    if (jinja_method_lookup(r, obj, name, n, out, &rc)) return rc;
    if (obj.kind == JV_DICT || obj.kind == JV_NS) {
        const struct jv *v = jd_get_str(obj.u.d, name, n);
        if (v) {
            *out = *v;
            return 0;
        }
    }
    return undef_member(r, obj, key, out);
}

static int norm_index(int64_t i, int64_t len, int64_t *out)
{
    if (i < 0) i += len;
    if (i < 0 || i >= len) return 0;
    *out = i;
    return 1;
}

int jinja_getitem(struct jr *r, struct jv obj, struct jv key, struct jv *out)
{
    if (obj.kind == JV_UNDEF) return jr_undef_fail(r, obj);
    int64_t idx;
    switch (obj.kind) {
    case JV_DICT: {
        const struct jv *v = jd_get(obj.u.d, key);
        if (v) {
            *out = *v;
            return 0;
        }
        break;
    }
    case JV_LIST:
        if (obj.sub == JL_GEN || obj.sub == JL_REVITER || obj.sub >= JL_DICT_ITEMS) {
            if (obj.sub != JL_RANGE) break;
        }
        /* fall through */
    case JV_TUPLE:
        if (jv_is_intlike(key)) {
            if (norm_index(key.u.i, obj.u.l->n, &idx)) {
                *out = obj.u.l->v[idx];
                return 0;
            }
            return undef_member(r, obj, key, out);
        }
        break;
    case JV_STR:
        if (jv_is_intlike(key)) {
            int64_t len = (int64_t)u8_count(obj.u.s, obj.n);
            if (norm_index(key.u.i, len, &idx)) {
                size_t a = u8_offset(obj.u.s, obj.n, (size_t)idx);
                size_t b = a;
                u8_next(obj.u.s, obj.n, &b);
                *out = jv_str(obj.u.s + a, b - a);
                out->sub = obj.sub; /* Markup[i] is Markup */
                return 0;
            }
            return undef_member(r, obj, key, out);
        }
        break;
    default: break;
    }
    if (key.kind == JV_STR) {
        if (obj.kind == JV_LOOP) return loop_attr(r, obj, key.u.s, key.n, out);
        if (group_attr(obj, key.u.s, key.n, out)) return 0;
        int rc = 0;
        if (jinja_method_lookup(r, obj, key.u.s, key.n, out, &rc)) return rc;
        if (obj.kind == JV_NS) {
            const struct jv *v = jd_get_str(obj.u.d, key.u.s, key.n);
            if (v) {
                *out = *v;
                return 0;
            }
        }
    }
    return undef_member(r, obj, key, out);
}

static bool slice_index(struct jv v, int64_t *out)
{
    if (v.kind == JV_UNBOUND || v.kind == JV_NONE) return false;
    *out = v.u.i;
    return true;
}

/* Python's slice.indices(): start, step and the number of items */
static void slice_adjust(int64_t len, struct jv vs, struct jv ve, int64_t step, int64_t *start, int64_t *count)
{
    int64_t s, e;
    bool has_s = slice_index(vs, &s), has_e = slice_index(ve, &e);
    if (!has_s) s = step < 0 ? len - 1 : 0;
    else if (s < 0) {
        s += len;
        if (s < 0) s = step < 0 ? -1 : 0;
    } else if (s >= len) s = step < 0 ? len - 1 : len;
    if (!has_e) e = step < 0 ? -1 : len;
    else if (e < 0) {
        e += len;
        if (e < 0) e = step < 0 ? -1 : 0;
    } else if (e >= len) e = step < 0 ? len - 1 : len;
    *start = s;
    if (step > 0) *count = e > s ? (e - s - 1) / step + 1 : 0;
    else *count = s > e ? (s - e - 1) / (-step) + 1 : 0;
}

static int do_slice(struct jr *r, struct jv obj, struct jv vs, struct jv ve, struct jv vstep, struct jv *out)
{
    if (obj.kind == JV_UNDEF) return jr_undef_fail(r, obj);
    struct jv parts[3] = {vs, ve, vstep};
    for (int i = 0; i < 3; i++)
        if (!(parts[i].kind == JV_UNBOUND || parts[i].kind == JV_NONE || jv_is_intlike(parts[i])))
            return undef_member(r, obj, jv_none(), out); /* TypeError inside getitem: Undefined */
    int64_t step = 1;
    if (slice_index(vstep, &step) && step == 0) return jr_fail(r, IFD_ERR_INVALID, "slice step cannot be zero");
    if (step < -INT64_MAX) step = -INT64_MAX;
    bool seq = obj.kind == JV_TUPLE || (obj.kind == JV_LIST && (obj.sub == JL_LIST || obj.sub == JL_RANGE));
    if (obj.kind != JV_STR && !seq) return undef_member(r, obj, jv_none(), out);
    int64_t start, count;
    if (seq) {
        slice_adjust(obj.u.l->n, vs, ve, step, &start, &count);
        JTRY(jr_steps(r, (uint64_t)count));
        JTRY(jr_new_list(r, obj.kind, (uint32_t)count, out));
        for (int64_t i = 0; i < count; i++) out->u.l->v[i] = obj.u.l->v[start + i * step];
        return 0;
    }
    /* strings: code points; a step of 1 keeps sharing the bytes */
    int64_t len = (int64_t)u8_count(obj.u.s, obj.n);
    slice_adjust(len, vs, ve, step, &start, &count);
    if (step == 1) {
        size_t a = u8_offset(obj.u.s, obj.n, (size_t)start);
        size_t b = a + u8_offset(obj.u.s + a, obj.n - a, (size_t)count);
        *out = jv_str(obj.u.s + a, b - a);
        out->sub = obj.sub;
        return 0;
    }
    JTRY(jr_steps(r, (uint64_t)len));
    size_t *offs = jr_alloc(r, ((size_t)len + 1) * sizeof *offs);
    if (!offs) return IFD_ERR_NOMEM;
    size_t i = 0;
    for (int64_t k = 0; k < len; k++) {
        offs[k] = i;
        u8_next(obj.u.s, obj.n, &i);
    }
    offs[len] = obj.n;
    struct jsb b;
    jsb_init(&b, &r->a);
    for (int64_t k = 0; k < count; k++) {
        int64_t c = start + k * step;
        jsb_put(&b, obj.u.s + offs[c], offs[c + 1] - offs[c]);
    }
    JTRY(jr_sb_done(r, &b, out));
    out->sub = obj.sub;
    return 0;
}

/* ------------------------------------------------------------------ loops */

/* Next item that passes the loop's filter; *have = false at the end. */
static int loop_fetch(struct jr *r, struct jloop *l, bool *have, struct jv *item)
{
    if (l->has_next) {
        l->has_next = false;
        *item = l->next;
        *have = true;
        return 0;
    }
    while (l->src_pos < l->n_src) {
        struct jv cand = l->src[l->src_pos++];
        if (!l->cond) {
            *item = cand;
            *have = true;
            return 0;
        }
        if (!l->cond_frame && !(l->cond_frame = push_frame(r, l->outer))) return IFD_ERR_NOMEM;
        l->cond_frame->n = 0;
        struct jframe *saved = r->frame;
        r->frame = l->cond_frame;
        struct jv ok;
        int rc = assign(r, l->target, cand);
        if (rc == 0) rc = jinja_eval_expr(r, l->cond, &ok);
        r->frame = saved;
        JTRY(rc);
        JTRY(jr_step(r));
        if (jv_truthy(ok)) {
            *item = cand;
            *have = true;
            return 0;
        }
    }
    *have = false;
    return 0;
}

static int loop_peek(struct jr *r, struct jloop *l, bool *have)
{
    if (!l->has_next) {
        bool h;
        struct jv v;
        JTRY(loop_fetch(r, l, &h, &v));
        if (h) {
            l->next = v;
            l->has_next = true;
        }
    }
    *have = l->has_next;
    return 0;
}

/* Filters the rest of the source now (jinja2 materializes it for loop.length). */
static int loop_length(struct jr *r, struct jloop *l)
{
    if (l->length >= 0) return 0;
    uint32_t rest = l->n_src - l->src_pos + (l->has_next ? 1 : 0);
    struct jv *kept = jr_alloc(r, (rest + 1) * sizeof *kept);
    if (!kept) return IFD_ERR_NOMEM;
    uint32_t k = 0;
    for (;;) {
        bool have;
        struct jv v;
        JTRY(loop_fetch(r, l, &have, &v));
        if (!have) break;
        kept[k++] = v;
    }
    l->src = kept;
    l->n_src = k;
    l->src_pos = 0;
    l->cond = NULL;
    l->length = l->index0 + 1 + k;
    return 0;
}

static int loop_attr(struct jr *r, struct jv obj, const char *name, size_t n, struct jv *out)
{
    struct jloop *l = obj.u.loop;
#define IS(s) (n == sizeof(s) - 1 && memcmp(name, s, n) == 0)
    bool have;
    if (IS("index0")) *out = jv_int(l->index0);
    else if (IS("index")) *out = jv_int(l->index0 + 1);
    else if (IS("first")) *out = jv_bool(l->index0 == 0);
    else if (IS("depth0")) *out = jv_int(l->depth0);
    else if (IS("depth")) *out = jv_int(l->depth0 + 1);
    else if (IS("length") || IS("revindex") || IS("revindex0")) {
        JTRY(loop_length(r, l));
        *out = jv_int(IS("length") ? l->length : IS("revindex") ? l->length - l->index0 : l->length - l->index0 - 1);
    } else if (IS("last")) {
        JTRY(loop_peek(r, l, &have));
        *out = jv_bool(!have);
    } else if (IS("nextitem")) {
        JTRY(loop_peek(r, l, &have));
        if (have) *out = l->next;
        else return jr_undef_hint(r, "there is no next item", out);
    } else if (IS("previtem")) {
        if (l->index0 == 0) return jr_undef_hint(r, "there is no previous item", out);
        *out = l->prev;
    } else {
        int rc = 0;
        if (jinja_method_lookup(r, obj, name, n, out, &rc)) return rc;
        return undef_member(r, obj, jv_str(name, n), out);
    }
#undef IS
    return 0;
}

static int exec_body_in_loop(struct jr *r, const struct jnode *f, struct jloop *l, struct jframe *frame, struct jv item)
{
    frame->n = 0; /* each iteration starts with a fresh scope */
    struct jv lv = {JV_LOOP, 0, 0, 0, {.loop = l}};
    JTRY(frame_set(r, frame, JSYM_LOOP, lv));
    JTRY(assign(r, f->kids[0], item));
    return jinja_exec(r, f->kids[3]);
}

static int exec_for(struct jr *r, const struct jnode *f)
{
    struct jv seq;
    JTRY(jinja_eval_expr(r, f->kids[1], &seq));
    struct jloop *l = jr_alloc(r, sizeof *l);
    if (!l) return IFD_ERR_NOMEM;
    memset(l, 0, sizeof *l);
    JTRY(jv_iter(r, seq, &l->src, &l->n_src));
    l->index0 = -1;
    l->length = f->kids[2] ? -1 : (int64_t)l->n_src;
    l->cond = f->kids[2];
    l->target = f->kids[0];
    l->outer = r->frame;
    l->last_changed = jv_unbound();
    struct jframe *frame = push_frame(r, r->frame);
    if (!frame) return IFD_ERR_NOMEM;
    struct jframe *saved = r->frame;
    r->frame = frame;
    r->loop_depth++;
    int rc = 0;
    for (;;) {
        bool have;
        struct jv item;
        rc = loop_fetch(r, l, &have, &item);
        if (rc < 0 || !have) break;
        rc = jr_step(r);
        if (rc < 0) break;
        l->index0++;
        l->prev = l->cur;
        l->cur = item;
        rc = exec_body_in_loop(r, f, l, frame, item);
        if (rc < 0) break;
        if (rc == JR_BREAK) {
            rc = 0;
            break;
        }
        rc = 0;
    }
    r->loop_depth--;
    r->frame = saved;
    JTRY(rc);
    if (l->index0 < 0 && f->kids[4]) return jinja_exec(r, f->kids[4]);
    return 0;
}

/* ------------------------------------------------------------------ macros */

static int call_macro(struct jr *r, const struct jmacro *m, const struct jargs *a, struct jv *out)
{
    const struct jnode *def = m->def;
    uint32_t nparams = def->npos, ndefaults = def->nkw;
    bool *kw_used = a->nkw ? jr_alloc(r, a->nkw * sizeof *kw_used) : NULL;
    if (a->nkw && !kw_used) return IFD_ERR_NOMEM;
    if (a->nkw) memset(kw_used, 0, a->nkw * sizeof *kw_used);
    struct jframe *frame = push_frame(r, m->closure);
    if (!frame) return IFD_ERR_NOMEM;
    struct jframe *saved = r->frame;
    r->frame = frame;
    int rc = 0;
    bool found_caller = false;
    for (uint32_t i = 0; i < nparams && rc == 0; i++) {
        const struct jnode *param = def->kids[1 + i];
        struct jv v = jv_unbound();
        if (i < a->npos) v = a->pos[i];
        else
            for (uint32_t k = 0; k < a->nkw; k++)
                if (!kw_used[k] && a->kw[k].n == param->val.n && memcmp(a->kw[k].name, param->val.u.s, param->val.n) == 0) {
                    v = a->kw[k].v;
                    kw_used[k] = true;
                }
        if (param->id == JSYM_CALLER && i >= a->npos) found_caller = true;
        if (v.kind == JV_UNBOUND) {
            if (i >= nparams - ndefaults) {
                rc = jinja_eval_expr(r, def->kids[1 + nparams + (i - (nparams - ndefaults))], &v);
            } else {
                char hint[160];
                snprintf(hint, sizeof hint, "parameter '%.*s' was not provided", (int)param->val.n, param->val.u.s);
                char *h = ja_memdup(&r->a, hint, strlen(hint));
                rc = h ? jr_undef_hint(r, h, &v) : jr_nomem(r);
            }
        }
        if (rc == 0) rc = frame_set(r, frame, param->id, v);
    }
    if (rc == 0 && (def->flags & JNF_CALLER) && !found_caller) {
        struct jv caller = jv_unbound();
        for (uint32_t k = 0; k < a->nkw; k++)
            if (!kw_used[k] && a->kw[k].n == 6 && memcmp(a->kw[k].name, "caller", 6) == 0) {
                caller = a->kw[k].v;
                kw_used[k] = true;
            }
        if (caller.kind == JV_UNBOUND) rc = jr_undef_hint(r, "No caller defined", &caller);
        if (rc == 0) rc = frame_set(r, frame, JSYM_CALLER, caller);
    }
    if (rc == 0 && (def->flags & JNF_KWARGS)) {
        struct jv kwd;
        rc = jr_new_dict(r, a->nkw, &kwd);
        for (uint32_t k = 0; k < a->nkw && rc == 0; k++)
            if (!kw_used[k]) rc = jr_dict_set(r, kwd.u.d, jv_str(a->kw[k].name, a->kw[k].n), a->kw[k].v);
        if (rc == 0) rc = frame_set(r, frame, JSYM_KWARGS, kwd);
    } else if (rc == 0) {
        for (uint32_t k = 0; k < a->nkw && rc == 0; k++) {
            if (kw_used[k]) continue;
            if (a->kw[k].n == 6 && memcmp(a->kw[k].name, "caller", 6) == 0)
                rc = jr_fail(r, IFD_ERR_INVALID,
                             "macro '%.*s' was invoked with two values for the special caller argument. This is most "
                             "likely a bug.", (int)def->val.n, def->val.u.s);
            else
                rc = jr_fail(r, IFD_ERR_INVALID, "macro '%.*s' takes no keyword argument '%.*s'", (int)def->val.n,
                             def->val.u.s, (int)a->kw[k].n, a->kw[k].name);
        }
    }
    if (rc == 0 && (def->flags & JNF_VARARGS)) {
        uint32_t extra = a->npos > nparams ? a->npos - nparams : 0;
        struct jv t;
        rc = jr_new_list(r, JV_TUPLE, extra, &t);
        for (uint32_t i = 0; i < extra && rc == 0; i++) t.u.l->v[i] = a->pos[nparams + i];
        if (rc == 0) rc = frame_set(r, frame, JSYM_VARARGS, t);
    } else if (rc == 0 && a->npos > nparams) {
        rc = jr_fail(r, IFD_ERR_INVALID, "macro '%.*s' takes not more than %u argument(s)", (int)def->val.n,
                     def->val.u.s, nparams);
    }
    if (rc == 0) {
        size_t mark = r->out_n;
        int saved_loops = r->loop_depth;
        r->loop_depth = 0;
        rc = jinja_exec(r, def->kids[0]);
        r->loop_depth = saved_loops;
        if (rc >= 0) rc = capture_end(r, mark, out);
    }
    r->frame = saved;
    return rc < 0 ? rc : 0;
}

int jinja_call(struct jr *r, struct jv fn, const struct jargs *a, struct jv *out)
{
    JTRY(jr_step(r));
    switch (fn.kind) {
    case JV_UNDEF: return jr_undef_fail(r, fn);
    case JV_MACRO: return call_macro(r, fn.u.m, a, out);
    case JV_FUNC: return jinja_call_func(r, (int)fn.u.i, a, out);
    case JV_METHOD: return jinja_call_method(r, fn.u.bm, a, out);
    case JV_LOOP: return jr_fail(r, IFD_ERR_INVALID, "The loop must have the 'recursive' marker to be called recursively.");
    default: return jr_fail(r, IFD_ERR_INVALID, "'%s' object is not callable", jv_type_name(fn));
    }
}

/* ------------------------------------------------------------------ operators */

static int type_error2(struct jr *r, const char *op, struct jv a, struct jv b)
{
    return jr_fail(r, IFD_ERR_INVALID, "unsupported operand type(s) for %s: '%s' and '%s'", op, jv_type_name(a),
                   jv_type_name(b));
}

static int concat_seq(struct jr *r, struct jv a, struct jv b, struct jv *out)
{
    uint32_t n = a.u.l->n + b.u.l->n;
    if (n < a.u.l->n) return jr_nomem(r);
    JTRY(jr_steps(r, n));
    JTRY(jr_new_list(r, a.kind, n, out));
    memcpy(out->u.l->v, a.u.l->v, a.u.l->n * sizeof(struct jv));
    memcpy(out->u.l->v + a.u.l->n, b.u.l->v, b.u.l->n * sizeof(struct jv));
    return 0;
}

static int op_add(struct jr *r, struct jv a, struct jv b, struct jv *out)
{
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.kind != JV_FLOAT && b.kind != JV_FLOAT) {
            int64_t s;
            if (__builtin_add_overflow(a.u.i, b.u.i, &s)) return jr_fail(r, IFD_ERR_RANGE, "integer overflow (template integers are 64-bit)");
            *out = jv_int(s);
        } else {
            *out = jv_float(jv_num(a) + jv_num(b));
        }
        return 0;
    }
    if ((jv_is_markup(a) || jv_is_markup(b)) && a.kind == JV_STR && b.kind == JV_STR) {
        /* Markup.__add__ / __radd__: the plain side is escaped, the result is Markup */
        JTRY(jinja_escape(r, a, &a));
        JTRY(jinja_escape(r, b, &b));
        struct jsb sb;
        jsb_init(&sb, &r->a);
        jsb_put(&sb, a.u.s, a.n);
        jsb_put(&sb, b.u.s, b.n);
        JTRY(jr_sb_done(r, &sb, out));
        *out = jv_markup(*out);
        return 0;
    }
    if (a.kind == JV_STR && b.kind == JV_STR) {
        if (!b.n) return *out = a, 0;
        if (!a.n) return *out = b, 0;
        struct jsb sb;
        jsb_init(&sb, &r->a);
        jsb_put(&sb, a.u.s, a.n);
        jsb_put(&sb, b.u.s, b.n);
        return jr_sb_done(r, &sb, out);
    }
    if (a.kind == JV_LIST && a.sub == JL_LIST && b.kind == JV_LIST && b.sub == JL_LIST) return concat_seq(r, a, b, out);
    if (a.kind == JV_TUPLE && b.kind == JV_TUPLE) return concat_seq(r, a, b, out);
    if (jv_is_markup(a)) return type_error2(r, "+", a, b); /* Markup.__add__ gave up */
    if (a.kind == JV_STR || (a.kind == JV_LIST && a.sub == JL_LIST) || a.kind == JV_TUPLE)
        return jr_fail(r, IFD_ERR_INVALID, "can only concatenate %s (not \"%s\") to %s", jv_type_name(a),
                       jv_type_name(b), jv_type_name(a));
    return type_error2(r, "+", a, b);
}

static int repeat(struct jr *r, struct jv seq, int64_t times, struct jv *out)
{
    if (times < 0) times = 0;
    uint64_t unit = seq.kind == JV_STR ? seq.n : (uint64_t)seq.u.l->n * sizeof(struct jv);
    if (unit && (uint64_t)times > (uint64_t)r->lim.max_memory / unit) return jr_nomem(r);
    if (seq.kind == JV_STR) {
        uint64_t total = (uint64_t)seq.n * (uint64_t)times;
        if (total > UINT32_MAX) return jr_nomem(r);
        JTRY(jr_steps(r, total / 4096 + 1));
        char *p = total ? ja_alloc(&r->a, (size_t)total) : NULL;
        if (total && !p) return jr_nomem(r);
        /* double the filled prefix: log(times) copies */
        size_t filled = total ? seq.n : 0;
        if (filled) memcpy(p, seq.u.s, filled);
        while (filled && filled < total) {
            size_t k = filled <= total - filled ? filled : (size_t)total - filled;
            memcpy(p + filled, p, k);
            filled += k;
        }
        *out = jv_str(p ? p : "", (size_t)total);
        out->sub = seq.sub; /* Markup * n is Markup */
        return 0;
    }
    uint64_t n = (uint64_t)seq.u.l->n * (uint64_t)times;
    if (n > UINT32_MAX) return jr_nomem(r);
    JTRY(jr_steps(r, n));
    JTRY(jr_new_list(r, seq.kind, (uint32_t)n, out));
    for (int64_t i = 0; i < times; i++)
        memcpy(out->u.l->v + (uint64_t)i * seq.u.l->n, seq.u.l->v, seq.u.l->n * sizeof(struct jv));
    return 0;
}

static bool is_repeatable(struct jv v) { return v.kind == JV_STR || v.kind == JV_TUPLE || (v.kind == JV_LIST && v.sub == JL_LIST); }

static int op_mul(struct jr *r, struct jv a, struct jv b, struct jv *out)
{
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.kind != JV_FLOAT && b.kind != JV_FLOAT) {
            int64_t p;
            if (__builtin_mul_overflow(a.u.i, b.u.i, &p)) return jr_fail(r, IFD_ERR_RANGE, "integer overflow (template integers are 64-bit)");
            *out = jv_int(p);
        } else {
            *out = jv_float(jv_num(a) * jv_num(b));
        }
        return 0;
    }
    if (is_repeatable(a) && jv_is_intlike(b)) return repeat(r, a, b.u.i, out);
    if (is_repeatable(b) && jv_is_intlike(a)) return repeat(r, b, a.u.i, out);
    if (is_repeatable(a) || is_repeatable(b)) {
        struct jv other = is_repeatable(a) ? b : a;
        if (jv_is_markup(a) || jv_is_markup(b)) /* Markup calls str.__mul__ with the other operand as is */
            return jr_fail(r, IFD_ERR_INVALID, "'%s' object cannot be interpreted as an integer",
                           jv_type_name(jv_is_markup(a) ? b : a));
        return jr_fail(r, IFD_ERR_INVALID, "can't multiply sequence by non-int of type '%s'", jv_type_name(other));
    }
    return type_error2(r, "*", a, b);
}

/* Python's float divmod */
static void float_divmod(double vx, double wx, double *floordiv, double *mod)
{
    double m = fmod(vx, wx);
    double div = (vx - m) / wx;
    if (m != 0) {
        if ((wx < 0) != (m < 0)) {
            m += wx;
            div -= 1.0;
        }
    } else {
        m = copysign(0.0, wx);
    }
    double fd;
    if (div != 0) {
        fd = floor(div);
        if (div - fd > 0.5) fd += 1.0;
    } else {
        fd = copysign(0.0, vx / wx);
    }
    *floordiv = fd;
    *mod = m;
}

static int op_divmod(struct jr *r, int op, struct jv a, struct jv b, struct jv *out)
{
    if (!jv_is_num(a) || !jv_is_num(b))
        return type_error2(r, op == JO_DIV ? "/" : op == JO_FLOORDIV ? "//" : "%", a, b);
    bool ints = a.kind != JV_FLOAT && b.kind != JV_FLOAT;
    if (op == JO_DIV) {
        if (jv_num(b) == 0) return jr_fail(r, IFD_ERR_INVALID, ints ? "division by zero" : "float division by zero");
        *out = jv_float(ints ? (double)((long double)a.u.i / (long double)b.u.i) : jv_num(a) / jv_num(b));
        return 0;
    }
    if (ints) {
        int64_t x = a.u.i, y = b.u.i;
        if (y == 0)
            return jr_fail(r, IFD_ERR_INVALID, op == JO_FLOORDIV ? "integer division or modulo by zero" : "integer modulo by zero");
        if (y == -1) { /* INT64_MIN / -1 overflows in C */
            if (op == JO_MOD) return *out = jv_int(0), 0;
            if (x == INT64_MIN) return jr_fail(r, IFD_ERR_RANGE, "integer overflow (template integers are 64-bit)");
            return *out = jv_int(-x), 0;
        }
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {
            q -= 1;
            m += y;
        }
        *out = jv_int(op == JO_FLOORDIV ? q : m);
        return 0;
    }
    if (jv_num(b) == 0)
        return jr_fail(r, IFD_ERR_INVALID, op == JO_FLOORDIV ? "float floor division by zero" : "float modulo");
    double fd, m;
    float_divmod(jv_num(a), jv_num(b), &fd, &m);
    *out = jv_float(op == JO_FLOORDIV ? fd : m);
    return 0;
}

static int op_pow(struct jr *r, struct jv a, struct jv b, struct jv *out)
{
    if (!jv_is_num(a) || !jv_is_num(b)) return type_error2(r, "** or pow()", a, b);
    if (a.kind != JV_FLOAT && b.kind != JV_FLOAT && b.u.i >= 0) {
        int64_t base = a.u.i, e = b.u.i, acc = 1;
        while (e > 0) {
            if (e & 1)
                if (__builtin_mul_overflow(acc, base, &acc)) return jr_fail(r, IFD_ERR_RANGE, "integer overflow (template integers are 64-bit)");
            e >>= 1;
            if (e && __builtin_mul_overflow(base, base, &base)) {
                if (acc == 0) break;
                return jr_fail(r, IFD_ERR_RANGE, "integer overflow (template integers are 64-bit)");
            }
        }
        *out = jv_int(acc);
        return 0;
    }
    double x = jv_num(a), y = jv_num(b);
    if (x == 0 && y < 0) return jr_fail(r, IFD_ERR_INVALID, "0.0 cannot be raised to a negative power");
    if (x < 0 && y != floor(y)) return jr_fail(r, IFD_ERR_UNSUPPORTED, "complex results are not supported");
    double p = pow(x, y);
    if (isinf(p) && isfinite(x) && isfinite(y)) return jr_fail(r, IFD_ERR_INVALID, "(34, 'Numerical result out of range')");
    *out = jv_float(p);
    return 0;
}

int jinja_binop(struct jr *r, int op, struct jv a, struct jv b, struct jv *out)
{
    if (a.kind == JV_UNDEF) return jr_undef_fail(r, a);
    /* str % Undefined formats Undefined like a (mapping) argument, it does not raise */
    if (op == JO_MOD && a.kind == JV_STR) return jinja_str_mod(r, a, b, out);
    if (b.kind == JV_UNDEF) return jr_undef_fail(r, b);
    switch (op) {
    case JO_ADD: return op_add(r, a, b, out);
    case JO_SUB:
        if (!jv_is_num(a) || !jv_is_num(b)) return type_error2(r, "-", a, b);
        if (a.kind != JV_FLOAT && b.kind != JV_FLOAT) {
            int64_t d;
            if (__builtin_sub_overflow(a.u.i, b.u.i, &d)) return jr_fail(r, IFD_ERR_RANGE, "integer overflow (template integers are 64-bit)");
            *out = jv_int(d);
        } else {
            *out = jv_float(jv_num(a) - jv_num(b));
        }
        return 0;
    case JO_MUL: return op_mul(r, a, b, out);
    case JO_MOD:
        if (a.kind == JV_STR) return jinja_str_mod(r, a, b, out);
        /* fall through */
    case JO_DIV:
    case JO_FLOORDIV: return op_divmod(r, op, a, b, out);
    case JO_POW: return op_pow(r, a, b, out);
    default: return jr_fail(r, IFD_ERR_INTERNAL, "unknown operator");
    }
}

int jinja_contains(struct jr *r, struct jv c, struct jv item, bool *out)
{
    switch (c.kind) {
    case JV_STR:
        if (item.kind != JV_STR)
            return jr_fail(r, IFD_ERR_INVALID, "'in <string>' requires string as left operand, not %s", jv_type_name(item));
        *out = item.n == 0 || (item.n <= c.n && memmem(c.u.s, c.n, item.u.s, item.n) != NULL);
        JTRY(jr_steps(r, c.n / 64));
        return 0;
    case JV_LIST:
    case JV_TUPLE:
        *out = false;
        for (uint32_t i = 0; i < c.u.l->n && !*out; i++) *out = jv_eq(c.u.l->v[i], item);
        return jr_steps(r, c.u.l->n);
    case JV_DICT:
        if (item.kind == JV_LIST || item.kind == JV_DICT || item.kind == JV_NS)
            return jr_fail(r, IFD_ERR_INVALID, "unhashable type: '%s'", jv_type_name(item));
        *out = jd_get(c.u.d, item) != NULL;
        return jr_steps(r, c.u.d->n);
    case JV_UNDEF: *out = false; return 0;
    default:
        return jr_fail(r, IFD_ERR_INVALID, "argument of type '%s' is not iterable", jv_type_name(c));
    }
}

static int compare(struct jr *r, int op, struct jv a, struct jv b, bool *out)
{
    switch (op) {
    case JO_EQ: *out = jv_eq(a, b); return 0;
    case JO_NE: *out = !jv_eq(a, b); return 0;
    case JO_IN: return jinja_contains(r, b, a, out);
    case JO_NOTIN:
        JTRY(jinja_contains(r, b, a, out));
        *out = !*out;
        return 0;
    default: break;
    }
    return jv_compare(r, op, a, b, out);
}

/* ------------------------------------------------------------------ expressions */

static int eval_filter(struct jr *r, const struct jnode *n, const struct jv *base, struct jv *out);

static int eval_call(struct jr *r, const struct jnode *n, const struct jkwarg *extra, struct jv *out)
{
    struct jv fn;
    JTRY(jinja_eval_expr(r, n->kids[0], &fn));
    struct jargs a;
    JTRY(eval_args(r, n, extra, &a));
    return jinja_call(r, fn, &a, out);
}

static int eval_filter(struct jr *r, const struct jnode *n, const struct jv *base, struct jv *out)
{
    struct jv target;
    if (n->kids[0]) {
        if (n->kids[0]->kind == JN_FILTER) JTRY(eval_filter(r, n->kids[0], base, &target));
        else JTRY(jinja_eval_expr(r, n->kids[0], &target));
    } else {
        target = base ? *base : jv_none();
    }
    if (n->flags & JNF_UNKNOWN)
        return jr_fail(r, IFD_ERR_INVALID, "No filter named '%.*s' found.", (int)n->val.n, n->val.u.s);
    struct jargs a;
    JTRY(eval_args(r, n, NULL, &a));
    return jinja_call_filter(r, n->id, target, &a, out);
}

static int eval_test(struct jr *r, const struct jnode *n, struct jv *out)
{
    struct jv target;
    JTRY(jinja_eval_expr(r, n->kids[0], &target));
    if (n->flags & JNF_UNKNOWN)
        return jr_fail(r, IFD_ERR_INVALID, "No test named '%.*s' found.", (int)n->val.n, n->val.u.s);
    struct jargs a;
    JTRY(eval_args(r, n, NULL, &a));
    bool b;
    JTRY(jinja_call_test(r, n->id, target, &a, &b));
    *out = jv_bool(b);
    return 0;
}

static int eval_unary(struct jr *r, const struct jnode *n, struct jv *out)
{
    struct jv v;
    JTRY(jinja_eval_expr(r, n->kids[0], &v));
    if (n->kind == JN_NOT) {
        *out = jv_bool(!jv_truthy(v));
        return 0;
    }
    if (v.kind == JV_UNDEF) return jr_undef_fail(r, v);
    if (!jv_is_num(v))
        return jr_fail(r, IFD_ERR_INVALID, "bad operand type for unary %c: '%s'", n->kind == JN_NEG ? '-' : '+',
                       jv_type_name(v));
    if (v.kind == JV_FLOAT) *out = jv_float(n->kind == JN_NEG ? -v.u.f : v.u.f);
    else if (n->kind == JN_POS) *out = jv_int(v.u.i);
    else if (v.u.i == INT64_MIN) return jr_fail(r, IFD_ERR_RANGE, "integer overflow (template integers are 64-bit)");
    else *out = jv_int(-v.u.i);
    return 0;
}

static int eval_compare(struct jr *r, const struct jnode *n, struct jv *out)
{
    struct jv left;
    JTRY(jinja_eval_expr(r, n->kids[0], &left));
    for (uint32_t i = 1; i < n->nkids; i++) {
        struct jv right;
        JTRY(jinja_eval_expr(r, n->kids[i]->kids[0], &right));
        bool ok;
        JTRY(compare(r, n->kids[i]->op, left, right, &ok));
        if (!ok) {
            *out = jv_bool(false);
            return 0;
        }
        left = right;
    }
    *out = jv_bool(true);
    return 0;
}

static int eval_seq(struct jr *r, const struct jnode *n, uint8_t kind, struct jv *out)
{
    JTRY(jr_new_list(r, kind, n->nkids, out));
    for (uint32_t i = 0; i < n->nkids; i++) JTRY(jinja_eval_expr(r, n->kids[i], &out->u.l->v[i]));
    return 0;
}

static int eval_dict(struct jr *r, const struct jnode *n, struct jv *out)
{
    JTRY(jr_new_dict(r, n->nkids / 2, out));
    for (uint32_t i = 0; i + 1 < n->nkids; i += 2) {
        struct jv k, v;
        JTRY(jinja_eval_expr(r, n->kids[i], &k));
        JTRY(jinja_eval_expr(r, n->kids[i + 1], &v));
        JTRY(jr_dict_set(r, out->u.d, k, v));
    }
    return 0;
}

static int eval_getitem(struct jr *r, const struct jnode *n, struct jv *out)
{
    struct jv obj;
    JTRY(jinja_eval_expr(r, n->kids[0], &obj));
    const struct jnode *ix = n->kids[1];
    if (ix->kind == JN_SLICE) {
        struct jv parts[3] = {jv_unbound(), jv_unbound(), jv_unbound()};
        for (int i = 0; i < 3; i++)
            if (ix->kids[i]) JTRY(jinja_eval_expr(r, ix->kids[i], &parts[i]));
        return do_slice(r, obj, parts[0], parts[1], parts[2], out);
    }
    struct jv key;
    JTRY(jinja_eval_expr(r, ix, &key));
    return jinja_getitem(r, obj, key, out);
}

static int eval_concat(struct jr *r, const struct jnode *n, struct jv *out)
{
    struct jsb b;
    jsb_init(&b, &r->a);
    for (uint32_t i = 0; i < n->nkids; i++) {
        struct jv v;
        JTRY(jinja_eval_expr(r, n->kids[i], &v));
        jv_put_str(&b, v);
    }
    return jr_sb_done(r, &b, out);
}

static int eval_condexpr(struct jr *r, const struct jnode *n, struct jv *out)
{
    struct jv c;
    JTRY(jinja_eval_expr(r, n->kids[0], &c));
    if (jv_truthy(c)) return jinja_eval_expr(r, n->kids[1], out);
    if (n->kids[2]) return jinja_eval_expr(r, n->kids[2], out);
    char hint[160];
    snprintf(hint, sizeof hint, "the inline if-expression on line %u evaluated to false and no else section was defined.",
             n->line);
    char *h = ja_memdup(&r->a, hint, strlen(hint));
    if (!h) return jr_nomem(r);
    return jr_undef_hint(r, h, out);
}

static int eval_inner(struct jr *r, const struct jnode *n, struct jv *out)
{
    struct jv a, b;
    switch (n->kind) {
    case JN_CONST: *out = n->val; return 0;
    case JN_NAME: {
        const struct jv *v = lookup(r, n->id);
        if (v) {
            *out = *v;
            return 0;
        }
        return jr_undef(r, JU_NAME, n->val.u.s, n->val.n, jv_none(), jv_none(), out);
    }
    case JN_GETATTR:
        JTRY(jinja_eval_expr(r, n->kids[0], &a));
        return jinja_getattr(r, a, n->val.u.s, n->val.n, out);
    case JN_GETITEM: return eval_getitem(r, n, out);
    case JN_CALL: return eval_call(r, n, NULL, out);
    case JN_FILTER: return eval_filter(r, n, NULL, out);
    case JN_TEST: return eval_test(r, n, out);
    case JN_NOT:
    case JN_NEG:
    case JN_POS: return eval_unary(r, n, out);
    case JN_AND:
    case JN_OR:
        JTRY(jinja_eval_expr(r, n->kids[0], &a));
        if (jv_truthy(a) == (n->kind == JN_OR)) {
            *out = a;
            return 0;
        }
        return jinja_eval_expr(r, n->kids[1], out);
    case JN_BINOP:
        JTRY(jinja_eval_expr(r, n->kids[0], &a));
        JTRY(jinja_eval_expr(r, n->kids[1], &b));
        return jinja_binop(r, n->op, a, b, out);
    case JN_CONCAT: return eval_concat(r, n, out);
    case JN_COMPARE: return eval_compare(r, n, out);
    case JN_CONDEXPR: return eval_condexpr(r, n, out);
    case JN_LIST: return eval_seq(r, n, JV_LIST, out);
    case JN_TUPLE: return eval_seq(r, n, JV_TUPLE, out);
    case JN_DICT: return eval_dict(r, n, out);
    default: return jr_fail(r, IFD_ERR_INTERNAL, "cannot evaluate node kind %d", n->kind);
    }
}

int jinja_eval_expr(struct jr *r, const struct jnode *n, struct jv *out)
{
    if (++r->depth > r->lim.max_depth) {
        r->depth--;
        return jr_fail(r, IFD_ERR_RANGE, "template evaluation nested deeper than %d levels", r->lim.max_depth);
    }
    int rc = eval_inner(r, n, out);
    r->depth--;
    if (rc < 0 && !r->err_line) r->err_line = n->line;
    return rc;
}

/* ------------------------------------------------------------------ statements */

static int exec_macro_def(struct jr *r, const struct jnode *n)
{
    struct jmacro *m = jr_alloc(r, sizeof *m);
    if (!m) return IFD_ERR_NOMEM;
    m->def = n;
    m->closure = r->frame;
    struct jv v = {JV_MACRO, 0, 0, 0, {.m = m}};
    return set_var(r, n->id, v);
}

static int exec_callblock(struct jr *r, const struct jnode *n)
{
    struct jmacro *m = jr_alloc(r, sizeof *m);
    if (!m) return IFD_ERR_NOMEM;
    m->def = n->kids[1];
    m->closure = r->frame;
    struct jkwarg caller = {"caller", 6, {JV_MACRO, 0, 0, 0, {.m = m}}};
    struct jv v;
    JTRY(eval_call(r, n->kids[0], &caller, &v));
    return out_value(r, v);
}

/* Runs body in a scope of its own. Returns what the body returned, so a
 * break inside {% set %}...{% endset %} still ends the enclosing loop. */
static int exec_scoped(struct jr *r, const struct jnode *body)
{
    struct jframe *saved = r->frame;
    r->frame = push_frame(r, saved);
    if (!r->frame) {
        r->frame = saved;
        return IFD_ERR_NOMEM;
    }
    int rc = jinja_exec(r, body);
    r->frame = saved;
    return rc;
}

/* exec_scoped, capturing the output as a string. */
static int capture_body(struct jr *r, const struct jnode *body, struct jv *out)
{
    size_t mark = r->out_n;
    int rc = exec_scoped(r, body);
    JTRY(rc);
    JTRY(capture_end(r, mark, out));
    return rc;
}

static int exec_with(struct jr *r, const struct jnode *n)
{
    struct jframe *frame = push_frame(r, r->frame);
    if (!frame) return IFD_ERR_NOMEM;
    struct jv *vals = jr_alloc(r, (n->npos + 1) * sizeof *vals);
    if (!vals) return IFD_ERR_NOMEM;
    for (uint32_t i = 0; i < n->npos; i++) JTRY(jinja_eval_expr(r, n->kids[1 + n->npos + i], &vals[i]));
    struct jframe *saved = r->frame;
    r->frame = frame;
    int rc = 0;
    for (uint32_t i = 0; i < n->npos && rc == 0; i++) rc = assign(r, n->kids[1 + i], vals[i]);
    if (rc == 0) rc = jinja_exec(r, n->kids[0]);
    r->frame = saved;
    return rc;
}

static int exec_inner(struct jr *r, const struct jnode *n)
{
    struct jv v;
    int rc;
    switch (n->kind) {
    case JN_BLOCK:
        for (uint32_t i = 0; i < n->nkids; i++) {
            rc = jinja_exec(r, n->kids[i]);
            if (rc) return rc;
        }
        return 0;
    case JN_DATA: return out_put(r, n->val.u.s, n->val.n);
    case JN_PRINT:
        for (uint32_t i = 0; i < n->nkids; i++) {
            JTRY(jinja_eval_expr(r, n->kids[i], &v));
            JTRY(out_value(r, v));
        }
        return 0;
    case JN_IF:
        JTRY(jinja_eval_expr(r, n->kids[0], &v));
        if (jv_truthy(v)) return jinja_exec(r, n->kids[1]);
        return n->kids[2] ? jinja_exec(r, n->kids[2]) : 0;
    case JN_FOR: return exec_for(r, n);
    case JN_SET:
        JTRY(jinja_eval_expr(r, n->kids[1], &v));
        return assign(r, n->kids[0], v);
    case JN_SETBLOCK:
        rc = capture_body(r, n->kids[1], &v);
        JTRY(rc);
        if (n->kids[2]) JTRY(eval_filter(r, n->kids[2], &v, &v));
        JTRY(assign(r, n->kids[0], v));
        return rc;
    case JN_FILTERBLOCK:
        rc = capture_body(r, n->kids[0], &v);
        JTRY(rc);
        JTRY(eval_filter(r, n->kids[1], &v, &v));
        JTRY(out_value(r, v));
        return rc;
    case JN_MACRO: return exec_macro_def(r, n);
    case JN_CALLBLOCK: return exec_callblock(r, n);
    case JN_WITH: return exec_with(r, n);
    case JN_SCOPE: return exec_scoped(r, n->kids[0]);
    case JN_BREAK: return r->loop_depth ? JR_BREAK : 0;
    case JN_CONTINUE: return r->loop_depth ? JR_CONTINUE : 0;
    default: return jr_fail(r, IFD_ERR_INTERNAL, "cannot execute node kind %d", n->kind);
    }
}

int jinja_exec(struct jr *r, const struct jnode *n)
{
    if (++r->depth > r->lim.max_depth) {
        r->depth--;
        return jr_fail(r, IFD_ERR_RANGE, "template evaluation nested deeper than %d levels", r->lim.max_depth);
    }
    int rc = jr_step(r);
    if (rc == 0) rc = exec_inner(r, n);
    r->depth--;
    if (rc < 0 && !r->err_line) r->err_line = n->line;
    return rc;
}
