// SPDX-License-Identifier: MIT
/* W1's no-op controller (docs/benchmarks.md): every operation returns VMT_OK and
 * check_event maps a software-breakpoint event to (event view, event gfn),
 * so the benchmarks time the breakpoint manager alone. */
#ifndef VMITAP_BENCH_NOOP_CONTROLLER_H
#define VMITAP_BENCH_NOOP_CONTROLLER_H

#include "vmitap/bpm.h"

static inline bool noop_check_event(void *self, const vmt_event *ev, vmt_view *view, vmt_gfn *gfn)
{
    (void)self;
    if (ev->reason != VMT_EVENT_SOFTWARE_BREAKPOINT)
        return false;
    *view = ev->view;
    *gfn = ev->u.software_breakpoint.gfn;
    return true;
}

static inline vmt_status noop_bp(void *self, vmt_core *vmi, vmt_pa pa, vmt_view view)
{
    (void)self, (void)vmi, (void)pa, (void)view;
    return VMT_OK;
}

static inline vmt_status noop_page(void *self, vmt_core *vmi, vmt_gfn gfn, vmt_view view)
{
    (void)self, (void)vmi, (void)gfn, (void)view;
    return VMT_OK;
}

static const vmt_tap_controller_ops noop_ops = {
    .check_event = noop_check_event,
    .insert_breakpoint = noop_bp,
    .remove_breakpoint = noop_bp,
    .monitor = noop_page,
    .unmonitor = noop_page,
};

#endif /* VMITAP_BENCH_NOOP_CONTROLLER_H */
