/* The breakpoint manager (API.md section 6). Data structures: bpm_impl.h.
 *
 * Every change to the guest goes through two primitives, arm() and
 * disarm(), which make the controller calls for one (claim, frame) pair
 * first and commit the index change only once they succeeded (undoing a
 * half-done pair of calls on failure). Operations over many claims (page
 * in/out, remove_by_view, clear) are sequences of these steps: a failure
 * stops the sequence with every index consistent and every trap accounted
 * for, and calling the operation again finishes the work.
 *
 * Where API.md section 6 leaves room, the manager does this:
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
#include "core/amd64.h"
#include "vmitap/log.h"

/* ---- hashing ---- */

static inline guint mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (guint)x;
}

static guint claim_hash(gconstpointer p)
{
    const bpm_claim *c = p;
    return mix64(c->ctx.va ^ (c->ctx.root * 0x9e3779b97f4a7c15ull) ^
                 (c->key * 0xc2b2ae3d27d4eb4full));
}

static gboolean claim_equal(gconstpointer a, gconstpointer b)
{
    const bpm_claim *x = a, *y = b;
    return x->key == y->key && x->ctx.va == y->ctx.va && x->ctx.root == y->ctx.root;
}

/* bpm_page and bpm_global both start with their 64-bit id. */
static guint id_hash(gconstpointer p)
{
    return mix64(*(const uint64_t *)p);
}

static gboolean id_equal(gconstpointer a, gconstpointer b)
{
    return *(const uint64_t *)a == *(const uint64_t *)b;
}

/* ---- lookups ---- */

/* The claim of (view, key, ctx); *head (optional) = the chain's head. */
static bpm_claim *claim_find(const vmt_bpm *bpm, vmt_view view, uint64_t key, vmt_addr_ctx ctx,
                             bpm_claim **head)
{
    bpm_claim probe = {.key = key, .ctx = ctx};
    bpm_claim *c = g_hash_table_lookup(bpm->claims, &probe);
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
    return g_hash_table_lookup(bpm->pages, &id);
}

bpm_global *bpm_global_lookup(const vmt_bpm *bpm, vmt_view view, vmt_va va)
{
    if (g_hash_table_size(bpm->globals) == 0)
        return NULL;
    uint64_t id = bpm_global_id(view, va);
    return g_hash_table_lookup(bpm->globals, &id);
}

bpm_view *bpm_view_lookup(const vmt_bpm *bpm, vmt_view view)
{
    return g_hash_table_lookup(bpm->views, GUINT_TO_POINTER(view));
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

static bpm_view *view_get(vmt_bpm *bpm, vmt_view view)
{
    bpm_view *vs = view_find(bpm, view);
    if (!vs) {
        vs = g_new0(bpm_view, 1);
        vs->view = view;
        bpm_pendmap_init(&vs->pending);
        g_hash_table_insert(bpm->views, GUINT_TO_POINTER(view), vs);
    }
    return vs;
}

static void view_free(gpointer p)
{
    bpm_view *vs = p;
    bpm_pendmap_free(&vs->pending);
    g_free(vs);
}

/* Views are dropped when empty, at the end of each operation (not in the
 * middle, where a caller may still hold one). */
static void views_gc(vmt_bpm *bpm)
{
    if (!bpm->gc_views)
        return;
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, bpm->views);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        bpm_view *vs = v;
        if (vs->n_pages == 0 && vs->n_pending == 0) {
            if (bpm->last_view == vs)
                bpm->last_view = NULL;
            g_hash_table_iter_remove(&it);
        }
    }
    bpm->gc_views = false;
}

/* ---- claims ---- */

/* A new claim, linked into the claims index (and its global record);
 * neither pending nor armed yet: the caller makes it one or the other, or
 * releases it. For a global claim, ctx must already be canonical. head is
 * the chain's head for (key, ctx) as claim_find found it (NULL: none). */
