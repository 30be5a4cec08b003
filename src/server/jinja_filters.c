/* SPDX-License-Identifier: Apache-2.0
 *
 * jinja_filters.c: jinja2's built-in filters and tests, with their argument
 * names and defaults, as transformers' environment has them (its tojson is
 * json.dumps(x, ensure_ascii=False, indent=None, separators=None,
 * sort_keys=False), not jinja2's HTML-safe one). Filters that jinja2 writes
 * as generators (select, map, unique, batch, items, reverse...) return lists
 * marked as generators, so they print, test and measure as jinja2's do.
 *
 * Deliberately not supported (an error that says so): random (not
 * reproducible), urlize, wordwrap. pprint prints like repr() (pformat only
 * differs for values wider than 80 columns). escape/safe produce plain
 * strings: no Markup type (autoescape is off in transformers).
 *
 * Layer: server.
 */
#include "jinja_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ name tables */

static const char *const g_filter_names[JF_COUNT_ALL] = {
    [JF_ABS] = "abs", [JF_ATTR] = "attr", [JF_BATCH] = "batch", [JF_CAPITALIZE] = "capitalize",
    [JF_CENTER] = "center", [JF_COUNT] = "count", [JF_DEFAULT] = "default", [JF_DICTSORT] = "dictsort",
    [JF_ESCAPE] = "escape", [JF_FILESIZEFORMAT] = "filesizeformat", [JF_FIRST] = "first", [JF_FLOAT] = "float",
    [JF_FORCEESCAPE] = "forceescape", [JF_FORMAT] = "format", [JF_GROUPBY] = "groupby", [JF_INDENT] = "indent",
    [JF_INT] = "int", [JF_JOIN] = "join", [JF_LAST] = "last", [JF_LENGTH] = "length", [JF_LIST] = "list",
    [JF_LOWER] = "lower", [JF_ITEMS] = "items", [JF_MAP] = "map", [JF_MIN] = "min", [JF_MAX] = "max",
    [JF_PPRINT] = "pprint", [JF_RANDOM] = "random", [JF_REJECT] = "reject", [JF_REJECTATTR] = "rejectattr",
    [JF_REPLACE] = "replace", [JF_REVERSE] = "reverse", [JF_ROUND] = "round", [JF_SAFE] = "safe",
    [JF_SELECT] = "select", [JF_SELECTATTR] = "selectattr", [JF_SLICE] = "slice", [JF_SORT] = "sort",
    [JF_STRING] = "string", [JF_STRIPTAGS] = "striptags", [JF_SUM] = "sum", [JF_TITLE] = "title",
    [JF_TRIM] = "trim", [JF_TRUNCATE] = "truncate", [JF_UNIQUE] = "unique", [JF_UPPER] = "upper",
    [JF_URLENCODE] = "urlencode", [JF_URLIZE] = "urlize", [JF_WORDCOUNT] = "wordcount",
    [JF_WORDWRAP] = "wordwrap", [JF_XMLATTR] = "xmlattr", [JF_TOJSON] = "tojson",
};

static const char *const g_test_names[JTS_COUNT_ALL] = {
    [JTS_ODD] = "odd", [JTS_EVEN] = "even", [JTS_DIVISIBLEBY] = "divisibleby", [JTS_DEFINED] = "defined",
    [JTS_UNDEFINED] = "undefined", [JTS_FILTER] = "filter", [JTS_TEST] = "test", [JTS_NONE] = "none",
    [JTS_BOOLEAN] = "boolean", [JTS_FALSE] = "false", [JTS_TRUE] = "true", [JTS_INTEGER] = "integer",
    [JTS_FLOAT_T] = "float", [JTS_LOWER] = "lower", [JTS_UPPER] = "upper", [JTS_STRING] = "string",
    [JTS_MAPPING] = "mapping", [JTS_NUMBER] = "number", [JTS_SEQUENCE] = "sequence", [JTS_ITERABLE] = "iterable",
    [JTS_CALLABLE] = "callable", [JTS_SAMEAS] = "sameas", [JTS_ESCAPED] = "escaped", [JTS_IN] = "in", [JTS_EQ] = "eq",
    [JTS_NE] = "ne", [JTS_GT] = "gt", [JTS_GE] = "ge", [JTS_LT] = "lt", [JTS_LE] = "le",
};

static const struct {
    const char *name;
    int id;
} g_test_aliases[] = {
    {"==", JTS_EQ}, {"equalto", JTS_EQ}, {"!=", JTS_NE}, {">", JTS_GT}, {"greaterthan", JTS_GT}, {">=", JTS_GE},
    {"<", JTS_LT}, {"lessthan", JTS_LT}, {"<=", JTS_LE},
};

static bool same_name(const char *s, size_t n, const char *lit) { return lit && strlen(lit) == n && memcmp(s, lit, n) == 0; }

int jinja_filter_lookup(const char *s, size_t n)
{
    if (same_name(s, n, "d")) return JF_DEFAULT;
    if (same_name(s, n, "e")) return JF_ESCAPE;
    for (int i = 0; i < JF_COUNT_ALL; i++)
        if (same_name(s, n, g_filter_names[i])) return i;
    return -1;
}

int jinja_test_lookup(const char *s, size_t n)
{
    for (int i = 0; i < JTS_COUNT_ALL; i++)
        if (same_name(s, n, g_test_names[i])) return i;
    for (size_t i = 0; i < sizeof g_test_aliases / sizeof g_test_aliases[0]; i++)
        if (same_name(s, n, g_test_aliases[i].name)) return g_test_aliases[i].id;
    return -1;
}

int jinja_test_by_name(struct jr *r, struct jv name, int *id)
{
    struct jv s;
    JTRY(jv_to_str(r, name, &s));
    *id = jinja_test_lookup(s.u.s, s.n);
    if (*id < 0) return jr_fail(r, IFD_ERR_INVALID, "No test named '%.*s'.", (int)s.n, s.u.s);
    return 0;
}

/* ------------------------------------------------------------------ helpers */

static struct jv kw_or(const struct jv *v, struct jv dflt) { return v->kind == JV_UNBOUND ? dflt : *v; }

static int to_str(struct jr *r, struct jv v, struct jv *out) { return jv_to_str(r, v, out); }

static int make_gen(struct jr *r, uint32_t n, struct jv *out)
{
    JTRY(jr_new_list(r, JV_LIST, n, out));
    out->sub = JL_GEN;
    return 0;
}

/* jinja2's make_attrgetter: "a.b.0" walks getitem (item first, then attribute). */
static int attr_get(struct jr *r, struct jv attribute, struct jv item, struct jv dflt, struct jv *out)
{
    if (attribute.kind == JV_NONE || attribute.kind == JV_UNBOUND) {
        *out = item;
        return 0;
    }
    if (attribute.kind != JV_STR) {
        JTRY(jinja_getitem(r, item, attribute, &item));
    } else {
        size_t i = 0;
        const char *s = attribute.u.s;
        while (i <= attribute.n) {
            size_t j = i;
            while (j < attribute.n && s[j] != '.') j++;
            bool digits = j > i;
            int64_t idx = 0;
            for (size_t k = i; k < j && digits; k++) {
                digits = s[k] >= '0' && s[k] <= '9';
                idx = idx * 10 + (s[k] - '0');
                if (idx > INT32_MAX) digits = false;
            }
            JTRY(jinja_getitem(r, item, digits ? jv_int(idx) : jv_str(s + i, j - i), &item));
            if (dflt.kind != JV_NONE && dflt.kind != JV_UNBOUND && item.kind == JV_UNDEF) item = dflt;
            i = j + 1;
        }
    }
    *out = item;
    return 0;
}

static int lower_if_str(struct jr *r, struct jv v, bool case_sensitive, struct jv *out)
{
    if (!case_sensitive && v.kind == JV_STR) return jstr_case(r, v, JC_LOWER, out);
    *out = v;
    return 0;
}

