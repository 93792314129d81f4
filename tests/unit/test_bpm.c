/* The breakpoint manager against a recording controller: every point of
 * API.md section 6 "Semantics the implementation must honour", with the
 * exact sequence of controller calls. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <glib.h>

#include "bpm/bpm_impl.h"
#include "bpm/bpm_internal.h"
#include "test_bpm_rec.h"
#include "vmitap/mock.h"

typedef struct fixture {
    vmt_core *core;
    vmt_mock *mock;
    vmt_bpm *bpm;
    rec_ctl *rec;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    vmt_mock_opts o = {.sz = sizeof o, .max_gfn = 0x10000};
    if (vmt_mock_core_new(&o, &f->core, &f->mock) != VMT_OK)
        return -1;
    /* Views 1..4 exist in the driver: a pending insert asks it. */
    for (int v = 1; v <= 4; v++) {
        vmt_view id;
        if (vmt_core_create_view(f->core, VMT_ACCESS_RWX, &id) != VMT_OK || id != v)
            return -1;
    }
    if (vmt_bpm_new(rec_new(&f->rec), &f->bpm) != VMT_OK)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
    assert_int_equal(f->rec->violations, 0);
    assert_true(rec_matches_bpm(f->rec, f->bpm));
    vmt_bpm_free(f->bpm);
    vmt_core_free(f->core);
    free(f);
    return 0;
}

#define VA 0x400000ull
#define ROOT_A 0x10000ull
#define ROOT_B 0x20000ull
#define ROOT_C 0x30000ull

static vmt_breakpoint bpx(vmt_va va, vmt_pa root, vmt_view view, bool global, uint64_t key,
                          uintptr_t tag)
{
    vmt_breakpoint bp = {
        .ctx = vmt_ctx(va, root), .view = view, .global = global, .key = key, .tag = tag};
    return bp;
}

static bool ins(fixture *f, vmt_breakpoint bp, const vmt_pa *pa)
{
    bool inserted = false;
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, pa, &inserted), VMT_OK);
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
    return inserted;
}

static bool rem(fixture *f, vmt_breakpoint bp)
{
    bool removed = false;
    assert_int_equal(vmt_bpm_remove(f->bpm, f->core, &bp, &removed), VMT_OK);
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
    return removed;
}

static bool ptm(fixture *f, vmt_ptm_event_kind kind, vmt_view view, vmt_va va, vmt_pa root,
                vmt_pa pa)
{
    vmt_ptm_event ev = {.kind = kind, .view = view, .ctx = vmt_ctx(va, root), .pa = pa};
    bool updated = false;
    assert_int_equal(vmt_bpm_handle_ptm_event(f->bpm, f->core, &ev, &updated), VMT_OK);
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
    return updated;
}

static void expect_log(fixture *f, const char *want)
{
    char *got = rec_log_str(f->rec);
    if (strcmp(got, want) != 0)
        fail_msg("controller calls: got \"%s\", want \"%s\"", got, want);
    g_free(got);
    rec_clear_log(f->rec);
}

static vmt_bpm_stats stats(fixture *f)
{
    vmt_bpm_stats s;
    vmt_bpm_stats_get(f->bpm, &s);
    return s;
}

static void expect_stats(fixture *f, size_t active, size_t pending, size_t pages, size_t global)
{
    vmt_bpm_stats s = stats(f);
    assert_int_equal(s.active, active);
    assert_int_equal(s.pending, pending);
    assert_int_equal(s.pages, pages);
    assert_int_equal(s.global, global);
}

/* ---- claims, inserted flag, one insert per (view, pa), one monitor per page ---- */

static void test_insert_then_monitor_once(void **state)
{
    fixture *f = *state;
    vmt_pa pa = 0x5123;
    assert_true(ins(f, bpx(VA + 0x123, ROOT_A, 0, false, 0, 11), &pa));
    expect_log(f, "I0:5123 M0:5");
    /* Same claim, same frame: nothing happens, the first tag stays. */
    assert_false(ins(f, bpx(VA + 0x123, ROOT_A, 0, false, 0, 22), &pa));
    expect_log(f, "");
    vmt_event ev = rec_event(0, VA + 0x123, ROOT_A, 5);
    vmt_breakpoint got;
    assert_true(vmt_bpm_get_by_event(f->bpm, &ev, 0, &got));
    assert_int_equal(got.tag, 11);
    /* Another offset on the page: a trap, no second monitor. */
    vmt_pa pb = 0x5200;
    assert_true(ins(f, bpx(VA + 0x200, ROOT_A, 0, false, 0, 0), &pb));
    expect_log(f, "I0:5200");
    /* Another key at the same address: an independent claim, no call. */
    assert_true(ins(f, bpx(VA + 0x123, ROOT_A, 0, false, 7, 0), &pa));
    expect_log(f, "");
    /* Another root mapping to the same frame: another claim, same trap. */
    assert_true(ins(f, bpx(VA + 0x123, ROOT_B, 0, false, 0, 0), &pa));
    expect_log(f, "");
    expect_stats(f, 4, 0, 1, 0);

    assert_true(rem(f, bpx(VA + 0x123, ROOT_A, 0, false, 7, 0)));
    assert_true(rem(f, bpx(VA + 0x123, ROOT_A, 0, false, 0, 0)));
    expect_log(f, "");
    assert_true(rem(f, bpx(VA + 0x123, ROOT_B, 0, false, 0, 0)));
    expect_log(f, "R0:5123");
    assert_true(rem(f, bpx(VA + 0x200, ROOT_A, 0, false, 0, 0)));
    expect_log(f, "R0:5200 U0:5");
    assert_false(rem(f, bpx(VA + 0x200, ROOT_A, 0, false, 0, 0)));
    expect_stats(f, 0, 0, 0, 0);
}

static void test_same_claim_on_two_frames(void **state)
{
    fixture *f = *state;
    vmt_pa p1 = 0x7010, p2 = 0x9010;
    assert_true(ins(f, bpx(VA + 0x10, ROOT_A, 0, false, 0, 0), &p1));
    assert_true(ins(f, bpx(VA + 0x10, ROOT_A, 0, false, 0, 0), &p2));
    expect_log(f, "I0:7010 M0:7 I0:9010 M0:9");
    expect_stats(f, 2, 0, 2, 0);
    /* remove drops the claim wherever it is armed. */
    assert_true(rem(f, bpx(VA + 0x10, ROOT_A, 0, false, 0, 0)));
    expect_log(f, "R0:9010 U0:9 R0:7010 U0:7");
    expect_stats(f, 0, 0, 0, 0);
}

