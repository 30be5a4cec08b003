/* SPDX-License-Identifier: Apache-2.0
 *
 * jinja_value.c: the value model of the chat-template interpreter: the arena,
 * the string builder, UTF-8 and the slice of Python's Unicode character
 * classes the filters need, and the Python semantics of values: truth, ==,
 * <, len(), iteration, str(), repr() and json.dumps(), plus conversion from
 * the caller's jansson context.
 *
 * Deliberately not here: anything that evaluates template code (jinja_eval.c)
 * or implements a filter/method (jinja_filters.c, jinja_builtins.c). Unicode
 * tables are small hand-kept ranges, not the full UCD: exact for ASCII and
 * Latin-1, close elsewhere (see jinja_internal.h for the list).
 *
 * Layer: server.
 */
#include "jinja_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Structures nest at most this deep in repr/json/==/< and JSON input; Python
 * stops with RecursionError around 1000, real data is a handful. */
#define JV_MAX_NEST 512

/* ------------------------------------------------------------------ arena */

struct jarena_chunk {
    struct jarena_chunk *next;
    size_t size, used;
    _Alignas(16) unsigned char data[];
};

void ja_init(struct jarena *a, size_t limit)
{
    a->head = NULL;
    a->total = 0;
    a->limit = limit;
}

void ja_free(struct jarena *a)
{
    struct jarena_chunk *c = a->head;
    while (c) {
        struct jarena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}

void *ja_alloc(struct jarena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    struct jarena_chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        /* chunks double up to 4 MiB so small renders touch little memory */
        size_t size = c ? c->size * 2 : (size_t)16 << 10;
        if (size > ((size_t)4 << 20)) size = (size_t)4 << 20;
        if (size < n) size = n;
        if (size > SIZE_MAX - sizeof *c - a->total) return NULL;
        if (a->limit && a->total + size + sizeof *c > a->limit) return NULL;
        c = malloc(sizeof *c + size);
        if (!c) return NULL;
        c->size = size;
        c->used = 0;
        c->next = a->head;
        a->head = c;
        a->total += sizeof *c + size;
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

char *ja_memdup(struct jarena *a, const void *s, size_t n)
{
    char *p = ja_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* ------------------------------------------------------------------ string builder */

void jsb_init(struct jsb *b, struct jarena *a)
{
    b->a = a;
    b->p = NULL;
    b->n = b->cap = 0;
    b->oom = false;
    b->too_deep = false;
}

void jsb_put(struct jsb *b, const char *s, size_t n)
{
    if (b->oom || n == 0) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->n + n) cap *= 2;
        if (cap > UINT32_MAX) {
            b->oom = true;
            return;
        }
        char *p = ja_alloc(b->a, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}

void jsb_putc(struct jsb *b, char c) { jsb_put(b, &c, 1); }

void jsb_puts(struct jsb *b, const char *s) { jsb_put(b, s, strlen(s)); }

void jsb_printf(struct jsb *b, const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if ((size_t)k < sizeof buf) {
        jsb_put(b, buf, (size_t)k);
        return;
    }
    char *big = ja_alloc(b->a, (size_t)k + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)k + 1, fmt, ap);
    va_end(ap);
    jsb_put(b, big, (size_t)k);
}

void jsb_put_cp(struct jsb *b, uint32_t cp)
{
    char e[4];
    jsb_put(b, e, u8_encode(cp, e));
}

/* ------------------------------------------------------------------ UTF-8 */

uint32_t u8_next(const char *s, size_t n, size_t *i)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t k = *i;
    uint32_t c = u[k];
    if (c < 0x80) {
        *i = k + 1;
        return c;
    }
    /* our strings are valid UTF-8; stay in bounds if one is not */
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (len == 1 || k + len > n) {
        *i = k + 1;
        return 0xFFFD;
    }
    uint32_t cp = c & (0x7Fu >> len);
    for (size_t j = 1; j < len; j++) cp = cp << 6 | (u[k + j] & 0x3F);
    *i = k + len;
    return cp;
}

size_t u8_encode(uint32_t cp, char out[4])
{
    if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD; /* no lone surrogates in our strings */
    if (cp > 0x10FFFF) cp = 0xFFFD;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t u8_count(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

size_t u8_offset(const char *s, size_t n, size_t ci)
{
    size_t i = 0;
    while (ci > 0 && i < n) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80) i++;
        ci--;
    }
    return i;
}

bool u8_valid(const char *s, size_t n, size_t *bad_at)
{
    static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : 0;
        if (need == 0 || i + need >= n) {
            *bad_at = i;
            return false;
        }
        uint32_t cp = c & (0x3Fu >> need);
        for (size_t k = 1; k <= need; k++) {
            if ((u[i + k] & 0xC0) != 0x80) {
                *bad_at = i;
                return false;
            }
            cp = cp << 6 | (u[i + k] & 0x3F);
        }
        if (cp < min_cp[need] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
            *bad_at = i;
            return false;
        }
        i += need + 1;
    }
    return true;
}

