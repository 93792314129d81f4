/* vmitap — the breakpoint manager and its controllers. API.md section 6. */
#ifndef VMITAP_BPM_H
#define VMITAP_BPM_H

#include "vmitap/core.h"
#include "vmitap/ptm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmt_breakpoint {
    vmt_addr_ctx ctx; /* where */
    vmt_view view;    /* in which view the trap lives */
    bool global;      /* match any root (kernel code shared by all address spaces) */
    uint64_t key;     /* owner; 0 by default */
    uintptr_t tag;    /* label, e.g. (uintptr_t)"NtCreateFile"; 0 by default */
} vmt_breakpoint;

/* A controller decides how a breakpoint is realised in the guest.
 * check_event: true, with the event's view and guest frame, if the event is
 * one this controller's breakpoints raise; an event that carries no view
 * (has_view == false) is never one (false), whatever its reason. */
typedef struct vmt_tap_controller_ops {
    bool (*check_event)(void *self, const vmt_event *ev, vmt_view *view, vmt_gfn *gfn);
    vmt_status (*insert_breakpoint)(void *self, vmt_core *vmi, vmt_pa pa, vmt_view view);
    vmt_status (*remove_breakpoint)(void *self, vmt_core *vmi, vmt_pa pa, vmt_view view);
    vmt_status (*monitor)(void *self, vmt_core *vmi, vmt_gfn gfn, vmt_view view);
    vmt_status (*unmonitor)(void *self, vmt_core *vmi, vmt_gfn gfn, vmt_view view);
    void (*destroy)(void *self); /* may be NULL */
} vmt_tap_controller_ops;

typedef struct vmt_tap_controller {
    const vmt_tap_controller_ops *ops;
    void *self;
} vmt_tap_controller;

/* check_event of both controllers returns false for an event that carries
 * no view (has_view == false), as vmi-rs's controllers do (issue 13: they
 * used to take it as view 0). A driver that cannot tell the view must fill
 * it in itself (the tracer does) for the manager to see the event. */
/* int3 on a shadow copy of the page, remapped in the view; page execute-only
 * (RX without VMT_CAP_EXECUTE_ONLY). unmonitor gives the page the access it
 * had before monitor; a ptm table page in the same view stays write-protected
 * (see vmitap/ptm.h). */
vmt_status vmt_breakpoint_controller_new(vmt_tap_controller *out);
/* True if the event is a software breakpoint and the trap byte is at rip. */
vmt_status vmt_breakpoint_controller_is_breakpoint(vmt_core *, const vmt_event *, bool *out);
/* No code change: the page loses execute permission (read/write untouched);
 * unmonitor gives it the access it had before monitor. */
vmt_status vmt_memory_controller_new(vmt_tap_controller *out);

typedef enum { VMT_REMOVED_NONE = 0, VMT_REMOVED_SOME = 1, VMT_REMOVED_LAST = 2 } vmt_removal;

typedef struct vmt_bpm_stats {
    size_t active, pending, pages, global;
} vmt_bpm_stats;

/* Claims (API.md section 6). A claim is one breakpoint per (view, key,
 * ctx); a global claim's ctx carries the canonical root of its (view, va),
 * the root of the first global claim there, so that it matches events of
 * every root. Re-inserting the same claim (view, key, ctx; for a global bp,
 * ctx with the canonical root) with the other global flag fails with
 * VMT_E_CONFLICT and changes nothing; nothing else conflicts. In particular
 * a non-global claim at the same va as a global one (another root, same or
 * another frame, same key, same view) is accepted, as in vmi-rs; an event
 * under its root on its frame finds it, and removing it leaves the global
 * claim intact and matching events of every root (issue 13: such a claim
 * used to be refused with VMT_E_CONFLICT).
 * Bad input is refused with VMT_E_INVALID and changes nothing: NULL
 * arguments, a non-canonical va, a root with bits outside
 * 0x000ffffffffff000 (CR3 flag or PCID bits: mask with
 * vmt_regs_translation_root), a PA at or above 2^52. A pending insert
 * (no translation, or a NULL hint) into a view the driver does not have
 * fails with VMT_E_VIEW_NOT_FOUND. */
typedef struct vmt_bpm vmt_bpm;
vmt_status vmt_bpm_new(vmt_tap_controller controller, vmt_bpm **out); /* takes the controller */
void vmt_bpm_free(vmt_bpm *); /* memory only; call vmt_bpm_clear first to restore the guest */
vmt_status vmt_bpm_insert(vmt_bpm *, vmt_core *, const vmt_breakpoint *bp, bool *inserted);
vmt_status vmt_bpm_insert_with_hint(vmt_bpm *, vmt_core *, const vmt_breakpoint *bp,
                                    const vmt_pa *pa /* NULL: not mapped, pending */, bool *inserted);
vmt_status vmt_bpm_remove(vmt_bpm *, vmt_core *, const vmt_breakpoint *bp, bool *removed);
vmt_status vmt_bpm_remove_with_hint(vmt_bpm *, vmt_core *, const vmt_breakpoint *bp,
                                    const vmt_pa *pa, bool *removed);
vmt_status vmt_bpm_remove_by_event(vmt_bpm *, vmt_core *, const vmt_event *ev, uint64_t key,
                                   vmt_removal *result);
vmt_status vmt_bpm_remove_by_view(vmt_bpm *, vmt_core *, vmt_view view, bool *removed);
bool vmt_bpm_get_by_event(const vmt_bpm *, const vmt_event *ev, uint64_t key, vmt_breakpoint *out);
bool vmt_bpm_contains_by_event(const vmt_bpm *, const vmt_event *ev, uint64_t key);
bool vmt_bpm_contains_by_address(const vmt_bpm *, vmt_addr_ctx ctx, uint64_t key);
vmt_status vmt_bpm_clear(vmt_bpm *, vmt_core *);
vmt_status vmt_bpm_handle_ptm_event(vmt_bpm *, vmt_core *, const vmt_ptm_event *ev, bool *updated);
vmt_status vmt_bpm_handle_ptm_events(vmt_bpm *, vmt_core *, const vmt_ptm_event *ev, size_t n,
                                     bool *updated);
void vmt_bpm_stats_get(const vmt_bpm *, vmt_bpm_stats *out);
vmt_status vmt_bpm_check(const vmt_bpm *); /* VMT_OK iff every internal index agrees */

#ifdef __cplusplus
}
#endif
#endif /* VMITAP_BPM_H */
