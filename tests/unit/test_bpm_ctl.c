/* The two real controllers and the interceptor on the mock driver: guest
 * memory (shadow content, original bytes, access rights, view remaps), and
 * fault injection that fails every driver call of every bpm operation in
 * turn, checking consistency after each failure and that a retry succeeds. */
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
#include "bpm/interceptor.h"
#include "vmitap/mock.h"

#define MAX_GFN 0x1000u
#define GFN0 0x10u /* test frames [GFN0, GFN0 + NFRAMES) hold a pattern */
#define NFRAMES 8u
#define NVIEWS 3 /* views 0, 1, 2 */
#define VA 0x400000ull
#define ROOT 0x5000ull

typedef enum { CTL_BREAKPOINT, CTL_MEMORY } ctl_kind;

typedef struct fixture {
    vmt_core *core;
    vmt_mock *mock;
    vmt_bpm *bpm;
    ctl_kind kind;
} fixture;

static uint8_t pattern(vmt_gfn gfn, unsigned off)
{
    return (uint8_t)(gfn * 31 + off * 7 + 1);
}

static fixture *fixture_new(ctl_kind kind, uint32_t caps)
{
    fixture *f = calloc(1, sizeof *f);
    vmt_mock_opts o = {.sz = sizeof o, .max_gfn = MAX_GFN, .caps = caps};
    assert_int_equal(vmt_mock_core_new(&o, &f->core, &f->mock), VMT_OK);
    for (int v = 1; v < NVIEWS; v++) {
        vmt_view id;
        assert_int_equal(vmt_core_create_view(f->core, VMT_ACCESS_RWX, &id), VMT_OK);
        assert_int_equal(id, v);
    }
    uint8_t buf[VMT_PAGE_SIZE];
    for (vmt_gfn g = GFN0; g < GFN0 + NFRAMES; g++) {
        for (unsigned i = 0; i < VMT_PAGE_SIZE; i++)
            buf[i] = pattern(g, i);
        assert_int_equal(vmt_mock_poke(f->mock, vmt_pa_from_gfn(g), buf, sizeof buf), VMT_OK);
    }
    vmt_tap_controller c;
    assert_int_equal(kind == CTL_BREAKPOINT ? vmt_breakpoint_controller_new(&c)
                                            : vmt_memory_controller_new(&c),
                     VMT_OK);
    assert_int_equal(vmt_bpm_new(c, &f->bpm), VMT_OK);
    f->kind = kind;
    return f;
}

static void fixture_free(fixture *f)
{
    vmt_bpm_free(f->bpm);
    vmt_core_free(f->core);
    free(f);
}

/* Offsets with armed claims per (view, test frame). */
typedef struct armed_map {
    bool at[NVIEWS][NFRAMES][VMT_PAGE_SIZE];
    bool page[NVIEWS][NFRAMES];
    bool bad;
} armed_map;

static void collect_arm(void *user, const vmt_breakpoint *bp, vmt_gfn gfn)
{
    armed_map *m = user;
    if (bp->view >= NVIEWS || gfn < GFN0 || gfn >= GFN0 + NFRAMES) {
        m->bad = true;
        return;
    }
    m->at[bp->view][gfn - GFN0][bp->ctx.va & 0xfff] = true;
    m->page[bp->view][gfn - GFN0] = true;
}

/* The guest is exactly what the manager's indexes say: its own frames are
 * untouched; in each view a frame with armed claims is remapped to a shadow
 * holding the original bytes with 0xCC at every armed offset (breakpoint
 * controller) and has the controller's access; every other frame is itself
 * with full access; no shadow frame is left allocated. */
