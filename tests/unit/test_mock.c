// SPDX-License-Identifier: MIT
/* The mock driver: every operation, through the core where the core has a
 * wrapper (that is how the library uses it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fixture.h"
#include "vmitap/mock.h"

#define SMALL_MAX_GFN 0x1000u /* 16 MiB of guest RAM */

static int setup(void **state)
{
    VMT_OPTS(vmt_mock_opts, o, .max_gfn = SMALL_MAX_GFN, .vcpus = 2);
    return fixture_setup(state, &o, false);
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
    /* Reading stored nothing; writing stores the frame. */
    assert_int_equal(vmt_mock_resident_frames(f->mock), 0);
    uint32_t v = 0x11223344;
    assert_int_equal(vmt_core_write(f->core, 0x5010, &v, sizeof v), VMT_OK);
    assert_int_equal(vmt_mock_resident_frames(f->mock), 1);
    assert_int_equal(vmt_core_read(f->core, 0x5000, buf, sizeof buf), VMT_OK);
    assert_int_equal(buf[0x10], 0x44);
    assert_int_equal(buf[0x13], 0x11);
    assert_int_equal(buf[0x0f], 0);
    assert_int_equal(buf[0x14], 0);
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
    assert_int_equal(vmt_mock_resident_frames(f->mock), 2);
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

static void test_memory_peek_poke_and_null(void **state)
{
    fixture *f = *state;
    const vmt_driver_ops *ops = vmt_mock_driver_ops();
    uint64_t v = 0x0123456789abcdefull, r = 0;
    assert_int_equal(vmt_mock_poke(f->mock, 0x7ffc, &v, sizeof v), VMT_OK);
    assert_int_equal(vmt_mock_peek(f->mock, 0x7ffc, &r, sizeof r), VMT_OK);
    assert_true(r == v);
    /* peek/poke are not driver calls. */
    assert_int_equal(vmt_mock_total_calls(f->mock), 0);
    assert_int_equal(vmt_mock_peek(NULL, 0, &r, 1), VMT_E_INVALID);
    assert_int_equal(vmt_mock_poke(f->mock, 0, NULL, 1), VMT_E_INVALID);
    assert_int_equal(ops->read(f->mock, 0, NULL, 4), VMT_E_INVALID);
    assert_int_equal(ops->write(f->mock, 0, NULL, 4), VMT_E_INVALID);
    /* Zero-length at a valid address is fine and touches nothing. */
    assert_int_equal(ops->read(f->mock, 0x100, &r, 0), VMT_OK);
    assert_true(r == v);
}

/* ---- creation and info ---- */

static void test_new_defaults_and_opts(void **state)
{
    (void)state;
    vmt_mock *m;
    vmt_driver_info info;
    const vmt_driver_ops *ops = vmt_mock_driver_ops();
    assert_string_equal(ops->name, "mock");

    assert_int_equal(vmt_mock_new(NULL, &m), VMT_OK);
    assert_int_equal(ops->info(m, &info), VMT_OK);
    assert_true(info.max_gfn == 0x100000);
    assert_int_equal(info.vcpus, 1);
    assert_int_equal(info.caps, VMT_CAP_VIEWS | VMT_CAP_EXECUTE_ONLY | VMT_CAP_FAST_SINGLESTEP |
                                    VMT_CAP_EMULATE);
    assert_int_equal(ops->info(m, NULL), VMT_E_INVALID);
    ops->destroy(m);

    VMT_OPTS(vmt_mock_opts, o, .max_gfn = 0x200, .vcpus = 4, .caps = VMT_CAP_EMULATE);
    assert_int_equal(vmt_mock_new(&o, &m), VMT_OK);
    assert_int_equal(ops->info(m, &info), VMT_OK);
    assert_true(info.max_gfn == 0x200);
    assert_int_equal(info.vcpus, 4);
    assert_int_equal(info.caps, VMT_CAP_EMULATE);
    vmt_mock_free(m);

    /* sz = 0: a struct nobody sized is refused (vmitap/api.h); NULL is
     * the way to ask for the defaults. */
    o.sz = 0;
    vmt_mock *none = NULL;
    assert_int_equal(vmt_mock_new(&o, &none), VMT_E_INVALID);
    assert_null(none);
    assert_int_equal(vmt_mock_new(NULL, &m), VMT_OK);
    assert_int_equal(ops->info(m, &info), VMT_OK);
    assert_true(info.max_gfn == 0x100000);
    vmt_mock_free(m);

    /* An older, shorter struct: only max_gfn is read. */
    o.sz = offsetof(vmt_mock_opts, max_gfn) + sizeof o.max_gfn;
    assert_int_equal(vmt_mock_new(&o, &m), VMT_OK);
    assert_int_equal(ops->info(m, &info), VMT_OK);
    assert_true(info.max_gfn == 0x200);
    assert_int_equal(info.vcpus, 1);
    vmt_mock_free(m);

    /* Bad input: nothing created, out untouched. */
    vmt_mock *keep = (vmt_mock *)&o;
    o.sz = sizeof o;
    o.max_gfn = 1ull << 45;
    assert_int_equal(vmt_mock_new(&o, &keep), VMT_E_INVALID);
    assert_ptr_equal(keep, (vmt_mock *)&o);
    assert_int_equal(vmt_mock_new(NULL, NULL), VMT_E_INVALID);
    vmt_core *core = NULL;
    assert_int_equal(vmt_mock_core_new(&o, &core, NULL), VMT_E_INVALID);
    assert_null(core);
    vmt_mock_free(NULL);
}

/* ---- views ---- */

static void test_views_create_switch_destroy(void **state)
{
    fixture *f = *state;
    vmt_view a, b, c;
    assert_true(vmt_mock_view_exists(f->mock, 0));
    assert_false(vmt_mock_view_exists(f->mock, 1));
    assert_int_equal(vmt_core_create_view(f->core, VMT_ACCESS_RWX, &a), VMT_OK);
    assert_int_equal(vmt_core_create_view(f->core, VMT_ACCESS_RX, &b), VMT_OK);
    assert_int_equal(a, 1);
    assert_int_equal(b, 2);
    assert_true(vmt_mock_view_exists(f->mock, 2));

    assert_int_equal(vmt_mock_current_view(f->mock), 0);
    assert_int_equal(vmt_core_switch_view(f->core, b), VMT_OK);
    assert_int_equal(vmt_mock_current_view(f->mock), b);
    assert_int_equal(vmt_core_switch_view(f->core, 7), VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_mock_current_view(f->mock), b);

    assert_int_equal(vmt_core_destroy_view(f->core, 0), VMT_E_INVALID);
    assert_int_equal(vmt_core_destroy_view(f->core, 9), VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_core_destroy_view(f->core, a), VMT_OK);
    assert_false(vmt_mock_view_exists(f->mock, a));
    assert_int_equal(vmt_core_destroy_view(f->core, a), VMT_E_VIEW_NOT_FOUND);
    /* Destroying the current view puts the guest back in view 0. */
    assert_int_equal(vmt_core_destroy_view(f->core, b), VMT_OK);
    assert_int_equal(vmt_mock_current_view(f->mock), 0);
    /* Ids are reused lowest first. */
    assert_int_equal(vmt_core_create_view(f->core, VMT_ACCESS_R, &c), VMT_OK);
    assert_int_equal(c, 1);
    vmt_access acc;
    assert_int_equal(vmt_core_get_access(f->core, 3, c, &acc), VMT_OK);
    assert_int_equal(acc, VMT_ACCESS_R); /* a fresh view, not the old one's state */

    const vmt_driver_ops *ops = vmt_mock_driver_ops();
    assert_int_equal(ops->create_view(f->mock, VMT_ACCESS_R, NULL), VMT_E_INVALID);
    assert_int_equal(ops->create_view(f->mock, (vmt_access)8, &c), VMT_E_INVALID);
    assert_int_equal(c, 1);
}

static void test_views_need_capability(void **state)
{
    (void)state;
    VMT_OPTS(vmt_mock_opts, o, .max_gfn = 16, .caps = VMT_CAP_EMULATE);
    vmt_core *core;
    vmt_mock *m;
    assert_int_equal(vmt_mock_core_new(&o, &core, &m), VMT_OK);
    vmt_view v = 42;
    assert_int_equal(vmt_core_create_view(core, VMT_ACCESS_RWX, &v), VMT_E_UNSUPPORTED);
    assert_int_equal(v, 42);
    assert_int_equal(vmt_core_set_access(core, 1, 0, VMT_ACCESS_X, 0), VMT_E_UNSUPPORTED);
    assert_int_equal(vmt_core_set_access(core, 1, 0, VMT_ACCESS_RX, 0), VMT_OK);
    vmt_core_free(core);
}

/* ---- access ---- */

static void test_access_per_view_and_gfn(void **state)
{
    fixture *f = *state;
    vmt_view v;
    vmt_access acc;
    assert_int_equal(vmt_core_create_view(f->core, VMT_ACCESS_RW, &v), VMT_OK);
    assert_int_equal(vmt_core_get_access(f->core, 5, 0, &acc), VMT_OK);
    assert_int_equal(acc, VMT_ACCESS_RWX);
    assert_int_equal(vmt_core_get_access(f->core, 5, v, &acc), VMT_OK);
    assert_int_equal(acc, VMT_ACCESS_RW);

    assert_int_equal(
        vmt_core_set_access(f->core, 5, v, VMT_ACCESS_X, VMT_SET_ACCESS_IGNORE_PAGE_WALK_UPDATES),
        VMT_OK);
    assert_int_equal(vmt_core_get_access(f->core, 5, v, &acc), VMT_OK);
    assert_int_equal(acc, VMT_ACCESS_X);
    assert_int_equal(vmt_mock_last_access_flags(f->mock, 5, v),
                     VMT_SET_ACCESS_IGNORE_PAGE_WALK_UPDATES);
    /* Other frames and other views keep their defaults. */
    assert_int_equal(vmt_core_get_access(f->core, 6, v, &acc), VMT_OK);
    assert_int_equal(acc, VMT_ACCESS_RW);
    assert_int_equal(vmt_core_get_access(f->core, 5, 0, &acc), VMT_OK);
    assert_int_equal(acc, VMT_ACCESS_RWX);
    assert_int_equal(vmt_mock_last_access_flags(f->mock, 5, 0), 0);

    assert_int_equal(vmt_core_set_access(f->core, 5, v, VMT_ACCESS_NONE, 0), VMT_OK);
    assert_int_equal(vmt_core_get_access(f->core, 5, v, &acc), VMT_OK);
    assert_int_equal(acc, VMT_ACCESS_NONE);
    assert_int_equal(vmt_mock_last_access_flags(f->mock, 5, v), 0);

    /* Errors change nothing. */
    acc = VMT_ACCESS_W;
    assert_int_equal(vmt_core_get_access(f->core, 5, 9, &acc), VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_core_get_access(f->core, SMALL_MAX_GFN, 0, &acc), VMT_E_OUT_OF_BOUNDS);
    assert_int_equal(acc, VMT_ACCESS_W);
    assert_int_equal(vmt_core_set_access(f->core, 5, 9, VMT_ACCESS_R, 0), VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_core_set_access(f->core, SMALL_MAX_GFN, 0, VMT_ACCESS_R, 0),
                     VMT_E_OUT_OF_BOUNDS);
    const vmt_driver_ops *ops = vmt_mock_driver_ops();
    assert_int_equal(ops->set_access(f->mock, 5, v, (vmt_access)9, 0), VMT_E_INVALID);
    assert_int_equal(ops->set_access(f->mock, 5, v, VMT_ACCESS_R, 0x80), VMT_E_INVALID);
    assert_int_equal(ops->get_access(f->mock, 5, v, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_core_get_access(f->core, 5, v, &acc), VMT_OK);
    assert_int_equal(acc, VMT_ACCESS_NONE);
}

/* ---- frame remapping ---- */

static void test_remap_per_view(void **state)
{
    fixture *f = *state;
    vmt_view v;
    assert_int_equal(vmt_core_create_view(f->core, VMT_ACCESS_RWX, &v), VMT_OK);
    const uint8_t orig = 0x11, other = 0x22;
    assert_int_equal(vmt_core_write(f->core, 0x10008, &orig, 1), VMT_OK);  /* gfn 0x10 */
    assert_int_equal(vmt_core_write(f->core, 0x20008, &other, 1), VMT_OK); /* gfn 0x20 */

    assert_int_equal(vmt_core_change_view_gfn(f->core, v, 0x10, 0x20), VMT_OK);
    vmt_gfn back;
    assert_int_equal(vmt_mock_view_backing(f->mock, v, 0x10, &back), VMT_OK);
    assert_true(back == 0x20);
    assert_int_equal(vmt_mock_view_backing(f->mock, 0, 0x10, &back), VMT_OK);
    assert_true(back == 0x10);

    /* The view sees the other frame; view 0 and raw reads do not. */
    uint8_t b;
    assert_int_equal(vmt_mock_view_read(f->mock, v, 0x10008, &b, 1), VMT_OK);
    assert_int_equal(b, other);
    assert_int_equal(vmt_mock_view_read(f->mock, 0, 0x10008, &b, 1), VMT_OK);
    assert_int_equal(b, orig);
    assert_int_equal(vmt_core_read(f->core, 0x10008, &b, 1), VMT_OK);
    assert_int_equal(b, orig);
    /* A view read across the remapped frame's end goes on in the next,
     * unremapped frame. */
    const uint8_t next = 0x33;
    assert_int_equal(vmt_core_write(f->core, 0x11000, &next, 1), VMT_OK);
    uint8_t two[2];
    assert_int_equal(vmt_core_write(f->core, 0x20fff, &other, 1), VMT_OK);
    assert_int_equal(vmt_mock_view_read(f->mock, v, 0x10fff, two, 2), VMT_OK);
    assert_int_equal(two[0], other);
    assert_int_equal(two[1], next);

    /* Remap again to another frame, then reset. */
    assert_int_equal(vmt_core_change_view_gfn(f->core, v, 0x10, 0x30), VMT_OK);
    assert_int_equal(vmt_mock_view_backing(f->mock, v, 0x10, &back), VMT_OK);
    assert_true(back == 0x30);
    assert_int_equal(vmt_core_reset_view_gfn(f->core, v, 0x10), VMT_OK);
    assert_int_equal(vmt_mock_view_backing(f->mock, v, 0x10, &back), VMT_OK);
    assert_true(back == 0x10);
    assert_int_equal(vmt_core_reset_view_gfn(f->core, v, 0x10), VMT_OK); /* idempotent */
    /* Remapping a frame onto itself is the same as resetting it. */
    assert_int_equal(vmt_core_change_view_gfn(f->core, v, 0x10, 0x20), VMT_OK);
    assert_int_equal(vmt_core_change_view_gfn(f->core, v, 0x10, 0x10), VMT_OK);
    assert_int_equal(vmt_mock_view_backing(f->mock, v, 0x10, &back), VMT_OK);
    assert_true(back == 0x10);

    /* Errors. */
    assert_int_equal(vmt_core_change_view_gfn(f->core, 9, 0x10, 0x20), VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_core_change_view_gfn(f->core, v, 0x10, SMALL_MAX_GFN),
                     VMT_E_OUT_OF_BOUNDS);
    assert_int_equal(vmt_core_change_view_gfn(f->core, v, SMALL_MAX_GFN, 0x10),
                     VMT_E_OUT_OF_BOUNDS);
    assert_int_equal(vmt_core_reset_view_gfn(f->core, 9, 0x10), VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_core_reset_view_gfn(f->core, v, SMALL_MAX_GFN), VMT_E_OUT_OF_BOUNDS);
    assert_int_equal(vmt_mock_view_backing(f->mock, 9, 0x10, &back), VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_mock_view_read(f->mock, 9, 0x10000, &b, 1), VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_mock_view_read(f->mock, v, (vmt_pa)SMALL_MAX_GFN << 12, &b, 1),
                     VMT_E_OUT_OF_BOUNDS);
    assert_int_equal(vmt_mock_view_backing(f->mock, v, 0x10, &back), VMT_OK);
    assert_true(back == 0x10);
    /* Destroying a view drops its remappings with it. */
    assert_int_equal(vmt_core_change_view_gfn(f->core, v, 0x10, 0x20), VMT_OK);
    assert_int_equal(vmt_core_destroy_view(f->core, v), VMT_OK);
    assert_int_equal(vmt_core_create_view(f->core, VMT_ACCESS_RWX, &v), VMT_OK);
    assert_int_equal(vmt_mock_view_backing(f->mock, v, 0x10, &back), VMT_OK);
    assert_true(back == 0x10);
}

/* ---- shadow frames ---- */

static void test_allocate_free(void **state)
{
    fixture *f = *state;
    vmt_gfn a, b, c;
    assert_int_equal(vmt_core_allocate_gfn(f->core, &a), VMT_OK);
    assert_int_equal(vmt_core_allocate_gfn(f->core, &b), VMT_OK);
    assert_true(a == SMALL_MAX_GFN);
    assert_true(b == SMALL_MAX_GFN + 1);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 2);

    /* Shadow frames are raw memory like any other, and start zeroed. */
    uint64_t v = 0xfeedfacecafebeefull, r = 1;
    assert_int_equal(vmt_core_read(f->core, vmt_pa_from_gfn(a), &r, sizeof r), VMT_OK);
    assert_true(r == 0);
    /* A write across the end of RAM into the first shadow frame works. */
    vmt_pa edge = vmt_pa_from_gfn(a) - 4;
    assert_int_equal(vmt_core_write(f->core, edge, &v, sizeof v), VMT_OK);
    assert_int_equal(vmt_core_read(f->core, edge, &r, sizeof r), VMT_OK);
    assert_true(r == v);
    /* ... but not past the last one. */
    assert_int_equal(vmt_core_read(f->core, vmt_pa_from_gfn(b + 1), &r, 1), VMT_E_OUT_OF_BOUNDS);
    vmt_access acc;
    assert_int_equal(vmt_core_set_access(f->core, a, 0, VMT_ACCESS_R, 0), VMT_OK);
    assert_int_equal(vmt_core_get_access(f->core, a, 0, &acc), VMT_OK);
    assert_int_equal(acc, VMT_ACCESS_R);

    /* Freeing: the frame is gone, with its contents and its access. */
    assert_int_equal(vmt_core_free_gfn(f->core, a), VMT_OK);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 1);
    assert_int_equal(vmt_core_read(f->core, vmt_pa_from_gfn(a), &r, 1), VMT_E_OUT_OF_BOUNDS);
    assert_int_equal(vmt_core_get_access(f->core, a, 0, &acc), VMT_E_OUT_OF_BOUNDS);
    assert_int_equal(vmt_core_free_gfn(f->core, a), VMT_E_INVALID);
    assert_int_equal(vmt_core_free_gfn(f->core, 5), VMT_E_INVALID); /* guest RAM */
    /* The lowest free frame comes back, zeroed and with default access. */
    assert_int_equal(vmt_core_allocate_gfn(f->core, &c), VMT_OK);
    assert_true(c == a);
    assert_int_equal(vmt_core_read(f->core, vmt_pa_from_gfn(c), &r, sizeof r), VMT_OK);
    assert_true(r == 0);
    assert_int_equal(vmt_core_get_access(f->core, c, 0, &acc), VMT_OK);
    assert_int_equal(acc, VMT_ACCESS_RWX);
    assert_int_equal(vmt_core_allocate_gfn(f->core, &c), VMT_OK);
    assert_true(c == b + 1);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 3);
}

