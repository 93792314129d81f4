// SPDX-License-Identifier: MIT
/* libFuzzer target: the page-table monitor (src/ptm) over hostile page
 * tables on the mock driver. The input is a sequence of operations:
 * monitor / unmonitor / by force / a view / all, guest writes to table
 * entries (tables, 4 KiB / 2 MiB / 1 GiB leaves, loops, tables and frames
 * outside guest RAM, garbage), writes rewritten before they are processed
 * and seen by both vCPUs, processing on either vCPU, and driver failures
 * at a chosen call of the next operation.
 *
 * Invariants, after every operation: vmt_ptm_check; the events reported so
 * far, applied in order, give exactly what vmt_ptm_lookup says of every
 * monitored address (even after a failed processing call, which reports
 * what it applied); every event names a monitored address and its tag; a
 * failed monitor changes nothing. Whenever every write has been processed
 * without failure ("in sync"): each monitored address is paged in exactly
 * when an independent walk (tests/unit/model_walk.c) finds a present leaf,
 * at that translation; each table page on those walks is read-only in the
 * view; mark_dirty_entry answers true exactly for entries on those walks.
 * A walk that runs into a table outside RAM fails the processing call; the
 * guest then repairs the entry (clears it), as it would after a fault. At
 * the end, after unmonitor_all and a processing call, every frame of every
 * view has its access back (RWX) and nothing is owed. */
#include <stdbool.h>

#include "fuzz_util.h"
#include "model_walk.h"
#include "ptm/ptm_internal.h"
#include "vmitap/core.h"
#include "vmitap/mock.h"

#define RAM_FRAMES 0x400u /* 4 MiB */
#define NT 8
#define NROOT 2
#define NVA 6
#define NVIEW 2

static const unsigned idx_choice[4] = {0, 1, 2, 511};

typedef struct maddr {
    unsigned refs;
    uintptr_t tag;
    bool in; /* from the events */
    vmt_pa pa;
} maddr;

typedef struct world {
    vmt_core *vmi;
    vmt_mock *mock;
    vmt_ptm *ptm;
    vmt_pa pool[NT];
    vmt_va va[NVA];
    maddr m[NVIEW][NROOT][NVA];
    bool in_sync;
    vmt_pa written[16]; /* entries written since the last sync */
    unsigned nwritten;
    unsigned fault; /* armed for the next operation */
    vmt_ptm_events ev;
} world;

static vmt_addr_ctx ctx_of(const world *w, unsigned r, unsigned v)
{
    return vmt_ctx(w->va[v], w->pool[r]);
}

static uint64_t entry_value(world *w, fz *f)
{
    uint64_t flags = fz_u8(f) & 0x6e;
    switch (fz_pick(f, 8)) {
    case 0:
        return 0;
    case 1:
    case 2:
        return w->pool[fz_pick(f, NT)] | VMT_PTE_P | flags;
    case 3:
        return ((vmt_pa)(1 + fz_pick(f, 32)) << 12) | VMT_PTE_P | flags;
    case 4:
        return ((vmt_pa)fz_pick(f, 4) << 21) | ((vmt_pa)(fz_u8(f) & 1) << 12) | VMT_PTE_P |
               VMT_PTE_PS | flags;
    case 5:
        return ((vmt_pa)fz_pick(f, 2) << 30) | VMT_PTE_P | VMT_PTE_PS | flags;
    case 6:
        return (((vmt_pa)RAM_FRAMES + fz_u8(f)) << 12) | VMT_PTE_P | flags;
    default:
        return fz_u64(f);
    }
}

static void arm(world *w)
{
    if (w->fault)
        vmt_mock_fail_nth_any(w->mock, w->fault, VMT_E_DRIVER);
}

/* Cancels the armed fault; true if it fired. */
static bool fired(world *w, uint64_t before)
{
    if (!w->fault)
        return false;
    w->fault = 0;
    vmt_mock_fail_nth_any(w->mock, 0, VMT_OK);
    return vmt_mock_injected(w->mock) != before;
}

