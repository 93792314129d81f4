// SPDX-License-Identifier: MIT
/* vmitap — the tracer: a batteries-included breakpoint session.
 *
 * A tracer wires one private view, a breakpoint manager (bpm) and a
 * page-table monitor (ptm) to a vmt_core, and runs the event loop that
 * every VMI tool otherwise writes by hand:
 *
 * - a hit calls the application's callback, then steps over the trap:
 *   by emulating the instruction under it when it is a simple one, else by
 *   running it in the default view (where the original code lives) and
 *   returning the vCPU to the session's view;
 * - a guest read of a page that is execute-only in the session's view is
 *   served with the original bytes (one instruction in the default view);
 * - a write to a monitored page-table entry is single-stepped in the
 *   default view, then the ptm turns it into page-in / page-out events that
 *   the bpm applies (breakpoints go pending when their page leaves, and are
 *   re-armed, possibly in another frame, when it comes back);
 * - (int3 controller) a write to a page holding breakpoints goes to the
 *   guest's own frame (one instruction in the default view), then the
 *   shadow copy is rebuilt from it; a breakpoint whose instruction was
 *   overwritten is reported to vmt_tracer_set_overwrite_fn's callback and
 *   dropped or re-armed (docs/coherence.md);
 * - an int3 that is not one of ours is reinjected into the guest.
 *
 * The tracer never prints; diagnostics go through vmt_log(). It does not
 * own the core. Breakpoints may be added and removed before vmt_tracer_run,
 * between runs, and from inside the hit callback. The application must not
 * let the guest run concurrently with those calls (with the KVM driver the
 * guest only runs inside vmt_tracer_run, so this holds by construction).
 *
 * Thread-safety: a tracer is not thread-safe: call it, and its core, from
 * one thread at a time. vmt_tracer_stop alone may be called from any
 * thread and from a signal handler while another thread is in
 * vmt_tracer_run. Separate tracers on separate cores share no state. */
#ifndef VMITAP_TRACER_H
#define VMITAP_TRACER_H

#include "vmitap/api.h"

#include "vmitap/bpm.h"
#include "vmitap/core.h"
#include "vmitap/ptm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum vmt_tracer_controller {
    /* The int3 controller when the driver enforces execute-only pages
     * (VMT_CAP_EXECUTE_ONLY: reads see the original bytes), otherwise the
     * memory controller (no code change at all). */
    VMT_TRACER_CONTROLLER_AUTO = 0,
    VMT_TRACER_CONTROLLER_INT3,   /* int3 in a shadow copy of the page */
    VMT_TRACER_CONTROLLER_MEMORY, /* the page loses execute permission */
} vmt_tracer_controller;

/* "auto", "int3", "memory"; "unknown" otherwise. */
VMT_API const char *vmt_tracer_controller_name(vmt_tracer_controller c);

typedef struct vmt_tracer vmt_tracer;

/* Identifies one breakpoint of a tracer: 1, 2, ... in order of creation,
 * never reused within a tracer. 0 is never a valid id. */
typedef uint32_t vmt_tracer_bp_id;

/* A breakpoint as the tracer reports it. Strings are owned by the tracer
 * and live as long as the breakpoint. */
typedef struct vmt_tracer_bp_info {
    /* vmt_tracer_bp_get: set by the caller (VMT_OPTS), the library fills no
     * more (vmitap/api.h). In the library's own copies (hits, foreach,
     * overwrites) it is the library's sizeof: fields grow only at the end. */
    size_t sz;
    vmt_tracer_bp_id id;
    vmt_addr_ctx ctx;   /* address and the root it was added with */
    bool global;        /* matches any address space */
    uint64_t key;       /* the application's, from vmt_tracer_bp_opts */
    uintptr_t tag;      /* the application's, from vmt_tracer_bp_opts */
    const char *name;   /* symbol or label, NULL if none */
    bool active;        /* armed now; false = pending (page not present) */
    vmt_pa pa;          /* frame + offset it is armed at (valid when active) */
    uint64_t hits;
    uint64_t page_outs;   /* active -> pending transitions */
    uint64_t page_ins;    /* pending -> active transitions */
    uint64_t relocations; /* page-ins into another frame than the last one */
} vmt_tracer_bp_info;

typedef struct vmt_tracer_hit {
    const vmt_tracer_bp_info *bp; /* hits already counts this hit */
    vmt_vcpu vcpu;
    const vmt_regs *regs;         /* rip = the breakpoint's address */
} vmt_tracer_hit;

