/* The page-table monitor (API.md section 5).
 *
 * Per view the monitor keeps four indexes (struct definitions in ptm_impl.h):
 *  - addrs:   every monitored (view, ctx) with its reference count, its tag
 *             (the first one given: monitoring again only counts), and its
 *             walk as last seen: the entries read from the root down to the
 *             leaf or the first non-present entry, and the translation when
 *             the walk reached a present leaf;
 *  - entries: every paging-structure entry named by a recorded walk, keyed
 *             by its physical address, with the addresses whose walks name
 *             it and how often, per level (a self-referencing table can put
 *             one entry on a walk twice, at two levels);
 *  - tables:  every table page holding a monitored entry;
 *  - frames:  the paged-in addresses translating into each frame;
 * plus, per vCPU, the set of monitored entries a guest write touched.
 *
 * A table page is protected when its first monitored entry appears and
 * gets its access back when its last one goes, so the same page reached
 * from several roots or at several levels is protected once. Protection is
 * a hold in the core (core/holds.h), which saves the access from before:
 * a frame that is also a breakpoint page in the view is held by the bpm's
 * controller too, and neither undoes the other's protection.
 *
 * Processing the dirty entries re-walks, from the root, every address whose
 * recorded walk names a dirty entry, then swaps the recorded walk for the
 * new one: the new walk's entries are referenced first and the old walk's
 * released after, so entries on both cost no driver call. Comparing the
 * old and the new translation gives the events. A re-walk is at most four
 * 8-byte reads, served from a cache that lives for one processing call
 * (the guest is paused meanwhile), and it stays right whatever changed:
 * several levels written at once, a table moved, a 2 MiB or 1 GiB leaf
 * replacing a table or the reverse.
 *
 * Choices the API leaves open:
 *  - Event addresses are full translations: PAGE_IN's pa is what ctx.va
 *    translates to now (frame base + offset in the page, whatever the page
 *    size), PAGE_OUT's pa what it translated to before. A leaf that changed
 *    without moving the translation (permission bits, 4 KiB -> 2 MiB
 *    mapping of the same bytes) yields no event.
 *  - Events of one processing call come in the order of the dirty entries
 *    (highest level first, then view, then entry address) and, for one
 *    entry, in the order the addresses were first monitored.
 *  - A frame that went out is announced again: after the events of a
 *    processing call, every other monitored address of the view that still
 *    translates into a frame that had a PAGE_OUT gets a PAGE_IN with its
 *    (unchanged) translation, unless a PAGE_IN of its own already followed
 *    that page-out. The bpm handles a PAGE_OUT per frame (every claim armed
 *    on it goes pending, API.md §6); without this, a page that one process
 *    unmaps while another keeps it (a shared library) would leave the
 *    other's breakpoints pending for good. A consumer that tracks addresses
 *    one by one sees a PAGE_IN for an address already in, at the same pa.
 *  - mark_dirty_entry accepts any address inside an entry (a write to its
 *    upper half counts).
 *  - ctx.root must be a frame address (no flag or PCID bits): VMT_E_INVALID
 *    otherwise, like a non-canonical va.
 *  - A driver failure while restoring a page's access does not undo the
 *    unmonitoring: the page stays write-protected, owed a restore, and
 *    every later unmonitor or processing call retries it (a view that no
 *    longer exists counts as restored). If the page is needed again
 *    meanwhile, it is simply monitored again.
 *  - process_dirty_entries appends the events of every change it applied,
 *    even when it then fails: the changes are made in the guest and in the
 *    monitor, so their events must reach the caller. The entry being
 *    processed and those after it stay dirty, and calling again once the
 *    fault is gone finishes the job (already applied changes yield no
 *    second event).
 */
#include "vmitap/ptm.h"

#include <glib.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/amd64.h"
#include "core/holds.h"
#include "ptm/ptm_impl.h"
#include "ptm/ptm_internal.h"
#include "vmitap/log.h"

static bool ctx_valid(vmt_addr_ctx ctx)
{
    return vmt_va_is_canonical(ctx.va) && (ctx.root & ~VMT_AMD64_ADDR_MASK) == 0;
}

