// SPDX-License-Identifier: MIT
/* AMD64 translation in the core: every level and page size, non-present
 * entries at every level, non-canonical input, the walk's entry addresses,
 * and a randomized comparison against a list of mappings. Page tables are
 * built with the mock's helpers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/amd64.h"
#include "fixture.h"
#include "seeded.h"

static int setup(void **state)
{
    return fixture_setup(state, NULL, true);
}

static uint64_t peek64(fixture *f, vmt_pa pa)
{
    uint64_t v;
    assert_int_equal(vmt_mock_peek(f->mock, pa, &v, sizeof v), VMT_OK);
    return v;
}

/* Checks a successful walk of va: its length, page size and result, and
 * that every entry it reports is where the mock put it, with its value. */
static void check_walk(fixture *f, vmt_va va, vmt_pa want_pa, unsigned want_shift)
{
    vmt_walk w;
    memset(&w, 0xee, sizeof w);
    assert_int_equal(vmt_core_walk(f->core, vmt_ctx(va, f->root), &w), VMT_OK);
    unsigned want_levels = 4 - (want_shift - 12) / 9;
    assert_int_equal(w.levels, want_levels);
    assert_int_equal(w.page_shift, want_shift);
    assert_true(w.pa == want_pa);
    for (unsigned i = 0; i < w.levels; i++) {
        vmt_pa epa;
        assert_int_equal(vmt_mock_entry_pa(f->mock, f->root, va, 4 - (int)i, &epa), VMT_OK);
        assert_true(w.entry_pa[i] == epa);
        assert_true(w.entry[i] == peek64(f, epa));
        assert_true(w.entry[i] & VMT_PTE_P);
    }
    /* The entry addresses follow from the indices of va, table by table. */
    assert_true(w.entry_pa[0] == f->root + 8 * ((va >> 39) & 0x1ff));
    for (unsigned i = 1; i < w.levels; i++)
        assert_true(w.entry_pa[i] ==
                    (w.entry[i - 1] & VMT_PTE_ADDR_MASK) + 8 * ((va >> (39 - 9 * i)) & 0x1ff));
    vmt_pa pa = 0;
    assert_int_equal(vmt_core_translate(f->core, vmt_ctx(va, f->root), &pa), VMT_OK);
    assert_true(pa == want_pa);
}

static void test_translate_4k(void **state)
{
    fixture *f = *state;
    const vmt_va va = 0x00007f0000401000ull;
    assert_int_equal(vmt_mock_map(f->mock, f->root, va, 0x123000, VMT_MOCK_4K, VMT_PTE_W), VMT_OK);
    check_walk(f, va, 0x123000, 12);
    check_walk(f, va + 0xabc, 0x123abc, 12);
    check_walk(f, va + 0xfff, 0x123fff, 12);
    /* The neighbouring pages share the tables but have no PTE. */
    vmt_pa pa = 42;
    assert_int_equal(vmt_core_translate(f->core, vmt_ctx(va + 0x1000, f->root), &pa),
                     VMT_E_TRANSLATION);
    assert_int_equal(vmt_core_translate(f->core, vmt_ctx(va - 1, f->root), &pa), VMT_E_TRANSLATION);
    assert_true(pa == 42);
}

static void test_translate_2m(void **state)
{
    fixture *f = *state;
    const vmt_va va = 0x0000000040600000ull;
    assert_int_equal(vmt_mock_map(f->mock, f->root, va, 0x00a00000, VMT_MOCK_2M, 0), VMT_OK);
    check_walk(f, va, 0x00a00000, 21);
    check_walk(f, va + 0x12345, 0x00a12345, 21);
    check_walk(f, va + 0x1fffff, 0x00bfffff, 21);
    vmt_walk w;
    assert_int_equal(vmt_core_walk(f->core, vmt_ctx(va, f->root), &w), VMT_OK);
    assert_true(w.entry[2] & VMT_PTE_PS);
}

static void test_translate_1g(void **state)
{
    fixture *f = *state;
    const vmt_va va = 0xffffff8040000000ull; /* high half */
    assert_int_equal(vmt_mock_map(f->mock, f->root, va, 0x80000000ull, VMT_MOCK_1G, VMT_PTE_NX),
                     VMT_OK);
    check_walk(f, va, 0x80000000ull, 30);
    check_walk(f, va + 0x2345678, 0x82345678ull, 30);
    check_walk(f, va + 0x3fffffff, 0xbfffffffull, 30);
}

