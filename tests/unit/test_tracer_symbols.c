// SPDX-License-Identifier: MIT
/* The ELF symbol table of the tracer, checked against this test program's
 * own symbols: the distance between two functions in the file must be the
 * distance between them in memory (the program may be position-independent). */
#define _POSIX_C_SOURCE 200809L /* mkstemp */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "tracer/symbols.h"

/* Two functions with external linkage, kept apart by the compiler. */
__attribute__((noinline)) int vmt_test_symbol_alpha(int x) { return x * 3 + 1; }
__attribute__((noinline)) int vmt_test_symbol_beta(int x) { return x * 5 + 2; }

static vmt_symtab *load_self(void)
{
    vmt_symtab *tab = NULL;
    assert_int_equal(vmt_symtab_load("/proc/self/exe", &tab), VMT_OK);
    assert_non_null(tab);
    return tab;
}

static void test_lookup_matches_memory_layout(void **state)
{
    (void)state;
    vmt_symtab *tab = load_self();
    const vmt_symbol *a = vmt_symtab_lookup(tab, "vmt_test_symbol_alpha");
    const vmt_symbol *b = vmt_symtab_lookup(tab, "vmt_test_symbol_beta");
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a->name, "vmt_test_symbol_alpha");
    assert_true(a->size > 0);
    uintptr_t ma = (uintptr_t)&vmt_test_symbol_alpha, mb = (uintptr_t)&vmt_test_symbol_beta;
    assert_int_equal(b->addr - a->addr, (uint64_t)(mb - ma));
    assert_int_equal(vmt_test_symbol_alpha(1) + vmt_test_symbol_beta(1), 11);
    assert_null(vmt_symtab_lookup(tab, "vmt_test_symbol_gamma_does_not_exist"));
    assert_null(vmt_symtab_lookup(tab, NULL));
    vmt_symtab_free(tab);
}

static void test_by_address_and_order(void **state)
{
    (void)state;
    vmt_symtab *tab = load_self();
    const vmt_symbol *a = vmt_symtab_lookup(tab, "vmt_test_symbol_alpha");
    assert_non_null(a);
    uint64_t off = 99;
    assert_ptr_equal(vmt_symtab_find_addr(tab, a->addr, &off), a);
    assert_int_equal(off, 0);
    assert_ptr_equal(vmt_symtab_find_addr(tab, a->addr + a->size - 1, &off), a);
    assert_int_equal(off, a->size - 1);
    const vmt_symbol *next = vmt_symtab_find_addr(tab, a->addr + a->size, NULL);
    assert_true(next != a);
    assert_null(vmt_symtab_find_addr(tab, 0, NULL));
    size_t n = vmt_symtab_count(tab);
    assert_true(n >= 2);
    for (size_t i = 1; i < n; i++)
        assert_true(vmt_symtab_at(tab, i - 1)->addr <= vmt_symtab_at(tab, i)->addr);
    assert_null(vmt_symtab_at(tab, n));
    vmt_symtab_free(tab);
}

static void test_bad_files(void **state)
{
    (void)state;
    vmt_symtab *tab = (vmt_symtab *)(uintptr_t)0x1; /* must stay untouched */
    assert_int_equal(vmt_symtab_load("/nonexistent/vmitap/guest.elf", &tab), VMT_E_INVALID);
    char path[] = "/tmp/vmitap-symtab-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not an elf\n", 11), 11);
    close(fd);
    assert_int_equal(vmt_symtab_load(path, &tab), VMT_E_INVALID);
    unlink(path);
    assert_ptr_equal(tab, (vmt_symtab *)(uintptr_t)0x1);
    assert_int_equal(vmt_symtab_load(NULL, &tab), VMT_E_INVALID);
    assert_int_equal(vmt_symtab_count(NULL), 0);
    vmt_symtab_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_matches_memory_layout),
        cmocka_unit_test(test_by_address_and_order),
        cmocka_unit_test(test_bad_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
