// SPDX-License-Identifier: MIT
/* Raw memory, shadow frames, access rights and views (altp2m emulation)
 * of the KVM driver. A view is its default access plus a hash map of the
 * frames that differ; the active view is what the memslots show. */
#include <string.h>

#include "drivers/kvm/kvm_internal.h"
#include "vmitap/log.h"

#define PACK(backing, acc) GSIZE_TO_POINTER(((gsize)(backing) << 4) | (gsize)(acc))

static kvm_view *view_new(vmt_access def)
{
    kvm_view *v = g_new0(kvm_view, 1);
    v->def = def;
    v->frames = g_hash_table_new(g_direct_hash, g_direct_equal);
    return v;
}

static void view_free(gpointer p)
{
    kvm_view *v = p;
    g_hash_table_destroy(v->frames);
    g_free(v);
}

vmt_status kvm_views_init(vmt_kvm *k)
{
    k->views = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, view_free);
    g_hash_table_insert(k->views, GUINT_TO_POINTER(0), view_new(VMT_ACCESS_RWX));
    k->active = 0;
    k->next_view = 1;
    kvm_ptw_init(k);
    return VMT_OK;
}

void kvm_views_fini(vmt_kvm *k)
{
    if (k->views)
        g_hash_table_destroy(k->views);
    kvm_ptw_fini(k);
}

kvm_view *kvm_view_get(vmt_kvm *k, vmt_view id) { return g_hash_table_lookup(k->views, GUINT_TO_POINTER(id)); }

void kvm_view_lookup(const kvm_view *v, vmt_gfn gfn, vmt_access *acc, vmt_gfn *backing)
{
    gpointer val;
    if (g_hash_table_lookup_extended(v->frames, GSIZE_TO_POINTER(gfn), NULL, &val)) {
        gsize e = GPOINTER_TO_SIZE(val);
        *acc = (vmt_access)(e & 15);
        *backing = e >> 4;
    } else {
        *acc = v->def;
        *backing = gfn;
    }
}

/* Stores (acc, backing) for gfn in v, dropping the entry when it is the
 * view's default. */
static void view_store(kvm_view *v, vmt_gfn gfn, vmt_access acc, vmt_gfn backing)
{
    if (acc == v->def && backing == gfn)
        g_hash_table_remove(v->frames, GSIZE_TO_POINTER(gfn));
    else
        g_hash_table_insert(v->frames, GSIZE_TO_POINTER(gfn), PACK(backing, acc));
}

/* Execute without read has no native form; it is emulated only on request
 * (see vmitap/kvm.h). */
static vmt_status check_access(const vmt_kvm *k, vmt_access a)
{
    if ((unsigned)a > VMT_ACCESS_RWX)
        return VMT_E_INVALID;
    if ((a & VMT_ACCESS_X) && !(a & VMT_ACCESS_R) && !k->xo)
        return VMT_E_UNSUPPORTED;
    return VMT_OK;
}

/* Changes gfn in view id and, if the view is active, what the guest sees;
 * on failure the view is left as it was. */
static vmt_status view_update(vmt_kvm *k, vmt_view id, kvm_view *v, vmt_gfn gfn, vmt_access acc,
                              vmt_gfn backing)
{
    vmt_access old_acc;
    vmt_gfn old_backing;
    kvm_view_lookup(v, gfn, &old_acc, &old_backing);
    view_store(v, gfn, acc, backing);
    kvm_ptw_update(k, gfn, id, acc);
    if (id != k->active)
        return VMT_OK;
    vmt_status st = kvm_sync_frame(k, gfn);
    if (st != VMT_OK) {
        view_store(v, gfn, old_acc, old_backing);
        kvm_ptw_update(k, gfn, id, old_acc);
        kvm_sync_frame(k, gfn);
    }
    return st;
}

vmt_status kvm_op_read(void *d, vmt_pa pa, void *buf, size_t len)
{
    vmt_kvm *k = d;
    if (!buf)
        return VMT_E_INVALID;
    if (len == 0)
        return VMT_OK;
    if (!kvm_pa_backed(k, pa, len))
        return VMT_E_OUT_OF_BOUNDS;
    kvm_raw_copy(k, pa, buf, len, false);
    return VMT_OK;
}

