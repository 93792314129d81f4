/* linux: vmitap run --linux DIR — trace Debian's kernel and a process of
 * its initramfs (src/linux/linux_session.h does the work). */
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "linux/linux_session.h"
#include "tools/vmitap/cli.h"

typedef struct show_ctx {
    const cli_opts *o;
    int64_t start_us;
} show_ctx;

static void show_hit(void *user, const char *func, const vmt_regs *regs, const char *path)
{
    const show_ctx *s = user;
    if (!s->o->show_hits)
        return;
    if (s->o->json) {
        jl_obj *j = jl_begin("hit");
        jl_double(j, "time", (double)(g_get_monotonic_time() - s->start_us) / 1e6);
        jl_str(j, "breakpoint", func);
        jl_u64(j, "vcpu", 0);
        jl_hex(j, "rip", regs->rip);
        jl_hex(j, "cr3", regs->cr3);
        jl_null(j, "process"); /* Linux processes are not numbered here */
        jl_u64(j, "cpl", regs->cs & 3u);
        if (path)
            jl_str(j, "path", path);
        jl_end(j, stdout);
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
    jl_obj *j = jl_begin("summary");
    jl_str(j, "state", state_str(r));
    jl_double(j, "seconds", r->total_s);
    jl_double(j, "boot_s", r->boot_s);
    jl_double(j, "workload_s", r->workload_s);
    jl_bool(j, "reached_init", r->reached_init);
    jl_bool(j, "workload_done", r->workload_done);
    jl_u64(j, "openat_workload", r->openat_workload);
    jl_u64(j, "probe_hits", r->probe_hits);
    jl_bool(j, "detached", r->detached);
    jl_bool(j, "done_after_detach", r->done_after_detach);
    jl_begin_member_object(j, "kernel_hits");
    for (size_t i = 0; i < lo->nkfuncs; i++)
        jl_u64(j, lo->kfuncs[i], r->kfunc_hits[i]);
    jl_end_member_object(j);
    jl_end(j, stdout);
}

/* Every -b names a kernel function of DIR/System.map; checked before the
 * boot, with the closest names when one is unknown. Returns an exit code,
 * or -1 when all are known. */
static int check_kfuncs(const cli_opts *o, const char **breaks, unsigned nbreaks)
{
    if (nbreaks > LX_MAX_KFUNCS) {
        cli_usage_error("at most %d kernel functions with --linux", LX_MAX_KFUNCS);
        return CLI_EXIT_USAGE;
    }
    for (unsigned i = 0; i < nbreaks; i++)
        if (!breaks[i][0] || strpbrk(breaks[i], "+@") || isdigit((unsigned char)breaks[i][0])) {
            cli_usage_error("with --linux, -b takes kernel function names, not '%s'", breaks[i]);
            return CLI_EXIT_USAGE;
        }
    char why[512];
    if (!lx_files_present(o->linux_dir, why, sizeof why)) {
        fprintf(stderr, "vmitap: %s\n", why);
        return CLI_EXIT_RUNTIME;
    }
    vmt_symtab *map;
    if (!cli_load_system_map(o->linux_dir, &map))
        return CLI_EXIT_RUNTIME;
    int rc = -1;
    for (unsigned i = 0; i < nbreaks && rc < 0; i++) {
        if (vmt_symtab_lookup(map, breaks[i]))
            continue;
        char hint[256];
        cli_suggest(map, breaks[i], hint, sizeof hint);
        fprintf(stderr, "vmitap: unknown kernel function '%s' in %s/System.map%s\n", breaks[i],
                o->linux_dir, hint);
        rc = CLI_EXIT_USAGE;
    }
    vmt_symtab_free(map);
    return rc;
}

int cmd_run_linux(cli_opts *o, const char **breaks, unsigned nbreaks)
{
    int rc = check_kfuncs(o, breaks, nbreaks);
    if (rc >= 0)
        return rc;
    if (!cli_kvm_check())
        return CLI_EXIT_RUNTIME;
    show_ctx sc = {.o = o, .start_us = g_get_monotonic_time()};
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
