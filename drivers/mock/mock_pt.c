// SPDX-License-Identifier: MIT
/* The mock's page-table helpers: build and edit AMD64 page tables in the
 * mock's memory. They work on raw memory (peek/poke), so they are neither
 * counted nor subject to fault injection, and they reuse the core's walk
 * so that what they build is exactly what the core translates. */
#include "vmitap/mock.h"

#include "core/amd64.h"

/* Intermediate tables get P|W|U so that the leaf alone decides access. */
#define TABLE_FLAGS (VMT_PTE_P | VMT_PTE_W | VMT_PTE_U)

static vmt_status read_entry(vmt_mock *m, vmt_pa pa, uint64_t *e)
{
    return vmt_mock_peek(m, pa, e, sizeof *e);
}

static vmt_status write_entry(vmt_mock *m, vmt_pa pa, uint64_t e)
{
    return vmt_mock_poke(m, pa, &e, sizeof e);
}

static vmt_status walk_read(void *user, vmt_pa pa, void *buf, size_t len)
{
    return vmt_mock_peek(user, pa, buf, len);
}

static bool size_valid(vmt_mock_page_size size)
{
    return size == VMT_MOCK_4K || size == VMT_MOCK_2M || size == VMT_MOCK_1G;
}

/* The level whose entries map pages of this size: 1, 2 or 3. */
static int leaf_level(vmt_mock_page_size size)
{
    return 1 + ((int)size - VMT_PAGE_SHIFT) / 9;
}

vmt_status vmt_mock_new_root(vmt_mock *mock, vmt_pa *root)
{
    return vmt_mock_alloc_table(mock, root);
}

/* The table the entry at entry_pa points to, creating it if the entry is
 * not present. VMT_E_CONFLICT if the entry maps a large page. */
static vmt_status next_table(vmt_mock *m, vmt_pa entry_pa, int level, vmt_pa *table)
{
    uint64_t e;
    vmt_status st = read_entry(m, entry_pa, &e);
    if (st != VMT_OK)
        return st;
    if (vmt_amd64_present(e)) {
        if (vmt_amd64_is_leaf(e, level))
            return VMT_E_CONFLICT;
        *table = e & VMT_AMD64_ADDR_MASK;
        return VMT_OK;
    }
    vmt_pa fresh;
    st = vmt_mock_alloc_table(m, &fresh);
    if (st == VMT_OK)
        st = write_entry(m, entry_pa, fresh | TABLE_FLAGS);
    if (st == VMT_OK)
        *table = fresh;
    return st;
}

static bool map_args_valid(vmt_va va, vmt_pa pa, vmt_mock_page_size size, uint64_t flags)
{
    if (!size_valid(size) || !vmt_va_is_canonical(va))
        return false;
    uint64_t mask = (1ull << size) - 1;
    if ((va & mask) || (pa & mask) || (pa & ~VMT_PTE_ADDR_MASK))
        return false;
    return (flags & VMT_PTE_ADDR_MASK) == 0; /* flags must not touch the address */
}

vmt_status vmt_mock_map(vmt_mock *mock, vmt_pa root, vmt_va va, vmt_pa pa, vmt_mock_page_size size,
                        uint64_t flags)
{
    if (!mock || !map_args_valid(va, pa, size, flags))
        return VMT_E_INVALID;
    int target = leaf_level(size);
    vmt_pa table = root & VMT_AMD64_ADDR_MASK;
    for (int level = 4; level > target; level--) {
        vmt_status st = next_table(mock, vmt_amd64_entry_pa(table, va, level), level, &table);
        if (st != VMT_OK)
            return st;
    }
    vmt_pa epa = vmt_amd64_entry_pa(table, va, target);
    uint64_t old;
    vmt_status st = read_entry(mock, epa, &old);
    if (st != VMT_OK)
        return st;
    /* Overwriting a present table with a large leaf would orphan it. */
    if (vmt_amd64_present(old) && !vmt_amd64_is_leaf(old, target))
        return VMT_E_CONFLICT;
    uint64_t e = pa | flags | VMT_PTE_P;
    if (target > 1)
        e |= VMT_PTE_PS;
    return write_entry(mock, epa, e);
}

/* The entry at `level` on va's walk, if the walk reaches it. */
static vmt_status entry_at(const vmt_mock *m, vmt_pa root, vmt_va va, int level, vmt_pa *out)
{
    if (!m || !out || level < 1 || level > 4)
        return VMT_E_INVALID;
    vmt_walk w;
    vmt_status st = vmt_amd64_walk(walk_read, (void *)m, vmt_ctx(va, root), &w);
    if (st != VMT_OK && st != VMT_E_TRANSLATION)
        return st;
    /* The walk ends above `level` at a non-present entry or a large page. */
    unsigned i = 4u - (unsigned)level;
    if (w.levels <= i)
        return VMT_E_TRANSLATION;
    *out = w.entry_pa[i];
    return VMT_OK;
}

vmt_status vmt_mock_entry_pa(const vmt_mock *mock, vmt_pa root, vmt_va va, int level, vmt_pa *out)
{
    return entry_at(mock, root, va, level, out);
}

vmt_status vmt_mock_unmap(vmt_mock *mock, vmt_pa root, vmt_va va, int level)
{
    vmt_pa epa;
    vmt_status st = entry_at(mock, root, va, level, &epa);
    uint64_t e;
    if (st == VMT_OK)
        st = read_entry(mock, epa, &e);
    if (st == VMT_OK)
        st = write_entry(mock, epa, e & ~VMT_PTE_P);
    return st;
}
