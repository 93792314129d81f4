// SPDX-License-Identifier: MIT
/* End-to-end: Debian's stock x86-64 kernel on the KVM micro-VM, traced.
 *
 * One traced session (src/linux/linux_session.h) boots the kernel and the
 * busybox initramfs that scripts/fetch-linux.sh prepares (it is run here
 * first; it does nothing when its cache is complete), attaches a tracer
 * when the init script waits for its go line, and then checks:
 *   - the guest boots, runs the workload and powers off (keyboard-
 *     controller reset after its done marker) within the time bound;
 *   - do_sys_openat2, a global kernel breakpoint from the kernel's own
 *     symbols, fires exactly 2N times on the workload's files (see below)
 *     and at least that often overall;
 *   - a user-space breakpoint at busybox's entry point, inserted pending in
 *     the probe process before the process had any memory, fires once, in
 *     that process, at CPL 3;
 *   - after the tracer detaches (right after that hit), the guest runs on
 *     to its done marker and the power-off.
 *
 * Skips (exit 77, with the reason on stderr) when /dev/kvm cannot be
 * opened, or when apt cannot download the kernel package (no network).
 * Where the host's KVM runs the guest's kernel mode in its instruction
 * emulator (kvm_pvm, vmt_kvm_emulates_kernel_mode; the project's own
 * machines) the session takes minutes instead of seconds (docs/linux.md);
 * the time bound says how many. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "e2e_util.h"
#include "linux/linux_session.h"

#ifndef VMT_FETCH_LINUX
#define VMT_FETCH_LINUX "scripts/fetch-linux.sh"
#endif
#ifndef VMT_LINUX_DIR
#define VMT_LINUX_DIR "linux-guest"
#endif

/* Time bound for the whole session. On hardware virtualization the boot
 * takes seconds; where the host emulates the guest's kernel mode
 * (vmt_kvm_emulates_kernel_mode) it takes minutes. */
#define TIMEOUT_FAST_MS (120 * 1000)
#define TIMEOUT_EMULATED_MS (25 * 60 * 1000)

static const char *dir;
static unsigned nfiles;
static uint64_t busybox_entry;
static lx_result res;
static vmt_status run_status;

static uint64_t elf_entry(const char *path)
{
    uint8_t h[32] = {0};
    FILE *f = fopen(path, "rb");
    if (f) {
        if (fread(h, 1, sizeof h, f) != sizeof h)
            memset(h, 0, sizeof h);
        fclose(f);
    }
    uint64_t e;
    memcpy(&e, h + 24, 8);
    return e;
}

static int setup(void **state)
{
    (void)state;
    lx_opts o = {
        .dir = dir,
        .kfuncs = {"do_sys_openat2"},
        .nkfuncs = 1,
        .trace = true,
        .user_probe = true,
        .detach_after_probe = true,
        .controller = VMT_TRACER_CONTROLLER_INT3,
        .timeout_ms = vmt_kvm_emulates_kernel_mode() ? TIMEOUT_EMULATED_MS : TIMEOUT_FAST_MS,
    };
    run_status = lx_run(&o, &res);
    fprintf(stderr, "linux session: %s, boot %.1f s, workload %.1f s, total %.1f s, state %d %s\n",
            vmt_status_str(run_status), res.boot_s, res.workload_s, res.total_s, (int)res.state, res.crash);
    if (getenv("VMT_LINUX_CONSOLE") && res.console)
        fprintf(stderr, "%s\n", res.console);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(res.console);
    return 0;
}

static void boots_and_powers_off(void **state)
{
    (void)state;
    assert_int_equal(run_status, VMT_OK);
    assert_true(res.reached_init);
    assert_true(res.workload_done);
    assert_int_equal(res.state, VMT_KVM_EXITED);
    assert_non_null(strstr(res.console, "Linux version"));
    assert_null(strstr(res.console, "Kernel panic"));
}

/* The init script creates N files (one open each, by the shell's
 * redirection) and reads each back with cat (one more open each): exactly
 * 2N opens of paths starting with /vmt/f, all before the probe runs and
 * so all while traced. Every open(2)/openat(2) goes through
 * do_sys_openat2, and other opens (the shell, cat's own) only add hits. */
static void openat_hits_match_workload(void **state)
{
    (void)state;
    assert_true(nfiles > 0);
    assert_int_equal(res.openat_workload, 2u * nfiles);
    assert_true(res.kfunc_hits[0] >= 2u * nfiles);
}

static void user_breakpoint_pending_then_fires(void **state)
{
    (void)state;
    assert_int_equal(res.probe_execs, 1);
    assert_true(res.probe_inserted);
    assert_true(res.probe_was_pending); /* nothing of the program was mapped yet */
    assert_int_equal(res.probe_hits, 1);
    assert_int_equal(res.probe_hit_rip, busybox_entry);
    assert_int_equal(res.probe_hit_root, res.probe_root);
    assert_int_equal(res.probe_hit_cpl, 3);
}

static void guest_runs_on_after_detach(void **state)
{
    (void)state;
    assert_true(res.detached);
    assert_true(res.done_after_detach);
    assert_int_equal(res.state, VMT_KVM_EXITED);
}

int main(void)
{
    if (!e2e_kvm_setup("test_linux"))
        return 77;
    /* Where int3 does not exit (the emulated AMD-V bed), the tracer catches
     * it at Linux's vector-3 handler, whose page is the kernel's whole
     * entry code: every interrupt and system call is then stepped through
     * it, at 1-5 ms a step in the bed. The traced workload does not
     * finish in any time CI has (measured: 10 of 32 opens in 80 s), so the
     * test says so and is reported as skipped (issue 12 stays open). */
    VMT_OPTS(vmt_kvm_host, host);
    if (vmt_kvm_host_probe(&host) == VMT_OK && !host.int3_exits && !host.int3_emulation) {
        fprintf(stderr, "test_linux: skipped: int3 does not exit on this host (vmt-kvm-run --probe), and "
                        "catching it at Linux's entry page steps every interrupt and system call: "
                        "too slow to trace the workload here\n");
        return 77;
    }
    char why[256];
    int fetched = e2e_fetch_linux("test_linux", VMT_FETCH_LINUX, VMT_LINUX_DIR, &dir);
    if (fetched != 0)
        return fetched;
    if (!lx_files_present(dir, why, sizeof why)) {
        fprintf(stderr, "test_linux: %s\n", why);
        return 1;
    }
    nfiles = lx_workload_files(dir);
    char bb[4096];
    snprintf(bb, sizeof bb, "%s/busybox", dir);
    busybox_entry = elf_entry(bb);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(boots_and_powers_off),
        cmocka_unit_test(openat_hits_match_workload),
        cmocka_unit_test(user_breakpoint_pending_then_fires),
        cmocka_unit_test(guest_runs_on_after_detach),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
