// SPDX-License-Identifier: MIT
/* The shadow-page interceptor (see interceptor.h). */
#include "bpm/interceptor.h"

#include <string.h>

#include "core/alloc.h"
#include "core/htab.h"
#include "vmitap/log.h"

/* One trap on a shadow page: where, which bytes, what was under them. */
typedef struct ic_trap {
    uint16_t off;
    uint8_t len;
    uint32_t refs;
    bool disarmed; /* left out of the shadow: the guest overwrote its bytes (issue 8) */
    uint8_t bytes[VMT_INTERCEPTOR_MAX_TRAP];
    uint8_t orig[VMT_INTERCEPTOR_MAX_TRAP];
    uint8_t was[VMT_INTERCEPTOR_MAX_TRAP]; /* disarmed: the bytes it was set on */
} ic_trap;

/* A (view, frame) remapped to a shadow frame. */
typedef struct ic_page {
    uint64_t id; /* (view, gfn) packed: the hash key */
    vmt_view view;
    vmt_gfn gfn;
    vmt_gfn shadow;
    ic_trap *traps; /* few per page */
    size_t n_traps, cap;
} ic_page;

/* Memory (alloc.h): every allocation is made before the guest changes, so
 * that VMT_E_NOMEM leaves the guest and the interceptor as they were. */
struct vmt_interceptor {
    vmt_htab pages; /* &page->id -> ic_page */
};

static uint64_t pack(vmt_view view, vmt_gfn gfn)
{
    return ((uint64_t)view << 48) | gfn;
}

static void page_free(ic_page *page)
{
    vmt_free(page->traps);
    vmt_free(page);
}

vmt_interceptor *vmt_interceptor_new(void)
{
    vmt_interceptor *ic = vmt_calloc(1, sizeof *ic);
    if (ic)
        vmt_htab_init(&ic->pages, vmt_htab_hash_u64p, vmt_htab_eq_u64p);
    return ic;
}

void vmt_interceptor_free(vmt_interceptor *ic)
{
    if (!ic)
        return;
    for (size_t i = 0; i < ic->pages.n; i++)
        if (vmt_htab_used(&ic->pages.slots[i]))
            page_free(ic->pages.slots[i].val);
    vmt_htab_fini(&ic->pages);
    vmt_free(ic);
}

static ic_page *find_page(const vmt_interceptor *ic, vmt_view view, vmt_gfn gfn)
{
    uint64_t id = pack(view, gfn);
    return vmt_htab_get(&ic->pages, &id);
}

static void drop_page(vmt_interceptor *ic, ic_page *page)
{
    vmt_htab_del(&ic->pages, &page->id);
    page_free(page);
}

/* Room for one more trap on page. VMT_E_NOMEM: nothing changed. */
static vmt_status reserve_trap(ic_page *page)
{
    ic_trap *traps = vmt_grow_array(page->traps, &page->cap, page->n_traps + 1, sizeof *traps, 2);
    if (!traps)
        return VMT_E_NOMEM;
    page->traps = traps;
    return VMT_OK;
}

static ic_trap *find_trap(ic_page *page, unsigned off)
{
    for (size_t i = 0; i < page->n_traps; i++) {
        ic_trap *t = &page->traps[i];
        if (t->off == off)
            return t;
    }
    return NULL;
}

/* True if [off, off+len) overlaps a trap starting elsewhere. */
static bool overlaps_other(ic_page *page, unsigned off, size_t len)
{
    for (size_t i = 0; i < page->n_traps; i++) {
        ic_trap *t = &page->traps[i];
        if (t->off != off && t->off < off + len && off < (unsigned)t->off + t->len)
            return true;
    }
    return false;
}

static void free_shadow_or_log(vmt_core *vmi, vmt_gfn shadow)
{
    vmt_status st = vmt_core_free_gfn(vmi, shadow);
    if (st != VMT_OK)
        vmt_log(VMT_LOG_ERROR, "interceptor: shadow frame 0x%llx leaked (free_gfn: %s)",
                (unsigned long long)shadow, vmt_status_str(st));
}

