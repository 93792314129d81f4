/* The core's wrappers: argument checks, missing driver ops, ownership of
 * the driver, and vmt_core_read_va across pages. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/holds.h"
#include "fixture.h"
#include "vmitap/mock.h"

/* ---- a driver with no operations but destroy, counting destroys ---- */

static int destroyed;
static void count_destroy(void *d)
{
    (void)d;
    destroyed++;
}
static const vmt_driver_ops empty_ops = {.name = "empty", .destroy = count_destroy};

static vmt_status cb(void *user, const vmt_event *ev, vmt_response *resp)
{
    (void)user;
    (void)ev;
    (void)resp;
    return VMT_OK;
}

static void test_missing_ops_unsupported(void **state)
{
    (void)state;
    int dummy;
    vmt_core *c;
    destroyed = 0;
    assert_int_equal(vmt_core_new(&empty_ops, &dummy, &c), VMT_OK);
    assert_ptr_equal(vmt_core_driver_ops(c), &empty_ops);
    assert_ptr_equal(vmt_core_driver(c), &dummy);
    assert_int_equal(vmt_core_default_view(c), 0);

    uint8_t b = 0;
    vmt_access acc;
    vmt_view v;
    vmt_gfn g;
    vmt_regs regs;
    vmt_driver_info info;
    vmt_pa pa;
    vmt_walk w;
    memset(&regs, 0, sizeof regs);
    assert_int_equal(vmt_core_read(c, 0, &b, 1), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_write(c, 0, &b, 1), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_translate(c, vmt_ctx(0x1000, 0), &pa), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_walk(c, vmt_ctx(0x1000, 0), &w), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_read_va(c, vmt_ctx(0x1000, 0), &b, 1), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_get_access(c, 0, 0, &acc), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_set_access(c, 0, 0, VMT_ACCESS_R, 0), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_info(c, &info), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_create_view(c, VMT_ACCESS_R, &v), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_destroy_view(c, 1), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_switch_view(c, 1), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_change_view_gfn(c, 1, 2, 3), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_reset_view_gfn(c, 1, 2), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_allocate_gfn(c, &g), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_free_gfn(c, 2), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_pause(c), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_resume(c), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_get_regs(c, 0, &regs), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_set_regs(c, 0, &regs), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_monitor(c, VMT_EVENT_SINGLESTEP, true), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_wait_for_event(c, 0, cb, NULL), VMT_E_UNSUPPORTED);
    assert_int_equal(destroyed, 0);
    vmt_core_free(c);
    assert_int_equal(destroyed, 1);
    vmt_core_free(NULL);
}

static void test_new_failure_destroys_driver(void **state)
{
    (void)state;
    int dummy;
    destroyed = 0;
    assert_int_equal(vmt_core_new(&empty_ops, &dummy, NULL), VMT_E_INVALID);
    assert_int_equal(destroyed, 1);
    vmt_core *c = (vmt_core *)&dummy;
    assert_int_equal(vmt_core_new(NULL, &dummy, &c), VMT_E_INVALID);
    assert_ptr_equal(c, (vmt_core *)&dummy);
    /* With a mock: no leak shows under ASan/valgrind if it is destroyed. */
    vmt_mock *m;
    assert_int_equal(vmt_mock_new(NULL, &m), VMT_OK);
    assert_int_equal(vmt_core_new(vmt_mock_driver_ops(), m, NULL), VMT_E_INVALID);
}

