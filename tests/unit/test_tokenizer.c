/* SPDX-License-Identifier: Apache-2.0
 *
 * test_tokenizer.c: the tokenizer against llama.cpp on real models. The corpus
 * (tests/data/tokenizer/corpus.txt) and llama.cpp's answers for it
 * (smollm2.golden for the byte-level BPE default model, gemma3.golden for the
 * SentencePiece Gemma 3) come from scripts/gen_tokenizer_golden.py; see there
 * for the formats. Also: round trips, the streaming detokenizer, arbitrary
 * bytes, and speed.
 *
 * Synthetic vocabularies and corrupt metadata are in test_tokenizer_meta.c.
 */
#include "test.h"

#include "inferd/gguf.h"
#include "inferd/tokenizer.h"
#include "tokenizer/tok_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- corpus and golden files ---- */

struct tstr {
    char *s;
    size_t n;
};

struct corpus {
    struct tstr *v;
    size_t n;
};

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Undoes the generator's escaping; returns a malloc'd buffer. */
static struct tstr unescape(const char *in, size_t n)
{
    struct tstr r = {malloc(n + 1), 0};
    ASSERT(r.s);
    for (size_t i = 0; i < n; i++) {
        char c = in[i];
        if (c != '\\') {
            r.s[r.n++] = c;
            continue;
        }
        ASSERT_MSG(i + 1 < n, "dangling backslash in test data");
        char e = in[++i];
        if (e == 'n') r.s[r.n++] = '\n';
        else if (e == 't') r.s[r.n++] = '\t';
        else if (e == 'r') r.s[r.n++] = '\r';
        else if (e == '\\') r.s[r.n++] = '\\';
        else if (e == 'x' && i + 2 < n && hexval(in[i + 1]) >= 0 && hexval(in[i + 2]) >= 0) {
            r.s[r.n++] = (char)(hexval(in[i + 1]) * 16 + hexval(in[i + 2]));
            i += 2;
        } else {
            test_fail(__FILE__, __LINE__, "bad escape \\%c in test data", e);
        }
    }
    r.s[r.n] = 0;
    return r;
}

/* Calls fn(line, len, ctx) for each line of a file. */
static void for_each_line(const char *path, void (*fn)(const char *, size_t, void *), void *ctx)
{
    size_t len;
    char *buf = test_read_file(path, &len);
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && buf[j] != '\n') j++;
        fn(buf + i, j - i, ctx);
        i = j + 1;
    }
    free(buf);
}

static void corpus_line(const char *line, size_t n, void *ctx)
{
    struct corpus *c = ctx;
    if (n < 2 || line[0] != 's' || line[1] != ' ') return;
    c->v = realloc(c->v, (c->n + 1) * sizeof *c->v);
    ASSERT(c->v);
    c->v[c->n++] = unescape(line + 2, n - 2);
}

static struct corpus load_corpus(void)
{
    char path[4096];
    struct corpus c = {0};
    for_each_line(test_data_path("tokenizer/corpus.txt", path, sizeof path), corpus_line, &c);
    ASSERT_MSG(c.n >= 500, "corpus has only %zu strings", c.n);
    return c;
}

static void free_corpus(struct corpus *c)
{
    for (size_t i = 0; i < c->n; i++) free(c->v[i].s);
    free(c->v);
}

struct idlist {
    int32_t *v;
    int n;
    bool skip;
    bool present;
};

struct detok_golden {
    size_t idx;
    int render;
    struct tstr text;
};

struct golden {
    int n_vocab, bos, eos, add_bos, add_eos;
    int32_t *eog;
    int n_eog;
    int32_t *attr_id, *attr_val;
    int n_attr;
    uint64_t *piece[2];
    int n_blocks[2];
    struct idlist *ids[2]; /* [parse_special][corpus index] */
    size_t n_strings;
    struct detok_golden *detok;
    int n_detok;
};

static int32_t *parse_ints(const char *s, size_t n, int *count)
{
    int32_t *v = malloc((n / 2 + 1) * sizeof *v);
    ASSERT(v);
    int k = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && s[i] == ' ') i++;
        if (i >= n) break;
        char *end;
        long x = strtol(s + i, &end, 10);
        ASSERT_MSG(end != s + i, "bad integer in golden file: %.*s", (int)(n - i < 20 ? n - i : 20), s + i);
        v[k++] = (int32_t)x;
        i = (size_t)(end - s);
    }
    *count = k;
    return v;
}

