/* SPDX-License-Identifier: Apache-2.0
 *
 * jinja_internal.h: the private vocabulary of the chat-template interpreter
 * (include/inferd/chat_template.h): values, the arena they live in, tokens,
 * the syntax tree, and the render state the evaluator threads through.
 *
 *   jinja_lexer.c    source -> tokens (whitespace control, trim/lstrip_blocks)
 *   jinja_parser.c   tokens -> syntax tree, filter/test names resolved
 *   jinja_value.c    arena, values, str()/repr()/json.dumps, ==, <, UTF-8
 *   jinja_eval.c     statements, expressions, scopes, macros, loops
 *   jinja_filters.c  the filters and tests
 *   jinja_builtins.c str/dict/list methods, % and .format, range, dict,
 *                    namespace, strftime_now, raise_exception, loop.cycle
 *   jinja_api.c      compile/render entry points, JSON context
 *
 * Model of execution. Values are immutable and live in a per-render arena
 * that is dropped in one piece at the end, so nothing is reference counted
 * and an error can unwind from anywhere without leaking. The only mutable
 * things are variable frames and namespace() objects, as in jinja2 under
 * ImmutableSandboxedEnvironment (list.append and dict.update are refused there
 * too). Strings are UTF-8 byte ranges that may share memory (slices, JSON
 * strings from the caller's context).
 *
 * Scoping follows jinja2: the template has one root frame; every for-loop
 * iteration, macro call, with-block and call/generation block opens a frame
 * whose assignments vanish when it ends; if-blocks do not open one. Reading a
 * name walks frames outwards; macros resolve free names where they were
 * defined, when they are called.
 *
 * Markup (from |safe and |e) is a flag on strings, because jinja2 escapes a
 * plain string added to a Markup even with autoescape off (functionary's
 * template depends on it).
 *
 * Where this deliberately differs from jinja2 (none of it reached by the
 * templates in tests/data/templates; the corpus there pins the rest):
 *   - integers are 64-bit; overflow is an error instead of a big int;
 *   - case mapping (upper/lower/title/capitalize) covers ASCII, Latin-1,
 *     Latin Extended-A, Greek and Cyrillic, plus ß -> SS; no final-sigma rule;
 *   - generators (select, map, reverse...) can be iterated more than once;
 *     generators, bound methods and functions print without an address;
 *   - repr() of a string escapes the non-printable characters Python does for
 *     ASCII and Latin-1 and a fixed list of common Unicode ones;
 *   - pprint is repr() with sorted dict keys (no line wrapping at 80 columns);
 *   - Unicode classes outside Latin-1 (isalpha/isdigit, \w in wordcount) are
 *     block-level approximations; striptags unescapes only the common
 *     entities (&amp; &lt; &gt; &quot; &#39; &#34; &nbsp;);
 *   - \N{name} string escapes, recursive for-loops, block/extends/include/
 *     import, joiner/cycler/lipsum, the random/urlize/wordwrap filters,
 *     str.encode and format specs with nested fields or digit grouping are
 *     not supported: a clear error at compile or render time;
 *   - lone surrogates from \ud800-style escapes become U+FFFD;
 *   - jinja2 lexes lazily, so with two syntax errors it may report the later
 *     one; we report the first;
 *   - negative numbers to fractional powers (complex in Python) are an error,
 *     and `-3 ** y` is (-3) ** y as jinja2's grammar says, not the -(3 ** y)
 *     jinja2's constant folder happens to emit when y is not a constant.
 *
 * Layer: server.
 */
#ifndef INFERD_JINJA_INTERNAL_H
#define INFERD_JINJA_INTERNAL_H

#include "inferd/chat_template.h"
#include "inferd/error.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------------ arena */

struct jarena_chunk;

struct jarena {
    struct jarena_chunk *head;
    size_t total; /* bytes obtained from malloc */
    size_t limit; /* 0: unlimited */
};