/* All three sizes under one PML4 entry, the way a kernel maps itself. */
static void test_translate_mixed_sizes(void **state)
{
    fixture *f = *state;
    const vmt_va base = 0xffffffff80000000ull;
    assert_int_equal(vmt_mock_map(f->mock, f->root, base, 0x1000000, VMT_MOCK_2M, 0), VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, f->root, base + 0x200000, 0x7000, VMT_MOCK_4K, 0),
                     VMT_OK);
    assert_int_equal(
        vmt_mock_map(f->mock, f->root, 0xffffffff00000000ull, 0x40000000, VMT_MOCK_1G, 0), VMT_OK);
    check_walk(f, base + 0x1234, 0x1001234, 21);
    check_walk(f, base + 0x200010, 0x7010, 12);
    check_walk(f, 0xffffffff00000008ull, 0x40000008, 30);
}

/* Flag bits of a leaf never leak into the address: NX, and the PAT bit
 * (bit 12) of a large page, which sits inside the address mask. */
static void test_translate_ignores_flag_bits(void **state)
{
    fixture *f = *state;
    const vmt_va va = 0x200000;
    assert_int_equal(vmt_mock_map(f->mock, f->root, va, 0x400000, VMT_MOCK_2M, VMT_PTE_NX), VMT_OK);
    vmt_pa pde;
    assert_int_equal(vmt_mock_entry_pa(f->mock, f->root, va, 2, &pde), VMT_OK);
    uint64_t e = peek64(f, pde) | (1ull << 12) | (1ull << 6) | (1ull << 5);
    assert_int_equal(vmt_mock_poke(f->mock, pde, &e, sizeof e), VMT_OK);
    vmt_pa pa;
    assert_int_equal(vmt_core_translate(f->core, vmt_ctx(va + 0x10, f->root), &pa), VMT_OK);
    assert_true(pa == 0x400010);
    /* CR3 flag and PCID bits in the root are ignored too. */
    assert_int_equal(vmt_core_translate(f->core, vmt_ctx(va + 0x10, f->root | 0x18 | 0x5), &pa),
                     VMT_OK);
    assert_true(pa == 0x400010);
}

/* Clearing P at `level` makes the walk stop there with VMT_E_TRANSLATION,
 * having read exactly the entries above it and that one. */
static void check_not_present_at(fixture *f, vmt_va va, int level)
{
    vmt_pa epa;
    assert_int_equal(vmt_mock_entry_pa(f->mock, f->root, va, level, &epa), VMT_OK);
    assert_int_equal(vmt_mock_unmap(f->mock, f->root, va, level), VMT_OK);
    vmt_walk w;
    memset(&w, 0, sizeof w);
    assert_int_equal(vmt_core_walk(f->core, vmt_ctx(va, f->root), &w), VMT_E_TRANSLATION);
    assert_int_equal(w.levels, 5 - level);
    assert_true(w.entry_pa[w.levels - 1] == epa);
    assert_false(w.entry[w.levels - 1] & VMT_PTE_P);
    for (unsigned i = 0; i + 1 < w.levels; i++)
        assert_true(w.entry[i] & VMT_PTE_P);
    vmt_pa pa = 7;
    assert_int_equal(vmt_core_translate(f->core, vmt_ctx(va, f->root), &pa), VMT_E_TRANSLATION);
    assert_true(pa == 7);
}

static void test_not_present_every_level(void **state)
{
    fixture *f = *state;
    /* Four separate 4 KiB mappings under different PML4 entries, one per
     * level to break. */
    const vmt_va vas[4] = {0x0000008000001000ull, 0x0000010000002000ull, 0x0000018000003000ull,
                           0x0000020000004000ull};
    for (int i = 0; i < 4; i++)
        assert_int_equal(vmt_mock_map(f->mock, f->root, vas[i], 0x10000 + 0x1000ull * (unsigned)i,
                                      VMT_MOCK_4K, 0),
                         VMT_OK);
    for (int level = 4; level >= 1; level--)
        check_not_present_at(f, vas[4 - level], level);
    /* An empty root: the very first entry is absent. */
    vmt_walk w;
    assert_int_equal(vmt_core_walk(f->core, vmt_ctx(0x5000, f->root), &w), VMT_E_TRANSLATION);
    assert_int_equal(w.levels, 1);
    assert_true(w.entry_pa[0] == f->root);
    assert_true(w.entry[0] == 0);
}

static void test_not_present_large_leaves(void **state)
{
    fixture *f = *state;
    assert_int_equal(vmt_mock_map(f->mock, f->root, 0x40000000, 0x40000000, VMT_MOCK_1G, 0),
                     VMT_OK);
    assert_int_equal(vmt_mock_map(f->mock, f->root, 0x200000, 0x200000, VMT_MOCK_2M, 0), VMT_OK);
    check_not_present_at(f, 0x40001234, 3);
    check_not_present_at(f, 0x200321, 2);
}

