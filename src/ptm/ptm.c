// SPDX-License-Identifier: MIT
/* The page-table monitor (docs/api.md, page-table monitor).
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
 *    on it goes pending, docs/api.md, breakpoint manager); without this, a page that one process
 *    unmaps while another keeps it (a shared library) would leave the
 *    other's breakpoints pending for good. A consumer that tracks addresses
 *    one by one sees a PAGE_IN for an address already in, at the same pa.
 *  - mark_dirty_entry accepts any address inside an entry (a write to its
 *    upper half counts). It allocates nothing (a bit per vCPU in the
 *    entry, a link in its view's dirty list), so a write event cannot fail
 *    for memory; vCPUs from 64 on are not tracked (false).
 *  - Out of memory: an operation makes its allocations before it changes
 *    the guest or the indexes (VMT_E_NOMEM: nothing changed); a re-walk
 *    also makes room for the events and the work of the re-announcement
 *    that its page-out may need, so that re-announcing cannot fail.
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

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/amd64.h"
#include "core/holds.h"
#include "ptm/ptm_impl.h"
#include "ptm/ptm_internal.h"
#include "vmitap/log.h"

static bool ctx_valid(vmt_addr_ctx ctx)
{
    return vmt_va_is_canonical(ctx.va) && (ctx.root & ~VMT_AMD64_ADDR_MASK) == 0;
}

static uint64_t ctx_hash(const void *p)
{
    const vmt_addr_ctx *c = p;
    return vmt_htab_hash_u64((c->va * 0x9e3779b97f4a7c15ull) ^ c->root);
}

static bool ctx_equal(const void *a, const void *b)
{
    return vmt_ctx_eq(*(const vmt_addr_ctx *)a, *(const vmt_addr_ctx *)b);
}

/* Iterates the used slots of a vmt_htab (removing the current one is safe). */
#define VAL(t, i) ((t)->slots[i].val)

/* ---- object lifetimes ---- */

static void entry_free(ptm_entry *e)
{
    vmt_htab_fini(&e->users);
    vmt_free(e);
}

static void view_free(ptm_view *v)
{
    for (size_t i = 0; (i = vmt_htab_next(&v->addrs, i)) < v->addrs.n; i++)
        vmt_free(VAL(&v->addrs, i));
    for (size_t i = 0; (i = vmt_htab_next(&v->entries, i)) < v->entries.n; i++)
        entry_free(VAL(&v->entries, i));
    for (size_t i = 0; (i = vmt_htab_next(&v->tables, i)) < v->tables.n; i++)
        vmt_free(VAL(&v->tables, i));
    for (size_t i = 0; (i = vmt_htab_next(&v->frames, i)) < v->frames.n; i++)
        vmt_free(VAL(&v->frames, i));
    vmt_htab_fini(&v->addrs);
    vmt_htab_fini(&v->entries);
    vmt_htab_fini(&v->tables);
    vmt_htab_fini(&v->frames);
    vmt_free(v);
}

static ptm_view *view_get(const vmt_ptm *ptm, vmt_view view)
{
    return vmt_htab_get(&ptm->views, PTM_VIEW_KEY(view));
}

/* VMT_E_NOMEM: no view made. A new view is dropped again by
 * view_drop_if_empty when the operation fails. */
static vmt_status view_get_or_add(vmt_ptm *ptm, vmt_view view, ptm_view **out)
{
    ptm_view *v = view_get(ptm, view);
    if (!v) {
        v = vmt_calloc(1, sizeof *v);
        if (!v)
            return VMT_E_NOMEM;
        v->view = view;
        vmt_htab_init(&v->addrs, ctx_hash, ctx_equal);
        vmt_htab_init(&v->entries, vmt_htab_hash_u64p, vmt_htab_eq_u64p);
        vmt_htab_init(&v->tables, vmt_htab_hash_u64p, vmt_htab_eq_u64p);
        vmt_htab_init(&v->frames, vmt_htab_hash_u64p, vmt_htab_eq_u64p);
        if (vmt_htab_put(&ptm->views, PTM_VIEW_KEY(view), v) != VMT_OK) {
            vmt_free(v);
            return VMT_E_NOMEM;
        }
    }
    *out = v;
    return VMT_OK;
}