static guint ctx_hash(gconstpointer p)
{
    const vmt_addr_ctx *c = p;
    uint64_t h = (c->va * 0x9e3779b97f4a7c15ull) ^ c->root;
    h ^= h >> 31;
    return (guint)(h ^ (h >> 32));
}

static gboolean ctx_equal(gconstpointer a, gconstpointer b)
{
    return vmt_ctx_eq(*(const vmt_addr_ctx *)a, *(const vmt_addr_ctx *)b);
}

/* Snapshots of a hash table's keys or values, to iterate while the table
 * changes (GLib 2.74 lacks g_hash_table_get_*_as_ptr_array). */
static GPtrArray *table_snapshot(GHashTable *h, bool keys)
{
    GPtrArray *arr = g_ptr_array_sized_new(g_hash_table_size(h));
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, h);
    while (g_hash_table_iter_next(&it, &k, &v))
        g_ptr_array_add(arr, keys ? k : v);
    return arr;
}

static GPtrArray *table_keys(GHashTable *h)
{
    return table_snapshot(h, true);
}
static GPtrArray *table_values(GHashTable *h)
{
    return table_snapshot(h, false);
}

/* ---- object lifetimes ---- */

static void entry_free(gpointer p)
{
    ptm_entry *e = p;
    g_hash_table_destroy(e->users);
    g_free(e);
}

static void view_free(gpointer p)
{
    ptm_view *v = p;
    g_hash_table_destroy(v->dirty);
    g_hash_table_destroy(v->frames);
    g_hash_table_destroy(v->entries);
    g_hash_table_destroy(v->addrs);
    g_hash_table_destroy(v->tables);
    g_free(v);
}

static void set_free(gpointer p)
{
    g_hash_table_destroy(p);
}

static void frame_free(gpointer p)
{
    ptm_frame *fr = p;
    g_hash_table_destroy(fr->addrs);
    g_free(fr);
}

static ptm_view *view_get(const vmt_ptm *ptm, vmt_view view)
{
    return g_hash_table_lookup(ptm->views, GUINT_TO_POINTER(view));
}

static ptm_view *view_get_or_add(vmt_ptm *ptm, vmt_view view)
{
    ptm_view *v = view_get(ptm, view);
    if (v)
        return v;
    v = g_new0(ptm_view, 1);
    v->view = view;
    v->addrs = g_hash_table_new_full(ctx_hash, ctx_equal, NULL, g_free);
    v->entries = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, entry_free);
    v->tables = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
    v->dirty = g_hash_table_new_full(g_direct_hash, NULL, NULL, set_free);
    v->frames = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, frame_free);
    g_hash_table_insert(ptm->views, GUINT_TO_POINTER(view), v);
    return v;
}

/* A view with no address and no owed restore has nothing left to track. */
static void view_drop_if_empty(vmt_ptm *ptm, ptm_view *v)
{
    if (g_hash_table_size(v->addrs) == 0 && g_hash_table_size(v->tables) == 0)
        g_hash_table_remove(ptm->views, GUINT_TO_POINTER(v->view));
}

vmt_status vmt_ptm_new(vmt_ptm **out)
{
    if (!out)
        return VMT_E_INVALID;
    vmt_ptm *ptm = g_new0(vmt_ptm, 1);
    ptm->views = g_hash_table_new_full(g_direct_hash, NULL, NULL, view_free);
    ptm->holder = vmt_core_holder_new();
    *out = ptm;
    return VMT_OK;
}

void vmt_ptm_free(vmt_ptm *ptm)
{
    if (!ptm)
        return;
    g_hash_table_destroy(ptm->views);
    g_free(ptm);
}

void vmt_ptm_events_free(vmt_ptm_events *ev)
{
    if (!ev)
        return;
    free(ev->items);
    memset(ev, 0, sizeof *ev);
}

/* ---- table pages ---- */

/* The ptm's hold on a table page (core/holds.h): writes must trap; alone,
 * the page is exactly R (API.md section 5). A breakpoint controller's
 * needs on the same frame win over the preferences (R on, X off). */
static const vmt_access_hold table_hold = {
    .off = VMT_ACCESS_W,
    .soft_on = VMT_ACCESS_R,
    .soft_off = VMT_ACCESS_X,
    .flags = VMT_SET_ACCESS_IGNORE_PAGE_WALK_UPDATES,
};