static void test_free_remapped_frame_conflicts(void **state)
{
    fixture *f = *state;
    vmt_view v;
    vmt_gfn s;
    assert_int_equal(vmt_core_create_view(f->core, VMT_ACCESS_RWX, &v), VMT_OK);
    assert_int_equal(vmt_core_allocate_gfn(f->core, &s), VMT_OK);
    const uint8_t trap = 0xcc;
    assert_int_equal(vmt_core_write(f->core, vmt_pa_from_gfn(s) + 1, &trap, 1), VMT_OK);
    assert_int_equal(vmt_core_change_view_gfn(f->core, v, 0x40, s), VMT_OK);
    uint8_t b;
    assert_int_equal(vmt_mock_view_read(f->mock, v, 0x40001, &b, 1), VMT_OK);
    assert_int_equal(b, trap);
    assert_int_equal(vmt_core_free_gfn(f->core, s), VMT_E_CONFLICT);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 1);
    assert_int_equal(vmt_core_reset_view_gfn(f->core, v, 0x40), VMT_OK);
    assert_int_equal(vmt_core_free_gfn(f->core, s), VMT_OK);
    assert_int_equal(vmt_mock_allocated_gfns(f->mock), 0);
    assert_int_equal(vmt_mock_resident_frames(f->mock), 0);
    const vmt_driver_ops *ops = vmt_mock_driver_ops();
    assert_int_equal(ops->allocate_gfn(f->mock, NULL), VMT_E_INVALID);
}

