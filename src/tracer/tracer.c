// SPDX-License-Identifier: MIT
/* The tracer: one session view, a bpm and a ptm, and the event loop that
 * keeps them in step with the guest. See include/vmitap/tracer.h.
 *
 * Where things live: every breakpoint is one bpm claim with key = its
 * tracer id (so claims never collide and a hit can ask the bpm about each
 * candidate), plus one ptm monitor of its (ctx, session view). The tracer
 * indexes its breakpoints by id and by virtual address; on an event it
 * takes the breakpoints at rip and asks the bpm which are armed there.
 *
 * Memory comes from core/alloc.h and the indexes are vmt_htab tables:
 * adding a breakpoint makes every allocation it needs (the indexes' room
 * included) before it touches the bpm, the ptm or the guest, so that
 * VMT_E_NOMEM leaves everything as it was; the event handlers allocate
 * nothing (hits are decided in batches on the stack, the list of
 * breakpoints coherence drops has room for all of them). */
#include "vmitap/tracer.h"

#include <glib.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/htab.h"
#include "core/opts.h"
#include "ptm/ptm_internal.h"
#include "tracer/emulate.h"
#include "tracer/symbols.h"
#include "tracer/tracer_internal.h"
#include "vmitap/coherence.h"
#include "vmitap/log.h"

/* What a vCPU is in the middle of, between a SINGLESTEP response and the
 * SINGLESTEP event that ends it. */
typedef enum step_kind {
    STEP_NONE = 0,
    STEP_RETURN,   /* stepping in the default view; then back to the session view */
    STEP_PT_WRITE, /* stepping a write to a monitored page-table entry */
} step_kind;

typedef struct tracer_bp {
    vmt_tracer_bp_info info; /* info.name points to name */
    char *name;
} tracer_bp;

/* All breakpoints at one virtual address (any root). */
typedef struct va_slot {
    vmt_va va; /* the hash key points here */
    struct tracer_bp **bps;
    size_t n, cap;
} va_slot;

struct vmt_tracer {
    vmt_core *vmi;
    vmt_tracer_opts opts;
    vmt_tracer_controller controller;
    uint32_t caps;
    vmt_view view;
    bool attached;
    bool monitoring_mem, monitoring_int3;
    vmt_bpm *bpm;
    vmt_ptm *ptm;
    vmt_symtab *syms;
    vmt_htab by_id; /* (void *)id -> tracer_bp (owned) */
    vmt_htab by_va; /* &slot->va -> va_slot (owned) */
    vmt_tracer_bp_id next_id;
    step_kind *steps; /* per vCPU */
    uint16_t nvcpus;
    vmt_tracer_stats stats;
    uint64_t run_hits;
    vmt_status loop_error; /* first failure inside the event callback */
    atomic_int stop_requested; /* lock-free: set from any thread or a signal handler */
    /* coherence with guest writes (issue 8): int3 controller only */
    vmt_coherence *coh;
    vmt_tracer_overwrite_fn on_overwrite;
    void *overwrite_user;
    vmt_tracer_bp_id *coh_dropped; /* dropped by the last flush; room for every breakpoint */
    size_t n_dropped, dropped_cap;
    /* ptm events the bpm failed to take: the ptm has moved on, so nothing
     * would announce them again; retried at every turn of the loop while
     * they still hold (retry_owed_ptm). */
    vmt_ptm_events owed;
};

const char *vmt_tracer_controller_name(vmt_tracer_controller c)
{
    switch (c) {
    case VMT_TRACER_CONTROLLER_AUTO: return "auto";
    case VMT_TRACER_CONTROLLER_INT3: return "int3";
    case VMT_TRACER_CONTROLLER_MEMORY: return "memory";
    }
    return "unknown";
}

const char *vmt_tracer_stop_reason_str(vmt_tracer_stop_reason r)
{
    switch (r) {
    case VMT_TRACER_STOP_NONE: return "none";
    case VMT_TRACER_STOP_GUEST_EXITED: return "guest exited";
    case VMT_TRACER_STOP_TIMEOUT: return "timeout";
    case VMT_TRACER_STOP_HITS: return "hits";
    case VMT_TRACER_STOP_REQUESTED: return "requested";
    }
    return "unknown";
}

/* ---- bookkeeping ---- */

#define ID_KEY(id) ((void *)(uintptr_t)(id))

static void bp_free(tracer_bp *bp)
{
    vmt_free(bp->name);
    vmt_free(bp);
}

static void slot_free(va_slot *s)
{
    vmt_free(s->bps);
    vmt_free(s);
}

static va_slot *slot_get(const vmt_tracer *t, vmt_va va)
{
    return vmt_htab_get(&t->by_va, &va);
}

static tracer_bp *bp_by_id(const vmt_tracer *t, vmt_tracer_bp_id id)
{
    return vmt_htab_get(&t->by_id, ID_KEY(id));
}

static vmt_breakpoint bpm_claim(const vmt_tracer *t, const tracer_bp *bp)
{
    return (vmt_breakpoint){.ctx = bp->info.ctx, .view = t->view, .global = bp->info.global,
                            .key = bp->info.id, .tag = (uintptr_t)bp->info.id};
}

/* Re-reads from the bpm whether bp is armed and counts the transition.
 * pa: where the ptm says the page now is (0 when unknown: translated;
 * KEEP_PA: the frame it is armed in did not change). */
#define KEEP_PA UINT64_MAX
static void bp_refresh(vmt_tracer *t, tracer_bp *bp, vmt_pa pa)
{
    bool now = vmt_bpm_contains_by_address(t->bpm, bp->info.ctx, bp->info.id);
    vmt_tracer_bp_info *i = &bp->info;
    if (pa == KEEP_PA)
        pa = i->active ? i->pa : 0; /* where it is armed has not changed */
    else if (now && !pa && vmt_core_translate(t->vmi, i->ctx, &pa) != VMT_OK)
        pa = 0;
    if (now && pa)
        pa = vmt_pa_in_gfn(vmt_gfn_from_pa(pa), i->ctx.va);
    if (now && !i->active) {
        i->page_ins++;
        if (i->pa && pa && vmt_gfn_from_pa(i->pa) != vmt_gfn_from_pa(pa))
            i->relocations++;
    } else if (!now && i->active) {
        i->page_outs++;
    }
    i->active = now;
    if (now && pa)
        i->pa = pa; /* kept while pending: the frame it last lived in */
}

