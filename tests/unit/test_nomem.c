// SPDX-License-Identifier: MIT
/* Out of memory (issue 13): every allocation of a representative operation
 * fails in turn, through the allocator hook of core/alloc.h.
 *
 * For each scenario (a setup, then one operation) and each N = 1, 2, ...:
 * a fresh world runs the setup with no fault, the Nth allocation of the
 * operation is made to fail, and then
 *   - the operation returns VMT_E_NOMEM,
 *   - vmt_bpm_check passes,
 *   - the whole observable state equals the state before the call: the
 *     manager's armed and pending claims and stats, and for every test
 *     frame in every view what the guest reads there, the frame the view
 *     maps there, its access rights, the raw frame and the shadow frames
 *     handed out;
 *     (or, for an operation whose header documents a partial effect, the
 *     state that effect leaves: vmt_bpm_handle_ptm_events keeps the events
 *     before the failing one applied);
 *   - the same operation, run again with no fault, succeeds and leaves the
 *     state a fault-free run leaves.
 * The tracer's event handling cannot give the guest its event back: there
 * each fault must be reported (VMT_E_NOMEM from vmt_tracer_run, or for a
 * rebuild of a written code page, which the tracer only logs, VMT_OK),
 * and the same events delivered again bring the state to the fault-free
 * one. Symbol tables: VMT_E_NOMEM and nothing returned.
 * The sweep ends at the first N the operation does not reach (it made
 * fewer allocations); each scenario states how many allocations it must
 * at least make, so that a sweep cannot pass by never failing anything. */
#define _DEFAULT_SOURCE /* mkstemp, fdopen */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <glib.h>

#include "bpm/bpm_internal.h"
#include "bpm/controllers.h"
#include "core/alloc.h"
#include "ptm/ptm_internal.h"
#include "tracer/symbols.h"
#include "tracer_fixture.h"
#include "vmitap/mock.h"
#include "vmitap/tracer.h"

#define MAX_GFN 0x1000u
#define GFN0 0x10u /* test frames [GFN0, GFN0 + NFRAMES) hold a pattern */
#define NFRAMES 4u
#define NVIEWS 3 /* views 0, 1, 2 */
#define VA 0x400000ull
#define KVA 0xffff800000010000ull
#define R1 0x5000ull
#define R2 0x6000ull

typedef enum { CTL_BREAKPOINT, CTL_MEMORY } ctl_kind;

typedef struct world {
    vmt_core *core;
    vmt_mock *mock;
    vmt_bpm *bpm;
    ctl_kind kind;
} world;

static world *world_new(ctl_kind kind)
{
    world *w = calloc(1, sizeof *w);
    vmt_mock_opts o = {.sz = sizeof o, .max_gfn = MAX_GFN};
    assert_int_equal(vmt_mock_core_new(&o, &w->core, &w->mock), VMT_OK);
    for (int v = 1; v < NVIEWS; v++) {
        vmt_view id;
        assert_int_equal(vmt_core_create_view(w->core, VMT_ACCESS_RWX, &id), VMT_OK);
    }
    uint8_t buf[VMT_PAGE_SIZE];
    for (vmt_gfn g = GFN0; g < GFN0 + NFRAMES; g++) {
        for (unsigned i = 0; i < VMT_PAGE_SIZE; i++)
            buf[i] = (uint8_t)(g * 31 + i * 7 + 1);
        assert_int_equal(vmt_mock_poke(w->mock, vmt_pa_from_gfn(g), buf, sizeof buf), VMT_OK);
    }
    vmt_tap_controller c;
    assert_int_equal(kind == CTL_BREAKPOINT ? vmt_breakpoint_controller_new(&c)
                                            : vmt_memory_controller_new(&c),
                     VMT_OK);
    assert_int_equal(vmt_bpm_new(c, &w->bpm), VMT_OK);
    w->kind = kind;
    return w;
}

static void world_free(world *w)
{
    vmt_bpm_free(w->bpm);
    vmt_core_free(w->core);
    free(w);
}

/* ---- the observable state as text ---- */

static uint64_t fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void add_claim(void *user, const vmt_breakpoint *bp)
{
    g_ptr_array_add(
        user, g_strdup_printf("P v%u k%" PRIu64 " %" PRIx64 "/%" PRIx64 " g%d t%" PRIuPTR, bp->view,
                              bp->key, bp->ctx.va, bp->ctx.root, bp->global, bp->tag));
}

static void add_arm(void *user, const vmt_breakpoint *bp, vmt_gfn gfn)
{
    g_ptr_array_add(user, g_strdup_printf("A v%u k%" PRIu64 " %" PRIx64 "/%" PRIx64
                                          " g%d t%" PRIuPTR " @%" PRIx64,
                                          bp->view, bp->key, bp->ctx.va, bp->ctx.root, bp->global,
                                          bp->tag, gfn));
}

static int cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *snapshot(world *w)
{
    GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
    vmt_bpm_foreach_arm(w->bpm, add_arm, lines);
    vmt_bpm_foreach_pending(w->bpm, add_claim, lines);
    g_ptr_array_sort(lines, cmp_str);
    GString *s = g_string_new(NULL);
    vmt_bpm_stats st = {.sz = sizeof st};
    assert_int_equal(vmt_bpm_stats_get(w->bpm, &st), VMT_OK);
    g_string_append_printf(s, "stats %zu %zu %zu %zu\n", st.active, st.pending, st.pages,
                           st.global);
    for (guint i = 0; i < lines->len; i++)
        g_string_append_printf(s, "%s\n", (char *)g_ptr_array_index(lines, i));
    g_ptr_array_free(lines, TRUE);
    uint8_t buf[VMT_PAGE_SIZE];
    for (vmt_gfn g = GFN0; g < GFN0 + NFRAMES; g++) {
        assert_int_equal(vmt_mock_peek(w->mock, vmt_pa_from_gfn(g), buf, sizeof buf), VMT_OK);
        g_string_append_printf(s, "frame %" PRIx64 " %016" PRIx64 "\n", g, fnv(buf, sizeof buf));
        for (vmt_view v = 0; v < NVIEWS; v++) {
            vmt_gfn back = 0;
            vmt_access a = 0;
            assert_int_equal(vmt_mock_view_backing(w->mock, v, g, &back), VMT_OK);
            assert_int_equal(vmt_core_get_access(w->core, g, v, &a), VMT_OK);
            assert_int_equal(vmt_mock_view_read(w->mock, v, vmt_pa_from_gfn(g), buf, sizeof buf),
                             VMT_OK);
            /* The shadow frame's number is the mock's choice: only whether
             * there is one, and what the guest reads through it, count. */
            g_string_append_printf(s, " v%u %s a%x %016" PRIx64 "\n", v,
                                   back == g ? "own" : "shadow", (unsigned)a, fnv(buf, sizeof buf));
        }
    }
    g_string_append_printf(s, "shadows %zu\n", vmt_mock_allocated_gfns(w->mock));
    return g_string_free(s, FALSE);
}

