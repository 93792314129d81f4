// SPDX-License-Identifier: MIT
/* A hash table that reports allocation failure: the GHashTable subset the
 * breakpoint manager, the page-table monitor, the interceptor, the
 * controllers and the tracer use, with memory from alloc.h.
 *
 * Why not GHashTable: it allocates with g_malloc, which aborts when out of
 * memory, and those modules must answer VMT_E_NOMEM with nothing changed.
 * So that an operation can make every allocation before it changes the
 * guest, growth is separate from insertion: vmt_htab_reserve(t, k) makes
 * the next k insertions of new keys allocation-free (they cannot fail),
 * and removal never allocates.
 *
 * Keys and values are pointers (a key may be a small integer cast to a
 * pointer, with a NULL eq: keys then compare as pointers). Open
 * addressing, linear probing, power-of-two sizes, each slot caching its
 * key's hash so that a probe calls eq only on a likely match. Removal
 * leaves a tombstone, so removing entries while iterating is safe; the
 * tombstones go at the next rehash, which sizes the table to twice its
 * live and reserved entries (so it may also shrink then, never on
 * removal). */
#ifndef VMITAP_CORE_HTAB_H
#define VMITAP_CORE_HTAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmitap/types.h"

typedef uint64_t (*vmt_htab_hash_fn)(const void *key);
typedef bool (*vmt_htab_eq_fn)(const void *a, const void *b);

typedef struct vmt_htab_slot {
    uint64_t h; /* VMT_HTAB_EMPTY, VMT_HTAB_TOMB, or the key's hash | VMT_HTAB_USED */
    void *key;
    void *val;
} vmt_htab_slot;

#define VMT_HTAB_EMPTY 0u
#define VMT_HTAB_TOMB 1u
#define VMT_HTAB_USED 2u

typedef struct vmt_htab {
    vmt_htab_slot *slots; /* NULL until the first reserve */
    size_t n;             /* slots: 0 or a power of two */
    size_t live, tombs;
    vmt_htab_hash_fn hash;
    vmt_htab_eq_fn eq; /* NULL: compare keys as pointers */
} vmt_htab;

void vmt_htab_init(vmt_htab *t, vmt_htab_hash_fn hash, vmt_htab_eq_fn eq);
/* Frees the slots (not the keys or values). */
void vmt_htab_fini(vmt_htab *t);

/* Room for `extra` more keys: after VMT_OK, that many vmt_htab_put of new
 * keys allocate nothing. VMT_E_NOMEM: nothing changed. */
vmt_status vmt_htab_reserve(vmt_htab *t, size_t extra);
/* Stores (key, val), replacing the key and value of an equal key. Grows
 * the table if no room was reserved (VMT_E_NOMEM: nothing changed). */
vmt_status vmt_htab_put(vmt_htab *t, void *key, void *val);
/* The value stored for key, or NULL. */
void *vmt_htab_get(const vmt_htab *t, const void *key);
/* Whether key is stored; its stored key and value (either may be NULL). */
bool vmt_htab_lookup(const vmt_htab *t, const void *key, void **stored_key, void **val);
/* Removes key (never allocates); false if absent. */
bool vmt_htab_del(vmt_htab *t, const void *key);

static inline size_t vmt_htab_size(const vmt_htab *t)
{
    return t->live;
}

static inline bool vmt_htab_used(const vmt_htab_slot *sl)
{
    return sl->h & VMT_HTAB_USED;
}

/* The first used slot at or after i (t->n: none). Iteration, where
 * removing the current entry is safe:
 *   for (size_t i = 0; (i = vmt_htab_next(t, i)) < t->n; i++)
 *       ... t->slots[i].key, t->slots[i].val ... */
static inline size_t vmt_htab_next(const vmt_htab *t, size_t i)
{
    while (i < t->n && !vmt_htab_used(&t->slots[i]))
        i++;
    return i;
}

/* Hashes for the usual keys. */
uint64_t vmt_htab_hash_u64(uint64_t x);
uint64_t vmt_htab_hash_ptr(const void *key);  /* a pointer or small integer key */
uint64_t vmt_htab_hash_u64p(const void *key); /* a key pointing at a uint64_t */
bool vmt_htab_eq_u64p(const void *a, const void *b);

#endif /* VMITAP_CORE_HTAB_H */
