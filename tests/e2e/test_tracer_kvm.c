// SPDX-License-Identifier: MIT
/* The tracer end to end on the KVM micro-VM and the bundled test guest:
 * hits equal the guest's own call counters (kernel and user functions,
 * global and per process), breakpoints go pending on page-out and come
 * back on page-in (also into another frame), guest reads of breakpointed
 * code see the original bytes with the stealthy controller, the guest's
 * own int3 reach its handler, and detach leaves the guest intact.
 *
 * Exits 77 (skipped) when /dev/kvm cannot be opened. */
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

#include "e2e_util.h"
#include "guest/abi.h"
#include "tracer/symbols.h"
#include "vmitap/kvm.h"
#include "vmitap/tracer.h"

typedef e2e_session session;

static uint64_t iterations(void)
{
    return getenv("VMT_UNDER_VALGRIND") ? 20 : 150;
}

static void start_kvm(session *s, vmt_tracer_controller ctl, uint32_t pager, uint64_t seed,
                      uint32_t flags, uint32_t kvm_flags)
{
    VMT_OPTS(vmt_kvm_opts, ko, .iterations = iterations(), .seed = seed, .pager = pager,
             .guest_flags = flags, .flags = kvm_flags);
    print_message("guest: iterations %" PRIu64 ", pager %u, seed %" PRIu64 ", controller %s\n",
                  ko.iterations, pager, seed, vmt_tracer_controller_name(ctl));
    e2e_start(s, &ko, ctl, E2E_MAX_BPS);
}

static void start_flags(session *s, vmt_tracer_controller ctl, uint32_t pager, uint64_t seed,
                        uint32_t flags)
{
    start_kvm(s, ctl, pager, seed, flags, 0);
}

static void start(session *s, vmt_tracer_controller ctl, uint32_t pager, uint64_t seed)
{
    start_flags(s, ctl, pager, seed, 0);
}

/* Runs until the guest has published its process table: a kernel
 * breakpoint on sched_start, which starts the first process. */
static void wait_for_processes(session *s)
{
    VMT_OPTS(vmt_tracer_bp_opts, bo, .global = true);
    vmt_tracer_bp_id id;
    assert_int_equal(
        vmt_tracer_add(s->t, vmt_ctx(e2e_sym_addr(s, "sched_start"), s->boot_root), &bo, &id), VMT_OK);
    VMT_OPTS(vmt_tracer_run_opts, ro, .max_hits = 1);
    for (int i = 0; e2e_gstats(s)->magic != VMT_GUEST_STATS_MAGIC || e2e_gstats(s)->nprocs == 0; i++) {
        assert_true(i < 1000);
        vmt_tracer_stop_reason why;
        assert_int_equal(vmt_tracer_run(s->t, &ro, &why), VMT_OK);
        assert_int_equal(why, VMT_TRACER_STOP_HITS);
    }
    assert_int_equal(vmt_tracer_remove(s->t, id), VMT_OK);
    assert_true(e2e_gstats(s)->nprocs >= 2);
}

static void run_to_end(session *s)
{
    e2e_run_to_end(s);
    print_message("guest exit code %u after %" PRIu64 " rounds\n", vmt_kvm_exit_code(s->kvm),
                  e2e_gstats(s)->rounds);
}

/* Every breakpoint's hits equal the guest's counter; returns the sums of
 * page-outs / page-ins / relocations seen. */
static void check_counts(session *s, uint64_t *outs, uint64_t *ins, uint64_t *moves)
{
    *outs = *ins = *moves = 0;
    for (unsigned i = 0; i < s->nbps; i++) {
        VMT_OPTS(vmt_tracer_bp_info, bi);
        assert_int_equal(vmt_tracer_bp_get(s->t, s->bps[i].id, &bi), VMT_OK);
        uint64_t want = e2e_counter(s, s->bps[i].symbol, s->bps[i].proc);
        print_message("  %-20s proc %2d hits %6" PRIu64 " guest %6" PRIu64 " out %3" PRIu64
                      " in %3" PRIu64 " moved %3" PRIu64 "\n",
                      s->bps[i].symbol, s->bps[i].proc, bi.hits, want, bi.page_outs, bi.page_ins,
                      bi.relocations);
        assert_true(want > 0);
        assert_int_equal(bi.hits, want);
        *outs += bi.page_outs;
        *ins += bi.page_ins;
        *moves += bi.relocations;
    }
}

