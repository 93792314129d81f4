/* Function symbols of a guest ELF file (libelf), by name and by address. */
#ifndef VMITAP_TRACER_SYMBOLS_H
#define VMITAP_TRACER_SYMBOLS_H

#include "vmitap/types.h"

typedef struct vmt_symbol {
    const char *name; /* owned by the table */
    vmt_va addr;
    uint64_t size;    /* 0 when the ELF does not say */
} vmt_symbol;

typedef struct vmt_symtab vmt_symtab;

/* Reads the function symbols (STT_FUNC, defined, non-zero address) of the
 * ELF file at path from .symtab (or .dynsym when stripped). VMT_E_INVALID
 * if the file cannot be opened or is not an ELF with symbols; the reason
 * is logged. */
vmt_status vmt_symtab_load(const char *path, vmt_symtab **out);
void vmt_symtab_free(vmt_symtab *tab);
/* linux: the text symbols (t, T, w, W) of a System.map / nm listing. */
vmt_status vmt_symtab_load_system_map(const char *path, vmt_symtab **out);

size_t vmt_symtab_count(const vmt_symtab *tab);
/* The i-th symbol in address order (NULL past the end). */
const vmt_symbol *vmt_symtab_at(const vmt_symtab *tab, size_t i);
/* By exact name; a global definition wins over local ones of the same name. */
const vmt_symbol *vmt_symtab_lookup(const vmt_symtab *tab, const char *name);
/* The symbol whose [addr, addr + size) holds va (or the nearest one below
 * it when sizes are unknown); NULL if none. *offset (optional) = va - addr. */
const vmt_symbol *vmt_symtab_find_addr(const vmt_symtab *tab, vmt_va va, uint64_t *offset);

/* Reads len bytes at virtual address va of the ELF file at path, from
 * the file contents of its loadable segments (PT_LOAD, up to p_filesz):
 * what the guest's memory holds there at boot. VMT_E_INVALID if the file
 * is no ELF or [va, va + len) is not all in one segment's file contents. */
vmt_status vmt_elf_read_va(const char *path, vmt_va va, void *buf, size_t len);

#endif /* VMITAP_TRACER_SYMBOLS_H */
