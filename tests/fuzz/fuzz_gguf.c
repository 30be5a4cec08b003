/* SPDX-License-Identifier: Apache-2.0
 *
 * fuzz_gguf.c: libFuzzer target for the GGUF reader and the model loader.
 * Every input is parsed; when it parses, every metadata value and tensor is
 * read through the public getters, and a file that claims the llama
 * architecture is also handed to model_load (through a memfd, as a real
 * path) so hyper-parameter and tensor-shape checks get fuzzed too.
 * Seeds: tests/data/gguf_corrupt and tests/data/model_corrupt.
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "inferd/backend.h"
#include "inferd/gguf.h"
#include "inferd/log.h"
#include "inferd/model.h"

static struct backend *g_be;

static void touch_value(const struct gguf_value *v, volatile uint64_t *sink)
{
    if (v->type == GGUF_VT_STRING) {
        if (v->v.str.len) *sink += (uint8_t)v->v.str.ptr[v->v.str.len - 1];
    } else if (v->type == GGUF_VT_ARRAY) {
        const struct gguf_array *a = &v->v.arr;
        for (uint64_t i = 0; i < a->count && i < 64; i++) {
            if (a->strs) *sink += a->strs[i].len;
            else if (a->items) touch_value(&a->items[i], sink);
            else *sink += (uint64_t)gguf_arr_i64(a, i);
        }
    } else {
        *sink += v->v.u;
    }
}

static void try_model(const uint8_t *data, size_t size)
{
    int fd = memfd_create("fuzz.gguf", 0);
    if (fd < 0) return;
    if (write(fd, data, size) == (ssize_t)size) {
        char path[64], err[256];
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
        struct model *m;
        struct model_load_opts o = { .path = path };
        if (model_load(&m, g_be, &o, err, sizeof err) == 0) model_free(m);
    }
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_be) {
        log_set_level(LOG_LEVEL_OFF);
        struct backend_opts o = { .device = "cpu", .n_threads = 1 };
        char err[128];
        if (backend_create(&g_be, &o, err, sizeof err)) return 0;
    }
    struct gguf_file *f;
    char err[512];
    if (gguf_parse(&f, data, size, err, sizeof err) != 0) return 0;
    volatile uint64_t sink = 0;
    for (uint64_t i = 0; i < f->n_kv; i++) touch_value(&f->kv[i].val, &sink);
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (f->tensors[i].nbytes) sink += ((const uint8_t *)f->tensors[i].data)[f->tensors[i].nbytes - 1];
    struct gguf_str arch;
    int is_llama = gguf_get_str(f, "general.architecture", &arch) == 0 && gguf_str_eq(arch, "llama");
    gguf_close(f);
    if (is_llama && size < (1u << 20)) try_model(data, size);
    return 0;
}