static void test_null_arguments(void **state)
{
    (void)state;
    vmt_core *c;
    vmt_mock *m;
    assert_int_equal(vmt_mock_core_new(NULL, &c, &m), VMT_OK);
    uint8_t b = 0;
    vmt_access acc = VMT_ACCESS_W;
    vmt_view v = 5;
    vmt_gfn g = 5;
    vmt_regs regs;
    vmt_driver_info info;
    vmt_pa pa = 5;
    memset(&regs, 0, sizeof regs);

    /* NULL core. */
    assert_int_equal(vmt_core_read(NULL, 0, &b, 1), VMT_E_INVALID);
    assert_int_equal(vmt_core_read(NULL, 0, &b, 0), VMT_E_INVALID);
    assert_int_equal(vmt_core_write(NULL, 0, &b, 1), VMT_E_INVALID);
    assert_int_equal(vmt_core_translate(NULL, vmt_ctx(0, 0), &pa), VMT_E_INVALID);
    assert_int_equal(vmt_core_read_va(NULL, vmt_ctx(0, 0), &b, 1), VMT_E_INVALID);
    assert_int_equal(vmt_core_get_access(NULL, 0, 0, &acc), VMT_E_INVALID);
    assert_int_equal(vmt_core_set_access(NULL, 0, 0, VMT_ACCESS_R, 0), VMT_E_INVALID);
    assert_int_equal(vmt_core_info(NULL, &info), VMT_E_INVALID);
    assert_int_equal(vmt_core_create_view(NULL, VMT_ACCESS_R, &v), VMT_E_INVALID);
    assert_int_equal(vmt_core_destroy_view(NULL, 1), VMT_E_INVALID);
    assert_int_equal(vmt_core_switch_view(NULL, 0), VMT_E_INVALID);
    assert_int_equal(vmt_core_change_view_gfn(NULL, 0, 1, 2), VMT_E_INVALID);
    assert_int_equal(vmt_core_reset_view_gfn(NULL, 0, 1), VMT_E_INVALID);
    assert_int_equal(vmt_core_allocate_gfn(NULL, &g), VMT_E_INVALID);
    assert_int_equal(vmt_core_free_gfn(NULL, 1), VMT_E_INVALID);
    assert_int_equal(vmt_core_pause(NULL), VMT_E_INVALID);
    assert_int_equal(vmt_core_resume(NULL), VMT_E_INVALID);
    assert_int_equal(vmt_core_get_regs(NULL, 0, &regs), VMT_E_INVALID);
    assert_int_equal(vmt_core_set_regs(NULL, 0, &regs), VMT_E_INVALID);
    assert_int_equal(vmt_core_monitor(NULL, VMT_EVENT_SINGLESTEP, true), VMT_E_INVALID);
    assert_int_equal(vmt_core_wait_for_event(NULL, 0, cb, NULL), VMT_E_INVALID);
    assert_null(vmt_core_driver_ops(NULL));
    assert_null(vmt_core_driver(NULL));

    /* NULL buffers and out-parameters, bad enum values. */
    assert_int_equal(vmt_core_read(c, 0, NULL, 1), VMT_E_INVALID);
    assert_int_equal(vmt_core_write(c, 0, NULL, 1), VMT_E_INVALID);
    assert_int_equal(vmt_core_read_va(c, vmt_ctx(0, 0), NULL, 1), VMT_E_INVALID);
    assert_int_equal(vmt_core_get_access(c, 0, 0, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_core_set_access(c, 0, 0, (vmt_access)8, 0), VMT_E_INVALID);
    assert_int_equal(vmt_core_info(c, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_core_create_view(c, VMT_ACCESS_R, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_core_create_view(c, (vmt_access)8, &v), VMT_E_INVALID);
    assert_int_equal(vmt_core_allocate_gfn(c, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_core_get_regs(c, 0, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_core_set_regs(c, 0, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_core_wait_for_event(c, 0, NULL, NULL), VMT_E_INVALID);
    /* None of these reached the driver, and nothing changed. */
    assert_int_equal(vmt_mock_total_calls(m), 0);
    assert_int_equal(acc, VMT_ACCESS_W);
    assert_int_equal(v, 5);
    assert_true(g == 5 && pa == 5);
    assert_false(vmt_mock_view_exists(m, 1));

    /* Zero-length reads and writes succeed without a driver call. */
    assert_int_equal(vmt_core_read(c, 0, NULL, 0), VMT_OK);
    assert_int_equal(vmt_core_write(c, 0, NULL, 0), VMT_OK);
    assert_int_equal(vmt_core_read_va(c, vmt_ctx(0x1000, 0), NULL, 0), VMT_OK);
    assert_int_equal(vmt_mock_total_calls(m), 0);
    vmt_core_free(c);
}

/* ---- vmt_core_read_va ---- */

/* Virtual layout for the read_va tests: three consecutive 4 KiB pages at
 * VA_BASE on scattered, non-consecutive frames, then an unmapped page,
 * then a 2 MiB page. */
#define VA_BASE 0x00007f0000200000ull
static const vmt_pa frames[3] = {0x9000, 0x3000, 0x7000};
#define VA_LARGE 0x00007f0000400000ull
#define PA_LARGE 0x00600000ull

static int setup(void **state)
{
    if (fixture_setup(state, NULL, true) != 0)
        return -1;
    const fixture *f = *state;
    for (unsigned i = 0; i < 3; i++) {
        if (vmt_mock_map(f->mock, f->root, VA_BASE + 0x1000ull * i, frames[i], VMT_MOCK_4K, 0))
            return -1;
        /* Each frame holds bytes that say where they are. */
        uint8_t page[4096];
        for (unsigned j = 0; j < sizeof page; j++)
            page[j] = (uint8_t)(i * 64 + j % 61);
        if (vmt_mock_poke(f->mock, frames[i], page, sizeof page))
            return -1;
    }
    if (vmt_mock_map(f->mock, f->root, VA_LARGE, PA_LARGE, VMT_MOCK_2M, 0))
        return -1;
    return 0;
}

static uint8_t expected_byte(vmt_va va)
{
    unsigned i = (unsigned)((va - VA_BASE) >> 12);
    return (uint8_t)(i * 64 + (va & 0xfff) % 61);
}

static void test_read_va_within_page(void **state)
{
    fixture *f = *state;
    uint8_t buf[16];
    assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(VA_BASE + 0x100, f->root), buf, sizeof buf),
                     VMT_OK);
    for (unsigned i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], expected_byte(VA_BASE + 0x100 + i));
}

static void test_read_va_across_pages(void **state)
{
    fixture *f = *state;
    /* Small (stack scratch) and large (heap scratch) reads, crossing one
     * and then two page boundaries onto non-consecutive frames. */
    static uint8_t buf[2 * 4096];
    const size_t lens[] = {8, 200, 300, 4096 + 16, sizeof buf};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        vmt_va va = VA_BASE + 0x1000 - 4;
        if (lens[k] > 4096)
            va = VA_BASE + 0x1000 - 32;
        memset(buf, 0, sizeof buf);
        assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(va, f->root), buf, lens[k]), VMT_OK);
        for (size_t i = 0; i < lens[k]; i++)
            assert_int_equal(buf[i], expected_byte(va + i));
    }
}

