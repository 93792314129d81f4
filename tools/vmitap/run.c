/* vmitap run: boot the guest on the KVM micro-VM, trace it, print a
 * summary that compares hits with the guest's own counters. */
#define _GNU_SOURCE /* sigaction */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "guest/abi.h"
#include "tools/vmitap/cli.h"
#include "vmitap/kvm.h"

/* Page-table root of a CR3 value (PCID and flag bits off). */
#define ROOT_MASK 0x000ffffffffff000ull

typedef struct run_ctx {
    cli_opts *o;
    vmt_symtab *syms;
    vmt_core *vmi;
    vmt_kvm *kvm;
    vmt_tracer *t;
    vmt_pa kernel_root;
    vmt_tracer_bp_id helper; /* hidden breakpoint that waits for the process table */
    bool failed;             /* a deferred breakpoint could not be set */
    int64_t start_us;
} run_ctx;

static vmt_tracer *volatile signal_tracer;
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
    if (signal_tracer)
        vmt_tracer_stop(signal_tracer);
}

static const vmt_guest_stats *guest_stats(const run_ctx *rc)
{
    const vmt_guest_stats *s = vmt_kvm_guest_stats(rc->kvm);
    return s && s->magic == VMT_GUEST_STATS_MAGIC ? s : NULL;
}

static bool needs_processes(const bp_spec *s) { return !s->kernel; }

/* Adds one tracer breakpoint for spec s in address space root. */
static bool add_one(run_ctx *rc, bp_spec *s, vmt_pa root, bool global, int proc)
{
    char name[128];
    if (proc >= 0)
        snprintf(name, sizeof name, "%s@%d", s->name, proc);
    else
        snprintf(name, sizeof name, "%s", s->name);
    vmt_tracer_bp_opts bo = {.sz = sizeof bo, .global = global, .name = name,
                             .key = (uint64_t)(s - rc->o->specs), .tag = (uintptr_t)proc};
    vmt_status st = vmt_tracer_add(rc->t, vmt_ctx(s->va, root), &bo, &s->ids[s->nids]);
    if (st != VMT_OK) {
        fprintf(stderr, "vmitap: cannot set breakpoint %s at %#" PRIx64 ": %s\n", name, s->va,
                vmt_status_str(st));
        return false;
    }
    s->nids++;
    return true;
}

/* Sets the breakpoints of one spec; user ones need the guest's process
 * table (published in its stats page before the first process runs). */
static bool install_spec(run_ctx *rc, bp_spec *s)
{
    if (s->kernel) {
        s->installed = true;
        return add_one(rc, s, rc->kernel_root, true, -1);
    }
    const vmt_guest_stats *st = guest_stats(rc);
    unsigned nprocs = st ? st->nprocs : 0;
    if (nprocs == 0)
        return true; /* later, from the helper breakpoint */
    if (nprocs > CLI_MAX_IDS)
        nprocs = CLI_MAX_IDS;
    s->installed = true;
    if (s->proc >= 0) {
        if ((unsigned)s->proc >= nprocs) {
            fprintf(stderr, "vmitap: %s: the guest has processes 0..%u only\n", s->text,
                    nprocs - 1);
            return false;
        }
        return add_one(rc, s, st->proc_cr3[s->proc] & ROOT_MASK, false, s->proc);
    }
    if (s->proc == SPEC_GLOBAL && rc->o->global_user)
        return add_one(rc, s, st->proc_cr3[0] & ROOT_MASK, true, -1);
    for (unsigned p = 0; p < nprocs; p++)
        if (!add_one(rc, s, st->proc_cr3[p] & ROOT_MASK, false, (int)p))
            return false;
    return true;
}

static bool install_all(run_ctx *rc)
{
    for (unsigned i = 0; i < rc->o->nspecs; i++)
        if (!rc->o->specs[i].installed && !install_spec(rc, &rc->o->specs[i]))
            return false;
    return true;
}

static int proc_of_root(const run_ctx *rc, uint64_t cr3)
{
    const vmt_guest_stats *st = guest_stats(rc);
    for (unsigned p = 0; st && p < st->nprocs && p < VMT_GUEST_MAX_PROCS; p++)
        if ((st->proc_cr3[p] & ROOT_MASK) == (cr3 & ROOT_MASK))
            return (int)p;
    return -1;
}