/* Stable merge sort of idx[] by keys[], Python's sorted(..., reverse=): only "<" is used. */
static int sort_idx(struct jr *r, const struct jv *keys, uint32_t *idx, uint32_t *tmp, uint32_t n, bool reverse)
{
    if (n < 2) return 0;
    uint32_t h = n / 2;
    JTRY(sort_idx(r, keys, idx, tmp, h, reverse));
    JTRY(sort_idx(r, keys, idx + h, tmp, n - h, reverse));
    uint32_t i = 0, j = h, k = 0;
    while (i < h && j < n) {
        bool take_right;
        if (reverse) JTRY(jv_lt(r, keys[idx[i]], keys[idx[j]], &take_right));
        else JTRY(jv_lt(r, keys[idx[j]], keys[idx[i]], &take_right));
        tmp[k++] = take_right ? idx[j++] : idx[i++];
    }
    while (i < h) tmp[k++] = idx[i++];
    while (j < n) tmp[k++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
    return jr_steps(r, n);
}

/* Sorts items by keys, writing the permutation into a new list of kind. */
static int sorted_by(struct jr *r, const struct jv *items, const struct jv *keys, uint32_t n, bool reverse, struct jv *out)
{
    uint32_t *idx = jr_alloc(r, (n + 1) * sizeof *idx), *tmp = jr_alloc(r, (n + 1) * sizeof *tmp);
    if (!idx || !tmp) return IFD_ERR_NOMEM;
    for (uint32_t i = 0; i < n; i++) idx[i] = i;
    JTRY(sort_idx(r, keys, idx, tmp, n, reverse));
    JTRY(jr_new_list(r, JV_LIST, n, out));
    for (uint32_t i = 0; i < n; i++) out->u.l->v[i] = items[idx[i]];
    return 0;
}

static int iter_of(struct jr *r, struct jv v, const struct jv **items, uint32_t *n)
{
    if (v.kind == JV_UNDEF) {
        *items = NULL;
        *n = 0;
        return 0;
    }
    return jv_iter(r, v, items, n);
}

/* ------------------------------------------------------------------ individual filters */

static int f_abs(struct jr *r, struct jv v, struct jv *out)
{
    if (v.kind == JV_FLOAT) *out = jv_float(fabs(v.u.f));
    else if (jv_is_intlike(v)) {
        if (v.u.i == INT64_MIN) return jr_fail(r, IFD_ERR_RANGE, "integer overflow (template integers are 64-bit)");
        *out = jv_int(v.u.i < 0 ? -v.u.i : v.u.i);
    } else
        return jr_fail(r, IFD_ERR_INVALID, "bad operand type for abs(): '%s'", jv_type_name(v));
    return 0;
}

static int f_batch(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    int64_t count = av[0].u.i;
    if (!jv_is_intlike(av[0])) return jr_fail(r, IFD_ERR_INVALID, "batch() linecount must be an integer");
    if (count <= 0) return jr_fail(r, IFD_ERR_INVALID, "batch() linecount must be positive");
    const struct jv *items;
    uint32_t n;
    JTRY(iter_of(r, v, &items, &n));
    uint32_t groups = (uint32_t)((n + (uint64_t)count - 1) / (uint64_t)count);
    JTRY(make_gen(r, groups, out));
    bool fill = av[1].kind != JV_UNBOUND && av[1].kind != JV_NONE;
    for (uint32_t g = 0; g < groups; g++) {
        uint32_t start = (uint32_t)(g * (uint64_t)count);
        uint32_t len = n - start < count ? n - start : (uint32_t)count;
        uint32_t total = fill ? (uint32_t)count : len;
        JTRY(jr_new_list(r, JV_LIST, total, &out->u.l->v[g]));
        for (uint32_t k = 0; k < total; k++) out->u.l->v[g].u.l->v[k] = k < len ? items[start + k] : av[1];
        JTRY(jr_steps(r, total));
    }
    return 0;
}

static int f_slice(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    if (!jv_is_intlike(av[0]) || av[0].u.i <= 0 || av[0].u.i > 100000)
        return jr_fail(r, IFD_ERR_INVALID, "slice() needs a positive number of slices");
    int64_t slices = av[0].u.i;
    const struct jv *items;
    uint32_t n;
    JTRY(iter_of(r, v, &items, &n));
    int64_t per = n / slices, extra = n % slices, offset = 0;
    bool fill = av[1].kind != JV_UNBOUND && av[1].kind != JV_NONE;
    JTRY(make_gen(r, (uint32_t)slices, out));
    for (int64_t s = 0; s < slices; s++) {
        int64_t start = offset + s * per;
        if (s < extra) offset++;
        int64_t end = offset + (s + 1) * per;
        bool pad = fill && s >= extra;
        uint32_t len = (uint32_t)(end - start) + (pad ? 1 : 0);
        JTRY(jr_new_list(r, JV_LIST, len, &out->u.l->v[s]));
        for (int64_t k = start; k < end; k++) out->u.l->v[s].u.l->v[k - start] = items[k];
        if (pad) out->u.l->v[s].u.l->v[len - 1] = av[1];
        JTRY(jr_steps(r, len + 1));
    }
    return 0;
}

static int f_first_last(struct jr *r, struct jv v, bool last, struct jv *out)
{
    bool reversible = v.kind == JV_STR || v.kind == JV_TUPLE || v.kind == JV_DICT || v.kind == JV_UNDEF ||
                      (v.kind == JV_LIST && v.sub != JL_GEN && v.sub != JL_REVITER);
    if (last && !reversible) return jr_fail(r, IFD_ERR_INVALID, "'%s' object is not reversible", jv_type_name(v));
    const struct jv *items;
    uint32_t n;
    JTRY(iter_of(r, v, &items, &n));
    if (!n) return jr_undef_hint(r, last ? "No last item, sequence was empty." : "No first item, sequence was empty.", out);
    *out = items[last ? n - 1 : 0];
    return 0;
}

/* Python's float(str): surrounding whitespace, _ between digits, inf/nan */
static bool parse_float(struct jv s, double *out)
{
    char buf[128];
    struct jv t = s;
    size_t a = 0, b = t.n;
    while (a < b && py_isspace((unsigned char)t.u.s[a])) a++;
    while (b > a && py_isspace((unsigned char)t.u.s[b - 1])) b--;
    if (b == a || b - a >= sizeof buf) return false;
    size_t k = 0;
    for (size_t i = a; i < b; i++) {
        char c = t.u.s[i];
        if (c == '_') {
            if (i == a || i + 1 >= b || !(t.u.s[i - 1] >= '0' && t.u.s[i - 1] <= '9') || !(t.u.s[i + 1] >= '0' && t.u.s[i + 1] <= '9'))
                return false;
            continue;
        }
        if (!strchr("0123456789+-.eEinfatyINFATY", c)) return false;
        buf[k++] = c;
    }
    buf[k] = 0;
    const char *p = buf + (buf[0] == '+' || buf[0] == '-');
    if (strncasecmp(p, "inf", 3) == 0 || strncasecmp(p, "nan", 3) == 0) {
        if (strcasecmp(p, "inf") && strcasecmp(p, "infinity") && strcasecmp(p, "nan")) return false;
    } else if (strpbrk(p, "xXpP")) {
        return false;
    }
    char *end;
    *out = strtod(buf, &end);
    return *end == 0;
}

/* Python's int(str, base) */
static bool parse_int(struct jv s, int64_t base, int64_t *out)
{
    size_t a = 0, b = s.n;
    while (a < b && py_isspace((unsigned char)s.u.s[a])) a++;
    while (b > a && py_isspace((unsigned char)s.u.s[b - 1])) b--;
    bool neg = false;
    if (a < b && (s.u.s[a] == '+' || s.u.s[a] == '-')) neg = s.u.s[a++] == '-';
    if (base == 0 || base == 16 || base == 8 || base == 2) {
        if (b - a > 2 && s.u.s[a] == '0') {
            char p = (char)(s.u.s[a + 1] | 32);
            int pb = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
            if (pb && (base == 0 || base == pb)) {
                base = pb;
                a += 2;
                if (a < b && s.u.s[a] == '_') a++;
            }
        }
        if (base == 0) base = 10;
    }
    if (base < 2 || base > 36 || a >= b) return false;
    uint64_t v = 0;
    for (size_t i = a; i < b; i++) {
        char c = s.u.s[i];
        if (c == '_' && i > a && i + 1 < b && s.u.s[i - 1] != '_') continue;
        int d = c >= '0' && c <= '9' ? c - '0' : (c | 32) >= 'a' && (c | 32) <= 'z' ? (c | 32) - 'a' + 10 : 99;
        if (d >= base) return false;
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base) return false;
        v = v * (uint64_t)base + (uint64_t)d;
        if (v > (uint64_t)INT64_MAX + neg) return false;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static int f_int(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    if (v.kind == JV_UNDEF) return jr_undef_fail(r, v); /* int(Undefined) raises, it is no TypeError */
    struct jv dflt = kw_or(&av[0], jv_int(0));
    int64_t base = 10, i;
    if (av[1].kind != JV_UNBOUND) {
        if (!jv_is_intlike(av[1])) return jr_fail(r, IFD_ERR_INVALID, "int() base must be an integer");
        base = av[1].u.i;
    }
    double d;
    if (v.kind == JV_STR) {
        if (parse_int(v, base, &i)) return *out = jv_int(i), 0;
        if (parse_float(v, &d) && isfinite(d) && fabs(d) < 9.2e18) return *out = jv_int((int64_t)d), 0;
        return *out = dflt, 0;
    }
    if (jv_is_intlike(v)) return *out = jv_int(v.u.i), 0;
    if (v.kind == JV_FLOAT && isfinite(v.u.f) && fabs(v.u.f) < 9.2e18) return *out = jv_int((int64_t)v.u.f), 0;
    *out = dflt;
    return 0;
}

static int f_float(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    double d;
    if (v.kind == JV_UNDEF) return jr_undef_fail(r, v);
    if (v.kind == JV_FLOAT) *out = v;
    else if (jv_is_intlike(v)) *out = jv_float((double)v.u.i);
    else if (v.kind == JV_STR && parse_float(v, &d)) *out = jv_float(d);
    else *out = kw_or(&av[0], jv_float(0.0));
    return 0;
}

static int f_round(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    int64_t prec = 0;
    if (av[0].kind != JV_UNBOUND) {
        if (!jv_is_intlike(av[0])) return jr_fail(r, IFD_ERR_INVALID, "'%s' object cannot be interpreted as an integer", jv_type_name(av[0]));
        prec = av[0].u.i;
    }
    struct jv method = kw_or(&av[1], jv_str("common", 6));
    bool common = method.kind == JV_STR && method.n == 6 && memcmp(method.u.s, "common", 6) == 0;
    bool ceil_m = method.kind == JV_STR && method.n == 4 && memcmp(method.u.s, "ceil", 4) == 0;
    bool floor_m = method.kind == JV_STR && method.n == 5 && memcmp(method.u.s, "floor", 5) == 0;
    if (!common && !ceil_m && !floor_m) return jr_fail(r, IFD_ERR_INVALID, "method must be common, ceil or floor");
    if (!jv_is_num(v)) return jr_fail(r, IFD_ERR_INVALID, "type %s doesn't define __round__ method", jv_type_name(v));
    if (prec > 300) prec = 300;
    if (prec < -300) prec = -300;
    if (!common) {
        double p = pow(10.0, (double)prec), x = jv_num(v) * p;
        *out = jv_float((ceil_m ? ceil(x) : floor(x)) / p);
        return 0;
    }
    if (jv_is_intlike(v)) {
        if (prec >= 0) return *out = jv_int(v.u.i), 0;
        /* round(int, -n): half to even on the exact integer */
        int64_t p = 1;
        for (int64_t k = 0; k < -prec && p <= INT64_MAX / 10; k++) p *= 10;
        if (-prec > 18) return *out = jv_int(0), 0;
        int64_t q = v.u.i / p, rem = v.u.i % p;
        if (rem < 0) rem += p, q -= 1;
        if (2 * rem > p || (2 * rem == p && (q & 1))) q += 1;
        return *out = jv_int(q * p), 0;
    }
    double x = v.u.f;
    if (!isfinite(x)) return *out = v, 0;
    if (prec >= 0) {
        /* printf rounds the exact binary value half-to-even, which is what Python's round does */
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", (int)prec, x);
        *out = jv_float(strtod(buf, NULL));
        return 0;
    }
    double p = pow(10.0, (double)-prec), y = x / p, z = nearbyint(y);
    *out = jv_float(z * p);
    return 0;
}

static int f_join(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    struct jv sep;
    JTRY(to_str(r, kw_or(&av[0], jv_str("", 0)), &sep));
    const struct jv *items;
    uint32_t n;
    JTRY(iter_of(r, v, &items, &n));
    struct jsb b;
    jsb_init(&b, &r->a);
    for (uint32_t i = 0; i < n; i++) {
        struct jv it = items[i];
        if (av[1].kind != JV_UNBOUND && av[1].kind != JV_NONE) JTRY(attr_get(r, av[1], it, jv_none(), &it));
        if (i) jsb_put(&b, sep.u.s, sep.n);
        jv_put_str(&b, it);
    }
    JTRY(jr_steps(r, n));
    return jr_sb_done(r, &b, out);
}

static int f_indent(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    struct jv s, ind;
    /* jinja2 does s += "\n" without str(): only strings get through */
    if (v.kind == JV_UNDEF) return jr_undef_fail(r, v);
    if (v.kind == JV_LIST && v.sub == JL_LIST) /* list += str extends it; splitlines() then fails */
        return jr_fail(r, IFD_ERR_INVALID, "'list' object has no attribute 'splitlines'");
    if (v.kind == JV_TUPLE) return jr_fail(r, IFD_ERR_INVALID, "can only concatenate tuple (not \"str\") to tuple");
    if (v.kind != JV_STR)
        return jr_fail(r, IFD_ERR_INVALID, "unsupported operand type(s) for +=: '%s' and 'str'", jv_type_name(v));
    JTRY(to_str(r, v, &s));
    struct jv width = kw_or(&av[0], jv_int(4));
    if (width.kind == JV_STR) {
        ind = width;
    } else {
        if (!jv_is_intlike(width)) return jr_fail(r, IFD_ERR_INVALID, "can't multiply sequence by non-int of type '%s'", jv_type_name(width));
        int64_t w = width.u.i < 0 ? 0 : width.u.i;
        if (w > 10000) return jr_fail(r, IFD_ERR_RANGE, "indent width too large");
        char *sp = jr_alloc(r, (size_t)w + 1);
        if (!sp) return IFD_ERR_NOMEM;
        memset(sp, ' ', (size_t)w);
        ind = jv_str(sp, (size_t)w);
    }
    bool first = jv_truthy(kw_or(&av[1], jv_bool(false))), blank = jv_truthy(kw_or(&av[2], jv_bool(false)));
    /* s += "\n"; then splitlines(): a trailing newline never makes an extra line */
    struct jsb t;
    jsb_init(&t, &r->a);
    jsb_put(&t, s.u.s, s.n);
    jsb_putc(&t, '\n');
    struct jv joined, lines;
    JTRY(jr_sb_done(r, &t, &joined));
    JTRY(jstr_splitlines(r, joined, false, &lines));
    struct jsb b;
    jsb_init(&b, &r->a);
    if (first) jsb_put(&b, ind.u.s, ind.n);
    for (uint32_t i = 0; i < lines.u.l->n; i++) {
        struct jv line = lines.u.l->v[i];
        if (i) {
            jsb_putc(&b, '\n');
            if (blank || line.n) jsb_put(&b, ind.u.s, ind.n);
        }
        jsb_put(&b, line.u.s, line.n);
    }
    return jr_sb_done(r, &b, out);
}

static int f_title(struct jr *r, struct jv v, struct jv *out)
{
    /* jinja2 splits on ([-\s({\[<]+) and capitalizes each piece's first character */
    struct jv s;
    JTRY(to_str(r, v, &s));
    struct jsb b;
    jsb_init(&b, &r->a);
    bool start = true;
    for (size_t i = 0; i < s.n;) {
        uint32_t c = u8_next(s.u.s, s.n, &i);
        bool sep = c == '-' || c == '(' || c == '{' || c == '[' || c == '<' || py_isspace(c);
        if (sep) {
            jsb_put_cp(&b, c);
            start = true;
        } else if (start) {
            py_put_upper(&b, c);
            start = false;
        } else {
            jsb_put_cp(&b, py_lower(c));
        }
    }
    return jr_sb_done(r, &b, out);
}

int jinja_escape(struct jr *r, struct jv v, struct jv *out)
{
    if (jv_is_markup(v)) return *out = v, 0;
    struct jv s;
    JTRY(to_str(r, v, &s));
    struct jsb b;
    jsb_init(&b, &r->a);
    for (size_t i = 0; i < s.n; i++) {
        switch (s.u.s[i]) {
        case '&': jsb_puts(&b, "&amp;"); break;
        case '<': jsb_puts(&b, "&lt;"); break;
        case '>': jsb_puts(&b, "&gt;"); break;
        case '"': jsb_puts(&b, "&#34;"); break;
        case '\'': jsb_puts(&b, "&#39;"); break;
        default: jsb_putc(&b, s.u.s[i]);
        }
    }
    JTRY(jr_sb_done(r, &b, out));
    *out = jv_markup(*out);
    return 0;
}

/* Filters that call str methods on soft_str(value) keep Markup as Markup. */
static int keep_markup(struct jv in, int rc, struct jv *out)
{
    if (rc == 0 && jv_is_markup(in) && out->kind == JV_STR) *out = jv_markup(*out);
    return rc;
}

/* markupsafe's striptags: drop comments and tags, collapse whitespace, unescape the common entities */
static int f_striptags(struct jr *r, struct jv v, struct jv *out)
{
    struct jv s;
    JTRY(to_str(r, v, &s));
    struct jsb t;
    jsb_init(&t, &r->a);
    for (size_t i = 0; i < s.n;) {
        if (s.n - i >= 4 && memcmp(s.u.s + i, "<!--", 4) == 0) {
            const char *e = memmem(s.u.s + i + 4, s.n - i - 4, "-->", 3);
            if (!e) break;
            i = (size_t)(e - s.u.s) + 3;
        } else if (s.u.s[i] == '<') {
            const char *e = memchr(s.u.s + i + 1, '>', s.n - i - 1);
            if (!e) {
                jsb_put(&t, s.u.s + i, s.n - i);
                break;
            }
            i = (size_t)(e - s.u.s) + 1;
        } else {
            jsb_putc(&t, s.u.s[i++]);
        }
    }
    struct jv stripped, words;
    JTRY(jr_sb_done(r, &t, &stripped));
    struct jsb b;
    jsb_init(&b, &r->a);
    bool any = false;
    for (size_t i = 0, start, end; py_next_word(stripped.u.s, stripped.n, &i, &start, &end);) {
        if (any) jsb_putc(&b, ' ');
        any = true;
        jsb_put(&b, stripped.u.s + start, end - start);
    }
    JTRY(jr_sb_done(r, &b, &words));
    static const struct {
        const char *ent, *ch;
    } ents[] = {{"&amp;", "&"}, {"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", "\""}, {"&#39;", "'"}, {"&#34;", "\""}, {"&nbsp;", "\xc2\xa0"}};
    for (size_t k = 0; k < sizeof ents / sizeof ents[0]; k++)
        JTRY(jstr_replace(r, words, jv_str(ents[k].ent, strlen(ents[k].ent)), jv_str(ents[k].ch, strlen(ents[k].ch)), -1, &words));
    *out = words;
    return 0;
}

static int f_truncate(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    struct jv s, end;
    JTRY(to_str(r, v, &s));
    int64_t length = 255, leeway = 5;
    if (av[0].kind != JV_UNBOUND) {
        if (!jv_is_intlike(av[0])) return jr_fail(r, IFD_ERR_INVALID, "truncate() length must be an integer");
        length = av[0].u.i;
    }
    bool killwords = jv_truthy(kw_or(&av[1], jv_bool(false)));
    JTRY(to_str(r, kw_or(&av[2], jv_str("...", 3)), &end));
    if (av[3].kind != JV_UNBOUND && av[3].kind != JV_NONE) {
        if (!jv_is_intlike(av[3])) return jr_fail(r, IFD_ERR_INVALID, "truncate() leeway must be an integer");
        leeway = av[3].u.i;
    }
    int64_t end_len = (int64_t)u8_count(end.u.s, end.n), len = (int64_t)u8_count(s.u.s, s.n);
    if (length < end_len) return jr_fail(r, IFD_ERR_INVALID, "expected length >= %lld, got %lld", (long long)end_len, (long long)length);
    if (leeway < 0) return jr_fail(r, IFD_ERR_INVALID, "expected leeway >= 0, got %lld", (long long)leeway);
    if (len <= length + leeway) return *out = s, 0;
    size_t cut = u8_offset(s.u.s, s.n, (size_t)(length - end_len));
    if (!killwords) {
        /* rsplit(' ', 1)[0] */
        for (size_t i = cut; i-- > 0;)
            if (s.u.s[i] == ' ') {
                cut = i;
                break;
            }
    }
    struct jsb b;
    jsb_init(&b, &r->a);
    jsb_put(&b, s.u.s, cut);
    jsb_put(&b, end.u.s, end.n);
    return jr_sb_done(r, &b, out);
}

static int f_wordcount(struct jr *r, struct jv v, struct jv *out)
{
    struct jv s;
    JTRY(to_str(r, v, &s));
    int64_t words = 0;
    bool in = false;
    for (size_t i = 0; i < s.n;) {
        uint32_t c = u8_next(s.u.s, s.n, &i);
        bool w = c == '_' || py_isalnum(c);
        if (w && !in) words++;
        in = w;
    }
    *out = jv_int(words);
    return 0;
}

static int f_center(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    struct jv s;
    JTRY(to_str(r, v, &s));
    struct jv m;
    int rc = 0;
    jinja_method_lookup(r, s, "center", 6, &m, &rc);
    JTRY(rc);
    struct jv width = kw_or(&av[0], jv_int(80));
    struct jargs a = {&width, 1, NULL, 0};
    return jinja_call_method(r, m.u.bm, &a, out);
}

static int f_filesizeformat(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    double bytes;
    if (jv_is_num(v)) bytes = jv_num(v);
    else if (!(v.kind == JV_STR && parse_float(v, &bytes)))
        return jr_fail(r, IFD_ERR_INVALID, "could not convert %s to float", jv_type_name(v));
    bool binary = jv_truthy(kw_or(&av[0], jv_bool(false)));
    double base = binary ? 1024 : 1000;
    static const char *const dec[] = {"kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"};
    static const char *const bin[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"};
    struct jsb b;
    jsb_init(&b, &r->a);
    if (bytes == 1) jsb_puts(&b, "1 Byte");
    else if (bytes < base) jsb_printf(&b, "%lld Bytes", (long long)bytes);
    else {
        int i = 0;
        double unit = base * base;
        while (i < 7 && bytes >= unit) {
            i++;
            unit *= base;
        }
        jsb_printf(&b, "%.1f %s", base * bytes / unit, binary ? bin[i] : dec[i]);
    }
    return jr_sb_done(r, &b, out);
}

static int f_tojson(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    struct jjson_opts o;
    memset(&o, 0, sizeof o);
    o.ensure_ascii = jv_truthy(kw_or(&av[0], jv_bool(false)));
    o.sort_keys = jv_truthy(kw_or(&av[3], jv_bool(false)));
    struct jv indent = kw_or(&av[1], jv_none());
    if (indent.kind == JV_STR) {
        o.indent = indent.u.s;
        o.indent_n = indent.n;
    } else if (jv_is_intlike(indent)) {
        int64_t w = indent.u.i < 0 ? 0 : indent.u.i > 1000 ? 1000 : indent.u.i;
        char *sp = jr_alloc(r, (size_t)w + 1);
        if (!sp) return IFD_ERR_NOMEM;
        memset(sp, ' ', (size_t)w);
        o.indent = sp;
        o.indent_n = (size_t)w;
    } else if (indent.kind != JV_NONE) {
        return jr_fail(r, IFD_ERR_INVALID, "tojson indent must be an int or a string, not %s", jv_type_name(indent));
    }
    o.item_sep = o.indent ? "," : ", ";
    o.key_sep = ": ";
    struct jv seps = kw_or(&av[2], jv_none());
    if (seps.kind != JV_NONE) {
        if (!jv_is_seq(seps) || seps.u.l->n != 2 || seps.u.l->v[0].kind != JV_STR || seps.u.l->v[1].kind != JV_STR)
            return jr_fail(r, IFD_ERR_INVALID, "tojson separators must be a pair of strings");
        o.item_sep = seps.u.l->v[0].u.s;
        o.item_sep_n = seps.u.l->v[0].n;
        o.key_sep = seps.u.l->v[1].u.s;
        o.key_sep_n = seps.u.l->v[1].n;
    } else {
        o.item_sep_n = strlen(o.item_sep);
        o.key_sep_n = strlen(o.key_sep);
    }
    struct jsb b;
    jsb_init(&b, &r->a);
    JTRY(jv_to_json(r, &b, v, &o, 0));
    return jr_sb_done(r, &b, out);
}

/* select/reject/selectattr/rejectattr */
static int f_select(struct jr *r, struct jv v, const struct jargs *a, bool want, bool by_attr, struct jv *out)
{
    if (!jv_truthy(v)) return make_gen(r, 0, out);
    uint32_t off = by_attr ? 1 : 0;
    if (by_attr && a->npos < 1) return jr_fail(r, IFD_ERR_INVALID, "Missing parameter for attribute name");
    int test = -1;
    if (a->npos > off) JTRY(jinja_test_by_name(r, a->pos[off], &test));
    struct jargs targs = {a->npos > off + 1 ? a->pos + off + 1 : NULL, a->npos > off + 1 ? a->npos - off - 1 : 0, a->kw, a->nkw};
    const struct jv *items;
    uint32_t n;
    JTRY(iter_of(r, v, &items, &n));
    JTRY(make_gen(r, n, out));
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct jv probe = items[i];
        if (by_attr) JTRY(attr_get(r, a->pos[0], probe, jv_none(), &probe));
        bool ok;
        if (test < 0) ok = jv_truthy(probe);
        else JTRY(jinja_call_test(r, test, probe, &targs, &ok));
        if (ok == want) out->u.l->v[k++] = items[i];
        JTRY(jr_step(r));
    }
    out->u.l->n = k;
    return 0;
}

static int f_map(struct jr *r, struct jv v, const struct jargs *a, struct jv *out)
{
    if (!jv_truthy(v)) return make_gen(r, 0, out);
    const struct jv *items;
    uint32_t n;
    JTRY(iter_of(r, v, &items, &n));
    JTRY(make_gen(r, n, out));
    if (a->npos == 0) {
        struct jv attribute = jv_unbound(), dflt = jv_none();
        for (uint32_t k = 0; k < a->nkw; k++) {
            if (a->kw[k].n == 9 && memcmp(a->kw[k].name, "attribute", 9) == 0) attribute = a->kw[k].v;
            else if (a->kw[k].n == 7 && memcmp(a->kw[k].name, "default", 7) == 0) dflt = a->kw[k].v;
            else return jr_fail(r, IFD_ERR_INVALID, "Unexpected keyword argument '%.*s'", (int)a->kw[k].n, a->kw[k].name);
        }
        if (attribute.kind == JV_UNBOUND) return jr_fail(r, IFD_ERR_INVALID, "map requires a filter argument");
        for (uint32_t i = 0; i < n; i++) {
            JTRY(attr_get(r, attribute, items[i], dflt, &out->u.l->v[i]));
            JTRY(jr_step(r));
        }
        return 0;
    }
    struct jv name;
    JTRY(to_str(r, a->pos[0], &name));
    int id = jinja_filter_lookup(name.u.s, name.n);
    if (id < 0) return jr_fail(r, IFD_ERR_INVALID, "No filter named '%.*s'.", (int)name.n, name.u.s);
    struct jargs fargs = {a->pos + 1, a->npos - 1, a->kw, a->nkw};
    for (uint32_t i = 0; i < n; i++) {
        JTRY(jinja_call_filter(r, id, items[i], &fargs, &out->u.l->v[i]));
        JTRY(jr_step(r));
    }
    return 0;
}

/* sort(reverse, case_sensitive, attribute); attribute may be "a,b" */
static int f_sort(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    bool reverse = jv_truthy(kw_or(&av[0], jv_bool(false))), cs = jv_truthy(kw_or(&av[1], jv_bool(false)));
    const struct jv *items;
    uint32_t n;
    JTRY(iter_of(r, v, &items, &n));
    struct jv *keys = jr_alloc(r, (n + 1) * sizeof *keys);
    if (!keys) return IFD_ERR_NOMEM;
    struct jv attr = kw_or(&av[2], jv_none());
    /* multi-attribute keys compare as lists */
    uint32_t nattr = 1;
    struct jv parts[16];
    if (attr.kind == JV_STR) {
        nattr = 0;
        size_t i = 0;
        while (i <= attr.n && nattr < 16) {
            size_t j = i;
            while (j < attr.n && attr.u.s[j] != ',') j++;
            parts[nattr++] = jv_str(attr.u.s + i, j - i);
            i = j + 1;
        }
    } else {
        parts[0] = attr;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct jv key;
        JTRY(jr_new_list(r, JV_LIST, nattr, &key));
        for (uint32_t k = 0; k < nattr; k++) {
            struct jv x;
            JTRY(attr_get(r, parts[k], items[i], jv_none(), &x));
            JTRY(lower_if_str(r, x, cs, &key.u.l->v[k]));
        }
        keys[i] = key;
    }
    return sorted_by(r, items, keys, n, reverse, out);
}

static int f_dictsort(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    if (v.kind == JV_UNDEF) return jr_undef_fail(r, v);
    if (v.kind != JV_DICT) return jr_fail(r, IFD_ERR_INVALID, "'%s' object has no attribute 'items'", jv_type_name(v));
    bool cs = jv_truthy(kw_or(&av[0], jv_bool(false)));
    struct jv by = kw_or(&av[1], jv_str("key", 3));
    bool by_value = by.kind == JV_STR && by.n == 5 && memcmp(by.u.s, "value", 5) == 0;
    if (!by_value && !(by.kind == JV_STR && by.n == 3 && memcmp(by.u.s, "key", 3) == 0))
        return jr_fail(r, IFD_ERR_INVALID, "You can only sort by either \"key\" or \"value\"");
    bool reverse = jv_truthy(kw_or(&av[2], jv_bool(false)));
    const struct jdict *d = v.u.d;
    struct jv *pairs = jr_alloc(r, (d->n + 1) * sizeof *pairs), *keys = jr_alloc(r, (d->n + 1) * sizeof *keys);
    if (!pairs || !keys) return IFD_ERR_NOMEM;
    for (uint32_t i = 0; i < d->n; i++) {
        JTRY(jr_new_list(r, JV_TUPLE, 2, &pairs[i]));
        pairs[i].u.l->v[0] = d->k[i];
        pairs[i].u.l->v[1] = d->v[i];
        JTRY(lower_if_str(r, by_value ? d->v[i] : d->k[i], cs, &keys[i]));
    }
    return sorted_by(r, pairs, keys, d->n, reverse, out);
}

static int f_minmax(struct jr *r, struct jv v, const struct jv *av, bool max, struct jv *out)
{
    bool cs = jv_truthy(kw_or(&av[0], jv_bool(false)));
    const struct jv *items;
    uint32_t n;
    JTRY(iter_of(r, v, &items, &n));
    if (!n) return jr_undef_hint(r, "No aggregated item, sequence was empty.", out);
    struct jv best = items[0], best_key;
    JTRY(attr_get(r, kw_or(&av[1], jv_none()), best, jv_none(), &best_key));
    JTRY(lower_if_str(r, best_key, cs, &best_key));
    for (uint32_t i = 1; i < n; i++) {
        struct jv key;
        JTRY(attr_get(r, kw_or(&av[1], jv_none()), items[i], jv_none(), &key));
        JTRY(lower_if_str(r, key, cs, &key));
        bool better;
        /* CPython's min()/max() ask "new < best" / "new > best" */
        JTRY(jv_compare(r, max ? JO_GT : JO_LT, key, best_key, &better));
        if (better) {
            best = items[i];
            best_key = key;
        }
    }
    *out = best;
    return jr_steps(r, n);
}

static int f_unique(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    bool cs = jv_truthy(kw_or(&av[0], jv_bool(false)));
    const struct jv *items;
    uint32_t n;
    JTRY(iter_of(r, v, &items, &n));
    struct jv *seen = jr_alloc(r, (n + 1) * sizeof *seen);
    if (!seen) return IFD_ERR_NOMEM;
    JTRY(make_gen(r, n, out));
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct jv key;
        JTRY(attr_get(r, kw_or(&av[1], jv_none()), items[i], jv_none(), &key));
        JTRY(lower_if_str(r, key, cs, &key));
        if (key.kind == JV_LIST || key.kind == JV_DICT || key.kind == JV_NS)
            return jr_fail(r, IFD_ERR_INVALID, "unhashable type: '%s'", jv_type_name(key));
        bool dup = false;
        for (uint32_t j = 0; j < k && !dup; j++) dup = jv_eq(seen[j], key);
        JTRY(jr_steps(r, k));
        if (dup) continue;
        seen[k] = key;
        out->u.l->v[k++] = items[i];
    }
    out->u.l->n = k;
    return 0;
}

static int f_groupby(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    bool cs = jv_truthy(kw_or(&av[2], jv_bool(false)));
    struct jv dflt = kw_or(&av[1], jv_none());
    const struct jv *items;
    uint32_t n;
    JTRY(iter_of(r, v, &items, &n));
    struct jv *keys = jr_alloc(r, (n + 1) * sizeof *keys), *raw = jr_alloc(r, (n + 1) * sizeof *raw);
    if (!keys || !raw) return IFD_ERR_NOMEM;
    for (uint32_t i = 0; i < n; i++) {
        JTRY(attr_get(r, av[0], items[i], dflt, &raw[i]));
        JTRY(lower_if_str(r, raw[i], cs, &keys[i]));
    }
    struct jv sorted, sorted_keys, sorted_raw;
    JTRY(sorted_by(r, items, keys, n, false, &sorted));
    /* re-derive the keys in sorted order */
    JTRY(jr_new_list(r, JV_LIST, n, &sorted_keys));
    JTRY(jr_new_list(r, JV_LIST, n, &sorted_raw));
    for (uint32_t i = 0; i < n; i++) {
        JTRY(attr_get(r, av[0], sorted.u.l->v[i], dflt, &sorted_raw.u.l->v[i]));
        JTRY(lower_if_str(r, sorted_raw.u.l->v[i], cs, &sorted_keys.u.l->v[i]));
    }
    JTRY(jr_new_list(r, JV_LIST, n, out));
    uint32_t groups = 0;
    for (uint32_t i = 0; i < n;) {
        uint32_t j = i + 1;
        while (j < n && jv_eq(sorted_keys.u.l->v[j], sorted_keys.u.l->v[i])) j++;
        struct jv g, members;
        JTRY(jr_new_list(r, JV_TUPLE, 2, &g));
        g.sub = JTU_GROUP;
        JTRY(jr_new_list(r, JV_LIST, j - i, &members));
        memcpy(members.u.l->v, sorted.u.l->v + i, (j - i) * sizeof(struct jv));
        g.u.l->v[0] = cs ? sorted_keys.u.l->v[i] : sorted_raw.u.l->v[i];
        g.u.l->v[1] = members;
        out->u.l->v[groups++] = g;
        i = j;
    }
    out->u.l->n = groups;
    return 0;
}

static int f_list(struct jr *r, struct jv v, struct jv *out)
{
    const struct jv *items;
    uint32_t n;
    JTRY(iter_of(r, v, &items, &n));
    JTRY(jr_new_list(r, JV_LIST, n, out));
    if (n) memcpy(out->u.l->v, items, n * sizeof *items);
    return jr_steps(r, n);
}

static int f_reverse(struct jr *r, struct jv v, struct jv *out)
{
    if (v.kind == JV_STR) {
        struct jsb b;
        jsb_init(&b, &r->a);
        for (size_t i = v.n; i > 0;) {
            size_t e = i;
            i--;
            while (i > 0 && ((unsigned char)v.u.s[i] & 0xC0) == 0x80) i--;
            jsb_put(&b, v.u.s + i, e - i);
        }
        return jr_sb_done(r, &b, out);
    }
    const struct jv *items;
    uint32_t n;
    if (!(v.kind == JV_LIST || v.kind == JV_TUPLE || v.kind == JV_DICT || v.kind == JV_UNDEF))
        return jr_fail(r, IFD_ERR_INVALID, "argument must be iterable");
    JTRY(iter_of(r, v, &items, &n));
    JTRY(jr_new_list(r, JV_LIST, n, out));
    for (uint32_t i = 0; i < n; i++) out->u.l->v[i] = items[n - 1 - i];
    /* reversed() of a sequence is an iterator; a generator is listed, then reversed */
    out->sub = v.kind == JV_LIST && v.sub == JL_GEN ? JL_LIST : JL_REVITER;
    return jr_steps(r, n);
}

static int f_items(struct jr *r, struct jv v, struct jv *out)
{
    if (v.kind == JV_UNDEF) return make_gen(r, 0, out);
    if (v.kind != JV_DICT) return jr_fail(r, IFD_ERR_INVALID, "Can only get item pairs from a mapping.");
    JTRY(make_gen(r, v.u.d->n, out));
    for (uint32_t i = 0; i < v.u.d->n; i++) {
        JTRY(jr_new_list(r, JV_TUPLE, 2, &out->u.l->v[i]));
        out->u.l->v[i].u.l->v[0] = v.u.d->k[i];
        out->u.l->v[i].u.l->v[1] = v.u.d->v[i];
    }
    return jr_steps(r, v.u.d->n);
}

static int f_sum(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    const struct jv *items;
    uint32_t n;
    JTRY(iter_of(r, v, &items, &n));
    struct jv acc = kw_or(&av[1], jv_int(0));
    for (uint32_t i = 0; i < n; i++) {
        struct jv x;
        JTRY(attr_get(r, kw_or(&av[0], jv_none()), items[i], jv_none(), &x));
        JTRY(jinja_binop(r, JO_ADD, acc, x, &acc));
    }
    *out = acc;
    return 0;
}

static int f_attr(struct jr *r, struct jv v, struct jv name, struct jv *out)
{
    if (name.kind != JV_STR) return jr_fail(r, IFD_ERR_INVALID, "attribute name must be string");
    int rc = 0;
    if (v.kind == JV_UNDEF) return jr_undef_fail(r, v);
    if (v.kind == JV_NS) {
        const struct jv *hit = jd_get_str(v.u.d, name.u.s, name.n);
        if (hit) return *out = *hit, 0;
    } else if (v.kind == JV_LOOP) {
        return jinja_getattr(r, v, name.u.s, name.n, out);
    } else if (jinja_method_lookup(r, v, name.u.s, name.n, out, &rc)) {
        return rc;
    }
    return jr_undef(r, JU_ATTR, name.u.s, name.n, v, name, out);
}

static void url_quote(struct jsb *b, struct jv s, bool for_qs)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < s.n; i++) {
        unsigned char c = (unsigned char)s.u.s[i];
        bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("_.-~", c) ||
                    (c == '/' && !for_qs);
        if (keep && c) jsb_putc(b, (char)c);
        else if (c == ' ' && for_qs) jsb_putc(b, '+');
        else {
            jsb_putc(b, '%');
            jsb_putc(b, hex[c >> 4]);
            jsb_putc(b, hex[c & 15]);
        }
    }
}

