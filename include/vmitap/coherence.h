// SPDX-License-Identifier: MIT
/* vmitap — coherence of breakpoint shadows with guest writes.
 *
 * Thread-safety: a vmt_coherence is not thread-safe; use it with its bpm
 * and core from one thread at a time.
 *
 * With the breakpoint (int3) controller the guest executes a shadow copy of
 * every frame that holds breakpoints. When the guest writes such a frame
 * (patched or self-modifying code, a loader, a frame reused for data), the
 * write traps, because the frame is not writable in the breakpoints' view.
 * The write must land on the guest's own frame, and the shadow must then be
 * rebuilt from it, or the guest runs stale code.
 *
 * A rebuild keeps every trap whose original bytes are unchanged. A trap
 * whose bytes the guest changed sits on an instruction that is no longer
 * there, and re-arming it could put an int3 in the middle of a new
 * instruction: it is left out of the shadow and reported to the
 * application, which drops the breakpoint (the default) or re-arms it at
 * the same address (when it knows the new code starts an instruction
 * there).
 *
 * The tracer does all of this itself (vmt_tracer_set_overwrite_fn to hear
 * about overwritten breakpoints). Users of the bare bpm use vmt_coherence:
 *
 *   in the event callback, for a MEMORY_ACCESS event with W:
 *       if (vmt_coherence_on_write(coh, vmi, ev, resp)) return VMT_OK;
 *       (resp now carries the write out on the guest's own frame)
 *   then, with a driver that has FAST_SINGLESTEP, right after that
 *   vmt_core_wait_for_event returns; without it, at the SINGLESTEP event
 *   that ends the step:
 *       vmt_coherence_flush(coh, vmi);
 *   for a SOFTWARE_BREAKPOINT event that no breakpoint claims:
 *       vmt_coherence_classify(coh, vmi, ev, &owner) tells a stale trap
 *       (the instruction at rip must run once: resume there unchanged, or
 *       step it in the default view) from the guest's own int3 (reinject).
 *
 * Drivers: the write is carried out with FAST_SINGLESTEP in the default
 * view when the driver has it (on KVM the pending store is then served
 * from the default view's frame, the guest's own, before wait_for_event
 * returns, so the flush that follows runs before any further guest
 * instruction), otherwise by SINGLESTEP with a switch to the default view
 * (the flush then belongs at the SINGLESTEP event). Reads: on a driver
 * with execute-only pages the guest's reads keep seeing its own bytes
 * throughout; on plain KVM (RX fallback; VMT_KVM_F_EMULATE_EXECUTE_ONLY
 * gives it execute-only pages) they see the shadow, i.e. the trap bytes of
 * armed breakpoints and, after a write, exactly what it wrote.
 * docs/coherence.md has the details and limits. */
#ifndef VMITAP_COHERENCE_H
#define VMITAP_COHERENCE_H

#include "vmitap/api.h"

#include "vmitap/bpm.h"
#include "vmitap/tracer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest trap the report carries (int3: 1 byte). */
#define VMT_OVERWRITE_MAX 16

typedef enum vmt_overwrite_choice {
    VMT_OVERWRITE_DROP = 0, /* remove the breakpoint (the default) */
    VMT_OVERWRITE_REARM,    /* put the trap back at the same address, on the new code */
} vmt_overwrite_choice;

/* A breakpoint whose trap bytes the guest overwrote. Its trap is already
 * out of the shadow when this is reported. */
typedef struct vmt_overwrite {
    vmt_breakpoint bp; /* the claim: ctx (canonical root if global), view, key, tag */
    vmt_pa pa;         /* frame + offset of the trap */
    size_t len;        /* bytes under the trap */
    uint8_t old_bytes[VMT_OVERWRITE_MAX]; /* what the breakpoint was set on */
    uint8_t new_bytes[VMT_OVERWRITE_MAX]; /* what the guest wrote there */
} vmt_overwrite;

/* Called once per claim on an overwritten trap. It must not call into the
 * bpm (the choice is applied after the call). */
typedef vmt_overwrite_choice (*vmt_overwrite_fn)(void *user, const vmt_overwrite *ow);

/* ---- the bare bpm ---- */

/* The guest wrote its frame gfn (the write is complete): rebuilds every
 * view's shadow of it, reports overwritten traps through fn (NULL: drop
 * them all) and applies the choices. *overwritten (optional): how many
 * claims were reported. VMT_OK and nothing done for a bpm whose controller
 * is not the breakpoint controller, or a frame without shadows. */
VMT_API vmt_status vmt_bpm_sync_frame(vmt_bpm *bpm, vmt_core *vmi, vmt_gfn gfn, vmt_overwrite_fn fn,
                                      void *user, size_t *overwritten);

