/* SPDX-License-Identifier: Apache-2.0
 *
 * jinja_parser.c: tokens -> syntax tree, a recursive-descent port of jinja2's
 * parser.py so that precedence and the odd corners match: filters and tests
 * bind tighter than any binary operator (a + b|trim), ** is left-associative,
 * unary minus applies before filters (-1|abs is 1), `x is test arg` takes one
 * primary argument, adjacent string literals concatenate, comparisons chain,
 * `for x in xs if cond` filters, `{% set x %}...{% endset %}` captures.
 *
 * Names are interned into symbols, filter and test names are resolved here;
 * like jinja2, an unknown filter or test is a compile error unless it sits
 * in an if/elif/else branch or an inline if-expression, where it only fails
 * when it runs. Error messages follow jinja2's wording plus the line and
 * column.
 *
 * Not supported (compile errors): block, extends, include, import, from,
 * autoescape tags and recursive for-loops. Nesting is capped so hostile input
 * cannot exhaust the stack.
 *
 * Layer: server.
 */
#include "jinja_internal.h"

#include <stdio.h>
#include <string.h>

#define PARSE_MAX_DEPTH 100
#define MAX_END_STACK 64

struct unknown_ref {
    const struct jnode *node;
    const struct jtok *tok;
    bool filter;
    bool soft;
};

struct parser {
    struct jinja_template *t;
    struct jarena *a;
    const struct jtok *tok;
    size_t ntok, i;
    char *err;
    size_t errlen;
    int depth;
    int soft;       /* inside an if branch (jinja2's soft frame) */
    int loops;      /* enclosing for-loops in the current function scope */
    /* for jinja2's "Encountered unknown tag" hints */
    const char *end_stack[MAX_END_STACK][3];
    int n_end;
    const char *tag_stack[MAX_END_STACK];
    int n_tag;
    struct unknown_ref *unknown;
    size_t n_unknown, cap_unknown;
    int32_t cap_syms;
};

struct nvec {
    struct jnode **v;
    uint32_t n, cap;
};

/* ------------------------------------------------------------------ helpers */

static const struct jtok *cur(struct parser *p) { return &p->tok[p->i]; }

static const struct jtok *look(struct parser *p) { return &p->tok[p->i + 1 < p->ntok ? p->i + 1 : p->i]; }

static const struct jtok *next(struct parser *p)
{
    const struct jtok *t = &p->tok[p->i];
    if (p->i + 1 < p->ntok) p->i++;
    return t;
}

static bool is_name(const struct jtok *t, const char *name)
{
    size_t n = strlen(name);
    return t->kind == JT_NAME && t->n == n && memcmp(t->s, name, n) == 0;
}

static bool is_op(const struct jtok *t, int op) { return t->kind == JT_OP && t->op == op; }

static void describe(const struct jtok *t, char *buf, size_t cap)
{
    switch (t->kind) {
    case JT_EOF: snprintf(buf, cap, "end of template"); return;
    case JT_DATA: snprintf(buf, cap, "template data / text"); return;
    case JT_VAR_BEGIN: snprintf(buf, cap, "begin of print statement"); return;
    case JT_VAR_END: snprintf(buf, cap, "end of print statement"); return;
    case JT_BLOCK_BEGIN: snprintf(buf, cap, "begin of statement block"); return;
    case JT_BLOCK_END: snprintf(buf, cap, "end of statement block"); return;
    case JT_STRING: snprintf(buf, cap, "string"); return;
    case JT_INT: snprintf(buf, cap, "integer"); return;
    case JT_FLOAT: snprintf(buf, cap, "float"); return;
    default: snprintf(buf, cap, "%.*s", (int)(t->n > 60 ? 60 : t->n), t->s); return;
    }
}