static void golden_line(const char *line, size_t n, void *ctx)
{
    struct golden *g = ctx;
    char head[64];
    size_t h = 0;
    while (h < n && h < sizeof head - 1 && line[h] != ' ') head[h] = line[h], h++;
    head[h] = 0;
    const char *rest = line + (h < n ? h + 1 : n);
    size_t rn = n - (size_t)(rest - line);
    if (strcmp(head, "meta") == 0) {
        char tmp[256];
        snprintf(tmp, sizeof tmp, "%.*s", (int)rn, rest);
        ASSERT(sscanf(tmp, "n_vocab=%d bos=%d eos=%d add_bos=%d add_eos=%d", &g->n_vocab, &g->bos, &g->eos,
                      &g->add_bos, &g->add_eos) == 5);
    } else if (strcmp(head, "eog") == 0) {
        g->eog = parse_ints(rest, rn, &g->n_eog);
    } else if (strcmp(head, "attr") == 0) {
        for (size_t i = 0; i < rn;) {
            int id, val, used;
            if (sscanf(rest + i, "%d:%d%n", &id, &val, &used) != 2) break;
            g->attr_id = realloc(g->attr_id, (size_t)(g->n_attr + 1) * sizeof *g->attr_id);
            g->attr_val = realloc(g->attr_val, (size_t)(g->n_attr + 1) * sizeof *g->attr_val);
            g->attr_id[g->n_attr] = id;
            g->attr_val[g->n_attr++] = val;
            i += (size_t)used;
            while (i < rn && rest[i] == ' ') i++;
        }
    } else if (strcmp(head, "piece") == 0) {
        int special, block;
        unsigned long long hash;
        char tmp[128];
        snprintf(tmp, sizeof tmp, "%.*s", (int)rn, rest);
        ASSERT(sscanf(tmp, "%d %d %llx", &special, &block, &hash) == 3);
        ASSERT(special == 0 || special == 1);
        if (block >= g->n_blocks[special]) {
            g->piece[special] = realloc(g->piece[special], (size_t)(block + 1) * sizeof(uint64_t));
            g->n_blocks[special] = block + 1;
        }
        g->piece[special][block] = hash;
    } else if (g->n_strings == 0) {
        return; /* metadata only */
    } else if (strcmp(head, "ids") == 0) {
        size_t idx;
        char mode[8];
        int used;
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%.*s", (int)(rn < 40 ? rn : 40), rest);
        ASSERT(sscanf(tmp, "%zu %3s%n", &idx, mode, &used) == 2);
        int m = mode[1] - '0';
        ASSERT(idx < g->n_strings && (m == 0 || m == 1));
        struct idlist *l = &g->ids[m][idx];
        l->present = true;
        const char *p = rest + used;
        size_t pn = rn - (size_t)used;
        while (pn && *p == ' ') p++, pn--;
        if (pn >= 4 && memcmp(p, "SKIP", 4) == 0)
            l->skip = true;
        else
            l->v = parse_ints(p, pn, &l->n);
    } else if (strcmp(head, "detok") == 0) {
        size_t idx;
        int render, used;
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%.*s", (int)(rn < 40 ? rn : 40), rest);
        ASSERT(sscanf(tmp, "%zu %d%n", &idx, &render, &used) == 2);
        /* Exactly one separator: the text may itself start with spaces. */
        if ((size_t)used < rn && rest[used] == ' ') used++;
        g->detok = realloc(g->detok, (size_t)(g->n_detok + 1) * sizeof *g->detok);
        g->detok[g->n_detok++] = (struct detok_golden){idx, render, unescape(rest + used, rn - (size_t)used)};
    }
}

static struct golden load_golden(const char *name, size_t n_strings)
{
    char rel[256], path[4096];
    struct golden g;
    memset(&g, 0, sizeof g);
    g.n_strings = n_strings;
    for (int m = 0; m < 2; m++) {
        g.ids[m] = calloc(n_strings, sizeof *g.ids[m]);
        ASSERT(g.ids[m]);
    }
    snprintf(rel, sizeof rel, "tokenizer/%s", name);
    for_each_line(test_data_path(rel, path, sizeof path), golden_line, &g);
    ASSERT_MSG(g.n_vocab > 0, "%s has no meta line", name);
    return g;
}

static void free_golden(struct golden *g)
{
    for (int m = 0; m < 2; m++) {
        for (size_t i = 0; i < g->n_strings; i++) free(g->ids[m][i].v);
        free(g->ids[m]);
        free(g->piece[m]);
    }
    for (int i = 0; i < g->n_detok; i++) free(g->detok[i].text.s);
    free(g->detok);
    free(g->eog);
    free(g->attr_id);
    free(g->attr_val);
}

