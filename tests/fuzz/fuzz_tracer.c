// SPDX-License-Identifier: MIT
/* libFuzzer target: the tracer's event handling (src/tracer/tracer.c, with
 * the bpm, ptm, coherence and emulator behind it) on the mock driver. The
 * input picks the driver's capabilities and the controller, then runs a
 * sequence of operations: breakpoints added (mapped, unmapped, global,
 * non-canonical) and removed, random events queued and handled (int3 at
 * any address with a true or lying frame, memory accesses of any kind at
 * code, page-table, stack or arbitrary frames, single-steps nobody asked
 * for, events from unknown vCPUs and views or without a view), guest
 * writes to code and to page-table entries (the entry rewritten, then the
 * trapped write reported), and driver failures at a chosen call of the
 * next run.
 *
 * Invariants after every run: vmt_bpm_check and vmt_ptm_check on the
 * session's manager and monitor; the guest's own code frames hold exactly
 * what the guest wrote (the tracer never writes a trap there); every
 * active breakpoint of the int3 controller reads 0xCC in the session view
 * at its frame, and its frame is not executable in the session view with
 * the memory controller. At the end vmt_tracer_detach leaves the guest as
 * it was: the default view current on every vCPU, the session view gone,
 * no shadow frame left, every frame's access in view 0 as before (RWX),
 * the events off, the code frames as the guest wrote them.
 *
 * FUZZ_TRACE=1 replays an input with the library's log and the
 * breakpoints after every run on stderr. */
#include <stdarg.h>
#include <stdbool.h>

#include "bpm/bpm_internal.h"
#include "fuzz_util.h"
#include "model_walk.h"
#include "ptm/ptm_internal.h"
#include "tracer/tracer_internal.h"
#include "vmitap/log.h"
#include "vmitap/mock.h"
#include "vmitap/tracer.h"

#define RAM_FRAMES 0x400u
#define CODE_VA 0x400000ull
#define CODE_PA 0x10000ull /* two pages */
#define MOVED_PA 0x20000ull
#define LATE_VA 0x402000ull
#define STACK_VA 0x7ff000ull
#define STACK_PA 0x30000ull
#define NCODE 3 /* frames the guest's code can live in: CODE_PA, +0x1000, MOVED_PA */
#define MAXBP 32

static const vmt_pa code_frames[NCODE] = {CODE_PA, CODE_PA + 0x1000, MOVED_PA};

typedef struct world {
    vmt_core *vmi;
    vmt_mock *mock;
    vmt_tracer *t;
    vmt_pa root;
    uint8_t own[NCODE][4096];
    vmt_tracer_bp_id ids[MAXBP];
    unsigned nids;
    bool remove_on_hit;
    uint64_t hits;
} world;

static world W;

static void on_hit(void *user, vmt_tracer *t, const vmt_tracer_hit *hit)
{
    world *w = user;
    w->hits++;
    FUZZ_CHECK(hit->bp && hit->regs && hit->regs->rip == hit->bp->ctx.va,
               "hit at %llx for a breakpoint at %llx", (unsigned long long)hit->regs->rip,
               (unsigned long long)hit->bp->ctx.va);
    if (w->remove_on_hit) {
        vmt_status st = vmt_tracer_remove(t, hit->bp->id);
        FUZZ_CHECK(st == VMT_OK || st == VMT_E_DRIVER, "remove from the callback: %s",
                   vmt_status_str(st)); /* DRIVER: an injected failure */
    }
}

static vmt_va pick_va(fz *f)
{
    static const vmt_va vas[] = {CODE_VA + 0x10, CODE_VA + 0x80,  CODE_VA + 0xfff,
                                 CODE_VA + 0x1010, LATE_VA + 0x10, CODE_VA + 0x100,
                                 STACK_VA + 0x8,  0x123456789000ull};
    if (fz_pick(f, 16) == 0)
        return fz_u64(f);
    return vas[fz_pick(f, sizeof vas / sizeof vas[0])];
}

static vmt_pa pick_pa(world *w, fz *f)
{
    vmt_pa pte = 0;
    switch (fz_pick(f, 6)) {
    case 0:
        return code_frames[fz_pick(f, NCODE)] + fz_u8(f) * 16u;
    case 1: /* an entry on the code's walk */
        vmt_mock_entry_pa(w->mock, w->root, CODE_VA, 1 + fz_pick(f, 4), &pte);
        return pte;
    case 2:
        return STACK_PA + fz_u8(f) * 8u;
    case 3:
        return ((vmt_pa)fz_pick(f, RAM_FRAMES + 16) << 12) + fz_u8(f);
    default:
        return code_frames[0] + 0x10;
    }
}

