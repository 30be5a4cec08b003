/* SPDX-License-Identifier: Apache-2.0
 *
 * jinja_builtins.c: what templates reach through Python itself rather than
 * through jinja2's filter table:
 *   - methods of str (strip, split, startswith, replace, format, join, find,
 *     upper/lower/title...), dict (get, items, keys, values, copy), list and
 *     tuple (index, count), and the loop object (cycle, changed); list.append,
 *     dict.update and friends exist but are refused, as the immutable sandbox
 *     does ("access to attribute 'append' of 'list' object is unsafe.");
 *   - printf-style `str % args` and str.format();
 *   - the globals: range (capped at 100000 items like jinja2's sandbox), dict,
 *     namespace, raise_exception and strftime_now.
 * Also the string helpers the filters share (strip, case mapping, replace).
 *
 * Not supported (errors that say so): joiner, cycler, lipsum, str.encode,
 * format fields with nested replacement fields or !conversions in specs.
 *
 * Layer: server.
 */
#include "jinja_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SANDBOX_MAX_RANGE 100000

/* ------------------------------------------------------------------ string helpers */

static bool in_chars(uint32_t c, struct jv chars)
{
    for (size_t i = 0; i < chars.n;)
        if (u8_next(chars.u.s, chars.n, &i) == c) return true;
    return false;
}

int jstr_strip(struct jr *r, struct jv s, struct jv chars, int mode, struct jv *out)
{
    bool ws = chars.kind == JV_UNBOUND || chars.kind == JV_NONE;
    if (!ws && chars.kind != JV_STR) return jr_fail(r, IFD_ERR_INVALID, "strip arg must be None or str");
    size_t a = 0, b = s.n;
    if (mode & JS_LEFT)
        while (a < b) {
            size_t k = a;
            uint32_t c = u8_next(s.u.s, s.n, &k);
            if (ws ? !py_isspace(c) : !in_chars(c, chars)) break;
            a = k;
        }
    if (mode & JS_RIGHT)
        while (b > a) {
            size_t k = b - 1;
            while (k > a && ((unsigned char)s.u.s[k] & 0xC0) == 0x80) k--;
            size_t e = k;
            uint32_t c = u8_next(s.u.s, s.n, &e);
            if (ws ? !py_isspace(c) : !in_chars(c, chars)) break;
            b = k;
        }
    *out = jv_str(s.u.s + a, b - a);
    return 0;
}

int jstr_case(struct jr *r, struct jv s, int mode, struct jv *out)
{
    struct jsb b;
    jsb_init(&b, &r->a);
    bool prev_cased = false, first = true;
    for (size_t i = 0; i < s.n;) {
        uint32_t c = u8_next(s.u.s, s.n, &i);
        bool up;
        switch (mode) {
        case JC_UPPER: up = true; break;
        case JC_LOWER: up = false; break;
        case JC_TITLE: up = !prev_cased; break;
        case JC_CAPITALIZE: up = first; break;
        default: up = py_islower_cp(c); break;
        }
        if (up) py_put_upper(&b, c);
        else jsb_put_cp(&b, py_lower(c));
        prev_cased = py_iscased(c);
        first = false;
    }
    return jr_sb_done(r, &b, out);
}

int jstr_replace(struct jr *r, struct jv s, struct jv old, struct jv rep, int64_t count, struct jv *out)
{
    struct jsb b;
    jsb_init(&b, &r->a);
    if (count < 0) count = INT64_MAX;
    if (old.n == 0) {
        /* Python inserts the replacement before every character and at the end */
        size_t i = 0;
        int64_t done = 0;
        while (done < count) {
            jsb_put(&b, rep.u.s, rep.n);
            done++;
            if (i >= s.n) break;
            size_t k = i;
            u8_next(s.u.s, s.n, &k);
            jsb_put(&b, s.u.s + i, k - i);
            i = k;
        }
        jsb_put(&b, s.u.s + i, s.n - i);
        JTRY(jr_steps(r, s.n));
        return jr_sb_done(r, &b, out);
    }
    size_t i = 0;
    int64_t done = 0;
    while (done < count && i + old.n <= s.n) {
        const char *hit = memmem(s.u.s + i, s.n - i, old.u.s, old.n);
        if (!hit) break;
        size_t at = (size_t)(hit - s.u.s);
        jsb_put(&b, s.u.s + i, at - i);
        jsb_put(&b, rep.u.s, rep.n);
        i = at + old.n;
        done++;
    }
    if (done == 0) {
        *out = s;
        return 0;
    }
    jsb_put(&b, s.u.s + i, s.n - i);
    JTRY(jr_steps(r, (uint64_t)done));
    return jr_sb_done(r, &b, out);
}

/* Collects parts into a list value. */
struct parts {
    struct jv *v;
    uint32_t n, cap;
};

static int parts_push(struct jr *r, struct parts *p, struct jv v)
{
    if (p->n == p->cap) {
        uint32_t cap = p->cap ? p->cap * 2 : 8;
        struct jv *nv = jr_alloc(r, cap * sizeof *nv);
        if (!nv) return IFD_ERR_NOMEM;
        if (p->n) memcpy(nv, p->v, p->n * sizeof *nv);
        p->v = nv;
        p->cap = cap;
    }
    p->v[p->n++] = v;
    return jr_step(r);
}

static int parts_list(struct jr *r, const struct parts *p, struct jv *out)
{
    JTRY(jr_new_list(r, JV_LIST, p->n, out));
    if (p->n) memcpy(out->u.l->v, p->v, p->n * sizeof *p->v);
    return 0;
}

int jstr_splitlines(struct jr *r, struct jv s, bool keepends, struct jv *out)
{
    struct parts p = {0};
    size_t start = 0;
    for (size_t i = 0; i < s.n;) {
        size_t at = i;
        uint32_t c = u8_next(s.u.s, s.n, &i);
        if (!py_islinebreak(c)) continue;
        if (c == '\r' && i < s.n && s.u.s[i] == '\n') i++;
        JTRY(parts_push(r, &p, jv_str(s.u.s + start, (keepends ? i : at) - start)));
        start = i;
    }
    if (start < s.n) JTRY(parts_push(r, &p, jv_str(s.u.s + start, s.n - start)));
    return parts_list(r, &p, out);
}

/* ------------------------------------------------------------------ method table */

enum jmethod_id {
    /* str */
    JM_CAPITALIZE, JM_CASEFOLD, JM_CENTER, JM_COUNT, JM_ENDSWITH, JM_FIND, JM_FORMAT, JM_INDEX, JM_ISALNUM,
    JM_ISALPHA, JM_ISDECIMAL, JM_ISDIGIT, JM_ISLOWER, JM_ISNUMERIC, JM_ISSPACE, JM_ISTITLE, JM_ISUPPER, JM_JOIN,
    JM_LJUST, JM_LOWER, JM_LSTRIP, JM_PARTITION, JM_REMOVEPREFIX, JM_REMOVESUFFIX, JM_REPLACE, JM_RFIND,
    JM_RINDEX, JM_RJUST, JM_RPARTITION, JM_RSPLIT, JM_RSTRIP, JM_SPLIT, JM_SPLITLINES, JM_STARTSWITH,
    JM_STRIP, JM_SWAPCASE, JM_TITLE, JM_UPPER, JM_ZFILL, JM_ENCODE,
    /* dict */
    JM_GET, JM_ITEMS, JM_KEYS, JM_VALUES, JM_COPY,
    /* list, tuple: JM_INDEX, JM_COUNT, JM_COPY */
    /* loop */
    JM_CYCLE, JM_CHANGED,
};

struct mentry {
    const char *name;
    int id;
};

