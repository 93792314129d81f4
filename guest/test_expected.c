// SPDX-License-Identifier: MIT
/* Unit test of guest/expected.h: the model agrees with the worked examples
 * of guest/README.md, per-process counters add up to their sums, and
 * unknown names are refused. (That the model matches the real guest is
 * checked where the guest runs: the KVM end-to-end tests.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "guest/expected.h"

static void readme_examples(void **state)
{
    (void)state;
    assert_int_equal(vmt_guest_expected_calls("prog_work_b@2", 100, 0, 0), 300);
    assert_int_equal(vmt_guest_expected_calls("prog_work_c@0", 100, 0, 0), 34);
    assert_int_equal(vmt_guest_expected_calls("lib_int3@1", 100, 0, 0), 12);
    assert_int_equal(vmt_guest_expected_calls("syscall_dispatch", 100, 0, 0), 303);
    assert_int_equal(vmt_guest_expected_calls("patch_target", 100, VMT_GUEST_F_SELF_PATCH, 0), 102);
    assert_int_equal(vmt_guest_expected_calls("kernel_int3_probe", 100, 0, 0), 0);
    assert_int_equal(vmt_guest_expected_calls("kernel_int3_probe", 100, VMT_GUEST_F_KERNEL_INT3, 0),
                     10);
    assert_int_equal(vmt_guest_expected_breakpoints(100, VMT_GUEST_F_KERNEL_INT3), 3 * 12 + 10);
}

static void sums_over_processes(void **state)
{
    static const char *const user[] = {"lib_mix",   "lib_getpid",  "lib_yield",   "lib_int3",
                                       "prog_main", "prog_work_a", "prog_work_b", "prog_work_c"};
    (void)state;
    for (uint64_t n = 1; n < 50; n += 7)
        for (size_t u = 0; u < sizeof(user) / sizeof(user[0]); u++) {
            int64_t sum = 0;
            for (unsigned p = 0; p < VMT_GUEST_NPROCS; p++) {
                char name[VMT_GUEST_NAME_LEN];
                snprintf(name, sizeof(name), "%s@%u", user[u], p);
                int64_t v = vmt_guest_expected_calls(name, n, 0, 0);
                assert_true(v >= 0);
                sum += v;
            }
            assert_int_equal(vmt_guest_expected_calls(user[u], n, 0, 0), sum);
        }
}

static void unknown_and_random(void **state)
{
    (void)state;
    assert_int_equal(vmt_guest_expected_calls("no_such_function", 10, 0, 0), -1);
    assert_int_equal(vmt_guest_expected_calls("lib_mix@9", 10, 0, 0), -1);
    assert_int_equal(vmt_guest_expected_calls("schedule@0", 10, 0, 0),
                     -1); /* kernel counters have no @P */
    assert_int_equal(vmt_guest_expected_calls("pager_page_in", 10, 0, 50), -1);
    assert_int_equal(vmt_guest_expected_calls("pager_page_in", 10, 0, 0), 13);
    assert_int_equal(vmt_guest_expected_calls("pager_page_out", 10, 0, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(readme_examples),
        cmocka_unit_test(sums_over_processes),
        cmocka_unit_test(unknown_and_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
