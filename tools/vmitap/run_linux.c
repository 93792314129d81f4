// SPDX-License-Identifier: MIT
/* linux: vmitap run --linux DIR — trace Debian's kernel and a process of
 * its initramfs (src/linux/linux_session.h does the work). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linux/linux_session.h"
#include "tools/vmitap/cli.h"

typedef struct show_ctx {
    const cli_opts *o;
} show_ctx;

static void show_hit(void *user, const char *func, const vmt_regs *regs, const char *path)
{
    const show_ctx *s = user;
    if (!s->o->show_hits)
        return;
    if (s->o->json) {
        printf("{\"type\":\"hit\",\"breakpoint\":");
        json_str(stdout, func);
        printf(",\"rip\":\"%#" PRIx64 "\",\"cr3\":\"%#" PRIx64 "\"", regs->rip, regs->cr3);
        if (path) {
            printf(",\"path\":");
            json_str(stdout, path);
        }
        printf("}\n");
    } else {
        printf("hit %-24s rip %#" PRIx64 " cr3 %#" PRIx64 "%s%s\n", func, regs->rip, regs->cr3,
               path ? "  " : "", path ? path : "");
    }
}

static const char *state_str(const lx_result *r)
{
    switch (r->state) {
    case VMT_KVM_EXITED: return "powered off";
    case VMT_KVM_CRASHED: return "crashed";
    default: return "still running (timeout)";
    }
}

static void print_text(const cli_opts *o, const lx_opts *lo, const lx_result *r, unsigned nfiles)
{
    if (o->linux_console && r->console)
        printf("---- guest console ----\n%s\n---- end of console ----\n", r->console);
    printf("guest %s after %.2f s%s%s\n", state_str(r), r->total_s, r->state == VMT_KVM_CRASHED ? ": " : "",
           r->state == VMT_KVM_CRASHED ? r->crash : "");
    printf("boot to init: %s (%.2f s); workload: %s (%.2f s)\n", r->reached_init ? "yes" : "NO", r->boot_s,
           r->workload_done ? "done" : "NOT done", r->workload_s);
    if (!lo->trace)
        return;
    printf("\n%-28s %10s\n", "KERNEL FUNCTION", "HITS");
    for (size_t i = 0; i < lo->nkfuncs; i++)
        printf("%-28s %10" PRIu64 "\n", lo->kfuncs[i], r->kfunc_hits[i]);
    for (size_t i = 0; i < lo->nkfuncs; i++)
        if (strcmp(lo->kfuncs[i], "do_sys_openat2") == 0)
            printf("do_sys_openat2 on %s*: %" PRIu64 " (the workload opens %u files twice: %u)\n",
                   LX_WORKLOAD_PREFIX, r->openat_workload, nfiles, 2 * nfiles);
    if (lo->user_probe) {
        printf("\nuser probe %s: exec seen %" PRIu64 "x, root %#" PRIx64 ", inserted %s (%s), hits %" PRIu64,
               LX_PROBE_PATH, r->probe_execs, r->probe_root, r->probe_inserted ? "yes" : "no",
               r->probe_was_pending ? "pending: entry page not present" : "page present",
               r->probe_hits);
        if (r->probe_hits)
            printf(" at rip %#" PRIx64 " cpl %u", r->probe_hit_rip, r->probe_hit_cpl);
        printf("\n");
        if (r->detached)
            printf("detached after the probe fired; the guest %s its done marker afterwards\n",
                   r->done_after_detach ? "printed" : "did NOT print");
    }
    printf("tracer: %" PRIu64 " events, %" PRIu64 " hits, %" PRIu64 " reinjected, %" PRIu64
           " page-ins, %" PRIu64 " page-outs\n",
           r->stats.events, r->stats.hits, r->stats.reinjected, r->stats.page_ins, r->stats.page_outs);
}

static void print_json(const lx_opts *lo, const lx_result *r)
{
    printf("{\"type\":\"summary\",\"state\":\"%s\",\"seconds\":%.3f,\"boot_s\":%.3f,\"workload_s\":%.3f,"
           "\"reached_init\":%s,\"workload_done\":%s,\"openat_workload\":%" PRIu64 ",\"probe_hits\":%" PRIu64
           ",\"detached\":%s,\"done_after_detach\":%s,\"hits\":{",
           state_str(r), r->total_s, r->boot_s, r->workload_s, r->reached_init ? "true" : "false",
           r->workload_done ? "true" : "false", r->openat_workload, r->probe_hits,
           r->detached ? "true" : "false", r->done_after_detach ? "true" : "false");
    for (size_t i = 0; i < lo->nkfuncs; i++) {
        printf(i ? "," : "");
        json_str(stdout, lo->kfuncs[i]);
        printf(":%" PRIu64, r->kfunc_hits[i]);
    }
    printf("}}\n");
}

int cmd_run_linux(cli_opts *o, const char **breaks, unsigned nbreaks)
{
    if (!cli_kvm_check())
        return CLI_EXIT_RUNTIME;
    char why[512];
    if (!lx_files_present(o->linux_dir, why, sizeof why)) {
        fprintf(stderr, "vmitap: %s\n", why);
        return CLI_EXIT_RUNTIME;
    }
    if (nbreaks > LX_MAX_KFUNCS) {
        fprintf(stderr, "vmitap: at most %d kernel functions with --linux\n", LX_MAX_KFUNCS);
        return CLI_EXIT_USAGE;
    }
    show_ctx sc = {.o = o};
    lx_opts lo = {.dir = o->linux_dir, .nkfuncs = nbreaks, .trace = !o->linux_baseline,
                  .user_probe = !o->linux_no_probe && !o->linux_baseline, .controller = o->controller,
                  .timeout_ms = (int64_t)(o->timeout_s * 1000.0), .on_kernel_hit = show_hit, .user = &sc};
    for (unsigned i = 0; i < nbreaks; i++)
        lo.kfuncs[i] = breaks[i];
    if (vmt_kvm_emulates_kernel_mode())
        fprintf(stderr, "vmitap: note: this host's KVM (kvm_pvm) emulates guest kernel code one "
                        "instruction at a time: the Linux boot takes minutes\n");
    lx_result r;
    vmt_status st = lx_run(&lo, &r);
    if (st != VMT_OK) {
        fprintf(stderr, "vmitap: Linux session failed: %s (-v for details)\n", vmt_status_str(st));
        free(r.console);
        return st == VMT_E_INVALID ? CLI_EXIT_USAGE : CLI_EXIT_RUNTIME;
    }
    if (o->json)
        print_json(&lo, &r);
    else
        print_text(o, &lo, &r, lx_workload_files(o->linux_dir));
    int code = r.state == VMT_KVM_EXITED && r.workload_done ? CLI_EXIT_OK : CLI_EXIT_RUNTIME;
    free(r.console);
    return code;
}