static void push_event(world *w, fz *f)
{
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    uint8_t how = fz_u8(f);
    ev.vcpu = (how & 7) == 7 ? 5 : (how & 1); /* sometimes a vCPU that does not exist */
    ev.has_view = (how & 0x18) != 0x18;
    switch ((how >> 5) & 3) {
    case 0: ev.view = 0; break;
    case 3: ev.view = 9; break; /* no such view */
    default: ev.view = vmt_tracer_view(w->t); break;
    }
    ev.regs.rip = pick_va(f);
    ev.regs.cr3 = fz_pick(f, 8) == 0 ? fz_u64(f) : w->root;
    ev.regs.cs = fz_pick(f, 2) ? 0x33 : 0x10;
    ev.regs.rsp = STACK_VA + 0x800;
    ev.regs.efer = 1ull << 10;
    switch (fz_pick(f, 4)) {
    case 0:
    case 1: {
        ev.reason = VMT_EVENT_SOFTWARE_BREAKPOINT;
        vmt_pa pa = 0;
        if (fz_pick(f, 4) == 0 || vmt_core_translate(w->vmi, vmt_ctx(ev.regs.rip, w->root), &pa))
            pa = pick_pa(w, f); /* a frame that lies */
        ev.u.software_breakpoint.gfn = pa >> 12;
        ev.u.software_breakpoint.insn_len = fz_pick(f, 8) ? 1 : fz_u8(f);
        break;
    }
    case 2: {
        static const vmt_access acc[] = {VMT_ACCESS_R, VMT_ACCESS_W, VMT_ACCESS_X,
                                         VMT_ACCESS_RW, VMT_ACCESS_RWX};
        ev.reason = VMT_EVENT_MEMORY_ACCESS;
        ev.u.memory_access.pa = pick_pa(w, f);
        ev.u.memory_access.va = pick_va(f);
        ev.u.memory_access.access = acc[fz_pick(f, 5)];
        break;
    }
    default:
        ev.reason = fz_pick(f, 8) ? VMT_EVENT_SINGLESTEP : (vmt_event_reason)(4 + fz_pick(f, 4));
        break;
    }
    vmt_mock_push_event(w->mock, &ev);
}

/* The guest writes its code (then the write traps, if it does). */
static void code_write(world *w, fz *f)
{
    unsigned fr = fz_pick(f, NCODE);
    unsigned off = fz_pick(f, 2) ? 0x10 + fz_pick(f, 4) : fz_u8(f) * 16u;
    uint8_t b = fz_pick(f, 4) == 0 ? 0xCC : fz_u8(f);
    w->own[fr][off] = b;
    vmt_mock_poke(w->mock, code_frames[fr] + off, &b, 1);
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.has_view = true;
    ev.view = vmt_tracer_view(w->t);
    ev.reason = VMT_EVENT_MEMORY_ACCESS;
    ev.regs.cr3 = w->root;
    ev.regs.efer = 1ull << 10;
    ev.regs.rip = CODE_VA + 0x200;
    ev.u.memory_access.pa = code_frames[fr] + off;
    ev.u.memory_access.va = CODE_VA + off;
    ev.u.memory_access.access = VMT_ACCESS_W;
    vmt_mock_push_event(w->mock, &ev);
}

/* The guest rewrites page-table entries of the code's walk (a map may
 * also create tables and write the entries above them). Each entry written
 * is reported as a trapped write, as the hardware would report it; the
 * events lie elsewhere. */