void ja_init(struct jarena *a, size_t limit);
void ja_free(struct jarena *a);
/* 16-byte aligned; NULL when over the limit or out of memory. */
void *ja_alloc(struct jarena *a, size_t n);
char *ja_memdup(struct jarena *a, const void *s, size_t n);

/* ------------------------------------------------------------------ values */

enum jv_kind {
    JV_UNDEF = 0, /* jinja2's Undefined: prints "", falsy, most uses are errors */
    JV_NONE,
    JV_BOOL,  /* u.i is 0 or 1 */
    JV_INT,   /* u.i */
    JV_FLOAT, /* u.f */
    JV_STR,   /* u.s, n bytes of UTF-8, not NUL-terminated */
    JV_LIST,  /* u.l; sub says which Python type it stands for (enum jl_sub) */
    JV_TUPLE, /* u.l */
    JV_DICT,  /* u.d; insertion ordered */
    JV_NS,    /* namespace(): u.d, mutable through {% set ns.x = ... %} */
    JV_MACRO, /* u.m: a macro or a call block's caller */
    JV_FUNC,  /* a global function; u.i is an enum jfunc_id */
    JV_METHOD,/* a bound method: u.bm */
    JV_LOOP,  /* the loop variable of a for loop: u.loop */
    JV_UNBOUND = 255, /* internal: an empty variable slot, or a missing argument */
};

/* What a JV_LIST prints and behaves as: generators are always truthy, have
 * no len() and cannot be indexed; dict views and ranges print differently. */
enum jl_sub { JL_LIST = 0, JL_GEN, JL_REVITER, JL_DICT_ITEMS, JL_DICT_KEYS, JL_DICT_VALUES, JL_RANGE };

struct jlist;
struct jdict;
struct jmacro;
struct jmethod;
struct jloop;
struct jundef;

struct jv {
    uint8_t kind;
    uint8_t sub;  /* JV_LIST: enum jl_sub */
    uint16_t aux;
    uint32_t n;   /* JV_STR: byte length */
    union {
        int64_t i;
        double f;
        const char *s;
        struct jlist *l;
        struct jdict *d;
        const struct jmacro *m;
        const struct jmethod *bm;
        struct jloop *loop;
        const struct jundef *ud;
    } u;
};

struct jlist {
    uint32_t n;
    struct jv *v;
    int64_t range[3]; /* JL_RANGE: start, stop, step (for printing) */
};

struct jdict {
    uint32_t n, cap;
    struct jv *k, *v;
    /* open-addressing index of the string keys (slot + 1, 0 = empty), built
     * once a dict has 16 entries so lookups in big user-supplied objects stay
     * O(1); idx_mask + 1 slots */
    uint32_t *idx;
    uint32_t idx_mask;
};

/* Why a value is undefined; decides the message when it is used. */
enum jundef_why { JU_NAME, JU_ATTR, JU_ELEM, JU_HINT };

struct jundef {
    uint8_t why;
    uint8_t exc;           /* 0 UndefinedError, 1 SecurityError (unsafe attribute) */
    const char *name;      /* JU_NAME/JU_ATTR: the name; JU_HINT: the message */
    uint32_t name_len;
    const char *obj_type;  /* JU_ATTR/JU_ELEM: object_type_repr() of the container */
    struct jv key;         /* JU_ELEM: the missing key or index */
};