/* ---- pause, registers, monitor ---- */

static void test_pause_resume(void **state)
{
    fixture *f = *state;
    assert_false(vmt_mock_paused(f->mock));
    assert_int_equal(vmt_core_resume(f->core), VMT_E_INVALID); /* not paused */
    assert_int_equal(vmt_core_pause(f->core), VMT_OK);
    assert_true(vmt_mock_paused(f->mock));
    assert_int_equal(vmt_core_pause(f->core), VMT_OK);
    assert_int_equal(vmt_mock_pause_depth(f->mock), 2);
    assert_int_equal(vmt_core_resume(f->core), VMT_OK);
    assert_true(vmt_mock_paused(f->mock));
    assert_int_equal(vmt_core_resume(f->core), VMT_OK);
    assert_false(vmt_mock_paused(f->mock));
    assert_int_equal(vmt_mock_pause_depth(f->mock), 0);
}

static void test_regs_per_vcpu(void **state)
{
    fixture *f = *state;
    vmt_regs r;
    memset(&r, 0, sizeof r);
    r.rip = 0xffffffff81000000ull;
    r.cr3 = 0x1000;
    r.cs = 0x10;
    assert_int_equal(vmt_core_set_regs(f->core, 1, &r), VMT_OK);
    vmt_regs got;
    memset(&got, 0xff, sizeof got);
    assert_int_equal(vmt_core_get_regs(f->core, 0, &got), VMT_OK);
    assert_true(got.rip == 0); /* vCPU 0 untouched */
    assert_int_equal(vmt_core_get_regs(f->core, 1, &got), VMT_OK);
    assert_true(got.rip == r.rip);
    assert_true(got.cr3 == r.cr3);
    assert_int_equal(got.cs, 0x10);
    /* vmt_mock_regs is the same storage. */
    vmt_mock_regs(f->mock, 0)->rax = 77;
    assert_int_equal(vmt_core_get_regs(f->core, 0, &got), VMT_OK);
    assert_true(got.rax == 77);
    assert_null(vmt_mock_regs(f->mock, 2));
    assert_int_equal(vmt_core_get_regs(f->core, 2, &got), VMT_E_INVALID);
    assert_int_equal(vmt_core_set_regs(f->core, 2, &r), VMT_E_INVALID);
    assert_true(got.rax == 77);
}

