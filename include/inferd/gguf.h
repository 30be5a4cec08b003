/* SPDX-License-Identifier: Apache-2.0
 *
 * gguf.h: a validating reader for GGUF files (llama.cpp's model format, v2/v3).
 *
 * The file is mmap'ed read-only; strings, arrays and tensor data are views into
 * the mapping (not NUL-terminated, not copied). Only index tables are allocated.
 * A model file is untrusted input: every count, length, offset and shape is
 * checked against the bytes actually present before it is used, allocations are
 * bounded by what the file could possibly describe, and every failure says what
 * was wrong and where ("tensor 'blk.3.attn_q.weight': data [..) runs past the end
 * of the file (98362432 bytes)").
 *
 * What it does not do: interpret metadata (model/ and tokenizer/ do that) or
 * write GGUF (tests and tools use the `gguf` Python package for that).
 *
 * Layer: model.
 */
#ifndef INFERD_GGUF_H
#define INFERD_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum gguf_vtype {
    GGUF_VT_UINT8 = 0, GGUF_VT_INT8 = 1, GGUF_VT_UINT16 = 2, GGUF_VT_INT16 = 3,
    GGUF_VT_UINT32 = 4, GGUF_VT_INT32 = 5, GGUF_VT_FLOAT32 = 6, GGUF_VT_BOOL = 7,
    GGUF_VT_STRING = 8, GGUF_VT_ARRAY = 9, GGUF_VT_UINT64 = 10, GGUF_VT_INT64 = 11,
    GGUF_VT_FLOAT64 = 12, GGUF_VT_COUNT
};

/* A string inside the mapping: not NUL-terminated. */
struct gguf_str {
    const char *ptr;
    uint64_t len;
};

struct gguf_value;

struct gguf_array {
    enum gguf_vtype type;       /* element type */
    uint64_t count;
    const uint8_t *data;        /* fixed-size elements: raw little-endian bytes in the mapping */
    struct gguf_str *strs;      /* (count) string elements, owned; NULL otherwise */
    struct gguf_value *items;   /* (count) nested-array elements, owned; NULL otherwise */
};

struct gguf_value {
    enum gguf_vtype type;
    union {
        uint64_t u;             /* UINT8..UINT64 */
        int64_t i;              /* INT8..INT64 */
        double f;               /* FLOAT32/FLOAT64 */
        bool b;
        struct gguf_str str;
        struct gguf_array arr;
    } v;
};

struct gguf_kv {
    struct gguf_str key;
    struct gguf_value val;
};

#define GGUF_MAX_DIMS 4

struct gguf_tensor {
    struct gguf_str name;
    uint32_t n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the fastest-varying (row length); unused dims are 1 */
    uint32_t type;              /* ggml type id (enum qtype) */
    uint64_t offset;            /* from the start of the data section */
    uint64_t nbytes;
    const void *data;           /* into the mapping */
};

struct gguf_file {
    uint32_t version;
    uint64_t n_kv;
    struct gguf_kv *kv;         /* (n_kv) */
    uint64_t n_tensors;
    struct gguf_tensor *tensors;/* (n_tensors) */
    uint32_t alignment;
    uint64_t data_offset;       /* start of the tensor data section */
    const uint8_t *base;        /* mapping (or caller's buffer) */
    uint64_t size;
    int fd;                     /* -1 when parsing a caller buffer */
};

/* GGUF_OPEN_WRITABLE maps the file copy-on-write (MAP_PRIVATE, PROT_WRITE), so a
 * backend may repack tensor data in place without touching the file and
 * without holding two copies in memory. */
#define GGUF_OPEN_WRITABLE 1u

/* Opens and validates path. On failure *out is NULL and err says why. */
int gguf_open(struct gguf_file **out, const char *path, unsigned flags, char *err, size_t errlen);
/* Parses an in-memory image; buf must outlive the result. Used by tests and fuzzers. */
int gguf_parse(struct gguf_file **out, const void *buf, size_t size, char *err, size_t errlen);
void gguf_close(struct gguf_file *f);
/* Lets the kernel drop the metadata pages (everything before the tensor data)
 * from memory once loaders have copied what they keep; a later access re-reads
 * them from the file. Only for files opened with gguf_open. */
void gguf_drop_metadata_pages(const struct gguf_file *f);

bool gguf_str_eq(struct gguf_str s, const char *cstr);
/* Copies s into buf as a NUL-terminated string, truncating; returns buf. */
char *gguf_str_copy(struct gguf_str s, char *buf, size_t cap);

const struct gguf_kv *gguf_find(const struct gguf_file *f, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name);

/* Typed getters: 0 on success, IFD_ERR_NOT_FOUND if the key is absent,
 * IFD_ERR_FORMAT if it has an incompatible type or an out-of-range value.
 * Integer getters accept any integer type whose value fits; float getters
 * accept FLOAT32 and FLOAT64. */
int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out);
int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out);
int gguf_get_i64(const struct gguf_file *f, const char *key, int64_t *out);
int gguf_get_f32(const struct gguf_file *f, const char *key, float *out);
int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out);
int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out);
int gguf_get_arr(const struct gguf_file *f, const char *key, const struct gguf_array **out);
/* Element i of a fixed-size numeric array, converted (no range check beyond type). */
int64_t gguf_arr_i64(const struct gguf_array *a, uint64_t i);
double gguf_arr_f64(const struct gguf_array *a, uint64_t i);

const char *gguf_vtype_name(enum gguf_vtype t);

#endif