/* ---- coherence with guest writes (issue 8; see vmitap/coherence.h) ---- */

/* The bpm reports a claim (key = tracer id) whose trap the guest overwrote. */
static vmt_overwrite_choice tracer_on_overwrite(void *user, const vmt_overwrite *ow)
{
    vmt_tracer *t = user;
    tracer_bp *bp = ow->bp.view == t->view ? bp_by_id(t, (vmt_tracer_bp_id)ow->bp.key) : NULL;
    if (!bp)
        return VMT_OVERWRITE_DROP;
    vmt_overwrite_choice c = VMT_OVERWRITE_DROP;
    if (t->on_overwrite) {
        vmt_tracer_overwrite o = {.bp = &bp->info, .pa = ow->pa, .len = ow->len,
                                  .old_bytes = ow->old_bytes, .new_bytes = ow->new_bytes};
        c = t->on_overwrite(t->overwrite_user, t, &o);
    }
    if (c != VMT_OVERWRITE_REARM && t->n_dropped < t->dropped_cap)
        t->coh_dropped[t->n_dropped++] = bp->info.id; /* room for every breakpoint */
    return c == VMT_OVERWRITE_REARM ? c : VMT_OVERWRITE_DROP;
}

static vmt_status tracer_coherence_new(vmt_tracer *t)
{
    vmt_status st = vmt_coherence_new(t->bpm, &t->coh);
    if (st != VMT_OK)
        return st;
    vmt_coherence_set_overwrite_fn(t->coh, tracer_on_overwrite, t);
    return VMT_OK;
}

/* Rebuilds the shadows of frames the guest wrote, then forgets the
 * breakpoints dropped because their instruction was overwritten. A failure
 * is logged and counted: the breakpoints on that frame may be stale, the
 * guest keeps running. */
static void tracer_coherence_flush(vmt_tracer *t)
{
    if (!t->coh || vmt_coherence_pending(t->coh) == 0)
        return;
    vmt_status st = vmt_coherence_flush(t->coh, t->vmi);
    if (st != VMT_OK)
        vmt_log(VMT_LOG_ERROR, "tracer: rebuilding written shadow pages: %s", vmt_status_str(st));
    /* The claims are gone already; this drops the rest (a breakpoint
     * reported twice is simply not found the second time). */
    for (size_t i = 0; i < t->n_dropped; i++)
        vmt_tracer_remove(t, t->coh_dropped[i]);
    t->n_dropped = 0;
}

vmt_status vmt_tracer_set_overwrite_fn(vmt_tracer *t, vmt_tracer_overwrite_fn fn, void *user)
{
    if (!t)
        return VMT_E_INVALID;
    t->on_overwrite = fn;
    t->overwrite_user = user;
    return VMT_OK;
}

vmt_status vmt_tracer_coherence_stats_get(const vmt_tracer *t, vmt_coherence_stats *out)
{
    if (!t)
        return VMT_E_INVALID;
    if (t->coh)
        return vmt_coherence_stats_get(t->coh, out);
    vmt_coherence_stats none = {.sz = sizeof none};
    return VMT_OUT_STORE(out, &none);
}

/* ---- end of coherence ---- */

/* ---- creation and teardown ---- */

static vmt_status make_controller(vmt_tracer_controller c, vmt_tap_controller *out)
{
    return c == VMT_TRACER_CONTROLLER_INT3 ? vmt_breakpoint_controller_new(out)
                                           : vmt_memory_controller_new(out);
}

/* Turns on an event source; a driver that always reports it (no monitor
 * op) is fine. */
static vmt_status monitor_on(vmt_tracer *t, vmt_event_reason what, bool *on)
{
    vmt_status st = vmt_core_monitor(t->vmi, what, true);
    if (st == VMT_E_UNSUPPORTED)
        return VMT_OK;
    *on = st == VMT_OK;
    return st;
}

/* A driver that always reports an event (it cannot switch it off) has
 * nothing to undo. */
static vmt_status monitor_off(vmt_tracer *t, vmt_event_reason what)
{
    vmt_status st = vmt_core_monitor(t->vmi, what, false);
    return st == VMT_E_UNSUPPORTED ? VMT_OK : st;
}

static vmt_status tracer_setup(vmt_tracer *t)
{
    vmt_driver_info info;
    vmt_status st = vmt_core_info(t->vmi, &info);
    if (st != VMT_OK)
        return st;
    if (!(info.caps & VMT_CAP_VIEWS)) {
        vmt_log(VMT_LOG_ERROR, "tracer: the driver has no views");
        return VMT_E_UNSUPPORTED;
    }
    t->caps = info.caps;
    t->nvcpus = info.vcpus ? info.vcpus : 1;
    t->steps = vmt_calloc(t->nvcpus, sizeof *t->steps);
    if (!t->steps)
        return VMT_E_NOMEM;
    t->controller = t->opts.controller;
    if (t->controller == VMT_TRACER_CONTROLLER_AUTO)
        t->controller = (info.caps & VMT_CAP_EXECUTE_ONLY) ? VMT_TRACER_CONTROLLER_INT3
                                                          : VMT_TRACER_CONTROLLER_MEMORY;
    vmt_tap_controller ctl;
    if ((st = make_controller(t->controller, &ctl)) != VMT_OK)
        return st;
    if ((st = vmt_bpm_new(ctl, &t->bpm)) != VMT_OK)
        return st;
    if (t->controller == VMT_TRACER_CONTROLLER_INT3 && (st = tracer_coherence_new(t)) != VMT_OK)
        return st;
    if ((st = vmt_ptm_new(&t->ptm)) != VMT_OK)
        return st;
    if ((st = vmt_core_create_view(t->vmi, VMT_ACCESS_RWX, &t->view)) != VMT_OK)
        return st;
    t->attached = true; /* from here on, detach undoes what follows */
    if ((st = monitor_on(t, VMT_EVENT_MEMORY_ACCESS, &t->monitoring_mem)) != VMT_OK)
        return st;
    if ((st = monitor_on(t, VMT_EVENT_SOFTWARE_BREAKPOINT, &t->monitoring_int3)) != VMT_OK)
        return st;
    return vmt_core_switch_view(t->vmi, t->view);
}

