// SPDX-License-Identifier: MIT
/* Coherence of breakpoint shadows with guest writes (issue 8), on the mock
 * driver: the tracer and the bare-bpm API (vmitap/coherence.h).
 *
 * The mock executes nothing, so the driver here wraps it: when the tracer
 * answers a write event, the wrapper performs the write the test queued
 * for it, where the response sends it, as the KVM driver does (FAST_SINGLESTEP:
 * resp.view's frame; SINGLESTEP with a view switch: the new view's frame,
 * as the step runs there; CONTINUE/EMULATE: the event view's frame, i.e.
 * the shadow). A test can then check that the guest's own frame got
 * exactly what was written and that the shadow was rebuilt from it.
 *
 * Code page CODE_VA -> CODE_PA: nops, with `push rbp` (0x55) at FN_A, FN_B
 * and FN_C (= FN_A + 4, so one 8-byte store covers FN_A and FN_C). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmitap/coherence.h"
#include "vmitap/mock.h"
#include "vmitap/tracer.h"
#include "tracer_fixture.h"

#define CODE_VA 0x400000ull
#define CODE_PA 0x10000ull
#define FN_A (CODE_VA + 0x10)
#define FN_C (CODE_VA + 0x14)
#define FN_B (CODE_VA + 0x80)
#define DATA (CODE_VA + 0x300) /* same page, no breakpoint near */
#define PA_OF(va) (CODE_PA + ((va)-CODE_VA))

/* ---- the wrapping driver ---- */

typedef struct guest_write {
    vmt_pa pa;
    uint8_t bytes[16];
    size_t len;
} guest_write;

static struct {
    vmt_mock *mock;
    guest_write queue[8];
    size_t n, next;
    vmt_driver_ops ops;
    vmt_event_fn fn;
    void *user;
} drv;

static void do_guest_write(const vmt_event *ev, const vmt_response *resp)
{
    if (drv.next >= drv.n)
        return;
    const guest_write *w = &drv.queue[drv.next++];
    vmt_view view = ev->view;
    if (resp->action == VMT_ACTION_FAST_SINGLESTEP ||
        (resp->action == VMT_ACTION_SINGLESTEP && resp->set_view))
        view = resp->view;
    vmt_gfn backing;
    assert_int_equal(vmt_mock_view_backing(drv.mock, view, vmt_gfn_from_pa(w->pa), &backing),
                     VMT_OK);
    assert_int_equal(vmt_mock_poke(drv.mock, vmt_pa_in_gfn(backing, w->pa), w->bytes, w->len),
                     VMT_OK);
}

static vmt_status wrap_fn(void *user, const vmt_event *ev, vmt_response *resp)
{
    (void)user;
    vmt_status st = drv.fn(drv.user, ev, resp);
    if (st == VMT_OK && ev->reason == VMT_EVENT_MEMORY_ACCESS &&
        (ev->u.memory_access.access & VMT_ACCESS_W))
        do_guest_write(ev, resp);
    return st;
}

static vmt_status wrap_wait(void *d, int timeout_ms, vmt_event_fn fn, void *user)
{
    drv.fn = fn;
    drv.user = user;
    return vmt_mock_driver_ops()->wait_for_event(d, timeout_ms, wrap_fn, NULL);
}

static void queue_write(vmt_pa pa, const void *bytes, size_t len)
{
    assert_true(drv.n < 8 && len <= 16);
    drv.queue[drv.n] = (guest_write){.pa = pa, .len = len};
    memcpy(drv.queue[drv.n].bytes, bytes, len);
    drv.n++;
}

/* ---- fixture ---- */

typedef struct overwrite_rec {
    vmt_tracer_bp_id id;
    uint64_t key, hits;
    vmt_pa pa;
    uint8_t old_byte, new_byte;
} overwrite_rec;

typedef struct fixture {
    vmt_core *vmi;
    vmt_mock *mock;
    vmt_pa root;
    vmt_tracer *t;
    unsigned hits;
    vmt_overwrite_choice choice;
    overwrite_rec ow[8];
    unsigned nows;
    size_t queued_at_overwrite; /* events still queued when the last report came */
} fixture;

static void on_hit(void *user, vmt_tracer *t, const vmt_tracer_hit *hit)
{
    (void)t;
    (void)hit;
    ((fixture *)user)->hits++;
}

static vmt_overwrite_choice on_overwrite(void *user, vmt_tracer *t, const vmt_tracer_overwrite *ow)
{
    fixture *f = user;
    assert_non_null(t);
    assert_true(f->nows < 8);
    assert_int_equal(ow->len, 1);
    f->queued_at_overwrite = vmt_mock_pending_events(f->mock);
    f->ow[f->nows++] = (overwrite_rec){.id = ow->bp->id,
                                       .key = ow->bp->key,
                                       .hits = ow->bp->hits,
                                       .pa = ow->pa,
                                       .old_byte = ow->old_bytes[0],
                                       .new_byte = ow->new_bytes[0]};
    return f->choice;
}

static void fill_code(vmt_mock *m)
{
    uint8_t page[VMT_PAGE_SIZE];
    memset(page, 0x90, sizeof page);
    page[FN_A - CODE_VA] = 0x55;
    page[FN_B - CODE_VA] = 0x55;
    page[FN_C - CODE_VA] = 0x55;
    assert_int_equal(vmt_mock_poke(m, CODE_PA, page, sizeof page), VMT_OK);
}

