/* End to end: the breakpoint manager with the breakpoint controller on the
 * bundled guest under the KVM driver, wired by hand (no page-table
 * monitor yet, so only kernel functions, which never move: the kernel is
 * one 2 MiB page). The event loop is the one a tracer runs: a hit is
 * stepped over in view 0 while the vCPU stays in the breakpoints' view; a
 * read of a breakpoint page is served from view 0 (stealth, with emulated
 * execute-only); the guest's own int3 is reinjected. Checks: hits equal the
 * guest's call counters, the guest's self-check sees unchanged code, and
 * after vmt_bpm_clear guest memory is byte for byte the ELF's code. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "e2e_util.h"
#include "guest/abi.h"
#include "vmitap/vmitap.h"

static const char *const kernel_fns[] = {"schedule", "syscall_dispatch", "pager_page_in"};
#define NFN (sizeof kernel_fns / sizeof kernel_fns[0])

static uint64_t guest_sym(const char *name)
{
    return e2e_elf_sym(vmt_kvm_default_guest(), name);
}

static uint64_t counter(const vmt_guest_stats *s, const char *name)
{
    for (uint32_t i = 0; i < s->ncounters && i < VMT_GUEST_MAX_COUNTERS; i++)
        if (!strcmp(s->counters[i].name, name))
            return s->counters[i].calls;
    fail_msg("no counter %s", name);
    return 0;
}

typedef struct loop {
    vmt_core *core;
    vmt_bpm *bpm;
    uint64_t hits[NFN];
    uint64_t foreign_int3, stealthy_reads, other;
} loop;

static vmt_status on_event(void *user, const vmt_event *ev, vmt_response *resp)
{
    loop *l = user;
    vmt_breakpoint bp;
    resp->action = VMT_ACTION_CONTINUE;
    if (ev->reason == VMT_EVENT_SOFTWARE_BREAKPOINT) {
        if (vmt_bpm_get_by_event(l->bpm, ev, 0, &bp)) {
            l->hits[bp.tag]++;
            resp->action = VMT_ACTION_FAST_SINGLESTEP; /* step over in the default view */
            resp->view = 0;
        } else {
            l->foreign_int3++;
            resp->action = VMT_ACTION_REINJECT;
        }
    } else if (ev->reason == VMT_EVENT_MEMORY_ACCESS && ev->u.memory_access.access == VMT_ACCESS_R) {
        l->stealthy_reads++;
        resp->action = VMT_ACTION_FAST_SINGLESTEP; /* the read sees the original bytes */
        resp->view = 0;
    } else {
        l->other++;
    }
    return VMT_OK;
}

