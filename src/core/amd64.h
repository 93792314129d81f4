// SPDX-License-Identifier: MIT
/* AMD64 4-level paging: entry layout and the page walk.
 *
 * Levels are numbered like the hardware manuals: 4 = PML4, 3 = PDPT,
 * 2 = PD, 1 = PT. The walk is written against a read callback so that the
 * core (through the driver) and the mock driver (straight from its memory)
 * share one implementation. */
#ifndef VMITAP_CORE_AMD64_H
#define VMITAP_CORE_AMD64_H

#include "vmitap/core.h"

#define VMT_AMD64_P (1ull << 0)
#define VMT_AMD64_PS (1ull << 7)
#define VMT_AMD64_ADDR_MASK 0x000ffffffffff000ull

/* Index of va's entry in its level-`level` table (0..511). */
static inline unsigned vmt_amd64_index(vmt_va va, int level)
{
    return (unsigned)((va >> (VMT_PAGE_SHIFT + 9 * (level - 1))) & 0x1ff);
}

/* Physical address of va's entry in the table at table_pa. */
static inline vmt_pa vmt_amd64_entry_pa(vmt_pa table_pa, vmt_va va, int level)
{
    return (table_pa & VMT_AMD64_ADDR_MASK) + 8ull * vmt_amd64_index(va, level);
}

static inline bool vmt_amd64_present(uint64_t entry) { return entry & VMT_AMD64_P; }

/* True if the entry maps a page rather than pointing to a table: always at
 * level 1, with PS set at levels 2 (2 MiB) and 3 (1 GiB). */
static inline bool vmt_amd64_is_leaf(uint64_t entry, int level)
{
    return level == 1 || ((level == 2 || level == 3) && (entry & VMT_AMD64_PS));
}

/* Page shift of a leaf at `level`: 12, 21 or 30. */
static inline unsigned vmt_amd64_page_shift(int level) { return VMT_PAGE_SHIFT + 9u * (unsigned)(level - 1); }

/* Physical address va translates to through a present leaf at `level`. */
static inline vmt_pa vmt_amd64_leaf_pa(uint64_t entry, int level, vmt_va va)
{
    uint64_t size = 1ull << vmt_amd64_page_shift(level);
    return (entry & VMT_AMD64_ADDR_MASK & ~(size - 1)) | (va & (size - 1));
}

typedef vmt_status (*vmt_amd64_read_fn)(void *user, vmt_pa pa, void *buf, size_t len);

/* The walk: see vmt_core_walk in vmitap/core.h for what *out holds. */
vmt_status vmt_amd64_walk(vmt_amd64_read_fn read, void *user, vmt_addr_ctx ctx, vmt_walk *out);

#endif /* VMITAP_CORE_AMD64_H */