/* The events reported, applied to the model. */
static void apply_events(world *w)
{
    for (size_t i = 0; i < w->ev.len; i++) {
        const vmt_ptm_event *e = &w->ev.items[i];
        int r = -1, v = -1;
        for (int k = 0; k < NROOT; k++)
            if (w->pool[k] == e->ctx.root)
                r = k;
        for (int k = 0; k < NVA; k++)
            if (w->va[k] == e->ctx.va)
                v = k;
        FUZZ_CHECK(r >= 0 && v >= 0 && e->view < NVIEW, "event for an address never monitored");
        maddr *m = &w->m[e->view][r][v];
        FUZZ_CHECK(m->refs > 0, "event for an address not monitored");
        FUZZ_CHECK(e->tag == m->tag, "event with another tag");
        if (e->kind == VMT_PTM_PAGE_OUT) {
            FUZZ_CHECK(m->in && e->pa == m->pa, "page-out of an address not in, or elsewhere");
            m->in = false;
        } else {
            FUZZ_CHECK(e->kind == VMT_PTM_PAGE_IN, "event kind %d", e->kind);
            FUZZ_CHECK(!m->in || e->pa == m->pa, "page-in over another translation");
            m->in = true;
            m->pa = e->pa;
        }
    }
    w->ev.len = 0;
}

static void check(world *w)
{
    FUZZ_CHECK(vmt_ptm_check(w->ptm) == VMT_OK, "vmt_ptm_check");
    size_t paged_in = 0;
    for (unsigned view = 0; view < NVIEW; view++) {
        for (unsigned r = 0; r < NROOT; r++) {
            for (unsigned v = 0; v < NVA; v++) {
                maddr *m = &w->m[view][r][v];
                uintptr_t tag;
                bool in = false;
                vmt_pa pa = 0;
                bool known = vmt_ptm_lookup(w->ptm, ctx_of(w, r, v), view, &tag, &in, &pa);
                FUZZ_CHECK(known == (m->refs > 0), "monitored %d, model refs %u", known, m->refs);
                if (!known)
                    continue;
                FUZZ_CHECK(tag == m->tag, "tag");
                FUZZ_CHECK(in == m->in && (!in || pa == m->pa),
                           "view %u root %u va %llx: monitor says %d/%llx, events %d/%llx", view, r,
                           (unsigned long long)w->va[v], in, (unsigned long long)pa, m->in,
                           (unsigned long long)m->pa);
                paged_in += in;
                if (!w->in_sync)
                    continue;
                model_walk mw;
                FUZZ_CHECK(model_walk_va(w->mock, ctx_of(w, r, v), &mw) == VMT_OK,
                           "in sync, yet the walk fails");
                FUZZ_CHECK(in == mw.present && (!in || pa == mw.pa),
                           "va %llx: monitor %d/%llx, walk %d/%llx", (unsigned long long)w->va[v],
                           in, (unsigned long long)pa, mw.present, (unsigned long long)mw.pa);
                for (unsigned i = 0; i < mw.levels; i++) {
                    vmt_access a;
                    vmt_core_get_access(w->vmi, mw.entry_pa[i] >> 12, view, &a);
                    FUZZ_CHECK(a == VMT_ACCESS_R, "table page %llx not write-protected",
                               (unsigned long long)mw.entry_pa[i]);
                }
            }
        }
    }
    FUZZ_CHECK(vmt_ptm_paged_in_entries(w->ptm) == paged_in, "paged-in counter");
}

/* Whether epa is on the walk of a monitored address of view (in sync). */
static bool on_a_walk(world *w, unsigned view, vmt_pa epa)
{
    for (unsigned r = 0; r < NROOT; r++)
        for (unsigned v = 0; v < NVA; v++) {
            model_walk mw;
            if (w->m[view][r][v].refs == 0 ||
                model_walk_va(w->mock, ctx_of(w, r, v), &mw) != VMT_OK)
                continue;
            for (unsigned i = 0; i < mw.levels; i++)
                if (mw.entry_pa[i] == epa)
                    return true;
        }
    return false;
}

static void guest_write(world *w, vmt_pa epa, uint64_t e, vmt_vcpu vcpu, unsigned half)
{
    bool sync = w->in_sync;
    bool expect[NVIEW];
    for (unsigned view = 0; view < NVIEW; view++)
        expect[view] = sync && on_a_walk(w, view, epa);
    vmt_mock_poke(w->mock, epa, &e, sizeof e);
    for (unsigned view = 0; view < NVIEW; view++) {
        bool d = vmt_ptm_mark_dirty_entry(w->ptm, epa + 4 * half, view, vcpu);
        if (sync)
            FUZZ_CHECK(d == expect[view], "mark_dirty_entry(%llx, view %u): %d, walks say %d",
                       (unsigned long long)epa, view, d, expect[view]);
    }
    w->in_sync = false;
    if (w->nwritten < 16)
        w->written[w->nwritten++] = epa;
}

/* Processing on vcpu; a walk into a table outside RAM is repaired by the
 * guest (the entries written since the last sync are cleared). */
