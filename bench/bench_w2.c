// SPDX-License-Identifier: MIT
/* bench_w2: workload W2 of docs/benchmarks.md, the tracer end to end on the KVM
 * micro-VM and the bundled test guest. One `w2 ...` line of key=value
 * words per figure, each the median of REPS repetitions, all in one run:
 *
 *   phase=exit          the raw VM-exit round trip (VMT_GUEST_F_EXIT_LOOP:
 *                       a loop of port writes, run with no observer, minus
 *                       the same loop with 1 write: the guest's boot); it is
 *                       also measured alongside every other phase (exit_ns
 *                       there), and x_exit divides by that one, since the
 *                       host's load drifts during a run;
 *   phase=run           the guest for a fixed number of rounds with the
 *                       pager on, under a tracer with no breakpoints
 *                       (ctl=none, the baseline) and with breakpoints on
 *                       hot kernel and user functions, per controller:
 *                       int3 (int3 on an RX shadow copy), int3_xo (the same
 *                       with the driver's emulated execute-only pages,
 *                       VMT_KVM_F_EMULATE_EXECUTE_ONLY: stealthy), memory
 *                       (no code change; user functions only and fewer
 *                       rounds: every fetch from a breakpointed page traps);
 *                       hits/s, cost per hit = (run - baseline) / hits, as
 *                       a multiple of the raw exit, and the driver's work
 *                       per hit (vmt_kvm_counters);
 *   phase=paging        the int3 run again with the pager off: the page-in /
 *                       page-out events handled (ptm events, bpm
 *                       transitions, trapped page-table writes) and their
 *                       cost, from the difference of the two runs;
 *   phase=stealth_read  VMT_GUEST_F_READ_LOOP with an int3 breakpoint on
 *                       patch_neighbor, execute-only emulated: the cost of
 *                       one guest read of a page holding a hidden
 *                       breakpoint, served with the original bytes.
 *
 * Every run checks that each breakpoint's hits equal the guest's own call
 * counter (counted from the moment the breakpoint was added), that the
 * guest exited cleanly and, when the session is stealthy, that its
 * self-check saw no change; the read loop also checks that every read was
 * served by the stealth path. The last line is `w2 exact=1`; any mismatch
 * ends the program with status 1 and a message on stderr.
 *
 * Usage: bench_w2 [-q] [-c int3|int3_xo|memory|read]: -q runs a tenth of
 * the rounds (a quick look, not for recorded figures), -c one group only
 * (after the raw exit). Exits 77 when /dev/kvm cannot be opened. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"
#include "guest/abi.h"
#include "vmitap/kvm.h"
#include "vmitap/tracer.h"
#include "vmitap/vmitap.h"

#define REPS 5
#define SEED 7
#define PAGER 30 /* % of rounds that evict a user code page */
#define MAX_BPS 8

typedef struct bp_spec {
    const char *symbol;
    int proc;  /* -1: global (kernel, or the shared library page); else process index */
    bool user; /* a user address: translated through a process's CR3 (process 0 if global) */
} bp_spec;

/* Hot functions: per round, schedule and syscall_dispatch run 3 times (one
 * yield per process), prog_work_a@0 once, prog_work_b@2 three times;
 * lib_getpid once per process at its start. */
static const bp_spec hot_bps[] = {
    {"schedule", -1, false},   {"syscall_dispatch", -1, false}, {"lib_getpid", -1, true},
    {"prog_work_a", 0, true}, {"prog_work_b", 2, true},
};
/* The memory controller makes every fetch from a breakpointed page trap;
 * the kernel's functions share a few pages that run all the time, so it
 * gets the user functions only. */
static const bp_spec user_bps[] = {{"prog_work_a", 0, true}, {"prog_work_b", 2, true}};
/* Emulated execute-only is inexact in one case: an instruction reading its
 * own execute-only frame reads natively. The guest's self-check code
 * shares its page with schedule and syscall_dispatch, so the stealthy run
 * takes hot kernel functions from other pages: patch_neighbor (once per
 * round, a page of its own) and pager_page_in (each demand fault); and
 * the shared library page's lib_yield and lib_getpid. (Per-process
 * breakpoints on private pages, prog_work_a@0, missed hits under emulated
 * execute-only when this was written: left out, see docs/PERFORMANCE.md.) */
