// SPDX-License-Identifier: MIT
/* The shadow-page interceptor's edges (src/bpm/interceptor.c) on the mock:
 * reads of the original bytes, a trap taken out of the shadow and put back
 * (vmt_interceptor_leave_out, a rebuild seeing the guest's old bytes
 * again, a new insert), refusal of a shadow frame as a trap's frame. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "bpm/interceptor.h"
#include "vmitap/mock.h"

#define PA 0x10010ull
#define GFN (PA >> 12)

typedef struct ctx {
    vmt_core *vmi;
    vmt_mock *mock;
    vmt_interceptor *ic;
    vmt_view v;
    unsigned reports;
    uint8_t old, now;
} ctx;

static const uint8_t int3 = 0xCC;

static void setup(ctx *c)
{
    memset(c, 0, sizeof *c);
    vmt_mock_opts o = {.sz = sizeof o, .max_gfn = 0x100};
    assert_int_equal(vmt_mock_core_new(&o, &c->vmi, &c->mock), VMT_OK);
    assert_int_equal(vmt_core_create_view(c->vmi, VMT_ACCESS_RWX, &c->v), VMT_OK);
    const uint8_t code[2] = {0x55, 0x48};
    assert_int_equal(vmt_mock_poke(c->mock, PA, code, 2), VMT_OK);
    c->ic = vmt_interceptor_new();
    assert_non_null(c->ic);
    assert_int_equal(vmt_interceptor_insert(c->ic, c->vmi, c->v, PA, &int3, 1), VMT_OK);
}

static void teardown(ctx *c)
{
    while (vmt_interceptor_refs(c->ic, c->v, PA))
        assert_int_equal(vmt_interceptor_remove(c->ic, c->vmi, c->v, PA), VMT_OK);
    assert_int_equal(vmt_mock_allocated_gfns(c->mock), 0);
    vmt_interceptor_free(c->ic);
    vmt_core_free(c->vmi);
}

static uint8_t seen(ctx *c)
{
    uint8_t b;
    assert_int_equal(vmt_mock_view_read(c->mock, c->v, PA, &b, 1), VMT_OK);
    return b;
}

static void on_report(void *user, vmt_view view, vmt_pa pa, size_t len, const uint8_t *old,
                      const uint8_t *now)
{
    ctx *c = user;
    assert_int_equal(pa, PA);
    assert_int_equal(len, 1);
    (void)view;
    c->reports++;
    c->old = old[0];
    c->now = now[0];
}

static void test_read_original(void **state)
{
    (void)state;
    ctx c;
    setup(&c);
    uint8_t buf[2];
    assert_int_equal(vmt_interceptor_read_original(NULL, c.vmi, c.v, PA, buf, 2), VMT_E_INVALID);
    assert_int_equal(vmt_interceptor_read_original(c.ic, c.vmi, c.v, PA, NULL, 2), VMT_E_INVALID);
    assert_int_equal(vmt_interceptor_read_original(c.ic, c.vmi, c.v, 0x10ffful, buf, 2),
                     VMT_E_OUT_OF_BOUNDS);
    assert_int_equal(vmt_interceptor_read_original(c.ic, c.vmi, c.v, PA, buf, 2), VMT_OK);
    assert_int_equal(buf[0], 0x55); /* not the trap */
    assert_int_equal(buf[1], 0x48);
    assert_int_equal(vmt_interceptor_read_original(c.ic, c.vmi, 0, PA, buf, 1), VMT_OK);
    assert_int_equal(buf[0], 0x55); /* no shadow in view 0: the guest's frame */
    vmt_mock_fail_nth(c.mock, VMT_MOCK_OP_READ, 1, VMT_E_DRIVER);
    assert_int_equal(vmt_interceptor_read_original(c.ic, c.vmi, c.v, PA, buf, 1), VMT_E_DRIVER);
    teardown(&c);
}

/* Out of the shadow, reported again at every rebuild, back in when the
 * guest's bytes are the old ones again or when a claim arrives. */