static const struct mentry g_str_methods[] = {
    {"capitalize", JM_CAPITALIZE}, {"casefold", JM_CASEFOLD}, {"center", JM_CENTER}, {"count", JM_COUNT},
    {"endswith", JM_ENDSWITH}, {"find", JM_FIND}, {"format", JM_FORMAT}, {"index", JM_INDEX},
    {"isalnum", JM_ISALNUM}, {"isalpha", JM_ISALPHA}, {"isdecimal", JM_ISDECIMAL}, {"isdigit", JM_ISDIGIT},
    {"islower", JM_ISLOWER}, {"isnumeric", JM_ISNUMERIC}, {"isspace", JM_ISSPACE}, {"istitle", JM_ISTITLE},
    {"isupper", JM_ISUPPER}, {"join", JM_JOIN}, {"ljust", JM_LJUST}, {"lower", JM_LOWER}, {"lstrip", JM_LSTRIP},
    {"partition", JM_PARTITION}, {"removeprefix", JM_REMOVEPREFIX}, {"removesuffix", JM_REMOVESUFFIX},
    {"replace", JM_REPLACE}, {"rfind", JM_RFIND}, {"rindex", JM_RINDEX}, {"rjust", JM_RJUST},
    {"rpartition", JM_RPARTITION}, {"rsplit", JM_RSPLIT}, {"rstrip", JM_RSTRIP}, {"split", JM_SPLIT},
    {"splitlines", JM_SPLITLINES}, {"startswith", JM_STARTSWITH}, {"strip", JM_STRIP}, {"swapcase", JM_SWAPCASE},
    {"title", JM_TITLE}, {"upper", JM_UPPER}, {"zfill", JM_ZFILL}, {"encode", JM_ENCODE}, {NULL, 0},
};
static const struct mentry g_dict_methods[] = {
    {"get", JM_GET}, {"items", JM_ITEMS}, {"keys", JM_KEYS}, {"values", JM_VALUES}, {"copy", JM_COPY}, {NULL, 0},
};
static const struct mentry g_list_methods[] = {{"index", JM_INDEX}, {"count", JM_COUNT}, {"copy", JM_COPY}, {NULL, 0}};
static const struct mentry g_tuple_methods[] = {{"index", JM_INDEX}, {"count", JM_COUNT}, {NULL, 0}};
static const struct mentry g_loop_methods[] = {{"cycle", JM_CYCLE}, {"changed", JM_CHANGED}, {NULL, 0}};

/* Methods that exist in Python but the immutable sandbox refuses. */
static const char *const g_dict_unsafe[] = {"clear", "pop", "popitem", "setdefault", "update", NULL};
static const char *const g_list_unsafe[] = {"append", "clear", "extend", "insert", "pop", "remove", "reverse", "sort", NULL};

static bool name_is(const char *name, size_t n, const char *lit) { return strlen(lit) == n && memcmp(name, lit, n) == 0; }

static const struct mentry *find_method(const struct mentry *table, const char *name, size_t n)
{
    for (; table->name; table++)
        if (name_is(name, n, table->name)) return table;
    return NULL;
}

bool jinja_method_lookup(struct jr *r, struct jv obj, const char *name, size_t n, struct jv *out, int *rc)
{
    const struct mentry *table = NULL;
    const char *const *unsafe = NULL;
    switch (obj.kind) {
    case JV_STR: table = g_str_methods; break;
    case JV_DICT: table = g_dict_methods, unsafe = g_dict_unsafe; break;
    case JV_LIST:
        if (obj.sub == JL_LIST) table = g_list_methods, unsafe = g_list_unsafe;
        break;
    case JV_TUPLE: table = g_tuple_methods; break;
    case JV_LOOP: table = g_loop_methods; break;
    default: break;
    }
    for (int i = 0; unsafe && unsafe[i]; i++) {
        if (!name_is(name, n, unsafe[i])) continue;
        char hint[160];
        snprintf(hint, sizeof hint, "access to attribute '%s' of '%s' object is unsafe.", unsafe[i], jv_type_name(obj));
        char *h = ja_memdup(&r->a, hint, strlen(hint));
        *rc = h ? jr_undef_hint(r, h, out) : jr_nomem(r);
        return true;
    }
    const struct mentry *m = table ? find_method(table, name, n) : NULL;
    if (!m) return false;
    struct jmethod *bm = jr_alloc(r, sizeof *bm);
    if (!bm) {
        *rc = IFD_ERR_NOMEM;
        return true;
    }
    bm->self = obj;
    bm->id = m->id;
    bm->name = m->name;
    memset(out, 0, sizeof *out);
    out->kind = JV_METHOD;
    out->u.bm = bm;
    *rc = 0;
    return true;
}

/* ------------------------------------------------------------------ str methods */

static int need_str(struct jr *r, struct jv v, const char *what)
{
    if (v.kind == JV_STR) return 0;
    return jr_fail(r, IFD_ERR_INVALID, "%s must be str, not %s", what, jv_type_name(v));
}

static int int_arg(struct jr *r, struct jv v, int64_t dflt, int64_t *out)
{
    if (v.kind == JV_UNBOUND || v.kind == JV_NONE) {
        *out = dflt;
        return 0;
    }
    if (!jv_is_intlike(v))
        return jr_fail(r, IFD_ERR_INVALID, "'%s' object cannot be interpreted as an integer", jv_type_name(v));
    *out = v.u.i;
    return 0;
}

/* code point range [start, end) of s as byte offsets, like s[start:end] */
static void cp_range(struct jv s, struct jv vs, struct jv ve, size_t *a, size_t *b)
{
    int64_t len = (int64_t)u8_count(s.u.s, s.n);
    int64_t st = vs.kind == JV_INT || vs.kind == JV_BOOL ? vs.u.i : 0;
    int64_t en = ve.kind == JV_INT || ve.kind == JV_BOOL ? ve.u.i : len;
    if (st < 0) st = st + len < 0 ? 0 : st + len;
    if (en < 0) en = en + len < 0 ? 0 : en + len;
    if (st > len) st = len;
    if (en > len) en = len;
    if (en < st) en = st;
    *a = u8_offset(s.u.s, s.n, (size_t)st);
    *b = *a + u8_offset(s.u.s + *a, s.n - *a, (size_t)(en - st));
}

static int affix_match(struct jr *r, struct jv s, struct jv probe, struct jv vs, struct jv ve, bool ends, const char *fn,
                       bool *out)
{
    size_t a, b;
    cp_range(s, vs, ve, &a, &b);
    const struct jv *items = &probe;
    uint32_t n = 1;
    if (probe.kind == JV_TUPLE) {
        items = probe.u.l->v;
        n = probe.u.l->n;
    } else if (probe.kind != JV_STR) {
        return jr_fail(r, IFD_ERR_INVALID, "%s first arg must be str or a tuple of str, not %s", fn, jv_type_name(probe));
    }
    *out = false;
    for (uint32_t i = 0; i < n && !*out; i++) {
        struct jv p = items[i];
        if (p.kind != JV_STR)
            return jr_fail(r, IFD_ERR_INVALID, "tuple for %s must only contain str, not %s", fn, jv_type_name(p));
        if (p.n > b - a) continue;
        *out = memcmp(s.u.s + (ends ? b - p.n : a), p.u.s, p.n) == 0;
    }
    return 0;
}

static int str_find(struct jr *r, struct jv s, const struct jv *av, bool rev, int64_t *out)
{
    JTRY(need_str(r, av[0], "substring"));
    size_t a, b;
    cp_range(s, av[1], av[2], &a, &b);
    struct jv sub = av[0];
    *out = -1;
    if (sub.n > b - a) return 0;
    const char *hit = NULL;
    if (!rev) {
        hit = sub.n ? memmem(s.u.s + a, b - a, sub.u.s, sub.n) : s.u.s + a;
    } else {
        for (size_t i = b - sub.n + 1; i-- > a;)
            if (memcmp(s.u.s + i, sub.u.s, sub.n) == 0) {
                hit = s.u.s + i;
                break;
            }
    }
    if (hit) *out = (int64_t)u8_count(s.u.s, (size_t)(hit - s.u.s));
    return jr_steps(r, (b - a) / 32);
}

static int str_count(struct jr *r, struct jv s, const struct jv *av, int64_t *out)
{
    JTRY(need_str(r, av[0], "substring"));
    size_t a, b;
    cp_range(s, av[1], av[2], &a, &b);
    struct jv sub = av[0];
    if (sub.n == 0) {
        *out = (int64_t)u8_count(s.u.s + a, b - a) + 1;
        return 0;
    }
    int64_t c = 0;
    for (size_t i = a; i + sub.n <= b;) {
        const char *hit = memmem(s.u.s + i, b - i, sub.u.s, sub.n);
        if (!hit) break;
        c++;
        i = (size_t)(hit - s.u.s) + sub.n;
    }
    *out = c;
    return jr_steps(r, (b - a) / 32);
}

