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
 * The sweep ends at the first N the operation does not reach (it made
 * fewer allocations); each scenario states how many allocations it must
 * at least make, so that a sweep cannot pass by never failing anything. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "bpm/bpm_internal.h"
#include "bpm/controllers.h"
#include "core/alloc.h"
#include "vmitap/mock.h"

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
    vmt_bpm_stats st;
    vmt_bpm_stats_get(w->bpm, &st);
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
    assert_int_equal(n - 1, 4);
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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