vmt_status kvm_op_write(void *d, vmt_pa pa, const void *buf, size_t len)
{
    vmt_kvm *k = d;
    if (!buf)
        return VMT_E_INVALID;
    if (len == 0)
        return VMT_OK;
    if (!kvm_pa_backed(k, pa, len))
        return VMT_E_OUT_OF_BOUNDS;
    kvm_raw_copy(k, pa, (void *)(uintptr_t)buf, len, true);
    kvm_ptw_host_wrote(k, pa, len);
    return VMT_OK;
}

vmt_status kvm_op_get_access(void *d, vmt_gfn gfn, vmt_view view, vmt_access *out)
{
    vmt_kvm *k = d;
    kvm_view *v = kvm_view_get(k, view);
    if (!out)
        return VMT_E_INVALID;
    if (!v)
        return VMT_E_VIEW_NOT_FOUND;
    if (gfn >= k->ram_frames)
        return VMT_E_OUT_OF_BOUNDS;
    vmt_gfn backing;
    vmt_access acc;
    kvm_view_lookup(v, gfn, &acc, &backing);
    *out = (vmt_access)(acc & VMT_ACCESS_RWX);
    return VMT_OK;
}

/* flags: VMT_SET_ACCESS_IGNORE_PAGE_WALK_UPDATES says the frame holds page
 * tables. The CPU cannot walk page tables in a frame without a memslot
 * (the guest would take a fault it cannot handle), so such a frame, when
 * it keeps R, stays mapped even without X: fetches from it are then not
 * trapped (nobody executes page tables); writes still are. The CPU's own
 * A/D-bit updates produce no events under KVM either way. */
vmt_status kvm_op_set_access(void *d, vmt_gfn gfn, vmt_view view, vmt_access access, unsigned flags)
{
    vmt_kvm *k = d;
    vmt_status st = check_access(k, access);
    if (st != VMT_OK)
        return st;
    kvm_view *v = kvm_view_get(k, view);
    if (!v)
        return VMT_E_VIEW_NOT_FOUND;
    if (gfn >= k->ram_frames)
        return VMT_E_OUT_OF_BOUNDS;
    vmt_access acc;
    vmt_gfn backing;
    kvm_view_lookup(v, gfn, &acc, &backing);
    if (flags & VMT_SET_ACCESS_IGNORE_PAGE_WALK_UPDATES)
        access = (vmt_access)(access | KVM_ACCESS_WALK);
    return view_update(k, view, v, gfn, access, backing);
}

vmt_status kvm_op_create_view(void *d, vmt_access default_access, vmt_view *out)
{
    vmt_kvm *k = d;
    if (!out)
        return VMT_E_INVALID;
    vmt_status st = check_access(k, default_access);
    if (st != VMT_OK)
        return st;
    if (g_hash_table_size(k->views) >= 0xffff)
        return VMT_E_NOMEM;
    while (k->next_view == 0 || kvm_view_get(k, k->next_view))
        k->next_view++;
    vmt_view id = k->next_view++;
    g_hash_table_insert(k->views, GUINT_TO_POINTER(id), view_new(default_access));
    *out = id;
    return VMT_OK;
}

/* Collects the frames whose layout may differ between views a and b. */
static void collect(gpointer key, gpointer val, gpointer user)
{
    (void)val;
    g_hash_table_add(user, key);
}

/* Re-installs the frames whose layout may differ between views a and b
 * for the active view. */
static vmt_status resync(vmt_kvm *k, const kvm_view *a, const kvm_view *b)
{
    vmt_status st = VMT_OK;
    if (a->def != b->def) {
        for (vmt_gfn g = 0; g < k->ram_frames && st == VMT_OK; g++)
            st = kvm_sync_frame(k, g);
        return st;
    }
    GHashTable *set = g_hash_table_new(g_direct_hash, g_direct_equal);
    g_hash_table_foreach(a->frames, collect, set);
    g_hash_table_foreach(b->frames, collect, set);
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, set);
    while (st == VMT_OK && g_hash_table_iter_next(&it, &key, NULL))
        st = kvm_sync_frame(k, GPOINTER_TO_SIZE(key));
    g_hash_table_destroy(set);
    return st;
}