/* split / rsplit; sep unbound or none: runs of whitespace */
static int str_split(struct jr *r, struct jv s, struct jv sep, int64_t maxsplit, bool rev, struct jv *out)
{
    struct parts p = {0};
    if (maxsplit < 0) maxsplit = INT64_MAX;
    if (sep.kind == JV_STR && sep.n == 0) return jr_fail(r, IFD_ERR_INVALID, "empty separator");
    if (sep.kind != JV_STR && sep.kind != JV_NONE && sep.kind != JV_UNBOUND)
        return jr_fail(r, IFD_ERR_INVALID, "must be str or None, not %s", jv_type_name(sep));
    if (sep.kind == JV_STR) {
        if (!rev) {
            size_t i = 0;
            while (maxsplit-- > 0) {
                const char *hit = memmem(s.u.s + i, s.n - i, sep.u.s, sep.n);
                if (!hit) break;
                JTRY(parts_push(r, &p, jv_str(s.u.s + i, (size_t)(hit - s.u.s) - i)));
                i = (size_t)(hit - s.u.s) + sep.n;
            }
            JTRY(parts_push(r, &p, jv_str(s.u.s + i, s.n - i)));
            return parts_list(r, &p, out);
        }
        size_t end = s.n;
        struct parts rp = {0};
        while (maxsplit > 0 && end >= sep.n) {
            size_t i = end - sep.n + 1, hit = SIZE_MAX;
            while (i-- > 0)
                if (memcmp(s.u.s + i, sep.u.s, sep.n) == 0) {
                    hit = i;
                    break;
                }
            if (hit == SIZE_MAX) break;
            JTRY(parts_push(r, &rp, jv_str(s.u.s + hit + sep.n, end - hit - sep.n)));
            end = hit;
            maxsplit--;
        }
        JTRY(parts_push(r, &p, jv_str(s.u.s, end)));
        for (uint32_t k = rp.n; k-- > 0;) JTRY(parts_push(r, &p, rp.v[k]));
        return parts_list(r, &p, out);
    }
    /* whitespace: collect word boundaries first */
    struct parts words = {0};
    for (size_t i = 0, start, end; py_next_word(s.u.s, s.n, &i, &start, &end);)
        JTRY(parts_push(r, &words, jv_str(s.u.s + start, end - start)));
    if ((int64_t)words.n - 1 <= maxsplit) return parts_list(r, &words, out);
    /* more words than splits: the remainder runs to the end of the string
     * (split) or from its start (rsplit), whitespace there included */
    if (!rev) {
        for (int64_t k = 0; k < maxsplit; k++) JTRY(parts_push(r, &p, words.v[k]));
        const char *rest = words.v[maxsplit].u.s;
        JTRY(parts_push(r, &p, jv_str(rest, (size_t)(s.u.s + s.n - rest))));
        return parts_list(r, &p, out);
    }
    uint32_t first_kept = words.n - (uint32_t)maxsplit;
    const struct jv last_rest = words.v[first_kept - 1];
    JTRY(parts_push(r, &p, jv_str(s.u.s, (size_t)(last_rest.u.s + last_rest.n - s.u.s))));
    for (uint32_t k = first_kept; k < words.n; k++) JTRY(parts_push(r, &p, words.v[k]));
    return parts_list(r, &p, out);
}

static int str_pad(struct jr *r, struct jv s, struct jv vw, struct jv vfill, int how, struct jv *out)
{
    int64_t width = 0;
    JTRY(int_arg(r, vw, 0, &width));
    struct jv fill = jv_str(" ", 1);
    if (vfill.kind != JV_UNBOUND) {
        if (vfill.kind != JV_STR || u8_count(vfill.u.s, vfill.n) != 1)
            return jr_fail(r, IFD_ERR_INVALID, "The fill character must be exactly one character long");
        fill = vfill;
    }
    int64_t len = (int64_t)u8_count(s.u.s, s.n);
    if (width <= len) {
        *out = s;
        return 0;
    }
    if (width > (int64_t)r->lim.max_output) return jr_fail(r, IFD_ERR_RANGE, "padding width %lld is too large", (long long)width);
    int64_t pad = width - len, left;
    if (how == 0) left = pad / 2 + (pad & width & 1); /* center, as CPython */
    else left = how < 0 ? 0 : pad;
    struct jsb b;
    jsb_init(&b, &r->a);
    for (int64_t i = 0; i < left; i++) jsb_put(&b, fill.u.s, fill.n);
    jsb_put(&b, s.u.s, s.n);
    for (int64_t i = 0; i < pad - left; i++) jsb_put(&b, fill.u.s, fill.n);
    JTRY(jr_steps(r, (uint64_t)pad));
    return jr_sb_done(r, &b, out);
}

static bool str_all(struct jv s, bool (*pred)(uint32_t))
{
    if (s.n == 0) return false;
    for (size_t i = 0; i < s.n;)
        if (!pred(u8_next(s.u.s, s.n, &i))) return false;
    return true;
}

/* islower/isupper: at least one cased character and none of the other case */
static bool str_case_is(struct jv s, bool upper)
{
    bool cased = false;
    for (size_t i = 0; i < s.n;) {
        uint32_t c = u8_next(s.u.s, s.n, &i);
        if (upper ? py_islower_cp(c) : py_isupper_cp(c)) return false;
        cased = cased || (upper ? py_isupper_cp(c) : py_islower_cp(c));
    }
    return cased;
}

static bool str_istitle(struct jv s)
{
    bool cased = false, prev = false;
    for (size_t i = 0; i < s.n;) {
        uint32_t c = u8_next(s.u.s, s.n, &i);
        if (py_isupper_cp(c)) {
            if (prev) return false;
            prev = cased = true;
        } else if (py_islower_cp(c)) {
            if (!prev) return false;
            prev = cased = true;
        } else {
            prev = false;
        }
    }
    return cased;
}

static int str_join(struct jr *r, struct jv sep, struct jv seq, struct jv *out)
{
    const struct jv *items;
    uint32_t n;
    JTRY(jv_iter(r, seq, &items, &n));
    struct jsb b;
    jsb_init(&b, &r->a);
    for (uint32_t i = 0; i < n; i++) {
        if (items[i].kind != JV_STR)
            return jr_fail(r, IFD_ERR_INVALID, "sequence item %u: expected str instance, %s found", i, jv_type_name(items[i]));
        if (i) jsb_put(&b, sep.u.s, sep.n);
        jsb_put(&b, items[i].u.s, items[i].n);
    }
    JTRY(jr_steps(r, n));
    return jr_sb_done(r, &b, out);
}

static int str_partition(struct jr *r, struct jv s, struct jv sep, bool rev, struct jv *out)
{
    JTRY(need_str(r, sep, "separator"));
    if (!sep.n) return jr_fail(r, IFD_ERR_INVALID, "empty separator");
    JTRY(jr_new_list(r, JV_TUPLE, 3, out));
    struct jv *v = out->u.l->v;
    const char *hit = NULL;
    if (!rev) {
        hit = memmem(s.u.s, s.n, sep.u.s, sep.n);
    } else if (sep.n <= s.n) {
        for (size_t i = s.n - sep.n + 1; i-- > 0;)
            if (memcmp(s.u.s + i, sep.u.s, sep.n) == 0) {
                hit = s.u.s + i;
                break;
            }
    }
    if (!hit) {
        v[0] = rev ? jv_str("", 0) : s;
        v[1] = jv_str("", 0);
        v[2] = rev ? s : jv_str("", 0);
        return 0;
    }
    size_t at = (size_t)(hit - s.u.s);
    v[0] = jv_str(s.u.s, at);
    v[1] = sep;
    v[2] = jv_str(s.u.s + at + sep.n, s.n - at - sep.n);
    return 0;
}

static int str_zfill(struct jr *r, struct jv s, struct jv vw, struct jv *out)
{
    int64_t width = 0;
    JTRY(int_arg(r, vw, 0, &width));
    int64_t len = (int64_t)u8_count(s.u.s, s.n);
    if (width <= len) {
        *out = s;
        return 0;
    }
    if (width > (int64_t)r->lim.max_output) return jr_fail(r, IFD_ERR_RANGE, "zfill width too large");
    struct jsb b;
    jsb_init(&b, &r->a);
    size_t skip = s.n && (s.u.s[0] == '+' || s.u.s[0] == '-');
    jsb_put(&b, s.u.s, skip);
    for (int64_t i = 0; i < width - len; i++) jsb_putc(&b, '0');
    jsb_put(&b, s.u.s + skip, s.n - skip);
    return jr_sb_done(r, &b, out);
}

