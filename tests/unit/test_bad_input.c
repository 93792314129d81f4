// SPDX-License-Identifier: MIT
/* Bad input through the public API (issue 13): NULL objects and
 * out-parameters, unknown views, roots with flag bits, non-canonical and
 * out-of-range addresses, for the core, the ptm, the bpm with both real
 * controllers, coherence and the tracer on the mock driver. Each call must
 * answer with a status (or false / 0) and change nothing: the indexes
 * check, no frame is held or shadowed, every access right and every guest
 * byte is as before. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/holds.h"
#include "ptm/ptm_internal.h"
#include "vmitap/mock.h"
#include "vmitap/vmitap.h"

#define MAX_GFN 0x400u
#define VA 0x400000ull
#define FRAME 0x5000ull
#define NO_VIEW 999
#define NONCANON 0x0000900000000000ull

typedef struct fx {
    vmt_core *vmi;
    vmt_mock *mock;
    vmt_pa root;
    uint8_t *before; /* guest memory below MAX_GFN */
    vmt_access acc_before[MAX_GFN];
} fx;

static fx *fx_new(void)
{
    fx *f = calloc(1, sizeof *f);
    vmt_mock_opts o = {.sz = sizeof o, .max_gfn = MAX_GFN};
    assert_int_equal(vmt_mock_core_new(&o, &f->vmi, &f->mock), VMT_OK);
    vmt_view v;
    assert_int_equal(vmt_core_create_view(f->vmi, VMT_ACCESS_RWX, &v), VMT_OK);
    assert_int_equal(vmt_mock_new_root(f->mock, &f->root), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, f->root, VA, FRAME, VMT_MOCK_4K, 0), VMT_OK);
    uint8_t code[64];
    for (unsigned i = 0; i < sizeof code; i++)
        code[i] = (uint8_t)(0x90 + i);
    assert_int_equal(vmt_mock_poke(f->mock, FRAME, code, sizeof code), VMT_OK);
    return f;
}

/* Snapshot of what must not change: bytes and access of every frame in
 * views 0 and 1. */
static void snapshot(fx *f)
{
    free(f->before);
    f->before = malloc((size_t)MAX_GFN * VMT_PAGE_SIZE);
    assert_int_equal(vmt_mock_peek(f->mock, 0, f->before, (size_t)MAX_GFN * VMT_PAGE_SIZE), VMT_OK);
    for (vmt_gfn g = 0; g < MAX_GFN; g++)
        assert_int_equal(vmt_core_get_access(f->vmi, g, 1, &f->acc_before[g]), VMT_OK);
}

static void unchanged(fx *f)
{
    uint8_t *now = malloc((size_t)MAX_GFN * VMT_PAGE_SIZE);
    assert_int_equal(vmt_mock_peek(f->mock, 0, now, (size_t)MAX_GFN * VMT_PAGE_SIZE), VMT_OK);
    assert_memory_equal(now, f->before, (size_t)MAX_GFN * VMT_PAGE_SIZE);
    free(now);
    for (vmt_gfn g = 0; g < MAX_GFN; g++) {
        vmt_access a;
        assert_int_equal(vmt_core_get_access(f->vmi, g, 1, &a), VMT_OK);
        assert_int_equal(a, f->acc_before[g]);
        assert_false(vmt_core_access_held(f->vmi, g, 1, NULL));
        vmt_gfn backing;
        assert_int_equal(vmt_mock_view_backing(f->mock, 1, g, &backing), VMT_OK);
        assert_int_equal(backing, g);
    }
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 0);
}

static void fx_free(fx *f)
{
    free(f->before);
    vmt_core_free(f->vmi);
    free(f);
}

