/* The page-table monitor driving the breakpoint manager, with the real
 * breakpoint controller on the mock driver: the guest's page tables change,
 * the ptm turns the writes into events, the bpm follows them, and the traps
 * the guest sees (through the view) are where the code is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ptm/ptm_internal.h"
#include "vmitap/bpm.h"
#include "vmitap/mock.h"

#define MAX_GFN 0x10000u
#define VIEW 1
#define VA_CODE 0x0000000000401000ull
#define FRAME_A 0x200000ull
#define FRAME_B 0x300000ull
#define FRAME_C 0x500000ull
#define TRAP 0xcc

typedef struct fx {
    vmt_core *vmi;
    vmt_mock *mock;
    vmt_ptm *ptm;
    vmt_bpm *bpm;
    vmt_pa root;
    vmt_ptm_events ev;
} fx;

/* The code page's bytes: the same wherever the guest puts it. */
static uint8_t code_byte(unsigned off)
{
    return (uint8_t)(0x40 + off % 0x70);
}

static void put_code(fx *f, vmt_pa frame)
{
    uint8_t page[VMT_PAGE_SIZE];
    for (unsigned i = 0; i < VMT_PAGE_SIZE; i++)
        page[i] = code_byte(i);
    assert_int_equal(vmt_mock_poke(f->mock, frame, page, sizeof page), VMT_OK);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    vmt_mock_opts o = {.sz = sizeof o, .max_gfn = MAX_GFN};
    assert_int_equal(vmt_mock_core_new(&o, &f->vmi, &f->mock), VMT_OK);
    vmt_view v;
    assert_int_equal(vmt_core_create_view(f->vmi, VMT_ACCESS_RWX, &v), VMT_OK);
    assert_int_equal(v, VIEW);
    assert_int_equal(vmt_ptm_new(&f->ptm), VMT_OK);
    vmt_tap_controller c;
    assert_int_equal(vmt_breakpoint_controller_new(&c), VMT_OK);
    assert_int_equal(vmt_bpm_new(c, &f->bpm), VMT_OK);
    assert_int_equal(vmt_mock_new_root(f->mock, &f->root), VMT_OK);
    put_code(f, FRAME_A);
    assert_int_equal(vmt_mock_map(f->mock, f->root, VA_CODE, FRAME_A, VMT_MOCK_4K, 0), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, f->root, VA_CODE + 0x1000, FRAME_B, VMT_MOCK_4K, 0),
                     VMT_OK);
    put_code(f, FRAME_B);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    vmt_ptm_events_free(&f->ev);
    vmt_bpm_free(f->bpm);
    vmt_ptm_free(f->ptm);
    vmt_core_free(f->vmi);
    free(f);
    return 0;
}

static vmt_pa entry_at(fx *f, vmt_va va, int level)
{
    vmt_pa pa;
    assert_int_equal(vmt_mock_entry_pa(f->mock, f->root, va, level, &pa), VMT_OK);
    return pa;
}

static uint64_t peek64(fx *f, vmt_pa pa)
{
    uint64_t v;
    assert_int_equal(vmt_mock_peek(f->mock, pa, &v, sizeof v), VMT_OK);
    return v;
}

/* The guest writes an entry in a table the ptm protects. */
static void guest_write(fx *f, vmt_pa epa, uint64_t value)
{
    assert_int_equal(vmt_mock_poke(f->mock, epa, &value, sizeof value), VMT_OK);
    assert_true(vmt_ptm_mark_dirty_entry(f->ptm, epa, VIEW, 0));
}

/* After the single-step: ptm events into the bpm. */
static void pump(fx *f)
{
    f->ev.len = 0;
    assert_int_equal(vmt_ptm_process_dirty_entries(f->ptm, f->vmi, 0, &f->ev), VMT_OK);
    bool updated = false;
    assert_int_equal(vmt_bpm_handle_ptm_events(f->bpm, f->vmi, f->ev.items, f->ev.len, &updated),
                     VMT_OK);
    assert_int_equal(updated, f->ev.len > 0);
    assert_int_equal(vmt_ptm_check(f->ptm), VMT_OK);
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
}

