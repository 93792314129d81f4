// SPDX-License-Identifier: MIT
/* Unit tests of a view's pending index (src/bpm/pendmap.h): get, put
 * (add and replace), del by backward shift, growth, iteration, and a
 * seeded random sequence compared after every step with a GHashTable
 * model. bpm_pendmap_check runs throughout.
 *
 * Environment: VMT_PENDMAP_SEED=<n> replays a seed (printed first);
 * VMT_UNDER_VALGRIND shortens the random run. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>
#include <glib.h>

#include "bpm/pendmap.h"
#include "seeded.h"

/* Heads are opaque to the map: any non-NULL pointer will do. */
static char heads[4096];

static void test_basic(void **state)
{
    (void)state;
    bpm_pendmap m;
    bpm_pendmap_init(&m);
    assert_null(bpm_pendmap_get(&m, 0, 0));
    assert_false(bpm_pendmap_del(&m, 0, 0));
    assert_true(bpm_pendmap_check(&m));
    bpm_pendmap_put(&m, 0, 0, &heads[0]); /* zero is an ordinary ctx */
    bpm_pendmap_put(&m, UINT64_MAX, UINT64_MAX, &heads[1]);
    bpm_pendmap_put(&m, 0, 1, &heads[2]);
    assert_ptr_equal(bpm_pendmap_get(&m, 0, 0), &heads[0]);
    assert_ptr_equal(bpm_pendmap_get(&m, UINT64_MAX, UINT64_MAX), &heads[1]);
    assert_ptr_equal(bpm_pendmap_get(&m, 0, 1), &heads[2]);
    assert_null(bpm_pendmap_get(&m, 1, 0));
    bpm_pendmap_put(&m, 0, 1, &heads[3]); /* replaces */
    assert_ptr_equal(bpm_pendmap_get(&m, 0, 1), &heads[3]);
    assert_int_equal(bpm_pendmap_size(&m), 3);
    assert_true(bpm_pendmap_del(&m, 0, 0));
    assert_false(bpm_pendmap_del(&m, 0, 0));
    assert_null(bpm_pendmap_get(&m, 0, 0));
    assert_int_equal(bpm_pendmap_size(&m), 2);
    assert_true(bpm_pendmap_check(&m));
    bpm_pendmap_free(&m);
}

/* Many entries: growth keeps everything findable; iteration visits each
 * exactly once; deleting in a different order empties the map. */
static void test_grow_iterate(void **state)
{
    (void)state;
    bpm_pendmap m;
    bpm_pendmap_init(&m);
    const unsigned n = 3000;
    for (unsigned i = 0; i < n; i++)
        bpm_pendmap_put(&m, 0x400000 + i * 0x10, 0x1000 * (i % 3), &heads[i]);
    assert_true(bpm_pendmap_check(&m));
    assert_true(4 * n <= 3 * m.n);
    unsigned char *seen = g_new0(unsigned char, n);
    for (size_t i = 0; i < m.n; i++) {
        char *h = m.slots[i].head;
        if (!h)
            continue;
        size_t k = (size_t)(h - heads);
        assert_true(k < n);
        assert_int_equal(m.slots[i].va, 0x400000 + k * 0x10);
        seen[k]++;
    }
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(seen[i], 1);
    g_free(seen);
    for (unsigned i = 0; i < n; i++) {
        unsigned k = (i * 7u) % n; /* 7 is prime to 3000: a permutation */
        assert_true(bpm_pendmap_del(&m, 0x400000 + k * 0x10, 0x1000 * (k % 3)));
        if (i % 100 == 0)
            assert_true(bpm_pendmap_check(&m));
    }
    assert_int_equal(bpm_pendmap_size(&m), 0);
    for (size_t i = 0; i < m.n; i++)
        assert_null(m.slots[i].head);
    bpm_pendmap_free(&m);
}

/* get_or_put: stores on the first call, then returns the stored head and
 * changes nothing (the later head is not stored). */
static void *gop(bpm_pendmap *m, uint64_t va, uint64_t root, void *head)
{
    void *found = (void *)1;
    assert_int_equal(bpm_pendmap_get_or_put(m, va, root, head, &found), VMT_OK);
    return found;
}

