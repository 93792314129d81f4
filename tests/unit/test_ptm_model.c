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
 * VMT_PTM_SEED sets the seed; VMT_PTM_STEPS the number of steps;
 * VMT_UNDER_VALGRIND shortens the run. */
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
    /* a large leaf at levels 2 and 3 (PS means nothing at levels 4 and 1) */
    return large[pick(w, 4)] | VMT_PTE_P | VMT_PTE_PS;
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
                vmt_walk walk;
                vmt_status st = vmt_core_walk(w->vmi, ctx, &walk);
                assert_true(st == VMT_OK || st == VMT_E_TRANSLATION);
                assert_int_equal(m->in, st == VMT_OK);
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

/* ---- operations ---- */

/* Arms a driver failure for the next operation, one time in five. */
static bool maybe_fault(world *w)
{
    if (pick(w, 5) != 0)
        return false;
    vmt_mock_fail_nth_any(w->mock, 1 + pick(w, 8), VMT_E_DRIVER);
    return true;
}

static bool fault_fired(world *w, bool armed, uint64_t before)
{
    if (!armed)
        return false;
    vmt_mock_fail_nth_any(w->mock, 0, VMT_OK);
    bool fired = vmt_mock_injected(w->mock) > before;
    w->faults += fired;
    return fired;
}

static void op_monitor(world *w)
{
    unsigned view = pick(w, N_VIEWS), r = pick(w, N_ROOTS), v = pick(w, N_VAS);
    model_addr *m = &w->m[view][r][v];
    uintptr_t tag = (uintptr_t)rnd(w);
    uint64_t inj = vmt_mock_injected(w->mock);
    bool armed = maybe_fault(w);
    vmt_status st = vmt_ptm_monitor(w->ptm, w->vmi, ctx_of(w, r, v), (vmt_view)view, tag);
    if (fault_fired(w, armed, inj) && st != VMT_OK) {
        assert_int_equal(st, VMT_E_DRIVER);
        check_world(w); /* nothing changed */
        st = vmt_ptm_monitor(w->ptm, w->vmi, ctx_of(w, r, v), (vmt_view)view, tag);
    }
    assert_int_equal(st, VMT_OK);
    if (m->refs++ == 0) {
        vmt_walk walk;
        vmt_status ws = vmt_core_walk(w->vmi, ctx_of(w, r, v), &walk);
        m->tag = tag;
        m->in = ws == VMT_OK;
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

static void op_unmonitor(world *w, bool force)
{
    unsigned view = pick(w, N_VIEWS), r = pick(w, N_ROOTS), v = pick(w, N_VAS);
    model_addr *m = &w->m[view][r][v];
    vmt_addr_ctx ctx = ctx_of(w, r, v);
    uint64_t inj = vmt_mock_injected(w->mock);
    bool armed = maybe_fault(w);
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
    if (fault_fired(w, armed, inj) && st != VMT_OK) {
        /* Only a restore can fail: the address is gone, the page owed;
         * the retry is a no-op for the address and pays the debt. */
        assert_int_equal(st, VMT_E_DRIVER);
        assert_int_equal(m->refs, 0);
        assert_int_equal(vmt_ptm_pending_restores(w->ptm), 1);
        st = vmt_ptm_unmonitor(w->ptm, w->vmi, ctx, (vmt_view)view);
    }
    assert_int_equal(st, VMT_OK);
}

static void forget_view(world *w, unsigned view)
{
    memset(w->m[view], 0, sizeof w->m[view]);
}

static void op_unmonitor_many(world *w)
{
    uint64_t inj = vmt_mock_injected(w->mock);
    bool armed = maybe_fault(w);
    if (pick(w, 2)) {
        unsigned view = pick(w, N_VIEWS);
        vmt_ptm_unmonitor_view(w->ptm, w->vmi, (vmt_view)view);
        forget_view(w, view);
        bool removed;
        if (w->bpm)
            assert_int_equal(vmt_bpm_remove_by_view(w->bpm, w->vmi, (vmt_view)view, &removed),
                             VMT_OK);
    } else {
        vmt_ptm_unmonitor_all(w->ptm, w->vmi);
        for (unsigned view = 0; view < N_VIEWS; view++)
            forget_view(w, view);
        if (w->bpm)
            assert_int_equal(vmt_bpm_clear(w->bpm, w->vmi), VMT_OK);
    }
    if (fault_fired(w, armed, inj)) {
        /* No status to report it: the debt stays, processing pays it. */
        vmt_ptm_events none = {0};
        assert_int_equal(vmt_ptm_process_dirty_entries(w->ptm, w->vmi, 0, &none), VMT_OK);
        assert_int_equal(none.len, 0);
        vmt_ptm_events_free(&none);
    }
}

/* A guest write to an entry in a pool table, seen by a random vCPU. */
static void op_write(world *w)
{
    vmt_pa epa = random_entry_pa(w);
    uint64_t e = random_entry(w);
    vmt_vcpu vcpu = (vmt_vcpu)pick(w, 2);
    assert_int_equal(vmt_mock_poke(w->mock, epa, &e, sizeof e), VMT_OK);
    for (unsigned view = 0; view < N_VIEWS; view++) {
        vmt_pa at = epa + (pick(w, 2) ? 4 : 0); /* either half of the entry */
        assert_int_equal(vmt_ptm_mark_dirty_entry(w->ptm, at, (vmt_view)view, vcpu),
                         set_has(w->want_entries[view], epa));
    }
    /* The other vCPU has nothing to do. */
    if (pick(w, 4) == 0) {
        assert_int_equal(
            vmt_ptm_process_dirty_entries(w->ptm, w->vmi, (vmt_vcpu)(1 - vcpu), &w->ev), VMT_OK);
        assert_int_equal(w->ev.len, 0);
    }
    uint64_t inj = vmt_mock_injected(w->mock);
    bool armed = maybe_fault(w);
    vmt_status st = vmt_ptm_process_dirty_entries(w->ptm, w->vmi, vcpu, &w->ev);
    if (fault_fired(w, armed, inj) && st != VMT_OK) {
        assert_int_equal(st, VMT_E_DRIVER);
        assert_int_equal(vmt_ptm_check(w->ptm), VMT_OK);
        st = vmt_ptm_process_dirty_entries(w->ptm, w->vmi, vcpu, &w->ev); /* appends */
    }
    assert_int_equal(st, VMT_OK);
    if (w->bpm)
        assert_int_equal(vmt_bpm_handle_ptm_events(w->bpm, w->vmi, w->ev.items, w->ev.len, NULL),
                         VMT_OK);
    apply_events(w, 0);
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

static uint64_t env_u64(const char *name, uint64_t fallback)
{
    const char *s = getenv(name);
    return s && *s ? strtoull(s, NULL, 0) : fallback;
}

static void run_random(const char *name, bool with_bpm)
{
    uint64_t seed = env_u64("VMT_PTM_SEED", (uint64_t)time(NULL));
    unsigned long steps =
        (unsigned long)env_u64("VMT_PTM_STEPS", getenv("VMT_UNDER_VALGRIND") ? 1500 : 20000);
    printf("%s: seed %llu (VMT_PTM_SEED), %lu steps\n", name, (unsigned long long)seed, steps);
    world *w = malloc(sizeof *w);
    assert_non_null(w);
    world_init(w, seed, with_bpm);
    check_world(w);
    for (unsigned long i = 0; i < steps; i++)
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
    run_random("test_ptm_random", false);
}

static void test_ptm_bpm_random(void **state)
{
    (void)state;
    run_random("test_ptm_bpm_random", true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ptm_random),
        cmocka_unit_test(test_ptm_bpm_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