static void test_views_are_independent(void **state)
{
    fixture *f = *state;
    vmt_pa pa = 0x5040;
    assert_true(ins(f, bpx(VA + 0x40, ROOT_A, 0, false, 0, 0), &pa));
    assert_true(ins(f, bpx(VA + 0x40, ROOT_A, 3, false, 0, 0), &pa));
    expect_log(f, "I0:5040 M0:5 I3:5040 M3:5");
    vmt_event e0 = rec_event(0, VA + 0x40, ROOT_A, 5), e1 = rec_event(1, VA + 0x40, ROOT_A, 5);
    assert_true(vmt_bpm_contains_by_event(f->bpm, &e0, 0));
    assert_false(vmt_bpm_contains_by_event(f->bpm, &e1, 0));
    assert_true(rem(f, bpx(VA + 0x40, ROOT_A, 3, false, 0, 0)));
    expect_log(f, "R3:5040 U3:5");
    assert_true(vmt_bpm_contains_by_address(f->bpm, vmt_ctx(VA + 0x40, ROOT_A), 0));
}

/* ---- pending claims, page-in, page-out ---- */

static void test_pending_and_page_in(void **state)
{
    fixture *f = *state;
    assert_true(ins(f, bpx(VA + 0x30, ROOT_A, 0, false, 0, 5), NULL));
    assert_false(ins(f, bpx(VA + 0x30, ROOT_A, 0, false, 0, 6), NULL));
    assert_true(ins(f, bpx(VA + 0x30, ROOT_A, 0, false, 9, 0), NULL));
    expect_log(f, "");
    expect_stats(f, 0, 2, 0, 0);
    /* Pending claims are not seen by address or event. */
    assert_false(vmt_bpm_contains_by_address(f->bpm, vmt_ctx(VA + 0x30, ROOT_A), 0));
    /* A page-in elsewhere changes nothing. */
    assert_false(ptm(f, VMT_PTM_PAGE_IN, 0, VA + 0x30, ROOT_B, 0x8030));
    assert_false(ptm(f, VMT_PTM_PAGE_IN, 1, VA + 0x30, ROOT_A, 0x8030));
    assert_true(ptm(f, VMT_PTM_PAGE_IN, 0, VA + 0x30, ROOT_A, 0x8030));
    expect_log(f, "I0:8030 M0:8");
    expect_stats(f, 2, 0, 1, 0);
    assert_true(vmt_bpm_contains_by_address(f->bpm, vmt_ctx(VA + 0x30, ROOT_A), 9));
    vmt_event ev = rec_event(0, VA + 0x30, ROOT_A, 8);
    vmt_breakpoint got;
    assert_true(vmt_bpm_get_by_event(f->bpm, &ev, 0, &got));
    assert_int_equal(got.tag, 5);
    /* Page-out: back to pending, keyed by their ctx; remove then unmonitor. */
    vmt_pa pb = 0x8100;
    assert_true(ins(f, bpx(VA + 0x100, ROOT_A, 0, false, 0, 0), &pb));
    rec_clear_log(f->rec);
    assert_true(ptm(f, VMT_PTM_PAGE_OUT, 0, VA, ROOT_A, 0x8000));
    char *log = rec_log_str(f->rec);
    /* Two traps removed (either order), then the one unmonitor. */
    assert_true(strcmp(log, "R0:8100 R0:8030 U0:8") == 0 ||
                strcmp(log, "R0:8030 R0:8100 U0:8") == 0);
    g_free(log);
    rec_clear_log(f->rec);
    expect_stats(f, 0, 3, 0, 0);
    assert_false(ptm(f, VMT_PTM_PAGE_OUT, 0, VA, ROOT_A, 0x8000));
    /* Back in at another frame. */
    assert_true(ptm(f, VMT_PTM_PAGE_IN, 0, VA + 0x30, ROOT_A, 0xa030));
    expect_log(f, "I0:a030 M0:a");
    assert_true(ptm(f, VMT_PTM_PAGE_IN, 0, VA + 0x100, ROOT_A, 0xa100));
    expect_log(f, "I0:a100");
    expect_stats(f, 3, 0, 1, 0);
}

static void test_activating_drops_pending_copy(void **state)
{
    fixture *f = *state;
    vmt_pa pa = 0x6008;
    assert_true(ins(f, bpx(VA + 8, ROOT_A, 0, false, 0, 0), NULL));
    assert_true(ins(f, bpx(VA + 8, ROOT_A, 0, false, 0, 0), &pa));
    expect_stats(f, 1, 0, 1, 0);
    /* An armed claim can get a pending copy (its address went away). */
    assert_true(ins(f, bpx(VA + 8, ROOT_A, 0, false, 0, 0), NULL));
    expect_stats(f, 1, 1, 1, 0);
    /* Already armed on that frame: nothing changes, pending copy stays. */
    assert_false(ins(f, bpx(VA + 8, ROOT_A, 0, false, 0, 0), &pa));
    expect_stats(f, 1, 1, 1, 0);
    /* The page-in at the same frame just drops the pending copy. */
    rec_clear_log(f->rec);
    assert_true(ptm(f, VMT_PTM_PAGE_IN, 0, VA + 8, ROOT_A, pa));
    expect_log(f, "");
    expect_stats(f, 1, 0, 1, 0);
}

static void test_remove_pending_active_both(void **state)
{
    fixture *f = *state;
    vmt_pa pa = 0x6010;
    assert_true(ins(f, bpx(VA + 0x10, ROOT_A, 0, false, 1, 0), NULL));
    assert_true(ins(f, bpx(VA + 0x10, ROOT_A, 0, false, 2, 0), &pa));
    assert_true(ins(f, bpx(VA + 0x10, ROOT_A, 0, false, 3, 0), &pa));
    assert_true(ins(f, bpx(VA + 0x10, ROOT_A, 0, false, 3, 0), NULL));
    expect_stats(f, 2, 2, 1, 0);
    rec_clear_log(f->rec);
    assert_true(rem(f, bpx(VA + 0x10, ROOT_A, 0, false, 1, 0)));
    expect_stats(f, 2, 1, 1, 0);
    assert_true(rem(f, bpx(VA + 0x10, ROOT_A, 0, false, 3, 0)));
    expect_stats(f, 1, 0, 1, 0);
    expect_log(f, "");
    assert_false(rem(f, bpx(VA + 0x10, ROOT_A, 0, false, 3, 0)));
    assert_true(rem(f, bpx(VA + 0x10, ROOT_A, 0, false, 2, 0)));
    expect_log(f, "R0:6010 U0:6");
}

/* ---- global breakpoints ---- */