static void assert_guest_consistent(fixture *f)
{
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
    armed_map *m = calloc(1, sizeof *m);
    vmt_bpm_foreach_arm(f->bpm, collect_arm, m);
    assert_false(m->bad);
    size_t pages = 0;
    uint8_t buf[VMT_PAGE_SIZE];
    for (int v = 0; v < NVIEWS; v++) {
        for (unsigned i = 0; i < NFRAMES; i++) {
            vmt_gfn gfn = GFN0 + i;
            assert_int_equal(vmt_mock_peek(f->mock, vmt_pa_from_gfn(gfn), buf, sizeof buf), VMT_OK);
            for (unsigned o = 0; o < VMT_PAGE_SIZE; o++)
                assert_int_equal(buf[o], pattern(gfn, o));
            vmt_gfn backing;
            assert_int_equal(vmt_mock_view_backing(f->mock, (vmt_view)v, gfn, &backing), VMT_OK);
            vmt_access a;
            assert_int_equal(vmt_core_get_access(f->core, gfn, (vmt_view)v, &a), VMT_OK);
            bool armed = m->page[v][i];
            pages += armed;
            if (f->kind == CTL_MEMORY) {
                assert_int_equal(backing, gfn);
                assert_int_equal(a, armed ? VMT_ACCESS_RW : VMT_ACCESS_RWX);
                continue;
            }
            assert_int_equal(a, armed ? VMT_ACCESS_X : VMT_ACCESS_RWX);
            if (!armed) {
                assert_int_equal(backing, gfn);
                continue;
            }
            assert_true(backing >= MAX_GFN);
            assert_int_equal(
                vmt_mock_view_read(f->mock, (vmt_view)v, vmt_pa_from_gfn(gfn), buf, sizeof buf),
                VMT_OK);
            for (unsigned o = 0; o < VMT_PAGE_SIZE; o++)
                assert_int_equal(buf[o], m->at[v][i][o] ? 0xCC : pattern(gfn, o));
        }
    }
    vmt_bpm_stats s;
    vmt_bpm_stats_get(f->bpm, &s);
    assert_int_equal(s.pages, pages);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), f->kind == CTL_BREAKPOINT ? pages : 0);
    free(m);
}

static vmt_breakpoint bpx(unsigned frame, unsigned off, vmt_view view, uint64_t key)
{
    vmt_breakpoint bp = {
        .ctx = vmt_ctx(VA + frame * 0x1000ull + off, ROOT), .view = view, .key = key};
    return bp;
}

static vmt_pa pa_of(unsigned frame, unsigned off)
{
    return vmt_pa_from_gfn(GFN0 + frame) + off;
}

static void must_insert(fixture *f, vmt_breakpoint bp, vmt_pa pa)
{
    bool ins = false;
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, &pa, &ins), VMT_OK);
    assert_true(ins);
}

/* ---- breakpoint controller ---- */

static void test_breakpoint_shadow(void **state)
{
    (void)state;
    fixture *f = fixture_new(CTL_BREAKPOINT, 0);
    must_insert(f, bpx(0, 0x10, 1, 0), pa_of(0, 0x10));
    assert_guest_consistent(f);
    vmt_interceptor *ic = vmt_breakpoint_controller_interceptor(vmt_bpm_controller(f->bpm));
    vmt_gfn shadow;
    assert_true(vmt_interceptor_shadow_gfn(ic, 1, GFN0, &shadow));
    assert_false(vmt_interceptor_shadow_gfn(ic, 0, GFN0, NULL));
    /* The default view still sees the original frame. */
    uint8_t b;
    assert_int_equal(vmt_mock_view_read(f->mock, 0, pa_of(0, 0x10), &b, 1), VMT_OK);
    assert_int_equal(b, pattern(GFN0, 0x10));
    assert_int_equal(vmt_mock_view_read(f->mock, 1, pa_of(0, 0x10), &b, 1), VMT_OK);
    assert_int_equal(b, 0xCC);
    /* The stealthy read gives the original byte. */
    assert_int_equal(vmt_interceptor_read_original(ic, f->core, 1, pa_of(0, 0x10), &b, 1), VMT_OK);
    assert_int_equal(b, pattern(GFN0, 0x10));
    /* A second breakpoint on the page, and the same address in another view. */
    must_insert(f, bpx(0, 0xfff, 1, 0), pa_of(0, 0xfff));
    must_insert(f, bpx(0, 0x10, 2, 0), pa_of(0, 0x10));
    must_insert(f, bpx(0, 0x10, 2, 9), pa_of(0, 0x10));
    assert_int_equal(vmt_interceptor_refs(ic, 2, pa_of(0, 0x10)), 1);
    assert_guest_consistent(f);
    assert_int_equal(vmt_interceptor_pages(ic), 2);
    bool rem;
    vmt_breakpoint bp = bpx(0, 0x10, 1, 0);
    assert_int_equal(vmt_bpm_remove(f->bpm, f->core, &bp, &rem), VMT_OK);
    assert_true(rem);
    assert_guest_consistent(f);
    assert_int_equal(vmt_bpm_clear(f->bpm, f->core), VMT_OK);
    assert_guest_consistent(f);
    assert_int_equal(vmt_interceptor_pages(ic), 0);
    fixture_free(f);
}