static void test_read_va_failure_leaves_buffer(void **state)
{
    fixture *f = *state;
    static uint8_t buf[600];
    const size_t lens[] = {64, sizeof buf}; /* stack and heap scratch paths */
    for (size_t k = 0; k < 2; k++) {
        /* Runs from the last mapped 4 KiB page into the unmapped one. */
        vmt_va va = VA_BASE + 0x3000 - 16;
        memset(buf, 0xa5, sizeof buf);
        assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(va, f->root), buf, lens[k]),
                         VMT_E_TRANSLATION);
        for (size_t i = 0; i < sizeof buf; i++)
            assert_int_equal(buf[i], 0xa5);
        /* A driver failure on the second page's read: same. */
        vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_READ, 4 + 1 + 4 + 1, VMT_E_DRIVER);
        va = VA_BASE + 0x1000 - 16;
        assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(va, f->root), buf, lens[k]),
                         VMT_E_DRIVER);
        for (size_t i = 0; i < sizeof buf; i++)
            assert_int_equal(buf[i], 0xa5);
    }
    /* Running off the end of the lower canonical half. */
    assert_int_equal(vmt_mock_map(f->mock, f->root, 0x00007ffffffff000ull, 0x5000, VMT_MOCK_4K, 0),
                     VMT_OK);
    assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(0x00007ffffffffff0ull, f->root), buf, 32),
                     VMT_E_INVALID);
    assert_int_equal(buf[0], 0xa5);
    assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(0x00007ffffffffff0ull, f->root), buf, 16),
                     VMT_OK);
    /* Non-canonical start, even for zero bytes. */
    assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(0x0000800000000000ull, f->root), buf, 0),
                     VMT_E_INVALID);
}

/* The length is the caller's: nothing is allocated for it, nor read,
 * before the range has been checked and every page of it translates. */