static void test_global_canonical_root(void **state)
{
    fixture *f = *state;
    vmt_va kva = 0xffffffff81000040ull;
    vmt_pa p1 = 0x3040, p2 = 0x4040;
    assert_true(ins(f, bpx(kva, ROOT_A, 0, true, 0, 1), &p1));
    /* Same va under another root, another frame: the same claim armed again. */
    assert_true(ins(f, bpx(kva, ROOT_B, 0, true, 0, 2), &p2));
    /* Same frame under a third root: already armed there. */
    assert_false(ins(f, bpx(kva, ROOT_C, 0, true, 0, 3), &p1));
    expect_log(f, "I0:3040 M0:3 I0:4040 M0:4");
    expect_stats(f, 2, 0, 2, 1);
    /* Any CR3 matches; the breakpoint carries the canonical root. */
    vmt_event ev = rec_event(0, kva, 0x777000, 4);
    vmt_breakpoint got;
    assert_true(vmt_bpm_get_by_event(f->bpm, &ev, 0, &got));
    assert_true(got.global);
    assert_int_equal(got.ctx.root, ROOT_A);
    assert_int_equal(got.tag, 1);
    assert_true(vmt_bpm_contains_by_address(f->bpm, vmt_ctx(kva, ROOT_C), 0));
    assert_false(vmt_bpm_contains_by_address(f->bpm, vmt_ctx(kva, ROOT_C), 1));
    /* The global claim (kva, canonical ROOT_A) inserted again as non-global
     * conflicts and changes nothing, armed or pending. */
    bool inserted = true;
    vmt_breakpoint ng = bpx(kva, ROOT_A, 0, false, 0, 0);
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &ng, &p1, &inserted),
                     VMT_E_CONFLICT);
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &ng, NULL, &inserted),
                     VMT_E_CONFLICT);
    assert_true(inserted);
    /* A non-global claim of key 5 at (kva, ROOT_B), then the same claim as
     * global: no global claim of key 5 exists, so the global bp names
     * (kva, canonical ROOT_A) of key 5, another claim: accepted too. */
    vmt_pa p9 = 0x9040;
    assert_true(ins(f, bpx(kva, ROOT_B, 0, false, 5, 0), &p9));
    assert_true(ins(f, bpx(kva, ROOT_B, 0, true, 5, 0), &p9));
    /* Both exist now: the global one named as non-global conflicts; the
     * non-global one named again is itself (armed there: nothing to do). */
    vmt_breakpoint g = bpx(kva, ROOT_A, 0, false, 5, 0);
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &g, &p9, &inserted), VMT_E_CONFLICT);
    g = bpx(kva, ROOT_B, 0, false, 5, 0);
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &g, &p9, &inserted), VMT_OK);
    assert_false(inserted);
    expect_log(f, "I0:9040 M0:9");
    expect_stats(f, 4, 0, 3, 1);
    assert_true(rem(f, bpx(kva, ROOT_A, 0, true, 5, 0)));
    assert_true(rem(f, bpx(kva, ROOT_B, 0, false, 5, 0)));
    expect_log(f, "R0:9040 U0:9");
    expect_stats(f, 2, 0, 2, 1);
    /* Removing the global claim by any root removes it everywhere. */
    assert_true(rem(f, bpx(kva, ROOT_C, 0, true, 0, 0)));
    expect_stats(f, 0, 0, 0, 0);
    /* With it gone, the next global claim sets a new canonical root. */
    assert_true(ins(f, bpx(kva, ROOT_C, 0, true, 0, 0), &p1));
    assert_true(vmt_bpm_get_by_event(f->bpm, &ev, 0, &got) == false);
    ev.u.software_breakpoint.gfn = 3;
    assert_true(vmt_bpm_get_by_event(f->bpm, &ev, 0, &got));
    assert_int_equal(got.ctx.root, ROOT_C);
}

/* vmi-rs removing_nonglobal_leaves_global_at_same_va_intact, and more: a
 * non-global claim at the va of a global one (another root, same key, same
 * view) is another claim, on another frame or on the same one. */
static void test_nonglobal_beside_global(void **state)
{
    fixture *f = *state;
    vmt_va kva = 0xffffffff81000040ull;
    vmt_pa p3 = 0x3040, p9 = 0x9040;
    vmt_breakpoint got;
    assert_true(ins(f, bpx(kva, ROOT_A, 0, true, 0, 1), &p3));
    assert_true(ins(f, bpx(kva, ROOT_B, 0, false, 0, 2), &p9));
    expect_log(f, "I0:3040 M0:3 I0:9040 M0:9");
    expect_stats(f, 2, 0, 2, 1);
    /* Its own root on its own frame finds the non-global claim... */
    vmt_event ev = rec_event(0, kva, ROOT_B, 9);
    assert_true(vmt_bpm_get_by_event(f->bpm, &ev, 0, &got));
    assert_false(got.global);
    assert_int_equal(got.ctx.root, ROOT_B);
    assert_int_equal(got.tag, 2);
    /* ...another root there finds nothing (the global one is not armed on 9)... */
    ev.regs.cr3 = ROOT_C;
    assert_false(vmt_bpm_contains_by_event(f->bpm, &ev, 0));
    /* ...and every root on the global claim's frame finds the global one. */
    vmt_pa roots[] = {ROOT_A, ROOT_B, ROOT_C};
    for (unsigned i = 0; i < 3; i++) {
        ev = rec_event(0, kva, roots[i], 3);
        assert_true(vmt_bpm_get_by_event(f->bpm, &ev, 0, &got));
        assert_true(got.global);
        assert_int_equal(got.tag, 1);
    }
    /* Removing the non-global claim leaves the global one intact. */
    assert_true(rem(f, bpx(kva, ROOT_B, 0, false, 0, 0)));
    expect_log(f, "R0:9040 U0:9");
    expect_stats(f, 1, 0, 1, 1);
    for (unsigned i = 0; i < 3; i++) {
        ev = rec_event(0, kva, roots[i], 3);
        assert_true(vmt_bpm_contains_by_event(f->bpm, &ev, 0));
    }
    assert_true(vmt_bpm_contains_by_address(f->bpm, vmt_ctx(kva, ROOT_B), 0));
    /* On the global claim's own frame: a second claim at the same trap (no
     * controller call); an event under ROOT_B finds it, removing it (by
     * event) leaves the global one, which ROOT_B events find again. */
    assert_true(ins(f, bpx(kva, ROOT_B, 0, false, 0, 3), &p3));
    expect_log(f, "");
    expect_stats(f, 2, 0, 1, 1);
    ev = rec_event(0, kva, ROOT_B, 3);
    assert_true(vmt_bpm_get_by_event(f->bpm, &ev, 0, &got));
    assert_int_equal(got.tag, 3);
    vmt_removal r = VMT_REMOVED_NONE;
    assert_int_equal(vmt_bpm_remove_by_event(f->bpm, f->core, &ev, 0, &r), VMT_OK);
    assert_int_equal(r, VMT_REMOVED_SOME);
    expect_log(f, "");
    assert_true(vmt_bpm_get_by_event(f->bpm, &ev, 0, &got));
    assert_true(got.global);
    /* Pending, then paged in: the same. */
    assert_true(ins(f, bpx(kva, ROOT_B, 0, false, 0, 4), NULL));
    expect_stats(f, 1, 1, 1, 1);
    assert_true(ptm(f, VMT_PTM_PAGE_IN, 0, kva, ROOT_B, p9));
    expect_log(f, "I0:9040 M0:9");
    expect_stats(f, 2, 0, 2, 1);
    /* The reverse order: the global claim goes, the non-global one stays. */
    assert_true(rem(f, bpx(kva, ROOT_C, 0, true, 0, 0)));
    expect_log(f, "R0:3040 U0:3");
    expect_stats(f, 1, 0, 1, 0);
    ev = rec_event(0, kva, ROOT_B, 9);
    assert_true(vmt_bpm_get_by_event(f->bpm, &ev, 0, &got));
    assert_int_equal(got.tag, 4);
}