static void test_breakpoint_without_execute_only(void **state)
{
    (void)state;
    fixture *f = fixture_new(CTL_BREAKPOINT, VMT_CAP_VIEWS);
    must_insert(f, bpx(1, 0x20, 1, 0), pa_of(1, 0x20));
    vmt_access a;
    assert_int_equal(vmt_core_get_access(f->core, GFN0 + 1, 1, &a), VMT_OK);
    assert_int_equal(a, VMT_ACCESS_RX);
    assert_int_equal(vmt_bpm_clear(f->bpm, f->core), VMT_OK);
    assert_int_equal(vmt_core_get_access(f->core, GFN0 + 1, 1, &a), VMT_OK);
    assert_int_equal(a, VMT_ACCESS_RWX);
    fixture_free(f);
}

static void test_is_breakpoint_reads_guest_frame(void **state)
{
    (void)state;
    fixture *f = fixture_new(CTL_BREAKPOINT, 0);
    must_insert(f, bpx(2, 0x30, 0, 0), pa_of(2, 0x30));
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.reason = VMT_EVENT_SOFTWARE_BREAKPOINT;
    ev.regs.rip = VA + 0x2030;
    ev.regs.cr3 = ROOT;
    ev.u.software_breakpoint.gfn = GFN0 + 2;
    bool is = true;
    /* Our trap lives in the shadow: the guest itself has none there. */
    assert_int_equal(vmt_breakpoint_controller_is_breakpoint(f->core, &ev, &is), VMT_OK);
    assert_false(is);
    /* No view on the event: no match (not taken as view 0). */
    assert_false(vmt_bpm_contains_by_event(f->bpm, &ev, 0));
    ev.has_view = true;
    assert_true(vmt_bpm_contains_by_event(f->bpm, &ev, 0));
    ev.has_view = false;
    uint8_t cc = 0xCC;
    assert_int_equal(vmt_mock_poke(f->mock, pa_of(2, 0x40), &cc, 1), VMT_OK);
    ev.regs.rip = VA + 0x2040;
    assert_int_equal(vmt_breakpoint_controller_is_breakpoint(f->core, &ev, &is), VMT_OK);
    assert_true(is);
    ev.reason = VMT_EVENT_SINGLESTEP;
    assert_int_equal(vmt_breakpoint_controller_is_breakpoint(f->core, &ev, &is), VMT_OK);
    assert_false(is);
    assert_int_equal(vmt_breakpoint_controller_is_breakpoint(NULL, &ev, &is), VMT_E_INVALID);
    cc = pattern(GFN0 + 2, 0x40);
    assert_int_equal(vmt_mock_poke(f->mock, pa_of(2, 0x40), &cc, 1), VMT_OK);
    assert_int_equal(vmt_bpm_clear(f->bpm, f->core), VMT_OK);
    fixture_free(f);
}

/* Both controllers: an event without a view (has_view false) is not
 * theirs, whatever its reason and frame; the manager then matches nothing,
 * removes nothing and the guest is unchanged. */
static void check_viewless(ctl_kind kind)
{
    fixture *f = fixture_new(kind, 0);
    must_insert(f, bpx(5, 0x80, 0, 0), pa_of(5, 0x80));
    must_insert(f, bpx(5, 0x80, 1, 0), pa_of(5, 0x80));
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.regs.rip = VA + 0x5080;
    ev.regs.cr3 = ROOT;
    if (kind == CTL_BREAKPOINT) {
        ev.reason = VMT_EVENT_SOFTWARE_BREAKPOINT;
        ev.u.software_breakpoint.gfn = GFN0 + 5;
        ev.u.software_breakpoint.insn_len = 1;
    } else {
        ev.reason = VMT_EVENT_MEMORY_ACCESS;
        ev.u.memory_access.pa = pa_of(5, 0x80);
        ev.u.memory_access.va = VA + 0x5080;
        ev.u.memory_access.access = VMT_ACCESS_X;
    }
    const vmt_tap_controller *c = vmt_bpm_controller(f->bpm);
    for (vmt_view v = 0; v < 2; v++) {
        vmt_view view = 77;
        vmt_gfn gfn = 77;
        ev.view = v; /* a stale value the driver left: still no view */
        ev.has_view = false;
        assert_false(c->ops->check_event(c->self, &ev, &view, &gfn));
        assert_int_equal(view, 77);
        assert_int_equal(gfn, 77);
        vmt_breakpoint got;
        assert_false(vmt_bpm_get_by_event(f->bpm, &ev, 0, &got));
        assert_false(vmt_bpm_contains_by_event(f->bpm, &ev, 0));
        vmt_removal r = VMT_REMOVED_LAST;
        assert_int_equal(vmt_bpm_remove_by_event(f->bpm, f->core, &ev, 0, &r), VMT_OK);
        assert_int_equal(r, VMT_REMOVED_NONE);
        assert_guest_consistent(f);
        vmt_bpm_stats s;
        vmt_bpm_stats_get(f->bpm, &s);
        assert_int_equal(s.active, 2);
        /* The same event with its view is theirs. */
        ev.has_view = true;
        assert_true(c->ops->check_event(c->self, &ev, &view, &gfn));
        assert_int_equal(view, v);
        assert_int_equal(gfn, GFN0 + 5);
        assert_true(vmt_bpm_contains_by_event(f->bpm, &ev, 0));
    }
    assert_int_equal(vmt_bpm_clear(f->bpm, f->core), VMT_OK);
    assert_guest_consistent(f);
    fixture_free(f);
}