static vmt_status table_protect(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, vmt_gfn gfn)
{
    ptm_table *t = g_hash_table_lookup(v->tables, &gfn);
    if (t) {
        if (t->entries++ == 0) { /* an owed restore: the page is still protected */
            v->owed--;
            ptm->tables++;
        }
        return VMT_OK;
    }
    vmt_status st = vmt_core_hold_access(vmi, gfn, v->view, ptm->holder, &table_hold);
    if (st != VMT_OK)
        return st;
    t = g_new(ptm_table, 1);
    t->gfn = gfn;
    t->entries = 1;
    g_hash_table_insert(v->tables, &t->gfn, t);
    ptm->tables++;
    return VMT_OK;
}

/* Gives up the hold of a page with no monitored entry left: its access
 * from before, or what other holders (a bpm controller) need. On failure
 * the page stays in the index as an owed restore. */
static vmt_status table_restore(const vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, ptm_table *t)
{
    vmt_status st = vmt_core_release_access(vmi, t->gfn, v->view, ptm->holder);
    if (st != VMT_OK && st != VMT_E_VIEW_NOT_FOUND) {
        vmt_log(VMT_LOG_WARN, "ptm: cannot restore access of gfn %#" PRIx64 " in view %u: %s",
                t->gfn, (unsigned)v->view, vmt_status_str(st));
        return st;
    }
    v->owed--;
    g_hash_table_remove(v->tables, &t->gfn);
    return VMT_OK;
}

static vmt_status table_unprotect(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, vmt_gfn gfn)
{
    ptm_table *t = g_hash_table_lookup(v->tables, &gfn);
    if (--t->entries > 0)
        return VMT_OK;
    ptm->tables--;
    v->owed++;
    return table_restore(ptm, v, vmi, t);
}

/* Retries the restores that failed earlier; returns the first failure. */
static vmt_status view_retry_restores(const vmt_ptm *ptm, ptm_view *v, vmt_core *vmi)
{
    if (v->owed == 0)
        return VMT_OK;
    GPtrArray *owed = g_ptr_array_new();
    GHashTableIter it;
    gpointer val;
    g_hash_table_iter_init(&it, v->tables);
    while (g_hash_table_iter_next(&it, NULL, &val))
        if (((ptm_table *)val)->entries == 0)
            g_ptr_array_add(owed, val);
    vmt_status first = VMT_OK;
    for (guint i = 0; i < owed->len; i++) {
        vmt_status st = table_restore(ptm, v, vmi, owed->pdata[i]);
        if (first == VMT_OK)
            first = st;
    }
    g_ptr_array_free(owed, TRUE);
    return first;
}

/* ---- entries ---- */

static void dirty_forget(ptm_view *v, ptm_entry *e)
{
    GHashTableIter it;
    gpointer set;
    g_hash_table_iter_init(&it, v->dirty);
    while (g_hash_table_iter_next(&it, NULL, &set))
        g_hash_table_remove(set, e);
}

static vmt_status entry_ref(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, ptm_addr *a, vmt_pa epa,
                            int level)
{
    ptm_entry *e = g_hash_table_lookup(v->entries, &epa);
    if (!e) {
        vmt_status st = table_protect(ptm, v, vmi, vmt_gfn_from_pa(epa));
        if (st != VMT_OK)
            return st;
        e = g_new0(ptm_entry, 1);
        e->pa = epa;
        e->users = g_hash_table_new(g_direct_hash, NULL);
        g_hash_table_insert(v->entries, &e->pa, e);
        ptm->entries++;
    }
    e->level_refs[level - 1]++;
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(e->users, a));
    g_hash_table_insert(e->users, a, GUINT_TO_POINTER(n + 1));
    return VMT_OK;
}

