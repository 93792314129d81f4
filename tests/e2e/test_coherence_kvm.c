// SPDX-License-Identifier: MIT
/* Coherence of breakpoint shadows with guest writes (issue 8), end to end
 * on the KVM micro-VM: the bundled guest rewrites the start of its own
 * `patch_target` at round N/2 (VMT_GUEST_F_SELF_PATCH: two 8-byte stores
 * through its text mapping) while int3 breakpoints sit on that page
 * (`patch_target`, `patch_neighbor`) and on other kernel and user code.
 *
 * What must hold: the guest reads back what it wrote and runs it
 * (self_patch_errors == 0), never crashes, hits stay exact on every
 * function that was not rewritten, the breakpoint on `patch_target` is
 * reported as overwritten (old byte = its first original byte, new byte =
 * the patch's) with hits == patch_v1_calls at that moment, and, when the
 * application re-arms it instead, it counts every call of both versions.
 *
 * KVM has no execute-only pages, so guest reads of breakpointed pages see
 * the shadow: the guest's periodic checksum of its code pages counts the
 * trap bytes as mismatches (exit code VMT_GUEST_EXIT_SELFCHECK, nothing
 * else); where the tracer is stealthy the exit code must be 0.
 *
 * Exits 77 (skipped) when /dev/kvm cannot be opened. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "e2e_util.h"
#include "guest/abi.h"
#include "tracer/symbols.h"
#include "vmitap/coherence.h"
#include "vmitap/kvm.h"
#include "vmitap/tracer.h"

#define MAX_BPS 16

typedef struct session {
    e2e_session e;
    /* overwrite reports */
    vmt_overwrite_choice choice;
    unsigned reports;
    vmt_tracer_bp_id reported_id;
    uint64_t hits_at_report, v1_at_report, v2_at_report;
    uint8_t old_byte, new_byte;
} session;

static uint64_t iterations(void)
{
    return getenv("VMT_UNDER_VALGRIND") ? 20 : 120;
}

static const vmt_guest_stats *gstats(session *s)
{
    return e2e_gstats(&s->e);
}

static vmt_overwrite_choice on_overwrite(void *user, vmt_tracer *t, const vmt_tracer_overwrite *ow)
{
    session *s = user;
    (void)t;
    s->reports++;
    s->reported_id = ow->bp->id;
    s->hits_at_report = ow->bp->hits;
    s->v1_at_report = gstats(s)->patch_v1_calls;
    s->v2_at_report = gstats(s)->patch_v2_calls;
    s->old_byte = ow->old_bytes[0];
    s->new_byte = ow->new_bytes[0];
    print_message("overwritten: breakpoint %u (%s) at pa %#" PRIx64 ": %02x -> %02x after %" PRIu64
                  " hits; %s\n",
                  ow->bp->id, ow->bp->name ? ow->bp->name : "?", ow->pa, s->old_byte, s->new_byte,
                  ow->bp->hits, s->choice == VMT_OVERWRITE_REARM ? "re-arm" : "drop");
    return s->choice;
}

static void start(session *s, vmt_overwrite_choice choice, uint32_t kvm_flags, uint32_t pager)
{
    memset(s, 0, sizeof *s);
    s->choice = choice;
    VMT_OPTS(vmt_kvm_opts, ko, .iterations = iterations(),
             .seed = 5,
             .pager = pager,
             .guest_flags = VMT_GUEST_F_SELF_PATCH,
             .flags = kvm_flags);
    print_message("guest: iterations %" PRIu64 ", pager %u, self-patch, execute-only %s\n",
                  ko.iterations, pager,
                  kvm_flags & VMT_KVM_F_EMULATE_EXECUTE_ONLY ? "emulated" : "no");
    e2e_start(&s->e, &ko, VMT_TRACER_CONTROLLER_INT3, MAX_BPS);
    assert_int_equal(vmt_tracer_set_overwrite_fn(s->e.t, on_overwrite, s), VMT_OK);
}

