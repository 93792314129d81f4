// SPDX-License-Identifier: MIT
/* libFuzzer target: the ELF symbol reader (vmt_symtab_load, libelf, in
 * src/tracer/symbols.c) over arbitrary bytes, seeded with small ELF files.
 * A load either fails with VMT_E_INVALID and no table, or gives a table
 * that keeps its invariants (symtab_check.h), every name from the file. */
#define _POSIX_C_SOURCE 200809L /* mkstemp */
#include "symtab_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = scratch_file(data, size);
    vmt_symtab *tab = NULL;
    vmt_status st = vmt_symtab_load(path, &tab);
    FUZZ_CHECK(st == VMT_OK || st == VMT_E_INVALID, "status %d", st);
    FUZZ_CHECK((st == VMT_OK) == (tab != NULL), "status %d with table %p", st, (void *)tab);
    if (!tab)
        return 0;
    check_symtab(tab, data, size);
    vmt_symtab_free(tab);
    return 0;
}
