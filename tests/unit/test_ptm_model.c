// SPDX-License-Identifier: MIT
/* Model-based random test of the page-table monitor.
 *
 * A pool of table pages is wired at random into page tables (entries point
 * to other pool tables, to data frames, or are 2 MiB / 1 GiB leaves; cycles
 * and a page at several levels happen all the time). Random operations:
 * monitor / unmonitor / by_force / unmonitor_view / unmonitor_all in two
 * views, guest writes to entries (reported with mark_dirty_entry on a
 * random vCPU, then processed), and injected driver failures (followed by
 * a retry). After every step the monitor is compared with a model built
 * from scratch: a fresh walk of every monitored address gives what must be
 * monitored, write-protected, paged in and at which address; the events
 * received, applied in order to the previous model state, must give the
 * new one; every pool page not on a walk has its original access.
 *
 * The second test feeds the events to a breakpoint manager (with the bpm
 * tests' recording controller) holding one breakpoint per monitored
 * address, as the tracer does, and checks that the breakpoints armed are
 * exactly the monitored addresses paged in, at their translation.
 *
 * Every run draws fresh seeds and prints them; VMT_PTM_SEED replays the
 * first test, VMT_PTM_BPM_SEED the second. VMT_PTM_STEPS sets the number
 * of steps; VMT_UNDER_VALGRIND shortens the run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <glib.h>

#include "ptm/ptm_internal.h"
#include "model_walk.h"
#include "seeded.h"
#include "test_bpm_rec.h"
#include "vmitap/bpm.h"
#include "vmitap/mock.h"

#define MAX_GFN 0x1000u /* 16 MiB */
#define N_TABLES 20
#define N_ROOTS 3
#define N_DATA 8
#define N_PAGES (N_TABLES + N_DATA)
#define N_VAS 10
#define N_VIEWS 2
#define IDX 3 /* entries used per table: indexes 0..2, so walks collide */

typedef struct model_addr {
    unsigned refs;
    uintptr_t tag;
    bool in;
    vmt_pa pa;
    bool armed; /* as a per-frame consumer would have it */
    vmt_pa armed_pa;
} model_addr;

typedef struct world {
    vmt_core *vmi;
    vmt_mock *mock;
    vmt_ptm *ptm;
    vmt_pa page[N_PAGES]; /* tables first (roots among them), then data */
    vmt_va va[N_VAS];
    model_addr m[N_VIEWS][N_ROOTS][N_VAS];
    vmt_access original[N_VIEWS][N_PAGES];
    GHashTable *want_entries[N_VIEWS]; /* entry pas on monitored walks */
    GHashTable *want_pages[N_VIEWS];   /* their table pages */
    GHashTable *outside;               /* pages met on walks outside the pool */
    vmt_ptm_events ev;
    vmt_bpm *bpm; /* NULL: the ptm alone */
    rec_ctl *rec;
    uint64_t rng;
    unsigned long faults, events, writes, reannounced;
} world;

static uint64_t rnd(world *w)
{
    /* xorshift64*: small, seedable, good enough for choosing operations */
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * 0x2545f4914f6cdd1dull;
}

static unsigned pick(world *w, unsigned n)
{
    return (unsigned)(rnd(w) % n);
}

static vmt_pa root_of(const world *w, unsigned r)
{
    return w->page[r];
}

static vmt_addr_ctx ctx_of(const world *w, unsigned r, unsigned v)
{
    return vmt_ctx(w->va[v], root_of(w, r));
}

static void set_add(GHashTable *set, uint64_t x)
{
    uint64_t *k = g_new(uint64_t, 1);
    *k = x;
    g_hash_table_add(set, k);
}

static bool set_has(GHashTable *set, uint64_t x)
{
    return g_hash_table_contains(set, &x);
}

/* ---- the random page tables ---- */

