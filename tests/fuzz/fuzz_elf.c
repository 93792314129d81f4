// SPDX-License-Identifier: MIT
/* libFuzzer target: the ELF symbol reader (vmt_symtab_load, libelf, in
 * src/tracer/symbols.c) over arbitrary bytes, seeded with small ELF files.
 * A load either fails with VMT_E_INVALID and no table, or gives a table
 * that keeps its invariants (symtab_check.h), every name from the file.
 * vmt_elf_read_va (the file's bytes at a virtual address, from its
 * loadable segments) at symbols and at addresses taken from the input
 * either fails with the buffer untouched or gives bytes of the file. */
#define _POSIX_C_SOURCE 200809L /* mkstemp */
#include "symtab_check.h"

/* vmt_elf_read_va: VMT_OK with bytes of the file, or VMT_E_INVALID and
 * the buffer untouched. */
static void check_read_va(const char *path, vmt_va va, const uint8_t *data, size_t size)
{
    uint8_t buf[17];
    memset(buf, 0xa5, sizeof buf);
    vmt_status st = vmt_elf_read_va(path, va, buf, 16);
    FUZZ_CHECK(st == VMT_OK || st == VMT_E_INVALID, "read_va: status %d", st);
    FUZZ_CHECK(buf[16] == 0xa5, "read_va wrote past its buffer");
    if (st != VMT_OK) {
        for (int i = 0; i < 16; i++)
            FUZZ_CHECK(buf[i] == 0xa5, "a failed read_va wrote its buffer");
        return;
    }
    bool found = false;
    for (size_t i = 0; i + 16 <= size && !found; i++)
        found = memcmp(data + i, buf, 16) == 0;
    FUZZ_CHECK(found, "read_va at %llx: bytes that are not in the file", (unsigned long long)va);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = scratch_file(data, size);
    vmt_symtab *tab = NULL;
    vmt_status st = vmt_symtab_load(path, &tab);
    FUZZ_CHECK(st == VMT_OK || st == VMT_E_INVALID, "status %d", st);
    FUZZ_CHECK((st == VMT_OK) == (tab != NULL), "status %d with table %p", st, (void *)tab);
    if (tab) {
        check_symtab(tab, data, size);
        /* The bytes at a few symbols, as vmt_elf_read_va gives them (what
         * the guest's memory holds there at boot): taken from the file. */
        for (size_t i = 0; i < vmt_symtab_count(tab) && i < 8; i++)
            check_read_va(path, vmt_symtab_at(tab, i)->addr, data, size);
        vmt_symtab_free(tab);
    }
    /* And at addresses made of the input's own bytes (segment bounds). */
    for (size_t at = 0; at + 8 <= size && at < 64 * 8; at += 64) {
        uint64_t va;
        memcpy(&va, data + at, sizeof va);
        check_read_va(path, va, data, size);
        check_read_va(path, va - 8, data, size);
    }
    return 0;
}
