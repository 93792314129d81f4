// SPDX-License-Identifier: MIT
/* Function symbols of an ELF file, read once with libelf and kept in an
 * address-sorted array plus a name index. */
#define _POSIX_C_SOURCE 200809L /* open(O_CLOEXEC) */
#include <stdio.h>
#include "tracer/symbols.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/htab.h"
#include "vmitap/log.h"

/* Names live in blocks (one allocation per NAME_BLOCK bytes of names, not
 * per name). Memory comes from core/alloc.h: out of memory, a load fails
 * with VMT_E_NOMEM and leaves nothing behind (GLib's allocator would
 * abort). */
typedef struct name_block {
    struct name_block *next;
    size_t used, cap;
    char data[];
} name_block;

#define NAME_BLOCK 65536u

struct vmt_symtab {
    vmt_symbol *syms; /* sorted by address */
    size_t n;
    vmt_htab byname; /* name -> (void *)(index + 1) in syms */
    name_block *names;
};

/* Entry kept while reading: whether the definition is global decides which
 * of several same-named symbols a lookup returns. */
typedef struct raw_sym {
    vmt_symbol sym;
    bool global;
} raw_sym;

/* What a load collects; nomem once any allocation failed. */
typedef struct loader {
    vmt_symtab *tab;
    raw_sym *raw;
    size_t n_raw, cap_raw;
    bool nomem;
} loader;

static uint64_t str_hash(const void *p)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *s = p; *s; s++)
        h = (h ^ *s) * 0x100000001b3ull;
    return h;
}

static bool str_equal(const void *a, const void *b)
{
    return strcmp(a, b) == 0;
}

/* A copy of name in tab's blocks; NULL when out of memory. */
static const char *name_add(vmt_symtab *tab, const char *name)
{
    size_t len = strlen(name) + 1;
    name_block *b = tab->names;
    if (!b || b->cap - b->used < len) {
        size_t cap = len > NAME_BLOCK ? len : NAME_BLOCK;
        if (!(b = vmt_malloc(sizeof *b + cap)))
            return NULL;
        *b = (name_block){.next = tab->names, .cap = cap};
        tab->names = b;
    }
    char *s = memcpy(b->data + b->used, name, len);
    b->used += len;
    return s;
}

/* Appends a symbol named name (copied) to l->raw. */
static void raw_add(loader *l, const char *name, uint64_t addr, uint64_t size, bool global)
{
    if (l->nomem)
        return;
    if (l->n_raw == l->cap_raw) {
        size_t cap = l->cap_raw ? 2 * l->cap_raw : 256;
        raw_sym *r = vmt_reallocarray(l->raw, cap, sizeof *r);
        if (!r) {
            l->nomem = true;
            return;
        }
        l->raw = r;
        l->cap_raw = cap;
    }
    const char *copy = name_add(l->tab, name);
    if (!copy) {
        l->nomem = true;
        return;
    }
    l->raw[l->n_raw++] =
        (raw_sym){.sym = {.name = copy, .addr = addr, .size = size}, .global = global};
}

static vmt_symtab *symtab_new(void)
{
    vmt_symtab *tab = vmt_calloc(1, sizeof *tab);
    if (tab)
        vmt_htab_init(&tab->byname, str_hash, str_equal);
    return tab;
}

static int cmp_raw_addr(const void *a, const void *b)
{
    const raw_sym *x = a, *y = b;
    if (x->sym.addr != y->sym.addr)
        return x->sym.addr < y->sym.addr ? -1 : 1;
    return strcmp(x->sym.name, y->sym.name);
}

void vmt_symtab_free(vmt_symtab *tab)
{
    if (!tab)
        return;
    vmt_free(tab->syms);
    vmt_htab_fini(&tab->byname);
    for (name_block *b = tab->names, *next; b; b = next) {
        next = b->next;
        vmt_free(b);
    }
    vmt_free(tab);
}

/* Appends the function symbols of one symbol-table section to l. */
static void read_section(Elf *elf, Elf_Scn *scn, const GElf_Shdr *sh, loader *l)
{
    Elf_Data *data = elf_getdata(scn, NULL);
    if (!data || sh->sh_entsize == 0)
        return;
    size_t n = sh->sh_size / sh->sh_entsize;
    for (size_t i = 0; i < n; i++) {
        GElf_Sym s;
        if (!gelf_getsym(data, (int)i, &s))
            continue;
        if (GELF_ST_TYPE(s.st_info) != STT_FUNC || s.st_shndx == SHN_UNDEF || s.st_value == 0)
            continue;
        const char *name = elf_strptr(elf, sh->sh_link, s.st_name);
        if (!name || !*name)
            continue;
        raw_add(l, name, s.st_value, s.st_size, GELF_ST_BIND(s.st_info) != STB_LOCAL);
    }
}

