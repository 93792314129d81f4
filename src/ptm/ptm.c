/* The page-table monitor (API.md section 5).
 *
 * Per view the monitor keeps three indexes:
 *  - addrs:   every monitored (view, ctx) with its reference count, its tag
 *             (the first one given: monitoring again only counts), and its
 *             walk as last seen: the entries read from the root down to the
 *             leaf or the first non-present entry, and the translation when
 *             the walk reached a present leaf;
 *  - entries: every paging-structure entry named by a recorded walk, keyed
 *             by its physical address, with the addresses whose walks name
 *             it and how often, per level (a self-referencing table can put
 *             one entry on a walk twice, at two levels);
 *  - tables:  every table page holding a monitored entry, with the access it
 *             had before it was write-protected;
 * plus, per vCPU, the set of monitored entries a guest write touched.
 *
 * A table page is protected when its first monitored entry appears and
 * gets its saved access back when its last one goes, so the same page
 * reached from several roots or at several levels is protected once.
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
#include "ptm/ptm_internal.h"
#include "vmitap/log.h"

typedef struct ptm_addr {
    vmt_addr_ctx ctx; /* hash key */
    uintptr_t tag;
    unsigned refs;    /* monitor calls not yet matched by unmonitor */
    uint64_t seq;     /* when it was first monitored: orders events */
    bool paged_in;    /* the recorded walk reached a present leaf */
    vmt_walk walk;    /* as last seen; walk.pa valid when paged_in */
} ptm_addr;

typedef struct ptm_entry {
    vmt_pa pa;               /* hash key */
    unsigned level_refs[4];  /* occurrences on recorded walks, [level - 1] */
    GHashTable *users;       /* ptm_addr * -> occurrences on its walk */
} ptm_entry;

typedef struct ptm_table {
    vmt_gfn gfn;       /* hash key */
    vmt_access saved;  /* access before we protected it */
    unsigned entries;  /* monitored entries in the page; 0: restore owed */
} ptm_table;

typedef struct ptm_view {
    vmt_view view;
    GHashTable *addrs;   /* &addr->ctx -> ptm_addr (owned) */
    GHashTable *entries; /* &entry->pa -> ptm_entry (owned) */
    GHashTable *tables;  /* &table->gfn -> ptm_table (owned) */
    GHashTable *dirty;   /* vcpu -> set of ptm_entry * */
    size_t owed;         /* tables whose restore failed */
} ptm_view;

struct vmt_ptm {
    GHashTable *views; /* view -> ptm_view (owned) */
    uint64_t next_seq;
    size_t tables, entries, paged_in; /* the three public counters */
};

/* Walk position i (0 = PML4E) is at paging level 4 - i. */
static int walk_level(unsigned i) { return 4 - (int)i; }

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

static GPtrArray *table_keys(GHashTable *h) { return table_snapshot(h, true); }
static GPtrArray *table_values(GHashTable *h) { return table_snapshot(h, false); }

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
    g_hash_table_destroy(v->entries);
    g_hash_table_destroy(v->addrs);
    g_hash_table_destroy(v->tables);
    g_free(v);
}

static void set_free(gpointer p) { g_hash_table_destroy(p); }

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
    vmt_access saved;
    vmt_status st = vmt_core_get_access(vmi, gfn, v->view, &saved);
    if (st != VMT_OK)
        return st;
    st = vmt_core_set_access(vmi, gfn, v->view, VMT_ACCESS_R, VMT_SET_ACCESS_IGNORE_PAGE_WALK_UPDATES);
    if (st != VMT_OK)
        return st;
    t = g_new(ptm_table, 1);
    t->gfn = gfn;
    t->saved = saved;
    t->entries = 1;
    g_hash_table_insert(v->tables, &t->gfn, t);
    ptm->tables++;
    return VMT_OK;
}

/* Gives a page with no monitored entry left its saved access back. On
 * failure the page stays in the index as an owed restore. */
static vmt_status table_restore(ptm_view *v, vmt_core *vmi, ptm_table *t)
{
    vmt_status st = vmt_core_set_access(vmi, t->gfn, v->view, t->saved, 0);
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
    return table_restore(v, vmi, t);
}

/* Retries the restores that failed earlier; returns the first failure. */
static vmt_status view_retry_restores(ptm_view *v, vmt_core *vmi)
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
        vmt_status st = table_restore(v, vmi, owed->pdata[i]);
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
    if (present)
        ptm->paged_in++;
    return VMT_OK;
}