static int f_urlencode(struct jr *r, struct jv v, struct jv *out)
{
    struct jsb b;
    jsb_init(&b, &r->a);
    struct jv s;
    if (v.kind == JV_DICT || jv_is_seq(v)) {
        const struct jv *items;
        uint32_t n;
        bool dict = v.kind == JV_DICT;
        JTRY(jv_iter(r, v, &items, &n));
        for (uint32_t i = 0; i < n; i++) {
            struct jv k = items[i], val;
            if (dict) val = v.u.d->v[i];
            else {
                if (!jv_is_seq(k) || k.u.l->n != 2) return jr_fail(r, IFD_ERR_INVALID, "urlencode needs (key, value) pairs");
                val = k.u.l->v[1];
                k = k.u.l->v[0];
            }
            if (i) jsb_putc(&b, '&');
            JTRY(to_str(r, k, &s));
            url_quote(&b, s, true);
            jsb_putc(&b, '=');
            JTRY(to_str(r, val, &s));
            url_quote(&b, s, true);
        }
    } else {
        JTRY(to_str(r, v, &s));
        url_quote(&b, s, false);
    }
    return jr_sb_done(r, &b, out);
}

static int f_xmlattr(struct jr *r, struct jv v, const struct jv *av, struct jv *out)
{
    if (v.kind != JV_DICT) return jr_fail(r, IFD_ERR_INVALID, "xmlattr() needs a mapping");
    bool autospace = jv_truthy(kw_or(&av[0], jv_bool(true)));
    struct jsb b;
    jsb_init(&b, &r->a);
    bool any = false;
    for (uint32_t i = 0; i < v.u.d->n; i++) {
        struct jv val = v.u.d->v[i], k, ek, ev;
        if (val.kind == JV_NONE || val.kind == JV_UNDEF) continue;
        JTRY(to_str(r, v.u.d->k[i], &k));
        for (size_t c = 0; c < k.n; c++)
            if (strchr(" \t\n\r\f\v/>=", k.u.s[c]))
                return jr_fail(r, IFD_ERR_INVALID, "Invalid character in attribute name: '%.*s'", (int)k.n, k.u.s);
        JTRY(jinja_escape(r, k, &ek));
        JTRY(jinja_escape(r, val, &ev));
        if (any || autospace) jsb_putc(&b, ' ');
        any = true;
        jsb_put(&b, ek.u.s, ek.n);
        jsb_put(&b, "=\"", 2);
        jsb_put(&b, ev.u.s, ev.n);
        jsb_putc(&b, '"');
    }
    return jr_sb_done(r, &b, out);
}