static void test_read_va_huge_length(void **state)
{
    fixture *f = *state;
    uint8_t buf[16];
    memset(buf, 0xa5, sizeof buf);
    uint64_t reads = vmt_mock_calls(f->mock, VMT_MOCK_OP_READ);
    /* Wrapping or leaving the canonical half: refused before any read. */
    assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(VA_BASE, f->root), buf, SIZE_MAX),
                     VMT_E_INVALID);
    assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(0xfffffffffffffff0ull, f->root), buf, 32),
                     VMT_E_INVALID);
    assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(VA_BASE, f->root), buf, 1ull << 47),
                     VMT_E_INVALID);
    assert_int_equal(vmt_mock_calls(f->mock, VMT_MOCK_OP_READ), reads);
    /* Canonical but unmapped from the start (64 TiB): one walk, no
     * allocation of 64 TiB first (VMT_E_NOMEM, or an abort under ASan). */
    assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(0x0000000200000000ull, f->root), buf,
                                      (size_t)1 << 46),
                     VMT_E_TRANSLATION);
    assert_true(vmt_mock_calls(f->mock, VMT_MOCK_OP_READ) - reads <= 4);
    /* Mapped for three pages, then not (512 GiB asked): found before any
     * data is read. */
    reads = vmt_mock_calls(f->mock, VMT_MOCK_OP_READ);
    assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(VA_BASE, f->root), buf, (size_t)1 << 39),
                     VMT_E_TRANSLATION);
    assert_true(vmt_mock_calls(f->mock, VMT_MOCK_OP_READ) - reads <= 4 * 4);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0xa5);
}

static void test_read_va_large_page_boundary(void **state)
{
    fixture *f = *state;
    /* The end of the 2 MiB page followed by an unmapped address. */
    const uint8_t tail[4] = {1, 2, 3, 4};
    assert_int_equal(vmt_mock_poke(f->mock, PA_LARGE + 0x200000 - 4, tail, 4), VMT_OK);
    uint8_t buf[8];
    memset(buf, 0, sizeof buf);
    assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(VA_LARGE + 0x200000 - 4, f->root), buf, 4),
                     VMT_OK);
    assert_memory_equal(buf, tail, 4);
    assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(VA_LARGE + 0x200000 - 4, f->root), buf, 8),
                     VMT_E_TRANSLATION);
    /* Map the next 4 KiB and the read goes through: large page then small. */
    assert_int_equal(vmt_mock_map(f->mock, f->root, VA_LARGE + 0x200000, 0x2000, VMT_MOCK_4K, 0),
                     VMT_OK);
    const uint8_t head[4] = {5, 6, 7, 8};
    assert_int_equal(vmt_mock_poke(f->mock, 0x2000, head, 4), VMT_OK);
    assert_int_equal(vmt_core_read_va(f->core, vmt_ctx(VA_LARGE + 0x200000 - 4, f->root), buf, 8),
                     VMT_OK);
    const uint8_t want[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_memory_equal(buf, want, 8);
}

/* ---- access holds (core/holds.h) ---- */

static vmt_access acc(fixture *f, vmt_gfn gfn, vmt_view view)
{
    vmt_access a;
    assert_int_equal(vmt_core_get_access(f->core, gfn, view, &a), VMT_OK);
    return a;
}