static vmt_status addr_drop(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, ptm_addr *a)
{
    g_hash_table_steal(v->addrs, &a->ctx);
    if (a->paged_in)
        ptm->paged_in--;
    vmt_status st = walk_unref(ptm, v, vmi, a, &a->walk);
    g_free(a);
    return st;
}

static vmt_status unmonitor(vmt_ptm *ptm, vmt_core *vmi, vmt_addr_ctx ctx, vmt_view view, bool force)
{
    if (!ptm || !vmi || !ctx_valid(ctx))
        return VMT_E_INVALID;
    ptm_view *v = view_get(ptm, view);
    if (!v)
        return VMT_OK;
    /* Debts of earlier calls first: a restore failing now stays owed, so
     * that the failure this call reports is still visible afterwards. */
    vmt_status retried = view_retry_restores(v, vmi);
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
    (void)view_retry_restores(v, vmi); /* earlier debts, as in unmonitor() */
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
    a->walk = w;
    a->paged_in = present;
    if (was && !present)
        ptm->paged_in--;
    if (!was && present)
        ptm->paged_in++;
    bool moved = was && present && old_pa != w.pa;
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
        vmt_status st = view_retry_restores(v, vmi);
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
    vmt_status st = VMT_OK;
    for (guint i = 0; i < items->len && st == VMT_OK; i++) {
        dirty_item *it = &g_array_index(items, dirty_item, i);
        st = process_entry(ptm, it->v, vmi, vcpu, it->pa, &cache, out);
    }
    g_hash_table_destroy(cache.values);
    g_array_free(items, TRUE);
    return st != VMT_OK ? st : retry_all_restores(ptm, vmi);
}

/* ---- counters and inspection ---- */

size_t vmt_ptm_monitored_tables(const vmt_ptm *ptm) { return ptm ? ptm->tables : 0; }
size_t vmt_ptm_monitored_entries(const vmt_ptm *ptm) { return ptm ? ptm->entries : 0; }
size_t vmt_ptm_paged_in_entries(const vmt_ptm *ptm) { return ptm ? ptm->paged_in : 0; }

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

/* ---- consistency check ---- */

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            vmt_log(VMT_LOG_ERROR, "ptm check: " __VA_ARGS__);                                     \
            return false;                                                                          \
        }                                                                                          \
    } while (0)

/* The recorded walk ends at a non-present entry or at a present leaf. */
static bool check_addr(const ptm_view *v, const ptm_addr *a)
{
    const vmt_walk *w = &a->walk;
    CHECK(a->refs > 0, "address %#" PRIx64 " has no reference", a->ctx.va);
    CHECK(w->levels >= 1 && w->levels <= 4, "address %#" PRIx64 ": walk of %u entries", a->ctx.va,
          w->levels);
    unsigned last = w->levels - 1;
    uint64_t leaf = w->entry[last];
    bool ends_at_leaf = vmt_amd64_present(leaf) && vmt_amd64_is_leaf(leaf, walk_level(last));
    CHECK(ends_at_leaf || !vmt_amd64_present(leaf), "address %#" PRIx64 ": walk stops early",
          a->ctx.va);
    CHECK(a->paged_in == ends_at_leaf, "address %#" PRIx64 ": paged_in disagrees with its walk",
          a->ctx.va);
    CHECK(!a->paged_in || w->pa == vmt_amd64_leaf_pa(leaf, walk_level(last), a->ctx.va),
          "address %#" PRIx64 ": wrong translation", a->ctx.va);
    for (unsigned i = 0; i < w->levels; i++) {
        const ptm_entry *e = g_hash_table_lookup(v->entries, &w->entry_pa[i]);
        CHECK(e && g_hash_table_contains(e->users, a),
              "address %#" PRIx64 ": entry %#" PRIx64 " does not list it", a->ctx.va, w->entry_pa[i]);
    }
    return true;
}

/* The entry's users name it exactly as often, at exactly the levels, it
 * counts; its table page is protected. Counts entries per table in per_table. */
