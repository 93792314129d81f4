// SPDX-License-Identifier: MIT
/* Invariants of a loaded symbol table, shared by fuzz_elf and fuzz_sysmap,
 * and the scratch file the input is written to (the readers take a path). */
#ifndef VMT_TESTS_FUZZ_SYMTAB_CHECK_H
#define VMT_TESTS_FUZZ_SYMTAB_CHECK_H

#include <stdbool.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "tracer/symbols.h"

/* Writes data to this process's scratch file; returns its path. */
static const char *scratch_file(const uint8_t *data, size_t size)
{
    static char path[64];
    if (!path[0]) {
        const char *dir = getenv("TMPDIR");
        snprintf(path, sizeof path, "%s/vmt-fuzz-XXXXXX", dir && strlen(dir) < 40 ? dir : "/tmp");
        int fd = mkstemp(path);
        if (fd < 0)
            abort();
        close(fd);
    }
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
    return path;
}

static bool contains(const uint8_t *hay, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; k <= n && i <= n - k; i++)
        if (memcmp(hay + i, needle, k) == 0)
            return true;
    return false;
}

/* Address order, lookup by every name, find_addr at every symbol. */
static void check_symtab(const vmt_symtab *tab, const uint8_t *data, size_t size)
{
    size_t n = vmt_symtab_count(tab);
    FUZZ_CHECK(n > 0, "a loaded table without symbols");
    FUZZ_CHECK(vmt_symtab_at(tab, n) == NULL, "at(count) is not NULL");
    for (size_t i = 0; i < n; i++) {
        const vmt_symbol *s = vmt_symtab_at(tab, i);
        FUZZ_CHECK(s && s->name && s->name[0], "symbol %zu has no name", i);
        FUZZ_CHECK(s->addr != 0, "symbol %s at address 0", s->name);
        FUZZ_CHECK(contains(data, size, s->name), "name %s is not in the input", s->name);
        if (i > 0)
            FUZZ_CHECK(vmt_symtab_at(tab, i - 1)->addr <= s->addr, "not in address order at %zu",
                       i);
        const vmt_symbol *l = vmt_symtab_lookup(tab, s->name);
        FUZZ_CHECK(l && strcmp(l->name, s->name) == 0, "lookup(%s) finds another", s->name);
        uint64_t off = 1;
        const vmt_symbol *a = vmt_symtab_find_addr(tab, s->addr, &off);
        /* At a symbol's own address, a symbol at that address answers
         * (the last one there in address order). */
        FUZZ_CHECK(a && a->addr == s->addr && off == 0, "find_addr(%llx) misses %s",
                   (unsigned long long)s->addr, s->name);
        if (s->size > 1 && s->addr + s->size > s->addr) {
            const vmt_symbol *e = vmt_symtab_find_addr(tab, s->addr + s->size - 1, &off);
            FUZZ_CHECK(!e || (e->addr <= s->addr + s->size - 1 && off == s->addr + s->size - 1 - e->addr),
                       "find_addr inside %s", s->name);
        }
    }
    FUZZ_CHECK(vmt_symtab_find_addr(tab, vmt_symtab_at(tab, 0)->addr - 1, NULL) == NULL,
               "a symbol below the lowest");
}

#endif