/* pformat() sorts dict keys; for values narrower than 80 columns it is
 * repr() otherwise, which is all we reproduce. */
static int pprint_sorted(struct jr *r, struct jv v, int depth, struct jv *out)
{
    if (depth > 100) return jr_fail(r, IFD_ERR_RANGE, "structure nested too deeply for pprint");
    if (v.kind == JV_DICT) {
        const struct jdict *d = v.u.d;
        struct jv keys_list, sorted;
        JTRY(jr_new_list(r, JV_LIST, d->n, &keys_list));
        if (d->n) memcpy(keys_list.u.l->v, d->k, d->n * sizeof *d->k);
        JTRY(sorted_by(r, keys_list.u.l->v, keys_list.u.l->v, d->n, false, &sorted));
        JTRY(jr_new_dict(r, d->n, out));
        for (uint32_t i = 0; i < d->n; i++) {
            struct jv val;
            JTRY(pprint_sorted(r, *jd_get(d, sorted.u.l->v[i]), depth + 1, &val));
            JTRY(jr_dict_set(r, out->u.d, sorted.u.l->v[i], val));
        }
        return 0;
    }
    if ((v.kind == JV_LIST && v.sub == JL_LIST) || v.kind == JV_TUPLE) {
        JTRY(jr_new_list(r, v.kind, v.u.l->n, out));
        for (uint32_t i = 0; i < v.u.l->n; i++) JTRY(pprint_sorted(r, v.u.l->v[i], depth + 1, &out->u.l->v[i]));
        return 0;
    }
    *out = v;
    return 0;
}