bool py_isspace(uint32_t c)
{
    if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
    return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

bool py_next_word(const char *s, size_t n, size_t *i, size_t *start, size_t *end)
{
    size_t k;
    while (*i < n && py_isspace(u8_next(s, n, (k = *i, &k)))) *i = k;
    if (*i >= n) return false;
    *start = *i;
    while (*i < n && !py_isspace(u8_next(s, n, (k = *i, &k)))) *i = k;
    *end = *i;
    return true;
}

bool py_islinebreak(uint32_t c)
{
    return (c >= 0x0A && c <= 0x0D) || (c >= 0x1C && c <= 0x1E) || c == 0x85 || c == 0x2028 || c == 0x2029;
}

/* Simple (one code point) case mappings for the blocks we cover. */
uint32_t py_lower(uint32_t c)
{
    if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
    if ((c >= 0xC0 && c <= 0xDE && c != 0xD7)) return c + 32;
    if (c >= 0x100 && c <= 0x17F) {
        if (c == 0x130) return 'i';
        if (c == 0x178) return 0xFF;
        if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c | 1;
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c + 1 : c;
        return c;
    }
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;
    if (c == 0x386) return 0x3AC;
    if (c >= 0x388 && c <= 0x38A) return c + 37;
    if (c == 0x38C) return 0x3CC;
    if (c == 0x38E || c == 0x38F) return c + 63;
    if (c >= 0x410 && c <= 0x42F) return c + 32;
    if (c >= 0x400 && c <= 0x40F) return c + 80;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x4FF)) return c | 1;
    if (c >= 0xFF21 && c <= 0xFF3A) return c + 32;
    return c;
}

uint32_t py_upper(uint32_t c)
{
    if (c < 0x80) return c >= 'a' && c <= 'z' ? c - 32 : c;
    if (c >= 0xE0 && c <= 0xFE && c != 0xF7) return c - 32;
    if (c == 0xFF) return 0x178;
    if (c == 0xB5) return 0x39C;
    if (c >= 0x100 && c <= 0x17F) {
        if (c == 0x131) return 'I';
        if (c == 0x17F) return 'S';
        if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177)) return c & ~(uint32_t)1;
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c & 1) ? c : c - 1;
        return c;
    }
    if (c >= 0x3B1 && c <= 0x3C9 && c != 0x3C2) return c - 32;
    if (c == 0x3C2) return 0x3A3;
    if (c == 0x3AC) return 0x386;
    if (c >= 0x3AD && c <= 0x3AF) return c - 37;
    if (c == 0x3CC) return 0x38C;
    if (c == 0x3CD || c == 0x3CE) return c - 63;
    if (c >= 0x430 && c <= 0x44F) return c - 32;
    if (c >= 0x450 && c <= 0x45F) return c - 80;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x4FF))
        return c & ~(uint32_t)1;
    if (c >= 0xFF41 && c <= 0xFF5A) return c - 32;
    return c;
}

void py_put_upper(struct jsb *b, uint32_t cp)
{
    if (cp == 0xDF) {
        jsb_put(b, "SS", 2);
        return;
    }
    jsb_put_cp(b, py_upper(cp));
}

bool py_iscased(uint32_t c) { return py_lower(c) != c || py_upper(c) != c || c == 0xDF || c == 0x138 || c == 0xAA || c == 0xBA; }
bool py_islower_cp(uint32_t c) { return py_upper(c) != c || c == 0xDF || c == 0x138 || c == 0xAA || c == 0xBA; }
bool py_isupper_cp(uint32_t c) { return py_lower(c) != c; }

bool py_isdigit(uint32_t c)
{
    return (c >= '0' && c <= '9') || c == 0xB2 || c == 0xB3 || c == 0xB9 || (c >= 0x660 && c <= 0x669) ||
           (c >= 0x6F0 && c <= 0x6F9) || (c >= 0x966 && c <= 0x96F) || (c >= 0xFF10 && c <= 0xFF19);
}

/* Letters outside ASCII: everything but the punctuation, symbol, mark,
 * control and private-use blocks we know of. */
bool py_isalpha(uint32_t c)
{
    if (c < 0x80) return (c | 32) >= 'a' && (c | 32) <= 'z';
    if (c < 0xC0) return c == 0xAA || c == 0xB5 || c == 0xBA;
    if (c == 0xD7 || c == 0xF7) return false;
    if (py_isspace(c) || py_isdigit(c)) return false;
    if (c >= 0x300 && c <= 0x36F) return false;
    if (c >= 0x2000 && c <= 0x2BFF) return false;
    if (c >= 0x3000 && c <= 0x303F) return false;
    if (c >= 0xD800 && c <= 0xF8FF) return false;
    if (c >= 0xFE00 && c <= 0xFE0F) return false;
    if ((c >= 0xFF00 && c <= 0xFF20) || (c >= 0xFF3B && c <= 0xFF40) || (c >= 0xFF5B && c <= 0xFF65)) return false;
    if (c >= 0x1F000 && c <= 0x1FAFF) return false;
    if (c >= 0xE0000) return false;
    return true;
}

bool py_isalnum(uint32_t c) { return py_isalpha(c) || py_isdigit(c); }