/* ---- model loading ---- */

struct model {
    struct gguf_file *f;
    struct tokenizer *t;
    double load_ms;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static struct model load_model(const char *path)
{
    struct model m;
    char err[512];
    int rc = gguf_open(&m.f, path, 0, err, sizeof err);
    ASSERT_MSG(rc == 0, "gguf_open(%s): %s", path, err);
    double t0 = now_ms();
    rc = tokenizer_load(&m.t, m.f, err, sizeof err);
    m.load_ms = now_ms() - t0;
    ASSERT_MSG(rc == 0, "tokenizer_load(%s): %s", path, err);
    return m;
}

static void free_model(struct model *m)
{
    tokenizer_free(m->t);
    gguf_close(m->f);
}

/* Encodes into a malloc'd array (sized by a first call). */
static int32_t *encode(const struct tokenizer *t, const struct tstr *s, bool add_special, bool parse_special, int *n)
{
    int need = tokenizer_encode(t, s->s, s->n, add_special, parse_special, NULL, 0);
    ASSERT_MSG(need >= 0, "tokenizer_encode failed: %d", need);
    int32_t *ids = malloc((size_t)(need ? need : 1) * sizeof *ids);
    ASSERT(ids);
    int again = tokenizer_encode(t, s->s, s->n, add_special, parse_special, ids, need);
    ASSERT_EQ(again, need);
    *n = need;
    return ids;
}

static char *decode(const struct tokenizer *t, const int32_t *ids, int n, bool render_special, int *len)
{
    int need = tokenizer_decode(t, ids, n, render_special, NULL, 0);
    ASSERT_MSG(need >= 0, "tokenizer_decode failed: %d", need);
    char *buf = malloc((size_t)need + 1);
    ASSERT(buf);
    ASSERT_EQ(tokenizer_decode(t, ids, n, render_special, buf, need), need);
    buf[need] = 0;
    *len = need;
    return buf;
}

static void print_escaped(const char *label, const char *s, size_t n)
{
    fprintf(stderr, "  %s (%zu bytes): \"", label, n);
    for (size_t i = 0; i < n && i < 300; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') fputc(c, stderr);
        else fprintf(stderr, "\\x%02x", c);
    }
    fprintf(stderr, n > 300 ? "\"...\n" : "\"\n");
}

static void print_ids(const char *label, const int32_t *v, int n)
{
    fprintf(stderr, "  %s (%d):", label, n);
    for (int i = 0; i < n && i < 80; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, n > 80 ? " ...\n" : "\n");
}

/* ---- llama.cpp equality ---- */

static void check_ids_vs_golden(const char *model_path, const char *golden_name)
{
    struct corpus c = load_corpus();
    struct golden g = load_golden(golden_name, c.n);
    struct model m = load_model(model_path);
    int mismatches = 0, compared = 0, skipped = 0;
    for (size_t i = 0; i < c.n; i++)
        for (int mode = 0; mode < 2; mode++) {
            const struct idlist *want = &g.ids[mode][i];
            ASSERT_MSG(want->present, "%s lacks ids for string %zu", golden_name, i);
            int n;
            int32_t *got = encode(m.t, &c.v[i], true, mode == 1, &n);
            for (int k = 0; k < n; k++) ASSERT(got[k] >= 0 && got[k] < tokenizer_n_vocab(m.t));
            if (want->skip) {
                skipped++;
                free(got);
                continue;
            }
            compared++;
            if (n != want->n || memcmp(got, want->v, (size_t)n * sizeof *got) != 0) {
                if (mismatches++ < 10) {
                    fprintf(stderr, "  MISMATCH string %zu, parse_special=%d\n", i, mode);
                    print_escaped("text", c.v[i].s, c.v[i].n);
                    print_ids("llama.cpp", want->v, want->n);
                    print_ids("inferd   ", got, n);
                }
            }
            free(got);
        }
    test_note("%s: %d encodings compared, %d skipped (llama.cpp aborts on them), %d mismatches", golden_name, compared,
              skipped, mismatches);
    ASSERT_EQ(mismatches, 0);
    free_model(&m);
    free_golden(&g);
    free_corpus(&c);
}

TEST(tokenizer_bpe_matches_llama_cpp) { check_ids_vs_golden(test_model_path(), "smollm2.golden"); }

TEST(tokenizer_spm_matches_llama_cpp) { check_ids_vs_golden(test_gemma_path(), "gemma3.golden"); }

static void check_meta_vs_golden(const char *model_path, const char *golden_name, enum tok_kind kind,
                                 bool has_template)
{
    struct golden g = load_golden(golden_name, 0);
    struct model m = load_model(model_path);
    const struct tokenizer *t = m.t;
    ASSERT_EQ(tokenizer_kind(t), kind);
    ASSERT_EQ(tokenizer_n_vocab(t), g.n_vocab);
    ASSERT_EQ(tokenizer_bos(t), g.bos);
    ASSERT_EQ(tokenizer_eos(t), g.eos);
    ASSERT_EQ(tokenizer_add_bos(t), g.add_bos);
    ASSERT_EQ(t->add_eos, g.add_eos);
    int k = 0;
    for (int32_t id = 0; id < g.n_vocab; id++) {
        bool want = k < g.n_eog && g.eog[k] == id;
        k += want;
        ASSERT_MSG(tokenizer_is_eog(t, id) == want, "is_eog(%d): llama.cpp says %d", (int)id, (int)want);
    }
    ASSERT(!tokenizer_is_eog(t, -1) && !tokenizer_is_eog(t, g.n_vocab));
    k = 0;
    for (int32_t id = 0; id < g.n_vocab; id++) {
        int want = 4;
        if (k < g.n_attr && g.attr_id[k] == id) want = g.attr_val[k++];
        ASSERT_MSG(t->attr[id] == want, "attr of token %d: llama.cpp %d, inferd %d", (int)id, want, t->attr[id]);
    }
    size_t tl;
    const char *tmpl = tokenizer_chat_template(t, &tl);
    ASSERT(has_template ? tmpl != NULL && tl > 0 && strlen(tmpl) == tl : tmpl == NULL);
    test_note("%s: %d eog ids, %d non-normal attributes match; tokenizer load %.1f ms", golden_name, g.n_eog, g.n_attr,
              m.load_ms);
    free_model(&m);
    free_golden(&g);
}

TEST(tokenizer_metadata_matches_llama_cpp)
{
    check_meta_vs_golden(test_model_path(), "smollm2.golden", TOK_KIND_BPE, true);
    check_meta_vs_golden(test_gemma_path(), "gemma3.golden", TOK_KIND_SPM, false);
}

/* ---- the other pre-tokenizers, on SmolLM2's vocabulary ---- */

#define MAX_PRES 8

struct pre_golden {
    char names[MAX_PRES][32];
    int n_pres;
    struct idlist *ids[MAX_PRES]; /* n_strings each; "same" lists copy nothing and set present only */
    bool *same[MAX_PRES];
    size_t n_strings;
};

static void pre_golden_line(const char *line, size_t n, void *ctx)
{
    struct pre_golden *g = ctx;
    if (n > 4 && memcmp(line, "pre ", 4) == 0) {
        ASSERT(g->n_pres < MAX_PRES && n - 4 < sizeof g->names[0]);
        int k = g->n_pres++;
        memcpy(g->names[k], line + 4, n - 4);
        g->names[k][n - 4] = 0;
        g->ids[k] = calloc(g->n_strings, sizeof *g->ids[k]);
        g->same[k] = calloc(g->n_strings, sizeof *g->same[k]);
        ASSERT(g->ids[k] && g->same[k]);
        return;
    }
    if (n < 4 || memcmp(line, "ids ", 4) != 0) return;
    ASSERT(g->n_pres > 0);
    int k = g->n_pres - 1, used;
    size_t idx;
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.*s", (int)(n < 40 ? n : 40), line);
    ASSERT(sscanf(tmp, "ids %zu p0 %n", &idx, &used) == 1 && idx < g->n_strings);
    struct idlist *l = &g->ids[k][idx];
    l->present = true;
    if (line[used] == '=')
        g->same[k][idx] = true;
    else if (n - (size_t)used >= 4 && memcmp(line + used, "SKIP", 4) == 0)
        l->skip = true;
    else
        l->v = parse_ints(line + used, n - (size_t)used, &l->n);
}

TEST(tokenizer_pre_tokenizers_match_llama_cpp)
{
    struct corpus c = load_corpus();
    struct golden base = load_golden("smollm2.golden", c.n);
    struct pre_golden pg;
    memset(&pg, 0, sizeof pg);
    pg.n_strings = c.n;
    char path[4096];
    for_each_line(test_data_path("tokenizer/smollm2_pre.golden", path, sizeof path), pre_golden_line, &pg);
    ASSERT(pg.n_pres >= 4);
    struct gguf_file *f;
    char err[512];
    ASSERT_MSG(gguf_open(&f, test_model_path(), 0, err, sizeof err) == 0, "%s", err);
    /* Swap the pre-tokenizer name in the parsed metadata: same vocabulary, other regexes. */
    struct gguf_value *pre = NULL;
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (gguf_str_eq(f->kv[i].key, "tokenizer.ggml.pre")) pre = &f->kv[i].val;
    ASSERT(pre && pre->type == GGUF_VT_STRING);
    int total = 0, mismatches = 0;
    for (int k = 0; k < pg.n_pres; k++) {
        pre->v.str = (struct gguf_str){pg.names[k], strlen(pg.names[k])};
        struct tokenizer *t;
        ASSERT_MSG(tokenizer_load(&t, f, err, sizeof err) == 0, "pre %s: %s", pg.names[k], err);
        for (size_t i = 0; i < c.n; i++) {
            const struct idlist *want = &pg.ids[k][i];
            if (!want->present || want->skip) continue;
            if (pg.same[k][i]) want = &base.ids[0][i];
            int n;
            int32_t *got = encode(t, &c.v[i], true, false, &n);
            total++;
            if (n != want->n || memcmp(got, want->v, (size_t)n * sizeof *got) != 0) {
                if (mismatches++ < 10) {
                    fprintf(stderr, "  MISMATCH pre %s, string %zu\n", pg.names[k], i);
                    print_escaped("text", c.v[i].s, c.v[i].n);
                    print_ids("llama.cpp", want->v, want->n);
                    print_ids("inferd   ", got, n);
                }
            }
            free(got);
        }
        tokenizer_free(t);
    }
    test_note("%d pre-tokenizers, %d encodings compared, %d mismatches", pg.n_pres, total, mismatches);
    ASSERT_EQ(mismatches, 0);
    gguf_close(f);
    for (int k = 0; k < pg.n_pres; k++) {
        for (size_t i = 0; i < c.n; i++) free(pg.ids[k][i].v);
        free(pg.ids[k]);
        free(pg.same[k]);
    }
    free_golden(&base);
    free_corpus(&c);
}

/* FNV-1a 64, as the generator hashes pieces. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static void check_pieces_vs_golden(const char *model_path, const char *golden_name)
{
    struct corpus c = load_corpus();
    struct golden g = load_golden(golden_name, c.n);
    struct model m = load_model(model_path);
    int n_vocab = tokenizer_n_vocab(m.t), bad = 0;
    char *buf = malloc((size_t)tokenizer_max_piece_len(m.t) + 1);
    ASSERT(buf);
    for (int special = 0; special < 2; special++) {
        ASSERT_EQ(g.n_blocks[special], (n_vocab + 255) / 256);
        for (int b = 0; b < g.n_blocks[special]; b++) {
            uint64_t h = 0xcbf29ce484222325ull;
            for (int id = b * 256; id < n_vocab && id < b * 256 + 256; id++) {
                int n = tokenizer_token_to_piece(m.t, id, special, buf, tokenizer_max_piece_len(m.t));
                ASSERT(n >= 0 && n <= tokenizer_max_piece_len(m.t));
                uint8_t le[4] = {(uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24)};
                h = fnv1a(fnv1a(h, le, 4), buf, (size_t)n);
            }
            if (h != g.piece[special][b] && bad++ < 5)
                fprintf(stderr, "  pieces of ids [%d, %d) with render_special=%d differ from llama.cpp\n", b * 256,
                        b * 256 + 256, special);
        }
    }
    ASSERT_EQ(bad, 0);
    for (int i = 0; i < g.n_detok; i++) {
        const struct detok_golden *d = &g.detok[i];
        const struct idlist *ids = &g.ids[1][d->idx];
        int n;
        char *text = decode(m.t, ids->v, ids->n, d->render, &n);
        if ((size_t)n != d->text.n || memcmp(text, d->text.s, (size_t)n) != 0) {
            fprintf(stderr, "  detokenize of string %zu (render_special=%d) differs\n", d->idx, d->render);
            print_escaped("llama.cpp", d->text.s, d->text.n);
            print_escaped("inferd   ", text, (size_t)n);
            bad++;
        }
        free(text);
    }
    ASSERT_EQ(bad, 0);
    test_note("%s: pieces of all %d tokens and %d detokenizations match", golden_name, n_vocab, g.n_detok);
    free(buf);
    free_model(&m);
    free_golden(&g);
    free_corpus(&c);
}

TEST(tokenizer_pieces_match_llama_cpp)
{
    check_pieces_vs_golden(test_model_path(), "smollm2.golden");
    check_pieces_vs_golden(test_gemma_path(), "gemma3.golden");
}

/* ---- round trips ---- */

static bool valid_utf8(const char *p, size_t n)
{
    const uint8_t *s = (const uint8_t *)p;
    for (size_t i = 0; i < n;) {
        uint8_t c = s[i];
        size_t k = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (k == 0 || i + k > n) return false;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xc0) != 0x80) return false;
        if (k == 3 && ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] > 0x9f))) return false;
        if (k == 4 && ((c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] > 0x8f))) return false;
        i += k;
    }
    return true;
}