/* The memory controller (stealthy on every driver) on per-process user
 * code, with the pager moving it around: every count exact, breakpoints
 * survive page-out, page-in and relocation, and the guest's self-check of
 * its code sees no change. (Kernel functions share one hot page; the
 * memory controller makes every fetch there trap, so they are left to the
 * int3 test below.) */
static void test_memory_controller_counts_paging_stealth(void **state)
{
    (void)state;
    session s;
    start(&s, VMT_TRACER_CONTROLLER_MEMORY, 60, 7);
    assert_true(vmt_tracer_is_stealthy(s.t));
    wait_for_processes(&s);
    e2e_add(&s, "prog_work_a", 0);
    e2e_add(&s, "prog_work_a", 1);
    e2e_add(&s, "prog_work_b", 1);
    e2e_add(&s, "prog_work_c", 2);
    run_to_end(&s);
    uint64_t outs, ins, moves;
    check_counts(&s, &outs, &ins, &moves);
    const vmt_guest_stats *g = e2e_gstats(&s);
    print_message("guest: page-outs %" PRIu64 " page-ins %" PRIu64 " relocations %" PRIu64
                  " self-check runs %" PRIu64 " mismatches %" PRIu64 "\n",
                  g->page_outs, g->page_ins, g->relocations, g->selfcheck_runs,
                  g->selfcheck_mismatches);
    assert_true(outs > 0);  /* breakpoints went pending ... */
    assert_true(ins > 0);   /* ... and came back */
    assert_true(moves > 0); /* ... some into another frame */
    assert_true(g->selfcheck_runs > 0);
    assert_int_equal(g->selfcheck_mismatches, 0);
    assert_int_equal(vmt_kvm_exit_code(s.kvm), VMT_GUEST_EXIT_OK);
    e2e_finish(&s);
}

/* The int3 controller: kernel functions, the shared library page (one
 * global breakpoint) and per-process code, counts exact, through paging.
 * On a driver without execute-only pages the guest's reads may see the
 * trap bytes, so the self-check is asserted only where it is stealthy. */
static void test_int3_controller_counts(void **state)
{
    (void)state;
    session s;
    start(&s, VMT_TRACER_CONTROLLER_INT3, 60, 3);
    e2e_add(&s, "schedule", -1); /* kernel: from boot, so every call is counted */
    e2e_add(&s, "syscall_dispatch", -1);
    e2e_add(&s, "pager_page_in", -1);
    wait_for_processes(&s); /* user code has not run yet */
    e2e_add(&s, "lib_getpid", -1);
    e2e_add(&s, "lib_yield", -1);
    e2e_add(&s, "prog_main", 0);
    e2e_add(&s, "prog_work_a", 1);
    e2e_add(&s, "prog_work_b", 2);
    run_to_end(&s);
    uint64_t outs, ins, moves;
    check_counts(&s, &outs, &ins, &moves);
    assert_true(outs > 0);
    assert_true(ins > 0);
    print_message("int3 controller: stealthy %d, guest self-check mismatches %" PRIu64
                  ", relocations seen %" PRIu64 "\n",
                  vmt_tracer_is_stealthy(s.t), e2e_gstats(&s)->selfcheck_mismatches, moves);
    if (vmt_tracer_is_stealthy(s.t))
        assert_int_equal(e2e_gstats(&s)->selfcheck_mismatches, 0);
    e2e_finish(&s);
}

/* The guest's own int3 (kernel and user) reach its handler while our
 * breakpoints sit on the same code paths. */