static uint64_t random_entry(world *w)
{
    static const vmt_pa large[] = {0, 0x200000, 0x400000, 0x600000};
    unsigned kind = pick(w, 20);
    if (kind < 6) /* not present: zero, or a stale entry without P */
        return kind < 3 ? 0 : (w->page[pick(w, N_PAGES)] | VMT_PTE_W);
    if (kind < 14) /* a table */
        return w->page[pick(w, N_TABLES)] | VMT_PTE_P | VMT_PTE_W;
    if (kind < 17) /* a data frame (a 4 KiB leaf, or an empty table above level 1) */
        return w->page[N_TABLES + pick(w, N_DATA)] | VMT_PTE_P;
    /* a large leaf at levels 2 and 3 (PS means nothing at levels 4 and 1),
     * half of them with the PAT bit (12), which is no address bit there */
    return large[pick(w, 4)] | VMT_PTE_P | VMT_PTE_PS | (pick(w, 2) ? 1ull << 12 : 0);
}

static vmt_pa random_entry_pa(world *w)
{
    return w->page[pick(w, N_TABLES)] + 8 * (vmt_pa)pick(w, IDX);
}

static void world_init(world *w, uint64_t seed, bool with_bpm)
{
    memset(w, 0, sizeof *w);
    w->rng = seed ? seed : 1;
    if (with_bpm)
        assert_int_equal(vmt_bpm_new(rec_new(&w->rec), &w->bpm), VMT_OK);
    VMT_OPTS(vmt_mock_opts, o, .max_gfn = MAX_GFN, .vcpus = 2);
    assert_int_equal(vmt_mock_core_new(&o, &w->vmi, &w->mock), VMT_OK);
    assert_int_equal(vmt_ptm_new(&w->ptm), VMT_OK);
    vmt_view view;
    assert_int_equal(vmt_core_create_view(w->vmi, VMT_ACCESS_RWX, &view), VMT_OK);
    assert_int_equal(view, 1);
    for (int i = 0; i < N_TABLES; i++)
        assert_int_equal(vmt_mock_alloc_table(w->mock, &w->page[i]), VMT_OK);
    for (int i = 0; i < N_DATA; i++)
        w->page[N_TABLES + i] = 0x100000 + 0x1000 * (vmt_pa)i;
    /* Addresses whose indexes are all in 0..IDX-1 at every level. */
    for (int i = 0; i < N_VAS; i++) {
        vmt_va va = 0;
        for (int level = 4; level >= 1; level--)
            va |= (vmt_va)pick(w, IDX) << (12 + 9 * (level - 1));
        w->va[i] = va | (pick(w, 512) * 8);
    }
    /* Some pages start with an access of their own, to see it restored. */
    static const vmt_access some[] = {VMT_ACCESS_RWX, VMT_ACCESS_RWX, VMT_ACCESS_RX, VMT_ACCESS_RW};
    for (int v = 0; v < N_VIEWS; v++) {
        for (int p = 0; p < N_PAGES; p++) {
            vmt_access a = some[pick(w, 4)];
            assert_int_equal(
                vmt_core_set_access(w->vmi, vmt_gfn_from_pa(w->page[p]), (vmt_view)v, a, 0),
                VMT_OK);
            w->original[v][p] = a;
        }
        w->want_entries[v] = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
        w->want_pages[v] = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    }
    w->outside = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    for (int i = 0; i < N_TABLES; i++) {
        for (int k = 0; k < IDX; k++) {
            uint64_t e = random_entry(w);
            assert_int_equal(vmt_mock_poke(w->mock, w->page[i] + 8 * (vmt_pa)k, &e, sizeof e),
                             VMT_OK);
        }
    }
}

static void world_free(world *w)
{
    for (int v = 0; v < N_VIEWS; v++) {
        g_hash_table_destroy(w->want_entries[v]);
        g_hash_table_destroy(w->want_pages[v]);
    }
    g_hash_table_destroy(w->outside);
    vmt_ptm_events_free(&w->ev);
    vmt_bpm_free(w->bpm);
    vmt_ptm_free(w->ptm);
    vmt_core_free(w->vmi);
}

/* ---- the model ---- */

/* Applies the events received since `from` to the model, checking each
 * one makes sense in the state it finds. Besides the translation, the
 * model keeps what a consumer handling page-outs per frame (as the bpm
 * does) would have armed: a PAGE_OUT disarms every address of the view
 * armed on that frame, a PAGE_IN arms its address. After the batch, what
 * is armed must be exactly what is paged in. */
