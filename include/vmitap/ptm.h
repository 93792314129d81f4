/* vmitap — the page-table monitor. API.md section 5.
 *
 * Tracks the paging-structure entries that translate monitored addresses by
 * write-protecting the table pages that hold them, and turns writes to those
 * entries into page-in / page-out events. Reference-counted per (view, ctx).
 *
 * Table pages are set to exactly VMT_ACCESS_R in the view and get their
 * previous access back when their last monitored entry goes (API.md
 * section 5). A frame that is also a breakpoint page of a bpm controller in
 * the same view is the exception to "exactly R" (issue 13; API.md does not
 * consider the case): it is shared through the core, writes to it trap
 * while either needs it, the controller's needs (execute-only for the
 * breakpoint controller, no execute for the memory controller) stay in
 * force while the ptm holds it, and the access from before the first of
 * them comes back when the last one lets go, in either order. */
#ifndef VMITAP_PTM_H
#define VMITAP_PTM_H

#include "vmitap/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { VMT_PTM_PAGE_IN = 1, VMT_PTM_PAGE_OUT = 2 } vmt_ptm_event_kind;

typedef struct vmt_ptm_event {
    vmt_ptm_event_kind kind;
    vmt_view view;
    vmt_addr_ctx ctx;
    vmt_pa pa;     /* PAGE_IN: new translation; PAGE_OUT: the translation just lost */
    uintptr_t tag; /* the tag given to vmt_ptm_monitor */
} vmt_ptm_event;

typedef struct vmt_ptm_events {
    vmt_ptm_event *items;
    size_t len, cap;
} vmt_ptm_events;
void vmt_ptm_events_free(vmt_ptm_events *ev); /* frees items, zeroes the struct */

typedef struct vmt_ptm vmt_ptm;
vmt_status vmt_ptm_new(vmt_ptm **out);
void vmt_ptm_free(vmt_ptm *ptm); /* memory only; guest untouched */
vmt_status vmt_ptm_monitor(vmt_ptm *, vmt_core *, vmt_addr_ctx ctx, vmt_view view, uintptr_t tag);
vmt_status vmt_ptm_unmonitor(vmt_ptm *, vmt_core *, vmt_addr_ctx ctx, vmt_view view);
vmt_status vmt_ptm_unmonitor_by_force(vmt_ptm *, vmt_core *, vmt_addr_ctx ctx, vmt_view view);
void vmt_ptm_unmonitor_all(vmt_ptm *, vmt_core *); /* restores every table page's access */
void vmt_ptm_unmonitor_view(vmt_ptm *, vmt_core *, vmt_view view);
/* After a write-access event at entry_pa: true if that entry is monitored (marked dirty). */
bool vmt_ptm_mark_dirty_entry(vmt_ptm *, vmt_pa entry_pa, vmt_view view, vmt_vcpu vcpu);
/* After single-stepping the writing instruction: appends events to *out. */
vmt_status vmt_ptm_process_dirty_entries(vmt_ptm *, vmt_core *, vmt_vcpu vcpu, vmt_ptm_events *out);
size_t vmt_ptm_monitored_tables(const vmt_ptm *);
size_t vmt_ptm_monitored_entries(const vmt_ptm *);
size_t vmt_ptm_paged_in_entries(const vmt_ptm *);

#ifdef __cplusplus
}
#endif
#endif /* VMITAP_PTM_H */