/* SentencePiece cannot tell a literal "▁" from an escaped space. */
static struct tstr spm_expected(const struct tstr *s)
{
    struct tstr r = {malloc(s->n + 1), 0};
    ASSERT(r.s);
    for (size_t i = 0; i < s->n; i++) {
        if (i + 3 <= s->n && memcmp(s->s + i, "\xe2\x96\x81", 3) == 0) {
            r.s[r.n++] = ' ';
            i += 2;
        } else {
            r.s[r.n++] = s->s[i];
        }
    }
    return r;
}

/* A byte-level vocabulary may lack a token for some bytes (SmolLM2 has none
 * for 0x04 0x06 0x13 0x14 0x16 0x1d): llama.cpp drops them, and so do we. */
static struct tstr bpe_expected(const struct tokenizer *t, const struct tstr *s)
{
    struct tstr r = {malloc(s->n + 1), 0};
    ASSERT(r.s);
    for (size_t i = 0; i < s->n; i++) {
        uint8_t b = (uint8_t)s->s[i];
        if (t->byte_tok[b] >= 0) {
            r.s[r.n++] = (char)b;
            continue;
        }
        ASSERT(t->byte_fallback[b][0] < 0 && t->byte_fallback[b][1] < 0 && !t->ignore_merges);
    }
    return r;
}

