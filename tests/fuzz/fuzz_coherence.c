// SPDX-License-Identifier: MIT
/* libFuzzer target: coherence of breakpoint shadows with guest writes
 * (src/bpm/coherence.c and the interceptor's rebuild) on the mock driver,
 * with the bare bpm and the breakpoint (int3) controller. The input is a
 * sequence of operations: breakpoints inserted and removed (two views, two
 * keys, three frames, several offsets), guest writes of 1-8 bytes (over
 * traps or beside them, the same bytes or new ones, through a trapped
 * write in a view with breakpoints or not, then flushed, or synced with
 * vmt_bpm_sync_frame), classification of int3 events, and driver failures
 * at a chosen call of the next operation (a failed call is retried).
 *
 * A model keeps the claims (view, key, frame, offset, original byte) and
 * the guest's own bytes. After every operation: vmt_bpm_check; the
 * guest's own frames hold exactly what it wrote (never a trap byte of
 * ours); in every view every frame reads as the guest's bytes with 0xCC at
 * exactly the armed offsets; one shadow frame per (view, frame) with
 * claims; a trapped write is tracked exactly when its (view, frame) has
 * claims; every report is about an armed claim whose byte changed, with
 * the right old and new bytes; after a flush, claims whose byte changed
 * are gone (drop) or armed over the new byte (re-arm), each as the
 * callback chose; classification says OURS / GUEST / STALE as the model. */
#include <stdbool.h>

#include "fuzz_util.h"
#include "vmitap/bpm.h"
#include "vmitap/coherence.h"
#include "vmitap/core.h"
#include "vmitap/mock.h"

#define RAM_FRAMES 0x400u
#define NF 3
#define NVIEW 2
#define NK 2
#define NOFF 6
#define FRAME0 0x20u
#define ROOT 0x1000ull
#define VA0 0x400000ull

static const unsigned offs[NOFF] = {0x10, 0x11, 0x18, 0x800, 0xff8, 0xfff};

typedef struct mclaim {
    bool armed;
    uint8_t orig; /* the byte under the trap */
} mclaim;

typedef struct world {
    vmt_core *vmi;
    vmt_mock *mock;
    vmt_bpm *bpm;
    vmt_coherence *coh;
    vmt_view views[NVIEW];
    mclaim c[NVIEW][NK][NF][NOFF];
    uint8_t own[NF][4096];
    unsigned choice_bits; /* which (view, key) re-arms */
    unsigned fault;
    uint64_t reports;
} world;

static world W;

static vmt_pa pa_of(unsigned fr, unsigned o)
{
    return ((vmt_pa)(FRAME0 + fr) << 12) + offs[o];
}

static vmt_breakpoint bp_of(world *w, unsigned v, unsigned k, unsigned fr, unsigned o)
{
    return (vmt_breakpoint){.ctx = vmt_ctx(VA0 + fr * 0x1000ull + offs[o], ROOT),
                            .view = w->views[v],
                            .key = k};
}

static bool rearms(world *w, unsigned v, unsigned k)
{
    return (w->choice_bits >> (v * NK + k)) & 1;
}

static int view_index(world *w, vmt_view view)
{
    for (int v = 0; v < NVIEW; v++)
        if (w->views[v] == view)
            return v;
    return -1;
}