static void run_to_end(session *s)
{
    e2e_run_to_end(&s->e);
    const vmt_guest_stats *g = gstats(s);
    size_t clen = 0;
    const char *con = vmt_kvm_console(s->e.kvm, &clen);
    print_message("console:\n%.*s\n", (int)clen, con ? con : "");
    print_message("guest exit code %u after %" PRIu64 " rounds; patches %" PRIu64 " errors %" PRIu64
                  " v1 calls %" PRIu64 " v2 calls %" PRIu64 " self-check mismatches %" PRIu64 "\n",
                  vmt_kvm_exit_code(s->e.kvm), g->rounds, g->self_patches, g->self_patch_errors,
                  g->patch_v1_calls, g->patch_v2_calls, g->selfcheck_mismatches);
}

/* Hits == calls for every breakpoint still present. */
static void check_untouched(session *s, vmt_tracer_bp_id except)
{
    for (unsigned i = 0; i < s->e.nbps; i++) {
        if (s->e.bps[i].id == except)
            continue;
        VMT_OPTS(vmt_tracer_bp_info, bi);
        assert_int_equal(vmt_tracer_bp_get(s->e.t, s->e.bps[i].id, &bi), VMT_OK);
        uint64_t want = e2e_counter(&s->e, s->e.bps[i].symbol, s->e.bps[i].proc);
        print_message("  %-18s proc %2d hits %6" PRIu64 " guest %6" PRIu64 "\n", s->e.bps[i].symbol,
                      s->e.bps[i].proc, bi.hits, want);
        assert_true(want > 0);
        assert_int_equal(bi.hits, want);
    }
}

/* The guest's own verdict: it read back and ran what it wrote; the only
 * failure allowed is the checksum of pages whose breakpoints a
 * non-stealthy driver cannot hide from reads. */
static void check_guest(session *s)
{
    const vmt_guest_stats *g = gstats(s);
    assert_int_equal(g->self_patches, 1);
    assert_int_equal(g->self_patch_errors, 0);
    assert_true(g->patch_v1_calls > 0);
    assert_true(g->patch_v2_calls > 0);
    uint32_t code = vmt_kvm_exit_code(s->e.kvm);
    if (vmt_tracer_is_stealthy(s->e.t) || g->selfcheck_mismatches == 0)
        assert_int_equal(code, VMT_GUEST_EXIT_OK);
    else
        assert_int_equal(code, VMT_GUEST_EXIT_SELFCHECK);
}

/* Kernel functions only: the KVM driver cannot single-step at CPL 3 on
 * these hosts yet (see tests/e2e/CMakeLists.txt). Set before the guest
 * boots, so every call is counted. */
static void add_all(session *s, e2e_bp **target)
{
    *target = e2e_add(&s->e, "patch_target", -1);
    e2e_add(&s->e, "patch_neighbor", -1);
    e2e_add(&s->e, "syscall_dispatch", -1);
    e2e_add(&s->e, "schedule", -1);
    e2e_add(&s->e, "selfcheck_run", -1);
}

/* The application drops the overwritten breakpoint (the default). */
static void test_self_patch_drop(void **state)
{
    (void)state;
    session s;
    start(&s, VMT_OVERWRITE_DROP, 0, 0);
    uint8_t first;
    vmt_va patch_target = e2e_sym_addr(&s.e, "patch_target");
    assert_int_equal(vmt_core_read_va(s.e.vmi, vmt_ctx(patch_target, s.e.boot_root), &first, 1),
                     VMT_OK);
    e2e_bp *target;
    add_all(&s, &target);
    run_to_end(&s);
    assert_int_equal(s.reports, 1);
    assert_int_equal(s.reported_id, target->id);
    assert_int_equal(s.old_byte, first);
    assert_int_equal(s.new_byte, 0xb8); /* mov $2, %eax */
    assert_int_equal(s.v2_at_report, 0);
    assert_int_equal(s.hits_at_report, s.v1_at_report);
    assert_int_equal(s.hits_at_report, gstats(&s)->patch_v1_calls); /* no v1 call after */
    VMT_OPTS(vmt_tracer_bp_info, bi);
    assert_int_equal(vmt_tracer_bp_get(s.e.t, target->id, &bi), VMT_E_INVALID); /* dropped */
    check_untouched(&s, target->id);
    VMT_OPTS(vmt_coherence_stats, cs);
    vmt_tracer_coherence_stats_get(s.e.t, &cs);
    print_message("coherence: writes %" PRIu64 " refreshes %" PRIu64 " overwritten %" PRIu64
                  " dropped %" PRIu64 " errors %" PRIu64 "\n",
                  cs.writes, cs.refreshes, cs.overwritten, cs.dropped, cs.errors);
    assert_int_equal(cs.writes, 2); /* the two 8-byte stores */
    assert_int_equal(cs.overwritten, 1);
    assert_int_equal(cs.dropped, 1);
    assert_int_equal(cs.errors, 0);
    check_guest(&s);
    e2e_finish(&s.e);
}

