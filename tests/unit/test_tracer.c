// SPDX-License-Identifier: MIT
/* The tracer's event loop on the mock driver: synthetic events in, and the
 * recorded responses, the bpm/ptm state and guest memory checked after.
 *
 * Guest layout used throughout: one address space (root from the mock's
 * table pool), user code page CODE_VA -> CODE_PA filled with nops and a
 * `push rbp` (0x55) at every function entry the tests break on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bpm/bpm_internal.h"
#include "core/insn.h"
#include "ptm/ptm_internal.h"
#include "tracer/tracer_internal.h"
#include "vmitap/mock.h"
#include "vmitap/tracer.h"
#include "tracer_fixture.h"

#define CODE_VA 0x400000ull
#define CODE_PA 0x10000ull
#define MOVED_PA 0x20000ull  /* where the code page comes back after a relocation */
#define LATE_VA 0x401000ull  /* not mapped at first */
#define LATE_PA 0x30000ull
#define FN_A (CODE_VA + 0x10)
#define FN_B (CODE_VA + 0x80)
#define GUEST_INT3 (CODE_VA + 0x100) /* the guest's own int3 */
#define PLAIN (CODE_VA + 0x200)      /* ordinary code, no trap of anyone */

typedef struct fixture {
    vmt_core *vmi;
    vmt_mock *mock;
    vmt_pa root;
    vmt_tracer *t;
    /* hit callback record */
    unsigned hits;
    vmt_tracer_bp_info last;
    vmt_regs last_regs;
    bool remove_on_hit;
} fixture;

static void fill_code(vmt_mock *m, vmt_pa pa)
{
    uint8_t page[VMT_PAGE_SIZE];
    memset(page, 0x90, sizeof page);
    page[FN_A - CODE_VA] = 0x55;
    page[FN_B - CODE_VA] = 0x55;
    page[GUEST_INT3 - CODE_VA] = 0xCC;
    assert_int_equal(vmt_mock_poke(m, pa, page, sizeof page), VMT_OK);
}

static void on_hit(void *user, vmt_tracer *t, const vmt_tracer_hit *hit)
{
    fixture *f = user;
    f->hits++;
    f->last = *hit->bp;
    f->last_regs = *hit->regs;
    if (f->remove_on_hit)
        assert_int_equal(vmt_tracer_remove(t, hit->bp->id), VMT_OK);
}

static fixture *make_fixture(uint32_t caps, vmt_tracer_controller ctl)
{
    fixture *f = test_calloc(1, sizeof *f);
    VMT_OPTS(vmt_mock_opts, mo, .max_gfn = 0x1000, .caps = caps);
    assert_int_equal(vmt_mock_core_new(&mo, &f->vmi, &f->mock), VMT_OK);
    assert_int_equal(vmt_mock_new_root(f->mock, &f->root), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, f->root, CODE_VA, CODE_PA, VMT_MOCK_4K, VMT_PTE_U), VMT_OK);
    fill_code(f->mock, CODE_PA);
    vmt_mock_regs(f->mock, 0)->cr3 = f->root;
    VMT_OPTS(vmt_tracer_opts, to, .controller = ctl, .on_hit = on_hit, .user = f);
    assert_int_equal(vmt_tracer_new(f->vmi, &to, &f->t), VMT_OK);
    return f;
}

static int setup_int3(void **state)
{
    *state = make_fixture(0, VMT_TRACER_CONTROLLER_INT3);
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    vmt_tracer_free(f->t);
    vmt_core_free(f->vmi);
    test_free(f);
    return 0;
}

/* ---- events ---- */

static vmt_event base_event(fixture *f, vmt_event_reason why, vmt_va rip)
{
    return tracer_event(f->t, f->root, why, rip);
}

static void push_int3(fixture *f, vmt_va rip, vmt_pa pa)
{
    vmt_event ev = base_event(f, VMT_EVENT_SOFTWARE_BREAKPOINT, rip);
    ev.u.software_breakpoint.gfn = vmt_gfn_from_pa(pa);
    ev.u.software_breakpoint.insn_len = 1;
    assert_int_equal(vmt_mock_push_event(f->mock, &ev), VMT_OK);
}

static void push_access(fixture *f, vmt_va rip, vmt_pa pa, vmt_va va, vmt_access a)
{
    vmt_event ev = base_event(f, VMT_EVENT_MEMORY_ACCESS, rip);
    ev.u.memory_access.pa = pa;
    ev.u.memory_access.va = va;
    ev.u.memory_access.access = a;
    assert_int_equal(vmt_mock_push_event(f->mock, &ev), VMT_OK);
}

static void push_step(fixture *f, vmt_va rip)
{
    vmt_event ev = base_event(f, VMT_EVENT_SINGLESTEP, rip);
    ev.view = 0; /* the step ran in the default view */
    assert_int_equal(vmt_mock_push_event(f->mock, &ev), VMT_OK);
}

static void drain(fixture *f)
{
    tracer_drain(f->t, f->mock, 100000);
}

static const vmt_response *response(fixture *f, size_t i)
{
    const vmt_response *r;
    size_t n = vmt_mock_responses(f->mock, &r);
    assert_true(i < n);
    return &r[i];
}

/* FAST_SINGLESTEP: one instruction in resp.view (the default view); the
 * vCPU stays in the session view, so no set_view. */
static void assert_step_in_default(const vmt_response *r)
{
    assert_int_equal(r->action, VMT_ACTION_FAST_SINGLESTEP);
    assert_int_equal(r->view, 0);
    assert_false(r->set_view);
    assert_false(r->set_regs);
}

static uint8_t view_byte(fixture *f, vmt_view view, vmt_pa pa)
{
    uint8_t b;
    assert_int_equal(vmt_mock_view_read(f->mock, view, pa, &b, 1), VMT_OK);
    return b;
}

static uint8_t raw_byte(fixture *f, vmt_pa pa)
{
    uint8_t b;
    assert_int_equal(vmt_mock_peek(f->mock, pa, &b, 1), VMT_OK);
    return b;
}

static vmt_tracer_bp_id add_bp(fixture *f, vmt_va va, bool global, const char *name)
{
    VMT_OPTS(vmt_tracer_bp_opts, bo, .global = global, .name = name, .key = 7, .tag = 9);
    vmt_tracer_bp_id id = 0;
    assert_int_equal(vmt_tracer_add(f->t, vmt_ctx(va, f->root), &bo, &id), VMT_OK);
    assert_true(id != 0);
    return id;
}

static vmt_tracer_bp_info bp_info(fixture *f, vmt_tracer_bp_id id)
{
    VMT_OPTS(vmt_tracer_bp_info, bi);
    assert_int_equal(vmt_tracer_bp_get(f->t, id, &bi), VMT_OK);
    return bi;
}

/* ---- tests ---- */

