/* The mock driver: every operation, through the core where the core has a
 * wrapper (that is how the library uses it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "vmitap/mock.h"

typedef struct fixture {
    vmt_core *core;
    vmt_mock *mock;
} fixture;

#define SMALL_MAX_GFN 0x1000u /* 16 MiB of guest RAM */

static int setup(void **state)
{
    static fixture f;
    vmt_mock_opts o = {.sz = sizeof o, .max_gfn = SMALL_MAX_GFN, .vcpus = 2};
    if (vmt_mock_core_new(&o, &f.core, &f.mock) != VMT_OK)
        return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    vmt_core_free(f->core);
    return 0;
}

/* ---- memory ---- */

static void test_memory_untouched_reads_zero(void **state)
{
    fixture *f = *state;
    uint8_t buf[64];
    memset(buf, 0xaa, sizeof buf);
    assert_int_equal(vmt_core_read(f->core, 0x5000, buf, sizeof buf), VMT_OK);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0);
}

static void test_memory_write_read_cross_page(void **state)
{
    fixture *f = *state;
    uint8_t in[100], out[100];
    for (size_t i = 0; i < sizeof in; i++)
        in[i] = (uint8_t)(i * 7 + 1);
    vmt_pa pa = 0x3000 - 40; /* 40 bytes in one frame, 60 in the next */
    assert_int_equal(vmt_core_write(f->core, pa, in, sizeof in), VMT_OK);
    assert_int_equal(vmt_core_read(f->core, pa, out, sizeof out), VMT_OK);
    assert_memory_equal(in, out, sizeof in);
    /* Each frame holds its part. */
    uint8_t b;
    assert_int_equal(vmt_mock_peek(f->mock, 0x2fff, &b, 1), VMT_OK);
    assert_int_equal(b, in[39]);
    assert_int_equal(vmt_mock_peek(f->mock, 0x3000, &b, 1), VMT_OK);
    assert_int_equal(b, in[40]);
}

static void test_memory_out_of_bounds(void **state)
{
    fixture *f = *state;
    uint8_t buf[16];
    memset(buf, 0x5c, sizeof buf);
    vmt_pa end = (vmt_pa)SMALL_MAX_GFN << 12;
    assert_int_equal(vmt_core_read(f->core, end, buf, 1), VMT_E_OUT_OF_BOUNDS);
    /* Straddling the end: nothing read, nothing written. */
    assert_int_equal(vmt_core_read(f->core, end - 8, buf, sizeof buf), VMT_E_OUT_OF_BOUNDS);
    assert_int_equal(buf[0], 0x5c);
    assert_int_equal(vmt_core_write(f->core, end - 8, buf, sizeof buf), VMT_E_OUT_OF_BOUNDS);
    uint8_t last[8];
    assert_int_equal(vmt_mock_peek(f->mock, end - 8, last, sizeof last), VMT_OK);
    for (size_t i = 0; i < sizeof last; i++)
        assert_int_equal(last[i], 0);
    /* Wrapping around the address space. */
    assert_int_equal(vmt_core_read(f->core, UINT64_MAX - 3, buf, 8), VMT_E_OUT_OF_BOUNDS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_memory_untouched_reads_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_write_read_cross_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_out_of_bounds, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
