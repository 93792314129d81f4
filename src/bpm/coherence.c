// SPDX-License-Identifier: MIT
/* Coherence of breakpoint shadows with guest writes (issue 8). See
 * include/vmitap/coherence.h for the behaviour; the shadow rebuild itself
 * is vmt_interceptor_refresh (bpm/interceptor.c), which only knows traps;
 * this file maps overwritten traps to the bpm's claims and applies the
 * application's choices.
 *
 * Out of memory: tracking a write cannot fail (a write the pending list
 * has no room for sets `overflow`, and the next flush rebuilds every
 * shadowed frame); a rebuild makes its lists before it changes a shadow,
 * so that no overwrite report is lost (VMT_E_NOMEM: the frame stays
 * pending). */
#include "vmitap/coherence.h"

#include <string.h>

#include "bpm/bpm_internal.h"
#include "bpm/controllers.h"
#include "core/alloc.h"
#include "core/opts.h"
#include "vmitap/log.h"

struct vmt_coherence {
    vmt_bpm *bpm;
    vmt_overwrite_fn fn;
    void *user;
    vmt_gfn *pending; /* frames written since the last flush (few) */
    size_t n_pending, cap;
    bool overflow; /* a written frame found no room in pending: flush them all */
    vmt_coherence_stats stats;
};

/* What one rebuild did, for the stats. */
typedef struct sync_counts {
    size_t overwritten, dropped, rearmed, errors;
} sync_counts;

/* One trap the rebuild left out of a shadow. */
typedef struct ow_item {
    vmt_view view;
    vmt_pa pa;
    size_t len;
    uint8_t old[VMT_OVERWRITE_MAX], now[VMT_OVERWRITE_MAX];
} ow_item;

static vmt_interceptor *bpm_interceptor(const vmt_bpm *bpm)
{
    return vmt_breakpoint_controller_interceptor(vmt_bpm_controller(bpm));
}

/* Armed claims in all (a bound for a frame shadowed in very many views). */
static size_t armed_claims(const vmt_bpm *bpm)
{
    vmt_bpm_stats s;
    vmt_bpm_stats_get(bpm, &s);
    return s.active;
}

/* Overwrites reported by a rebuild, into room made for every trap. */
typedef struct ow_items {
    ow_item *items;
    size_t n, cap;
} ow_items;

static void collect_item(void *user, vmt_view view, vmt_pa pa, size_t len, const uint8_t *old,
                         const uint8_t *now)
{
    ow_items *l = user;
    if (l->n == l->cap)
        return; /* cannot happen: one report per trap at most */
    ow_item *it = &l->items[l->n++];
    *it = (ow_item){.view = view, .pa = pa};
    it->len = len > VMT_OVERWRITE_MAX ? VMT_OVERWRITE_MAX : len;
    memcpy(it->old, old, it->len);
    memcpy(it->now, now, it->len);
}

typedef struct claims_at {
    unsigned off;
    vmt_breakpoint *claims; /* room for every claim on the page (sync_frame made it) */
    size_t n;
} claims_at;

/* A claim's trap sits at its address's page offset in every frame it is
 * armed on. */
static void collect_claim(void *user, const vmt_breakpoint *bp)
{
    claims_at *c = user;
    if ((bp->ctx.va & (VMT_PAGE_SIZE - 1)) == c->off)
        c->claims[c->n++] = *bp;
}

static void count_error(sync_counts *n, vmt_status st, const char *what, vmt_pa pa)
{
    n->errors++;
    vmt_log(VMT_LOG_ERROR, "coherence: %s at 0x%llx: %s", what, (unsigned long long)pa,
            vmt_status_str(st));
}

/* Asks about every claim on one overwritten trap, then re-arms the trap if
 * any claim wants it and removes the claims that do not. */
static vmt_status apply_choices(vmt_bpm *bpm, vmt_core *vmi, vmt_interceptor *ic, const ow_item *it,
                                vmt_breakpoint *room, vmt_overwrite_fn fn, void *user,
                                sync_counts *n)
{
    /* claims[0..n) are asked; the drops are then stored over the front. */
    claims_at c = {.off = it->pa & (VMT_PAGE_SIZE - 1), .claims = room};
    vmt_bpm_foreach_claim_on_page(bpm, it->view, vmt_gfn_from_pa(it->pa), collect_claim, &c);
    if (c.n == 0)
        vmt_log(VMT_LOG_WARN, "coherence: overwritten trap at 0x%llx has no claim; left out",
                (unsigned long long)it->pa);
    bool rearm = false;
    size_t n_drops = 0;
    for (size_t i = 0; i < c.n; i++) {
        vmt_overwrite ow = {.bp = c.claims[i], .pa = it->pa, .len = it->len};
        memcpy(ow.old_bytes, it->old, it->len);
        memcpy(ow.new_bytes, it->now, it->len);
        n->overwritten++;
        if (fn && fn(user, &ow) == VMT_OVERWRITE_REARM) {
            rearm = true;
            n->rearmed++;
        } else {
            c.claims[n_drops++] = ow.bp; /* i >= n_drops: an entry already asked */
        }
    }
    vmt_status first = VMT_OK, st;
    if (rearm && (st = vmt_interceptor_rearm(ic, vmi, it->view, it->pa)) != VMT_OK) {
        count_error(n, st, "re-arming", it->pa);
        first = st;
    }
    for (size_t i = 0; i < n_drops; i++) {
        bool removed;
        st = vmt_bpm_remove(bpm, vmi, &c.claims[i], &removed);
        if (st == VMT_OK) {
            n->dropped++;
        } else {
            count_error(n, st, "dropping", it->pa);
            if (first == VMT_OK)
                first = st;
        }
    }
    /* A drop that failed may have been undone by putting the trap back,
     * over the new bytes: take it out again, so that it stays out of the
     * guest's code and the next rebuild asks about it once more. */
    if (!rearm && first != VMT_OK) {
        st = vmt_interceptor_leave_out(ic, vmi, it->view, it->pa, it->old, it->len);
        if (st != VMT_OK && st != VMT_E_INVALID)
            count_error(n, st, "leaving out", it->pa);
    }
    return first;
}

