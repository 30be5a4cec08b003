/* SPDX-License-Identifier: Apache-2.0
 *
 * gguf.c: the validating GGUF reader declared in gguf.h (model layer).
 *
 * Parsing is a single forward pass with a bounds-checked cursor. Every read
 * first checks that the bytes exist; every count is checked against the bytes
 * that could hold it *before* anything is allocated for it, so a hostile
 * header cannot ask for a huge allocation or a long loop. Limits below are far
 * above any real model and far below anything dangerous.
 */
#include "inferd/gguf.h"
#include "inferd/error.h"
#include "inferd/quant.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAX_TENSORS (1u << 20)
#define GGUF_MAX_KV (1u << 20)
#define GGUF_MAX_KEY_LEN 65535
#define GGUF_MAX_NAME_LEN 256
#define GGUF_MAX_ARRAY_DEPTH 8
/* Arrays of strings or arrays get an index table; cap its size (real vocabularies
 * and merge lists are a few hundred thousand entries). */
#define GGUF_MAX_INDEXED_ELEMS (1u << 23)
#define GGUF_DEFAULT_ALIGNMENT 32

struct cursor {
    const uint8_t *base;
    uint64_t size;
    uint64_t off;
    char *err;
    size_t errlen;
};

static uint64_t remaining(const struct cursor *c) { return c->size - c->off; }

static int need(struct cursor *c, uint64_t n, const char *what)
{
    if (n > remaining(c))
        return ifd_fail(c->err, c->errlen, IFD_ERR_FORMAT,
                        "file truncated: %s needs %llu bytes at offset %llu but only %llu remain", what,
                        (unsigned long long)n, (unsigned long long)c->off, (unsigned long long)remaining(c));
    return 0;
}

static int rd(struct cursor *c, void *dst, uint64_t n, const char *what)
{
    int rc = need(c, n, what);
    if (rc) return rc;
    memcpy(dst, c->base + c->off, n);
    c->off += n;
    return 0;
}

static int rd_u32(struct cursor *c, uint32_t *v, const char *what) { return rd(c, v, 4, what); }
static int rd_u64(struct cursor *c, uint64_t *v, const char *what) { return rd(c, v, 8, what); }

static int rd_str(struct cursor *c, struct gguf_str *s, uint64_t max_len, const char *what)
{
    uint64_t len;
    int rc = rd_u64(c, &len, what);
    if (rc) return rc;
    if (len > remaining(c))
        return ifd_fail(c->err, c->errlen, IFD_ERR_FORMAT,
                        "%s: string length %llu at offset %llu runs past the end of the file", what,
                        (unsigned long long)len, (unsigned long long)(c->off - 8));
    if (len > max_len)
        return ifd_fail(c->err, c->errlen, IFD_ERR_FORMAT, "%s: string length %llu exceeds the limit of %llu",
                        what, (unsigned long long)len, (unsigned long long)max_len);
    s->ptr = (const char *)c->base + c->off;
    s->len = len;
    c->off += len;
    return 0;
}

/* Size in bytes of a fixed-size value type; 0 for STRING/ARRAY/invalid. */
static uint64_t vtype_size(uint32_t t)
{
    switch (t) {
    case GGUF_VT_UINT8: case GGUF_VT_INT8: case GGUF_VT_BOOL: return 1;
    case GGUF_VT_UINT16: case GGUF_VT_INT16: return 2;
    case GGUF_VT_UINT32: case GGUF_VT_INT32: case GGUF_VT_FLOAT32: return 4;
    case GGUF_VT_UINT64: case GGUF_VT_INT64: case GGUF_VT_FLOAT64: return 8;
    default: return 0;
    }
}