static double elapsed_s(const run_ctx *rc)
{
    return (double)(g_get_monotonic_time() - rc->start_us) / 1e6;
}

static void print_hit(run_ctx *rc, const vmt_tracer_hit *h)
{
    int proc = proc_of_root(rc, h->regs->cr3);
    if (rc->o->json) {
        jl_obj *j = jl_begin("hit");
        jl_double(j, "time", elapsed_s(rc));
        jl_str(j, "breakpoint", h->bp->name);
        jl_u64(j, "id", h->bp->id);
        jl_u64(j, "hit", h->bp->hits);
        jl_u64(j, "vcpu", h->vcpu);
        jl_hex(j, "rip", h->regs->rip);
        jl_hex(j, "cr3", h->regs->cr3);
        if (proc >= 0)
            jl_int(j, "process", proc);
        else
            jl_null(j, "process");
        jl_u64(j, "cpl", h->regs->cs & 3u);
        jl_end(j, stdout);
    } else {
        printf("%10.6f  hit %-24s #%-8" PRIu64 " rip %#" PRIx64 "  cr3 %#" PRIx64, elapsed_s(rc),
               h->bp->name, h->bp->hits, h->regs->rip, h->regs->cr3);
        if (proc >= 0)
            printf("  process %d", proc);
        putchar('\n');
    }
}

static void on_hit(void *user, vmt_tracer *t, const vmt_tracer_hit *h)
{
    run_ctx *rc = user;
    if (h->bp->id == rc->helper) {
        const vmt_guest_stats *st = guest_stats(rc);
        if (!st || st->nprocs == 0)
            return;
        if (!install_all(rc)) {
            rc->failed = true;
            vmt_tracer_stop(t);
        }
        vmt_tracer_remove(t, rc->helper);
        rc->helper = 0;
        return;
    }
    if (rc->o->show_hits)
        print_hit(rc, h);
}

/* The live line, on stderr while it is a terminal (stdout stays clean for
 * the table or the JSON Lines). */
static void progress_line(run_ctx *rc, bool final)
{
    if (!rc->o->progress)
        return;
    if (final) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        return;
    }
    vmt_tracer_stats s;
    vmt_tracer_stats_get(rc->t, &s);
    const vmt_guest_stats *g = guest_stats(rc);
    fprintf(stderr, "\r\033[K%6.1fs  hits %" PRIu64 "  events %" PRIu64 "  page-in %" PRIu64
            "  page-out %" PRIu64 "  round %" PRIu64,
            elapsed_s(rc), s.hits, s.events, s.page_ins, s.page_outs, g ? g->rounds : 0);
    fflush(stderr);
}

/* Boots the VM and creates the tracer; prints one line on failure. */
static bool setup(run_ctx *rc)
{
    if (!cli_kvm_check())
        return false;
    cli_opts *o = rc->o;
    vmt_kvm_opts ko = {.sz = sizeof ko, .guest_path = o->guest, .iterations = o->iterations,
                       .seed = o->seed, .pager = o->pager,
                       .flags = 0};
    /* auto: int3 on emulated execute-only pages is stealthy, and on these
     * nested hosts about 10x faster than the memory controller, which
     * single-steps every fetch from a page holding a breakpoint (see
     * docs/vmitap.md). The tracer picks int3 once the driver advertises
     * execute-only. */
    if (o->execute_only || o->controller == VMT_TRACER_CONTROLLER_AUTO)
        ko.flags |= VMT_KVM_F_EMULATE_EXECUTE_ONLY;
    if (!o->pager_given)
        ko.pager = 20;
    vmt_status st = vmt_kvm_core_new(&ko, &rc->vmi, &rc->kvm);
    if (st != VMT_OK) {
        fprintf(stderr, "vmitap: cannot boot %s: %s\n", o->guest, vmt_status_str(st));
        return false;
    }
    vmt_regs regs;
    if ((st = vmt_core_get_regs(rc->vmi, 0, &regs)) != VMT_OK) {
        fprintf(stderr, "vmitap: cannot read the vCPU: %s\n", vmt_status_str(st));
        return false;
    }
    rc->kernel_root = regs.cr3 & ROOT_MASK;
    vmt_tracer_opts to = {.sz = sizeof to, .controller = o->controller, .on_hit = on_hit,
                          .user = rc};
    if ((st = vmt_tracer_new(rc->vmi, &to, &rc->t)) != VMT_OK) {
        fprintf(stderr, "vmitap: cannot start tracing (controller %s): %s\n",
                vmt_tracer_controller_name(o->controller), vmt_status_str(st));
        return false;
    }
    return true;
}