static void check_roundtrip(const char *model_path)
{
    struct corpus c = load_corpus();
    struct model m = load_model(model_path);
    bool spm = tokenizer_kind(m.t) == TOK_KIND_SPM;
    int checked = 0, bad = 0;
    for (size_t i = 0; i < c.n; i++) {
        if (!valid_utf8(c.v[i].s, c.v[i].n)) continue;
        struct tstr want = spm ? spm_expected(&c.v[i]) : bpe_expected(m.t, &c.v[i]);
        for (int mode = 0; mode < 2; mode++) {
            int n, len;
            /* parse_special off + render off, and on + on, both reproduce the text. */
            int32_t *ids = encode(m.t, &c.v[i], false, mode, &n);
            char *text = decode(m.t, ids, n, mode, &len);
            if ((size_t)len != want.n || memcmp(text, want.s, want.n) != 0) {
                if (bad++ < 5) {
                    fprintf(stderr, "  round trip of string %zu (special=%d) differs\n", i, mode);
                    print_escaped("want", want.s, want.n);
                    print_escaped("got ", text, (size_t)len);
                }
            }
            checked++;
            free(ids);
            free(text);
        }
        free(want.s);
    }
    test_note("%s: %d round trips, %d differ", model_path, checked, bad);
    ASSERT_EQ(bad, 0);
    free_model(&m);
    free_corpus(&c);
}