static int format_method(struct jr *r, struct jv fmt, const struct jargs *a, struct jv *out);

static int str_method(struct jr *r, int id, struct jv s, const struct jargs *a, struct jv *out);

/* Markup's methods: markupsafe escapes some arguments and wraps the results. */
static int markup_method(struct jr *r, int id, struct jv s, const struct jargs *a, struct jv *out)
{
    struct jv pos[8];
    struct jargs ea = *a;
    if (a->npos <= 8) {
        memcpy(pos, a->pos, a->npos * sizeof *pos);
        ea.pos = pos;
        bool esc_second = id == JM_REPLACE || id == JM_CENTER || id == JM_LJUST || id == JM_RJUST;
        if (esc_second && a->npos >= 2) JTRY(jinja_escape(r, pos[1], &pos[1]));
        if (id == JM_JOIN && a->npos == 1) {
            const struct jv *items;
            uint32_t n;
            JTRY(jv_iter(r, pos[0], &items, &n));
            JTRY(jr_new_list(r, JV_LIST, n, &pos[0]));
            for (uint32_t i = 0; i < n; i++) JTRY(jinja_escape(r, items[i], &pos[0].u.l->v[i]));
        }
    }
    JTRY(str_method(r, id, s, &ea, out));
    switch (id) {
    case JM_SPLIT:
    case JM_RSPLIT:
    case JM_SPLITLINES:
    case JM_PARTITION:
    case JM_RPARTITION:
        for (uint32_t i = 0; i < out->u.l->n; i++) out->u.l->v[i] = jv_markup(out->u.l->v[i]);
        return 0;
    case JM_UPPER: case JM_LOWER: case JM_CASEFOLD: case JM_TITLE: case JM_CAPITALIZE: case JM_SWAPCASE:
    case JM_STRIP: case JM_LSTRIP: case JM_RSTRIP: case JM_REPLACE: case JM_CENTER: case JM_LJUST: case JM_RJUST:
    case JM_ZFILL: case JM_REMOVEPREFIX: case JM_REMOVESUFFIX: case JM_JOIN: case JM_FORMAT:
        *out = jv_markup(*out);
        return 0;
    default: return 0;
    }
}

static int call_str_method(struct jr *r, int id, struct jv s, const struct jargs *a, struct jv *out)
{
    if (jv_is_markup(s)) return markup_method(r, id, s, a, out);
    return str_method(r, id, s, a, out);
}

static int str_method(struct jr *r, int id, struct jv s, const struct jargs *a, struct jv *out)
{
    static const char *const n_chars[] = {"chars"}, *const n_split[] = {"sep", "maxsplit"},
                             *const n_find[] = {"sub", "start", "end"}, *const n_pad[] = {"width", "fillchar"},
                             *const n_repl[] = {"old", "new", "count"}, *const n_one[] = {"x"},
                             *const n_keep[] = {"keepends"};
    struct jv av[3];
    int64_t i64 = 0;
    bool b = false;
    switch (id) {
    case JM_STRIP:
    case JM_LSTRIP:
    case JM_RSTRIP:
        JTRY(jargs_bind(r, a, "strip", n_chars, 1, 0, av));
        return jstr_strip(r, s, av[0], id == JM_STRIP ? JS_BOTH : id == JM_LSTRIP ? JS_LEFT : JS_RIGHT, out);
    case JM_UPPER: return jstr_case(r, s, JC_UPPER, out);
    case JM_LOWER:
    case JM_CASEFOLD: return jstr_case(r, s, JC_LOWER, out);
    case JM_TITLE: return jstr_case(r, s, JC_TITLE, out);
    case JM_CAPITALIZE: return jstr_case(r, s, JC_CAPITALIZE, out);
    case JM_SWAPCASE: return jstr_case(r, s, JC_SWAPCASE, out);
    case JM_SPLIT:
    case JM_RSPLIT:
        JTRY(jargs_bind(r, a, "split", n_split, 2, 0, av));
        JTRY(int_arg(r, av[1], -1, &i64));
        return str_split(r, s, av[0], i64, id == JM_RSPLIT, out);
    case JM_SPLITLINES:
        JTRY(jargs_bind(r, a, "splitlines", n_keep, 1, 0, av));
        return jstr_splitlines(r, s, jv_truthy(av[0]), out);
    case JM_STARTSWITH:
    case JM_ENDSWITH:
        JTRY(jargs_bind(r, a, id == JM_STARTSWITH ? "startswith" : "endswith", n_find, 3, 1, av));
        JTRY(affix_match(r, s, av[0], av[1], av[2], id == JM_ENDSWITH, id == JM_STARTSWITH ? "startswith" : "endswith", &b));
        *out = jv_bool(b);
        return 0;
    case JM_FIND:
    case JM_RFIND:
    case JM_INDEX:
    case JM_RINDEX:
        JTRY(jargs_bind(r, a, "find", n_find, 3, 1, av));
        JTRY(str_find(r, s, av, id == JM_RFIND || id == JM_RINDEX, &i64));
        if (i64 < 0 && (id == JM_INDEX || id == JM_RINDEX)) return jr_fail(r, IFD_ERR_INVALID, "substring not found");
        *out = jv_int(i64);
        return 0;
    case JM_COUNT:
        JTRY(jargs_bind(r, a, "count", n_find, 3, 1, av));
        JTRY(str_count(r, s, av, &i64));
        *out = jv_int(i64);
        return 0;
    case JM_REPLACE:
        JTRY(jargs_bind(r, a, "replace", n_repl, 3, 2, av));
        JTRY(need_str(r, av[0], "replace() argument 1"));
        JTRY(need_str(r, av[1], "replace() argument 2"));
        JTRY(int_arg(r, av[2], -1, &i64));
        return jstr_replace(r, s, av[0], av[1], i64, out);
    case JM_JOIN:
        JTRY(jargs_bind(r, a, "join", n_one, 1, 1, av));
        return str_join(r, s, av[0], out);
    case JM_CENTER:
    case JM_LJUST:
    case JM_RJUST:
        JTRY(jargs_bind(r, a, "center", n_pad, 2, 1, av));
        return str_pad(r, s, av[0], av[1], id == JM_CENTER ? 0 : id == JM_LJUST ? -1 : 1, out);
    case JM_ZFILL:
        JTRY(jargs_bind(r, a, "zfill", n_pad, 1, 1, av));
        return str_zfill(r, s, av[0], out);
    case JM_PARTITION:
    case JM_RPARTITION:
        JTRY(jargs_bind(r, a, "partition", n_one, 1, 1, av));
        return str_partition(r, s, av[0], id == JM_RPARTITION, out);
    case JM_REMOVEPREFIX:
    case JM_REMOVESUFFIX: {
        JTRY(jargs_bind(r, a, "removeprefix", n_one, 1, 1, av));
        JTRY(need_str(r, av[0], "argument"));
        struct jv p = av[0];
        bool pre = id == JM_REMOVEPREFIX;
        bool hit = p.n <= s.n && memcmp(s.u.s + (pre ? 0 : s.n - p.n), p.u.s, p.n) == 0;
        *out = hit ? jv_str(s.u.s + (pre ? p.n : 0), s.n - p.n) : s;
        return 0;
    }
    case JM_ISALNUM: *out = jv_bool(str_all(s, py_isalnum)); return 0;
    case JM_ISALPHA: *out = jv_bool(str_all(s, py_isalpha)); return 0;
    case JM_ISDIGIT:
    case JM_ISDECIMAL:
    case JM_ISNUMERIC: *out = jv_bool(str_all(s, py_isdigit)); return 0;
    case JM_ISSPACE: *out = jv_bool(str_all(s, py_isspace)); return 0;
    case JM_ISLOWER: *out = jv_bool(str_case_is(s, false)); return 0;
    case JM_ISUPPER: *out = jv_bool(str_case_is(s, true)); return 0;
    case JM_ISTITLE: *out = jv_bool(str_istitle(s)); return 0;
    case JM_FORMAT: return format_method(r, s, a, out);
    case JM_ENCODE: return jr_fail(r, IFD_ERR_UNSUPPORTED, "str.encode() is not supported in chat templates");
    default: return jr_fail(r, IFD_ERR_INTERNAL, "unknown str method");
    }
}

