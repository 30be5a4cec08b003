/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_tokenizer.c: libFuzzer target for the tokenizer. Loads the default
 * model's tokenizer once ($INFERD_MODEL, else models/SmolLM2-135M-Instruct.Q4_1.gguf
 * under INFERD_SOURCE_DIR or the working directory; $INFERD_GEMMA_MODEL adds a
 * SentencePiece model), then encodes each input with parse_special off and on
 * and checks what must hold for any bytes:
 *  - encode succeeds and every id is inside the vocabulary;
 *  - add_special adds at most a BOS and an EOS;
 *  - byte-level BPE: decode(encode(x)) is x as llama.cpp reads it (malformed
 *    UTF-8 as U+FFFD, overlong forms as the code point they spell), minus the
 *    bytes the vocabulary has no token for, with render_special equal to
 *    parse_special (so special tokens come back as their text);
 *  - the streaming detokenizer's output, concatenated, equals decode.
 * SentencePiece gets only the first and last check: its space prefix and
 * "▁" escaping make decode lossy by design.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Iinclude tests/fuzz/fuzz_tokenizer.c <inferd_core> -lpcre2-8 -lm
 */
#include "inferd/gguf.h"
#include "inferd/tokenizer.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_MAX_INPUT (1 << 16)

struct fuzz_model {
    struct gguf_file *f;
    struct tokenizer *t;
    bool keep[256]; /* bytes some visible token renders to on its own */
};

static struct fuzz_model g_bpe, g_spm;
static int32_t *g_ids;
static char *g_text, *g_want, *g_stream;

static void check(bool ok, const char *what)
{
    if (ok) return;
    fprintf(stderr, "fuzz_tokenizer: invariant failed: %s\n", what);
    __builtin_trap();
}

static bool load(struct fuzz_model *m, const char *path)
{
    char err[512];
    if (gguf_open(&m->f, path, 0, err, sizeof err) || tokenizer_load(&m->t, m->f, err, sizeof err)) {
        fprintf(stderr, "fuzz_tokenizer: %s: %s\n", path, err);
        return false;
    }
    char piece[8];
    for (int32_t id = 0; id < tokenizer_n_vocab(m->t); id++)
        if (tokenizer_token_to_piece(m->t, id, false, piece, sizeof piece) == 1) m->keep[(uint8_t)piece[0]] = true;
    return true;
}

static void init(void)
{
    static bool done;
    if (done) return;
    done = true;
    char path[4096];
    const char *model = getenv("INFERD_MODEL");
#ifdef INFERD_SOURCE_DIR
    snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", INFERD_SOURCE_DIR);
#else
    snprintf(path, sizeof path, "models/SmolLM2-135M-Instruct.Q4_1.gguf");
#endif
    check(load(&g_bpe, model ? model : path), "the default model loads");
    const char *gemma = getenv("INFERD_GEMMA_MODEL");
    if (gemma) check(load(&g_spm, gemma), "the Gemma model loads");
    /* One byte gives at most 3 ids; a piece is at most max_piece_len bytes. */
    int max_piece = tokenizer_max_piece_len(g_bpe.t);
    if (g_spm.t && tokenizer_max_piece_len(g_spm.t) > max_piece) max_piece = tokenizer_max_piece_len(g_spm.t);
    size_t max_ids = 3 * (size_t)FUZZ_MAX_INPUT + 8;
    g_ids = malloc(max_ids * sizeof *g_ids);
    g_text = malloc(max_ids * (size_t)max_piece);
    g_stream = malloc(max_ids * (size_t)max_piece);
    g_want = malloc(3 * (size_t)FUZZ_MAX_INPUT + 8);
    check(g_ids && g_text && g_stream && g_want, "buffers");
}

/* llama.cpp's reading of bytes: malformed sequences are U+FFFD one byte at a
 * time, overlongs and surrogates are kept as the code point they spell; the
 * result re-encoded, minus bytes nothing renders to. */
