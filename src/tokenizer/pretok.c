/* SPDX-License-Identifier: Apache-2.0
 *
 * pretok.c: byte-level BPE pre-tokenization: splitting a text fragment into
 * the words that BPE merges within, with PCRE2 (UTF + UCP, JIT when
 * available), plus the lenient UTF-8 decoding that decides what those words
 * contain.
 *
 * The reference is llama.cpp, not the regex strings in tokenizer.json, and the
 * two differ in ways that change token ids:
 *  - Text is decoded leniently: overlong forms and UTF-16 surrogates count as
 *    the code point they spell (C0 80 becomes U+0000, re-encoded as 00), and
 *    every other malformed byte becomes U+FFFD. A 4-byte form above U+10FFFF
 *    makes llama.cpp throw and abort; here its lead byte is one more U+FFFD.
 *  - The GPT-2, Llama-3 and Qwen2 patterns run as hand-written scanners
 *    there. Those scanners equal the regexes below given the same character
 *    classes, so the classes are spelled out: whitespace is llama.cpp's fixed
 *    set (UCP's \s also has U+180E), case-insensitive contractions are ASCII
 *    only ((?i) would let 's match U+017F), and \p{L}, \p{N}, \p{P} get the
 *    Unicode 15.0/15.1 additions that llama.cpp's tables (Unicode 15.1) know
 *    and PCRE2 10.42's (Unicode 14) do not. With a PCRE2 built for a newer
 *    Unicode, characters assigned after 15.1 can still split differently.
 *  - Other patterns (\p{N}, the default list) run in llama.cpp on a text
 *    collapsed to one byte per character class; with the classes above that
 *    is the same as matching them directly.
 * Every pass splits each current segment on its own: a match is a word and so
 * is every gap between matches, and a segment's end is the end of the subject
 * for lookaheads.
 *
 * What it does not do: BPE merging (bpe.c), special tokens (tokenizer.c), or
 * any normalization beyond what llama.cpp does (no NFC/NFKC).
 *
 * Layer: tokenizer.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tok_internal.h"

#include "inferd/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- lenient UTF-8, as llama.cpp's unicode_cpt_from_utf8 ---- */

static inline bool is_cont(uint8_t b) { return (b & 0xc0) == 0x80; }

uint32_t tok_utf8_decode(const uint8_t *s, size_t n, size_t *used)
{
    uint8_t b0 = s[0];
    *used = 1;
    if (b0 < 0x80) return b0;
    if (!(b0 & 0x40)) return 0xfffd;
    if (!(b0 & 0x20)) {
        if (n < 2 || !is_cont(s[1])) return 0xfffd;
        *used = 2;
        return (uint32_t)(b0 & 0x1f) << 6 | (s[1] & 0x3f);
    }
    if (!(b0 & 0x10)) {
        if (n < 3 || !is_cont(s[1]) || !is_cont(s[2])) return 0xfffd;
        *used = 3;
        return (uint32_t)(b0 & 0x0f) << 12 | (uint32_t)(s[1] & 0x3f) << 6 | (s[2] & 0x3f);
    }
    if (!(b0 & 0x08)) {
        if (n < 4 || !is_cont(s[1]) || !is_cont(s[2]) || !is_cont(s[3])) return 0xfffd;
        uint32_t cpt = (uint32_t)(b0 & 0x07) << 18 | (uint32_t)(s[1] & 0x3f) << 12 | (uint32_t)(s[2] & 0x3f) << 6 |
                       (s[3] & 0x3f);
        if (cpt > 0x10ffff) return 0xfffd;
        *used = 4;
        return cpt;
    }
    return 0xfffd;
}

int tok_utf8_encode(uint32_t cpt, uint8_t *out)
{
    if (cpt < 0x80) {
        out[0] = (uint8_t)cpt;
        return 1;
    }
    if (cpt < 0x800) {
        out[0] = (uint8_t)(0xc0 | cpt >> 6);
        out[1] = (uint8_t)(0x80 | (cpt & 0x3f));
        return 2;
    }
    if (cpt < 0x10000) {
        out[0] = (uint8_t)(0xe0 | cpt >> 12);
        out[1] = (uint8_t)(0x80 | (cpt >> 6 & 0x3f));
        out[2] = (uint8_t)(0x80 | (cpt & 0x3f));
        return 3;
    }
    out[0] = (uint8_t)(0xf0 | cpt >> 18);
    out[1] = (uint8_t)(0x80 | (cpt >> 12 & 0x3f));
    out[2] = (uint8_t)(0x80 | (cpt >> 6 & 0x3f));
    out[3] = (uint8_t)(0x80 | (cpt & 0x3f));
    return 4;
}