static inline struct jv jv_none(void) { struct jv v = {JV_NONE, 0, 0, 0, {0}}; return v; }
static inline struct jv jv_unbound(void) { struct jv v = {JV_UNBOUND, 0, 0, 0, {0}}; return v; }
static inline struct jv jv_bool(bool b) { struct jv v = {JV_BOOL, 0, 0, 0, {.i = b ? 1 : 0}}; return v; }
static inline struct jv jv_int(int64_t i) { struct jv v = {JV_INT, 0, 0, 0, {.i = i}}; return v; }
static inline struct jv jv_float(double f) { struct jv v = {JV_FLOAT, 0, 0, 0, {.f = f}}; return v; }
static inline struct jv jv_str(const char *s, size_t n) { struct jv v = {JV_STR, 0, 0, (uint32_t)n, {.s = s}}; return v; }
static inline bool jv_is_num(struct jv v) { return v.kind == JV_INT || v.kind == JV_FLOAT || v.kind == JV_BOOL; }
static inline bool jv_is_intlike(struct jv v) { return v.kind == JV_INT || v.kind == JV_BOOL; }
static inline double jv_num(struct jv v) { return v.kind == JV_FLOAT ? v.u.f : (double)v.u.i; }
static inline bool jv_is_seq(struct jv v) { return v.kind == JV_LIST || v.kind == JV_TUPLE; }
/* A JV_STR with sub == JS_MARKUP is markupsafe's Markup (from |safe or |e):
 * even with autoescape off, jinja2 escapes plain strings added to it. */
#define JS_MARKUP 1
static inline bool jv_is_markup(struct jv v) { return v.kind == JV_STR && v.sub == JS_MARKUP; }
static inline struct jv jv_markup(struct jv v) { v.sub = JS_MARKUP; return v; }

/* ------------------------------------------------------------ string builder */

/* Grows in the arena; a failed allocation sets oom and later puts are no-ops,
 * so callers check once, in jsb_done. */
struct jsb {
    struct jarena *a;
    char *p;
    size_t n, cap;
    bool oom;
    bool too_deep; /* repr() of a structure nested deeper than we follow */
};