/* Called once per breakpoint that matches a hit (several breakpoints may
 * sit at one address, e.g. with different keys). May add or remove
 * breakpoints (including this one) and call vmt_tracer_stop. */
typedef void (*vmt_tracer_hit_fn)(void *user, vmt_tracer *t, const vmt_tracer_hit *hit);

typedef struct vmt_tracer_opts {
    size_t sz; /* sizeof(vmt_tracer_opts); 0 means "all defaults" */
    vmt_tracer_controller controller;
    vmt_tracer_hit_fn on_hit; /* may be NULL: hits are only counted */
    void *user;               /* passed to on_hit */
    /* A hit is stepped over by emulating the instruction under the trap
     * when it is a simple one (push, mov from an absolute address, nop,
     * endbr64: one exit, no single-step), else by a single-step in the
     * default view. true: always single-step. */
    bool no_emulation;
} vmt_tracer_opts;

/* Creates a session: checks the driver has views, creates the session's
 * view (everything RWX, like the default view), switches every vCPU to it,
 * turns on the events it needs. opts may be NULL (defaults). The core must
 * outlive the tracer. On failure nothing is left behind in the guest. */
VMT_API vmt_status vmt_tracer_new(vmt_core *vmi, const vmt_tracer_opts *opts, vmt_tracer **out);

/* Detaches (see vmt_tracer_detach) if still attached, then frees memory. */
VMT_API void vmt_tracer_free(vmt_tracer *t);

/* Removes every breakpoint, stops monitoring page tables, switches back to
 * the default view, destroys the session's view and turns the events off:
 * the guest is left exactly as it was before vmt_tracer_new, and keeps
 * running. Idempotent. Breakpoint info and stats stay readable afterwards;
 * adding breakpoints or running is VMT_E_INVALID. Returns the first error
 * met, but always carries on with every step. */
VMT_API vmt_status vmt_tracer_detach(vmt_tracer *t);

VMT_API vmt_view vmt_tracer_view(const vmt_tracer *t);
/* The controller actually in use (never AUTO). */
VMT_API vmt_tracer_controller vmt_tracer_controller_used(const vmt_tracer *t);
/* True when guest reads of breakpointed pages see the original bytes with
 * the controller in use (int3 with an execute-only driver, or memory). */
VMT_API bool vmt_tracer_is_stealthy(const vmt_tracer *t);

/* ---- breakpoints ---- */

typedef struct vmt_tracer_bp_opts {
    size_t sz;        /* sizeof(vmt_tracer_bp_opts); 0 means "all defaults" */
    bool global;      /* match every address space (kernel code, shared pages) */
    uint64_t key;     /* reported back, never interpreted */
    uintptr_t tag;    /* reported back, never interpreted */
    const char *name; /* label (copied); NULL: none (add_symbol uses the symbol) */
} vmt_tracer_bp_opts;

/* A breakpoint at ctx (ctx.root: the address space it is translated
 * through; for a global breakpoint any root that maps it). If the page is
 * not present the breakpoint is pending and arms itself at page-in.
 * Several breakpoints may share an address: each counts every hit there.
 * VMT_E_INVALID for a non-canonical address; other errors come from the
 * bpm / ptm (e.g. a page table that cannot be read); VMT_E_NOMEM with
 * nothing changed (no breakpoint, id not used, guest untouched). opts may
 * be NULL; id optional. */
VMT_API vmt_status vmt_tracer_add(vmt_tracer *t, vmt_addr_ctx ctx, const vmt_tracer_bp_opts *opts,
                                  vmt_tracer_bp_id *id);

/* Loads the function symbols of a guest ELF file (replacing any loaded
 * before). VMT_E_INVALID if the file cannot be read or is not an ELF. */
VMT_API vmt_status vmt_tracer_load_symbols(vmt_tracer *t, const char *elf_path);
/* Breakpoint at the entry of a symbol from the loaded ELF, translated
 * through root. VMT_E_INVALID if no symbols are loaded or the name is
 * unknown. */
VMT_API vmt_status vmt_tracer_add_symbol(vmt_tracer *t, const char *symbol, vmt_pa root,
                                         const vmt_tracer_bp_opts *opts, vmt_tracer_bp_id *id);

/* Removes a breakpoint (restoring the guest's bytes when it was the last
 * at its address). VMT_E_INVALID for an unknown id. */
VMT_API vmt_status vmt_tracer_remove(vmt_tracer *t, vmt_tracer_bp_id id);

/* Info of one breakpoint (removed ones are not found). VMT_E_INVALID for
 * an unknown id or out->sz 0. */