/* ------------------------------------------------------------------ dict, list, loop methods */

static int dict_view(struct jr *r, const struct jdict *d, int id, struct jv *out)
{
    JTRY(jr_new_list(r, JV_LIST, d->n, out));
    out->sub = id == JM_ITEMS ? JL_DICT_ITEMS : id == JM_KEYS ? JL_DICT_KEYS : JL_DICT_VALUES;
    for (uint32_t i = 0; i < d->n; i++) {
        if (id == JM_KEYS) out->u.l->v[i] = d->k[i];
        else if (id == JM_VALUES) out->u.l->v[i] = d->v[i];
        else {
            JTRY(jr_new_list(r, JV_TUPLE, 2, &out->u.l->v[i]));
            out->u.l->v[i].u.l->v[0] = d->k[i];
            out->u.l->v[i].u.l->v[1] = d->v[i];
        }
    }
    return jr_steps(r, d->n);
}

static int call_dict_method(struct jr *r, int id, struct jv self, const struct jargs *a, struct jv *out)
{
    static const char *const n_get[] = {"key", "default"};
    struct jv av[2];
    const struct jdict *d = self.u.d;
    switch (id) {
    case JM_GET: {
        JTRY(jargs_bind(r, a, "get", n_get, 2, 1, av));
        const struct jv *v = jd_get(d, av[0]);
        *out = v ? *v : av[1].kind == JV_UNBOUND ? jv_none() : av[1];
        return 0;
    }
    case JM_ITEMS:
    case JM_KEYS:
    case JM_VALUES:
        JTRY(jargs_bind(r, a, "items", NULL, 0, 0, av));
        return dict_view(r, d, id, out);
    case JM_COPY:
        JTRY(jargs_bind(r, a, "copy", NULL, 0, 0, av));
        JTRY(jr_new_dict(r, d->n, out));
        for (uint32_t i = 0; i < d->n; i++) JTRY(jr_dict_set(r, out->u.d, d->k[i], d->v[i]));
        return 0;
    default: return jr_fail(r, IFD_ERR_INTERNAL, "unknown dict method");
    }
}

static int call_seq_method(struct jr *r, int id, struct jv self, const struct jargs *a, struct jv *out)
{
    static const char *const n_x[] = {"x"};
    struct jv av[1];
    const struct jlist *l = self.u.l;
    if (id == JM_COPY) {
        JTRY(jargs_bind(r, a, "copy", NULL, 0, 0, av));
        JTRY(jr_new_list(r, JV_LIST, l->n, out));
        memcpy(out->u.l->v, l->v, l->n * sizeof *l->v);
        return 0;
    }
    JTRY(jargs_bind(r, a, id == JM_INDEX ? "index" : "count", n_x, 1, 1, av));
    JTRY(jr_steps(r, l->n));
    int64_t count = 0;
    for (uint32_t i = 0; i < l->n; i++) {
        if (!jv_eq(l->v[i], av[0])) continue;
        if (id == JM_INDEX) {
            *out = jv_int(i);
            return 0;
        }
        count++;
    }
    if (id == JM_COUNT) {
        *out = jv_int(count);
        return 0;
    }
    if (self.kind == JV_TUPLE) return jr_fail(r, IFD_ERR_INVALID, "tuple.index(x): x not in tuple");
    struct jsb b;
    jsb_init(&b, &r->a);
    jv_put_repr(&b, av[0]);
    struct jv rep;
    JTRY(jr_sb_done(r, &b, &rep));
    return jr_fail(r, IFD_ERR_INVALID, "%.*s is not in list", (int)rep.n, rep.u.s);
}

static int call_loop_method(struct jr *r, int id, struct jloop *l, const struct jargs *a, struct jv *out)
{
    if (a->nkw) return jr_fail(r, IFD_ERR_INVALID, "loop.%s() takes no keyword arguments", id == JM_CYCLE ? "cycle" : "changed");
    if (id == JM_CYCLE) {
        if (!a->npos) return jr_fail(r, IFD_ERR_INVALID, "no items for cycling given");
        *out = a->pos[l->index0 % a->npos];
        return 0;
    }
    struct jv t;
    JTRY(jr_new_list(r, JV_TUPLE, a->npos, &t));
    if (a->npos) memcpy(t.u.l->v, a->pos, a->npos * sizeof *a->pos);
    bool changed = l->last_changed.kind == JV_UNBOUND || !jv_eq(l->last_changed, t);
    if (changed) l->last_changed = t;
    *out = jv_bool(changed);
    return 0;
}

int jinja_call_method(struct jr *r, const struct jmethod *m, const struct jargs *a, struct jv *out)
{
    switch (m->self.kind) {
    case JV_STR: return call_str_method(r, m->id, m->self, a, out);
    case JV_DICT: return call_dict_method(r, m->id, m->self, a, out);
    case JV_LIST:
    case JV_TUPLE: return call_seq_method(r, m->id, m->self, a, out);
    case JV_LOOP: return call_loop_method(r, m->id, m->self.u.loop, a, out);
    default: return jr_fail(r, IFD_ERR_INTERNAL, "method on unexpected object");
    }
}

/* ------------------------------------------------------------------ printf-style formatting */

struct fspec {
    bool left, plus, space, alt, zero;
    int64_t width, prec; /* -1: not given */
    char type;
};

/* Pads body (already signed) to the width; zero padding goes after the sign/prefix. */
static void put_padded(struct jsb *b, const struct fspec *f, const char *body, size_t n, size_t prefix_len)
{
    int64_t len = (int64_t)u8_count(body, n);
    int64_t pad = f->width > len ? f->width - len : 0;
    if (f->left) {
        jsb_put(b, body, n);
        for (int64_t i = 0; i < pad; i++) jsb_putc(b, ' ');
    } else if (f->zero && f->type != 's' && f->type != 'r' && f->type != 'a' && f->type != 'c') {
        jsb_put(b, body, prefix_len);
        for (int64_t i = 0; i < pad; i++) jsb_putc(b, '0');
        jsb_put(b, body + prefix_len, n - prefix_len);
    } else {
        for (int64_t i = 0; i < pad; i++) jsb_putc(b, ' ');
        jsb_put(b, body, n);
    }
}

static int fmt_number(struct jr *r, struct jsb *b, const struct fspec *f, struct jv v)
{
    char buf[400], digits[80];
    if (!jv_is_num(v)) {
        if (strchr("xXoc", f->type))
            return jr_fail(r, IFD_ERR_INVALID, "%%%c format: an integer is required, not %s", f->type, jv_type_name(v));
        if (strchr("diu", f->type))
            return jr_fail(r, IFD_ERR_INVALID, "%%%c format: a real number is required, not %s", f->type, jv_type_name(v));
        return jr_fail(r, IFD_ERR_INVALID, "must be real number, not %s", jv_type_name(v));
    }
    const char *sign = "";
    size_t n;
    if (strchr("diuxXo", f->type)) {
        if (v.kind == JV_FLOAT && f->type != 'd' && f->type != 'i' && f->type != 'u')
            return jr_fail(r, IFD_ERR_INVALID, "%%%c format: an integer is required, not float", f->type);
        if (v.kind == JV_FLOAT && !isfinite(v.u.f))
            return jr_fail(r, IFD_ERR_INVALID, "cannot convert float %s to integer", isnan(v.u.f) ? "NaN" : "infinity");
        if (v.kind == JV_FLOAT && fabs(v.u.f) >= 9.2e18) return jr_fail(r, IFD_ERR_RANGE, "integer overflow (template integers are 64-bit)");
        int64_t i = v.kind == JV_FLOAT ? (int64_t)v.u.f : v.u.i;
        uint64_t mag = i < 0 ? (uint64_t)0 - (uint64_t)i : (uint64_t)i;
        sign = i < 0 ? "-" : f->plus ? "+" : f->space ? " " : "";
        const char *prefix = "";
        if (f->type == 'x' || f->type == 'X') {
            snprintf(digits, sizeof digits, f->type == 'x' ? "%llx" : "%llX", (unsigned long long)mag);
            if (f->alt) prefix = f->type == 'x' ? "0x" : "0X";
        } else if (f->type == 'o') {
            snprintf(digits, sizeof digits, "%llo", (unsigned long long)mag);
            if (f->alt) prefix = "0o";
        } else {
            snprintf(digits, sizeof digits, "%llu", (unsigned long long)mag);
        }
        /* precision: minimum number of digits */
        char padded[200];
        size_t dl = strlen(digits);
        int64_t zeros = f->prec > (int64_t)dl ? f->prec - (int64_t)dl : 0;
        if (zeros > 100) zeros = 100;
        memset(padded, '0', (size_t)zeros);
        memcpy(padded + zeros, digits, dl + 1);
        n = (size_t)snprintf(buf, sizeof buf, "%s%s%s", sign, prefix, padded);
        put_padded(b, f, buf, n, strlen(sign) + strlen(prefix));
        return 0;
    }
    double d = jv_num(v);
    int prec = f->prec < 0 ? 6 : f->prec > 100 ? 100 : (int)f->prec;
    char cfmt[16];
    snprintf(cfmt, sizeof cfmt, "%%%s%s%s.%d%c", f->plus ? "+" : "", f->space ? " " : "", f->alt ? "#" : "", prec,
             f->type == 'F' ? 'F' : f->type);
    n = (size_t)snprintf(buf, sizeof buf, cfmt, d);
    if (n >= sizeof buf) n = sizeof buf - 1;
    size_t prefix = buf[0] == '-' || buf[0] == '+' || buf[0] == ' ';
    put_padded(b, f, buf, n, isfinite(d) ? prefix : n);
    return 0;
}