vmt_status vmt_tracer_new(vmt_core *vmi, const vmt_tracer_opts *opts, vmt_tracer **out)
{
    vmt_tracer_opts o;
    if (!vmi || !out || VMT_OPTS_LOAD(&o, opts) != VMT_OK ||
        o.controller > VMT_TRACER_CONTROLLER_MEMORY)
        return VMT_E_INVALID;
    vmt_tracer *t = vmt_calloc(1, sizeof *t);
    if (!t)
        return VMT_E_NOMEM;
    t->vmi = vmi;
    t->opts = o;
    t->next_id = 1;
    vmt_htab_init(&t->by_id, vmt_htab_hash_ptr, NULL);
    vmt_htab_init(&t->by_va, vmt_htab_hash_u64p, vmt_htab_eq_u64p);
    vmt_status st = tracer_setup(t);
    if (st != VMT_OK) {
        vmt_log(VMT_LOG_ERROR, "tracer: setup failed: %s", vmt_status_str(st));
        vmt_tracer_free(t);
        return st;
    }
    *out = t;
    return VMT_OK;
}

/* Keeps the first error of a sequence of steps that must all run. */
static void keep_first(vmt_status *first, vmt_status st, const char *what)
{
    if (st == VMT_OK)
        return;
    vmt_log(VMT_LOG_ERROR, "tracer: detach: %s: %s", what, vmt_status_str(st));
    if (*first == VMT_OK)
        *first = st;
}

vmt_status vmt_tracer_detach(vmt_tracer *t)
{
    if (!t)
        return VMT_E_INVALID;
    if (!t->attached)
        return VMT_OK;
    vmt_status first = VMT_OK;
    t->owed.len = 0; /* the breakpoints are gone */
    keep_first(&first, vmt_bpm_clear(t->bpm, t->vmi), "clear breakpoints");
    vmt_ptm_unmonitor_all(t->ptm, t->vmi);
    keep_first(&first, vmt_core_switch_view(t->vmi, vmt_core_default_view(t->vmi)),
               "switch to the default view");
    keep_first(&first, vmt_core_destroy_view(t->vmi, t->view), "destroy the view");
    if (t->monitoring_int3)
        keep_first(&first, monitor_off(t, VMT_EVENT_SOFTWARE_BREAKPOINT), "stop breakpoint events");
    if (t->monitoring_mem)
        keep_first(&first, monitor_off(t, VMT_EVENT_MEMORY_ACCESS), "stop memory events");
    t->monitoring_int3 = t->monitoring_mem = false;
    t->attached = false;
    for (size_t i = 0; (i = vmt_htab_next(&t->by_id, i)) < t->by_id.n; i++)
        ((tracer_bp *)t->by_id.slots[i].val)->info.active = false;
    return first;
}

void vmt_tracer_free(vmt_tracer *t)
{
    if (!t)
        return;
    vmt_tracer_detach(t);
    vmt_coherence_free(t->coh);
    vmt_free(t->coh_dropped);
    vmt_ptm_events_free(&t->owed);
    vmt_bpm_free(t->bpm);
    vmt_ptm_free(t->ptm);
    vmt_symtab_free(t->syms);
    for (size_t i = 0; (i = vmt_htab_next(&t->by_va, i)) < t->by_va.n; i++)
        slot_free(t->by_va.slots[i].val);
    vmt_htab_fini(&t->by_va);
    for (size_t i = 0; (i = vmt_htab_next(&t->by_id, i)) < t->by_id.n; i++)
        bp_free(t->by_id.slots[i].val);
    vmt_htab_fini(&t->by_id);
    vmt_free(t->steps);
    vmt_free(t);
}

vmt_view vmt_tracer_view(const vmt_tracer *t) { return t ? t->view : 0; }

vmt_tracer_controller vmt_tracer_controller_used(const vmt_tracer *t)
{
    return t ? t->controller : VMT_TRACER_CONTROLLER_AUTO;
}

bool vmt_tracer_is_stealthy(const vmt_tracer *t)
{
    if (!t)
        return false;
    return t->controller == VMT_TRACER_CONTROLLER_MEMORY || (t->caps & VMT_CAP_EXECUTE_ONLY);
}

/* ---- breakpoints ---- */

/* Makes every allocation indexing one more breakpoint at va needs: room
 * in both indexes, in va's slot (made ahead as *fresh if va has none), and
 * in the list of dropped breakpoints. VMT_E_NOMEM: nothing that anyone can
 * see changed (*fresh is NULL then). */
static vmt_status index_reserve(vmt_tracer *t, vmt_va va, va_slot **fresh)
{
    *fresh = NULL;
    vmt_tracer_bp_id *d = vmt_grow_array(t->coh_dropped, &t->dropped_cap,
                                         vmt_htab_size(&t->by_id) + 1, sizeof *d, 16);
    if (!d)
        return VMT_E_NOMEM;
    t->coh_dropped = d;
    if (vmt_htab_reserve(&t->by_id, 1) != VMT_OK)
        return VMT_E_NOMEM;
    va_slot *s = slot_get(t, va);
    if (!s) {
        s = vmt_calloc(1, sizeof *s);
        if (!s || vmt_htab_reserve(&t->by_va, 1) != VMT_OK) {
            vmt_free(s);
            return VMT_E_NOMEM;
        }
        s->va = va;
        *fresh = s;
    }
    tracer_bp **bps = vmt_grow_array(s->bps, &s->cap, s->n + 1, sizeof *bps, 4);
    if (!bps) {
        if (*fresh)
            slot_free(*fresh);
        *fresh = NULL;
        return VMT_E_NOMEM;
    }
    s->bps = bps;
    return VMT_OK;
}