static void test_monitor_flags(void **state)
{
    fixture *f = *state;
    assert_false(vmt_mock_monitoring(f->mock, VMT_EVENT_SOFTWARE_BREAKPOINT));
    assert_int_equal(vmt_core_monitor(f->core, VMT_EVENT_SOFTWARE_BREAKPOINT, true), VMT_OK);
    assert_true(vmt_mock_monitoring(f->mock, VMT_EVENT_SOFTWARE_BREAKPOINT));
    assert_false(vmt_mock_monitoring(f->mock, VMT_EVENT_SINGLESTEP));
    assert_false(vmt_mock_monitoring(f->mock, VMT_EVENT_MEMORY_ACCESS));
    assert_int_equal(vmt_core_monitor(f->core, VMT_EVENT_SINGLESTEP, true), VMT_OK);
    assert_int_equal(vmt_core_monitor(f->core, VMT_EVENT_SOFTWARE_BREAKPOINT, false), VMT_OK);
    assert_false(vmt_mock_monitoring(f->mock, VMT_EVENT_SOFTWARE_BREAKPOINT));
    assert_true(vmt_mock_monitoring(f->mock, VMT_EVENT_SINGLESTEP));
    assert_int_equal(vmt_core_monitor(f->core, (vmt_event_reason)0, true), VMT_E_INVALID);
    assert_int_equal(vmt_core_monitor(f->core, (vmt_event_reason)99, true), VMT_E_INVALID);
    assert_false(vmt_mock_monitoring(f->mock, (vmt_event_reason)99));
}

