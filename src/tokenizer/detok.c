/* SPDX-License-Identifier: Apache-2.0
 *
 * detok.c: token ids back to bytes: every token's rendering computed once at
 * load (as llama.cpp's token-to-piece cache), token_to_piece, decode, and the
 * streaming detokenizer that holds back an unfinished UTF-8 character.
 *
 * Rendering follows llama.cpp's llama_token_to_piece: control and unknown
 * tokens render as their text only when special rendering is asked for;
 * user-defined tokens always render as their raw text; byte tokens <0xNN> as
 * the byte; normal tokens undo the GPT-2 byte mapping (BPE) or turn "▁" into a
 * space (SPM); tokens of any other type render as nothing. decode is
 * llama_detokenize(remove_special = false) without its clean-up of spaces
 * before punctuation ("a ." -> "a."), which llama.cpp applies for many
 * byte-level pre-tokenizers (gpt-2, llama3, starcoder, default; not smollm or
 * qwen2) and never for SentencePiece: it would make decode(encode(s)) != s
 * and the streaming output differ from decode.
 *
 * What it does not do: strip special tokens from a sequence (callers skip ids
 * themselves) or validate the UTF-8 that tokens produce.
 *
 * Layer: tokenizer.
 */
#include "tok_internal.h"

#include "inferd/error.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the piece cache ---- */

struct buf {
    char *p;
    size_t n, cap;
};

static int buf_put(struct buf *b, const void *src, size_t n)
{
    if (n == 0) return 0;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 16;
        while (cap < b->n + n) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return IFD_ERR_NOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
    return 0;
}

/* The byte of a <0xNN> token: llama.cpp reads text[3..5) with strtol. */
static uint8_t byte_token_value(const char *text, size_t len)
{
    char hex[3] = {0};
    for (size_t i = 3; i < 5 && i < len; i++) hex[i - 3] = text[i];
    return (uint8_t)strtol(hex, NULL, 16);
}

/* Undoes the GPT-2 byte mapping character by character. A character outside
 * the mapping renders as llama.cpp's "[UNK_BYTE_0x<utf8 hex><token text>]". */
static int put_bpe_normal(struct buf *b, const char *text, size_t len)
{
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i < len;) {
        size_t used;
        uint32_t cpt = tok_utf8_decode(s + i, len - i, &used);
        i += used;
        int byte = bpe_cpt_to_byte(cpt);
        if (byte >= 0) {
            uint8_t c = (uint8_t)byte;
            if (buf_put(b, &c, 1)) return IFD_ERR_NOMEM;
            continue;
        }
        uint8_t enc[4];
        int n = tok_utf8_encode(cpt, enc);
        char hex[32] = "[UNK_BYTE_0x";
        size_t o = strlen(hex);
        for (int k = 0; k < n; k++) o += (size_t)snprintf(hex + o, sizeof hex - o, "%02x", enc[k]);
        if (buf_put(b, hex, o) || buf_put(b, text, len) || buf_put(b, "]", 1)) return IFD_ERR_NOMEM;
    }
    return 0;
}

/* The next U+2581 in [p, end), or NULL. (glibc's memmem costs more to set
 * up than these few-byte texts take to scan.) */
static const char *find_space_mark(const char *p, const char *end)
{
    while ((p = memchr(p, '\xe2', (size_t)(end - p))) != NULL) {
        if (end - p >= 3 && p[1] == '\x96' && p[2] == '\x81') return p;
        p++;
    }
    return NULL;
}

static int put_spm_normal(struct buf *b, const char *text, size_t len)
{
    const char *end = text + len;
    while (text < end) {
        const char *m = find_space_mark(text, end);
        const char *stop = m ? m : end;
        if (buf_put(b, text, (size_t)(stop - text)) || (m && buf_put(b, " ", 1))) return IFD_ERR_NOMEM;
        text = m ? m + 3 : end;
    }
    return 0;
}

static int put_piece(const struct tokenizer *t, struct buf *b, int32_t id)
{
    size_t len;
    const char *text = tok_text(t, id, &len);
    uint16_t a = t->attr[id];
    if (a & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL | TOK_ATTR_USER_DEFINED)) return buf_put(b, text, len);
    if (a & TOK_ATTR_NORMAL)
        return t->kind == TOK_KIND_BPE ? put_bpe_normal(b, text, len) : put_spm_normal(b, text, len);
    if (a & TOK_ATTR_BYTE) {
        uint8_t c = byte_token_value(text, len);
        return buf_put(b, &c, 1);
    }
    return 0;
}

int detok_build_pieces(struct tokenizer *t, char *err, size_t errlen)
{
    /* Pieces are rarely longer than their texts; start at that size. */
    struct buf b = {malloc((size_t)t->text_off[t->n_vocab] + 1), 0, (size_t)t->text_off[t->n_vocab] + 1};
    if (!b.p) return IFD_ERR_NOMEM;
    t->piece_off = malloc(((size_t)t->n_vocab + 1) * sizeof *t->piece_off);
    if (!t->piece_off) return IFD_ERR_NOMEM;
    t->max_piece_len = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        size_t before = b.n;
        t->piece_off[id] = (uint32_t)before;
        if (put_piece(t, &b, id)) {
            free(b.p);
            return IFD_ERR_NOMEM;
        }
        if (b.n > UINT32_MAX || b.n - before > INT_MAX / 4) {
            free(b.p);
            return ifd_fail(err, errlen, IFD_ERR_FORMAT, "token %d renders to too many bytes", (int)id);
        }
        if ((int)(b.n - before) > t->max_piece_len) t->max_piece_len = (int)(b.n - before);
    }
    t->piece_off[t->n_vocab] = (uint32_t)b.n;
    t->piece_arena = b.p;
    return 0;
}