/* Into the room index_reserve made: cannot fail. */
static void index_bp(vmt_tracer *t, tracer_bp *bp, va_slot *fresh)
{
    va_slot *s = fresh ? fresh : slot_get(t, bp->info.ctx.va);
    if (fresh)
        (void)vmt_htab_put(&t->by_va, &s->va, s);
    s->bps[s->n++] = bp;
    (void)vmt_htab_put(&t->by_id, ID_KEY(bp->info.id), bp);
}

static void unindex_bp(vmt_tracer *t, tracer_bp *bp)
{
    va_slot *s = slot_get(t, bp->info.ctx.va);
    if (s) {
        for (size_t i = 0; i < s->n; i++)
            if (s->bps[i] == bp) {
                memmove(&s->bps[i], &s->bps[i + 1], (s->n - i - 1) * sizeof s->bps[0]);
                s->n--;
                break;
            }
        if (s->n == 0) {
            vmt_htab_del(&t->by_va, &s->va);
            slot_free(s);
        }
    }
    vmt_htab_del(&t->by_id, ID_KEY(bp->info.id));
    bp_free(bp);
}

vmt_status vmt_tracer_add(vmt_tracer *t, vmt_addr_ctx ctx, const vmt_tracer_bp_opts *opts,
                          vmt_tracer_bp_id *id)
{
    vmt_tracer_bp_opts o;
    if (!t || !t->attached || !vmt_va_is_canonical(ctx.va) ||
        VMT_OPTS_LOAD(&o, opts) != VMT_OK)
        return VMT_E_INVALID;
    tracer_bp *bp = vmt_calloc(1, sizeof *bp);
    va_slot *fresh = NULL;
    if (!bp || (o.name && !(bp->name = vmt_strdup(o.name))) ||
        index_reserve(t, ctx.va, &fresh) != VMT_OK) {
        if (bp)
            bp_free(bp);
        return VMT_E_NOMEM;
    }
    bp->info = (vmt_tracer_bp_info){.sz = sizeof(vmt_tracer_bp_info), .id = t->next_id, .ctx = ctx, .global = o.global,
                                    .key = o.key, .tag = o.tag, .name = bp->name};
    vmt_breakpoint claim = bpm_claim(t, bp);
    bool inserted;
    /* Where the ptm already follows ctx (another breakpoint there), arm
     * where it says the page is, not where a fresh walk says: a page-table
     * write whose step has not completed yet would otherwise leave this
     * claim on a frame the ptm's coming events never mention. */
    bool in = false;
    vmt_pa pa = 0;
    vmt_status st = vmt_ptm_lookup(t->ptm, ctx, t->view, NULL, &in, &pa)
                        ? vmt_bpm_insert_with_hint(t->bpm, t->vmi, &claim, in ? &pa : NULL,
                                                   &inserted)
                        : vmt_bpm_insert(t->bpm, t->vmi, &claim, &inserted);
    if (st == VMT_OK) {
        st = vmt_ptm_monitor(t->ptm, t->vmi, ctx, t->view, (uintptr_t)bp->info.id);
        if (st != VMT_OK)
            vmt_bpm_remove(t->bpm, t->vmi, &claim, &inserted);
    }
    if (st != VMT_OK) {
        if (fresh)
            slot_free(fresh);
        bp_free(bp);
        return st;
    }
    index_bp(t, bp, fresh);
    t->next_id++;
    bp->info.active = false;
    bp_refresh(t, bp, in ? pa : 0);
    bp->info.page_ins = 0; /* arming at creation is not a page-in */
    if (id)
        *id = bp->info.id;
    return VMT_OK;
}

vmt_status vmt_tracer_load_symbols(vmt_tracer *t, const char *elf_path)
{
    if (!t || !elf_path)
        return VMT_E_INVALID;
    vmt_symtab *tab;
    vmt_status st = vmt_symtab_load(elf_path, &tab);
    if (st != VMT_OK)
        return st;
    vmt_symtab_free(t->syms);
    t->syms = tab;
    return VMT_OK;
}

vmt_status vmt_tracer_add_symbol(vmt_tracer *t, const char *symbol, vmt_pa root,
                                 const vmt_tracer_bp_opts *opts, vmt_tracer_bp_id *id)
{
    vmt_tracer_bp_opts o;
    if (!t || !symbol || VMT_OPTS_LOAD(&o, opts) != VMT_OK)
        return VMT_E_INVALID;
    const vmt_symbol *s = vmt_symtab_lookup(t->syms, symbol);
    if (!s) {
        vmt_log(VMT_LOG_ERROR, "tracer: unknown symbol %s", symbol);
        return VMT_E_INVALID;
    }
    o.sz = sizeof o; /* it came in as the caller's (or NULL: all zero) */
    if (!o.name)
        o.name = s->name;
    return vmt_tracer_add(t, vmt_ctx(s->addr, root), &o, id);
}

vmt_status vmt_tracer_remove(vmt_tracer *t, vmt_tracer_bp_id id)
{
    tracer_bp *bp = t ? bp_by_id(t, id) : NULL;
    if (!bp)
        return VMT_E_INVALID;
    if (t->attached) {
        vmt_breakpoint claim = bpm_claim(t, bp);
        bool removed;
        vmt_status st = vmt_bpm_remove(t->bpm, t->vmi, &claim, &removed);
        if (st != VMT_OK)
            return st;
        st = vmt_ptm_unmonitor(t->ptm, t->vmi, bp->info.ctx, t->view);
        if (st != VMT_OK) /* the trap is gone; only table protection may linger */
            vmt_log(VMT_LOG_WARN, "tracer: unmonitor %#llx: %s",
                    (unsigned long long)bp->info.ctx.va, vmt_status_str(st));
    }
    unindex_bp(t, bp);
    return VMT_OK;
}