static void pt_write(world *w, fz *f)
{
    vmt_va va = fz_pick(f, 2) ? CODE_VA : LATE_VA;
    model_walk before, after;
    model_walk_va(w->mock, vmt_ctx(va, w->root), &before);
    switch (fz_pick(f, 4)) {
    case 0:
        vmt_mock_unmap(w->mock, w->root, va, 1 + fz_pick(f, 2));
        break;
    case 1:
        vmt_mock_map(w->mock, w->root, va, code_frames[fz_pick(f, NCODE)], VMT_MOCK_4K, VMT_PTE_U);
        break;
    default: {
        unsigned level = fz_pick(f, 4);
        if (level >= before.levels)
            return;
        uint64_t e = fz_u64(f);
        vmt_mock_poke(w->mock, before.entry_pa[level], &e, sizeof e);
        break;
    }
    }
    model_walk_va(w->mock, vmt_ctx(va, w->root), &after);
    bool step = fz_pick(f, 2);
    for (unsigned i = 0; i < 4; i++) {
        for (int side = 0; side < 2; side++) {
            const model_walk *mw = side ? &after : &before;
            if (i >= mw->levels || (side && i < before.levels &&
                                    before.entry_pa[i] == after.entry_pa[i]))
                continue;
            uint64_t now = 0;
            vmt_mock_peek(w->mock, mw->entry_pa[i], &now, sizeof now);
            if (!side && now == before.entry[i])
                continue; /* unchanged */
            vmt_event ev;
            memset(&ev, 0, sizeof ev);
            ev.has_view = true;
            ev.view = vmt_tracer_view(w->t);
            ev.reason = VMT_EVENT_MEMORY_ACCESS;
            ev.regs.cr3 = w->root;
            ev.regs.efer = 1ull << 10;
            ev.u.memory_access.pa = mw->entry_pa[i];
            ev.u.memory_access.access = VMT_ACCESS_W;
            vmt_mock_push_event(w->mock, &ev);
            if (step) { /* the step that ends it, for drivers without FAST_SINGLESTEP */
                ev.reason = VMT_EVENT_SINGLESTEP;
                ev.view = 0;
                vmt_mock_push_event(w->mock, &ev);
            }
        }
    }
}

static void check_bp(void *user, const vmt_tracer_bp_info *bp)
{
    world *w = user;
    if (!bp->active)
        return;
    vmt_tracer_controller c = vmt_tracer_controller_used(w->t);
    if (c == VMT_TRACER_CONTROLLER_INT3) {
        uint8_t b = 0;
        vmt_mock_view_read(w->mock, vmt_tracer_view(w->t), bp->pa, &b, 1);
        FUZZ_CHECK(b == 0xCC, "breakpoint %u active at %llx, the view reads %02x", bp->id,
                   (unsigned long long)bp->pa, b);
    } else {
        model_walk mw;
        if (model_walk_va(w->mock, bp->ctx, &mw) == VMT_OK)
            for (unsigned i = 0; i < mw.levels; i++)
                if (getenv("FUZZ_TRACE") && (mw.entry_pa[i] >> 12) == (bp->pa >> 12))
                    fprintf(stderr, "breakpoint %u: its frame is also its page table\n", bp->id);
        /* The run's injected fault may still be armed and fire here, once:
         * ask again then (a was read uninitialised before, a false alarm). */
        vmt_access a = 0;
        vmt_status gs = vmt_core_get_access(w->vmi, bp->pa >> 12, vmt_tracer_view(w->t), &a);
        if (gs != VMT_OK)
            gs = vmt_core_get_access(w->vmi, bp->pa >> 12, vmt_tracer_view(w->t), &a);
        FUZZ_CHECK(gs == VMT_OK, "get_access of breakpoint %u's frame: %s", bp->id,
                   vmt_status_str(gs));
        FUZZ_CHECK(!(a & VMT_ACCESS_X), "breakpoint %u (%llx) active at %llx, its page executable",
                   bp->id, (unsigned long long)bp->ctx.va, (unsigned long long)bp->pa);
    }
}

static void dump_bp(void *user, const vmt_tracer_bp_info *bp)
{
    world *w = user;
    vmt_access a = 0;
    vmt_core_get_access(w->vmi, bp->pa >> 12, vmt_tracer_view(w->t), &a);
    model_walk mw;
    model_walk_va(w->mock, bp->ctx, &mw);
    vmt_bpm_stats bs = {.sz = sizeof bs};
    vmt_bpm_stats_get(vmt_tracer_bpm(w->t), &bs);
    fprintf(stderr, "  bpm active %zu pending %zu pages %zu; contains %d\n", bs.active, bs.pending,
            bs.pages, vmt_bpm_contains_by_address(vmt_tracer_bpm(w->t), bp->ctx, bp->id));
    fprintf(stderr, "  bp %u %llx%s: %s at %llx (access %d), walk %d -> %llx via", bp->id,
            (unsigned long long)bp->ctx.va, bp->global ? " g" : "", bp->active ? "active" : "pending",
            (unsigned long long)bp->pa, a, mw.present, (unsigned long long)mw.pa);
    for (unsigned i = 0; i < mw.levels; i++)
        fprintf(stderr, " %llx=%llx", (unsigned long long)mw.entry_pa[i], (unsigned long long)mw.entry[i]);
    fputc('\n', stderr);
}