const char *gguf_vtype_name(enum gguf_vtype t)
{
    static const char *names[] = { "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                   "bool", "string", "array", "uint64", "int64", "float64" };
    return (unsigned)t < GGUF_VT_COUNT ? names[t] : "invalid";
}

/* Decodes one fixed-size scalar at p into v. */
static void decode_scalar(uint32_t t, const uint8_t *p, struct gguf_value *v)
{
    v->type = (enum gguf_vtype)t;
    switch (t) {
    case GGUF_VT_UINT8: v->v.u = p[0]; break;
    case GGUF_VT_INT8: v->v.i = (int8_t)p[0]; break;
    case GGUF_VT_BOOL: v->v.b = p[0] != 0; break;
    case GGUF_VT_UINT16: { uint16_t x; memcpy(&x, p, 2); v->v.u = x; break; }
    case GGUF_VT_INT16: { int16_t x; memcpy(&x, p, 2); v->v.i = x; break; }
    case GGUF_VT_UINT32: { uint32_t x; memcpy(&x, p, 4); v->v.u = x; break; }
    case GGUF_VT_INT32: { int32_t x; memcpy(&x, p, 4); v->v.i = x; break; }
    case GGUF_VT_FLOAT32: { float x; memcpy(&x, p, 4); v->v.f = x; break; }
    case GGUF_VT_UINT64: memcpy(&v->v.u, p, 8); break;
    case GGUF_VT_INT64: memcpy(&v->v.i, p, 8); break;
    case GGUF_VT_FLOAT64: memcpy(&v->v.f, p, 8); break;
    }
}

static void value_free(struct gguf_value *v)
{
    if (v->type != GGUF_VT_ARRAY) return;
    free(v->v.arr.strs);
    if (v->v.arr.items) {
        for (uint64_t i = 0; i < v->v.arr.count; i++) value_free(&v->v.arr.items[i]);
        free(v->v.arr.items);
    }
}

static int parse_value(struct cursor *c, uint32_t type, struct gguf_value *v, int depth, const char *what);

static int parse_array(struct cursor *c, struct gguf_value *v, int depth, const char *what)
{
    struct gguf_array *a = &v->v.arr;
    uint32_t et;
    uint64_t count;
    int rc;
    if ((rc = rd_u32(c, &et, what)) || (rc = rd_u64(c, &count, what))) return rc;
    if (et >= GGUF_VT_COUNT)
        return ifd_fail(c->err, c->errlen, IFD_ERR_FORMAT, "%s: array has unknown element type %u", what, et);
    a->type = (enum gguf_vtype)et;
    a->count = count;
    uint64_t esz = vtype_size(et);
    if (esz) {
        if (count > remaining(c) / esz)
            return ifd_fail(c->err, c->errlen, IFD_ERR_FORMAT,
                            "%s: array of %llu %s elements runs past the end of the file", what,
                            (unsigned long long)count, gguf_vtype_name(a->type));
        a->data = c->base + c->off;
        c->off += count * esz;
        return 0;
    }
    /* strings need >= 8 bytes each, nested arrays >= 12: bound the index table first */
    uint64_t min_elem = et == GGUF_VT_STRING ? 8 : 12;
    if (count > remaining(c) / min_elem)
        return ifd_fail(c->err, c->errlen, IFD_ERR_FORMAT, "%s: array count %llu cannot fit in the file", what,
                        (unsigned long long)count);
    if (count > GGUF_MAX_INDEXED_ELEMS)
        return ifd_fail(c->err, c->errlen, IFD_ERR_FORMAT, "%s: array of %llu %ss exceeds the limit of %u", what,
                        (unsigned long long)count, gguf_vtype_name(a->type), GGUF_MAX_INDEXED_ELEMS);
    if (et == GGUF_VT_STRING) {
        a->strs = calloc(count ? count : 1, sizeof *a->strs);
        if (!a->strs) return IFD_ERR_NOMEM;
        for (uint64_t i = 0; i < count; i++)
            if ((rc = rd_str(c, &a->strs[i], UINT64_MAX, what))) return rc;
        return 0;
    }
    if (depth + 1 >= GGUF_MAX_ARRAY_DEPTH)
        return ifd_fail(c->err, c->errlen, IFD_ERR_FORMAT, "%s: arrays nested deeper than %d", what,
                        GGUF_MAX_ARRAY_DEPTH);
    a->items = calloc(count ? count : 1, sizeof *a->items);
    if (!a->items) return IFD_ERR_NOMEM;
    for (uint64_t i = 0; i < count; i++) {
        a->items[i].type = GGUF_VT_ARRAY; /* so value_free is safe on a partial parse */
        if ((rc = parse_value(c, GGUF_VT_ARRAY, &a->items[i], depth + 1, what))) return rc;
    }
    return 0;
}

static int parse_value(struct cursor *c, uint32_t type, struct gguf_value *v, int depth, const char *what)
{
    if (type >= GGUF_VT_COUNT)
        return ifd_fail(c->err, c->errlen, IFD_ERR_FORMAT, "%s: unknown value type %u", what, type);
    v->type = (enum gguf_vtype)type;
    if (type == GGUF_VT_STRING) return rd_str(c, &v->v.str, UINT64_MAX, what);
    if (type == GGUF_VT_ARRAY) {
        memset(&v->v.arr, 0, sizeof v->v.arr);
        return parse_array(c, v, depth, what);
    }
    uint64_t n = vtype_size(type);
    int rc = need(c, n, what);
    if (rc) return rc;
    decode_scalar(type, c->base + c->off, v);
    c->off += n;
    return 0;
}

void gguf_close(struct gguf_file *f)
{
    if (!f) return;
    if (f->kv) {
        for (uint64_t i = 0; i < f->n_kv; i++) value_free(&f->kv[i].val);
        free(f->kv);
    }
    free(f->tensors);
    if (f->fd >= 0) {
        if (f->base && f->size) munmap((void *)f->base, f->size);
        close(f->fd);
    }
    free(f);
}

void gguf_drop_metadata_pages(const struct gguf_file *f)
{
    if (f->fd < 0) return;
    /* stop at the page holding the first tensor byte: tensor pages may have been
     * rewritten in place (repacked), and dropping them would lose that */
    size_t page = (size_t)sysconf(_SC_PAGESIZE), end = (size_t)f->data_offset / page * page;
    if (end) madvise((void *)f->base, end, MADV_DONTNEED);
}

bool gguf_str_eq(struct gguf_str s, const char *cstr)
{
    size_t n = strlen(cstr);
    return s.len == n && memcmp(s.ptr, cstr, n) == 0;
}

char *gguf_str_copy(struct gguf_str s, char *buf, size_t cap)
{
    if (!cap) return buf;
    size_t n = s.len < cap - 1 ? (size_t)s.len : cap - 1;
    memcpy(buf, s.ptr, n);
    buf[n] = 0;
    return buf;
}

static bool str_same(struct gguf_str a, struct gguf_str b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

static int parse_kvs(struct gguf_file *f, struct cursor *c)
{
    /* each pair needs at least a key length (8), a type (4) and one value byte */
    if (f->n_kv > remaining(c) / 13 || f->n_kv > GGUF_MAX_KV)
        return ifd_fail(c->err, c->errlen, IFD_ERR_FORMAT, "header claims %llu metadata pairs, more than the file can hold",
                        (unsigned long long)f->n_kv);
    f->kv = calloc(f->n_kv ? f->n_kv : 1, sizeof *f->kv);
    if (!f->kv) return IFD_ERR_NOMEM;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        struct gguf_kv *kv = &f->kv[i];
        char what[96];
        snprintf(what, sizeof what, "metadata pair %llu", (unsigned long long)i);
        int rc = rd_str(c, &kv->key, GGUF_MAX_KEY_LEN, what);
        if (rc) return rc;
        char key[72];
        snprintf(what, sizeof what, "metadata '%s'", gguf_str_copy(kv->key, key, sizeof key));
        uint32_t type;
        if ((rc = rd_u32(c, &type, what))) return rc;
        kv->val.type = GGUF_VT_UINT8; /* nothing owned until parse_value sets ARRAY */
        if ((rc = parse_value(c, type, &kv->val, 0, what))) return rc;
        for (uint64_t j = 0; j < i; j++)
            if (str_same(f->kv[j].key, kv->key))
                return ifd_fail(c->err, c->errlen, IFD_ERR_FORMAT, "duplicate metadata key '%s'", key);
    }
    return 0;
}

static int read_alignment(struct gguf_file *f, char *err, size_t errlen)
{
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const struct gguf_kv *kv = gguf_find(f, "general.alignment");
    if (!kv) return 0;
    if (kv->val.type != GGUF_VT_UINT32)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "general.alignment must be uint32, found %s",
                        gguf_vtype_name(kv->val.type));
    uint64_t a = kv->val.v.u;
    if (a == 0 || (a & (a - 1)) || a > (1u << 20))
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "general.alignment %llu is not a power of two up to 1 MiB",
                        (unsigned long long)a);
    f->alignment = (uint32_t)a;
    return 0;
}