/* str.isprintable(), for repr(): false for controls, format characters,
 * separators other than space, surrogates and private use. */
static bool py_isprintable(uint32_t c)
{
    if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
    if (c < 0x100) return true;
    if ((c >= 0x600 && c <= 0x605) || c == 0x61C || c == 0x6DD || c == 0x70F || c == 0x180E || c == 0x1680)
        return false;
    if ((c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) || (c >= 0x205F && c <= 0x2064) ||
        (c >= 0x2066 && c <= 0x206F) || c == 0x3000)
        return false;
    if ((c >= 0xD800 && c <= 0xF8FF) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB) || c >= 0xFFFE) {
        if (c >= 0x10000 && c < 0xE0000) return true;
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ dicts */

#define JD_INDEX_MIN 16

static bool key_is_str(struct jv k, const char *s, size_t n)
{
    return k.kind == JV_STR && k.n == n && (n == 0 || memcmp(k.u.s, s, n) == 0);
}

static uint32_t str_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static void index_insert(struct jdict *d, uint32_t slot)
{
    uint32_t h = str_hash(d->k[slot].u.s, d->k[slot].n) & d->idx_mask;
    while (d->idx[h]) h = (h + 1) & d->idx_mask;
    d->idx[h] = slot + 1;
}

static bool index_build(struct jarena *a, struct jdict *d)
{
    uint64_t cap = 32;
    while (cap < 2 * (uint64_t)d->n + 2) cap *= 2;
    if (cap > UINT32_MAX) return false;
    uint32_t *idx = ja_alloc(a, (size_t)cap * sizeof *idx);
    if (!idx) return false;
    memset(idx, 0, (size_t)cap * sizeof *idx);
    d->idx = idx;
    d->idx_mask = (uint32_t)(cap - 1);
    for (uint32_t i = 0; i < d->n; i++)
        if (d->k[i].kind == JV_STR) index_insert(d, i);
    return true;
}

bool jd_index_add(struct jarena *a, struct jdict *d)
{
    if (!d->idx) return d->n < JD_INDEX_MIN || index_build(a, d);
    if (2 * (uint64_t)d->n + 2 > (uint64_t)d->idx_mask + 1) return index_build(a, d);
    if (d->k[d->n - 1].kind == JV_STR) index_insert(d, d->n - 1);
    return true;
}

static int64_t find_str(const struct jdict *d, const char *s, size_t n)
{
    if (d->idx) {
        for (uint32_t h = str_hash(s, n) & d->idx_mask; d->idx[h]; h = (h + 1) & d->idx_mask)
            if (key_is_str(d->k[d->idx[h] - 1], s, n)) return d->idx[h] - 1;
        return -1;
    }
    for (uint32_t i = 0; i < d->n; i++)
        if (key_is_str(d->k[i], s, n)) return i;
    return -1;
}

int64_t jd_find(const struct jdict *d, struct jv key)
{
    if (key.kind == JV_STR) return find_str(d, key.u.s, key.n);
    for (uint32_t i = 0; i < d->n; i++)
        if (d->k[i].kind != JV_STR && jv_eq(d->k[i], key)) return i;
    return -1;
}

const struct jv *jd_get_str(const struct jdict *d, const char *s, size_t n)
{
    int64_t i = find_str(d, s, n);
    return i < 0 ? NULL : &d->v[i];
}

const struct jv *jd_get(const struct jdict *d, struct jv key)
{
    int64_t i = jd_find(d, key);
    return i < 0 ? NULL : &d->v[i];
}

/* ------------------------------------------------------------------ truth, equality, order */

bool jv_truthy(struct jv v)
{
    switch (v.kind) {
    case JV_UNDEF:
    case JV_NONE:
    case JV_UNBOUND: return false;
    case JV_BOOL:
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0.0;
    case JV_STR: return v.n > 0;
    case JV_LIST: return v.sub == JL_GEN || v.sub == JL_REVITER || v.u.l->n > 0;
    case JV_TUPLE: return v.u.l->n > 0;
    case JV_DICT: return v.u.d->n > 0;
    default: return true;
    }
}

/* Python compares ints and floats exactly, not after rounding the int. */
static bool int_eq_float(int64_t i, double f)
{
    if (f != floor(f) || f < -9223372036854775808.0 || f >= 9223372036854775808.0) return false;
    return (int64_t)f == i;
}

static bool jv_eq_depth(struct jv a, struct jv b, int depth);

static bool list_eq(const struct jlist *x, const struct jlist *y, int depth)
{
    if (x == y) return true;
    if (x->n != y->n) return false;
    for (uint32_t i = 0; i < x->n; i++)
        if (!jv_eq_depth(x->v[i], y->v[i], depth + 1)) return false;
    return true;
}

static bool jv_eq_depth(struct jv a, struct jv b, int depth)
{
    if (depth > JV_MAX_NEST) return false;
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.kind != JV_FLOAT && b.kind != JV_FLOAT) return a.u.i == b.u.i;
        if (a.kind == JV_FLOAT && b.kind == JV_FLOAT) return a.u.f == b.u.f;
        return a.kind == JV_FLOAT ? int_eq_float(b.u.i, a.u.f) : int_eq_float(a.u.i, b.u.f);
    }
    if (a.kind != b.kind) return false;
    switch (a.kind) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR: return a.n == b.n && (a.n == 0 || memcmp(a.u.s, b.u.s, a.n) == 0);
    case JV_LIST:
        if (a.sub != b.sub) return false;
        if (a.sub == JL_GEN || a.sub == JL_REVITER || a.sub == JL_DICT_VALUES) return a.u.l == b.u.l;
        return list_eq(a.u.l, b.u.l, depth);
    case JV_TUPLE: return list_eq(a.u.l, b.u.l, depth);
    case JV_DICT: {
        const struct jdict *x = a.u.d, *y = b.u.d;
        if (x == y) return true;
        if (x->n != y->n) return false;
        for (uint32_t i = 0; i < x->n; i++) {
            const struct jv *o = jd_get(y, x->k[i]);
            if (!o || !jv_eq_depth(x->v[i], *o, depth + 1)) return false;
        }
        return true;
    }
    case JV_NS: return a.u.d == b.u.d;
    case JV_MACRO: return a.u.m == b.u.m;
    case JV_FUNC: return a.u.i == b.u.i;
    case JV_METHOD: return a.u.bm == b.u.bm;
    case JV_LOOP: return a.u.loop == b.u.loop;
    default: return false;
    }
}