static vmt_status entry_unref(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, ptm_addr *a, vmt_pa epa,
                              int level)
{
    ptm_entry *e = g_hash_table_lookup(v->entries, &epa);
    e->level_refs[level - 1]--;
    guint n = GPOINTER_TO_UINT(g_hash_table_lookup(e->users, a));
    if (n > 1)
        g_hash_table_insert(e->users, a, GUINT_TO_POINTER(n - 1));
    else
        g_hash_table_remove(e->users, a);
    if (g_hash_table_size(e->users) > 0)
        return VMT_OK;
    dirty_forget(v, e);
    g_hash_table_remove(v->entries, &epa);
    ptm->entries--;
    return table_unprotect(ptm, v, vmi, vmt_gfn_from_pa(epa));
}

/* References every entry of w for a; all or nothing. */
static vmt_status walk_ref(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, ptm_addr *a, const vmt_walk *w)
{
    for (unsigned i = 0; i < w->levels; i++) {
        vmt_status st = entry_ref(ptm, v, vmi, a, w->entry_pa[i], walk_level(i));
        if (st != VMT_OK) {
            /* A restore failing here stays owed; the caller sees st. */
            while (i-- > 0)
                (void)entry_unref(ptm, v, vmi, a, w->entry_pa[i], walk_level(i));
            return st;
        }
    }
    return VMT_OK;
}

/* Releases every entry of w for a, always completely; returns the first
 * failed restore. */
static vmt_status walk_unref(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, ptm_addr *a,
                             const vmt_walk *w)
{
    vmt_status first = VMT_OK;
    for (unsigned i = 0; i < w->levels; i++) {
        vmt_status st = entry_unref(ptm, v, vmi, a, w->entry_pa[i], walk_level(i));
        if (first == VMT_OK)
            first = st;
    }
    return first;
}

/* ---- which addresses translate into which frame ---- */

static void frame_link(ptm_view *v, ptm_addr *a)
{
    vmt_gfn gfn = vmt_gfn_from_pa(a->walk.pa);
    ptm_frame *fr = g_hash_table_lookup(v->frames, &gfn);
    if (!fr) {
        fr = g_new(ptm_frame, 1);
        fr->gfn = gfn;
        fr->addrs = g_hash_table_new(g_direct_hash, NULL);
        g_hash_table_insert(v->frames, &fr->gfn, fr);
    }
    g_hash_table_add(fr->addrs, a);
}

static void frame_unlink(ptm_view *v, ptm_addr *a)
{
    vmt_gfn gfn = vmt_gfn_from_pa(a->walk.pa);
    ptm_frame *fr = g_hash_table_lookup(v->frames, &gfn);
    g_hash_table_remove(fr->addrs, a);
    if (g_hash_table_size(fr->addrs) == 0)
        g_hash_table_remove(v->frames, &gfn);
}

/* ---- monitoring ---- */

vmt_status vmt_ptm_monitor(vmt_ptm *ptm, vmt_core *vmi, vmt_addr_ctx ctx, vmt_view view,
                           uintptr_t tag)
{
    if (!ptm || !vmi || !ctx_valid(ctx))
        return VMT_E_INVALID;
    ptm_view *v = view_get(ptm, view);
    ptm_addr *a = v ? g_hash_table_lookup(v->addrs, &ctx) : NULL;
    if (a) {
        a->refs++;
        return VMT_OK;
    }
    vmt_walk w;
    vmt_status st = vmt_core_walk(vmi, ctx, &w);
    if (st != VMT_OK && st != VMT_E_TRANSLATION)
        return st;
    bool present = st == VMT_OK;

    v = view_get_or_add(ptm, view);
    a = g_new0(ptm_addr, 1);
    a->ctx = ctx;
    a->tag = tag;
    a->refs = 1;
    a->seq = ptm->next_seq++;
    a->paged_in = present;
    a->walk = w;
    st = walk_ref(ptm, v, vmi, a, &w);
    if (st != VMT_OK) {
        g_free(a);
        view_drop_if_empty(ptm, v);
        return st;
    }
    g_hash_table_insert(v->addrs, &a->ctx, a);
    if (present) {
        ptm->paged_in++;
        frame_link(v, a);
    }
    return VMT_OK;
}

static vmt_status addr_drop(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, ptm_addr *a)
{
    g_hash_table_steal(v->addrs, &a->ctx);
    if (a->paged_in) {
        ptm->paged_in--;
        frame_unlink(v, a);
    }
    vmt_status st = walk_unref(ptm, v, vmi, a, &a->walk);
    g_free(a);
    return st;
}

