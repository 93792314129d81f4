// SPDX-License-Identifier: MIT
/* The options-struct rule of vmitap/api.h, at the helper and at every
 * public function that takes options or fills a sized struct: sz equal,
 * smaller (older caller), larger with a zero tail (newer caller asking
 * nothing new), larger with a non-zero tail (refused), and 0 (refused). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/opts.h"
#include "vmitap/vmitap.h"

typedef struct three {
    size_t sz;
    uint64_t a, b, c;
} three;

/* A newer caller's struct: the library's fields, then one it does not know. */
typedef struct three_plus {
    three base;
    uint64_t d;
} three_plus;

static void test_load_rule(void **state)
{
    (void)state;
    three dst;
    memset(&dst, 0xee, sizeof dst);

    /* NULL: all zero (defaults). */
    assert_int_equal(vmt_opts_load(&dst, sizeof dst, NULL), VMT_OK);
    assert_true(dst.sz == 0 && dst.a == 0 && dst.b == 0 && dst.c == 0);

    /* Equal. */
    VMT_OPTS(three, eq, .a = 1, .b = 2, .c = 3);
    assert_true(eq.sz == sizeof(three));
    assert_int_equal(vmt_opts_load(&dst, sizeof dst, &eq), VMT_OK);
    assert_true(dst.a == 1 && dst.b == 2 && dst.c == 3);

    /* Smaller: an older caller knew a and b only; c reads as zero even
     * though the bytes behind its struct are not. */
    three old = {.sz = offsetof(three, c), .a = 4, .b = 5, .c = 99};
    assert_int_equal(vmt_opts_load(&dst, sizeof dst, &old), VMT_OK);
    assert_true(dst.a == 4 && dst.b == 5 && dst.c == 0);

    /* Larger, zero tail: accepted, the known fields copied. */
    three_plus newer = {.base = {.sz = sizeof(three_plus), .a = 6, .b = 7, .c = 8}, .d = 0};
    assert_int_equal(vmt_opts_load(&dst, sizeof dst, &newer), VMT_OK);
    assert_true(dst.a == 6 && dst.b == 7 && dst.c == 8);

    /* Larger, non-zero tail: refused, dst untouched. */
    newer.d = 1;
    three before = dst;
    assert_int_equal(vmt_opts_load(&dst, sizeof dst, &newer), VMT_E_INVALID);
    assert_memory_equal(&dst, &before, sizeof dst);

    /* sz 0, or too small to hold sz itself: refused, dst untouched. */
    three zero = {.sz = 0, .a = 1};
    assert_int_equal(vmt_opts_load(&dst, sizeof dst, &zero), VMT_E_INVALID);
    zero.sz = sizeof(size_t) - 1;
    assert_int_equal(vmt_opts_load(&dst, sizeof dst, &zero), VMT_E_INVALID);
    assert_memory_equal(&dst, &before, sizeof dst);
}

static void test_store_rule(void **state)
{
    (void)state;
    three src = {.sz = sizeof src, .a = 1, .b = 2, .c = 3};

    VMT_OPTS(three, eq);
    assert_int_equal(vmt_out_store(&eq, &src, sizeof src), VMT_OK);
    assert_true(eq.sz == sizeof(three) && eq.a == 1 && eq.b == 2 && eq.c == 3);

    /* Smaller: nothing written past the caller's sz. */
    three old;
    memset(&old, 0xee, sizeof old);
    old.sz = offsetof(three, c);
    assert_int_equal(vmt_out_store(&old, &src, sizeof src), VMT_OK);
    assert_true(old.sz == offsetof(three, c) && old.a == 1 && old.b == 2);
    assert_true(old.c == 0xeeeeeeeeeeeeeeeeull);

    /* Larger: the fields the library does not know come back zero. */
    three_plus newer;
    memset(&newer, 0xee, sizeof newer);
    newer.base.sz = sizeof newer;
    assert_int_equal(vmt_out_store(&newer, &src, sizeof src), VMT_OK);
    assert_true(newer.base.sz == sizeof newer && newer.base.c == 3 && newer.d == 0);

    /* sz 0 or NULL: refused, nothing written. */
    three zero;
    memset(&zero, 0xee, sizeof zero);
    zero.sz = 0;
    three before = zero;
    assert_int_equal(vmt_out_store(&zero, &src, sizeof src), VMT_E_INVALID);
    assert_memory_equal(&zero, &before, sizeof zero);
    assert_int_equal(vmt_out_store(NULL, &src, sizeof src), VMT_E_INVALID);
}