vmt_status vmt_tracer_bp_get(const vmt_tracer *t, vmt_tracer_bp_id id, vmt_tracer_bp_info *out)
{
    const tracer_bp *bp = t ? bp_by_id(t, id) : NULL;
    if (!bp)
        return VMT_E_INVALID;
    return VMT_OUT_STORE(out, &bp->info);
}

void vmt_tracer_foreach_bp(const vmt_tracer *t,
                           void (*fn)(void *user, const vmt_tracer_bp_info *bp), void *user)
{
    if (!t || !fn)
        return;
    for (vmt_tracer_bp_id id = 1; id < t->next_id; id++) {
        const tracer_bp *bp = bp_by_id(t, id);
        if (bp)
            fn(user, &bp->info);
    }
}

size_t vmt_tracer_bp_count(const vmt_tracer *t) { return t ? vmt_htab_size(&t->by_id) : 0; }

/* ---- the event handlers ---- */

/* Runs one instruction in the default view, where the guest's original
 * memory is mapped with full rights, then returns to the session view.
 * With FAST_SINGLESTEP, resp.view names the view the one instruction runs
 * in and the vCPU stays in its own view (set_view stays false: nothing
 * changes after the step). Without it: switch to the default view, step,
 * and switch back at the SINGLESTEP event. */
static void step_in_default_view(vmt_tracer *t, vmt_vcpu vcpu, vmt_response *resp)
{
    resp->view = vmt_core_default_view(t->vmi);
    if (t->caps & VMT_CAP_FAST_SINGLESTEP) {
        resp->action = VMT_ACTION_FAST_SINGLESTEP;
    } else {
        resp->action = VMT_ACTION_SINGLESTEP;
        resp->set_view = true;
        t->steps[vcpu] = STEP_RETURN;
    }
}

/* Steps over a hit without a single-step when the instruction under the
 * trap is simple enough to carry out here (see emulate.h). Its bytes come
 * from the guest's own frame, which never holds our trap. */
static bool step_over_by_emulation(vmt_tracer *t, const vmt_event *ev, vmt_response *resp)
{
    if (t->opts.no_emulation)
        return false;
    vmt_gfn gfn = ev->reason == VMT_EVENT_SOFTWARE_BREAKPOINT
                      ? ev->u.software_breakpoint.gfn
                      : vmt_gfn_from_pa(ev->u.memory_access.pa);
    if (ev->reason == VMT_EVENT_MEMORY_ACCESS && ev->u.memory_access.va != ev->regs.rip)
        return false;
    uint8_t insn[15];
    size_t off = ev->regs.rip & (VMT_PAGE_SIZE - 1);
    size_t len = VMT_PAGE_SIZE - off < sizeof insn ? VMT_PAGE_SIZE - off : sizeof insn;
    if (vmt_core_read(t->vmi, vmt_pa_in_gfn(gfn, ev->regs.rip), insn, len) != VMT_OK)
        return false;
    vmt_regs regs = ev->regs;
    if (!vmt_emulate_simple(t->vmi, ev->view, &regs, insn, len))
        return false;
    resp->action = VMT_ACTION_CONTINUE;
    resp->set_regs = true;
    resp->regs = regs;
    t->stats.emulated++;
    return true;
}

static void step_over_hit(vmt_tracer *t, const vmt_event *ev, vmt_response *resp)
{
    if (!step_over_by_emulation(t, ev, resp))
        step_in_default_view(t, ev->vcpu, resp);
}

/* The (at most max) smallest ids in (after, limit) of the breakpoints at
 * rip that the bpm says the event hits, ascending. */
static size_t hit_batch(const vmt_tracer *t, const vmt_event *ev, vmt_tracer_bp_id after,
                        vmt_tracer_bp_id limit, vmt_tracer_bp_id *hit, size_t max)
{
    const va_slot *s = slot_get(t, ev->regs.rip);
    size_t n = 0;
    for (size_t i = 0; s && i < s->n; i++) {
        vmt_tracer_bp_id id = s->bps[i]->info.id;
        if (id <= after || id >= limit || (n == max && id > hit[n - 1]) ||
            !vmt_bpm_contains_by_event(t->bpm, ev, id))
            continue;
        size_t at = n < max ? n++ : max - 1; /* insertion sort, dropping the largest */
        while (at > 0 && hit[at - 1] > id) {
            hit[at] = hit[at - 1];
            at--;
        }
        hit[at] = id;
    }
    return n;
}

static void report_batch(vmt_tracer *t, const vmt_event *ev, const vmt_tracer_bp_id *hit, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        tracer_bp *bp = bp_by_id(t, hit[i]);
        if (!bp)
            continue; /* removed by an earlier callback of this hit */
        bp->info.hits++;
        t->stats.hits++;
        t->run_hits++;
        if (t->opts.on_hit) {
            vmt_tracer_hit h = {.bp = &bp->info, .vcpu = ev->vcpu, .regs = &ev->regs};
            t->opts.on_hit(t->opts.user, t, &h);
        }
    }
}

/* Counts a hit on every breakpoint armed at the event's rip and calls the
 * application. Returns whether there was at least one. Callbacks may add
 * or remove breakpoints (and so change the slot): the hits are decided in
 * batches of the next HIT_BATCH ids, in id order, without allocating; a
 * breakpoint added by a callback has an id from `limit` on and is not
 * part of this hit. */
