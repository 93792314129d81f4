// SPDX-License-Identifier: MIT
/* Internal accessors of the breakpoint manager, for the tracer and tests.
 * The public API is vmitap/bpm.h (docs/api.md, breakpoint manager). */
#ifndef VMITAP_BPM_INTERNAL_H
#define VMITAP_BPM_INTERNAL_H

#include "vmitap/bpm.h"

/* The controller the manager was given (still owned by the manager). */
const vmt_tap_controller *vmt_bpm_controller(const vmt_bpm *bpm);

/* Called once per armed (claim, frame) pair; bp->ctx is the claim's ctx
 * (the canonical root for a global claim). */
typedef void (*vmt_bpm_arm_fn)(void *user, const vmt_breakpoint *bp, vmt_gfn gfn);
void vmt_bpm_foreach_arm(const vmt_bpm *bpm, vmt_bpm_arm_fn fn, void *user);
/* Called once per pending claim. */
typedef void (*vmt_bpm_claim_fn)(void *user, const vmt_breakpoint *bp);
void vmt_bpm_foreach_pending(const vmt_bpm *bpm, vmt_bpm_claim_fn fn, void *user);
/* Calls fn for every claim armed on (view, gfn); returns how many. */
size_t vmt_bpm_foreach_claim_on_page(const vmt_bpm *bpm, vmt_view view, vmt_gfn gfn,
                                     vmt_bpm_claim_fn fn, void *user);
/* True if (view, gfn) has armed claims. */
bool vmt_bpm_has_page(const vmt_bpm *bpm, vmt_view view, vmt_gfn gfn);

#endif /* VMITAP_BPM_INTERNAL_H */