/* Every public function with options, through its own struct type. */
#define BIGGER(type) struct { type base; uint64_t extra; }

static void test_mock_opts(void **state)
{
    (void)state;
    vmt_mock *m = NULL;
    VMT_OPTS(vmt_mock_opts, eq, .max_gfn = 0x100);
    assert_int_equal(vmt_mock_new(&eq, &m), VMT_OK);
    vmt_mock_free(m);

    BIGGER(vmt_mock_opts) big = {.base = {.sz = sizeof big, .max_gfn = 0x100}};
    m = NULL;
    assert_int_equal(vmt_mock_new(&big.base, &m), VMT_OK);
    vmt_mock_free(m);
    big.extra = 1;
    m = NULL;
    assert_int_equal(vmt_mock_new(&big.base, &m), VMT_E_INVALID);
    assert_null(m);

    eq.sz = 0;
    assert_int_equal(vmt_mock_new(&eq, &m), VMT_E_INVALID);
    assert_null(m);
    /* The smaller case is test_mock.c's test_new_defaults_and_opts. */
}

static void test_kvm_opts(void **state)
{
    (void)state;
    /* Refused before /dev/kvm is opened, so this runs anywhere. */
    vmt_kvm *k = NULL;
    VMT_OPTS(vmt_kvm_opts, o, .iterations = 1);
    o.sz = 0;
    assert_int_equal(vmt_kvm_new(&o, &k), VMT_E_INVALID);
    BIGGER(vmt_kvm_opts) big = {.base = {.sz = sizeof big}, .extra = 7};
    assert_int_equal(vmt_kvm_new(&big.base, &k), VMT_E_INVALID);
    assert_null(k);
}

typedef struct session {
    vmt_core *core;
    vmt_mock *mock;
    vmt_pa root;
} session;

static int session_setup(void **state)
{
    static session s;
    VMT_OPTS(vmt_mock_opts, mo, .max_gfn = 0x1000);
    if (vmt_mock_core_new(&mo, &s.core, &s.mock) != VMT_OK ||
        vmt_mock_new_root(s.mock, &s.root) != VMT_OK ||
        vmt_mock_map(s.mock, s.root, 0x400000, 0x10000, VMT_MOCK_4K, VMT_PTE_U) != VMT_OK)
        return -1;
    *state = &s;
    return 0;
}

static int session_teardown(void **state)
{
    session *s = *state;
    vmt_core_free(s->core);
    return 0;
}

static void test_tracer_opts(void **state)
{
    session *s = *state;
    vmt_tracer *t = NULL;

    /* Smaller: an older caller that knew `controller` only. */
    vmt_tracer_opts old = {.sz = offsetof(vmt_tracer_opts, controller) + sizeof old.controller,
                           .controller = VMT_TRACER_CONTROLLER_MEMORY};
    assert_int_equal(vmt_tracer_new(s->core, &old, &t), VMT_OK);
    assert_int_equal(vmt_tracer_controller_used(t), VMT_TRACER_CONTROLLER_MEMORY);
    vmt_tracer_free(t);

    /* The case of the issue: controller set, sz forgotten. */
    vmt_tracer_opts unsized = {.controller = VMT_TRACER_CONTROLLER_MEMORY};
    t = NULL;
    assert_int_equal(vmt_tracer_new(s->core, &unsized, &t), VMT_E_INVALID);
    assert_null(t);

    BIGGER(vmt_tracer_opts) big = {.base = {.sz = sizeof big, .controller = VMT_TRACER_CONTROLLER_INT3}};
    assert_int_equal(vmt_tracer_new(s->core, &big.base, &t), VMT_OK);
    assert_int_equal(vmt_tracer_controller_used(t), VMT_TRACER_CONTROLLER_INT3);
    vmt_tracer_free(t);
    big.extra = 1;
    t = NULL;
    assert_int_equal(vmt_tracer_new(s->core, &big.base, &t), VMT_E_INVALID);
    assert_null(t);
}

