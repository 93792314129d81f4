// SPDX-License-Identifier: MIT
/* Step-over by emulation: carries out, on the guest's behalf, the first
 * instruction of a breakpointed function when it is one of a few simple,
 * common forms, so a hit needs no single-step (one exit instead of three,
 * and no dependence on the hypervisor's single-step). Anything else, or
 * any doubt (page not present, not writable, crossing a page, user access
 * to a supervisor page), is left to the single-step.
 *
 * Forms: push r64 (50+r, 41 50+r); mov r64, [disp32] (REX.W 8B /r with
 * ModRM mod=00 rm=100 and SIB 0x25); nop (90); endbr64 (F3 0F 1E FA).
 * Inexact on purpose: the accessed/dirty bits of the stack and data pages
 * touched are not set (the CPU would set them). */
#ifndef VMITAP_TRACER_EMULATE_H
#define VMITAP_TRACER_EMULATE_H

#include "vmitap/core.h"

/* insn: the instruction's bytes from the guest's own frame (never a
 * shadow), len of them available. Writes go only to frames writable in
 * `view` (the vCPU's view): a write-protected page-table page or a page
 * holding breakpoints is left to the single-step, whose write the tracer
 * then sees. On true, *regs is the state after the instruction and guest
 * memory is updated; on false nothing changed. */
bool vmt_emulate_simple(vmt_core *vmi, vmt_view view, vmt_regs *regs, const uint8_t *insn,
                        size_t len);

#endif /* VMITAP_TRACER_EMULATE_H */
