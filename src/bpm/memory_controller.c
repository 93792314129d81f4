/* The memory controller: no code change; the frame loses execute
 * permission in the view, so executing anything on it is an event. Read and
 * write permissions are left as they are. */
#include <glib.h>

#include "bpm/controllers.h"

/* Per (view, frame): whether it was executable before monitor, so that
 * unmonitor gives back exactly the execute right it took. */
typedef struct memory_controller {
    GHashTable *had_x; /* packed (view, gfn) -> GINT_TO_POINTER(1 + had X) */
} memory_controller;

static gint64 *pack_new(vmt_view view, vmt_gfn gfn)
{
    gint64 *k = g_new(gint64, 1);
    *k = (gint64)(((uint64_t)view << 48) | gfn);
    return k;
}

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
    vmt_access a;
    vmt_status st = vmt_core_get_access(vmi, gfn, view, &a);
    if (st == VMT_OK)
        st = vmt_core_set_access(vmi, gfn, view, (vmt_access)(a & ~VMT_ACCESS_X), 0);
    if (st != VMT_OK)
        return st;
    g_hash_table_insert(mc->had_x, pack_new(view, gfn), GINT_TO_POINTER(1 + !!(a & VMT_ACCESS_X)));
    return VMT_OK;
}

static vmt_status mc_unmonitor(void *self, vmt_core *vmi, vmt_gfn gfn, vmt_view view)
{
    memory_controller *mc = self;
    gint64 key = (gint64)(((uint64_t)view << 48) | gfn);
    gpointer v = g_hash_table_lookup(mc->had_x, &key);
    bool had_x = v ? GPOINTER_TO_INT(v) == 2 : true;
    vmt_access a;
    vmt_status st = vmt_core_get_access(vmi, gfn, view, &a);
    if (st == VMT_OK && had_x)
        st = vmt_core_set_access(vmi, gfn, view, (vmt_access)(a | VMT_ACCESS_X), 0);
    /* A vanished view has nothing left to restore. */
    if (st == VMT_OK || st == VMT_E_VIEW_NOT_FOUND)
        g_hash_table_remove(mc->had_x, &key);
    return st;
}

static void mc_destroy(void *self)
{
    memory_controller *mc = self;
    g_hash_table_destroy(mc->had_x);
    g_free(mc);
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
    memory_controller *mc = g_new0(memory_controller, 1);
    mc->had_x = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    out->ops = &memory_ops;
    out->self = mc;
    return VMT_OK;
}

bool vmt_is_memory_controller(const vmt_tap_controller *c)
{
    return c && c->ops == &memory_ops;
}
