// SPDX-License-Identifier: MIT
/* A traced Linux guest: boots the kernel and initramfs that
 * scripts/fetch-linux.sh prepared on the KVM micro-VM, lets the init
 * script reach its "waiting" point unobserved, attaches a tracer, and
 * traces
 *   - kernel functions by name (System.map), as global breakpoints;
 *   - a user-space breakpoint at the busybox entry point in the probe
 *     process (/vmt/uname), inserted pending before that process has any
 *     memory: its page-table root is learned from the kernel (a breakpoint
 *     on __x64_sys_execve notes the exec of /vmt/uname, one on
 *     setup_new_exec, which runs right after the new mm is installed,
 *     reads CR3 in the same task), and the page-table monitor arms the
 *     breakpoint when the kernel maps the entry page;
 * then sends the go line, and reports. Used by `vmitap run --linux` and
 * the Linux end-to-end tests. Internal (not installed). */
#ifndef VMITAP_LINUX_SESSION_H
#define VMITAP_LINUX_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmitap/kvm.h"
#include "vmitap/tracer.h"

#define LX_MAX_KFUNCS 16
#define LX_PROBE_PATH "/vmt/uname"
#define LX_WORKLOAD_PREFIX "/vmt/f" /* files the init script's workload opens */

typedef struct lx_opts {
    const char *dir;            /* what scripts/fetch-linux.sh made */
    const char *kfuncs[LX_MAX_KFUNCS]; /* kernel functions to trace */
    size_t nkfuncs;
    bool trace;                 /* false: no tracer at all (baseline) */
    bool user_probe;            /* the pending user breakpoint in the probe */
    bool detach_after_probe;    /* detach once it fired; the guest runs on */
    vmt_tracer_controller controller;
    int64_t timeout_ms;         /* for the whole run; 0: 30 minutes */
    uint64_t ram_bytes;         /* 0: 256 MiB */
    const char *cmdline_extra;  /* appended to the default command line */
    /* Called for every hit of a traced kernel function (optional). path
     * is the file name when the function is do_sys_openat2, else NULL. */
    void (*on_kernel_hit)(void *user, const char *func, const vmt_regs *regs, const char *path);
    void *user;
} lx_opts;

typedef struct lx_result {
    bool reached_init;       /* the init script printed its waiting marker */
    bool workload_done;      /* ... and its done marker */
    vmt_kvm_state state;     /* at the end */
    char crash[256];         /* when state is CRASHED */
    double boot_s;           /* VM start -> init waiting */
    double workload_s;       /* go line -> init done marker */
    double total_s;
    uint64_t kfunc_hits[LX_MAX_KFUNCS];
    uint64_t openat_workload; /* do_sys_openat2 hits on LX_WORKLOAD_PREFIX* */
    uint64_t probe_execs;     /* execve of LX_PROBE_PATH seen */
    uint64_t probe_root;      /* its page-table root, learned at setup_new_exec */
    bool probe_inserted;      /* the user breakpoint was added (pending) */
    bool probe_was_pending;   /* ... and its page was not present then */
    uint64_t probe_hits;
    uint64_t probe_hit_rip, probe_hit_root;
    unsigned probe_hit_cpl;
    bool detached;            /* detached after the probe fired */
    bool done_after_detach;   /* the done marker came after the detach */
    vmt_tracer_stats stats;
    char *console;            /* the whole serial output (free() it) */
} lx_result;

/* Paths of the files in dir; false if one is missing. */
bool lx_files_present(const char *dir, char *why, size_t len);
/* The workload's file count that fetch-linux.sh wrote (0 if unreadable). */
unsigned lx_workload_files(const char *dir);

/* Runs one session. VMT_OK when it ran to the end it could reach (see
 * res: the guest may still have crashed or timed out); an error when it
 * could not start. res->console is always set (or NULL on early errors). */
vmt_status lx_run(const lx_opts *o, lx_result *res);

#endif /* VMITAP_LINUX_SESSION_H */