static void test_kernel_breakpoints(void **state)
{
    (void)state;
    vmt_kvm_opts o = {.sz = sizeof o, .iterations = 12, .seed = 7, .pager = 20,
                      .guest_flags = VMT_GUEST_F_KERNEL_INT3, .flags = VMT_KVM_F_EMULATE_EXECUTE_ONLY};
    loop l = {0};
    vmt_kvm *kvm;
    assert_int_equal(vmt_kvm_core_new(&o, &l.core, &kvm), VMT_OK);
    vmt_tap_controller ctl;
    assert_int_equal(vmt_breakpoint_controller_new(&ctl), VMT_OK);
    assert_int_equal(vmt_bpm_new(ctl, &l.bpm), VMT_OK);
    vmt_view view;
    assert_int_equal(vmt_core_create_view(l.core, VMT_ACCESS_RWX, &view), VMT_OK);

    /* the kernel's code as loaded, to compare after the run */
    uint8_t before[NFN][64];
    vmt_pa pa[NFN];
    for (size_t i = 0; i < NFN; i++) {
        /* the VMM's boot tables map the kernel; any root works for a global */
        vmt_breakpoint bp = {.ctx = vmt_ctx(guest_sym(kernel_fns[i]), VMT_GUEST_BOOT_PML4_PA), .view = view,
                             .global = true, .tag = i};
        bool inserted;
        assert_int_equal(vmt_bpm_insert(l.bpm, l.core, &bp, &inserted), VMT_OK);
        assert_true(inserted);
        assert_int_equal(vmt_core_translate(l.core, bp.ctx, &pa[i]), VMT_OK);
        assert_int_equal(vmt_core_read(l.core, pa[i], before[i], sizeof before[i]), VMT_OK);
        assert_int_equal(before[i][0] == 0xcc, false); /* raw reads see no trap byte */
    }
    assert_int_equal(vmt_core_switch_view(l.core, view), VMT_OK);

    vmt_status st;
    /* Execute-only frames are run one instruction at a time, the boot's
     * BSS clearing (a rep stosb in the breakpointed frame) too: in the
     * test bed under ASan that is over 10 s without an event. So the bound
     * is on the whole run, not on the gap between two events. */
    time_t until = time(NULL) + 600;
    while ((st = vmt_core_wait_for_event(l.core, 10000, on_event, &l)) == VMT_OK ||
           (st == VMT_E_TIMEOUT && time(NULL) < until))
        ;
    assert_int_equal(st, VMT_E_GUEST_EXITED);
    const vmt_guest_stats *s = vmt_kvm_guest_stats(kvm);
    fprintf(stderr, "hits %s=%llu %s=%llu %s=%llu, guest int3 reinjected %llu, stealthy reads %llu\n",
            kernel_fns[0], (unsigned long long)l.hits[0], kernel_fns[1], (unsigned long long)l.hits[1],
            kernel_fns[2], (unsigned long long)l.hits[2], (unsigned long long)l.foreign_int3,
            (unsigned long long)l.stealthy_reads);
    assert_int_equal(vmt_kvm_exit_code(kvm), 0); /* incl. its self-check: the code read unchanged */
    assert_int_equal(s->selfcheck_mismatches, 0);
    assert_true(s->selfcheck_runs > 0);
    for (size_t i = 0; i < NFN; i++) {
        assert_true(l.hits[i] > 0);
        assert_int_equal(l.hits[i], counter(s, kernel_fns[i]));
    }
    assert_int_equal(l.foreign_int3, s->breakpoints); /* the guest's own, all reinjected */
    assert_true(l.stealthy_reads > 0);                /* the self-check read breakpoint pages */
    assert_int_equal(l.other, 0);

    assert_int_equal(vmt_bpm_clear(l.bpm, l.core), VMT_OK);
    assert_int_equal(vmt_bpm_check(l.bpm), VMT_OK);
    for (size_t i = 0; i < NFN; i++) {
        uint8_t after[64];
        assert_int_equal(vmt_core_read(l.core, pa[i], after, sizeof after), VMT_OK);
        assert_memory_equal(after, before[i], sizeof after);
    }
    vmt_bpm_free(l.bpm);
    vmt_core_free(l.core);
}

/* Per-process breakpoints on user code (prog_work_a, private frames in
 * every process), inserted while the guest runs, at one of its own int3s
 * (then no instrumented function is between its entry and its counter
 * bump). The pager is off: without the page-table monitor the code must
 * not move. */
typedef struct user_loop {
    vmt_core *core;
    vmt_kvm *kvm;
    vmt_bpm *bpm;
    vmt_view view;
    bool armed;
    uint64_t base[VMT_GUEST_NPROCS], hits[VMT_GUEST_NPROCS];
    uint64_t foreign, reads, other, wrong_cpl;
} user_loop;

static void arm_user(user_loop *u)
{
    const vmt_guest_stats *s = vmt_kvm_guest_stats(u->kvm);
    for (unsigned p = 0; p < VMT_GUEST_NPROCS; p++) {
        vmt_breakpoint bp = {.ctx = vmt_ctx(guest_sym("prog_work_a"), s->proc_cr3[p]), .view = u->view, .tag = p};
        bool inserted;
        assert_int_equal(vmt_bpm_insert(u->bpm, u->core, &bp, &inserted), VMT_OK);
        char name[32];
        snprintf(name, sizeof name, "prog_work_a@%u", p);
        u->base[p] = counter(s, name);
    }
    vmt_bpm_stats st;
    vmt_bpm_stats_get(u->bpm, &st);
    assert_int_equal(st.active, VMT_GUEST_NPROCS); /* all present: none pending */
    assert_int_equal(st.pages, VMT_GUEST_NPROCS);
    u->armed = true;
}

