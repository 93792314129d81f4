// SPDX-License-Identifier: MIT
/* The mock's call counting and fault injection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "vmitap/mock.h"

static int setup(void **state)
{
    VMT_OPTS(vmt_mock_opts, o, .max_gfn = 0x100);
    return fixture_setup(state, &o, false);
}

static vmt_status ok_cb(void *user, const vmt_event *ev, vmt_response *resp)
{
    (void)ev;
    (void)resp;
    ++*(int *)user;
    return VMT_OK;
}

/* Tallies one result: injected failures use VMT_E_DRIVER, which the mock
 * never returns by itself; `expected` is the status of an uninjected call. */
static int position;      /* calls made so far by call_every_op */
static int last_injected; /* position of the last injected one, or -1 */

static int tally(vmt_status got, vmt_status expected, int *other)
{
    int pos = position++;
    if (got == VMT_E_DRIVER) {
        last_injected = pos;
        return 1;
    }
    *other += got != expected;
    return 0;
}

/* Calls every driver op once, in enum order; returns how many calls failed
 * with VMT_E_DRIVER, and asserts that every other call did what it would
 * have done without injection. */
static int call_every_op(vmt_core *core)
{
    vmt_driver_info info;
    uint8_t b = 0;
    vmt_access acc;
    vmt_view v = 0;
    vmt_gfn g = 0;
    vmt_regs regs;
    int n = 0, inj = 0, other = 0;
    memset(&regs, 0, sizeof regs);
    position = 0;
    last_injected = -1;
    inj += tally(vmt_core_info(core, &info), VMT_OK, &other);
    inj += tally(vmt_core_read(core, 0, &b, 1), VMT_OK, &other);
    inj += tally(vmt_core_write(core, 0, &b, 1), VMT_OK, &other);
    inj += tally(vmt_core_get_access(core, 1, 0, &acc), VMT_OK, &other);
    inj += tally(vmt_core_set_access(core, 1, 0, VMT_ACCESS_RWX, 0), VMT_OK, &other);
    vmt_status st = vmt_core_create_view(core, VMT_ACCESS_RWX, &v);
    inj += tally(st, VMT_OK, &other);
    /* Without a view to destroy, destroying a missing one is the call. */
    inj += tally(vmt_core_destroy_view(core, st == VMT_OK ? v : 0xfff),
                 st == VMT_OK ? VMT_OK : VMT_E_VIEW_NOT_FOUND, &other);
    inj += tally(vmt_core_switch_view(core, 0), VMT_OK, &other);
    inj += tally(vmt_core_change_view_gfn(core, 0, 1, 2), VMT_OK, &other);
    inj += tally(vmt_core_reset_view_gfn(core, 0, 1), VMT_OK, &other);
    st = vmt_core_allocate_gfn(core, &g);
    inj += tally(st, VMT_OK, &other);
    inj += tally(vmt_core_free_gfn(core, st == VMT_OK ? g : 0),
                 st == VMT_OK ? VMT_OK : VMT_E_INVALID, &other);
    st = vmt_core_pause(core);
    inj += tally(st, VMT_OK, &other);
    inj += tally(vmt_core_resume(core), st == VMT_OK ? VMT_OK : VMT_E_INVALID, &other);
    inj += tally(vmt_core_get_regs(core, 0, &regs), VMT_OK, &other);
    inj += tally(vmt_core_set_regs(core, 0, &regs), VMT_OK, &other);
    inj += tally(vmt_core_monitor(core, VMT_EVENT_SINGLESTEP, true), VMT_OK, &other);
    inj += tally(vmt_core_wait_for_event(core, 0, ok_cb, &n), VMT_E_TIMEOUT, &other);
    assert_int_equal(other, 0);
    return inj;
}

static void test_every_op_counted(void **state)
{
    fixture *f = *state;
    assert_int_equal(call_every_op(f->core), 0);
    for (int op = 0; op < VMT_MOCK_OP_COUNT; op++)
        assert_int_equal(vmt_mock_calls(f->mock, (vmt_mock_op)op), 1);
    assert_int_equal(vmt_mock_total_calls(f->mock), VMT_MOCK_OP_COUNT);
    /* Failed calls count too. */
    uint8_t b;
    assert_int_equal(vmt_core_read(f->core, 0x100000, &b, 1), VMT_E_OUT_OF_BOUNDS);
    assert_int_equal(vmt_mock_calls(f->mock, VMT_MOCK_OP_READ), 2);
    assert_int_equal(vmt_mock_injected(f->mock), 0);
    assert_int_equal(vmt_mock_calls(f->mock, VMT_MOCK_OP_COUNT), 0);
}