/* esc: Markup % args, where each argument's text is escaped first */
static int fmt_one(struct jr *r, struct jsb *b, const struct fspec *f, struct jv v, bool esc)
{
    if (v.kind == JV_UNDEF && f->type != 's' && f->type != 'r' && f->type != 'a') return jr_undef_fail(r, v);
    if (f->type == 's' || f->type == 'r' || f->type == 'a') {
        struct jsb t;
        jsb_init(&t, &r->a);
        struct jv s;
        if (esc && f->type == 's') {
            JTRY(jinja_escape(r, v, &s));
        } else {
            if (f->type == 's') jv_put_str(&t, v);
            else jv_put_repr(&t, v);
            JTRY(jr_sb_done(r, &t, &s));
            if (esc) JTRY(jinja_escape(r, s, &s));
        }
        if (f->prec >= 0 && (int64_t)u8_count(s.u.s, s.n) > f->prec) s.n = (uint32_t)u8_offset(s.u.s, s.n, (size_t)f->prec);
        put_padded(b, f, s.u.s, s.n, 0);
        return 0;
    }
    if (f->type == 'c') {
        char e[4];
        if (v.kind == JV_STR && u8_count(v.u.s, v.n) == 1) {
            put_padded(b, f, v.u.s, v.n, 0);
            return 0;
        }
        if (!jv_is_intlike(v) || v.u.i < 0 || v.u.i > 0x10FFFF) return jr_fail(r, IFD_ERR_INVALID, "%%c requires int or char");
        put_padded(b, f, e, u8_encode((uint32_t)v.u.i, e), 0);
        return 0;
    }
    return fmt_number(r, b, f, v);
}

/* Parses [flags][width][.prec]type after a '%' (and an optional (name)). */
static int parse_spec(struct jr *r, const char *s, size_t n, size_t *i, struct fspec *f)
{
    memset(f, 0, sizeof *f);
    f->prec = -1;
    for (; *i < n && strchr("-+ #0", s[*i]); (*i)++) {
        char c = s[*i];
        if (c == '-') f->left = true;
        else if (c == '+') f->plus = true;
        else if (c == ' ') f->space = true;
        else if (c == '#') f->alt = true;
        else f->zero = true;
    }
    if (*i < n && s[*i] == '*') return jr_fail(r, IFD_ERR_UNSUPPORTED, "'*' widths are not supported in %% formatting");
    for (; *i < n && s[*i] >= '0' && s[*i] <= '9'; (*i)++)
        if (f->width < 100000000) f->width = f->width * 10 + (s[*i] - '0');
    if (*i < n && s[*i] == '.') {
        (*i)++;
        f->prec = 0;
        for (; *i < n && s[*i] >= '0' && s[*i] <= '9'; (*i)++)
            if (f->prec < 100000000) f->prec = f->prec * 10 + (s[*i] - '0');
    }
    while (*i < n && strchr("hlL", s[*i])) (*i)++;
    if (*i >= n) return jr_fail(r, IFD_ERR_INVALID, "incomplete format");
    f->type = s[(*i)++];
    if (!strchr("sradiuoxXeEfFgGc", f->type))
        return jr_fail(r, IFD_ERR_INVALID, "unsupported format character '%c' (0x%x)", f->type, (unsigned char)f->type);
    if (f->width > (int64_t)r->lim.max_output) return jr_fail(r, IFD_ERR_RANGE, "format width too large");
    return 0;
}

int jinja_str_mod(struct jr *r, struct jv fmt, struct jv args, struct jv *out)
{
    const struct jv *pos = &args;
    uint32_t npos = 1, used = 0;
    if (args.kind == JV_TUPLE) {
        pos = args.u.l->v;
        npos = args.u.l->n;
    }
    bool mapping = args.kind == JV_DICT || args.kind == JV_UNDEF;
    struct jsb b;
    jsb_init(&b, &r->a);
    const char *s = fmt.u.s;
    size_t n = fmt.n;
    for (size_t i = 0; i < n;) {
        const char *pct = memchr(s + i, '%', n - i);
        if (!pct) {
            jsb_put(&b, s + i, n - i);
            break;
        }
        jsb_put(&b, s + i, (size_t)(pct - s) - i);
        i = (size_t)(pct - s) + 1;
        if (i < n && s[i] == '%') {
            jsb_putc(&b, '%');
            i++;
            continue;
        }
        struct jv v;
        if (i < n && s[i] == '(') {
            size_t close = i + 1, depth = 1;
            for (; close < n && depth; close++) depth += s[close] == '(' ? 1 : s[close] == ')' ? -1 : 0;
            if (depth) return jr_fail(r, IFD_ERR_INVALID, "incomplete format key");
            if (!mapping) return jr_fail(r, IFD_ERR_INVALID, "format requires a mapping");
            if (args.kind == JV_UNDEF) return jr_undef_fail(r, args);
            const struct jv *hit = jd_get_str(args.u.d, s + i + 1, close - i - 2);
            if (!hit) return jr_fail(r, IFD_ERR_INVALID, "'%.*s'", (int)(close - i - 2), s + i + 1);
            v = *hit;
            i = close;
        } else {
            if (used >= npos) return jr_fail(r, IFD_ERR_INVALID, "not enough arguments for format string");
            v = pos[used++];
        }
        struct fspec f;
        JTRY(parse_spec(r, s, n, &i, &f));
        JTRY(fmt_one(r, &b, &f, v, jv_is_markup(fmt)));
    }
    bool getitem = mapping || (args.kind == JV_LIST && args.sub == JL_LIST) || args.kind == JV_NS;
    if (used < npos && !(args.kind != JV_TUPLE && getitem))
        if (args.kind == JV_TUPLE || used == 0)
            return jr_fail(r, IFD_ERR_INVALID, "not all arguments converted during string formatting");
    JTRY(jr_sb_done(r, &b, out));
    out->sub = fmt.sub;
    return 0;
}

/* ------------------------------------------------------------------ str.format */

/* [[fill]align][sign][#][0][width][.precision][type] */
struct fmtspec {
    char fill[5];
    char align;
    struct fspec f;
};

