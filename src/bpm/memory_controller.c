/* The memory controller: no code change; the frame loses execute
 * permission in the view, so executing anything on it is an event. Read and
 * write permissions are left as they are. */
#include "bpm/controllers.h"
#include "core/alloc.h"
#include "core/htab.h"

/* Per (view, frame): whether it was executable before monitor, so that
 * unmonitor gives back exactly the execute right it took. Keys are the
 * packed (view, gfn) themselves (any value, NULL included, is a key). */
typedef struct memory_controller {
    vmt_htab had_x; /* KEY(view, gfn) -> (void *)(1 + had X) */
} memory_controller;

#define KEY(view, gfn) ((void *)(uintptr_t)(((uint64_t)(view) << 48) | (gfn)))

static bool mc_check_event(void *self, const vmt_event *ev, vmt_view *view, vmt_gfn *gfn)
{
    (void)self;
    if (!ev || ev->reason != VMT_EVENT_MEMORY_ACCESS ||
        !(ev->u.memory_access.access & VMT_ACCESS_X))
        return false;
    *view = ev->has_view ? ev->view : 0;
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
    vmt_access a;
    if (vmt_htab_reserve(&mc->had_x, 1) != VMT_OK) /* before the guest changes */
        return VMT_E_NOMEM;
    vmt_status st = vmt_core_get_access(vmi, gfn, view, &a);
    if (st == VMT_OK)
        st = vmt_core_set_access(vmi, gfn, view, (vmt_access)(a & ~VMT_ACCESS_X), 0);
    if (st != VMT_OK)
        return st;
    (void)vmt_htab_put(&mc->had_x, KEY(view, gfn), (void *)(uintptr_t)(1 + !!(a & VMT_ACCESS_X)));
    return VMT_OK;
}

static vmt_status mc_unmonitor(void *self, vmt_core *vmi, vmt_gfn gfn, vmt_view view)
{
    memory_controller *mc = self;
    void *v = vmt_htab_get(&mc->had_x, KEY(view, gfn));
    bool had_x = v ? (uintptr_t)v == 2 : true;
    vmt_access a;
    vmt_status st = vmt_core_get_access(vmi, gfn, view, &a);
    if (st == VMT_OK && had_x)
        st = vmt_core_set_access(vmi, gfn, view, (vmt_access)(a | VMT_ACCESS_X), 0);
    /* A vanished view has nothing left to restore. */
    if (st == VMT_OK || st == VMT_E_VIEW_NOT_FOUND)
        vmt_htab_del(&mc->had_x, KEY(view, gfn));
    return st;
}

static void mc_destroy(void *self)
{
    memory_controller *mc = self;
    vmt_htab_fini(&mc->had_x);
    vmt_free(mc);
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
    vmt_htab_init(&mc->had_x, vmt_htab_hash_ptr, NULL);
    out->ops = &memory_ops;
    out->self = mc;
    return VMT_OK;
}

bool vmt_is_memory_controller(const vmt_tap_controller *c)
{
    return c && c->ops == &memory_ops;
}