static void apply_events(world *w, size_t from)
{
    for (size_t i = from; i < w->ev.len; i++) {
        const vmt_ptm_event *e = &w->ev.items[i];
        int r = -1, v = -1;
        for (int k = 0; k < N_ROOTS; k++)
            if (root_of(w, (unsigned)k) == e->ctx.root)
                r = k;
        for (int k = 0; k < N_VAS; k++)
            if (w->va[k] == e->ctx.va)
                v = k;
        assert_true(r >= 0 && v >= 0 && e->view < N_VIEWS);
        model_addr *m = &w->m[e->view][r][v];
        assert_true(m->refs > 0);
        assert_int_equal(e->tag, m->tag);
        if (e->kind == VMT_PTM_PAGE_OUT) {
            assert_true(m->in);
            assert_int_equal(e->pa, m->pa);
            m->in = false;
            for (unsigned rr = 0; rr < N_ROOTS; rr++) {
                for (unsigned vv = 0; vv < N_VAS; vv++) {
                    model_addr *o = &w->m[e->view][rr][vv];
                    if (o->armed && vmt_gfn_from_pa(o->armed_pa) == vmt_gfn_from_pa(e->pa))
                        o->armed = false;
                }
            }
        } else {
            assert_int_equal(e->kind, VMT_PTM_PAGE_IN);
            if (m->in) { /* announced again after its frame went out */
                assert_int_equal(e->pa, m->pa);
                assert_false(m->armed);
                w->reannounced++;
            }
            m->in = true;
            m->pa = e->pa;
            m->armed = true;
            m->armed_pa = e->pa;
        }
        w->events++;
    }
    w->ev.len = 0;
    for (unsigned view = 0; view < N_VIEWS; view++) {
        for (unsigned r = 0; r < N_ROOTS; r++) {
            for (unsigned v = 0; v < N_VAS; v++) {
                const model_addr *m = &w->m[view][r][v];
                if (m->refs == 0)
                    continue;
                assert_int_equal(m->armed, m->in);
                if (m->in)
                    assert_int_equal(m->armed_pa, m->pa);
            }
        }
    }
}

/* Remembers a table page that is not one of the pool's. */
static void note_outside(world *w, vmt_pa page)
{
    for (unsigned p = 0; p < N_PAGES; p++)
        if (w->page[p] == page)
            return;
    if (!set_has(w->outside, page))
        set_add(w->outside, page);
}

/* The whole comparison; also recomputes want_entries / want_pages. */
static void check_world(world *w)
{
    assert_int_equal(vmt_ptm_check(w->ptm), VMT_OK);
    assert_int_equal(vmt_ptm_pending_restores(w->ptm), 0);
    size_t pages = 0, entries = 0, paged_in = 0;
    for (unsigned view = 0; view < N_VIEWS; view++) {
        g_hash_table_remove_all(w->want_entries[view]);
        g_hash_table_remove_all(w->want_pages[view]);
        for (unsigned r = 0; r < N_ROOTS; r++) {
            for (unsigned v = 0; v < N_VAS; v++) {
                const model_addr *m = &w->m[view][r][v];
                vmt_addr_ctx ctx = ctx_of(w, r, v);
                bool in = false;
                vmt_pa pa = 0;
                if (m->refs == 0) {
                    assert_false(vmt_ptm_lookup(w->ptm, ctx, (vmt_view)view, NULL, NULL, NULL));
                    continue;
                }
                model_walk walk;
                assert_int_equal(model_walk_va(w->mock, ctx, &walk), VMT_OK);
                assert_int_equal(m->in, walk.present);
                if (m->in)
                    assert_int_equal(m->pa, walk.pa);
                assert_true(vmt_ptm_lookup(w->ptm, ctx, (vmt_view)view, NULL, &in, &pa));
                assert_int_equal(in, m->in);
                if (in)
                    assert_int_equal(pa, m->pa);
                paged_in += in;
                for (unsigned i = 0; i < walk.levels; i++) {
                    set_add(w->want_entries[view], walk.entry_pa[i]);
                    set_add(w->want_pages[view], walk.entry_pa[i] & ~0xfffull);
                    note_outside(w, walk.entry_pa[i] & ~0xfffull);
                }
            }
        }
        pages += g_hash_table_size(w->want_pages[view]);
        entries += g_hash_table_size(w->want_entries[view]);
        for (unsigned p = 0; p < N_PAGES; p++) {
            vmt_access a;
            assert_int_equal(
                vmt_core_get_access(w->vmi, vmt_gfn_from_pa(w->page[p]), (vmt_view)view, &a),
                VMT_OK);
            vmt_access want =
                set_has(w->want_pages[view], w->page[p]) ? VMT_ACCESS_R : w->original[view][p];
            assert_int_equal(a, want);
        }
    }
    assert_int_equal(vmt_ptm_monitored_tables(w->ptm), pages);
    assert_int_equal(vmt_ptm_monitored_entries(w->ptm), entries);
    assert_int_equal(vmt_ptm_paged_in_entries(w->ptm), paged_in);
}

