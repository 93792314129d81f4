// SPDX-License-Identifier: MIT
/* A traced Linux guest session: see linux_session.h. */
#define _GNU_SOURCE
#include "linux/linux_session.h"

#include <fcntl.h>
#include <glib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tracer/symbols.h"
#include "vmitap/log.h"

#define ROOT_MASK 0x000ffffffffff000ull
#define THREAD_MASK (~(uint64_t)0x3fff) /* x86-64 kernel stacks: 16 KiB, aligned */
#define PT_REGS_DI 112                  /* offsetof(struct pt_regs, di) */
#define WAIT_MARKER "VMT-INIT: waiting"
#define DONE_MARKER "VMT-INIT: done"
#define DEFAULT_TIMEOUT_MS (30ll * 60 * 1000)
#define SLICE_MS 200

/* Keys of the session's own breakpoints (the traced functions use 0..n-1). */
enum { KEY_EXECVE = 1000, KEY_NEW_EXEC = 1001, KEY_PROBE = 1002 };

typedef struct lx_ctx {
    const lx_opts *o;
    lx_result *res;
    vmt_core *vmi;
    vmt_kvm *kvm;
    vmt_tracer *t;
    vmt_symtab *syms;
    uint64_t probe_entry;    /* e_entry of the busybox binary */
    uint64_t exec_task;      /* kernel stack of the task exec'ing the probe, 0: none */
    int openat_index;        /* index of do_sys_openat2 in o->kfuncs, -1 */
    vmt_tracer_bp_id exec_ids[2];
    int64_t t0_us;
} lx_ctx;

static double since(const lx_ctx *c) { return (double)(g_get_monotonic_time() - c->t0_us) / 1e6; }

static void path_of(char *out, size_t len, const char *dir, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

bool lx_files_present(const char *dir, char *why, size_t len)
{
    static const char *const need[] = {"vmlinux", "System.map", "initramfs.cpio", "busybox",
                                       "workload-files"};
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
        char p[PATH_MAX];
        path_of(p, sizeof p, dir, need[i]);
        if (access(p, R_OK) != 0) {
            if (why)
                snprintf(why, len, "%s is missing (run scripts/fetch-linux.sh %s)", p, dir);
            return false;
        }
    }
    return true;
}

unsigned lx_workload_files(const char *dir)
{
    char p[PATH_MAX];
    path_of(p, sizeof p, dir, "workload-files");
    FILE *f = fopen(p, "re");
    unsigned n = 0;
    if (f) {
        if (fscanf(f, "%u", &n) != 1)
            n = 0;
        fclose(f);
    }
    return n;
}

/* e_entry of a static ELF executable (busybox-static is stripped: its
 * entry point is the one address we know in it). */
static bool elf_entry(const char *path, uint64_t *out)
{
    uint8_t h[32];
    FILE *f = fopen(path, "re");
    bool ok = f && fread(h, 1, sizeof h, f) == sizeof h && memcmp(h, "\177ELF", 4) == 0 && h[4] == 2;
    if (f)
        fclose(f);
    if (ok)
        memcpy(out, h + 24, 8);
    return ok;
}

/* A NUL-terminated user string, read through root; "" when unreadable. */
static void read_user_str(vmt_core *vmi, uint64_t root, uint64_t va, char *buf, size_t len)
{
    size_t n = len - 1, to_page = VMT_PAGE_SIZE - (va & (VMT_PAGE_SIZE - 1));
    if (n > to_page)
        n = to_page;
    buf[0] = 0;
    if (vmt_core_read_va(vmi, vmt_ctx(va, root), buf, n) != VMT_OK) {
        buf[0] = 0;
        return;
    }
    buf[n] = 0;
}

/* ---- hits ---- */

static void on_execve(lx_ctx *c, const vmt_tracer_hit *h)
{
    uint64_t root = h->regs->cr3 & ROOT_MASK, uptr = 0;
    char name[64];
    if (vmt_core_read_va(c->vmi, vmt_ctx(h->regs->rdi + PT_REGS_DI, root), &uptr, 8) != VMT_OK)
        return;
    read_user_str(c->vmi, root, uptr, name, sizeof name);
    if (strcmp(name, LX_PROBE_PATH) == 0) {
        c->res->probe_execs++;
        c->exec_task = h->regs->rsp & THREAD_MASK;
    }
}

/* setup_new_exec runs after begin_new_exec installed the new mm: CR3 is the
 * new process's root, and nothing of the program is mapped yet. */