/* User breakpoints wait for the process table: a hidden breakpoint on the
 * function that starts the first process (the table is published before
 * it runs) sets them. */
static bool arm(run_ctx *rc)
{
    if (!install_all(rc))
        return false;
    bool deferred = false;
    for (unsigned i = 0; i < rc->o->nspecs; i++)
        deferred |= needs_processes(&rc->o->specs[i]) && !rc->o->specs[i].installed;
    if (!deferred)
        return true;
    const vmt_symbol *sched = vmt_symtab_lookup(rc->syms, "sched_start");
    if (!sched) {
        fprintf(stderr, "vmitap: user-space breakpoints need the guest's process table "
                        "(the bundled guest has one)\n");
        return false;
    }
    vmt_tracer_bp_opts bo = {.sz = sizeof bo, .global = true};
    vmt_status st = vmt_tracer_add(rc->t, vmt_ctx(sched->addr, rc->kernel_root), &bo, &rc->helper);
    if (st != VMT_OK) {
        fprintf(stderr, "vmitap: cannot watch the guest's scheduler: %s\n", vmt_status_str(st));
        return false;
    }
    return true;
}

/* Runs until the guest exits, the timeout, or a signal. */
static vmt_status trace(run_ctx *rc, vmt_tracer_stop_reason *why)
{
    int64_t limit_ms = (int64_t)(rc->o->timeout_s * 1000.0);
    for (;;) {
        int64_t left = limit_ms ? limit_ms - (int64_t)(elapsed_s(rc) * 1000.0) : 0;
        if (limit_ms && left <= 0) {
            *why = VMT_TRACER_STOP_TIMEOUT;
            return VMT_OK;
        }
        vmt_tracer_run_opts ro = {.sz = sizeof ro};
        ro.timeout_ms = rc->o->progress ? 250 : 0;
        if (limit_ms && (ro.timeout_ms == 0 || left < ro.timeout_ms))
            ro.timeout_ms = left;
        vmt_status st = vmt_tracer_run(rc->t, &ro, why);
        if (st != VMT_OK)
            return st;
        if (*why != VMT_TRACER_STOP_TIMEOUT)
            return VMT_OK;
        progress_line(rc, false);
    }
}

typedef struct spec_result {
    uint64_t hits, page_outs, page_ins, relocations;
    const vmt_guest_counter *counter;
    bool compared, match;
} spec_result;

static spec_result spec_result_of(const run_ctx *rc, const bp_spec *s, bool final)
{
    spec_result r = {0};
    for (unsigned i = 0; i < s->nids; i++) {
        vmt_tracer_bp_info bi;
        if (vmt_tracer_bp_get(rc->t, s->ids[i], &bi) != VMT_OK)
            continue;
        r.hits += bi.hits;
        r.page_outs += bi.page_outs;
        r.page_ins += bi.page_ins;
        r.relocations += bi.relocations;
    }
    const vmt_guest_stats *st = guest_stats(rc);
    if (st && s->sym[0]) {
        char cname[96];
        if (s->proc >= 0)
            snprintf(cname, sizeof cname, "%s@%d", s->sym, s->proc);
        else
            snprintf(cname, sizeof cname, "%s", s->sym);
        r.counter = vmt_guest_counter_find(st, cname);
    }
    r.compared = final && r.counter;
    r.match = r.compared && r.counter->calls == r.hits;
    return r;
}

static const char *proc_label(const bp_spec *s, char *buf, size_t len)
{
    if (s->kernel)
        return "kernel";
    if (s->proc >= 0)
        snprintf(buf, len, "%d", s->proc);
    else if (s->proc == SPEC_GLOBAL && s->nids == 1)
        snprintf(buf, len, "global");
    else
        snprintf(buf, len, "all(%u)", s->nids);
    return buf;
}