/* ------------------------------------------------------------------ dispatch */

#define BIND(...)                                                                                             \
    do {                                                                                                      \
        static const char *const names_[] = {__VA_ARGS__};                                                    \
        JTRY(jargs_bind(r, a, fname, names_, (int)(sizeof names_ / sizeof names_[0]), 0, av));               \
    } while (0)

static int no_args(struct jr *r, const struct jargs *a, const char *fname)
{
    if (a->npos || a->nkw) return jr_fail(r, IFD_ERR_INVALID, "%s() takes no arguments", fname);
    return 0;
}

int jinja_call_filter(struct jr *r, int id, struct jv v, const struct jargs *a, struct jv *out)
{
    struct jv av[6], s;
    const char *fname = id >= 0 && id < JF_COUNT_ALL ? g_filter_names[id] : "?";
    JTRY(jr_step(r));
    switch (id) {
    case JF_ABS: JTRY(no_args(r, a, fname)); return f_abs(r, v, out);
    case JF_ATTR: BIND("name"); return f_attr(r, v, av[0], out);
    case JF_BATCH: BIND("linecount", "fill_with"); return f_batch(r, v, av, out);
    case JF_CAPITALIZE: JTRY(to_str(r, v, &s)); return keep_markup(v, jstr_case(r, s, JC_CAPITALIZE, out), out);
    case JF_CENTER: BIND("width"); return keep_markup(v, f_center(r, v, av, out), out);
    case JF_COUNT:
    case JF_LENGTH: {
        JTRY(no_args(r, a, fname));
        int64_t n;
        JTRY(jv_len(r, v, &n));
        *out = jv_int(n);
        return 0;
    }
    case JF_DEFAULT:
        BIND("default_value", "boolean");
        *out = v.kind == JV_UNDEF || (jv_truthy(kw_or(&av[1], jv_bool(false))) && !jv_truthy(v)) ? kw_or(&av[0], jv_str("", 0)) : v;
        return 0;
    case JF_DICTSORT: BIND("case_sensitive", "by", "reverse"); return f_dictsort(r, v, av, out);
    case JF_ESCAPE: JTRY(no_args(r, a, fname)); return jinja_escape(r, v, out);
    case JF_FORCEESCAPE:
        JTRY(no_args(r, a, fname));
        JTRY(to_str(r, v, &s));
        s.sub = 0; /* escapes Markup's text again */
        return jinja_escape(r, s, out);
    case JF_FILESIZEFORMAT: BIND("binary"); return f_filesizeformat(r, v, av, out);
    case JF_FIRST:
    case JF_LAST: JTRY(no_args(r, a, fname)); return f_first_last(r, v, id == JF_LAST, out);
    case JF_FLOAT: BIND("default"); return f_float(r, v, av, out);
    case JF_FORMAT: {
        if (a->npos && a->nkw) return jr_fail(r, IFD_ERR_INVALID, "can't handle positional and keyword arguments at the same time");
        JTRY(to_str(r, v, &s));
        struct jv args;
        if (a->nkw) {
            JTRY(jr_new_dict(r, a->nkw, &args));
            for (uint32_t i = 0; i < a->nkw; i++) JTRY(jr_dict_set(r, args.u.d, jv_str(a->kw[i].name, a->kw[i].n), a->kw[i].v));
        } else {
            JTRY(jr_new_list(r, JV_TUPLE, a->npos, &args));
            if (a->npos) memcpy(args.u.l->v, a->pos, a->npos * sizeof *a->pos);
        }
        return jinja_str_mod(r, s, args, out);
    }
    case JF_GROUPBY:
        BIND("attribute", "default", "case_sensitive");
        if (av[0].kind == JV_UNBOUND) return jr_fail(r, IFD_ERR_INVALID, "groupby() missing required argument 'attribute'");
        return f_groupby(r, v, av, out);
    case JF_INDENT: BIND("width", "first", "blank"); return keep_markup(v, f_indent(r, v, av, out), out);
    case JF_INT: BIND("default", "base"); return f_int(r, v, av, out);
    case JF_JOIN: BIND("d", "attribute"); return f_join(r, v, av, out);
    case JF_LIST: JTRY(no_args(r, a, fname)); return f_list(r, v, out);
    case JF_LOWER: JTRY(to_str(r, v, &s)); return keep_markup(v, jstr_case(r, s, JC_LOWER, out), out);
    case JF_UPPER: JTRY(to_str(r, v, &s)); return keep_markup(v, jstr_case(r, s, JC_UPPER, out), out);
    case JF_ITEMS: JTRY(no_args(r, a, fname)); return f_items(r, v, out);
    case JF_MAP: return f_map(r, v, a, out);
    case JF_MIN:
    case JF_MAX: BIND("case_sensitive", "attribute"); return f_minmax(r, v, av, id == JF_MAX, out);
    case JF_PPRINT: {
        struct jv sorted;
        JTRY(no_args(r, a, fname));
        JTRY(pprint_sorted(r, v, 0, &sorted));
        struct jsb b;
        jsb_init(&b, &r->a);
        jv_put_repr(&b, sorted);
        return jr_sb_done(r, &b, out);
    }
    case JF_REJECT:
    case JF_SELECT: return f_select(r, v, a, id == JF_SELECT, false, out);
    case JF_REJECTATTR:
    case JF_SELECTATTR: return f_select(r, v, a, id == JF_SELECTATTR, true, out);
    case JF_REPLACE: {
        BIND("old", "new", "count");
        struct jv old, rep;
        JTRY(to_str(r, v, &s));
        JTRY(to_str(r, av[0].kind == JV_UNBOUND ? jv_none() : av[0], &old));
        JTRY(to_str(r, av[1].kind == JV_UNBOUND ? jv_none() : av[1], &rep));
        int64_t count = -1;
        if (av[2].kind != JV_UNBOUND && av[2].kind != JV_NONE) {
            if (!jv_is_intlike(av[2])) return jr_fail(r, IFD_ERR_INVALID, "'%s' object cannot be interpreted as an integer", jv_type_name(av[2]));
            count = av[2].u.i;
        }
        s.sub = 0; /* str(s).replace(): a plain string even for Markup */
        return jstr_replace(r, s, old, rep, count, out);
    }
    case JF_REVERSE: JTRY(no_args(r, a, fname)); return f_reverse(r, v, out);
    case JF_ROUND: BIND("precision", "method"); return f_round(r, v, av, out);
    case JF_SAFE:
        JTRY(no_args(r, a, fname));
        JTRY(to_str(r, v, out));
        *out = jv_markup(*out);
        return 0;
    case JF_STRING: JTRY(no_args(r, a, fname)); return to_str(r, v, out);
    case JF_SLICE: BIND("slices", "fill_with"); return f_slice(r, v, av, out);
    case JF_SORT: BIND("reverse", "case_sensitive", "attribute"); return f_sort(r, v, av, out);
    case JF_STRIPTAGS: JTRY(no_args(r, a, fname)); return f_striptags(r, v, out);
    case JF_SUM: BIND("attribute", "start"); return f_sum(r, v, av, out);
    case JF_TITLE: JTRY(no_args(r, a, fname)); return f_title(r, v, out);
    case JF_TRIM:
        BIND("chars");
        JTRY(to_str(r, v, &s));
        return keep_markup(v, jstr_strip(r, s, av[0], JS_BOTH, out), out);
    case JF_TRUNCATE: BIND("length", "killwords", "end", "leeway"); return f_truncate(r, v, av, out);
    case JF_UNIQUE: BIND("case_sensitive", "attribute"); return f_unique(r, v, av, out);
    case JF_URLENCODE: JTRY(no_args(r, a, fname)); return f_urlencode(r, v, out);
    case JF_WORDCOUNT: JTRY(no_args(r, a, fname)); return f_wordcount(r, v, out);
    case JF_XMLATTR: BIND("autospace"); return f_xmlattr(r, v, av, out);
    case JF_TOJSON: BIND("ensure_ascii", "indent", "separators", "sort_keys"); return f_tojson(r, v, av, out);
    case JF_RANDOM:
    case JF_URLIZE:
    case JF_WORDWRAP:
        return jr_fail(r, IFD_ERR_UNSUPPORTED, "the %s filter is not supported in chat templates", fname);
    default: return jr_fail(r, IFD_ERR_INTERNAL, "unknown filter %d", id);
    }
}