/* First trap of a frame: allocate a shadow, fill it with the frame's
 * content and the trap, and remap the frame to it in the view. */
static vmt_status new_shadow_page(vmt_interceptor *ic, vmt_core *vmi, vmt_view view, vmt_pa pa,
                                  const uint8_t *trap, size_t len)
{
    vmt_gfn gfn = vmt_gfn_from_pa(pa);
    unsigned off = pa & (VMT_PAGE_SIZE - 1);
    uint8_t buf[VMT_PAGE_SIZE];
    vmt_gfn shadow;
    ic_page *page = vmt_calloc(1, sizeof *page);
    if (!page || reserve_trap(page) != VMT_OK || vmt_htab_reserve(&ic->pages, 1) != VMT_OK) {
        if (page)
            page_free(page);
        return VMT_E_NOMEM;
    }
    vmt_status st = vmt_core_allocate_gfn(vmi, &shadow);
    if (st != VMT_OK) {
        page_free(page);
        return st;
    }
    /* A frame above guest RAM (a hostile page table can point there) may
     * be the very frame just handed out: never trap a shadow. */
    st = shadow == gfn ? VMT_E_INVALID : vmt_core_read(vmi, vmt_pa_from_gfn(gfn), buf, sizeof buf);
    ic_trap t = {.off = (uint16_t)off, .len = (uint8_t)len, .refs = 1};
    if (st == VMT_OK) {
        memcpy(t.orig, buf + off, len);
        memcpy(t.bytes, trap, len);
        memcpy(buf + off, trap, len);
        st = vmt_core_write(vmi, vmt_pa_from_gfn(shadow), buf, sizeof buf);
    }
    if (st == VMT_OK)
        st = vmt_core_change_view_gfn(vmi, view, gfn, shadow);
    if (st != VMT_OK) {
        free_shadow_or_log(vmi, shadow);
        page_free(page);
        return st;
    }
    page->id = pack(view, gfn);
    page->view = view;
    page->gfn = gfn;
    page->shadow = shadow;
    page->traps[page->n_traps++] = t;
    (void)vmt_htab_put(&ic->pages, &page->id, page); /* reserved above */
    return VMT_OK;
}

static vmt_status rearm_trap(vmt_core *vmi, ic_page *page, ic_trap *t);

/* True if gfn is one of the interceptor's shadow frames. */
static bool is_shadow(const vmt_interceptor *ic, vmt_gfn gfn)
{
    for (size_t i = 0; (i = vmt_htab_next(&ic->pages, i)) < ic->pages.n; i++)
        if (((const ic_page *)ic->pages.slots[i].val)->shadow == gfn)
            return true;
    return false;
}

vmt_status vmt_interceptor_insert(vmt_interceptor *ic, vmt_core *vmi, vmt_view view, vmt_pa pa,
                                  const uint8_t *trap, size_t len)
{
    if (!ic || !vmi || !trap || len == 0 || len > VMT_INTERCEPTOR_MAX_TRAP)
        return VMT_E_INVALID;
    unsigned off = pa & (VMT_PAGE_SIZE - 1);
    if (off + len > VMT_PAGE_SIZE)
        return VMT_E_OUT_OF_BOUNDS;
    ic_page *page = find_page(ic, view, vmt_gfn_from_pa(pa));
    if (!page)
        return is_shadow(ic, vmt_gfn_from_pa(pa)) ? VMT_E_INVALID
                                                  : new_shadow_page(ic, vmi, view, pa, trap, len);

    ic_trap *t = find_trap(page, off);
    if (t) {
        if (t->len != len || memcmp(t->bytes, trap, len) != 0)
            return VMT_E_CONFLICT;
        if (t->disarmed) { /* a new claim where an overwritten trap waits */
            vmt_status st = rearm_trap(vmi, page, t);
            if (st != VMT_OK)
                return st;
        }
        t->refs++;
        return VMT_OK;
    }
    if (overlaps_other(page, off, len))
        return VMT_E_CONFLICT;
    if (reserve_trap(page) != VMT_OK)
        return VMT_E_NOMEM;
    /* The shadow holds what the guest sees in the view: keep those bytes. */
    ic_trap nt = {.off = (uint16_t)off, .len = (uint8_t)len, .refs = 1};
    vmt_pa spa = vmt_pa_from_gfn(page->shadow) + off;
    vmt_status st = vmt_core_read(vmi, spa, nt.orig, len);
    if (st == VMT_OK)
        st = vmt_core_write(vmi, spa, trap, len);
    if (st != VMT_OK)
        return st;
    memcpy(nt.bytes, trap, len);
    page->traps[page->n_traps++] = nt; /* reserved above */
    return VMT_OK;
}