static void test_access_holds(void **state)
{
    fixture *f = *state;
    /* A ptm-like holder (W off, R on and X off preferred) and a breakpoint
     * controller-like one (X on, R and W off). */
    const vmt_access_hold ptm = {.off = VMT_ACCESS_W, .soft_on = VMT_ACCESS_R,
                                 .soft_off = VMT_ACCESS_X, .flags = 1};
    const vmt_access_hold bc = {.on = VMT_ACCESS_X, .off = VMT_ACCESS_RW};
    uint64_t a = vmt_core_holder_new(), b = vmt_core_holder_new();
    assert_true(a != b);
    const vmt_gfn g = 0x15;
    assert_int_equal(vmt_core_set_access(f->core, g, 0, VMT_ACCESS_RW, 0), VMT_OK);
    /* A failed first hold (reading the base, or setting): nothing held. */
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_GET_ACCESS, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_core_hold_access(f->core, g, 0, a, &ptm), VMT_E_DRIVER);
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_SET_ACCESS, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_core_hold_access(f->core, g, 0, a, &ptm), VMT_E_DRIVER);
    assert_false(vmt_core_access_held(f->core, g, 0, NULL));
    assert_int_equal(acc(f, g, 0), VMT_ACCESS_RW);
    /* Alone, each gets what it asks; together, both needs. */
    assert_int_equal(vmt_core_hold_access(f->core, g, 0, a, &ptm), VMT_OK);
    assert_int_equal(acc(f, g, 0), VMT_ACCESS_R);
    assert_int_equal(vmt_mock_last_access_flags(f->mock, g, 0), 1u);
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_SET_ACCESS, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_core_hold_access(f->core, g, 0, b, &bc), VMT_E_DRIVER);
    assert_int_equal(acc(f, g, 0), VMT_ACCESS_R);
    assert_int_equal(vmt_core_hold_access(f->core, g, 0, b, &bc), VMT_OK);
    assert_int_equal(acc(f, g, 0), VMT_ACCESS_X);
    /* Held again by the same holder: counted, no driver call. */
    uint64_t calls = vmt_mock_total_calls(f->mock);
    assert_int_equal(vmt_core_hold_access(f->core, g, 0, b, &bc), VMT_OK);
    assert_int_equal(vmt_core_release_access(f->core, g, 0, b), VMT_OK);
    assert_int_equal(vmt_mock_total_calls(f->mock), calls);
    vmt_access base = VMT_ACCESS_NONE;
    assert_true(vmt_core_access_held(f->core, g, 0, &base));
    assert_int_equal(base, VMT_ACCESS_RW);
    /* A failed release keeps the hold; the retry gives the rest back. */
    vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_SET_ACCESS, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_core_release_access(f->core, g, 0, a), VMT_E_DRIVER);
    assert_int_equal(acc(f, g, 0), VMT_ACCESS_X);
    assert_int_equal(vmt_core_release_access(f->core, g, 0, a), VMT_OK);
    assert_int_equal(acc(f, g, 0), VMT_ACCESS_X); /* b alone: X */
    assert_int_equal(vmt_core_release_access(f->core, g, 0, b), VMT_OK);
    assert_int_equal(acc(f, g, 0), VMT_ACCESS_RW); /* the base */
    assert_int_equal(vmt_mock_last_access_flags(f->mock, g, 0), 0u);
    assert_false(vmt_core_access_held(f->core, g, 0, NULL));
    /* Not a holder: nothing to do. */
    calls = vmt_mock_total_calls(f->mock);
    assert_int_equal(vmt_core_release_access(f->core, g, 0, a), VMT_OK);
    assert_int_equal(vmt_mock_total_calls(f->mock), calls);
    /* A destroyed view holds nothing: a new view with its id starts afresh. */
    vmt_view v;
    assert_int_equal(vmt_core_create_view(f->core, VMT_ACCESS_RWX, &v), VMT_OK);
    assert_int_equal(vmt_core_hold_access(f->core, g, v, a, &ptm), VMT_OK);
    assert_int_equal(vmt_core_destroy_view(f->core, v), VMT_OK);
    assert_false(vmt_core_access_held(f->core, g, v, NULL));
    assert_int_equal(vmt_core_release_access(f->core, g, v, a), VMT_OK);
    assert_int_equal(vmt_core_create_view(f->core, VMT_ACCESS_RX, &v), VMT_OK);
    assert_int_equal(vmt_core_hold_access(f->core, g, v, a, &ptm), VMT_OK);
    assert_true(vmt_core_access_held(f->core, g, v, &base));
    assert_int_equal(base, VMT_ACCESS_RX);
    /* A view that vanished under a holder: released, with the status. */
    const vmt_driver_ops *ops = vmt_core_driver_ops(f->core);
    assert_int_equal(ops->destroy_view(vmt_core_driver(f->core), v), VMT_OK);
    assert_int_equal(vmt_core_release_access(f->core, g, v, a), VMT_E_VIEW_NOT_FOUND);
    assert_false(vmt_core_access_held(f->core, g, v, NULL));
    /* Bad arguments. */
    const vmt_access_hold bad = {.on = (vmt_access)8};
    assert_int_equal(vmt_core_hold_access(NULL, g, 0, a, &ptm), VMT_E_INVALID);
    assert_int_equal(vmt_core_hold_access(f->core, g, 0, a, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_core_hold_access(f->core, g, 0, a, &bad), VMT_E_INVALID);
    assert_int_equal(vmt_core_hold_access(f->core, 1ull << 48, 0, a, &ptm), VMT_E_INVALID);
    assert_int_equal(vmt_core_release_access(NULL, g, 0, a), VMT_E_INVALID);
    assert_int_equal(vmt_core_release_access(f->core, 1ull << 48, 0, a), VMT_E_INVALID);
    assert_false(vmt_core_access_held(NULL, g, 0, NULL));
    assert_int_equal(acc(f, g, 0), VMT_ACCESS_RW);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_ops_unsupported),
        cmocka_unit_test(test_new_failure_destroys_driver),
        cmocka_unit_test(test_null_arguments),
        T(test_read_va_within_page),
        T(test_read_va_across_pages),
        T(test_read_va_failure_leaves_buffer),
        T(test_read_va_huge_length),
        T(test_access_holds),
        T(test_read_va_large_page_boundary),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