bool jv_eq(struct jv a, struct jv b) { return jv_eq_depth(a, b, 0); }

static const char *op_symbol(int op)
{
    return op == JO_LT ? "<" : op == JO_LTEQ ? "<=" : op == JO_GT ? ">" : ">=";
}

static bool apply_order(int op, int c)
{
    return op == JO_LT ? c < 0 : op == JO_LTEQ ? c <= 0 : op == JO_GT ? c > 0 : c >= 0;
}

/* Python's rich comparison for <, <=, >, >=: numbers, strings, and lists or
 * tuples of the same type (lexicographic: the first differing items decide,
 * compared with the same operator, else the lengths); TypeError otherwise,
 * naming the operands in the order written. */
static int compare_depth(struct jr *r, int op, struct jv a, struct jv b, bool *out, int depth)
{
    if (depth > JV_MAX_NEST) return jr_fail(r, IFD_ERR_RANGE, "maximum recursion depth exceeded in comparison");
    if (a.kind == JV_UNDEF) return jr_undef_fail(r, a);
    if (b.kind == JV_UNDEF) return jr_undef_fail(r, b);
    if (jv_is_num(a) && jv_is_num(b)) {
        /* long double holds every int64 exactly, so mixed compares are exact like Python's */
        long double x = a.kind == JV_FLOAT ? (long double)a.u.f : (long double)a.u.i;
        long double y = b.kind == JV_FLOAT ? (long double)b.u.f : (long double)b.u.i;
        *out = op == JO_LT ? x < y : op == JO_LTEQ ? x <= y : op == JO_GT ? x > y : x >= y;
        return 0;
    }
    if (a.kind == JV_STR && b.kind == JV_STR) {
        size_t n = a.n < b.n ? a.n : b.n;
        int c = n ? memcmp(a.u.s, b.u.s, n) : 0; /* UTF-8 byte order is code point order */
        if (c == 0) c = a.n < b.n ? -1 : a.n > b.n ? 1 : 0;
        *out = apply_order(op, c);
        return 0;
    }
    if ((a.kind == JV_LIST && b.kind == JV_LIST && a.sub == JL_LIST && b.sub == JL_LIST) ||
        (a.kind == JV_TUPLE && b.kind == JV_TUPLE)) {
        const struct jlist *x = a.u.l, *y = b.u.l;
        uint32_t n = x->n < y->n ? x->n : y->n;
        for (uint32_t i = 0; i < n; i++)
            if (!jv_eq_depth(x->v[i], y->v[i], depth + 1)) return compare_depth(r, op, x->v[i], y->v[i], out, depth + 1);
        *out = apply_order(op, x->n < y->n ? -1 : x->n > y->n ? 1 : 0);
        return 0;
    }
    return jr_fail(r, IFD_ERR_INVALID, "'%s' not supported between instances of '%s' and '%s'", op_symbol(op),
                   jv_type_name(a), jv_type_name(b));
}

int jv_compare(struct jr *r, int op, struct jv a, struct jv b, bool *out)
{
    return compare_depth(r, op, a, b, out, 0);
}

int jv_lt(struct jr *r, struct jv a, struct jv b, bool *out) { return compare_depth(r, JO_LT, a, b, out, 0); }

/* ------------------------------------------------------------------ type names */

static const char *const g_func_type[JFN_COUNT_ALL] = {
    [JFN_RANGE] = "type", [JFN_DICT] = "type", [JFN_NAMESPACE] = "type", [JFN_RAISE_EXCEPTION] = "function",
    [JFN_STRFTIME_NOW] = "function", [JFN_JOINER] = "type", [JFN_CYCLER] = "type", [JFN_LIPSUM] = "function",
};