/* ---- the breakpoint manager, when there is one ---- */

static vmt_breakpoint bp_of(const world *w, unsigned view, unsigned r, unsigned v)
{
    vmt_breakpoint bp = {
        .ctx = ctx_of(w, r, v), .view = (vmt_view)view, .tag = w->m[view][r][v].tag};
    return bp;
}

/* Armed breakpoints are the monitored addresses paged in, at their pa. */
static void check_bpm(world *w)
{
    if (!w->bpm)
        return;
    assert_int_equal(vmt_bpm_check(w->bpm), VMT_OK);
    assert_int_equal(w->rec->violations, 0);
    assert_true(rec_matches_bpm(w->rec, w->bpm));
    GHashTable *traps = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    size_t in = 0, out = 0;
    for (unsigned view = 0; view < N_VIEWS; view++) {
        for (unsigned r = 0; r < N_ROOTS; r++) {
            for (unsigned v = 0; v < N_VAS; v++) {
                const model_addr *m = &w->m[view][r][v];
                if (m->refs == 0)
                    continue;
                if (!m->in) {
                    out++;
                    continue;
                }
                in++;
                assert_true(rec_has_trap(w->rec, (vmt_view)view, m->pa));
                set_add(traps, (uint64_t)view << 48 | m->pa);
            }
        }
    }
    assert_int_equal(rec_ntraps(w->rec), g_hash_table_size(traps));
    g_hash_table_destroy(traps);
    VMT_OPTS(vmt_bpm_stats, st);
    vmt_bpm_stats_get(w->bpm, &st);
    assert_int_equal(st.active, in);
    assert_int_equal(st.pending, out);
}

/* ---- operations ----
 *
 * One step in SWEEP_ONE_IN is swept: the operation is run with a driver
 * failure injected at call 1, then (from the same starting state) at call
 * 2, and so on, until it runs to completion without reaching the armed
 * call. After each failed call the whole state is compared with the model
 * before the call, or with the partial effect ptm.c documents (a failed
 * restore leaves the address gone and the page owed; a failed processing
 * call has applied, and reported, the changes before the failure), then
 * the call is retried, and the state before the call is rebuilt (by
 * monitoring again, or by writing the old entry back) for the next index. */
#define SWEEP_ONE_IN 6

static void fault_at(world *w, unsigned n)
{
    vmt_mock_fail_nth_any(w->mock, n, VMT_E_DRIVER);
}

/* Cancels the fault; true (and counted) if it fired. */
static bool fault_fired(world *w, uint64_t before)
{
    vmt_mock_fail_nth_any(w->mock, 0, VMT_OK);
    bool fired = vmt_mock_injected(w->mock) > before;
    w->faults += fired;
    return fired;
}

/* check_world, except that `owed` table pages may still be write-protected
 * although no walk needs them (their restore failed): exactly that many
 * pages, each at VMT_ACCESS_R, and the monitor must owe exactly that many. */
