// SPDX-License-Identifier: MIT
/* vmt-kvm-run: boots a guest ELF on the KVM micro-VM without any observer,
 * prints its console output and its stats page, and exits with the
 * guest's exit code (2 if it crashed, 3 on timeout, 77 without /dev/kvm). */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guest/abi.h"
#include "vmitap/kvm.h"
#include "vmitap/log.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: vmt-kvm-run [options] [GUEST.elf]\n"
               "Boots GUEST.elf (default: $VMITAP_GUEST or the bundled guest) on /dev/kvm.\n"
               "  -i N   iterations (params block)      -s N   seed\n"
               "  -p N   pager aggressiveness 0..100     -f N   guest flags (VMT_GUEST_F_*)\n"
               "  -m MiB guest RAM (default 64)          -t MS  timeout (default 60000)\n"
               "  -v     driver log on stderr (-vv: with every step)   -h  this help\n"
               "  --probe  print this host's KVM profile (what the driver found it does) and exit\n"
               "  -k KERNEL   boot Linux: bzImage or vmlinux (linux)  -r INITRD  its initramfs\n"
               "  -c CMDLINE  its command line (default: vmt_kvm_linux_default_cmdline)\n"
               "  -P FILE     profile: stream the console live and write the vCPU's RIP to FILE\n"
               "              every 10 ms of run time (one hex address per line)\n");
}

static vmt_log_level log_max = VMT_LOG_DEBUG;

