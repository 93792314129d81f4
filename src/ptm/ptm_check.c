// SPDX-License-Identifier: MIT
/* The page-table monitor's consistency check: every index agrees with the
 * others. Used by the tests after every step, and after injected faults. */
#include <inttypes.h>
#include <string.h>

#include "core/amd64.h"
#include "ptm/ptm_impl.h"
#include "ptm/ptm_internal.h"
#include "vmitap/log.h"

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            vmt_log(VMT_LOG_ERROR, "ptm check: " __VA_ARGS__);                                     \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

#define VAL(t, i) ((t)->slots[i].val)

/* The recorded walk ends at a non-present entry or at a present leaf. */
static bool check_addr(const ptm_view *v, const ptm_addr *a)
{
    const vmt_walk *w = &a->walk;
    CHECK(a->refs > 0, "address %#" PRIx64 " has no reference", a->ctx.va);
    CHECK(w->levels >= 1 && w->levels <= 4, "address %#" PRIx64 ": walk of %u entries", a->ctx.va,
          w->levels);
    unsigned last = w->levels - 1;
    uint64_t leaf = w->entry[last];
    bool ends_at_leaf = vmt_amd64_present(leaf) && vmt_amd64_is_leaf(leaf, walk_level(last));
    CHECK(ends_at_leaf || !vmt_amd64_present(leaf), "address %#" PRIx64 ": walk stops early",
          a->ctx.va);
    CHECK(a->paged_in == ends_at_leaf, "address %#" PRIx64 ": paged_in disagrees with its walk",
          a->ctx.va);
    CHECK(!a->paged_in || w->pa == vmt_amd64_leaf_pa(leaf, walk_level(last), a->ctx.va),
          "address %#" PRIx64 ": wrong translation", a->ctx.va);
    for (unsigned i = 0; i < w->levels; i++) {
        const ptm_entry *e = vmt_htab_get(&v->entries, &w->entry_pa[i]);
        CHECK(e && vmt_htab_lookup(&e->users, a, NULL, NULL),
              "address %#" PRIx64 ": entry %#" PRIx64 " does not list it", a->ctx.va,
              w->entry_pa[i]);
    }
    return true;
}

/* The entry's users name it exactly as often, at exactly the levels, it
 * counts; its table page is protected. Counts entries per table in t->check
 * (a field of the table, for the check alone: no allocation here). */
static bool check_entry(const ptm_view *v, const ptm_entry *e)
{
    unsigned levels[4] = {0};
    CHECK(vmt_htab_size(&e->users) > 0, "entry %#" PRIx64 " has no user", e->pa);
    for (size_t j = 0; (j = vmt_htab_next(&e->users, j)) < e->users.n; j++) {
        const ptm_addr *a = e->users.slots[j].key;
        uintptr_t n = (uintptr_t)e->users.slots[j].val;
        CHECK(vmt_htab_get(&v->addrs, &a->ctx) == a, "entry %#" PRIx64 ": unknown user", e->pa);
        unsigned seen = 0;
        for (unsigned i = 0; i < a->walk.levels; i++) {
            if (a->walk.entry_pa[i] == e->pa) {
                seen++;
                levels[walk_level(i) - 1]++;
            }
        }
        CHECK(seen == n, "entry %#" PRIx64 ": wrong use count", e->pa);
    }
    CHECK(memcmp(levels, e->level_refs, sizeof levels) == 0,
          "entry %#" PRIx64 ": wrong level counts", e->pa);
    vmt_gfn gfn = vmt_gfn_from_pa(e->pa);
    ptm_table *t = vmt_htab_get(&v->tables, &gfn);
    CHECK(t && t->entries > 0, "entry %#" PRIx64 ": its table is not protected", e->pa);
    t->check++;
    CHECK(!e->dirty == (e->dirty_prev == NULL && e->dirty_next == NULL && v->dirty != e),
          "entry %#" PRIx64 ": dirty bits and dirty list disagree", e->pa);
    return true;
}

/* a is in its frame's list, which is in first-monitored order. */
static bool in_frame(const ptm_frame *fr, const ptm_addr *a)
{
    for (const ptm_addr *o = fr->addrs; o; o = o->frame_next) {
        if (o->frame_next && (o->frame_next->frame_prev != o || o->frame_next->seq <= o->seq))
            return false;
        if (o == a)
            return true;
    }
    return false;
}