static void test_session_view_and_detach(void **state)
{
    fixture *f = *state;
    vmt_view v = vmt_tracer_view(f->t);
    assert_true(v != 0);
    assert_true(vmt_mock_view_exists(f->mock, v));
    assert_int_equal(vmt_mock_current_view(f->mock), v);
    assert_true(vmt_mock_monitoring(f->mock, VMT_EVENT_SOFTWARE_BREAKPOINT));
    assert_true(vmt_mock_monitoring(f->mock, VMT_EVENT_MEMORY_ACCESS));
    assert_int_equal(vmt_tracer_controller_used(f->t), VMT_TRACER_CONTROLLER_INT3);
    assert_true(vmt_tracer_is_stealthy(f->t));
    assert_int_equal(vmt_tracer_detach(f->t), VMT_OK);
    assert_false(vmt_mock_view_exists(f->mock, v));
    assert_int_equal(vmt_mock_current_view(f->mock), 0);
    assert_false(vmt_mock_monitoring(f->mock, VMT_EVENT_SOFTWARE_BREAKPOINT));
    assert_false(vmt_mock_monitoring(f->mock, VMT_EVENT_MEMORY_ACCESS));
    assert_int_equal(vmt_tracer_detach(f->t), VMT_OK); /* idempotent */
    assert_int_equal(vmt_tracer_run(f->t, NULL, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_tracer_add(f->t, vmt_ctx(FN_A, f->root), NULL, NULL), VMT_E_INVALID);
}

static void test_hit_steps_over_in_default_view(void **state)
{
    fixture *f = *state;
    vmt_tracer_bp_id id = add_bp(f, FN_A, false, "fn_a");
    vmt_view v = vmt_tracer_view(f->t);
    vmt_tracer_bp_info bi = bp_info(f, id);
    assert_true(bi.active);
    assert_int_equal(bi.pa, CODE_PA + (FN_A - CODE_VA));
    assert_string_equal(bi.name, "fn_a");
    /* The trap lives in the session view only; the guest's frame is intact. */
    assert_int_equal(view_byte(f, v, bi.pa), 0xCC);
    assert_int_equal(view_byte(f, 0, bi.pa), 0x55);
    assert_int_equal(raw_byte(f, bi.pa), 0x55);

    push_int3(f, FN_A, CODE_PA);
    push_int3(f, FN_A, CODE_PA);
    drain(f);
    assert_int_equal(f->hits, 2);
    assert_int_equal(f->last.id, id);
    assert_int_equal(f->last.key, 7);
    assert_int_equal(f->last.tag, 9);
    assert_int_equal(f->last_regs.rip, FN_A);
    assert_int_equal(bp_info(f, id).hits, 2);
    assert_step_in_default(response(f, 0));
    assert_step_in_default(response(f, 1));
    VMT_OPTS(vmt_tracer_stats, s);
    vmt_tracer_stats_get(f->t, &s);
    assert_int_equal(s.hits, 2);
    assert_int_equal(s.hit_events, 2);
    assert_int_equal(s.reinjected, 0);
}

static void test_max_hits_stops_the_run(void **state)
{
    fixture *f = *state;
    add_bp(f, FN_A, false, NULL);
    for (int i = 0; i < 5; i++)
        push_int3(f, FN_A, CODE_PA);
    VMT_OPTS(vmt_tracer_run_opts, ro, .max_hits = 3);
    vmt_tracer_stop_reason why = VMT_TRACER_STOP_NONE;
    assert_int_equal(vmt_tracer_run(f->t, &ro, &why), VMT_OK);
    assert_int_equal(why, VMT_TRACER_STOP_HITS);
    assert_int_equal(f->hits, 3);
    assert_int_equal(vmt_mock_pending_events(f->mock), 2);
}

static void test_foreign_and_stale_int3(void **state)
{
    fixture *f = *state;
    add_bp(f, FN_A, false, NULL);
    push_int3(f, GUEST_INT3, CODE_PA); /* the guest's own trap */
    push_int3(f, PLAIN, CODE_PA);      /* nobody's: a breakpoint removed meanwhile */
    drain(f);
    assert_int_equal(f->hits, 0);
    assert_int_equal(response(f, 0)->action, VMT_ACTION_REINJECT);
    assert_false(response(f, 0)->set_view);
    assert_step_in_default(response(f, 1)); /* the original instruction runs */
    VMT_OPTS(vmt_tracer_stats, s);
    vmt_tracer_stats_get(f->t, &s);
    assert_int_equal(s.reinjected, 1);
    assert_int_equal(s.stale, 1);
}

static void test_stealth_read_served_in_default_view(void **state)
{
    fixture *f = *state;
    vmt_tracer_bp_id id = add_bp(f, FN_A, false, NULL);
    vmt_access a;
    assert_int_equal(vmt_core_get_access(f->vmi, vmt_gfn_from_pa(CODE_PA), vmt_tracer_view(f->t), &a),
                     VMT_OK);
    assert_false(a & VMT_ACCESS_R); /* reads of the page trap in the session view */
    push_access(f, PLAIN, bp_info(f, id).pa, FN_A, VMT_ACCESS_R);
    drain(f);
    assert_step_in_default(response(f, 0));
    VMT_OPTS(vmt_tracer_stats, s);
    vmt_tracer_stats_get(f->t, &s);
    assert_int_equal(s.stealth_reads, 1);
    assert_int_equal(f->hits, 0);
    /* What the read sees in the default view is the original byte. */
    assert_int_equal(view_byte(f, response(f, 0)->view, bp_info(f, id).pa), 0x55);
}

/* A write to a monitored page-table entry is single-stepped in the default
 * view; the tracer reads the entry back after the step. The test applies
 * the write before queueing the events: the tracer reads nothing at the
 * write event itself. */
static void guest_writes_pte(fixture *f, vmt_va va, uint64_t pte)
{
    vmt_pa pte_pa;
    assert_int_equal(vmt_mock_entry_pa(f->mock, f->root, va, 1, &pte_pa), VMT_OK);
    assert_int_equal(vmt_mock_poke(f->mock, pte_pa, &pte, sizeof pte), VMT_OK);
    push_access(f, PLAIN, pte_pa, 0xffff800000000000ull, VMT_ACCESS_W);
    push_step(f, PLAIN + 3);
}

static void assert_pt_write_responses(fixture *f, size_t first)
{
    const vmt_response *w = response(f, first), *s = response(f, first + 1);
    assert_int_equal(w->action, VMT_ACTION_SINGLESTEP);
    assert_true(w->set_view);
    assert_int_equal(w->view, 0);
    assert_int_equal(s->action, VMT_ACTION_CONTINUE);
    assert_true(s->set_view);
    assert_int_equal(s->view, vmt_tracer_view(f->t));
}

static void test_page_out_and_relocated_page_in(void **state)
{
    fixture *f = *state;
    vmt_tracer_bp_id id = add_bp(f, FN_A, false, NULL);
    vmt_view v = vmt_tracer_view(f->t);
    VMT_OPTS(vmt_tracer_stats, s);

    guest_writes_pte(f, CODE_VA, CODE_PA | VMT_PTE_U | VMT_PTE_W); /* Present cleared */
    drain(f);
    assert_pt_write_responses(f, 0);
    vmt_tracer_bp_info bi = bp_info(f, id);
    assert_false(bi.active);
    assert_int_equal(bi.page_outs, 1);
    vmt_tracer_stats_get(f->t, &s);
    assert_int_equal(s.pt_writes, 1);
    assert_int_equal(s.page_outs, 1);
    assert_int_equal(s.bpm.pending, 1);
    assert_int_equal(s.bpm.active, 0);
    assert_int_equal(view_byte(f, v, CODE_PA + 0x10), 0x55); /* trap gone with the page */

    fill_code(f->mock, MOVED_PA); /* the pager reads the page back into another frame */
    guest_writes_pte(f, CODE_VA, MOVED_PA | VMT_PTE_P | VMT_PTE_U | VMT_PTE_W);
    drain(f);
    assert_pt_write_responses(f, 2);
    bi = bp_info(f, id);
    assert_true(bi.active);
    assert_int_equal(bi.page_ins, 1);
    assert_int_equal(bi.relocations, 1);
    assert_int_equal(bi.pa, MOVED_PA + 0x10);
    assert_int_equal(view_byte(f, v, MOVED_PA + 0x10), 0xCC);
    assert_int_equal(raw_byte(f, MOVED_PA + 0x10), 0x55);

    push_int3(f, FN_A, MOVED_PA);
    drain(f);
    assert_int_equal(bp_info(f, id).hits, 1);
    assert_step_in_default(response(f, 4));
}

static void test_pending_breakpoint_arms_at_page_in(void **state)
{
    fixture *f = *state;
    /* LATE_VA shares CODE_VA's page table, but its entry is empty. */
    vmt_tracer_bp_id id = add_bp(f, LATE_VA + 0x10, false, "late");
    assert_false(bp_info(f, id).active);
    VMT_OPTS(vmt_tracer_stats, s);
    vmt_tracer_stats_get(f->t, &s);
    assert_int_equal(s.bpm.pending, 1);
    push_int3(f, LATE_VA + 0x10, LATE_PA); /* cannot be ours yet */
    drain(f);
    assert_int_equal(f->hits, 0);

    fill_code(f->mock, LATE_PA);
    guest_writes_pte(f, LATE_VA, LATE_PA | VMT_PTE_P | VMT_PTE_U);
    drain(f);
    assert_true(bp_info(f, id).active);
    assert_int_equal(bp_info(f, id).page_ins, 1);
    assert_int_equal(bp_info(f, id).relocations, 0);
    assert_int_equal(view_byte(f, vmt_tracer_view(f->t), LATE_PA + 0x10), 0xCC);
    push_int3(f, LATE_VA + 0x10, LATE_PA);
    drain(f);
    assert_int_equal(f->hits, 1);
    assert_string_equal(f->last.name, "late");
}

static void test_unmonitored_table_write_is_completed(void **state)
{
    fixture *f = *state;
    add_bp(f, FN_A, false, NULL);
    vmt_pa pte_pa;
    assert_int_equal(vmt_mock_entry_pa(f->mock, f->root, CODE_VA, 1, &pte_pa), VMT_OK);
    /* Another entry of the same (write-protected) table page. */
    push_access(f, PLAIN, pte_pa + 8 * 100, 0xffff800000000000ull, VMT_ACCESS_W);
    drain(f);
    assert_step_in_default(response(f, 0));
    VMT_OPTS(vmt_tracer_stats, s);
    vmt_tracer_stats_get(f->t, &s);
    assert_int_equal(s.other_writes, 1);
    assert_int_equal(s.pt_writes, 0);
}

static void test_global_breakpoint_any_root(void **state)
{
    fixture *f = *state;
    vmt_tracer_bp_id id = add_bp(f, FN_B, true, "shared");
    vmt_pa other;
    assert_int_equal(vmt_mock_new_root(f->mock, &other), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, other, CODE_VA, CODE_PA, VMT_MOCK_4K, VMT_PTE_U), VMT_OK);
    vmt_event ev = base_event(f, VMT_EVENT_SOFTWARE_BREAKPOINT, FN_B);
    ev.regs.cr3 = other;
    ev.u.software_breakpoint.gfn = vmt_gfn_from_pa(CODE_PA);
    ev.u.software_breakpoint.insn_len = 1;
    assert_int_equal(vmt_mock_push_event(f->mock, &ev), VMT_OK);
    push_int3(f, FN_B, CODE_PA);
    drain(f);
    assert_int_equal(bp_info(f, id).hits, 2);
    assert_true(bp_info(f, id).global);
}