static void test_non_canonical(void **state)
{
    fixture *f = *state;
    assert_int_equal(vmt_mock_map(f->mock, f->root, 0x0000000000001000ull, 0x2000, VMT_MOCK_4K, 0),
                     VMT_OK);
    const vmt_va bad[] = {0x0000800000000000ull, 0xffff7fffffffffffull, 0x1234000000001000ull,
                          0x8000000000001000ull, 0x0001000000001000ull};
    uint64_t reads = vmt_mock_calls(f->mock, VMT_MOCK_OP_READ);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        vmt_pa pa = 99;
        vmt_walk w;
        memset(&w, 0x5a, sizeof w);
        assert_int_equal(vmt_core_translate(f->core, vmt_ctx(bad[i], f->root), &pa), VMT_E_INVALID);
        assert_true(pa == 99);
        assert_int_equal(vmt_core_walk(f->core, vmt_ctx(bad[i], f->root), &w), VMT_E_INVALID);
        assert_int_equal(w.levels, 0x5a5a5a5a);
    }
    /* Refused before any page-table read. */
    assert_int_equal(vmt_mock_calls(f->mock, VMT_MOCK_OP_READ), reads);
    /* The last canonical addresses of each half are fine (just unmapped). */
    vmt_pa pa;
    assert_int_equal(vmt_core_translate(f->core, vmt_ctx(0x00007fffffffffffull, f->root), &pa),
                     VMT_E_TRANSLATION);
    assert_int_equal(vmt_core_translate(f->core, vmt_ctx(0xffff800000000000ull, f->root), &pa),
                     VMT_E_TRANSLATION);
}

/* A table that cannot be read is an error, not "not present". */
static void test_walk_read_failure(void **state)
{
    fixture *f = *state;
    vmt_pa pa;
    vmt_pa outside = vmt_pa_from_gfn(0x100000);
    assert_int_equal(vmt_core_translate(f->core, vmt_ctx(0x1000, outside), &pa),
                     VMT_E_OUT_OF_BOUNDS);
    /* A PML4E pointing outside guest memory. */
    uint64_t e = outside | VMT_PTE_P;
    assert_int_equal(vmt_mock_poke(f->mock, f->root, &e, sizeof e), VMT_OK);
    assert_int_equal(vmt_core_translate(f->core, vmt_ctx(0x1000, f->root), &pa),
                     VMT_E_OUT_OF_BOUNDS);
    /* An injected read failure at each level of a full walk. */
    assert_int_equal(vmt_mock_map(f->mock, f->root, 0x0000008000000000ull, 0x3000, VMT_MOCK_4K, 0),
                     VMT_OK);
    for (unsigned n = 1; n <= 4; n++) {
        vmt_walk w;
        memset(&w, 0x77, sizeof w);
        vmt_mock_fail_nth(f->mock, VMT_MOCK_OP_READ, n, VMT_E_DRIVER);
        assert_int_equal(vmt_core_walk(f->core, vmt_ctx(0x0000008000000000ull, f->root), &w),
                         VMT_E_DRIVER);
        assert_int_equal(w.levels, 0x77777777); /* untouched on a real failure */
    }
    assert_int_equal(vmt_core_translate(f->core, vmt_ctx(0x0000008000000000ull, f->root), &pa),
                     VMT_OK);
    assert_true(pa == 0x3000);
}

static void test_walk_bad_args(void **state)
{
    fixture *f = *state;
    vmt_walk w;
    vmt_pa pa;
    assert_int_equal(vmt_core_walk(NULL, vmt_ctx(0, f->root), &w), VMT_E_INVALID);
    assert_int_equal(vmt_core_walk(f->core, vmt_ctx(0, f->root), NULL), VMT_E_INVALID);
    assert_int_equal(vmt_core_translate(NULL, vmt_ctx(0, f->root), &pa), VMT_E_INVALID);
    assert_int_equal(vmt_core_translate(f->core, vmt_ctx(0, f->root), NULL), VMT_E_INVALID);
    assert_int_equal(vmt_amd64_walk(NULL, NULL, vmt_ctx(0, 0), &w), VMT_E_INVALID);
}

static void test_amd64_helpers(void **state)
{
    (void)state;
    const vmt_va va = 0xffff8123456789abull;
    assert_int_equal(vmt_amd64_index(va, 4), (va >> 39) & 0x1ff);
    assert_int_equal(vmt_amd64_index(va, 3), (va >> 30) & 0x1ff);
    assert_int_equal(vmt_amd64_index(va, 2), (va >> 21) & 0x1ff);
    assert_int_equal(vmt_amd64_index(va, 1), (va >> 12) & 0x1ff);
    assert_true(vmt_amd64_entry_pa(0x5000 | 0x18, va, 1) == 0x5000 + 8 * ((va >> 12) & 0x1ff));
    assert_true(vmt_amd64_is_leaf(0, 1));
    assert_false(vmt_amd64_is_leaf(VMT_AMD64_PS, 4));
    assert_true(vmt_amd64_is_leaf(VMT_AMD64_PS, 3));
    assert_true(vmt_amd64_is_leaf(VMT_AMD64_PS, 2));
    assert_false(vmt_amd64_is_leaf(0, 2));
    assert_int_equal(vmt_amd64_page_shift(1), 12);
    assert_int_equal(vmt_amd64_page_shift(2), 21);
    assert_int_equal(vmt_amd64_page_shift(3), 30);
    assert_true(vmt_amd64_leaf_pa(0x8000000000601083ull, 2, 0x12345) == 0x612345);
}

