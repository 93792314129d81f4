// SPDX-License-Identifier: MIT
/* Instruction lengths and boundaries (core/insn.h, Zydis). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/insn.h"

#define B(s) (const uint8_t *)(s), sizeof(s) - 1

static void test_lengths(void **state)
{
    (void)state;
    assert_int_equal(vmt_insn_len(B("\x90")), 1);                  /* nop */
    assert_int_equal(vmt_insn_len(B("\x41\x55")), 2);              /* push r13 */
    assert_int_equal(vmt_insn_len(B("\xf3\x0f\x1e\xfa")), 4);      /* endbr64 */
    assert_int_equal(vmt_insn_len(B("\x48\x8b\x04\x25\x18\x00\x50\x00")), 8);
    assert_int_equal(vmt_insn_len(B("\x0f\x1f\x44\x00\x00")), 5);  /* nopl 0(%rax,%rax) */
    assert_int_equal(vmt_insn_len(B("\x66\x2e\x0f\x1f\x84\x00\x00\x00\x00\x00")), 10);
    assert_int_equal(vmt_insn_len(B("\x0f\xae\x94\x24\x10\x00\x00\x00")), 8); /* ldmxcsr */
    assert_int_equal(vmt_insn_len(B("\x48\xb8\x01\x02\x03\x04\x05\x06\x07\x08")), 10);
    /* with more bytes available than the instruction has */
    assert_int_equal(vmt_insn_len(B("\x55\x48\x89\xe5")), 1);
    /* cut short, invalid in 64-bit mode, nothing */
    assert_int_equal(vmt_insn_len(B("\x48\x8b\x04\x25\x18\x00")), 0);
    assert_int_equal(vmt_insn_len(B("\x06")), 0); /* push es */
    assert_int_equal(vmt_insn_len(NULL, 4), 0);
    assert_int_equal(vmt_insn_len((const uint8_t *)"\x90", 0), 0);
}

static void test_boundaries(void **state)
{
    (void)state;
    /* push rbp; mov rbp, rsp; mov rax, [0x500018]; ret */
    static const uint8_t f[] = "\x55\x48\x89\xe5\x48\x8b\x04\x25\x18\x00\x50\x00\xc3";
    size_t at;
    unsigned n;
    const size_t starts[] = {0, 1, 4, 12};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(vmt_insn_where_is(f, sizeof f - 1, starts[i], &at, &n), VMT_INSN_START);
        assert_int_equal(at, starts[i]);
    }
    assert_int_equal(vmt_insn_where_is(f, sizeof f - 1, 2, &at, &n), VMT_INSN_INSIDE);
    assert_int_equal(at, 1);
    assert_int_equal(n, 3);
    assert_int_equal(vmt_insn_where_is(f, sizeof f - 1, 11, &at, &n), VMT_INSN_INSIDE);
    assert_int_equal(at, 4);
    assert_int_equal(n, 8);
    /* an undecodable byte before the offset */
    static const uint8_t g[] = "\x55\x06\x90\x90";
    assert_int_equal(vmt_insn_where_is(g, 4, 3, &at, &n), VMT_INSN_UNDECODABLE);
    assert_int_equal(at, 1);
    assert_int_equal(n, 0);
    /* optional outputs */
    assert_int_equal(vmt_insn_where_is(f, sizeof f - 1, 4, NULL, NULL), VMT_INSN_START);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_boundaries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