static const bp_spec xo_bps[] = {
    {"patch_neighbor", -1, false},
    {"pager_page_in", -1, false},
    {"lib_getpid", -1, true},
    {"lib_yield", -1, true},
};
static const bp_spec read_bps[] = {{"patch_neighbor", -1, false}};

typedef struct config {
    const char *name;
    vmt_tracer_controller ctl;
    uint32_t kvm_flags;   /* VMT_KVM_F_* */
    uint32_t guest_flags; /* VMT_GUEST_F_* */
    uint64_t iterations;  /* guest rounds (reads for the read loop) */
    uint32_t pager;
    const bp_spec *bps;
    size_t nbps;
} config;

/* What one traced run did, over its timed part. */
typedef struct run_result {
    double ns;
    vmt_tracer_stats ts;
    vmt_kvm_counters kc;
    uint64_t bp_page_outs, bp_page_ins, bp_relocations; /* bpm transitions, summed */
    uint64_t guest_page_outs, guest_page_ins;
} run_result;

static void die(const char *cfg, const char *fmt, const char *what)
{
    fprintf(stderr, "bench_w2: %s: %s %s\n", cfg, fmt, what ? what : "");
    exit(1);
}

static void check(bool ok, const char *cfg, const char *what)
{
    if (!ok)
        die(cfg, "check failed:", what);
}

static uint64_t guest_calls(const vmt_guest_stats *g, const bp_spec *b)
{
    char name[64];
    if (b->proc >= 0)
        snprintf(name, sizeof name, "%s@%d", b->symbol, b->proc);
    else
        snprintf(name, sizeof name, "%s", b->symbol);
    const vmt_guest_counter *c = vmt_guest_counter_find(g, name);
    if (!c)
        die(name, "the guest has no counter", NULL);
    return c->calls;
}

/* Runs the guest (traced, no breakpoints yet) until it has published its
 * processes' CR3s. Polled rather than caught with a breakpoint on
 * sched_start: that function shares its page with the guest's self-check,
 * which reads its own page natively under emulated execute-only and would
 * record the trap in its checksums. */
static void wait_for_processes(const config *c, vmt_tracer *t, vmt_kvm *k)
{
    const vmt_guest_stats *g = vmt_kvm_guest_stats(k);
    VMT_OPTS(vmt_tracer_run_opts, ro, .timeout_ms = 1);
    for (int i = 0; g->magic != VMT_GUEST_STATS_MAGIC || g->nprocs == 0; i++) {
        vmt_tracer_stop_reason why;
        check(i < 100000 && vmt_tracer_run(t, &ro, &why) == VMT_OK &&
                  why == VMT_TRACER_STOP_TIMEOUT,
              c->name, "run until the processes exist");
    }
}

static void counters_sub(vmt_kvm_counters *a, const vmt_kvm_counters *b)
{
    a->runs -= b->runs;
    a->exits -= b->exits;
    a->mmio -= b->mmio;
    a->memslot_ops -= b->memslot_ops;
    a->remaps -= b->remaps;
    a->events -= b->events;
    a->steps -= b->steps;
}

/* One traced run of config c (its breakpoints, or none when nbps == 0),
 * timed from just after the breakpoints are set to the guest's exit, with
 * every exactness check. */
