/* SPDX-License-Identifier: Apache-2.0
 * kv_blocks.c: the block manager of kv_blocks.h. Layer: engine. */
#include "kv_blocks.h"
#include "inferd/error.h"

#include <stdlib.h>
#include <string.h>

#define SLOT_EMPTY -1
#define SLOT_DELETED -2

void kvb_free(struct kv_blocks *b)
{
    free(b->ref);
    free(b->hash);
    free(b->cached);
    free(b->tokens);
    free(b->prev);
    free(b->next);
    free(b->table);
    memset(b, 0, sizeof *b);
}

int kvb_init(struct kv_blocks *b, int n_blocks, int block_size)
{
    memset(b, 0, sizeof *b);
    if (n_blocks <= 0 || block_size <= 0) return IFD_ERR_INVALID;
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)n_blocks) cap <<= 1;
    b->n_blocks = n_blocks;
    b->block_size = block_size;
    b->ref = calloc((size_t)n_blocks, sizeof *b->ref);
    b->hash = calloc((size_t)n_blocks, sizeof *b->hash);
    b->cached = calloc((size_t)n_blocks, sizeof *b->cached);
    b->tokens = malloc((size_t)n_blocks * (size_t)block_size * sizeof *b->tokens);
    b->prev = malloc((size_t)n_blocks * sizeof *b->prev);
    b->next = malloc((size_t)n_blocks * sizeof *b->next);
    b->table = malloc(cap * sizeof *b->table);
    if (!b->ref || !b->hash || !b->cached || !b->tokens || !b->prev || !b->next || !b->table) {
        kvb_free(b);
        return IFD_ERR_NOMEM;
    }
    b->table_mask = cap - 1;
    for (uint32_t i = 0; i < cap; i++) b->table[i] = SLOT_EMPTY;
    for (int i = 0; i < n_blocks; i++) {
        b->prev[i] = i - 1;
        b->next[i] = i + 1 < n_blocks ? i + 1 : -1;
    }
    b->head = 0;
    b->tail = n_blocks - 1;
    b->n_free = n_blocks;
    return 0;
}

