// SPDX-License-Identifier: MIT
/* The breakpoint manager (docs/api.md, breakpoint manager). Data structures: bpm_impl.h.
 *
 * Every change to the guest goes through two primitives, arm() and
 * disarm(), which make the controller calls for one (claim, frame) pair
 * first and commit the index change only once they succeeded (undoing a
 * half-done pair of calls on failure). Operations over many claims (page
 * in/out, remove_by_view, clear) are sequences of these steps: a failure
 * stops the sequence with every index consistent and every trap accounted
 * for, and calling the operation again finishes the work.
 *
 * Where docs/api.md (breakpoint manager) leaves room, the manager does this:
 * - A global claim is filed under the canonical root of its (view, va): the
 *   root of the first global claim there, kept while any global claim at
 *   (view, va), pending or armed, exists. Pending global claims are filed
 *   under it too; a page-in of (view, (va, r)) activates the pending claims
 *   of exactly (va, r) and, for any r, the pending global claims of (va,
 *   canonical root).
 * - Conflict: inserting a claim whose global flag differs from the claim of
 *   the same (view, key) at the ctx bp resolves to (bp's own ctx, or the
 *   canonical root for a global bp), as vmi-rs's check_existing_breakpoint
 *   does, and nothing wider: a non-global claim at (va, r) beside a global
 *   claim filed under another root is accepted. An event under r on a frame
 *   where the non-global claim is armed finds it (exact ctx first); on the
 *   frames of the global claim, events of every root find the global one.
 * - insert of an armed claim with no PA adds a pending copy (inserted =
 *   true); with a PA where it is armed, nothing changes (inserted = false).
 * - remove / remove_with_hint drop the claim of (view, key, ctx) (ctx
 *   resolved as for insert; the global flag must match) wherever it is
 *   armed, and its pending copy; the hint is not needed and not used, so
 *   `remove` does not translate.
 * - Page-out of a frame gives every claim armed there a pending copy, even
 *   one still armed on another frame.
 * - remove_by_event: the key's claim the event hits (as get_by_event finds
 *   it) is removed, and the claim of the same (key, ctx) in every other
 *   view where it is armed; nothing if the event hits no claim of the key.
 * - contains_by_address: an armed claim of (key, ctx) in any view, or a
 *   global one of (key, va) filed under another root.
 * - insert_with_hint arms at the frame of *pa, at va's offset in the page
 *   (the offset bits of *pa are not used); physical addresses must be
 *   below 2^52 (VMT_E_INVALID otherwise).
 * - A claim is armed on at most BPM_MAX_ARMS frames (VMT_E_NOMEM beyond).
 * - Bad input is VMT_E_INVALID before anything changes: a non-canonical va,
 *   a root with bits outside VMT_AMD64_ADDR_MASK (in a breakpoint or in a
 *   PAGE_IN event), a PA at or above 2^52. A pending insert asks the driver
 *   whether the view exists (view_exists) and fails with its status.
 * - An event without a view (has_view false) matches nothing: the built-in
 *   controllers' check_event return false for it, as vmi-rs's do. */
#include <string.h>

#include "bpm/bpm_impl.h"
#include "bpm/bpm_internal.h"
#include "core/alloc.h"
#include "core/amd64.h"
#include "core/opts.h"
#include "vmitap/log.h"

/* ---- hashing ---- */

static uint64_t claim_hash(const void *p)
{
    const bpm_claim *c = p;
    return vmt_htab_hash_u64(c->ctx.va ^ (c->ctx.root * 0x9e3779b97f4a7c15ull) ^
                             (c->key * 0xc2b2ae3d27d4eb4full));
}

static bool claim_equal(const void *a, const void *b)
{
    const bpm_claim *x = a, *y = b;
    return x->key == y->key && x->ctx.va == y->ctx.va && x->ctx.root == y->ctx.root;
}

/* bpm_page and bpm_global both start with their 64-bit id: their tables
 * use vmt_htab_hash_u64p and vmt_htab_eq_u64p. */

/* ---- lookups ---- */

/* The claim of (view, key, ctx); *head (optional) = the chain's head. */
static bpm_claim *claim_find(const vmt_bpm *bpm, vmt_view view, uint64_t key, vmt_addr_ctx ctx,
                             bpm_claim **head)
{
    bpm_claim probe = {.key = key, .ctx = ctx};
    bpm_claim *c = vmt_htab_get(&bpm->claims, &probe);
    if (head)
        *head = c;
    while (c && c->view != view)
        c = c->next_view;
    return c;
}

bpm_claim *bpm_claim_lookup(const vmt_bpm *bpm, vmt_view view, uint64_t key, vmt_addr_ctx ctx)
{
    return claim_find(bpm, view, key, ctx, NULL);
}

bpm_page *bpm_page_lookup(const vmt_bpm *bpm, vmt_view view, vmt_gfn gfn)
{
    uint64_t id = bpm_page_id(view, gfn);
    return vmt_htab_get(&bpm->pages, &id);
}

bpm_global *bpm_global_lookup(const vmt_bpm *bpm, vmt_view view, vmt_va va)
{
    if (vmt_htab_size(&bpm->globals) == 0)
        return NULL;
    uint64_t id = bpm_global_id(view, va);
    return vmt_htab_get(&bpm->globals, &id);
}

bpm_view *bpm_view_lookup(const vmt_bpm *bpm, vmt_view view)
{
    return vmt_htab_get(&bpm->views, BPM_VIEW_KEY(view));
}

vmt_breakpoint bpm_claim_breakpoint(const bpm_claim *c)
{
    vmt_breakpoint bp = {
        .ctx = c->ctx, .view = c->view, .global = c->global, .key = c->key, .tag = c->tag};
    return bp;
}

static bool claim_armed_at(bpm_claim *c, vmt_gfn gfn)
{
    for (unsigned i = 0; i < c->n_arms; i++)
        if (bpm_page_gfn(bpm_arm_page(c, i)) == gfn)
            return true;
    return false;
}

/* ---- views ---- */

/* Most operations touch one view: remember the last one found. */
static bpm_view *view_find(vmt_bpm *bpm, vmt_view view)
{
    if (bpm->last_view && bpm->last_view->view == view)
        return bpm->last_view;
    bpm_view *vs = bpm_view_lookup(bpm, view);
    if (vs)
        bpm->last_view = vs;
    return vs;
}

/* The view's record, made if it has none (VMT_E_NOMEM: none made). A new
 * view is empty until the operation fills it: views_gc drops it again if
 * the operation fails. */