static void process(world *w, vmt_vcpu vcpu, bool final)
{
    uint64_t inj = vmt_mock_injected(w->mock);
    arm(w);
    vmt_status st = vmt_ptm_process_dirty_entries(w->ptm, w->vmi, vcpu, &w->ev);
    bool f = fired(w, inj);
    apply_events(w); /* even after a failure: what it applied, it reported */
    check(w);
    if (st == VMT_OK || final)
        return;
    FUZZ_CHECK(st == VMT_E_OUT_OF_BOUNDS || (f && st == VMT_E_DRIVER), "processing: status %d",
               st);
    if (st == VMT_E_OUT_OF_BOUNDS) {
        for (unsigned i = 0; i < w->nwritten; i++)
            for (vmt_vcpu c = 0; c < 2; c++) {
                uint64_t zero = 0;
                vmt_mock_poke(w->mock, w->written[i], &zero, sizeof zero);
                for (unsigned view = 0; view < NVIEW; view++)
                    vmt_ptm_mark_dirty_entry(w->ptm, w->written[i], view, c);
            }
    }
}

/* Both vCPUs processed with no fault: in sync unless a walk still fails. */
static void sync_all(world *w)
{
    w->fault = 0;
    for (int round = 0; round < 2; round++) {
        vmt_status s0 = vmt_ptm_process_dirty_entries(w->ptm, w->vmi, 0, &w->ev);
        apply_events(w);
        vmt_status s1 = vmt_ptm_process_dirty_entries(w->ptm, w->vmi, 1, &w->ev);
        apply_events(w);
        if (s0 == VMT_OK && s1 == VMT_OK) {
            w->in_sync = true;
            w->nwritten = 0;
            check(w);
            return;
        }
        FUZZ_CHECK(s0 == VMT_OK || s0 == VMT_E_OUT_OF_BOUNDS, "sync: status %d", s0);
        FUZZ_CHECK(s1 == VMT_OK || s1 == VMT_E_OUT_OF_BOUNDS, "sync: status %d", s1);
        process(w, 0, false); /* repairs */
    }
}

static void op_monitor(world *w, fz *f)
{
    unsigned view = fz_pick(f, NVIEW), r = fz_pick(f, NROOT), v = fz_pick(f, NVA);
    maddr *m = &w->m[view][r][v];
    uintptr_t tag = fz_u8(f) + 1;
    uint64_t inj = vmt_mock_injected(w->mock);
    arm(w);
    vmt_status st = vmt_ptm_monitor(w->ptm, w->vmi, ctx_of(w, r, v), view, tag);
    bool f_ = fired(w, inj);
    if (st != VMT_OK) {
        FUZZ_CHECK(m->refs == 0, "monitoring again failed");
        FUZZ_CHECK(st == VMT_E_OUT_OF_BOUNDS || (f_ && st == VMT_E_DRIVER), "monitor: %d", st);
        check(w); /* nothing changed */
        return;
    }
    if (m->refs++ == 0) {
        m->tag = tag;
        bool in = false;
        vmt_pa pa = 0;
        vmt_ptm_lookup(w->ptm, ctx_of(w, r, v), view, NULL, &in, &pa);
        /* what it saw now is the guest's tables, synced or not */
        model_walk mw;
        FUZZ_CHECK(model_walk_va(w->mock, ctx_of(w, r, v), &mw) == VMT_OK, "walk fails");
        FUZZ_CHECK(in == mw.present && (!in || pa == mw.pa), "monitor: walk differs");
        m->in = in;
        m->pa = pa;
    }
    check(w);
}

static void op_unmonitor(world *w, fz *f, bool force)
{
    unsigned view = fz_pick(f, NVIEW), r = fz_pick(f, NROOT), v = fz_pick(f, NVA);
    maddr *m = &w->m[view][r][v];
    uint64_t inj = vmt_mock_injected(w->mock);
    arm(w);
    vmt_status st = force ? vmt_ptm_unmonitor_by_force(w->ptm, w->vmi, ctx_of(w, r, v), view)
                          : vmt_ptm_unmonitor(w->ptm, w->vmi, ctx_of(w, r, v), view);
    bool f_ = fired(w, inj);
    if (m->refs > 0)
        m->refs = force ? 0 : m->refs - 1;
    if (m->refs == 0)
        m->in = false;
    FUZZ_CHECK(st == VMT_OK || (f_ && st == VMT_E_DRIVER), "unmonitor: %d", st);
    if (st != VMT_OK)
        FUZZ_CHECK(vmt_ptm_pending_restores(w->ptm) > 0, "a failed restore not owed");
    check(w);
}