static void check(world *w)
{
    if (getenv("FUZZ_TRACE"))
        vmt_tracer_foreach_bp(w->t, dump_bp, w);
    FUZZ_CHECK(vmt_bpm_check(vmt_tracer_bpm(w->t)) == VMT_OK, "vmt_bpm_check");
    FUZZ_CHECK(vmt_ptm_check(vmt_tracer_ptm(w->t)) == VMT_OK, "vmt_ptm_check");
    static uint8_t buf[4096];
    for (unsigned fr = 0; fr < NCODE; fr++) {
        vmt_mock_peek(w->mock, code_frames[fr], buf, sizeof buf);
        FUZZ_CHECK(memcmp(buf, w->own[fr], sizeof buf) == 0, "code frame %u changed", fr);
    }
    vmt_tracer_foreach_bp(w->t, check_bp, w);
}

static void run(world *w, unsigned fault)
{
    if (fault)
        vmt_mock_fail_nth_any(w->mock, fault, VMT_E_DRIVER);
    for (int tries = 0; tries < 8 && vmt_mock_pending_events(w->mock) > 0; tries++) {
        vmt_tracer_run_opts ro = {.sz = sizeof ro, .timeout_ms = 1};
        vmt_tracer_stop_reason why;
        vmt_status st = vmt_tracer_run(w->t, &ro, &why);
        /* An injected failure, a step that never completes, an event the
         * tracer refuses, or a guest page table outside RAM (the ptm's
         * error, passed on) end a run; the next one goes on. */
        FUZZ_CHECK(st == VMT_OK || st == VMT_E_DRIVER || st == VMT_E_TIMEOUT ||
                       st == VMT_E_VIEW_NOT_FOUND || st == VMT_E_INVALID ||
                       st == VMT_E_OUT_OF_BOUNDS,
                   "run: %s", vmt_status_str(st));
        check(w);
    }
    vmt_mock_fail_nth_any(w->mock, 0, VMT_OK);
}