static int parse_format_spec(struct jr *r, const char *spec, size_t n, struct fmtspec *fs)
{
    memset(fs, 0, sizeof *fs);
    fs->fill[0] = ' ';
    fs->f.prec = -1;
    if (memchr(spec, '{', n)) return jr_fail(r, IFD_ERR_UNSUPPORTED, "nested replacement fields in format specs are not supported");
    size_t i = 0, cl = 0;
    u8_next(spec, n, &cl);
    if (cl < n && strchr("<>^=", spec[cl])) {
        memcpy(fs->fill, spec, cl);
        fs->align = spec[cl];
        i = cl + 1;
    } else if (strchr("<>^=", spec[0])) {
        fs->align = spec[0];
        i = 1;
    }
    if (i < n && (spec[i] == '+' || spec[i] == '-' || spec[i] == ' ')) {
        fs->f.plus = spec[i] == '+';
        fs->f.space = spec[i] == ' ';
        i++;
    }
    if (i < n && spec[i] == '#') fs->f.alt = true, i++;
    if (i < n && spec[i] == '0') {
        if (!fs->align) {
            fs->align = '=';
            strcpy(fs->fill, "0");
        }
        i++;
    }
    for (; i < n && spec[i] >= '0' && spec[i] <= '9'; i++)
        if (fs->f.width < 100000000) fs->f.width = fs->f.width * 10 + (spec[i] - '0');
    if (i < n && (spec[i] == ',' || spec[i] == '_'))
        return jr_fail(r, IFD_ERR_UNSUPPORTED, "digit grouping in format specs is not supported");
    if (i < n && spec[i] == '.') {
        i++;
        fs->f.prec = 0;
        for (; i < n && spec[i] >= '0' && spec[i] <= '9'; i++)
            if (fs->f.prec < 100000000) fs->f.prec = fs->f.prec * 10 + (spec[i] - '0');
    }
    fs->f.type = i < n ? spec[i++] : 0;
    if (i != n) return jr_fail(r, IFD_ERR_INVALID, "Invalid format specifier");
    if (fs->f.width > (int64_t)r->lim.max_output) return jr_fail(r, IFD_ERR_RANGE, "format width too large");
    return 0;
}

/* format(v, spec) for str, int, bool and float */
static int apply_format_spec(struct jr *r, struct jsb *b, struct jv v, const char *spec, size_t n)
{
    if (n == 0) {
        jv_put_str(b, v);
        return 0;
    }
    struct fmtspec fs;
    JTRY(parse_format_spec(r, spec, n, &fs));
    struct fspec g = fs.f;
    g.width = 0;
    char type = fs.f.type, align = fs.align;
    struct jsb body;
    jsb_init(&body, &r->a);
    if (v.kind == JV_STR) {
        if (type && type != 's')
            return jr_fail(r, IFD_ERR_INVALID, "Unknown format code '%c' for object of type 'str'", type);
        g.type = 's';
        JTRY(fmt_one(r, &body, &g, v, false));
        if (!align) align = '<';
    } else if (jv_is_num(v)) {
        bool is_float = v.kind == JV_FLOAT;
        if (!type && is_float && fs.f.prec < 0) {
            jv_put_str(&body, v);
        } else {
            if (!type || type == 'n') type = is_float ? 'g' : 'd';
            if (!strchr("dxXoceEfFgG", type) || (is_float && strchr("dxXoc", type)))
                return jr_fail(r, IFD_ERR_UNSUPPORTED, "format code '%c' for object of type '%s' is not supported", type,
                               jv_type_name(v));
            g.type = type;
            JTRY(fmt_one(r, &body, &g, v, false));
        }
        if (!align) align = '>';
    } else {
        return jr_fail(r, IFD_ERR_INVALID, "unsupported format string passed to %s.__format__", jv_type_name(v));
    }
    if (body.oom) return jr_nomem(r);
    int64_t len = (int64_t)u8_count(body.p ? body.p : "", body.n);
    int64_t pad = fs.f.width > len ? fs.f.width - len : 0;
    size_t fl = strlen(fs.fill);
    if (align == '=') {
        size_t sign = body.n && (body.p[0] == '-' || body.p[0] == '+' || body.p[0] == ' ');
        jsb_put(b, body.p, sign);
        for (int64_t x = 0; x < pad; x++) jsb_put(b, fs.fill, fl);
        jsb_put(b, body.p + sign, body.n - sign);
        return 0;
    }
    int64_t left = align == '<' ? 0 : align == '^' ? pad / 2 : pad;
    for (int64_t x = 0; x < left; x++) jsb_put(b, fs.fill, fl);
    jsb_put(b, body.p, body.n);
    for (int64_t x = 0; x < pad - left; x++) jsb_put(b, fs.fill, fl);
    return 0;
}

static int format_field(struct jr *r, struct jsb *b, const char *f, size_t n, const struct jargs *a, uint32_t *auto_idx,
                        bool esc)
{
    size_t i = 0;
    while (i < n && f[i] != '.' && f[i] != '[' && f[i] != '!' && f[i] != ':') i++;
    struct jv v;
    if (i == 0) {
        if (*auto_idx >= a->npos) return jr_fail(r, IFD_ERR_INVALID, "tuple index out of range");
        v = a->pos[(*auto_idx)++];
    } else if (f[0] >= '0' && f[0] <= '9') {
        uint64_t idx = 0;
        for (size_t k = 0; k < i; k++) {
            if (f[k] < '0' || f[k] > '9') return jr_fail(r, IFD_ERR_INVALID, "invalid format field");
            idx = idx * 10 + (uint64_t)(f[k] - '0');
            if (idx > UINT32_MAX) break;
        }
        if (idx >= a->npos) return jr_fail(r, IFD_ERR_INVALID, "tuple index out of range");
        v = a->pos[idx];
    } else {
        const struct jkwarg *hit = NULL;
        for (uint32_t k = 0; k < a->nkw; k++)
            if (a->kw[k].n == i && memcmp(a->kw[k].name, f, i) == 0) hit = &a->kw[k];
        if (!hit) return jr_fail(r, IFD_ERR_INVALID, "'%.*s'", (int)i, f);
        v = hit->v;
    }
    while (i < n && (f[i] == '.' || f[i] == '[')) {
        size_t s = ++i;
        if (f[s - 1] == '.') {
            while (i < n && f[i] != '.' && f[i] != '[' && f[i] != '!' && f[i] != ':') i++;
            JTRY(jinja_getattr(r, v, f + s, i - s, &v));
        } else {
            while (i < n && f[i] != ']') i++;
            if (i >= n) return jr_fail(r, IFD_ERR_INVALID, "Missing ']' in format string");
            bool digits = i > s;
            int64_t idx = 0;
            for (size_t k = s; k < i && digits; k++) {
                digits = f[k] >= '0' && f[k] <= '9';
                idx = idx * 10 + (f[k] - '0');
                if (idx > INT32_MAX) digits = false;
            }
            JTRY(jinja_getitem(r, v, digits ? jv_int(idx) : jv_str(f + s, i - s), &v));
            i++;
        }
    }
    char conv = 0;
    if (i < n && f[i] == '!') {
        if (i + 1 >= n) return jr_fail(r, IFD_ERR_INVALID, "end of string while looking for conversion specifier");
        conv = f[i + 1];
        i += 2;
        if (conv != 'r' && conv != 's' && conv != 'a') return jr_fail(r, IFD_ERR_INVALID, "Unknown conversion specifier %c", conv);
    }
    if (i < n && f[i] != ':') return jr_fail(r, IFD_ERR_INVALID, "expected ':' after conversion specifier");
    const char *spec = i < n ? f + i + 1 : "";
    size_t spec_n = i < n ? n - i - 1 : 0;
    if (v.kind == JV_UNDEF && !conv && spec_n) return jr_undef_fail(r, v);
    if (conv) {
        struct jsb t;
        jsb_init(&t, &r->a);
        if (conv == 's') jv_put_str(&t, v);
        else jv_put_repr(&t, v);
        JTRY(jr_sb_done(r, &t, &v));
    }
    if (!esc) return apply_format_spec(r, b, v, spec, spec_n);
    /* markupsafe's EscapeFormatter: format the field, then escape it (Markup stays) */
    if (jv_is_markup(v)) {
        if (spec_n) return jr_fail(r, IFD_ERR_INVALID, "Unsupported format specification for Markup.");
        jsb_put(b, v.u.s, v.n);
        return 0;
    }
    struct jsb t;
    jsb_init(&t, &r->a);
    JTRY(apply_format_spec(r, &t, v, spec, spec_n));
    struct jv field;
    JTRY(jr_sb_done(r, &t, &field));
    JTRY(jinja_escape(r, field, &field));
    jsb_put(b, field.u.s, field.n);
    return 0;
}