/* ---- randomized: translations agree with the list of what was mapped ---- */

typedef struct mapping {
    vmt_va va;
    vmt_pa pa;
    unsigned shift;
} mapping;

static uint64_t rng_state;
static uint64_t rnd(void)
{
    /* xorshift64*: small and good enough to pick addresses. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static vmt_va random_canonical_va(unsigned shift)
{
    /* A small set of PML4/PDPT slots, so mappings share tables and collide. */
    uint64_t va = (rnd() % 4) << 39 | (rnd() % 4) << 30 | (rnd() % 8) << 21 | (rnd() % 16) << 12;
    if (rnd() & 1)
        va |= 0xffff800000000000ull; /* high half */
    return va & ~((1ull << shift) - 1);
}

/* The mapping that covers va, if any (later maps of the same page win). */
static const mapping *model_lookup(const mapping *m, size_t n, vmt_va va)
{
    for (size_t i = n; i-- > 0;)
        if ((va & ~((1ull << m[i].shift) - 1)) == m[i].va)
            return &m[i];
    return NULL;
}

static void test_random_against_model(void **state)
{
    fixture *f = *state;
    uint64_t seed = seed_from_env("VMT_SEED");
    rng_state = seed | 1;
    int rounds = getenv("VMT_UNDER_VALGRIND") ? 200 : 3000;
    printf("test_random_against_model: seed %llu (VMT_SEED to replay), %d mappings tried\n",
           (unsigned long long)seed, rounds);

    static mapping maps[3000];
    size_t n = 0;
    const unsigned shifts[3] = {12, 21, 30};
    for (int r = 0; r < rounds; r++) {
        unsigned shift = shifts[rnd() % 3];
        vmt_va va = random_canonical_va(shift);
        vmt_pa pa = (rnd() % 64) << shift;
        vmt_status st = vmt_mock_map(f->mock, f->root, va, pa, (vmt_mock_page_size)shift, 0);
        /* The helper refuses exactly when the model has a different page
         * size in the way (a larger page above, or smaller pages below). */
        bool blocked = false;
        for (size_t i = 0; i < n && !blocked; i++) {
            unsigned big = maps[i].shift > shift ? maps[i].shift : shift;
            bool overlap = ((maps[i].va ^ va) >> big) == 0;
            blocked = overlap && maps[i].shift != shift;
        }
        assert_int_equal(st, blocked ? VMT_E_CONFLICT : VMT_OK);
        if (st == VMT_OK)
            maps[n++] = (mapping){va, pa, shift};

        /* Probe a random address: mapped or not, the core must agree. */
        vmt_va probe = random_canonical_va(12) | (rnd() & 0xfff);
        const mapping *want = model_lookup(maps, n, probe);
        vmt_pa got;
        st = vmt_core_translate(f->core, vmt_ctx(probe, f->root), &got);
        if (want) {
            assert_int_equal(st, VMT_OK);
            assert_true(got == want->pa + (probe & ((1ull << want->shift) - 1)));
        } else {
            assert_int_equal(st, VMT_E_TRANSLATION);
        }
    }
    /* Every mapping made still translates, at its start and its end. */
    for (size_t i = 0; i < n; i++) {
        const mapping *want = model_lookup(maps, n, maps[i].va);
        vmt_va last = maps[i].va + (1ull << maps[i].shift) - 1;
        vmt_pa got;
        assert_int_equal(vmt_core_translate(f->core, vmt_ctx(last, f->root), &got), VMT_OK);
        assert_true(got == want->pa + (1ull << want->shift) - 1);
    }
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, fixture_teardown)
    const struct CMUnitTest tests[] = {
        T(test_translate_4k),
        T(test_translate_2m),
        T(test_translate_1g),
        T(test_translate_mixed_sizes),
        T(test_translate_ignores_flag_bits),
        T(test_not_present_every_level),
        T(test_not_present_large_leaves),
        T(test_non_canonical),
        T(test_walk_read_failure),
        T(test_walk_bad_args),
        cmocka_unit_test(test_amd64_helpers),
        T(test_random_against_model),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
