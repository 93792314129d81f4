// SPDX-License-Identifier: MIT
/* vmt_bpm_check: recomputes every index from the others and compares; and
 * the internal accessors of bpm_internal.h. Linear in the manager's size:
 * meant for tests and the fuzzer, not for hot paths. It allocates nothing
 * (counts go into scratch fields of the records). */
#include "bpm/bpm_impl.h"
#include "bpm/bpm_internal.h"
#include "vmitap/log.h"

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        vmt_log(VMT_LOG_ERROR, "bpm_check: " __VA_ARGS__);                                         \
        return false;                                                                              \
    } while (0)

typedef struct totals {
    size_t arms, pending, global_claims;

} totals;

static bool in_pending_chain(const bpm_view *vs, const bpm_claim *c)
{
    for (bpm_claim *p = bpm_pendmap_get(&vs->pending, c->ctx.va, c->ctx.root); p;
         p = p->next_pending)
        if (p == c)
            return true;
    return false;
}

static bool check_claim(const vmt_bpm *bpm, const bpm_claim *head, const bpm_claim *c, totals *t)
{
    if (c->key != head->key || !vmt_ctx_eq(c->ctx, head->ctx))
        FAIL("claim chained under another (key, ctx)");
    for (const bpm_claim *o = head; o != c; o = o->next_view)
        if (o->view == c->view)
            FAIL("two claims for view %u, key %llu", c->view, (unsigned long long)c->key);
    if (!c->pending && c->n_arms == 0)
        FAIL("claim neither pending nor armed");
    if (c->claims_head != (c == head))
        FAIL("claims-index head flag wrong");
    if (!c->pending && c->pending_head)
        FAIL("pending-index head flag on a claim not pending");
    if (c->arms_cap == 0 && c->n_arms > 1)
        FAIL("inline arms overflow");
    for (unsigned i = 0; i < c->n_arms; i++) {
        bpm_page *page = bpm_arm_page(c, i);
        uint32_t idx = bpm_arm_idx(c, i);
        if (vmt_htab_get(&bpm->pages, &page->id) != page)
            FAIL("arm on a page not in the page index");
        if (bpm_page_view(page) != c->view)
            FAIL("arm on a page of another view");
        if (idx >= page->n_claims || page->claims[idx] != c)
            FAIL("arm index does not point back at its claim");
        for (unsigned j = 0; j < i; j++)
            if (bpm_arm_page(c, j) == page)
                FAIL("claim armed twice on one page");
        uint64_t id = page->id;
        if (!bpm_armset_has(&bpm->armed, id, c->key, c->ctx.va, c->ctx.root, false) ||
            bpm_armset_has(&bpm->armed, id, c->key, c->ctx.va, c->ctx.root, true) != c->global)
            FAIL("arm missing from the armed set, or its global flag differs");
    }
    if (c->pending) {
        bpm_view *vs = bpm_view_lookup(bpm, c->view);
        if (!vs || !in_pending_chain(vs, c))
            FAIL("pending claim missing from its view's pending index");
        t->pending++;
    }
    if (c->global) {
        bpm_global *g = bpm_global_lookup(bpm, c->view, c->ctx.va);
        if (!g || g->root != c->ctx.root)
            FAIL("global claim without its canonical root");
        g->seen++;
        t->global_claims++;
    }
    t->arms += c->n_arms;
    return true;
}