/* ---- events ---- */

typedef struct cb_state {
    int calls;
    vmt_event seen[4];
    vmt_status ret;
    vmt_response answer;
} cb_state;

static vmt_status record_cb(void *user, const vmt_event *ev, vmt_response *resp)
{
    cb_state *s = user;
    /* The mock hands the callback a clean response. */
    assert_int_equal(resp->action, VMT_ACTION_CONTINUE);
    assert_false(resp->set_view);
    assert_false(resp->set_regs);
    if (s->calls < 4)
        s->seen[s->calls] = *ev;
    s->calls++;
    *resp = s->answer;
    return s->ret;
}

static vmt_event make_bp_event(vmt_vcpu vcpu, vmt_gfn gfn, uint64_t rip)
{
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.vcpu = vcpu;
    ev.reason = VMT_EVENT_SOFTWARE_BREAKPOINT;
    ev.regs.rip = rip;
    ev.u.software_breakpoint.gfn = gfn;
    ev.u.software_breakpoint.insn_len = 1;
    return ev;
}

static void test_events_in_order_one_per_call(void **state)
{
    fixture *f = *state;
    cb_state s = {0};
    assert_int_equal(vmt_core_wait_for_event(f->core, 0, record_cb, &s), VMT_E_TIMEOUT);
    assert_int_equal(s.calls, 0);

    vmt_event e1 = make_bp_event(0, 0x10, 0x1000);
    vmt_event e2 = make_bp_event(1, 0x20, 0x2000);
    assert_int_equal(vmt_mock_push_event(f->mock, &e1), VMT_OK);
    assert_int_equal(vmt_mock_push_event(f->mock, &e2), VMT_OK);
    assert_int_equal(vmt_mock_pending_events(f->mock), 2);

    s.answer.action = VMT_ACTION_REINJECT;
    assert_int_equal(vmt_core_wait_for_event(f->core, 100, record_cb, &s), VMT_OK);
    assert_int_equal(s.calls, 1);
    assert_int_equal(vmt_mock_pending_events(f->mock), 1);
    assert_true(s.seen[0].u.software_breakpoint.gfn == 0x10);
    assert_true(s.seen[0].regs.rip == 0x1000);

    s.answer.action = VMT_ACTION_SINGLESTEP;
    assert_int_equal(vmt_core_wait_for_event(f->core, 100, record_cb, &s), VMT_OK);
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.seen[1].vcpu, 1);
    assert_true(s.seen[1].u.software_breakpoint.gfn == 0x20);
    assert_int_equal(vmt_core_wait_for_event(f->core, 100, record_cb, &s), VMT_E_TIMEOUT);
    assert_int_equal(s.calls, 2);

    const vmt_response *r;
    assert_int_equal(vmt_mock_responses(f->mock, &r), 2);
    assert_int_equal(r[0].action, VMT_ACTION_REINJECT);
    assert_int_equal(r[1].action, VMT_ACTION_SINGLESTEP);
    vmt_mock_clear_responses(f->mock);
    assert_int_equal(vmt_mock_responses(f->mock, NULL), 0);

    /* Events the mock cannot deliver are refused. */
    vmt_event bad = make_bp_event(2, 0, 0); /* only 2 vCPUs */
    assert_int_equal(vmt_mock_push_event(f->mock, &bad), VMT_E_INVALID);
    bad.vcpu = 0;
    bad.reason = (vmt_event_reason)0;
    assert_int_equal(vmt_mock_push_event(f->mock, &bad), VMT_E_INVALID);
    assert_int_equal(vmt_mock_push_event(f->mock, NULL), VMT_E_INVALID);
    assert_int_equal(vmt_mock_pending_events(f->mock), 0);
}

