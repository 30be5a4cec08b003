/* SPDX-License-Identifier: Apache-2.0
 *
 * bpe.c: GPT-2 style byte-level BPE: the bytes-to-unicode mapping, merge
 * validation at load, and the merge loop that turns each pre-tokenized word
 * into token ids the way llama.cpp's llm_tokenizer_bpe_session does.
 *
 * Merging works on ids, not strings: each symbol carries the id of its text
 * (or -1), merges are keyed by (left id, right id), and every merge stores
 * the id of its result. That is the same as llama.cpp's string-keyed ranks
 * because load rejects merges whose halves are not tokens (a symbol whose text
 * is not a token could never take part in such a merge anyway). The loop is a
 * doubly linked symbol list plus a binary heap ordered by (rank, left
 * position), so a word of n bytes costs O(n log n); stale heap entries are
 * recognised by the pair's combined length, which only grows.
 *
 * What it does not do: split text into words (pretok.c) or handle special
 * tokens (tokenizer.c).
 *
 * Layer: tokenizer.
 */
#include "tok_internal.h"

#include "inferd/error.h"

#include <stdlib.h>
#include <string.h>

/* ---- GPT-2 bytes-to-unicode ---- */

/* Printable Latin-1 bytes stand for themselves; the other 68 bytes map, in
 * byte order, to U+0100.. so that no token text contains a control character
 * or a space. */
static bool byte_is_printable(int b) { return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae; }

static uint32_t byte_to_cpt(uint8_t b)
{
    if (byte_is_printable(b)) return b;
    uint32_t k = 0;
    for (int i = 0; i < b; i++) k += !byte_is_printable(i);
    return 0x100 + k;
}

int bpe_byte_to_utf8(uint8_t b, uint8_t out[2])
{
    uint8_t tmp[4];
    int n = tok_utf8_encode(byte_to_cpt(b), tmp);
    memcpy(out, tmp, (size_t)n);
    return n;
}

int bpe_cpt_to_byte(uint32_t cpt)
{
    if (cpt < 0x100) return byte_is_printable((int)cpt) ? (int)cpt : -1;
    if (cpt >= 0x100 + 68) return -1;
    uint32_t k = cpt - 0x100;
    for (int b = 0; b < 256; b++)
        if (!byte_is_printable(b) && k-- == 0) return b;
    return -1;
}

/* ---- load ---- */

static void init_byte_tables(struct tokenizer *t)
{
    for (int b = 0; b < 256; b++) {
        uint8_t enc[2];
        int n = bpe_byte_to_utf8((uint8_t)b, enc);
        t->byte_tok[b] = tok_strmap_get(&t->text_map, t, (const char *)enc, (size_t)n);
        /* llama.cpp's last resort for a symbol that is not a token: each byte
         * of its (mapped) text looked up as a one-byte token. */
        for (int k = 0; k < 2; k++)
            t->byte_fallback[b][k] = k < n ? tok_strmap_get(&t->text_map, t, (const char *)&enc[k], 1) : -1;
    }
}

static int add_merge(struct tokenizer *t, const struct gguf_str *s, int32_t rank, char *err, size_t errlen)
{
    /* llama.cpp splits at the first space after the first byte. */
    const char *sp = s->len > 1 ? memchr(s->ptr + 1, ' ', s->len - 1) : NULL;
    if (!sp || sp + 1 == s->ptr + s->len)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tokenizer.ggml.merges[%d]: '%.*s' is not two tokens separated by a space",
                        (int)rank, (int)(s->len > 64 ? 64 : s->len), s->ptr);
    size_t nl = (size_t)(sp - s->ptr), nr = s->len - nl - 1;
    int32_t left = tok_strmap_get(&t->text_map, t, s->ptr, nl);
    int32_t right = tok_strmap_get(&t->text_map, t, sp + 1, nr);
    if (left < 0 || right < 0)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tokenizer.ggml.merges[%d]: '%.*s' names a token not in the vocabulary",
                        (int)rank, (int)(s->len > 64 ? 64 : s->len), s->ptr);
    int32_t result = -1;
    if (nl + nr <= (size_t)t->max_token_len) {
        char buf[512];
        char *joined = nl + nr <= sizeof buf ? buf : malloc(nl + nr);
        if (!joined) return IFD_ERR_NOMEM;
        memcpy(joined, s->ptr, nl);
        memcpy(joined + nl, sp + 1, nr);
        result = tok_strmap_get(&t->text_map, t, joined, nl + nr);
        if (joined != buf) free(joined);
    }
    tok_pairmap_put(&t->merges, left, right, rank, result);
    return 0;
}

int bpe_init(struct tokenizer *t, const struct gguf_array *merges, char *err, size_t errlen)
{
    init_byte_tables(t);
    if (!merges) return 0;
    if (merges->count > INT32_MAX)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tokenizer.ggml.merges has %llu entries",
                        (unsigned long long)merges->count);
    int rc = tok_pairmap_init(&t->merges, (uint32_t)merges->count);
    if (rc) return rc;
    for (uint64_t i = 0; i < merges->count; i++)
        if ((rc = add_merge(t, &merges->strs[i], (int32_t)i, err, errlen))) return rc;
    return 0;
}