/* A per-process breakpoint on a frame that another address space maps
 * too: that process runs into the trap, which is no hit, and its original
 * instruction must run (not the trap again). */
static void test_other_address_space_steps_over(void **state)
{
    fixture *f = *state;
    vmt_tracer_bp_id id = add_bp(f, FN_A, false, "only_root");
    vmt_pa other;
    assert_int_equal(vmt_mock_new_root(f->mock, &other), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, other, CODE_VA, CODE_PA, VMT_MOCK_4K, VMT_PTE_U), VMT_OK);
    vmt_event ev = base_event(f, VMT_EVENT_SOFTWARE_BREAKPOINT, FN_A);
    ev.regs.cr3 = other;
    ev.u.software_breakpoint.gfn = vmt_gfn_from_pa(CODE_PA);
    ev.u.software_breakpoint.insn_len = 1;
    assert_int_equal(vmt_mock_push_event(f->mock, &ev), VMT_OK);
    push_int3(f, FN_A, CODE_PA); /* and the right one */
    drain(f);
    assert_int_equal(bp_info(f, id).hits, 1);
    assert_int_equal(f->last_regs.cr3, f->root);
    assert_step_in_default(response(f, 0));
    assert_step_in_default(response(f, 1));
    VMT_OPTS(vmt_tracer_stats, s);
    vmt_tracer_stats_get(f->t, &s);
    assert_int_equal(s.unmatched, 1);
    assert_int_equal(s.stale, 0);
}

static void test_callback_removes_its_breakpoint(void **state)
{
    fixture *f = *state;
    vmt_tracer_bp_id id = add_bp(f, FN_A, false, NULL);
    f->remove_on_hit = true;
    push_int3(f, FN_A, CODE_PA);
    drain(f);
    assert_int_equal(f->hits, 1);
    assert_step_in_default(response(f, 0)); /* the original instruction still runs */
    assert_int_equal(vmt_tracer_bp_count(f->t), 0);
    VMT_OPTS(vmt_tracer_bp_info, bi);
    assert_int_equal(vmt_tracer_bp_get(f->t, id, &bi), VMT_E_INVALID);
    assert_int_equal(view_byte(f, vmt_tracer_view(f->t), CODE_PA + 0x10), 0x55);
    push_int3(f, FN_A, CODE_PA); /* a late event for it: stale */
    drain(f);
    assert_int_equal(f->hits, 1);
    assert_step_in_default(response(f, 1));
    VMT_OPTS(vmt_tracer_stats, s);
    vmt_tracer_stats_get(f->t, &s);
    assert_int_equal(s.stale, 1);
}

static void test_two_breakpoints_one_address(void **state)
{
    fixture *f = *state;
    vmt_tracer_bp_id a = add_bp(f, FN_A, false, "first");
    vmt_tracer_bp_id b = add_bp(f, FN_A, false, "second");
    push_int3(f, FN_A, CODE_PA);
    drain(f);
    assert_int_equal(bp_info(f, a).hits, 1);
    assert_int_equal(bp_info(f, b).hits, 1);
    assert_int_equal(vmt_mock_responses(f->mock, NULL), 1); /* one step over */
    assert_int_equal(vmt_tracer_remove(f->t, a), VMT_OK);
    assert_int_equal(view_byte(f, vmt_tracer_view(f->t), CODE_PA + 0x10), 0xCC);
    assert_int_equal(vmt_tracer_remove(f->t, b), VMT_OK);
    assert_int_equal(view_byte(f, vmt_tracer_view(f->t), CODE_PA + 0x10), 0x55);
    assert_int_equal(vmt_tracer_remove(f->t, b), VMT_E_INVALID);
}