static bool report_hits(vmt_tracer *t, const vmt_event *ev)
{
    enum { HIT_BATCH = 16 };
    vmt_tracer_bp_id hit[HIT_BATCH], after = 0, limit = t->next_id;
    size_t total = 0, n;
    do {
        n = hit_batch(t, ev, after, limit, hit, HIT_BATCH);
        if (n && total == 0)
            t->stats.hit_events++;
        if (n)
            after = hit[n - 1];
        total += n;
        report_batch(t, ev, hit, n);
    } while (n == HIT_BATCH);
    return total > 0;
}

static void on_breakpoint(vmt_tracer *t, const vmt_event *ev, vmt_response *resp)
{
    if (ev->view == t->view && report_hits(t, ev)) {
        /* Both ways run the original instruction, even if a callback just
         * removed the breakpoint. */
        step_over_hit(t, ev, resp);
        return;
    }
    bool guest_has = false;
    vmt_status st = vmt_breakpoint_controller_is_breakpoint(t->vmi, ev, &guest_has);
    if (st != VMT_OK)
        vmt_log(VMT_LOG_WARN, "tracer: reading the trap at %#llx: %s",
                (unsigned long long)ev->regs.rip, vmt_status_str(st));
    if (guest_has) {
        t->stats.reinjected++;
        resp->action = VMT_ACTION_REINJECT;
        return;
    }
    /* Not the guest's and no breakpoint matches: either one of our traps
     * that another address space runs into (a per-process breakpoint on a
     * frame several processes share), or a trap removed between the hit
     * and now. Either way the original instruction must run: step it in
     * the default view (resuming at rip could meet the trap again). */
    if (slot_get(t, ev->regs.rip))
        t->stats.unmatched++;
    else
        t->stats.stale++;
    step_over_hit(t, ev, resp);
}

static void on_memory_access(vmt_tracer *t, const vmt_event *ev, vmt_response *resp)
{
    vmt_access a = ev->u.memory_access.access;
    if (ev->view != t->view) {
        /* The tracer restricts nothing outside its view. */
        t->stats.ignored++;
        resp->action = VMT_ACTION_CONTINUE;
        return;
    }
    if (a & VMT_ACCESS_W) {
        vmt_pa entry = ev->u.memory_access.pa & ~(vmt_pa)7;
        if (vmt_ptm_mark_dirty_entry(t->ptm, entry, t->view, ev->vcpu)) {
            /* The table page is writable in the default view; the entry is
             * read back once the instruction has run. */
            t->stats.pt_writes++;
            resp->action = VMT_ACTION_SINGLESTEP;
            resp->set_view = true;
            resp->view = vmt_core_default_view(t->vmi);
            t->steps[ev->vcpu] = STEP_PT_WRITE;
            return;
        }
        /* Another entry of a protected table page, or (int3 controller) a
         * write to a page holding breakpoints. The write goes to the
         * guest's own frame; the shadow copy is rebuilt once it is done
         * (tracer_coherence_flush). */
        vmt_coherence_track_write(t->coh, ev);
        t->stats.other_writes++;
        step_in_default_view(t, ev->vcpu, resp);
        return;
    }
    if (a & VMT_ACCESS_X) {
        if (report_hits(t, ev)) {
            step_over_hit(t, ev, resp);
            return;
        }
        /* Memory controller: a fetch elsewhere on a page holding a breakpoint. */
        t->stats.exec_steps++;
        step_in_default_view(t, ev->vcpu, resp);
        return;
    }
    /* A read of an execute-only page: the default view maps the original. */
    t->stats.stealth_reads++;
    step_in_default_view(t, ev->vcpu, resp);
}

/* After a write to monitored page-table entries: turn what changed into
 * page-in / page-out events, and move the breakpoints accordingly.
 *
 * The ptm reports a change once, so an event the bpm fails to take (a
 * driver failure, out of memory) is owed: kept in t->owed and retried at
 * every turn of the loop while it still holds, and a later event of the
 * same address waits behind it. Room for every event is reserved before
 * any is applied, so keeping one cannot fail. */

/* A page-out makes every claim armed on the frame pending, at any address
 * (the bpm works per frame), while the ptm reports per address and may not
 * have reported the others yet (an event owed, a walk that failed half
 * way): re-read every breakpoint armed there. A scan of all breakpoints,
 * once per applied page-out. */
static void refresh_frame(vmt_tracer *t, vmt_gfn gfn)
{
    for (size_t i = 0; (i = vmt_htab_next(&t->by_id, i)) < t->by_id.n; i++) {
        tracer_bp *bp = t->by_id.slots[i].val;
        if (bp->info.active && vmt_gfn_from_pa(bp->info.pa) == gfn)
            bp_refresh(t, bp, KEEP_PA);
    }
}

/* applied: the bpm took pe (else pe only waits, and other events may have
 * changed the claims of its address). */
static void refresh_bps_at(vmt_tracer *t, const vmt_ptm_event *pe, bool applied)
{
    va_slot *s = pe->view == t->view ? slot_get(t, pe->ctx.va) : NULL;
    for (size_t i = 0; s && i < s->n; i++) {
        tracer_bp *bp = s->bps[i];
        if (vmt_ctx_eq(bp->info.ctx, pe->ctx))
            bp_refresh(t, bp, !applied ? KEEP_PA : pe->kind == VMT_PTM_PAGE_IN ? pe->pa : 0);
    }
    if (applied && pe->kind == VMT_PTM_PAGE_OUT && pe->view == t->view)
        refresh_frame(t, vmt_gfn_from_pa(pe->pa));
}

/* Room in t->owed for n more events. */
static vmt_status owed_reserve(vmt_tracer *t, size_t n)
{
    vmt_ptm_events *o = &t->owed;
    vmt_ptm_event *items = vmt_grow_array(o->items, &o->cap, o->len + n, sizeof *items, 16);
    if (!items)
        return VMT_E_NOMEM;
    o->items = items;
    return VMT_OK;
}

static void owe(vmt_tracer *t, const vmt_ptm_event *pe)
{
    t->owed.items[t->owed.len++] = *pe; /* room reserved by the caller */
}