static vmt_status view_get(vmt_bpm *bpm, vmt_view view, bpm_view **out)
{
    bpm_view *vs = view_find(bpm, view);
    if (!vs) {
        vs = vmt_calloc(1, sizeof *vs);
        if (!vs)
            return VMT_E_NOMEM;
        vs->view = view;
        bpm_pendmap_init(&vs->pending);
        if (vmt_htab_put(&bpm->views, BPM_VIEW_KEY(view), vs) != VMT_OK) {
            vmt_free(vs);
            return VMT_E_NOMEM;
        }
        bpm->gc_views = true;
    }
    *out = vs;
    return VMT_OK;
}

static void view_free(bpm_view *vs)
{
    bpm_pendmap_free(&vs->pending);
    vmt_free(vs);
}

/* Views are dropped when empty, at the end of each operation (not in the
 * middle, where a caller may still hold one). */
static void views_gc(vmt_bpm *bpm)
{
    if (!bpm->gc_views)
        return;
    for (size_t i = 0; i < bpm->views.n; i++) {
        vmt_htab_slot *sl = &bpm->views.slots[i];
        bpm_view *vs = sl->val;
        if (vmt_htab_used(sl) && vs->n_pages == 0 && vs->n_pending == 0) {
            if (bpm->last_view == vs)
                bpm->last_view = NULL;
            vmt_htab_del(&bpm->views, sl->key); /* leaves a tombstone: iteration goes on */
            view_free(vs);
        }
    }
    bpm->gc_views = false;
}

/* ---- claims ---- */

/* A new claim, linked into the claims index (and its global record);
 * neither pending nor armed yet: the caller makes it one or the other, or
 * releases it. For a global claim, ctx must already be canonical. head is
 * the chain's head for (key, ctx) as claim_find found it (NULL: none).
 * VMT_E_NOMEM: nothing changed. */
static vmt_status claim_new(vmt_bpm *bpm, const vmt_breakpoint *bp, vmt_addr_ctx ctx,
                            bpm_claim *head, bpm_claim **out)
{
    bpm_global *g = bp->global ? bpm_global_lookup(bpm, bp->view, ctx.va) : NULL;
    bpm_global *fresh = NULL;
    if (bp->global && !g &&
        (!(fresh = vmt_calloc(1, sizeof *fresh)) || vmt_htab_reserve(&bpm->globals, 1) != VMT_OK))
        goto nomem;
    if (!head && vmt_htab_reserve(&bpm->claims, 1) != VMT_OK)
        goto nomem;
    bpm_claim *c = vmt_calloc(1, sizeof *c);
    if (!c)
        goto nomem;
    c->key = bp->key;
    c->ctx = ctx;
    c->tag = bp->tag;
    c->view = bp->view;
    c->global = bp->global;
    if (head) {
        c->next_view = head->next_view;
        head->next_view = c;
    } else {
        (void)vmt_htab_put(&bpm->claims, c, c); /* reserved above */
        c->claims_head = true;
    }
    if (fresh) {
        g = fresh;
        g->id = bpm_global_id(c->view, ctx.va);
        g->root = ctx.root;
        (void)vmt_htab_put(&bpm->globals, g, g); /* reserved above */
    }
    if (g)
        g->count++;
    *out = c;
    return VMT_OK;
nomem:
    vmt_free(fresh);
    return VMT_E_NOMEM;
}

/* Frees a claim that is neither pending nor armed. */
static void claim_release(vmt_bpm *bpm, bpm_claim *c)
{
    if (c->claims_head) {
        if (c->next_view) {
            /* Replaces c as key and value: an equal key, no allocation. */
            (void)vmt_htab_put(&bpm->claims, c->next_view, c->next_view);
            c->next_view->claims_head = true;
        } else {
            vmt_htab_del(&bpm->claims, c);
        }
    } else {
        bpm_claim *head = vmt_htab_get(&bpm->claims, c);
        while (head->next_view != c)
            head = head->next_view;
        head->next_view = c->next_view;
    }
    if (c->global) {
        bpm_global *g = bpm_global_lookup(bpm, c->view, c->ctx.va);
        if (--g->count == 0) {
            vmt_htab_del(&bpm->globals, g);
            vmt_free(g);
        }
    }
    if (c->arms_cap)
        vmt_free(c->arms.many);
    vmt_free(c);
}

static void release_if_unused(vmt_bpm *bpm, bpm_claim *c)
{
    if (!c->pending && c->n_arms == 0)
        claim_release(bpm, c);
}

/* Makes c pending in vs. VMT_E_NOMEM (the pending index could not grow;
 * callers reserve room first where they must not fail): nothing changed. */
static vmt_status pending_link(vmt_bpm *bpm, bpm_view *vs, bpm_claim *c)
{
    void *found;
    vmt_status st = bpm_pendmap_get_or_put(&vs->pending, c->ctx.va, c->ctx.root, c, &found);
    if (st != VMT_OK)
        return st;
    bpm_claim *head = found;
    if (head) {
        c->next_pending = head->next_pending;
        head->next_pending = c;
    } else {
        c->next_pending = NULL;
        c->pending_head = true;
    }
    c->pending = true;
    vs->n_pending++;
    bpm->n_pending++;
    return VMT_OK;
}

static void pending_unlink(vmt_bpm *bpm, bpm_claim *c)
{
    bpm_view *vs = view_find(bpm, c->view);
    if (c->pending_head) {
        if (c->next_pending) {
            /* Replaces the head: never allocates. */
            (void)bpm_pendmap_put(&vs->pending, c->ctx.va, c->ctx.root, c->next_pending);
            c->next_pending->pending_head = true;
        } else {
            bpm_pendmap_del(&vs->pending, c->ctx.va, c->ctx.root);
        }
    } else {
        bpm_claim *p = bpm_pendmap_get(&vs->pending, c->ctx.va, c->ctx.root);
        while (p->next_pending != c)
            p = p->next_pending;
        p->next_pending = c->next_pending;
    }
    c->next_pending = NULL;
    c->pending = false;
    c->pending_head = false;
    if (--vs->n_pending == 0 && vs->n_pages == 0)
        bpm->gc_views = true;
    bpm->n_pending--;
}

/* Room for one more arm of c (VMT_E_NOMEM: nothing changed but, at most,
 * the arms' representation: a claim's one inline arm may move into an
 * array, which nothing outside the claim can see). */