static void check_world_owed(world *w, size_t owed)
{
    assert_int_equal(vmt_ptm_check(w->ptm), VMT_OK);
    assert_int_equal(vmt_ptm_pending_restores(w->ptm), owed);
    size_t protected_extra = 0;
    for (unsigned view = 0; view < N_VIEWS; view++) {
        GHashTable *pages = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
        for (unsigned r = 0; r < N_ROOTS; r++) {
            for (unsigned v = 0; v < N_VAS; v++) {
                const model_addr *m = &w->m[view][r][v];
                bool in = false;
                vmt_pa pa = 0;
                vmt_addr_ctx ctx = ctx_of(w, r, v);
                if (m->refs == 0) {
                    assert_false(vmt_ptm_lookup(w->ptm, ctx, (vmt_view)view, NULL, NULL, NULL));
                    continue;
                }
                model_walk walk;
                assert_int_equal(model_walk_va(w->mock, ctx, &walk), VMT_OK);
                assert_true(vmt_ptm_lookup(w->ptm, ctx, (vmt_view)view, NULL, &in, &pa));
                assert_int_equal(in, walk.present);
                assert_int_equal(m->in, walk.present);
                if (in)
                    assert_int_equal(pa, walk.pa);
                for (unsigned i = 0; i < walk.levels; i++) {
                    set_add(pages, walk.entry_pa[i] & ~0xfffull);
                    note_outside(w, walk.entry_pa[i] & ~0xfffull);
                }
            }
        }
        for (unsigned p = 0; p < N_PAGES; p++) {
            vmt_access a;
            assert_int_equal(
                vmt_core_get_access(w->vmi, vmt_gfn_from_pa(w->page[p]), (vmt_view)view, &a),
                VMT_OK);
            if (set_has(pages, w->page[p])) {
                assert_int_equal(a, VMT_ACCESS_R);
            } else if (a != w->original[view][p]) {
                assert_int_equal(a, VMT_ACCESS_R);
                protected_extra++;
            }
        }
        /* Pages outside the pool (a large-page frame read as a table)
         * started with the view's default access, RWX. */
        GHashTableIter it;
        gpointer k;
        g_hash_table_iter_init(&it, w->outside);
        while (g_hash_table_iter_next(&it, &k, NULL)) {
            vmt_pa page = *(uint64_t *)k;
            vmt_access a;
            assert_int_equal(vmt_core_get_access(w->vmi, vmt_gfn_from_pa(page), (vmt_view)view, &a),
                             VMT_OK);
            if (set_has(pages, page)) {
                assert_int_equal(a, VMT_ACCESS_R);
            } else if (a != VMT_ACCESS_RWX) {
                assert_int_equal(a, VMT_ACCESS_R);
                protected_extra++;
            }
        }
        g_hash_table_destroy(pages);
    }
    assert_int_equal(protected_extra, owed);
}

/* After a failed processing call: every monitored address the monitor
 * knows is where the model (before the call, plus the events the call
 * reported) has it, and the indexes agree. */
static void check_partial(world *w)
{
    assert_int_equal(vmt_ptm_check(w->ptm), VMT_OK);
    for (unsigned view = 0; view < N_VIEWS; view++) {
        for (unsigned r = 0; r < N_ROOTS; r++) {
            for (unsigned v = 0; v < N_VAS; v++) {
                const model_addr *m = &w->m[view][r][v];
                bool in = false;
                vmt_pa pa = 0;
                bool known = vmt_ptm_lookup(w->ptm, ctx_of(w, r, v), (vmt_view)view, NULL, &in, &pa);
                assert_int_equal(known, m->refs > 0);
                if (!known)
                    continue;
                assert_int_equal(in, m->in);
                if (in)
                    assert_int_equal(pa, m->pa);
            }
        }
    }
}

/* Monitors (view, r, v) once more with tag, in the monitor and the model
 * (and the bpm when there is one), with no fault. */