static fixture *make_fixture(uint32_t caps)
{
    fixture *f = test_calloc(1, sizeof *f);
    memset(&drv, 0, sizeof drv);
    VMT_OPTS(vmt_mock_opts, mo, .max_gfn = 0x1000, .caps = caps);
    assert_int_equal(vmt_mock_new(&mo, &f->mock), VMT_OK);
    drv.mock = f->mock;
    drv.ops = *vmt_mock_driver_ops();
    drv.ops.wait_for_event = wrap_wait;
    assert_int_equal(vmt_core_new(&drv.ops, f->mock, &f->vmi), VMT_OK);
    assert_int_equal(vmt_mock_new_root(f->mock, &f->root), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, f->root, CODE_VA, CODE_PA, VMT_MOCK_4K, VMT_PTE_U),
                     VMT_OK);
    fill_code(f->mock);
    vmt_mock_regs(f->mock, 0)->cr3 = f->root;
    VMT_OPTS(vmt_tracer_opts, to, .controller = VMT_TRACER_CONTROLLER_INT3, .on_hit = on_hit, .user = f);
    assert_int_equal(vmt_tracer_new(f->vmi, &to, &f->t), VMT_OK);
    return f;
}

static int setup(void **state)
{
    fixture *f = make_fixture(0); /* views, execute-only, fast single-step, emulate */
    assert_int_equal(vmt_tracer_set_overwrite_fn(f->t, on_overwrite, f), VMT_OK);
    *state = f;
    return 0;
}

static int setup_no_callback(void **state)
{
    *state = make_fixture(0);
    return 0;
}

