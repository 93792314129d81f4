// SPDX-License-Identifier: MIT
/* Internal accessors of the two built-in tap controllers (tracer, tests). */
#ifndef VMITAP_BPM_CONTROLLERS_H
#define VMITAP_BPM_CONTROLLERS_H

#include "bpm/interceptor.h"
#include "vmitap/bpm.h"

/* The trap instruction the breakpoint controller writes (int3). */
#define VMT_BREAKPOINT_TRAP_BYTE 0xCC

/* True if c was made by vmt_breakpoint_controller_new. */
bool vmt_is_breakpoint_controller(const vmt_tap_controller *c);
/* The interceptor behind a breakpoint controller (NULL for any other). */
vmt_interceptor *vmt_breakpoint_controller_interceptor(const vmt_tap_controller *c);
/* The access the breakpoint controller gives a monitored frame on this
 * driver: X when it has VMT_CAP_EXECUTE_ONLY, otherwise RX (reads then see
 * the shadow's trap bytes; a tracer must serve such reads itself). */
vmt_status vmt_breakpoint_controller_monitor_access(vmt_core *vmi, vmt_access *out);

#endif /* VMITAP_BPM_CONTROLLERS_H */