size_t tok_utf8_normalize(const uint8_t *in, size_t n, uint8_t *word, uint8_t *subj)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t used;
        uint32_t cpt = tok_utf8_decode(in + i, n - i, &used);
        i += used;
        int k = tok_utf8_encode(cpt, word + o);
        /* U+E000 is, like a surrogate in llama.cpp's tables, neither letter,
         * number nor space, and also three bytes long. */
        if (cpt >= 0xd800 && cpt <= 0xdfff)
            memcpy(subj + o, "\xee\x80\x80", 3);
        else
            memcpy(subj + o, word + o, (size_t)k);
        o += (size_t)k;
    }
    return o;
}

/* ---- character classes and patterns ---- */

#define CLS_WS "\\t-\\r \\x{85}\\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}"
#define CLS_L                                                                                               \
    "\\p{L}\\x{1123f}-\\x{11240}\\x{11f02}\\x{11f04}-\\x{11f10}\\x{11f12}-\\x{11f33}\\x{1342f}"         \
    "\\x{13441}-\\x{13446}\\x{1b132}\\x{1b155}\\x{1df25}-\\x{1df2a}\\x{1e030}-\\x{1e06d}"                 \
    "\\x{1e4d0}-\\x{1e4eb}\\x{2b739}\\x{2ebf0}-\\x{2ee5d}\\x{31350}-\\x{323af}"
#define CLS_N "\\p{N}\\x{11f50}-\\x{11f59}\\x{1d2c0}-\\x{1d2d3}\\x{1e4f0}-\\x{1e4f9}"
#define CLS_P "\\p{P}\\x{11b00}-\\x{11b09}\\x{11f43}-\\x{11f4f}"

#define RX_WS "[" CLS_WS "]"
#define RX_NOT_WS "[^" CLS_WS "]"
#define RX_L "[" CLS_L "]"
#define RX_N "[" CLS_N "]"
#define RX_OTHER "[^" CLS_WS CLS_L CLS_N "]"

#define RX_GPT2                                                                                             \
    "'s|'t|'re|'ve|'m|'ll|'d| ?" RX_L "+| ?" RX_N "+| ?" RX_OTHER "+|" RX_WS "+(?!" RX_NOT_WS ")|" RX_WS "+"

#define RX_LLAMA3_HEAD "'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD]|[^\\r\\n" CLS_L CLS_N "]?" RX_L "+|"
#define RX_LLAMA3_TAIL                                                                                      \
    "| ?" RX_OTHER "+[\\r\\n]*|" RX_WS "*[\\r\\n]+|" RX_WS "+(?!" RX_NOT_WS ")|" RX_WS "+"

#define RX_LLAMA3 RX_LLAMA3_HEAD RX_N "{1,3}" RX_LLAMA3_TAIL
#define RX_QWEN2 RX_LLAMA3_HEAD RX_N RX_LLAMA3_TAIL

#define PRETOK_MAX_PASSES 4

struct tok_pretok {
    int n_passes;
    pcre2_code *code[PRETOK_MAX_PASSES];
};

static int passes_for(enum tok_pre pre, const char **rx)
{
    switch (pre) {
    case TOK_PRE_DEFAULT:
        rx[0] = "[" CLS_P "$+<=>^~|]+";
        rx[1] = RX_GPT2;
        rx[2] = RX_N "+";
        rx[3] = "[0-9][0-9][0-9]";
        return 4;
    case TOK_PRE_GPT2:
        rx[0] = RX_GPT2;
        return 1;
    case TOK_PRE_STARCODER:
        rx[0] = RX_N;
        rx[1] = RX_GPT2;
        return 2;
    case TOK_PRE_LLAMA3:
        rx[0] = RX_LLAMA3;
        return 1;
    case TOK_PRE_QWEN2:
        rx[0] = RX_QWEN2;
        return 1;
    case TOK_PRE_NONE:
        break;
    }
    return 0;
}