/* Everything the tracer did is undone by detach: guest frames (code and
 * page tables) byte for byte, access rights, shadow frames, views. */
static void test_detach_restores_guest(void **state)
{
    (void)state;
    fixture *f = make_fixture(0, VMT_TRACER_CONTROLLER_INT3);
    vmt_pa pte_pa;
    assert_int_equal(vmt_mock_entry_pa(f->mock, f->root, CODE_VA, 1, &pte_pa), VMT_OK);
    vmt_pa table = pte_pa & ~(vmt_pa)0xfff;
    uint8_t code0[VMT_PAGE_SIZE], table0[VMT_PAGE_SIZE], buf[VMT_PAGE_SIZE];
    assert_int_equal(vmt_mock_peek(f->mock, CODE_PA, code0, sizeof code0), VMT_OK);
    assert_int_equal(vmt_mock_peek(f->mock, table, table0, sizeof table0), VMT_OK);
    vmt_access before;
    assert_int_equal(vmt_core_get_access(f->vmi, vmt_gfn_from_pa(table), 0, &before), VMT_OK);

    add_bp(f, FN_A, false, NULL);
    add_bp(f, FN_B, true, NULL);
    add_bp(f, LATE_VA, false, NULL);
    assert_true(vmt_mock_allocated_gfns(f->mock) > 0);
    push_int3(f, FN_A, CODE_PA);
    drain(f);
    VMT_OPTS(vmt_tracer_stats, s);
    vmt_tracer_stats_get(f->t, &s);
    assert_true(s.ptm_tables > 0);

    assert_int_equal(vmt_tracer_detach(f->t), VMT_OK);
    assert_int_equal(vmt_mock_peek(f->mock, CODE_PA, buf, sizeof buf), VMT_OK);
    assert_memory_equal(buf, code0, sizeof buf);
    assert_int_equal(vmt_mock_peek(f->mock, table, buf, sizeof buf), VMT_OK);
    assert_memory_equal(buf, table0, sizeof buf);
    assert_int_equal(vmt_mock_view_read(f->mock, 0, CODE_PA, buf, sizeof buf), VMT_OK);
    assert_memory_equal(buf, code0, sizeof buf);
    vmt_access after;
    assert_int_equal(vmt_core_get_access(f->vmi, vmt_gfn_from_pa(table), 0, &after), VMT_OK);
    assert_int_equal(after, before);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 0);
    assert_false(vmt_mock_view_exists(f->mock, 1));
    assert_int_equal(vmt_mock_current_view(f->mock), 0);
    vmt_tracer_stats_get(f->t, &s);
    assert_int_equal(s.bpm.active + s.bpm.pending, 0);
    assert_int_equal(s.ptm_tables, 0);
    /* Info stays readable; the breakpoints are no longer armed. */
    assert_int_equal(vmt_tracer_bp_count(f->t), 3);
    assert_false(bp_info(f, 1).active);
    assert_int_equal(bp_info(f, 1).hits, 1);
    teardown((void **)&f);
}

/* Without FAST_SINGLESTEP the step-over is a SINGLESTEP whose event brings
 * the vCPU back; the run does not return between the two. */
static void test_step_over_without_fast_singlestep(void **state)
{
    (void)state;
    fixture *f = make_fixture(VMT_CAP_VIEWS | VMT_CAP_EXECUTE_ONLY, VMT_TRACER_CONTROLLER_AUTO);
    assert_int_equal(vmt_tracer_controller_used(f->t), VMT_TRACER_CONTROLLER_INT3);
    add_bp(f, FN_A, false, NULL);
    push_int3(f, FN_A, CODE_PA);
    push_step(f, FN_A + 1);
    VMT_OPTS(vmt_tracer_run_opts, ro, .max_hits = 1);
    vmt_tracer_stop_reason why;
    assert_int_equal(vmt_tracer_run(f->t, &ro, &why), VMT_OK);
    assert_int_equal(why, VMT_TRACER_STOP_HITS);
    assert_int_equal(vmt_mock_pending_events(f->mock), 0); /* waited for the step */
    assert_int_equal(response(f, 0)->action, VMT_ACTION_SINGLESTEP);
    assert_int_equal(response(f, 0)->view, 0);
    assert_int_equal(response(f, 1)->action, VMT_ACTION_CONTINUE);
    assert_true(response(f, 1)->set_view);
    assert_int_equal(response(f, 1)->view, vmt_tracer_view(f->t));
    assert_int_equal(vmt_mock_current_view(f->mock), vmt_tracer_view(f->t));
    teardown((void **)&f);
}

/* The memory controller: the page loses X; a fetch at a breakpoint is a
 * hit, a fetch elsewhere on the page is just stepped. */
static void test_memory_controller(void **state)
{
    (void)state;
    fixture *f = make_fixture(VMT_CAP_VIEWS | VMT_CAP_FAST_SINGLESTEP, VMT_TRACER_CONTROLLER_AUTO);
    assert_int_equal(vmt_tracer_controller_used(f->t), VMT_TRACER_CONTROLLER_MEMORY);
    assert_true(vmt_tracer_is_stealthy(f->t));
    vmt_tracer_bp_id id = add_bp(f, FN_A, false, NULL);
    vmt_access a;
    assert_int_equal(vmt_core_get_access(f->vmi, vmt_gfn_from_pa(CODE_PA), vmt_tracer_view(f->t), &a),
                     VMT_OK);
    assert_false(a & VMT_ACCESS_X);
    assert_true(a & VMT_ACCESS_R);
    assert_int_equal(view_byte(f, vmt_tracer_view(f->t), CODE_PA + 0x10), 0x55); /* no code change */
    push_access(f, FN_A, CODE_PA + 0x10, FN_A, VMT_ACCESS_X);
    push_access(f, PLAIN, CODE_PA + 0x200, PLAIN, VMT_ACCESS_X);
    drain(f);
    assert_int_equal(bp_info(f, id).hits, 1);
    assert_int_equal(f->hits, 1);
    assert_step_in_default(response(f, 0));
    assert_step_in_default(response(f, 1));
    VMT_OPTS(vmt_tracer_stats, s);
    vmt_tracer_stats_get(f->t, &s);
    assert_int_equal(s.exec_steps, 1);
    assert_int_equal(vmt_tracer_detach(f->t), VMT_OK);
    assert_int_equal(vmt_core_get_access(f->vmi, vmt_gfn_from_pa(CODE_PA), 0, &a), VMT_OK);
    assert_int_equal(a, VMT_ACCESS_RWX);
    teardown((void **)&f);
}

/* A function of this test program, used as a "guest symbol": the tracer
 * reads this program's ELF and breaks on the function's address. */
__attribute__((noinline)) int vmt_tracer_test_target(int x) { return 2 * x + 1; }

