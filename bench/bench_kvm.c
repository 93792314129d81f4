// SPDX-License-Identifier: MIT
/* bench_kvm: costs of the KVM micro-VM driver's basic mechanisms on this
 * host. One `kvm op=... ns_per_op=... ops=N` line per figure, the median
 * of 5 repetitions (docs/benchmarks.md conventions).
 *   exit          raw VM-exit round trip: the bundled guest's port-I/O loop
 *   int3_cpl0     int3 at CPL 0, event + CONTINUE past it (KVM intercept)
 *   int3_cpl3     int3 at CPL 3, event + CONTINUE past it (caught at the
 *                 guest's #BP handler frame)
 *   bp_hit        a hidden breakpoint hit as the tracer does it: int3 in a
 *                 shadow copy in view 1, FAST_SINGLESTEP over the original
 *                 instruction in view 0
 *   bp_hit_lazy_kgs  bp_hit with VMT_KVM_F_LAZY_KERNEL_GS_BASE
 *   write_trap    a write to an RX frame, event + CONTINUE
 *   exec_trap     a fetch from a non-executable frame, event + CONTINUE
 *   xo_event      emulated execute-only (VMT_KVM_F_EMULATE_EXECUTE_ONLY): the
 *                 same hidden breakpoint on an X-only shadow, plus the
 *                 loop's read of that page served with the original bytes
 *                 (FAST_SINGLESTEP in view 0); per event, half hits and
 *                 half reads, the single-steps through the page included
 *   memslot       set_access RX <-> RWX on one frame (one memslot delete+add)
 *   remap         change_view_gfn on the active view (one mmap MAP_FIXED)
 * Usage: bench_kvm [TINY_GUEST.elf]. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "guest/abi.h"
#include "vmitap/vmitap.h"

#ifndef VMT_TINY_GUEST
#define VMT_TINY_GUEST "tests/e2e/tiny_guest.elf"
#endif

#define REPS 5
static const char *tiny = VMT_TINY_GUEST;

static void report(const char *op, double v[REPS], long ops)
{
    printf("kvm op=%s ns_per_op=%.0f ops=%ld\n", op, bench_median(v, REPS), ops);
    fflush(stdout);
}

static uint32_t kvm_flags;

static vmt_core *boot(const char *path, uint64_t mode, uint64_t iterations, uint32_t flags, vmt_kvm **k)
{
    VMT_OPTS(vmt_kvm_opts, o, .guest_path = path, .seed = mode, .iterations = iterations,
             .guest_flags = flags, .flags = kvm_flags);
    vmt_core *c;
    if (vmt_kvm_core_new(&o, &c, k) != VMT_OK) {
        fprintf(stderr, "bench_kvm: cannot boot %s\n", path ? path : vmt_kvm_default_guest());
        exit(1);
    }
    return c;
}

static vmt_status skip_int3(void *user, const vmt_event *ev, vmt_response *r)
{
    (void)user;
    r->action = VMT_ACTION_CONTINUE;
    if (ev->reason == VMT_EVENT_SOFTWARE_BREAKPOINT) {
        r->set_regs = true;
        r->regs = ev->regs;
        r->regs.rip++;
    }
    return VMT_OK;
}

/* Runs to the guest's end answering with fn; returns ns per event. */
static double run_events(vmt_core *c, vmt_event_fn fn, void *user, long n)
{
    double t0 = bench_now_ns();
    long got = 0;
    vmt_status st;
    while ((st = vmt_core_wait_for_event(c, 10000, fn, user)) == VMT_OK)
        got++;
    double t = bench_now_ns() - t0;
    if (st != VMT_E_GUEST_EXITED || got != n) {
        fprintf(stderr, "bench_kvm: expected %ld events, got %ld (%s)\n", n, got, vmt_status_str(st));
        exit(1);
    }
    return t / (double)n;
}

static void bench_exit(void)
{
    const long n = 200000;
    double v[REPS];
    for (int i = 0; i < REPS; i++) {
        vmt_kvm *k;
        vmt_core *c = boot(NULL, 0, (uint64_t)n, VMT_GUEST_F_EXIT_LOOP, &k);
        double t0 = bench_now_ns();
        vmt_status st = vmt_kvm_run(k, 60000);
        v[i] = (bench_now_ns() - t0) / (double)n;
        if (st != VMT_E_GUEST_EXITED) {
            fprintf(stderr, "bench_kvm: exit loop: %s\n", vmt_status_str(st));
            exit(1);
        }
        vmt_core_free(c);
    }
    report("exit", v, n);
}

static void bench_int3(uint64_t mode, const char *name)
{
    const long n = 20000;
    double v[REPS];
    for (int i = 0; i < REPS; i++) {
        vmt_kvm *k;
        vmt_core *c = boot(tiny, mode, (uint64_t)n, 0, &k);
        v[i] = run_events(c, skip_int3, NULL, n);
        vmt_core_free(c);
    }
    report(name, v, n);
}