static vmt_overwrite_choice on_overwrite(void *user, const vmt_overwrite *ow)
{
    world *w = user;
    int v = view_index(w, ow->bp.view);
    vmt_va va = ow->bp.ctx.va;
    FUZZ_CHECK(v >= 0 && ow->bp.key < NK && va >= VA0 && va < VA0 + NF * 0x1000ull,
               "report about a claim never made");
    unsigned fr = (unsigned)((va - VA0) >> 12), o = NOFF;
    for (unsigned i = 0; i < NOFF; i++)
        if (offs[i] == (va & 0xfff))
            o = i;
    FUZZ_CHECK(o < NOFF, "report at another offset");
    mclaim *c = &w->c[v][ow->bp.key][fr][o];
    FUZZ_CHECK(c->armed, "report about a claim not armed");
    FUZZ_CHECK(ow->pa == pa_of(fr, o) && ow->len == 1, "report pa/len");
    FUZZ_CHECK(ow->old_bytes[0] == c->orig && ow->new_bytes[0] == w->own[fr][offs[o]],
               "report bytes %02x->%02x, model %02x->%02x", ow->old_bytes[0], ow->new_bytes[0],
               c->orig, w->own[fr][offs[o]]);
    FUZZ_CHECK(c->orig != w->own[fr][offs[o]], "report although the byte is unchanged");
    w->reports++;
    return rearms(w, (unsigned)v, (unsigned)ow->bp.key) ? VMT_OVERWRITE_REARM : VMT_OVERWRITE_DROP;
}

static bool page_has_claims(world *w, unsigned v, unsigned fr)
{
    for (unsigned k = 0; k < NK; k++)
        for (unsigned o = 0; o < NOFF; o++)
            if (w->c[v][k][fr][o].armed)
                return true;
    return false;
}

static bool armed_at(world *w, unsigned v, unsigned fr, unsigned o)
{
    for (unsigned k = 0; k < NK; k++)
        if (w->c[v][k][fr][o].armed)
            return true;
    return false;
}

static void check(world *w)
{
    FUZZ_CHECK(vmt_bpm_check(w->bpm) == VMT_OK, "vmt_bpm_check");
    size_t shadows = 0;
    static uint8_t buf[4096];
    for (unsigned fr = 0; fr < NF; fr++) {
        vmt_mock_peek(w->mock, pa_of(fr, 0) & ~0xfffull, buf, sizeof buf);
        FUZZ_CHECK(memcmp(buf, w->own[fr], sizeof buf) == 0, "the guest's own frame %u changed",
                   fr);
        for (unsigned v = 0; v < NVIEW; v++) {
            shadows += page_has_claims(w, v, fr);
            vmt_mock_view_read(w->mock, w->views[v], pa_of(fr, 0) & ~0xfffull, buf, sizeof buf);
            for (unsigned o = 0; o < NOFF; o++) {
                uint8_t want = armed_at(w, v, fr, o) ? 0xCC : w->own[fr][offs[o]];
                FUZZ_CHECK(buf[offs[o]] == want, "view %u frame %u +%x reads %02x, model %02x", v,
                           fr, offs[o], buf[offs[o]], want);
                buf[offs[o]] = w->own[fr][offs[o]];
            }
            FUZZ_CHECK(memcmp(buf, w->own[fr], sizeof buf) == 0,
                       "view %u frame %u differs from the guest's bytes beside the traps", v, fr);
        }
    }
    size_t armed = 0;
    for (unsigned v = 0; v < NVIEW; v++)
        for (unsigned k = 0; k < NK; k++)
            for (unsigned fr = 0; fr < NF; fr++)
                for (unsigned o = 0; o < NOFF; o++)
                    armed += w->c[v][k][fr][o].armed;
    vmt_bpm_stats bs = {.sz = sizeof bs};
    vmt_bpm_stats_get(w->bpm, &bs);
    FUZZ_CHECK(bs.active == armed && bs.pending == 0, "bpm: %zu armed, %zu pending; model %zu",
               bs.active, bs.pending, armed);
    FUZZ_CHECK(vmt_mock_allocated_gfns(w->mock) == shadows, "%zu shadow frames for %zu pages",
               vmt_mock_allocated_gfns(w->mock), shadows);
}

static void arm(world *w)
{
    if (w->fault)
        vmt_mock_fail_nth_any(w->mock, w->fault, VMT_E_DRIVER);
}

static bool fired(world *w, uint64_t before)
{
    if (!w->fault)
        return false;
    w->fault = 0;
    vmt_mock_fail_nth_any(w->mock, 0, VMT_OK);
    return vmt_mock_injected(w->mock) != before;
}