static void test_breakpoint_by_symbol(void **state)
{
    fixture *f = *state;
    assert_int_equal(vmt_tracer_add_symbol(f->t, "vmt_tracer_test_target", f->root, NULL, NULL),
                     VMT_E_INVALID); /* no symbols loaded yet */
    assert_int_equal(vmt_tracer_load_symbols(f->t, "/proc/self/exe"), VMT_OK);
    assert_int_equal(vmt_tracer_add_symbol(f->t, "no_such_symbol_here", f->root, NULL, NULL),
                     VMT_E_INVALID);
    vmt_tracer_bp_id id = 0;
    assert_int_equal(vmt_tracer_add_symbol(f->t, "vmt_tracer_test_target", f->root, NULL, &id),
                     VMT_OK);
    vmt_tracer_bp_info bi = bp_info(f, id);
    assert_string_equal(bi.name, "vmt_tracer_test_target");
    assert_int_equal(vmt_tracer_test_target(1), 3);
    assert_true(bi.ctx.va != 0);
    assert_int_equal(bi.ctx.root, f->root);
    VMT_OPTS(vmt_tracer_bp_opts, bo, .name = "labelled", .global = true);
    assert_int_equal(vmt_tracer_add_symbol(f->t, "vmt_tracer_test_target", f->root, &bo, &id),
                     VMT_OK);
    assert_string_equal(bp_info(f, id).name, "labelled");
    assert_true(bp_info(f, id).global);
    assert_int_equal(bp_info(f, id).ctx.va, bi.ctx.va);
}

static void stop_on_hit(void *user, vmt_tracer *t, const vmt_tracer_hit *hit)
{
    (void)hit;
    (*(unsigned *)user)++;
    vmt_tracer_stop(t);
}

/* vmt_tracer_stop from the callback ends the run after that event; a
 * driver error ends it with the error; a step that never completes is
 * reported instead of waiting forever. */
static void test_run_stop_conditions(void **state)
{
    (void)state;
    vmt_core *vmi;
    vmt_mock *m;
    vmt_pa root;
    VMT_OPTS(vmt_mock_opts, mo, .max_gfn = 0x1000);
    assert_int_equal(vmt_mock_core_new(&mo, &vmi, &m), VMT_OK);
    assert_int_equal(vmt_mock_new_root(m, &root), VMT_OK);
    assert_int_equal(vmt_mock_map(m, root, CODE_VA, CODE_PA, VMT_MOCK_4K, VMT_PTE_U), VMT_OK);
    fill_code(m, CODE_PA);
    unsigned hits = 0;
    VMT_OPTS(vmt_tracer_opts, to, .on_hit = stop_on_hit, .user = &hits);
    vmt_tracer *t;
    assert_int_equal(vmt_tracer_new(vmi, &to, &t), VMT_OK);
    assert_int_equal(vmt_tracer_add(t, vmt_ctx(FN_A, root), NULL, NULL), VMT_OK);
    fixture f = {.vmi = vmi, .mock = m, .root = root, .t = t};
    push_int3(&f, FN_A, CODE_PA);
    push_int3(&f, FN_A, CODE_PA);
    vmt_tracer_stop_reason why = VMT_TRACER_STOP_NONE;
    assert_int_equal(vmt_tracer_run(t, NULL, &why), VMT_OK);
    assert_int_equal(why, VMT_TRACER_STOP_REQUESTED);
    assert_int_equal(hits, 1);
    assert_int_equal(vmt_mock_pending_events(m), 1);

    vmt_mock_fail_nth(m, VMT_MOCK_OP_WAIT_FOR_EVENT, 1, VMT_E_DRIVER);
    why = VMT_TRACER_STOP_NONE;
    assert_int_equal(vmt_tracer_run(t, NULL, &why), VMT_E_DRIVER);
    assert_int_equal(why, VMT_TRACER_STOP_NONE); /* untouched on failure */
    assert_int_equal(vmt_tracer_run(t, NULL, &why), VMT_OK); /* the queued hit */
    assert_int_equal(hits, 2);

    /* A monitored page-table write whose single-step never comes back. */
    vmt_pa pte_pa;
    assert_int_equal(vmt_mock_entry_pa(m, root, CODE_VA, 1, &pte_pa), VMT_OK);
    push_access(&f, PLAIN, pte_pa, 0xffff800000000000ull, VMT_ACCESS_W);
    VMT_OPTS(vmt_tracer_run_opts, ro, .timeout_ms = 1);
    assert_int_equal(vmt_tracer_run(t, &ro, &why), VMT_E_TIMEOUT);
    vmt_tracer_free(t);
    vmt_core_free(vmi);
}

/* ---- step-over by emulation ---- */

#define STACK_VA 0x7ff000ull
#define STACK_PA 0x40000ull
#define DATA_VA 0x500000ull /* absolute data the mov form reads */
#define DATA_PA 0x41000ull
#define KDATA_VA 0x600000ull /* supervisor-only page */
#define KDATA_PA 0x42000ull

static void write_code(fixture *f, vmt_va va, const void *bytes, size_t n)
{
    assert_int_equal(vmt_mock_poke(f->mock, CODE_PA + (va - CODE_VA), bytes, n), VMT_OK);
}

/* A user-mode hit event in long mode with a mapped, writable stack. */
static void push_user_hit(fixture *f, vmt_va rip)
{
    vmt_event ev = base_event(f, VMT_EVENT_SOFTWARE_BREAKPOINT, rip);
    ev.regs.efer = 1u << 10; /* LMA */
    ev.regs.cr0 = 1u << 16;  /* WP */
    ev.regs.rsp = STACK_VA + 0x800;
    ev.regs.rbp = 0x1111222233334444ull;
    ev.regs.r13 = 0x5555666677778888ull;
    ev.regs.rax = 7;
    ev.u.software_breakpoint.gfn = vmt_gfn_from_pa(CODE_PA);
    ev.u.software_breakpoint.insn_len = 1;
    assert_int_equal(vmt_mock_push_event(f->mock, &ev), VMT_OK);
}

static void map_emulation_pages(fixture *f)
{
    assert_int_equal(vmt_mock_map(f->mock, f->root, STACK_VA, STACK_PA, VMT_MOCK_4K,
                                  VMT_PTE_U | VMT_PTE_W), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, f->root, DATA_VA, DATA_PA, VMT_MOCK_4K, VMT_PTE_U),
                     VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, f->root, KDATA_VA, KDATA_PA, VMT_MOCK_4K, 0), VMT_OK);
    uint64_t v = 0xabcdef0123456789ull;
    assert_int_equal(vmt_mock_poke(f->mock, DATA_PA + 0x18, &v, 8), VMT_OK);
    assert_int_equal(vmt_mock_poke(f->mock, KDATA_PA + 0x18, &v, 8), VMT_OK);
}

static void assert_emulated(fixture *f, size_t i, vmt_regs *out)
{
    const vmt_response *r = response(f, i);
    assert_int_equal(r->action, VMT_ACTION_CONTINUE);
    assert_true(r->set_regs);
    assert_false(r->set_view);
    *out = r->regs;
}

static void test_hit_emulated_push(void **state)
{
    fixture *f = *state;
    map_emulation_pages(f);
    write_code(f, FN_A, "\x55", 1);          /* push rbp */
    write_code(f, FN_B, "\x41\x55", 2);      /* push r13 */
    add_bp(f, FN_A, false, NULL);
    add_bp(f, FN_B, false, NULL);
    push_user_hit(f, FN_A);
    drain(f);
    vmt_regs r;
    uint64_t top;
    assert_emulated(f, 0, &r);
    assert_int_equal(r.rip, FN_A + 1);
    assert_int_equal(r.rsp, STACK_VA + 0x800 - 8);
    assert_int_equal(r.rbp, 0x1111222233334444ull);
    assert_int_equal(vmt_mock_peek(f->mock, STACK_PA + 0x800 - 8, &top, 8), VMT_OK);
    assert_int_equal(top, 0x1111222233334444ull);
    push_user_hit(f, FN_B); /* same stack pointer again */
    drain(f);
    assert_emulated(f, 1, &r);
    assert_int_equal(r.rip, FN_B + 2);
    assert_int_equal(r.rsp, STACK_VA + 0x800 - 8);
    assert_int_equal(vmt_mock_peek(f->mock, STACK_PA + 0x800 - 8, &top, 8), VMT_OK);
    assert_int_equal(top, 0x5555666677778888ull);
    VMT_OPTS(vmt_tracer_stats, s);
    vmt_tracer_stats_get(f->t, &s);
    assert_int_equal(s.emulated, 2);
    assert_int_equal(f->hits, 2);
}