static void log_to_stderr(void *user, vmt_log_level level, const char *fmt, va_list ap)
{
    (void)user;
    if (level > log_max)
        return;
    static const char *names[] = {"error", "warn", "info", "debug", "trace"};
    fprintf(stderr, "[%s] ", names[level]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

/* Runs the guest in 10 ms slices: after each, the new console output goes to
 * stdout and the vCPU's RIP to prof (a sampling profile of where a slow
 * guest spends its time, e.g. Linux on a host that emulates kernel mode). */
static vmt_status run_sampled(vmt_kvm *k, int timeout_ms, FILE *prof)
{
    const vmt_driver_ops *ops = vmt_kvm_driver_ops();
    size_t shown = 0;
    struct timespec t0, now;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        vmt_status st = vmt_kvm_run(k, 10);
        size_t len;
        const char *con = vmt_kvm_console(k, &len);
        if (len > shown) {
            fwrite(con + shown, 1, len - shown, stdout);
            fflush(stdout);
            shown = len;
        }
        if (st != VMT_E_TIMEOUT)
            return st;
        vmt_regs r;
        if (ops->get_regs(k, 0, &r) == VMT_OK)
            fprintf(prof, "%" PRIx64 "\n", r.rip);
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
        if (timeout_ms >= 0 && ms >= timeout_ms)
            return VMT_E_TIMEOUT;
    }
}

static void print_stats(const vmt_guest_stats *s)
{
    if (s->magic != VMT_GUEST_STATS_MAGIC) {
        printf("stats: none (no stats magic at 0x%llx)\n", (unsigned long long)VMT_GUEST_STATS_PA);
        return;
    }
    printf("stats: done=%u exit_code=%u rounds=%" PRIu64 " page_outs=%" PRIu64 " page_ins=%" PRIu64
           " relocations=%" PRIu64 " page_faults=%" PRIu64 " breakpoints=%" PRIu64 " selfcheck_runs=%" PRIu64
           " selfcheck_mismatches=%" PRIu64 "\n",
           s->done, s->exit_code, s->rounds, s->page_outs, s->page_ins, s->relocations, s->page_faults,
           s->breakpoints, s->selfcheck_runs, s->selfcheck_mismatches);
    uint32_t n = s->ncounters < VMT_GUEST_MAX_COUNTERS ? s->ncounters : VMT_GUEST_MAX_COUNTERS;
    for (uint32_t i = 0; i < n; i++)
        printf("counter %-31.31s %" PRIu64 "\n", s->counters[i].name, s->counters[i].calls);
}

/* The host profile, one line per probe (drivers/kvm/README.md, "Host profiles"). */
static int print_probe(void)
{
    char why[256];
    if (!vmt_kvm_available(why, sizeof why)) {
        fprintf(stderr, "vmt-kvm-run: %s\n", why);
        return 77;
    }
    VMT_OPTS(vmt_kvm_host, h);
    if (vmt_kvm_host_probe(&h) != VMT_OK) {
        fprintf(stderr, "vmt-kvm-run: probing /dev/kvm failed\n");
        return 1;
    }
    printf("hw-breakpoints %s\n", h.hw_breakpoints ? "yes (page-table checkpoints on #PF returns by DR0-3)"
                                                  : "no (page-table checkpoints by the #PF handler's frame)");
    printf("int3-exits     %s\n", h.int3_exits ? "yes (KVM_EXIT_DEBUG #BP)"
                                 : h.int3_emulation ? "no, emulation failure with 0xCC at RIP (kvm_pvm)"
                                                    : "no (caught at the guest's vector-3 handler)");
    printf("step-exits     %s\n", h.step_exits ? "yes" : "no");
    printf("kvm_pvm        %s\n", h.kvm_pvm ? "yes (CPL 3 step #DB caught at the guest's vector-1 handler)" : "no");
    printf("profile        %s\n", h.hw_breakpoints && h.int3_exits ? "standard KVM"
                                  : !h.int3_exits && !h.int3_emulation && !h.hw_breakpoints
                                      ? "emulated AMD-V (QEMU TCG)"
                                      : "other (see drivers/kvm/README.md)");
    return 0;
}

int main(int argc, char **argv)
{
    VMT_OPTS(vmt_kvm_opts, o);
    int timeout = 60000;
    const char *prof_path = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--probe"))
            return print_probe();
        if (!strcmp(a, "-v") || !strcmp(a, "-vv")) {
            log_max = a[2] ? VMT_LOG_TRACE : VMT_LOG_DEBUG;
            vmt_set_log_fn(log_to_stderr, NULL);
            continue;
        }
        if (i + 1 >= argc || strlen(a) != 2) {
            usage(stderr);
            return 64;
        }
        if (a[1] == 'P') {
            prof_path = argv[++i];
            continue;
        }
        if (a[1] == 'k' || a[1] == 'r' || a[1] == 'c') { /* linux */
            const char **dst = a[1] == 'k' ? &o.kernel_path : a[1] == 'r' ? &o.initrd_path : &o.cmdline;
            *dst = argv[++i];
            continue;
        }
        unsigned long long v = strtoull(argv[++i], NULL, 0);
        switch (a[1]) {
        case 'i': o.iterations = v; break;
        case 's': o.seed = v; break;
        case 'p': o.pager = (uint32_t)v; break;
        case 'f': o.guest_flags = (uint32_t)v; break;
        case 'm': o.ram_bytes = v << 20; break;
        case 't': timeout = (int)v; break;
        default: usage(stderr); return 64;
        }
    }
    if (i < argc)
        o.guest_path = argv[i];
    char why[256];
    if (!vmt_kvm_available(why, sizeof why)) {
        fprintf(stderr, "vmt-kvm-run: %s\n", why);
        return 77;
    }
    vmt_kvm *k;
    vmt_status st = vmt_kvm_new(&o, &k);
    if (st != VMT_OK) {
        fprintf(stderr, "vmt-kvm-run: cannot start %s: %s (-v for details)\n",
                o.guest_path ? o.guest_path : vmt_kvm_default_guest(), vmt_status_str(st));
        return 1;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t len;
    const char *con;
    if (prof_path) {
        FILE *prof = fopen(prof_path, "w");
        if (!prof) {
            perror(prof_path);
            vmt_kvm_free(k);
            return 1;
        }
        st = run_sampled(k, timeout, prof);
        fclose(prof);
        con = vmt_kvm_console(k, &len);
    } else {
        st = vmt_kvm_run(k, timeout);
        con = vmt_kvm_console(k, &len);
        fwrite(con, 1, len, stdout);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (len && con[len - 1] != '\n')
        putchar('\n');
    print_stats(vmt_kvm_guest_stats(k));
    VMT_OPTS(vmt_kvm_counters, c);
    vmt_kvm_counters_get(k, &c);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("vmm: %.3f s, %" PRIu64 " exits, %" PRIu64 " mmio, %" PRIu64 " memslot ops, %" PRIu64 " steps\n", secs,
           c.exits, c.mmio, c.memslot_ops, c.steps);
    int rc;
    if (st == VMT_E_GUEST_EXITED) {
        rc = (int)(vmt_kvm_exit_code(k) & 0xff);
        printf("guest exited with code %u\n", vmt_kvm_exit_code(k));
    } else if (st == VMT_E_GUEST_CRASHED) {
        printf("guest crashed: %s\n", vmt_kvm_crash_reason(k));
        rc = 2;
    } else if (st == VMT_E_TIMEOUT) {
        printf("timeout after %d ms\n", timeout);
        rc = 3;
    } else {
        printf("driver error: %s\n", vmt_status_str(st));
        rc = 1;
    }
    vmt_kvm_free(k);
    return rc;
}