static void monitor_once(world *w, unsigned view, unsigned r, unsigned v, uintptr_t tag)
{
    model_addr *m = &w->m[view][r][v];
    assert_int_equal(vmt_ptm_monitor(w->ptm, w->vmi, ctx_of(w, r, v), (vmt_view)view, tag),
                     VMT_OK);
    if (m->refs++ == 0) {
        model_walk walk;
        assert_int_equal(model_walk_va(w->mock, ctx_of(w, r, v), &walk), VMT_OK);
        m->tag = tag;
        m->in = walk.present;
        m->pa = m->in ? walk.pa : 0;
        m->armed = m->in;
        m->armed_pa = m->pa;
        if (w->bpm) {
            vmt_breakpoint bp = bp_of(w, view, r, v);
            bool inserted = false;
            assert_int_equal(vmt_bpm_insert(w->bpm, w->vmi, &bp, &inserted), VMT_OK);
            assert_true(inserted);
        }
    }
}

/* Rebuilds a saved model state of addresses (refs and tags) that an
 * unmonitoring removed. */
static void remonitor(world *w, model_addr (*saved)[N_ROOTS][N_VAS])
{
    for (unsigned view = 0; view < N_VIEWS; view++)
        for (unsigned r = 0; r < N_ROOTS; r++)
            for (unsigned v = 0; v < N_VAS; v++)
                while (w->m[view][r][v].refs < saved[view][r][v].refs)
                    monitor_once(w, view, r, v, saved[view][r][v].tag);
}

static void op_monitor(world *w)
{
    unsigned view = pick(w, N_VIEWS), r = pick(w, N_ROOTS), v = pick(w, N_VAS);
    uintptr_t tag = (uintptr_t)rnd(w);
    bool sweep = pick(w, SWEEP_ONE_IN) == 0;
    for (unsigned n = 1; sweep; n++) {
        uint64_t inj = vmt_mock_injected(w->mock);
        fault_at(w, n);
        vmt_status st = vmt_ptm_monitor(w->ptm, w->vmi, ctx_of(w, r, v), (vmt_view)view, tag);
        if (!fault_fired(w, inj)) {
            /* ran to completion before call n: undo it, monitor_once redoes it */
            assert_int_equal(st, VMT_OK);
            assert_int_equal(vmt_ptm_unmonitor(w->ptm, w->vmi, ctx_of(w, r, v), (vmt_view)view),
                             VMT_OK);
            break;
        }
        assert_int_equal(st, VMT_E_DRIVER);
        check_world(w); /* nothing changed */
    }
    monitor_once(w, view, r, v, tag);
}

/* Unmonitors (view, r, v) in the monitor and the model (and the bpm);
 * returns the monitor's status. */
static vmt_status unmonitor_once(world *w, unsigned view, unsigned r, unsigned v, bool force)
{
    model_addr *m = &w->m[view][r][v];
    vmt_addr_ctx ctx = ctx_of(w, r, v);
    vmt_status st = force ? vmt_ptm_unmonitor_by_force(w->ptm, w->vmi, ctx, (vmt_view)view)
                          : vmt_ptm_unmonitor(w->ptm, w->vmi, ctx, (vmt_view)view);
    bool dropped = m->refs == 1 || (m->refs > 0 && force);
    if (m->refs > 0)
        m->refs = force ? 0 : m->refs - 1;
    if (m->refs == 0)
        m->in = m->armed = false;
    if (dropped && w->bpm) {
        vmt_breakpoint bp = bp_of(w, view, r, v);
        bool removed = false;
        assert_int_equal(vmt_bpm_remove(w->bpm, w->vmi, &bp, &removed), VMT_OK);
        assert_true(removed);
    }
    return st;
}

static void op_unmonitor(world *w, bool force)
{
    unsigned view = pick(w, N_VIEWS), r = pick(w, N_ROOTS), v = pick(w, N_VAS);
    bool sweep = pick(w, SWEEP_ONE_IN) == 0;
    static model_addr saved[N_VIEWS][N_ROOTS][N_VAS];
    memcpy(saved, w->m, sizeof saved);
    for (unsigned n = 1;; n++) {
        uint64_t inj = vmt_mock_injected(w->mock);
        if (sweep)
            fault_at(w, n);
        vmt_status st = unmonitor_once(w, view, r, v, force);
        if (!sweep || !fault_fired(w, inj)) {
            assert_int_equal(st, VMT_OK);
            return;
        }
        /* Only a restore can fail: the address is gone, the page owed. */
        assert_int_equal(st, VMT_E_DRIVER);
        assert_int_equal(w->m[view][r][v].refs, 0);
        check_world_owed(w, 1);
        check_bpm(w);
        /* The retry is a no-op for the address and pays the debt. */
        assert_int_equal(vmt_ptm_unmonitor(w->ptm, w->vmi, ctx_of(w, r, v), (vmt_view)view),
                         VMT_OK);
        check_world(w);
        remonitor(w, saved);
        check_world(w);
    }
}