static void test_events_response_applied(void **state)
{
    fixture *f = *state;
    vmt_view v;
    assert_int_equal(vmt_core_create_view(f->core, VMT_ACCESS_RWX, &v), VMT_OK);
    vmt_event e = make_bp_event(1, 0x10, 0x1000);
    cb_state s = {0};

    /* set_regs writes the event's vCPU; set_view switches the view. */
    s.answer.set_regs = true;
    s.answer.regs = e.regs;
    s.answer.regs.rip = 0x1001;
    s.answer.set_view = true;
    s.answer.view = v;
    assert_int_equal(vmt_mock_push_event(f->mock, &e), VMT_OK);
    assert_int_equal(vmt_core_wait_for_event(f->core, 0, record_cb, &s), VMT_OK);
    assert_true(vmt_mock_regs(f->mock, 1)->rip == 0x1001);
    assert_true(vmt_mock_regs(f->mock, 0)->rip == 0);
    assert_int_equal(vmt_mock_current_view(f->mock), v);

    /* A response that does not ask for them changes neither. */
    memset(&s.answer, 0, sizeof s.answer);
    assert_int_equal(vmt_mock_push_event(f->mock, &e), VMT_OK);
    assert_int_equal(vmt_core_wait_for_event(f->core, 0, record_cb, &s), VMT_OK);
    assert_true(vmt_mock_regs(f->mock, 1)->rip == 0x1001);
    assert_int_equal(vmt_mock_current_view(f->mock), v);

    /* An unknown view: recorded, not applied, reported. */
    s.answer.set_view = true;
    s.answer.view = 33;
    s.answer.set_regs = true;
    s.answer.regs.rip = 0x5555;
    assert_int_equal(vmt_mock_push_event(f->mock, &e), VMT_OK);
    assert_int_equal(vmt_core_wait_for_event(f->core, 0, record_cb, &s), VMT_E_VIEW_NOT_FOUND);
    assert_int_equal(vmt_mock_current_view(f->mock), v);
    assert_true(vmt_mock_regs(f->mock, 1)->rip == 0x1001);
    const vmt_response *r;
    assert_int_equal(vmt_mock_responses(f->mock, &r), 3);
    assert_int_equal(r[2].view, 33);

    /* A failing callback: its status comes back, the event is consumed,
     * nothing recorded or applied. */
    s.answer.view = 0;
    s.ret = VMT_E_DRIVER;
    assert_int_equal(vmt_mock_push_event(f->mock, &e), VMT_OK);
    assert_int_equal(vmt_core_wait_for_event(f->core, 0, record_cb, &s), VMT_E_DRIVER);
    assert_int_equal(vmt_mock_pending_events(f->mock), 0);
    assert_int_equal(vmt_mock_responses(f->mock, NULL), 3);
    assert_int_equal(vmt_mock_current_view(f->mock), v);
    assert_int_equal(s.calls, 4);

    const vmt_driver_ops *ops = vmt_mock_driver_ops();
    assert_int_equal(ops->wait_for_event(f->mock, 0, NULL, NULL), VMT_E_INVALID);
}