static bpm_claim *claim_new(vmt_bpm *bpm, const vmt_breakpoint *bp, vmt_addr_ctx ctx,
                            bpm_claim *head)
{
    bpm_claim *c = g_new0(bpm_claim, 1);
    c->key = bp->key;
    c->ctx = ctx;
    c->tag = bp->tag;
    c->view = bp->view;
    c->global = bp->global;
    if (head) {
        c->next_view = head->next_view;
        head->next_view = c;
    } else {
        g_hash_table_add(bpm->claims, c);
        c->claims_head = true;
    }
    if (c->global) {
        bpm_global *g = bpm_global_lookup(bpm, c->view, ctx.va);
        if (!g) {
            g = g_new0(bpm_global, 1);
            g->id = bpm_global_id(c->view, ctx.va);
            g->root = ctx.root;
            g_hash_table_add(bpm->globals, g);
        }
        g->count++;
    }
    return c;
}

/* Frees a claim that is neither pending nor armed. */
static void claim_release(vmt_bpm *bpm, bpm_claim *c)
{
    if (c->claims_head) {
        if (c->next_view) {
            g_hash_table_add(bpm->claims, c->next_view); /* replaces c as the key */
            c->next_view->claims_head = true;
        } else {
            g_hash_table_remove(bpm->claims, c);
        }
    } else {
        bpm_claim *head = g_hash_table_lookup(bpm->claims, c);
        while (head->next_view != c)
            head = head->next_view;
        head->next_view = c->next_view;
    }
    if (c->global) {
        bpm_global *g = bpm_global_lookup(bpm, c->view, c->ctx.va);
        if (--g->count == 0) {
            g_hash_table_remove(bpm->globals, g);
            g_free(g);
        }
    }
    if (c->arms_cap)
        g_free(c->arms.many);
    g_free(c);
}

static void release_if_unused(vmt_bpm *bpm, bpm_claim *c)
{
    if (!c->pending && c->n_arms == 0)
        claim_release(bpm, c);
}

static void pending_link(vmt_bpm *bpm, bpm_view *vs, bpm_claim *c)
{
    bpm_claim *head = bpm_pendmap_get_or_put(&vs->pending, c->ctx.va, c->ctx.root, c);
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
}

