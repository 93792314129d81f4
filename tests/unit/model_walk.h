// SPDX-License-Identifier: MIT
/* An independent AMD64 page walker for the models and fuzz targets.
 *
 * Written from the x86-64 4-level paging rules, sharing nothing with the
 * implementation's walker (src/core/amd64.c): CR3 bits 51:12 give the
 * PML4; each level indexes its table with 9 bits of the address (47:39,
 * 38:30, 29:21, 20:12); bit 0 (P) clear stops the walk; bit 7 (PS) in a
 * PDPTE maps a 1 GiB page (frame bits 51:30), in a PDE a 2 MiB page (frame
 * bits 51:21); a PTE maps a 4 KiB page (bits 51:12). Bit 12 of a large
 * leaf is its PAT bit, never part of the address. PS in a PML4E is
 * reserved; like the implementation (vmitap/core.h documents 4 KiB, 2 MiB
 * and 1 GiB pages only) the model reads such an entry as a table pointer.
 * Tables are read straight from the mock's memory (vmt_mock_peek), never
 * through the core. */
#ifndef VMT_TESTS_UNIT_MODEL_WALK_H
#define VMT_TESTS_UNIT_MODEL_WALK_H

#include <stdbool.h>

#include "vmitap/mock.h"

typedef struct model_walk {
    unsigned levels;     /* entries read */
    vmt_pa entry_pa[4];  /* PML4E first */
    uint64_t entry[4];
    bool present;        /* reached a present leaf */
    vmt_pa pa;           /* the translation, when present */
    unsigned page_shift; /* 12, 21 or 30, when present */
} model_walk;

/* VMT_E_INVALID for a non-canonical va; the mock's status when a table
 * read fails (an entry outside guest RAM: VMT_E_OUT_OF_BOUNDS); else
 * VMT_OK with *out filled (present false: a non-present entry stopped the
 * walk, the last one in entry_pa). */
vmt_status model_walk_va(const vmt_mock *mock, vmt_addr_ctx ctx, model_walk *out);

#endif