/* A breakpoint that the ptm watches (what the tracer does). */
static vmt_breakpoint watch(fx *f, vmt_va va, uintptr_t tag)
{
    vmt_breakpoint bp = {.ctx = vmt_ctx(va, f->root), .view = VIEW, .tag = tag};
    bool inserted = false;
    assert_int_equal(vmt_bpm_insert(f->bpm, f->vmi, &bp, &inserted), VMT_OK);
    assert_true(inserted);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, bp.ctx, VIEW, tag), VMT_OK);
    return bp;
}

/* What the guest reads in the view at pa. */
static uint8_t seen(fx *f, vmt_pa pa)
{
    uint8_t b;
    assert_int_equal(vmt_mock_view_read(f->mock, VIEW, pa, &b, 1), VMT_OK);
    return b;
}

static void expect_stats(fx *f, size_t active, size_t pending)
{
    vmt_bpm_stats s;
    vmt_bpm_stats_get(f->bpm, &s);
    assert_int_equal(s.active, active);
    assert_int_equal(s.pending, pending);
}

static void expect_trap(fx *f, vmt_pa pa, bool trap)
{
    assert_int_equal(seen(f, pa), trap ? TRAP : code_byte((unsigned)(pa & 0xfff)));
}

static void test_breakpoint_follows_paging(void **state)
{
    fx *f = *state;
    vmt_va va = VA_CODE + 0x123;
    vmt_breakpoint bp = watch(f, va, 1);
    expect_stats(f, 1, 0);
    expect_trap(f, FRAME_A + 0x123, true);

    /* Page-out: the breakpoint goes pending, the frame is clean again. */
    vmt_pa pte = entry_at(f, va, 1);
    uint64_t present = peek64(f, pte);
    guest_write(f, pte, present & ~VMT_PTE_P);
    pump(f);
    assert_int_equal(f->ev.len, 1);
    expect_stats(f, 0, 1);
    assert_false(vmt_bpm_contains_by_address(f->bpm, bp.ctx, 0));
    expect_trap(f, FRAME_A + 0x123, false);

    /* Page-in at another frame: active there. */
    put_code(f, FRAME_C);
    guest_write(f, pte, FRAME_C | VMT_PTE_P);
    pump(f);
    expect_stats(f, 1, 0);
    assert_true(vmt_bpm_contains_by_address(f->bpm, bp.ctx, 0));
    expect_trap(f, FRAME_C + 0x123, true);
    expect_trap(f, FRAME_A + 0x123, false);

    /* Moved while present: out of C, into A, in that order. */
    guest_write(f, pte, FRAME_A | VMT_PTE_P);
    pump(f);
    assert_int_equal(f->ev.len, 2);
    assert_int_equal(f->ev.items[0].kind, VMT_PTM_PAGE_OUT);
    assert_int_equal(f->ev.items[1].kind, VMT_PTM_PAGE_IN);
    expect_stats(f, 1, 0);
    expect_trap(f, FRAME_A + 0x123, true);
    expect_trap(f, FRAME_C + 0x123, false);

    /* Cleanup restores the guest: no trap, no protected table. */
    assert_int_equal(vmt_bpm_clear(f->bpm, f->vmi), VMT_OK);
    vmt_ptm_unmonitor_all(f->ptm, f->vmi);
    expect_trap(f, FRAME_A + 0x123, false);
    vmt_access a;
    assert_int_equal(vmt_core_get_access(f->vmi, vmt_gfn_from_pa(pte), VIEW, &a), VMT_OK);
    assert_int_equal(a, VMT_ACCESS_RWX);
    assert_int_equal(vmt_ptm_monitored_tables(f->ptm), 0);
}