static void test_tracer_bp_and_run_opts(void **state)
{
    session *s = *state;
    vmt_tracer *t;
    VMT_OPTS(vmt_tracer_opts, to, .controller = VMT_TRACER_CONTROLLER_INT3);
    assert_int_equal(vmt_tracer_new(s->core, &to, &t), VMT_OK);
    vmt_addr_ctx at = vmt_ctx(0x400010, s->root);
    vmt_tracer_bp_id id = 0;

    /* sz 0 and a non-zero tail are refused; nothing is added. */
    vmt_tracer_bp_opts zero = {.key = 5};
    assert_int_equal(vmt_tracer_add(t, at, &zero, &id), VMT_E_INVALID);
    BIGGER(vmt_tracer_bp_opts) big = {.base = {.sz = sizeof big, .key = 5}, .extra = 1};
    assert_int_equal(vmt_tracer_add(t, at, &big.base, &id), VMT_E_INVALID);
    assert_int_equal(vmt_tracer_bp_count(t), 0);

    /* Smaller: `global` and `key` known, the rest (name) zero. */
    vmt_tracer_bp_opts old = {.sz = offsetof(vmt_tracer_bp_opts, key) + sizeof old.key, .key = 5,
                              .name = "not read"};
    assert_int_equal(vmt_tracer_add(t, at, &old, &id), VMT_OK);
    VMT_OPTS(vmt_tracer_bp_info, bi);
    assert_int_equal(vmt_tracer_bp_get(t, id, &bi), VMT_OK);
    assert_true(bi.key == 5);
    assert_null(bi.name);
    big.extra = 0;
    assert_int_equal(vmt_tracer_add(t, at, &big.base, &id), VMT_OK);
    VMT_OPTS(vmt_tracer_bp_opts, eq, .name = "eq");
    assert_int_equal(vmt_tracer_add(t, at, &eq, &id), VMT_OK);
    assert_int_equal(vmt_tracer_bp_count(t), 3);

    /* Outputs: sz 0 refused and untouched; smaller filled up to sz only. */
    vmt_tracer_bp_info none;
    memset(&none, 0xee, sizeof none);
    none.sz = 0;
    assert_int_equal(vmt_tracer_bp_get(t, id, &none), VMT_E_INVALID);
    assert_true(none.id == 0xeeeeeeee);
    vmt_tracer_stats st;
    memset(&st, 0xee, sizeof st);
    st.sz = offsetof(vmt_tracer_stats, hits);
    assert_int_equal(vmt_tracer_stats_get(t, &st), VMT_OK);
    assert_true(st.hits == 0xeeeeeeeeeeeeeeeeull); /* beyond sz: not written */
    st.sz = 0;
    assert_int_equal(vmt_tracer_stats_get(t, &st), VMT_E_INVALID);
    VMT_OPTS(vmt_tracer_stats, full);
    assert_int_equal(vmt_tracer_stats_get(t, &full), VMT_OK);
    assert_true(full.bpm.sz == sizeof full.bpm);
    assert_int_equal(full.bpm.active, 3); /* one claim per breakpoint (key = id), armed */

    /* Run options. */
    vmt_tracer_stop_reason why;
    vmt_tracer_run_opts rzero = {.max_hits = 1};
    assert_int_equal(vmt_tracer_run(t, &rzero, &why), VMT_E_INVALID);
    BIGGER(vmt_tracer_run_opts) rbig = {.base = {.sz = sizeof rbig, .timeout_ms = 1}, .extra = 9};
    assert_int_equal(vmt_tracer_run(t, &rbig.base, &why), VMT_E_INVALID);
    rbig.extra = 0;
    assert_int_equal(vmt_tracer_run(t, &rbig.base, &why), VMT_OK);
    assert_int_equal(why, VMT_TRACER_STOP_TIMEOUT);
    vmt_tracer_free(t);
}

static void test_version(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", VMITAP_VERSION_MAJOR, VMITAP_VERSION_MINOR,
             VMITAP_VERSION_PATCH);
    assert_string_equal(vmt_version(), want);
    assert_string_equal(VMITAP_VERSION_STRING, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_rule),
        cmocka_unit_test(test_store_rule),
        cmocka_unit_test(test_mock_opts),
        cmocka_unit_test(test_kvm_opts),
        cmocka_unit_test_setup_teardown(test_tracer_opts, session_setup, session_teardown),
        cmocka_unit_test_setup_teardown(test_tracer_bp_and_run_opts, session_setup,
                                        session_teardown),
        cmocka_unit_test(test_version),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