/* ---- scenarios ---- */

static vmt_breakpoint bp_of(vmt_view view, vmt_va va, vmt_pa root, bool global, uint64_t key)
{
    return (vmt_breakpoint){
        .ctx = vmt_ctx(va, root), .view = view, .global = global, .key = key, .tag = key + 1};
}

static vmt_status ins(world *w, vmt_view view, vmt_va va, vmt_pa root, bool global, uint64_t key,
                      vmt_gfn gfn /* 0: pending */)
{
    vmt_breakpoint bp = bp_of(view, va, root, global, key);
    vmt_pa pa = vmt_pa_in_gfn(gfn, va);
    bool inserted = false;
    vmt_status st = vmt_bpm_insert_with_hint(w->bpm, w->core, &bp, gfn ? &pa : NULL, &inserted);
    if (st == VMT_OK && !inserted)
        return VMT_E_CONFLICT; /* every scenario inserts something new */
    return st;
}

static void ok(vmt_status st)
{
    assert_int_equal(st, VMT_OK);
}

static vmt_status ptm_ev(world *w, vmt_ptm_event_kind kind, vmt_view view, vmt_va va, vmt_pa root,
                         vmt_gfn gfn)
{
    vmt_ptm_event ev = {
        .kind = kind, .view = view, .ctx = vmt_ctx(va, root), .pa = vmt_pa_in_gfn(gfn, va)};
    bool updated = false;
    vmt_status st = vmt_bpm_handle_ptm_event(w->bpm, w->core, &ev, &updated);
    return st == VMT_OK && !updated ? VMT_E_CONFLICT : st;
}

static void no_setup(world *w)
{
    (void)w;
}

/* insert: armed on a new page of the default view */
static vmt_status op_insert_new_page(world *w)
{
    return ins(w, 0, VA + 0x10, R1, false, 0, GFN0);
}

/* insert: a ninth offset on a page with eight (its arrays grow) */
static void setup_eight(world *w)
{
    for (unsigned i = 0; i < 8; i++)
        ok(ins(w, 0, VA + 0x10 * i, R1, false, 0, GFN0));
}
static vmt_status op_insert_ninth(world *w)
{
    return ins(w, 0, VA + 0x100, R1, false, 0, GFN0);
}

/* insert: another key at an armed address (chained claim, no trap) */
static void setup_one(world *w)
{
    ok(ins(w, 0, VA + 0x10, R1, false, 0, GFN0));
}
static vmt_status op_insert_other_key(world *w)
{
    return ins(w, 0, VA + 0x10, R1, false, 7, GFN0);
}

/* insert: a global claim (new global record) */
static vmt_status op_insert_global(world *w)
{
    return ins(w, 0, KVA + 0x20, R1, true, 0, GFN0 + 1);
}

/* insert: the global claim under another root, on another frame (the
 * claim's one inline arm moves to an array) */
static void setup_global(world *w)
{
    ok(ins(w, 0, KVA + 0x20, R1, true, 0, GFN0 + 1));
}
static vmt_status op_insert_global_second_frame(world *w)
{
    return ins(w, 0, KVA + 0x20, R2, true, 0, GFN0 + 2);
}

/* insert: pending, in a view with no claims yet */
static vmt_status op_insert_pending_new_view(world *w)
{
    return ins(w, 1, VA + 0x30, R1, false, 0, 0);
}

/* insert: pending, chained behind another key's pending claim */
static void setup_pending(world *w)
{
    ok(ins(w, 0, VA + 0x30, R1, false, 0, 0));
}
static vmt_status op_insert_pending_chained(world *w)
{
    return ins(w, 0, VA + 0x30, R1, false, 3, 0);
}

/* insert: armed in another view (new view record, new shadow) */
static vmt_status op_insert_view2(world *w)
{
    return ins(w, 2, VA + 0x40, R2, false, 0, GFN0 + 3);
}

/* page-out of a frame with three claims (two offsets, one global) */
static void setup_three(world *w)
{
    ok(ins(w, 0, VA + 0x10, R1, false, 0, GFN0));
    ok(ins(w, 0, VA + 0x10, R1, false, 1, GFN0));
    ok(ins(w, 0, VA + 0x80, R1, true, 0, GFN0));
}
static vmt_status op_page_out(world *w)
{
    return ptm_ev(w, VMT_PTM_PAGE_OUT, 0, VA, R1, GFN0);
}

/* page-in of a ctx with three pending keys */
static void setup_three_pending(world *w)
{
    for (uint64_t k = 0; k < 3; k++)
        ok(ins(w, 0, VA + 0x10, R1, false, k, 0));
}
static vmt_status op_page_in(world *w)
{
    return ptm_ev(w, VMT_PTM_PAGE_IN, 0, VA + 0x10, R1, GFN0);
}

/* page-in of 70 pending keys (more than the page-in's stack list) */
static void setup_seventy_pending(world *w)
{
    for (uint64_t k = 0; k < 70; k++)
        ok(ins(w, 0, VA + 0x10, R1, false, k, 0));
}

/* page-in under another root: the pending global claim of the canonical
 * root is armed */
static void setup_global_pending(world *w)
{
    ok(ins(w, 0, KVA + 0x20, R1, true, 0, 0));
    ok(ins(w, 0, KVA + 0x20, R1, false, 1, GFN0 + 1));
}
static vmt_status op_page_in_global(world *w)
{
    return ptm_ev(w, VMT_PTM_PAGE_IN, 0, KVA + 0x20, R2, GFN0 + 2);
}

/* a batch: page-out of one frame, page-in at another; a failed page-in
 * leaves the page-out done (the documented partial effect) */