/* A PDE going away takes several breakpoints on two pages with it. */
static void test_pde_takes_several(void **state)
{
    fx *f = *state;
    vmt_breakpoint a = watch(f, VA_CODE + 0x10, 1);
    vmt_breakpoint b = watch(f, VA_CODE + 0x20, 2);
    vmt_breakpoint c = watch(f, VA_CODE + 0x1030, 3);
    expect_stats(f, 3, 0);
    vmt_pa pde = entry_at(f, VA_CODE, 2);
    uint64_t present = peek64(f, pde);
    guest_write(f, pde, 0);
    pump(f);
    assert_int_equal(f->ev.len, 3);
    expect_stats(f, 0, 3);
    expect_trap(f, FRAME_A + 0x10, false);
    expect_trap(f, FRAME_A + 0x20, false);
    expect_trap(f, FRAME_B + 0x30, false);

    guest_write(f, pde, present);
    pump(f);
    expect_stats(f, 3, 0);
    expect_trap(f, FRAME_A + 0x10, true);
    expect_trap(f, FRAME_A + 0x20, true);
    expect_trap(f, FRAME_B + 0x30, true);
    assert_true(vmt_bpm_contains_by_address(f->bpm, a.ctx, 0));
    assert_true(vmt_bpm_contains_by_address(f->bpm, b.ctx, 0));
    assert_true(vmt_bpm_contains_by_address(f->bpm, c.ctx, 0));
    assert_int_equal(vmt_bpm_clear(f->bpm, f->vmi), VMT_OK);
    vmt_ptm_unmonitor_all(f->ptm, f->vmi);
}

/* Two processes share the code frame; one unmaps it. The bpm disarms the
 * whole frame on the page-out, the ptm's second announcement re-arms the
 * other process's breakpoint. */
static void test_shared_frame_stays_armed(void **state)
{
    fx *f = *state;
    vmt_pa r2;
    assert_int_equal(vmt_mock_new_root(f->mock, &r2), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, r2, VA_CODE, FRAME_A, VMT_MOCK_4K, 0), VMT_OK);
    vmt_breakpoint mine = watch(f, VA_CODE + 0x40, 1);
    vmt_breakpoint other = {.ctx = vmt_ctx(VA_CODE + 0x40, r2), .view = VIEW, .tag = 2};
    bool inserted;
    assert_int_equal(vmt_bpm_insert(f->bpm, f->vmi, &other, &inserted), VMT_OK);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, other.ctx, VIEW, 2), VMT_OK);
    expect_stats(f, 2, 0);

    guest_write(f, entry_at(f, VA_CODE, 1), 0);
    pump(f);
    expect_stats(f, 1, 1);
    assert_false(vmt_bpm_contains_by_address(f->bpm, mine.ctx, 0));
    assert_true(vmt_bpm_contains_by_address(f->bpm, other.ctx, 0));
    expect_trap(f, FRAME_A + 0x40, true);
    assert_int_equal(vmt_bpm_clear(f->bpm, f->vmi), VMT_OK);
    vmt_ptm_unmonitor_all(f->ptm, f->vmi);
    expect_trap(f, FRAME_A + 0x40, false);
}

/* ---- a frame that is a page-table page and a breakpoint page in one view ----
 *
 * The ptm write-protects the table page, the controller restricts the
 * breakpoint page; neither may lift the other's protection, whichever
 * comes first and whichever goes first, and once both are gone the frame
 * has its access from before. While both hold it: writes trap (the ptm's
 * need), and with the breakpoint controller the page is execute-only (its
 * need: the trap fires, the guest cannot read the shadow); with the memory
 * controller it is read-only (execution traps). */

#define VA_SHARED 0x0000000000a00000ull /* the breakpoint's va, hinted into the table page */

typedef struct shared_case {
    bool memory_ctl, bpm_first, bpm_leaves_first;
    vmt_access base;
} shared_case;