static void forget_view(world *w, unsigned view)
{
    memset(w->m[view], 0, sizeof w->m[view]);
}

static void op_unmonitor_many(world *w)
{
    bool one_view = pick(w, 2);
    unsigned view = pick(w, N_VIEWS);
    bool sweep = pick(w, SWEEP_ONE_IN) == 0;
    static model_addr saved[N_VIEWS][N_ROOTS][N_VAS];
    memcpy(saved, w->m, sizeof saved);
    for (unsigned n = 1;; n++) {
        uint64_t inj = vmt_mock_injected(w->mock);
        if (sweep)
            fault_at(w, n);
        if (one_view) {
            vmt_ptm_unmonitor_view(w->ptm, w->vmi, (vmt_view)view);
            forget_view(w, view);
            bool removed;
            if (w->bpm)
                assert_int_equal(vmt_bpm_remove_by_view(w->bpm, w->vmi, (vmt_view)view, &removed),
                                 VMT_OK);
        } else {
            vmt_ptm_unmonitor_all(w->ptm, w->vmi);
            for (unsigned vw = 0; vw < N_VIEWS; vw++)
                forget_view(w, vw);
            if (w->bpm)
                assert_int_equal(vmt_bpm_clear(w->bpm, w->vmi), VMT_OK);
        }
        if (!sweep || !fault_fired(w, inj))
            return;
        /* No status to report it: every address is gone, the failed page
         * is owed, and processing pays the debt. */
        check_world_owed(w, vmt_ptm_pending_restores(w->ptm));
        assert_true(vmt_ptm_pending_restores(w->ptm) > 0);
        check_bpm(w);
        vmt_ptm_events none = {0};
        assert_int_equal(vmt_ptm_process_dirty_entries(w->ptm, w->vmi, 0, &none), VMT_OK);
        assert_int_equal(none.len, 0);
        vmt_ptm_events_free(&none);
        check_world(w);
        remonitor(w, saved);
        check_world(w);
    }
}

/* Writes e at epa and marks it dirty in every view where it is monitored,
 * as the tracer does after a trapped write by vcpu. */
static void guest_write(world *w, vmt_pa epa, uint64_t e, vmt_vcpu vcpu)
{
    assert_int_equal(vmt_mock_poke(w->mock, epa, &e, sizeof e), VMT_OK);
    for (unsigned view = 0; view < N_VIEWS; view++) {
        vmt_pa at = epa + (pick(w, 2) ? 4 : 0); /* either half of the entry */
        assert_int_equal(vmt_ptm_mark_dirty_entry(w->ptm, at, (vmt_view)view, vcpu),
                         set_has(w->want_entries[view], epa));
    }
}

/* Processes vcpu's dirty entries with no fault and applies the events. */
static void process_all(world *w, vmt_vcpu vcpu)
{
    assert_int_equal(vmt_ptm_process_dirty_entries(w->ptm, w->vmi, vcpu, &w->ev), VMT_OK);
    if (w->bpm)
        assert_int_equal(vmt_bpm_handle_ptm_events(w->bpm, w->vmi, w->ev.items, w->ev.len, NULL),
                         VMT_OK);
    apply_events(w, 0);
}