static void test_leave_out_and_back(void **state)
{
    (void)state;
    ctx c;
    setup(&c);
    assert_int_equal(vmt_interceptor_leave_out(c.ic, c.vmi, c.v, PA + 1, &int3, 1),
                     VMT_E_INVALID); /* no trap there */
    assert_int_equal(vmt_interceptor_rearm(c.ic, c.vmi, c.v, PA + 1), VMT_E_INVALID);
    const uint8_t was = 0x55, x = 0x31;
    assert_int_equal(vmt_interceptor_leave_out(c.ic, c.vmi, c.v, PA, &was, 2), VMT_E_INVALID);
    /* The guest writes; a rebuild leaves the trap out and reports it. */
    assert_int_equal(vmt_mock_poke(c.mock, PA, &x, 1), VMT_OK);
    size_t views = 0;
    assert_int_equal(vmt_interceptor_refresh(c.ic, c.vmi, GFN, on_report, &c, &views), VMT_OK);
    assert_int_equal(views, 1);
    assert_int_equal(c.reports, 1);
    assert_int_equal(seen(&c), 0x31);
    assert_false(vmt_interceptor_armed(c.ic, c.v, PA));
    /* Nobody handled it: the next rebuild reports it again, same bytes. */
    assert_int_equal(vmt_interceptor_refresh(c.ic, c.vmi, GFN, on_report, &c, NULL), VMT_OK);
    assert_int_equal(c.reports, 2);
    assert_int_equal(c.old, 0x55);
    assert_int_equal(c.now, 0x31);
    /* The guest puts its old byte back: the trap goes back in, unreported. */
    assert_int_equal(vmt_mock_poke(c.mock, PA, &was, 1), VMT_OK);
    assert_int_equal(vmt_interceptor_refresh(c.ic, c.vmi, GFN, on_report, &c, NULL), VMT_OK);
    assert_int_equal(c.reports, 2);
    assert_true(vmt_interceptor_armed(c.ic, c.v, PA));
    assert_int_equal(seen(&c), 0xCC);
    /* Taken out by hand (an undone removal), then back with a new claim. */
    assert_int_equal(vmt_interceptor_leave_out(c.ic, c.vmi, c.v, PA, &was, 1), VMT_OK);
    assert_int_equal(vmt_interceptor_leave_out(c.ic, c.vmi, c.v, PA, &was, 1), VMT_OK);
    assert_int_equal(seen(&c), 0x55);
    assert_int_equal(vmt_interceptor_insert(c.ic, c.vmi, c.v, PA, &int3, 1), VMT_OK);
    assert_int_equal(seen(&c), 0xCC);
    assert_int_equal(vmt_interceptor_refs(c.ic, c.v, PA), 2);
    teardown(&c);
}

/* A trap on a frame that is one of the shadows is refused. */
static void test_shadow_frame_refused(void **state)
{
    (void)state;
    ctx c;
    setup(&c);
    vmt_gfn shadow;
    assert_true(vmt_interceptor_shadow_gfn(c.ic, c.v, GFN, &shadow));
    assert_int_equal(vmt_interceptor_insert(c.ic, c.vmi, c.v, (shadow << 12) + 8, &int3, 1),
                     VMT_E_INVALID);
    assert_int_equal(vmt_interceptor_insert(c.ic, c.vmi, 0, (shadow << 12) + 8, &int3, 1),
                     VMT_E_INVALID);
    assert_int_equal(vmt_interceptor_pages(c.ic), 1);
    /* The next frame above RAM would be handed out as the shadow itself. */
    assert_int_equal(vmt_interceptor_insert(c.ic, c.vmi, 0, ((shadow + 1) << 12) + 8, &int3, 1),
                     VMT_E_INVALID);
    assert_int_equal(vmt_mock_allocated_gfns(c.mock), 1);
    teardown(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_original),
        cmocka_unit_test(test_leave_out_and_back),
        cmocka_unit_test(test_shadow_frame_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