typedef struct vmt_coherence vmt_coherence;

typedef struct vmt_coherence_stats {
    size_t sz; /* set by the caller (VMT_OPTS): the library fills no more (vmitap/api.h) */
    uint64_t writes;      /* trapped writes to frames holding breakpoints */
    uint64_t refreshes;   /* frame rebuilds run (a failed one and its retry: two) */
    uint64_t overwritten; /* claims whose trap bytes the guest changed */
    uint64_t dropped;     /* ... of them dropped */
    uint64_t rearmed;     /* ... of them re-armed */
    uint64_t stale;       /* breakpoint events classified stale */
    uint64_t errors;      /* rebuilds or choices that failed (logged) */
} vmt_coherence_stats;

/* Watches the writes to bpm's frames. Does not own bpm, which must outlive it. */
VMT_API vmt_status vmt_coherence_new(vmt_bpm *bpm, vmt_coherence **out);
VMT_API void vmt_coherence_free(vmt_coherence *coh);
VMT_API void vmt_coherence_set_overwrite_fn(vmt_coherence *coh, vmt_overwrite_fn fn, void *user);

/* For a MEMORY_ACCESS event with W on a frame that holds breakpoints in
 * the event's view (where it is shadowed, hence not writable): remembers
 * the frame for the next flush and returns true; the caller carries the
 * write out on the guest's own frame itself. Cannot fail: out of memory,
 * the next flush rebuilds every shadowed frame instead. */
VMT_API bool vmt_coherence_track_write(vmt_coherence *coh, const vmt_event *ev);
/* The same, and fills *resp so that the write is carried out on the guest's
 * own frame (see above). Otherwise returns false and leaves *resp alone. */
VMT_API bool vmt_coherence_on_write(vmt_coherence *coh, vmt_core *vmi, const vmt_event *ev,
                                    vmt_response *resp);
/* Rebuilds the shadows of the frames written since the last flush. Cheap
 * when there are none. Returns the first error (the rest still runs); a
 * frame whose rebuild failed stays pending and is retried next time (out
 * of memory, a frame's rebuild fails before its shadow changes, so no
 * overwrite report is lost). */
VMT_API vmt_status vmt_coherence_flush(vmt_coherence *coh, vmt_core *vmi);
/* Frames waiting for a flush. */
VMT_API size_t vmt_coherence_pending(const vmt_coherence *coh);

typedef enum vmt_trap_owner {
    VMT_TRAP_OURS = 1,  /* an armed trap of the bpm is at rip in the event's view */
    VMT_TRAP_GUEST = 2, /* the guest's own memory holds an int3 at rip */
    VMT_TRAP_STALE = 3, /* neither: the trap was removed, or left out by a rebuild,
                           after it fired. rip is at the instruction that must run
                           next, once: resume at the same rip with no register change,
                           or step it in the default view (what the tracer does) */
} vmt_trap_owner;

/* Whose trap a SOFTWARE_BREAKPOINT event is. VMT_E_INVALID for another
 * event; VMT_E_UNSUPPORTED unless the bpm uses the breakpoint controller. */
VMT_API vmt_status vmt_coherence_classify(vmt_coherence *coh, vmt_core *vmi, const vmt_event *ev,
                                          vmt_trap_owner *out);

/* VMT_E_INVALID if out->sz is 0 (vmitap/api.h). */
VMT_API vmt_status vmt_coherence_stats_get(const vmt_coherence *coh, vmt_coherence_stats *out);

/* ---- the tracer ---- */

typedef struct vmt_tracer_overwrite {
    const vmt_tracer_bp_info *bp; /* hits so far; active is still true */
    vmt_pa pa;
    size_t len;
    const uint8_t *old_bytes, *new_bytes; /* len bytes each */
} vmt_tracer_overwrite;

/* Called when the guest overwrote the bytes under one of the tracer's
 * breakpoints. The callback must not add or remove breakpoints. A dropped
 * breakpoint is removed from the tracer (vmt_tracer_bp_get no longer finds
 * it) right after the call; a re-armed one keeps counting. */
typedef vmt_overwrite_choice (*vmt_tracer_overwrite_fn)(void *user, vmt_tracer *t,
                                                        const vmt_tracer_overwrite *ow);

/* Installs (fn NULL: removes) the callback; without one, overwritten
 * breakpoints are dropped. */
VMT_API vmt_status vmt_tracer_set_overwrite_fn(vmt_tracer *t, vmt_tracer_overwrite_fn fn,
                                               void *user);
/* The tracer's coherence counters (all zero for the memory controller,
 * whose pages are never remapped). */
VMT_API vmt_status vmt_tracer_coherence_stats_get(const vmt_tracer *t, vmt_coherence_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* VMITAP_COHERENCE_H */
