// SPDX-License-Identifier: MIT
#include "model_walk.h"

#include <string.h>

vmt_status model_walk_va(const vmt_mock *mock, vmt_addr_ctx ctx, model_walk *out)
{
    static const unsigned shift[5] = {0, 12, 21, 30, 39}; /* index bits of each level */
    static const uint64_t frame_bits[4] = {0, 0x000ffffffffff000ull, 0x000fffffffe00000ull,
                                           0x000fffffc0000000ull};
    memset(out, 0, sizeof *out);
    uint64_t top = ctx.va >> 47; /* bits 63:47 all zero or all one */
    if (top != 0 && top != 0x1ffff)
        return VMT_E_INVALID;
    vmt_pa table = ctx.root & 0x000ffffffffff000ull;
    for (unsigned level = 4; level >= 1; level--) {
        vmt_pa epa = table + 8 * ((ctx.va >> shift[level]) & 511);
        uint64_t e;
        vmt_status st = vmt_mock_peek(mock, epa, &e, sizeof e);
        if (st != VMT_OK)
            return st;
        out->entry_pa[out->levels] = epa;
        out->entry[out->levels++] = e;
        if (!(e & 1))
            return VMT_OK; /* not present */
        bool leaf = level == 1 || ((level == 2 || level == 3) && (e & 0x80));
        if (leaf) {
            out->present = true;
            out->pa = (e & frame_bits[level]) | (ctx.va & ((1ull << shift[level]) - 1));
            out->page_shift = shift[level];
            return VMT_OK;
        }
        table = e & 0x000ffffffffff000ull;
    }
    return VMT_OK;
}