static void test_guest_int3_reinjected(void **state)
{
    (void)state;
    session s;
    start_flags(&s, VMT_TRACER_CONTROLLER_INT3, 0, 1, VMT_GUEST_F_KERNEL_INT3);
    e2e_add(&s, "kernel_int3_probe", -1);
    wait_for_processes(&s);
    e2e_add(&s, "lib_int3", -1);
    run_to_end(&s);
    uint64_t outs, ins, moves;
    check_counts(&s, &outs, &ins, &moves);
    VMT_OPTS(vmt_tracer_stats, st);
    vmt_tracer_stats_get(s.t, &st);
    print_message("guest breakpoints %" PRIu64 ", reinjected %" PRIu64 "\n", e2e_gstats(&s)->breakpoints,
                  st.reinjected);
    assert_true(e2e_gstats(&s)->breakpoints > 0);
    assert_int_equal(st.reinjected, e2e_gstats(&s)->breakpoints);
    /* No #BP it did not expect; a non-stealthy int3 in its user code does
     * show in its self-check, which is all it may complain about. */
    uint32_t code = vmt_kvm_exit_code(s.kvm);
    if (code != VMT_GUEST_EXIT_OK)
        assert_true(!vmt_tracer_is_stealthy(s.t) && code == VMT_GUEST_EXIT_SELFCHECK);
    e2e_finish(&s);
}

/* The bytes of every kernel function, read through the boot root. */
static GByteArray *kernel_text(session *s)
{
    GByteArray *b = g_byte_array_new();
    for (size_t i = 0; i < vmt_symtab_count(s->syms); i++) {
        const vmt_symbol *sym = vmt_symtab_at(s->syms, i);
        if (sym->addr >> 47 == 0 || sym->size == 0 || sym->size > 65536)
            continue;
        uint8_t buf[65536];
        assert_int_equal(vmt_core_read_va(s->vmi, vmt_ctx(sym->addr, s->boot_root), buf, sym->size),
                         VMT_OK);
        g_byte_array_append(b, buf, (guint)sym->size);
    }
    return b;
}

/* Detach in the middle of a run: kernel code is byte for byte what it was
 * before tracing, no view is left, and the guest then finishes on its own
 * (with its self-checks passing when the controller is stealthy). */
static void detach_mid_run(vmt_tracer_controller ctl, bool user)
{
    session s;
    start(&s, ctl, 50, 11);
    GByteArray *before = kernel_text(&s);
    assert_true(before->len > 0);
    bool memory = ctl == VMT_TRACER_CONTROLLER_MEMORY;
    if (!memory || !user) { /* memory: kernel code is one hot page, keep it short */
        e2e_add(&s, "schedule", -1);
        e2e_add(&s, "syscall_dispatch", -1);
    }
    if (user) {
        wait_for_processes(&s);
        e2e_add(&s, "prog_work_a", 1);
        e2e_add(&s, "prog_work_c", 2);
        if (!memory)
            e2e_add(&s, "lib_getpid", -1);
    }
    VMT_OPTS(vmt_tracer_run_opts, ro, .max_hits = memory && !user ? 10 : 100);
    vmt_tracer_stop_reason why;
    assert_int_equal(vmt_tracer_run(s.t, &ro, &why), VMT_OK);
    assert_int_equal(why, VMT_TRACER_STOP_HITS);
    vmt_view view = vmt_tracer_view(s.t);
    bool stealthy = vmt_tracer_is_stealthy(s.t);
    assert_int_equal(vmt_tracer_detach(s.t), VMT_OK);
    assert_int_equal(vmt_core_destroy_view(s.vmi, view), VMT_E_VIEW_NOT_FOUND);
    GByteArray *after = kernel_text(&s);
    assert_int_equal(after->len, before->len);
    assert_memory_equal(after->data, before->data, before->len);
    g_byte_array_free(before, TRUE);
    g_byte_array_free(after, TRUE);
    vmt_status st = vmt_kvm_run(s.kvm, 120000);
    if (st != VMT_OK && st != VMT_E_GUEST_EXITED)
        fail_msg("guest after detach: %s (%s)", vmt_status_str(st), vmt_kvm_crash_reason(s.kvm));
    assert_int_equal(vmt_kvm_get_state(s.kvm), VMT_KVM_EXITED);
    print_message("after detach: guest exit code %u, self-check mismatches %" PRIu64 "\n",
                  vmt_kvm_exit_code(s.kvm), e2e_gstats(&s)->selfcheck_mismatches);
    if (stealthy) {
        assert_int_equal(vmt_kvm_exit_code(s.kvm), VMT_GUEST_EXIT_OK);
        assert_int_equal(e2e_gstats(&s)->selfcheck_mismatches, 0);
    }
    e2e_finish(&s);
}