/* JSON "scope": where the breakpoint applies. */
static const char *scope_of(const bp_spec *s)
{
    if (s->kernel)
        return "kernel";
    if (s->proc >= 0)
        return "process";
    if (s->proc == SPEC_GLOBAL && s->nids == 1)
        return "global";
    return "each";
}

/* Prints the per-breakpoint table and returns the number of mismatches. */
static unsigned print_table(const run_ctx *rc, bool final)
{
    unsigned mismatches = 0;
    if (!rc->o->json && rc->o->nspecs)
        printf("\n%-28s %-18s %-8s %10s %10s %7s %7s %6s\n", "BREAKPOINT", "ADDRESS", "PROCESS",
               "HITS", "GUEST", "PG-OUT", "PG-IN", "MOVED");
    for (unsigned i = 0; i < rc->o->nspecs; i++) {
        const bp_spec *s = &rc->o->specs[i];
        spec_result r = spec_result_of(rc, s, final);
        mismatches += r.compared && !r.match;
        char plbuf[32], guest[32];
        const char *pl = proc_label(s, plbuf, sizeof plbuf);
        if (rc->o->json) {
            jl_obj *j = jl_begin("breakpoint");
            jl_str(j, "breakpoint", s->text);
            jl_hex(j, "address", s->va);
            jl_str(j, "scope", scope_of(s));
            if (s->proc >= 0)
                jl_int(j, "process", s->proc);
            else
                jl_null(j, "process");
            jl_u64(j, "breakpoints", s->nids);
            jl_u64(j, "hits", r.hits);
            if (r.counter)
                jl_u64(j, "guest_calls", r.counter->calls);
            else
                jl_null(j, "guest_calls");
            jl_u64(j, "page_outs", r.page_outs);
            jl_u64(j, "page_ins", r.page_ins);
            jl_u64(j, "relocations", r.relocations);
            if (r.compared)
                jl_bool(j, "match", r.match);
            else
                jl_null(j, "match");
            jl_end(j, stdout);
            continue;
        }
        if (r.counter)
            snprintf(guest, sizeof guest, "%" PRIu64, r.counter->calls);
        else
            snprintf(guest, sizeof guest, "-");
        printf("%-28s %#-18" PRIx64 " %-8s %10" PRIu64 " %10s %7" PRIu64 " %7" PRIu64 " %6" PRIu64
               "  %s\n",
               s->text, s->va, pl, r.hits, guest, r.page_outs, r.page_ins, r.relocations,
               !r.compared ? "" : r.match ? "ok" : "MISMATCH");
    }
    return mismatches;
}