static vmt_status unmonitor(vmt_ptm *ptm, vmt_core *vmi, vmt_addr_ctx ctx, vmt_view view,
                            bool force)
{
    if (!ptm || !vmi || !ctx_valid(ctx))
        return VMT_E_INVALID;
    ptm_view *v = view_get(ptm, view);
    if (!v)
        return VMT_OK;
    /* Debts of earlier calls first: a restore failing now stays owed, so
     * that the failure this call reports is still visible afterwards. */
    vmt_status retried = view_retry_restores(ptm, v, vmi);
    vmt_status st = VMT_OK;
    ptm_addr *a = g_hash_table_lookup(v->addrs, &ctx);
    if (a && (force || --a->refs == 0))
        st = addr_drop(ptm, v, vmi, a);
    view_drop_if_empty(ptm, v);
    return st != VMT_OK ? st : retried;
}

vmt_status vmt_ptm_unmonitor(vmt_ptm *ptm, vmt_core *vmi, vmt_addr_ctx ctx, vmt_view view)
{
    return unmonitor(ptm, vmi, ctx, view, false);
}

vmt_status vmt_ptm_unmonitor_by_force(vmt_ptm *ptm, vmt_core *vmi, vmt_addr_ctx ctx, vmt_view view)
{
    return unmonitor(ptm, vmi, ctx, view, true);
}

/* Drops every address of the view; failed restores stay owed (logged). */
static void view_clear(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi)
{
    (void)view_retry_restores(ptm, v, vmi); /* earlier debts, as in unmonitor() */
    GPtrArray *addrs = table_values(v->addrs);
    for (guint i = 0; i < addrs->len; i++)
        (void)addr_drop(ptm, v, vmi, addrs->pdata[i]);
    g_ptr_array_free(addrs, TRUE);
    view_drop_if_empty(ptm, v);
}

void vmt_ptm_unmonitor_view(vmt_ptm *ptm, vmt_core *vmi, vmt_view view)
{
    if (!ptm || !vmi)
        return;
    ptm_view *v = view_get(ptm, view);
    if (v)
        view_clear(ptm, v, vmi);
}

void vmt_ptm_unmonitor_all(vmt_ptm *ptm, vmt_core *vmi)
{
    if (!ptm || !vmi)
        return;
    GPtrArray *views = table_values(ptm->views);
    for (guint i = 0; i < views->len; i++)
        view_clear(ptm, views->pdata[i], vmi);
    g_ptr_array_free(views, TRUE);
}

/* ---- dirty entries ---- */

bool vmt_ptm_mark_dirty_entry(vmt_ptm *ptm, vmt_pa entry_pa, vmt_view view, vmt_vcpu vcpu)
{
    if (!ptm)
        return false;
    ptm_view *v = view_get(ptm, view);
    if (!v)
        return false;
    vmt_pa epa = entry_pa & ~(vmt_pa)7;
    ptm_entry *e = g_hash_table_lookup(v->entries, &epa);
    if (!e)
        return false;
    GHashTable *set = g_hash_table_lookup(v->dirty, GUINT_TO_POINTER(vcpu));
    if (!set) {
        set = g_hash_table_new(g_direct_hash, NULL);
        g_hash_table_insert(v->dirty, GUINT_TO_POINTER(vcpu), set);
    }
    g_hash_table_add(set, e);
    return true;
}

/* Entry reads of one processing call, each done once. */
typedef struct read_cache {
    vmt_core *vmi;
    GHashTable *values; /* &cached->pa -> cached_entry */
} read_cache;

typedef struct cached_entry {
    vmt_pa pa;
    uint64_t value;
} cached_entry;

static vmt_status cached_read(void *user, vmt_pa pa, void *buf, size_t len)
{
    read_cache *c = user;
    if (len != sizeof(uint64_t))
        return vmt_core_read(c->vmi, pa, buf, len);
    cached_entry *ce = g_hash_table_lookup(c->values, &pa);
    if (!ce) {
        uint64_t value;
        vmt_status st = vmt_core_read(c->vmi, pa, &value, sizeof value);
        if (st != VMT_OK)
            return st;
        ce = g_new(cached_entry, 1);
        ce->pa = pa;
        ce->value = value;
        g_hash_table_insert(c->values, &ce->pa, ce);
    }
    memcpy(buf, &ce->value, sizeof ce->value);
    return VMT_OK;
}