static void partial_remap(world *w)
{
    ok(ptm_ev(w, VMT_PTM_PAGE_OUT, 0, VA + 0x10, R1, GFN0));
}
static vmt_status op_remap(world *w)
{
    vmt_ptm_event ev[2] = {
        {.kind = VMT_PTM_PAGE_OUT,
         .view = 0,
         .ctx = vmt_ctx(VA + 0x10, R1),
         .pa = vmt_pa_in_gfn(GFN0, VA + 0x10)},
        {.kind = VMT_PTM_PAGE_IN,
         .view = 0,
         .ctx = vmt_ctx(VA + 0x10, R1),
         .pa = vmt_pa_in_gfn(GFN0 + 3, VA + 0x10)},
    };
    bool updated = false;
    vmt_status st = vmt_bpm_handle_ptm_events(w->bpm, w->core, ev, 2, &updated);
    return st == VMT_OK && !updated ? VMT_E_CONFLICT : st;
}

/* remove_by_event: the key's claim in views 0 and 1 */
static void setup_two_views(world *w)
{
    ok(ins(w, 0, VA + 0x10, R1, false, 0, GFN0));
    ok(ins(w, 1, VA + 0x10, R1, false, 0, GFN0));
    ok(ins(w, 1, VA + 0x50, R1, false, 2, 0));
}
static vmt_status op_remove_by_event(world *w)
{
    vmt_event ev = {.has_view = true, .view = 0, .reason = VMT_EVENT_SOFTWARE_BREAKPOINT};
    ev.regs.rip = VA + 0x10;
    ev.regs.cr3 = R1;
    ev.u.software_breakpoint.gfn = GFN0;
    ev.u.software_breakpoint.insn_len = 1;
    if (w->kind == CTL_MEMORY) {
        ev.reason = VMT_EVENT_MEMORY_ACCESS;
        ev.u.memory_access.pa = vmt_pa_in_gfn(GFN0, VA + 0x10);
        ev.u.memory_access.access = VMT_ACCESS_X;
    }
    vmt_removal r = VMT_REMOVED_NONE;
    vmt_status st = vmt_bpm_remove_by_event(w->bpm, w->core, &ev, 0, &r);
    return st == VMT_OK && r != VMT_REMOVED_LAST ? VMT_E_CONFLICT : st;
}

static vmt_status op_clear(world *w)
{
    return vmt_bpm_clear(w->bpm, w->core);
}

typedef struct scenario {
    const char *name;
    ctl_kind kind;
    void (*setup)(world *w);
    vmt_status (*op)(world *w);
    unsigned min_allocs;       /* the operation makes at least this many */
    void (*partial)(world *w); /* the documented partial effect, if any */
} scenario;

static const scenario scenarios[] = {
    {"insert, new page", CTL_BREAKPOINT, no_setup, op_insert_new_page, 12, NULL},
    {"insert, ninth offset", CTL_BREAKPOINT, setup_eight, op_insert_ninth, 4, NULL},
    {"insert, other key", CTL_BREAKPOINT, setup_one, op_insert_other_key, 1, NULL},
    {"insert, global", CTL_BREAKPOINT, no_setup, op_insert_global, 14, NULL},
    {"insert, global 2nd frame", CTL_BREAKPOINT, setup_global, op_insert_global_second_frame, 6,
     NULL},
    {"insert, pending new view", CTL_BREAKPOINT, no_setup, op_insert_pending_new_view, 5, NULL},
    {"insert, pending chained", CTL_BREAKPOINT, setup_pending, op_insert_pending_chained, 1, NULL},
    {"insert, view 2", CTL_BREAKPOINT, setup_one, op_insert_view2, 7, NULL},
    {"page-out", CTL_BREAKPOINT, setup_three, op_page_out, 1, NULL},
    {"page-in", CTL_BREAKPOINT, setup_three_pending, op_page_in, 8, NULL},
    {"page-in, 70 claims", CTL_BREAKPOINT, setup_seventy_pending, op_page_in, 9, NULL},
    {"page-in, global", CTL_BREAKPOINT, setup_global_pending, op_page_in_global, 5, NULL},
    {"page-out + page-in", CTL_BREAKPOINT, setup_three, op_remap, 3, partial_remap},
    {"remove_by_event", CTL_BREAKPOINT, setup_two_views, op_remove_by_event, 1, NULL},
    {"clear", CTL_BREAKPOINT, setup_two_views, op_clear, 1, NULL},
    {"memory: insert, new page", CTL_MEMORY, no_setup, op_insert_new_page, 10, NULL},
    {"memory: page-in", CTL_MEMORY, setup_three_pending, op_page_in, 6, NULL},
    {"memory: page-out + page-in", CTL_MEMORY, setup_three, op_remap, 1, partial_remap},
    {"memory: remove_by_event", CTL_MEMORY, setup_two_views, op_remove_by_event, 1, NULL},
};

/* Runs op with the nth allocation failing (0: none); whether it fired. */
static bool run_failing(const scenario *sc, world *w, uint64_t nth, vmt_status *st)
{
    vmt_alloc_fail_at = nth;
    *st = sc->op(w);
    bool fired = nth && vmt_alloc_fail_at == 0;
    vmt_alloc_fail_at = 0;
    return fired;
}

static void sweep(const scenario *sc)
{
    world *w = world_new(sc->kind);
    sc->setup(w);
    vmt_status st;
    assert_false(run_failing(sc, w, 0, &st));
    assert_int_equal(st, VMT_OK);
    char *want = snapshot(w);
    world_free(w);
    char *partial = NULL;
    if (sc->partial) {
        w = world_new(sc->kind);
        sc->setup(w);
        sc->partial(w);
        partial = snapshot(w);
        world_free(w);
    }

    uint64_t n;
    for (n = 1;; n++) {
        w = world_new(sc->kind);
        sc->setup(w);
        char *before = snapshot(w);
        if (!run_failing(sc, w, n, &st)) {
            /* Fewer than n allocations: the fault never fired. */
            if (st != VMT_OK)
                fail_msg("%s: %s with no fault", sc->name, vmt_status_str(st));
            char *after = snapshot(w);
            assert_string_equal(after, want);
            g_free(after);
            g_free(before);
            world_free(w);
            break;
        }
        if (st != VMT_E_NOMEM)
            fail_msg("%s: allocation %" PRIu64 " failed, status %s", sc->name, n,
                     vmt_status_str(st));
        if (vmt_bpm_check(w->bpm) != VMT_OK)
            fail_msg("%s: allocation %" PRIu64 ": vmt_bpm_check fails", sc->name, n);
        char *after = snapshot(w);
        if (strcmp(before, after) != 0 && !(partial && strcmp(partial, after) == 0))
            fail_msg("%s: allocation %" PRIu64 " failed and the state changed:\n--- before\n%s"
                     "--- after\n%s",
                     sc->name, n, before, after);
        g_free(after);
        /* Memory is back: the same operation succeeds. */
        ok(sc->op(w));
        assert_int_equal(vmt_bpm_check(w->bpm), VMT_OK);
        after = snapshot(w);
        assert_string_equal(after, want);
        g_free(after);
        g_free(before);
        world_free(w);
    }
    g_free(want);
    g_free(partial);
    printf("%-28s %3" PRIu64 " allocations failed in turn\n", sc->name, n - 1);
    if (n - 1 < sc->min_allocs)
        fail_msg("%s: %" PRIu64 " allocations, expected at least %u", sc->name, n - 1,
                 sc->min_allocs);
}