static void on_new_exec(lx_ctx *c, vmt_tracer *t, const vmt_tracer_hit *h)
{
    if (!c->exec_task || (h->regs->rsp & THREAD_MASK) != c->exec_task || c->res->probe_inserted)
        return;
    c->exec_task = 0;
    uint64_t root = h->regs->cr3 & ROOT_MASK;
    vmt_pa pa;
    c->res->probe_root = root;
    c->res->probe_was_pending = vmt_core_translate(c->vmi, vmt_ctx(c->probe_entry, root), &pa) != VMT_OK;
    VMT_OPTS(vmt_tracer_bp_opts, bo, .key = KEY_PROBE, .name = "busybox:entry@" LX_PROBE_PATH);
    vmt_status st = vmt_tracer_add(t, vmt_ctx(c->probe_entry, root), &bo, NULL);
    if (st != VMT_OK) {
        vmt_log(VMT_LOG_ERROR, "linux: cannot add the probe's breakpoint: %s", vmt_status_str(st));
        return;
    }
    c->res->probe_inserted = true;
}

static void on_probe(lx_ctx *c, vmt_tracer *t, const vmt_tracer_hit *h)
{
    lx_result *r = c->res;
    if (r->probe_hits++ == 0) {
        r->probe_hit_rip = h->regs->rip;
        r->probe_hit_root = h->regs->cr3 & ROOT_MASK;
        r->probe_hit_cpl = h->regs->cs & 3u;
    }
    if (c->o->detach_after_probe)
        vmt_tracer_stop(t);
}

static void on_kernel(lx_ctx *c, const vmt_tracer_hit *h)
{
    size_t i = (size_t)h->bp->key;
    c->res->kfunc_hits[i]++;
    char path[128];
    const char *p = NULL;
    if ((int)i == c->openat_index) { /* do_sys_openat2(dfd, filename, how) */
        read_user_str(c->vmi, h->regs->cr3 & ROOT_MASK, h->regs->rsi, path, sizeof path);
        p = path;
        if (strncmp(path, LX_WORKLOAD_PREFIX, strlen(LX_WORKLOAD_PREFIX)) == 0)
            c->res->openat_workload++;
    }
    if (c->o->on_kernel_hit)
        c->o->on_kernel_hit(c->o->user, c->o->kfuncs[i], h->regs, p);
}

static void on_hit(void *user, vmt_tracer *t, const vmt_tracer_hit *h)
{
    lx_ctx *c = user;
    switch (h->bp->key) {
    case KEY_EXECVE: on_execve(c, h); break;
    case KEY_NEW_EXEC: on_new_exec(c, t, h); break;
    case KEY_PROBE: on_probe(c, t, h); break;
    default:
        if (h->bp->key < c->o->nkfuncs)
            on_kernel(c, h);
    }
}

/* ---- phases ---- */

static vmt_status boot(lx_ctx *c)
{
    const lx_opts *o = c->o;
    char kernel[PATH_MAX], initrd[PATH_MAX], cmdline[1024];
    path_of(kernel, sizeof kernel, o->dir, "vmlinux");
    path_of(initrd, sizeof initrd, o->dir, "initramfs.cpio");
    snprintf(cmdline, sizeof cmdline, "%s vmt.wait=1%s%s", vmt_kvm_linux_default_cmdline,
             o->cmdline_extra ? " " : "", o->cmdline_extra ? o->cmdline_extra : "");
    VMT_OPTS(vmt_kvm_opts, ko, .ram_bytes = o->ram_bytes ? o->ram_bytes : 256ull << 20,
             .kernel_path = kernel, .initrd_path = initrd, .cmdline = cmdline);
    return vmt_kvm_core_new(&ko, &c->vmi, &c->kvm);
}

static int64_t left_ms(const lx_ctx *c)
{
    int64_t limit = c->o->timeout_ms ? c->o->timeout_ms : DEFAULT_TIMEOUT_MS;
    return limit - (g_get_monotonic_time() - c->t0_us) / 1000;
}

static bool console_has(const lx_ctx *c, const char *s)
{
    return strstr(vmt_kvm_console(c->kvm, NULL), s) != NULL;
}

/* Runs unobserved until the console shows marker (true), or the guest
 * ends or the time is up (false). */
static bool run_until_marker(lx_ctx *c, const char *marker)
{
    while (!console_has(c, marker)) {
        int64_t left = left_ms(c);
        if (left <= 0)
            return false;
        vmt_status st = vmt_kvm_run(c->kvm, (int)(left < SLICE_MS ? left : SLICE_MS));
        if (st != VMT_E_TIMEOUT && st != VMT_OK)
            return console_has(c, marker);
    }
    return true;
}

static vmt_status add_kernel_bp(lx_ctx *c, const char *name, uint64_t key, vmt_pa root, vmt_tracer_bp_id *id)
{
    const vmt_symbol *s = vmt_symtab_lookup(c->syms, name);
    if (!s) {
        vmt_log(VMT_LOG_ERROR, "linux: no symbol %s in System.map", name);
        return VMT_E_INVALID;
    }
    VMT_OPTS(vmt_tracer_bp_opts, bo, .global = true, .key = key, .name = name);
    return vmt_tracer_add(c->t, vmt_ctx(s->addr, root), &bo, id);
}

