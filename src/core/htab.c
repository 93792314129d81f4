// SPDX-License-Identifier: MIT
/* The fallible hash table (htab.h). */
#include "core/htab.h"

#include "core/alloc.h"

#define MIN_SLOTS 8u

uint64_t vmt_htab_hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

uint64_t vmt_htab_hash_ptr(const void *key)
{
    return vmt_htab_hash_u64((uint64_t)(uintptr_t)key);
}

uint64_t vmt_htab_hash_u64p(const void *key)
{
    return vmt_htab_hash_u64(*(const uint64_t *)key);
}

bool vmt_htab_eq_u64p(const void *a, const void *b)
{
    return *(const uint64_t *)a == *(const uint64_t *)b;
}

void vmt_htab_init(vmt_htab *t, vmt_htab_hash_fn hash, vmt_htab_eq_fn eq)
{
    *t = (vmt_htab){.hash = hash, .eq = eq};
}

void vmt_htab_fini(vmt_htab *t)
{
    vmt_free(t->slots);
    vmt_htab_init(t, t->hash, t->eq);
}

static inline uint64_t tag(const vmt_htab *t, const void *key)
{
    return t->hash(key) | VMT_HTAB_USED;
}

static inline bool same(const vmt_htab *t, const vmt_htab_slot *sl, uint64_t h, const void *key)
{
    return sl->h == h && (t->eq ? t->eq(sl->key, key) : sl->key == key);
}

static vmt_htab_slot *find(const vmt_htab *t, uint64_t h, const void *key)
{
    if (!t->n)
        return NULL;
    size_t mask = t->n - 1;
    for (size_t i = (size_t)(h >> 2) & mask;; i = (i + 1) & mask) {
        vmt_htab_slot *sl = &t->slots[i];
        if (sl->h == VMT_HTAB_EMPTY)
            return NULL;
        if (same(t, sl, h, key))
            return sl;
    }
}

/* Moves the live entries to a new table of n slots (no tombstones). */
static vmt_status rehash(vmt_htab *t, size_t n)
{
    vmt_htab_slot *slots = vmt_calloc(n, sizeof *slots);
    if (!slots)
        return VMT_E_NOMEM;
    for (size_t i = 0; i < t->n; i++) {
        const vmt_htab_slot *o = &t->slots[i];
        if (!vmt_htab_used(o))
            continue;
        size_t j = (size_t)(o->h >> 2) & (n - 1);
        while (slots[j].h != VMT_HTAB_EMPTY)
            j = (j + 1) & (n - 1);
        slots[j] = *o;
    }
    vmt_free(t->slots);
    t->slots = slots;
    t->n = n;
    t->tombs = 0;
    return VMT_OK;
}

/* Occupied slots (live and tombstones) stay at most 3/4 of the table. A
 * growth sizes the table so the live entries and the reserved ones fill at
 * most half of it: tombstones then take n/4 removals to force the next. */
vmt_status vmt_htab_reserve(vmt_htab *t, size_t extra)
{
    if (4 * (t->live + t->tombs + extra) <= 3 * t->n)
        return VMT_OK;
    size_t want = t->live + extra, n = MIN_SLOTS;
    if (want > SIZE_MAX / 4)
        return VMT_E_NOMEM;
    while (n < 2 * want)
        n *= 2;
    return rehash(t, n);
}

vmt_status vmt_htab_put(vmt_htab *t, void *key, void *val)
{
    uint64_t h = tag(t, key);
    vmt_htab_slot *sl = find(t, h, key);
    if (sl) {
        sl->key = key;
        sl->val = val;
        return VMT_OK;
    }
    vmt_status st = vmt_htab_reserve(t, 1);
    if (st != VMT_OK)
        return st;
    size_t mask = t->n - 1, i = (size_t)(h >> 2) & mask;
    while (vmt_htab_used(&t->slots[i]))
        i = (i + 1) & mask;
    if (t->slots[i].h == VMT_HTAB_TOMB)
        t->tombs--;
    t->slots[i] = (vmt_htab_slot){.h = h, .key = key, .val = val};
    t->live++;
    return VMT_OK;
}

void *vmt_htab_get(const vmt_htab *t, const void *key)
{
    const vmt_htab_slot *sl = t->live ? find(t, tag(t, key), key) : NULL;
    return sl ? sl->val : NULL;
}

bool vmt_htab_lookup(const vmt_htab *t, const void *key, void **stored_key, void **val)
{
    const vmt_htab_slot *sl = t->live ? find(t, tag(t, key), key) : NULL;
    if (!sl)
        return false;
    if (stored_key)
        *stored_key = sl->key;
    if (val)
        *val = sl->val;
    return true;
}

bool vmt_htab_del(vmt_htab *t, const void *key)
{
    vmt_htab_slot *sl = t->live ? find(t, tag(t, key), key) : NULL;
    if (!sl)
        return false;
    t->live--;
    size_t mask = t->n - 1, i = (size_t)(sl - t->slots);
    if (t->slots[(i + 1) & mask].h != VMT_HTAB_EMPTY) {
        *sl = (vmt_htab_slot){.h = VMT_HTAB_TOMB};
        t->tombs++;
        return true;
    }
    /* The end of its probe run: no key lies beyond, so this slot and the
     * tombstones right before it can be empty again. Nothing moves, so
     * iterating stays safe. */
    *sl = (vmt_htab_slot){.h = VMT_HTAB_EMPTY};
    for (i = (i - 1) & mask; t->slots[i].h == VMT_HTAB_TOMB; i = (i - 1) & mask) {
        t->slots[i].h = VMT_HTAB_EMPTY;
        t->tombs--;
    }
    return true;
}
