// SPDX-License-Identifier: MIT
/* Unit tests of the breakpoint manager's armed set (src/bpm/armset.h):
 * adds, removals, the global flag, the change log and its flush, growth,
 * churn without growth, crowded tables (long probe runs that wrap around
 * the end, removals shifting runs back), and a seeded random sequence
 * compared after every step with a GHashTable model. bpm_armset_check
 * (which also verifies that every pair is found from its home slot) runs
 * throughout.
 *
 * Environment: VMT_ARMSET_SEED=<n> replays a seed (printed first);
 * VMT_UNDER_VALGRIND shortens the random run. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>
#include <glib.h>

#include "bpm/armset.h"
#include "seeded.h"

typedef struct pair {
    uint64_t page_id, key, va, root;
    bool global;
} pair;

static uint64_t page_id(uint16_t view, uint64_t gfn)
{
    return ((uint64_t)view << 48) | gfn;
}

static bool has(const bpm_armset *s, const pair *p)
{
    return bpm_armset_has(s, p->page_id, p->key, p->va, p->root, false);
}

static bool has_global(const bpm_armset *s, const pair *p)
{
    return bpm_armset_has(s, p->page_id, p->key, p->va, p->root, true);
}

static void add(bpm_armset *s, const pair *p)
{
    assert_int_equal(bpm_armset_reserve(s, 1), VMT_OK);
    bpm_armset_add(s, p->page_id, p->global, p->key, p->va, p->root);
}

static void del(bpm_armset *s, const pair *p)
{
    bpm_armset_del(s, p->page_id, p->key, p->va, p->root);
}

/* Pair number i of a family whose members differ in every field. */
static pair nth(uint64_t i)
{
    return (pair){.page_id = page_id((uint16_t)(i % 7), 0x100000 + i / 3),
                  .key = i % 5,
                  .va = 0xffff800000000000ull + i * 0x40,
                  .root = 0x1000 * (1 + i % 3),
                  .global = i % 4 == 0};
}

static void test_empty(void **state)
{
    (void)state;
    bpm_armset s;
    bpm_armset_init(&s);
    pair p = nth(1);
    assert_false(has(&s, &p));
    assert_int_equal(bpm_armset_size(&s), 0);
    assert_int_equal(bpm_armset_capacity(&s), 0);
    assert_true(bpm_armset_check(&s));
    bpm_armset_flush(&s);
    assert_true(bpm_armset_check(&s));
    bpm_armset_free(&s);
}

/* Each field takes part in the identity; the global flag does not, but is
 * reported. Zero and extreme field values are ordinary values. */
static void test_fields(void **state)
{
    (void)state;
    bpm_armset s;
    bpm_armset_init(&s);
    pair zero = {0};
    pair top = {.page_id = page_id(0xffff, (1ull << 40) - 1),
                .key = UINT64_MAX,
                .va = UINT64_MAX,
                .root = UINT64_MAX,
                .global = true};
    add(&s, &zero);
    add(&s, &top);
    assert_true(has(&s, &zero));
    assert_false(has_global(&s, &zero));
    assert_true(has(&s, &top));
    assert_true(has_global(&s, &top));
    pair v[] = {zero, zero, zero, zero, zero};
    v[0].page_id = page_id(1, 0);
    v[1].page_id = page_id(0, 1);
    v[2].key = 1;
    v[3].va = 1;
    v[4].root = 1;
    for (size_t i = 0; i < 5; i++)
        assert_false(has(&s, &v[i]));
    for (int round = 0; round < 2; round++) { /* in the log, then in the table */
        assert_true(bpm_armset_check(&s));
        assert_int_equal(bpm_armset_size(&s), 2);
        bpm_armset_flush(&s);
        assert_true(has(&s, &zero));
        assert_true(has_global(&s, &top));
    }
    del(&s, &zero);
    assert_false(has(&s, &zero));
    assert_true(has(&s, &top));
    bpm_armset_flush(&s);
    assert_false(has(&s, &zero));
    assert_true(bpm_armset_check(&s));
    assert_int_equal(bpm_armset_size(&s), 1);
    bpm_armset_free(&s);
}

/* The newest logged change decides, before and after it is applied: an
 * add, removal and add again of one pair, with and without the global flag,
 * all within one log. */