/* A view with no address and no owed restore has nothing left to track. */
static void view_drop_if_empty(vmt_ptm *ptm, ptm_view *v)
{
    if (vmt_htab_size(&v->addrs) == 0 && vmt_htab_size(&v->tables) == 0) {
        vmt_htab_del(&ptm->views, PTM_VIEW_KEY(v->view));
        view_free(v);
    }
}

vmt_status vmt_ptm_new(vmt_ptm **out)
{
    if (!out)
        return VMT_E_INVALID;
    vmt_ptm *ptm = vmt_calloc(1, sizeof *ptm);
    if (!ptm)
        return VMT_E_NOMEM;
    vmt_htab_init(&ptm->views, vmt_htab_hash_ptr, NULL);
    ptm->holder = vmt_core_holder_new();
    *out = ptm;
    return VMT_OK;
}

void vmt_ptm_free(vmt_ptm *ptm)
{
    if (!ptm)
        return;
    for (size_t i = 0; (i = vmt_htab_next(&ptm->views, i)) < ptm->views.n; i++)
        view_free(VAL(&ptm->views, i));
    vmt_htab_fini(&ptm->views);
    vmt_free(ptm->scratch);
    vmt_free(ptm);
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
 * the page is exactly R (docs/api.md, page-table monitor). A breakpoint controller's
 * needs on the same frame win over the preferences (R on, X off). */
static const vmt_access_hold table_hold = {
    .off = VMT_ACCESS_W,
    .soft_on = VMT_ACCESS_R,
    .soft_off = VMT_ACCESS_X,
    .flags = VMT_SET_ACCESS_IGNORE_PAGE_WALK_UPDATES,
};

static vmt_status table_protect(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, vmt_gfn gfn)
{
    ptm_table *t = vmt_htab_get(&v->tables, &gfn);
    if (t) {
        if (t->entries++ == 0) { /* an owed restore: the page is still protected */
            v->owed--;
            ptm->tables++;
        }
        return VMT_OK;
    }
    t = vmt_malloc(sizeof *t); /* before the guest changes */
    if (!t || vmt_htab_reserve(&v->tables, 1) != VMT_OK) {
        vmt_free(t);
        return VMT_E_NOMEM;
    }
    vmt_status st = vmt_core_hold_access(vmi, gfn, v->view, ptm->holder, &table_hold);
    if (st != VMT_OK) {
        vmt_free(t);
        return st;
    }
    t->gfn = gfn;
    t->entries = 1;
    (void)vmt_htab_put(&v->tables, &t->gfn, t); /* reserved above */
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
    vmt_htab_del(&v->tables, &t->gfn);
    vmt_free(t);
    return VMT_OK;
}

static vmt_status table_unprotect(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, vmt_gfn gfn)
{
    ptm_table *t = vmt_htab_get(&v->tables, &gfn);
    if (--t->entries > 0)
        return VMT_OK;
    ptm->tables--;
    v->owed++;
    return table_restore(ptm, v, vmi, t);
}

/* Retries the restores that failed earlier; returns the first failure. */
static vmt_status view_retry_restores(const vmt_ptm *ptm, ptm_view *v, vmt_core *vmi)
{
    vmt_status first = VMT_OK;
    for (size_t i = 0; v->owed && i < v->tables.n; i++) {
        ptm_table *t = VAL(&v->tables, i);
        if (!vmt_htab_used(&v->tables.slots[i]) || t->entries != 0)
            continue;
        vmt_status st = table_restore(ptm, v, vmi, t); /* removal moves nothing: i stays valid */
        if (first == VMT_OK)
            first = st;
    }
    return first;
}

/* ---- entries ---- */

/* Takes e (dirty) off its view's dirty list. */
static void dirty_unlink(ptm_view *v, ptm_entry *e)
{
    if (e->dirty_prev)
        e->dirty_prev->dirty_next = e->dirty_next;
    else
        v->dirty = e->dirty_next;
    if (e->dirty_next)
        e->dirty_next->dirty_prev = e->dirty_prev;
    e->dirty = 0;
    e->dirty_prev = e->dirty_next = NULL;
}

static void dirty_forget(ptm_view *v, ptm_entry *e)
{
    if (e->dirty)
        dirty_unlink(v, e);
}

/* All allocations first (a new entry, room for a among its users), then
 * the guest (the table page protected): VMT_E_NOMEM changes nothing. */
static vmt_status entry_ref(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, ptm_addr *a, vmt_pa epa,
                            int level)
{
    ptm_entry *e = vmt_htab_get(&v->entries, &epa);
    if (!e) {
        e = vmt_calloc(1, sizeof *e);
        if (!e)
            return VMT_E_NOMEM;
        e->pa = epa;
        vmt_htab_init(&e->users, vmt_htab_hash_ptr, NULL);
        vmt_status st = VMT_E_NOMEM;
        if (vmt_htab_reserve(&e->users, 1) == VMT_OK && vmt_htab_reserve(&v->entries, 1) == VMT_OK)
            st = table_protect(ptm, v, vmi, vmt_gfn_from_pa(epa));
        if (st != VMT_OK) {
            entry_free(e);
            return st;
        }
        (void)vmt_htab_put(&v->entries, &e->pa, e); /* reserved above */
        ptm->entries++;
    } else if (!vmt_htab_lookup(&e->users, a, NULL, NULL) &&
               vmt_htab_reserve(&e->users, 1) != VMT_OK) {
        return VMT_E_NOMEM;
    }
    e->level_refs[level - 1]++;
    uintptr_t n = (uintptr_t)vmt_htab_get(&e->users, a);
    (void)vmt_htab_put(&e->users, a, (void *)(n + 1)); /* reserved above */
    return VMT_OK;
}

static vmt_status entry_unref(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, ptm_addr *a, vmt_pa epa,
                              int level)
{
    ptm_entry *e = vmt_htab_get(&v->entries, &epa);
    e->level_refs[level - 1]--;
    uintptr_t n = (uintptr_t)vmt_htab_get(&e->users, a);
    if (n > 1)
        (void)vmt_htab_put(&e->users, a, (void *)(n - 1)); /* a replacement: no allocation */
    else
        vmt_htab_del(&e->users, a);
    if (vmt_htab_size(&e->users) > 0)
        return VMT_OK;
    dirty_forget(v, e);
    vmt_htab_del(&v->entries, &epa);
    entry_free(e);
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

/* A frame record for gfn made ahead, if the view has none yet (*fresh:
 * NULL otherwise): frame_link then cannot fail. VMT_E_NOMEM: nothing
 * changed. */
static vmt_status frame_reserve(ptm_view *v, vmt_gfn gfn, ptm_frame **fresh)
{
    *fresh = NULL;
    if (vmt_htab_get(&v->frames, &gfn))
        return VMT_OK;
    ptm_frame *fr = vmt_calloc(1, sizeof *fr);
    if (!fr || vmt_htab_reserve(&v->frames, 1) != VMT_OK) {
        vmt_free(fr);
        return VMT_E_NOMEM;
    }
    fr->gfn = gfn;
    *fresh = fr;
    return VMT_OK;
}

/* Links a into its frame's list, in the order addresses were first
 * monitored (the order re-announcements go out), taking *fresh (from
 * frame_reserve) if the frame has no record yet. */
static void frame_link(ptm_view *v, ptm_addr *a, ptm_frame **fresh)
{
    vmt_gfn gfn = vmt_gfn_from_pa(a->walk.pa);
    ptm_frame *fr = vmt_htab_get(&v->frames, &gfn);
    if (!fr) {
        fr = *fresh;
        *fresh = NULL;
        (void)vmt_htab_put(&v->frames, &fr->gfn, fr); /* reserved by frame_reserve */
    }
    ptm_addr *prev = NULL, *next = fr->addrs;
    while (next && next->seq < a->seq) {
        prev = next;
        next = next->frame_next;
    }
    a->frame_prev = prev;
    a->frame_next = next;
    if (prev)
        prev->frame_next = a;
    else
        fr->addrs = a;
    if (next)
        next->frame_prev = a;
    fr->n++;
}

static void frame_unlink(ptm_view *v, ptm_addr *a)
{
    vmt_gfn gfn = vmt_gfn_from_pa(a->walk.pa);
    ptm_frame *fr = vmt_htab_get(&v->frames, &gfn);
    if (a->frame_prev)
        a->frame_prev->frame_next = a->frame_next;
    else
        fr->addrs = a->frame_next;
    if (a->frame_next)
        a->frame_next->frame_prev = a->frame_prev;
    a->frame_prev = a->frame_next = NULL;
    if (--fr->n == 0) {
        vmt_htab_del(&v->frames, &gfn);
        vmt_free(fr);
    }
}

/* ---- monitoring ---- */

vmt_status vmt_ptm_monitor(vmt_ptm *ptm, vmt_core *vmi, vmt_addr_ctx ctx, vmt_view view,
                           uintptr_t tag)
{
    if (!ptm || !vmi || !ctx_valid(ctx))
        return VMT_E_INVALID;
    ptm_view *v = view_get(ptm, view);
    ptm_addr *a = v ? vmt_htab_get(&v->addrs, &ctx) : NULL;
    if (a) {
        a->refs++;
        return VMT_OK;
    }
    vmt_walk w;
    vmt_status st = vmt_core_walk(vmi, ctx, &w);
    if (st != VMT_OK && st != VMT_E_TRANSLATION)
        return st;
    bool present = st == VMT_OK;

    /* Memory first; walk_ref makes the rest (and undoes all on failure). */
    st = view_get_or_add(ptm, view, &v);
    if (st != VMT_OK)
        return st;
    ptm_frame *fresh = NULL;
    a = vmt_calloc(1, sizeof *a);
    if (!a || vmt_htab_reserve(&v->addrs, 1) != VMT_OK ||
        (present && frame_reserve(v, vmt_gfn_from_pa(w.pa), &fresh) != VMT_OK))
        st = VMT_E_NOMEM;
    if (st == VMT_OK) {
        a->ctx = ctx;
        a->tag = tag;
        a->refs = 1;
        a->seq = ptm->next_seq;
        a->paged_in = present;
        a->walk = w;
        st = walk_ref(ptm, v, vmi, a, &w);
    }
    if (st != VMT_OK) {
        vmt_free(a);
        vmt_free(fresh);
        view_drop_if_empty(ptm, v);
        return st;
    }
    ptm->next_seq++;
    (void)vmt_htab_put(&v->addrs, &a->ctx, a); /* reserved above */
    if (present) {
        ptm->paged_in++;
        frame_link(v, a, &fresh);
    }
    vmt_free(fresh); /* NULL unless unused */
    return VMT_OK;
}

static vmt_status addr_drop(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, ptm_addr *a)
{
    vmt_htab_del(&v->addrs, &a->ctx);
    if (a->paged_in) {
        ptm->paged_in--;
        frame_unlink(v, a);
    }
    vmt_status st = walk_unref(ptm, v, vmi, a, &a->walk);
    vmt_free(a);
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
    ptm_addr *a = vmt_htab_get(&v->addrs, &ctx);
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
    for (size_t i = 0; (i = vmt_htab_next(&v->addrs, i)) < v->addrs.n; i++)
        (void)addr_drop(ptm, v, vmi, VAL(&v->addrs, i)); /* removal moves nothing */
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
    for (size_t i = 0; (i = vmt_htab_next(&ptm->views, i)) < ptm->views.n; i++)
        view_clear(ptm, VAL(&ptm->views, i), vmi); /* may drop the view: a tombstone at i */
}

/* ---- dirty entries ---- */

/* No allocation: a dirty mark is a bit in the entry and a link in its
 * view's dirty list. vCPUs from PTM_MAX_VCPUS on are not tracked. */
bool vmt_ptm_mark_dirty_entry(vmt_ptm *ptm, vmt_pa entry_pa, vmt_view view, vmt_vcpu vcpu)
{
    if (!ptm || vcpu >= PTM_MAX_VCPUS)
        return false;
    ptm_view *v = view_get(ptm, view);
    if (!v)
        return false;
    vmt_pa epa = entry_pa & ~(vmt_pa)7;
    ptm_entry *e = vmt_htab_get(&v->entries, &epa);
    if (!e)
        return false;
    if (!e->dirty) {
        e->dirty_prev = NULL;
        e->dirty_next = v->dirty;
        if (v->dirty)
            v->dirty->dirty_prev = e;
        v->dirty = e;
    }
    e->dirty |= 1ull << vcpu;
    return true;
}

/* One processing call: its entry reads, each done once, and what its
 * re-announcement will need. */
typedef struct read_cache {
    vmt_core *vmi;
    vmt_htab values; /* &cached->pa -> cached_entry */
    size_t from;     /* the call's first event in out */
    size_t reann;    /* event slots its re-announcements may take */
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
    cached_entry *ce = vmt_htab_get(&c->values, &pa);
    if (!ce) {
        ce = vmt_malloc(sizeof *ce);
        if (!ce || vmt_htab_reserve(&c->values, 1) != VMT_OK) {
            vmt_free(ce);
            return VMT_E_NOMEM;
        }
        vmt_status st = vmt_core_read(c->vmi, pa, &ce->value, sizeof ce->value);
        if (st != VMT_OK) {
            vmt_free(ce);
            return st;
        }
        ce->pa = pa;
        (void)vmt_htab_put(&c->values, &ce->pa, ce); /* reserved above */
    }
    memcpy(buf, &ce->value, sizeof ce->value);
    return VMT_OK;
}

static void cache_free(read_cache *c)
{
    for (size_t i = 0; (i = vmt_htab_next(&c->values, i)) < c->values.n; i++)
        vmt_free(VAL(&c->values, i));
    vmt_htab_fini(&c->values);
}

static bool events_reserve(vmt_ptm_events *ev, size_t more)
{
    if (ev->cap - ev->len >= more)
        return true;
    size_t cap = ev->cap ? ev->cap : 8;
    while (cap - ev->len < more)
        cap *= 2;
    vmt_ptm_event *items = vmt_reallocarray(ev->items, cap, sizeof *items);
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

/* One work item of the re-announcement: a frame_out or an addr_in
 * (defined below). */
typedef union scratch_item scratch_item;
static vmt_status scratch_reserve(vmt_ptm *ptm, size_t n);

/* Walks a again and moves its record (and the entries and tables it keeps
 * monitored) to the new walk, appending the events the change means.
 * Memory first: VMT_E_NOMEM changes nothing. */
static vmt_status addr_rewalk(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, ptm_addr *a,
                              read_cache *cache, vmt_ptm_events *out)
{
    vmt_walk w;
    vmt_status st = vmt_amd64_walk(cached_read, cache, a->ctx, &w);
    if (st != VMT_OK && st != VMT_E_TRANSLATION)
        return st;
    bool present = st == VMT_OK;
    /* A page-out of a's frame may owe a re-announcement to every address
     * there: room for those events and for the re-announcement's work is
     * made now, so that once the change is made nothing can fail. */
    size_t owes = 0;
    if (a->paged_in && (!present || w.pa != a->walk.pa)) {
        vmt_gfn old = vmt_gfn_from_pa(a->walk.pa);
        owes = ((ptm_frame *)vmt_htab_get(&v->frames, &old))->n;
    }
    if (!events_reserve(out, 2 + cache->reann + owes) ||
        scratch_reserve(ptm, out->len + 2 - cache->from) != VMT_OK)
        return VMT_E_NOMEM;
    ptm_frame *fresh = NULL;
    if (present && frame_reserve(v, vmt_gfn_from_pa(w.pa), &fresh) != VMT_OK)
        return VMT_E_NOMEM;
    st = walk_ref(ptm, v, vmi, a, &w);
    if (st != VMT_OK) {
        vmt_free(fresh);
        return st;
    }
    cache->reann += owes;
    vmt_status released = walk_unref(ptm, v, vmi, a, &a->walk);

    bool was = a->paged_in;
    vmt_pa old_pa = a->walk.pa;
    bool moved = was && present && old_pa != w.pa;
    if (was && (!present || moved))
        frame_unlink(v, a);
    a->walk = w;
    a->paged_in = present;
    if (present && (!was || moved))
        frame_link(v, a, &fresh);
    vmt_free(fresh); /* NULL unless unused */
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

static int addr_seq_cmp(const void *pa, const void *pb)
{
    const ptm_addr *a = *(ptm_addr *const *)pa, *b = *(ptm_addr *const *)pb;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static vmt_status process_entry(vmt_ptm *ptm, ptm_view *v, vmt_core *vmi, vmt_vcpu vcpu, vmt_pa epa,
                                read_cache *cache, vmt_ptm_events *out)
{
    uint64_t bit = 1ull << vcpu;
    /* Gone, or gone and monitored anew, since it was marked: nothing to do. */
    ptm_entry *e = vmt_htab_get(&v->entries, &epa);
    if (!e || !(e->dirty & bit))
        return VMT_OK;
    /* Re-walks never free addresses, so this snapshot stays valid. */
    size_t n = 0;
    ptm_addr **users = vmt_reallocarray(NULL, vmt_htab_size(&e->users), sizeof *users);
    if (!users)
        return VMT_E_NOMEM;
    for (size_t i = 0; (i = vmt_htab_next(&e->users, i)) < e->users.n; i++)
        users[n++] = e->users.slots[i].key;
    qsort(users, n, sizeof *users, addr_seq_cmp);
    vmt_status st = VMT_OK;
    for (size_t i = 0; i < n && st == VMT_OK; i++)
        st = addr_rewalk(ptm, v, vmi, users[i], cache, out);
    vmt_free(users);
    if (st != VMT_OK)
        return st;
    e = vmt_htab_get(&v->entries, &epa); /* may have gone with the old walks */
    if (e && e->dirty == bit)
        dirty_unlink(v, e);
    else if (e)
        e->dirty &= ~bit;
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
    size_t last;  /* index of the frame's last PAGE_OUT */
} frame_out;

/* A PAGE_IN event's address and index. */
typedef struct addr_in {
    vmt_view view;
    vmt_addr_ctx ctx;
    size_t at;
} addr_in;

static int addr_in_cmp(const void *pa, const void *pb)
{
    const addr_in *a = pa, *b = pb;
    if (a->view != b->view)
        return a->view < b->view ? -1 : 1;
    if (a->ctx.va != b->ctx.va)
        return a->ctx.va < b->ctx.va ? -1 : 1;
    if (a->ctx.root != b->ctx.root)
        return a->ctx.root < b->ctx.root ? -1 : 1;
    return a->at < b->at ? -1 : a->at > b->at;
}

static int frame_out_key_cmp(const void *pa, const void *pb)
{
    const frame_out *a = pa, *b = pb;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return a->last < b->last ? -1 : a->last > b->last;
}

static int frame_out_last_cmp(const void *pa, const void *pb)
{
    const frame_out *a = pa, *b = pb;
    return a->last < b->last ? -1 : a->last > b->last;
}

union scratch_item {
    frame_out fo;
    addr_in in;
};

static vmt_status scratch_reserve(vmt_ptm *ptm, size_t n)
{
    if (n <= ptm->scratch_cap)
        return VMT_OK;
    size_t cap = ptm->scratch_cap ? ptm->scratch_cap : 16;
    while (cap < n)
        cap *= 2;
    void *p = vmt_reallocarray(ptm->scratch, cap, sizeof(scratch_item));
    if (!p)
        return VMT_E_NOMEM;
    ptm->scratch = p;
    ptm->scratch_cap = cap;
    return VMT_OK;
}

/* Whether a has a PAGE_IN of its own after index after: ins[0..n) sorted
 * by addr_in_cmp. */
static bool paged_in_after(const addr_in *ins, size_t n, size_t after, vmt_view view,
                           const ptm_addr *a)
{
    addr_in probe = {view, a->ctx, SIZE_MAX};
    size_t lo = 0, hi = n; /* the first element above probe: after a's last */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (addr_in_cmp(&ins[mid], &probe) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 && ins[lo - 1].view == view && vmt_ctx_eq(ins[lo - 1].ctx, a->ctx) &&
           ins[lo - 1].at > after;
}

/* Allocates nothing: addr_rewalk made room in out for every event this
 * may add and in ptm->scratch for its work (page-outs from the front,
 * page-ins from the back). */
static void reannounce(vmt_ptm *ptm, vmt_ptm_events *out, size_t from)
{
    size_t end = out->len, n = 0, n_in = 0;
    for (size_t i = from; i < end; i++)
        n_in += out->items[i].kind == VMT_PTM_PAGE_IN;
    /* n + n_in items of at most sizeof(scratch_item) bytes: no overlap. */
    frame_out *fos = ptm->scratch;
    addr_in *ins =
        (addr_in *)((char *)ptm->scratch + ptm->scratch_cap * sizeof(scratch_item)) - n_in;
    n_in = 0;
    for (size_t i = from; i < end; i++) {
        const vmt_ptm_event *e = &out->items[i];
        if (e->kind == VMT_PTM_PAGE_OUT)
            fos[n++] = (frame_out){(uint64_t)e->view << 48 | vmt_gfn_from_pa(e->pa), i};
        else
            ins[n_in++] = (addr_in){e->view, e->ctx, i};
    }
    qsort(ins, n_in, sizeof *ins, addr_in_cmp);
    /* One per frame, its last page-out; then in the order of those. */
    qsort(fos, n, sizeof *fos, frame_out_key_cmp);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && fos[m - 1].key == fos[i].key)
            m--;
        fos[m++] = fos[i];
    }
    qsort(fos, m, sizeof *fos, frame_out_last_cmp);
    for (size_t i = 0; i < m; i++) {
        vmt_view view = (vmt_view)(fos[i].key >> 48);
        vmt_gfn gfn = fos[i].key & ((1ull << 48) - 1);
        ptm_view *v = view_get(ptm, view);
        ptm_frame *fr = v ? vmt_htab_get(&v->frames, &gfn) : NULL;
        for (ptm_addr *a = fr ? fr->addrs : NULL; a; a = a->frame_next)
            if (!paged_in_after(ins, n_in, fos[i].last, view, a)) /* else its own came after */
                events_push(out, VMT_PTM_PAGE_IN, view, a, a->walk.pa); /* room made ahead */
    }
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

static int dirty_item_cmp(const void *pa, const void *pb)
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
    if (vmt_ptm_pending_restores(ptm) == 0) /* the usual case */
        return VMT_OK;
    vmt_status first = VMT_OK;
    for (size_t i = 0; (i = vmt_htab_next(&ptm->views, i)) < ptm->views.n; i++) {
        ptm_view *v = VAL(&ptm->views, i);
        vmt_status st = view_retry_restores(ptm, v, vmi);
        if (first == VMT_OK)
            first = st;
        view_drop_if_empty(ptm, v); /* removal moves nothing */
    }
    return first;
}

/* The entries vcpu marked, in processing order, into *items (vmt_free). */
static vmt_status dirty_items(const vmt_ptm *ptm, vmt_vcpu vcpu, dirty_item **items, size_t *n)
{
    uint64_t bit = 1ull << vcpu;
    size_t count = 0;
    for (size_t i = 0; (i = vmt_htab_next(&ptm->views, i)) < ptm->views.n; i++)
        for (ptm_entry *e = ((ptm_view *)VAL(&ptm->views, i))->dirty; e; e = e->dirty_next)
            count += !!(e->dirty & bit);
    *n = 0;
    *items = vmt_reallocarray(NULL, count + 1, sizeof **items);
    if (!*items)
        return VMT_E_NOMEM;
    for (size_t i = 0; (i = vmt_htab_next(&ptm->views, i)) < ptm->views.n; i++) {
        ptm_view *v = VAL(&ptm->views, i);
        for (ptm_entry *e = v->dirty; e; e = e->dirty_next)
            if (e->dirty & bit)
                (*items)[(*n)++] = (dirty_item){v, e->pa, entry_top_level(e)};
    }
    qsort(*items, *n, sizeof **items, dirty_item_cmp);
    return VMT_OK;
}

vmt_status vmt_ptm_process_dirty_entries(vmt_ptm *ptm, vmt_core *vmi, vmt_vcpu vcpu,
                                         vmt_ptm_events *out)
{
    if (!ptm || !vmi || !out || out->len > out->cap || (out->cap && !out->items))
        return VMT_E_INVALID;
    if (vcpu >= PTM_MAX_VCPUS) /* nothing marked */
        return retry_all_restores(ptm, vmi);
    dirty_item *items;
    size_t n;
    vmt_status st = dirty_items(ptm, vcpu, &items, &n);
    if (st != VMT_OK)
        return st;
    size_t from = out->len;
    read_cache cache = {.vmi = vmi, .from = from};
    vmt_htab_init(&cache.values, vmt_htab_hash_u64p, vmt_htab_eq_u64p);
    for (size_t i = 0; i < n && st == VMT_OK; i++)
        st = process_entry(ptm, items[i].v, vmi, vcpu, items[i].pa, &cache, out);
    cache_free(&cache);
    vmt_free(items);
    /* Even after a failure: the page-outs already delivered need it. */
    if (out->len > from)
        reannounce(ptm, out, from);
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
    for (size_t i = 0; (i = vmt_htab_next(&ptm->views, i)) < ptm->views.n; i++)
        n += ((ptm_view *)VAL(&ptm->views, i))->owed;
    return n;
}

bool vmt_ptm_lookup(const vmt_ptm *ptm, vmt_addr_ctx ctx, vmt_view view, uintptr_t *tag,
                    bool *paged_in, vmt_pa *pa)
{
    const ptm_view *v = ptm ? view_get(ptm, view) : NULL;
    const ptm_addr *a = v ? vmt_htab_get(&v->addrs, &ctx) : NULL;
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