/* Last trap of a frame: give the guest its own frame back, release the
 * shadow. The shadow's content does not matter any more, so the original
 * bytes need not be written into it. */
static vmt_status drop_shadow_page(vmt_interceptor *ic, vmt_core *vmi, ic_page *page)
{
    vmt_status st = vmt_core_reset_view_gfn(vmi, page->view, page->gfn);
    if (st != VMT_OK && st != VMT_E_VIEW_NOT_FOUND)
        return st;
    bool view_gone = st == VMT_E_VIEW_NOT_FOUND;
    st = vmt_core_free_gfn(vmi, page->shadow);
    if (st != VMT_OK) {
        /* Undo the reset so that nothing changed; if that fails too the
         * guest still sees its own frame (no trap), only the shadow leaks. */
        if (view_gone ||
            vmt_core_change_view_gfn(vmi, page->view, page->gfn, page->shadow) != VMT_OK) {
            vmt_log(VMT_LOG_ERROR,
                    "interceptor: shadow frame 0x%llx of view %u frame 0x%llx leaked",
                    (unsigned long long)page->shadow, page->view, (unsigned long long)page->gfn);
            drop_page(ic, page);
        }
        return st;
    }
    drop_page(ic, page);
    return view_gone ? VMT_E_VIEW_NOT_FOUND : VMT_OK;
}

vmt_status vmt_interceptor_remove(vmt_interceptor *ic, vmt_core *vmi, vmt_view view, vmt_pa pa)
{
    if (!ic || !vmi)
        return VMT_E_INVALID;
    ic_page *page = find_page(ic, view, vmt_gfn_from_pa(pa));
    ic_trap *t = page ? find_trap(page, pa & (VMT_PAGE_SIZE - 1)) : NULL;
    if (!t) {
        vmt_log(VMT_LOG_DEBUG, "interceptor: no trap at view %u pa 0x%llx", view,
                (unsigned long long)pa);
        return VMT_OK;
    }
    if (t->refs > 1) {
        t->refs--;
        return VMT_OK;
    }
    if (page->n_traps == 1)
        return drop_shadow_page(ic, vmi, page);
    vmt_status st = vmt_core_write(vmi, vmt_pa_from_gfn(page->shadow) + t->off, t->orig, t->len);
    if (st != VMT_OK)
        return st;
    *t = page->traps[--page->n_traps];
    return VMT_OK;
}

bool vmt_interceptor_shadow_gfn(const vmt_interceptor *ic, vmt_view view, vmt_gfn gfn,
                                vmt_gfn *shadow)
{
    ic_page *page = ic ? find_page(ic, view, gfn) : NULL;
    if (!page)
        return false;
    if (shadow)
        *shadow = page->shadow;
    return true;
}

unsigned vmt_interceptor_refs(const vmt_interceptor *ic, vmt_view view, vmt_pa pa)
{
    ic_page *page = ic ? find_page(ic, view, vmt_gfn_from_pa(pa)) : NULL;
    ic_trap *t = page ? find_trap(page, pa & (VMT_PAGE_SIZE - 1)) : NULL;
    return t ? t->refs : 0;
}

