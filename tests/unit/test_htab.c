// SPDX-License-Identifier: MIT
/* The fallible hash table (core/htab.h) against a GHashTable model:
 * random puts, replacements and removals over a small key space (so that
 * tombstones and reuse happen), iteration with removal, and the promise
 * that vmt_htab_reserve makes: the next k insertions allocate nothing. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>
#include <glib.h>

#include "core/alloc.h"
#include "core/htab.h"
#include "seeded.h"

#define KEY(x) ((void *)(uintptr_t)(x))

/* The table holds exactly the model's pairs, each found by lookup and
 * each visited once by iteration. */
static void same_as_model(const vmt_htab *t, GHashTable *model)
{
    assert_int_equal(vmt_htab_size(t), g_hash_table_size(model));
    size_t seen = 0;
    for (size_t i = 0; (i = vmt_htab_next(t, i)) < t->n; i++) {
        gpointer v;
        assert_true(g_hash_table_lookup_extended(model, t->slots[i].key, NULL, &v));
        assert_ptr_equal(t->slots[i].val, v);
        seen++;
    }
    assert_int_equal(seen, g_hash_table_size(model));
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, model);
    while (g_hash_table_iter_next(&it, &k, &v))
        assert_ptr_equal(vmt_htab_get(t, k), v);
    assert_true(4 * (t->live + t->tombs) <= 3 * t->n);
}

static void test_random_vs_model(void **state)
{
    (void)state;
    uint64_t nops;
    uint64_t rng = random_run_start("htab", "VMT_HTAB_SEED", 200000, 20000, &nops);
    vmt_htab t;
    vmt_htab_init(&t, vmt_htab_hash_ptr, NULL);
    GHashTable *model = g_hash_table_new(g_direct_hash, g_direct_equal);
    for (uint64_t op = 0; op < nops; op++) {
        uint64_t r = splitmix64(&rng);
        uintptr_t key = (uintptr_t)(r >> 8) % 300; /* 0 is a key like any other */
        void *val = KEY((r & 0xff) + 1);
        switch (r % 4) {
        case 0:
        case 1:
            assert_int_equal(vmt_htab_put(&t, KEY(key), val), VMT_OK);
            g_hash_table_insert(model, KEY(key), val);
            break;
        case 2:
            assert_int_equal(vmt_htab_del(&t, KEY(key)), g_hash_table_remove(model, KEY(key)));
            break;
        default:
            assert_ptr_equal(vmt_htab_get(&t, KEY(key)), g_hash_table_lookup(model, KEY(key)));
            break;
        }
        if (op % 997 == 0)
            same_as_model(&t, model);
    }
    same_as_model(&t, model);
    /* Removing while iterating: every other entry, each visited once. */
    size_t visited = 0, before = g_hash_table_size(model);
    for (size_t i = 0; (i = vmt_htab_next(&t, i)) < t.n; i++) {
        visited++;
        if ((uintptr_t)t.slots[i].key % 2) {
            g_hash_table_remove(model, t.slots[i].key);
            assert_true(vmt_htab_del(&t, t.slots[i].key));
        }
    }
    assert_int_equal(visited, before);
    same_as_model(&t, model);
    vmt_htab_fini(&t);
    g_hash_table_destroy(model);
}

/* After reserve(k), k insertions of new keys allocate nothing; a failed
 * growth changes nothing. */
static void test_reserve(void **state)
{
    (void)state;
    vmt_htab t;
    vmt_htab_init(&t, vmt_htab_hash_u64p, vmt_htab_eq_u64p);
    uint64_t keys[1000];
    for (unsigned i = 0; i < 1000; i++)
        keys[i] = (uint64_t)i * 0x9e3779b97f4a7c15ull;
    unsigned n = 0;
    for (unsigned k = 1; n + k <= 1000; k *= 3) {
        assert_int_equal(vmt_htab_reserve(&t, k), VMT_OK);
        vmt_alloc_fail_at = 1;
        for (unsigned i = 0; i < k; i++, n++)
            assert_int_equal(vmt_htab_put(&t, &keys[n], &keys[n]), VMT_OK);
        assert_int_equal(vmt_alloc_fail_at, 1); /* nothing allocated */
        vmt_alloc_fail_at = 0;
    }
    /* A growth that fails: VMT_E_NOMEM, the table as it was. */
    size_t slots = t.n;
    vmt_alloc_fail_at = 1;
    assert_int_equal(vmt_htab_reserve(&t, t.n), VMT_E_NOMEM);
    vmt_alloc_fail_at = 0;
    assert_int_equal(t.n, slots);
    assert_int_equal(vmt_htab_size(&t), n);
    for (unsigned i = 0; i < n; i++)
        assert_ptr_equal(vmt_htab_get(&t, &keys[i]), &keys[i]);
    vmt_htab_fini(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_vs_model),
        cmocka_unit_test(test_reserve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
