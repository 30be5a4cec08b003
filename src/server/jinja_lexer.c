/* SPDX-License-Identifier: Apache-2.0
 *
 * jinja_lexer.c: template source -> tokens, as jinja2's lexer does it with
 * trim_blocks=True, lstrip_blocks=True and keep_trailing_newline=False:
 *   - newlines (\r\n, \r, \n) become \n and one trailing newline is dropped;
 *   - {%- / {{- / {#- strip all whitespace before the tag, -%} / -}} / -#}
 *     all whitespace after it;
 *   - trim_blocks: a block or comment tag eats the one newline right after it
 *     (not after }} and not after {% raw %}), unless it ends with +%};
 *   - lstrip_blocks: spaces and tabs from the start of a line up to a block or
 *     comment tag are removed, unless the tag opens with {%+ / {#+;
 *   - inside tags, brackets must balance and an end delimiter only counts
 *     outside brackets ({{ {'a': 1}}} works);
 *   - string literals are decoded like Python's "unicode-escape" (after
 *     jinja2's backslashreplace), numbers allow _ separators and 0b/0o/0x.
 *
 * Whitespace means Python's str.isspace() set, as jinja2's regexes use \s.
 * Not supported: line statements/comments (off in transformers' environment),
 * \N{name} escapes. Errors name the line and column.
 *
 * Layer: server.
 */
#include "jinja_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LEX_MAX_BRACKETS 256

struct lexer {
    struct jarena *a;
    const char *src; /* normalized source */
    size_t n, pos;
    /* line tracking: line of offset line_pos, which only moves forward */
    size_t line_pos, line_start;
    uint32_t line;
    bool line_starting; /* the last match ended with a newline (lstrip_blocks) */
    struct jtok *toks;
    size_t ntoks, cap;
    char bal[LEX_MAX_BRACKETS];
    int nbal;
    char *err;
    size_t errlen;
};

static void lex_where(struct lexer *lx, size_t pos, uint32_t *line, uint32_t *col)
{
    if (pos < lx->line_pos) { /* errors may point back; recount from the top */
        lx->line_pos = 0;
        lx->line_start = 0;
        lx->line = 1;
    }
    for (; lx->line_pos < pos && lx->line_pos < lx->n; lx->line_pos++)
        if (lx->src[lx->line_pos] == '\n') {
            lx->line++;
            lx->line_start = lx->line_pos + 1;
        }
    *line = lx->line;
    *col = (uint32_t)(pos - lx->line_start + 1);
}