static void test_bpm_sweeps(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++)
        sweep(&scenarios[i]);
}

/* ---- the page-table monitor ---- */

#define PVA_A 0x7f0000001000ull /* A and B share every table; C maps A's frame */
#define PVA_B 0x7f0000002000ull
#define PVA_C 0x7f0000003000ull
#define PVA_U 0x7f4000000000ull /* not mapped */
#define PGFN_A 0x20u
#define PGFN_B 0x21u
#define PGFN_NEW 0x22u

typedef struct pworld {
    vmt_core *core;
    vmt_mock *mock;
    vmt_ptm *ptm;
    vmt_pa root;
    vmt_ptm_events ev; /* what the last process call appended */
} pworld;

static pworld *pworld_new(void)
{
    pworld *w = calloc(1, sizeof *w);
    vmt_mock_opts o = {.sz = sizeof o, .max_gfn = MAX_GFN};
    ok(vmt_mock_core_new(&o, &w->core, &w->mock));
    vmt_view id;
    ok(vmt_core_create_view(w->core, VMT_ACCESS_RWX, &id));
    ok(vmt_mock_new_root(w->mock, &w->root));
    ok(vmt_mock_map(w->mock, w->root, PVA_A, vmt_pa_from_gfn(PGFN_A), VMT_MOCK_4K, VMT_PTE_W));
    ok(vmt_mock_map(w->mock, w->root, PVA_B, vmt_pa_from_gfn(PGFN_B), VMT_MOCK_4K, VMT_PTE_W));
    ok(vmt_mock_map(w->mock, w->root, PVA_C, vmt_pa_from_gfn(PGFN_A), VMT_MOCK_4K, VMT_PTE_W));
    ok(vmt_ptm_new(&w->ptm));
    return w;
}

static void pworld_free(pworld *w)
{
    vmt_ptm_free(w->ptm);
    vmt_ptm_events_free(&w->ev);
    vmt_core_free(w->core);
    free(w);
}

static const vmt_va pvas[] = {PVA_A, PVA_B, PVA_C, PVA_U};

static char *psnapshot(pworld *w)
{
    GString *s = g_string_new(NULL);
    g_string_append_printf(s, "counters %zu %zu %zu owed %zu\n", vmt_ptm_monitored_tables(w->ptm),
                           vmt_ptm_monitored_entries(w->ptm), vmt_ptm_paged_in_entries(w->ptm),
                           vmt_ptm_pending_restores(w->ptm));
    for (size_t i = 0; i < sizeof pvas / sizeof pvas[0]; i++)
        for (vmt_view v = 0; v < 2; v++) {
            uintptr_t tag = 0;
            bool in = false;
            vmt_pa pa = 0;
            bool mon = vmt_ptm_lookup(w->ptm, vmt_ctx(pvas[i], w->root), v, &tag, &in, &pa);
            g_string_append_printf(s, "%" PRIx64 " v%u: %d tag %" PRIuPTR " in %d pa %" PRIx64 "\n",
                                   pvas[i], v, mon, tag, in, in ? pa : 0);
        }
    /* Every table frame on the test addresses' walks, in both views. */
    for (size_t i = 0; i < sizeof pvas / sizeof pvas[0]; i++)
        for (int level = 4; level >= 1; level--) {
            vmt_pa epa;
            if (vmt_mock_entry_pa(w->mock, w->root, pvas[i], level, &epa) != VMT_OK)
                break;
            for (vmt_view v = 0; v < 2; v++) {
                vmt_access a = 0;
                ok(vmt_core_get_access(w->core, vmt_gfn_from_pa(epa), v, &a));
                g_string_append_printf(s, "table %" PRIx64 " v%u a%x\n", vmt_gfn_from_pa(epa), v,
                                       (unsigned)a);
            }
        }
    return g_string_free(s, FALSE);
}

static char *events_str(const vmt_ptm_events *ev)
{
    GString *s = g_string_new(NULL);
    for (size_t i = 0; i < ev->len; i++)
        g_string_append_printf(s, "%s v%u %" PRIx64 " pa %" PRIx64 " tag %" PRIuPTR "\n",
                               ev->items[i].kind == VMT_PTM_PAGE_IN ? "in" : "out",
                               ev->items[i].view, ev->items[i].ctx.va, ev->items[i].pa,
                               ev->items[i].tag);
    return g_string_free(s, FALSE);
}

static vmt_status mon(pworld *w, vmt_va va, vmt_view view)
{
    return vmt_ptm_monitor(w->ptm, w->core, vmt_ctx(va, w->root), view, (uintptr_t)(va >> 12));
}

/* Marks the entry at `level` of va's walk dirty (as a write event would). */
static void mark(pworld *w, vmt_va va, int level)
{
    vmt_pa epa;
    ok(vmt_mock_entry_pa(w->mock, w->root, va, level, &epa));
    assert_true(vmt_ptm_mark_dirty_entry(w->ptm, epa, 0, 0));
}