/* ------------------------------------------------------------------ tests */

static int t_mod(struct jr *r, struct jv v, struct jv m, struct jv *out)
{
    if (v.kind == JV_UNDEF) return jr_undef_fail(r, v);
    if (v.kind == JV_STR) return jinja_str_mod(r, v, m, out);
    return jinja_binop(r, JO_MOD, v, m, out);
}

static bool is_sequence(struct jv v)
{
    switch (v.kind) {
    case JV_STR:
    case JV_TUPLE:
    case JV_DICT:
    case JV_UNDEF: return true;
    case JV_LIST: return v.sub == JL_LIST || v.sub == JL_RANGE;
    default: return false;
    }
}

static bool is_iterable(struct jv v)
{
    return v.kind == JV_STR || v.kind == JV_LIST || v.kind == JV_TUPLE || v.kind == JV_DICT || v.kind == JV_UNDEF ||
           v.kind == JV_LOOP;
}

static bool same_as(struct jv a, struct jv b)
{
    if (a.kind != b.kind) return false;
    switch (a.kind) {
    case JV_NONE:
    case JV_UNDEF: return a.kind == JV_NONE || a.u.ud == b.u.ud;
    case JV_BOOL:
    case JV_INT:
    case JV_FUNC: return a.u.i == b.u.i;
    case JV_FLOAT: return a.u.f == b.u.f;
    case JV_STR: return a.n == b.n && a.u.s == b.u.s;
    default: return a.u.l == b.u.l;
    }
}