static vmt_status claim_reserve_arm(bpm_claim *c)
{
    if (c->arms_cap == 0) {
        if (c->n_arms == 0)
            return VMT_OK; /* the first arm goes inline */
        bpm_arm *many = vmt_malloc(4 * sizeof *many);
        if (!many)
            return VMT_E_NOMEM;
        many[0] = (bpm_arm){c->arms.one_page, c->one_idx};
        c->arms.many = many;
        c->arms_cap = 4;
        return VMT_OK;
    }
    if (c->n_arms < c->arms_cap)
        return VMT_OK;
    bpm_arm *many = vmt_reallocarray(c->arms.many, 2u * c->arms_cap, sizeof *many);
    if (!many)
        return VMT_E_NOMEM;
    c->arms.many = many;
    c->arms_cap = (uint16_t)(c->arms_cap * 2);
    return VMT_OK;
}

/* Into room made by claim_reserve_arm. */
static void claim_add_arm(bpm_claim *c, bpm_page *page, uint32_t idx)
{
    if (c->arms_cap == 0) {
        c->arms.one_page = page;
        c->one_idx = idx;
    } else {
        c->arms.many[c->n_arms] = (bpm_arm){page, idx};
    }
    c->n_arms++;
}

/* The arm of c on page (c must be armed there). Newest first:
 * claim_destroy takes arms off the end. */
static unsigned claim_find_arm(const bpm_claim *c, const bpm_page *page)
{
    unsigned i = c->n_arms;
    while (bpm_arm_page(c, --i) != page)
        ;
    return i;
}

static void claim_set_arm_idx(bpm_claim *c, unsigned i, uint32_t idx)
{
    if (c->arms_cap)
        c->arms.many[i].idx = idx;
    else
        c->one_idx = idx;
}

/* Drops arm i (the last one takes its place). */
static void claim_drop_arm(bpm_claim *c, unsigned i)
{
    unsigned last = c->n_arms - 1u;
    if (c->arms_cap)
        c->arms.many[i] = c->arms.many[last];
    c->n_arms--;
}

/* ---- pages ---- */

static int page_off_index(const bpm_page *page, unsigned off)
{
    for (unsigned i = 0; i < page->n_offs; i++)
        if (page->offs[i].off == off)
            return (int)i;
    return -1;
}

/* Page-ins come in runs for one page (one per monitored address on it):
 * arm() remembers the page it used last. */
static bpm_page *page_find(vmt_bpm *bpm, vmt_view view, vmt_gfn gfn)
{
    uint64_t id = bpm_page_id(view, gfn);
    if (bpm->last_page && bpm->last_page->id == id)
        return bpm->last_page;
    return vmt_htab_get(&bpm->pages, &id);
}

/* Grows an array of *cap elements of size elem to at least need (doubling
 * from first). VMT_E_NOMEM: nothing changed. */
static vmt_status grow_to(void **arr, size_t *cap, size_t need, size_t elem, size_t first)
{
    if (need <= *cap)
        return VMT_OK;
    size_t n = *cap ? *cap : first;
    while (n < need)
        n *= 2;
    void *p = vmt_reallocarray(*arr, n, elem);
    if (!p)
        return VMT_E_NOMEM;
    *arr = p;
    *cap = n;
    return VMT_OK;
}

/* Makes the allocations for k more claims armed on frame gfn of the view:
 * room in its page's arrays, or (no page yet) a page made ahead as
 * bpm->spare and room for it in the page index, and room in the armed set.
 * page_new and page_add_claim then cannot fail. VMT_E_NOMEM: nothing that
 * anything outside the manager's memory can see changed. */
static vmt_status page_reserve(vmt_bpm *bpm, vmt_view view, vmt_gfn gfn, size_t k)
{
    bpm_page *page = page_find(bpm, view, gfn);
    if (!page) {
        if (!bpm->spare && !(bpm->spare = vmt_calloc(1, sizeof *bpm->spare)))
            return VMT_E_NOMEM;
        if (vmt_htab_reserve(&bpm->pages, 1) != VMT_OK)
            return VMT_E_NOMEM;
        page = bpm->spare;
    }
    size_t cap = page->cap, offs_cap = page->offs_cap;
    size_t offs_need = page->n_offs + k < VMT_PAGE_SIZE ? page->n_offs + k : VMT_PAGE_SIZE;
    void *claims = page->claims, *offs = page->offs;
    vmt_status st = grow_to(&claims, &cap, page->n_claims + k, sizeof(bpm_claim *), 8);
    page->claims = claims;
    page->cap = (uint32_t)cap;
    if (st == VMT_OK)
        st = grow_to(&offs, &offs_cap, offs_need, sizeof(bpm_off), 8);
    page->offs = offs;
    page->offs_cap = (uint16_t)offs_cap;
    if (st == VMT_OK)
        st = bpm_armset_reserve(&bpm->armed, k);
    return st;
}

/* A page for (vs, gfn) from bpm->spare, which page_reserve made sure of. */
static bpm_page *page_new(vmt_bpm *bpm, bpm_view *vs, vmt_gfn gfn, bool monitored)
{
    bpm_page *page = bpm->spare; /* its arrays are kept: n_claims = n_offs = 0 */
    bpm->spare = NULL;
    page->id = bpm_page_id(vs->view, gfn);
    page->monitored = monitored;
    page->prev = NULL;
    page->next = vs->pages;
    if (vs->pages)
        vs->pages->prev = page;
    vs->pages = page;
    vs->n_pages++;
    (void)vmt_htab_put(&bpm->pages, page, page); /* reserved by page_reserve */
    return page;
}

/* Memory only. */
static void page_release(bpm_page *page)
{
    vmt_free(page->claims);
    vmt_free(page->offs);
    vmt_free(page);
}

/* Unlinks an empty page from its view and the page index, and frees it. */
static void page_free(vmt_bpm *bpm, bpm_page *page)
{
    bpm_view *vs = view_find(bpm, bpm_page_view(page));
    if (page->prev)
        page->prev->next = page->next;
    else
        vs->pages = page->next;
    if (page->next)
        page->next->prev = page->prev;
    if (--vs->n_pages == 0 && vs->n_pending == 0)
        bpm->gc_views = true;
    vmt_htab_del(&bpm->pages, page);
    if (bpm->last_page == page)
        bpm->last_page = NULL;
    /* A page-out frees a page that the page-ins soon create again: keep
     * one small freed page, arrays and all, for the next page_new. */
    if (!bpm->spare && page->cap <= 16 && page->offs_cap <= 16) {
        page->n_claims = 0;
        page->n_offs = 0;
        bpm->spare = page;
    } else {
        page_release(page);
    }
}