static void test_log(void **state)
{
    (void)state;
    bpm_armset s;
    bpm_armset_init(&s);
    pair p = nth(8), q = nth(9);
    p.global = false;
    add(&s, &q);
    bpm_armset_flush(&s);
    add(&s, &p);
    assert_true(has(&s, &p) && !has_global(&s, &p));
    del(&s, &p);
    assert_false(has(&s, &p));
    p.global = true;
    add(&s, &p);
    assert_true(has_global(&s, &p));
    del(&s, &q); /* in the table, removed in the log */
    assert_false(has(&s, &q));
    assert_true(bpm_armset_check(&s));
    assert_int_equal(bpm_armset_size(&s), 1);
    bpm_armset_flush(&s);
    assert_true(has_global(&s, &p));
    assert_false(has(&s, &q));
    assert_true(bpm_armset_check(&s));
    /* More changes than the log holds: applied in batches on the way. */
    for (uint64_t i = 100; i < 100 + 5 * BPM_ARMSET_LOG; i++) {
        pair r = nth(i);
        add(&s, &r);
        assert_true(has(&s, &r));
        assert_true(bpm_armset_check(&s));
    }
    for (uint64_t i = 100; i < 100 + 5 * BPM_ARMSET_LOG; i += 2) {
        pair r = nth(i);
        del(&s, &r);
        assert_true(bpm_armset_check(&s));
    }
    for (uint64_t i = 100; i < 100 + 5 * BPM_ARMSET_LOG; i++) {
        pair r = nth(i);
        assert_int_equal(has(&s, &r), i % 2 == 1);
    }
    assert_int_equal(bpm_armset_size(&s), 1 + 5 * BPM_ARMSET_LOG / 2);
    bpm_armset_free(&s);
}

/* Growth keeps the load at most 3/4 and everything findable; churn at a
 * constant size never grows the table; removing all leaves every lookup
 * negative and the table as large as it was. */
static void test_grow_and_churn(void **state)
{
    (void)state;
    bpm_armset s;
    bpm_armset_init(&s);
    const uint64_t n = 20000;
    size_t last_cap = 0;
    unsigned grew = 0;
    for (uint64_t i = 0; i < n; i++) {
        pair p = nth(i);
        add(&s, &p);
        if (bpm_armset_capacity(&s) != last_cap) {
            grew++;
            assert_true(bpm_armset_capacity(&s) > last_cap);
            last_cap = bpm_armset_capacity(&s);
        }
    }
    bpm_armset_flush(&s);
    assert_true(grew > 10);
    assert_true(4 * n <= 3 * bpm_armset_capacity(&s));
    assert_true(bpm_armset_check(&s));
    for (uint64_t i = 0; i < n; i++) {
        pair p = nth(i);
        assert_true(has(&s, &p));
        assert_int_equal(has_global(&s, &p), p.global);
    }
    pair absent = nth(n);
    assert_false(has(&s, &absent));

    size_t cap = bpm_armset_capacity(&s);
    for (uint64_t round = 0; round < 6; round++) { /* replace half of them, six times */
        for (uint64_t i = 0; i < n / 2; i++) {
            pair p = nth(round * n + i);
            del(&s, &p);
            pair q = nth((round + 1) * n + i);
            add(&s, &q);
        }
        bpm_armset_flush(&s);
        assert_true(bpm_armset_check(&s));
        assert_int_equal(bpm_armset_size(&s), n);
        assert_int_equal(bpm_armset_capacity(&s), cap);
    }
    /* Left: nth(n/2 .. n-1) and the last round's nth(6n .. 6n + n/2 - 1). */
    for (uint64_t i = n / 2; i < n; i++) {
        pair p = nth(i), q = nth(6 * n + i - n / 2);
        assert_true(has(&s, &p) && has(&s, &q));
        del(&s, &p);
        del(&s, &q);
    }
    bpm_armset_flush(&s);
    assert_int_equal(bpm_armset_size(&s), 0);
    assert_int_equal(bpm_armset_capacity(&s), cap); /* removals never rehash */
    assert_true(bpm_armset_check(&s));
    for (uint64_t i = 0; i < 7 * n; i++) {
        pair p = nth(i);
        assert_false(has(&s, &p));
    }
    bpm_armset_free(&s);
}

/* A minimum-size table (16 slots) holding 11 pairs, over and over: long
 * probe runs that wrap around the end, removals in the middle of runs
 * that shift the rest of the run back across the end. */