/* ---- merging ---- */

struct sym {
    int32_t prev, next;
    uint32_t start, n;  /* bytes of the word */
    int32_t id;         /* token id of the text, or -1 */
};

struct bpe_work {
    struct sym *syms;
    size_t cap_syms;
    struct tok_heap heap;
};

static int try_bigram(const struct tokenizer *t, struct bpe_work *w, int32_t left, int32_t right)
{
    if (left < 0 || right < 0) return 0;
    const struct sym *l = &w->syms[left], *r = &w->syms[right];
    int32_t rank, result;
    if (l->id < 0 || r->id < 0 || !tok_pairmap_get(&t->merges, l->id, r->id, &rank, &result)) return 0;
    /* ranks are < 2^23 (the GGUF array cap), so they are exact as float keys */
    return tok_heap_push(&w->heap, (struct tok_bigram){(float)rank, left, right, result, l->n + r->n});
}

static int merge_word(const struct tokenizer *t, struct bpe_work *w, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (try_bigram(t, w, (int32_t)i - 1, (int32_t)i)) return IFD_ERR_NOMEM;
    while (w->heap.n > 0) {
        struct tok_bigram b = tok_heap_pop(&w->heap);
        struct sym *l = &w->syms[b.left], *r = &w->syms[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;
        l->n += r->n;
        l->id = b.result;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->syms[r->next].prev = b.left;
        if (try_bigram(t, w, l->prev, b.left) || try_bigram(t, w, b.left, l->next)) return IFD_ERR_NOMEM;
    }
    return 0;
}

static int emit_symbol(const struct tokenizer *t, const uint8_t *word, const struct sym *s, struct tok_ids *out)
{
    if (s->id >= 0) return tok_ids_push(out, s->id);
    for (uint32_t i = 0; i < s->n; i++)
        for (int k = 0; k < 2; k++) {
            int32_t id = t->byte_fallback[word[s->start + i]][k];
            if (id >= 0 && tok_ids_push(out, id)) return IFD_ERR_NOMEM;
        }
    return 0;
}

/* Llama-3 style vocabularies look the whole (mapped) word up before merging. */
static int32_t whole_word_id(const struct tokenizer *t, const uint8_t *word, size_t n, uint8_t *scratch)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) o += (size_t)bpe_byte_to_utf8(word[i], scratch + o);
    return tok_strmap_get(&t->text_map, t, (const char *)scratch, o);
}

static int encode_word(const struct tokenizer *t, struct bpe_work *w, const uint8_t *word, size_t n,
                       uint8_t *scratch, struct tok_ids *out)
{
    if (t->ignore_merges && n <= (size_t)t->max_token_len) {
        int32_t id = whole_word_id(t, word, n, scratch);
        if (id >= 0) return tok_ids_push(out, id);
    }
    if (n > w->cap_syms) {
        struct sym *s = realloc(w->syms, n * sizeof *s);
        if (!s) return IFD_ERR_NOMEM;
        w->syms = s;
        w->cap_syms = n;
    }
    for (size_t i = 0; i < n; i++)
        w->syms[i] = (struct sym){(int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1, (uint32_t)i, 1, t->byte_tok[word[i]]};
    w->heap.n = 0;
    int rc = merge_word(t, w, n);
    for (int32_t i = 0; !rc && i >= 0; i = w->syms[i].next) rc = emit_symbol(t, word, &w->syms[i], out);
    return rc;
}

int bpe_encode_fragment(const struct tokenizer *t, const uint8_t *text, size_t len, struct tok_ids *out)
{
    if (len == 0) return 0;
    if (len > UINT32_MAX / 3) return IFD_ERR_RANGE;
    uint8_t *word = malloc(3 * len), *subj = malloc(3 * len);
    /* ignore_merges maps a whole word (at most max_token_len bytes) to 2 bytes a byte. */
    uint8_t *scratch = malloc(2 * (size_t)t->max_token_len + 2);
    struct tok_offs ends = {0};
    struct bpe_work w = {0};
    int rc = (!word || !subj || !scratch) ? IFD_ERR_NOMEM : 0;
    size_t n = rc ? 0 : tok_utf8_normalize(text, len, word, subj);
    if (!rc) rc = tok_pretok_split(t->pretok, subj, n, &ends);
    size_t start = 0;
    for (size_t i = 0; !rc && i < ends.n; i++) {
        rc = encode_word(t, &w, word + start, ends.v[i] - start, scratch, out);
        start = ends.v[i];
    }
    free(w.syms);
    tok_heap_free(&w.heap);
    tok_offs_free(&ends);
    free(scratch);
    free(subj);
    free(word);
    return rc;
}