/* Records claim c as armed on page (index change only, into the room
 * page_reserve and claim_reserve_arm made). */
static void page_add_claim(vmt_bpm *bpm, bpm_page *page, bpm_claim *c)
{
    uint32_t idx = page->n_claims++;
    page->claims[idx] = c;
    claim_add_arm(c, page, idx);
    bpm_armset_add(&bpm->armed, page->id, c->global, c->key, c->ctx.va, c->ctx.root);

    unsigned off = bpm_va_off(c->ctx.va);
    int oi = page_off_index(page, off);
    if (oi < 0) {
        page->offs[page->n_offs++] = (bpm_off){.off = (uint16_t)off, .count = 1};
    } else {
        page->offs[oi].count++;
    }
    bpm->n_arms++;
}

/* Forgets that c is armed on page (index change only); frees the page when
 * it was its last claim. */
static void page_remove_claim(vmt_bpm *bpm, bpm_page *page, bpm_claim *c)
{
    unsigned a = claim_find_arm(c, page);
    uint32_t idx = bpm_arm_idx(c, a);
    claim_drop_arm(c, a);
    bpm_armset_del(&bpm->armed, page->id, c->key, c->ctx.va, c->ctx.root);
    uint32_t last = --page->n_claims;
    if (idx != last) {
        bpm_claim *moved = page->claims[last];
        page->claims[idx] = moved;
        claim_set_arm_idx(moved, claim_find_arm(moved, page), idx);
    }
    int oi = page_off_index(page, bpm_va_off(c->ctx.va));
    if (--page->offs[oi].count == 0)
        page->offs[oi] = page->offs[--page->n_offs];
    bpm->n_arms--;
    if (page->n_claims == 0)
        page_free(bpm, page);
}

#define ANY_GFN ((vmt_gfn)-1)

/* ---- controller calls ---- */

static vmt_status ctl_insert(vmt_bpm *bpm, vmt_core *vmi, vmt_pa pa, vmt_view view)
{
    return bpm->ctl.ops->insert_breakpoint(bpm->ctl.self, vmi, pa, view);
}

static vmt_status ctl_remove(vmt_bpm *bpm, vmt_core *vmi, vmt_pa pa, vmt_view view)
{
    return bpm->ctl.ops->remove_breakpoint(bpm->ctl.self, vmi, pa, view);
}

static vmt_status ctl_monitor(vmt_bpm *bpm, vmt_core *vmi, vmt_gfn gfn, vmt_view view)
{
    return bpm->ctl.ops->monitor(bpm->ctl.self, vmi, gfn, view);
}

static vmt_status ctl_unmonitor(vmt_bpm *bpm, vmt_core *vmi, vmt_gfn gfn, vmt_view view)
{
    return bpm->ctl.ops->unmonitor(bpm->ctl.self, vmi, gfn, view);
}

/* Arms claim c (not armed there yet) on frame gfn of its view: the trap if
 * it is the first claim at that (view, pa), the monitor if it is the first
 * on that (view, gfn); insert before monitor. Indexes change only on
 * success, except in a double fault that leaves a trap in the guest: the
 * claim is then recorded as armed (the trap stays accounted for) on a page
 * marked unmonitored, and the next arm on the page monitors it. */
static vmt_status arm_into(vmt_bpm *bpm, vmt_core *vmi, bpm_claim *c, vmt_gfn gfn, bpm_view *vs);

static vmt_status arm(vmt_bpm *bpm, vmt_core *vmi, bpm_claim *c, vmt_gfn gfn)
{
    /* Every allocation first: after the controller calls nothing can fail. */
    bpm_view *vs;
    vmt_status st = view_get(bpm, c->view, &vs);
    if (st == VMT_OK)
        st = page_reserve(bpm, c->view, gfn, 1);
    if (st == VMT_OK)
        st = claim_reserve_arm(c);
    return st == VMT_OK ? arm_into(bpm, vmi, c, gfn, vs) : st;
}

/* arm() once its allocations are made (page_reserve, claim_reserve_arm;
 * vs: c's view): a page-in reserves for all its claims at once. */
static vmt_status arm_into(vmt_bpm *bpm, vmt_core *vmi, bpm_claim *c, vmt_gfn gfn, bpm_view *vs)
{
    vmt_status st;
    bpm_page *page = page_find(bpm, c->view, gfn);
    vmt_pa pa = vmt_pa_in_gfn(gfn, c->ctx.va);
    bool need_insert = !page || page_off_index(page, bpm_va_off(c->ctx.va)) < 0;
    bool need_monitor = !page || !page->monitored;
    if (need_insert && (st = ctl_insert(bpm, vmi, pa, c->view)) != VMT_OK)
        return st;
    bool monitored = true;
    if (need_monitor && (st = ctl_monitor(bpm, vmi, gfn, c->view)) != VMT_OK) {
        vmt_status undo = need_insert ? ctl_remove(bpm, vmi, pa, c->view) : VMT_OK;
        if (undo == VMT_OK || undo == VMT_E_VIEW_NOT_FOUND)
            return st;
        vmt_log(VMT_LOG_ERROR, "bpm: view %u frame 0x%llx left unmonitored (monitor: %s, undo: %s)",
                c->view, (unsigned long long)gfn, vmt_status_str(st), vmt_status_str(undo));
        monitored = false;
    }
    if (!page)
        page = page_new(bpm, vs, gfn, monitored);
    else if (need_monitor)
        page->monitored = monitored;
    page_add_claim(bpm, page, c);
    bpm->last_page = page;
    return monitored ? VMT_OK : st;
}

static bool tolerated(vmt_status st)
{
    return st == VMT_OK || st == VMT_E_VIEW_NOT_FOUND;
}

/* Disarms claim c from page: the trap if it is the last claim at that
 * (view, pa), the monitor if it is the last on the page; remove before
 * unmonitor. VMT_E_VIEW_NOT_FOUND is tolerated (the view is gone). If
 * unmonitor fails, the trap is put back so that nothing changed; only if
 * that fails too is the claim dropped with the page left monitored. */
