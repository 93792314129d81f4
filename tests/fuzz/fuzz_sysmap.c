// SPDX-License-Identifier: MIT
/* libFuzzer target: the System.map reader (vmt_symtab_load_system_map,
 * src/tracer/symbols.c) over arbitrary text. Besides the table's own
 * invariants (symtab_check.h), every symbol loaded must be a text symbol
 * of one whole line of the input: "ADDRESS TYPE NAME" with TYPE one of
 * t T w W, NAME a whole token of that line, ADDRESS that line's first
 * number; and a load fails exactly when no line gives one. */
#define _POSIX_C_SOURCE 200809L /* mkstemp */
#include "symtab_check.h"

/* Whether (addr, name) is the symbol of a line of the input. */
static bool from_a_line(const uint8_t *data, size_t size, vmt_va addr, const char *name)
{
    size_t k = strlen(name);
    for (size_t at = 0; at < size;) {
        const uint8_t *nl = memchr(data + at, '\n', size - at);
        size_t end = nl ? (size_t)(nl - data) : size;
        char line[1024];
        size_t len = end - at;
        if (len < sizeof line) {
            memcpy(line, data + at, len);
            line[len] = 0;
            char *rest;
            unsigned long long a = strtoull(line, &rest, 16);
            if (rest != line && a == addr && rest[0] == ' ' && rest[1] && strchr("tTwW", rest[1]) &&
                rest[2] == ' ' && strncmp(rest + 3, name, k) == 0 &&
                (rest[3 + k] == 0 || strchr(" \t\r", rest[3 + k])))
                return true;
        }
        at = end + 1;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = scratch_file(data, size);
    vmt_symtab *tab = NULL;
    vmt_status st = vmt_symtab_load_system_map(path, &tab);
    FUZZ_CHECK(st == VMT_OK || st == VMT_E_INVALID, "status %d", st);
    FUZZ_CHECK((st == VMT_OK) == (tab != NULL), "status %d with table %p", st, (void *)tab);
    if (!tab)
        return 0;
    check_symtab(tab, data, size);
    for (size_t i = 0; i < vmt_symtab_count(tab); i++) {
        const vmt_symbol *s = vmt_symtab_at(tab, i);
        FUZZ_CHECK(s->size == 0, "System.map symbols have no size");
        FUZZ_CHECK(from_a_line(data, size, s->addr, s->name), "%llx %s is no line of the input",
                   (unsigned long long)s->addr, s->name);
    }
    vmt_symtab_free(tab);
    return 0;
}