static void test_event_without_view(void **state)
{
    (void)state;
    check_viewless(CTL_BREAKPOINT);
    check_viewless(CTL_MEMORY);
}

static void test_destroyed_view_tolerated(void **state)
{
    (void)state;
    fixture *f = fixture_new(CTL_BREAKPOINT, 0);
    must_insert(f, bpx(3, 0x50, 2, 0), pa_of(3, 0x50));
    must_insert(f, bpx(3, 0x60, 2, 0), pa_of(3, 0x60));
    assert_int_equal(vmt_core_destroy_view(f->core, 2), VMT_OK);
    bool removed = false;
    assert_int_equal(vmt_bpm_remove_by_view(f->bpm, f->core, 2, &removed), VMT_OK);
    assert_true(removed);
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 0);
    fixture_free(f);
}

/* ---- interceptor ---- */

static void test_interceptor(void **state)
{
    (void)state;
    fixture *f = fixture_new(CTL_BREAKPOINT, 0);
    vmt_interceptor *ic = vmt_interceptor_new();
    static const uint8_t ud2[2] = {0x0f, 0x0b}, int3 = 0xCC;
    assert_int_equal(vmt_interceptor_insert(ic, f->core, 1, pa_of(0, 0xfff), ud2, 2),
                     VMT_E_OUT_OF_BOUNDS);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 0);
    assert_int_equal(vmt_interceptor_insert(ic, f->core, 1, pa_of(0, 0xffe), ud2, 2), VMT_OK);
    assert_int_equal(vmt_interceptor_insert(ic, f->core, 1, pa_of(0, 0xffe), ud2, 2), VMT_OK);
    assert_int_equal(vmt_interceptor_refs(ic, 1, pa_of(0, 0xffe)), 2);
    /* Different bytes at the same offset, or overlapping: conflict. */
    assert_int_equal(vmt_interceptor_insert(ic, f->core, 1, pa_of(0, 0xffe), &int3, 1),
                     VMT_E_CONFLICT);
    assert_int_equal(vmt_interceptor_insert(ic, f->core, 1, pa_of(0, 0xfff), &int3, 1),
                     VMT_E_CONFLICT);
    assert_int_equal(vmt_interceptor_insert(ic, f->core, 1, pa_of(0, 0x100), &int3, 1), VMT_OK);
    uint8_t buf[4];
    assert_int_equal(vmt_mock_view_read(f->mock, 1, pa_of(0, 0xffe), buf, 2), VMT_OK);
    assert_memory_equal(buf, ud2, 2);
    assert_int_equal(vmt_interceptor_read_original(ic, f->core, 1, pa_of(0, 0xffc), buf, 4),
                     VMT_OK);
    for (unsigned i = 0; i < 4; i++)
        assert_int_equal(buf[i], pattern(GFN0, 0xffc + i));
    assert_int_equal(vmt_interceptor_remove(ic, f->core, 1, pa_of(0, 0xffe)), VMT_OK);
    assert_int_equal(vmt_mock_view_read(f->mock, 1, pa_of(0, 0xffe), buf, 2), VMT_OK);
    assert_memory_equal(buf, ud2, 2); /* one reference left */
    assert_int_equal(vmt_interceptor_remove(ic, f->core, 1, pa_of(0, 0xffe)), VMT_OK);
    assert_int_equal(vmt_mock_view_read(f->mock, 1, pa_of(0, 0xffe), buf, 2), VMT_OK);
    assert_int_equal(buf[0], pattern(GFN0, 0xffe));
    assert_int_equal(buf[1], pattern(GFN0, 0xfff));
    assert_int_equal(vmt_interceptor_remove(ic, f->core, 1, pa_of(0, 0x100)), VMT_OK);
    vmt_gfn backing;
    assert_int_equal(vmt_mock_view_backing(f->mock, 1, GFN0, &backing), VMT_OK);
    assert_int_equal(backing, GFN0);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 0);
    /* Removing what is not there is harmless. */
    assert_int_equal(vmt_interceptor_remove(ic, f->core, 1, pa_of(0, 0x100)), VMT_OK);
    vmt_interceptor_free(ic);
    fixture_free(f);
}