TEST(tokenizer_roundtrip_bpe) { check_roundtrip(test_model_path()); }

TEST(tokenizer_roundtrip_spm) { check_roundtrip(test_gemma_path()); }

/* ---- streaming ---- */

static void check_stream(const struct tokenizer *t, const struct tstr *s, bool render)
{
    int n, len;
    int32_t *ids = encode(t, s, false, render, &n);
    char *whole = decode(t, ids, n, render, &len);
    bool check_chunks = valid_utf8(whole, (size_t)len);
    int cap = tokenizer_max_piece_len(t) + 3;
    char *chunk = malloc((size_t)cap);
    char *cat = malloc((size_t)len + 4);
    ASSERT(chunk && cat);
    size_t got = 0;
    struct detok d;
    detok_init(&d, t, render);
    for (int i = 0; i <= n; i++) {
        int k = i < n ? detok_push(&d, ids[i], chunk, cap) : detok_flush(&d, chunk, cap);
        ASSERT_MSG(k >= 0, "detok returned %d", k);
        ASSERT((size_t)k + got <= (size_t)len);
        /* Every chunk of valid text is valid text by itself. */
        if (check_chunks && !valid_utf8(chunk, (size_t)k)) {
            print_escaped("text", s->s, s->n);
            print_escaped("chunk", chunk, (size_t)k);
            test_fail(__FILE__, __LINE__, "chunk %d ends inside a character", i);
        }
        memcpy(cat + got, chunk, (size_t)k);
        got += (size_t)k;
    }
    ASSERT_EQ(got, len);
    ASSERT(memcmp(cat, whole, got) == 0);
    free(chunk);
    free(cat);
    free(whole);
    free(ids);
}

