/* Basic types: address helpers, status strings, the log callback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "vmitap/vmitap.h"

static void test_address_helpers(void **state)
{
    (void)state;
    assert_true(vmt_gfn_from_pa(0x12345678) == 0x12345);
    assert_true(vmt_pa_from_gfn(0x12345) == 0x12345000);
    assert_true(vmt_pa_in_gfn(0x77, 0xffffffff81234abcull) == 0x77abc);
    vmt_addr_ctx a = vmt_ctx(0x1000, 0x5000);
    assert_true(a.va == 0x1000 && a.root == 0x5000);
    assert_true(vmt_ctx_eq(a, vmt_ctx(0x1000, 0x5000)));
    assert_false(vmt_ctx_eq(a, vmt_ctx(0x1000, 0x6000)));
    assert_false(vmt_ctx_eq(a, vmt_ctx(0x1001, 0x5000)));
    assert_true(vmt_va_is_canonical(0));
    assert_true(vmt_va_is_canonical(0x00007fffffffffffull));
    assert_true(vmt_va_is_canonical(0xffff800000000000ull));
    assert_true(vmt_va_is_canonical(UINT64_MAX));
    assert_false(vmt_va_is_canonical(0x0000800000000000ull));
    assert_false(vmt_va_is_canonical(0xffff7fffffffffffull));
    assert_false(vmt_va_is_canonical(0x8000000000000000ull));
    vmt_regs r;
    memset(&r, 0, sizeof r);
    r.cr3 = 0x8000000012345fffull; /* NOFLUSH bit, PCID in the low bits */
    assert_true(vmt_regs_translation_root(&r, 0x1000) == 0x12345000);
    assert_true(vmt_regs_translation_root(NULL, 0x1000) == 0); /* no regs, no root */
}

static void test_status_strings(void **state)
{
    (void)state;
    const vmt_status all[] = {
        VMT_OK,         VMT_E_TRANSLATION, VMT_E_VIEW_NOT_FOUND, VMT_E_OUT_OF_BOUNDS,
        VMT_E_CONFLICT, VMT_E_INVALID,     VMT_E_NOMEM,          VMT_E_UNSUPPORTED,
        VMT_E_DRIVER,   VMT_E_TIMEOUT,     VMT_E_GUEST_EXITED,   VMT_E_GUEST_CRASHED};
    const size_t n = sizeof all / sizeof all[0];
    const char *unknown = vmt_status_str((vmt_status)1000);
    assert_non_null(unknown);
    assert_true(unknown[0] != '\0');
    for (size_t i = 0; i < n; i++) {
        const char *s = vmt_status_str(all[i]);
        assert_non_null(s);
        assert_true(s[0] != '\0');
        assert_string_not_equal(s, unknown);
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(s, vmt_status_str(all[j]));
    }
    /* The list above is complete: the value after the last is unknown. */
    assert_string_equal(vmt_status_str((vmt_status)(VMT_E_GUEST_CRASHED + 1)), unknown);
    assert_string_equal(vmt_status_str((vmt_status)-1), unknown);
}

/* ---- the log callback ---- */

typedef struct log_capture {
    int calls;
    vmt_log_level level;
    char text[128];
} log_capture;

static void capture(void *user, vmt_log_level level, const char *fmt, va_list ap)
{
    log_capture *c = user;
    c->calls++;
    c->level = level;
    vsnprintf(c->text, sizeof c->text, fmt, ap);
}

static void capture_other(void *user, vmt_log_level level, const char *fmt, va_list ap)
{
    (void)level;
    (void)fmt;
    (void)ap;
    ((log_capture *)user)->calls += 100;
}

static void test_log_callback(void **state)
{
    (void)state;
    log_capture a = {0}, b = {0};
    vmt_log(VMT_LOG_ERROR, "nobody listens %d", 1); /* default: discarded */
    assert_null(vmt_set_log_fn(capture, &a));
    vmt_log(VMT_LOG_WARN, "frame %#llx: %s", 0x1234ull, "gone");
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.level, VMT_LOG_WARN);
    assert_string_equal(a.text, "frame 0x1234: gone");

    /* Replacing returns the previous function; messages go to the new one. */
    assert_ptr_equal(vmt_set_log_fn(capture_other, &b), capture);
    vmt_log(VMT_LOG_DEBUG, "x");
    assert_int_equal(a.calls, 1);
    assert_int_equal(b.calls, 100);

    /* The library's own messages arrive too: the mock logs injections. */
    assert_ptr_equal(vmt_set_log_fn(capture, &a), capture_other);
    vmt_mock *m;
    assert_int_equal(vmt_mock_new(NULL, &m), VMT_OK);
    vmt_mock_fail_nth(m, VMT_MOCK_OP_PAUSE, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_mock_driver_ops()->pause(m), VMT_E_DRIVER);
    vmt_mock_free(m);
    assert_int_equal(a.calls, 2);
    assert_int_equal(a.level, VMT_LOG_DEBUG);
    assert_non_null(strstr(a.text, "pause"));

    /* NULL switches logging off. */
    assert_ptr_equal(vmt_set_log_fn(NULL, NULL), capture);
    vmt_log(VMT_LOG_ERROR, "dropped");
    assert_int_equal(a.calls, 2);
    assert_null(vmt_set_log_fn(NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_address_helpers),
        cmocka_unit_test(test_status_strings),
        cmocka_unit_test(test_log_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