static int format_method(struct jr *r, struct jv fmt, const struct jargs *a, struct jv *out)
{
    struct jsb b;
    jsb_init(&b, &r->a);
    const char *s = fmt.u.s;
    size_t n = fmt.n;
    uint32_t auto_idx = 0;
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c == '}') {
            if (i + 1 < n && s[i + 1] == '}') {
                jsb_putc(&b, '}');
                i += 2;
                continue;
            }
            return jr_fail(r, IFD_ERR_INVALID, "Single '}' encountered in format string");
        }
        if (c != '{') {
            jsb_putc(&b, c);
            i++;
            continue;
        }
        if (i + 1 < n && s[i + 1] == '{') {
            jsb_putc(&b, '{');
            i += 2;
            continue;
        }
        size_t close = i + 1;
        int depth = 1;
        for (; close < n; close++) {
            if (s[close] == '{') depth++;
            if (s[close] == '}' && --depth == 0) break;
        }
        if (close >= n) return jr_fail(r, IFD_ERR_INVALID, "Single '{' encountered in format string");
        JTRY(format_field(r, &b, s + i + 1, close - i - 1, a, &auto_idx, jv_is_markup(fmt)));
        i = close + 1;
    }
    JTRY(jr_sb_done(r, &b, out));
    out->sub = fmt.sub;
    return 0;
}

/* ------------------------------------------------------------------ global functions */

static const char *const g_func_names[JFN_COUNT_ALL] = {
    [JFN_RANGE] = "range", [JFN_DICT] = "dict", [JFN_NAMESPACE] = "namespace",
    [JFN_RAISE_EXCEPTION] = "raise_exception", [JFN_STRFTIME_NOW] = "strftime_now", [JFN_JOINER] = "joiner",
    [JFN_CYCLER] = "cycler", [JFN_LIPSUM] = "lipsum",
};

int jinja_func_lookup(const char *s, size_t n)
{
    for (int i = 0; i < JFN_COUNT_ALL; i++)
        if (name_is(s, n, g_func_names[i])) return i;
    return -1;
}

const char *jinja_func_name(int id) { return id >= 0 && id < JFN_COUNT_ALL ? g_func_names[id] : "?"; }

static int fn_range(struct jr *r, const struct jargs *a, struct jv *out)
{
    if (a->nkw) return jr_fail(r, IFD_ERR_INVALID, "range() takes no keyword arguments");
    if (a->npos < 1 || a->npos > 3)
        return jr_fail(r, IFD_ERR_INVALID, "range expected at least 1 argument, got %u", a->npos);
    int64_t v[3] = {0, 0, 1};
    for (uint32_t i = 0; i < a->npos; i++) {
        if (a->pos[i].kind == JV_UNDEF) return jr_undef_fail(r, a->pos[i]);
        if (!jv_is_intlike(a->pos[i]))
            return jr_fail(r, IFD_ERR_INVALID, "'%s' object cannot be interpreted as an integer", jv_type_name(a->pos[i]));
    }
    if (a->npos == 1) v[1] = a->pos[0].u.i;
    else
        for (uint32_t i = 0; i < a->npos; i++) v[i] = a->pos[i].u.i;
    if (v[2] == 0) return jr_fail(r, IFD_ERR_INVALID, "range() arg 3 must not be zero");
    /* length without overflow: work in long double, the bound is tiny anyway */
    long double span = v[2] > 0 ? (long double)v[1] - (long double)v[0] : (long double)v[0] - (long double)v[1];
    long double step = v[2] > 0 ? (long double)v[2] : -(long double)v[2];
    long double len = span <= 0 ? 0 : floorl((span - 1) / step) + 1;
    if (len > SANDBOX_MAX_RANGE)
        return jr_fail(r, IFD_ERR_RANGE, "Range too big. The sandbox blocks ranges larger than MAX_RANGE (%d).", SANDBOX_MAX_RANGE);
    uint32_t n = (uint32_t)len;
    JTRY(jr_steps(r, n));
    JTRY(jr_new_list(r, JV_LIST, n, out));
    out->sub = JL_RANGE;
    out->u.l->range[0] = v[0];
    out->u.l->range[1] = v[1];
    out->u.l->range[2] = v[2];
    for (uint32_t i = 0; i < n; i++) out->u.l->v[i] = jv_int(v[0] + (int64_t)i * v[2]);
    return 0;
}

/* dict(mapping_or_pairs, **kw) and namespace(...) build the same way */
static int fn_dict(struct jr *r, const struct jargs *a, const char *fname, struct jv *out)
{
    if (a->npos > 1) return jr_fail(r, IFD_ERR_INVALID, "%s expected at most 1 argument, got %u", fname, a->npos);
    JTRY(jr_new_dict(r, a->nkw + 4, out));
    if (a->npos == 1) {
        struct jv src = a->pos[0];
        if (src.kind == JV_DICT || src.kind == JV_NS) {
            for (uint32_t i = 0; i < src.u.d->n; i++) JTRY(jr_dict_set(r, out->u.d, src.u.d->k[i], src.u.d->v[i]));
        } else {
            const struct jv *items;
            uint32_t n;
            JTRY(jv_iter(r, src, &items, &n));
            for (uint32_t i = 0; i < n; i++) {
                struct jv it = items[i];
                if (!(jv_is_seq(it) && it.u.l->n == 2) && !(it.kind == JV_STR && u8_count(it.u.s, it.n) == 2))
                    return jr_fail(r, IFD_ERR_INVALID, "dictionary update sequence element #%u has the wrong length", i);
                const struct jv *kv;
                uint32_t kn;
                JTRY(jv_iter(r, it, &kv, &kn));
                JTRY(jr_dict_set(r, out->u.d, kv[0], kv[1]));
            }
        }
    }
    for (uint32_t i = 0; i < a->nkw; i++) JTRY(jr_dict_set(r, out->u.d, jv_str(a->kw[i].name, a->kw[i].n), a->kw[i].v));
    return 0;
}

static int fn_strftime(struct jr *r, const struct jargs *a, struct jv *out)
{
    static const char *const names[] = {"format"};
    struct jv av[1];
    JTRY(jargs_bind(r, a, "strftime_now", names, 1, 1, av));
    if (av[0].kind != JV_STR)
        return jr_fail(r, IFD_ERR_INVALID, "strftime() argument 1 must be str, not %s", jv_type_name(av[0]));
    time_t t = r->now ? (time_t)r->now : time(NULL);
    struct tm tm;
    if (r->now) gmtime_r(&t, &tm);
    else localtime_r(&t, &tm);
    struct jsb b;
    jsb_init(&b, &r->a);
    const char *s = av[0].u.s;
    size_t n = av[0].n;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%' || i + 1 >= n) {
            jsb_putc(&b, s[i]);
            continue;
        }
        char spec[4] = {'%', s[i + 1], 0, 0};
        size_t used = 2;
        if ((s[i + 1] == '-' || s[i + 1] == 'E' || s[i + 1] == 'O') && i + 2 < n) {
            spec[2] = s[i + 2];
            used = 3;
        }
        i += used - 1;
        /* a naive datetime, as transformers' datetime.now(): no zone, no microseconds */
        if (spec[1] == 'z' || spec[1] == 'Z') continue;
        if (spec[1] == 'f') {
            jsb_puts(&b, "000000");
            continue;
        }
        char buf[256];
        size_t k = strftime(buf, sizeof buf, spec, &tm);
        jsb_put(&b, buf, k);
    }
    return jr_sb_done(r, &b, out);
}

int jinja_call_func(struct jr *r, int id, const struct jargs *a, struct jv *out)
{
    switch (id) {
    case JFN_RANGE: return fn_range(r, a, out);
    case JFN_DICT: return fn_dict(r, a, "dict", out);
    case JFN_NAMESPACE:
        JTRY(fn_dict(r, a, "Namespace", out));
        out->kind = JV_NS;
        return 0;
    case JFN_RAISE_EXCEPTION: {
        struct jv msg = a->npos ? a->pos[0] : a->nkw ? a->kw[0].v : jv_none();
        if (msg.kind == JV_UNDEF && !a->npos && !a->nkw)
            return jr_fail(r, IFD_ERR_INVALID, "raise_exception() missing 1 required positional argument: 'message'");
        struct jv s;
        JTRY(jv_to_str(r, msg, &s));
        if (r->err && r->errlen && !r->err[0]) r->err_raised = true;
        return jr_fail(r, IFD_ERR_INVALID, "%.*s", (int)s.n, s.u.s);
    }
    case JFN_STRFTIME_NOW: return fn_strftime(r, a, out);
    default:
        return jr_fail(r, IFD_ERR_UNSUPPORTED, "%s() is not supported in chat templates", jinja_func_name(id));
    }
}