static void check_streaming(const char *model_path)
{
    struct corpus c = load_corpus();
    struct model m = load_model(model_path);
    for (size_t i = 0; i < c.n; i++)
        for (int render = 0; render < 2; render++) check_stream(m.t, &c.v[i], render);
    /* Emoji and CJK, where byte-level pieces routinely end mid-character. */
    static const char *const heavy[] = {
        "👨‍👩‍👧‍👦👩🏽‍💻🏳️‍🌈🇺🇸🇯🇵👍🏿🧑‍🤝‍🧑",
        "𠀀𠀁𠀂𪜀𫝀 龘靐齉 你好世界 こんにちは 안녕하세요",
        "😀😃😄😁😆😅😂🤣🥲☺️😊😇🙂🙃😉😌😍🥰😘😗😙😚😋😛😝😜🤪🤨🧐🤓😎🥸🤩🥳",
        "\U0001e4d0\U00031350\U0002ebf0 𝟏𝟐𝟑 𝒶𝒷𝒸 ᚠᚢᚦ 𐌰𐌱𐌲",
    };
    for (size_t i = 0; i < sizeof heavy / sizeof heavy[0]; i++) {
        struct tstr s = {(char *)heavy[i], strlen(heavy[i])};
        check_stream(m.t, &s, false);
    }
    free_model(&m);
    free_corpus(&c);
}

TEST(tokenizer_streaming_detok)
{
    check_streaming(test_model_path());
    check_streaming(test_gemma_path());
}

/* ---- robustness and speed ---- */

static uint64_t g_rng = 0x243f6a8885a308d3ull;

static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)g_rng;
}

static void encode_checked(const struct tokenizer *t, const char *s, size_t n, int32_t *ids, char *text, int text_cap)
{
    int cap = (int)(3 * n + 2);
    for (int mode = 0; mode < 4; mode++) {
        int k = tokenizer_encode(t, s, n, mode & 1, mode >> 1, ids, cap);
        ASSERT_MSG(k >= 0 && k <= cap, "tokenizer_encode returned %d for %zu bytes", k, n);
        for (int i = 0; i < k; i++) ASSERT(ids[i] >= 0 && ids[i] < tokenizer_n_vocab(t));
        int len = tokenizer_decode(t, ids, k, mode >> 1, text, text_cap);
        ASSERT(len >= 0 && len <= text_cap);
    }
}

/* Random bytes drawn from a pool rich in UTF-8 edge cases and special-token
 * fragments, plus long runs that stress the regexes and the special matcher. */
static void check_arbitrary(const char *model_path)
{
    struct model m = load_model(model_path);
    static const char *const frags[] = {"<|im_end|>", "<end_of_turn>", "<|im_", "<", "\n", "\t", " ", "  ", "'s",
                                        "\xed\xa0\x80", "\xc0\x80", "\xf4\x90\x80\x80", "\xf0\x9f", "\xe2\x96\x81",
                                        "\xff", "9", "\xd9\xa3", "\xe3\x80\x80", "a", "\x00"};
    size_t big = 50000;
    int32_t *ids = malloc((3 * big + 100) * sizeof *ids);
    /* Decoded text is at most max_piece_len bytes per id. */
    int text_cap = (int)(3 * big + 100) * tokenizer_max_piece_len(m.t);
    char *text = malloc((size_t)text_cap);
    char buf[600];
    ASSERT(ids && text);
    for (int iter = 0; iter < 2000; iter++) {
        size_t n = 0, want = rnd() % 500;
        while (n < want) {
            if (rnd() % 3 == 0) {
                const char *f = frags[rnd() % (sizeof frags / sizeof frags[0])];
                size_t fl = f[0] ? strlen(f) : 1;
                memcpy(buf + n, f, fl);
                n += fl;
            } else {
                buf[n++] = (char)rnd();
            }
        }
        encode_checked(m.t, buf, n, ids, text, text_cap);
    }
    static const char *const runs[] = {" ", "\n", "\t", "\r\n", "<", "<|im_end", "<|im_end|>", "9", "\xff", "\x80",
                                       "\xe3\x80\x80", "\xe2\x96\x81", "a", "'", "'s", "\n \n", "😀", "<end_of_turn>"};
    char *s = malloc(big + 32);
    ASSERT(s);
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        size_t rl = strlen(runs[r]), n = 0;
        while (n + rl <= big) memcpy(s + n, runs[r], rl), n += rl;
        encode_checked(m.t, s, n, ids, text, text_cap);
    }
    free(s);
    free(ids);
    free(text);
    free_model(&m);
}