static vmt_status attach(lx_ctx *c)
{
    const lx_opts *o = c->o;
    vmt_regs regs;
    vmt_status st = vmt_core_get_regs(c->vmi, 0, &regs);
    if (st != VMT_OK)
        return st;
    vmt_pa root = regs.cr3 & ROOT_MASK; /* any root maps the kernel */
    VMT_OPTS(vmt_tracer_opts, to, .controller = o->controller, .on_hit = on_hit, .user = c);
    if ((st = vmt_tracer_new(c->vmi, &to, &c->t)) != VMT_OK)
        return st;
    for (size_t i = 0; i < o->nkfuncs && st == VMT_OK; i++) {
        if (strcmp(o->kfuncs[i], "do_sys_openat2") == 0)
            c->openat_index = (int)i;
        st = add_kernel_bp(c, o->kfuncs[i], i, root, NULL);
    }
    if (st == VMT_OK && o->user_probe) {
        st = add_kernel_bp(c, "__x64_sys_execve", KEY_EXECVE, root, &c->exec_ids[0]);
        if (st == VMT_OK)
            st = add_kernel_bp(c, "setup_new_exec", KEY_NEW_EXEC, root, &c->exec_ids[1]);
    }
    return st;
}

/* Traces until the guest ends, the time is up, or (detach_after_probe)
 * the probe fired. */
static vmt_status trace(lx_ctx *c)
{
    for (;;) {
        int64_t left = left_ms(c);
        if (left <= 0)
            return VMT_OK;
        VMT_OPTS(vmt_tracer_run_opts, ro, .timeout_ms = left);
        vmt_tracer_stop_reason why;
        vmt_status st = vmt_tracer_run(c->t, &ro, &why);
        if (st == VMT_E_GUEST_CRASHED || st == VMT_E_GUEST_EXITED)
            return VMT_OK;
        if (st != VMT_OK)
            return st;
        if (why == VMT_TRACER_STOP_GUEST_EXITED || why == VMT_TRACER_STOP_TIMEOUT)
            return VMT_OK;
        if (why == VMT_TRACER_STOP_REQUESTED && c->o->detach_after_probe && c->res->probe_hits)
            return VMT_OK;
    }
}

static void finish(lx_ctx *c)
{
    lx_result *r = c->res;
    r->state = vmt_kvm_get_state(c->kvm);
    snprintf(r->crash, sizeof r->crash, "%s", vmt_kvm_crash_reason(c->kvm));
    r->total_s = since(c);
    r->console = strdup(vmt_kvm_console(c->kvm, NULL));
    r->stats.sz = sizeof r->stats;
    if (c->t)
        vmt_tracer_stats_get(c->t, &r->stats);
}

static vmt_status session(lx_ctx *c)
{
    const lx_opts *o = c->o;
    lx_result *r = c->res;
    vmt_status st = boot(c);
    if (st != VMT_OK)
        return st;
    if (!(r->reached_init = run_until_marker(c, WAIT_MARKER)))
        return VMT_OK;
    r->boot_s = since(c);
    if (o->trace && (st = attach(c)) != VMT_OK)
        return st;
    if ((st = vmt_kvm_serial_input(c->kvm, "go\n", 3)) != VMT_OK)
        return st;
    double go = since(c);
    if (o->trace) {
        if ((st = trace(c)) != VMT_OK)
            return st;
        if (o->detach_after_probe && r->probe_hits && vmt_kvm_get_state(c->kvm) == VMT_KVM_RUNNING) {
            bool done_before = console_has(c, DONE_MARKER);
            if ((st = vmt_tracer_detach(c->t)) != VMT_OK)
                return st;
            r->detached = true;
            r->done_after_detach = !done_before && run_until_marker(c, DONE_MARKER);
        }
    }
    r->workload_done = run_until_marker(c, DONE_MARKER);
    if (r->workload_done)
        r->workload_s = since(c) - go;
    /* on to the power-off */
    while (vmt_kvm_get_state(c->kvm) == VMT_KVM_RUNNING && left_ms(c) > 0)
        vmt_kvm_run(c->kvm, SLICE_MS);
    return VMT_OK;
}

vmt_status lx_run(const lx_opts *o, lx_result *res)
{
    if (!o || !res || !o->dir || o->nkfuncs > LX_MAX_KFUNCS)
        return VMT_E_INVALID;
    memset(res, 0, sizeof *res);
    lx_ctx c = {.o = o, .res = res, .openat_index = -1, .t0_us = g_get_monotonic_time()};
    char p[PATH_MAX];
    path_of(p, sizeof p, o->dir, "System.map");
    vmt_status st = vmt_symtab_load_system_map(p, &c.syms);
    path_of(p, sizeof p, o->dir, "busybox");
    if (st == VMT_OK && o->user_probe && !elf_entry(p, &c.probe_entry)) {
        vmt_log(VMT_LOG_ERROR, "linux: %s is not a 64-bit ELF", p);
        st = VMT_E_INVALID;
    }
    if (st == VMT_OK)
        st = session(&c);
    if (c.kvm)
        finish(&c);
    vmt_tracer_free(c.t);
    vmt_core_free(c.vmi);
    vmt_symtab_free(c.syms);
    return st;
}