void jsb_init(struct jsb *b, struct jarena *a);
void jsb_put(struct jsb *b, const char *s, size_t n);
void jsb_putc(struct jsb *b, char c);
void jsb_puts(struct jsb *b, const char *s);
void jsb_printf(struct jsb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void jsb_put_cp(struct jsb *b, uint32_t cp);

/* ------------------------------------------------------------------ UTF-8 */

/* Decodes the code point at s[*i] (valid UTF-8 assumed) and advances *i. */
uint32_t u8_next(const char *s, size_t n, size_t *i);
size_t u8_encode(uint32_t cp, char out[4]);
size_t u8_count(const char *s, size_t n);
/* Byte offset of code point index ci (ci <= count). */
size_t u8_offset(const char *s, size_t n, size_t ci);
bool u8_valid(const char *s, size_t n, size_t *bad_at);
bool py_isspace(uint32_t cp);     /* str.isspace(), also re's \s */
/* The next whitespace-separated word of s at or after *i (str.split()'s
 * notion): false when none is left, else its bounds, with *i past it. */
bool py_next_word(const char *s, size_t n, size_t *i, size_t *start, size_t *end);
bool py_islinebreak(uint32_t cp); /* str.splitlines() boundaries */
bool py_isalnum(uint32_t cp);
bool py_isalpha(uint32_t cp);
bool py_isdigit(uint32_t cp);
bool py_iscased(uint32_t cp);
bool py_islower_cp(uint32_t cp);
bool py_isupper_cp(uint32_t cp);
uint32_t py_lower(uint32_t cp);
uint32_t py_upper(uint32_t cp);
/* Appends upper(s) / lower(s) with the full mappings we know (ß -> SS). */
void py_put_upper(struct jsb *b, uint32_t cp);

/* ------------------------------------------------------------------ tokens */

enum jt_kind {
    JT_EOF = 0,
    JT_DATA,
    JT_VAR_BEGIN, JT_VAR_END,
    JT_BLOCK_BEGIN, JT_BLOCK_END,
    JT_NAME, JT_STRING, JT_INT, JT_FLOAT,
    JT_OP,
};

enum jt_op {
    JO_NONE = 0,
    JO_ADD, JO_SUB, JO_DIV, JO_FLOORDIV, JO_MUL, JO_MOD, JO_POW, JO_TILDE,
    JO_LBRACKET, JO_RBRACKET, JO_LPAREN, JO_RPAREN, JO_LBRACE, JO_RBRACE,
    JO_EQ, JO_NE, JO_GT, JO_GTEQ, JO_LT, JO_LTEQ, JO_ASSIGN,
    JO_DOT, JO_COLON, JO_PIPE, JO_COMMA, JO_SEMICOLON,
    /* compare operators the parser adds */
    JO_IN, JO_NOTIN,
};

struct jtok {
    uint8_t kind;
    uint8_t op;
    uint32_t line, col;
    const char *s; /* name / decoded string / data text */
    uint32_t n;
    int64_t i;
    double f;
};

struct jtoks {
    struct jtok *v;
    size_t n;
};

/* Tokenizes src (already UTF-8 checked) into the arena. */
int jinja_lex(struct jarena *a, const char *src, size_t len, struct jtoks *out, char *err, size_t errlen);

/* ------------------------------------------------------------------ syntax tree */

enum jn_kind {
    /* statements */
    JN_BLOCK = 1,  /* kids: statements */
    JN_DATA,       /* val: the text */
    JN_PRINT,      /* kids: expressions to print */
    JN_IF,         /* kids: cond, body, else (or NULL) */
    JN_FOR,        /* kids: target, iter, filter cond (or NULL), body, else (or NULL) */
    JN_SET,        /* kids: target, value */
    JN_SETBLOCK,   /* kids: target, body, filter chain (or NULL) */
    JN_MACRO,      /* kids: body, params (npos NAMEs), defaults (nkw, for the last params) */
    JN_CALLBLOCK,  /* kids: call expression, caller (a JN_MACRO) */
    JN_FILTERBLOCK,/* kids: body, filter chain */
    JN_WITH,       /* kids: body, targets (npos), values (npos) */
    JN_SCOPE,      /* kids: body; {% generation %}: a scope whose output passes through */
    JN_BREAK,
    JN_CONTINUE,
    /* expressions */
    JN_CONST,      /* val */
    JN_NAME,       /* id: symbol, val: the name */
    JN_NSREF,      /* assignment target ns.attr: id: symbol of ns, val: attr */
    JN_GETATTR,    /* kids: object; val: attribute name */
    JN_GETITEM,    /* kids: object, index (maybe a JN_SLICE) */
    JN_SLICE,      /* kids: start, stop, step (each may be NULL) */
    JN_CALL,       /* kids: callee, npos positional, [*args], nkw keyword values, [**kwargs] */
    JN_FILTER,     /* kids: target (NULL in filter blocks), args as for JN_CALL; id: filter */
    JN_TEST,       /* kids: target, args as for JN_CALL; id: test */
    JN_NOT, JN_NEG, JN_POS,
    JN_AND, JN_OR,
    JN_BINOP,      /* op: JO_ADD..JO_POW */
    JN_CONCAT,     /* kids: operands of ~ */
    JN_COMPARE,    /* kids: first operand, then JN_OPERANDs */
    JN_OPERAND,    /* op: comparison; kids: the right operand */
    JN_CONDEXPR,   /* kids: cond, then, else (or NULL) */
    JN_LIST, JN_TUPLE,
    JN_DICT,       /* kids: key, value, key, value... */
};

/* Call-shaped nodes */
#define JNF_STAR_ARGS 1u    /* a *args expression follows the positional arguments */
#define JNF_STAR_KWARGS 2u  /* a **kwargs expression is the last kid */
/* Macros: which of the implicit names the body uses (decides what it accepts) */
#define JNF_VARARGS 4u
#define JNF_KWARGS 8u
#define JNF_CALLER 16u
/* Filters and tests whose name is unknown but that sit in an if/else branch:
 * jinja2 only fails if they actually run. */
#define JNF_UNKNOWN 32u

struct jnode {
    uint8_t kind;
    uint8_t op;
    uint16_t flags;
    uint32_t line;
    int32_t id;
    uint16_t npos, nkw;
    uint32_t nkids;
    struct jnode **kids;
    struct jv val;
    struct jv *kwnames; /* nkw keyword names (JV_STR) of a call */
};

/* Symbols the evaluator knows by number (the parser interns them first). */
enum {
    JSYM_LOOP = 0,
    JSYM_CALLER,
    JSYM_VARARGS,
    JSYM_KWARGS,
    JSYM_FIRST_FREE,
};

struct jsym {
    const char *s;
    uint32_t n;
};

struct jinja_template {
    struct jarena a;     /* owns everything below */
    struct jnode *root;
    struct jsym *syms;
    int32_t nsyms;
};

int jinja_parse(struct jinja_template *t, const struct jtoks *toks, char *err, size_t errlen);

/* ------------------------------------------------------------------ filters, tests, functions */

enum jfilter_id {
    JF_ABS, JF_ATTR, JF_BATCH, JF_CAPITALIZE, JF_CENTER, JF_COUNT, JF_DEFAULT, JF_DICTSORT, JF_ESCAPE,
    JF_FILESIZEFORMAT, JF_FIRST, JF_FLOAT, JF_FORCEESCAPE, JF_FORMAT, JF_GROUPBY, JF_INDENT, JF_INT, JF_JOIN,
    JF_LAST, JF_LENGTH, JF_LIST, JF_LOWER, JF_ITEMS, JF_MAP, JF_MIN, JF_MAX, JF_PPRINT, JF_RANDOM, JF_REJECT,
    JF_REJECTATTR, JF_REPLACE, JF_REVERSE, JF_ROUND, JF_SAFE, JF_SELECT, JF_SELECTATTR, JF_SLICE, JF_SORT,
    JF_STRING, JF_STRIPTAGS, JF_SUM, JF_TITLE, JF_TRIM, JF_TRUNCATE, JF_UNIQUE, JF_UPPER, JF_URLENCODE,
    JF_URLIZE, JF_WORDCOUNT, JF_WORDWRAP, JF_XMLATTR, JF_TOJSON,
    JF_COUNT_ALL
};

enum jtest_id {
    JTS_ODD, JTS_EVEN, JTS_DIVISIBLEBY, JTS_DEFINED, JTS_UNDEFINED, JTS_FILTER, JTS_TEST, JTS_NONE, JTS_BOOLEAN,
    JTS_FALSE, JTS_TRUE, JTS_INTEGER, JTS_FLOAT_T, JTS_LOWER, JTS_UPPER, JTS_STRING, JTS_MAPPING, JTS_NUMBER,
    JTS_SEQUENCE, JTS_ITERABLE, JTS_CALLABLE, JTS_SAMEAS, JTS_ESCAPED, JTS_IN, JTS_EQ, JTS_NE, JTS_GT, JTS_GE,
    JTS_LT, JTS_LE,
    JTS_COUNT_ALL
};

enum jfunc_id {
    JFN_RANGE, JFN_DICT, JFN_NAMESPACE, JFN_RAISE_EXCEPTION, JFN_STRFTIME_NOW, JFN_JOINER, JFN_CYCLER,
    JFN_LIPSUM,
    JFN_COUNT_ALL
};

/* -1 when unknown */
int jinja_filter_lookup(const char *s, size_t n);
int jinja_test_lookup(const char *s, size_t n);
int jinja_func_lookup(const char *s, size_t n);
const char *jinja_func_name(int id);

/* ------------------------------------------------------------------ render state */

struct jvar {
    int32_t sym;
    struct jv v;
};

struct jframe {
    struct jframe *parent;
    struct jvar *vars;
    uint32_t n, cap;
};

struct jmacro {
    const struct jnode *def;  /* JN_MACRO (a call block's caller is one named "caller") */
    struct jframe *closure;   /* where free names resolve */
};

/* A method bound to its object: 'abc'.upper, d.get, loop.cycle... */
struct jmethod {
    struct jv self;
    int id;            /* enum jmethod_id in jinja_builtins.c */
    const char *name;
};

struct jloop {
    int64_t index0;          /* -1 before the first item */
    int64_t length;          /* -1 until known (filtered loops count lazily) */
    int depth0;
    struct jv prev, cur;
    struct jv last_changed;  /* loop.changed(); JV_UNBOUND before the first call */
    /* the items still to come: src[src_pos..n_src), of which those failing
     * the filter (cond, when set) are skipped; a peeked item waits in next */
    const struct jv *src;
    uint32_t n_src, src_pos;
    const struct jnode *cond;   /* the for's "if" expression, NULL once all items passed it */
    const struct jnode *target; /* the for's target, bound while cond runs */
    struct jframe *outer;       /* where cond runs ... */
    struct jframe *cond_frame;  /* ... in this frame, reused for each candidate */
    bool has_next;
    struct jv next;
};

struct jr {
    const struct jinja_template *t;
    struct jarena a;
    struct jv *root;          /* nsyms slots: the template's top-level frame */
    struct jframe *frame;     /* innermost frame, NULL at top level */
    /* output: malloc'd, grows; captures remember an offset and cut the tail */
    char *out;
    size_t out_n, out_cap;
    struct jinja_limits lim;
    uint64_t steps;
    int depth;
    int loop_depth;
    int64_t now;
    /* first error */
    char *err;
    size_t errlen;
    uint32_t err_line;
    bool err_raised;          /* from raise_exception(): no line suffix */
};

#define JTRY(expr)                                                                                            \
    do {                                                                                                      \
        int jtry_rc_ = (expr);                                                                                \
        if (jtry_rc_ < 0) return jtry_rc_;                                                                    \
    } while (0)

/* Records an error (the first one wins) and returns code. */
int jr_fail(struct jr *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int jr_nomem(struct jr *r);
/* Counts one unit of work against max_steps. */
int jr_step(struct jr *r);
int jr_steps(struct jr *r, uint64_t n);

/* Allocation helpers that fail with IFD_ERR_NOMEM and a message */
void *jr_alloc(struct jr *r, size_t n);
int jr_new_list(struct jr *r, uint8_t kind, uint32_t n, struct jv *out);
int jr_sb_done(struct jr *r, struct jsb *b, struct jv *out);
int jr_new_dict(struct jr *r, uint32_t cap, struct jv *out);
int jr_dict_set(struct jr *r, struct jdict *d, struct jv k, struct jv v);
int jr_undef(struct jr *r, uint8_t why, const char *name, size_t name_len, struct jv obj, struct jv key, struct jv *out);
int jr_undef_hint(struct jr *r, const char *hint, struct jv *out);
/* Fails with the error using an undefined value would raise in jinja2. */
int jr_undef_fail(struct jr *r, struct jv u);

/* ------------------------------------------------------------------ value operations (jinja_value.c) */

bool jv_truthy(struct jv v);
bool jv_eq(struct jv a, struct jv b);
/* Python's a < b, and a OP b for OP in JO_LT, JO_LTEQ, JO_GT, JO_GTEQ;
 * TypeError for unorderable kinds. */
int jv_lt(struct jr *r, struct jv a, struct jv b, bool *out);
int jv_compare(struct jr *r, int op, struct jv a, struct jv b, bool *out);
const char *jv_type_name(struct jv v);      /* type(v).__name__ */
const char *jv_object_type_repr(struct jv v); /* jinja2's object_type_repr */
void jv_put_str(struct jsb *b, struct jv v); /* str(v) */
void jv_put_repr(struct jsb *b, struct jv v);/* repr(v) */
int jv_to_str(struct jr *r, struct jv v, struct jv *out);
void fmt_float_repr(double d, char buf[40]);
/* Length of a sized value (code points for strings); TypeError otherwise. */
int jv_len(struct jr *r, struct jv v, int64_t *out);
/* The items iteration yields: list/tuple items, string characters, dict keys;
 * undefined iterates as empty. TypeError for the rest. */
int jv_iter(struct jr *r, struct jv v, const struct jv **items, uint32_t *n);
const struct jv *jd_get(const struct jdict *d, struct jv key);
const struct jv *jd_get_str(const struct jdict *d, const char *s, size_t n);
/* Slot of key in d, or -1. */
int64_t jd_find(const struct jdict *d, struct jv key);
/* Call after appending d->k[d->n - 1]: keeps the index current, building it
 * when the dict becomes big enough. false when out of memory. */
bool jd_index_add(struct jarena *a, struct jdict *d);

struct jjson_opts {
    bool ensure_ascii;
    bool sort_keys;
    const char *indent; /* NULL: compact one line */
    size_t indent_n;
    const char *item_sep, *key_sep;
    size_t item_sep_n, key_sep_n;
};
int jv_to_json(struct jr *r, struct jsb *b, struct jv v, const struct jjson_opts *o, int depth);
int jv_from_json(struct jr *r, const json_t *j, struct jv *out, int depth);

/* ------------------------------------------------------------------ evaluator interfaces */

struct jkwarg {
    const char *name;
    uint32_t n;
    struct jv v;
};

struct jargs {
    const struct jv *pos;
    uint32_t npos;
    const struct jkwarg *kw;
    uint32_t nkw;
};

/* Binds args against names[nnames] (the first nreq required); unbound slots
 * are JV_UNBOUND. fname is used in error messages. */
int jargs_bind(struct jr *r, const struct jargs *a, const char *fname, const char *const *names, int nnames,
               int nreq, struct jv *out);

int jinja_eval_expr(struct jr *r, const struct jnode *n, struct jv *out);
int jinja_exec(struct jr *r, const struct jnode *n);
int jinja_getattr(struct jr *r, struct jv obj, const char *name, size_t n, struct jv *out);
int jinja_getitem(struct jr *r, struct jv obj, struct jv key, struct jv *out);
int jinja_call(struct jr *r, struct jv fn, const struct jargs *a, struct jv *out);
int jinja_binop(struct jr *r, int op, struct jv a, struct jv b, struct jv *out);
int jinja_contains(struct jr *r, struct jv container, struct jv item, bool *out);

int jinja_call_filter(struct jr *r, int id, struct jv target, const struct jargs *a, struct jv *out);
/* markupsafe.escape(): Markup passes through, anything else is str()'d,
 * escaped (& < > ' ") and marked. */
int jinja_escape(struct jr *r, struct jv v, struct jv *out);
int jinja_call_test(struct jr *r, int id, struct jv target, const struct jargs *a, bool *out);

/* Attribute lookup of built-in methods: returns true and a JV_METHOD when
 * obj's Python type has a method of that name (unsafe ones included: calling
 * them is a SecurityError). */
bool jinja_method_lookup(struct jr *r, struct jv obj, const char *name, size_t n, struct jv *out, int *rc);
int jinja_call_method(struct jr *r, const struct jmethod *m, const struct jargs *a, struct jv *out);
int jinja_call_func(struct jr *r, int id, const struct jargs *a, struct jv *out);
int jinja_str_mod(struct jr *r, struct jv fmt, struct jv args, struct jv *out);

/* String operations shared by filters and methods (jinja_builtins.c). */
enum { JS_LEFT = 1, JS_RIGHT = 2, JS_BOTH = 3 };
/* chars: JV_UNBOUND or JV_NONE for whitespace */
int jstr_strip(struct jr *r, struct jv s, struct jv chars, int mode, struct jv *out);
enum { JC_UPPER, JC_LOWER, JC_TITLE, JC_CAPITALIZE, JC_SWAPCASE };
int jstr_case(struct jr *r, struct jv s, int mode, struct jv *out);
/* count < 0: all */
int jstr_replace(struct jr *r, struct jv s, struct jv old, struct jv rep, int64_t count, struct jv *out);
/* Python's str.splitlines() boundaries; appends each line (without ends) */
int jstr_splitlines(struct jr *r, struct jv s, bool keepends, struct jv *out);
/* A test by its name as select()/reject() take it ("odd", "==", "in"...) */
int jinja_test_by_name(struct jr *r, struct jv name, int *id);

/* Tuples made by groupby() answer to .grouper and .list (jv.sub of a JV_TUPLE) */
#define JTU_GROUP 1

#endif