size_t vmt_interceptor_pages(const vmt_interceptor *ic)
{
    return ic ? vmt_htab_size(&ic->pages) : 0;
}

vmt_status vmt_interceptor_read_original(const vmt_interceptor *ic, vmt_core *vmi, vmt_view view,
                                         vmt_pa pa, void *buf, size_t len)
{
    if (!ic || !vmi || (!buf && len))
        return VMT_E_INVALID;
    unsigned off = pa & (VMT_PAGE_SIZE - 1);
    if (off + len > VMT_PAGE_SIZE)
        return VMT_E_OUT_OF_BOUNDS;
    ic_page *page = find_page(ic, view, vmt_gfn_from_pa(pa));
    if (!page)
        return vmt_core_read(vmi, pa, buf, len);
    uint8_t tmp[VMT_PAGE_SIZE];
    vmt_status st = vmt_core_read(vmi, vmt_pa_from_gfn(page->shadow) + off, tmp, len);
    if (st != VMT_OK)
        return st;
    for (size_t i = 0; i < page->n_traps; i++) {
        ic_trap *t = &page->traps[i];
        for (unsigned b = 0; b < t->len; b++) {
            unsigned at = t->off + b;
            if (at >= off && at < off + len)
                tmp[at - off] = t->orig[b];
        }
    }
    memcpy(buf, tmp, len);
    return VMT_OK;
}

/* ---- coherence with guest writes (issue 8; see bpm/coherence.c) ---- */

/* Re-applies a trap that vmt_interceptor_refresh left out. */
static vmt_status rearm_trap(vmt_core *vmi, ic_page *page, ic_trap *t)
{
    vmt_status st = vmt_core_write(vmi, vmt_pa_from_gfn(page->shadow) + t->off, t->bytes, t->len);
    if (st == VMT_OK)
        t->disarmed = false;
    return st;
}

/* True if the guest changed the bytes under an armed trap. */
static bool overwritten(const ic_trap *t, const uint8_t *now)
{
    return !t->disarmed && memcmp(t->orig, now + t->off, t->len) != 0;
}

/* True if a trap is out of the shadow although the guest's bytes under it
 * are again those it was set on: it goes back in. */
static bool restored(const ic_trap *t, const uint8_t *now)
{
    return t->disarmed && memcmp(t->was, now + t->off, t->len) == 0;
}

/* One view's shadow of the frame whose current content is `now`. The
 * shadow is written first: if that fails nothing has changed. */
static vmt_status refresh_page(vmt_core *vmi, ic_page *page, const uint8_t *now,
                               vmt_interceptor_overwrite_fn fn, void *user)
{
    uint8_t buf[VMT_PAGE_SIZE];
    memcpy(buf, now, sizeof buf);
    for (size_t i = 0; i < page->n_traps; i++) {
        ic_trap *t = &page->traps[i];
        if ((!t->disarmed && !overwritten(t, now)) || restored(t, now))
            memcpy(buf + t->off, t->bytes, t->len);
    }
    vmt_status st = vmt_core_write(vmi, vmt_pa_from_gfn(page->shadow), buf, sizeof buf);
    if (st != VMT_OK)
        return st;
    for (size_t i = 0; i < page->n_traps; i++) {
        ic_trap *t = &page->traps[i];
        if (restored(t, now)) {
            memcpy(t->orig, t->was, t->len);
            t->disarmed = false;
            continue;
        }
        /* A trap already out of the shadow is reported again: its claims
         * are still there, so the choice made about it was not applied
         * (the call applying it failed) and is asked for once more. */
        bool report = overwritten(t, now) || t->disarmed;
        if (!report)
            continue;
        if (!t->disarmed)
            memcpy(t->was, t->orig, t->len);
        /* A trap out of the shadow keeps the guest's bytes as its
         * original: they are what removing it must leave. The instruction
         * the trap was set on is gone: the new bytes show. */
        memcpy(t->orig, now + t->off, t->len);
        t->disarmed = true;
        if (fn)
            fn(user, page->view, vmt_pa_from_gfn(page->gfn) + t->off, t->len, t->was, t->orig);
    }
    return VMT_OK;
}