static vmt_status disarm(vmt_bpm *bpm, vmt_core *vmi, bpm_claim *c, bpm_page *page)
{
    vmt_gfn gfn = bpm_page_gfn(page);
    vmt_pa pa = vmt_pa_in_gfn(gfn, c->ctx.va);
    int oi = page_off_index(page, bpm_va_off(c->ctx.va));
    bool last_at_pa = page->offs[oi].count == 1;
    bool last_on_page = page->n_claims == 1;
    vmt_status st = last_at_pa ? ctl_remove(bpm, vmi, pa, c->view) : VMT_OK;
    if (!tolerated(st))
        return st;
    bool removed = last_at_pa && st == VMT_OK;
    st = last_on_page && page->monitored ? ctl_unmonitor(bpm, vmi, gfn, c->view) : VMT_OK;
    if (!tolerated(st)) {
        vmt_status redo = removed ? ctl_insert(bpm, vmi, pa, c->view) : VMT_OK;
        if (redo == VMT_OK)
            return st;
        vmt_log(VMT_LOG_ERROR, "bpm: view %u frame 0x%llx left monitored (unmonitor: %s, redo: %s)",
                c->view, (unsigned long long)gfn, vmt_status_str(st), vmt_status_str(redo));
        page_remove_claim(bpm, page, c);
        return st;
    }
    page_remove_claim(bpm, page, c);
    return VMT_OK;
}

/* Disarms every arm of c, the one on frame `last` (if armed there) last,
 * drops its pending copy and frees it. A failure part-way leaves c armed
 * on `last`, so that an event there still finds it when retried. */
static vmt_status claim_destroy_last(vmt_bpm *bpm, vmt_core *vmi, bpm_claim *c, vmt_gfn last)
{
    while (c->n_arms) {
        unsigned i = c->n_arms - 1u;
        if (i > 0 && bpm_page_gfn(bpm_arm_page(c, i)) == last)
            i--;
        vmt_status st = disarm(bpm, vmi, c, bpm_arm_page(c, i));
        if (st != VMT_OK) {
            release_if_unused(bpm, c); /* a double fault may have taken its last arm */
            return st;
        }
    }
    if (c->pending)
        pending_unlink(bpm, c);
    claim_release(bpm, c);
    return VMT_OK;
}

static vmt_status claim_destroy(vmt_bpm *bpm, vmt_core *vmi, bpm_claim *c)
{
    return claim_destroy_last(bpm, vmi, c, ANY_GFN);
}

/* ---- address resolution ---- */

/* The ctx a breakpoint's claim is filed under: a global claim takes the
 * canonical root of its (view, va) if there is one already. */
static vmt_addr_ctx resolve_ctx(const vmt_bpm *bpm, const vmt_breakpoint *bp)
{
    if (bp->global) {
        bpm_global *g = bpm_global_lookup(bpm, bp->view, bp->ctx.va);
        if (g)
            return vmt_ctx(bp->ctx.va, g->root);
    }
    return bp->ctx;
}

/* Conflict: the claim bp names, (view, key, resolved ctx), exists with the
 * other global flag. c is that claim (claim_find at the resolved ctx). */
static bool conflicts(const vmt_breakpoint *bp, const bpm_claim *c)
{
    return c && c->global != bp->global;
}

static bool armed(bpm_claim *c, vmt_gfn gfn)
{
    return gfn == ANY_GFN ? c->n_arms > 0 : claim_armed_at(c, gfn);
}

/* The key's claim that an execution of va under root in the view hits, if
 * it is armed on gfn (ANY_GFN: anywhere): the claim at exactly (va, root),
 * or else the global claim at the canonical root of (view, va). */
static bpm_claim *claim_at(const vmt_bpm *bpm, vmt_view view, uint64_t key, vmt_va va, vmt_pa root,
                           vmt_gfn gfn)
{
    bpm_claim *c = bpm_claim_lookup(bpm, view, key, vmt_ctx(va, root));
    if (c && armed(c, gfn))
        return c;
    bpm_global *g = bpm_global_lookup(bpm, view, va);
    if (g && g->root != root) {
        c = bpm_claim_lookup(bpm, view, key, vmt_ctx(va, g->root));
        if (c && c->global && armed(c, gfn))
            return c;
    }
    return NULL;
}

static bool event_address(const vmt_bpm *bpm, const vmt_event *ev, vmt_view *view, vmt_gfn *gfn,
                          vmt_va *va, vmt_pa *root)
{
    if (!bpm || !ev || !bpm->ctl.ops->check_event(bpm->ctl.self, ev, view, gfn))
        return false;
    if (*gfn >= BPM_PA_LIMIT >> VMT_PAGE_SHIFT)
        return false; /* no frame of ours */
    *va = ev->regs.rip;
    *root = vmt_regs_translation_root(&ev->regs, *va);
    return true;
}

/* ---- public API ---- */

vmt_status vmt_bpm_new(vmt_tap_controller controller, vmt_bpm **out)
{
    const vmt_tap_controller_ops *o = controller.ops;
    if (!out || !o || !o->check_event || !o->insert_breakpoint || !o->remove_breakpoint ||
        !o->monitor || !o->unmonitor) {
        if (o && o->destroy)
            o->destroy(controller.self);
        return VMT_E_INVALID;
    }
    vmt_bpm *bpm = vmt_calloc(1, sizeof *bpm);
    if (!bpm) {
        if (o->destroy)
            o->destroy(controller.self);
        return VMT_E_NOMEM;
    }
    bpm->ctl = controller;
    vmt_htab_init(&bpm->claims, claim_hash, claim_equal);
    vmt_htab_init(&bpm->pages, vmt_htab_hash_u64p, vmt_htab_eq_u64p);
    vmt_htab_init(&bpm->views, vmt_htab_hash_ptr, NULL);
    vmt_htab_init(&bpm->globals, vmt_htab_hash_u64p, vmt_htab_eq_u64p);
    bpm_armset_init(&bpm->armed);
    *out = bpm;
    return VMT_OK;
}

static void free_claim_chain(bpm_claim *c)
{
    for (bpm_claim *next; c; c = next) {
        next = c->next_view;
        if (c->arms_cap)
            vmt_free(c->arms.many);
        vmt_free(c);
    }
}

