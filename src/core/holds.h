// SPDX-License-Identifier: MIT
/* Access holds: several users restricting the access of one frame in one
 * view without undoing each other. The ptm write-protects page-table pages
 * and a bpm controller restricts breakpoint pages; a frame can be both in
 * one view. Each used to save the access it found and set it back when
 * done, so whichever went first clobbered the other's protection, and the
 * one that saved the other's access left it behind for good.
 *
 * Instead the core keeps, per (view, frame) held by anyone, the access the
 * frame had before the first hold (its base) and each holder with what it
 * asks for. The frame's access is
 *     base, plus soft_on, minus soft_off, plus on, minus off
 * (each taken over all holders): a holder's needs (on, off) override the
 * others' preferences (soft_*), and among needs, absent beats present, so
 * that no protection a holder needs is ever lifted. When the last holder
 * goes, the base is set back.
 *
 * For the users here: the ptm needs W off and prefers exactly R (soft R on,
 * soft X off), which is exactly R when it is alone; the breakpoint
 * controller needs R and W off and X on (execute-only), or W off and R, X
 * on without execute-only support; the memory controller needs X off. A
 * table page holding breakpoints is then execute-only (breakpoint
 * controller) or read-only (memory controller): writes still trap for the
 * ptm, and the breakpoints still fire. */
#ifndef VMITAP_CORE_HOLDS_H
#define VMITAP_CORE_HOLDS_H

#include "vmitap/core.h"

typedef struct vmt_access_hold {
    vmt_access on, off;           /* rights the holder needs present / absent */
    vmt_access soft_on, soft_off; /* its preferences; others' needs win */
    unsigned flags;               /* set_access flags while it holds */
} vmt_access_hold;

/* A new holder name, unique in the process (an object freed without
 * releasing its holds leaves them; its address could name another one). */
uint64_t vmt_core_holder_new(void);
/* who holds (view, gfn) with h, and the resulting access is set (the first
 * holder reads the base first). Holding a frame it already holds only
 * counts. On failure nothing changed. */
vmt_status vmt_core_hold_access(vmt_core *vmi, vmt_gfn gfn, vmt_view view, uint64_t who,
                                const vmt_access_hold *h);
/* who lets go (its last count) and the access the other holders leave is
 * set, or the base after the last one. A frame who does not hold: VMT_OK,
 * no driver call. On failure the hold stays, except on VMT_E_VIEW_NOT_FOUND
 * (returned too): a view that is gone holds nothing. */
vmt_status vmt_core_release_access(vmt_core *vmi, vmt_gfn gfn, vmt_view view, uint64_t who);
/* True if anyone holds (view, gfn); *base (optional) = its access from
 * before the first holder. */
bool vmt_core_access_held(const vmt_core *vmi, vmt_gfn gfn, vmt_view view, vmt_access *base);

#endif /* VMITAP_CORE_HOLDS_H */
