// SPDX-License-Identifier: MIT
/* The armed set: every (claim, frame) pair the breakpoint manager has
 * armed, with the claim's identity inline, for vmt_bpm_contains_by_event.
 *
 * Why not a GHashTable: at N = 131072 breakpoints and beyond, the claims
 * index lookup of contains_by_event made three dependent cache misses in a
 * row (GHashTable hash slot, key slot, then the claim itself to check its
 * view and armed frame), 110-140 ns at N = 131072 and about 210 ns at 1M
 * (docs/PERFORMANCE.md, W1). Here a slot holds everything the question
 * "is key's claim at (va, root) armed on frame gfn of view?" needs, so a
 * lookup reads one 32-byte slot (slots are line-aligned, two per line)
 * and, at the load kept (at most 3/4), rarely the next one.
 *
 * Growth is done ahead, by bpm_armset_reserve, never when the log is
 * applied: the table always has room at load 3/4 for its pairs plus the
 * logged adds, so that adding (logging) and applying never allocate and
 * cannot fail, and the manager reserves before it changes the guest.
 *
 * Open addressing with linear probing; a deletion shifts the rest of its
 * probe run back (no tombstones); the table grows when the live pairs pass
 * 3/4 of the slots and never shrinks until freed. The number of slots is not
 * a power of two: a hash is mapped to a slot by a multiply-shift, and a
 * growing rehash sizes the table to twice the live pairs (1.5x growth),
 * so it costs 43..64 bytes per pair rather than 64 at N = 2^17 exactly.
 *
 * Changes are logged first and applied in batches of BPM_ARMSET_LOG / 2,
 * oldest first, when the log fills: logging one prefetches its slot, so
 * that by the time it is applied (at least BPM_ARMSET_LOG / 2 changes
 * later) the slot's cache miss has overlapped with the misses of the others
 * and with the manager's other work, instead of stalling its own operation
 * (every arm and disarm changes the set). Lookups consult the log first,
 * behind a 64-bit filter of the logged hashes.
 *
 * The set holds each pair at most once: the caller adds a pair only when
 * it is not in the set and removes only one that is (vmt_bpm_check
 * verifies the set against the other indexes). */
#ifndef VMITAP_BPM_ARMSET_H
#define VMITAP_BPM_ARMSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmitap/types.h"

typedef struct bpm_armset_slot {
    uint64_t id; /* page id (view << 48 | gfn) | flags below; 0: empty */
    uint64_t key;
    uint64_t va;
    uint64_t root;
} bpm_armset_slot;

#define BPM_ARMSET_LOG 16

typedef struct bpm_armset {
    bpm_armset_slot *slots; /* n slots, 64-byte aligned; NULL until first applied add */
    void *mem;              /* the allocation slots lie in */
    size_t n;               /* slots (even, at most 2^32) */
    size_t table_live;      /* live slots in the table */
    size_t live;            /* pairs in the set: table_live plus the log's net change */
    size_t map_bytes;       /* mem is an mmap of this size (0: from calloc) */
    unsigned n_log;
    unsigned n_log_adds; /* adds among the logged changes */
    uint64_t log_bits; /* bit (hash >> 58) of each logged pair: most lookups skip the log */
    uint64_t log_hash[BPM_ARMSET_LOG];
    bpm_armset_slot log[BPM_ARMSET_LOG]; /* id has LIVE for an add, DEL for a removal */
} bpm_armset;

/* Gfns are below 2^40 (physical addresses below 2^52), so bits 40-47 of a
 * page id are free for the slot's state. */
#define BPM_ARMSET_LIVE (1ull << 47)
#define BPM_ARMSET_GLOBAL (1ull << 46)
#define BPM_ARMSET_DEL (1ull << 44)  /* a logged removal */
#define BPM_ARMSET_FLAGS (0xffull << 40)

#define BPM_ARMSET_MIN_SLOTS 16u /* 512 bytes */

void bpm_armset_init(bpm_armset *s);
void bpm_armset_free(bpm_armset *s);

/* Room for `extra` more adds: the next that many bpm_armset_add cannot
 * fail. VMT_E_NOMEM (out of memory, or beyond 2^32 slots): nothing
 * changed. */
vmt_status bpm_armset_grow(bpm_armset *s, size_t extra);
static inline vmt_status bpm_armset_reserve(bpm_armset *s, size_t extra)
{
    size_t need = s->table_live + s->n_log_adds + extra; /* no overflow: all below 2^40 */
    if (__builtin_expect(s->slots && extra <= 64 && 4 * need <= 3 * s->n, 1))
        return VMT_OK;
    return bpm_armset_grow(s, extra);
}
/* Adds a pair not in the set, into room reserved by bpm_armset_reserve.
 * page_id as bpm_page_id(); gfn < 2^40. */
void bpm_armset_add(bpm_armset *s, uint64_t page_id, bool global, uint64_t key, uint64_t va,
                    uint64_t root);
/* Removes a pair that is in the set. */
void bpm_armset_del(bpm_armset *s, uint64_t page_id, uint64_t key, uint64_t va, uint64_t root);
/* Whether the pair is in the set (global_only: and was added as global). */
bool bpm_armset_has(const bpm_armset *s, uint64_t page_id, uint64_t key, uint64_t va,
                    uint64_t root, bool global_only);
/* Applies the logged changes to the table (also done when the log fills). */
void bpm_armset_flush(bpm_armset *s);

/* Internal consistency, for vmt_bpm_check and tests (linear time): the
 * counts match the slots and the log, the load is within bounds, every
 * live slot is found by a lookup (no empty slot on its probe path, no
 * duplicate before it), and every logged change is consistent with the
 * table (an add of a pair not there yet, a removal of one that is). */
bool bpm_armset_check(const bpm_armset *s);

static inline size_t bpm_armset_size(const bpm_armset *s)
{
    return s->live;
}
static inline size_t bpm_armset_capacity(const bpm_armset *s)
{
    return s->n;
}

#endif /* VMITAP_BPM_ARMSET_H */