static void test_detach_memory_controller(void **state)
{
    (void)state;
    detach_mid_run(VMT_TRACER_CONTROLLER_MEMORY, true);
}

static void test_detach_int3_controller(void **state)
{
    (void)state;
    detach_mid_run(VMT_TRACER_CONTROLLER_INT3, true);
}

/* ---- kernel code only (no single-step at CPL 3 needed) ---- */

static void test_kernel_detach_memory_controller(void **state)
{
    (void)state;
    detach_mid_run(VMT_TRACER_CONTROLLER_MEMORY, false);
}

static void test_kernel_detach_int3_controller(void **state)
{
    (void)state;
    detach_mid_run(VMT_TRACER_CONTROLLER_INT3, false);
}

/* Kernel functions from boot with the int3 controller: exact counts while
 * the guest pages user code and switches address spaces. */
static void test_kernel_int3_counts(void **state)
{
    (void)state;
    session s;
    start(&s, VMT_TRACER_CONTROLLER_INT3, 60, 5);
    e2e_add(&s, "schedule", -1);
    e2e_add(&s, "syscall_dispatch", -1);
    e2e_add(&s, "pager_page_in", -1);
    e2e_add(&s, "pager_page_out", -1);
    e2e_add(&s, "selfcheck_run", -1);
    run_to_end(&s);
    uint64_t outs, ins, moves;
    check_counts(&s, &outs, &ins, &moves);
    assert_true(e2e_gstats(&s)->page_outs > 0);
    assert_int_equal(vmt_kvm_exit_code(s.kvm), VMT_GUEST_EXIT_OK);
    e2e_finish(&s);
}

/* Stealth with the int3 controller: on KVM only when the driver emulates
 * execute-only pages (VMT_KVM_F_EMULATE_EXECUTE_ONLY). The breakpoint is
 * set mid-run, after the guest's self-check recorded its code: the guest's
 * reads of the breakpointed kernel page are then served with the original
 * bytes (the tracer's stealth-read path) and its self-check sees no change.
 * (pager_page_in's page is read by self-check code in another page; an
 * instruction reading its own execute-only page would read natively.) */