static bool events_reserve(vmt_ptm_events *ev, size_t more)
{
    if (ev->cap - ev->len >= more)
        return true;
    size_t cap = ev->cap ? ev->cap : 8;
    while (cap - ev->len < more)
        cap *= 2;
    vmt_ptm_event *items = realloc(ev->items, cap * sizeof *items);
    if (!items)
        return false;
    ev->items = items;
    ev->cap = cap;
    return true;
}

static void events_push(vmt_ptm_events *ev, vmt_ptm_event_kind kind, vmt_view view,
                        const ptm_addr *a, vmt_pa pa)
{
    vmt_ptm_event *e = &ev->items[ev->len++];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    e->view = view;
    e->ctx = a->ctx;
    e->pa = pa;
    e->tag = a->tag;
}

/* Walks a again and moves its record (and the entries and tables it keeps
 * monitored) to the new walk, appending the events the change means. */
static vmt_status addr_rewalk(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, ptm_addr *a,
                              read_cache *cache, vmt_ptm_events *out)
{
    vmt_walk w;
    vmt_status st = vmt_amd64_walk(cached_read, cache, a->ctx, &w);
    if (st != VMT_OK && st != VMT_E_TRANSLATION)
        return st;
    bool present = st == VMT_OK;
    if (!events_reserve(out, 2))
        return VMT_E_NOMEM;
    st = walk_ref(ptm, v, vmi, a, &w);
    if (st != VMT_OK)
        return st;
    vmt_status released = walk_unref(ptm, v, vmi, a, &a->walk);

    bool was = a->paged_in;
    vmt_pa old_pa = a->walk.pa;
    bool moved = was && present && old_pa != w.pa;
    if (was && (!present || moved))
        frame_unlink(v, a);
    a->walk = w;
    a->paged_in = present;
    if (present && (!was || moved))
        frame_link(v, a);
    if (was && !present)
        ptm->paged_in--;
    if (!was && present)
        ptm->paged_in++;
    if (was && (!present || moved))
        events_push(out, VMT_PTM_PAGE_OUT, v->view, a, old_pa);
    if (present && (!was || moved))
        events_push(out, VMT_PTM_PAGE_IN, v->view, a, w.pa);
    return released;
}

