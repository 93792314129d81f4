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
        const ptm_entry *e = g_hash_table_lookup(v->entries, &w->entry_pa[i]);
        CHECK(e && g_hash_table_contains(e->users, a),
              "address %#" PRIx64 ": entry %#" PRIx64 " does not list it", a->ctx.va,
              w->entry_pa[i]);
    }
    return true;
}

/* The entry's users name it exactly as often, at exactly the levels, it
 * counts; its table page is protected. Counts entries per table in per_table. */
static bool check_entry(const ptm_view *v, const ptm_entry *e, GHashTable *per_table)
{
    unsigned levels[4] = {0};
    GHashTableIter it;
    gpointer k, n;
    CHECK(g_hash_table_size(e->users) > 0, "entry %#" PRIx64 " has no user", e->pa);
    g_hash_table_iter_init(&it, e->users);
    while (g_hash_table_iter_next(&it, &k, &n)) {
        const ptm_addr *a = k;
        CHECK(g_hash_table_lookup(v->addrs, &a->ctx) == a, "entry %#" PRIx64 ": unknown user",
              e->pa);
        unsigned seen = 0;
        for (unsigned i = 0; i < a->walk.levels; i++) {
            if (a->walk.entry_pa[i] == e->pa) {
                seen++;
                levels[walk_level(i) - 1]++;
            }
        }
        CHECK(seen == GPOINTER_TO_UINT(n), "entry %#" PRIx64 ": wrong use count", e->pa);
    }
    CHECK(memcmp(levels, e->level_refs, sizeof levels) == 0,
          "entry %#" PRIx64 ": wrong level counts", e->pa);
    vmt_gfn gfn = vmt_gfn_from_pa(e->pa);
    const ptm_table *t = g_hash_table_lookup(v->tables, &gfn);
    CHECK(t && t->entries > 0, "entry %#" PRIx64 ": its table is not protected", e->pa);
    guint counted = GPOINTER_TO_UINT(g_hash_table_lookup(per_table, t));
    g_hash_table_insert(per_table, (gpointer)t, GUINT_TO_POINTER(counted + 1));
    return true;
}

static bool check_view(const ptm_view *v, size_t counts[3])
{
    GHashTableIter it;
    gpointer val;
    CHECK(g_hash_table_size(v->addrs) > 0 || g_hash_table_size(v->tables) > 0,
          "view %u is empty but kept", (unsigned)v->view);

    size_t in_view = 0, in_frames = 0;
    g_hash_table_iter_init(&it, v->addrs);
    while (g_hash_table_iter_next(&it, NULL, &val)) {
        const ptm_addr *a = val;
        if (!check_addr(v, a))
            return false;
        if (a->paged_in) {
            vmt_gfn gfn = vmt_gfn_from_pa(a->walk.pa);
            const ptm_frame *fr = g_hash_table_lookup(v->frames, &gfn);
            CHECK(fr && g_hash_table_contains(fr->addrs, a),
                  "address %#" PRIx64 " not in its frame", a->ctx.va);
            in_view++;
        }
    }
    g_hash_table_iter_init(&it, v->frames);
    while (g_hash_table_iter_next(&it, NULL, &val))
        in_frames += g_hash_table_size(((ptm_frame *)val)->addrs);
    CHECK(in_frames == in_view, "view %u: frames index holds %zu addresses, %zu paged in",
          (unsigned)v->view, in_frames, in_view);
    counts[2] += in_view;

    GHashTable *per_table = g_hash_table_new(g_direct_hash, NULL);
    bool ok = true;
    g_hash_table_iter_init(&it, v->entries);
    while (ok && g_hash_table_iter_next(&it, NULL, &val))
        ok = check_entry(v, val, per_table);
    counts[1] += g_hash_table_size(v->entries);

    size_t owed = 0;
    g_hash_table_iter_init(&it, v->tables);
    while (ok && g_hash_table_iter_next(&it, NULL, &val)) {
        const ptm_table *t = val;
        unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(per_table, t));
        if (n != t->entries) {
            vmt_log(VMT_LOG_ERROR, "ptm check: table %#" PRIx64 " counts %u entries, holds %u",
                    t->gfn, t->entries, n);
            ok = false;
        }
        owed += t->entries == 0;
        counts[0] += t->entries > 0;
    }
    g_hash_table_destroy(per_table);
    if (!ok)
        return false;
    CHECK(owed == v->owed, "view %u: %zu owed restores, counted %zu", (unsigned)v->view, owed,
          v->owed);

    GHashTableIter dit;
    gpointer set;
    g_hash_table_iter_init(&dit, v->dirty);
    while (g_hash_table_iter_next(&dit, NULL, &set)) {
        g_hash_table_iter_init(&it, set);
        while (g_hash_table_iter_next(&it, &val, NULL)) {
            const ptm_entry *e = val;
            CHECK(g_hash_table_lookup(v->entries, &e->pa) == e,
                  "view %u: dirty entry not monitored", (unsigned)v->view);
        }
    }
    return true;
}

vmt_status vmt_ptm_check(const vmt_ptm *ptm)
{
    if (!ptm)
        return VMT_E_INVALID;
    size_t counts[3] = {0, 0, 0}; /* tables, entries, paged in */
    GHashTableIter it;
    gpointer key, val;
    g_hash_table_iter_init(&it, ptm->views);
    while (g_hash_table_iter_next(&it, &key, &val)) {
        const ptm_view *v = val;
        if (GPOINTER_TO_UINT(key) != v->view || !check_view(v, counts)) {
            vmt_log(VMT_LOG_ERROR, "ptm check: view %u is inconsistent", GPOINTER_TO_UINT(key));
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