static vmt_status switch_to(vmt_kvm *k, vmt_view id)
{
    kvm_view *from = kvm_view_get(k, k->active), *to = kvm_view_get(k, id);
    if (!to)
        return VMT_E_VIEW_NOT_FOUND;
    if (id == k->active)
        return VMT_OK;
    vmt_view old = k->active;
    k->active = id;
    vmt_status st = resync(k, from, to);
    if (st != VMT_OK) {
        /* back to the old view, as far as KVM lets us */
        vmt_log(VMT_LOG_ERROR, "kvm: switching to view %u failed; staying in view %u", id, old);
        k->active = old;
        resync(k, from, to);
    }
    return st;
}

vmt_status kvm_switch_view(vmt_kvm *k, vmt_view id) { return switch_to(k, id); }

vmt_status kvm_op_switch_view(void *d, vmt_view view) { return switch_to(d, view); }

/* Destroying the active view first moves the vCPU to view 0. */
vmt_status kvm_op_destroy_view(void *d, vmt_view view)
{
    vmt_kvm *k = d;
    if (view == 0)
        return VMT_E_INVALID;
    if (!kvm_view_get(k, view))
        return VMT_E_VIEW_NOT_FOUND;
    if (k->active == view) {
        vmt_status st = switch_to(k, 0);
        if (st != VMT_OK)
            return st;
    }
    g_hash_table_remove(k->views, GUINT_TO_POINTER(view));
    kvm_ptw_view_destroyed(k, view);
    return VMT_OK;
}

vmt_status kvm_op_change_view_gfn(void *d, vmt_view view, vmt_gfn old_gfn, vmt_gfn new_gfn)
{
    vmt_kvm *k = d;
    kvm_view *v = kvm_view_get(k, view);
    if (!v)
        return VMT_E_VIEW_NOT_FOUND;
    if (old_gfn >= k->ram_frames || !kvm_pa_backed(k, new_gfn << VMT_PAGE_SHIFT, VMT_PAGE_SIZE))
        return VMT_E_OUT_OF_BOUNDS;
    vmt_access acc;
    vmt_gfn backing;
    kvm_view_lookup(v, old_gfn, &acc, &backing);
    return view_update(k, view, v, old_gfn, acc, new_gfn);
}

vmt_status kvm_op_reset_view_gfn(void *d, vmt_view view, vmt_gfn gfn)
{
    return kvm_op_change_view_gfn(d, view, gfn, gfn);
}

vmt_status kvm_op_allocate_gfn(void *d, vmt_gfn *out)
{
    vmt_kvm *k = d;
    if (!out)
        return VMT_E_INVALID;
    vmt_gfn g;
    GHashTableIter it;
    gpointer key;
    g_hash_table_iter_init(&it, k->shadow_free);
    if (g_hash_table_iter_next(&it, &key, NULL)) {
        g = GPOINTER_TO_SIZE(key);
        g_hash_table_iter_remove(&it);
    } else if (k->shadow_next < k->ram_frames + k->shadow_cap) {
        g = k->shadow_next++;
    } else {
        return VMT_E_NOMEM;
    }
    memset(kvm_frame_content(k, g), 0, VMT_PAGE_SIZE);
    g_hash_table_add(k->shadow_used, GSIZE_TO_POINTER(g));
    *out = g;
    return VMT_OK;
}

/* A frame still mapped in a view keeps its content until the view drops
 * it; freeing only returns it for reuse. */
vmt_status kvm_op_free_gfn(void *d, vmt_gfn gfn)
{
    vmt_kvm *k = d;
    if (!g_hash_table_remove(k->shadow_used, GSIZE_TO_POINTER(gfn)))
        return VMT_E_INVALID;
    g_hash_table_add(k->shadow_free, GSIZE_TO_POINTER(gfn));
    return VMT_OK;
}