static gint addr_seq_cmp(gconstpointer pa, gconstpointer pb)
{
    const ptm_addr *a = *(ptm_addr *const *)pa, *b = *(ptm_addr *const *)pb;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static GHashTable *dirty_set(const ptm_view *v, vmt_vcpu vcpu)
{
    return g_hash_table_lookup(v->dirty, GUINT_TO_POINTER(vcpu));
}

static vmt_status process_entry(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, vmt_vcpu vcpu, vmt_pa epa,
                                read_cache *cache, vmt_ptm_events *out)
{
    /* Gone, or gone and monitored anew, since it was marked: nothing to do. */
    ptm_entry *e = g_hash_table_lookup(v->entries, &epa);
    GHashTable *set = dirty_set(v, vcpu);
    if (!e || !set || !g_hash_table_contains(set, e))
        return VMT_OK;
    /* Re-walks never free addresses, so this snapshot stays valid. */
    GPtrArray *users = table_keys(e->users);
    g_ptr_array_sort(users, addr_seq_cmp);
    vmt_status st = VMT_OK;
    for (guint i = 0; i < users->len && st == VMT_OK; i++)
        st = addr_rewalk(ptm, v, vmi, users->pdata[i], cache, out);
    g_ptr_array_free(users, TRUE);
    if (st != VMT_OK)
        return st;
    e = g_hash_table_lookup(v->entries, &epa); /* may have gone with the old walks */
    if (e)
        g_hash_table_remove(set, e);
    return VMT_OK;
}

/* ---- frames that went out, announced again ---- */

/* A consumer may handle a PAGE_OUT per frame: the bpm turns every claim
 * armed on the frame pending, whichever address lost it. The monitored
 * addresses of the view that still translate into that frame (another
 * process mapping the same shared page, say) would then stay pending for
 * good, since their own translation did not change. So after the events of
 * a processing call, each of them gets a PAGE_IN (its unchanged, full
 * translation), unless one of its own came after the frame's last
 * PAGE_OUT. */
typedef struct frame_out {
    uint64_t key; /* view << 48 | gfn (a gfn has at most 40 bits) */
    ptm_view *v;
    vmt_gfn gfn;
    size_t last; /* index of the frame's last PAGE_OUT */
} frame_out;

static gint frame_out_cmp(gconstpointer pa, gconstpointer pb)
{
    const frame_out *a = *(frame_out *const *)pa, *b = *(frame_out *const *)pb;
    return a->last < b->last ? -1 : a->last > b->last;
}

/* Scans the events from `from`: the frames that went out, and for each
 * address the index (+ 1) of its last PAGE_IN. */
static GHashTable *frames_out(vmt_ptm *ptm, const vmt_ptm_events *out, size_t from,
                              GHashTable *last_in)
{
    GHashTable *outs = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
    for (size_t i = from; i < out->len; i++) {
        const vmt_ptm_event *e = &out->items[i];
        ptm_view *v = view_get(ptm, e->view);
        if (e->kind == VMT_PTM_PAGE_IN) {
            ptm_addr *a = g_hash_table_lookup(v->addrs, &e->ctx);
            g_hash_table_insert(last_in, a, GSIZE_TO_POINTER(i + 1));
            continue;
        }
        uint64_t key = (uint64_t)e->view << 48 | vmt_gfn_from_pa(e->pa);
        frame_out *fo = g_hash_table_lookup(outs, &key);
        if (!fo) {
            fo = g_new(frame_out, 1);
            fo->key = key;
            fo->v = v;
            fo->gfn = vmt_gfn_from_pa(e->pa);
            g_hash_table_insert(outs, &fo->key, fo);
        }
        fo->last = i;
    }
    return outs;
}

static vmt_status reannounce(vmt_ptm *ptm, vmt_ptm_events *out, size_t from)
{
    GHashTable *last_in = g_hash_table_new(g_direct_hash, NULL);
    GHashTable *outs = frames_out(ptm, out, from, last_in);
    GPtrArray *list = table_values(outs);
    g_ptr_array_sort(list, frame_out_cmp);
    vmt_status st = VMT_OK;
    for (guint i = 0; i < list->len && st == VMT_OK; i++) {
        const frame_out *fo = list->pdata[i];
        ptm_frame *fr = g_hash_table_lookup(fo->v->frames, &fo->gfn);
        if (!fr)
            continue;
        GPtrArray *addrs = table_keys(fr->addrs);
        g_ptr_array_sort(addrs, addr_seq_cmp);
        for (guint k = 0; k < addrs->len && st == VMT_OK; k++) {
            ptm_addr *a = addrs->pdata[k];
            if (GPOINTER_TO_SIZE(g_hash_table_lookup(last_in, a)) > fo->last)
                continue; /* its own PAGE_IN came after the page-out */
            if (!events_reserve(out, 1))
                st = VMT_E_NOMEM;
            else
                events_push(out, VMT_PTM_PAGE_IN, fo->v->view, a, a->walk.pa);
        }
        g_ptr_array_free(addrs, TRUE);
    }
    g_ptr_array_free(list, TRUE);
    g_hash_table_destroy(outs);
    g_hash_table_destroy(last_in);
    return st;
}

typedef struct dirty_item {
    ptm_view *v;
    vmt_pa pa;
    int level; /* highest level the entry is monitored at */
} dirty_item;

static int entry_top_level(const ptm_entry *e)
{
    for (int level = 4; level > 1; level--)
        if (e->level_refs[level - 1])
            return level;
    return 1;
}

static gint dirty_item_cmp(gconstpointer pa, gconstpointer pb)
{
    const dirty_item *a = pa, *b = pb;
    if (a->level != b->level)
        return a->level > b->level ? -1 : 1;
    if (a->v->view != b->v->view)
        return a->v->view < b->v->view ? -1 : 1;
    return a->pa < b->pa ? -1 : a->pa > b->pa;
}

/* Restores owed by earlier failures, in every view; the first failure. */
static vmt_status retry_all_restores(vmt_ptm *ptm, vmt_core *vmi)
{
    if (vmt_ptm_pending_restores(ptm) == 0) /* the usual case: no snapshot */
        return VMT_OK;
    vmt_status first = VMT_OK;
    GPtrArray *views = table_values(ptm->views);
    for (guint i = 0; i < views->len; i++) {
        ptm_view *v = views->pdata[i];
        vmt_status st = view_retry_restores(ptm, v, vmi);
        if (first == VMT_OK)
            first = st;
        view_drop_if_empty(ptm, v);
    }
    g_ptr_array_free(views, TRUE);
    return first;
}

static GArray *dirty_items(const vmt_ptm *ptm, vmt_vcpu vcpu)
{
    GArray *items = g_array_new(FALSE, FALSE, sizeof(dirty_item));
    GHashTableIter vit;
    gpointer v;
    g_hash_table_iter_init(&vit, ptm->views);
    while (g_hash_table_iter_next(&vit, NULL, &v)) {
        GHashTable *set = dirty_set(v, vcpu);
        if (!set)
            continue;
        GHashTableIter eit;
        gpointer e;
        g_hash_table_iter_init(&eit, set);
        while (g_hash_table_iter_next(&eit, &e, NULL)) {
            dirty_item it = {v, ((ptm_entry *)e)->pa, entry_top_level(e)};
            g_array_append_val(items, it);
        }
    }
    g_array_sort(items, dirty_item_cmp);
    return items;
}

vmt_status vmt_ptm_process_dirty_entries(vmt_ptm *ptm, vmt_core *vmi, vmt_vcpu vcpu,
                                         vmt_ptm_events *out)
{
    if (!ptm || !vmi || !out || out->len > out->cap || (out->cap && !out->items))
        return VMT_E_INVALID;
    GArray *items = dirty_items(ptm, vcpu);
    read_cache cache = {vmi, g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free)};
    size_t from = out->len;
    vmt_status st = VMT_OK;
    for (guint i = 0; i < items->len && st == VMT_OK; i++) {
        dirty_item *it = &g_array_index(items, dirty_item, i);
        st = process_entry(ptm, it->v, vmi, vcpu, it->pa, &cache, out);
    }
    g_hash_table_destroy(cache.values);
    g_array_free(items, TRUE);
    /* Even after a failure: the page-outs already delivered need it. */
    vmt_status re = out->len > from ? reannounce(ptm, out, from) : VMT_OK;
    if (st == VMT_OK)
        st = re;
    return st != VMT_OK ? st : retry_all_restores(ptm, vmi);
}

