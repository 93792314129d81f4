// SPDX-License-Identifier: MIT
/* The shadow-page interceptor: hides trap instructions from the guest.
 *
 * For each (view, frame) that holds at least one trap, the interceptor owns
 * a shadow frame (from allocate_gfn) holding a copy of the guest's frame
 * with the trap bytes written in, and remaps the frame to that shadow in the
 * view (change_view_gfn). The guest's own frame is never written. Traps are
 * reference-counted per (view, frame, offset); the original bytes under a
 * trap are kept and written back exactly when its last reference goes. When
 * the last trap of a frame goes, the view entry is reset and the shadow
 * frame released.
 *
 * Every failing driver call is returned and, where the interceptor had
 * already changed something, undone first, so that a failed call leaves the
 * interceptor and the guest as they were. */
#ifndef VMITAP_BPM_INTERCEPTOR_H
#define VMITAP_BPM_INTERCEPTOR_H

#include "vmitap/core.h"

/* Longest trap instruction accepted (int3 is 1 byte, ud2 2). */
#define VMT_INTERCEPTOR_MAX_TRAP 16

typedef struct vmt_interceptor vmt_interceptor;

/* NULL when out of memory. Every operation below that can allocate makes
 * its allocations before it changes the guest: VMT_E_NOMEM means nothing
 * changed. */
vmt_interceptor *vmt_interceptor_new(void);
/* Memory only: shadow frames are not released (no core here). Remove every
 * trap first to restore the guest. */
void vmt_interceptor_free(vmt_interceptor *ic);

/* Writes the trap bytes at pa into the view's shadow of pa's frame, creating
 * the shadow on the frame's first trap. A second insert at the same (view,
 * pa) only takes a reference; it must carry the same bytes (VMT_E_CONFLICT
 * otherwise, as for a trap overlapping another one at a different offset).
 * VMT_E_OUT_OF_BOUNDS if the trap would cross the end of the page;
 * VMT_E_INVALID for a frame that is a shadow frame (above guest RAM, where
 * a hostile page table may point). */
vmt_status vmt_interceptor_insert(vmt_interceptor *ic, vmt_core *vmi, vmt_view view, vmt_pa pa,
                                  const uint8_t *trap, size_t len);
/* Drops one reference of the trap at (view, pa); on the last one writes the
 * original bytes back (or, for the frame's last trap, resets the view entry
 * and releases the shadow). Removing a trap the interceptor does not hold is
 * VMT_OK (idempotent: a retry after a partly failed removal is harmless).
 * If the view no longer exists, the state is dropped all the same and
 * VMT_E_VIEW_NOT_FOUND returned. */
vmt_status vmt_interceptor_remove(vmt_interceptor *ic, vmt_core *vmi, vmt_view view, vmt_pa pa);

/* ---- accessors (tracer, tests) ---- */

/* Shadow frame of (view, gfn); false if the frame has no trap in the view. */
bool vmt_interceptor_shadow_gfn(const vmt_interceptor *ic, vmt_view view, vmt_gfn gfn,
                                vmt_gfn *shadow);
/* References of the trap at (view, pa); 0 if none. */
unsigned vmt_interceptor_refs(const vmt_interceptor *ic, vmt_view view, vmt_pa pa);
/* Number of (view, frame) pairs with a shadow. */
size_t vmt_interceptor_pages(const vmt_interceptor *ic);
/* What the guest would read at [pa, pa+len) in the view if there were no
 * traps: the shadow's content with the saved original bytes put back under
 * every trap (or the guest's frame when there is no shadow). The range must
 * stay within one page. */
vmt_status vmt_interceptor_read_original(const vmt_interceptor *ic, vmt_core *vmi, vmt_view view,
                                         vmt_pa pa, void *buf, size_t len);

/* ---- coherence with guest writes (issue 8; see bpm/coherence.c) ---- */

/* A trap whose original bytes the guest changed: view, address, the bytes
 * the trap was set on (old) and the guest's bytes now. */
typedef void (*vmt_interceptor_overwrite_fn)(void *user, vmt_view view, vmt_pa pa, size_t len,
                                             const uint8_t *old, const uint8_t *now);
/* The guest wrote its own frame gfn: rebuilds every view's shadow of it
 * from the frame's current content. Traps whose original bytes are
 * unchanged are written back in; a trap whose bytes changed is left out of
 * the shadow (disarmed: the new bytes show there and become its saved
 * original) and reported through fn (may be NULL). The trap keeps its
 * references: removing it later restores the new bytes, and
 * vmt_interceptor_rearm (or another insert) puts it back. A trap still out
 * of the shadow at a later rebuild (whoever handles the report did not
 * remove or re-arm it, e.g. the call doing so failed) is reported again,
 * with the bytes it was set on, unless the guest has put those bytes back:
 * then it goes back into the shadow. *views (optional): how many views
 * had a shadow of gfn. */
vmt_status vmt_interceptor_refresh(vmt_interceptor *ic, vmt_core *vmi, vmt_gfn gfn,
                                   vmt_interceptor_overwrite_fn fn, void *user, size_t *views);
/* Writes a disarmed trap back into its shadow (VMT_OK if it is armed;
 * VMT_E_INVALID if there is no trap at (view, pa)). */
vmt_status vmt_interceptor_rearm(vmt_interceptor *ic, vmt_core *vmi, vmt_view view, vmt_pa pa);
/* Traps on the shadows of gfn, in every view (the most overwrites one
 * vmt_interceptor_refresh of gfn can report); *views (optional) = the
 * views shadowing gfn, in out[0..max) as far as they fit. */
size_t vmt_interceptor_traps_on(const vmt_interceptor *ic, vmt_gfn gfn, vmt_view *out,
                                size_t max, size_t *views);
/* Stores the shadowed frames (one per view shadowing it) into out[0..max)
 * and returns how many there are. */
size_t vmt_interceptor_shadowed(const vmt_interceptor *ic, vmt_gfn *out, size_t max);
/* Takes a trap out of the shadow again after it was put back over bytes
 * the guest overwrote (a removal that failed and was undone re-inserts
 * it): the guest's bytes show, and the next rebuild reports the trap again
 * with `was`, the len bytes it was set on. VMT_OK if it is already out;
 * VMT_E_INVALID if there is no such trap. */
vmt_status vmt_interceptor_leave_out(vmt_interceptor *ic, vmt_core *vmi, vmt_view view, vmt_pa pa,
                                     const uint8_t *was, size_t len);
/* True if (view, pa) holds a trap that is in the shadow now. */
bool vmt_interceptor_armed(const vmt_interceptor *ic, vmt_view view, vmt_pa pa);

#endif /* VMITAP_BPM_INTERCEPTOR_H */