static void op_insert(world *w, fz *f, bool remove)
{
    unsigned v = fz_pick(f, NVIEW), k = fz_pick(f, NK), fr = fz_pick(f, NF), o = fz_pick(f, NOFF);
    vmt_breakpoint bp = bp_of(w, v, k, fr, o);
    vmt_pa pa = pa_of(fr, o);
    bool done = false;
    for (int attempt = 0; attempt < 2; attempt++) {
        uint64_t inj = vmt_mock_injected(w->mock);
        arm(w);
        vmt_status st = remove ? vmt_bpm_remove(w->bpm, w->vmi, &bp, &done)
                               : vmt_bpm_insert_with_hint(w->bpm, w->vmi, &bp, &pa, &done);
        bool f_ = fired(w, inj);
        if (st == VMT_OK)
            break;
        FUZZ_CHECK(f_ && st == VMT_E_DRIVER && attempt == 0, "%s: status %d",
                   remove ? "remove" : "insert", st);
        check(w); /* nothing the model does not know */
    }
    mclaim *c = &w->c[v][k][fr][o];
    FUZZ_CHECK(done == (remove ? c->armed : !c->armed), "%s: result %d, model armed %d",
               remove ? "remove" : "insert", done, c->armed);
    if (remove) {
        c->armed = false;
    } else if (!c->armed) {
        c->armed = true;
        c->orig = w->own[fr][offs[o]];
    }
}

/* The model's flush of frame fr: claims whose byte changed go, or stay
 * over the new byte. */
static void model_sync(world *w, unsigned fr)
{
    for (unsigned v = 0; v < NVIEW; v++)
        for (unsigned o = 0; o < NOFF; o++) {
            /* A dropping claim beside a re-arming one is gone all the
             * same; the trap stays for the re-arming one. */
            for (unsigned k = 0; k < NK; k++) {
                mclaim *c = &w->c[v][k][fr][o];
                if (!c->armed || c->orig == w->own[fr][offs[o]])
                    continue;
                if (rearms(w, v, k))
                    c->orig = w->own[fr][offs[o]];
                else
                    c->armed = false;
            }
        }
}

static void op_write(world *w, fz *f)
{
    unsigned fr = fz_pick(f, NF), o = fz_pick(f, NOFF);
    unsigned at = offs[o] - (offs[o] > 3 ? fz_pick(f, 4) : 0);
    unsigned len = 1 + fz_pick(f, 8);
    if (at + len > 4096)
        len = 4096 - at;
    uint8_t bytes[8];
    for (unsigned i = 0; i < len; i++) {
        uint8_t b = fz_u8(f);
        bytes[i] = (b & 0xc0) == 0 ? w->own[fr][at + i] : b; /* often the same byte */
    }
    unsigned v = fz_pick(f, NVIEW);
    bool direct = fz_pick(f, 4) == 0;
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.has_view = true;
    ev.view = w->views[v];
    ev.reason = VMT_EVENT_MEMORY_ACCESS;
    ev.u.memory_access.access = VMT_ACCESS_W;
    ev.u.memory_access.pa = ((vmt_pa)(FRAME0 + fr) << 12) + at;
    vmt_response resp = {.action = VMT_ACTION_CONTINUE};
    bool tracked = !direct && vmt_coherence_on_write(w->coh, w->vmi, &ev, &resp);
    if (!direct)
        FUZZ_CHECK(tracked == page_has_claims(w, v, fr), "on_write %d, claims in the view %d",
                   tracked, page_has_claims(w, v, fr));
    /* The write lands on the guest's own frame (a step in the default view). */
    FUZZ_CHECK(vmt_core_write(w->vmi, ev.u.memory_access.pa, bytes, len) == VMT_OK, "write");
    memcpy(&w->own[fr][at], bytes, len);
    for (int attempt = 0; attempt < 2; attempt++) {
        uint64_t inj = vmt_mock_injected(w->mock);
        arm(w);
        vmt_status st;
        if (tracked) {
            st = vmt_coherence_flush(w->coh, w->vmi);
        } else {
            size_t n = 0;
            st = vmt_bpm_sync_frame(w->bpm, w->vmi, FRAME0 + fr, on_overwrite, w, &n);
        }
        bool f_ = fired(w, inj);
        if (st == VMT_OK)
            break;
        FUZZ_CHECK(f_ && st == VMT_E_DRIVER && attempt == 0, "flush: status %d", st);
        FUZZ_CHECK(vmt_bpm_check(w->bpm) == VMT_OK, "vmt_bpm_check after a failed flush");
        if (tracked)
            FUZZ_CHECK(vmt_coherence_pending(w->coh) > 0, "a failed frame not kept for later");
    }
    FUZZ_CHECK(vmt_coherence_pending(w->coh) == 0, "frames left after a flush");
    model_sync(w, fr);
}