/* Reads .symtab, or .dynsym if there is no .symtab. */
static void read_symbols(Elf *elf, loader *l)
{
    for (Elf64_Word want = SHT_SYMTAB;; want = SHT_DYNSYM) {
        Elf_Scn *scn = NULL;
        while ((scn = elf_nextscn(elf, scn)) != NULL) {
            GElf_Shdr sh;
            if (gelf_getshdr(scn, &sh) && sh.sh_type == want)
                read_section(elf, scn, &sh, l);
        }
        if (l->n_raw > 0 || l->nomem || want == SHT_DYNSYM)
            return;
    }
}

/* Sorts, drops exact duplicates (same name and address) and builds the
 * name index; false when out of memory. */
static bool build_index(loader *l)
{
    vmt_symtab *tab = l->tab;
    if (l->n_raw == 0)
        return true; /* l->raw may be NULL: not for qsort */
    qsort(l->raw, l->n_raw, sizeof(raw_sym), cmp_raw_addr);
    tab->syms = vmt_reallocarray(NULL, l->n_raw, sizeof *tab->syms);
    bool *global = vmt_reallocarray(NULL, l->n_raw, sizeof *global);
    bool ok = tab->syms && global && vmt_htab_reserve(&tab->byname, l->n_raw) == VMT_OK;
    for (size_t i = 0; ok && i < l->n_raw; i++) {
        const raw_sym *r = &l->raw[i];
        if (tab->n > 0) {
            const vmt_symbol *last = &tab->syms[tab->n - 1];
            if (last->addr == r->sym.addr && strcmp(last->name, r->sym.name) == 0)
                continue;
        }
        global[tab->n] = r->global;
        tab->syms[tab->n++] = r->sym;
    }
    for (size_t i = 0; ok && i < tab->n; i++) {
        const vmt_symbol *s = &tab->syms[i];
        uintptr_t prev = (uintptr_t)vmt_htab_get(&tab->byname, s->name);
        /* First definition wins, unless a global one comes after a local. */
        if (prev && (!global[i] || global[prev - 1]))
            continue;
        (void)vmt_htab_put(&tab->byname, (void *)s->name, (void *)(i + 1)); /* reserved */
    }
    vmt_free(global);
    return ok;
}

vmt_status vmt_symtab_load(const char *path, vmt_symtab **out)
{
    if (!path || !out)
        return VMT_E_INVALID;
    if (elf_version(EV_CURRENT) == EV_NONE) {
        vmt_log(VMT_LOG_ERROR, "symbols: libelf: %s", elf_errmsg(-1));
        return VMT_E_INVALID;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        vmt_log(VMT_LOG_ERROR, "symbols: cannot open %s: %s", path, strerror(errno));
        return VMT_E_INVALID;
    }
    Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
    if (!elf || elf_kind(elf) != ELF_K_ELF) {
        vmt_log(VMT_LOG_ERROR, "symbols: %s is not an ELF file", path);
        if (elf)
            elf_end(elf);
        close(fd);
        return VMT_E_INVALID;
    }
    loader l = {.tab = symtab_new()};
    if (l.tab)
        read_symbols(elf, &l);
    elf_end(elf);
    close(fd);
    vmt_symtab *tab = l.tab;
    bool ok = tab && !l.nomem && build_index(&l);
    vmt_free(l.raw);
    if (!ok) {
        vmt_symtab_free(tab);
        return VMT_E_NOMEM;
    }
    if (tab->n == 0) {
        vmt_log(VMT_LOG_ERROR, "symbols: %s has no function symbols", path);
        vmt_symtab_free(tab);
        return VMT_E_INVALID;
    }
    *out = tab;
    return VMT_OK;
}

size_t vmt_symtab_count(const vmt_symtab *tab) { return tab ? tab->n : 0; }

const vmt_symbol *vmt_symtab_at(const vmt_symtab *tab, size_t i)
{
    if (!tab || i >= tab->n)
        return NULL;
    return &tab->syms[i];
}

const vmt_symbol *vmt_symtab_lookup(const vmt_symtab *tab, const char *name)
{
    if (!tab || !name)
        return NULL;
    uintptr_t idx = (uintptr_t)vmt_htab_get(&tab->byname, name);
    return idx ? &tab->syms[idx - 1] : NULL;
}