static vmt_access access_of(fx *f, vmt_gfn gfn)
{
    vmt_access a;
    assert_int_equal(vmt_core_get_access(f->vmi, gfn, VIEW, &a), VMT_OK);
    return a;
}

/* What the API asks of each alone, and of both (written from the rules
 * above, not from the implementation). */
static vmt_access want_ptm_only(const shared_case *c)
{
    (void)c;
    return VMT_ACCESS_R; /* API.md section 5: exactly R */
}

static vmt_access want_bpm_only(const shared_case *c)
{
    return c->memory_ctl ? (vmt_access)(c->base & ~VMT_ACCESS_X) : VMT_ACCESS_X;
}

static vmt_access want_both(const shared_case *c)
{
    return c->memory_ctl ? VMT_ACCESS_R : VMT_ACCESS_X;
}

static void shared_step_ptm(fx *f, bool on)
{
    vmt_addr_ctx ctx = vmt_ctx(VA_CODE, f->root);
    if (on)
        assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx, VIEW, 1), VMT_OK);
    else
        assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, ctx, VIEW), VMT_OK);
    assert_int_equal(vmt_ptm_check(f->ptm), VMT_OK);
}

static void shared_step_bpm(fx *f, vmt_pa bp_pa, bool on)
{
    vmt_breakpoint bp = {.ctx = vmt_ctx(VA_SHARED | (bp_pa & 0xfff), f->root), .view = VIEW};
    bool done = false;
    if (on)
        assert_int_equal(vmt_bpm_insert_with_hint(f->bpm, f->vmi, &bp, &bp_pa, &done), VMT_OK);
    else
        assert_int_equal(vmt_bpm_remove(f->bpm, f->vmi, &bp, &done), VMT_OK);
    assert_true(done);
    assert_int_equal(vmt_bpm_check(f->bpm), VMT_OK);
}