static void test_hit_emulated_mov_absolute(void **state)
{
    fixture *f = *state;
    map_emulation_pages(f);
    /* mov rax, [0x500018]; mov r10, [0x500018] */
    write_code(f, FN_A, "\x48\x8b\x04\x25\x18\x00\x50\x00", 8);
    write_code(f, FN_B, "\x4c\x8b\x14\x25\x18\x00\x50\x00", 8);
    add_bp(f, FN_A, false, NULL);
    add_bp(f, FN_B, false, NULL);
    push_user_hit(f, FN_A);
    push_user_hit(f, FN_B);
    drain(f);
    vmt_regs r;
    assert_emulated(f, 0, &r);
    assert_int_equal(r.rip, FN_A + 8);
    assert_int_equal(r.rax, 0xabcdef0123456789ull);
    assert_int_equal(r.rsp, STACK_VA + 0x800);
    assert_emulated(f, 1, &r);
    assert_int_equal(r.r10, 0xabcdef0123456789ull);
    assert_int_equal(r.rax, 7);
}

/* Whatever the emulator cannot do exactly goes to the single-step: an
 * instruction it does not know, a user read of a supervisor page, a push
 * onto a stack page that is not present, a read-only stack page. */
static void test_emulation_falls_back_to_step(void **state)
{
    fixture *f = *state;
    map_emulation_pages(f);
    write_code(f, FN_A, "\x48\x89\xe5", 3);                        /* mov rbp, rsp */
    write_code(f, FN_B, "\x48\x8b\x04\x25\x18\x00\x60\x00", 8); /* mov rax, [0x600018] */
    write_code(f, PLAIN, "\x55", 1);                                 /* push rbp */
    add_bp(f, FN_A, false, NULL);
    add_bp(f, FN_B, false, NULL);
    add_bp(f, PLAIN, false, NULL);
    push_user_hit(f, FN_A);
    push_user_hit(f, FN_B);
    assert_int_equal(vmt_mock_unmap(f->mock, f->root, STACK_VA, 1), VMT_OK);
    push_user_hit(f, PLAIN);
    drain(f);
    assert_step_in_default(response(f, 0));
    assert_step_in_default(response(f, 1));
    assert_step_in_default(response(f, 2));
    assert_int_equal(vmt_mock_map(f->mock, f->root, STACK_VA, STACK_PA, VMT_MOCK_4K, VMT_PTE_U),
                     VMT_OK); /* present again, but read-only */
    push_user_hit(f, PLAIN);
    drain(f);
    assert_step_in_default(response(f, 3));
    /* Writable in the page tables, but write-protected in the session view
     * (as the page-table monitor does): the single-step's write must trap. */
    assert_int_equal(vmt_mock_map(f->mock, f->root, STACK_VA, STACK_PA, VMT_MOCK_4K,
                                  VMT_PTE_U | VMT_PTE_W), VMT_OK);
    assert_int_equal(vmt_core_set_access(f->vmi, vmt_gfn_from_pa(STACK_PA), vmt_tracer_view(f->t),
                                         VMT_ACCESS_R, 0), VMT_OK);
    push_user_hit(f, PLAIN);
    drain(f);
    assert_step_in_default(response(f, 4));
    VMT_OPTS(vmt_tracer_stats, s);
    vmt_tracer_stats_get(f->t, &s);
    assert_int_equal(s.emulated, 0);
    assert_int_equal(f->hits, 5);
    uint64_t top = 1;
    assert_int_equal(vmt_mock_peek(f->mock, STACK_PA + 0x800 - 8, &top, 8), VMT_OK);
    assert_int_equal(top, 0); /* nothing written */
}

/* The emulator matches its forms on their bytes (emulate.c says why);
 * the length it steps over must be the one Zydis decodes, and look-alikes
 * that are not its forms (a 16-bit push, an fs: override, 32-bit
 * addressing, push rbp as FF /6) go to the single-step. */
static void test_emulation_lengths_and_lookalikes(void **state)
{
    fixture *f = *state;
    map_emulation_pages(f);
    static const struct {
        const char *code;
        size_t len;
        bool emulated;
    } cases[] = {
        {"\x90", 1, true},
        {"\xf3\x0f\x1e\xfa", 4, true},
        {"\x53", 1, true},
        {"\x41\x57", 2, true},
        {"\x48\x8b\x04\x25\x18\x00\x50\x00", 8, true},
        {"\x4c\x8b\x3c\x25\x18\x00\x50\x00", 8, true},
        {"\x66\x55", 2, false},
        {"\x64\x48\x8b\x04\x25\x18\x00\x50\x00", 9, false},
        {"\x67\x48\x8b\x04\x25\x18\x00\x50\x00", 9, false},
        {"\xff\xf5", 2, false},
    };
    add_bp(f, FN_A, false, NULL);
    uint64_t emulated = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_code(f, FN_A, cases[i].code, cases[i].len);
        push_user_hit(f, FN_A);
        drain(f);
        const vmt_response *r = response(f, i);
        if (!cases[i].emulated) {
            assert_step_in_default(r);
            continue;
        }
        emulated++;
        assert_true(r->set_regs);
        assert_int_equal(r->regs.rip - FN_A, vmt_insn_len((const uint8_t *)cases[i].code, cases[i].len));
    }
    VMT_OPTS(vmt_tracer_stats, s);
    vmt_tracer_stats_get(f->t, &s);
    assert_int_equal(s.emulated, emulated);
}

static int setup_no_emulation(void **state)
{
    fixture *f = test_calloc(1, sizeof *f);
    VMT_OPTS(vmt_mock_opts, mo, .max_gfn = 0x1000);
    assert_int_equal(vmt_mock_core_new(&mo, &f->vmi, &f->mock), VMT_OK);
    assert_int_equal(vmt_mock_new_root(f->mock, &f->root), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, f->root, CODE_VA, CODE_PA, VMT_MOCK_4K, VMT_PTE_U), VMT_OK);
    fill_code(f->mock, CODE_PA);
    VMT_OPTS(vmt_tracer_opts, to, .controller = VMT_TRACER_CONTROLLER_INT3, .on_hit = on_hit,
             .user = f, .no_emulation = true);
    assert_int_equal(vmt_tracer_new(f->vmi, &to, &f->t), VMT_OK);
    *state = f;
    return 0;
}

static void test_no_emulation_option(void **state)
{
    fixture *f = *state;
    map_emulation_pages(f);
    add_bp(f, FN_A, false, NULL); /* push rbp */
    push_user_hit(f, FN_A);
    drain(f);
    assert_step_in_default(response(f, 0));
}