/* ---- counters and inspection ---- */

size_t vmt_ptm_monitored_tables(const vmt_ptm *ptm)
{
    return ptm ? ptm->tables : 0;
}
size_t vmt_ptm_monitored_entries(const vmt_ptm *ptm)
{
    return ptm ? ptm->entries : 0;
}
size_t vmt_ptm_paged_in_entries(const vmt_ptm *ptm)
{
    return ptm ? ptm->paged_in : 0;
}

size_t vmt_ptm_pending_restores(const vmt_ptm *ptm)
{
    size_t n = 0;
    if (!ptm)
        return 0;
    GHashTableIter it;
    gpointer v;
    g_hash_table_iter_init(&it, ptm->views);
    while (g_hash_table_iter_next(&it, NULL, &v))
        n += ((ptm_view *)v)->owed;
    return n;
}

bool vmt_ptm_lookup(const vmt_ptm *ptm, vmt_addr_ctx ctx, vmt_view view, uintptr_t *tag,
                    bool *paged_in, vmt_pa *pa)
{
    const ptm_view *v = ptm ? view_get(ptm, view) : NULL;
    const ptm_addr *a = v ? g_hash_table_lookup(v->addrs, &ctx) : NULL;
    if (!a)
        return false;
    if (tag)
        *tag = a->tag;
    if (paged_in)
        *paged_in = a->paged_in;
    if (pa && a->paged_in)
        *pa = a->walk.pa;
    return true;
}