static void forget(world *w, unsigned view)
{
    memset(w->m[view], 0, sizeof w->m[view]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = fz_new(data, size);
    static world w_;
    world *w = &w_;
    memset(w, 0, sizeof *w);
    vmt_mock_opts o = {.sz = sizeof o, .max_gfn = RAM_FRAMES, .vcpus = 2};
    if (vmt_mock_core_new(&o, &w->vmi, &w->mock) != VMT_OK || vmt_ptm_new(&w->ptm) != VMT_OK)
        abort();
    vmt_view v1;
    if (vmt_core_create_view(w->vmi, VMT_ACCESS_RWX, &v1) != VMT_OK)
        abort();
    for (int i = 0; i < NT; i++)
        if (vmt_mock_alloc_table(w->mock, &w->pool[i]) != VMT_OK)
            abort();
    for (int i = 0; i < NVA; i++) {
        vmt_va va = 0;
        for (int level = 4; level >= 1; level--)
            va |= (vmt_va)idx_choice[fz_pick(&f, 4)] << (12 + 9 * (level - 1));
        if (va & (1ull << 47))
            va |= 0xffff000000000000ull;
        w->va[i] = va | ((fz_u8(&f) % 64u) * 64u + (unsigned)i * 8u); /* distinct */
    }
    w->in_sync = true;
    while (!fz_done(&f)) {
        switch (fz_pick(&f, 12)) {
        case 0:
        case 1:
            op_monitor(w, &f);
            break;
        case 2:
            op_unmonitor(w, &f, false);
            break;
        case 3:
            op_unmonitor(w, &f, true);
            break;
        case 4: {
            uint64_t inj = vmt_mock_injected(w->mock);
            arm(w);
            if (fz_pick(&f, 2)) {
                unsigned view = fz_pick(&f, NVIEW);
                vmt_ptm_unmonitor_view(w->ptm, w->vmi, view);
                forget(w, view);
            } else {
                vmt_ptm_unmonitor_all(w->ptm, w->vmi);
                for (unsigned view = 0; view < NVIEW; view++)
                    forget(w, view);
            }
            fired(w, inj);
            check(w);
            break;
        }
        case 5:
        case 6:
        case 7: { /* a guest write, processed by the writer */
            vmt_pa epa = w->pool[fz_pick(&f, NT)] + 8 * (vmt_pa)idx_choice[fz_pick(&f, 4)];
            vmt_vcpu vcpu = fz_pick(&f, 2);
            guest_write(w, epa, entry_value(w, &f), vcpu, fz_pick(&f, 2));
            if (fz_pick(&f, 4) == 0) /* a second write before processing */
                guest_write(w, epa, entry_value(w, &f), (vmt_vcpu)(1 - vcpu), 0);
            process(w, vcpu, false);
            break;
        }
        case 8:
            process(w, fz_pick(&f, 2), false);
            break;
        case 9:
            sync_all(w);
            break;
        case 10:
            w->fault = 1 + fz_pick(&f, 16);
            break;
        default: { /* the tables change under a monitored walk, processed later */
            vmt_pa epa = w->pool[fz_pick(&f, NT)] + 8 * (vmt_pa)idx_choice[fz_pick(&f, 4)];
            guest_write(w, epa, entry_value(w, &f), fz_pick(&f, 2), 0);
            break;
        }
        }
    }
    /* The end: everything given back. */
    w->fault = 0;
    vmt_ptm_unmonitor_all(w->ptm, w->vmi);
    for (unsigned view = 0; view < NVIEW; view++)
        forget(w, view);
    for (vmt_vcpu c = 0; c < 2; c++) {
        FUZZ_CHECK(vmt_ptm_process_dirty_entries(w->ptm, w->vmi, c, &w->ev) == VMT_OK,
                   "processing after unmonitor_all");
        FUZZ_CHECK(w->ev.len == 0, "events after unmonitor_all");
    }
    FUZZ_CHECK(vmt_ptm_check(w->ptm) == VMT_OK, "vmt_ptm_check at the end");
    FUZZ_CHECK(vmt_ptm_pending_restores(w->ptm) == 0 && vmt_ptm_monitored_tables(w->ptm) == 0 &&
                   vmt_ptm_monitored_entries(w->ptm) == 0 && vmt_ptm_paged_in_entries(w->ptm) == 0,
               "counters at the end");
    for (vmt_gfn g = 0; g < RAM_FRAMES; g++)
        for (unsigned view = 0; view < NVIEW; view++) {
            vmt_access a;
            vmt_core_get_access(w->vmi, g, view, &a);
            FUZZ_CHECK(a == VMT_ACCESS_RWX, "frame %llx view %u left at access %d",
                       (unsigned long long)g, view, a);
        }
    vmt_ptm_events_free(&w->ev);
    vmt_ptm_free(w->ptm);
    vmt_core_free(w->vmi);
    return 0;
}