static int compare_test(struct jr *r, int id, struct jv a, struct jv b, bool *out)
{
    if (id == JTS_EQ) return *out = jv_eq(a, b), 0;
    if (id == JTS_NE) return *out = !jv_eq(a, b), 0;
    return jv_compare(r, id == JTS_GT ? JO_GT : id == JTS_GE ? JO_GTEQ : id == JTS_LT ? JO_LT : JO_LTEQ, a, b, out);
}

int jinja_call_test(struct jr *r, int id, struct jv v, const struct jargs *a, bool *out)
{
    const char *fname = id >= 0 && id < JTS_COUNT_ALL ? g_test_names[id] : "?";
    struct jv av[2], m;
    JTRY(jr_step(r));
    bool one_arg = id != JTS_DIVISIBLEBY && id != JTS_SAMEAS && id != JTS_IN && id < JTS_EQ;
    if (one_arg && (a->npos || a->nkw))
        return jr_fail(r, IFD_ERR_INVALID, "test_%s() takes 1 positional argument but %u were given", fname, 1 + a->npos + a->nkw);
    switch (id) {
    case JTS_DEFINED: *out = v.kind != JV_UNDEF; return 0;
    case JTS_UNDEFINED: *out = v.kind == JV_UNDEF; return 0;
    case JTS_NONE: *out = v.kind == JV_NONE; return 0;
    case JTS_BOOLEAN: *out = v.kind == JV_BOOL; return 0;
    case JTS_FALSE: *out = v.kind == JV_BOOL && !v.u.i; return 0;
    case JTS_TRUE: *out = v.kind == JV_BOOL && v.u.i; return 0;
    case JTS_INTEGER: *out = v.kind == JV_INT; return 0;
    case JTS_FLOAT_T: *out = v.kind == JV_FLOAT; return 0;
    case JTS_STRING: *out = v.kind == JV_STR; return 0;
    case JTS_MAPPING: *out = v.kind == JV_DICT; return 0;
    case JTS_NUMBER: *out = jv_is_num(v); return 0;
    case JTS_SEQUENCE: *out = is_sequence(v); return 0;
    case JTS_ITERABLE: *out = is_iterable(v); return 0;
    case JTS_CALLABLE:
        *out = v.kind == JV_MACRO || v.kind == JV_FUNC || v.kind == JV_METHOD || v.kind == JV_UNDEF || v.kind == JV_LOOP;
        return 0;
    case JTS_ESCAPED: *out = jv_is_markup(v); return 0;
    case JTS_LOWER:
    case JTS_UPPER: {
        struct jv s, f;
        JTRY(jv_to_str(r, v, &s));
        struct jv mth;
        int rc = 0;
        jinja_method_lookup(r, s, id == JTS_LOWER ? "islower" : "isupper", 7, &mth, &rc);
        JTRY(rc);
        struct jargs none = {NULL, 0, NULL, 0};
        JTRY(jinja_call_method(r, mth.u.bm, &none, &f));
        *out = f.u.i != 0;
        return 0;
    }
    case JTS_ODD:
    case JTS_EVEN:
        JTRY(t_mod(r, v, jv_int(2), &m));
        *out = jv_eq(m, jv_int(id == JTS_ODD ? 1 : 0));
        return 0;
    case JTS_DIVISIBLEBY:
        BIND("num");
        if (av[0].kind == JV_UNBOUND) return jr_fail(r, IFD_ERR_INVALID, "test_divisibleby() missing 1 required positional argument: 'num'");
        JTRY(t_mod(r, v, av[0], &m));
        *out = jv_eq(m, jv_int(0));
        return 0;
    case JTS_FILTER:
    case JTS_TEST: {
        if (v.kind != JV_STR) return *out = false, 0;
        *out = id == JTS_FILTER ? jinja_filter_lookup(v.u.s, v.n) >= 0 : jinja_test_lookup(v.u.s, v.n) >= 0;
        return 0;
    }
    case JTS_SAMEAS:
        BIND("other");
        *out = same_as(v, av[0]);
        return 0;
    case JTS_IN:
        BIND("seq");
        if (av[0].kind == JV_UNBOUND) return jr_fail(r, IFD_ERR_INVALID, "test_in() missing 1 required positional argument: 'seq'");
        return jinja_contains(r, av[0], v, out);
    case JTS_EQ:
    case JTS_NE:
    case JTS_GT:
    case JTS_GE:
    case JTS_LT:
    case JTS_LE:
        if (a->npos != 1 || a->nkw)
            return jr_fail(r, IFD_ERR_INVALID, "%s expected 2 arguments, got %u", fname, 1 + a->npos + a->nkw);
        return compare_test(r, id, v, a->pos[0], out);
    default: return jr_fail(r, IFD_ERR_INTERNAL, "unknown test %d", id);
    }
}