/* Only the same claim (view, key, ctx) with the other flag conflicts. */
static void test_conflict_only_same_claim(void **state)
{
    fixture *f = *state;
    vmt_pa p5 = 0x5010;
    bool inserted = true;
    assert_true(ins(f, bpx(VA + 0x10, ROOT_A, 0, false, 0, 0), &p5));
    vmt_breakpoint g = bpx(VA + 0x10, ROOT_A, 0, true, 0, 0);
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &g, &p5, &inserted), VMT_E_CONFLICT);
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &g, NULL, &inserted),
                     VMT_E_CONFLICT);
    assert_true(inserted);
    expect_log(f, "I0:5010 M0:5");
    expect_stats(f, 1, 0, 1, 0);
    /* Other key, other view: other claims. */
    assert_true(ins(f, bpx(VA + 0x10, ROOT_A, 0, true, 1, 0), &p5));
    assert_true(ins(f, bpx(VA + 0x10, ROOT_A, 1, true, 0, 0), &p5));
    expect_stats(f, 3, 0, 2, 2);
    /* (view 0, va) has a global claim now (key 1), canonical root ROOT_A:
     * a global bp of key 0 under any root names (va, ROOT_A) of key 0, the
     * non-global claim, whatever root it comes with. */
    g.ctx.root = ROOT_B;
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &g, NULL, &inserted),
                     VMT_E_CONFLICT);
    expect_stats(f, 3, 0, 2, 2);
    /* A pending non-global claim and the global one of its ctx, too. */
    vmt_breakpoint ng = bpx(VA + 0x20, ROOT_C, 2, false, 0, 0);
    assert_true(ins(f, ng, NULL));
    g = bpx(VA + 0x20, ROOT_C, 2, true, 0, 0);
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &g, NULL, &inserted),
                     VMT_E_CONFLICT);
    expect_stats(f, 3, 1, 2, 2);
    /* Removal with the other flag finds nothing. */
    assert_false(rem(f, g));
    assert_true(rem(f, ng));
}

static void test_global_pending_page_in_any_root(void **state)
{
    fixture *f = *state;
    vmt_va kva = 0xffffffff81000080ull;
    vmt_pa p1 = 0x3080;
    assert_true(ins(f, bpx(kva, ROOT_A, 0, true, 0, 0), &p1));
    assert_true(ins(f, bpx(kva, ROOT_B, 0, true, 4, 0), NULL)); /* filed under ROOT_A */
    expect_stats(f, 1, 1, 1, 1);
    /* A page-in through a third root activates the pending global claim. */
    assert_true(ptm(f, VMT_PTM_PAGE_IN, 0, kva, ROOT_C, p1));
    expect_stats(f, 2, 0, 1, 1);
    assert_true(ptm(f, VMT_PTM_PAGE_OUT, 0, kva, ROOT_A, p1));
    expect_stats(f, 0, 2, 0, 1);
    assert_true(ptm(f, VMT_PTM_PAGE_IN, 0, kva, ROOT_B, 0x5080));
    expect_stats(f, 2, 0, 1, 1);
    /* Non-global pending claims need their own root. */
    assert_true(ins(f, bpx(kva + 1, ROOT_A, 0, false, 0, 0), NULL));
    assert_false(ptm(f, VMT_PTM_PAGE_IN, 0, kva + 1, ROOT_B, 0x5081));
}

/* ---- removal by event, by view, clear ---- */

static void test_remove_by_event(void **state)
{
    fixture *f = *state;
    vmt_pa pa = 0x5050, pb = 0x5060;
    assert_true(ins(f, bpx(VA + 0x50, ROOT_A, 0, false, 0, 0), &pa));
    assert_true(ins(f, bpx(VA + 0x50, ROOT_A, 0, false, 1, 0), &pa));
    assert_true(ins(f, bpx(VA + 0x60, ROOT_A, 0, false, 0, 0), &pb));
    assert_true(ins(f, bpx(VA + 0x50, ROOT_A, 2, false, 0, 0), &pa));
    assert_true(ins(f, bpx(VA + 0x50, ROOT_A, 3, false, 0, 0), NULL));
    rec_clear_log(f->rec);
    vmt_removal r = 99;
    vmt_event ev = rec_event(0, VA + 0x50, ROOT_A, 5);
    /* Wrong key: nothing. */
    assert_int_equal(vmt_bpm_remove_by_event(f->bpm, f->core, &ev, 8, &r), VMT_OK);
    assert_int_equal(r, VMT_REMOVED_NONE);
    /* Key 0: removed in view 0 and in view 2 (active), not in view 3 (pending). */
    assert_int_equal(vmt_bpm_remove_by_event(f->bpm, f->core, &ev, 0, &r), VMT_OK);
    assert_int_equal(r, VMT_REMOVED_SOME);
    expect_log(f, "R2:5050 U2:5");
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
    expect_stats(f, 2, 1, 1, 0);
    assert_int_equal(vmt_bpm_remove_by_event(f->bpm, f->core, &ev, 1, &r), VMT_OK);
    assert_int_equal(r, VMT_REMOVED_SOME);
    expect_log(f, "R0:5050");
    ev.regs.rip = VA + 0x60;
    assert_int_equal(vmt_bpm_remove_by_event(f->bpm, f->core, &ev, 0, &r), VMT_OK);
    assert_int_equal(r, VMT_REMOVED_LAST);
    expect_log(f, "R0:5060 U0:5");
    expect_stats(f, 0, 1, 0, 0);
    /* Not a breakpoint event: NONE. */
    ev.reason = VMT_EVENT_SINGLESTEP;
    assert_int_equal(vmt_bpm_remove_by_event(f->bpm, f->core, &ev, 0, &r), VMT_OK);
    assert_int_equal(r, VMT_REMOVED_NONE);
}