void vmt_bpm_free(vmt_bpm *bpm)
{
    if (!bpm)
        return;
    for (size_t i = 0; i < bpm->claims.n; i++)
        if (vmt_htab_used(&bpm->claims.slots[i]))
            free_claim_chain(bpm->claims.slots[i].val);
    vmt_htab_fini(&bpm->claims);
    for (size_t i = 0; i < bpm->pages.n; i++)
        if (vmt_htab_used(&bpm->pages.slots[i]))
            page_release(bpm->pages.slots[i].val);
    vmt_htab_fini(&bpm->pages);
    if (bpm->spare)
        page_release(bpm->spare);
    for (size_t i = 0; i < bpm->views.n; i++)
        if (vmt_htab_used(&bpm->views.slots[i]))
            view_free(bpm->views.slots[i].val);
    vmt_htab_fini(&bpm->views);
    for (size_t i = 0; i < bpm->globals.n; i++)
        if (vmt_htab_used(&bpm->globals.slots[i]))
            vmt_free(bpm->globals.slots[i].val);
    vmt_htab_fini(&bpm->globals);
    bpm_armset_free(&bpm->armed);
    if (bpm->ctl.ops->destroy)
        bpm->ctl.ops->destroy(bpm->ctl.self);
    vmt_free(bpm);
}

/* A root is a frame address: CR3's flag and PCID bits must be masked off
 * (vmt_regs_translation_root), or no event could ever match the claim. */
static bool ctx_valid(vmt_addr_ctx ctx)
{
    return vmt_va_is_canonical(ctx.va) && (ctx.root & ~VMT_AMD64_ADDR_MASK) == 0;
}

static bool bp_valid(const vmt_bpm *bpm, vmt_core *vmi, const vmt_breakpoint *bp)
{
    return bpm && vmi && bp && ctx_valid(bp->ctx);
}

/* A pending claim makes no controller call, so nothing else would notice a
 * view the driver does not have: ask the driver about one frame of the
 * view. Frame 0 may lie outside the guest (the view was still found); a
 * driver without get_access cannot tell, and the claim is taken on trust. */
static vmt_status view_exists(vmt_core *vmi, vmt_view view)
{
    vmt_access a;
    vmt_status st = vmt_core_get_access(vmi, 0, view, &a);
    return st == VMT_E_OUT_OF_BOUNDS || st == VMT_E_UNSUPPORTED ? VMT_OK : st;
}

static vmt_status insert_pending(vmt_bpm *bpm, const vmt_breakpoint *bp, vmt_addr_ctx ctx,
                                 bpm_claim *c, bpm_claim *head, bool *inserted)
{
    bool ins = !c || !c->pending;
    if (ins) {
        bpm_view *vs;
        vmt_status st = view_get(bpm, bp->view, &vs);
        if (st == VMT_OK)
            st = bpm_pendmap_reserve(&vs->pending, 1);
        if (st == VMT_OK && !c)
            st = claim_new(bpm, bp, ctx, head, &c);
        if (st != VMT_OK)
            return st;
        (void)pending_link(bpm, vs, c); /* room reserved: cannot fail */
    }
    if (inserted)
        *inserted = ins;
    return VMT_OK;
}

static vmt_status insert_active(vmt_bpm *bpm, vmt_core *vmi, const vmt_breakpoint *bp,
                                vmt_addr_ctx ctx, bpm_claim *c, bpm_claim *head, vmt_gfn gfn,
                                bool *inserted)
{
    if (c && claim_armed_at(c, gfn)) {
        if (inserted)
            *inserted = false;
        return VMT_OK;
    }
    if (c && c->n_arms == BPM_MAX_ARMS)
        return VMT_E_NOMEM;
    bool fresh = !c;
    if (fresh) {
        vmt_status st = claim_new(bpm, bp, ctx, head, &c);
        if (st != VMT_OK)
            return st;
    }
    vmt_status st = arm(bpm, vmi, c, gfn);
    if (st != VMT_OK) {
        if (fresh)
            release_if_unused(bpm, c);
        return st;
    }
    if (c->pending)
        pending_unlink(bpm, c);
    if (inserted)
        *inserted = true;
    return VMT_OK;
}

vmt_status vmt_bpm_insert_with_hint(vmt_bpm *bpm, vmt_core *vmi, const vmt_breakpoint *bp,
                                    const vmt_pa *pa, bool *inserted)
{
    if (!bp_valid(bpm, vmi, bp) || (pa && *pa >= BPM_PA_LIMIT))
        return VMT_E_INVALID;
    vmt_addr_ctx ctx = resolve_ctx(bpm, bp);
    bpm_claim *head;
    bpm_claim *c = claim_find(bpm, bp->view, bp->key, ctx, &head);
    if (conflicts(bp, c))
        return VMT_E_CONFLICT;
    vmt_status st = VMT_OK;
    if (pa)
        st = insert_active(bpm, vmi, bp, ctx, c, head, vmt_gfn_from_pa(*pa), inserted);
    else if ((st = view_exists(vmi, bp->view)) == VMT_OK)
        st = insert_pending(bpm, bp, ctx, c, head, inserted);
    views_gc(bpm);
    return st;
}

vmt_status vmt_bpm_insert(vmt_bpm *bpm, vmt_core *vmi, const vmt_breakpoint *bp, bool *inserted)
{
    if (!bp_valid(bpm, vmi, bp))
        return VMT_E_INVALID;
    vmt_pa pa;
    vmt_status st = vmt_core_translate(vmi, bp->ctx, &pa);
    if (st == VMT_E_TRANSLATION)
        return vmt_bpm_insert_with_hint(bpm, vmi, bp, NULL, inserted);
    if (st != VMT_OK)
        return st;
    return vmt_bpm_insert_with_hint(bpm, vmi, bp, &pa, inserted);
}

/* The manager knows every frame a claim is armed on, so removal needs no
 * translation: the hint is accepted for symmetry and not needed. */
vmt_status vmt_bpm_remove_with_hint(vmt_bpm *bpm, vmt_core *vmi, const vmt_breakpoint *bp,
                                    const vmt_pa *pa, bool *removed)
{
    (void)pa;
    if (!bp_valid(bpm, vmi, bp))
        return VMT_E_INVALID;
    bpm_claim *c = bpm_claim_lookup(bpm, bp->view, bp->key, resolve_ctx(bpm, bp));
    vmt_status st = VMT_OK;
    bool found = c && c->global == bp->global;
    if (found)
        st = claim_destroy(bpm, vmi, c);
    views_gc(bpm);
    if (st == VMT_OK && removed)
        *removed = found;
    return st;
}

vmt_status vmt_bpm_remove(vmt_bpm *bpm, vmt_core *vmi, const vmt_breakpoint *bp, bool *removed)
{
    return vmt_bpm_remove_with_hint(bpm, vmi, bp, NULL, removed);
}

/* The views, copied (callers may free views meanwhile) into *ids (free
 * with vmt_free), *n of them. VMT_E_NOMEM: none. */