vmt_status vmt_interceptor_refresh(vmt_interceptor *ic, vmt_core *vmi, vmt_gfn gfn,
                                   vmt_interceptor_overwrite_fn fn, void *user, size_t *views)
{
    if (!ic || !vmi)
        return VMT_E_INVALID;
    uint8_t now[VMT_PAGE_SIZE];
    size_t n = 0;
    vmt_status first = VMT_OK;
    for (size_t i = 0; i < ic->pages.n; i++) {
        if (!vmt_htab_used(&ic->pages.slots[i]))
            continue;
        ic_page *page = ic->pages.slots[i].val;
        if (page->gfn != gfn)
            continue;
        if (n++ == 0 &&
            (first = vmt_core_read(vmi, vmt_pa_from_gfn(gfn), now, sizeof now)) != VMT_OK)
            return first;
        vmt_status st = refresh_page(vmi, page, now, fn, user);
        if (st != VMT_OK && first == VMT_OK)
            first = st;
    }
    if (views)
        *views = n;
    return first;
}

vmt_status vmt_interceptor_rearm(vmt_interceptor *ic, vmt_core *vmi, vmt_view view, vmt_pa pa)
{
    if (!ic || !vmi)
        return VMT_E_INVALID;
    ic_page *page = find_page(ic, view, vmt_gfn_from_pa(pa));
    ic_trap *t = page ? find_trap(page, pa & (VMT_PAGE_SIZE - 1)) : NULL;
    if (!t)
        return VMT_E_INVALID;
    return t->disarmed ? rearm_trap(vmi, page, t) : VMT_OK;
}

vmt_status vmt_interceptor_leave_out(vmt_interceptor *ic, vmt_core *vmi, vmt_view view, vmt_pa pa,
                                     const uint8_t *was, size_t len)
{
    if (!ic || !vmi || !was)
        return VMT_E_INVALID;
    ic_page *page = find_page(ic, view, vmt_gfn_from_pa(pa));
    ic_trap *t = page ? find_trap(page, pa & (VMT_PAGE_SIZE - 1)) : NULL;
    if (!t || len != t->len)
        return VMT_E_INVALID;
    if (t->disarmed)
        return VMT_OK;
    vmt_status st = vmt_core_write(vmi, vmt_pa_from_gfn(page->shadow) + t->off, t->orig, t->len);
    if (st != VMT_OK)
        return st;
    memcpy(t->was, was, len);
    t->disarmed = true;
    return VMT_OK;
}

bool vmt_interceptor_armed(const vmt_interceptor *ic, vmt_view view, vmt_pa pa)
{
    ic_page *page = ic ? find_page(ic, view, vmt_gfn_from_pa(pa)) : NULL;
    ic_trap *t = page ? find_trap(page, pa & (VMT_PAGE_SIZE - 1)) : NULL;
    return t && !t->disarmed;
}

size_t vmt_interceptor_traps_on(const vmt_interceptor *ic, vmt_gfn gfn, vmt_view *out,
                                size_t max, size_t *views)
{
    size_t n = 0, nv = 0;
    for (size_t i = 0; ic && (i = vmt_htab_next(&ic->pages, i)) < ic->pages.n; i++) {
        const ic_page *page = ic->pages.slots[i].val;
        if (page->gfn != gfn)
            continue;
        n += page->n_traps;
        if (nv < max)
            out[nv] = page->view;
        nv++;
    }
    if (views)
        *views = nv;
    return n;
}

size_t vmt_interceptor_shadowed(const vmt_interceptor *ic, vmt_gfn *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; ic && (i = vmt_htab_next(&ic->pages, i)) < ic->pages.n; i++, n++)
        if (n < max)
            out[n] = ((const ic_page *)ic->pages.slots[i].val)->gfn;
    return n;
}