static void pno_setup(pworld *w)
{
    (void)w;
}
static vmt_status op_mon_a(pworld *w)
{
    return mon(w, PVA_A, 0);
}
static void psetup_a(pworld *w)
{
    ok(mon(w, PVA_A, 0));
}
static vmt_status op_mon_b(pworld *w)
{
    return mon(w, PVA_B, 0);
}
static vmt_status op_mon_a_view1(pworld *w)
{
    return mon(w, PVA_A, 1);
}
static vmt_status op_mon_unmapped(pworld *w)
{
    return mon(w, PVA_U, 0);
}
static vmt_status op_unmon_a(pworld *w)
{
    return vmt_ptm_unmonitor(w->ptm, w->core, vmt_ctx(PVA_A, w->root), 0);
}
static vmt_status op_process(pworld *w)
{
    return vmt_ptm_process_dirty_entries(w->ptm, w->core, 0, &w->ev);
}
/* A's PTE now maps another frame: A goes out of its frame and in at the new one. */
static void psetup_remap_a(pworld *w)
{
    ok(mon(w, PVA_A, 0));
    ok(mon(w, PVA_B, 0));
    ok(vmt_mock_map(w->mock, w->root, PVA_A, vmt_pa_from_gfn(PGFN_NEW), VMT_MOCK_4K, VMT_PTE_W));
    mark(w, PVA_A, 1);
}
/* The same with C monitored in A's old frame: C is announced again. */
static void psetup_remap_shared(pworld *w)
{
    ok(mon(w, PVA_C, 0));
    ok(mon(w, PVA_A, 0));
    ok(vmt_mock_map(w->mock, w->root, PVA_A, vmt_pa_from_gfn(PGFN_NEW), VMT_MOCK_4K, VMT_PTE_W));
    mark(w, PVA_A, 1);
}
/* The PDE goes: A, B and C all go out. */
static void psetup_unmap_pde(pworld *w)
{
    ok(mon(w, PVA_A, 0));
    ok(mon(w, PVA_B, 0));
    ok(mon(w, PVA_C, 0));
    ok(vmt_mock_unmap(w->mock, w->root, PVA_A, 2));
    mark(w, PVA_A, 2);
}

typedef struct pscenario {
    const char *name;
    void (*setup)(pworld *w);
    vmt_status (*op)(pworld *w);
    unsigned min_allocs;
    bool partial; /* process_dirty_entries: its documented partial effect */
} pscenario;

static const pscenario pscenarios[] = {
    {"ptm: monitor, new view", pno_setup, op_mon_a, 20, false},
    {"ptm: monitor, shared tables", psetup_a, op_mon_b, 4, false},
    {"ptm: monitor, other view", psetup_a, op_mon_a_view1, 19, false},
    {"ptm: monitor, not mapped", pno_setup, op_mon_unmapped, 12, false},
    {"ptm: unmonitor", psetup_a, op_unmon_a, 0, false},
    {"ptm: process, remap", psetup_remap_a, op_process, 10, true},
    {"ptm: process, shared frame", psetup_remap_shared, op_process, 10, true},
    {"ptm: process, table gone", psetup_unmap_pde, op_process, 8, true},
};

static bool prun_failing(const pscenario *sc, pworld *w, uint64_t nth, vmt_status *st)
{
    vmt_alloc_fail_at = nth;
    *st = sc->op(w);
    bool fired = nth && vmt_alloc_fail_at == 0;
    vmt_alloc_fail_at = 0;
    return fired;
}

/* The last event of each address, in event order: what a consumer ends
 * up believing. */
static char *last_events(const vmt_ptm_events *a, const vmt_ptm_events *b)
{
    GString *s = g_string_new(NULL);
    for (size_t i = 0; i < sizeof pvas / sizeof pvas[0]; i++) {
        const vmt_ptm_event *last = NULL;
        for (size_t k = 0; k < a->len; k++)
            if (a->items[k].ctx.va == pvas[i])
                last = &a->items[k];
        for (size_t k = 0; b && k < b->len; k++)
            if (b->items[k].ctx.va == pvas[i])
                last = &b->items[k];
        if (last)
            g_string_append_printf(s, "%" PRIx64 " %d %" PRIx64 "\n", pvas[i], last->kind,
                                   last->pa);
    }
    return g_string_free(s, FALSE);
}

static void psweep(const pscenario *sc)
{
    pworld *w = pworld_new();
    sc->setup(w);
    vmt_status st;
    assert_false(prun_failing(sc, w, 0, &st));
    ok(st);
    char *want = psnapshot(w), *want_ev = events_str(&w->ev),
         *want_last = last_events(&w->ev, NULL);
    pworld_free(w);
    uint64_t n;
    for (n = 1;; n++) {
        w = pworld_new();
        sc->setup(w);
        char *before = psnapshot(w);
        bool fired = prun_failing(sc, w, n, &st);
        if (!fired) {
            ok(st);
            char *after = psnapshot(w), *ev = events_str(&w->ev);
            assert_string_equal(after, want);
            assert_string_equal(ev, want_ev);
            g_free(after);
            g_free(ev);
            g_free(before);
            pworld_free(w);
            break;
        }
        if (st != VMT_E_NOMEM)
            fail_msg("%s: allocation %" PRIu64 " failed, status %s", sc->name, n,
                     vmt_status_str(st));
        if (vmt_ptm_check(w->ptm) != VMT_OK)
            fail_msg("%s: allocation %" PRIu64 ": vmt_ptm_check fails", sc->name, n);
        char *after = psnapshot(w);
        bool same = strcmp(before, after) == 0;
        if (!same && !sc->partial)
            fail_msg("%s: allocation %" PRIu64 " failed and the state changed:\n--- before\n%s"
                     "--- after\n%s",
                     sc->name, n, before, after);
        /* Nothing changed: nothing reported. Something changed (the
         * documented partial effect): its events were appended. */
        if (same && w->ev.len != 0)
            fail_msg("%s: allocation %" PRIu64 ": events without a change", sc->name, n);
        if (!same && w->ev.len == 0)
            fail_msg("%s: allocation %" PRIu64 ": a change without its events", sc->name, n);
        g_free(after);
        /* Memory is back: the same call finishes the work. */
        vmt_ptm_events first = w->ev;
        memset(&w->ev, 0, sizeof w->ev);
        ok(sc->op(w));
        assert_int_equal(vmt_ptm_check(w->ptm), VMT_OK);
        after = psnapshot(w);
        assert_string_equal(after, want);
        char *last = last_events(&first, &w->ev);
        assert_string_equal(last, want_last);
        g_free(last);
        g_free(after);
        g_free(before);
        vmt_ptm_events_free(&first);
        pworld_free(w);
    }
    g_free(want);
    g_free(want_ev);
    g_free(want_last);
    printf("%-28s %3" PRIu64 " allocations failed in turn\n", sc->name, n - 1);
    if (n - 1 < sc->min_allocs)
        fail_msg("%s: %" PRIu64 " allocations, expected at least %u", sc->name, n - 1,
                 sc->min_allocs);
}