static vmt_status sync_frame(vmt_bpm *bpm, vmt_core *vmi, vmt_gfn gfn, vmt_overwrite_fn fn,
                             void *user, sync_counts *n)
{
    vmt_interceptor *ic = bpm_interceptor(bpm);
    if (!ic)
        return VMT_OK;
    /* Room for a report of every trap, and for the claims of the page in
     * any view, before the rebuild: a report lost would never come again
     * (the trap is then out of the shadow). */
    vmt_view views[16];
    size_t nv, most = 0;
    ow_items items = {.cap = vmt_interceptor_traps_on(ic, gfn, views, 16, &nv)};
    for (size_t i = 0; i < nv; i++) {
        size_t c = i < 16 ? vmt_bpm_foreach_claim_on_page(bpm, views[i], gfn, NULL, NULL)
                          : armed_claims(bpm);
        most = c > most ? c : most;
    }
    items.items = vmt_reallocarray(NULL, items.cap + 1, sizeof *items.items);
    vmt_breakpoint *room = vmt_reallocarray(NULL, most + 1, sizeof *room);
    if (!items.items || !room) {
        vmt_free(items.items);
        vmt_free(room);
        count_error(n, VMT_E_NOMEM, "rebuilding the shadow", vmt_pa_from_gfn(gfn));
        return VMT_E_NOMEM;
    }
    vmt_status first = vmt_interceptor_refresh(ic, vmi, gfn, collect_item, &items, NULL);
    if (first != VMT_OK)
        count_error(n, first, "rebuilding the shadow", vmt_pa_from_gfn(gfn));
    /* Choices are applied after the rebuild: removing a claim may free
     * the shadow the rebuild was walking. */
    for (size_t i = 0; i < items.n; i++) {
        vmt_status st = apply_choices(bpm, vmi, ic, &items.items[i], room, fn, user, n);
        if (first == VMT_OK)
            first = st;
    }
    vmt_free(items.items);
    vmt_free(room);
    return first;
}

vmt_status vmt_bpm_sync_frame(vmt_bpm *bpm, vmt_core *vmi, vmt_gfn gfn, vmt_overwrite_fn fn,
                              void *user, size_t *overwritten)
{
    if (!bpm || !vmi)
        return VMT_E_INVALID;
    sync_counts n = {0};
    vmt_status st = sync_frame(bpm, vmi, gfn, fn, user, &n);
    if (overwritten)
        *overwritten = n.overwritten;
    return st;
}

/* ---- vmt_coherence ---- */

vmt_status vmt_coherence_new(vmt_bpm *bpm, vmt_coherence **out)
{
    if (!bpm || !out)
        return VMT_E_INVALID;
    vmt_coherence *coh = vmt_calloc(1, sizeof *coh);
    if (!coh)
        return VMT_E_NOMEM;
    coh->bpm = bpm;
    *out = coh;
    return VMT_OK;
}

void vmt_coherence_free(vmt_coherence *coh)
{
    if (!coh)
        return;
    vmt_free(coh->pending);
    vmt_free(coh);
}

void vmt_coherence_set_overwrite_fn(vmt_coherence *coh, vmt_overwrite_fn fn, void *user)
{
    if (!coh)
        return;
    coh->fn = fn;
    coh->user = user;
}

/* Cannot fail: with no room for gfn, the next flush rebuilds every
 * shadowed frame. */
static void defer_frame(vmt_coherence *coh, vmt_gfn gfn)
{
    for (size_t i = 0; i < coh->n_pending; i++)
        if (coh->pending[i] == gfn)
            return;
    vmt_gfn *p = vmt_grow_array(coh->pending, &coh->cap, coh->n_pending + 1, sizeof *p, 8);
    if (!p) {
        coh->overflow = true;
        return;
    }
    coh->pending = p;
    coh->pending[coh->n_pending++] = gfn;
}

/* The frames a flush rebuilds, into *frames (vmt_free): the pending ones,
 * or after an overflow every shadowed frame. VMT_E_NOMEM: nothing taken. */