static int p_fail(struct parser *p, const struct jtok *t, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int p_fail(struct parser *p, const struct jtok *t, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return ifd_fail(p->err, p->errlen, IFD_ERR_FORMAT, "%s at line %u, column %u", msg, t->line, t->col);
}

static int p_nomem(struct parser *p) { return ifd_fail(p->err, p->errlen, IFD_ERR_NOMEM, "out of memory compiling template"); }

static int expect_op(struct parser *p, int op, const char *what)
{
    const struct jtok *t = cur(p);
    if (is_op(t, op)) {
        next(p);
        return 0;
    }
    char d[80];
    describe(t, d, sizeof d);
    if (t->kind == JT_EOF) return p_fail(p, t, "unexpected end of template, expected '%s'.", what);
    return p_fail(p, t, "expected token '%s', got '%s'", what, d);
}

static int expect_kind(struct parser *p, int kind, const char *what)
{
    const struct jtok *t = cur(p);
    if (t->kind == kind) {
        next(p);
        return 0;
    }
    char d[80];
    describe(t, d, sizeof d);
    if (t->kind == JT_EOF) return p_fail(p, t, "unexpected end of template, expected '%s'.", what);
    return p_fail(p, t, "expected token '%s', got '%s'", what, d);
}

static int expect_name(struct parser *p, const char *name)
{
    const struct jtok *t = cur(p);
    if (is_name(t, name)) {
        next(p);
        return 0;
    }
    char d[80];
    describe(t, d, sizeof d);
    if (t->kind == JT_EOF) return p_fail(p, t, "unexpected end of template, expected '%s'.", name);
    return p_fail(p, t, "expected token '%s', got '%s'", name, d);
}

static struct jnode *mk(struct parser *p, int kind, const struct jtok *t)
{
    struct jnode *n = ja_alloc(p->a, sizeof *n);
    if (!n) return NULL;
    memset(n, 0, sizeof *n);
    n->kind = (uint8_t)kind;
    n->line = t->line;
    n->val.kind = JV_UNBOUND;
    return n;
}

#define MK(var, p, kind, t)                                                                                   \
    do {                                                                                                      \
        (var) = mk((p), (kind), (t));                                                                         \
        if (!(var)) return p_nomem(p);                                                                        \
    } while (0)

static int vpush(struct parser *p, struct nvec *v, struct jnode *n)
{
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 4;
        struct jnode **nv = ja_alloc(p->a, cap * sizeof *nv);
        if (!nv) return p_nomem(p);
        if (v->n) memcpy(nv, v->v, v->n * sizeof *nv);
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = n;
    return 0;
}

static void set_kids(struct jnode *n, const struct nvec *v)
{
    n->kids = v->v;
    n->nkids = v->n;
}

static int kids_n(struct parser *p, struct jnode *n, uint32_t count)
{
    n->kids = ja_alloc(p->a, (count ? count : 1) * sizeof *n->kids);
    if (!n->kids) return p_nomem(p);
    memset(n->kids, 0, (count ? count : 1) * sizeof *n->kids);
    n->nkids = count;
    return 0;
}

static int32_t intern(struct parser *p, const char *s, size_t n)
{
    struct jinja_template *t = p->t;
    for (int32_t i = 0; i < t->nsyms; i++)
        if (t->syms[i].n == n && memcmp(t->syms[i].s, s, n) == 0) return i;
    if (t->nsyms == p->cap_syms) {
        int32_t cap = p->cap_syms ? p->cap_syms * 2 : 32;
        struct jsym *ns = ja_alloc(p->a, (size_t)cap * sizeof *ns);
        if (!ns) return -1;
        if (t->nsyms) memcpy(ns, t->syms, (size_t)t->nsyms * sizeof *ns);
        t->syms = ns;
        p->cap_syms = cap;
    }
    t->syms[t->nsyms].s = s;
    t->syms[t->nsyms].n = (uint32_t)n;
    return t->nsyms++;
}

static int enter(struct parser *p)
{
    if (++p->depth > PARSE_MAX_DEPTH) return p_fail(p, cur(p), "template nesting too deep (more than %d levels)", PARSE_MAX_DEPTH);
    return 0;
}

/* ------------------------------------------------------------------ expressions */

static int parse_expression(struct parser *p, bool with_condexpr, struct jnode **out);
static int parse_tuple(struct parser *p, bool simplified, bool with_condexpr, const char *extra_end,
                       bool explicit_parens, bool with_namespace, struct jnode **out);
static int parse_unary(struct parser *p, bool with_filter, struct jnode **out);
static int parse_postfix(struct parser *p, struct jnode *node, struct jnode **out);
static int parse_filter(struct parser *p, struct jnode *node, bool start_inline, struct jnode **out);

static int note_unknown(struct parser *p, const struct jnode *n, const struct jtok *t, bool filter)
{
    if (p->n_unknown == p->cap_unknown) {
        size_t cap = p->cap_unknown ? p->cap_unknown * 2 : 8;
        struct unknown_ref *u = ja_alloc(p->a, cap * sizeof *u);
        if (!u) return p_nomem(p);
        if (p->n_unknown) memcpy(u, p->unknown, p->n_unknown * sizeof *u);
        p->unknown = u;
        p->cap_unknown = cap;
    }
    p->unknown[p->n_unknown++] = (struct unknown_ref){n, t, filter, p->soft > 0};
    return 0;
}

static int parse_list(struct parser *p, struct jnode **out)
{
    struct jnode *n;
    MK(n, p, JN_LIST, cur(p));
    next(p);
    struct nvec items = {0};
    while (!is_op(cur(p), JO_RBRACKET)) {
        if (items.n) JTRY(expect_op(p, JO_COMMA, ","));
        if (is_op(cur(p), JO_RBRACKET)) break;
        struct jnode *e;
        JTRY(parse_expression(p, true, &e));
        JTRY(vpush(p, &items, e));
    }
    JTRY(expect_op(p, JO_RBRACKET, "]"));
    set_kids(n, &items);
    *out = n;
    return 0;
}

static int parse_dict(struct parser *p, struct jnode **out)
{
    struct jnode *n;
    MK(n, p, JN_DICT, cur(p));
    next(p);
    struct nvec items = {0};
    while (!is_op(cur(p), JO_RBRACE)) {
        if (items.n) JTRY(expect_op(p, JO_COMMA, ","));
        if (is_op(cur(p), JO_RBRACE)) break;
        struct jnode *k, *v;
        JTRY(parse_expression(p, true, &k));
        JTRY(expect_op(p, JO_COLON, ":"));
        JTRY(parse_expression(p, true, &v));
        JTRY(vpush(p, &items, k));
        JTRY(vpush(p, &items, v));
    }
    JTRY(expect_op(p, JO_RBRACE, "}"));
    set_kids(n, &items);
    *out = n;
    return 0;
}

static int parse_primary(struct parser *p, bool with_namespace, struct jnode **out)
{
    const struct jtok *t = cur(p);
    struct jnode *n;
    if (t->kind == JT_NAME) {
        next(p);
        MK(n, p, JN_CONST, t);
        if (is_name(t, "true") || is_name(t, "True")) n->val = jv_bool(true);
        else if (is_name(t, "false") || is_name(t, "False")) n->val = jv_bool(false);
        else if (is_name(t, "none") || is_name(t, "None")) n->val = jv_none();
        else if (with_namespace && is_op(cur(p), JO_DOT)) {
            next(p);
            const struct jtok *attr = cur(p);
            JTRY(expect_kind(p, JT_NAME, "name"));
            n->kind = JN_NSREF;
            n->id = intern(p, t->s, t->n);
            if (n->id < 0) return p_nomem(p);
            n->val = jv_str(attr->s, attr->n);
        } else {
            n->kind = JN_NAME;
            n->id = intern(p, t->s, t->n);
            if (n->id < 0) return p_nomem(p);
            n->val = jv_str(t->s, t->n);
        }
        *out = n;
        return 0;
    }
    if (t->kind == JT_STRING) {
        MK(n, p, JN_CONST, t);
        next(p);
        if (cur(p)->kind != JT_STRING) {
            n->val = jv_str(t->s, t->n);
        } else {
            struct jsb b;
            jsb_init(&b, p->a);
            jsb_put(&b, t->s, t->n);
            while (cur(p)->kind == JT_STRING) {
                jsb_put(&b, cur(p)->s, cur(p)->n);
                next(p);
            }
            if (b.oom) return p_nomem(p);
            n->val = jv_str(b.p, b.n);
        }
        *out = n;
        return 0;
    }
    if (t->kind == JT_INT || t->kind == JT_FLOAT) {
        MK(n, p, JN_CONST, t);
        n->val = t->kind == JT_INT ? jv_int(t->i) : jv_float(t->f);
        next(p);
        *out = n;
        return 0;
    }
    if (is_op(t, JO_LPAREN)) {
        next(p);
        JTRY(parse_tuple(p, false, true, NULL, true, false, out));
        return expect_op(p, JO_RPAREN, ")");
    }
    if (is_op(t, JO_LBRACKET)) return parse_list(p, out);
    if (is_op(t, JO_LBRACE)) return parse_dict(p, out);
    char d[80];
    describe(t, d, sizeof d);
    return p_fail(p, t, "unexpected '%s'", d);
}

static bool is_tuple_end(struct parser *p, const char *extra_end)
{
    const struct jtok *t = cur(p);
    if (t->kind == JT_VAR_END || t->kind == JT_BLOCK_END || is_op(t, JO_RPAREN)) return true;
    return extra_end && is_name(t, extra_end);
}

static int parse_tuple(struct parser *p, bool simplified, bool with_condexpr, const char *extra_end,
                       bool explicit_parens, bool with_namespace, struct jnode **out)
{
    const struct jtok *start = cur(p);
    struct nvec args = {0};
    bool is_tuple = false;
    for (;;) {
        if (args.n) JTRY(expect_op(p, JO_COMMA, ","));
        if (is_tuple_end(p, extra_end)) break;
        struct jnode *e;
        if (simplified) JTRY(parse_primary(p, with_namespace, &e));
        else JTRY(parse_expression(p, with_condexpr, &e));
        JTRY(vpush(p, &args, e));
        if (is_op(cur(p), JO_COMMA)) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (args.n) {
            *out = args.v[0];
            return 0;
        }
        if (!explicit_parens) {
            char d[80];
            describe(cur(p), d, sizeof d);
            return p_fail(p, cur(p), "Expected an expression, got '%s'", d);
        }
    }
    struct jnode *n;
    MK(n, p, JN_TUPLE, start);
    set_kids(n, &args);
    *out = n;
    return 0;
}

/* (args, kwargs, *dyn, **dyn) of a call or filter into node: kids from kid0 on */
static int parse_call_args(struct parser *p, struct jnode *n, struct jnode *first)
{
    const struct jtok *open = cur(p);
    JTRY(expect_op(p, JO_LPAREN, "("));
    struct nvec pos = {0}, kwv = {0};
    struct jnode *dyn_args = NULL, *dyn_kwargs = NULL;
    struct jv names[64];
    bool need_comma = false;
    while (!is_op(cur(p), JO_RPAREN)) {
        if (need_comma) {
            JTRY(expect_op(p, JO_COMMA, ","));
            if (is_op(cur(p), JO_RPAREN)) break;
        }
        if (is_op(cur(p), JO_MUL)) {
            if (dyn_args || dyn_kwargs) return p_fail(p, open, "invalid syntax for function call expression");
            next(p);
            JTRY(parse_expression(p, true, &dyn_args));
        } else if (is_op(cur(p), JO_POW)) {
            if (dyn_kwargs) return p_fail(p, open, "invalid syntax for function call expression");
            next(p);
            JTRY(parse_expression(p, true, &dyn_kwargs));
        } else if (cur(p)->kind == JT_NAME && is_op(look(p), JO_ASSIGN)) {
            if (dyn_kwargs) return p_fail(p, open, "invalid syntax for function call expression");
            if (kwv.n == 64) return p_fail(p, open, "too many keyword arguments");
            names[kwv.n] = jv_str(cur(p)->s, cur(p)->n);
            next(p);
            next(p);
            struct jnode *v;
            JTRY(parse_expression(p, true, &v));
            JTRY(vpush(p, &kwv, v));
        } else {
            if (dyn_args || dyn_kwargs || kwv.n) return p_fail(p, open, "invalid syntax for function call expression");
            if (pos.n == 1000) return p_fail(p, open, "too many arguments");
            struct jnode *v;
            JTRY(parse_expression(p, true, &v));
            JTRY(vpush(p, &pos, v));
        }
        need_comma = true;
    }
    JTRY(expect_op(p, JO_RPAREN, ")"));
    uint32_t total = 1 + pos.n + (dyn_args ? 1 : 0) + kwv.n + (dyn_kwargs ? 1 : 0);
    JTRY(kids_n(p, n, total));
    uint32_t k = 0;
    n->kids[k++] = first;
    for (uint32_t i = 0; i < pos.n; i++) n->kids[k++] = pos.v[i];
    if (dyn_args) n->kids[k++] = dyn_args, n->flags |= JNF_STAR_ARGS;
    for (uint32_t i = 0; i < kwv.n; i++) n->kids[k++] = kwv.v[i];
    if (dyn_kwargs) n->kids[k++] = dyn_kwargs, n->flags |= JNF_STAR_KWARGS;
    n->npos = (uint16_t)pos.n;
    n->nkw = (uint16_t)kwv.n;
    if (kwv.n) {
        n->kwnames = ja_alloc(p->a, kwv.n * sizeof *n->kwnames);
        if (!n->kwnames) return p_nomem(p);
        memcpy(n->kwnames, names, kwv.n * sizeof *names);
    }
    return 0;
}

static int no_args(struct parser *p, struct jnode *n, struct jnode *first)
{
    JTRY(kids_n(p, n, 1));
    n->kids[0] = first;
    return 0;
}

/* a dotted filter/test name */
static int dotted_name(struct parser *p, struct jv *out)
{
    const struct jtok *t = cur(p);
    JTRY(expect_kind(p, JT_NAME, "name"));
    if (!is_op(cur(p), JO_DOT)) {
        *out = jv_str(t->s, t->n);
        return 0;
    }
    struct jsb b;
    jsb_init(&b, p->a);
    jsb_put(&b, t->s, t->n);
    while (is_op(cur(p), JO_DOT)) {
        next(p);
        const struct jtok *part = cur(p);
        JTRY(expect_kind(p, JT_NAME, "name"));
        jsb_putc(&b, '.');
        jsb_put(&b, part->s, part->n);
    }
    if (b.oom) return p_nomem(p);
    *out = jv_str(b.p, b.n);
    return 0;
}

static int parse_filter(struct parser *p, struct jnode *node, bool start_inline, struct jnode **out)
{
    while (is_op(cur(p), JO_PIPE) || start_inline) {
        if (!start_inline) next(p);
        const struct jtok *t = cur(p);
        struct jnode *f;
        MK(f, p, JN_FILTER, t);
        JTRY(dotted_name(p, &f->val));
        if (is_op(cur(p), JO_LPAREN)) JTRY(parse_call_args(p, f, node));
        else JTRY(no_args(p, f, node));
        f->id = jinja_filter_lookup(f->val.u.s, f->val.n);
        if (f->id < 0) {
            f->flags |= JNF_UNKNOWN;
            JTRY(note_unknown(p, f, t, true));
        }
        node = f;
        start_inline = false;
    }
    *out = node;
    return 0;
}

static int parse_test(struct parser *p, struct jnode *node, struct jnode **out)
{
    const struct jtok *is_tok = next(p);
    bool negated = false;
    if (is_name(cur(p), "not")) {
        next(p);
        negated = true;
    }
    const struct jtok *t = cur(p);
    struct jnode *n;
    MK(n, p, JN_TEST, is_tok);
    JTRY(dotted_name(p, &n->val));
    const struct jtok *c = cur(p);
    if (is_op(c, JO_LPAREN)) {
        JTRY(parse_call_args(p, n, node));
    } else if ((c->kind == JT_NAME || c->kind == JT_STRING || c->kind == JT_INT || c->kind == JT_FLOAT ||
                is_op(c, JO_LBRACKET) || is_op(c, JO_LBRACE)) &&
               !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
        if (is_name(c, "is")) return p_fail(p, c, "You cannot chain multiple tests with is");
        struct jnode *arg;
        JTRY(parse_primary(p, false, &arg));
        JTRY(parse_postfix(p, arg, &arg));
        JTRY(kids_n(p, n, 2));
        n->kids[0] = node;
        n->kids[1] = arg;
        n->npos = 1;
    } else {
        JTRY(no_args(p, n, node));
    }
    n->id = jinja_test_lookup(n->val.u.s, n->val.n);
    if (n->id < 0) {
        n->flags |= JNF_UNKNOWN;
        JTRY(note_unknown(p, n, t, false));
    }
    if (negated) {
        struct jnode *neg;
        MK(neg, p, JN_NOT, is_tok);
        JTRY(kids_n(p, neg, 1));
        neg->kids[0] = n;
        n = neg;
    }
    *out = n;
    return 0;
}

static int parse_subscribed(struct parser *p, struct jnode **out)
{
    const struct jtok *start = cur(p);
    struct jnode *args[3] = {NULL, NULL, NULL};
    if (is_op(cur(p), JO_COLON)) {
        next(p);
    } else {
        JTRY(parse_expression(p, true, &args[0]));
        if (!is_op(cur(p), JO_COLON)) {
            *out = args[0];
            return 0;
        }
        next(p);
    }
    if (!is_op(cur(p), JO_COLON) && !is_op(cur(p), JO_RBRACKET) && !is_op(cur(p), JO_COMMA))
        JTRY(parse_expression(p, true, &args[1]));
    if (is_op(cur(p), JO_COLON)) {
        next(p);
        if (!is_op(cur(p), JO_RBRACKET) && !is_op(cur(p), JO_COMMA)) JTRY(parse_expression(p, true, &args[2]));
    }
    struct jnode *n;
    MK(n, p, JN_SLICE, start);
    JTRY(kids_n(p, n, 3));
    memcpy(n->kids, args, sizeof args);
    *out = n;
    return 0;
}

static int parse_subscript(struct parser *p, struct jnode *node, struct jnode **out)
{
    const struct jtok *t = next(p);
    struct jnode *n;
    if (is_op(t, JO_DOT)) {
        const struct jtok *attr = next(p);
        if (attr->kind == JT_NAME) {
            MK(n, p, JN_GETATTR, t);
            JTRY(no_args(p, n, node));
            n->val = jv_str(attr->s, attr->n);
            *out = n;
            return 0;
        }
        if (attr->kind != JT_INT) return p_fail(p, attr, "expected name or number");
        struct jnode *c;
        MK(c, p, JN_CONST, attr);
        c->val = jv_int(attr->i);
        MK(n, p, JN_GETITEM, t);
        JTRY(kids_n(p, n, 2));
        n->kids[0] = node;
        n->kids[1] = c;
        *out = n;
        return 0;
    }
    /* '[' */
    struct nvec args = {0};
    while (!is_op(cur(p), JO_RBRACKET)) {
        if (args.n) JTRY(expect_op(p, JO_COMMA, ","));
        struct jnode *a = NULL;
        JTRY(parse_subscribed(p, &a));
        JTRY(vpush(p, &args, a));
    }
    JTRY(expect_op(p, JO_RBRACKET, "]"));
    struct jnode *arg;
    if (args.n == 1) {
        arg = args.v[0];
    } else {
        MK(arg, p, JN_TUPLE, t);
        set_kids(arg, &args);
    }
    MK(n, p, JN_GETITEM, t);
    JTRY(kids_n(p, n, 2));
    n->kids[0] = node;
    n->kids[1] = arg;
    *out = n;
    return 0;
}

static int parse_call(struct parser *p, struct jnode *node, struct jnode **out)
{
    struct jnode *n;
    MK(n, p, JN_CALL, cur(p));
    JTRY(parse_call_args(p, n, node));
    *out = n;
    return 0;
}

static int parse_postfix(struct parser *p, struct jnode *node, struct jnode **out)
{
    for (;;) {
        const struct jtok *t = cur(p);
        if (is_op(t, JO_DOT) || is_op(t, JO_LBRACKET)) JTRY(parse_subscript(p, node, &node));
        else if (is_op(t, JO_LPAREN)) JTRY(parse_call(p, node, &node));
        else break;
    }
    *out = node;
    return 0;
}

static int parse_filter_expr(struct parser *p, struct jnode *node, struct jnode **out)
{
    for (;;) {
        const struct jtok *t = cur(p);
        if (is_op(t, JO_PIPE)) JTRY(parse_filter(p, node, false, &node));
        else if (is_name(t, "is")) JTRY(parse_test(p, node, &node));
        else if (is_op(t, JO_LPAREN)) JTRY(parse_call(p, node, &node));
        else break;
    }
    *out = node;
    return 0;
}

static int parse_unary(struct parser *p, bool with_filter, struct jnode **out)
{
    JTRY(enter(p));
    const struct jtok *t = cur(p);
    struct jnode *node;
    if (is_op(t, JO_SUB) || is_op(t, JO_ADD)) {
        next(p);
        MK(node, p, is_op(t, JO_SUB) ? JN_NEG : JN_POS, t);
        JTRY(kids_n(p, node, 1));
        JTRY(parse_unary(p, false, &node->kids[0]));
    } else {
        JTRY(parse_primary(p, false, &node));
    }
    JTRY(parse_postfix(p, node, &node));
    if (with_filter) JTRY(parse_filter_expr(p, node, &node));
    p->depth--;
    *out = node;
    return 0;
}

static int binary(struct parser *p, int kind, int op, const struct jtok *t, struct jnode *l, struct jnode *r,
                  struct jnode **out)
{
    struct jnode *n;
    MK(n, p, kind, t);
    n->op = (uint8_t)op;
    JTRY(kids_n(p, n, 2));
    n->kids[0] = l;
    n->kids[1] = r;
    *out = n;
    return 0;
}

static int parse_pow(struct parser *p, struct jnode **out)
{
    const struct jtok *start = cur(p);
    JTRY(parse_unary(p, true, out));
    while (is_op(cur(p), JO_POW)) {
        next(p);
        struct jnode *r;
        JTRY(parse_unary(p, true, &r));
        JTRY(binary(p, JN_BINOP, JO_POW, start, *out, r, out));
    }
    return 0;
}

static int parse_math2(struct parser *p, struct jnode **out)
{
    const struct jtok *start = cur(p);
    JTRY(parse_pow(p, out));
    for (;;) {
        const struct jtok *t = cur(p);
        if (!(is_op(t, JO_MUL) || is_op(t, JO_DIV) || is_op(t, JO_FLOORDIV) || is_op(t, JO_MOD))) return 0;
        next(p);
        struct jnode *r;
        JTRY(parse_pow(p, &r));
        JTRY(binary(p, JN_BINOP, t->op, start, *out, r, out));
    }
}

static int parse_concat(struct parser *p, struct jnode **out)
{
    const struct jtok *start = cur(p);
    struct jnode *first;
    JTRY(parse_math2(p, &first));
    if (!is_op(cur(p), JO_TILDE)) {
        *out = first;
        return 0;
    }
    struct nvec args = {0};
    JTRY(vpush(p, &args, first));
    while (is_op(cur(p), JO_TILDE)) {
        next(p);
        struct jnode *e;
        JTRY(parse_math2(p, &e));
        JTRY(vpush(p, &args, e));
    }
    struct jnode *n;
    MK(n, p, JN_CONCAT, start);
    set_kids(n, &args);
    *out = n;
    return 0;
}

static int parse_math1(struct parser *p, struct jnode **out)
{
    const struct jtok *start = cur(p);
    JTRY(parse_concat(p, out));
    for (;;) {
        const struct jtok *t = cur(p);
        if (!(is_op(t, JO_ADD) || is_op(t, JO_SUB))) return 0;
        next(p);
        struct jnode *r;
        JTRY(parse_concat(p, &r));
        JTRY(binary(p, JN_BINOP, t->op, start, *out, r, out));
    }
}

static int parse_compare(struct parser *p, struct jnode **out)
{
    const struct jtok *start = cur(p);
    struct jnode *first;
    JTRY(parse_math1(p, &first));
    struct nvec ops = {0};
    for (;;) {
        const struct jtok *t = cur(p);
        int op;
        if (t->kind == JT_OP && (t->op == JO_EQ || t->op == JO_NE || t->op == JO_LT || t->op == JO_LTEQ ||
                                 t->op == JO_GT || t->op == JO_GTEQ)) {
            op = t->op;
            next(p);
        } else if (is_name(t, "in")) {
            op = JO_IN;
            next(p);
        } else if (is_name(t, "not") && is_name(look(p), "in")) {
            op = JO_NOTIN;
            next(p);
            next(p);
        } else {
            break;
        }
        struct jnode *o;
        MK(o, p, JN_OPERAND, t);
        o->op = (uint8_t)op;
        JTRY(kids_n(p, o, 1));
        JTRY(parse_math1(p, &o->kids[0]));
        JTRY(vpush(p, &ops, o));
    }
    if (!ops.n) {
        *out = first;
        return 0;
    }
    struct jnode *n;
    MK(n, p, JN_COMPARE, start);
    JTRY(kids_n(p, n, ops.n + 1));
    n->kids[0] = first;
    memcpy(n->kids + 1, ops.v, ops.n * sizeof *ops.v);
    *out = n;
    return 0;
}

static int parse_not(struct parser *p, struct jnode **out)
{
    if (is_name(cur(p), "not")) {
        JTRY(enter(p));
        struct jnode *n;
        MK(n, p, JN_NOT, next(p));
        JTRY(kids_n(p, n, 1));
        JTRY(parse_not(p, &n->kids[0]));
        p->depth--;
        *out = n;
        return 0;
    }
    return parse_compare(p, out);
}

/* operand (word operand)*, left-associative: the shape of both 'and' and 'or' */
static int parse_logical(struct parser *p, const char *word, int kind, int (*operand)(struct parser *, struct jnode **),
                         struct jnode **out)
{
    const struct jtok *start = cur(p);
    JTRY(operand(p, out));
    while (is_name(cur(p), word)) {
        next(p);
        struct jnode *r;
        JTRY(operand(p, &r));
        JTRY(binary(p, kind, 0, start, *out, r, out));
    }
    return 0;
}

static int parse_and(struct parser *p, struct jnode **out) { return parse_logical(p, "and", JN_AND, parse_not, out); }

static int parse_or(struct parser *p, struct jnode **out) { return parse_logical(p, "or", JN_OR, parse_and, out); }

static int parse_condexpr(struct parser *p, struct jnode **out)
{
    const struct jtok *start = cur(p);
    size_t unknown_mark = p->n_unknown;
    JTRY(parse_or(p, out));
    bool cond = false;
    while (is_name(cur(p), "if")) {
        next(p);
        struct jnode *n;
        MK(n, p, JN_CONDEXPR, start);
        JTRY(kids_n(p, n, 3));
        n->kids[1] = *out;
        JTRY(parse_or(p, &n->kids[0]));
        if (is_name(cur(p), "else")) {
            next(p);
            JTRY(parse_condexpr(p, &n->kids[2]));
        }
        *out = n;
        cond = true;
    }
    /* jinja2 compiles an inline if in a soft frame: unknown filters there fail only when run */
    if (cond)
        for (size_t i = unknown_mark; i < p->n_unknown; i++) p->unknown[i].soft = true;
    return 0;
}

static int parse_expression(struct parser *p, bool with_condexpr, struct jnode **out)
{
    JTRY(enter(p));
    int rc = with_condexpr ? parse_condexpr(p, out) : parse_or(p, out);
    p->depth--;
    return rc;
}

/* ------------------------------------------------------------------ statements */

static int subparse(struct parser *p, const char *const *end_tokens, struct jnode **out);

static bool can_assign(const struct jnode *n)
{
    if (n->kind == JN_NAME || n->kind == JN_NSREF) return true;
    if (n->kind != JN_TUPLE) return false;
    for (uint32_t i = 0; i < n->nkids; i++)
        if (!can_assign(n->kids[i])) return false;
    return true;
}

static int parse_assign_target(struct parser *p, bool name_only, const char *extra_end, bool with_namespace,
                               struct jnode **out)
{
    const struct jtok *t = cur(p);
    if (name_only) {
        JTRY(expect_kind(p, JT_NAME, "name"));
        struct jnode *n;
        MK(n, p, JN_NAME, t);
        n->id = intern(p, t->s, t->n);
        if (n->id < 0) return p_nomem(p);
        n->val = jv_str(t->s, t->n);
        *out = n;
        return 0;
    }
    JTRY(parse_tuple(p, true, true, extra_end, false, with_namespace, out));
    if (!can_assign(*out)) {
        const char *what = (*out)->kind == JN_CONST ? "const" : (*out)->kind == JN_LIST ? "list" : (*out)->kind == JN_DICT ? "dict" : "tuple";
        return p_fail(p, t, "can't assign to '%s'", what);
    }
    return 0;
}

/* Parses "%}" body until one of end_tokens; leaves the end token current
 * (consumed when drop_needle). */
static int parse_statements(struct parser *p, const char *const *end_tokens, bool drop_needle, struct jnode **out)
{
    if (is_op(cur(p), JO_COLON)) next(p);
    JTRY(expect_kind(p, JT_BLOCK_END, "end of statement block"));
    JTRY(subparse(p, end_tokens, out));
    if (cur(p)->kind == JT_EOF) {
        /* jinja2's fail_eof */
        char looking[160] = "";
        for (int i = 0; end_tokens[i]; i++)
            snprintf(looking + strlen(looking), sizeof looking - strlen(looking), "%s'%s'", i ? " or " : "", end_tokens[i]);
        return p_fail(p, cur(p),
                      "Unexpected end of template. Jinja was looking for the following tags: %s. The innermost block "
                      "that needs to be closed is '%s'.",
                      looking, p->n_tag ? p->tag_stack[p->n_tag - 1] : "?");
    }
    if (drop_needle) next(p);
    return 0;
}

static int parse_for(struct parser *p, const struct jtok *t, struct jnode **out)
{
    static const char *const body_end[] = {"endfor", "else", NULL};
    static const char *const else_end[] = {"endfor", NULL};
    struct jnode *n;
    MK(n, p, JN_FOR, t);
    JTRY(kids_n(p, n, 5));
    int soft = p->soft;
    p->soft = 0;
    JTRY(parse_assign_target(p, false, "in", false, &n->kids[0]));
    JTRY(expect_name(p, "in"));
    p->soft = soft;
    JTRY(parse_tuple(p, false, false, "recursive", false, false, &n->kids[1]));
    p->soft = 0;
    if (is_name(cur(p), "if")) {
        next(p);
        JTRY(parse_expression(p, true, &n->kids[2]));
    }
    if (is_name(cur(p), "recursive")) return p_fail(p, cur(p), "recursive for-loops are not supported");
    p->loops++;
    JTRY(parse_statements(p, body_end, false, &n->kids[3]));
    p->loops--;
    if (!is_name(next(p), "endfor")) JTRY(parse_statements(p, else_end, true, &n->kids[4]));
    p->soft = soft;
    *out = n;
    return 0;
}

static int parse_if(struct parser *p, const struct jtok *t, struct jnode **out)
{
    static const char *const body_end[] = {"elif", "else", "endif", NULL};
    static const char *const else_end[] = {"endif", NULL};
    struct jnode *n, *result;
    MK(n, p, JN_IF, t);
    result = n;
    p->soft++;
    for (;;) {
        JTRY(kids_n(p, n, 3));
        JTRY(parse_tuple(p, false, false, NULL, false, false, &n->kids[0]));
        JTRY(parse_statements(p, body_end, false, &n->kids[1]));
        const struct jtok *end = next(p);
        if (is_name(end, "elif")) {
            struct jnode *e;
            MK(e, p, JN_IF, cur(p));
            n->kids[2] = e;
            n = e;
            continue;
        }
        if (is_name(end, "else")) JTRY(parse_statements(p, else_end, true, &n->kids[2]));
        break;
    }
    p->soft--;
    *out = result;
    return 0;
}

static bool uses_name(const struct jnode *n, int32_t sym)
{
    if (!n) return false;
    if (n->kind == JN_NAME && n->id == sym) return true;
    for (uint32_t i = 0; i < n->nkids; i++)
        if (uses_name(n->kids[i], sym)) return true;
    return false;
}

/* (a, b=1, ...) into macro node m: kids = body, params, defaults */
static int parse_signature(struct parser *p, struct jnode *m)
{
    JTRY(expect_op(p, JO_LPAREN, "("));
    struct nvec params = {0}, defaults = {0};
    while (!is_op(cur(p), JO_RPAREN)) {
        if (params.n) JTRY(expect_op(p, JO_COMMA, ","));
        if (is_op(cur(p), JO_RPAREN)) break;
        struct jnode *arg;
        JTRY(parse_assign_target(p, true, NULL, false, &arg));
        if (is_op(cur(p), JO_ASSIGN)) {
            next(p);
            struct jnode *d;
            JTRY(parse_expression(p, true, &d));
            JTRY(vpush(p, &defaults, d));
        } else if (defaults.n) {
            return p_fail(p, cur(p), "non-default argument follows default argument");
        }
        if (params.n == 200) return p_fail(p, cur(p), "too many macro parameters");
        JTRY(vpush(p, &params, arg));
    }
    JTRY(expect_op(p, JO_RPAREN, ")"));
    JTRY(kids_n(p, m, 1 + params.n + defaults.n));
    for (uint32_t i = 0; i < params.n; i++) m->kids[1 + i] = params.v[i];
    for (uint32_t i = 0; i < defaults.n; i++) m->kids[1 + params.n + i] = defaults.v[i];
    m->npos = (uint16_t)params.n;
    m->nkw = (uint16_t)defaults.n;
    return 0;
}

/* What the body of a macro (or caller) reads decides what it accepts. */
static void macro_flags(struct jnode *m)
{
    static const struct {
        int32_t sym;
        uint16_t flag;
    } implicit[] = {{JSYM_VARARGS, JNF_VARARGS}, {JSYM_KWARGS, JNF_KWARGS}, {JSYM_CALLER, JNF_CALLER}};
    for (size_t k = 0; k < 3; k++) {
        bool param = false;
        for (uint32_t i = 0; i < m->npos; i++) param = param || m->kids[1 + i]->id == implicit[k].sym;
        if (!param && uses_name(m->kids[0], implicit[k].sym)) m->flags |= implicit[k].flag;
    }
}

static int parse_function_body(struct parser *p, struct jnode *m, const char *const *end)
{
    int loops = p->loops, soft = p->soft;
    p->loops = 0; /* break/continue do not cross a macro */
    p->soft = 0;
    JTRY(parse_statements(p, end, true, &m->kids[0]));
    p->loops = loops;
    p->soft = soft;
    macro_flags(m);
    return 0;
}

static int parse_macro(struct parser *p, const struct jtok *t, struct jnode **out)
{
    static const char *const end[] = {"endmacro", NULL};
    struct jnode *m, *name;
    MK(m, p, JN_MACRO, t);
    JTRY(parse_assign_target(p, true, NULL, false, &name));
    m->id = name->id;
    m->val = name->val;
    JTRY(parse_signature(p, m));
    JTRY(parse_function_body(p, m, end));
    *out = m;
    return 0;
}

static int parse_call_block(struct parser *p, const struct jtok *t, struct jnode **out)
{
    static const char *const end[] = {"endcall", NULL};
    struct jnode *n, *caller;
    MK(n, p, JN_CALLBLOCK, t);
    MK(caller, p, JN_MACRO, t);
    caller->val = jv_str("caller", 6);
    caller->id = JSYM_CALLER;
    if (is_op(cur(p), JO_LPAREN)) JTRY(parse_signature(p, caller));
    else JTRY(kids_n(p, caller, 1));
    JTRY(kids_n(p, n, 2));
    JTRY(parse_expression(p, true, &n->kids[0]));
    if (n->kids[0]->kind != JN_CALL) return p_fail(p, t, "expected call");
    JTRY(parse_function_body(p, caller, end));
    n->kids[1] = caller;
    *out = n;
    return 0;
}

static int parse_inner_body(struct parser *p, const char *const *end, struct jnode **out)
{
    int soft = p->soft;
    p->soft = 0;
    JTRY(parse_statements(p, end, true, out));
    p->soft = soft;
    return 0;
}

static int parse_set(struct parser *p, const struct jtok *t, struct jnode **out)
{
    static const char *const end[] = {"endset", NULL};
    struct jnode *n, *target;
    JTRY(parse_assign_target(p, false, NULL, true, &target));
    if (is_op(cur(p), JO_ASSIGN)) {
        next(p);
        MK(n, p, JN_SET, t);
        JTRY(kids_n(p, n, 2));
        n->kids[0] = target;
        JTRY(parse_tuple(p, false, true, NULL, false, false, &n->kids[1]));
        *out = n;
        return 0;
    }
    MK(n, p, JN_SETBLOCK, t);
    JTRY(kids_n(p, n, 3));
    n->kids[0] = target;
    JTRY(parse_filter(p, NULL, false, &n->kids[2]));
    JTRY(parse_inner_body(p, end, &n->kids[1]));
    *out = n;
    return 0;
}

static int parse_with(struct parser *p, const struct jtok *t, struct jnode **out)
{
    static const char *const end[] = {"endwith", NULL};
    struct nvec targets = {0}, values = {0};
    while (cur(p)->kind != JT_BLOCK_END) {
        if (targets.n) JTRY(expect_op(p, JO_COMMA, ","));
        struct jnode *target, *value;
        JTRY(parse_assign_target(p, false, NULL, false, &target));
        JTRY(expect_op(p, JO_ASSIGN, "="));
        JTRY(parse_expression(p, true, &value));
        JTRY(vpush(p, &targets, target));
        JTRY(vpush(p, &values, value));
    }
    struct jnode *n;
    MK(n, p, JN_WITH, t);
    JTRY(kids_n(p, n, 1 + 2 * targets.n));
    for (uint32_t i = 0; i < targets.n; i++) {
        n->kids[1 + i] = targets.v[i];
        n->kids[1 + targets.n + i] = values.v[i];
    }
    n->npos = (uint16_t)targets.n;
    JTRY(parse_inner_body(p, end, &n->kids[0]));
    *out = n;
    return 0;
}

static int parse_statement_body(struct parser *p, const struct jtok *t, struct jnode **out)
{
    if (is_name(t, "for")) return parse_for(p, t, out);
    if (is_name(t, "if")) return parse_if(p, t, out);
    if (is_name(t, "set")) return parse_set(p, t, out);
    if (is_name(t, "macro")) return parse_macro(p, t, out);
    if (is_name(t, "call")) return parse_call_block(p, t, out);
    if (is_name(t, "with")) return parse_with(p, t, out);
    struct jnode *n;
    if (is_name(t, "filter")) {
        static const char *const end[] = {"endfilter", NULL};
        MK(n, p, JN_FILTERBLOCK, t);
        JTRY(kids_n(p, n, 2));
        JTRY(parse_filter(p, NULL, true, &n->kids[1]));
        JTRY(parse_inner_body(p, end, &n->kids[0]));
        *out = n;
        return 0;
    }
    if (is_name(t, "generation")) {
        static const char *const end[] = {"endgeneration", NULL};
        MK(n, p, JN_SCOPE, t);
        JTRY(kids_n(p, n, 1));
        JTRY(parse_inner_body(p, end, &n->kids[0]));
        *out = n;
        return 0;
    }
    if (is_name(t, "print")) {
        struct nvec exprs = {0};
        while (cur(p)->kind != JT_BLOCK_END) {
            if (exprs.n) JTRY(expect_op(p, JO_COMMA, ","));
            struct jnode *e;
            JTRY(parse_expression(p, true, &e));
            JTRY(vpush(p, &exprs, e));
        }
        MK(n, p, JN_PRINT, t);
        set_kids(n, &exprs);
        *out = n;
        return 0;
    }
    if (is_name(t, "break") || is_name(t, "continue")) {
        if (!p->loops) return p_fail(p, t, "'%.*s' outside loop", (int)t->n, t->s);
        MK(n, p, is_name(t, "break") ? JN_BREAK : JN_CONTINUE, t);
        *out = n;
        return 0;
    }
    return 1;
}

static int fail_unknown_tag(struct parser *p, const struct jtok *t)
{
    char msg[512];
    snprintf(msg, sizeof msg, "Encountered unknown tag '%.*s'.", (int)t->n, t->s);
    if (p->n_end) {
        bool expected = false;
        for (int i = 0; i < p->n_end; i++)
            for (int k = 0; k < 3 && p->end_stack[i][k]; k++) expected = expected || is_name(t, p->end_stack[i][k]);
        char looking[160] = "";
        const char *const *top = p->end_stack[p->n_end - 1];
        for (int k = 0; k < 3 && top[k]; k++)
            snprintf(looking + strlen(looking), sizeof looking - strlen(looking), "%s'%s'", k ? " or " : "", top[k]);
        if (expected)
            snprintf(msg + strlen(msg), sizeof msg - strlen(msg),
                     " You probably made a nesting mistake. Jinja is expecting this tag, but currently looking for %s.",
                     looking);
        else
            snprintf(msg + strlen(msg), sizeof msg - strlen(msg), " Jinja was looking for the following tags: %s.",
                     looking);
    }
    if (p->n_tag)
        snprintf(msg + strlen(msg), sizeof msg - strlen(msg), " The innermost block that needs to be closed is '%s'.",
                 p->tag_stack[p->n_tag - 1]);
    return p_fail(p, t, "%s", msg);
}

static int parse_statement(struct parser *p, struct jnode **out)
{
    const struct jtok *t = cur(p);
    if (t->kind != JT_NAME) return p_fail(p, t, "tag name expected");
    static const char *const unsupported[] = {"block", "extends", "include", "import", "from", "autoescape", NULL};
    for (int i = 0; unsupported[i]; i++)
        if (is_name(t, unsupported[i])) return p_fail(p, t, "'%s' tags are not supported in chat templates", unsupported[i]);
    JTRY(enter(p));
    if (p->n_tag == MAX_END_STACK) return p_fail(p, t, "template nesting too deep");
    char *tag = ja_memdup(p->a, t->s, t->n);
    if (!tag) return p_nomem(p);
    p->tag_stack[p->n_tag++] = tag;
    next(p);
    int rc = parse_statement_body(p, t, out);
    p->n_tag--;
    p->depth--;
    if (rc > 0) return fail_unknown_tag(p, t);
    return rc;
}

static int subparse(struct parser *p, const char *const *end_tokens, struct jnode **out)
{
    struct jnode *block;
    MK(block, p, JN_BLOCK, cur(p));
    struct nvec body = {0};
    if (end_tokens) {
        if (p->n_end == MAX_END_STACK) return p_fail(p, cur(p), "template nesting too deep");
        for (int k = 0; k < 3; k++) p->end_stack[p->n_end][k] = NULL;
        for (int k = 0; k < 3 && end_tokens[k]; k++) p->end_stack[p->n_end][k] = end_tokens[k];
        p->n_end++;
    }
    for (;;) {
        const struct jtok *t = cur(p);
        struct jnode *n = NULL;
        if (t->kind == JT_EOF) break;
        if (t->kind == JT_DATA) {
            MK(n, p, JN_DATA, t);
            n->val = jv_str(t->s, t->n);
            next(p);
        } else if (t->kind == JT_VAR_BEGIN) {
            next(p);
            MK(n, p, JN_PRINT, t);
            JTRY(kids_n(p, n, 1));
            JTRY(parse_tuple(p, false, true, NULL, false, false, &n->kids[0]));
            JTRY(expect_kind(p, JT_VAR_END, "end of print statement"));
        } else if (t->kind == JT_BLOCK_BEGIN) {
            next(p);
            bool at_end = false;
            for (int k = 0; end_tokens && end_tokens[k]; k++) at_end = at_end || is_name(cur(p), end_tokens[k]);
            if (at_end) break;
            JTRY(parse_statement(p, &n));
            JTRY(expect_kind(p, JT_BLOCK_END, "end of statement block"));
        } else {
            return p_fail(p, t, "internal parsing error");
        }
        JTRY(vpush(p, &body, n));
    }
    if (end_tokens) p->n_end--;
    set_kids(block, &body);
    *out = block;
    return 0;
}

int jinja_parse(struct jinja_template *t, const struct jtoks *toks, char *err, size_t errlen)
{
    struct parser p;
    memset(&p, 0, sizeof p);
    p.t = t;
    p.a = &t->a;
    p.tok = toks->v;
    p.ntok = toks->n;
    p.err = err;
    p.errlen = errlen;
    static const char *const fixed[] = {"loop", "caller", "varargs", "kwargs"};
    for (int i = 0; i < JSYM_FIRST_FREE; i++)
        if (intern(&p, fixed[i], strlen(fixed[i])) < 0) return p_nomem(&p);
    JTRY(subparse(&p, NULL, &t->root));
    for (size_t i = 0; i < p.n_unknown; i++) {
        const struct unknown_ref *u = &p.unknown[i];
        if (!u->soft)
            return p_fail(&p, u->tok, "No %s named '%.*s'.", u->filter ? "filter" : "test", (int)u->node->val.n,
                          u->node->val.u.s);
    }
    return 0;
}