/* Events still queued when the mock goes are freed with it (valgrind and
 * ASan check this). */
static void test_events_freed_with_mock(void **state)
{
    fixture *f = *state;
    vmt_event e = make_bp_event(0, 1, 2);
    for (int i = 0; i < 3; i++)
        assert_int_equal(vmt_mock_push_event(f->mock, &e), VMT_OK);
    assert_int_equal(vmt_mock_pending_events(f->mock), 3);
}

/* ---- page-table helpers (translation itself is tested in test_amd64) ---- */

static void test_table_pool(void **state)
{
    fixture *f = *state;
    vmt_pa t1, t2;
    /* The pool starts at the top of RAM and grows down, and its frames
     * are zeroed even if something was written there before. */
    vmt_pa top = (vmt_pa)(SMALL_MAX_GFN - 1) << 12;
    const uint64_t junk = 0xdead;
    assert_int_equal(vmt_mock_poke(f->mock, top - 0x1000 + 8, &junk, sizeof junk), VMT_OK);
    assert_int_equal(vmt_mock_alloc_table(f->mock, &t1), VMT_OK);
    assert_int_equal(vmt_mock_new_root(f->mock, &t2), VMT_OK);
    assert_true(t1 == top);
    assert_true(t2 == top - 0x1000);
    uint64_t e = 1;
    assert_int_equal(vmt_mock_peek(f->mock, t2 + 8, &e, sizeof e), VMT_OK);
    assert_true(e == 0);
    assert_int_equal(vmt_mock_total_calls(f->mock), 0);
    assert_int_equal(vmt_mock_alloc_table(f->mock, NULL), VMT_E_INVALID);

    /* A tiny guest runs out of table frames. */
    VMT_OPTS(vmt_mock_opts, o, .max_gfn = 3);
    vmt_mock *m;
    assert_int_equal(vmt_mock_new(&o, &m), VMT_OK);
    assert_int_equal(vmt_mock_alloc_table(m, &t1), VMT_OK);
    assert_int_equal(vmt_mock_alloc_table(m, &t1), VMT_OK);
    t2 = 123;
    assert_int_equal(vmt_mock_alloc_table(m, &t2), VMT_E_NOMEM);
    assert_true(t2 == 123);
    assert_int_equal(vmt_mock_map(m, t1, 0, 0, VMT_MOCK_4K, 0), VMT_E_NOMEM);
    vmt_mock_free(m);
}

static void test_map_conflicts_and_bad_args(void **state)
{
    fixture *f = *state;
    vmt_pa root;
    assert_int_equal(vmt_mock_new_root(f->mock, &root), VMT_OK);
    /* Misaligned, non-canonical, bad size, flags in the address bits. */
    assert_int_equal(vmt_mock_map(f->mock, root, 0x1001, 0x2000, VMT_MOCK_4K, 0), VMT_E_INVALID);
    assert_int_equal(vmt_mock_map(f->mock, root, 0x1000, 0x2100, VMT_MOCK_4K, 0), VMT_E_INVALID);
    assert_int_equal(vmt_mock_map(f->mock, root, 0x201000, 0x200000, VMT_MOCK_2M, 0),
                     VMT_E_INVALID);
    assert_int_equal(vmt_mock_map(f->mock, root, 0x40000000, 0x20000000, VMT_MOCK_1G, 0),
                     VMT_E_INVALID);
    assert_int_equal(vmt_mock_map(f->mock, root, 0x0000800000000000ull, 0, VMT_MOCK_4K, 0),
                     VMT_E_INVALID);
    assert_int_equal(vmt_mock_map(f->mock, root, 0x1000, 0x2000, (vmt_mock_page_size)13, 0),
                     VMT_E_INVALID);
    assert_int_equal(vmt_mock_map(f->mock, root, 0x1000, 0x2000, VMT_MOCK_4K, 0x3000),
                     VMT_E_INVALID);
    assert_int_equal(vmt_mock_map(NULL, root, 0x1000, 0x2000, VMT_MOCK_4K, 0), VMT_E_INVALID);

    /* A 2 MiB page where a 4 KiB mapping already made a page table. */
    assert_int_equal(vmt_mock_map(f->mock, root, 0x1000, 0x2000, VMT_MOCK_4K, 0), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, root, 0, 0x200000, VMT_MOCK_2M, 0), VMT_E_CONFLICT);
    assert_int_equal(vmt_mock_map(f->mock, root, 0, 0x40000000, VMT_MOCK_1G, 0), VMT_E_CONFLICT);
    /* A 4 KiB page inside an existing 2 MiB one. */
    assert_int_equal(vmt_mock_map(f->mock, root, 0x400000, 0x600000, VMT_MOCK_2M, 0), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, root, 0x401000, 0x3000, VMT_MOCK_4K, 0), VMT_E_CONFLICT);
    /* ... and inside a 1 GiB one. */
    assert_int_equal(vmt_mock_map(f->mock, root, 0x80000000ull, 0, VMT_MOCK_1G, 0), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, root, 0x80200000ull, 0, VMT_MOCK_2M, 0), VMT_E_CONFLICT);
    /* Remapping a leaf to another frame is allowed. */
    assert_int_equal(vmt_mock_map(f->mock, root, 0x1000, 0x5000, VMT_MOCK_4K, VMT_PTE_W), VMT_OK);
    vmt_pa pte;
    uint64_t e;
    assert_int_equal(vmt_mock_entry_pa(f->mock, root, 0x1000, 1, &pte), VMT_OK);
    assert_int_equal(vmt_mock_peek(f->mock, pte, &e, sizeof e), VMT_OK);
    assert_true(e == (0x5000 | VMT_PTE_P | VMT_PTE_W));
}