/* FUZZ_TRACE=1 replays an input with the library's log on stderr. */
static void log_to_stderr(void *user, vmt_log_level level, const char *fmt, va_list ap)
{
    (void)user;
    fprintf(stderr, "[%d] ", (int)level);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool logging;
    if (!logging && getenv("FUZZ_TRACE")) {
        vmt_set_log_fn(log_to_stderr, NULL);
        logging = true;
    }
    fz f = fz_new(data, size);
    world *w = &W;
    memset(w, 0, sizeof *w);
    static const uint32_t caps[] = {
        0, VMT_CAP_VIEWS | VMT_CAP_EXECUTE_ONLY | VMT_CAP_EMULATE,
        VMT_CAP_VIEWS | VMT_CAP_FAST_SINGLESTEP | VMT_CAP_EMULATE};
    uint8_t setup = fz_u8(&f);
    vmt_mock_opts mo = {.sz = sizeof mo, .max_gfn = RAM_FRAMES, .vcpus = 2, .caps = caps[setup % 3]};
    if (vmt_mock_core_new(&mo, &w->vmi, &w->mock) != VMT_OK ||
        vmt_mock_new_root(w->mock, &w->root) != VMT_OK)
        abort();
    vmt_mock_map(w->mock, w->root, CODE_VA, CODE_PA, VMT_MOCK_4K, VMT_PTE_U);
    vmt_mock_map(w->mock, w->root, CODE_VA + 0x1000, CODE_PA + 0x1000, VMT_MOCK_4K, VMT_PTE_U);
    vmt_mock_map(w->mock, w->root, STACK_VA, STACK_PA, VMT_MOCK_4K, VMT_PTE_U | VMT_PTE_W);
    for (unsigned fr = 0; fr < NCODE; fr++) {
        memset(w->own[fr], 0x90, 4096);
        w->own[fr][0x10] = 0x55;
        w->own[fr][0x80] = 0x55;
        w->own[fr][0x100] = 0xCC; /* the guest's own int3 */
        vmt_mock_poke(w->mock, code_frames[fr], w->own[fr], 4096);
    }
    for (vmt_vcpu c = 0; c < 2; c++)
        vmt_mock_regs(w->mock, c)->cr3 = w->root;
    static const vmt_tracer_controller ctl[] = {
        VMT_TRACER_CONTROLLER_AUTO, VMT_TRACER_CONTROLLER_INT3, VMT_TRACER_CONTROLLER_MEMORY};
    vmt_tracer_opts to = {.sz = sizeof to,
                          .controller = ctl[(setup / 3) % 3],
                          .on_hit = on_hit,
                          .user = w,
                          .no_emulation = (setup & 0x80) != 0};
    w->remove_on_hit = (setup & 0x40) != 0;
    if (vmt_tracer_new(w->vmi, &to, &w->t) != VMT_OK)
        abort();
    while (!fz_done(&f)) {
        switch (fz_pick(&f, 10)) {
        case 0:
        case 1: {
            vmt_tracer_bp_opts bo = {.sz = sizeof bo, .global = fz_pick(&f, 3) == 0,
                                     .key = fz_u8(&f)};
            vmt_tracer_bp_id id = 0;
            vmt_va va = pick_va(&f);
            vmt_status st = vmt_tracer_add(w->t, vmt_ctx(va, w->root), &bo, &id);
            if (getenv("FUZZ_TRACE"))
                fprintf(stderr, "add %llx%s: %s, id %u\n", (unsigned long long)va,
                        bo.global ? " global" : "", vmt_status_str(st), id);
            /* OUT_OF_BOUNDS: a page table outside guest RAM on the walk */
            FUZZ_CHECK(st == VMT_OK || st == VMT_E_INVALID || st == VMT_E_OUT_OF_BOUNDS, "add: %s",
                       vmt_status_str(st));
            if (st == VMT_OK && w->nids < MAXBP)
                w->ids[w->nids++] = id;
            check(w);
            break;
        }
        case 2: {
            vmt_tracer_bp_id id = w->nids && fz_pick(&f, 4) ? w->ids[fz_pick(&f, w->nids)]
                                                            : fz_u8(&f);
            vmt_status st = vmt_tracer_remove(w->t, id);
            FUZZ_CHECK(st == VMT_OK || st == VMT_E_INVALID, "remove: %s", vmt_status_str(st));
            check(w);
            break;
        }
        case 3:
        case 4:
        case 5:
            for (unsigned n = 1 + fz_pick(&f, 4); n; n--)
                push_event(w, &f);
            run(w, 0);
            break;
        case 6:
            code_write(w, &f);
            run(w, 0);
            break;
        case 7:
            pt_write(w, &f);
            run(w, 0);
            break;
        default:
            push_event(w, &f);
            run(w, 1 + fz_pick(&f, 16));
            break;
        }
    }
    vmt_view view = vmt_tracer_view(w->t);
    FUZZ_CHECK(vmt_tracer_detach(w->t) == VMT_OK, "detach");
    FUZZ_CHECK(!vmt_mock_view_exists(w->mock, view), "the session view is left");
    FUZZ_CHECK(vmt_mock_current_view(w->mock) == 0, "not back in the default view");
    /* a free_gfn that failed leaks its frame (logged); else none is left */
    FUZZ_CHECK(vmt_mock_allocated_gfns(w->mock) == 0 || vmt_mock_injected(w->mock) > 0,
               "shadow frames left");
    FUZZ_CHECK(!vmt_mock_monitoring(w->mock, VMT_EVENT_MEMORY_ACCESS) &&
                   !vmt_mock_monitoring(w->mock, VMT_EVENT_SOFTWARE_BREAKPOINT),
               "events left on");
    for (vmt_gfn g = 0; g < RAM_FRAMES; g++) {
        vmt_access a;
        vmt_core_get_access(w->vmi, g, 0, &a);
        FUZZ_CHECK(a == VMT_ACCESS_RWX, "frame %llx left at access %d in view 0",
                   (unsigned long long)g, a);
    }
    static uint8_t buf[4096];
    for (unsigned fr = 0; fr < NCODE; fr++) {
        vmt_mock_peek(w->mock, code_frames[fr], buf, sizeof buf);
        FUZZ_CHECK(memcmp(buf, w->own[fr], sizeof buf) == 0, "code frame %u changed", fr);
    }
    vmt_tracer_free(w->t);
    vmt_core_free(w->vmi);
    return 0;
}