static bool check_page(const vmt_bpm *bpm, const bpm_page *page)
{
    if (page->n_claims == 0)
        FAIL("empty page");
    uint32_t sum = 0;
    for (unsigned i = 0; i < page->n_offs; i++) {
        uint32_t n = 0;
        for (uint32_t j = 0; j < page->n_claims; j++)
            n += bpm_va_off(page->claims[j]->ctx.va) == page->offs[i].off;
        if (n == 0 || n != page->offs[i].count)
            FAIL("offset count of 0x%x is %u, %u claims there", page->offs[i].off,
                 page->offs[i].count, n);
        for (unsigned j = 0; j < i; j++)
            if (page->offs[j].off == page->offs[i].off)
                FAIL("offset listed twice");
        sum += n;
    }
    if (sum != page->n_claims)
        FAIL("claims at offsets not counted");
    for (uint32_t j = 0; j < page->n_claims; j++) {
        bpm_claim *c = page->claims[j];
        if (c->view != bpm_page_view(page))
            FAIL("claim of another view on a page");
        bool back = false;
        for (unsigned i = 0; i < c->n_arms; i++)
            back |= bpm_arm_page(c, i) == page && bpm_arm_idx(c, i) == j;
        if (!back)
            FAIL("page lists a claim not armed on it");
        if (bpm_claim_lookup(bpm, c->view, c->key, c->ctx) != c)
            FAIL("page lists a claim missing from the claim index");
    }
    return true;
}

static bool check_view(const vmt_bpm *bpm, const bpm_view *vs, size_t *pages, size_t *pending)
{
    if (vs->n_pages == 0 && vs->n_pending == 0)
        FAIL("empty view %u kept", vs->view);
    size_t n = 0;
    for (const bpm_page *p = vs->pages; p; p = p->next) {
        if (bpm_page_view(p) != vs->view || vmt_htab_get(&bpm->pages, &p->id) != p)
            FAIL("view %u lists a foreign page", vs->view);
        if ((p->prev ? p->prev->next : vs->pages) != p)
            FAIL("broken page list");
        n++;
    }
    if (n != vs->n_pages)
        FAIL("view %u: %zu pages listed, %zu counted", vs->view, n, vs->n_pages);
    *pages += n;
    size_t np = 0;
    if (!bpm_pendmap_check(&vs->pending))
        FAIL("view %u: pending index inconsistent", vs->view);
    for (size_t i = 0; i < vs->pending.n; i++) {
        const bpm_pendmap_slot *sl = &vs->pending.slots[i];
        bpm_claim *k = sl->head;
        if (k && (k->ctx.va != sl->va || k->ctx.root != sl->root))
            FAIL("view %u: pending chain filed under another ctx", vs->view);
        for (bpm_claim *c = k; c; c = c->next_pending) {
            if (!c->pending || c->view != vs->view || !vmt_ctx_eq(c->ctx, k->ctx))
                FAIL("foreign claim in view %u's pending index", vs->view);
            if (c->pending_head != (c == k))
                FAIL("pending-index head flag wrong");
            if (bpm_claim_lookup(bpm, c->view, c->key, c->ctx) != c)
                FAIL("pending claim missing from the claim index");
            np++;
        }
    }
    if (np != vs->n_pending)
        FAIL("view %u: %zu pending listed, %zu counted", vs->view, np, vs->n_pending);
    *pending += np;
    return true;
}

/* Iterates the used slots of a vmt_htab. */

