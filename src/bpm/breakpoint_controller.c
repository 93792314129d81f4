/* The breakpoint controller: an int3 written into a shadow copy of the
 * frame (the interceptor), the frame made execute-only in the view so that
 * the guest cannot read the trap byte. */
#include <glib.h>

#include "bpm/controllers.h"
#include "core/holds.h"

static const uint8_t int3 = VMT_BREAKPOINT_TRAP_BYTE;

typedef struct breakpoint_controller {
    vmt_interceptor *ic;
    uint64_t holder; /* its name for the core's access holds (core/holds.h) */
} breakpoint_controller;

static bool bc_check_event(void *self, const vmt_event *ev, vmt_view *view, vmt_gfn *gfn)
{
    (void)self;
    /* Without a view the event cannot be placed in one (vmi-rs: None). */
    if (!ev || !ev->has_view || ev->reason != VMT_EVENT_SOFTWARE_BREAKPOINT)
        return false;
    *view = ev->view;
    *gfn = ev->u.software_breakpoint.gfn;
    return true;
}

static vmt_status bc_insert(void *self, vmt_core *vmi, vmt_pa pa, vmt_view view)
{
    breakpoint_controller *bc = self;
    return vmt_interceptor_insert(bc->ic, vmi, view, pa, &int3, 1);
}

static vmt_status bc_remove(void *self, vmt_core *vmi, vmt_pa pa, vmt_view view)
{
    breakpoint_controller *bc = self;
    return vmt_interceptor_remove(bc->ic, vmi, view, pa);
}

vmt_status vmt_breakpoint_controller_monitor_access(vmt_core *vmi, vmt_access *out)
{
    vmt_driver_info info;
    vmt_status st = vmt_core_info(vmi, &info);
    if (st != VMT_OK)
        return st;
    *out = (info.caps & VMT_CAP_EXECUTE_ONLY) ? VMT_ACCESS_X : VMT_ACCESS_RX;
    return VMT_OK;
}

/* The frame is held (core/holds.h) with the access monitor_access gives,
 * as needs: a ptm holding it as a table page too keeps writes trapped and
 * its preferences give way, so the breakpoints keep working. */
static vmt_status bc_monitor(void *self, vmt_core *vmi, vmt_gfn gfn, vmt_view view)
{
    breakpoint_controller *bc = self;
    vmt_access a;
    vmt_status st = vmt_breakpoint_controller_monitor_access(vmi, &a);
    if (st != VMT_OK)
        return st;
    vmt_access_hold h = {.on = a, .off = (vmt_access)(VMT_ACCESS_RWX & ~a)};
    return vmt_core_hold_access(vmi, gfn, view, bc->holder, &h);
}

/* The frame gets its access from before monitor back, or what a ptm
 * holding it as a table page needs. */
static vmt_status bc_unmonitor(void *self, vmt_core *vmi, vmt_gfn gfn, vmt_view view)
{
    breakpoint_controller *bc = self;
    return vmt_core_release_access(vmi, gfn, view, bc->holder);
}

static void bc_destroy(void *self)
{
    breakpoint_controller *bc = self;
    vmt_interceptor_free(bc->ic);
    g_free(bc);
}

static const vmt_tap_controller_ops breakpoint_ops = {
    .check_event = bc_check_event,
    .insert_breakpoint = bc_insert,
    .remove_breakpoint = bc_remove,
    .monitor = bc_monitor,
    .unmonitor = bc_unmonitor,
    .destroy = bc_destroy,
};

vmt_status vmt_breakpoint_controller_new(vmt_tap_controller *out)
{
    if (!out)
        return VMT_E_INVALID;
    breakpoint_controller *bc = g_new(breakpoint_controller, 1);
    bc->ic = vmt_interceptor_new();
    bc->holder = vmt_core_holder_new();
    out->ops = &breakpoint_ops;
    out->self = bc;
    return VMT_OK;
}

vmt_status vmt_breakpoint_controller_is_breakpoint(vmt_core *vmi, const vmt_event *ev, bool *out)
{
    if (!vmi || !ev || !out)
        return VMT_E_INVALID;
    if (ev->reason != VMT_EVENT_SOFTWARE_BREAKPOINT) {
        *out = false;
        return VMT_OK;
    }
    /* The guest's own frame, never a shadow: is the trap the guest's? */
    uint8_t byte;
    vmt_status st =
        vmt_core_read(vmi, vmt_pa_in_gfn(ev->u.software_breakpoint.gfn, ev->regs.rip), &byte, 1);
    if (st != VMT_OK)
        return st;
    *out = byte == VMT_BREAKPOINT_TRAP_BYTE;
    return VMT_OK;
}

bool vmt_is_breakpoint_controller(const vmt_tap_controller *c)
{
    return c && c->ops == &breakpoint_ops;
}

vmt_interceptor *vmt_breakpoint_controller_interceptor(const vmt_tap_controller *c)
{
    return vmt_is_breakpoint_controller(c) ? ((breakpoint_controller *)c->self)->ic : NULL;
}
