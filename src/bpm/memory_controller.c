// SPDX-License-Identifier: MIT
/* The memory controller: no code change; the frame loses execute
 * permission in the view, so executing anything on it is an event. Read and
 * write permissions are left as they are. */
#include "bpm/controllers.h"
#include "core/alloc.h"
#include "core/holds.h"

/* The frame is held (core/holds.h) with X off: unmonitor gives back
 * exactly what it had before monitor, and a ptm holding it as a table page
 * too keeps writes trapped. */
typedef struct memory_controller {
    uint64_t holder; /* its name for the core's access holds */
} memory_controller;

static const vmt_access_hold no_execute = {.off = VMT_ACCESS_X};

static bool mc_check_event(void *self, const vmt_event *ev, vmt_view *view, vmt_gfn *gfn)
{
    (void)self;
    /* Without a view the event cannot be placed in one (vmi-rs: None). */
    if (!ev || !ev->has_view || ev->reason != VMT_EVENT_MEMORY_ACCESS ||
        !(ev->u.memory_access.access & VMT_ACCESS_X))
        return false;
    *view = ev->view;
    *gfn = vmt_gfn_from_pa(ev->u.memory_access.pa);
    return true;
}

static vmt_status mc_insert(void *self, vmt_core *vmi, vmt_pa pa, vmt_view view)
{
    (void)self, (void)vmi, (void)pa, (void)view;
    return VMT_OK;
}

static vmt_status mc_monitor(void *self, vmt_core *vmi, vmt_gfn gfn, vmt_view view)
{
    memory_controller *mc = self;
    return vmt_core_hold_access(vmi, gfn, view, mc->holder, &no_execute);
}

static vmt_status mc_unmonitor(void *self, vmt_core *vmi, vmt_gfn gfn, vmt_view view)
{
    memory_controller *mc = self;
    return vmt_core_release_access(vmi, gfn, view, mc->holder);
}

static void mc_destroy(void *self)
{
    vmt_free(self);
}

static const vmt_tap_controller_ops memory_ops = {
    .check_event = mc_check_event,
    .insert_breakpoint = mc_insert,
    .remove_breakpoint = mc_insert,
    .monitor = mc_monitor,
    .unmonitor = mc_unmonitor,
    .destroy = mc_destroy,
};

vmt_status vmt_memory_controller_new(vmt_tap_controller *out)
{
    if (!out)
        return VMT_E_INVALID;
    memory_controller *mc = vmt_calloc(1, sizeof *mc);
    if (!mc)
        return VMT_E_NOMEM;
    mc->holder = vmt_core_holder_new();
    out->ops = &memory_ops;
    out->self = mc;
    return VMT_OK;
}