static bool check_all(const vmt_bpm *bpm)
{
    totals t = {0};
    bool ok = true;
    for (size_t i = 0; (i = vmt_htab_next(&bpm->globals, i)) < bpm->globals.n; i++)
        ((bpm_global *)bpm->globals.slots[i].val)->seen = 0;
    for (size_t i = 0; (i = vmt_htab_next(&bpm->claims, i)) < bpm->claims.n; i++) {
        const bpm_claim *head = bpm->claims.slots[i].val;
        for (const bpm_claim *c = head; ok && c; c = c->next_view)
            ok = check_claim(bpm, head, c, &t);
        if (!ok)
            break;
    }
    if (ok) {
        for (size_t i = 0; (i = vmt_htab_next(&bpm->globals, i)) < bpm->globals.n; i++) {
            bpm_global *g = bpm->globals.slots[i].val;
            if (g->count == 0 || g->count != g->seen) {
                vmt_log(VMT_LOG_ERROR, "bpm_check: global record counts %u claims, found %u",
                        g->count, g->seen);
                ok = false;
                break;
            }
        }
    }
    if (!ok)
        return false;
    /* Every arm is in the armed set (check_claim): equal sizes mean that
     * the set holds nothing else. */
    if (!bpm_armset_check(&bpm->armed))
        FAIL("armed set inconsistent");
    if (bpm_armset_size(&bpm->armed) != t.arms)
        FAIL("armed set holds %zu pairs, claims %zu arms", bpm_armset_size(&bpm->armed), t.arms);
    if (t.arms != bpm->n_arms || t.pending != bpm->n_pending)
        FAIL("totals: %zu arms (counted %zu), %zu pending (counted %zu)", t.arms, bpm->n_arms,
             t.pending, bpm->n_pending);
    size_t page_arms = 0;
    for (size_t i = 0; (i = vmt_htab_next(&bpm->pages, i)) < bpm->pages.n; i++) {
        const bpm_page *page = bpm->pages.slots[i].val;
        if (!check_page(bpm, page))
            return false;
        page_arms += page->n_claims;
    }
    if (page_arms != t.arms)
        FAIL("pages hold %zu arms, claims %zu", page_arms, t.arms);
    size_t pages = 0, pending = 0;
    for (size_t i = 0; (i = vmt_htab_next(&bpm->views, i)) < bpm->views.n; i++) {
        const bpm_view *vs = bpm->views.slots[i].val;
        if (bpm->views.slots[i].key != BPM_VIEW_KEY(vs->view))
            FAIL("view filed under another id");
        if (!check_view(bpm, vs, &pages, &pending))
            return false;
    }
    if (pages != vmt_htab_size(&bpm->pages) || pending != t.pending)
        FAIL("views list %zu pages, %zu pending", pages, pending);
    return true;
}

vmt_status vmt_bpm_check(const vmt_bpm *bpm)
{
    if (!bpm)
        return VMT_E_INVALID;
    return check_all(bpm) ? VMT_OK : VMT_E_CONFLICT;
}

/* ---- accessors ---- */

void vmt_bpm_foreach_arm(const vmt_bpm *bpm, vmt_bpm_arm_fn fn, void *user)
{
    for (size_t j = 0; (j = vmt_htab_next(&bpm->pages, j)) < bpm->pages.n; j++) {
        const bpm_page *page = bpm->pages.slots[j].val;
        for (uint32_t i = 0; i < page->n_claims; i++) {
            vmt_breakpoint bp = bpm_claim_breakpoint(page->claims[i]);
            fn(user, &bp, bpm_page_gfn(page));
        }
    }
}

void vmt_bpm_foreach_pending(const vmt_bpm *bpm, vmt_bpm_claim_fn fn, void *user)
{
    for (size_t j = 0; (j = vmt_htab_next(&bpm->views, j)) < bpm->views.n; j++) {
        const bpm_view *vs = bpm->views.slots[j].val;
        for (size_t i = 0; i < vs->pending.n; i++)
            for (bpm_claim *c = vs->pending.slots[i].head; c; c = c->next_pending) {
                vmt_breakpoint bp = bpm_claim_breakpoint(c);
                fn(user, &bp);
            }
    }
}

size_t vmt_bpm_foreach_claim_on_page(const vmt_bpm *bpm, vmt_view view, vmt_gfn gfn,
                                     vmt_bpm_claim_fn fn, void *user)
{
    bpm_page *page = bpm ? bpm_page_lookup(bpm, view, gfn) : NULL;
    if (!page)
        return 0;
    for (uint32_t i = 0; fn && i < page->n_claims; i++) {
        vmt_breakpoint bp = bpm_claim_breakpoint(page->claims[i]);
        fn(user, &bp);
    }
    return page->n_claims;
}

bool vmt_bpm_has_page(const vmt_bpm *bpm, vmt_view view, vmt_gfn gfn)
{
    return bpm && bpm_page_lookup(bpm, view, gfn) != NULL;
}