const char *jv_type_name(struct jv v)
{
    static const char *const list_names[] = {
        [JL_LIST] = "list", [JL_GEN] = "generator", [JL_REVITER] = "list_reverseiterator",
        [JL_DICT_ITEMS] = "dict_items", [JL_DICT_KEYS] = "dict_keys", [JL_DICT_VALUES] = "dict_values",
        [JL_RANGE] = "range",
    };
    switch (v.kind) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return v.sub == JS_MARKUP ? "Markup" : "str";
    case JV_LIST: return v.sub <= JL_RANGE ? list_names[v.sub] : "list";
    case JV_TUPLE: return "tuple";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_MACRO: return "Macro";
    case JV_FUNC: return v.u.i >= 0 && v.u.i < JFN_COUNT_ALL ? g_func_type[v.u.i] : "function";
    case JV_METHOD: return "builtin_function_or_method";
    case JV_LOOP: return "LoopContext";
    default: return "object";
    }
}

const char *jv_object_type_repr(struct jv v)
{
    switch (v.kind) {
    case JV_NONE: return "None";
    case JV_NS: return "jinja2.utils.Namespace object";
    case JV_LOOP: return "jinja2.runtime.LoopContext object";
    case JV_MACRO: return "jinja2.runtime.Macro object";
    case JV_UNDEF: return "jinja2.runtime.Undefined object";
    case JV_BOOL: return "bool object";
    case JV_INT: return "int object";
    case JV_FLOAT: return "float object";
    case JV_STR: return v.sub == JS_MARKUP ? "markupsafe.Markup object" : "str object";
    case JV_TUPLE: return "tuple object";
    case JV_DICT: return "dict object";
    case JV_METHOD: return "builtin_function_or_method object";
    case JV_FUNC: return v.u.i == JFN_RAISE_EXCEPTION || v.u.i == JFN_STRFTIME_NOW ? "function object" : "type object";
    case JV_LIST:
        switch (v.sub) {
        case JL_GEN: return "generator object";
        case JL_REVITER: return "list_reverseiterator object";
        case JL_DICT_ITEMS: return "dict_items object";
        case JL_DICT_KEYS: return "dict_keys object";
        case JL_DICT_VALUES: return "dict_values object";
        case JL_RANGE: return "range object";
        default: return "list object";
        }
    default: return "object";
    }
}

/* ------------------------------------------------------------------ str() and repr() */

void fmt_float_repr(double d, char buf[40])
{
    if (isnan(d)) {
        strcpy(buf, "nan");
        return;
    }
    if (isinf(d)) {
        strcpy(buf, d < 0 ? "-inf" : "inf");
        return;
    }
    if (d == 0) {
        strcpy(buf, signbit(d) ? "-0.0" : "0.0");
        return;
    }
    /* shortest digits that read back as d, as Python's repr */
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    char digits[24];
    int nd = 0, neg = 0;
    const char *p = tmp;
    if (*p == '-') neg = 1, p++;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9' && nd < 20) digits[nd++] = *p;
    int e = *p == 'e' ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    char *o = buf;
    if (neg) *o++ = '-';
    if (e >= -4 && e < 16) {
        if (e >= 0) {
            for (int i = 0; i <= e; i++) *o++ = i < nd ? digits[i] : '0';
            *o++ = '.';
            if (nd > e + 1)
                for (int i = e + 1; i < nd; i++) *o++ = digits[i];
            else
                *o++ = '0';
        } else {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -e - 1; i++) *o++ = '0';
            for (int i = 0; i < nd; i++) *o++ = digits[i];
        }
        *o = 0;
        return;
    }
    *o++ = digits[0];
    if (nd > 1) {
        *o++ = '.';
        for (int i = 1; i < nd; i++) *o++ = digits[i];
    }
    snprintf(o, (size_t)(buf + 40 - o), "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
}