/* True if t->owed holds an event of pe's address (view, ctx). */
static bool owed_for(const vmt_tracer *t, const vmt_ptm_event *pe)
{
    for (size_t i = 0; i < t->owed.len; i++) {
        const vmt_ptm_event *o = &t->owed.items[i];
        if (o->view == pe->view && vmt_ctx_eq(o->ctx, pe->ctx))
            return true;
    }
    return false;
}

/* Applies one ptm event to the bpm; a failure is owed, and so is an event
 * of an address with an owed one (it must come after it). */
static void apply_ptm_event(vmt_tracer *t, const vmt_ptm_event *pe)
{
    if (owed_for(t, pe)) {
        owe(t, pe);
        refresh_bps_at(t, pe, false);
        return;
    }
    bool updated;
    vmt_status st = vmt_bpm_handle_ptm_event(t->bpm, t->vmi, pe, &updated);
    if (st != VMT_OK) {
        vmt_log(VMT_LOG_ERROR, "tracer: %s at %#llx: %s",
                pe->kind == VMT_PTM_PAGE_IN ? "page-in" : "page-out",
                (unsigned long long)pe->ctx.va, vmt_status_str(st));
        if (t->loop_error == VMT_OK)
            t->loop_error = st;
        /* A frame outside guest RAM (a hostile page table) or one the
         * controller refuses stays so: only other failures are retried. */
        if (st != VMT_E_OUT_OF_BOUNDS && st != VMT_E_INVALID)
            owe(t, pe);
    }
    refresh_bps_at(t, pe, st == VMT_OK);
}

/* Whether an owed event still says something the ptm holds true now: a
 * page-in at the translation the ptm has, a page-out of a translation the
 * ptm no longer has. A later event of the address has superseded it
 * otherwise. */
static bool owed_still_true(const vmt_tracer *t, const vmt_ptm_event *pe)
{
    bool in = false;
    vmt_pa pa = 0;
    bool known = vmt_ptm_lookup(t->ptm, pe->ctx, pe->view, NULL, &in, &pa);
    bool there = known && in && pa == pe->pa;
    return pe->kind == VMT_PTM_PAGE_IN ? there : !there;
}

/* The bpm moves every claim of a frame at once, so an event applied for
 * one address can change breakpoints at another whose own event is owed:
 * re-read those from the bpm. */
static void refresh_owed(vmt_tracer *t)
{
    for (size_t i = 0; i < t->owed.len; i++)
        refresh_bps_at(t, &t->owed.items[i], false);
}

/* Retries the owed ptm events, in order; drops those that came true or
 * were superseded, keeps those that fail again, and the later ones of
 * their address. Allocates nothing. */
static void retry_owed_ptm(vmt_tracer *t)
{
    size_t keep = 0;
    for (size_t i = 0; i < t->owed.len; i++) {
        vmt_ptm_event pe = t->owed.items[i];
        bool waits = false, updated;
        for (size_t k = 0; k < keep && !waits; k++) {
            const vmt_ptm_event *o = &t->owed.items[k];
            waits = o->view == pe.view && vmt_ctx_eq(o->ctx, pe.ctx);
        }
        if (!waits && !owed_still_true(t, &pe))
            continue;
        if (waits || vmt_bpm_handle_ptm_event(t->bpm, t->vmi, &pe, &updated) != VMT_OK) {
            t->owed.items[keep++] = pe;
            continue;
        }
        refresh_bps_at(t, &pe, true);
    }
    t->owed.len = keep;
    refresh_owed(t);
}

static void process_pt_write(vmt_tracer *t, vmt_vcpu vcpu)
{
    vmt_ptm_events evs = {0};
    vmt_status st = vmt_ptm_process_dirty_entries(t->ptm, t->vmi, vcpu, &evs);
    if (st != VMT_OK) {
        vmt_log(VMT_LOG_ERROR, "tracer: processing page-table writes: %s", vmt_status_str(st));
        if (t->loop_error == VMT_OK)
            t->loop_error = st;
    }
    retry_owed_ptm(t);
    for (size_t i = 0; i < evs.len; i++) {
        if (evs.items[i].kind == VMT_PTM_PAGE_IN)
            t->stats.page_ins++;
        else
            t->stats.page_outs++;
    }
    if (evs.len && owed_reserve(t, evs.len) != VMT_OK) {
        if (t->loop_error == VMT_OK)
            t->loop_error = VMT_E_NOMEM;
        if (t->owed.len == 0) { /* evs become the owed events: no allocation */
            vmt_ptm_events_free(&t->owed);
            t->owed = evs;
            retry_owed_ptm(t);
            return;
        }
        vmt_log(VMT_LOG_ERROR, "tracer: %zu page-table events lost: out of memory", evs.len);
        vmt_ptm_events_free(&evs);
        return;
    }
    for (size_t i = 0; i < evs.len; i++)
        apply_ptm_event(t, &evs.items[i]);
    vmt_ptm_events_free(&evs);
    refresh_owed(t);
}

static void on_singlestep(vmt_tracer *t, const vmt_event *ev, vmt_response *resp)
{
    step_kind k = t->steps[ev->vcpu];
    t->steps[ev->vcpu] = STEP_NONE;
    tracer_coherence_flush(t); /* a write stepped in the default view is done */
    resp->action = VMT_ACTION_CONTINUE;
    if (k == STEP_NONE) {
        t->stats.ignored++;
        return;
    }
    if (k == STEP_PT_WRITE)
        process_pt_write(t, ev->vcpu);
    resp->set_view = true;
    resp->view = t->view;
}