/* ---- public rendering ---- */

/* The piece of id as rendered (empty for a hidden special); NULL if out of range. */
static const char *piece_of(const struct tokenizer *t, int32_t id, bool render_special, size_t *len)
{
    if (id < 0 || id >= t->n_vocab) return NULL;
    if (!render_special && (t->attr[id] & (TOK_ATTR_UNKNOWN | TOK_ATTR_CONTROL))) {
        *len = 0;
        return t->piece_arena;
    }
    *len = t->piece_off[id + 1] - t->piece_off[id];
    return t->piece_arena + t->piece_off[id];
}

int tokenizer_token_to_piece(const struct tokenizer *t, int32_t id, bool render_special, char *buf, int cap)
{
    if (!t || cap < 0 || (cap > 0 && !buf)) return IFD_ERR_INVALID;
    size_t len;
    const char *p = piece_of(t, id, render_special, &len);
    if (!p) return IFD_ERR_RANGE;
    if (len && len <= (size_t)cap) memcpy(buf, p, len);
    return (int)len;
}

int tokenizer_max_piece_len(const struct tokenizer *t) { return t ? t->max_piece_len : 0; }

int tokenizer_decode(const struct tokenizer *t, const int32_t *ids, int n, bool render_special, char *buf, int cap)
{
    if (!t || n < 0 || (n > 0 && !ids) || cap < 0 || (cap > 0 && !buf)) return IFD_ERR_INVALID;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        size_t len;
        const char *p = piece_of(t, ids[i], render_special, &len);
        if (!p) return IFD_ERR_RANGE;
        /* llama.cpp drops one leading space of the first token's piece when
         * the model adds a space prefix when encoding. */
        if (i == 0 && t->add_space_prefix && len > 0 && p[0] == ' ') {
            p++;
            len--;
        }
        if (len && total + len <= (size_t)cap) memcpy(buf + total, p, len);
        total += len;
        if (total > INT_MAX) return IFD_ERR_RANGE;
    }
    return (int)total;
}

/* ---- streaming ---- */

void detok_init(struct detok *d, const struct tokenizer *t, bool render_special)
{
    memset(d, 0, sizeof *d);
    d->t = t;
    d->render_special = render_special;
    d->first = true;
}

/* Length of the trailing bytes of s[0, n) that start a valid UTF-8 character
 * but do not finish it (0 if the tail is complete or can never be valid). */
static int incomplete_tail(const uint8_t *s, size_t n)
{
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        uint8_t lead = s[n - k];
        if ((lead & 0xc0) == 0x80) continue;
        size_t need = lead >= 0xf0 && lead <= 0xf4 ? 4 : lead >= 0xe0 && lead <= 0xef ? 3 : lead >= 0xc2 && lead <= 0xdf ? 2 : 0;
        if (need <= k) return 0;
        /* The second byte's range rules out overlongs and surrogates. */
        if (k >= 2) {
            uint8_t b1 = s[n - k + 1];
            uint8_t lo = lead == 0xe0 ? 0xa0 : lead == 0xf0 ? 0x90 : 0x80;
            uint8_t hi = lead == 0xed ? 0x9f : lead == 0xf4 ? 0x8f : 0xbf;
            if (b1 < lo || b1 > hi) return 0;
        }
        return (int)k;
    }
    return 0;
}

int detok_push(struct detok *d, int32_t id, char *out, int cap)
{
    if (!d || !d->t || cap < 0 || (cap > 0 && !out)) return IFD_ERR_INVALID;
    size_t len;
    const char *p = piece_of(d->t, id, d->render_special, &len);
    if (!p) return IFD_ERR_RANGE;
    if (d->first && d->t->add_space_prefix && len > 0 && p[0] == ' ') {
        p++;
        len--;
    }
    size_t total = (size_t)d->n_pending + len;
    if (total > (size_t)cap + 3) return IFD_ERR_FULL;
    /* Work on pending + piece without a second buffer: emit what is complete,
     * keep the unfinished tail (at most 3 bytes) in pending. */
    uint8_t tail_src[8];
    size_t tail_take = total < 4 ? total : 4;
    for (size_t k = 0; k < tail_take; k++) {
        size_t pos = total - tail_take + k;
        tail_src[k] = pos < (size_t)d->n_pending ? (uint8_t)d->pending[pos] : (uint8_t)p[pos - (size_t)d->n_pending];
    }
    size_t keep = (size_t)incomplete_tail(tail_src, tail_take);
    size_t emit = total - keep;
    if (emit > (size_t)cap) return IFD_ERR_FULL;
    d->first = false;
    char held[4];
    for (size_t k = 0; k < keep; k++) held[k] = (char)tail_src[tail_take - keep + k];
    size_t from_pending = emit < (size_t)d->n_pending ? emit : (size_t)d->n_pending;
    if (emit) {
        memcpy(out, d->pending, from_pending);
        memcpy(out + from_pending, p, emit - from_pending);
    }
    memcpy(d->pending, held, keep);
    d->n_pending = (int)keep;
    return (int)emit;
}

int detok_flush(struct detok *d, char *out, int cap)
{
    if (!d || cap < 0 || (cap > 0 && !out)) return IFD_ERR_INVALID;
    if (d->n_pending > cap) return IFD_ERR_FULL;
    int n = d->n_pending;
    if (n) memcpy(out, d->pending, (size_t)n);
    d->n_pending = 0;
    return n;
}