static void put_str_repr(struct jsb *b, const char *s, size_t n)
{
    bool has_sq = memchr(s, '\'', n) != NULL, has_dq = memchr(s, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jsb_putc(b, q);
    for (size_t i = 0; i < n;) {
        size_t start = i;
        uint32_t c = u8_next(s, n, &i);
        if (c == (uint32_t)q || c == '\\') {
            jsb_putc(b, '\\');
            jsb_putc(b, (char)c);
        } else if (c == '\t') {
            jsb_put(b, "\\t", 2);
        } else if (c == '\n') {
            jsb_put(b, "\\n", 2);
        } else if (c == '\r') {
            jsb_put(b, "\\r", 2);
        } else if (py_isprintable(c)) {
            jsb_put(b, s + start, i - start);
        } else if (c <= 0xFF) {
            jsb_printf(b, "\\x%02x", c);
        } else if (c <= 0xFFFF) {
            jsb_printf(b, "\\u%04x", c);
        } else {
            jsb_printf(b, "\\U%08x", c);
        }
    }
    jsb_putc(b, q);
}

static void put_value(struct jsb *b, struct jv v, bool repr, int depth);

static void put_items(struct jsb *b, const struct jlist *l, int depth)
{
    for (uint32_t i = 0; i < l->n; i++) {
        if (i) jsb_put(b, ", ", 2);
        put_value(b, l->v[i], true, depth + 1);
    }
}

static void put_dict(struct jsb *b, const struct jdict *d, int depth)
{
    jsb_putc(b, '{');
    for (uint32_t i = 0; i < d->n; i++) {
        if (i) jsb_put(b, ", ", 2);
        put_value(b, d->k[i], true, depth + 1);
        jsb_put(b, ": ", 2);
        put_value(b, d->v[i], true, depth + 1);
    }
    jsb_putc(b, '}');
}

static void put_list(struct jsb *b, struct jv v, int depth)
{
    const struct jlist *l = v.u.l;
    switch (v.sub) {
    case JL_GEN: jsb_puts(b, "<generator object>"); return;
    case JL_REVITER: jsb_puts(b, "<list_reverseiterator object>"); return;
    case JL_RANGE:
        if (l->range[2] == 1) jsb_printf(b, "range(%lld, %lld)", (long long)l->range[0], (long long)l->range[1]);
        else jsb_printf(b, "range(%lld, %lld, %lld)", (long long)l->range[0], (long long)l->range[1], (long long)l->range[2]);
        return;
    case JL_DICT_ITEMS: jsb_puts(b, "dict_items(["); break;
    case JL_DICT_KEYS: jsb_puts(b, "dict_keys(["); break;
    case JL_DICT_VALUES: jsb_puts(b, "dict_values(["); break;
    default: jsb_putc(b, '['); break;
    }
    put_items(b, l, depth);
    jsb_puts(b, v.sub == JL_LIST ? "]" : "])");
}

static void put_value(struct jsb *b, struct jv v, bool repr, int depth)
{
    char num[40];
    if (depth > JV_MAX_NEST) {
        /* Python raises RecursionError; jr_sb_done turns the flag into an error */
        b->too_deep = true;
        b->oom = true;
        return;
    }
    switch (v.kind) {
    case JV_UNDEF:
        if (repr) jsb_puts(b, "Undefined");
        return;
    case JV_NONE: jsb_puts(b, "None"); return;
    case JV_BOOL: jsb_puts(b, v.u.i ? "True" : "False"); return;
    case JV_INT: jsb_printf(b, "%lld", (long long)v.u.i); return;
    case JV_FLOAT:
        fmt_float_repr(v.u.f, num);
        jsb_puts(b, num);
        return;
    case JV_STR:
        if (!repr) jsb_put(b, v.u.s, v.n);
        else if (v.sub == JS_MARKUP) {
            jsb_puts(b, "Markup(");
            put_str_repr(b, v.u.s, v.n);
            jsb_putc(b, ')');
        } else
            put_str_repr(b, v.u.s, v.n);
        return;
    case JV_LIST: put_list(b, v, depth); return;
    case JV_TUPLE:
        jsb_putc(b, '(');
        put_items(b, v.u.l, depth);
        jsb_puts(b, v.u.l->n == 1 ? ",)" : ")");
        return;
    case JV_DICT: put_dict(b, v.u.d, depth); return;
    case JV_NS:
        jsb_puts(b, "<Namespace ");
        put_dict(b, v.u.d, depth);
        jsb_putc(b, '>');
        return;
    case JV_MACRO:
        jsb_printf(b, "<Macro '%.*s'>", (int)v.u.m->def->val.n, v.u.m->def->val.u.s);
        return;
    case JV_FUNC:
        if (v.u.i == JFN_RAISE_EXCEPTION || v.u.i == JFN_STRFTIME_NOW || v.u.i == JFN_LIPSUM)
            jsb_printf(b, "<function %s>", jinja_func_name((int)v.u.i));
        else if (v.u.i == JFN_NAMESPACE)
            jsb_puts(b, "<class 'jinja2.utils.Namespace'>");
        else if (v.u.i == JFN_JOINER || v.u.i == JFN_CYCLER)
            jsb_printf(b, "<class 'jinja2.utils.%s'>", v.u.i == JFN_JOINER ? "Joiner" : "Cycler");
        else
            jsb_printf(b, "<class '%s'>", jinja_func_name((int)v.u.i));
        return;
    case JV_METHOD:
        jsb_printf(b, "<built-in method %s of %s>", v.u.bm->name, jv_object_type_repr(v.u.bm->self));
        return;
    case JV_LOOP: {
        const struct jloop *l = v.u.loop;
        jsb_printf(b, "<LoopContext %lld/%lld>", (long long)(l->index0 + 1), (long long)l->length);
        return;
    }
    default: return;
    }
}

void jv_put_str(struct jsb *b, struct jv v) { put_value(b, v, false, 0); }
void jv_put_repr(struct jsb *b, struct jv v) { put_value(b, v, true, 0); }

int jv_to_str(struct jr *r, struct jv v, struct jv *out)
{
    if (v.kind == JV_STR) {
        *out = v;
        return 0;
    }
    if (v.kind == JV_UNDEF) {
        *out = jv_str("", 0);
        return 0;
    }
    struct jsb b;
    jsb_init(&b, &r->a);
    jv_put_str(&b, v);
    return jr_sb_done(r, &b, out);
}

/* ------------------------------------------------------------------ len() and iteration */

int jv_len(struct jr *r, struct jv v, int64_t *out)
{
    switch (v.kind) {
    case JV_STR: *out = (int64_t)u8_count(v.u.s, v.n); return 0;
    case JV_LIST:
        if (v.sub == JL_GEN || v.sub == JL_REVITER) break;
        *out = v.u.l->n;
        return 0;
    case JV_TUPLE: *out = v.u.l->n; return 0;
    case JV_DICT: *out = v.u.d->n; return 0;
    case JV_UNDEF: *out = 0; return 0;
    case JV_LOOP:
        if (v.u.loop->length >= 0) {
            *out = v.u.loop->length;
            return 0;
        }
        break;
    default: break;
    }
    return jr_fail(r, IFD_ERR_INVALID, "object of type '%s' has no len()", jv_type_name(v));
}

int jv_iter(struct jr *r, struct jv v, const struct jv **items, uint32_t *n)
{
    switch (v.kind) {
    case JV_LIST:
    case JV_TUPLE:
        *items = v.u.l->v;
        *n = v.u.l->n;
        return 0;
    case JV_DICT:
        *items = v.u.d->k;
        *n = v.u.d->n;
        return 0;
    case JV_UNDEF:
        *items = NULL;
        *n = 0;
        return 0;
    case JV_STR: {
        size_t count = u8_count(v.u.s, v.n);
        struct jv *chars = count ? jr_alloc(r, count * sizeof *chars) : NULL;
        if (count && !chars) return IFD_ERR_NOMEM;
        size_t i = 0;
        for (size_t k = 0; k < count; k++) {
            size_t start = i;
            u8_next(v.u.s, v.n, &i);
            chars[k] = jv_str(v.u.s + start, i - start);
        }
        JTRY(jr_steps(r, count));
        *items = chars;
        *n = (uint32_t)count;
        return 0;
    }
    default:
        return jr_fail(r, IFD_ERR_INVALID, "'%s' object is not iterable", jv_type_name(v));
    }
}

/* ------------------------------------------------------------------ json.dumps */

static void json_put_string(struct jsb *b, const char *s, size_t n, bool ascii)
{
    jsb_putc(b, '"');
    size_t run = 0; /* start of the pending unescaped run */
    for (size_t i = 0; i < n;) {
        size_t start = i;
        unsigned char c0 = (unsigned char)s[i];
        if (c0 >= 0x20 && c0 != '"' && c0 != '\\' && c0 < 0x7F) {
            i++;
            continue;
        }
        if (c0 >= 0x80 && !ascii) {
            u8_next(s, n, &i);
            continue;
        }
        if (c0 == 0x7F && !ascii) {
            i++;
            continue;
        }
        jsb_put(b, s + run, start - run);
        uint32_t c = u8_next(s, n, &i);
        run = i;
        switch (c) {
        case '"': jsb_put(b, "\\\"", 2); break;
        case '\\': jsb_put(b, "\\\\", 2); break;
        case '\n': jsb_put(b, "\\n", 2); break;
        case '\r': jsb_put(b, "\\r", 2); break;
        case '\t': jsb_put(b, "\\t", 2); break;
        case '\b': jsb_put(b, "\\b", 2); break;
        case '\f': jsb_put(b, "\\f", 2); break;
        default:
            if (c > 0xFFFF) {
                uint32_t v = c - 0x10000;
                jsb_printf(b, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            } else {
                jsb_printf(b, "\\u%04x", c);
            }
        }
    }
    jsb_put(b, s + run, n - run);
    jsb_putc(b, '"');
}

static void json_put_float(struct jsb *b, double d)
{
    char num[40];
    if (isnan(d)) jsb_puts(b, "NaN");
    else if (isinf(d)) jsb_puts(b, d < 0 ? "-Infinity" : "Infinity");
    else {
        fmt_float_repr(d, num);
        jsb_puts(b, num);
    }
}

static void json_newline(struct jsb *b, const struct jjson_opts *o, int level)
{
    jsb_putc(b, '\n');
    for (int i = 0; i < level; i++) jsb_put(b, o->indent, o->indent_n);
}

/* A dict key as json.dumps writes it; TypeError for keys it refuses. */
static int json_key(struct jr *r, struct jsb *b, struct jv k, const struct jjson_opts *o)
{
    switch (k.kind) {
    case JV_STR: json_put_string(b, k.u.s, k.n, o->ensure_ascii); return 0;
    case JV_INT: jsb_printf(b, "\"%lld\"", (long long)k.u.i); return 0;
    case JV_BOOL: jsb_puts(b, k.u.i ? "\"true\"" : "\"false\""); return 0;
    case JV_NONE: jsb_puts(b, "\"null\""); return 0;
    case JV_FLOAT:
        jsb_putc(b, '"');
        json_put_float(b, k.u.f);
        jsb_putc(b, '"');
        return 0;
    default:
        return jr_fail(r, IFD_ERR_INVALID, "keys must be str, int, float, bool or None, not %s", jv_type_name(k));
    }
}

static int json_dict(struct jr *r, struct jsb *b, const struct jdict *d, const struct jjson_opts *o, int depth)
{
    if (d->n == 0) {
        jsb_put(b, "{}", 2);
        return 0;
    }
    uint32_t *order = jr_alloc(r, d->n * sizeof *order);
    if (!order) return IFD_ERR_NOMEM;
    for (uint32_t i = 0; i < d->n; i++) order[i] = i;
    if (o->sort_keys) {
        /* insertion sort: dicts are small, and this keeps equal keys stable */
        JTRY(jr_steps(r, (uint64_t)d->n * d->n / 4));
        for (uint32_t i = 1; i < d->n; i++) {
            uint32_t x = order[i], j = i;
            while (j > 0) {
                bool lt;
                JTRY(jv_lt(r, d->k[x], d->k[order[j - 1]], &lt));
                if (!lt) break;
                order[j] = order[j - 1];
                j--;
            }
            order[j] = x;
        }
    }
    jsb_putc(b, '{');
    for (uint32_t i = 0; i < d->n; i++) {
        if (i) jsb_put(b, o->item_sep, o->item_sep_n);
        if (o->indent) json_newline(b, o, depth + 1);
        JTRY(json_key(r, b, d->k[order[i]], o));
        jsb_put(b, o->key_sep, o->key_sep_n);
        JTRY(jv_to_json(r, b, d->v[order[i]], o, depth + 1));
    }
    if (o->indent) json_newline(b, o, depth);
    jsb_putc(b, '}');
    return 0;
}

int jv_to_json(struct jr *r, struct jsb *b, struct jv v, const struct jjson_opts *o, int depth)
{
    if (depth > JV_MAX_NEST) return jr_fail(r, IFD_ERR_RANGE, "maximum recursion depth exceeded while encoding JSON");
    JTRY(jr_step(r));
    switch (v.kind) {
    case JV_NONE: jsb_puts(b, "null"); return 0;
    case JV_BOOL: jsb_puts(b, v.u.i ? "true" : "false"); return 0;
    case JV_INT: jsb_printf(b, "%lld", (long long)v.u.i); return 0;
    case JV_FLOAT: json_put_float(b, v.u.f); return 0;
    case JV_STR: json_put_string(b, v.u.s, v.n, o->ensure_ascii); return 0;
    case JV_DICT: return json_dict(r, b, v.u.d, o, depth);
    case JV_LIST:
        if (v.sub != JL_LIST) break;
        /* fall through */
    case JV_TUPLE: {
        const struct jlist *l = v.u.l;
        if (l->n == 0) {
            jsb_put(b, "[]", 2);
            return 0;
        }
        jsb_putc(b, '[');
        for (uint32_t i = 0; i < l->n; i++) {
            if (i) jsb_put(b, o->item_sep, o->item_sep_n);
            if (o->indent) json_newline(b, o, depth + 1);
            JTRY(jv_to_json(r, b, l->v[i], o, depth + 1));
        }
        if (o->indent) json_newline(b, o, depth);
        jsb_putc(b, ']');
        return 0;
    }
    default: break;
    }
    return jr_fail(r, IFD_ERR_INVALID, "Object of type %s is not JSON serializable", jv_type_name(v));
}

/* ------------------------------------------------------------------ from the caller's JSON */

int jv_from_json(struct jr *r, const json_t *j, struct jv *out, int depth)
{
    if (depth > JV_MAX_NEST) return jr_fail(r, IFD_ERR_RANGE, "context JSON nests deeper than %d", JV_MAX_NEST);
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(j);
        JTRY(jr_new_dict(r, (uint32_t)n, out));
        struct jdict *d = out->u.d;
        for (void *it = json_object_iter((json_t *)j); it; it = json_object_iter_next((json_t *)j, it)) {
            const char *k = json_object_iter_key(it);
            /* keys are unique in a jansson object: append without a lookup */
            d->k[d->n] = jv_str(k, json_object_iter_key_len(it));
            JTRY(jv_from_json(r, json_object_iter_value(it), &d->v[d->n], depth + 1));
            d->n++;
            if (!jd_index_add(&r->a, d)) return jr_nomem(r);
        }
        return 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        JTRY(jr_new_list(r, JV_LIST, (uint32_t)n, out));
        for (size_t i = 0; i < n; i++) JTRY(jv_from_json(r, json_array_get(j, i), &out->u.l->v[i], depth + 1));
        return 0;
    }
    case JSON_STRING: *out = jv_str(json_string_value(j), json_string_length(j)); return 0;
    case JSON_INTEGER: *out = jv_int((int64_t)json_integer_value(j)); return 0;
    case JSON_REAL: *out = jv_float(json_real_value(j)); return 0;
    case JSON_TRUE: *out = jv_bool(true); return 0;
    case JSON_FALSE: *out = jv_bool(false); return 0;
    default: *out = jv_none(); return 0;
    }
}