static vmt_status view_ids(const vmt_bpm *bpm, vmt_view **ids, size_t *n)
{
    *n = 0;
    *ids = vmt_reallocarray(NULL, vmt_htab_size(&bpm->views) + 1, sizeof **ids);
    if (!*ids)
        return VMT_E_NOMEM;
    for (size_t i = 0; i < bpm->views.n; i++)
        if (vmt_htab_used(&bpm->views.slots[i]))
            (*ids)[(*n)++] = ((bpm_view *)bpm->views.slots[i].val)->view;
    return VMT_OK;
}

/* The other views first, the event's own claim last: if a step fails, the
 * event still finds its claim and a retry finishes the work. */
static vmt_status remove_by_event(vmt_bpm *bpm, vmt_core *vmi, const vmt_event *ev, uint64_t key,
                                  vmt_removal *result)
{
    vmt_view view;
    vmt_gfn gfn;
    vmt_va va;
    vmt_pa root;
    bpm_claim *target = NULL;
    if (event_address(bpm, ev, &view, &gfn, &va, &root))
        target = claim_at(bpm, view, key, va, root, gfn);
    if (!target) {
        if (result)
            *result = VMT_REMOVED_NONE;
        return VMT_OK;
    }
    vmt_addr_ctx ctx = target->ctx;
    bool global = target->global;
    vmt_view *ids;
    size_t n_ids;
    vmt_status st = view_ids(bpm, &ids, &n_ids);
    for (size_t i = 0; i < n_ids && st == VMT_OK; i++) {
        vmt_view v = ids[i];
        if (v == view)
            continue;
        bpm_claim *c = global ? claim_at(bpm, v, key, ctx.va, ctx.root, ANY_GFN)
                              : bpm_claim_lookup(bpm, v, key, ctx);
        if (c && c->global == global && c->n_arms)
            st = claim_destroy(bpm, vmi, c);
    }
    vmt_free(ids);
    if (st == VMT_OK)
        st = claim_destroy_last(bpm, vmi, target, gfn);
    if (st == VMT_OK && result)
        *result = bpm_page_lookup(bpm, view, gfn) ? VMT_REMOVED_SOME : VMT_REMOVED_LAST;
    return st;
}

vmt_status vmt_bpm_remove_by_event(vmt_bpm *bpm, vmt_core *vmi, const vmt_event *ev, uint64_t key,
                                   vmt_removal *result)
{
    if (!bpm || !vmi || !ev)
        return VMT_E_INVALID;
    vmt_status st = remove_by_event(bpm, vmi, ev, key, result);
    views_gc(bpm);
    return st;
}

/* Drops every claim of a view: armed ones page by page, then pending ones. */
static vmt_status remove_view(vmt_bpm *bpm, vmt_core *vmi, bpm_view *vs)
{
    while (vs->pages) {
        bpm_page *page = vs->pages;
        vmt_status st = claim_destroy(bpm, vmi, page->claims[page->n_claims - 1]);
        if (st != VMT_OK)
            return st;
    }
    /* Pending only: no controller call. A removal shifts later entries
     * back into the slot, never before it (the slots before are empty). */
    for (size_t i = 0; i < vs->pending.n && vs->n_pending; i++)
        while (vs->pending.slots[i].head)
            claim_destroy(bpm, vmi, vs->pending.slots[i].head);
    return VMT_OK;
}

vmt_status vmt_bpm_remove_by_view(vmt_bpm *bpm, vmt_core *vmi, vmt_view view, bool *removed)
{
    if (!bpm || !vmi)
        return VMT_E_INVALID;
    bpm_view *vs = bpm_view_lookup(bpm, view);
    vmt_status st = vs ? remove_view(bpm, vmi, vs) : VMT_OK;
    views_gc(bpm);
    if (st == VMT_OK && removed)
        *removed = vs != NULL;
    return st;
}

vmt_status vmt_bpm_clear(vmt_bpm *bpm, vmt_core *vmi)
{
    if (!bpm || !vmi)
        return VMT_E_INVALID;
    vmt_view *ids;
    size_t n_ids;
    vmt_status st = view_ids(bpm, &ids, &n_ids);
    for (size_t i = 0; i < n_ids && st == VMT_OK; i++)
        st = remove_view(bpm, vmi, bpm_view_lookup(bpm, ids[i]));
    vmt_free(ids);
    views_gc(bpm);
    return st;
}

bool vmt_bpm_get_by_event(const vmt_bpm *bpm, const vmt_event *ev, uint64_t key,
                          vmt_breakpoint *out)
{
    vmt_view view;
    vmt_gfn gfn;
    vmt_va va;
    vmt_pa root;
    if (!event_address(bpm, ev, &view, &gfn, &va, &root))
        return false;
    bpm_claim *c = claim_at(bpm, view, key, va, root, gfn);
    if (c && out)
        *out = bpm_claim_breakpoint(c);
    return c != NULL;
}

/* The same question as get_by_event (claim_at), answered from the armed
 * set alone: one slot read instead of the claims index and the claim. */
bool vmt_bpm_contains_by_event(const vmt_bpm *bpm, const vmt_event *ev, uint64_t key)
{
    vmt_view view;
    vmt_gfn gfn;
    vmt_va va;
    vmt_pa root;
    if (!event_address(bpm, ev, &view, &gfn, &va, &root))
        return false;
    uint64_t id = bpm_page_id(view, gfn);
    if (bpm_armset_has(&bpm->armed, id, key, va, root, false))
        return true;
    bpm_global *g = bpm_global_lookup(bpm, view, va);
    return g && g->root != root && bpm_armset_has(&bpm->armed, id, key, va, g->root, true);
}

bool vmt_bpm_contains_by_address(const vmt_bpm *bpm, vmt_addr_ctx ctx, uint64_t key)
{
    if (!bpm)
        return false;
    bpm_claim probe = {.key = key, .ctx = ctx};
    for (bpm_claim *c = vmt_htab_get(&bpm->claims, &probe); c; c = c->next_view)
        if (c->n_arms)
            return true;
    if (vmt_htab_size(&bpm->globals) == 0)
        return false;
    /* A global claim filed under another root matches this one too. */
    for (size_t i = 0; i < bpm->views.n; i++)
        if (vmt_htab_used(&bpm->views.slots[i]) &&
            claim_at(bpm, ((bpm_view *)bpm->views.slots[i].val)->view, key, ctx.va, ctx.root,
                     ANY_GFN))
            return true;
    return false;
}

/* Page-out: every claim armed on the frame goes back to pending (keeping
 * any arms it has on other frames). */