static void test_ptm_sweeps(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof pscenarios / sizeof pscenarios[0]; i++)
        psweep(&pscenarios[i]);
}

/* Marking a dirty entry allocates nothing (a write event cannot fail). */
static void test_ptm_mark_allocates_nothing(void **state)
{
    (void)state;
    pworld *w = pworld_new();
    ok(mon(w, PVA_A, 0));
    vmt_pa epa;
    ok(vmt_mock_entry_pa(w->mock, w->root, PVA_A, 1, &epa));
    vmt_alloc_fail_at = 1;
    assert_true(vmt_ptm_mark_dirty_entry(w->ptm, epa, 0, 0));
    assert_true(vmt_ptm_mark_dirty_entry(w->ptm, epa, 0, 63));
    assert_false(vmt_ptm_mark_dirty_entry(w->ptm, epa, 0, 64)); /* beyond the tracked vCPUs */
    assert_int_equal(vmt_alloc_fail_at, 1);
    vmt_alloc_fail_at = 0;
    assert_int_equal(vmt_ptm_check(w->ptm), VMT_OK);
    pworld_free(w);
}

/* ---- the tracer ---- */

#define CODE_VA 0x400000ull
#define CODE_PA 0x10000ull
#define MOVED_PA 0x20000ull
#define FN_A (CODE_VA + 0x10)
#define FN_B (CODE_VA + 0x80)
#define PLAIN (CODE_VA + 0x200)

typedef struct tworld {
    vmt_core *core;
    vmt_mock *mock;
    vmt_pa root;
    vmt_tracer *t;
    vmt_tracer_bp_id a; /* the breakpoint at FN_A, when the setup adds it */
} tworld;

static void fill_code(vmt_mock *m, vmt_pa pa)
{
    uint8_t page[VMT_PAGE_SIZE];
    memset(page, 0x90, sizeof page);
    page[FN_A - CODE_VA] = 0x55;
    page[FN_B - CODE_VA] = 0x55;
    ok(vmt_mock_poke(m, pa, page, sizeof page));
}

static tworld *tworld_new(vmt_tracer_controller ctl)
{
    tworld *w = calloc(1, sizeof *w);
    vmt_mock_opts mo = {.sz = sizeof mo, .max_gfn = MAX_GFN};
    ok(vmt_mock_core_new(&mo, &w->core, &w->mock));
    ok(vmt_mock_new_root(w->mock, &w->root));
    ok(vmt_mock_map(w->mock, w->root, CODE_VA, CODE_PA, VMT_MOCK_4K, VMT_PTE_U));
    fill_code(w->mock, CODE_PA);
    fill_code(w->mock, MOVED_PA);
    vmt_mock_regs(w->mock, 0)->cr3 = w->root;
    vmt_tracer_opts to = {.sz = sizeof to, .controller = ctl};
    ok(vmt_tracer_new(w->core, &to, &w->t));
    return w;
}

static void tworld_free(tworld *w)
{
    vmt_tracer_free(w->t);
    vmt_core_free(w->core);
    free(w);
}

static void add_bp_line(void *user, const vmt_tracer_bp_info *bp)
{
    g_string_append_printf(user,
                           "bp %u %" PRIx64 "/%" PRIx64 " name %s active %d pa %" PRIx64
                           " in %" PRIu64 " out %" PRIu64 " moved %" PRIu64 " hits %" PRIu64 "\n",
                           bp->id, bp->ctx.va, bp->ctx.root, bp->name ? bp->name : "-", bp->active,
                           bp->pa, bp->page_ins, bp->page_outs, bp->relocations, bp->hits);
}

static char *tsnapshot(tworld *w)
{
    GString *s = g_string_new(NULL);
    vmt_tracer_foreach_bp(w->t, add_bp_line, s);
    vmt_tracer_stats st = {.sz = sizeof st};
    assert_int_equal(vmt_tracer_stats_get(w->t, &st), VMT_OK);
    g_string_append_printf(s, "count %zu bpm %zu %zu %zu %zu ptm %zu %zu\n",
                           vmt_tracer_bp_count(w->t), st.bpm.active, st.bpm.pending, st.bpm.pages,
                           st.bpm.global, st.ptm_tables, st.ptm_entries);
    vmt_view views[2] = {0, vmt_tracer_view(w->t)};
    const vmt_pa frames[2] = {CODE_PA, MOVED_PA};
    uint8_t buf[VMT_PAGE_SIZE];
    for (int f = 0; f < 2; f++) {
        ok(vmt_mock_peek(w->mock, frames[f], buf, sizeof buf));
        g_string_append_printf(s, "frame %" PRIx64 " %016" PRIx64 "\n", frames[f],
                               fnv(buf, sizeof buf));
        for (int v = 0; v < 2; v++) {
            vmt_access a = 0;
            ok(vmt_core_get_access(w->core, vmt_gfn_from_pa(frames[f]), views[v], &a));
            ok(vmt_mock_view_read(w->mock, views[v], frames[f], buf, sizeof buf));
            g_string_append_printf(s, " v%u a%x %016" PRIx64 "\n", views[v], (unsigned)a,
                                   fnv(buf, sizeof buf));
        }
    }
    for (int level = 4; level >= 1; level--) {
        vmt_pa epa;
        ok(vmt_mock_entry_pa(w->mock, w->root, CODE_VA, level, &epa));
        vmt_access a = 0;
        ok(vmt_core_get_access(w->core, vmt_gfn_from_pa(epa), views[1], &a));
        g_string_append_printf(s, "table %" PRIx64 " a%x\n", vmt_gfn_from_pa(epa), (unsigned)a);
    }
    g_string_append_printf(s, "shadows %zu\n", vmt_mock_allocated_gfns(w->mock));
    return g_string_free(s, FALSE);
}

static vmt_status tadd(tworld *w, vmt_va va, const char *name, vmt_tracer_bp_id *id)
{
    vmt_tracer_bp_opts o = {.sz = sizeof o, .name = name};
    return vmt_tracer_add(w->t, vmt_ctx(va, w->root), &o, id);
}

/* Delivers the queued events; the first failure of a run. */
static vmt_status tdeliver(tworld *w)
{
    vmt_status first = VMT_OK;
    for (int tries = 0; vmt_mock_pending_events(w->mock) > 0; tries++) {
        assert_true(tries < 100);
        vmt_tracer_run_opts ro = {.sz = sizeof ro, .timeout_ms = 1};
        vmt_status st = vmt_tracer_run(w->t, &ro, NULL);
        if (first == VMT_OK)
            first = st;
    }
    return first;
}