/* Validates shape and type, and computes nbytes, for one tensor info. */
static int check_tensor_shape(struct gguf_tensor *t, const char *name, char *err, size_t errlen)
{
    if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tensor '%s': %u dimensions (must be 1..%d)", name, t->n_dims,
                        GGUF_MAX_DIMS);
    const struct qtype_info *ti = qtype_get(t->type);
    if (!ti) return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tensor '%s': unknown tensor type id %u", name, t->type);
    uint64_t nelem = 1;
    for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
        if (d >= t->n_dims) t->ne[d] = 1;
        if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX)
            return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tensor '%s': dimension %u has invalid size %llu", name, d,
                            (unsigned long long)t->ne[d]);
        if (nelem > (uint64_t)INT64_MAX / t->ne[d])
            return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tensor '%s': element count overflows", name);
        nelem *= t->ne[d];
    }
    if (t->ne[0] % ti->block)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tensor '%s': row length %llu is not a multiple of the %s block size %u",
                        name, (unsigned long long)t->ne[0], ti->name, ti->block);
    uint64_t nblocks = nelem / ti->block;
    if (nblocks > UINT64_MAX / ti->bytes)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tensor '%s': byte size overflows", name);
    t->nbytes = nblocks * ti->bytes;
    return 0;
}

static int parse_tensor_infos(struct gguf_file *f, struct cursor *c)
{
    /* name length (8) + n_dims (4) + one dim (8) + type (4) + offset (8) */
    if (f->n_tensors > remaining(c) / 32 || f->n_tensors > GGUF_MAX_TENSORS)
        return ifd_fail(c->err, c->errlen, IFD_ERR_FORMAT, "header claims %llu tensors, more than the file can hold",
                        (unsigned long long)f->n_tensors);
    f->tensors = calloc(f->n_tensors ? f->n_tensors : 1, sizeof *f->tensors);
    if (!f->tensors) return IFD_ERR_NOMEM;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        char what[96], name[GGUF_MAX_NAME_LEN + 1];
        snprintf(what, sizeof what, "tensor info %llu", (unsigned long long)i);
        int rc = rd_str(c, &t->name, GGUF_MAX_NAME_LEN, what);
        if (rc) return rc;
        gguf_str_copy(t->name, name, sizeof name);
        snprintf(what, sizeof what, "tensor '%.64s'", name);
        if ((rc = rd_u32(c, &t->n_dims, what))) return rc;
        if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
            return ifd_fail(c->err, c->errlen, IFD_ERR_FORMAT, "%s: %u dimensions (must be 1..%d)", what, t->n_dims,
                            GGUF_MAX_DIMS);
        for (uint32_t d = 0; d < t->n_dims; d++)
            if ((rc = rd_u64(c, &t->ne[d], what))) return rc;
        if ((rc = rd_u32(c, &t->type, what)) || (rc = rd_u64(c, &t->offset, what))) return rc;
        if ((rc = check_tensor_shape(t, name, c->err, c->errlen))) return rc;
        for (uint64_t j = 0; j < i; j++)
            if (str_same(f->tensors[j].name, t->name))
                return ifd_fail(c->err, c->errlen, IFD_ERR_FORMAT, "duplicate tensor name '%s'", name);
    }
    return 0;
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a, *y = *(const struct gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Places tensor data inside the file: aligned, in bounds, not overlapping. */
static int place_tensors(struct gguf_file *f, char *err, size_t errlen)
{
    if (f->n_tensors == 0) return 0;
    if (f->data_offset > f->size)
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "file truncated: tensor data section starts at %llu, past the end (%llu bytes)",
                        (unsigned long long)f->data_offset, (unsigned long long)f->size);
    uint64_t data_size = f->size - f->data_offset;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        struct gguf_tensor *t = &f->tensors[i];
        char name[GGUF_MAX_NAME_LEN + 1];
        gguf_str_copy(t->name, name, sizeof name);
        if (t->offset % f->alignment)
            return ifd_fail(err, errlen, IFD_ERR_FORMAT, "tensor '%s': offset %llu is not a multiple of the alignment %u",
                            name, (unsigned long long)t->offset, f->alignment);
        if (t->offset > data_size || t->nbytes > data_size - t->offset)
            return ifd_fail(err, errlen, IFD_ERR_FORMAT,
                            "tensor '%s': data [%llu, +%llu) runs past the end of the file (%llu bytes)", name,
                            (unsigned long long)(f->data_offset + t->offset), (unsigned long long)t->nbytes,
                            (unsigned long long)f->size);
        t->data = f->base + f->data_offset + t->offset;
    }
    const struct gguf_tensor **order = malloc(f->n_tensors * sizeof *order);
    if (!order) return IFD_ERR_NOMEM;
    for (uint64_t i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, f->n_tensors, sizeof *order, cmp_tensor_offset);
    int rc = 0;
    for (uint64_t i = 1; i < f->n_tensors && !rc; i++) {
        if (order[i - 1]->offset + order[i - 1]->nbytes > order[i]->offset) {
            char a[GGUF_MAX_NAME_LEN + 1], b[GGUF_MAX_NAME_LEN + 1];
            rc = ifd_fail(err, errlen, IFD_ERR_FORMAT, "tensors '%s' and '%s' overlap",
                          gguf_str_copy(order[i - 1]->name, a, sizeof a), gguf_str_copy(order[i]->name, b, sizeof b));
        }
    }
    free(order);
    return rc;
}

