// SPDX-License-Identifier: MIT
/* The pending index of one view: (va, root) -> the head of the chain of
 * claims pending at that ctx (one per key, linked by next_pending).
 *
 * Why not a GHashTable (measured, docs/PERFORMANCE.md W1): in a page-out
 * of every page followed by the page-ins, the index grows from empty to N
 * and back; a GHashTable shrinks on the way back, resizing (and faulting
 * in fresh arrays) over and over, and compares keys through the claim
 * (one more cache miss per probe). This table keeps (va, root) inline next
 * to the head pointer, never shrinks until freed, and removes by backward
 * shift (no tombstones). Open addressing, linear probing, load at most
 * 3/4, doubling; memory from tablemem.h (large tables prefaulted). */
#ifndef VMITAP_BPM_PENDMAP_H
#define VMITAP_BPM_PENDMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmitap/types.h"

typedef struct bpm_pendmap_slot {
    uint64_t va, root;
    void *head; /* NULL: empty slot */
} bpm_pendmap_slot;

typedef struct bpm_pendmap {
    bpm_pendmap_slot *slots; /* NULL until the first put */
    size_t n;                /* slots: 0 or a power of two */
    size_t live;
    void *mem;        /* the allocation slots lie in (tablemem.h) */
    size_t map_bytes; /* and how it was made */
} bpm_pendmap;

void bpm_pendmap_init(bpm_pendmap *m);
void bpm_pendmap_free(bpm_pendmap *m);
/* The head stored for (va, root), or NULL. */
void *bpm_pendmap_get(const bpm_pendmap *m, uint64_t va, uint64_t root);
/* Room for `extra` more entries: the next that many additions allocate
 * nothing and cannot fail. VMT_E_NOMEM: nothing changed. */
vmt_status bpm_pendmap_grow(bpm_pendmap *m, size_t extra);
static inline vmt_status bpm_pendmap_reserve(bpm_pendmap *m, size_t extra)
{
    if (__builtin_expect(extra <= m->n && 4 * (m->live + extra) <= 3 * m->n, 1))
        return VMT_OK;
    return bpm_pendmap_grow(m, extra);
}
/* Stores head (not NULL) for (va, root), adding or replacing. Replacing
 * never fails; adding grows the table if no room was reserved
 * (VMT_E_NOMEM: nothing changed). */
vmt_status bpm_pendmap_put(bpm_pendmap *m, uint64_t va, uint64_t root, void *head);
/* *found = the head stored for (va, root) if there is one (nothing
 * changes); otherwise stores head (not NULL) for it and *found = NULL. One
 * probe where a get and a put would make two (a page-out links every claim
 * of the page). Grows the table first if no room for one more was
 * reserved (VMT_E_NOMEM: nothing changed). */
vmt_status bpm_pendmap_get_or_put(bpm_pendmap *m, uint64_t va, uint64_t root, void *head,
                                  void **found);
/* Removes (va, root); false if absent. */
bool bpm_pendmap_del(bpm_pendmap *m, uint64_t va, uint64_t root);
/* Consistency for vmt_bpm_check (linear): counts, load, every entry found
 * from its home slot. */
bool bpm_pendmap_check(const bpm_pendmap *m);

static inline size_t bpm_pendmap_size(const bpm_pendmap *m)
{
    return m->live;
}

/* Starts loading the home slot of (va, root), for callers that know a
 * batch of keys ahead (a page-out links all its claims). */
void bpm_pendmap_prefetch(const bpm_pendmap *m, uint64_t va, uint64_t root);

/* Iteration: for (size_t i = 0; i < m->n; i++) if (m->slots[i].head) ... */

#endif /* VMITAP_BPM_PENDMAP_H */