static void test_kernel_int3_execute_only_stealth(void **state)
{
    (void)state;
    session s;
    start_kvm(&s, VMT_TRACER_CONTROLLER_INT3, 30, 13, 0, VMT_KVM_F_EMULATE_EXECUTE_ONLY);
    assert_true(vmt_tracer_is_stealthy(s.t));
    /* Let the guest boot and run untraced for a while first. */
    vmt_tracer_free(s.t);
    s.t = NULL;
    for (int i = 0; e2e_gstats(&s)->magic != VMT_GUEST_STATS_MAGIC || e2e_gstats(&s)->rounds < 5; i++) {
        assert_true(i < 2000);
        vmt_status st = vmt_kvm_run(s.kvm, 20);
        if (st != VMT_OK && st != VMT_E_TIMEOUT)
            fail_msg("untraced run: %s", vmt_status_str(st));
        assert_int_equal(vmt_kvm_get_state(s.kvm), VMT_KVM_RUNNING);
    }
    VMT_OPTS(vmt_tracer_opts, to, .controller = VMT_TRACER_CONTROLLER_INT3);
    assert_int_equal(vmt_tracer_new(s.vmi, &to, &s.t), VMT_OK);
    const vmt_guest_counter *c = vmt_guest_counter_find(e2e_gstats(&s), "pager_page_in");
    assert_non_null(c);
    uint64_t before = c->calls, runs_before = e2e_gstats(&s)->selfcheck_runs;
    e2e_add(&s, "pager_page_in", -1);
    run_to_end(&s);
    VMT_OPTS(vmt_tracer_bp_info, bi);
    assert_int_equal(vmt_tracer_bp_get(s.t, s.bps[0].id, &bi), VMT_OK);
    VMT_OPTS(vmt_tracer_stats, ts);
    vmt_tracer_stats_get(s.t, &ts);
    print_message("pager_page_in: hits %" PRIu64 ", guest calls since attach %" PRIu64
                  "; stealth reads served %" PRIu64 ", self-check runs while traced %" PRIu64
                  ", mismatches %" PRIu64 "\n",
                  bi.hits, c->calls - before, ts.stealth_reads,
                  e2e_gstats(&s)->selfcheck_runs - runs_before, e2e_gstats(&s)->selfcheck_mismatches);
    assert_true(bi.hits > 0);
    assert_int_equal(bi.hits, c->calls - before);
    assert_true(e2e_gstats(&s)->selfcheck_runs > runs_before);
    assert_true(ts.stealth_reads > 0);
    assert_int_equal(e2e_gstats(&s)->selfcheck_mismatches, 0);
    assert_int_equal(vmt_kvm_exit_code(s.kvm), VMT_GUEST_EXIT_OK);
    e2e_finish(&s);
}

/* Every int3 of the guest's own (at CPL 3 in lib_int3, at CPL 0 in
 * kernel_int3_probe) is handed back to it: the tracer's reinjection count
 * equals the #BPs the guest's handler saw, and the guest saw none it did
 * not expect. */
static void test_kernel_guest_int3_reinjected(void **state)
{
    (void)state;
    session s;
    start_flags(&s, VMT_TRACER_CONTROLLER_INT3, 20, 9, VMT_GUEST_F_KERNEL_INT3);
    e2e_add(&s, "kernel_int3_probe", -1);
    e2e_add(&s, "schedule", -1);
    run_to_end(&s);
    uint64_t outs, ins, moves;
    check_counts(&s, &outs, &ins, &moves);
    VMT_OPTS(vmt_tracer_stats, st);
    vmt_tracer_stats_get(s.t, &st);
    print_message("guest breakpoints %" PRIu64 ", reinjected %" PRIu64 "\n",
                  e2e_gstats(&s)->breakpoints, st.reinjected);
    assert_true(st.reinjected > 0);
    assert_int_equal(st.reinjected, e2e_gstats(&s)->breakpoints);
    assert_int_equal(vmt_kvm_exit_code(s.kvm), VMT_GUEST_EXIT_OK);
    e2e_finish(&s);
}

int main(void)
{
    char why[256];
    if (!vmt_kvm_available(why, sizeof why)) {
        fprintf(stderr, "test_tracer_kvm: skipped: %s\n", why);
        return 77;
    }
    if (getenv("VMT_TEST_FILTER")) /* e.g. VMT_TEST_FILTER='*int3*' */
        cmocka_set_test_filter(getenv("VMT_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_int3_counts),
        cmocka_unit_test(test_kernel_guest_int3_reinjected),
        cmocka_unit_test(test_kernel_int3_execute_only_stealth),
        cmocka_unit_test(test_kernel_detach_int3_controller),
        cmocka_unit_test(test_kernel_detach_memory_controller),
        cmocka_unit_test(test_int3_controller_counts),
        cmocka_unit_test(test_guest_int3_reinjected),
        cmocka_unit_test(test_detach_int3_controller),
        /* the memory controller on user code: single-steps at CPL 3 */
        cmocka_unit_test(test_memory_controller_counts_paging_stealth),
        cmocka_unit_test(test_detach_memory_controller),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
