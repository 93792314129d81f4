// SPDX-License-Identifier: MIT
/* The pending index of a view (pendmap.h). */

#include "bpm/pendmap.h"
#include "bpm/tablemem.h"

#define MIN_SLOTS 16u

static inline size_t home(const bpm_pendmap *m, uint64_t va, uint64_t root)
{
    uint64_t x = va ^ (root * 0x9e3779b97f4a7c15ull);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)x & (m->n - 1);
}

static inline size_t next(const bpm_pendmap *m, size_t i)
{
    return (i + 1) & (m->n - 1);
}

void bpm_pendmap_init(bpm_pendmap *m)
{
    m->slots = NULL;
    m->n = 0;
    m->live = 0;
    m->mem = NULL;
    m->map_bytes = 0;
}

void bpm_pendmap_free(bpm_pendmap *m)
{
    bpm_table_release(m->mem, m->map_bytes);
    bpm_pendmap_init(m);
}

static bpm_pendmap_slot *find(const bpm_pendmap *m, uint64_t va, uint64_t root)
{
    if (!m->n)
        return NULL;
    for (size_t i = home(m, va, root);; i = next(m, i)) {
        bpm_pendmap_slot *sl = &m->slots[i];
        if (!sl->head)
            return NULL;
        if (sl->va == va && sl->root == root)
            return sl;
    }
}

void *bpm_pendmap_get(const bpm_pendmap *m, uint64_t va, uint64_t root)
{
    const bpm_pendmap_slot *sl = find(m, va, root);
    return sl ? sl->head : NULL;
}

void bpm_pendmap_prefetch(const bpm_pendmap *m, uint64_t va, uint64_t root)
{
    if (m->n)
        __builtin_prefetch(&m->slots[home(m, va, root)], 1);
}

static vmt_status grow(bpm_pendmap *m, size_t n)
{
    bpm_pendmap old = *m;
    void *mem;
    size_t map_bytes;
    if (n > SIZE_MAX / sizeof(bpm_pendmap_slot))
        return VMT_E_NOMEM;
    bpm_pendmap_slot *slots = bpm_table_alloc(n * sizeof(bpm_pendmap_slot), &mem, &map_bytes);
    if (!slots)
        return VMT_E_NOMEM;
    m->n = n;
    m->slots = slots;
    m->mem = mem;
    m->map_bytes = map_bytes;
    for (size_t i = 0; i < old.n; i++) {
        const bpm_pendmap_slot *o = &old.slots[i];
        if (!o->head)
            continue;
        size_t j = home(m, o->va, o->root);
        while (m->slots[j].head)
            j = next(m, j);
        m->slots[j] = *o;
    }
    bpm_table_release(old.mem, old.map_bytes);
    return VMT_OK;
}

/* Load at most 3/4; doubling. (bpm_pendmap_reserve checks first.) */
vmt_status bpm_pendmap_grow(bpm_pendmap *m, size_t extra)
{
    size_t n = m->n ? m->n : MIN_SLOTS;
    if (extra > SIZE_MAX / 8 - m->live)
        return VMT_E_NOMEM;
    while (4 * (m->live + extra) > 3 * n)
        n *= 2;
    return n == m->n ? VMT_OK : grow(m, n);
}

vmt_status bpm_pendmap_put(bpm_pendmap *m, uint64_t va, uint64_t root, void *head)
{
    bpm_pendmap_slot *sl = find(m, va, root);
    if (sl) {
        sl->head = head;
        return VMT_OK;
    }
    vmt_status st = bpm_pendmap_reserve(m, 1);
    if (st != VMT_OK)
        return st;
    size_t i = home(m, va, root);
    while (m->slots[i].head)
        i = next(m, i);
    m->slots[i] = (bpm_pendmap_slot){va, root, head};
    m->live++;
    return VMT_OK;
}

vmt_status bpm_pendmap_get_or_put(bpm_pendmap *m, uint64_t va, uint64_t root, void *head,
                                  void **found)
{
    vmt_status st = bpm_pendmap_reserve(m, 1);
    if (st != VMT_OK)
        return st;
    size_t i = home(m, va, root);
    for (; m->slots[i].head; i = next(m, i))
        if (m->slots[i].va == va && m->slots[i].root == root) {
            *found = m->slots[i].head;
            return VMT_OK;
        }
    m->slots[i] = (bpm_pendmap_slot){va, root, head};
    m->live++;
    *found = NULL;
    return VMT_OK;
}

/* Backward shift: later slots of the probe run whose home is not inside
 * the gap move back into the hole, so every run still ends at an empty
 * slot and no tombstone is needed. */
bool bpm_pendmap_del(bpm_pendmap *m, uint64_t va, uint64_t root)
{
    bpm_pendmap_slot *sl = find(m, va, root);
    if (!sl)
        return false;
    size_t hole = (size_t)(sl - m->slots);
    for (size_t j = next(m, hole); m->slots[j].head; j = next(m, j)) {
        size_t h = home(m, m->slots[j].va, m->slots[j].root);
        bool home_in_gap = hole <= j ? (hole < h && h <= j) : (hole < h || h <= j);
        if (!home_in_gap) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].head = NULL;
    m->live--;
    return true;
}

bool bpm_pendmap_check(const bpm_pendmap *m)
{
    if (!m->slots)
        return m->n == 0 && m->live == 0;
    if (m->n < MIN_SLOTS || (m->n & (m->n - 1)) || 4 * m->live > 3 * m->n)
        return false;
    size_t live = 0;
    for (size_t i = 0; i < m->n; i++) {
        const bpm_pendmap_slot *sl = &m->slots[i];
        if (!sl->head)
            continue;
        if (find(m, sl->va, sl->root) != sl)
            return false;
        live++;
    }
    return live == m->live;
}
