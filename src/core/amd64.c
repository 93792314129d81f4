// SPDX-License-Identifier: MIT
/* The AMD64 page walk. */
#include "core/amd64.h"

#include <string.h>

vmt_status vmt_amd64_walk(vmt_amd64_read_fn read, void *user, vmt_addr_ctx ctx, vmt_walk *out)
{
    if (!read || !out)
        return VMT_E_INVALID;
    if (!vmt_va_is_canonical(ctx.va))
        return VMT_E_INVALID;

    vmt_walk w;
    memset(&w, 0, sizeof w);
    vmt_pa table = ctx.root & VMT_AMD64_ADDR_MASK;
    for (int level = 4; level >= 1; level--) {
        vmt_pa epa = vmt_amd64_entry_pa(table, ctx.va, level);
        uint64_t e;
        vmt_status st = read(user, epa, &e, sizeof e);
        if (st != VMT_OK)
            return st; /* a failed read is an error, not "not present" */
        unsigned i = w.levels++;
        w.entry_pa[i] = epa;
        w.entry[i] = e;
        if (!vmt_amd64_present(e)) {
            *out = w;
            return VMT_E_TRANSLATION;
        }
        if (vmt_amd64_is_leaf(e, level)) {
            w.pa = vmt_amd64_leaf_pa(e, level, ctx.va);
            w.page_shift = vmt_amd64_page_shift(level);
            *out = w;
            return VMT_OK;
        }
        table = e & VMT_AMD64_ADDR_MASK;
    }
    return VMT_E_TRANSLATION; /* not reached: level 1 is always a leaf */
}