TEST(tokenizer_arbitrary_bytes_bpe) { check_arbitrary(test_model_path()); }

TEST(tokenizer_arbitrary_bytes_spm) { check_arbitrary(test_gemma_path()); }

/* One loaded tokenizer shared by several threads gives each the ids it gives alone. */
struct thread_job {
    const struct tokenizer *t;
    const struct corpus *c;
    int32_t **want;
    int *want_n;
    int offset, mismatches;
};

static void *encode_all(void *arg)
{
    struct thread_job *j = arg;
    for (size_t k = 0; k < j->c->n; k++) {
        size_t i = (k + (size_t)j->offset) % j->c->n;
        int n = tokenizer_encode(j->t, j->c->v[i].s, j->c->v[i].n, true, i % 2, NULL, 0);
        int32_t *ids = malloc((size_t)(n + 1) * sizeof *ids);
        if (!ids || tokenizer_encode(j->t, j->c->v[i].s, j->c->v[i].n, true, i % 2, ids, n) != n || n != j->want_n[i] ||
            memcmp(ids, j->want[i], (size_t)n * sizeof *ids) != 0)
            j->mismatches++;
        free(ids);
    }
    return NULL;
}

TEST(tokenizer_concurrent_encode)
{
    struct corpus c = load_corpus();
    const char *paths[] = {test_model_path(), test_gemma_path()};
    for (int p = 0; p < 2; p++) {
        struct model m = load_model(paths[p]);
        int32_t **want = malloc(c.n * sizeof *want);
        int *want_n = malloc(c.n * sizeof *want_n);
        ASSERT(want && want_n);
        for (size_t i = 0; i < c.n; i++) want[i] = encode(m.t, &c.v[i], true, i % 2, &want_n[i]);
        enum { N_THREADS = 4 };
        pthread_t th[N_THREADS];
        struct thread_job jobs[N_THREADS];
        for (int k = 0; k < N_THREADS; k++) {
            jobs[k] = (struct thread_job){m.t, &c, want, want_n, k * 97, 0};
            ASSERT(pthread_create(&th[k], NULL, encode_all, &jobs[k]) == 0);
        }
        for (int k = 0; k < N_THREADS; k++) {
            pthread_join(th[k], NULL);
            ASSERT_EQ(jobs[k].mismatches, 0);
        }
        for (size_t i = 0; i < c.n; i++) free(want[i]);
        free(want);
        free(want_n);
        free_model(&m);
    }
    free_corpus(&c);
}

/* About 1 MB of English from the corpus's prose strings, repeated. */
static struct tstr english_megabyte(const struct corpus *c)
{
    struct tstr r = {malloc((1 << 20) + 4096), 0};
    ASSERT(r.s);
    while (r.n < (1 << 20))
        for (size_t i = 1; i < 60 && r.n < (1 << 20); i++) {
            memcpy(r.s + r.n, c->v[i].s, c->v[i].n);
            r.n += c->v[i].n;
            r.s[r.n++] = ' ';
        }
    return r;
}

TEST(tokenizer_encode_speed)
{
    struct corpus c = load_corpus();
    struct tstr text = english_megabyte(&c);
    const char *paths[] = {test_model_path(), test_gemma_path()};
    for (int p = 0; p < 2; p++) {
        struct model m = load_model(paths[p]);
        double t0 = now_ms();
        int n;
        int32_t *ids = encode(m.t, &text, true, true, &n);
        double t1 = now_ms();
        int len;
        char *back = decode(m.t, ids, n, true, &len);
        double t2 = now_ms();
        test_note("%s: load %.1f ms; encode %.2f MB in %.0f ms (%.0f tokens, %.1f MB/s); decode %.1f ms", paths[p],
                  m.load_ms, text.n / 1e6, (t1 - t0) / 2, (double)n, text.n / 1e3 / ((t1 - t0) / 2), t2 - t1);
        /* encode() above runs the tokenizer twice (size, then fill). Generous
         * bounds: sanitizer builds are several times slower. */
        ASSERT_MSG((t1 - t0) / 2 < 5000, "encoding 1 MB took %.0f ms", (t1 - t0) / 2);
        ASSERT_MSG(m.load_ms < 5000, "loading took %.0f ms", m.load_ms);
        free(back);
        free(ids);
        free_model(&m);
    }
    free(text.s);
    free_corpus(&c);
}