const vmt_symbol *vmt_symtab_find_addr(const vmt_symtab *tab, vmt_va va, uint64_t *offset)
{
    if (!tab || tab->n == 0)
        return NULL;
    /* Last symbol with addr <= va. */
    size_t lo = 0, hi = tab->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (tab->syms[mid].addr <= va)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const vmt_symbol *s = &tab->syms[lo - 1];
    if (s->size && va - s->addr >= s->size)
        return NULL;
    if (offset)
        *offset = va - s->addr;
    return s;
}

vmt_status vmt_elf_read_va(const char *path, vmt_va va, void *buf, size_t len)
{
    if (!path || (!buf && len) || elf_version(EV_CURRENT) == EV_NONE)
        return VMT_E_INVALID;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return VMT_E_INVALID;
    vmt_status st = VMT_E_INVALID;
    Elf *elf = elf_begin(fd, ELF_C_READ, NULL);
    size_t n = 0;
    if (elf && elf_kind(elf) == ELF_K_ELF && elf_getphdrnum(elf, &n) == 0) {
        for (size_t i = 0; i < n; i++) {
            GElf_Phdr ph;
            if (!gelf_getphdr(elf, (int)i, &ph) || ph.p_type != PT_LOAD || va < ph.p_vaddr ||
                va - ph.p_vaddr > ph.p_filesz || len > ph.p_filesz - (va - ph.p_vaddr))
                continue;
            /* p_filesz may claim more than the file holds: a short read
             * would leave buf half written, so the range is checked first */
            uint64_t at = ph.p_offset + (va - ph.p_vaddr);
            struct stat sb;
            if (fstat(fd, &sb) == 0 && at >= ph.p_offset && at <= (uint64_t)sb.st_size &&
                len <= (uint64_t)sb.st_size - at && pread(fd, buf, len, (off_t)at) == (ssize_t)len)
                st = VMT_OK;
            break;
        }
    }
    if (elf)
        elf_end(elf);
    close(fd);
    return st;
}

/* ---- linux: System.map ("ADDRESS TYPE NAME" per line, as nm prints) ---- */

/* Text symbols only (types t, T, w, W: code); sizes are unknown, so
 * find_addr answers with the nearest symbol below. A line is taken whole,
 * however long (getline): never a piece of a name read as a line of its
 * own. The address is plain hex digits (no sign, no blanks before) that
 * fit in 64 bits; a line with a NUL byte is not text. */
static bool parse_map_line(char *line, size_t len, loader *l)
{
    if (strlen(line) != len || !isxdigit((unsigned char)line[0]))
        return false;
    char *end;
    errno = 0;
    unsigned long long addr = strtoull(line, &end, 16);
    if (errno == ERANGE || *end != ' ' || !end[1] || end[2] != ' ')
        return false;
    char type = end[1];
    char *name = end + 3;
    name[strcspn(name, " \t\r\n")] = 0;
    if (!strchr("tTwW", type) || !*name || addr == 0)
        return false;
    raw_add(l, name, addr, 0, type == 'T' || type == 'W');
    return true;
}

vmt_status vmt_symtab_load_system_map(const char *path, vmt_symtab **out)
{
    if (!path || !out)
        return VMT_E_INVALID;
    FILE *f = fopen(path, "re");
    if (!f) {
        vmt_log(VMT_LOG_ERROR, "symbols: cannot open %s: %s", path, strerror(errno));
        return VMT_E_INVALID;
    }
    loader l = {.tab = symtab_new()};
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while (l.tab && !l.nomem && (n = getline(&line, &cap, f)) >= 0)
        parse_map_line(line, (size_t)n, &l);
    /* getline's buffer is the C library's (an ENOMEM there reads as ferror) */
    bool failed = ferror(f) != 0;
    free(line);
    fclose(f);
    vmt_symtab *tab = l.tab;
    bool ok = tab && !l.nomem && (failed || build_index(&l));
    vmt_free(l.raw);
    if (!ok || failed) {
        vmt_symtab_free(tab);
        if (ok)
            vmt_log(VMT_LOG_ERROR, "symbols: cannot read %s", path);
        return ok ? VMT_E_INVALID : VMT_E_NOMEM;
    }
    if (tab->n == 0) {
        vmt_log(VMT_LOG_ERROR, "symbols: %s has no text symbols (not a System.map?)", path);
        vmt_symtab_free(tab);
        return VMT_E_INVALID;
    }
    *out = tab;
    return VMT_OK;
}