static int setup_slow_step(void **state)
{
    fixture *f = make_fixture(VMT_CAP_VIEWS | VMT_CAP_EXECUTE_ONLY | VMT_CAP_EMULATE);
    assert_int_equal(vmt_tracer_set_overwrite_fn(f->t, on_overwrite, f), VMT_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    vmt_tracer_free(f->t);
    vmt_core_free(f->vmi);
    test_free(f);
    return 0;
}

/* ---- helpers ---- */

static vmt_event base_event(fixture *f, vmt_event_reason why, vmt_va rip)
{
    return tracer_event(f->t, f->root, why, rip);
}

/* A trapped guest write of len bytes at va, carried out by the wrapper. */
static void push_write(fixture *f, vmt_va va, const void *bytes, size_t len)
{
    vmt_event ev = base_event(f, VMT_EVENT_MEMORY_ACCESS, CODE_VA + 0x800);
    ev.u.memory_access.pa = PA_OF(va);
    ev.u.memory_access.access = VMT_ACCESS_W;
    queue_write(PA_OF(va), bytes, len);
    assert_int_equal(vmt_mock_push_event(f->mock, &ev), VMT_OK);
}

static void push_int3(fixture *f, vmt_va rip)
{
    vmt_event ev = base_event(f, VMT_EVENT_SOFTWARE_BREAKPOINT, rip);
    ev.u.software_breakpoint.gfn = vmt_gfn_from_pa(PA_OF(rip));
    ev.u.software_breakpoint.insn_len = 1;
    assert_int_equal(vmt_mock_push_event(f->mock, &ev), VMT_OK);
}

static void drain(fixture *f)
{
    tracer_drain(f->t, f->mock, 1000);
}

static const vmt_response *last_response(fixture *f)
{
    const vmt_response *r;
    size_t n = vmt_mock_responses(f->mock, &r);
    assert_true(n > 0);
    return &r[n - 1];
}

/* What the guest executes at va in the session view (the shadow if any). */
static uint8_t exec_byte(fixture *f, vmt_va va)
{
    uint8_t b;
    assert_int_equal(vmt_mock_view_read(f->mock, vmt_tracer_view(f->t), PA_OF(va), &b, 1), VMT_OK);
    return b;
}

/* The guest's own frame. */
static uint8_t own_byte(fixture *f, vmt_va va)
{
    uint8_t b;
    assert_int_equal(vmt_mock_peek(f->mock, PA_OF(va), &b, 1), VMT_OK);
    return b;
}

static vmt_tracer_bp_id add_bp(fixture *f, vmt_va va, uint64_t key)
{
    VMT_OPTS(vmt_tracer_bp_opts, bo, .key = key);
    vmt_tracer_bp_id id = 0;
    assert_int_equal(vmt_tracer_add(f->t, vmt_ctx(va, f->root), &bo, &id), VMT_OK);
    return id;
}

static bool bp_exists(fixture *f, vmt_tracer_bp_id id)
{
    VMT_OPTS(vmt_tracer_bp_info, bi);
    return vmt_tracer_bp_get(f->t, id, &bi) == VMT_OK;
}

static vmt_coherence_stats coh_stats(fixture *f)
{
    VMT_OPTS(vmt_coherence_stats, cs);
    vmt_tracer_coherence_stats_get(f->t, &cs);
    return cs;
}

/* The shadow equals the guest's frame except for the armed traps. */
static void assert_shadow_coherent(fixture *f, const vmt_va *armed, size_t n)
{
    for (vmt_va va = CODE_VA; va < CODE_VA + VMT_PAGE_SIZE; va++) {
        bool trap = false;
        for (size_t i = 0; i < n; i++)
            trap |= armed[i] == va;
        if (trap)
            assert_int_equal(exec_byte(f, va), 0xCC);
        else if (exec_byte(f, va) != own_byte(f, va))
            fail_msg("shadow differs from the guest's frame at %#llx", (unsigned long long)va);
    }
}

/* ---- tracer tests ---- */

/* A write elsewhere on the page lands on the guest's frame and shows in
 * the shadow; both traps stay armed and keep hitting. */
static void test_write_elsewhere_on_page(void **state)
{
    fixture *f = *state;
    vmt_tracer_bp_id a = add_bp(f, FN_A, 0), b = add_bp(f, FN_B, 0);
    const uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    push_write(f, DATA, data, sizeof data);
    drain(f);
    const vmt_response *r = last_response(f);
    assert_int_equal(r->action, VMT_ACTION_FAST_SINGLESTEP);
    assert_int_equal(r->view, 0);
    uint8_t got[8];
    assert_int_equal(vmt_mock_peek(f->mock, PA_OF(DATA), got, sizeof got), VMT_OK);
    assert_memory_equal(got, data, sizeof data); /* the guest's own frame got it */
    const vmt_va armed[] = {FN_A, FN_B};
    assert_shadow_coherent(f, armed, 2);
    assert_int_equal(own_byte(f, FN_A), 0x55); /* the guest's frame never holds a trap */
    vmt_coherence_stats cs = coh_stats(f);
    assert_int_equal(cs.writes, 1);
    assert_int_equal(cs.refreshes, 1);
    assert_int_equal(cs.overwritten, 0);
    assert_int_equal(f->nows, 0);
    push_int3(f, FN_A);
    push_int3(f, FN_B);
    drain(f);
    assert_int_equal(f->hits, 2);
    assert_true(bp_exists(f, a) && bp_exists(f, b));
}

/* A write over a trap: the breakpoint is reported (address, old and new
 * bytes, its key, its hits), dropped by default, and the guest executes
 * what it wrote; the other trap on the page stays. */
static void test_write_over_trap_dropped(void **state)
{
    fixture *f = *state;
    vmt_tracer_bp_id a = add_bp(f, FN_A, 41), b = add_bp(f, FN_B, 0);
    push_int3(f, FN_A);
    drain(f);
    const uint8_t patch[4] = {0xb8, 0x02, 0x00, 0x00}; /* mov $2, %eax ... at FN_A - 1 */
    push_write(f, FN_A - 1, patch, sizeof patch);
    drain(f);
    assert_int_equal(f->nows, 1);
    assert_int_equal(f->ow[0].id, a);
    assert_int_equal(f->ow[0].key, 41);
    assert_int_equal(f->ow[0].hits, 1);
    assert_int_equal(f->ow[0].pa, PA_OF(FN_A));
    assert_int_equal(f->ow[0].old_byte, 0x55);
    assert_int_equal(f->ow[0].new_byte, 0x02);
    assert_false(bp_exists(f, a));
    assert_true(bp_exists(f, b));
    assert_int_equal(own_byte(f, FN_A), 0x02);
    const vmt_va armed[] = {FN_B};
    assert_shadow_coherent(f, armed, 1);
    vmt_coherence_stats cs = coh_stats(f);
    assert_int_equal(cs.overwritten, 1);
    assert_int_equal(cs.dropped, 1);
    assert_int_equal(cs.rearmed, 0);
    VMT_OPTS(vmt_tracer_stats, ts);
    vmt_tracer_stats_get(f->t, &ts);
    assert_int_equal(ts.bpm.active, 1);
}

/* Without a callback the default is to drop. */
static void test_default_is_drop(void **state)
{
    fixture *f = *state;
    vmt_tracer_bp_id a = add_bp(f, FN_A, 0);
    const uint8_t x = 0xc3;
    push_write(f, FN_A, &x, 1);
    drain(f);
    assert_false(bp_exists(f, a));
    assert_int_equal(exec_byte(f, FN_A), 0xc3);
    assert_int_equal(own_byte(f, FN_A), 0xc3);
    VMT_OPTS(vmt_tracer_stats, ts);
    vmt_tracer_stats_get(f->t, &ts);
    assert_int_equal(ts.bpm.active, 0);
    assert_int_equal(ts.bpm.pending, 0); /* gone, not waiting for a page-in */
    assert_int_equal(ts.bpm.pages, 0);
    assert_int_equal(ts.ptm_entries, 0); /* its page tables are no longer watched */
    assert_int_equal(vmt_tracer_bp_count(f->t), 0);
}

/* One store over two breakpoints: both reported, both dropped, and with
 * no breakpoint left the guest runs its own frame again. */
static void test_write_spanning_two_traps(void **state)
{
    fixture *f = *state;
    f->choice = VMT_OVERWRITE_DROP;
    vmt_tracer_bp_id a = add_bp(f, FN_A, 0), c = add_bp(f, FN_C, 0);
    const uint8_t patch[8] = {0x48, 0x31, 0xc0, 0x90, 0x66, 0x90, 0xc3, 0xcc};
    push_write(f, FN_A, patch, sizeof patch);
    drain(f);
    assert_int_equal(f->nows, 2);
    bool saw_a = false, saw_c = false;
    for (unsigned i = 0; i < 2; i++) {
        saw_a |= f->ow[i].id == a && f->ow[i].new_byte == 0x48 && f->ow[i].old_byte == 0x55;
        saw_c |= f->ow[i].id == c && f->ow[i].new_byte == 0x66 && f->ow[i].old_byte == 0x55;
    }
    assert_true(saw_a && saw_c);
    assert_false(bp_exists(f, a) || bp_exists(f, c));
    uint8_t got[8];
    assert_int_equal(vmt_mock_view_read(f->mock, vmt_tracer_view(f->t), PA_OF(FN_A), got, 8),
                     VMT_OK);
    assert_memory_equal(got, patch, 8);
    vmt_gfn backing;
    assert_int_equal(
        vmt_mock_view_backing(f->mock, vmt_tracer_view(f->t), vmt_gfn_from_pa(CODE_PA), &backing),
        VMT_OK);
    assert_int_equal(backing, vmt_gfn_from_pa(CODE_PA)); /* shadow released */
}

/* Two stores, one over each of two traps, with one breakpoint kept (the
 * application re-arms) and the other dropped. */
static void test_rearm_choice(void **state)
{
    fixture *f = *state;
    f->choice = VMT_OVERWRITE_REARM;
    vmt_tracer_bp_id a = add_bp(f, FN_A, 0), b = add_bp(f, FN_B, 0);
    const uint8_t x = 0xb8;
    push_write(f, FN_A, &x, 1);
    drain(f);
    assert_int_equal(f->nows, 1);
    assert_true(bp_exists(f, a));
    assert_int_equal(exec_byte(f, FN_A), 0xCC); /* re-armed on the new code */
    assert_int_equal(own_byte(f, FN_A), 0xb8);
    const vmt_va armed[] = {FN_A, FN_B};
    assert_shadow_coherent(f, armed, 2);
    /* It keeps hitting; the step runs the new instruction in the default view. */
    push_int3(f, FN_A);
    drain(f);
    assert_int_equal(f->hits, 1);
    assert_int_equal(last_response(f)->action, VMT_ACTION_FAST_SINGLESTEP);
    assert_int_equal(last_response(f)->view, 0);
    /* Overwritten again, now dropped: the saved byte is the re-armed one. */
    f->choice = VMT_OVERWRITE_DROP;
    const uint8_t y = 0x31;
    push_write(f, FN_A, &y, 1);
    drain(f);
    assert_int_equal(f->nows, 2);
    assert_int_equal(f->ow[1].old_byte, 0xb8);
    assert_int_equal(f->ow[1].new_byte, 0x31);
    assert_false(bp_exists(f, a));
    assert_true(bp_exists(f, b));
    assert_int_equal(exec_byte(f, FN_A), 0x31);
    vmt_coherence_stats cs = coh_stats(f);
    assert_int_equal(cs.rearmed, 1);
    assert_int_equal(cs.dropped, 1);
    /* Removing the last breakpoint leaves the guest's frame as it wrote it. */
    assert_int_equal(vmt_tracer_remove(f->t, b), VMT_OK);
    assert_int_equal(exec_byte(f, FN_A), 0x31);
    assert_int_equal(exec_byte(f, FN_B), 0x55);
}

/* Several breakpoints at one address (different keys): each is asked; the
 * trap stays for the one that re-arms. */
static int choose_by_key_user;
static vmt_overwrite_choice choose_by_key(void *user, vmt_tracer *t, const vmt_tracer_overwrite *ow)
{
    (void)t;
    (*(int *)user)++;
    return ow->bp->key == 2 ? VMT_OVERWRITE_REARM : VMT_OVERWRITE_DROP;
}

static void test_choices_per_breakpoint(void **state)
{
    fixture *f = *state;
    choose_by_key_user = 0;
    assert_int_equal(vmt_tracer_set_overwrite_fn(f->t, choose_by_key, &choose_by_key_user), VMT_OK);
    vmt_tracer_bp_id one = add_bp(f, FN_A, 1), two = add_bp(f, FN_A, 2);
    const uint8_t x = 0xb8;
    push_write(f, FN_A, &x, 1);
    drain(f);
    assert_int_equal(choose_by_key_user, 2);
    assert_false(bp_exists(f, one));
    assert_true(bp_exists(f, two));
    assert_int_equal(exec_byte(f, FN_A), 0xCC);
    push_int3(f, FN_A);
    drain(f);
    assert_int_equal(f->hits, 1); /* only the kept one counts */
}

/* The instruction at rip runs exactly once from the guest's own code: one
 * step in the default view with the registers as they are (rip at the
 * trap, nothing skipped, nothing set). */
static void assert_runs_original_once(const vmt_response *r)
{
    assert_int_equal(r->action, VMT_ACTION_FAST_SINGLESTEP);
    assert_int_equal(r->view, 0);
    assert_false(r->set_regs);
    assert_false(r->set_view);
}

/* A trap removed between its hit and the handling of the event: the
 * original instruction at the same rip runs once. */
static void test_stale_event_after_removal(void **state)
{
    fixture *f = *state;
    vmt_tracer_bp_id a = add_bp(f, FN_A, 0);
    push_int3(f, FN_A);
    assert_int_equal(vmt_tracer_remove(f->t, a), VMT_OK);
    drain(f);
    assert_runs_original_once(last_response(f));
    VMT_OPTS(vmt_tracer_stats, ts);
    vmt_tracer_stats_get(f->t, &ts);
    assert_int_equal(ts.stale, 1);
    assert_int_equal(ts.reinjected, 0);
    assert_int_equal(f->hits, 0);
}

/* An int3 event that fired on the old shadow before a write dropped its
 * trap (another vCPU's write, handled first): stale, the new instruction
 * at that rip runs once from the guest's frame; if
 * the guest itself wrote an int3 there, it is the guest's and reinjected. */
static void test_stale_event_after_refresh(void **state)
{
    fixture *f = *state;
    add_bp(f, FN_A, 0);
    add_bp(f, FN_B, 0);
    const uint8_t x = 0x31;
    push_write(f, FN_A, &x, 1);
    push_int3(f, FN_A); /* fired before the write was handled */
    drain(f);
    assert_int_equal(f->nows, 1);
    assert_runs_original_once(last_response(f));
    assert_int_equal(own_byte(f, FN_A), 0x31);
    const uint8_t cc = 0xCC;
    push_write(f, FN_B, &cc, 1); /* the guest puts its own int3 there */
    push_int3(f, FN_B);
    drain(f);
    assert_int_equal(f->nows, 2);
    assert_int_equal(f->ow[1].new_byte, 0xCC);
    assert_int_equal(last_response(f)->action, VMT_ACTION_REINJECT);
    VMT_OPTS(vmt_tracer_stats, ts);
    vmt_tracer_stats_get(f->t, &ts);
    assert_int_equal(ts.stale, 1);
    assert_int_equal(ts.reinjected, 1);
    assert_int_equal(f->hits, 0);
}

/* Reads of the breakpointed page are served in the default view, where
 * the guest's frame shows no trap, before and after a write. */
static void test_reads_see_original(void **state)
{
    fixture *f = *state;
    f->choice = VMT_OVERWRITE_REARM;
    add_bp(f, FN_A, 0);
    const uint8_t x = 0x31;
    push_write(f, FN_A, &x, 1);
    drain(f);
    vmt_event ev = base_event(f, VMT_EVENT_MEMORY_ACCESS, CODE_VA + 0x800);
    ev.u.memory_access.pa = PA_OF(FN_A);
    ev.u.memory_access.access = VMT_ACCESS_R;
    assert_int_equal(vmt_mock_push_event(f->mock, &ev), VMT_OK);
    drain(f);
    const vmt_response *r = last_response(f);
    assert_int_equal(r->action, VMT_ACTION_FAST_SINGLESTEP);
    uint8_t b;
    assert_int_equal(vmt_mock_view_read(f->mock, r->view, PA_OF(FN_A), &b, 1), VMT_OK);
    assert_int_equal(b, 0x31);
    assert_int_equal(exec_byte(f, FN_A), 0xCC);
}

/* A driver without FAST_SINGLESTEP: the write is stepped in the default
 * view and the shadow rebuilt at the SINGLESTEP event that ends the step. */
static void test_write_stepped_without_fast_singlestep(void **state)
{
    fixture *f = *state;
    vmt_tracer_bp_id a = add_bp(f, FN_A, 0);
    const uint8_t x = 0x31;
    push_write(f, FN_A, &x, 1);
    vmt_event ev = base_event(f, VMT_EVENT_SINGLESTEP, CODE_VA + 0x808);
    ev.view = 0;
    assert_int_equal(vmt_mock_push_event(f->mock, &ev), VMT_OK);
    drain(f);
    const vmt_response *r;
    assert_int_equal(vmt_mock_responses(f->mock, &r), 2);
    assert_int_equal(r[0].action, VMT_ACTION_SINGLESTEP);
    assert_true(r[0].set_view);
    assert_int_equal(r[0].view, 0);
    assert_int_equal(own_byte(f, FN_A), 0x31);
    /* reported while the SINGLESTEP event was handled (queue empty), not
     * right after the write event (the step event still queued) */
    assert_int_equal(f->nows, 1);
    assert_int_equal(f->queued_at_overwrite, 0);
    assert_false(bp_exists(f, a));
    assert_int_equal(exec_byte(f, FN_A), 0x31);
    assert_true(r[1].set_view);
    assert_int_equal(r[1].view, vmt_tracer_view(f->t));
}

/* ---- bare bpm ---- */

typedef struct bare {
    vmt_core *vmi;
    vmt_mock *mock;
    vmt_bpm *bpm;
    vmt_view v1, v2;
    unsigned calls;
    vmt_overwrite last;
} bare;

static vmt_overwrite_choice bare_fn(void *user, const vmt_overwrite *ow)
{
    bare *b = user;
    b->calls++;
    b->last = *ow;
    return ow->bp.key == 99 ? VMT_OVERWRITE_REARM : VMT_OVERWRITE_DROP;
}

static void bare_setup(bare *b, uint32_t caps)
{
    memset(b, 0, sizeof *b);
    VMT_OPTS(vmt_mock_opts, mo, .max_gfn = 0x1000, .caps = caps);
    assert_int_equal(vmt_mock_core_new(&mo, &b->vmi, &b->mock), VMT_OK);
    fill_code(b->mock);
    vmt_tap_controller ctl;
    assert_int_equal(vmt_breakpoint_controller_new(&ctl), VMT_OK);
    assert_int_equal(vmt_bpm_new(ctl, &b->bpm), VMT_OK);
    assert_int_equal(vmt_core_create_view(b->vmi, VMT_ACCESS_RWX, &b->v1), VMT_OK);
    assert_int_equal(vmt_core_create_view(b->vmi, VMT_ACCESS_RWX, &b->v2), VMT_OK);
}

static void bare_free(bare *b)
{
    assert_int_equal(vmt_bpm_clear(b->bpm, b->vmi), VMT_OK);
    assert_int_equal(vmt_mock_allocated_gfns(b->mock), 0);
    vmt_bpm_free(b->bpm);
    vmt_core_free(b->vmi);
}

static void bare_insert(bare *b, vmt_view view, vmt_va va, uint64_t key, uintptr_t tag)
{
    vmt_breakpoint bp = {.ctx = vmt_ctx(va, 0x1000), .view = view, .key = key, .tag = tag};
    vmt_pa pa = PA_OF(va);
    bool ins;
    assert_int_equal(vmt_bpm_insert_with_hint(b->bpm, b->vmi, &bp, &pa, &ins), VMT_OK);
    assert_true(ins);
}

static uint8_t bare_view_byte(bare *b, vmt_view view, vmt_va va)
{
    uint8_t x;
    assert_int_equal(vmt_mock_view_read(b->mock, view, PA_OF(va), &x, 1), VMT_OK);
    return x;
}

/* Every view's shadow of the frame is rebuilt; the report carries the
 * claim (key, tag, view); the choice is applied per view. */
static void test_bpm_sync_frame_views(void **state)
{
    (void)state;
    bare b;
    bare_setup(&b, 0);
    bare_insert(&b, b.v1, FN_A, 5, 0x77);
    bare_insert(&b, b.v1, FN_B, 5, 0);
    bare_insert(&b, b.v2, FN_A, 99, 0x88);
    const uint8_t data[2] = {0x31, 0xc0};
    assert_int_equal(vmt_core_write(b.vmi, PA_OF(DATA), data, 2), VMT_OK); /* no trap touched */
    size_t n = 7;
    assert_int_equal(vmt_bpm_sync_frame(b.bpm, b.vmi, vmt_gfn_from_pa(CODE_PA), bare_fn, &b, &n),
                     VMT_OK);
    assert_int_equal(n, 0);
    assert_int_equal(bare_view_byte(&b, b.v1, DATA), 0x31);
    assert_int_equal(bare_view_byte(&b, b.v2, DATA + 1), 0xc0);
    assert_int_equal(bare_view_byte(&b, b.v1, FN_A), 0xCC);
    assert_int_equal(bare_view_byte(&b, b.v2, FN_A), 0xCC);

    const uint8_t x = 0xb8;
    assert_int_equal(vmt_core_write(b.vmi, PA_OF(FN_A), &x, 1), VMT_OK);
    assert_int_equal(vmt_bpm_sync_frame(b.bpm, b.vmi, vmt_gfn_from_pa(CODE_PA), bare_fn, &b, &n),
                     VMT_OK);
    assert_int_equal(n, 2);
    assert_int_equal(b.calls, 2);
    assert_int_equal(bare_view_byte(&b, b.v1, FN_A), 0xb8); /* key 5: dropped */
    assert_int_equal(bare_view_byte(&b, b.v1, FN_B), 0xCC);
    assert_int_equal(bare_view_byte(&b, b.v2, FN_A), 0xCC); /* key 99: re-armed */
    assert_false(vmt_bpm_contains_by_address(b.bpm, vmt_ctx(FN_A, 0x1000), 5));
    assert_true(vmt_bpm_contains_by_address(b.bpm, vmt_ctx(FN_B, 0x1000), 5));
    VMT_OPTS(vmt_bpm_stats, bs);
    vmt_bpm_stats_get(b.bpm, &bs);
    assert_int_equal(bs.active, 2);
    assert_int_equal(vmt_bpm_check(b.bpm), VMT_OK);
    /* the last report was about one of the two claims at FN_A */
    assert_int_equal(b.last.pa, PA_OF(FN_A));
    assert_int_equal(b.last.len, 1);
    assert_int_equal(b.last.old_bytes[0], 0x55);
    assert_int_equal(b.last.new_bytes[0], 0xb8);
    assert_true(b.last.bp.key == 5 ? b.last.bp.tag == 0x77 : b.last.bp.tag == 0x88);
    /* Removing the re-armed claim puts the guest's new byte back. */
    vmt_breakpoint bp = {.ctx = vmt_ctx(FN_A, 0x1000), .view = b.v2, .key = 99};
    bool removed;
    assert_int_equal(vmt_bpm_remove(b.bpm, b.vmi, &bp, &removed), VMT_OK);
    assert_true(removed);
    assert_int_equal(bare_view_byte(&b, b.v2, FN_A), 0xb8);
    bare_free(&b);
}

/* vmt_coherence: the response per driver, the flush, classification. */
static void test_coherence_object(void **state)
{
    (void)state;
    bare b;
    bare_setup(&b, 0);
    vmt_coherence *coh;
    assert_int_equal(vmt_coherence_new(NULL, &coh), VMT_E_INVALID);
    assert_int_equal(vmt_coherence_new(b.bpm, &coh), VMT_OK);
    vmt_coherence_set_overwrite_fn(coh, bare_fn, &b);
    bare_insert(&b, b.v1, FN_A, 5, 0);

    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.has_view = true;
    ev.view = b.v1;
    ev.reason = VMT_EVENT_MEMORY_ACCESS;
    ev.u.memory_access.access = VMT_ACCESS_W;
    ev.u.memory_access.pa = 0x90000; /* a frame without breakpoints */
    vmt_response resp = {.action = VMT_ACTION_REINJECT};
    assert_false(vmt_coherence_on_write(coh, b.vmi, &ev, &resp));
    assert_int_equal(resp.action, VMT_ACTION_REINJECT); /* untouched */
    ev.u.memory_access.pa = PA_OF(FN_A);
    assert_true(vmt_coherence_on_write(coh, b.vmi, &ev, &resp));
    assert_int_equal(resp.action, VMT_ACTION_FAST_SINGLESTEP);
    assert_int_equal(resp.view, 0);
    assert_false(resp.set_view);
    assert_int_equal(vmt_coherence_pending(coh), 1);
    assert_true(vmt_coherence_track_write(coh, &ev)); /* same frame: still one */
    assert_int_equal(vmt_coherence_pending(coh), 1);

    /* An int3 event at FN_A is ours until the write lands and is flushed. */
    vmt_event bpev;
    memset(&bpev, 0, sizeof bpev);
    bpev.has_view = true;
    bpev.view = b.v1;
    bpev.reason = VMT_EVENT_SOFTWARE_BREAKPOINT;
    bpev.regs.rip = FN_A;
    bpev.u.software_breakpoint.gfn = vmt_gfn_from_pa(CODE_PA);
    vmt_trap_owner owner = 0;
    assert_int_equal(vmt_coherence_classify(coh, b.vmi, &bpev, &owner), VMT_OK);
    assert_int_equal(owner, VMT_TRAP_OURS);
    const uint8_t x = 0x31;
    assert_int_equal(vmt_core_write(b.vmi, PA_OF(FN_A), &x, 1), VMT_OK);
    assert_int_equal(vmt_coherence_flush(coh, b.vmi), VMT_OK);
    assert_int_equal(vmt_coherence_pending(coh), 0);
    assert_int_equal(vmt_coherence_classify(coh, b.vmi, &bpev, &owner), VMT_OK);
    assert_int_equal(owner, VMT_TRAP_STALE);
    const uint8_t cc = 0xCC;
    assert_int_equal(vmt_core_write(b.vmi, PA_OF(FN_A), &cc, 1), VMT_OK);
    assert_int_equal(vmt_coherence_classify(coh, b.vmi, &bpev, &owner), VMT_OK);
    assert_int_equal(owner, VMT_TRAP_GUEST);
    assert_int_equal(vmt_coherence_classify(coh, b.vmi, &ev, &owner), VMT_E_INVALID);

    VMT_OPTS(vmt_coherence_stats, cs);
    vmt_coherence_stats_get(coh, &cs);
    assert_int_equal(cs.writes, 2);
    assert_int_equal(cs.refreshes, 1);
    assert_int_equal(cs.overwritten, 1);
    assert_int_equal(cs.dropped, 1);
    assert_int_equal(cs.stale, 1);
    assert_int_equal(cs.errors, 0);
    vmt_coherence_free(coh);
    vmt_coherence_free(NULL);
    bare_free(&b);
}

/* Without FAST_SINGLESTEP the response switches to the default view for a step. */
static void test_coherence_response_slow_driver(void **state)
{
    (void)state;
    bare b;
    bare_setup(&b, VMT_CAP_VIEWS | VMT_CAP_EXECUTE_ONLY);
    vmt_coherence *coh;
    assert_int_equal(vmt_coherence_new(b.bpm, &coh), VMT_OK);
    bare_insert(&b, b.v1, FN_A, 5, 0);
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.has_view = true;
    ev.view = b.v1;
    ev.reason = VMT_EVENT_MEMORY_ACCESS;
    ev.u.memory_access.access = VMT_ACCESS_W;
    ev.u.memory_access.pa = PA_OF(FN_B);
    vmt_response resp;
    assert_true(vmt_coherence_on_write(coh, b.vmi, &ev, &resp));
    assert_int_equal(resp.action, VMT_ACTION_SINGLESTEP);
    assert_true(resp.set_view);
    assert_int_equal(resp.view, 0);
    /* nothing changed under the trap: it stays, nobody is asked */
    assert_int_equal(vmt_coherence_flush(coh, b.vmi), VMT_OK);
    assert_int_equal(bare_view_byte(&b, b.v1, FN_A), 0xCC);
    assert_int_equal(b.calls, 0);
    vmt_coherence_free(coh);
    bare_free(&b);
}

/* A failed shadow write during the rebuild is reported; a retry works. */
static void test_sync_frame_driver_failure(void **state)
{
    (void)state;
    bare b;
    bare_setup(&b, 0);
    bare_insert(&b, b.v1, FN_A, 5, 0);
    const uint8_t x = 0x31;
    assert_int_equal(vmt_core_write(b.vmi, PA_OF(FN_A), &x, 1), VMT_OK);
    vmt_mock_fail_nth(b.mock, VMT_MOCK_OP_READ, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_bpm_sync_frame(b.bpm, b.vmi, vmt_gfn_from_pa(CODE_PA), bare_fn, &b, NULL),
                     VMT_E_DRIVER);
    assert_int_equal(b.calls, 0);
    assert_int_equal(bare_view_byte(&b, b.v1, FN_A), 0xCC); /* unchanged */
    assert_int_equal(vmt_bpm_check(b.bpm), VMT_OK);
    /* The shadow write fails: nothing changed either, nobody was asked. */
    vmt_mock_fail_nth(b.mock, VMT_MOCK_OP_WRITE, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_bpm_sync_frame(b.bpm, b.vmi, vmt_gfn_from_pa(CODE_PA), bare_fn, &b, NULL),
                     VMT_E_DRIVER);
    assert_int_equal(b.calls, 0);
    assert_int_equal(bare_view_byte(&b, b.v1, FN_A), 0xCC);
    assert_true(vmt_bpm_contains_by_address(b.bpm, vmt_ctx(FN_A, 0x1000), 5));
    assert_int_equal(vmt_bpm_sync_frame(b.bpm, b.vmi, vmt_gfn_from_pa(CODE_PA), bare_fn, &b, NULL),
                     VMT_OK);
    assert_int_equal(b.calls, 1);
    assert_int_equal(bare_view_byte(&b, b.v1, FN_A), 0x31);
    assert_int_equal(vmt_bpm_check(b.bpm), VMT_OK);
    bare_free(&b);
}

/* A flush whose rebuild fails keeps the frame pending; the next one does it. */
static void test_flush_failure_retried(void **state)
{
    (void)state;
    bare b;
    bare_setup(&b, 0);
    vmt_coherence *coh;
    assert_int_equal(vmt_coherence_new(b.bpm, &coh), VMT_OK);
    vmt_coherence_set_overwrite_fn(coh, bare_fn, &b);
    bare_insert(&b, b.v1, FN_A, 5, 0);
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.has_view = true;
    ev.view = b.v1;
    ev.reason = VMT_EVENT_MEMORY_ACCESS;
    ev.u.memory_access.access = VMT_ACCESS_W;
    ev.u.memory_access.pa = PA_OF(FN_A);
    assert_true(vmt_coherence_track_write(coh, &ev));
    const uint8_t x = 0x31;
    assert_int_equal(vmt_core_write(b.vmi, PA_OF(FN_A), &x, 1), VMT_OK);
    vmt_mock_fail_nth(b.mock, VMT_MOCK_OP_WRITE, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_coherence_flush(coh, b.vmi), VMT_E_DRIVER);
    assert_int_equal(vmt_coherence_pending(coh), 1);
    assert_int_equal(b.calls, 0);
    assert_int_equal(vmt_coherence_flush(coh, b.vmi), VMT_OK);
    assert_int_equal(vmt_coherence_pending(coh), 0);
    assert_int_equal(b.calls, 1);
    assert_int_equal(bare_view_byte(&b, b.v1, FN_A), 0x31);
    VMT_OPTS(vmt_coherence_stats, cs);
    vmt_coherence_stats_get(coh, &cs);
    assert_int_equal(cs.errors, 1);
    assert_int_equal(cs.refreshes, 2);
    assert_int_equal(cs.dropped, 1);
    vmt_coherence_free(coh);
    bare_free(&b);
}

/* A driver failure at every call index of a rebuild that drops one claim
 * (view 2, key 5, the view's only one), re-arms another (view 1, key 99)
 * and keeps a third (view 1, FN_B): after each failed call the indexes agree, the guest's
 * own frame holds only its own bytes, and a retry without the fault ends
 * exactly where the rebuild without any fault ends. Through the bare
 * vmt_bpm_sync_frame, or through vmt_coherence (track, flush). A dropped
 * claim whose removal failed is asked about again at the retry and never
 * left armed on the new bytes (issue 13: the undo of the failed removal
 * put the trap back over them, and the retry did not report it again). */
static void sync_fault_sweep(bool flush)
{
    const uint8_t x = 0x31;
    unsigned fired = 0;
    for (unsigned n = 1;; n++) {
        bare b;
        bare_setup(&b, 0);
        vmt_coherence *coh = NULL;
        assert_int_equal(vmt_coherence_new(b.bpm, &coh), VMT_OK);
        vmt_coherence_set_overwrite_fn(coh, bare_fn, &b);
        bare_insert(&b, b.v1, FN_A, 99, 0);
        bare_insert(&b, b.v1, FN_B, 5, 0);
        bare_insert(&b, b.v2, FN_A, 5, 0); /* alone in v2: its drop frees the shadow */
        vmt_event ev;
        memset(&ev, 0, sizeof ev);
        ev.has_view = true;
        ev.view = b.v1;
        ev.reason = VMT_EVENT_MEMORY_ACCESS;
        ev.u.memory_access.access = VMT_ACCESS_W;
        ev.u.memory_access.pa = PA_OF(FN_A);
        if (flush)
            assert_true(vmt_coherence_track_write(coh, &ev));
        assert_int_equal(vmt_core_write(b.vmi, PA_OF(FN_A), &x, 1), VMT_OK);
        uint64_t inj = vmt_mock_injected(b.mock);
        vmt_mock_fail_nth_any(b.mock, n, VMT_E_DRIVER);
        vmt_gfn gfn = vmt_gfn_from_pa(CODE_PA);
        vmt_status st = flush ? vmt_coherence_flush(coh, b.vmi)
                              : vmt_bpm_sync_frame(b.bpm, b.vmi, gfn, bare_fn, &b, NULL);
        vmt_mock_fail_nth_any(b.mock, 0, VMT_OK);
        bool hit = vmt_mock_injected(b.mock) != inj;
        if (hit) {
            fired++;
            assert_int_equal(st, VMT_E_DRIVER);
            assert_int_equal(vmt_bpm_check(b.bpm), VMT_OK);
            uint8_t own;
            assert_int_equal(vmt_mock_peek(b.mock, PA_OF(FN_A), &own, 1), VMT_OK);
            assert_int_equal(own, 0x31);
            st = flush ? vmt_coherence_flush(coh, b.vmi)
                       : vmt_bpm_sync_frame(b.bpm, b.vmi, gfn, bare_fn, &b, NULL);
        }
        assert_int_equal(st, VMT_OK);
        assert_int_equal(vmt_coherence_pending(coh), 0);
        assert_int_equal(vmt_bpm_check(b.bpm), VMT_OK);
        assert_true(b.calls >= 2);
        assert_false(vmt_bpm_contains_by_address(b.bpm, vmt_ctx(FN_A, 0x1000), 5));
        assert_true(vmt_bpm_contains_by_address(b.bpm, vmt_ctx(FN_B, 0x1000), 5));
        assert_true(vmt_bpm_contains_by_address(b.bpm, vmt_ctx(FN_A, 0x1000), 99));
        assert_int_equal(bare_view_byte(&b, b.v2, FN_A), 0x31);
        assert_int_equal(bare_view_byte(&b, b.v1, FN_B), 0xCC);
        assert_int_equal(bare_view_byte(&b, b.v1, FN_A), 0xCC);
        vmt_bpm_stats bs = {.sz = sizeof bs};
        assert_int_equal(vmt_bpm_stats_get(b.bpm, &bs), VMT_OK);
        assert_int_equal(bs.active, 2);
        assert_int_equal(vmt_mock_allocated_gfns(b.mock), 1);
        vmt_coherence_free(coh);
        bare_free(&b);
        if (!hit)
            break;
    }
    assert_true(fired >= 4); /* read, two shadow writes, the drop's calls */
}

static void test_sync_frame_fault_at_every_call(void **state)
{
    (void)state;
    sync_fault_sweep(false);
}

static void test_flush_fault_at_every_call(void **state)
{
    (void)state;
    sync_fault_sweep(true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_elsewhere_on_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_over_trap_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_is_drop, setup_no_callback, teardown),
        cmocka_unit_test_setup_teardown(test_write_spanning_two_traps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rearm_choice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_choices_per_breakpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_event_after_removal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_event_after_refresh, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reads_see_original, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_stepped_without_fast_singlestep, setup_slow_step,
                                        teardown),
        cmocka_unit_test(test_bpm_sync_frame_views),
        cmocka_unit_test(test_coherence_object),
        cmocka_unit_test(test_coherence_response_slow_driver),
        cmocka_unit_test(test_sync_frame_driver_failure),
        cmocka_unit_test(test_flush_failure_retried),
        cmocka_unit_test(test_sync_frame_fault_at_every_call),
        cmocka_unit_test(test_flush_fault_at_every_call),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