/* Up to 20000 events from the loop guest, answered by fn. */
static double loop_events(vmt_core *c, vmt_event_fn fn, void *user, long *count)
{
    long got = 0;
    double t0 = bench_now_ns();
    while (got < 20000 && vmt_core_wait_for_event(c, 2000, fn, user) == VMT_OK)
        got++;
    *count = got;
    return (bench_now_ns() - t0) / (double)(got ? got : 1);
}

static vmt_status cont(void *user, const vmt_event *ev, vmt_response *r)
{
    (void)user;
    (void)ev;
    r->action = VMT_ACTION_CONTINUE;
    return VMT_OK;
}

static void bench_trap(const char *name, vmt_gfn gfn, vmt_access acc)
{
    double v[REPS];
    long n = 0;
    for (int i = 0; i < REPS; i++) {
        vmt_kvm *k;
        vmt_core *c = boot(tiny, 1, 0, 0, &k);
        vmt_core_wait_for_event(c, 10, cont, NULL);
        vmt_core_set_access(c, gfn, 0, acc, 0);
        v[i] = loop_events(c, cont, NULL, &n);
        vmt_core_free(c);
    }
    report(name, v, n);
}

static vmt_status step_over(void *user, const vmt_event *ev, vmt_response *r)
{
    (void)user;
    (void)ev;
    r->action = VMT_ACTION_FAST_SINGLESTEP;
    r->view = 0;
    return VMT_OK;
}

/* The tracer's hit: int3 on a shadow copy of the func page in view 1,
 * with access `acc` there. */
static void bench_bp_hit(const char *name, vmt_access acc)
{
    double v[REPS];
    long n = 0;
    for (int i = 0; i < REPS; i++) {
        vmt_kvm *k;
        vmt_core *c = boot(tiny, 1, 0, 0, &k);
        vmt_core_wait_for_event(c, 10, cont, NULL);
        uint8_t page[4096];
        vmt_gfn sh;
        vmt_view view;
        vmt_core_read(c, 0x201000, page, sizeof page);
        page[0] = 0xcc;
        vmt_core_allocate_gfn(c, &sh);
        vmt_core_write(c, sh << 12, page, sizeof page);
        vmt_core_create_view(c, VMT_ACCESS_RWX, &view);
        vmt_core_change_view_gfn(c, view, 0x201, sh);
        vmt_core_set_access(c, 0x201, view, acc, 0);
        vmt_core_switch_view(c, view);
        v[i] = loop_events(c, step_over, NULL, &n);
        vmt_core_free(c);
    }
    report(name, v, n);
}

static void bench_mapping(void)
{
    const long n = 2000;
    double slot[REPS], remap[REPS];
    for (int i = 0; i < REPS; i++) {
        vmt_kvm *k;
        vmt_core *c = boot(tiny, 1, 0, 0, &k);
        vmt_core_wait_for_event(c, 10, cont, NULL);
        vmt_core_set_access(c, 0x206, 0, VMT_ACCESS_RX, 0); /* splits the chunk once */
        vmt_core_set_access(c, 0x206, 0, VMT_ACCESS_RWX, 0);
        double t0 = bench_now_ns();
        for (long j = 0; j < n; j++)
            vmt_core_set_access(c, 0x205, 0, (j & 1) ? VMT_ACCESS_RWX : VMT_ACCESS_RX, 0);
        slot[i] = (bench_now_ns() - t0) / (double)n;
        vmt_gfn sh;
        vmt_core_allocate_gfn(c, &sh);
        t0 = bench_now_ns();
        for (long j = 0; j < n; j++)
            vmt_core_change_view_gfn(c, 0, 0x207, (j & 1) ? 0x207 : sh);
        remap[i] = (bench_now_ns() - t0) / (double)n;
        vmt_core_free(c);
    }
    report("memslot", slot, n);
    report("remap", remap, n);
}

int main(int argc, char **argv)
{
    char why[256];
    if (!vmt_kvm_available(why, sizeof why)) {
        fprintf(stderr, "bench_kvm: %s\n", why);
        return 77;
    }
    if (argc > 1)
        tiny = argv[1];
    VMT_OPTS(vmt_kvm_host, host);
    if (vmt_kvm_host_probe(&host) != VMT_OK)
        return 1;
    bench_exit();
    /* int3 in the tiny guest's kernel mode, which has no IDT: only where
     * KVM itself stops at the int3 (the host profile says). */
    if (host.int3_exits || host.int3_emulation)
        bench_int3(4, "int3_cpl0");
    else
        printf("kvm op=int3_cpl0 skipped: this host does not intercept int3 (vmt-kvm-run --probe)\n");
    bench_int3(2, "int3_cpl3");
    bench_bp_hit("bp_hit", VMT_ACCESS_RX);
    kvm_flags = VMT_KVM_F_LAZY_KERNEL_GS_BASE;
    bench_bp_hit("bp_hit_lazy_kgs", VMT_ACCESS_RX);
    kvm_flags = VMT_KVM_F_EMULATE_EXECUTE_ONLY;
    bench_bp_hit("xo_event", VMT_ACCESS_X);
    kvm_flags = 0;
    bench_trap("write_trap", 0x205, VMT_ACCESS_RX);
    bench_trap("exec_trap", 0x201, VMT_ACCESS_RW);
    bench_mapping();
    return 0;
}