static void run_shared_case(const shared_case *c)
{
    fx *f = calloc(1, sizeof *f);
    vmt_mock_opts o = {.sz = sizeof o, .max_gfn = MAX_GFN};
    assert_int_equal(vmt_mock_core_new(&o, &f->vmi, &f->mock), VMT_OK);
    vmt_view v;
    assert_int_equal(vmt_core_create_view(f->vmi, VMT_ACCESS_RWX, &v), VMT_OK);
    assert_int_equal(vmt_ptm_new(&f->ptm), VMT_OK);
    vmt_tap_controller ctl;
    assert_int_equal(c->memory_ctl ? vmt_memory_controller_new(&ctl)
                                   : vmt_breakpoint_controller_new(&ctl),
                     VMT_OK);
    assert_int_equal(vmt_bpm_new(ctl, &f->bpm), VMT_OK);
    assert_int_equal(vmt_mock_new_root(f->mock, &f->root), VMT_OK);
    put_code(f, FRAME_A);
    assert_int_equal(vmt_mock_map(f->mock, f->root, VA_CODE, FRAME_A, VMT_MOCK_4K, 0), VMT_OK);

    /* The page table holding VA_CODE's PTE is the shared frame; the
     * breakpoint sits in it, away from that PTE. */
    vmt_pa pte = entry_at(f, VA_CODE, 1);
    vmt_gfn table = vmt_gfn_from_pa(pte);
    vmt_pa bp_pa = vmt_pa_from_gfn(table) + ((pte & 0xfff) + 0x800) % VMT_PAGE_SIZE;
    assert_int_equal(vmt_core_set_access(f->vmi, table, VIEW, c->base, 0), VMT_OK);
    uint8_t before[VMT_PAGE_SIZE];
    assert_int_equal(vmt_mock_peek(f->mock, vmt_pa_from_gfn(table), before, sizeof before), VMT_OK);

    if (c->bpm_first) {
        shared_step_bpm(f, bp_pa, true);
        assert_int_equal(access_of(f, table), want_bpm_only(c));
        shared_step_ptm(f, true);
    } else {
        shared_step_ptm(f, true);
        assert_int_equal(access_of(f, table), want_ptm_only(c));
        shared_step_bpm(f, bp_pa, true);
    }
    assert_int_equal(access_of(f, table), want_both(c));
    assert_int_equal(vmt_ptm_monitored_tables(f->ptm), 4);
    if (!c->memory_ctl)
        assert_int_equal(seen(f, bp_pa), TRAP); /* the view maps the shadow */

    /* The ptm still works on the shared page: the guest moves VA_CODE. */
    vmt_ptm_events ev = {0};
    uint64_t old = peek64(f, pte);
    guest_write(f, pte, (old & ~VMT_PTE_ADDR_MASK) | FRAME_B);
    assert_int_equal(vmt_ptm_process_dirty_entries(f->ptm, f->vmi, 0, &ev), VMT_OK);
    assert_int_equal(ev.len, 2);
    assert_int_equal(ev.items[0].kind, VMT_PTM_PAGE_OUT);
    assert_int_equal(ev.items[1].kind, VMT_PTM_PAGE_IN);
    assert_int_equal(ev.items[1].pa, FRAME_B);
    vmt_ptm_events_free(&ev);
    assert_int_equal(access_of(f, table), want_both(c));
    guest_write(f, pte, old);
    assert_int_equal(vmt_ptm_process_dirty_entries(f->ptm, f->vmi, 0, &ev), VMT_OK);
    assert_int_equal(ev.len, 2);
    vmt_ptm_events_free(&ev);

    if (c->bpm_leaves_first) {
        shared_step_bpm(f, bp_pa, false);
        assert_int_equal(access_of(f, table), want_ptm_only(c));
        shared_step_ptm(f, false);
    } else {
        shared_step_ptm(f, false);
        assert_int_equal(access_of(f, table), want_bpm_only(c));
        if (!c->memory_ctl)
            assert_int_equal(seen(f, bp_pa), TRAP);
        shared_step_bpm(f, bp_pa, false);
    }
    /* Back to where it was: access, mapping, bytes, no frame held. */
    assert_int_equal(access_of(f, table), c->base);
    vmt_gfn backing;
    assert_int_equal(vmt_mock_view_backing(f->mock, VIEW, table, &backing), VMT_OK);
    assert_int_equal(backing, table);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 0);
    uint8_t after[VMT_PAGE_SIZE];
    assert_int_equal(vmt_mock_peek(f->mock, vmt_pa_from_gfn(table), after, sizeof after), VMT_OK);
    assert_memory_equal(before, after, sizeof before);
    assert_int_equal(vmt_ptm_monitored_tables(f->ptm), 0);
    vmt_bpm_stats s;
    vmt_bpm_stats_get(f->bpm, &s);
    assert_int_equal(s.active + s.pending, 0);
    void *st = f;
    assert_int_equal(teardown(&st), 0);
}

static void test_table_page_is_breakpoint_page(void **state)
{
    (void)state;
    const vmt_access bases[] = {VMT_ACCESS_RWX, VMT_ACCESS_RX, VMT_ACCESS_RW};
    for (int mem = 0; mem < 2; mem++)
        for (int first = 0; first < 2; first++)
            for (int leaves = 0; leaves < 2; leaves++)
                for (unsigned b = 0; b < 3; b++) {
                    shared_case c = {.memory_ctl = mem, .bpm_first = first,
                                     .bpm_leaves_first = leaves, .base = bases[b]};
                    print_message("controller %s, %s first, %s leaves first, base %d\n",
                                  mem ? "memory" : "breakpoint", first ? "bpm" : "ptm",
                                  leaves ? "bpm" : "ptm", (int)bases[b]);
                    run_shared_case(&c);
                }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_breakpoint_follows_paging, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pde_takes_several, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_frame_stays_armed, setup, teardown),
        cmocka_unit_test(test_table_page_is_breakpoint_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