int tok_pretok_create(struct tok_pretok **out, enum tok_pre pre, char *err, size_t errlen)
{
    *out = NULL;
    const char *rx[PRETOK_MAX_PASSES];
    int n = passes_for(pre, rx);
    if (n == 0) return ifd_fail(err, errlen, IFD_ERR_INTERNAL, "no pre-tokenizer passes for type %d", (int)pre);
    struct tok_pretok *p = calloc(1, sizeof *p);
    if (!p) return IFD_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        int ec;
        PCRE2_SIZE eo;
        p->code[i] = pcre2_compile((PCRE2_SPTR)rx[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
        if (!p->code[i]) {
            char msg[128];
            pcre2_get_error_message(ec, (PCRE2_UCHAR *)msg, sizeof msg);
            tok_pretok_free(p);
            return ifd_fail(err, errlen, IFD_ERR_INTERNAL, "pre-tokenizer regex %d: %s at %zu", i, msg, (size_t)eo);
        }
        p->n_passes = i + 1;
        /* Without JIT the interpreter gives the same matches, only slower. */
        (void)pcre2_jit_compile(p->code[i], PCRE2_JIT_COMPLETE);
    }
    *out = p;
    return 0;
}

void tok_pretok_free(struct tok_pretok *p)
{
    if (!p) return;
    for (int i = 0; i < p->n_passes; i++) pcre2_code_free(p->code[i]);
    free(p);
}

/* One pcre2_match, retried once on a JIT stack big enough for any run the
 * 32 KiB default cannot hold. */
static int match_once(const pcre2_code *code, const uint8_t *subj, size_t end, size_t pos, pcre2_match_data *md,
                      pcre2_match_context *mctx, pcre2_jit_stack **jstack)
{
    int rc = pcre2_match(code, subj, end, pos, PCRE2_NO_UTF_CHECK, md, mctx);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !*jstack) {
        *jstack = pcre2_jit_stack_create(1 << 16, 256 << 20, NULL);
        if (!*jstack) return PCRE2_ERROR_NOMEMORY;
        pcre2_jit_stack_assign(mctx, NULL, *jstack);
        rc = pcre2_match(code, subj, end, pos, PCRE2_NO_UTF_CHECK, md, mctx);
    }
    return rc;
}

static size_t next_char(const uint8_t *subj, size_t pos, size_t end)
{
    size_t n = tok_utf8_len(subj[pos]);
    return pos + n <= end ? pos + n : end;
}

/* Splits [start, end) with one pattern, appending word ends to out. */
static int split_segment(const pcre2_code *code, const uint8_t *subj, size_t start, size_t end, pcre2_match_data *md,
                         pcre2_match_context *mctx, pcre2_jit_stack **jstack, struct tok_offs *out)
{
    size_t pos = start;
    while (pos < end) {
        int rc = match_once(code, subj, end, pos, md, mctx, jstack);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) return rc == PCRE2_ERROR_NOMEMORY ? IFD_ERR_NOMEM : IFD_ERR_INTERNAL;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me <= ms) me = next_char(subj, ms, end); /* no pattern here matches empty; never loop */
        if (ms > pos && tok_offs_push(out, (uint32_t)ms)) return IFD_ERR_NOMEM;
        if (tok_offs_push(out, (uint32_t)me)) return IFD_ERR_NOMEM;
        pos = me;
    }
    if (pos < end && tok_offs_push(out, (uint32_t)end)) return IFD_ERR_NOMEM;
    return 0;
}

int tok_pretok_split(const struct tok_pretok *p, const uint8_t *subj, size_t len, struct tok_offs *ends)
{
    if (len == 0) return 0;
    if (len > UINT32_MAX) return IFD_ERR_RANGE;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    pcre2_match_context *mctx = pcre2_match_context_create(NULL);
    pcre2_jit_stack *jstack = NULL;
    struct tok_offs cur = {0}, next = {0};
    int rc = (!md || !mctx) ? IFD_ERR_NOMEM : tok_offs_push(&cur, (uint32_t)len);
    /* Every pattern is linear per word; the default match limit would only
     * cut off long whitespace runs. */
    if (!rc) pcre2_set_match_limit(mctx, UINT32_MAX);
    for (int pass = 0; !rc && pass < p->n_passes; pass++) {
        next.n = 0;
        size_t start = 0;
        for (size_t i = 0; !rc && i < cur.n; i++) {
            rc = split_segment(p->code[pass], subj, start, cur.v[i], md, mctx, &jstack, &next);
            start = cur.v[i];
        }
        struct tok_offs tmp = cur;
        cur = next;
        next = tmp;
    }
    for (size_t i = 0; !rc && i < cur.n; i++) rc = tok_offs_push(ends, cur.v[i]);
    tok_offs_free(&cur);
    tok_offs_free(&next);
    if (jstack) pcre2_jit_stack_free(jstack);
    pcre2_match_context_free(mctx);
    pcre2_match_data_free(md);
    return rc;
}