/* ---- memory controller ---- */

static void test_memory_controller(void **state)
{
    (void)state;
    fixture *f = fixture_new(CTL_MEMORY, 0);
    assert_int_equal(vmt_core_set_access(f->core, GFN0 + 4, 1, VMT_ACCESS_RX, 0), VMT_OK);
    must_insert(f, bpx(4, 0x70, 1, 0), pa_of(4, 0x70));
    vmt_access a;
    assert_int_equal(vmt_core_get_access(f->core, GFN0 + 4, 1, &a), VMT_OK);
    assert_int_equal(a, VMT_ACCESS_R); /* X gone, R kept, W not added */
    vmt_gfn backing;
    assert_int_equal(vmt_mock_view_backing(f->mock, 1, GFN0 + 4, &backing), VMT_OK);
    assert_int_equal(backing, GFN0 + 4);
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.has_view = true;
    ev.view = 1;
    ev.reason = VMT_EVENT_MEMORY_ACCESS;
    ev.regs.rip = VA + 0x4070;
    ev.regs.cr3 = ROOT;
    ev.u.memory_access.pa = pa_of(4, 0x70);
    ev.u.memory_access.access = VMT_ACCESS_X;
    assert_true(vmt_bpm_contains_by_event(f->bpm, &ev, 0));
    ev.u.memory_access.access = VMT_ACCESS_R;
    assert_false(vmt_bpm_contains_by_event(f->bpm, &ev, 0));
    assert_int_equal(vmt_bpm_clear(f->bpm, f->core), VMT_OK);
    assert_int_equal(vmt_core_get_access(f->core, GFN0 + 4, 1, &a), VMT_OK);
    assert_int_equal(a, VMT_ACCESS_RX);
    fixture_free(f);
}

/* ---- fault injection ---- */

typedef struct scenario {
    const char *name;
    void (*prepare)(fixture *f);
    vmt_status (*op)(fixture *f);
} scenario;

static void prep_none(fixture *f)
{
    (void)f;
}

static void prep_some(fixture *f)
{
    must_insert(f, bpx(0, 0x10, 0, 0), pa_of(0, 0x10));
    must_insert(f, bpx(0, 0x20, 0, 0), pa_of(0, 0x20));
    must_insert(f, bpx(0, 0x20, 0, 5), pa_of(0, 0x20));
    must_insert(f, bpx(0, 0x10, 1, 0), pa_of(0, 0x10));
    must_insert(f, bpx(1, 0x30, 1, 0), pa_of(1, 0x30));
    must_insert(f, bpx(1, 0x40, 2, 0), pa_of(1, 0x40));
    vmt_breakpoint p = bpx(5, 0x10, 1, 0);
    assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->core, &p, NULL, NULL), VMT_OK);
}

static vmt_status op_insert_new_page(fixture *f)
{
    vmt_breakpoint bp = bpx(2, 0x10, 1, 0);
    vmt_pa pa = pa_of(2, 0x10);
    return vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, &pa, NULL);
}

static vmt_status op_insert_same_page(fixture *f)
{
    vmt_breakpoint bp = bpx(0, 0x30, 0, 0);
    vmt_pa pa = pa_of(0, 0x30);
    return vmt_bpm_insert_with_hint(f->bpm, f->core, &bp, &pa, NULL);
}

static vmt_status op_insert_translate(fixture *f)
{
    /* prep_tables maps VA + 0x6000 under ROOT. */
    vmt_breakpoint bp = {.ctx = vmt_ctx(VA + 0x6000 + 0x18, ROOT), .view = 1};
    return vmt_bpm_insert(f->bpm, f->core, &bp, NULL);
}