static void test_remove_by_view_and_clear(void **state)
{
    fixture *f = *state;
    vmt_pa pa = 0x5050, pb = 0x6060;
    assert_true(ins(f, bpx(VA + 0x50, ROOT_A, 1, false, 0, 0), &pa));
    assert_true(ins(f, bpx(VA + 0x60, ROOT_A, 1, true, 0, 0), &pb));
    assert_true(ins(f, bpx(VA + 0x70, ROOT_A, 1, false, 0, 0), NULL));
    assert_true(ins(f, bpx(VA + 0x50, ROOT_A, 2, false, 0, 0), &pa));
    assert_true(ins(f, bpx(VA + 0x80, ROOT_A, 2, false, 0, 0), NULL));
    expect_stats(f, 3, 2, 3, 1);
    bool removed = false;
    assert_int_equal(vmt_bpm_remove_by_view(f->bpm, f->core, 1, &removed), VMT_OK);
    assert_true(removed);
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
    expect_stats(f, 1, 1, 1, 0);
    assert_int_equal(vmt_bpm_remove_by_view(f->bpm, f->core, 1, &removed), VMT_OK);
    assert_false(removed);
    rec_clear_log(f->rec);
    assert_int_equal(vmt_bpm_clear(f->bpm, f->core), VMT_OK);
    expect_log(f, "R2:5050 U2:5");
    expect_stats(f, 0, 0, 0, 0);
    assert_int_equal(rec_ntraps(f->rec), 0);
    assert_int_equal(rec_nmonitored(f->rec), 0);
}

/* ---- errors ---- */

static void test_view_not_found_tolerated(void **state)
{
    fixture *f = *state;
    vmt_pa pa = 0x5050;
    assert_true(ins(f, bpx(VA + 0x50, ROOT_A, 4, false, 0, 0), &pa));
    rec_kill_view(f->rec, 4);
    assert_true(rem(f, bpx(VA + 0x50, ROOT_A, 4, false, 0, 0)));
    expect_stats(f, 0, 0, 0, 0);
    /* Inserting into the dead view fails with its status, changes nothing. */
    rec_clear_log(f->rec);
    vmt_breakpoint bp = bpx(VA + 0x50, ROOT_A, 4, false, 0, 0);
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, &pa, NULL),
                     VMT_E_VIEW_NOT_FOUND);
    expect_log(f, "I4:5050!");
    expect_stats(f, 0, 0, 0, 0);
}

static void test_monitor_failure_rolls_back(void **state)
{
    fixture *f = *state;
    vmt_pa pa = 0x5050;
    vmt_breakpoint bp = bpx(VA + 0x50, ROOT_A, 0, false, 0, 0);
    assert_true(ins(f, bp, NULL));
    rec_fail_nth(f->rec, 2, VMT_E_DRIVER);
    bool inserted = false;
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, &pa, &inserted), VMT_E_DRIVER);
    assert_false(inserted);
    expect_log(f, "I0:5050 M0:5! R0:5050");
    expect_stats(f, 0, 1, 0, 0); /* still pending, not armed */
    assert_true(ins(f, bp, &pa));
    expect_stats(f, 1, 0, 1, 0);
    /* Unmonitor fails: the trap is put back, the claim stays. */
    rec_clear_log(f->rec);
    rec_fail_nth(f->rec, 2, VMT_E_DRIVER);
    bool removed = false;
    assert_int_equal(vmt_bpm_remove(f->bpm, f->core, &bp, &removed), VMT_E_DRIVER);
    assert_false(removed);
    expect_log(f, "R0:5050 U0:5! I0:5050");
    expect_stats(f, 1, 0, 1, 0);
    assert_true(rem(f, bp));
}

/* Two faults in a row: the undo fails too. The manager then keeps every
 * trap it could not take back accounted for, and repairs the page later. */
static void test_double_faults(void **state)
{
    fixture *f = *state;
    vmt_pa pa = 0x5050, pb = 0x5060;
    vmt_breakpoint a = bpx(VA + 0x50, ROOT_A, 0, false, 0, 0);
    vmt_breakpoint b = bpx(VA + 0x60, ROOT_A, 0, false, 0, 0);
    /* monitor fails, and so does removing the trap again. */
    rec_fail_run(f->rec, 2, 2, VMT_E_DRIVER);
    bool inserted = false;
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &a, &pa, &inserted), VMT_E_DRIVER);
    expect_log(f, "I0:5050 M0:5! R0:5050!");
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
    expect_stats(f, 1, 0, 1, 0); /* armed: its trap is in the guest */
    assert_true(rec_has_trap(f->rec, 0, pa));
    assert_false(rec_is_monitored(f->rec, 0, 5));
    /* The next claim on the page monitors it. */
    assert_true(ins(f, b, &pb));
    expect_log(f, "I0:5060 M0:5");
    assert_true(rec_matches_bpm(f->rec, f->bpm));
    /* unmonitor fails, and so does putting the trap back: the claim is gone
     * (no trap left), the page stays monitored in the guest. */
    assert_true(rem(f, a));
    rec_clear_log(f->rec);
    rec_fail_run(f->rec, 2, 2, VMT_E_DRIVER);
    bool removed = false;
    assert_int_equal(vmt_bpm_remove(f->bpm, f->core, &b, &removed), VMT_E_DRIVER);
    expect_log(f, "R0:5060 U0:5! I0:5060!");
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
    expect_stats(f, 0, 0, 0, 0);
    assert_int_equal(rec_ntraps(f->rec), 0);
    assert_true(rec_is_monitored(f->rec, 0, 5));
    /* What the caller can do about the page: unmonitor it directly. */
    const vmt_tap_controller *c = vmt_bpm_controller(f->bpm);
    assert_int_equal(c->ops->unmonitor(c->self, f->core, 5, 0), VMT_OK);
}

static void test_invalid_arguments(void **state)
{
    fixture *f = *state;
    vmt_breakpoint bp = bpx(0x0000900000000000ull, ROOT_A, 0, false, 0, 0); /* non-canonical */
    bool b = true;
    vmt_pa pa = 0x1000;
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, &pa, &b), VMT_E_INVALID);
    assert_int_equal(vmt_bpm_insert(f->bpm, f->core, &bp, &b), VMT_E_INVALID);
    assert_int_equal(vmt_bpm_remove(f->bpm, f->core, &bp, &b), VMT_E_INVALID);
    assert_true(b);
    assert_int_equal(vmt_bpm_insert(NULL, f->core, &bp, &b), VMT_E_INVALID);
    assert_int_equal(vmt_bpm_insert(f->bpm, NULL, &bp, &b), VMT_E_INVALID);
    assert_int_equal(vmt_bpm_insert(f->bpm, f->core, NULL, &b), VMT_E_INVALID);
    assert_int_equal(vmt_bpm_remove_by_event(f->bpm, f->core, NULL, 0, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_bpm_handle_ptm_event(f->bpm, f->core, NULL, NULL), VMT_E_INVALID);
    vmt_ptm_event bad = {.kind = 7};
    assert_int_equal(vmt_bpm_handle_ptm_event(f->bpm, f->core, &bad, NULL), VMT_E_INVALID);
    bad = (vmt_ptm_event){.kind = VMT_PTM_PAGE_IN, .pa = 1ull << 52};
    assert_int_equal(vmt_bpm_handle_ptm_event(f->bpm, f->core, &bad, NULL), VMT_E_INVALID);
    vmt_pa huge = 1ull << 52;
    vmt_breakpoint ok = bpx(VA, ROOT_A, 0, false, 0, 0);
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &ok, &huge, &b), VMT_E_INVALID);
    assert_int_equal(vmt_bpm_clear(NULL, f->core), VMT_E_INVALID);
    assert_int_equal(vmt_bpm_check(NULL), VMT_E_INVALID);
    assert_false(vmt_bpm_contains_by_event(f->bpm, NULL, 0));
    expect_log(f, "");
    expect_stats(f, 0, 0, 0, 0);
}