static void test_core(void **state)
{
    (void)state;
    fx *f = fx_new();
    snapshot(f);
    uint8_t buf[16] = {0};
    vmt_pa pa = 77;
    vmt_access a = VMT_ACCESS_NONE;
    vmt_regs r;
    memset(&r, 0, sizeof r);
    assert_int_equal(vmt_core_read(f->vmi, 0, NULL, 1), VMT_E_INVALID);
    assert_int_equal(vmt_core_write(f->vmi, 0, NULL, 1), VMT_E_INVALID);
    assert_int_equal(vmt_core_write(NULL, 0, buf, 1), VMT_E_INVALID);
    assert_int_equal(vmt_core_translate(f->vmi, vmt_ctx(NONCANON, f->root), &pa), VMT_E_INVALID);
    assert_int_equal(vmt_core_translate(f->vmi, vmt_ctx(VA, f->root), NULL), VMT_E_INVALID);
    assert_int_equal(pa, 77);
    assert_int_equal(vmt_core_read_va(f->vmi, vmt_ctx(VA, f->root), buf, SIZE_MAX), VMT_E_INVALID);
    assert_int_equal(vmt_core_get_access(f->vmi, 1, NO_VIEW, &a), VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_core_get_access(f->vmi, 1, 1, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_core_set_access(f->vmi, 1, NO_VIEW, VMT_ACCESS_R, 0),
                     VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_core_set_access(f->vmi, 1, 1, (vmt_access)8, 0), VMT_E_INVALID);
    assert_int_equal(vmt_core_set_access(f->vmi, 1ull << 40, 1, VMT_ACCESS_R, 0),
                     VMT_E_OUT_OF_BOUNDS);
    assert_int_equal(vmt_core_get_regs(f->vmi, 999, &r), VMT_E_INVALID);
    assert_int_equal(vmt_core_set_regs(f->vmi, 0, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_core_change_view_gfn(f->vmi, NO_VIEW, 1, 2), VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_core_switch_view(f->vmi, NO_VIEW), VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_core_destroy_view(f->vmi, NO_VIEW), VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_core_create_view(f->vmi, VMT_ACCESS_R, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_core_wait_for_event(f->vmi, 0, NULL, NULL), VMT_E_INVALID);
    assert_true(vmt_regs_translation_root(NULL, VA) == 0);
    unchanged(f);
    fx_free(f);
}

static void test_ptm(void **state)
{
    (void)state;
    fx *f = fx_new();
    vmt_ptm *ptm;
    assert_int_equal(vmt_ptm_new(&ptm), VMT_OK);
    assert_int_equal(vmt_ptm_new(NULL), VMT_E_INVALID);
    snapshot(f);
    vmt_ptm_events ev = {0};
    vmt_addr_ctx bad[] = {vmt_ctx(NONCANON, f->root), vmt_ctx(VA, f->root | 5),
                          vmt_ctx(VA, f->root | (1ull << 63))};
    for (unsigned i = 0; i < 3; i++) {
        assert_int_equal(vmt_ptm_monitor(ptm, f->vmi, bad[i], 1, 0), VMT_E_INVALID);
        assert_int_equal(vmt_ptm_unmonitor(ptm, f->vmi, bad[i], 1), VMT_E_INVALID);
    }
    vmt_addr_ctx ok = vmt_ctx(VA, f->root);
    assert_int_equal(vmt_ptm_monitor(ptm, f->vmi, ok, NO_VIEW, 0), VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_ptm_monitor(NULL, f->vmi, ok, 1, 0), VMT_E_INVALID);
    assert_int_equal(vmt_ptm_monitor(ptm, NULL, ok, 1, 0), VMT_E_INVALID);
    /* A root outside guest memory: the walk fails, nothing is kept. */
    assert_int_equal(vmt_ptm_monitor(ptm, f->vmi, vmt_ctx(VA, 0xfffffffff000ull), 1, 0),
                     VMT_E_OUT_OF_BOUNDS);
    assert_int_equal(vmt_ptm_unmonitor(ptm, f->vmi, ok, NO_VIEW), VMT_OK);
    assert_int_equal(vmt_ptm_unmonitor_by_force(ptm, f->vmi, ok, NO_VIEW), VMT_OK);
    vmt_ptm_unmonitor_view(ptm, NULL, 1);
    vmt_ptm_unmonitor_view(NULL, f->vmi, 1);
    vmt_ptm_unmonitor_all(ptm, NULL);
    vmt_ptm_unmonitor_all(NULL, f->vmi);
    assert_false(vmt_ptm_mark_dirty_entry(NULL, 0, 1, 0));
    assert_false(vmt_ptm_mark_dirty_entry(ptm, ~0ull, NO_VIEW, 9999));
    assert_int_equal(vmt_ptm_process_dirty_entries(ptm, f->vmi, 0, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_ptm_process_dirty_entries(NULL, f->vmi, 0, &ev), VMT_E_INVALID);
    assert_int_equal(vmt_ptm_process_dirty_entries(ptm, f->vmi, 9999, &ev), VMT_OK);
    assert_int_equal(ev.len, 0);
    vmt_ptm_events_free(NULL);
    assert_int_equal(vmt_ptm_monitored_tables(ptm) + vmt_ptm_monitored_entries(ptm) +
                         vmt_ptm_paged_in_entries(ptm) + vmt_ptm_monitored_tables(NULL),
                     0);
    assert_int_equal(vmt_ptm_check(ptm), VMT_OK);
    unchanged(f);
    vmt_ptm_events_free(&ev);
    vmt_ptm_free(ptm);
    fx_free(f);
}

static void bpm_bad_input(bool memory_ctl)
{
    fx *f = fx_new();
    vmt_tap_controller c;
    assert_int_equal(memory_ctl ? vmt_memory_controller_new(&c)
                                : vmt_breakpoint_controller_new(&c),
                     VMT_OK);
    vmt_bpm *bpm;
    assert_int_equal(vmt_bpm_new(c, &bpm), VMT_OK);
    snapshot(f);
    bool b = true;
    vmt_pa hint = FRAME + 0x10, far = (vmt_pa)(MAX_GFN + 0x100) << 12, huge = 1ull << 52;
    vmt_breakpoint bp = {.ctx = vmt_ctx(VA + 0x10, f->root), .view = NO_VIEW};
    for (int global = 0; global < 2; global++) {
        bp.global = global;
        bp.view = NO_VIEW;
        assert_int_equal(vmt_bpm_insert(bpm, f->vmi, &bp, &b), VMT_E_VIEW_NOT_FOUND);
        assert_int_equal(vmt_bpm_insert_with_hint(bpm, f->vmi, &bp, &hint, &b),
                         VMT_E_VIEW_NOT_FOUND);
        assert_int_equal(vmt_bpm_insert_with_hint(bpm, f->vmi, &bp, NULL, &b),
                         VMT_E_VIEW_NOT_FOUND);
        bp.view = 1;
        bp.ctx.root = f->root | 5;
        assert_int_equal(vmt_bpm_insert(bpm, f->vmi, &bp, &b), VMT_E_INVALID);
        assert_int_equal(vmt_bpm_insert_with_hint(bpm, f->vmi, &bp, &hint, &b), VMT_E_INVALID);
        bp.ctx = vmt_ctx(NONCANON, f->root);
        assert_int_equal(vmt_bpm_insert_with_hint(bpm, f->vmi, &bp, NULL, &b), VMT_E_INVALID);
        bp.ctx = vmt_ctx(VA + 0x10, f->root);
        assert_int_equal(vmt_bpm_insert_with_hint(bpm, f->vmi, &bp, &huge, &b), VMT_E_INVALID);
        /* A frame outside guest memory (and no shadow of ours): refused. */
        assert_int_equal(vmt_bpm_insert_with_hint(bpm, f->vmi, &bp, &far, &b),
                         VMT_E_OUT_OF_BOUNDS);
        assert_true(b);
    }
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    vmt_removal r = VMT_REMOVED_SOME;
    assert_int_equal(vmt_bpm_remove_by_event(bpm, f->vmi, &ev, 0, &r), VMT_OK);
    assert_int_equal(r, VMT_REMOVED_NONE);
    assert_int_equal(vmt_bpm_remove_by_event(bpm, NULL, &ev, 0, &r), VMT_E_INVALID);
    assert_int_equal(vmt_bpm_remove_by_view(bpm, f->vmi, NO_VIEW, &b), VMT_OK);
    assert_false(b);
    assert_int_equal(vmt_bpm_remove(bpm, f->vmi, NULL, &b), VMT_E_INVALID);
    assert_false(vmt_bpm_get_by_event(NULL, &ev, 0, NULL));
    assert_false(vmt_bpm_contains_by_address(NULL, bp.ctx, 0));
    vmt_bpm_stats_get(bpm, NULL);
    vmt_bpm_stats_get(NULL, NULL);
    assert_int_equal(vmt_bpm_handle_ptm_events(bpm, f->vmi, NULL, 1, &b), VMT_E_INVALID);
    bool is = true;
    ev.reason = VMT_EVENT_SOFTWARE_BREAKPOINT;
    ev.u.software_breakpoint.gfn = ~0ull;
    assert_true(vmt_breakpoint_controller_is_breakpoint(f->vmi, &ev, &is) != VMT_OK);
    assert_true(is);
    assert_int_equal(vmt_breakpoint_controller_is_breakpoint(f->vmi, NULL, &is), VMT_E_INVALID);
    /* Coherence: a write to a frame with no shadow, or nowhere. */
    vmt_coherence *coh;
    assert_int_equal(vmt_coherence_new(bpm, &coh), VMT_OK);
    assert_int_equal(vmt_coherence_new(NULL, &coh), VMT_E_INVALID);
    ev.reason = VMT_EVENT_MEMORY_ACCESS;
    ev.has_view = true;
    ev.view = NO_VIEW;
    ev.u.memory_access.access = VMT_ACCESS_W;
    ev.u.memory_access.pa = ~0ull;
    vmt_response resp;
    assert_false(vmt_coherence_on_write(coh, f->vmi, &ev, &resp));
    assert_false(vmt_coherence_track_write(coh, NULL));
    assert_false(vmt_coherence_track_write(NULL, &ev));
    assert_int_equal(vmt_coherence_flush(coh, f->vmi), VMT_OK);
    assert_int_equal(vmt_coherence_flush(coh, NULL), VMT_E_INVALID);
    vmt_trap_owner own;
    assert_int_equal(vmt_coherence_classify(coh, f->vmi, &ev, &own), VMT_E_INVALID);
    assert_int_equal(vmt_coherence_pending(coh), 0);
    vmt_coherence_free(coh);
    assert_int_equal(vmt_bpm_check(bpm), VMT_OK);
    vmt_bpm_stats s;
    vmt_bpm_stats_get(bpm, &s);
    assert_int_equal(s.active + s.pending + s.pages + s.global, 0);
    unchanged(f);
    vmt_bpm_free(bpm);
    fx_free(f);
}

static void test_bpm_breakpoint_controller(void **state)
{
    (void)state;
    bpm_bad_input(false);
}

static void test_bpm_memory_controller(void **state)
{
    (void)state;
    bpm_bad_input(true);
}

static void test_tracer(void **state)
{
    (void)state;
    fx *f = fx_new();
    vmt_tracer *t = NULL;
    assert_int_equal(vmt_tracer_new(NULL, NULL, &t), VMT_E_INVALID);
    assert_int_equal(vmt_tracer_new(f->vmi, NULL, NULL), VMT_E_INVALID);
    assert_null(t);
    assert_int_equal(vmt_tracer_new(f->vmi, NULL, &t), VMT_OK);
    vmt_tracer_bp_id id = 12345;
    assert_int_equal(vmt_tracer_add(t, vmt_ctx(VA, f->root | 5), NULL, &id), VMT_E_INVALID);
    assert_int_equal(vmt_tracer_add(t, vmt_ctx(NONCANON, f->root), NULL, &id), VMT_E_INVALID);
    assert_int_equal(vmt_tracer_add(NULL, vmt_ctx(VA, f->root), NULL, &id), VMT_E_INVALID);
    assert_int_equal(id, 12345);
    assert_int_equal(vmt_tracer_add_symbol(t, NULL, f->root, NULL, &id), VMT_E_INVALID);
    assert_int_equal(vmt_tracer_load_symbols(t, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_tracer_load_symbols(t, "/nonexistent/guest.elf"), VMT_E_INVALID);
    assert_int_equal(vmt_tracer_remove(t, 12345), VMT_E_INVALID);
    vmt_tracer_bp_info info;
    assert_int_equal(vmt_tracer_bp_get(t, 12345, &info), VMT_E_INVALID);
    assert_int_equal(vmt_tracer_bp_count(t), 0);
    assert_int_equal(vmt_tracer_bp_count(NULL), 0);
    vmt_tracer_stats_get(t, NULL);
    vmt_tracer_stop(NULL);
    assert_non_null(vmt_tracer_stop_reason_str((vmt_tracer_stop_reason)99));
    assert_non_null(vmt_tracer_controller_name((vmt_tracer_controller)99));
    vmt_tracer_free(t);
    vmt_tracer_free(NULL);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_core),
        cmocka_unit_test(test_ptm),
        cmocka_unit_test(test_bpm_breakpoint_controller),
        cmocka_unit_test(test_bpm_memory_controller),
        cmocka_unit_test(test_tracer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