static void run_once(const config *c, size_t nbps, run_result *r)
{
    memset(r, 0, sizeof *r);
    VMT_OPTS(vmt_kvm_opts, ko, .iterations = c->iterations, .seed = SEED,
             .pager = c->pager, .guest_flags = c->guest_flags, .flags = c->kvm_flags);
    vmt_core *vmi;
    vmt_kvm *k;
    check(vmt_kvm_core_new(&ko, &vmi, &k) == VMT_OK, c->name, "boot the guest");
    vmt_regs regs;
    check(vmt_core_get_regs(vmi, 0, &regs) == VMT_OK, c->name, "get_regs");
    vmt_pa boot_root = vmt_regs_translation_root(&regs, 0);
    VMT_OPTS(vmt_tracer_opts, to, .controller = c->ctl);
    vmt_tracer *t;
    check(vmt_tracer_new(vmi, &to, &t) == VMT_OK, c->name, "tracer_new");
    check(vmt_tracer_load_symbols(t, vmt_kvm_default_guest()) == VMT_OK, c->name, "symbols");
    const vmt_guest_stats *g = vmt_kvm_guest_stats(k);
    bool read_loop = c->guest_flags & VMT_GUEST_F_READ_LOOP;
    if (!read_loop) /* user breakpoints need the processes' CR3s */
        wait_for_processes(c, t, k);

    vmt_tracer_bp_id ids[MAX_BPS];
    uint64_t calls_before[MAX_BPS];
    for (size_t i = 0; i < nbps; i++) {
        const bp_spec *b = &c->bps[i];
        vmt_pa root = !b->user ? boot_root
                                : g->proc_cr3[b->proc < 0 ? 0 : b->proc] & 0x000ffffffffff000ull;
        VMT_OPTS(vmt_tracer_bp_opts, bo, .global = b->proc < 0);
        check(vmt_tracer_add_symbol(t, b->symbol, root, &bo, &ids[i]) == VMT_OK, c->name,
              b->symbol);
        calls_before[i] = g->magic == VMT_GUEST_STATS_MAGIC ? guest_calls(g, b) : 0;
    }
    VMT_OPTS(vmt_tracer_stats, ts0);
    VMT_OPTS(vmt_kvm_counters, kc0);
    vmt_tracer_stats_get(t, &ts0);
    vmt_kvm_counters_get(k, &kc0);
    uint64_t gouts0 = g->page_outs, gins0 = g->page_ins;

    double t0 = bench_now_ns();
    vmt_tracer_stop_reason why = VMT_TRACER_STOP_NONE;
    vmt_status st = vmt_tracer_run(t, NULL, &why);
    r->ns = bench_now_ns() - t0;
    if (st != VMT_OK || why != VMT_TRACER_STOP_GUEST_EXITED)
        die(c->name, "run:", st != VMT_OK ? vmt_kvm_crash_reason(k) : "did not end");

    r->ts.sz = sizeof r->ts;
    r->kc.sz = sizeof r->kc;
    vmt_tracer_stats_get(t, &r->ts);
    vmt_kvm_counters_get(k, &r->kc);
    counters_sub(&r->kc, &kc0);
    r->ts.hits -= ts0.hits;
    r->ts.hit_events -= ts0.hit_events;
    r->ts.events -= ts0.events;
    r->ts.page_ins -= ts0.page_ins;
    r->ts.page_outs -= ts0.page_outs;
    r->ts.pt_writes -= ts0.pt_writes;
    r->ts.other_writes -= ts0.other_writes;
    r->ts.stealth_reads -= ts0.stealth_reads;
    r->ts.exec_steps -= ts0.exec_steps;
    r->ts.emulated -= ts0.emulated;
    r->guest_page_outs = g->page_outs - gouts0;
    r->guest_page_ins = g->page_ins - gins0;

    /* Exactness: hits = the guest's calls since the breakpoint was set. */
    /* Without execute-only pages the int3 controller's trap bytes are
     * visible to reads: the guest's self-check may then fail, and nothing
     * else may. */
    uint32_t code = vmt_kvm_exit_code(k);
    bool stealthy = vmt_tracer_is_stealthy(t);
    check(code == VMT_GUEST_EXIT_OK || (!stealthy && code == VMT_GUEST_EXIT_SELFCHECK),
          c->name, code == VMT_GUEST_EXIT_SELFCHECK ? "guest exit code (self-check)" : vmt_kvm_console(k, NULL));
    for (size_t i = 0; i < nbps; i++) {
        VMT_OPTS(vmt_tracer_bp_info, bi);
        check(vmt_tracer_bp_get(t, ids[i], &bi) == VMT_OK, c->name, "bp_get");
        uint64_t want = guest_calls(g, &c->bps[i]) - calls_before[i];
        if (bi.hits != want) {
            fprintf(stderr, "bench_w2: %s: %s@%d: %" PRIu64 " hits, guest counted %" PRIu64 "\n",
                    c->name, c->bps[i].symbol, c->bps[i].proc, bi.hits, want);
            exit(1);
        }
        r->bp_page_outs += bi.page_outs;
        r->bp_page_ins += bi.page_ins;
        r->bp_relocations += bi.relocations;
    }
    check(r->ts.stale == 0 && r->ts.unmatched == 0, c->name, "no stale or unmatched traps");
    if (stealthy)
        check(g->selfcheck_mismatches == 0, c->name, "guest self-check sees original code");
    if (read_loop && nbps > 0) {
        /* Every read of the page went through the stealth path (so it was
         * served from the default view, where the original bytes are), and
         * the guest saw the same 8 bytes every time. */
        check(stealthy, c->name, "stealthy session");
        check(g->selfcheck_runs == 1 && g->selfcheck_mismatches == 0, c->name,
              "guest read loop saw one value");
        if (r->ts.stealth_reads != c->iterations) {
            fprintf(stderr, "bench_w2: %s: %" PRIu64 " reads served, guest made %" PRIu64 "\n",
                    c->name, r->ts.stealth_reads, c->iterations);
            exit(1);
        }
    }
    check(vmt_tracer_detach(t) == VMT_OK, c->name, "detach");
    vmt_tracer_free(t);
    vmt_core_free(vmi);
}