static vmt_status on_event(void *user, const vmt_event *ev, vmt_response *resp)
{
    vmt_tracer *t = user;
    memset(resp, 0, sizeof *resp);
    resp->action = VMT_ACTION_CONTINUE;
    t->stats.events++;
    if (ev->vcpu >= t->nvcpus) {
        vmt_log(VMT_LOG_WARN, "tracer: event from unknown vCPU %u", ev->vcpu);
        t->stats.ignored++;
        return VMT_OK;
    }
    vmt_event e = *ev;
    if (!e.has_view) {
        /* The vCPU is in the session view unless a step of ours is running. */
        e.has_view = true;
        e.view = t->steps[e.vcpu] ? vmt_core_default_view(t->vmi) : t->view;
    }
    switch (e.reason) {
    case VMT_EVENT_SOFTWARE_BREAKPOINT: on_breakpoint(t, &e, resp); break;
    case VMT_EVENT_MEMORY_ACCESS: on_memory_access(t, &e, resp); break;
    case VMT_EVENT_SINGLESTEP: on_singlestep(t, &e, resp); break;
    default: t->stats.ignored++; break;
    }
    vmt_log(VMT_LOG_TRACE,
            "tracer: event %d vcpu %u view %u rip %#llx cr3 %#llx pa %#llx access %d -> "
            "action %d view %d",
            (int)e.reason, e.vcpu, e.view, (unsigned long long)e.regs.rip,
            (unsigned long long)e.regs.cr3,
            (unsigned long long)(e.reason == VMT_EVENT_MEMORY_ACCESS ? e.u.memory_access.pa : 0),
            e.reason == VMT_EVENT_MEMORY_ACCESS ? (int)e.u.memory_access.access : 0,
            (int)resp->action, resp->set_view ? (int)resp->view : -1);
    return VMT_OK;
}

/* ---- the loop ---- */

static int64_t now_ms(void) { return g_get_monotonic_time() / 1000; }

static bool stepping(const vmt_tracer *t)
{
    for (uint16_t i = 0; i < t->nvcpus; i++)
        if (t->steps[i] != STEP_NONE)
            return true;
    return false;
}

static vmt_tracer_stop_reason stop_reason(const vmt_tracer *t, const vmt_tracer_run_opts *o,
                                          int64_t start)
{
    if (atomic_load(&t->stop_requested))
        return VMT_TRACER_STOP_REQUESTED;
    if (o->max_hits && t->run_hits >= o->max_hits)
        return VMT_TRACER_STOP_HITS;
    if (o->timeout_ms && now_ms() - start >= o->timeout_ms)
        return VMT_TRACER_STOP_TIMEOUT;
    return VMT_TRACER_STOP_NONE;
}

/* Polls the driver may time out while a stop is due before the tracer
 * gives up on a step that never completes. */
#define MAX_IDLE_POLLS_WHILE_STEPPING 100

vmt_status vmt_tracer_run(vmt_tracer *t, const vmt_tracer_run_opts *opts,
                          vmt_tracer_stop_reason *why)
{
    vmt_tracer_run_opts o;
    if (!t || !t->attached || VMT_OPTS_LOAD(&o, opts) != VMT_OK)
        return VMT_E_INVALID;
    if (o.poll_ms <= 0)
        o.poll_ms = 100;
    int64_t start = now_ms();
    t->run_hits = 0;
    t->loop_error = VMT_OK;
    if (t->owed.len) /* events the bpm failed to take last time */
        retry_owed_ptm(t);
    unsigned idle = 0;
    vmt_tracer_stop_reason reason = VMT_TRACER_STOP_NONE;
    for (;;) {
        vmt_tracer_stop_reason r = stop_reason(t, &o, start);
        if (r != VMT_TRACER_STOP_NONE && !stepping(t)) {
            reason = r;
            break;
        }
        if (r != VMT_TRACER_STOP_NONE && idle > MAX_IDLE_POLLS_WHILE_STEPPING) {
            vmt_log(VMT_LOG_ERROR, "tracer: a single-step never completed");
            return VMT_E_TIMEOUT;
        }
        int wait = o.poll_ms;
        if (o.timeout_ms) {
            int64_t left = o.timeout_ms - (now_ms() - start);
            wait = left < 1 ? 1 : (left < wait ? (int)left : wait);
        }
        if (t->owed.len)
            retry_owed_ptm(t);
        vmt_status st = vmt_core_wait_for_event(t->vmi, wait, on_event, t);
        if (t->caps & VMT_CAP_FAST_SINGLESTEP) /* the driver completed the write already */
            tracer_coherence_flush(t);
        if (st == VMT_E_TIMEOUT) {
            idle += r != VMT_TRACER_STOP_NONE;
            continue;
        }
        idle = 0;
        if (st == VMT_E_GUEST_EXITED) {
            memset(t->steps, 0, t->nvcpus * sizeof *t->steps);
            reason = VMT_TRACER_STOP_GUEST_EXITED;
            break;
        }
        if (st == VMT_OK && t->loop_error != VMT_OK)
            st = t->loop_error;
        if (st != VMT_OK) {
            vmt_log(VMT_LOG_ERROR, "tracer: event loop: %s", vmt_status_str(st));
            return st;
        }
    }
    atomic_store(&t->stop_requested, 0);
    if (why)
        *why = reason;
    return VMT_OK;
}

void vmt_tracer_stop(vmt_tracer *t)
{
    if (t)
        atomic_store(&t->stop_requested, 1);
}

vmt_status vmt_tracer_stats_get(const vmt_tracer *t, vmt_tracer_stats *out)
{
    if (!t)
        return VMT_E_INVALID;
    vmt_tracer_stats s = t->stats;
    s.sz = sizeof s;
    s.bpm.sz = sizeof s.bpm;
    vmt_bpm_stats_get(t->bpm, &s.bpm);
    s.ptm_tables = vmt_ptm_monitored_tables(t->ptm);
    s.ptm_entries = vmt_ptm_monitored_entries(t->ptm);
    return VMT_OUT_STORE(out, &s);
}

/* ---- internal accessors (tracer_internal.h) ---- */

const vmt_bpm *vmt_tracer_bpm(const vmt_tracer *t) { return t ? t->bpm : NULL; }
const vmt_ptm *vmt_tracer_ptm(const vmt_tracer *t) { return t ? t->ptm : NULL; }