VMT_API vmt_status vmt_tracer_bp_get(const vmt_tracer *t, vmt_tracer_bp_id id,
                                     vmt_tracer_bp_info *out);
/* Calls fn for every breakpoint, in order of creation. */
VMT_API void vmt_tracer_foreach_bp(const vmt_tracer *t,
                                   void (*fn)(void *user, const vmt_tracer_bp_info *bp),
                                   void *user);
VMT_API size_t vmt_tracer_bp_count(const vmt_tracer *t);

/* ---- the event loop ---- */

typedef enum vmt_tracer_stop_reason {
    VMT_TRACER_STOP_NONE = 0,     /* still running (never returned with VMT_OK) */
    VMT_TRACER_STOP_GUEST_EXITED, /* the guest finished or powered off */
    VMT_TRACER_STOP_TIMEOUT,      /* run_opts.timeout_ms elapsed */
    VMT_TRACER_STOP_HITS,         /* run_opts.max_hits hits counted in this run */
    VMT_TRACER_STOP_REQUESTED,    /* vmt_tracer_stop was called */
} vmt_tracer_stop_reason;

/* "none", "guest exited", "timeout", "hits", "requested". */
VMT_API const char *vmt_tracer_stop_reason_str(vmt_tracer_stop_reason r);

typedef struct vmt_tracer_run_opts {
    size_t sz;           /* sizeof(vmt_tracer_run_opts); 0 means "all defaults" */
    int64_t timeout_ms;  /* stop after this long; 0 = no limit */
    uint64_t max_hits;   /* stop after this many hits in this run; 0 = no limit */
    int poll_ms;         /* longest single wait for an event; default 100 */
} vmt_tracer_run_opts;

/* Runs the guest and handles its events until a stop condition holds.
 * Returns VMT_OK with *why set (optional) when it stopped for one of the
 * reasons above, or the error that ended the loop (e.g.
 * VMT_E_GUEST_CRASHED, VMT_E_DRIVER). The loop never returns while a vCPU
 * is in the middle of a step it asked for, so the tracer can always be
 * detached or run again afterwards. opts may be NULL (run until the guest
 * exits or vmt_tracer_stop).
 * Out of memory while handling an event ends the loop with VMT_E_NOMEM
 * once the event is answered; nothing is lost: a page-table change the
 * breakpoint manager could not take is handed to it again at the next
 * page-table write and at the start of the next run, and a written code
 * page whose shadow could not be rebuilt is rebuilt at the next flush
 * (logged, not reported). Hit handling allocates nothing. */
VMT_API vmt_status vmt_tracer_run(vmt_tracer *t, const vmt_tracer_run_opts *opts,
                                  vmt_tracer_stop_reason *why);

/* Asks vmt_tracer_run to return at the next opportunity (within one
 * poll_ms wait). Safe from the hit callback, from another thread and from
 * a signal handler. */
VMT_API void vmt_tracer_stop(vmt_tracer *t);

/* ---- statistics ---- */

typedef struct vmt_tracer_stats {
    size_t sz; /* set by the caller (VMT_OPTS): the library fills no more (vmitap/api.h) */
    uint64_t events;          /* events received */
    uint64_t hits;            /* breakpoint hits (one per matching breakpoint) */
    uint64_t hit_events;      /* events that were hits (a step-over each) */
    uint64_t emulated;        /* step-overs done by emulating the instruction */
    uint64_t reinjected;      /* int3 of the guest's own, handed back to it */
    uint64_t stale;           /* traps with no breakpoint and no guest int3 left */
    uint64_t unmatched;       /* our traps met in an address space no breakpoint there is for */
    uint64_t stealth_reads;   /* reads of execute-only pages served */
    uint64_t exec_steps;      /* memory controller: fetches on a page away from a breakpoint */
    uint64_t pt_writes;       /* writes to monitored page-table entries */
    uint64_t other_writes;    /* other trapped writes, just completed */
    uint64_t page_ins;        /* ptm PAGE_IN events handled */
    uint64_t page_outs;       /* ptm PAGE_OUT events handled */
    uint64_t ignored;         /* events that were none of the above */
    vmt_bpm_stats bpm;
    size_t ptm_tables, ptm_entries;
} vmt_tracer_stats;

/* VMT_E_INVALID if out->sz is 0 (vmitap/api.h); stats.bpm comes filled
 * whole, its sz the library's. */
VMT_API vmt_status vmt_tracer_stats_get(const vmt_tracer *t, vmt_tracer_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* VMITAP_TRACER_H */