static void test_unmap_and_entry_pa(void **state)
{
    fixture *f = *state;
    vmt_pa root;
    const vmt_va va = 0x00007f1234567000ull;
    assert_int_equal(vmt_mock_new_root(f->mock, &root), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, root, va, 0x9000, VMT_MOCK_4K, VMT_PTE_NX), VMT_OK);

    vmt_pa epa[5];
    for (int level = 4; level >= 1; level--)
        assert_int_equal(vmt_mock_entry_pa(f->mock, root, va, level, &epa[level]), VMT_OK);
    assert_true(epa[4] == root + 8 * ((va >> 39) & 0x1ff));
    uint64_t pml4e;
    assert_int_equal(vmt_mock_peek(f->mock, epa[4], &pml4e, sizeof pml4e), VMT_OK);
    assert_true(epa[3] == (pml4e & VMT_PTE_ADDR_MASK) + 8 * ((va >> 30) & 0x1ff));
    assert_true((epa[2] & 0xfff) == 8 * ((va >> 21) & 0x1ff));
    assert_true((epa[1] & 0xfff) == 8 * ((va >> 12) & 0x1ff));
    uint64_t pte;
    assert_int_equal(vmt_mock_peek(f->mock, epa[1], &pte, sizeof pte), VMT_OK);
    assert_true(pte == (0x9000 | VMT_PTE_P | VMT_PTE_NX));

    /* Unmap at the PTE: only P goes, the rest stays. */
    assert_int_equal(vmt_mock_unmap(f->mock, root, va, 1), VMT_OK);
    assert_int_equal(vmt_mock_peek(f->mock, epa[1], &pte, sizeof pte), VMT_OK);
    assert_true(pte == (0x9000 | VMT_PTE_NX));
    /* The PTE is still reachable (the walk stops there). */
    vmt_pa again;
    assert_int_equal(vmt_mock_entry_pa(f->mock, root, va, 1, &again), VMT_OK);
    assert_true(again == epa[1]);
    /* Unmap at the PDPTE: the PDE and PTE are now beyond the walk. */
    assert_int_equal(vmt_mock_unmap(f->mock, root, va, 3), VMT_OK);
    assert_int_equal(vmt_mock_entry_pa(f->mock, root, va, 3, &again), VMT_OK);
    assert_int_equal(vmt_mock_entry_pa(f->mock, root, va, 2, &again), VMT_E_TRANSLATION);
    assert_int_equal(vmt_mock_unmap(f->mock, root, va, 1), VMT_E_TRANSLATION);
    /* Large pages end the walk above level 1. */
    assert_int_equal(vmt_mock_map(f->mock, root, 0x200000, 0x400000, VMT_MOCK_2M, 0), VMT_OK);
    assert_int_equal(vmt_mock_entry_pa(f->mock, root, 0x200000, 2, &again), VMT_OK);
    assert_int_equal(vmt_mock_entry_pa(f->mock, root, 0x200000, 1, &again), VMT_E_TRANSLATION);
    /* Bad levels and addresses. */
    assert_int_equal(vmt_mock_entry_pa(f->mock, root, va, 0, &again), VMT_E_INVALID);
    assert_int_equal(vmt_mock_entry_pa(f->mock, root, va, 5, &again), VMT_E_INVALID);
    assert_int_equal(vmt_mock_unmap(f->mock, root, 0x0000800000000000ull, 4), VMT_E_INVALID);
    assert_int_equal(vmt_mock_entry_pa(f->mock, root, va, 4, NULL), VMT_E_INVALID);
    /* A root outside guest memory is a read failure, not "not present". */
    assert_int_equal(vmt_mock_entry_pa(f->mock, (vmt_pa)SMALL_MAX_GFN << 12, va, 4, &again),
                     VMT_E_OUT_OF_BOUNDS);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_memory_untouched_reads_zero),
        T(test_memory_write_read_cross_page),
        T(test_memory_out_of_bounds),
        T(test_memory_peek_poke_and_null),
        cmocka_unit_test(test_new_defaults_and_opts),
        T(test_views_create_switch_destroy),
        cmocka_unit_test(test_views_need_capability),
        T(test_access_per_view_and_gfn),
        T(test_remap_per_view),
        T(test_allocate_free),
        T(test_free_remapped_frame_conflicts),
        T(test_pause_resume),
        T(test_regs_per_vcpu),
        T(test_monitor_flags),
        T(test_events_in_order_one_per_call),
        T(test_events_response_applied),
        T(test_events_freed_with_mock),
        T(test_table_pool),
        T(test_map_conflicts_and_bad_args),
        T(test_unmap_and_entry_pa),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