/* A root with CR3 flag or PCID bits (root | 5) names no address space an
 * event can come from: refused everywhere, nothing changed. */
static void test_root_with_flag_bits(void **state)
{
    fixture *f = *state;
    vmt_pa pa = 0x5010;
    assert_true(ins(f, bpx(VA + 0x10, ROOT_A, 0, false, 0, 0), &pa));
    expect_log(f, "I0:5010 M0:5");
    vmt_pa bad_roots[] = {ROOT_A | 5, ROOT_A | 0x800, ROOT_A | (1ull << 63), 1ull << 52};
    for (unsigned i = 0; i < 4; i++) {
        for (int global = 0; global < 2; global++) {
            vmt_breakpoint bp = bpx(VA + 0x20, bad_roots[i], 0, global, 0, 0);
            bool b = true;
            vmt_pa pb = 0x5020;
            assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, &pb, &b),
                             VMT_E_INVALID);
            assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, NULL, &b),
                             VMT_E_INVALID);
            assert_int_equal(vmt_bpm_insert(f->bpm, f->core, &bp, &b), VMT_E_INVALID);
            /* Not the claim at ROOT_A either. */
            bp.ctx.va = VA + 0x10;
            assert_int_equal(vmt_bpm_remove(f->bpm, f->core, &bp, &b), VMT_E_INVALID);
            assert_int_equal(vmt_bpm_remove_with_hint(f->bpm, f->core, &bp, &pa, &b),
                             VMT_E_INVALID);
            assert_true(b);
            vmt_ptm_event ev = {.kind = VMT_PTM_PAGE_IN, .ctx = bp.ctx, .pa = pa};
            assert_int_equal(vmt_bpm_handle_ptm_event(f->bpm, f->core, &ev, &b), VMT_E_INVALID);
            assert_true(b);
        }
    }
    vmt_ptm_event ev = {.kind = VMT_PTM_PAGE_IN, .ctx = vmt_ctx(0x0000900000000000ull, ROOT_A)};
    assert_int_equal(vmt_bpm_handle_ptm_event(f->bpm, f->core, &ev, NULL), VMT_E_INVALID);
    /* A batch with one bad event is refused whole, before anything. */
    vmt_ptm_event batch[2] = {
        {.kind = VMT_PTM_PAGE_OUT, .view = 0, .ctx = vmt_ctx(VA + 0x10, ROOT_A), .pa = pa},
        {.kind = VMT_PTM_PAGE_IN, .view = 0, .ctx = vmt_ctx(VA + 0x10, ROOT_A | 5), .pa = pa},
    };
    assert_int_equal(vmt_bpm_handle_ptm_events(f->bpm, f->core, batch, 2, NULL), VMT_E_INVALID);
    expect_log(f, "");
    expect_stats(f, 1, 0, 1, 0);
    assert_true(vmt_bpm_contains_by_address(f->bpm, vmt_ctx(VA + 0x10, ROOT_A), 0));
}

/* A pending claim in a view the driver does not have is refused (an armed
 * one is refused by the controller); nothing changed. */
static void test_pending_unknown_view(void **state)
{
    fixture *f = *state;
    assert_true(ins(f, bpx(VA + 0x10, ROOT_A, 4, false, 0, 0), NULL));
    expect_stats(f, 0, 1, 0, 0);
    vmt_view views[] = {5, 9, 0xffff};
    for (unsigned i = 0; i < 3; i++) {
        for (int global = 0; global < 2; global++) {
            vmt_breakpoint bp = bpx(VA + 0x10, ROOT_A, views[i], global, 0, 0);
            bool b = false;
            assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, NULL, &b),
                             VMT_E_VIEW_NOT_FOUND);
            /* The translating insert: unmapped, so pending, so refused. */
            assert_int_equal(vmt_bpm_insert(f->bpm, f->core, &bp, &b), VMT_E_VIEW_NOT_FOUND);
            assert_false(b);
            assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
        }
    }
    /* A view destroyed in the driver: the same. */
    assert_int_equal(vmt_core_destroy_view(f->core, 3), VMT_OK);
    vmt_breakpoint bp = bpx(VA + 0x10, ROOT_A, 3, false, 0, 0);
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, NULL, NULL),
                     VMT_E_VIEW_NOT_FOUND);
    /* A driver failure asking is returned, nothing changed. */
    bp.view = 2;
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_GET_ACCESS, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, NULL, NULL), VMT_E_DRIVER);
    expect_log(f, "");
    expect_stats(f, 0, 1, 0, 0);
    /* Retried, it is kept. */
    assert_true(ins(f, bp, NULL));
    expect_stats(f, 0, 2, 0, 0);
}

/* Page-in of a (view, ctx) with many pending claims (more than the 64 the
 * page-in collects on its stack), all keys, some global. */