static void test_crowded(void **state)
{
    (void)state;
    bpm_armset s;
    bpm_armset_init(&s);
    for (uint64_t round = 0; round < 200; round++) {
        for (uint64_t i = 0; i < 11; i++) {
            pair p = nth(round * 11 + i);
            add(&s, &p);
        }
        bpm_armset_flush(&s);
        assert_int_equal(bpm_armset_capacity(&s), BPM_ARMSET_MIN_SLOTS);
        assert_true(bpm_armset_check(&s));
        for (uint64_t i = 0; i < 11; i++) {
            pair p = nth(round * 11 + i);
            assert_true(has(&s, &p));
            del(&s, &p);
            assert_false(has(&s, &p));
            bpm_armset_flush(&s);
            assert_true(bpm_armset_check(&s));
            for (uint64_t j = i + 1; j < 11; j++) {
                pair q = nth(round * 11 + j);
                assert_true(has(&s, &q));
            }
        }
        assert_int_equal(bpm_armset_size(&s), 0);
    }
    bpm_armset_free(&s);
}

/* ---- random sequence against a GHashTable model ---- */

/* A small universe (4 views x 8 frames x 3 keys x 6 vas x 3 roots = 1728
 * pairs), so that pairs come and go and the model's set stays dense. */
static pair random_pair(uint64_t *x)
{
    uint64_t r = splitmix64(x);
    return (pair){.page_id = page_id((uint16_t)(r % 4), 0x5000 + (r >> 8) % 8),
                  .key = (r >> 16) % 3,
                  .va = 0x400000 + ((r >> 24) % 6) * 0x1000 + ((r >> 24) % 6),
                  .root = 0x1000 * (1 + (r >> 32) % 3),
                  .global = (r >> 40) % 2};
}

static char *model_key(const pair *p)
{
    return g_strdup_printf("%" PRIx64 "/%" PRIx64 "/%" PRIx64 "/%" PRIx64, p->page_id, p->key,
                           p->va, p->root);
}

static void test_random_vs_model(void **state)
{
    (void)state;
    uint64_t nops;
    uint64_t seed = random_run_start("armset random", "VMT_ARMSET_SEED", 400000, 20000, &nops);
    uint64_t x = seed;
    GHashTable *model = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    bpm_armset s;
    bpm_armset_init(&s);
    for (uint64_t i = 0; i < nops; i++) {
        pair p = random_pair(&x);
        char *k = model_key(&p);
        gpointer val;
        bool in = g_hash_table_lookup_extended(model, k, NULL, &val);
        if (!in) {
            add(&s, &p);
            g_hash_table_insert(model, k, GINT_TO_POINTER(p.global ? 2 : 1));
        } else {
            /* Mostly removals while the set is large, mostly adds while small. */
            if (splitmix64(&x) % 1728 < g_hash_table_size(model)) {
                del(&s, &p);
                g_hash_table_remove(model, k);
            }
            g_free(k);
        }
        if (splitmix64(&x) % 97 == 0)
            bpm_armset_flush(&s);
        /* This pair and a random other one agree with the model. */
        for (int j = 0; j < 2; j++) {
            pair t = j == 0 ? p : random_pair(&x);
            char *tk = model_key(&t);
            int m = GPOINTER_TO_INT(g_hash_table_lookup(model, tk));
            g_free(tk);
            if (has(&s, &t) != (m != 0) || has_global(&s, &t) != (m == 2))
                fail_msg("seed %" PRIu64 ", operation %" PRIu64 ": set and model differ", seed,
                         i);
        }
        if (bpm_armset_size(&s) != g_hash_table_size(model))
            fail_msg("seed %" PRIu64 ", operation %" PRIu64 ": size %zu, model %u", seed, i,
                     bpm_armset_size(&s), g_hash_table_size(model));
        if (i % 1000 == 0 && !bpm_armset_check(&s))
            fail_msg("seed %" PRIu64 ", operation %" PRIu64 ": bpm_armset_check failed", seed, i);
    }
    assert_true(bpm_armset_check(&s));
    bpm_armset_free(&s);
    g_hash_table_destroy(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_log),
        cmocka_unit_test(test_grow_and_churn),
        cmocka_unit_test(test_crowded),
        cmocka_unit_test(test_random_vs_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