static void op_classify(world *w, fz *f)
{
    unsigned v = fz_pick(f, NVIEW), fr = fz_pick(f, NF), o = fz_pick(f, NOFF);
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.has_view = true;
    ev.view = w->views[v];
    ev.reason = VMT_EVENT_SOFTWARE_BREAKPOINT;
    ev.regs.rip = VA0 + fr * 0x1000ull + offs[o];
    ev.regs.cr3 = ROOT;
    ev.u.software_breakpoint.gfn = FRAME0 + fr;
    ev.u.software_breakpoint.insn_len = 1;
    vmt_trap_owner owner = 0;
    vmt_status st = vmt_coherence_classify(w->coh, w->vmi, &ev, &owner);
    FUZZ_CHECK(st == VMT_OK, "classify: %d", st);
    vmt_trap_owner want = armed_at(w, v, fr, o)              ? VMT_TRAP_OURS
                          : w->own[fr][offs[o]] == 0xCC ? VMT_TRAP_GUEST
                                                        : VMT_TRAP_STALE;
    FUZZ_CHECK(owner == want, "classify: %d, model %d", owner, want);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = fz_new(data, size);
    world *w = &W;
    memset(w, 0, sizeof *w);
    vmt_mock_opts mo = {.sz = sizeof mo, .max_gfn = RAM_FRAMES};
    vmt_tap_controller ctl;
    if (vmt_mock_core_new(&mo, &w->vmi, &w->mock) != VMT_OK ||
        vmt_breakpoint_controller_new(&ctl) != VMT_OK || vmt_bpm_new(ctl, &w->bpm) != VMT_OK ||
        vmt_coherence_new(w->bpm, &w->coh) != VMT_OK)
        abort();
    for (int v = 0; v < NVIEW; v++)
        if (vmt_core_create_view(w->vmi, VMT_ACCESS_RWX, &w->views[v]) != VMT_OK)
            abort();
    vmt_coherence_set_overwrite_fn(w->coh, on_overwrite, w);
    w->choice_bits = fz_u8(&f);
    for (unsigned fr = 0; fr < NF; fr++) {
        for (unsigned i = 0; i < 4096; i++)
            w->own[fr][i] = (uint8_t)(0x90 + (i * 7 + fr) % 5);
        vmt_mock_poke(w->mock, (vmt_pa)(FRAME0 + fr) << 12, w->own[fr], 4096);
    }
    while (!fz_done(&f)) {
        switch (fz_pick(&f, 8)) {
        case 0:
        case 1:
            op_insert(w, &f, false);
            break;
        case 2:
            op_insert(w, &f, true);
            break;
        case 3:
        case 4:
        case 5:
            op_write(w, &f);
            break;
        case 6:
            op_classify(w, &f);
            break;
        default:
            w->fault = 1 + fz_pick(&f, 12);
            break;
        }
        check(w);
    }
    w->fault = 0;
    FUZZ_CHECK(vmt_bpm_clear(w->bpm, w->vmi) == VMT_OK, "clear");
    memset(w->c, 0, sizeof w->c);
    check(w);
    FUZZ_CHECK(vmt_mock_allocated_gfns(w->mock) == 0, "shadow frames left");
    vmt_coherence_free(w->coh);
    vmt_bpm_free(w->bpm);
    vmt_core_free(w->vmi);
    return 0;
}