static void prep_tables(fixture *f)
{
    /* Tables built under a fresh root; its PML4 is copied to ROOT's frame
     * (which the pattern frames do not use). */
    vmt_pa root;
    assert_int_equal(vmt_mock_new_root(f->mock, &root), VMT_OK);
    assert_int_equal(
        vmt_mock_map(f->mock, root, VA + 0x6000, vmt_pa_from_gfn(GFN0 + 6), VMT_MOCK_4K, 0),
        VMT_OK);
    uint8_t pml4[VMT_PAGE_SIZE];
    assert_int_equal(vmt_mock_peek(f->mock, root, pml4, sizeof pml4), VMT_OK);
    assert_int_equal(vmt_mock_poke(f->mock, ROOT, pml4, sizeof pml4), VMT_OK);
    prep_some(f);
}

static vmt_status op_remove_one(fixture *f)
{
    vmt_breakpoint bp = bpx(0, 0x10, 0, 0);
    return vmt_bpm_remove(f->bpm, f->core, &bp, NULL);
}

static vmt_status op_remove_last(fixture *f)
{
    vmt_breakpoint bp = bpx(1, 0x30, 1, 0);
    return vmt_bpm_remove(f->bpm, f->core, &bp, NULL);
}

static vmt_status op_page_out(fixture *f)
{
    vmt_ptm_event ev = {
        .kind = VMT_PTM_PAGE_OUT, .view = 0, .ctx = vmt_ctx(VA, ROOT), .pa = pa_of(0, 0)};
    return vmt_bpm_handle_ptm_event(f->bpm, f->core, &ev, NULL);
}

static vmt_status op_page_out_in(fixture *f)
{
    vmt_ptm_event ev[4] = {
        {.kind = VMT_PTM_PAGE_OUT, .view = 0, .ctx = vmt_ctx(VA, ROOT), .pa = pa_of(0, 0)},
        {.kind = VMT_PTM_PAGE_IN, .view = 0, .ctx = vmt_ctx(VA + 0x10, ROOT), .pa = pa_of(3, 0x10)},
        {.kind = VMT_PTM_PAGE_IN, .view = 0, .ctx = vmt_ctx(VA + 0x20, ROOT), .pa = pa_of(3, 0x20)},
        {.kind = VMT_PTM_PAGE_IN,
         .view = 1,
         .ctx = vmt_ctx(VA + 0x5010, ROOT),
         .pa = pa_of(3, 0x10)},
    };
    return vmt_bpm_handle_ptm_events(f->bpm, f->core, ev, 4, NULL);
}

static vmt_status op_remove_by_event(fixture *f)
{
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.has_view = true;
    ev.view = 1;
    ev.reason = f->kind == CTL_BREAKPOINT ? VMT_EVENT_SOFTWARE_BREAKPOINT : VMT_EVENT_MEMORY_ACCESS;
    ev.regs.rip = VA + 0x10;
    ev.regs.cr3 = ROOT;
    ev.u.software_breakpoint.gfn = GFN0;
    if (f->kind == CTL_MEMORY) {
        ev.u.memory_access.pa = pa_of(0, 0x10);
        ev.u.memory_access.access = VMT_ACCESS_X;
    }
    return vmt_bpm_remove_by_event(f->bpm, f->core, &ev, 0, NULL);
}

static vmt_status op_remove_by_view(fixture *f)
{
    return vmt_bpm_remove_by_view(f->bpm, f->core, 0, NULL);
}

static vmt_status op_clear(fixture *f)
{
    return vmt_bpm_clear(f->bpm, f->core);
}

static const scenario scenarios[] = {
    {"insert on a new page", prep_none, op_insert_new_page},
    {"insert on a new page (others exist)", prep_some, op_insert_new_page},
    {"insert on an armed page", prep_some, op_insert_same_page},
    {"insert with translation", prep_tables, op_insert_translate},
    {"remove one of several", prep_some, op_remove_one},
    {"remove the last of a page", prep_some, op_remove_last},
    {"page-out", prep_some, op_page_out},
    {"page-out then page-ins", prep_some, op_page_out_in},
    {"remove_by_event", prep_some, op_remove_by_event},
    {"remove_by_view", prep_some, op_remove_by_view},
    {"clear", prep_some, op_clear},
};