static vmt_status take_frames(vmt_coherence *coh, vmt_gfn **frames, size_t *n)
{
    if (!coh->overflow) {
        *frames = coh->pending;
        *n = coh->n_pending;
        coh->pending = NULL;
        coh->n_pending = coh->cap = 0;
        return VMT_OK;
    }
    vmt_interceptor *ic = bpm_interceptor(coh->bpm);
    size_t total = vmt_interceptor_shadowed(ic, NULL, 0);
    *frames = vmt_reallocarray(NULL, total + 1, sizeof **frames);
    if (!*frames)
        return VMT_E_NOMEM;
    *n = vmt_interceptor_shadowed(ic, *frames, total);
    coh->n_pending = 0;
    coh->overflow = false;
    return VMT_OK;
}

bool vmt_coherence_track_write(vmt_coherence *coh, const vmt_event *ev)
{
    if (!coh || !ev || ev->reason != VMT_EVENT_MEMORY_ACCESS ||
        !(ev->u.memory_access.access & VMT_ACCESS_W))
        return false;
    /* Only a view with a shadow of the frame traps writes to it for the
     * breakpoints' sake (the frame is writable elsewhere): one lookup. The
     * rebuild then covers every view. */
    vmt_gfn gfn = vmt_gfn_from_pa(ev->u.memory_access.pa);
    vmt_view view = ev->has_view ? ev->view : 0;
    if (!vmt_interceptor_shadow_gfn(bpm_interceptor(coh->bpm), view, gfn, NULL))
        return false;
    coh->stats.writes++;
    defer_frame(coh, gfn);
    return true;
}

bool vmt_coherence_on_write(vmt_coherence *coh, vmt_core *vmi, const vmt_event *ev,
                            vmt_response *resp)
{
    if (!vmi || !resp || !vmt_coherence_track_write(coh, ev))
        return false;
    vmt_driver_info info = {0};
    if (vmt_core_info(vmi, &info) != VMT_OK)
        info.caps = 0;
    memset(resp, 0, sizeof *resp);
    resp->view = vmt_core_default_view(vmi);
    if (info.caps & VMT_CAP_FAST_SINGLESTEP) {
        resp->action = VMT_ACTION_FAST_SINGLESTEP;
    } else {
        resp->action = VMT_ACTION_SINGLESTEP;
        resp->set_view = true;
    }
    return true;
}

vmt_status vmt_coherence_flush(vmt_coherence *coh, vmt_core *vmi)
{
    if (!coh || !vmi)
        return VMT_E_INVALID;
    if (coh->n_pending == 0 && !coh->overflow)
        return VMT_OK;
    /* Taken first: a choice callback may write guest memory, never the list. */
    vmt_gfn *frames;
    size_t n_frames;
    vmt_status first = take_frames(coh, &frames, &n_frames);
    if (first != VMT_OK)
        return first;
    for (size_t i = 0; i < n_frames; i++) {
        sync_counts n = {0};
        vmt_status st = sync_frame(coh->bpm, vmi, frames[i], coh->fn, coh->user, &n);
        coh->stats.refreshes++;
        coh->stats.overwritten += n.overwritten;
        coh->stats.dropped += n.dropped;
        coh->stats.rearmed += n.rearmed;
        coh->stats.errors += n.errors;
        if (st != VMT_OK) /* retried at the next flush */
            defer_frame(coh, frames[i]);
        if (first == VMT_OK)
            first = st;
    }
    vmt_free(frames);
    return first;
}

size_t vmt_coherence_pending(const vmt_coherence *coh)
{
    if (!coh)
        return 0;
    return coh->overflow ? vmt_interceptor_shadowed(bpm_interceptor(coh->bpm), NULL, 0)
                         : coh->n_pending;
}

vmt_status vmt_coherence_classify(vmt_coherence *coh, vmt_core *vmi, const vmt_event *ev,
                                  vmt_trap_owner *out)
{
    if (!coh || !vmi || !ev || !out || ev->reason != VMT_EVENT_SOFTWARE_BREAKPOINT)
        return VMT_E_INVALID;
    vmt_interceptor *ic = bpm_interceptor(coh->bpm);
    if (!ic)
        return VMT_E_UNSUPPORTED;
    vmt_view view = ev->has_view ? ev->view : 0;
    vmt_pa pa = vmt_pa_in_gfn(ev->u.software_breakpoint.gfn, ev->regs.rip);
    if (vmt_interceptor_armed(ic, view, pa)) {
        *out = VMT_TRAP_OURS;
        return VMT_OK;
    }
    bool guest_has;
    vmt_status st = vmt_breakpoint_controller_is_breakpoint(vmi, ev, &guest_has);
    if (st != VMT_OK)
        return st;
    if (!guest_has)
        coh->stats.stale++;
    *out = guest_has ? VMT_TRAP_GUEST : VMT_TRAP_STALE;
    return VMT_OK;
}

vmt_status vmt_coherence_stats_get(const vmt_coherence *coh, vmt_coherence_stats *out)
{
    if (!coh)
        return VMT_E_INVALID;
    vmt_coherence_stats s = coh->stats;
    s.sz = sizeof s;
    return VMT_OUT_STORE(out, &s);
}