uint64_t kvb_hash(uint64_t parent, const int32_t *tokens, int n, uint32_t adapter)
{
    /* FNV-1a over the inputs, then a 64-bit finalizer to spread the bits */
    uint64_t h = 0xcbf29ce484222325ull ^ parent;
    h = (h ^ adapter) * 0x100000001b3ull;
    for (int i = 0; i < n; i++) h = (h ^ (uint32_t)tokens[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static void list_remove(struct kv_blocks *b, int32_t id)
{
    if (b->prev[id] >= 0) b->next[b->prev[id]] = b->next[id];
    else b->head = b->next[id];
    if (b->next[id] >= 0) b->prev[b->next[id]] = b->prev[id];
    else b->tail = b->prev[id];
    b->prev[id] = b->next[id] = -1;
    b->n_free--;
}

static void list_append(struct kv_blocks *b, int32_t id)
{
    b->prev[id] = b->tail;
    b->next[id] = -1;
    if (b->tail >= 0) b->next[b->tail] = id;
    else b->head = id;
    b->tail = id;
    b->n_free++;
}

/* Hash-table slot holding block id's entry, or -1. */
static int64_t table_find_slot(const struct kv_blocks *b, uint64_t hash, int32_t id)
{
    for (uint32_t i = (uint32_t)hash & b->table_mask, probes = 0; probes <= b->table_mask;
         i = (i + 1) & b->table_mask, probes++) {
        if (b->table[i] == SLOT_EMPTY) return -1;
        if (b->table[i] == id) return i;
    }
    return -1;
}

static void uncache(struct kv_blocks *b, int32_t id)
{
    if (!b->cached[id]) return;
    int64_t slot = table_find_slot(b, b->hash[id], id);
    if (slot >= 0) {
        b->table[slot] = SLOT_DELETED;
        b->n_tombstones++;
    }
    b->cached[id] = false;
}

/* Re-inserts every cached block into a clean table (drops tombstones). The
 * table holds at most n_blocks entries in 2 * n_blocks slots, so this runs at
 * most once per n_blocks / 2 evictions. */
static void rebuild_table(struct kv_blocks *b)
{
    for (uint32_t i = 0; i <= b->table_mask; i++) b->table[i] = SLOT_EMPTY;
    for (int32_t id = 0; id < b->n_blocks; id++) {
        if (!b->cached[id]) continue;
        uint32_t i = (uint32_t)b->hash[id] & b->table_mask;
        while (b->table[i] != SLOT_EMPTY) i = (i + 1) & b->table_mask;
        b->table[i] = id;
    }
    b->n_tombstones = 0;
}

int32_t kvb_alloc(struct kv_blocks *b)
{
    int32_t id = b->head;
    if (id < 0) return -1;
    list_remove(b, id);
    uncache(b, id);
    b->ref[id] = 1;
    return id;
}

void kvb_ref(struct kv_blocks *b, int32_t id)
{
    if (b->ref[id]++ == 0) list_remove(b, id);
}

void kvb_unref(struct kv_blocks *b, int32_t id)
{
    if (--b->ref[id] == 0) list_append(b, id);
}

int32_t kvb_lookup(struct kv_blocks *b, uint64_t hash, const int32_t *tokens)
{
    size_t bytes = (size_t)b->block_size * sizeof *tokens;
    for (uint32_t i = (uint32_t)hash & b->table_mask, probes = 0; probes <= b->table_mask;
         i = (i + 1) & b->table_mask, probes++) {
        int32_t id = b->table[i];
        if (id == SLOT_EMPTY) return -1;
        if (id < 0 || b->hash[id] != hash) continue;
        if (memcmp(b->tokens + (size_t)id * b->block_size, tokens, bytes) != 0) continue;
        kvb_ref(b, id);
        return id;
    }
    return -1;
}

void kvb_register(struct kv_blocks *b, int32_t id, uint64_t hash, const int32_t *tokens)
{
    if (b->cached[id]) return;
    if (b->n_tombstones > (b->table_mask + 1) / 4) rebuild_table(b);
    /* one cached block per prefix: a duplicate (two sequences computed the same
     * prefix at once) stays uncached and is recycled normally */
    size_t bytes = (size_t)b->block_size * sizeof *tokens;
    uint32_t i = (uint32_t)hash & b->table_mask;
    int64_t free_slot = -1;
    for (uint32_t probes = 0; probes <= b->table_mask; i = (i + 1) & b->table_mask, probes++) {
        int32_t other = b->table[i];
        if (other == SLOT_EMPTY) {
            if (free_slot < 0) free_slot = i;
            break;
        }
        if (other == SLOT_DELETED) {
            if (free_slot < 0) free_slot = i;
            continue;
        }
        if (b->hash[other] == hash && memcmp(b->tokens + (size_t)other * b->block_size, tokens, bytes) == 0) return;
    }
    if (free_slot < 0) return; /* unreachable: the table is at most half full after a rebuild */
    if (b->table[free_slot] == SLOT_DELETED) b->n_tombstones--;
    b->table[free_slot] = id;
    b->hash[id] = hash;
    b->cached[id] = true;
    memcpy(b->tokens + (size_t)id * b->block_size, tokens, bytes);
}

const char *kvb_validate(const struct kv_blocks *b)
{
    int on_list = 0, zero_ref = 0;
    for (int32_t id = b->head, prev = -1; id >= 0; prev = id, id = b->next[id]) {
        if (++on_list > b->n_blocks) return "free list has a cycle";
        if (b->prev[id] != prev) return "free list back link is wrong";
        if (b->ref[id] != 0) return "a referenced block is on the free list";
    }
    for (int i = 0; i < b->n_blocks; i++) zero_ref += b->ref[i] == 0;
    if (on_list != b->n_free || zero_ref != b->n_free) return "free count does not match the free list";
    int entries = 0;
    for (uint32_t i = 0; i <= b->table_mask; i++) {
        int32_t id = b->table[i];
        if (id < 0) continue;
        if (!b->cached[id]) return "hash table points at an uncached block";
        entries++;
    }
    int cached = 0;
    for (int i = 0; i < b->n_blocks; i++) cached += b->cached[i];
    if (entries != cached) return "cached blocks and hash table entries differ";
    return 0;
}
