/* SPDX-License-Identifier: Apache-2.0
 *
 * kv_blocks.h: the paged KV cache's block manager: which physical blocks are
 * in use, by how many sequences (reference counts), and which hold a cached,
 * reusable prefix (automatic prefix caching, as vLLM's V1 design):
 *
 *  - Only full blocks are cached. A block's hash chains its parent's hash
 *    with its tokens and the adapter id (KV depends on the adapter), so equal
 *    hashes mean equal prefixes. Hits are also verified token by token; a
 *    64-bit collision can cost a miss, never a wrong answer.
 *  - Blocks with no references sit on a free list in LRU order. A free block
 *    may still be cached: a lookup that hits it takes it back off the list;
 *    allocation takes the least recently freed block and forgets its hash.
 *
 * The manager only does bookkeeping; moving K/V data (copy-on-write copies)
 * is the engine's job through the backend. Not thread-safe: the engine thread
 * owns it.
 *
 * Layer: engine.
 */
#ifndef INFERD_KV_BLOCKS_H
#define INFERD_KV_BLOCKS_H

#include <stdbool.h>
#include <stdint.h>

struct kv_blocks {
    int n_blocks, block_size;
    int n_free;                  /* blocks with ref == 0 (cached or not) */
    uint16_t *ref;               /* (n_blocks) */
    uint64_t *hash;              /* (n_blocks) valid when cached[i] */
    bool *cached;                /* (n_blocks) */
    int32_t *tokens;             /* (n_blocks, block_size) tokens of cached blocks, for verification */
    int32_t *prev, *next;        /* free list links (-1 = none), LRU at the head */
    int32_t head, tail;
    int32_t *table;              /* hash table of cached blocks: open addressing, -1 empty, -2 deleted */
    uint32_t table_mask;
    uint32_t n_tombstones;       /* deleted slots; the table is rebuilt when they pile up */
    uint64_t queries, hits;      /* prefix-cache tokens asked for / found */
};

int kvb_init(struct kv_blocks *b, int n_blocks, int block_size);
void kvb_free(struct kv_blocks *b);

/* Hash of a full block: chains parent (0 for the first block), tokens and adapter. */
uint64_t kvb_hash(uint64_t parent, const int32_t *tokens, int n, uint32_t adapter);

/* Takes the least recently freed block (dropping any cached prefix it held). -1 if none. */
int32_t kvb_alloc(struct kv_blocks *b);
void kvb_ref(struct kv_blocks *b, int32_t id);
/* Drops one reference; at zero the block joins the free list (keeping its cache entry). */
void kvb_unref(struct kv_blocks *b, int32_t id);
/* Finds a cached block with this hash and tokens and takes a reference; -1 if none. */
int32_t kvb_lookup(struct kv_blocks *b, uint64_t hash, const int32_t *tokens);
/* Records a just-filled block as a reusable prefix (no-op if one with this hash exists). */
void kvb_register(struct kv_blocks *b, int32_t id, uint64_t hash, const int32_t *tokens);

/* Checks the invariants (free list, counts, hash table); 0 or a message. */
const char *kvb_validate(const struct kv_blocks *b);

static inline int kvb_used(const struct kv_blocks *b) { return b->n_blocks - b->n_free; }

#endif