/* Wall time of the exit loop with n exits, no observer, boot included. */
static double exit_loop_ns(uint64_t n)
{
    VMT_OPTS(vmt_kvm_opts, ko, .iterations = n, .guest_flags = VMT_GUEST_F_EXIT_LOOP);
    vmt_core *vmi;
    vmt_kvm *k;
    check(vmt_kvm_core_new(&ko, &vmi, &k) == VMT_OK, "exit", "boot the guest");
    VMT_OPTS(vmt_kvm_counters, c0);
    VMT_OPTS(vmt_kvm_counters, c1);
    vmt_kvm_counters_get(k, &c0);
    double t0 = bench_now_ns();
    vmt_status st = vmt_kvm_run(k, 120000);
    double ns = bench_now_ns() - t0;
    check(st == VMT_E_GUEST_EXITED && vmt_kvm_exit_code(k) == 0, "exit", "exit loop ends");
    vmt_kvm_counters_get(k, &c1);
    check(c1.exits - c0.exits >= n, "exit", "one exit per iteration");
    vmt_core_free(vmi);
    return ns;
}

/* ns per exit: the loop of n exits minus the loop of 1, which is the
 * guest's boot (page tables, IDT: tens of ms here, not negligible). */
static double exit_once(uint64_t n)
{
    double one = exit_loop_ns(1);
    return (exit_loop_ns(n) - one) / (double)(n - 1);
}

/* Raw exit round trip: ns per exit of the exit loop. */
static double bench_exit(void)
{
    const uint64_t n = 50000;
    double v[REPS];
    for (int i = 0; i < REPS; i++)
        v[i] = exit_once(n);
    double ns = bench_median(v, REPS);
    printf("w2 phase=exit ns_per_exit=%.0f iterations=%" PRIu64 " reps=%d\n", ns, n, REPS);
    fflush(stdout);
    return ns;
}

/* Medians of a config's traced runs and of its baseline (same guest, no
 * breakpoints), run alternately so that drift hits both alike. */
typedef struct measured {
    double run_ns, base_ns, extra_ns; /* extra: median of the per-repetition differences */
    double exit_ns; /* the raw exit, measured alongside (the host's load drifts) */
    run_result last;                  /* counts of the last traced run (deterministic) */
    run_result base;                  /* counts of the last baseline */
} measured;

static void measure(const config *c, measured *m)
{
    double run[REPS], base[REPS], extra[REPS], ex[REPS];
    for (int i = 0; i < REPS; i++) {
        ex[i] = exit_once(30000);
        run_once(c, 0, &m->base);
        base[i] = m->base.ns;
        run_once(c, c->nbps, &m->last);
        run[i] = m->last.ns;
        extra[i] = run[i] - base[i];
    }
    m->run_ns = bench_median(run, REPS);
    m->base_ns = bench_median(base, REPS);
    m->extra_ns = bench_median(extra, REPS);
    m->exit_ns = bench_median(ex, REPS);
}

static double per(double a, uint64_t n) { return n ? a / (double)n : 0.0; }

/* (a - b) / n for driver counters of a traced run and its baseline. */
static double dper(uint64_t a, uint64_t b, uint64_t n) { return per((double)a - (double)b, n); }