static void test_op_names_distinct(void **state)
{
    (void)state;
    for (int i = 0; i < VMT_MOCK_OP_COUNT; i++) {
        const char *a = vmt_mock_op_name((vmt_mock_op)i);
        assert_non_null(a);
        assert_true(a[0] != '\0');
        assert_string_not_equal(a, "unknown");
        for (int j = 0; j < i; j++)
            assert_string_not_equal(a, vmt_mock_op_name((vmt_mock_op)j));
    }
    assert_string_equal(vmt_mock_op_name(VMT_MOCK_OP_COUNT), "unknown");
    assert_string_equal(vmt_mock_op_name(VMT_MOCK_OP_CHANGE_VIEW_GFN), "change_view_gfn");
}

static void test_fail_nth_of_op(void **state)
{
    fixture *f = *state;
    const uint8_t one = 1, two = 2, three = 3;
    uint8_t b;
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_WRITE, 2, VMT_E_DRIVER);
    /* Other ops do not advance the countdown. */
    assert_int_equal(vmt_core_read(f->core, 0x10, &b, 1), VMT_OK);
    assert_int_equal(vmt_core_write(f->core, 0x10, &one, 1), VMT_OK);
    assert_int_equal(vmt_core_write(f->core, 0x10, &two, 1), VMT_E_DRIVER);
    /* The failed write had no effect. */
    assert_int_equal(vmt_core_read(f->core, 0x10, &b, 1), VMT_OK);
    assert_int_equal(b, one);
    assert_int_equal(vmt_mock_injected(f->mock), 1);
    assert_int_equal(vmt_mock_calls(f->mock, VMT_MOCK_OP_WRITE), 2);
    /* It fires once. */
    assert_int_equal(vmt_core_write(f->core, 0x10, &three, 1), VMT_OK);
    assert_int_equal(vmt_core_read(f->core, 0x10, &b, 1), VMT_OK);
    assert_int_equal(b, three);
    assert_int_equal(vmt_mock_injected(f->mock), 1);
}

static void test_injected_call_has_no_effect(void **state)
{
    fixture *f = *state;
    vmt_view v = 99;
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_CREATE_VIEW, 1, VMT_E_NOMEM);
    assert_int_equal(vmt_core_create_view(f->core, VMT_ACCESS_RWX, &v), VMT_E_NOMEM);
    assert_int_equal(v, 99);
    assert_false(vmt_mock_view_exists(f->mock, 1));

    vmt_gfn g = 7;
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_ALLOCATE_GFN, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_core_allocate_gfn(f->core, &g), VMT_E_DRIVER);
    assert_true(g == 7);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 0);

    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_SET_ACCESS, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_core_set_access(f->core, 3, 0, VMT_ACCESS_R, 0), VMT_E_DRIVER);
    vmt_access acc;
    assert_int_equal(vmt_core_get_access(f->core, 3, 0, &acc), VMT_OK);
    assert_int_equal(acc, VMT_ACCESS_RWX);

    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_PAUSE, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_core_pause(f->core), VMT_E_DRIVER);
    assert_false(vmt_mock_paused(f->mock));

    /* An injected wait_for_event leaves the event queued. */
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.reason = VMT_EVENT_SINGLESTEP;
    assert_int_equal(vmt_mock_push_event(f->mock, &ev), VMT_OK);
    int n = 0;
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_WAIT_FOR_EVENT, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_core_wait_for_event(f->core, 0, ok_cb, &n), VMT_E_DRIVER);
    assert_int_equal(n, 0);
    assert_int_equal(vmt_mock_pending_events(f->mock), 1);
    assert_int_equal(vmt_core_wait_for_event(f->core, 0, ok_cb, &n), VMT_OK);
    assert_int_equal(n, 1);
    assert_int_equal(vmt_mock_injected(f->mock), 5);
}