static void test_bad_arguments(void **state)
{
    fixture *f = *state;
    vmt_tracer *t = (vmt_tracer *)(uintptr_t)1;
    assert_int_equal(vmt_tracer_new(NULL, NULL, &t), VMT_E_INVALID);
    assert_int_equal(vmt_tracer_new(f->vmi, NULL, NULL), VMT_E_INVALID);
    assert_ptr_equal(t, (vmt_tracer *)(uintptr_t)1);
    vmt_tracer_bp_id id = 42;
    assert_int_equal(vmt_tracer_add(f->t, vmt_ctx(0x0000900000000000ull, f->root), NULL, &id),
                     VMT_E_INVALID);
    assert_int_equal(vmt_tracer_add(NULL, vmt_ctx(FN_A, f->root), NULL, &id), VMT_E_INVALID);
    assert_int_equal(id, 42);
    assert_int_equal(vmt_tracer_add_symbol(f->t, "main", f->root, NULL, &id), VMT_E_INVALID);
    assert_int_equal(vmt_tracer_load_symbols(f->t, "/nonexistent.elf"), VMT_E_INVALID);
    assert_int_equal(vmt_tracer_remove(f->t, 1), VMT_E_INVALID);
    assert_int_equal(vmt_tracer_bp_count(f->t), 0);
    assert_string_equal(vmt_tracer_stop_reason_str(VMT_TRACER_STOP_HITS), "hits");
    assert_string_equal(vmt_tracer_controller_name(VMT_TRACER_CONTROLLER_MEMORY), "memory");
    vmt_tracer_free(NULL);
}

static void test_driver_without_views(void **state)
{
    (void)state;
    vmt_core *vmi;
    vmt_mock *m;
    VMT_OPTS(vmt_mock_opts, mo, .max_gfn = 0x1000, .caps = VMT_CAP_FAST_SINGLESTEP);
    assert_int_equal(vmt_mock_core_new(&mo, &vmi, &m), VMT_OK);
    vmt_tracer *t = NULL;
    assert_int_equal(vmt_tracer_new(vmi, NULL, &t), VMT_E_UNSUPPORTED);
    assert_null(t);
    assert_int_equal(vmt_mock_current_view(m), 0);
    vmt_core_free(vmi);
}

/* A driver failure at any point of vmt_tracer_new leaves nothing behind. */
static void test_new_fails_cleanly_at_every_call(void **state)
{
    (void)state;
    for (unsigned nth = 1;; nth++) {
        vmt_core *vmi;
        vmt_mock *m;
        assert_int_equal(vmt_mock_core_new(NULL, &vmi, &m), VMT_OK);
        vmt_mock_fail_nth_any(m, nth, VMT_E_DRIVER);
        vmt_tracer *t = NULL;
        vmt_status st = vmt_tracer_new(vmi, NULL, &t);
        bool injected = vmt_mock_injected(m) > 0;
        vmt_mock_fail_nth_any(m, 0, VMT_OK);
        if (st == VMT_OK) {
            assert_false(injected);
            vmt_tracer_free(t);
            vmt_core_free(vmi);
            assert_true(nth > 3);
            break;
        }
        assert_null(t);
        assert_int_equal(vmt_mock_current_view(m), 0);
        for (vmt_view v = 1; v < 4; v++)
            assert_false(vmt_mock_view_exists(m, v));
        assert_false(vmt_mock_monitoring(m, VMT_EVENT_MEMORY_ACCESS));
        assert_false(vmt_mock_monitoring(m, VMT_EVENT_SOFTWARE_BREAKPOINT));
        vmt_core_free(vmi);
    }
}

/* A page table pointing above guest RAM, at the frame the interceptor
 * hands out first for a shadow (issue 13, found by fuzz_tracer): the
 * breakpoint is refused, nothing is left behind, detach works. */
static void test_breakpoint_on_a_shadow_frame_refused(void **state)
{
    fixture *f = *state;
    vmt_pa above = (vmt_pa)0x1000 << VMT_PAGE_SHIFT; /* max_gfn of the fixture */
    assert_int_equal(vmt_mock_map(f->mock, f->root, LATE_VA, above, VMT_MOCK_4K, VMT_PTE_U), VMT_OK);
    vmt_tracer_bp_id id = 0;
    assert_int_equal(vmt_tracer_add(f->t, vmt_ctx(LATE_VA + 0x10, f->root), NULL, &id),
                     VMT_E_INVALID);
    assert_int_equal(vmt_tracer_bp_count(f->t), 0);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 0);
    assert_int_equal(vmt_bpm_check(vmt_tracer_bpm(f->t)), VMT_OK);
    assert_int_equal(vmt_ptm_check(vmt_tracer_ptm(f->t)), VMT_OK);
    add_bp(f, FN_A, false, NULL); /* the rest works */
    assert_int_equal(vmt_tracer_detach(f->t), VMT_OK);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 0);
}

/* ---- a driver failure at every call of the event handling ---- */

/* The scenarios swept: what the guest does, queued on f. */
typedef enum sweep_scenario {
    SWEEP_HIT,          /* a breakpoint hit, stepped over */
    SWEEP_PAGE_MOVES,   /* the code page goes out and comes back in another frame */
    SWEEP_PAGE_IN,      /* a pending breakpoint's page comes in */
    SWEEP_STEALTH_READ, /* a read of a breakpointed page */
    SWEEP_CODE_WRITE,   /* a write over a breakpoint (coherence: dropped) */
    SWEEP_COUNT
} sweep_scenario;

static void sweep_queue(fixture *f, sweep_scenario s)
{
    switch (s) {
    case SWEEP_HIT:
        push_int3(f, FN_A, CODE_PA);
        push_int3(f, FN_B, CODE_PA);
        break;
    case SWEEP_PAGE_MOVES:
        guest_writes_pte(f, CODE_VA, CODE_PA | VMT_PTE_U | VMT_PTE_W);
        fill_code(f->mock, MOVED_PA);
        guest_writes_pte(f, CODE_VA, MOVED_PA | VMT_PTE_P | VMT_PTE_U | VMT_PTE_W);
        break;
    case SWEEP_PAGE_IN:
        fill_code(f->mock, LATE_PA);
        guest_writes_pte(f, LATE_VA, LATE_PA | VMT_PTE_P | VMT_PTE_U);
        break;
    case SWEEP_STEALTH_READ:
        push_access(f, PLAIN, CODE_PA + (FN_A - CODE_VA), FN_A, VMT_ACCESS_R);
        break;
    default: {
        const uint8_t x = 0x31;
        assert_int_equal(vmt_mock_poke(f->mock, CODE_PA + (FN_B - CODE_VA), &x, 1), VMT_OK);
        push_access(f, PLAIN, CODE_PA + (FN_B - CODE_VA), FN_B, VMT_ACCESS_W);
        break;
    }
    }
}

/* Runs the tracer until the queue is empty; the status of the first run
 * that failed, VMT_OK if none did. */
static vmt_status sweep_run(fixture *f)
{
    vmt_status first = VMT_OK;
    for (int tries = 0; tries < 20 && vmt_mock_pending_events(f->mock) > 0; tries++) {
        vmt_tracer_run_opts ro = {.sz = sizeof ro, .timeout_ms = 1};
        vmt_tracer_stop_reason why;
        vmt_status st = vmt_tracer_run(f->t, &ro, &why);
        if (first == VMT_OK)
            first = st;
    }
    assert_int_equal(vmt_mock_pending_events(f->mock), 0);
    return first;
}