typedef struct arm_list {
    GArray *items; /* "view key va root gfn" strings */
} arm_list;

static void list_arm(void *user, const vmt_breakpoint *bp, vmt_gfn gfn)
{
    char *s = g_strdup_printf("%u %llu %llx %llx %llx", bp->view, (unsigned long long)bp->key,
                              (unsigned long long)bp->ctx.va, (unsigned long long)bp->ctx.root,
                              (unsigned long long)gfn);
    g_array_append_val(((arm_list *)user)->items, s);
}

static void list_pending(void *user, const vmt_breakpoint *bp)
{
    char *s = g_strdup_printf("p %u %llu %llx %llx", bp->view, (unsigned long long)bp->key,
                              (unsigned long long)bp->ctx.va, (unsigned long long)bp->ctx.root);
    g_array_append_val(((arm_list *)user)->items, s);
}

static gint cmp_str(gconstpointer a, gconstpointer b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A canonical text of the manager's state, to compare two runs. */
static char *state_text(fixture *f)
{
    arm_list l = {g_array_new(FALSE, FALSE, sizeof(char *))};
    vmt_bpm_foreach_arm(f->bpm, list_arm, &l);
    vmt_bpm_foreach_pending(f->bpm, list_pending, &l);
    g_array_sort(l.items, cmp_str);
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < l.items->len; i++) {
        g_string_append_printf(s, "%s;", g_array_index(l.items, char *, i));
        g_free(g_array_index(l.items, char *, i));
    }
    g_array_free(l.items, TRUE);
    return g_string_free(s, FALSE);
}

static void walk_faults(ctl_kind kind, const scenario *sc)
{
    /* The reference: the operation without faults. */
    fixture *ref = fixture_new(kind, 0);
    sc->prepare(ref);
    assert_int_equal(sc->op(ref), VMT_OK);
    assert_guest_consistent(ref);
    char *want = state_text(ref);
    fixture_free(ref);

    for (unsigned nth = 1;; nth++) {
        fixture *f = fixture_new(kind, 0);
        sc->prepare(f);
        uint64_t before = vmt_mock_injected(f->mock);
        vmt_mock_fail_nth_any(f->mock, nth, VMT_E_DRIVER);
        vmt_status st = sc->op(f);
        vmt_mock_fail_nth_any(f->mock, 0, VMT_OK);
        bool fired = vmt_mock_injected(f->mock) != before;
        if (!fired) {
            assert_int_equal(st, VMT_OK);
            fixture_free(f);
            print_message("%s (%s controller): %u driver calls failed in turn\n", sc->name,
                          kind == CTL_BREAKPOINT ? "breakpoint" : "memory", nth - 1);
            break;
        }
        if (st == VMT_OK)
            fail_msg("%s: driver call %u failed but the operation reported success", sc->name, nth);
        assert_guest_consistent(f);
        /* Retry without the fault: succeeds, and ends where the reference did. */
        assert_int_equal(sc->op(f), VMT_OK);
        assert_guest_consistent(f);
        char *got = state_text(f);
        if (strcmp(got, want) != 0)
            fail_msg("%s, fault at call %u: state after retry\n  %s\nwant\n  %s", sc->name, nth,
                     got, want);
        g_free(got);
        assert_int_equal(vmt_bpm_clear(f->bpm, f->core), VMT_OK);
        assert_guest_consistent(f);
        fixture_free(f);
    }
    g_free(want);
}

static void test_faults_breakpoint_controller(void **state)
{
    (void)state;
    for (size_t i = 0; i < G_N_ELEMENTS(scenarios); i++)
        walk_faults(CTL_BREAKPOINT, &scenarios[i]);
}

static void test_faults_memory_controller(void **state)
{
    (void)state;
    for (size_t i = 0; i < G_N_ELEMENTS(scenarios); i++)
        walk_faults(CTL_MEMORY, &scenarios[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_breakpoint_shadow),
        cmocka_unit_test(test_breakpoint_without_execute_only),
        cmocka_unit_test(test_is_breakpoint_reads_guest_frame),
        cmocka_unit_test(test_event_without_view),
        cmocka_unit_test(test_destroyed_view_tolerated),
        cmocka_unit_test(test_interceptor),
        cmocka_unit_test(test_memory_controller),
        cmocka_unit_test(test_faults_breakpoint_controller),
        cmocka_unit_test(test_faults_memory_controller),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