static void push(tworld *w, vmt_event ev)
{
    ok(vmt_mock_push_event(w->mock, &ev));
}

/* A guest write to the PTE of CODE_VA (already in memory), then its step. */
static void push_pte_write(tworld *w)
{
    vmt_pa pte_pa;
    ok(vmt_mock_entry_pa(w->mock, w->root, CODE_VA, 1, &pte_pa));
    vmt_event ev = tracer_event(w->t, w->root, VMT_EVENT_MEMORY_ACCESS, PLAIN);
    ev.u.memory_access.pa = pte_pa;
    ev.u.memory_access.va = 0xffff800000000000ull;
    ev.u.memory_access.access = VMT_ACCESS_W;
    push(w, ev);
    vmt_event step = tracer_event(w->t, w->root, VMT_EVENT_SINGLESTEP, PLAIN + 3);
    step.view = 0;
    push(w, step);
}

static void write_pte(tworld *w, uint64_t pte)
{
    vmt_pa pte_pa;
    ok(vmt_mock_entry_pa(w->mock, w->root, CODE_VA, 1, &pte_pa));
    ok(vmt_mock_poke(w->mock, pte_pa, &pte, sizeof pte));
}

static void tno_setup(tworld *w)
{
    (void)w;
}
static void tsetup_a(tworld *w)
{
    ok(tadd(w, FN_A, NULL, &w->a));
}
static vmt_status top_add_a(tworld *w)
{
    return tadd(w, FN_A, NULL, NULL);
}
static vmt_status top_add_named_b(tworld *w)
{
    return tadd(w, FN_B, "fn_b", NULL);
}
static vmt_status top_add_a_again(tworld *w)
{
    return tadd(w, FN_A, "again", NULL);
}
static vmt_status top_remove_a(tworld *w)
{
    return vmt_tracer_remove(w->t, w->a);
}
/* A hit: the event handlers allocate nothing. */
static vmt_status top_hit(tworld *w)
{
    vmt_event ev = tracer_event(w->t, w->root, VMT_EVENT_SOFTWARE_BREAKPOINT, FN_A);
    ev.u.software_breakpoint.gfn = vmt_gfn_from_pa(CODE_PA);
    ev.u.software_breakpoint.insn_len = 1;
    push(w, ev);
    return tdeliver(w);
}
/* The page goes out (Present cleared), then comes back in another frame. */
static void tsetup_page_out(tworld *w)
{
    tsetup_a(w);
    write_pte(w, CODE_PA | VMT_PTE_U | VMT_PTE_W);
}
static vmt_status top_pt_write(tworld *w)
{
    push_pte_write(w);
    return tdeliver(w);
}
static void tsetup_page_in(tworld *w)
{
    tsetup_page_out(w);
    ok(top_pt_write(w));
    write_pte(w, MOVED_PA | VMT_PTE_P | VMT_PTE_U | VMT_PTE_W);
}
/* The guest overwrites the instruction under the trap (int3): the shadow
 * is rebuilt and the breakpoint dropped. */
static void tsetup_code_write(tworld *w)
{
    tsetup_a(w);
    uint8_t nop = 0x90;
    ok(vmt_mock_poke(w->mock, CODE_PA + (FN_A - CODE_VA), &nop, 1));
}
static vmt_status top_code_write(tworld *w)
{
    vmt_event ev = tracer_event(w->t, w->root, VMT_EVENT_MEMORY_ACCESS, PLAIN);
    ev.u.memory_access.pa = CODE_PA + (FN_A - CODE_VA);
    ev.u.memory_access.va = FN_A;
    ev.u.memory_access.access = VMT_ACCESS_W;
    push(w, ev);
    return tdeliver(w);
}

typedef struct tscenario {
    const char *name;
    vmt_tracer_controller ctl;
    void (*setup)(tworld *w);
    vmt_status (*op)(tworld *w);
    unsigned min_allocs;
    bool events; /* event handling: reported, finished by delivering the events again */
    bool logged; /* the failure is logged, not reported (a code page's rebuild) */
} tscenario;

static const tscenario tscenarios[] = {
    {"tracer: add", VMT_TRACER_CONTROLLER_INT3, tno_setup, top_add_a, 38, false, false},
    {"tracer: add, named", VMT_TRACER_CONTROLLER_INT3, tsetup_a, top_add_named_b, 6, false, false},
    {"tracer: add, same address", VMT_TRACER_CONTROLLER_INT3, tsetup_a, top_add_a_again, 3, false,
     false},
    {"tracer: add (memory)", VMT_TRACER_CONTROLLER_MEMORY, tno_setup, top_add_a, 36, false, false},
    {"tracer: remove", VMT_TRACER_CONTROLLER_INT3, tsetup_a, top_remove_a, 0, false, false},
    {"tracer: hit", VMT_TRACER_CONTROLLER_INT3, tsetup_a, top_hit, 0, true, false},
    {"tracer: page-out", VMT_TRACER_CONTROLLER_INT3, tsetup_page_out, top_pt_write, 10, true,
     false},
    {"tracer: page-in elsewhere", VMT_TRACER_CONTROLLER_INT3, tsetup_page_in, top_pt_write, 11,
     true, false},
    {"tracer: page-in (memory)", VMT_TRACER_CONTROLLER_MEMORY, tsetup_page_in, top_pt_write, 9,
     true, false},
    {"tracer: code overwritten", VMT_TRACER_CONTROLLER_INT3, tsetup_code_write, top_code_write, 3,
     true, true},
};

static bool trun_failing(const tscenario *sc, tworld *w, uint64_t nth, vmt_status *st)
{
    vmt_alloc_fail_at = nth;
    *st = sc->op(w);
    bool fired = nth && vmt_alloc_fail_at == 0;
    vmt_alloc_fail_at = 0;
    return fired;
}

