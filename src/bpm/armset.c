// SPDX-License-Identifier: MIT
/* The armed set (armset.h): open addressing, linear probing, deletion by
 * backward shift, and a short log of changes applied in batches. */
#include <stdlib.h>
#include <string.h>

#include "bpm/armset.h"
#include "bpm/tablemem.h"

static inline uint64_t hash_of(uint64_t page_id, uint64_t key, uint64_t va, uint64_t root)
{
    uint64_t x = page_id ^ (key * 0x9e3779b97f4a7c15ull) ^ (va * 0xc2b2ae3d27d4eb4full) ^
                 (root * 0x165667b19e3779f9ull);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* The home slot of hash h in a table of n slots: the high half of h
 * scaled to [0, n) (n <= 2^32, so the product fits in 64 bits). */
static inline size_t home(uint64_t h, size_t n)
{
    return (size_t)(((h >> 32) * (uint64_t)n) >> 32);
}

static inline size_t next(size_t i, size_t n)
{
    return i + 1 == n ? 0 : i + 1;
}

/* Same pair (the slot's or log entry's flags aside). */
static inline bool same(const bpm_armset_slot *sl, uint64_t page_id, uint64_t key, uint64_t va,
                        uint64_t root)
{
    return (sl->id & ~BPM_ARMSET_FLAGS) == page_id && sl->key == key && sl->va == va &&
           sl->root == root;
}

static inline uint64_t page_of(const bpm_armset_slot *sl)
{
    return sl->id & ~BPM_ARMSET_FLAGS;
}

void bpm_armset_init(bpm_armset *s)
{
    memset(s, 0, sizeof *s);
}

void bpm_armset_free(bpm_armset *s)
{
    bpm_table_release(s->mem, s->map_bytes);
    bpm_armset_init(s);
}

/* ---- the table ---- */

static bpm_armset_slot *find(const bpm_armset *s, uint64_t h, uint64_t page_id, uint64_t key,
                             uint64_t va, uint64_t root)
{
    if (!s->slots)
        return NULL;
    for (size_t i = home(h, s->n);; i = next(i, s->n)) {
        bpm_armset_slot *sl = &s->slots[i];
        if ((sl->id & BPM_ARMSET_LIVE) && same(sl, page_id, key, va, root))
            return sl;
        if (sl->id == 0)
            return NULL;
    }
}

/* The first empty slot on hash h's probe path. */
static bpm_armset_slot *free_slot(bpm_armset_slot *slots, size_t n, uint64_t h)
{
    for (size_t i = home(h, n);; i = next(i, n))
        if (slots[i].id == 0)
            return &slots[i];
}

/* Moves the live slots to a table of n slots (tablemem.h: zeroed,
 * 64-byte aligned). VMT_E_NOMEM: nothing changed. */
static vmt_status rehash(bpm_armset *s, size_t n)
{
    if (n > (1ull << 32))
        return VMT_E_NOMEM; /* 128 GiB of slots: beyond home()'s range */
    void *mem;
    size_t map_bytes;
    bpm_armset_slot *slots = bpm_table_alloc(n * sizeof(bpm_armset_slot), &mem, &map_bytes);
    if (!slots)
        return VMT_E_NOMEM;
    for (size_t i = 0; i < s->n; i++) {
        const bpm_armset_slot *o = &s->slots[i];
        if (o->id & BPM_ARMSET_LIVE)
            *free_slot(slots, n, hash_of(page_of(o), o->key, o->va, o->root)) = *o;
    }
    bpm_table_release(s->mem, s->map_bytes);
    s->mem = mem;
    s->map_bytes = map_bytes;
    s->slots = slots;
    s->n = n;
    return VMT_OK;
}

/* Keep the load at most 3/4 counting every logged add as if applied
 * (removals are not counted until applied), so that probe runs stay short
 * and applying never grows; grow to twice that many pairs (1.5x). */
vmt_status bpm_armset_grow(bpm_armset *s, size_t extra)
{
    size_t need = s->table_live + s->n_log_adds;
    if (extra > (1ull << 32) - need)
        return VMT_E_NOMEM;
    need += extra;
    if (s->slots && 4 * need <= 3 * s->n)
        return VMT_OK;
    size_t want = 2 * need;
    return rehash(s, want < BPM_ARMSET_MIN_SLOTS ? BPM_ARMSET_MIN_SLOTS : want);
}

/* Room was reserved (bpm_armset_reserve) when the add was logged. */
static void table_add(bpm_armset *s, uint64_t h, const bpm_armset_slot *e)
{
    *free_slot(s->slots, s->n, h) = *e;
    s->table_live++;
}

/* Removes a slot by backward shift: the later slots of its probe run that
 * may move back (their home is not after the hole) fill the hole in turn,
 * so that no tombstone is left and every run still ends at an empty slot.
 * (Tombstones would fill a table that a page-out empties and the page-ins
 * refill, and force a rehash per cycle.) */
static void table_del(bpm_armset *s, bpm_armset_slot *sl)
{
    size_t n = s->n, hole = (size_t)(sl - s->slots);
    for (size_t j = next(hole, n); s->slots[j].id != 0; j = next(j, n)) {
        const bpm_armset_slot *o = &s->slots[j];
        size_t h = home(hash_of(page_of(o), o->key, o->va, o->root), n);
        bool home_in_gap = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
        if (!home_in_gap) {
            s->slots[hole] = *o;
            hole = j;
        }
    }
    s->slots[hole].id = 0;
    s->table_live--;
    /* No shrinking here: a page-out followed by its page-ins (or a remove
     * and a re-insert) must not rehash twice. bpm_armset_free releases the
     * table. */
}

/* ---- the log ---- */

static inline uint64_t log_bit(uint64_t h)
{
    return 1ull << (h >> 58);
}

/* Applies the oldest k logged changes and drops them from the log. */
static void apply(bpm_armset *s, unsigned k)
{
    for (unsigned i = 0; i < k; i++) {
        const bpm_armset_slot *e = &s->log[i];
        if (e->id & BPM_ARMSET_DEL) {
            table_del(s, find(s, s->log_hash[i], page_of(e), e->key, e->va, e->root));
        } else {
            table_add(s, s->log_hash[i], e);
            s->n_log_adds--;
        }
    }
    s->n_log -= k;
    memmove(s->log, s->log + k, s->n_log * sizeof s->log[0]);
    memmove(s->log_hash, s->log_hash + k, s->n_log * sizeof s->log_hash[0]);
    s->log_bits = 0;
    for (unsigned i = 0; i < s->n_log; i++)
        s->log_bits |= log_bit(s->log_hash[i]);
}

void bpm_armset_flush(bpm_armset *s)
{
    apply(s, s->n_log);
}

static void log_change(bpm_armset *s, uint64_t id, uint64_t key, uint64_t va, uint64_t root)
{
    if (s->n_log == BPM_ARMSET_LOG)
        apply(s, BPM_ARMSET_LOG / 2);
    uint64_t h = hash_of(id & ~BPM_ARMSET_FLAGS, key, va, root);
    if (s->slots)
        __builtin_prefetch(&s->slots[home(h, s->n)], 1);
    s->log_bits |= log_bit(h);
    s->log_hash[s->n_log] = h;
    s->log[s->n_log++] = (bpm_armset_slot){.id = id, .key = key, .va = va, .root = root};
}

void bpm_armset_add(bpm_armset *s, uint64_t page_id, bool global, uint64_t key, uint64_t va,
                    uint64_t root)
{
    log_change(s, page_id | BPM_ARMSET_LIVE | (global ? BPM_ARMSET_GLOBAL : 0), key, va, root);
    s->n_log_adds++;
    s->live++;
}

void bpm_armset_del(bpm_armset *s, uint64_t page_id, uint64_t key, uint64_t va, uint64_t root)
{
    log_change(s, page_id | BPM_ARMSET_DEL, key, va, root);
    s->live--;
}

bool bpm_armset_has(const bpm_armset *s, uint64_t page_id, uint64_t key, uint64_t va,
                    uint64_t root, bool global_only)
{
    uint64_t h = hash_of(page_id, key, va, root);
    const bpm_armset_slot *sl = NULL;
    /* The newest logged change of the pair, if any, decides. */
    for (unsigned i = (s->log_bits & log_bit(h)) ? s->n_log : 0; i-- > 0;)
        if (s->log_hash[i] == h && same(&s->log[i], page_id, key, va, root)) {
            sl = &s->log[i];
            if (sl->id & BPM_ARMSET_DEL)
                return false;
            break;
        }
    if (!sl)
        sl = find(s, h, page_id, key, va, root);
    return sl && (!global_only || (sl->id & BPM_ARMSET_GLOBAL));
}

/* ---- consistency ---- */

static bool check_table(const bpm_armset *s)
{
    if (!s->slots)
        return s->n == 0 && s->table_live == 0;
    size_t n = s->n, live = 0;
    if (n < BPM_ARMSET_MIN_SLOTS || 4 * s->table_live > 3 * n)
        return false;
    if ((uintptr_t)s->slots % 64 || (char *)s->slots < (char *)s->mem ||
        (char *)s->slots >= (char *)s->mem + 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        const bpm_armset_slot *sl = &s->slots[i];
        if (sl->id & BPM_ARMSET_LIVE) {
            if ((sl->id & BPM_ARMSET_FLAGS & ~(BPM_ARMSET_LIVE | BPM_ARMSET_GLOBAL)) ||
                find(s, hash_of(page_of(sl), sl->key, sl->va, sl->root), page_of(sl), sl->key,
                     sl->va, sl->root) != sl)
                return false;
            live++;
        } else if (sl->id != 0) {
            return false;
        }
    }
    return live == s->table_live;
}

/* Whether the pair is in the set after the table and log[0..upto). */
static bool present_before(const bpm_armset *s, unsigned upto, const bpm_armset_slot *e)
{
    for (unsigned i = upto; i-- > 0;)
        if (same(&s->log[i], page_of(e), e->key, e->va, e->root))
            return !(s->log[i].id & BPM_ARMSET_DEL);
    return find(s, hash_of(page_of(e), e->key, e->va, e->root), page_of(e), e->key, e->va,
                e->root) != NULL;
}

bool bpm_armset_check(const bpm_armset *s)
{
    if (!check_table(s) || s->n_log > BPM_ARMSET_LOG)
        return false;
    size_t live = s->table_live;
    unsigned adds = 0;
    for (unsigned i = 0; i < s->n_log; i++) {
        if (!(s->log_bits & log_bit(s->log_hash[i])))
            return false;
        const bpm_armset_slot *e = &s->log[i];
        bool del = e->id & BPM_ARMSET_DEL;
        if (s->log_hash[i] != hash_of(page_of(e), e->key, e->va, e->root) ||
            del == !!(e->id & BPM_ARMSET_LIVE) || present_before(s, i, e) != del)
            return false;
        live = del ? live - 1 : live + 1;
        adds += !del;
    }
    if (adds != s->n_log_adds || (adds && 4 * (s->table_live + adds) > 3 * s->n))
        return false; /* the logged adds must have their room */
    return live == s->live;
}