static void print_summary(const run_ctx *rc, vmt_tracer_stop_reason why, unsigned mismatches,
                          bool final)
{
    vmt_tracer_stats s;
    vmt_tracer_stats_get(rc->t, &s);
    const vmt_guest_stats *g = guest_stats(rc);
    vmt_kvm_state state = vmt_kvm_get_state(rc->kvm);
    const char *ctl = vmt_tracer_controller_name(vmt_tracer_controller_used(rc->t));
    bool stealthy = vmt_tracer_is_stealthy(rc->t);
    if (rc->o->json) {
        jl_obj *j = jl_begin("summary");
        jl_str(j, "stop", interrupted ? "interrupted" : vmt_tracer_stop_reason_str(why));
        jl_double(j, "seconds", elapsed_s(rc));
        jl_str(j, "controller", ctl);
        jl_bool(j, "stealthy", stealthy);
        jl_u64(j, "hits", s.hits);
        jl_u64(j, "events", s.events);
        jl_u64(j, "reinjected", s.reinjected);
        jl_u64(j, "page_ins", s.page_ins);
        jl_u64(j, "page_outs", s.page_outs);
        jl_u64(j, "stealth_reads", s.stealth_reads);
        jl_u64(j, "emulated_step_overs", s.emulated);
        if (state == VMT_KVM_EXITED)
            jl_u64(j, "guest_exit_code", vmt_kvm_exit_code(rc->kvm));
        else
            jl_null(j, "guest_exit_code");
        if (g) {
            jl_u64(j, "guest_rounds", g->rounds);
            jl_u64(j, "guest_page_outs", g->page_outs);
            jl_u64(j, "guest_page_ins", g->page_ins);
            jl_u64(j, "guest_relocations", g->relocations);
            jl_u64(j, "selfcheck_mismatches", g->selfcheck_mismatches);
        }
        jl_bool(j, "compared", final);
        jl_u64(j, "mismatches", mismatches);
        jl_end(j, stdout);
        return;
    }
    printf("\n");
    if (state == VMT_KVM_EXITED)
        printf("guest exited with code %u after %.2f s", vmt_kvm_exit_code(rc->kvm),
               elapsed_s(rc));
    else
        printf("stopped (%s) after %.2f s", interrupted ? "interrupted" : vmt_tracer_stop_reason_str(why),
               elapsed_s(rc));
    if (g)
        printf(": %" PRIu64 " rounds, %" PRIu64 " page-outs, %" PRIu64 " page-ins, %" PRIu64
               " relocations, self-check mismatches %" PRIu64,
               g->rounds, g->page_outs, g->page_ins, g->relocations, g->selfcheck_mismatches);
    printf("\ncontroller %s (%s); %" PRIu64 " hits, %" PRIu64 " events, %" PRIu64
           " reinjected int3\n",
           ctl, stealthy ? "guest reads see the original code" : "guest reads may see int3 bytes",
           s.hits, s.events, s.reinjected);
    if (!rc->o->nspecs)
        printf("no breakpoints (add some with -b SYMBOL; 'vmitap symbols' lists them)\n");
    else if (!final)
        printf("counters not compared: the run did not finish\n");
    else if (mismatches)
        printf("MISMATCH: %u breakpoint(s) differ from the guest's own counters\n", mismatches);
    else
        printf("every breakpoint with a guest counter matches it\n");
    if (state == VMT_KVM_EXITED && vmt_kvm_exit_code(rc->kvm) != 0)
        printf("the guest reported a failure: exit code %u%s\n", vmt_kvm_exit_code(rc->kvm),
               g && g->selfcheck_mismatches ? " (its self-check saw changed code)" : "");
}

int cmd_run(cli_opts *o, vmt_symtab *syms)
{
    run_ctx rc = {.o = o, .syms = syms, .start_us = g_get_monotonic_time()};
    int code = CLI_EXIT_RUNTIME;
    vmt_tracer_stop_reason why = VMT_TRACER_STOP_NONE;
    /* Handlers first: a signal while the guest boots must count too (and a
     * background job inherits SIGINT ignored until a handler is set). */
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (!setup(&rc) || !arm(&rc))
        goto out;
    signal_tracer = rc.t;
    if (interrupted)
        vmt_tracer_stop(rc.t); /* it came before the tracer existed */
    vmt_status st = trace(&rc, &why);
    progress_line(&rc, true);
    signal_tracer = NULL;
    vmt_status dst = vmt_tracer_detach(rc.t);
    if (o->verbose >= 2 && rc.kvm) /* what the guest printed, e.g. its self-check lines */
        fprintf(stderr, "%s", vmt_kvm_console(rc.kvm, NULL));
    if (rc.failed)
        goto out;
    if (st != VMT_OK) {
        if (st == VMT_E_GUEST_CRASHED)
            fprintf(stderr, "vmitap: the guest crashed: %s\n", vmt_kvm_crash_reason(rc.kvm));
        else
            fprintf(stderr, "vmitap: tracing failed: %s\n", vmt_status_str(st));
        goto out;
    }
    if (dst != VMT_OK) {
        fprintf(stderr, "vmitap: detaching failed: %s\n", vmt_status_str(dst));
        goto out;
    }
    bool final = why == VMT_TRACER_STOP_GUEST_EXITED && vmt_kvm_get_state(rc.kvm) == VMT_KVM_EXITED;
    unsigned mismatches = print_table(&rc, final);
    print_summary(&rc, why, mismatches, final);
    fflush(stdout);
    if (interrupted)
        code = CLI_EXIT_INTERRUPTED;
    else if (mismatches)
        code = CLI_EXIT_MISMATCH;
    else if (final && vmt_kvm_exit_code(rc.kvm) != 0)
        code = CLI_EXIT_GUEST_FAIL;
    else
        code = CLI_EXIT_OK;
out:
    vmt_tracer_free(rc.t);
    vmt_core_free(rc.vmi);
    return code;
}