static void tsweep(const tscenario *sc)
{
    tworld *w = tworld_new(sc->ctl);
    sc->setup(w);
    vmt_status st;
    assert_false(trun_failing(sc, w, 0, &st));
    ok(st);
    char *want = tsnapshot(w);
    tworld_free(w);
    uint64_t n;
    for (n = 1;; n++) {
        w = tworld_new(sc->ctl);
        sc->setup(w);
        char *before = tsnapshot(w);
        if (!trun_failing(sc, w, n, &st)) {
            ok(st);
            char *after = tsnapshot(w);
            assert_string_equal(after, want);
            g_free(after);
            g_free(before);
            tworld_free(w);
            break;
        }
        if (st != VMT_E_NOMEM && !(sc->logged && st == VMT_OK))
            fail_msg("%s: allocation %" PRIu64 " failed, status %s", sc->name, n,
                     vmt_status_str(st));
        char *after = tsnapshot(w);
        if (!sc->events && strcmp(before, after) != 0)
            fail_msg("%s: allocation %" PRIu64 " failed and the state changed:\n--- before\n%s"
                     "--- after\n%s",
                     sc->name, n, before, after);
        g_free(after);
        /* Memory is back: the same call (the same events) finishes it. */
        ok(sc->op(w));
        after = tsnapshot(w);
        if (strcmp(after, want) != 0)
            fail_msg("%s: allocation %" PRIu64 ", then again with no fault:\n--- got\n%s"
                     "--- want\n%s",
                     sc->name, n, after, want);
        g_free(after);
        g_free(before);
        tworld_free(w);
    }
    g_free(want);
    printf("%-28s %3" PRIu64 " allocations failed in turn\n", sc->name, n - 1);
    if (n - 1 < sc->min_allocs)
        fail_msg("%s: %" PRIu64 " allocations, expected at least %u", sc->name, n - 1,
                 sc->min_allocs);
}

static void test_tracer_sweeps(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof tscenarios / sizeof tscenarios[0]; i++)
        tsweep(&tscenarios[i]);
}

/* vmt_tracer_new: VMT_E_NOMEM, no leak, no view left behind. */
static void test_tracer_new(void **state)
{
    (void)state;
    uint64_t n;
    for (n = 1;; n++) {
        vmt_core *core;
        vmt_mock *mock;
        vmt_mock_opts mo = {.sz = sizeof mo, .max_gfn = MAX_GFN};
        ok(vmt_mock_core_new(&mo, &core, &mock));
        vmt_tracer *t = NULL;
        vmt_alloc_fail_at = n;
        vmt_status st = vmt_tracer_new(core, NULL, &t);
        bool fired = vmt_alloc_fail_at == 0;
        vmt_alloc_fail_at = 0;
        if (!fired) {
            ok(st);
            vmt_tracer_free(t);
            vmt_core_free(core);
            break;
        }
        assert_int_equal(st, VMT_E_NOMEM);
        assert_false(vmt_mock_view_exists(mock, 1));
        assert_int_equal(vmt_mock_current_view(mock), 0);
        vmt_core_free(core);
    }
    printf("%-28s %3" PRIu64 " allocations failed in turn\n", "tracer: new", n - 1);
    assert_true(n - 1 >= 5);
}

/* Symbol tables, from an ELF file (this test program) and from a
 * System.map: VMT_E_NOMEM at every allocation, *out untouched, no leak. */
static void sweep_symtab(const char *what, const char *path, bool system_map)
{
    uint64_t n;
    for (n = 1;; n++) {
        vmt_symtab *tab = NULL;
        vmt_alloc_fail_at = n;
        vmt_status st =
            system_map ? vmt_symtab_load_system_map(path, &tab) : vmt_symtab_load(path, &tab);
        bool fired = vmt_alloc_fail_at == 0;
        vmt_alloc_fail_at = 0;
        if (!fired) {
            ok(st);
            assert_non_null(vmt_symtab_lookup(tab, "main"));
            vmt_symtab_free(tab);
            break;
        }
        assert_int_equal(st, VMT_E_NOMEM);
        assert_null(tab);
    }
    printf("%-28s %3" PRIu64 " allocations failed in turn\n", what, n - 1);
    assert_true(n - 1 >= 3);
}

static void test_symtab(void **state)
{
    (void)state;
    sweep_symtab("symbols: ELF", "/proc/self/exe", false);
    char path[] = "/tmp/vmt-nomem-map-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    for (unsigned i = 0; i < 3000; i++) /* several name blocks' worth */
        fprintf(f, "ffffffff81%06x T fn_%u_%0200u\n", 0x1000 + 16 * i, i, i);
    fprintf(f, "ffffffff82000000 T main\n");
    fclose(f);
    sweep_symtab("symbols: System.map", path, true);
    unlink(path);
}

/* Constructors: VMT_E_NOMEM, nothing leaked (ASan and valgrind check the
 * leaks), the controller freed by vmt_bpm_new as when it succeeds. */
static void test_constructors(void **state)
{
    (void)state;
    uint64_t n;
    for (n = 1;; n++) {
        vmt_tap_controller c[2];
        vmt_bpm *bpm = NULL;
        vmt_alloc_fail_at = n;
        vmt_status st = vmt_breakpoint_controller_new(&c[0]);
        if (st == VMT_OK)
            st = vmt_bpm_new(c[0], &bpm);
        if (st == VMT_OK) {
            vmt_bpm_free(bpm);
            bpm = NULL;
            st = vmt_memory_controller_new(&c[1]);
        }
        if (st == VMT_OK)
            st = vmt_bpm_new(c[1], &bpm);
        bool fired = vmt_alloc_fail_at == 0;
        vmt_alloc_fail_at = 0;
        if (!fired) {
            assert_int_equal(st, VMT_OK);
            vmt_bpm_free(bpm);
            break;
        }
        assert_int_equal(st, VMT_E_NOMEM);
        assert_null(bpm);
    }
    assert_int_equal(n - 1, 5);
}

/* The hook fails exactly the Nth allocation, once. */
static void test_hook(void **state)
{
    (void)state;
    vmt_alloc_fail_at = 3;
    void *a = vmt_malloc(8), *b = vmt_calloc(1, 8), *c = vmt_malloc(8), *d = vmt_malloc(8);
    assert_non_null(a);
    assert_non_null(b);
    assert_null(c);
    assert_non_null(d);
    assert_int_equal(vmt_alloc_fail_at, 0);
    vmt_free(a);
    vmt_free(b);
    vmt_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hook),
        cmocka_unit_test(test_constructors),
        cmocka_unit_test(test_bpm_sweeps),
        cmocka_unit_test(test_ptm_sweeps),
        cmocka_unit_test(test_ptm_mark_allocates_nothing),
        cmocka_unit_test(test_tracer_sweeps),
        cmocka_unit_test(test_tracer_new),
        cmocka_unit_test(test_symtab),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