/* A guest write to an entry in a pool table, seen by a random vCPU. */
static void op_write(world *w)
{
    vmt_pa epa = random_entry_pa(w);
    uint64_t e = random_entry(w), old;
    vmt_vcpu vcpu = (vmt_vcpu)pick(w, 2);
    assert_int_equal(vmt_mock_peek(w->mock, epa, &old, sizeof old), VMT_OK);
    guest_write(w, epa, e, vcpu);
    /* The other vCPU has nothing to do. */
    if (pick(w, 4) == 0) {
        assert_int_equal(
            vmt_ptm_process_dirty_entries(w->ptm, w->vmi, (vmt_vcpu)(1 - vcpu), &w->ev), VMT_OK);
        assert_int_equal(w->ev.len, 0);
    }
    bool sweep = pick(w, SWEEP_ONE_IN) == 0;
    for (unsigned n = 1; sweep; n++) {
        uint64_t inj = vmt_mock_injected(w->mock);
        fault_at(w, n);
        vmt_status st = vmt_ptm_process_dirty_entries(w->ptm, w->vmi, vcpu, &w->ev);
        if (!fault_fired(w, inj)) {
            assert_int_equal(st, VMT_OK);
            if (w->bpm)
                assert_int_equal(
                    vmt_bpm_handle_ptm_events(w->bpm, w->vmi, w->ev.items, w->ev.len, NULL),
                    VMT_OK);
            apply_events(w, 0);
            w->writes++;
            return;
        }
        if (st == VMT_OK) { /* only a restore failed: owed, and done */
            if (w->bpm)
                assert_int_equal(
                    vmt_bpm_handle_ptm_events(w->bpm, w->vmi, w->ev.items, w->ev.len, NULL),
                    VMT_OK);
            apply_events(w, 0);
            check_world_owed(w, vmt_ptm_pending_restores(w->ptm));
            process_all(w, vcpu); /* pays the debt */
        } else {
            assert_int_equal(st, VMT_E_DRIVER);
            /* The changes applied before the failure, and only they, were
             * reported: the model plus those events is the monitor. */
            if (w->bpm)
                assert_int_equal(
                    vmt_bpm_handle_ptm_events(w->bpm, w->vmi, w->ev.items, w->ev.len, NULL),
                    VMT_OK);
            apply_events(w, 0);
            check_partial(w);
            check_bpm(w);
            process_all(w, vcpu); /* finishes the job */
        }
        check_world(w);
        check_bpm(w);
        /* Back to the state before the call: the old entry written back. */
        guest_write(w, epa, old, vcpu);
        process_all(w, vcpu);
        check_world(w);
        check_bpm(w);
        guest_write(w, epa, e, vcpu);
    }
    process_all(w, vcpu);
    w->writes++;
}

static void step(world *w)
{
    unsigned op = pick(w, 100);
    if (op < 22)
        op_monitor(w);
    else if (op < 32)
        op_unmonitor(w, false);
    else if (op < 36)
        op_unmonitor(w, true);
    else if (op < 38)
        op_unmonitor_many(w);
    else
        op_write(w);
    check_world(w);
    check_bpm(w);
}

static void run_random(const char *name, const char *seed_env, bool with_bpm)
{
    const char *e = getenv("VMT_PTM_STEPS");
    uint64_t steps_default = e && *e ? strtoull(e, NULL, 0) : 20000;
    uint64_t steps;
    uint64_t seed = random_run_start(name, seed_env, steps_default, 1500, &steps);
    fflush(stdout);
    world *w = malloc(sizeof *w);
    assert_non_null(w);
    world_init(w, seed, with_bpm);
    check_world(w);
    for (uint64_t i = 0; i < steps; i++)
        step(w);
    vmt_ptm_unmonitor_all(w->ptm, w->vmi);
    for (unsigned view = 0; view < N_VIEWS; view++)
        forget_view(w, view);
    if (w->bpm)
        assert_int_equal(vmt_bpm_clear(w->bpm, w->vmi), VMT_OK);
    check_world(w);
    check_bpm(w);
    printf("%s: %lu guest writes, %lu events (%lu announced again), %lu injected faults\n", name,
           w->writes, w->events, w->reannounced, w->faults);
    assert_true(w->events > 0);
    world_free(w);
    free(w);
}

static void test_ptm_random(void **state)
{
    (void)state;
    run_random("test_ptm_random", "VMT_PTM_SEED", false);
}

static void test_ptm_bpm_random(void **state)
{
    (void)state;
    run_random("test_ptm_bpm_random", "VMT_PTM_BPM_SEED", true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ptm_random),
        cmocka_unit_test(test_ptm_bpm_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