int gguf_parse(struct gguf_file **out, const void *buf, size_t size, char *err, size_t errlen)
{
    *out = NULL;
    struct gguf_file *f = calloc(1, sizeof *f);
    if (!f) return IFD_ERR_NOMEM;
    f->fd = -1;
    f->base = buf;
    f->size = size;
    struct cursor c = { .base = buf, .size = size, .err = err, .errlen = errlen };
    char magic[4];
    int rc;
    if ((rc = rd(&c, magic, 4, "magic"))) goto fail;
    if (memcmp(magic, "GGUF", 4) != 0) {
        rc = ifd_fail(err, errlen, IFD_ERR_FORMAT, "not a GGUF file (bad magic %02x %02x %02x %02x)",
                      (unsigned char)magic[0], (unsigned char)magic[1], (unsigned char)magic[2], (unsigned char)magic[3]);
        goto fail;
    }
    if ((rc = rd_u32(&c, &f->version, "version"))) goto fail;
    if (f->version != 2 && f->version != 3) {
        rc = ifd_fail(err, errlen, f->version == 1 ? IFD_ERR_UNSUPPORTED : IFD_ERR_FORMAT,
                      "GGUF version %u is not supported (need 2 or 3)", f->version);
        goto fail;
    }
    if ((rc = rd_u64(&c, &f->n_tensors, "tensor count")) || (rc = rd_u64(&c, &f->n_kv, "metadata count"))) goto fail;
    uint64_t n_tensors = f->n_tensors;
    f->n_tensors = 0; /* so gguf_close only frees what was parsed */
    if ((rc = parse_kvs(f, &c))) goto fail;
    if ((rc = read_alignment(f, err, errlen))) goto fail;
    f->n_tensors = n_tensors;
    if ((rc = parse_tensor_infos(f, &c))) goto fail;
    f->data_offset = c.off + (f->alignment - c.off % f->alignment) % f->alignment;
    if ((rc = place_tensors(f, err, errlen))) goto fail;
    *out = f;
    return 0;
fail:
    if (rc == IFD_ERR_NOMEM) ifd_fail(err, errlen, rc, "out of memory while parsing GGUF");
    f->fd = -1;
    gguf_close(f);
    return rc;
}