static void test_get_or_put(void **state)
{
    (void)state;
    bpm_pendmap m;
    bpm_pendmap_init(&m);
    for (unsigned i = 0; i < 100; i++)
        assert_null(gop(&m, 0x400000 + i * 8, 0x1000, &heads[i]));
    assert_int_equal(bpm_pendmap_size(&m), 100);
    for (unsigned i = 0; i < 100; i++)
        assert_ptr_equal(gop(&m, 0x400000 + i * 8, 0x1000, &heads[200 + i]),
                         &heads[i]);
    assert_int_equal(bpm_pendmap_size(&m), 100);
    assert_true(bpm_pendmap_check(&m));
    for (unsigned i = 0; i < 100; i++)
        assert_ptr_equal(bpm_pendmap_get(&m, 0x400000 + i * 8, 0x1000), &heads[i]);
    assert_null(bpm_pendmap_get(&m, 0x400000, 0x2000)); /* another root */
    bpm_pendmap_free(&m);
}

/* Past 256 KiB a table is mapped from the kernel and prefaulted
 * (tablemem.h): 20000 entries need 32768 slots (768 KiB). Everything stays
 * findable across the growths into mapped memory, and deleting everything
 * empties it; valgrind checks the mapping and its release. */
static void test_grow_mapped(void **state)
{
    (void)state;
    bpm_pendmap m;
    bpm_pendmap_init(&m);
    const unsigned n = 20000;
    char *hs = g_new0(char, n);
    for (unsigned i = 0; i < n; i++)
        bpm_pendmap_put(&m, 0xffff800000000000ull + i * 0x200ull, 0x1000, &hs[i]);
    assert_true(bpm_pendmap_check(&m));
    assert_int_equal(m.n, 32768);
    assert_int_not_equal(m.map_bytes, 0);
    for (unsigned i = 0; i < n; i++)
        assert_ptr_equal(bpm_pendmap_get(&m, 0xffff800000000000ull + i * 0x200ull, 0x1000), &hs[i]);
    for (unsigned i = 0; i < n; i++)
        assert_true(bpm_pendmap_del(&m, 0xffff800000000000ull + i * 0x200ull, 0x1000));
    assert_true(bpm_pendmap_check(&m));
    assert_int_equal(bpm_pendmap_size(&m), 0);
    bpm_pendmap_free(&m);
    g_free(hs);
}

/* A universe of 40 vas x 3 roots, in and out of a map that stays small
 * (16 to 256 slots): long runs, wrap-around, shifts across the end. */
static void test_random_vs_model(void **state)
{
    (void)state;
    uint64_t nops;
    uint64_t seed = random_run_start("pendmap random", "VMT_PENDMAP_SEED", 300000, 20000, &nops);
    uint64_t x = seed;
    GHashTable *model = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    bpm_pendmap m;
    bpm_pendmap_init(&m);
    for (uint64_t i = 0; i < nops; i++) {
        uint64_t r = splitmix64(&x);
        uint64_t va = 0x7000 + (r % 40) * 0x8, root = 0x1000 * ((r >> 8) % 3);
        char *k = g_strdup_printf("%" PRIx64 "/%" PRIx64, va, root);
        unsigned op = (r >> 16) % 3;
        if (op < 2) { /* put (add or replace) */
            void *h = &heads[(r >> 24) % 4096];
            bpm_pendmap_put(&m, va, root, h);
            g_hash_table_insert(model, k, h);
        } else {
            bool in = g_hash_table_remove(model, k);
            if (bpm_pendmap_del(&m, va, root) != in)
                fail_msg("seed %" PRIu64 ", operation %" PRIu64 ": del disagrees", seed, i);
            g_free(k);
        }
        for (int j = 0; j < 2; j++) {
            uint64_t r2 = j == 0 ? r : splitmix64(&x);
            uint64_t va2 = 0x7000 + (r2 % 40) * 0x8, root2 = 0x1000 * ((r2 >> 8) % 3);
            char *k2 = g_strdup_printf("%" PRIx64 "/%" PRIx64, va2, root2);
            void *want = g_hash_table_lookup(model, k2);
            g_free(k2);
            if (bpm_pendmap_get(&m, va2, root2) != want)
                fail_msg("seed %" PRIu64 ", operation %" PRIu64 ": get disagrees", seed, i);
        }
        if (bpm_pendmap_size(&m) != g_hash_table_size(model))
            fail_msg("seed %" PRIu64 ", operation %" PRIu64 ": size differs", seed, i);
        if (i % 500 == 0 && !bpm_pendmap_check(&m))
            fail_msg("seed %" PRIu64 ", operation %" PRIu64 ": check failed", seed, i);
    }
    assert_true(bpm_pendmap_check(&m));
    bpm_pendmap_free(&m);
    g_hash_table_destroy(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_grow_iterate),
        cmocka_unit_test(test_grow_mapped),
        cmocka_unit_test(test_get_or_put),
        cmocka_unit_test(test_random_vs_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