static vmt_status page_out(vmt_bpm *bpm, vmt_core *vmi, vmt_view view, vmt_gfn gfn, bool *updated)
{
    bpm_page *page = bpm_page_lookup(bpm, view, gfn);
    if (!page)
        return VMT_OK;
    bpm_view *vs = view_find(bpm, view);
    /* Every claim may go pending: make room first, so that the page-out
     * either fails with nothing changed or allocates nothing more. */
    vmt_status st = bpm_pendmap_reserve(&vs->pending, page->n_claims);
    if (st != VMT_OK)
        return st;
    /* Start the pending-index misses together instead of one per claim. */
    for (uint32_t i = 0; i < page->n_claims && i < 64; i++)
        bpm_pendmap_prefetch(&vs->pending, page->claims[i]->ctx.va, page->claims[i]->ctx.root);
    for (uint32_t n = page->n_claims; n > 0; n--) {
        bpm_claim *c = page->claims[n - 1];
        st = disarm(bpm, vmi, c, page); /* frees page after its last claim */
        if (st != VMT_OK) {
            /* A double fault may have dropped the arm all the same. */
            if (!c->pending && !claim_armed_at(c, gfn))
                (void)pending_link(bpm, vs, c); /* reserved */
            return st;
        }
        if (!c->pending)
            (void)pending_link(bpm, vs, c); /* reserved */
        *updated = true;
    }
    return VMT_OK;
}

/* Page-in: the pending claims of (view, ctx), and the pending global claims
 * filed under the canonical root of (view, va), are armed at pa. */

/* Calls fn for each claim a page-in of (view, ctx) arms (vs: the view). */
#define FOR_PAGE_IN(vs, g, ctx, c, body)                                                           \
    for (int round_ = 0; round_ < 2; round_++) {                                                   \
        vmt_pa root_ = (ctx).root;                                                                 \
        if (round_ == 1) {                                                                         \
            if (!(g) || (g)->root == (ctx).root)                                                   \
                break;                                                                             \
            root_ = (g)->root;                                                                     \
        }                                                                                          \
        for (bpm_claim *c = bpm_pendmap_get(&(vs)->pending, (ctx).va, root_); c;                   \
             c = c->next_pending) {                                                                \
            if (round_ == 1 && !c->global)                                                         \
                continue;                                                                          \
            body                                                                                   \
        }                                                                                          \
    }

static vmt_status page_in(vmt_bpm *bpm, vmt_core *vmi, vmt_view view, vmt_addr_ctx ctx, vmt_pa pa,
                          bool *updated)
{
    bpm_view *vs = view_find(bpm, view);
    if (!vs || vs->n_pending == 0)
        return VMT_OK;
    bpm_global *g = bpm_global_lookup(bpm, view, ctx.va);
    /* The claims are copied (arming one unlinks it from the chain walked),
     * and every allocation the arms need is made before the first one:
     * the page-in either fails with nothing changed or allocates no more. */
    bpm_claim *stack[64], **todo = stack;
    size_t n = 0;
    FOR_PAGE_IN(vs, g, ctx, c, if (n < 64) stack[n] = c; n++;)
    if (n == 0)
        return VMT_OK;
    if (n > 64) { /* rare: walk again into an array of the right size */
        if (!(todo = vmt_reallocarray(NULL, n, sizeof *todo)))
            return VMT_E_NOMEM;
        size_t k = 0;
        FOR_PAGE_IN(vs, g, ctx, c, todo[k++] = c;)
    }
    vmt_gfn gfn = vmt_gfn_from_pa(pa);
    vmt_status st = page_reserve(bpm, view, gfn, n);
    for (size_t i = 0; i < n && st == VMT_OK; i++)
        if (todo[i]->n_arms < BPM_MAX_ARMS && !claim_armed_at(todo[i], gfn))
            st = claim_reserve_arm(todo[i]);
    for (size_t i = 0; i < n && st == VMT_OK; i++) {
        bpm_claim *c = todo[i];
        if (!claim_armed_at(c, gfn)) {
            if (c->n_arms == BPM_MAX_ARMS)
                st = VMT_E_NOMEM;
            else
                st = arm_into(bpm, vmi, c, gfn, vs);
        }
        if (st == VMT_OK) {
            pending_unlink(bpm, c);
            *updated = true;
        }
    }
    if (todo != stack)
        vmt_free(todo);
    return st;
}

vmt_status vmt_bpm_handle_ptm_event(vmt_bpm *bpm, vmt_core *vmi, const vmt_ptm_event *ev,
                                    bool *updated)
{
    return vmt_bpm_handle_ptm_events(bpm, vmi, ev, 1, updated);
}

vmt_status vmt_bpm_handle_ptm_events(vmt_bpm *bpm, vmt_core *vmi, const vmt_ptm_event *ev, size_t n,
                                     bool *updated)
{
    if (!bpm || !vmi || (!ev && n))
        return VMT_E_INVALID;
    for (size_t i = 0; i < n; i++)
        if ((ev[i].kind != VMT_PTM_PAGE_IN && ev[i].kind != VMT_PTM_PAGE_OUT) ||
            ev[i].pa >= BPM_PA_LIMIT || (ev[i].kind == VMT_PTM_PAGE_IN && !ctx_valid(ev[i].ctx)))
            return VMT_E_INVALID;
    bool upd = false;
    vmt_status st = VMT_OK;
    for (size_t i = 0; i < n && st == VMT_OK; i++) {
        if (ev[i].kind == VMT_PTM_PAGE_OUT)
            st = page_out(bpm, vmi, ev[i].view, vmt_gfn_from_pa(ev[i].pa), &upd);
        else
            st = page_in(bpm, vmi, ev[i].view, ev[i].ctx, ev[i].pa, &upd);
    }
    views_gc(bpm);
    if (st == VMT_OK && updated)
        *updated = upd;
    return st;
}

vmt_status vmt_bpm_stats_get(const vmt_bpm *bpm, vmt_bpm_stats *out)
{
    if (!bpm)
        return VMT_E_INVALID;
    vmt_bpm_stats s = {.sz = sizeof s,
                       .active = bpm->n_arms,
                       .pending = bpm->n_pending,
                       .pages = vmt_htab_size(&bpm->pages),
                       .global = vmt_htab_size(&bpm->globals)};
    return VMT_OUT_STORE(out, &s);
}

const vmt_tap_controller *vmt_bpm_controller(const vmt_bpm *bpm)
{
    return bpm ? &bpm->ctl : NULL;
}