static void pending_unlink(vmt_bpm *bpm, bpm_claim *c)
{
    bpm_view *vs = view_find(bpm, c->view);
    if (c->pending_head) {
        if (c->next_pending) {
            bpm_pendmap_put(&vs->pending, c->ctx.va, c->ctx.root, c->next_pending);
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

static void claim_add_arm(bpm_claim *c, bpm_page *page, uint32_t idx)
{
    if (c->n_arms == 0 && c->arms_cap == 0) {
        c->arms.one_page = page;
        c->one_idx = idx;
    } else {
        if (c->arms_cap == 0) {
            bpm_arm first = {c->arms.one_page, c->one_idx};
            c->arms_cap = 4;
            c->arms.many = g_new(bpm_arm, c->arms_cap);
            c->arms.many[0] = first;
        } else if (c->n_arms == c->arms_cap) {
            c->arms_cap = (uint16_t)(c->arms_cap * 2);
            c->arms.many = g_renew(bpm_arm, c->arms.many, c->arms_cap);
        }
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
    return g_hash_table_lookup(bpm->pages, &id);
}

static bpm_page *page_new(vmt_bpm *bpm, bpm_view *vs, vmt_gfn gfn, bool monitored)
{
    bpm_page *page = bpm->spare; /* its arrays are kept: n_claims = n_offs = 0 */
    if (page)
        bpm->spare = NULL;
    else
        page = g_new0(bpm_page, 1);
    page->id = bpm_page_id(vs->view, gfn);
    page->monitored = monitored;
    page->prev = NULL;
    page->next = vs->pages;
    if (vs->pages)
        vs->pages->prev = page;
    vs->pages = page;
    vs->n_pages++;
    g_hash_table_add(bpm->pages, page);
    return page;
}

/* Memory only. */
static void page_release(bpm_page *page)
{
    g_free(page->claims);
    g_free(page->offs);
    g_free(page);
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
    g_hash_table_remove(bpm->pages, page);
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

/* Records claim c as armed on page (index change only). */
static void page_add_claim(vmt_bpm *bpm, bpm_page *page, bpm_claim *c)
{
    if (page->n_claims == page->cap) {
        page->cap = page->cap ? page->cap * 2 : 8;
        page->claims = g_renew(bpm_claim *, page->claims, page->cap);
    }
    uint32_t idx = page->n_claims++;
    page->claims[idx] = c;
    claim_add_arm(c, page, idx);
    bpm_armset_add(&bpm->armed, page->id, c->global, c->key, c->ctx.va, c->ctx.root);

    unsigned off = bpm_va_off(c->ctx.va);
    int oi = page_off_index(page, off);
    if (oi < 0) {
        if (page->n_offs == page->offs_cap) {
            page->offs_cap = (uint16_t)(page->offs_cap ? page->offs_cap * 2 : 8);
            page->offs = g_renew(bpm_off, page->offs, page->offs_cap);
        }
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
static vmt_status arm(vmt_bpm *bpm, vmt_core *vmi, bpm_claim *c, vmt_gfn gfn)
{
    bpm_page *page = page_find(bpm, c->view, gfn);
    vmt_pa pa = vmt_pa_in_gfn(gfn, c->ctx.va);
    bool need_insert = !page || page_off_index(page, bpm_va_off(c->ctx.va)) < 0;
    bool need_monitor = !page || !page->monitored;
    vmt_status st;
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
        page = page_new(bpm, view_get(bpm, c->view), gfn, monitored);
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
    vmt_bpm *bpm = g_new0(vmt_bpm, 1);
    bpm->ctl = controller;
    bpm->claims = g_hash_table_new(claim_hash, claim_equal);
    bpm->pages = g_hash_table_new(id_hash, id_equal);
    bpm->views = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, view_free);
    bpm->globals = g_hash_table_new(id_hash, id_equal);
    bpm_armset_init(&bpm->armed);
    *out = bpm;
    return VMT_OK;
}

static void free_claim_chain(gpointer p)
{
    for (bpm_claim *c = p, *next; c; c = next) {
        next = c->next_view;
        if (c->arms_cap)
            g_free(c->arms.many);
        g_free(c);
    }
}

void vmt_bpm_free(vmt_bpm *bpm)
{
    if (!bpm)
        return;
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, bpm->claims);
    while (g_hash_table_iter_next(&it, &k, &v))
        free_claim_chain(k);
    g_hash_table_destroy(bpm->claims);
    g_hash_table_iter_init(&it, bpm->pages);
    while (g_hash_table_iter_next(&it, &k, &v))
        page_release(k);
    g_hash_table_destroy(bpm->pages);
    if (bpm->spare)
        page_release(bpm->spare);
    g_hash_table_destroy(bpm->views);
    g_hash_table_iter_init(&it, bpm->globals);
    while (g_hash_table_iter_next(&it, &k, &v))
        g_free(k);
    g_hash_table_destroy(bpm->globals);
    bpm_armset_free(&bpm->armed);
    if (bpm->ctl.ops->destroy)
        bpm->ctl.ops->destroy(bpm->ctl.self);
    g_free(bpm);
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

static void insert_pending(vmt_bpm *bpm, const vmt_breakpoint *bp, vmt_addr_ctx ctx, bpm_claim *c,
                           bpm_claim *head, bool *inserted)
{
    bool ins = !c || !c->pending;
    if (ins) {
        if (!c)
            c = claim_new(bpm, bp, ctx, head);
        pending_link(bpm, view_get(bpm, bp->view), c);
    }
    if (inserted)
        *inserted = ins;
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
    if (fresh)
        c = claim_new(bpm, bp, ctx, head);
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
        insert_pending(bpm, bp, ctx, c, head, inserted);
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

/* Views in ascending order, copied: callers may free views meanwhile. */
static GArray *view_ids(const vmt_bpm *bpm)
{
    GArray *ids = g_array_sized_new(FALSE, FALSE, sizeof(vmt_view), g_hash_table_size(bpm->views));
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, bpm->views);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        vmt_view id = (vmt_view)GPOINTER_TO_UINT(k);
        g_array_append_val(ids, id);
    }
    return ids;
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
    GArray *ids = view_ids(bpm);
    vmt_status st = VMT_OK;
    for (guint i = 0; i < ids->len && st == VMT_OK; i++) {
        vmt_view v = g_array_index(ids, vmt_view, i);
        if (v == view)
            continue;
        bpm_claim *c = global ? claim_at(bpm, v, key, ctx.va, ctx.root, ANY_GFN)
                              : bpm_claim_lookup(bpm, v, key, ctx);
        if (c && c->global == global && c->n_arms)
            st = claim_destroy(bpm, vmi, c);
    }
    g_array_free(ids, TRUE);
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
    GArray *ids = view_ids(bpm);
    vmt_status st = VMT_OK;
    for (guint i = 0; i < ids->len && st == VMT_OK; i++)
        st = remove_view(bpm, vmi, bpm_view_lookup(bpm, g_array_index(ids, vmt_view, i)));
    g_array_free(ids, TRUE);
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
    for (bpm_claim *c = g_hash_table_lookup(bpm->claims, &probe); c; c = c->next_view)
        if (c->n_arms)
            return true;
    if (g_hash_table_size(bpm->globals) == 0)
        return false;
    /* A global claim filed under another root matches this one too. */
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, bpm->views);
    while (g_hash_table_iter_next(&it, &k, &v))
        if (claim_at(bpm, (vmt_view)GPOINTER_TO_UINT(k), key, ctx.va, ctx.root, ANY_GFN))
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
    /* Every claim goes pending: start the pending-index misses together
     * instead of one per claim. */
    for (uint32_t i = 0; i < page->n_claims && i < 64; i++)
        bpm_pendmap_prefetch(&vs->pending, page->claims[i]->ctx.va, page->claims[i]->ctx.root);
    for (uint32_t n = page->n_claims; n > 0; n--) {
        bpm_claim *c = page->claims[n - 1];
        vmt_status st = disarm(bpm, vmi, c, page); /* frees page after its last claim */
        if (st != VMT_OK) {
            /* A double fault may have dropped the arm all the same. */
            if (!c->pending && !claim_armed_at(c, gfn))
                pending_link(bpm, vs, c);
            return st;
        }
        if (!c->pending)
            pending_link(bpm, vs, c);
        *updated = true;
    }
    return VMT_OK;
}

/* Page-in: the pending claims of (view, ctx), and the pending global claims
 * filed under the canonical root of (view, va), are armed at pa. */
static vmt_status page_in(vmt_bpm *bpm, vmt_core *vmi, vmt_view view, vmt_addr_ctx ctx, vmt_pa pa,
                          bool *updated)
{
    bpm_view *vs = view_find(bpm, view);
    if (!vs || vs->n_pending == 0)
        return VMT_OK;
    bpm_claim *todo[64];
    GPtrArray *more = NULL;
    size_t n = 0;
    vmt_pa probe_root = ctx.root;
    bpm_global *g = bpm_global_lookup(bpm, view, ctx.va);
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            if (!g || g->root == ctx.root)
                break;
            probe_root = g->root;
        }
        for (bpm_claim *c = bpm_pendmap_get(&vs->pending, ctx.va, probe_root); c;
             c = c->next_pending) {
            if (round == 1 && !c->global)
                continue;
            if (n < G_N_ELEMENTS(todo)) {
                todo[n++] = c;
            } else {
                if (!more)
                    more = g_ptr_array_new();
                g_ptr_array_add(more, c);
            }
        }
    }
    vmt_gfn gfn = vmt_gfn_from_pa(pa);
    vmt_status st = VMT_OK;
    size_t total = n + (more ? more->len : 0);
    for (size_t i = 0; i < total && st == VMT_OK; i++) {
        bpm_claim *c = i < n ? todo[i] : g_ptr_array_index(more, i - n);
        if (!claim_armed_at(c, gfn)) {
            if (c->n_arms == BPM_MAX_ARMS)
                st = VMT_E_NOMEM;
            else
                st = arm(bpm, vmi, c, gfn);
        }
        if (st == VMT_OK) {
            pending_unlink(bpm, c);
            *updated = true;
        }
    }
    if (more)
        g_ptr_array_free(more, TRUE);
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

void vmt_bpm_stats_get(const vmt_bpm *bpm, vmt_bpm_stats *out)
{
    if (!bpm || !out)
        return;
    out->active = bpm->n_arms;
    out->pending = bpm->n_pending;
    out->pages = g_hash_table_size(bpm->pages);
    out->global = g_hash_table_size(bpm->globals);
}

const vmt_tap_controller *vmt_bpm_controller(const vmt_bpm *bpm)
{
    return bpm ? &bpm->ctl : NULL;
}