/* Breakpoints for a run with execute-only pages emulated: only on pages
 * the self-check does not run from (an instruction reading its own
 * execute-only page reads natively, see drivers/kvm/README.md): the patch
 * page and pager_page_in's. */
static void add_execute_only_set(session *s, e2e_bp **target)
{
    *target = e2e_add(&s->e, "patch_target", -1);
    e2e_add(&s->e, "patch_neighbor", -1);
    e2e_add(&s->e, "pager_page_in", -1);
}

/* The application re-arms it: the new code starts an instruction at the
 * same address, so the breakpoint counts the calls of both versions. This
 * needs a stealthy driver: the guest reads its patch back, and with RX
 * pages (plain KVM) it would read the re-armed int3 and count an error. */
static void test_self_patch_rearm(void **state)
{
    (void)state;
    session s;
    start(&s, VMT_OVERWRITE_REARM, VMT_KVM_F_EMULATE_EXECUTE_ONLY, 30);
    assert_true(vmt_tracer_is_stealthy(s.e.t));
    e2e_bp *target;
    add_execute_only_set(&s, &target);
    run_to_end(&s);
    assert_int_equal(s.reports, 1);
    assert_int_equal(s.hits_at_report, s.v1_at_report);
    VMT_OPTS(vmt_tracer_bp_info, bi);
    assert_int_equal(vmt_tracer_bp_get(s.e.t, target->id, &bi), VMT_OK);
    assert_int_equal(bi.hits, gstats(&s)->patch_v1_calls + gstats(&s)->patch_v2_calls);
    check_untouched(&s, 0); /* patch_target included: its counter counts both versions */
    VMT_OPTS(vmt_coherence_stats, cs);
    vmt_tracer_coherence_stats_get(s.e.t, &cs);
    assert_int_equal(cs.rearmed, 1);
    assert_int_equal(cs.dropped, 0);
    assert_int_equal(gstats(&s)->selfcheck_mismatches, 0);
    check_guest(&s);
    assert_int_equal(vmt_kvm_exit_code(s.e.kvm), VMT_GUEST_EXIT_OK);
    e2e_finish(&s.e);
}

/* With execute-only pages emulated the tracer is stealthy: the guest's
 * reads of the patched page (its read-back, its checksums) see its own
 * bytes throughout, and it must end with exit code 0. */
static void test_self_patch_execute_only(void **state)
{
    (void)state;
    session s;
    start(&s, VMT_OVERWRITE_DROP, VMT_KVM_F_EMULATE_EXECUTE_ONLY, 30);
    assert_true(vmt_tracer_is_stealthy(s.e.t));
    e2e_bp *target;
    add_execute_only_set(&s, &target);
    run_to_end(&s);
    assert_int_equal(s.reports, 1);
    assert_int_equal(s.reported_id, target->id);
    assert_int_equal(s.hits_at_report, gstats(&s)->patch_v1_calls);
    check_untouched(&s, target->id);
    VMT_OPTS(vmt_tracer_stats, ts);
    vmt_tracer_stats_get(s.e.t, &ts);
    print_message("stealth reads served %" PRIu64 "\n", ts.stealth_reads);
    assert_true(ts.stealth_reads > 0);
    assert_int_equal(gstats(&s)->selfcheck_mismatches, 0);
    check_guest(&s);
    assert_int_equal(vmt_kvm_exit_code(s.e.kvm), VMT_GUEST_EXIT_OK);
    e2e_finish(&s.e);
}

int main(void)
{
    char why[256];
    if (!vmt_kvm_available(why, sizeof why)) {
        fprintf(stderr, "test_coherence_kvm: skipped: %s\n", why);
        return 77;
    }
    if (getenv("VMT_TEST_FILTER"))
        cmocka_set_test_filter(getenv("VMT_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_self_patch_drop),
        cmocka_unit_test(test_self_patch_rearm),
        cmocka_unit_test(test_self_patch_execute_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