typedef struct sweep_state {
    unsigned n;
    vmt_tracer_bp_info bp[4];
} sweep_state;

static void sweep_collect(void *user, const vmt_tracer_bp_info *bp)
{
    sweep_state *s = user;
    assert_true(s->n < 4);
    s->bp[s->n++] = *bp;
}

/* The indexes agree, the guest's own frames hold its bytes, every active
 * breakpoint's trap is in the session view. Returns the breakpoints. */
static sweep_state sweep_check(fixture *f, uint8_t (*own)[VMT_PAGE_SIZE])
{
    static const vmt_pa frames[3] = {CODE_PA, MOVED_PA, LATE_PA};
    assert_int_equal(vmt_bpm_check(vmt_tracer_bpm(f->t)), VMT_OK);
    assert_int_equal(vmt_ptm_check(vmt_tracer_ptm(f->t)), VMT_OK);
    for (int i = 0; i < 3; i++) {
        uint8_t now[VMT_PAGE_SIZE];
        assert_int_equal(vmt_mock_peek(f->mock, frames[i], now, sizeof now), VMT_OK);
        assert_memory_equal(now, own[i], sizeof now);
    }
    sweep_state s = {0};
    vmt_tracer_foreach_bp(f->t, sweep_collect, &s);
    for (unsigned i = 0; i < s.n; i++)
        if (s.bp[i].active)
            assert_int_equal(view_byte(f, vmt_tracer_view(f->t), s.bp[i].pa), 0xCC);
    return s;
}

static void sweep_snapshot(fixture *f, uint8_t (*own)[VMT_PAGE_SIZE])
{
    static const vmt_pa frames[3] = {CODE_PA, MOVED_PA, LATE_PA};
    for (int i = 0; i < 3; i++)
        assert_int_equal(vmt_mock_peek(f->mock, frames[i], own[i], VMT_PAGE_SIZE), VMT_OK);
}

/* One scenario, with the nth call of driver operation op of its event
 * handling failing (n = 0: none); every operation but wait_for_event,
 * whose polls depend on the clock, is called only while events are
 * handled, so the calls swept are the same in every run. After the failed run: the state is consistent (sweep_check);
 * the guest does it again (events queued anew) and a run without fault
 * ends where the run without any fault ended (the same breakpoints, armed
 * at the same frames); detach restores the guest. Returns whether the
 * fault fired, and the final breakpoints in *out. */
static bool sweep_one(sweep_scenario sc, vmt_mock_op op, unsigned n, sweep_state *out)
{
    fixture *f = make_fixture(0, VMT_TRACER_CONTROLLER_INT3);
    add_bp(f, FN_A, false, "a");
    add_bp(f, FN_B, true, "b");
    add_bp(f, LATE_VA + 0x10, false, "late");
    static uint8_t own[3][VMT_PAGE_SIZE];
    sweep_queue(f, sc);
    sweep_snapshot(f, own);
    uint64_t inj = vmt_mock_injected(f->mock);
    if (n)
        vmt_mock_fail_nth(f->mock, op, n, VMT_E_DRIVER);
    vmt_status st = sweep_run(f);
    vmt_mock_fail_nth(f->mock, op, 0, VMT_OK);
    bool fired = vmt_mock_injected(f->mock) != inj;
    if (!fired)
        assert_int_equal(st, VMT_OK);
    sweep_check(f, own);
    if (fired) {
        sweep_queue(f, sc);
        sweep_snapshot(f, own);
        assert_int_equal(sweep_run(f), VMT_OK);
    }
    *out = sweep_check(f, own);
    vmt_view view = vmt_tracer_view(f->t);
    assert_int_equal(vmt_tracer_detach(f->t), VMT_OK);
    assert_false(vmt_mock_view_exists(f->mock, view));
    assert_int_equal(vmt_mock_current_view(f->mock), 0);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 0);
    for (vmt_gfn g = 0; g < 0x1000; g++) {
        vmt_access a;
        assert_int_equal(vmt_core_get_access(f->vmi, g, 0, &a), VMT_OK);
        assert_int_equal(a, VMT_ACCESS_RWX);
    }
    vmt_tracer_free(f->t);
    vmt_core_free(f->vmi);
    test_free(f);
    return fired;
}

static void test_event_handling_fault_at_every_call(void **state)
{
    (void)state;
    for (sweep_scenario sc = 0; sc < SWEEP_COUNT; sc++) {
        sweep_state ref, got;
        assert_false(sweep_one(sc, VMT_MOCK_OP_READ, 0, &ref));
        unsigned total = 0;
        for (vmt_mock_op op = 0; op < VMT_MOCK_OP_COUNT; op++) {
            unsigned n = 1;
            /* wait_for_event: its first call only (the later ones are
             * clock-dependent polls) */
            while (!(op == VMT_MOCK_OP_WAIT_FOR_EVENT && n > 1) && sweep_one(sc, op, n, &got)) {
                assert_int_equal(got.n, ref.n);
                for (unsigned i = 0; i < ref.n; i++) {
                    if (got.bp[i].active != ref.bp[i].active)
                        print_message("scenario %d, %s call %u failing: breakpoint %u differs\n",
                                      (int)sc, vmt_mock_op_name(op), n, ref.bp[i].id);
                    assert_int_equal(got.bp[i].id, ref.bp[i].id);
                    assert_int_equal(got.bp[i].active, ref.bp[i].active);
                    if (ref.bp[i].active)
                        assert_int_equal(got.bp[i].pa, ref.bp[i].pa);
                }
                n++;
            }
            total += n - 1;
        }
        print_message("scenario %d: a fault at each of its %u driver calls\n", (int)sc, total);
        assert_true(total >= 1); /* wait_for_event at least (a stealth read needs no other call) */
    }
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup_int3, teardown)
    const struct CMUnitTest tests[] = {
        T(test_session_view_and_detach),
        T(test_hit_steps_over_in_default_view),
        T(test_max_hits_stops_the_run),
        T(test_foreign_and_stale_int3),
        T(test_stealth_read_served_in_default_view),
        T(test_page_out_and_relocated_page_in),
        T(test_pending_breakpoint_arms_at_page_in),
        T(test_unmonitored_table_write_is_completed),
        T(test_global_breakpoint_any_root),
        T(test_other_address_space_steps_over),
        T(test_callback_removes_its_breakpoint),
        T(test_two_breakpoints_one_address),
        T(test_breakpoint_by_symbol),
        T(test_hit_emulated_push),
        T(test_hit_emulated_mov_absolute),
        T(test_emulation_falls_back_to_step),
        T(test_emulation_lengths_and_lookalikes),
        cmocka_unit_test_setup_teardown(test_no_emulation_option, setup_no_emulation, teardown),
        T(test_bad_arguments),
        T(test_breakpoint_on_a_shadow_frame_refused),
        cmocka_unit_test(test_detach_restores_guest),
        cmocka_unit_test(test_step_over_without_fast_singlestep),
        cmocka_unit_test(test_memory_controller),
        cmocka_unit_test(test_run_stop_conditions),
        cmocka_unit_test(test_driver_without_views),
        cmocka_unit_test(test_new_fails_cleanly_at_every_call),
        cmocka_unit_test(test_event_handling_fault_at_every_call),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