static void report_run(const config *c, const measured *m)
{
    double exit_ns = m->exit_ns;
    const run_result *r = &m->last;
    const vmt_kvm_counters *kc = &r->kc, *kb = &m->base.kc; /* minus the baseline's */
    uint64_t hits = r->ts.hits;
    double ns_hit = per(m->extra_ns, hits);
    printf("w2 phase=run ctl=%s iterations=%" PRIu64 " pager=%u bps=%zu run_ms=%.1f "
           "base_ms=%.1f hits=%" PRIu64 " hits_per_s=%.0f ns_per_hit=%.0f exit_ns=%.0f x_exit=%.1f "
           "exits_per_hit=%.2f runs_per_hit=%.2f steps_per_hit=%.2f memslot_per_hit=%.2f "
           "remaps_per_hit=%.2f emulated=%" PRIu64 " exec_steps=%" PRIu64
           " stealth_reads=%" PRIu64 " reps=%d exact=1\n",
           c->name, c->iterations, c->pager, c->nbps, m->run_ns / 1e6, m->base_ns / 1e6, hits,
           (double)hits * 1e9 / m->run_ns, ns_hit, exit_ns, ns_hit / exit_ns,
           dper(kc->exits, kb->exits, hits), dper(kc->runs, kb->runs, hits),
           dper(kc->steps, kb->steps, hits), dper(kc->memslot_ops, kb->memslot_ops, hits),
           dper(kc->remaps, kb->remaps, hits), r->ts.emulated,
           r->ts.exec_steps, r->ts.stealth_reads, REPS);
    fflush(stdout);
}

/* Paging: the int3 config with the pager on (m_on) against the same with
 * the pager off; the difference of the extra costs is what the pager's
 * page-table writes cost the tracer. */
static void report_paging(const config *on, const measured *m_on, const measured *m_off)
{
    double exit_ns = m_on->exit_ns;
    const run_result *r = &m_on->last, *r0 = &m_off->last;
    uint64_t traps = r->ts.pt_writes + r->ts.other_writes;
    uint64_t traps0 = r0->ts.pt_writes + r0->ts.other_writes;
    uint64_t ptm = r->ts.page_ins + r->ts.page_outs, ptm0 = r0->ts.page_ins + r0->ts.page_outs;
    double cost = m_on->extra_ns - m_off->extra_ns;
    double ns_trap = traps > traps0 ? cost / (double)(traps - traps0) : 0.0;
    printf("w2 phase=paging ctl=%s iterations=%" PRIu64 " pager=%u guest_page_outs=%" PRIu64
           " guest_page_ins=%" PRIu64 " ptm_page_outs=%" PRIu64 " ptm_page_ins=%" PRIu64
           " bpm_page_outs=%" PRIu64 " bpm_page_ins=%" PRIu64 " bpm_relocations=%" PRIu64
           " pt_writes=%" PRIu64 " other_writes=%" PRIu64 " pager0_traps=%" PRIu64
           " pager0_ptm_events=%" PRIu64 " extra_ms=%.1f ns_per_trapped_write=%.0f exit_ns=%.0f x_exit=%.1f "
           "ns_per_ptm_event=%.0f memslot_per_trapped_write=%.1f reps=%d\n",
           on->name, on->iterations, on->pager, r->guest_page_outs, r->guest_page_ins,
           r->ts.page_outs, r->ts.page_ins, r->bp_page_outs, r->bp_page_ins, r->bp_relocations,
           r->ts.pt_writes, r->ts.other_writes, traps0, ptm0, cost / 1e6, ns_trap, exit_ns,
           ns_trap / exit_ns, ptm > ptm0 ? cost / (double)(ptm - ptm0) : 0.0,
           traps > traps0 ? dper(r->kc.memslot_ops, r0->kc.memslot_ops, traps - traps0) : 0.0,
           REPS);
    fflush(stdout);
}