static bool check_entry(const ptm_view *v, const ptm_entry *e, GHashTable *per_table)
{
    unsigned levels[4] = {0};
    GHashTableIter it;
    gpointer k, n;
    CHECK(g_hash_table_size(e->users) > 0, "entry %#" PRIx64 " has no user", e->pa);
    g_hash_table_iter_init(&it, e->users);
    while (g_hash_table_iter_next(&it, &k, &n)) {
        const ptm_addr *a = k;
        CHECK(g_hash_table_lookup(v->addrs, &a->ctx) == a, "entry %#" PRIx64 ": unknown user", e->pa);
        unsigned seen = 0;
        for (unsigned i = 0; i < a->walk.levels; i++) {
            if (a->walk.entry_pa[i] == e->pa) {
                seen++;
                levels[walk_level(i) - 1]++;
            }
        }
        CHECK(seen == GPOINTER_TO_UINT(n), "entry %#" PRIx64 ": wrong use count", e->pa);
    }
    CHECK(memcmp(levels, e->level_refs, sizeof levels) == 0, "entry %#" PRIx64 ": wrong level counts",
          e->pa);
    vmt_gfn gfn = vmt_gfn_from_pa(e->pa);
    const ptm_table *t = g_hash_table_lookup(v->tables, &gfn);
    CHECK(t && t->entries > 0, "entry %#" PRIx64 ": its table is not protected", e->pa);
    guint counted = GPOINTER_TO_UINT(g_hash_table_lookup(per_table, t));
    g_hash_table_insert(per_table, (gpointer)t, GUINT_TO_POINTER(counted + 1));
    return true;
}

static bool check_view(const ptm_view *v, size_t counts[3])
{
    GHashTableIter it;
    gpointer val;
    CHECK(g_hash_table_size(v->addrs) > 0 || g_hash_table_size(v->tables) > 0,
          "view %u is empty but kept", (unsigned)v->view);

    g_hash_table_iter_init(&it, v->addrs);
    while (g_hash_table_iter_next(&it, NULL, &val)) {
        if (!check_addr(v, val))
            return false;
        counts[2] += ((ptm_addr *)val)->paged_in;
    }

    GHashTable *per_table = g_hash_table_new(g_direct_hash, NULL);
    bool ok = true;
    g_hash_table_iter_init(&it, v->entries);
    while (ok && g_hash_table_iter_next(&it, NULL, &val))
        ok = check_entry(v, val, per_table);
    counts[1] += g_hash_table_size(v->entries);

    size_t owed = 0;
    g_hash_table_iter_init(&it, v->tables);
    while (ok && g_hash_table_iter_next(&it, NULL, &val)) {
        const ptm_table *t = val;
        unsigned n = GPOINTER_TO_UINT(g_hash_table_lookup(per_table, t));
        if (n != t->entries) {
            vmt_log(VMT_LOG_ERROR, "ptm check: table %#" PRIx64 " counts %u entries, holds %u",
                    t->gfn, t->entries, n);
            ok = false;
        }
        owed += t->entries == 0;
        counts[0] += t->entries > 0;
    }
    g_hash_table_destroy(per_table);
    if (!ok)
        return false;
    CHECK(owed == v->owed, "view %u: %zu owed restores, counted %zu", (unsigned)v->view, owed, v->owed);

    GHashTableIter dit;
    gpointer set;
    g_hash_table_iter_init(&dit, v->dirty);
    while (g_hash_table_iter_next(&dit, NULL, &set)) {
        g_hash_table_iter_init(&it, set);
        while (g_hash_table_iter_next(&it, &val, NULL)) {
            const ptm_entry *e = val;
            CHECK(g_hash_table_lookup(v->entries, &e->pa) == e, "view %u: dirty entry not monitored",
                  (unsigned)v->view);
        }
    }
    return true;
}

vmt_status vmt_ptm_check(const vmt_ptm *ptm)
{
    if (!ptm)
        return VMT_E_INVALID;
    size_t counts[3] = {0, 0, 0}; /* tables, entries, paged in */
    GHashTableIter it;
    gpointer key, val;
    g_hash_table_iter_init(&it, ptm->views);
    while (g_hash_table_iter_next(&it, &key, &val)) {
        const ptm_view *v = val;
        if (GPOINTER_TO_UINT(key) != v->view || !check_view(v, counts)) {
            vmt_log(VMT_LOG_ERROR, "ptm check: view %u is inconsistent", GPOINTER_TO_UINT(key));
            return VMT_E_INVALID;
        }
    }
    if (counts[0] != ptm->tables || counts[1] != ptm->entries || counts[2] != ptm->paged_in) {
        vmt_log(VMT_LOG_ERROR, "ptm check: counters %zu/%zu/%zu, indexes %zu/%zu/%zu", ptm->tables,
                ptm->entries, ptm->paged_in, counts[0], counts[1], counts[2]);
        return VMT_E_INVALID;
    }
    return VMT_OK;
}