static void test_fail_nth_cancel_and_rearm(void **state)
{
    fixture *f = *state;
    vmt_driver_info info;
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_INFO, 1, VMT_E_DRIVER);
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_INFO, 0, VMT_E_DRIVER); /* cancels */
    assert_int_equal(vmt_core_info(f->core, &info), VMT_OK);
    /* Re-arming replaces the previous injection. */
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_INFO, 1, VMT_E_DRIVER);
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_INFO, 2, VMT_E_TIMEOUT);
    assert_int_equal(vmt_core_info(f->core, &info), VMT_OK);
    assert_int_equal(vmt_core_info(f->core, &info), VMT_E_TIMEOUT);
    assert_int_equal(vmt_mock_injected(f->mock), 1);
    /* Bad arguments are ignored. */
    vmt_mock_fail_nth(NULL, VMT_MOCK_OP_INFO, 1, VMT_E_DRIVER);
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_COUNT, 1, VMT_E_DRIVER);
    vmt_mock_fail_nth_any(NULL, 1, VMT_E_DRIVER);
    assert_int_equal(call_every_op(f->core), 0);
}

/* fail_nth_any counts every driver call; walking n = 1, 2, ... through a
 * sequence hits each call of it exactly once. */
static void test_fail_nth_any_walks_every_call(void **state)
{
    fixture *f = *state;
    int total = VMT_MOCK_OP_COUNT;
    for (int nth = 1; nth <= total; nth++) {
        vmt_mock_fail_nth_any(f->mock, (unsigned)nth, VMT_E_DRIVER);
        uint64_t before[VMT_MOCK_OP_COUNT];
        for (int op = 0; op < VMT_MOCK_OP_COUNT; op++)
            before[op] = vmt_mock_calls(f->mock, (vmt_mock_op)op);
        uint64_t injected = vmt_mock_injected(f->mock);
        /* Exactly one call of the sequence fails: the nth, i.e. op nth-1. */
        assert_int_equal(call_every_op(f->core), 1);
        assert_int_equal(last_injected, nth - 1);
        assert_int_equal(vmt_mock_injected(f->mock), injected + 1);
        for (int op = 0; op < VMT_MOCK_OP_COUNT; op++)
            assert_int_equal(vmt_mock_calls(f->mock, (vmt_mock_op)op), before[op] + 1);
    }
    /* Past the end of the sequence: nothing fires within it. */
    vmt_mock_fail_nth_any(f->mock, (unsigned)total + 1, VMT_E_DRIVER);
    assert_int_equal(call_every_op(f->core), 0);
    vmt_mock_fail_nth_any(f->mock, 0, VMT_E_DRIVER);
    assert_int_equal(call_every_op(f->core), 0);
}

static void test_fail_nth_any_status_and_effect(void **state)
{
    fixture *f = *state;
    const uint8_t v = 9;
    uint8_t b = 0;
    vmt_mock_fail_nth_any(f->mock, 2, VMT_E_NOMEM);
    assert_int_equal(vmt_core_read(f->core, 0x20, &b, 1), VMT_OK);
    assert_int_equal(vmt_core_write(f->core, 0x20, &v, 1), VMT_E_NOMEM);
    assert_int_equal(vmt_core_read(f->core, 0x20, &b, 1), VMT_OK);
    assert_int_equal(b, 0);
    /* Both kinds armed on the same call: it fails once, with the op's status. */
    vmt_mock_fail_nth_any(f->mock, 1, VMT_E_NOMEM);
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_READ, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_core_read(f->core, 0x20, &b, 1), VMT_E_DRIVER);
    assert_int_equal(vmt_mock_injected(f->mock), 2);
    assert_int_equal(vmt_core_read(f->core, 0x20, &b, 1), VMT_OK);
    /* Page-table helpers and peek/poke are not driver calls. */
    uint64_t calls = vmt_mock_total_calls(f->mock);
    vmt_mock_fail_nth_any(f->mock, 1, VMT_E_DRIVER);
    vmt_pa root;
    assert_int_equal(vmt_mock_new_root(f->mock, &root), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, root, 0x1000, 0x2000, VMT_MOCK_4K, 0), VMT_OK);
    assert_int_equal(vmt_mock_poke(f->mock, 0x30, &v, 1), VMT_OK);
    assert_int_equal(vmt_mock_total_calls(f->mock), calls);
    /* ... but the core's walk is. */
    vmt_pa pa;
    assert_int_equal(vmt_core_translate(f->core, vmt_ctx(0x1000, root), &pa), VMT_E_DRIVER);
    assert_int_equal(vmt_core_translate(f->core, vmt_ctx(0x1000, root), &pa), VMT_OK);
    assert_true(pa == 0x2000);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_every_op_counted),
        cmocka_unit_test(test_op_names_distinct),
        T(test_fail_nth_of_op),
        T(test_injected_call_has_no_effect),
        T(test_fail_nth_cancel_and_rearm),
        T(test_fail_nth_any_walks_every_call),
        T(test_fail_nth_any_status_and_effect),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
