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
#include <fcntl.h>
#include <glib.h>
#include <gelf.h>
#include <libelf.h>

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

/* A temporary file holding len bytes of data; path receives its name. */
static void write_tmp(char *path, const void *data, size_t len)
{
    strcpy(path, "/tmp/vmitap-symtab-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static vmt_status load_map_bytes(const void *data, size_t len, vmt_symtab **tab)
{
    char path[32];
    write_tmp(path, data, len);
    vmt_status st = vmt_symtab_load_system_map(path, tab);
    unlink(path);
    return st;
}

static vmt_status load_map(const char *text, vmt_symtab **tab)
{
    return load_map_bytes(text, strlen(text), tab);
}

static void test_system_map(void **state)
{
    (void)state;
    vmt_symtab *tab = NULL;
    assert_int_equal(load_map("ffffffff81000000 T _text\n"
                              "ffffffff81000100 t local_fn\n"
                              "ffffffff81000200 D some_data\n"
                              "ffffffff81000300 W weak_fn\n"
                              "0000000000000000 A absolute\n",
                              &tab),
                     VMT_OK);
    assert_int_equal(vmt_symtab_count(tab), 3);
    assert_int_equal(vmt_symtab_lookup(tab, "local_fn")->addr, 0xffffffff81000100ull);
    assert_null(vmt_symtab_lookup(tab, "some_data"));
    uint64_t off = 0;
    assert_string_equal(vmt_symtab_find_addr(tab, 0xffffffff81000150ull, &off)->name, "local_fn");
    assert_int_equal(off, 0x50);
    vmt_symtab_free(tab);
}

/* A line longer than any buffer: read whole, the name is the whole third
 * field; its tail never becomes a line of its own (here it would read as a
 * symbol "fake" at 0xffffffffffffffff). */
static void test_system_map_long_line(void **state)
{
    (void)state;
    for (size_t name_len = 400; name_len <= 5000; name_len += 4600) {
        GString *text = g_string_new("ffffffff81000000 T ");
        GString *name = g_string_new(NULL);
        for (size_t i = 0; i < name_len; i++)
            g_string_append_c(name, (char)('a' + i % 26));
        g_string_append(name, "ffffffffffffffff");
        g_string_append(text, name->str);
        g_string_append(text, " T fake\nffffffff81000400 T after\n");
        vmt_symtab *tab = NULL;
        assert_int_equal(load_map(text->str, &tab), VMT_OK);
        assert_int_equal(vmt_symtab_count(tab), 2);
        assert_null(vmt_symtab_lookup(tab, "fake"));
        const vmt_symbol *s = vmt_symtab_lookup(tab, name->str);
        assert_non_null(s);
        assert_int_equal(s->addr, 0xffffffff81000000ull);
        assert_int_equal(vmt_symtab_lookup(tab, "after")->addr, 0xffffffff81000400ull);
        assert_int_equal(vmt_symtab_at(tab, 1)->addr, 0xffffffff81000400ull);
        vmt_symtab_free(tab);
        g_string_free(text, TRUE);
        g_string_free(name, TRUE);
    }
}

/* Files that are not System.maps: VMT_E_INVALID, *out untouched; lines
 * that are not "ADDRESS TYPE NAME" are skipped, never made up. */
static void test_system_map_bad(void **state)
{
    (void)state;
    vmt_symtab *const sentinel = (vmt_symtab *)(uintptr_t)0x1;
    vmt_symtab *tab = sentinel;
    assert_int_equal(load_map("", &tab), VMT_E_INVALID); /* empty: no qsort of nothing */
    assert_int_equal(load_map("\n\n\n", &tab), VMT_E_INVALID);
    assert_int_equal(load_map("ffffffff81000000 D data_only\n", &tab), VMT_E_INVALID);
    assert_int_equal(load_map("-1 T negative\n"
                              "10000000000000000 T too_wide\n"
                              " ffffffff81000000 T leading_blank\n"
                              "ffffffff81000000 TT two_letters\n"
                              "ffffffff81000000 T\n",
                              &tab),
                     VMT_E_INVALID);
    static const char nul_line[] = "ffffffff81000000 T good\0bad\n";
    assert_int_equal(load_map_bytes(nul_line, sizeof nul_line - 1, &tab), VMT_E_INVALID);
    uint8_t bin[8192];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof bin; i++) {
        x = x * 1103515245u + 12345u;
        bin[i] = (uint8_t)(x >> 16);
    }
    assert_int_equal(load_map_bytes(bin, sizeof bin, &tab), VMT_E_INVALID);
    assert_int_equal(vmt_symtab_load_system_map("/nonexistent/System.map", &tab), VMT_E_INVALID);
    assert_int_equal(vmt_symtab_load_system_map(NULL, &tab), VMT_E_INVALID);
    assert_ptr_equal(tab, sentinel);
    /* Good lines among bad ones are kept. */
    assert_int_equal(load_map("-1 T negative\nffffffff81000000 T ok\n", &tab), VMT_OK);
    assert_int_equal(vmt_symtab_count(tab), 1);
    vmt_symtab_free(tab);
}

/* An ELF file with symbols, none of them a function. */
static void write_elf_without_functions(char *path, bool with_symtab)
{
    strcpy(path, "/tmp/vmitap-symtab-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_true(elf_version(EV_CURRENT) != EV_NONE);
    Elf *elf = elf_begin(fd, ELF_C_WRITE, NULL);
    assert_non_null(elf);
    GElf_Ehdr eh;
    assert_non_null(gelf_newehdr(elf, ELFCLASS64));
    assert_non_null(gelf_getehdr(elf, &eh));
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_type = ET_REL;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    if (with_symtab) {
        /* .strtab, .symtab (null symbol + one object), .shstrtab */
        static char strtab[] = "\0a_variable\0";
        static char shstrtab[] = "\0.strtab\0.symtab\0.shstrtab\0";
        static Elf64_Sym syms[2];
        syms[1].st_name = 1;
        syms[1].st_info = ELF64_ST_INFO(STB_GLOBAL, STT_OBJECT);
        syms[1].st_shndx = 1;
        syms[1].st_value = 0x1000;
        syms[1].st_size = 8;
        struct {
            void *buf;
            size_t size;
            Elf_Type type;
            Elf64_Word sh_type, name;
            size_t entsize;
        } sec[3] = {
            {strtab, sizeof strtab, ELF_T_BYTE, SHT_STRTAB, 1, 0},
            {syms, sizeof syms, ELF_T_SYM, SHT_SYMTAB, 9, sizeof(Elf64_Sym)},
            {shstrtab, sizeof shstrtab, ELF_T_BYTE, SHT_STRTAB, 17, 0},
        };
        for (int i = 0; i < 3; i++) {
            Elf_Scn *scn = elf_newscn(elf);
            assert_non_null(scn);
            Elf_Data *d = elf_newdata(scn);
            d->d_buf = sec[i].buf;
            d->d_size = sec[i].size;
            d->d_type = sec[i].type;
            d->d_align = 1;
            d->d_version = EV_CURRENT;
            GElf_Shdr sh;
            assert_non_null(gelf_getshdr(scn, &sh));
            sh.sh_type = sec[i].sh_type;
            sh.sh_name = sec[i].name;
            sh.sh_entsize = sec[i].entsize;
            if (sec[i].sh_type == SHT_SYMTAB) {
                sh.sh_link = 1; /* .strtab */
                sh.sh_info = 1; /* first non-local */
            }
            assert_true(gelf_update_shdr(scn, &sh));
        }
        eh.e_shstrndx = 3;
    }
    assert_true(gelf_update_ehdr(elf, &eh));
    assert_true(elf_update(elf, ELF_C_WRITE) > 0);
    elf_end(elf);
    close(fd);
}

static void test_elf_without_functions(void **state)
{
    (void)state;
    for (int with_symtab = 0; with_symtab < 2; with_symtab++) {
        char path[32];
        write_elf_without_functions(path, with_symtab);
        vmt_symtab *tab = (vmt_symtab *)(uintptr_t)0x1;
        assert_int_equal(vmt_symtab_load(path, &tab), VMT_E_INVALID);
        assert_ptr_equal(tab, (vmt_symtab *)(uintptr_t)0x1);
        /* Not a System.map either. */
        assert_int_equal(vmt_symtab_load_system_map(path, &tab), VMT_E_INVALID);
        unlink(path);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup_matches_memory_layout),
        cmocka_unit_test(test_by_address_and_order),
        cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_system_map),
        cmocka_unit_test(test_system_map_long_line),
        cmocka_unit_test(test_system_map_bad),
        cmocka_unit_test(test_elf_without_functions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