static vmt_status on_user_event(void *user, const vmt_event *ev, vmt_response *resp)
{
    user_loop *u = user;
    vmt_breakpoint bp;
    resp->action = VMT_ACTION_CONTINUE;
    if (ev->reason == VMT_EVENT_SOFTWARE_BREAKPOINT && vmt_bpm_get_by_event(u->bpm, ev, 0, &bp)) {
        u->hits[bp.tag]++;
        u->wrong_cpl += (ev->regs.cs & 3) != 3;
        resp->action = VMT_ACTION_FAST_SINGLESTEP;
        resp->view = 0;
    } else if (ev->reason == VMT_EVENT_SOFTWARE_BREAKPOINT) {
        u->foreign++;
        resp->action = VMT_ACTION_REINJECT;
        if (!u->armed && vmt_kvm_guest_stats(u->kvm)->rounds >= 2) {
            arm_user(u);
            resp->set_view = true; /* from now on the vCPU runs in the breakpoints' view */
            resp->view = u->view;
        }
    } else if (ev->reason == VMT_EVENT_MEMORY_ACCESS && ev->u.memory_access.access == VMT_ACCESS_R) {
        u->reads++;
        resp->action = VMT_ACTION_FAST_SINGLESTEP;
        resp->view = 0;
    } else {
        u->other++;
    }
    return VMT_OK;
}

static void test_user_breakpoints(void **state)
{
    (void)state;
    vmt_kvm_opts o = {.sz = sizeof o, .iterations = 40, .seed = 11, .pager = 0,
                      .flags = VMT_KVM_F_EMULATE_EXECUTE_ONLY};
    user_loop u = {0};
    assert_int_equal(vmt_kvm_core_new(&o, &u.core, &u.kvm), VMT_OK);
    vmt_tap_controller ctl;
    assert_int_equal(vmt_breakpoint_controller_new(&ctl), VMT_OK);
    assert_int_equal(vmt_bpm_new(ctl, &u.bpm), VMT_OK);
    assert_int_equal(vmt_core_create_view(u.core, VMT_ACCESS_RWX, &u.view), VMT_OK);
    vmt_status st;
    while ((st = vmt_core_wait_for_event(u.core, 10000, on_user_event, &u)) == VMT_OK)
        ;
    assert_int_equal(st, VMT_E_GUEST_EXITED);
    const vmt_guest_stats *s = vmt_kvm_guest_stats(u.kvm);
    assert_true(u.armed);
    assert_int_equal(vmt_kvm_exit_code(u.kvm), 0);
    assert_int_equal(s->selfcheck_mismatches, 0);
    for (unsigned p = 0; p < VMT_GUEST_NPROCS; p++) {
        char name[32];
        snprintf(name, sizeof name, "prog_work_a@%u", p);
        fprintf(stderr, "%s: %llu hits, %llu calls since armed\n", name, (unsigned long long)u.hits[p],
                (unsigned long long)(counter(s, name) - u.base[p]));
        assert_true(u.hits[p] > 0);
        assert_int_equal(u.hits[p], counter(s, name) - u.base[p]);
    }
    assert_int_equal(u.wrong_cpl, 0);
    assert_int_equal(u.foreign, s->breakpoints);
    assert_int_equal(u.other, 0);
    assert_int_equal(vmt_bpm_clear(u.bpm, u.core), VMT_OK);
    assert_int_equal(vmt_bpm_check(u.bpm), VMT_OK);
    vmt_bpm_free(u.bpm);
    vmt_core_free(u.core);
}

int main(void)
{
    if (!e2e_kvm_setup("test_kvm_bpm"))
        return 77;
    /* Every test runs the bundled guest: without it none can run, and the
     * program says so with 77 (CTest: skipped; cmocka's skip() would count
     * as passed). */
    if (access(vmt_kvm_default_guest(), R_OK) != 0) {
        fprintf(stderr, "test_kvm_bpm: skipped: bundled guest %s not built\n",
                vmt_kvm_default_guest());
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernel_breakpoints),
        cmocka_unit_test(test_user_breakpoints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