static bool check_view(const ptm_view *v, size_t counts[3])
{
    CHECK(vmt_htab_size(&v->addrs) > 0 || vmt_htab_size(&v->tables) > 0,
          "view %u is empty but kept", (unsigned)v->view);

    size_t in_view = 0, in_frames = 0;
    for (size_t i = 0; (i = vmt_htab_next(&v->addrs, i)) < v->addrs.n; i++) {
        const ptm_addr *a = VAL(&v->addrs, i);
        if (!check_addr(v, a))
            return false;
        if (a->paged_in) {
            vmt_gfn gfn = vmt_gfn_from_pa(a->walk.pa);
            const ptm_frame *fr = vmt_htab_get(&v->frames, &gfn);
            CHECK(fr && in_frame(fr, a), "address %#" PRIx64 " not in its frame", a->ctx.va);
            in_view++;
        }
    }
    for (size_t i = 0; (i = vmt_htab_next(&v->frames, i)) < v->frames.n; i++) {
        const ptm_frame *fr = VAL(&v->frames, i);
        size_t n = 0;
        for (const ptm_addr *a = fr->addrs; a; a = a->frame_next)
            n++;
        CHECK(n == fr->n && n > 0, "frame %#" PRIx64 ": %zu addresses listed, %zu counted", fr->gfn,
              n, fr->n);
        in_frames += n;
    }
    CHECK(in_frames == in_view, "view %u: frames index holds %zu addresses, %zu paged in",
          (unsigned)v->view, in_frames, in_view);
    counts[2] += in_view;

    for (size_t i = 0; (i = vmt_htab_next(&v->tables, i)) < v->tables.n; i++)
        ((ptm_table *)VAL(&v->tables, i))->check = 0;
    for (size_t i = 0; (i = vmt_htab_next(&v->entries, i)) < v->entries.n; i++)
        if (!check_entry(v, VAL(&v->entries, i)))
            return false;
    counts[1] += vmt_htab_size(&v->entries);

    size_t owed = 0;
    for (size_t i = 0; (i = vmt_htab_next(&v->tables, i)) < v->tables.n; i++) {
        const ptm_table *t = VAL(&v->tables, i);
        CHECK(t->check == t->entries, "table %#" PRIx64 " counts %u entries, holds %u", t->gfn,
              t->entries, t->check);
        owed += t->entries == 0;
        counts[0] += t->entries > 0;
    }
    CHECK(owed == v->owed, "view %u: %zu owed restores, counted %zu", (unsigned)v->view, owed,
          v->owed);

    for (const ptm_entry *e = v->dirty; e; e = e->dirty_next) {
        CHECK(vmt_htab_get(&v->entries, &e->pa) == e, "view %u: dirty entry not monitored",
              (unsigned)v->view);
        CHECK(e->dirty && (!e->dirty_next || e->dirty_next->dirty_prev == e),
              "view %u: broken dirty list", (unsigned)v->view);
    }
    return true;
}

vmt_status vmt_ptm_check(const vmt_ptm *ptm)
{
    if (!ptm)
        return VMT_E_INVALID;
    size_t counts[3] = {0, 0, 0}; /* tables, entries, paged in */
    for (size_t i = 0; (i = vmt_htab_next(&ptm->views, i)) < ptm->views.n; i++) {
        const ptm_view *v = VAL(&ptm->views, i);
        if (ptm->views.slots[i].key != PTM_VIEW_KEY(v->view) || !check_view(v, counts)) {
            vmt_log(VMT_LOG_ERROR, "ptm check: view %u is inconsistent", (unsigned)v->view);
            return VMT_E_INVALID;
        }
    }
    if (counts[0] != ptm->tables || counts[1] != ptm->entries || counts[2] != ptm->paged_in) {
        vmt_log(VMT_LOG_ERROR, "ptm check: counters %zu/%zu/%zu, indexes %zu/%zu/%zu", ptm->tables,
                ptm->entries, ptm->paged_in, counts[0], counts[1], counts[2]);
        return VMT_E_INVALID;
    }
    return VMT_OK;
}
