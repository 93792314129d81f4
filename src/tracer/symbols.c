/* Function symbols of an ELF file, read once with libelf and kept in an
 * address-sorted array plus a name index. */
#define _POSIX_C_SOURCE 200809L /* open(O_CLOEXEC) */
#include <stdio.h>
#include "tracer/symbols.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <glib.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmitap/log.h"

struct vmt_symtab {
    GArray *syms;       /* vmt_symbol, sorted by address */
    GHashTable *byname; /* name -> index + 1 in syms (after sorting) */
    GStringChunk *names;
};

/* Entry kept while reading: whether the definition is global decides which
 * of several same-named symbols a lookup returns. */
typedef struct raw_sym {
    vmt_symbol sym;
    bool global;
} raw_sym;

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
    if (tab->syms)
        g_array_free(tab->syms, TRUE);
    if (tab->byname)
        g_hash_table_destroy(tab->byname);
    if (tab->names)
        g_string_chunk_free(tab->names);
    free(tab);
}

/* Appends the function symbols of one symbol-table section to raw. */
static void read_section(Elf *elf, Elf_Scn *scn, const GElf_Shdr *sh, GStringChunk *names,
                         GArray *raw)
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
        raw_sym r = {
            .sym = {.name = g_string_chunk_insert_const(names, name), .addr = s.st_value,
                    .size = s.st_size},
            .global = GELF_ST_BIND(s.st_info) != STB_LOCAL,
        };
        g_array_append_val(raw, r);
    }
}

/* Reads .symtab, or .dynsym if there is no .symtab. */
static void read_symbols(Elf *elf, GStringChunk *names, GArray *raw)
{
    for (Elf64_Word want = SHT_SYMTAB;; want = SHT_DYNSYM) {
        Elf_Scn *scn = NULL;
        while ((scn = elf_nextscn(elf, scn)) != NULL) {
            GElf_Shdr sh;
            if (gelf_getshdr(scn, &sh) && sh.sh_type == want)
                read_section(elf, scn, &sh, names, raw);
        }
        if (raw->len > 0 || want == SHT_DYNSYM)
            return;
    }
}

/* Sorts, drops exact duplicates (same name and address) and builds the
 * name index. */
static void build_index(vmt_symtab *tab, GArray *raw)
{
    if (raw->len == 0)
        return; /* raw->data may be NULL: not for qsort */
    qsort(raw->data, raw->len, sizeof(raw_sym), cmp_raw_addr);
    GArray *global = g_array_new(FALSE, FALSE, sizeof(bool));
    for (guint i = 0; i < raw->len; i++) {
        const raw_sym *r = &g_array_index(raw, raw_sym, i);
        if (tab->syms->len > 0) {
            const vmt_symbol *last = &g_array_index(tab->syms, vmt_symbol, tab->syms->len - 1);
            if (last->addr == r->sym.addr && strcmp(last->name, r->sym.name) == 0)
                continue;
        }
        g_array_append_val(tab->syms, r->sym);
        g_array_append_val(global, r->global);
    }
    for (guint i = 0; i < tab->syms->len; i++) {
        const vmt_symbol *s = &g_array_index(tab->syms, vmt_symbol, i);
        gpointer prev = g_hash_table_lookup(tab->byname, s->name);
        /* First definition wins, unless a global one comes after a local. */
        if (prev && (!g_array_index(global, bool, i) ||
                     g_array_index(global, bool, GPOINTER_TO_UINT(prev) - 1)))
            continue;
        g_hash_table_insert(tab->byname, (gpointer)s->name, GUINT_TO_POINTER(i + 1));
    }
    g_array_free(global, TRUE);
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
    vmt_symtab *tab = calloc(1, sizeof *tab);
    if (!tab) {
        elf_end(elf);
        close(fd);
        return VMT_E_NOMEM;
    }
    tab->syms = g_array_new(FALSE, FALSE, sizeof(vmt_symbol));
    tab->byname = g_hash_table_new(g_str_hash, g_str_equal);
    tab->names = g_string_chunk_new(4096);
    GArray *raw = g_array_new(FALSE, FALSE, sizeof(raw_sym));
    read_symbols(elf, tab->names, raw);
    elf_end(elf);
    close(fd);
    build_index(tab, raw);
    g_array_free(raw, TRUE);
    if (tab->syms->len == 0) {
        vmt_log(VMT_LOG_ERROR, "symbols: %s has no function symbols", path);
        vmt_symtab_free(tab);
        return VMT_E_INVALID;
    }
    *out = tab;
    return VMT_OK;
}

size_t vmt_symtab_count(const vmt_symtab *tab) { return tab ? tab->syms->len : 0; }

const vmt_symbol *vmt_symtab_at(const vmt_symtab *tab, size_t i)
{
    if (!tab || i >= tab->syms->len)
        return NULL;
    return &g_array_index(tab->syms, vmt_symbol, i);
}

const vmt_symbol *vmt_symtab_lookup(const vmt_symtab *tab, const char *name)
{
    if (!tab || !name)
        return NULL;
    guint idx = GPOINTER_TO_UINT(g_hash_table_lookup(tab->byname, name));
    return idx ? &g_array_index(tab->syms, vmt_symbol, idx - 1) : NULL;
}

const vmt_symbol *vmt_symtab_find_addr(const vmt_symtab *tab, vmt_va va, uint64_t *offset)
{
    if (!tab || tab->syms->len == 0)
        return NULL;
    /* Last symbol with addr <= va. */
    size_t lo = 0, hi = tab->syms->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (g_array_index(tab->syms, vmt_symbol, mid).addr <= va)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    const vmt_symbol *s = &g_array_index(tab->syms, vmt_symbol, lo - 1);
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
static bool parse_map_line(char *line, size_t len, GStringChunk *names, raw_sym *out)
{
    if (strlen(line) != len || !g_ascii_isxdigit(line[0]))
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
    *out = (raw_sym){.sym = {.name = g_string_chunk_insert_const(names, name), .addr = addr},
                     .global = type == 'T' || type == 'W'};
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
    vmt_symtab *tab = calloc(1, sizeof *tab);
    if (!tab) {
        fclose(f);
        return VMT_E_NOMEM;
    }
    tab->syms = g_array_new(FALSE, FALSE, sizeof(vmt_symbol));
    tab->byname = g_hash_table_new(g_str_hash, g_str_equal);
    tab->names = g_string_chunk_new(1 << 16);
    GArray *raw = g_array_new(FALSE, FALSE, sizeof(raw_sym));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, f)) >= 0) {
        raw_sym r;
        if (parse_map_line(line, (size_t)n, tab->names, &r))
            g_array_append_val(raw, r);
    }
    bool failed = ferror(f) != 0;
    free(line);
    fclose(f);
    if (failed) {
        vmt_log(VMT_LOG_ERROR, "symbols: cannot read %s", path);
        g_array_free(raw, TRUE);
        vmt_symtab_free(tab);
        return VMT_E_INVALID;
    }
    build_index(tab, raw);
    g_array_free(raw, TRUE);
    if (tab->syms->len == 0) {
        vmt_log(VMT_LOG_ERROR, "symbols: %s has no text symbols (not a System.map?)", path);
        vmt_symtab_free(tab);
        return VMT_E_INVALID;
    }
    *out = tab;
    return VMT_OK;
}