static size_t expected_text(const struct fuzz_model *m, const uint8_t *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint8_t b0 = s[i];
        uint32_t cpt = 0xfffd;
        size_t used = 1, need = b0 < 0x80 ? 1 : (b0 & 0xe0) == 0xc0 ? 2 : (b0 & 0xf0) == 0xe0 ? 3 : (b0 & 0xf8) == 0xf0 ? 4 : 0;
        if (need == 1) cpt = b0;
        if (need > 1 && i + need <= n) {
            bool cont = true;
            for (size_t k = 1; k < need; k++) cont = cont && (s[i + k] & 0xc0) == 0x80;
            if (cont) {
                static const uint8_t mask[5] = {0, 0, 0x1f, 0x0f, 0x07};
                uint32_t v = b0 & mask[need];
                for (size_t k = 1; k < need; k++) v = v << 6 | (s[i + k] & 0x3f);
                if (v <= 0x10ffff) cpt = v, used = need;
            }
        }
        i += used;
        uint8_t enc[4];
        size_t k = cpt < 0x80 ? 1 : cpt < 0x800 ? 2 : cpt < 0x10000 ? 3 : 4;
        if (k == 1) enc[0] = (uint8_t)cpt;
        if (k == 2) enc[0] = (uint8_t)(0xc0 | cpt >> 6), enc[1] = (uint8_t)(0x80 | (cpt & 0x3f));
        if (k == 3)
            enc[0] = (uint8_t)(0xe0 | cpt >> 12), enc[1] = (uint8_t)(0x80 | (cpt >> 6 & 0x3f)),
            enc[2] = (uint8_t)(0x80 | (cpt & 0x3f));
        if (k == 4)
            enc[0] = (uint8_t)(0xf0 | cpt >> 18), enc[1] = (uint8_t)(0x80 | (cpt >> 12 & 0x3f)),
            enc[2] = (uint8_t)(0x80 | (cpt >> 6 & 0x3f)), enc[3] = (uint8_t)(0x80 | (cpt & 0x3f));
        for (size_t j = 0; j < k; j++)
            if (m->keep[enc[j]]) out[o++] = (char)enc[j];
    }
    return o;
}

static void run(const struct fuzz_model *m, const uint8_t *data, size_t size, bool exact)
{
    const struct tokenizer *t = m->t;
    int cap_ids = (int)(3 * size + 8);
    for (int special = 0; special < 2; special++) {
        int n = tokenizer_encode(t, (const char *)data, size, false, special, g_ids, cap_ids);
        check(n >= 0 && n <= cap_ids, "encode succeeds within 3 ids per byte");
        for (int i = 0; i < n; i++) check(g_ids[i] >= 0 && g_ids[i] < tokenizer_n_vocab(t), "ids in range");
        int with = tokenizer_encode(t, (const char *)data, size, true, special, NULL, 0);
        check(with >= n && with <= n + 2, "add_special adds at most BOS and EOS");
        int cap_text = (n + 1) * tokenizer_max_piece_len(t);
        int len = tokenizer_decode(t, g_ids, n, special, g_text, cap_text);
        check(len >= 0 && len <= cap_text, "decode succeeds");
        if (exact) {
            size_t want = expected_text(m, data, size, g_want);
            check((size_t)len == want && memcmp(g_text, g_want, want) == 0, "decode(encode(x)) == x");
        }
        struct detok d;
        detok_init(&d, t, special);
        int got = 0;
        for (int i = 0; i < n; i++) {
            int k = detok_push(&d, g_ids[i], g_stream + got, cap_text - got);
            check(k >= 0, "detok_push succeeds");
            got += k;
        }
        int k = detok_flush(&d, g_stream + got, cap_text - got);
        check(k >= 0, "detok_flush succeeds");
        got += k;
        check(got == len && memcmp(g_stream, g_text, (size_t)len) == 0, "streaming == decode");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT) return 0;
    init();
    run(&g_bpe, data, size, true);
    if (g_spm.t) run(&g_spm, data, size, false);
    return 0;
}