static void report_read(const config *c, const measured *m)
{
    double exit_ns = m->exit_ns;
    const run_result *r = &m->last;
    const vmt_kvm_counters *kc = &r->kc, *kb = &m->base.kc;
    uint64_t reads = r->ts.stealth_reads;
    double ns = per(m->extra_ns, reads);
    printf("w2 phase=stealth_read ctl=%s reads=%" PRIu64 " served=%" PRIu64 " run_ms=%.1f "
           "base_ms=%.1f ns_per_read=%.0f exit_ns=%.0f x_exit=%.1f exits_per_read=%.2f "
           "steps_per_read=%.2f "
           "memslot_per_read=%.2f remaps_per_read=%.2f guest_mismatches=0 reps=%d exact=1\n",
           c->name, c->iterations, reads, m->run_ns / 1e6, m->base_ns / 1e6, ns, exit_ns,
           ns / exit_ns,
           dper(kc->exits, kb->exits, reads), dper(kc->steps, kb->steps, reads),
           dper(kc->memslot_ops, kb->memslot_ops, reads), dper(kc->remaps, kb->remaps, reads),
           REPS);
    fflush(stdout);
}

/* The library's errors and warnings, on stderr (a failed run says why). */
static void log_errors(void *user, vmt_log_level level, const char *fmt, va_list ap)
{
    (void)user;
    if (level > VMT_LOG_WARN)
        return;
    fprintf(stderr, "bench_w2: vmitap: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static bool wanted(const char *only, const char *name) { return !only || strcmp(only, name) == 0; }

#define N(a) (sizeof(a) / sizeof((a)[0]))

int main(int argc, char **argv)
{
    char why[256];
    if (!vmt_kvm_available(why, sizeof why)) {
        fprintf(stderr, "bench_w2: %s\n", why);
        return 77;
    }
    uint64_t div = 1;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-q") == 0) {
            div = 10;
        } else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            only = argv[++i];
        } else {
            fprintf(stderr, "usage: bench_w2 [-q] [-c int3|int3_xo|memory|read]\n");
            return 2;
        }
    }
    vmt_set_log_fn(log_errors, NULL);

    const config int3 = {"int3", VMT_TRACER_CONTROLLER_INT3, 0, 0, 300 / div, PAGER,
                         hot_bps, N(hot_bps)};
    config int3_nopager = int3;
    int3_nopager.name = "int3_pager0";
    int3_nopager.pager = 0;
    /* The same, and events reuse the last KERNEL_GS_BASE read instead of
     * one vCPU ioctl each (VMT_KVM_F_LAZY_KERNEL_GS_BASE; the tracer never
     * looks at that register). */
    config int3_lazy = int3_nopager;
    int3_lazy.name = "int3_lazy_kgs_pager0";
    int3_lazy.kvm_flags = VMT_KVM_F_LAZY_KERNEL_GS_BASE;
    const config xo = {"int3_xo", VMT_TRACER_CONTROLLER_INT3, VMT_KVM_F_EMULATE_EXECUTE_ONLY, 0,
                       100 / div, PAGER, xo_bps, N(xo_bps)};
    const config mem = {"memory", VMT_TRACER_CONTROLLER_MEMORY, 0, 0, 50 / div, PAGER,
                        user_bps, N(user_bps)};
    const config rd = {"int3_xo", VMT_TRACER_CONTROLLER_INT3, VMT_KVM_F_EMULATE_EXECUTE_ONLY,
                       VMT_GUEST_F_READ_LOOP, 20000 / div, 0, read_bps, N(read_bps)};

    bench_exit();
    measured m_int3, m_int3_0, m_lazy, m_xo, m_mem, m_rd;
    if (wanted(only, "int3")) {
        measure(&int3, &m_int3);
        report_run(&int3, &m_int3);
        measure(&int3_nopager, &m_int3_0);
        report_run(&int3_nopager, &m_int3_0);
        report_paging(&int3, &m_int3, &m_int3_0);
        measure(&int3_lazy, &m_lazy);
        report_run(&int3_lazy, &m_lazy);
    }
    if (wanted(only, "int3_xo")) {
        measure(&xo, &m_xo);
        report_run(&xo, &m_xo);
    }
    if (wanted(only, "memory")) {
        measure(&mem, &m_mem);
        report_run(&mem, &m_mem);
    }
    if (wanted(only, "read")) {
        measure(&rd, &m_rd);
        report_read(&rd, &m_rd);
    }
    printf("w2 exact=1\n");
    return 0;
}
