/* SPDX-License-Identifier: Apache-2.0
 *
 * spm.c: SentencePiece-style tokenization as llama.cpp's llm_tokenizer_spm
 * does it: spaces become U+2581 ("▁"), the text is cut into UTF-8 characters
 * (by lead byte alone, so malformed input still makes progress), and adjacent
 * symbols are merged greedily, highest vocabulary score first (ties: leftmost),
 * whenever their concatenation is a token. Symbols that end up not being
 * tokens are emitted as <0xNN> byte tokens.
 *
 * llama.cpp also keeps a table to re-split a final symbol through the merges
 * that built it; that path never runs, because a merge only happens when the
 * merged text is a token, so every multi-character final symbol is one. Only
 * single characters can be unknown, and those go to bytes here as there.
 *
 * What it does not do: Unigram (T5-style) scoring, NFKC normalization from a
 * precompiled charsmap, or special tokens (tokenizer.c).
 *
 * Layer: tokenizer.
 */
#include "tok_internal.h"

#include "inferd/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void spm_init(struct tokenizer *t)
{
    for (int b = 0; b < 256; b++) {
        char hex[8];
        snprintf(hex, sizeof hex, "<0x%02X>", b);
        int32_t id = tok_strmap_get(&t->text_map, t, hex, 6);
        if (id < 0) {
            char c = (char)b;
            id = tok_strmap_get(&t->text_map, t, &c, 1);
        }
        /* llama.cpp aborts when a byte has no token; the unknown token (or
         * nothing) is the closest thing that keeps going. */
        t->byte_tok[b] = id >= 0 ? id : t->unk;
    }
}

struct sym {
    int32_t prev, next;
    uint32_t start, n;
    int32_t id;
};

struct spm_work {
    struct sym *syms;
    struct tok_heap heap;
};

static int try_bigram(const struct tokenizer *t, struct spm_work *w, const uint8_t *text, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return 0;
    const struct sym *l = &w->syms[left], *r = &w->syms[right];
    uint32_t size = l->n + r->n;
    if (size > (uint32_t)t->max_token_len) return 0;
    int32_t id = tok_strmap_get(&t->text_map, t, (const char *)text + l->start, size);
    if (id < 0) return 0;
    /* the heap pops the smallest key: negate so the best score merges first */
    return tok_heap_push(&w->heap, (struct tok_bigram){-t->scores[id], left, right, id, size});
}

/* Copies text with every space as U+2581, after an optional leading one. */
static uint8_t *escape_spaces(const uint8_t *text, size_t len, bool prefix_space, size_t *out_len)
{
    size_t n = len + (prefix_space ? 3 : 0);
    for (size_t i = 0; i < len; i++) n += text[i] == ' ' ? 2 : 0;
    uint8_t *buf = malloc(n + 1);
    if (!buf) return NULL;
    size_t o = 0;
    if (prefix_space) {
        memcpy(buf, "\xe2\x96\x81", 3);
        o = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(buf + o, "\xe2\x96\x81", 3);
            o += 3;
        } else {
            buf[o++] = text[i];
        }
    }
    *out_len = o;
    return buf;
}

static int split_chars(const struct tokenizer *t, const uint8_t *text, size_t len, struct spm_work *w, size_t *n_syms)
{
    w->syms = malloc(len * sizeof *w->syms);
    if (!w->syms) return IFD_ERR_NOMEM;
    size_t n = 0;
    for (size_t off = 0; off < len;) {
        size_t k = tok_utf8_len(text[off]);
        if (k > len - off) k = len - off;
        int32_t id = tok_strmap_get(&t->text_map, t, (const char *)text + off, k);
        w->syms[n] = (struct sym){(int32_t)n - 1, off + k < len ? (int32_t)n + 1 : -1, (uint32_t)off, (uint32_t)k, id};
        n++;
        off += k;
    }
    *n_syms = n;
    return 0;
}

static int emit_symbols(const struct tokenizer *t, const uint8_t *text, const struct spm_work *w, struct tok_ids *out)
{
    for (int32_t i = 0; i >= 0; i = w->syms[i].next) {
        const struct sym *s = &w->syms[i];
        if (s->id >= 0) {
            if (tok_ids_push(out, s->id)) return IFD_ERR_NOMEM;
            continue;
        }
        for (uint32_t k = 0; k < s->n; k++) {
            int32_t id = t->byte_tok[text[s->start + k]];
            if (id >= 0 && tok_ids_push(out, id)) return IFD_ERR_NOMEM;
        }
    }
    return 0;
}

int spm_encode_fragment(const struct tokenizer *t, const uint8_t *raw, size_t raw_len, bool prefix_space,
                        struct tok_ids *out)
{
    if (raw_len > UINT32_MAX / 3 - 1) return IFD_ERR_RANGE;
    size_t len;
    uint8_t *text = escape_spaces(raw, raw_len, prefix_space, &len);
    if (!text) return IFD_ERR_NOMEM;
    struct spm_work w = {0};
    size_t n = 0;
    int rc = len ? split_chars(t, text, len, &w, &n) : 0;
    for (size_t i = 1; !rc && i < n; i++) rc = try_bigram(t, &w, text, (int32_t)i - 1, (int32_t)i);
    while (!rc && w.heap.n > 0) {
        struct tok_bigram b = tok_heap_pop(&w.heap);
        struct sym *l = &w.syms[b.left], *r = &w.syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        l->id = b.result;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w.syms[r->next].prev = b.left;
        rc = try_bigram(t, &w, text, l->prev, b.left);
        if (!rc) rc = try_bigram(t, &w, text, b.left, l->next);
    }
    if (!rc && n > 0) rc = emit_symbols(t, text, &w, out);
    free(w.syms);
    tok_heap_free(&w.heap);
    free(text);
    return rc;
}