static int lex_fail(struct lexer *lx, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int lex_fail(struct lexer *lx, size_t pos, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    uint32_t line, col;
    lex_where(lx, pos, &line, &col);
    return ifd_fail(lx->err, lx->errlen, IFD_ERR_FORMAT, "%s at line %u, column %u", msg, line, col);
}

static struct jtok *lex_push(struct lexer *lx, uint8_t kind, size_t pos)
{
    if (lx->ntoks == lx->cap) {
        size_t cap = lx->cap ? lx->cap * 2 : 256;
        struct jtok *t = ja_alloc(lx->a, cap * sizeof *t);
        if (!t) return NULL;
        if (lx->ntoks) memcpy(t, lx->toks, lx->ntoks * sizeof *t);
        lx->toks = t;
        lx->cap = cap;
    }
    struct jtok *t = &lx->toks[lx->ntoks++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    lex_where(lx, pos, &t->line, &t->col);
    return t;
}

#define LEX_PUSH(t, lx, kind, pos)                                                                            \
    do {                                                                                                      \
        (t) = lex_push((lx), (kind), (pos));                                                                  \
        if (!(t)) return ifd_fail((lx)->err, (lx)->errlen, IFD_ERR_NOMEM, "out of memory compiling template"); \
    } while (0)

/* Length of the whitespace run at p (Python's \s*). */
static size_t ws_len(const char *s, size_t n, size_t p)
{
    size_t i = p;
    while (i < n) {
        size_t k = i;
        uint32_t c = u8_next(s, n, &k);
        if (!py_isspace(c)) break;
        i = k;
    }
    return i - p;
}

static bool all_ws(const char *s, size_t n)
{
    return ws_len(s, n, 0) == n;
}

/* Length of text after trailing whitespace is removed (str.rstrip()). */
static size_t rstrip_len(const char *s, size_t n)
{
    size_t keep = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c = u8_next(s, n, &i);
        if (!py_isspace(c)) keep = i;
    }
    return keep;
}

static bool starts(const struct lexer *lx, size_t p, const char *lit)
{
    size_t k = strlen(lit);
    return p + k <= lx->n && memcmp(lx->src + p, lit, k) == 0;
}

/* ------------------------------------------------------------------ data and its stripping */

/* Emits text before a tag, stripped as the tag's sign and kind ask. */
static int emit_data(struct lexer *lx, size_t start, size_t end, char sign, bool lstrip_ok)
{
    const char *text = lx->src + start;
    size_t len = end - start;
    if (sign == '-') {
        len = rstrip_len(text, len);
    } else if (sign != '+' && lstrip_ok) {
        size_t l_pos = 0;
        for (size_t i = len; i > 0; i--)
            if (text[i - 1] == '\n') {
                l_pos = i;
                break;
            }
        if ((l_pos > 0 || lx->line_starting) && len > l_pos && all_ws(text + l_pos, len - l_pos)) len = l_pos;
    }
    if (len == 0) return 0;
    struct jtok *t;
    LEX_PUSH(t, lx, JT_DATA, start);
    t->s = text;
    t->n = (uint32_t)len;
    return 0;
}

/* ------------------------------------------------------------------ literals */

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* (\d+_)*\d+ at p: its length, 0 if none */
static size_t digits_len(const char *s, size_t n, size_t p)
{
    size_t i = p;
    if (i >= n || !is_digit(s[i])) return 0;
    for (;;) {
        while (i < n && is_digit(s[i])) i++;
        if (i + 1 < n && s[i] == '_' && is_digit(s[i + 1])) {
            i++;
            continue;
        }
        return i - p;
    }
}

static size_t float_len(const struct lexer *lx, size_t p)
{
    const char *s = lx->src;
    size_t n = lx->n;
    if (p > 0 && s[p - 1] == '.') return 0; /* (?<!\.) */
    size_t d = digits_len(s, n, p);
    if (!d) return 0;
    size_t i = p + d;
    /* (\.D)?e[+-]?D */
    size_t j = i;
    if (j < n && s[j] == '.' && digits_len(s, n, j + 1)) j += 1 + digits_len(s, n, j + 1);
    if (j < n && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (k < n && (s[k] == '+' || s[k] == '-')) k++;
        size_t e = digits_len(s, n, k);
        if (e) return k + e - p;
    }
    /* \.D */
    if (i < n && s[i] == '.' && digits_len(s, n, i + 1)) return i + 1 + digits_len(s, n, i + 1) - p;
    return 0;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* 0b(_?[01])+ | 0o(_?[0-7])+ | 0x(_?[0-9a-f])+ | [1-9](_?\d)* | 0(_?0)* ; returns the length and base */
static size_t int_len(const char *s, size_t n, size_t p, int *base)
{
    if (p + 2 < n && s[p] == '0') {
        char b = (char)(s[p + 1] | 32);
        int bs = b == 'b' ? 2 : b == 'o' ? 8 : b == 'x' ? 16 : 0;
        if (bs) {
            size_t i = p + 2, got = 0;
            for (;;) {
                size_t k = i < n && s[i] == '_' ? i + 1 : i;
                int v = k < n ? hex_val(s[k]) : -1;
                if (v < 0 || v >= bs) break;
                i = k + 1;
                got++;
            }
            if (got) {
                *base = bs;
                return i - p;
            }
        }
    }
    *base = 10;
    if (p >= n || !is_digit(s[p])) return 0;
    char first = s[p];
    size_t i = p + 1;
    for (;;) {
        size_t k = i < n && s[i] == '_' ? i + 1 : i;
        if (k >= n || !is_digit(s[k]) || (first == '0' && s[k] != '0')) break;
        i = k + 1;
    }
    return i - p;
}

static int lex_number(struct lexer *lx, size_t p, size_t *used)
{
    char buf[128];
    size_t fl = float_len(lx, p);
    struct jtok *t;
    if (fl) {
        size_t k = 0;
        for (size_t i = 0; i < fl && k + 1 < sizeof buf; i++)
            if (lx->src[p + i] != '_') buf[k++] = lx->src[p + i];
        buf[k] = 0;
        LEX_PUSH(t, lx, JT_FLOAT, p);
        t->f = strtod(buf, NULL);
        *used = fl;
        return 0;
    }
    int base;
    size_t il = int_len(lx->src, lx->n, p, &base);
    if (!il) return 1;
    uint64_t v = 0;
    for (size_t i = base == 10 ? 0 : 2; i < il; i++) {
        char c = lx->src[p + i];
        if (c == '_') continue;
        uint64_t d = (uint64_t)hex_val(c);
        if (v > (UINT64_MAX - d) / (uint64_t)base || v * (uint64_t)base + d > (uint64_t)INT64_MAX)
            return lex_fail(lx, p, "integer literal too large (templates use 64-bit integers)");
        v = v * (uint64_t)base + d;
    }
    LEX_PUSH(t, lx, JT_INT, p);
    t->i = (int64_t)v;
    *used = il;
    return 0;
}

/* Decodes a string literal body like Python's
 * body.encode("ascii", "backslashreplace").decode("unicode-escape"). */
static int decode_string(struct lexer *lx, size_t p, const char *s, size_t n, struct jtok *t)
{
    struct jsb b;
    jsb_init(&b, lx->a);
    for (size_t i = 0; i < n;) {
        if (s[i] != '\\') {
            size_t j = i + 1;
            while (j < n && s[j] != '\\') j++;
            jsb_put(&b, s + i, j - i);
            i = j;
            continue;
        }
        i++;
        unsigned char e = (unsigned char)s[i++];
        uint32_t cp;
        switch (e) {
        case '\n': continue;
        case '\\': jsb_putc(&b, '\\'); continue;
        case '\'': jsb_putc(&b, '\''); continue;
        case '"': jsb_putc(&b, '"'); continue;
        case 'a': jsb_putc(&b, '\a'); continue;
        case 'b': jsb_putc(&b, '\b'); continue;
        case 'f': jsb_putc(&b, '\f'); continue;
        case 'n': jsb_putc(&b, '\n'); continue;
        case 'r': jsb_putc(&b, '\r'); continue;
        case 't': jsb_putc(&b, '\t'); continue;
        case 'v': jsb_putc(&b, '\v'); continue;
        case 'x':
        case 'u':
        case 'U': {
            int want = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            cp = 0;
            for (int k = 0; k < want; k++) {
                int v = i + (size_t)k < n ? hex_val(s[i + (size_t)k]) : -1;
                if (v < 0)
                    return lex_fail(lx, p, "truncated \\%s escape", e == 'x' ? "xXX" : e == 'u' ? "uXXXX" : "UXXXXXXXX");
                cp = cp << 4 | (uint32_t)v;
            }
            i += (size_t)want;
            if (cp > 0x10FFFF) return lex_fail(lx, p, "illegal Unicode character");
            jsb_put_cp(&b, cp);
            continue;
        }
        case 'N': return lex_fail(lx, p, "\\N{...} escapes are not supported");
        default: break;
        }
        if (e >= '0' && e <= '7') {
            cp = e - '0';
            for (int k = 0; k < 2 && i < n && s[i] >= '0' && s[i] <= '7'; k++) cp = cp * 8 + (uint32_t)(s[i++] - '0');
            jsb_put_cp(&b, cp);
        } else if (e >= 0x80) {
            /* backslashreplace turned the character into \xe9 / \u20ac / \U0001f600 text, and
             * the backslash before it escaped that escape's backslash */
            size_t k = i - 1;
            cp = u8_next(s, n, &k);
            i = k;
            jsb_putc(&b, '\\');
            if (cp <= 0xFF) jsb_printf(&b, "x%02x", cp);
            else if (cp <= 0xFFFF) jsb_printf(&b, "u%04x", cp);
            else jsb_printf(&b, "U%08x", cp);
        } else {
            jsb_putc(&b, '\\'); /* unknown escapes stay as written */
            jsb_putc(&b, (char)e);
        }
    }
    if (b.oom) return ifd_fail(lx->err, lx->errlen, IFD_ERR_NOMEM, "out of memory compiling template");
    t->s = b.n ? b.p : "";
    t->n = (uint32_t)b.n;
    return 0;
}

static int lex_string(struct lexer *lx, size_t p, size_t *used)
{
    char q = lx->src[p];
    size_t i = p + 1;
    while (i < lx->n && lx->src[i] != q) i += lx->src[i] == '\\' ? 2 : 1;
    if (i >= lx->n) return lex_fail(lx, p, "unexpected char '%c' (unterminated string)", q);
    struct jtok *t;
    LEX_PUSH(t, lx, JT_STRING, p);
    *used = i + 1 - p;
    return decode_string(lx, p, lx->src + p + 1, i - p - 1, t);
}

static bool name_char(const char *s, size_t n, size_t p, size_t *len, bool first)
{
    unsigned char c = (unsigned char)s[p];
    if (c < 0x80) {
        *len = 1;
        return c == '_' || ((c | 32) >= 'a' && (c | 32) <= 'z') || (!first && is_digit((char)c));
    }
    size_t k = p;
    uint32_t cp = u8_next(s, n, &k);
    *len = k - p;
    return py_isalpha(cp) || (!first && py_isdigit(cp));
}

/* ------------------------------------------------------------------ operators */

static const struct {
    const char *s;
    uint8_t op;
} g_ops[] = {
    {"//", JO_FLOORDIV}, {"**", JO_POW}, {"==", JO_EQ}, {"!=", JO_NE}, {">=", JO_GTEQ}, {"<=", JO_LTEQ},
    {"+", JO_ADD}, {"-", JO_SUB}, {"/", JO_DIV}, {"*", JO_MUL}, {"%", JO_MOD}, {"~", JO_TILDE},
    {"[", JO_LBRACKET}, {"]", JO_RBRACKET}, {"(", JO_LPAREN}, {")", JO_RPAREN}, {"{", JO_LBRACE},
    {"}", JO_RBRACE}, {"=", JO_ASSIGN}, {">", JO_GT}, {"<", JO_LT}, {".", JO_DOT}, {":", JO_COLON},
    {"|", JO_PIPE}, {",", JO_COMMA}, {";", JO_SEMICOLON},
};

static int lex_operator(struct lexer *lx, size_t p, size_t *used)
{
    for (size_t k = 0; k < sizeof g_ops / sizeof g_ops[0]; k++) {
        if (!starts(lx, p, g_ops[k].s)) continue;
        char c = g_ops[k].s[0];
        if (g_ops[k].s[1] == 0 && (c == '(' || c == '[' || c == '{')) {
            if (lx->nbal == LEX_MAX_BRACKETS) return lex_fail(lx, p, "nesting too deep (more than %d open brackets)", LEX_MAX_BRACKETS);
            lx->bal[lx->nbal++] = c == '(' ? ')' : c == '[' ? ']' : '}';
        } else if (g_ops[k].s[1] == 0 && (c == ')' || c == ']' || c == '}')) {
            if (!lx->nbal) return lex_fail(lx, p, "unexpected '%c'", c);
            char want = lx->bal[--lx->nbal];
            if (want != c) return lex_fail(lx, p, "unexpected '%c', expected '%c'", c, want);
        }
        struct jtok *t;
        LEX_PUSH(t, lx, JT_OP, p);
        t->op = g_ops[k].op;
        t->s = g_ops[k].s;
        t->n = (uint32_t)strlen(g_ops[k].s);
        *used = t->n;
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ tags */

/* At the end of a {% %} or {{ }} tag? Consumes the delimiter and its trimming. */
static bool lex_tag_end(struct lexer *lx, bool block)
{
    size_t p = lx->pos, end;
    if (block && starts(lx, p, "+%}")) {
        end = p + 3;
    } else if (starts(lx, p, block ? "-%}" : "-}}")) {
        end = p + 3;
        end += ws_len(lx->src, lx->n, end);
    } else if (starts(lx, p, block ? "%}" : "}}")) {
        end = p + 2;
        if (block && end < lx->n && lx->src[end] == '\n') end++;
    } else {
        return false;
    }
    lx->line_starting = lx->src[end - 1] == '\n';
    lx->pos = end;
    return true;
}

static int lex_tag(struct lexer *lx, bool block)
{
    struct jtok *t;
    lx->nbal = 0;
    for (;;) {
        size_t p = lx->pos;
        if (lx->nbal == 0 && lex_tag_end(lx, block)) {
            LEX_PUSH(t, lx, block ? JT_BLOCK_END : JT_VAR_END, p);
            return 0;
        }
        if (p >= lx->n) return 0; /* the parser reports the unexpected end */
        size_t used = ws_len(lx->src, lx->n, p);
        if (used) {
            lx->pos += used;
            continue;
        }
        char c = lx->src[p];
        if (is_digit(c)) {
            int rc = lex_number(lx, p, &used);
            if (rc < 0) return rc;
            if (rc == 0) {
                lx->pos += used;
                continue;
            }
        }
        size_t cl;
        if (name_char(lx->src, lx->n, p, &cl, true)) {
            size_t e = p + cl;
            while (e < lx->n && name_char(lx->src, lx->n, e, &cl, false)) e += cl;
            LEX_PUSH(t, lx, JT_NAME, p);
            t->s = lx->src + p;
            t->n = (uint32_t)(e - p);
            lx->pos = e;
            continue;
        }
        if (c == '\'' || c == '"') {
            JTRY(lex_string(lx, p, &used));
            lx->pos += used;
            continue;
        }
        int rc = lex_operator(lx, p, &used);
        if (rc < 0) return rc;
        if (rc == 0) {
            lx->pos += used;
            continue;
        }
        size_t k = p;
        u8_next(lx->src, lx->n, &k);
        return lex_fail(lx, p, "unexpected char '%.*s'", (int)(k - p), lx->src + p);
    }
}

/* {# ... #}: the comment body is dropped; its end trims like a block's. */
static int lex_comment(struct lexer *lx)
{
    /* jinja2 only complains when something follows an unterminated {# */
    if (lx->pos >= lx->n) return 0;
    for (size_t j = lx->pos; j + 1 < lx->n; j++) {
        size_t end;
        if (starts(lx, j, "+#}")) {
            end = j + 3;
        } else if (starts(lx, j, "-#}")) {
            end = j + 3;
            end += ws_len(lx->src, lx->n, end);
        } else if (starts(lx, j, "#}")) {
            end = j + 2;
            if (end < lx->n && lx->src[end] == '\n') end++;
        } else {
            continue;
        }
        lx->line_starting = lx->src[end - 1] == '\n';
        lx->pos = end;
        return 0;
    }
    return lex_fail(lx, lx->pos, "Missing end of comment tag");
}

/* {% raw %} at p? Returns the offset after it (its -%} eats whitespace, no trim_blocks). */
static size_t raw_begin(const struct lexer *lx, size_t p)
{
    size_t i = p + 2;
    if (i < lx->n && (lx->src[i] == '-' || lx->src[i] == '+')) i++;
    i += ws_len(lx->src, lx->n, i);
    if (!starts(lx, i, "raw")) return 0;
    i += 3;
    i += ws_len(lx->src, lx->n, i);
    if (starts(lx, i, "-%}")) return i + 3 + ws_len(lx->src, lx->n, i + 3);
    if (starts(lx, i, "%}")) return i + 2;
    return 0;
}

static int lex_raw(struct lexer *lx)
{
    if (lx->pos >= lx->n) return 0; /* {% raw %} at the very end: nothing to emit, as in jinja2 */
    for (size_t j = lx->pos; j + 1 < lx->n; j++) {
        if (!starts(lx, j, "{%")) continue;
        size_t i = j + 2;
        char sign = 0;
        if (i < lx->n && (lx->src[i] == '-' || lx->src[i] == '+')) sign = lx->src[i++];
        i += ws_len(lx->src, lx->n, i);
        if (!starts(lx, i, "endraw")) continue;
        i += 6;
        i += ws_len(lx->src, lx->n, i);
        size_t end;
        if (starts(lx, i, "+%}")) {
            end = i + 3;
        } else if (starts(lx, i, "-%}")) {
            end = i + 3 + ws_len(lx->src, lx->n, i + 3);
        } else if (starts(lx, i, "%}")) {
            end = i + 2;
            if (end < lx->n && lx->src[end] == '\n') end++;
        } else {
            continue;
        }
        JTRY(emit_data(lx, lx->pos, j, sign, true));
        lx->line_starting = lx->src[end - 1] == '\n';
        lx->pos = end;
        return 0;
    }
    return lex_fail(lx, lx->pos, "Missing end of raw directive");
}

/* Next tag opener at or after p: its offset, or n. */
static size_t next_tag(const struct lexer *lx, size_t p)
{
    for (;;) {
        const char *hit = p < lx->n ? memchr(lx->src + p, '{', lx->n - p) : NULL;
        if (!hit) return lx->n;
        size_t k = (size_t)(hit - lx->src);
        if (k + 1 < lx->n && (hit[1] == '{' || hit[1] == '%' || hit[1] == '#')) return k;
        p = k + 1;
    }
}

static int lex_root(struct lexer *lx)
{
    while (lx->pos < lx->n) {
        size_t t = next_tag(lx, lx->pos);
        if (t == lx->n) return emit_data(lx, lx->pos, lx->n, 0, false);
        char kind = lx->src[t + 1];
        char sign = t + 2 < lx->n && (lx->src[t + 2] == '-' || lx->src[t + 2] == '+') ? lx->src[t + 2] : 0;
        size_t raw_end = kind == '%' ? raw_begin(lx, t) : 0;
        JTRY(emit_data(lx, lx->pos, t, sign, kind != '{'));
        lx->line_starting = false;
        lx->pos = t + 2 + (sign ? 1 : 0);
        if (raw_end) {
            lx->line_starting = lx->src[raw_end - 1] == '\n';
            lx->pos = raw_end;
            JTRY(lex_raw(lx));
        } else if (kind == '#') {
            JTRY(lex_comment(lx));
        } else {
            struct jtok *tok;
            LEX_PUSH(tok, lx, kind == '%' ? JT_BLOCK_BEGIN : JT_VAR_BEGIN, t);
            JTRY(lex_tag(lx, kind == '%'));
        }
    }
    return 0;
}

/* \r\n and \r become \n; one trailing newline goes. */
static char *normalize(struct jarena *a, const char *src, size_t len, size_t *out_len)
{
    char *s = ja_alloc(a, len + 1);
    if (!s) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[k++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[k++] = src[i];
        }
    }
    if (k && s[k - 1] == '\n') k--;
    s[k] = 0;
    *out_len = k;
    return s;
}

int jinja_lex(struct jarena *a, const char *src, size_t len, struct jtoks *out, char *err, size_t errlen)
{
    struct lexer lx;
    memset(&lx, 0, sizeof lx);
    lx.a = a;
    lx.err = err;
    lx.errlen = errlen;
    lx.line = 1;
    lx.line_starting = true;
    lx.src = normalize(a, src, len, &lx.n);
    if (!lx.src) return ifd_fail(err, errlen, IFD_ERR_NOMEM, "out of memory compiling template");
    JTRY(lex_root(&lx));
    struct jtok *t;
    LEX_PUSH(t, &lx, JT_EOF, lx.n);
    out->v = lx.toks;
    out->n = lx.ntoks;
    return 0;
}