int gguf_open(struct gguf_file **out, const char *path, unsigned flags, char *err, size_t errlen)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ifd_fail(err, errlen, IFD_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ifd_fail(err, errlen, IFD_ERR_IO, "'%s' is not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return ifd_fail(err, errlen, IFD_ERR_FORMAT, "'%s' is empty", path);
    }
    int prot = PROT_READ | (flags & GGUF_OPEN_WRITABLE ? PROT_WRITE : 0);
    void *map = mmap(NULL, (size_t)st.st_size, prot, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        close(fd);
        return ifd_fail(err, errlen, IFD_ERR_IO, "cannot mmap '%s': %s", path, strerror(errno));
    }
    struct gguf_file *f;
    int rc = gguf_parse(&f, map, (size_t)st.st_size, err, errlen);
    if (rc) {
        munmap(map, (size_t)st.st_size);
        close(fd);
        return rc;
    }
    f->fd = fd;
    *out = f;
    return 0;
}

/* ---- lookups ---- */

const struct gguf_kv *gguf_find(const struct gguf_file *f, const char *key)
{
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (gguf_str_eq(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name)
{
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (gguf_str_eq(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

static bool is_unsigned(enum gguf_vtype t)
{
    return t == GGUF_VT_UINT8 || t == GGUF_VT_UINT16 || t == GGUF_VT_UINT32 || t == GGUF_VT_UINT64;
}

static bool is_signed(enum gguf_vtype t)
{
    return t == GGUF_VT_INT8 || t == GGUF_VT_INT16 || t == GGUF_VT_INT32 || t == GGUF_VT_INT64;
}

int gguf_get_u64(const struct gguf_file *f, const char *key, uint64_t *out)
{
    const struct gguf_kv *kv = gguf_find(f, key);
    if (!kv) return IFD_ERR_NOT_FOUND;
    if (is_unsigned(kv->val.type)) { *out = kv->val.v.u; return 0; }
    if (is_signed(kv->val.type) && kv->val.v.i >= 0) { *out = (uint64_t)kv->val.v.i; return 0; }
    return IFD_ERR_FORMAT;
}

int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out)
{
    uint64_t v;
    int rc = gguf_get_u64(f, key, &v);
    if (rc) return rc;
    if (v > UINT32_MAX) return IFD_ERR_FORMAT;
    *out = (uint32_t)v;
    return 0;
}

int gguf_get_i64(const struct gguf_file *f, const char *key, int64_t *out)
{
    const struct gguf_kv *kv = gguf_find(f, key);
    if (!kv) return IFD_ERR_NOT_FOUND;
    if (is_signed(kv->val.type)) { *out = kv->val.v.i; return 0; }
    if (is_unsigned(kv->val.type) && kv->val.v.u <= (uint64_t)INT64_MAX) { *out = (int64_t)kv->val.v.u; return 0; }
    return IFD_ERR_FORMAT;
}

int gguf_get_f32(const struct gguf_file *f, const char *key, float *out)
{
    const struct gguf_kv *kv = gguf_find(f, key);
    if (!kv) return IFD_ERR_NOT_FOUND;
    if (kv->val.type != GGUF_VT_FLOAT32 && kv->val.type != GGUF_VT_FLOAT64) return IFD_ERR_FORMAT;
    *out = (float)kv->val.v.f;
    return 0;
}

int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out)
{
    const struct gguf_kv *kv = gguf_find(f, key);
    if (!kv) return IFD_ERR_NOT_FOUND;
    if (kv->val.type != GGUF_VT_BOOL) return IFD_ERR_FORMAT;
    *out = kv->val.v.b;
    return 0;
}

int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out)
{
    const struct gguf_kv *kv = gguf_find(f, key);
    if (!kv) return IFD_ERR_NOT_FOUND;
    if (kv->val.type != GGUF_VT_STRING) return IFD_ERR_FORMAT;
    *out = kv->val.v.str;
    return 0;
}

int gguf_get_arr(const struct gguf_file *f, const char *key, const struct gguf_array **out)
{
    const struct gguf_kv *kv = gguf_find(f, key);
    if (!kv) return IFD_ERR_NOT_FOUND;
    if (kv->val.type != GGUF_VT_ARRAY) return IFD_ERR_FORMAT;
    *out = &kv->val.v.arr;
    return 0;
}

int64_t gguf_arr_i64(const struct gguf_array *a, uint64_t i)
{
    struct gguf_value v;
    uint64_t esz = vtype_size(a->type);
    if (!esz || i >= a->count) return 0;
    decode_scalar(a->type, a->data + i * esz, &v);
    if (is_unsigned(a->type)) return v.v.u > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v.v.u;
    if (a->type == GGUF_VT_FLOAT32 || a->type == GGUF_VT_FLOAT64) { /* saturate: out-of-range casts are UB */
        if (!(v.v.f > -9.2e18)) return v.v.f > 0 ? INT64_MAX : INT64_MIN;
        return v.v.f < 9.2e18 ? (int64_t)v.v.f : INT64_MAX;
    }
    if (a->type == GGUF_VT_BOOL) return v.v.b;
    return v.v.i;
}

double gguf_arr_f64(const struct gguf_array *a, uint64_t i)
{
    struct gguf_value v;
    uint64_t esz = vtype_size(a->type);
    if (!esz || i >= a->count) return 0;
    decode_scalar(a->type, a->data + i * esz, &v);
    if (a->type == GGUF_VT_FLOAT32 || a->type == GGUF_VT_FLOAT64) return v.v.f;
    return (double)gguf_arr_i64(a, i);
}