static void test_page_in_many_pending(void **state)
{
    fixture *f = *state;
    const unsigned n = 200;
    vmt_va kva = 0xffffffff81000100ull;
    for (unsigned k = 0; k < n; k++)
        assert_true(ins(f, bpx(VA + 0x100, ROOT_A, 1, false, k, k), NULL));
    /* Global claims of other keys at kva, filed under ROOT_B: paged in by
     * a page-in through any root. */
    vmt_pa pb = 0x6100;
    assert_true(ins(f, bpx(kva, ROOT_B, 1, true, 1000, 0), &pb));
    for (unsigned k = 0; k < n; k++)
        assert_true(ins(f, bpx(kva, ROOT_B, 1, true, 2000 + k, 0), NULL));
    assert_true(ins(f, bpx(kva, ROOT_C, 1, false, 5000, 0), NULL)); /* root C itself */
    rec_clear_log(f->rec);
    expect_stats(f, 1, 2 * n + 1, 1, 1);
    assert_true(ptm(f, VMT_PTM_PAGE_IN, 1, VA + 0x100, ROOT_A, 0x7100));
    expect_log(f, "I1:7100 M1:7");
    expect_stats(f, n + 1, n + 1, 2, 1);
    for (unsigned k = 0; k < n; k++) {
        vmt_event ev = rec_event(1, VA + 0x100, ROOT_A, 7);
        vmt_breakpoint got;
        assert_true(vmt_bpm_get_by_event(f->bpm, &ev, k, &got));
        assert_int_equal(got.tag, k);
    }
    assert_true(ptm(f, VMT_PTM_PAGE_IN, 1, kva, ROOT_C, 0x8100));
    expect_log(f, "I1:8100 M1:8");
    expect_stats(f, 2 * n + 2, 0, 3, 1);
    /* A fault at the first controller call: all stay pending, nothing
     * armed; a retry arms all. */
    assert_true(ptm(f, VMT_PTM_PAGE_OUT, 1, VA + 0x100, ROOT_A, 0x7100));
    expect_log(f, "R1:7100 U1:7");
    expect_stats(f, n + 2, n, 2, 1);
    rec_fail_nth(f->rec, 1, VMT_E_DRIVER);
    vmt_ptm_event ev = {.kind = VMT_PTM_PAGE_IN, .view = 1, .ctx = vmt_ctx(VA + 0x100, ROOT_A),
                        .pa = 0x9100};
    assert_int_equal(vmt_bpm_handle_ptm_event(f->bpm, f->core, &ev, NULL), VMT_E_DRIVER);
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
    expect_stats(f, n + 2, n, 2, 1);
    assert_true(ptm(f, VMT_PTM_PAGE_IN, 1, VA + 0x100, ROOT_A, 0x9100));
    expect_stats(f, 2 * n + 2, 0, 3, 1);
}

/* One claim armed on as many frames as it can take. */
static void test_arm_limit(void **state)
{
    fixture *f = *state;
    vmt_breakpoint bp = bpx(VA + 8, ROOT_A, 0, false, 0, 0);
    f->rec->keep_log = false;
    bool inserted = false;
    vmt_pa pa = 0;
    for (unsigned i = 0; i < BPM_MAX_ARMS; i++) {
        pa = vmt_pa_in_gfn(0x100000 + i, VA + 8);
        assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, &pa, &inserted), VMT_OK);
    }
    pa += VMT_PAGE_SIZE;
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, &pa, &inserted), VMT_E_NOMEM);
    expect_stats(f, BPM_MAX_ARMS, 0, BPM_MAX_ARMS, 0);
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
    assert_true(rem(f, bp));
    expect_stats(f, 0, 0, 0, 0);
}

/* ---- every controller call of every operation failed in turn ---- */

typedef struct walk_case {
    const char *name;
    void (*prepare)(fixture *f);
    vmt_status (*op)(fixture *f);
} walk_case;

static void w_prepare(fixture *f)
{
    vmt_pa p1 = 0x5010, p2 = 0x5020, p3 = 0x6030, p4 = 0x7010;
    assert_true(ins(f, bpx(VA + 0x10, ROOT_A, 0, false, 0, 0), &p1));
    assert_true(ins(f, bpx(VA + 0x20, ROOT_A, 0, false, 0, 0), &p2));
    assert_true(ins(f, bpx(VA + 0x20, ROOT_A, 0, false, 1, 0), &p2));
    assert_true(ins(f, bpx(VA + 0x10, ROOT_A, 1, false, 0, 0), &p1));
    assert_true(ins(f, bpx(VA + 0x1030, ROOT_A, 1, false, 0, 0), &p3));
    assert_true(ins(f, bpx(0xffffffff81000010ull, ROOT_B, 0, true, 0, 0), &p4));
    assert_true(ins(f, bpx(VA + 0x2010, ROOT_A, 0, false, 0, 0), NULL));
    assert_true(ins(f, bpx(VA + 0x2020, ROOT_A, 0, false, 0, 0), NULL));
    assert_true(ins(f, bpx(VA + 0x2040, ROOT_A, 0, false, 0, 0), NULL));
}

static vmt_status w_insert_new_page(fixture *f)
{
    vmt_breakpoint bp = bpx(VA + 0x3010, ROOT_A, 0, false, 0, 0);
    vmt_pa pa = 0x8010;
    return vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, &pa, NULL);
}

static vmt_status w_activate(fixture *f)
{
    vmt_breakpoint bp = bpx(VA + 0x2010, ROOT_A, 0, false, 0, 0);
    vmt_pa pa = 0x6010; /* a page armed in view 1 only */
    return vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, &pa, NULL);
}

static vmt_status w_activate_armed_page(fixture *f)
{
    vmt_breakpoint bp = bpx(VA + 0x2040, ROOT_A, 0, false, 0, 0);
    vmt_pa pa = 0x5040; /* an armed page, a new offset */
    return vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, &pa, NULL);
}

static vmt_status w_global_second_frame(fixture *f)
{
    vmt_breakpoint bp = bpx(0xffffffff81000010ull, ROOT_C, 0, true, 0, 0);
    vmt_pa pa = 0x9010;
    return vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, &pa, NULL);
}

static vmt_status w_remove(fixture *f)
{
    vmt_breakpoint bp = bpx(VA + 0x10, ROOT_A, 0, false, 0, 0);
    return vmt_bpm_remove(f->bpm, f->core, &bp, NULL);
}

static vmt_status w_remove_global(fixture *f)
{
    vmt_breakpoint bp = bpx(0xffffffff81000010ull, ROOT_A, 0, true, 0, 0);
    return vmt_bpm_remove(f->bpm, f->core, &bp, NULL);
}

static vmt_status w_page_out(fixture *f)
{
    vmt_ptm_event ev = {
        .kind = VMT_PTM_PAGE_OUT, .view = 0, .ctx = vmt_ctx(VA, ROOT_A), .pa = 0x5000};
    return vmt_bpm_handle_ptm_event(f->bpm, f->core, &ev, NULL);
}

static vmt_status w_page_ins(fixture *f)
{
    vmt_ptm_event ev[2] = {
        {.kind = VMT_PTM_PAGE_IN, .view = 0, .ctx = vmt_ctx(VA + 0x2010, ROOT_A), .pa = 0xa010},
        {.kind = VMT_PTM_PAGE_IN, .view = 0, .ctx = vmt_ctx(VA + 0x2020, ROOT_A), .pa = 0xa020},
    };
    return vmt_bpm_handle_ptm_events(f->bpm, f->core, ev, 2, NULL);
}

static vmt_status w_remove_by_event(fixture *f)
{
    vmt_event ev = rec_event(1, VA + 0x10, ROOT_A, 5);
    return vmt_bpm_remove_by_event(f->bpm, f->core, &ev, 0, NULL);
}

static vmt_status w_remove_by_view(fixture *f)
{
    return vmt_bpm_remove_by_view(f->bpm, f->core, 0, NULL);
}

static vmt_status w_clear(fixture *f)
{
    return vmt_bpm_clear(f->bpm, f->core);
}

static const walk_case walk_cases[] = {
    {"insert on a new page", w_prepare, w_insert_new_page},
    {"activate a pending claim", w_prepare, w_activate},
    {"activate a pending claim on an armed page", w_prepare, w_activate_armed_page},
    {"global claim on a second frame", w_prepare, w_global_second_frame},
    {"remove", w_prepare, w_remove},
    {"remove a global claim", w_prepare, w_remove_global},
    {"page-out", w_prepare, w_page_out},
    {"page-ins", w_prepare, w_page_ins},
    {"remove_by_event", w_prepare, w_remove_by_event},
    {"remove_by_view", w_prepare, w_remove_by_view},
    {"clear", w_prepare, w_clear},
};

typedef struct state_fp {
    uint64_t sum;
    size_t n;
} state_fp;

static uint64_t fp_mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    return x ^ (x >> 29);
}

static void fp_arm_cb(void *user, const vmt_breakpoint *bp, vmt_gfn gfn)
{
    state_fp *s = user;
    s->sum += fp_mix(fp_mix(fp_mix(bp->ctx.va ^ bp->ctx.root) ^ bp->key) ^ (bp->view * 7u + gfn));
    s->n++;
}

static void fp_pending_cb(void *user, const vmt_breakpoint *bp)
{
    fp_arm_cb(user, bp, ~0ull);
}

static state_fp state_of(fixture *f)
{
    state_fp s = {0};
    vmt_bpm_foreach_arm(f->bpm, fp_arm_cb, &s);
    vmt_bpm_foreach_pending(f->bpm, fp_pending_cb, &s);
    return s;
}

static void test_controller_fault_walk(void **state)
{
    (void)state;
    for (size_t i = 0; i < G_N_ELEMENTS(walk_cases); i++) {
        const walk_case *w = &walk_cases[i];
        fixture *ref;
        assert_int_equal(setup((void **)&ref), 0);
        w->prepare(ref);
        assert_int_equal(w->op(ref), VMT_OK);
        state_fp want = state_of(ref);
        assert_int_equal(teardown((void **)&ref), 0);
        unsigned nth;
        for (nth = 1;; nth++) {
            fixture *f;
            assert_int_equal(setup((void **)&f), 0);
            w->prepare(f);
            rec_fail_nth(f->rec, nth, VMT_E_DRIVER);
            vmt_status st = w->op(f);
            bool fired = f->rec->fail_at == 0;
            rec_fail_nth(f->rec, 0, VMT_OK);
            if (!fired) {
                assert_int_equal(st, VMT_OK);
                assert_int_equal(teardown((void **)&f), 0);
                break;
            }
            if (st != VMT_E_DRIVER)
                fail_msg("%s: controller call %u failed, operation returned %s", w->name, nth,
                         vmt_status_str(st));
            /* Consistent, every trap accounted for (teardown checks that too). */
            assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
            assert_true(rec_matches_bpm(f->rec, f->bpm));
            assert_int_equal(f->rec->violations, 0);
            assert_int_equal(w->op(f), VMT_OK);
            state_fp got = state_of(f);
            if (got.sum != want.sum || got.n != want.n)
                fail_msg("%s: after a fault at call %u and a retry, the state differs", w->name,
                         nth);
            assert_int_equal(teardown((void **)&f), 0);
        }
        print_message("%s: %u controller calls failed in turn\n", w->name, nth - 1);
    }
}

static int destroyed;
static void count_destroy(void *self)
{
    (void)self;
    destroyed++;
}

static void test_new_takes_controller(void **state)
{
    (void)state;
    static const vmt_tap_controller_ops incomplete = {.destroy = count_destroy};
    vmt_tap_controller c = {&incomplete, NULL};
    vmt_bpm *bpm = NULL;
    destroyed = 0;
    assert_int_equal(vmt_bpm_new(c, NULL), VMT_E_INVALID);
    assert_int_equal(destroyed, 1);
    assert_int_equal(vmt_bpm_new(c, &bpm), VMT_E_INVALID);
    assert_int_equal(destroyed, 2);
    assert_null(bpm);
    vmt_bpm_free(NULL);
}

/* ---- insert translates ---- */

static void test_insert_translates(void **state)
{
    fixture *f = *state;
    vmt_pa root;
    assert_int_equal(vmt_mock_new_root(f->mock, &root), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, root, VA, 0x7000, VMT_MOCK_4K, 0), VMT_OK);
    vmt_breakpoint mapped = bpx(VA + 0x44, root, 0, false, 0, 0);
    vmt_breakpoint unmapped = bpx(VA + 0x1044, root, 0, false, 0, 0);
    bool inserted = false;
    assert_int_equal(vmt_bpm_insert(f->bpm, f->core, &mapped, &inserted), VMT_OK);
    assert_true(inserted);
    expect_log(f, "I0:7044 M0:7");
    assert_int_equal(vmt_bpm_insert(f->bpm, f->core, &unmapped, &inserted), VMT_OK);
    assert_true(inserted);
    expect_log(f, "");
    expect_stats(f, 1, 1, 1, 0);
    /* A failed page-table read is an error, never a pending breakpoint. */
    vmt_breakpoint other = bpx(VA + 0x2044, root, 0, false, 0, 0);
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_READ, 1, VMT_E_DRIVER);
    inserted = false;
    assert_int_equal(vmt_bpm_insert(f->bpm, f->core, &other, &inserted), VMT_E_DRIVER);
    assert_false(inserted);
    expect_stats(f, 1, 1, 1, 0);
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_insert_then_monitor_once),
        T(test_same_claim_on_two_frames),
        T(test_views_are_independent),
        T(test_pending_and_page_in),
        T(test_activating_drops_pending_copy),
        T(test_remove_pending_active_both),
        T(test_global_canonical_root),
        T(test_global_pending_page_in_any_root),
        T(test_nonglobal_beside_global),
        T(test_conflict_only_same_claim),
        T(test_remove_by_event),
        T(test_remove_by_view_and_clear),
        T(test_view_not_found_tolerated),
        T(test_monitor_failure_rolls_back),
        T(test_double_faults),
        T(test_arm_limit),
        T(test_invalid_arguments),
        T(test_root_with_flag_bits),
        T(test_pending_unknown_view),
        T(test_page_in_many_pending),
        T(test_insert_translates),
        cmocka_unit_test(test_controller_fault_walk),
        cmocka_unit_test(test_new_takes_controller),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
