// SPDX-License-Identifier: MIT
/* The page-table monitor on the mock driver, with real AMD64 page tables
 * built in the mock's memory and edited the way a guest would: the entry
 * changes in memory, then the write is reported with mark_dirty_entry and
 * processed with process_dirty_entries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ptm/ptm_internal.h"
#include "vmitap/mock.h"

#define MAX_GFN 0x10000u /* 256 MiB of guest RAM; tables come from the top */

typedef struct fx {
    vmt_core *vmi;
    vmt_mock *mock;
    vmt_ptm *ptm;
    vmt_ptm_events ev;
} fx;

static fx *fx_new(void)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    VMT_OPTS(vmt_mock_opts, o, .max_gfn = MAX_GFN, .vcpus = 2);
    assert_int_equal(vmt_mock_core_new(&o, &f->vmi, &f->mock), VMT_OK);
    assert_int_equal(vmt_ptm_new(&f->ptm), VMT_OK);
    return f;
}

static void fx_free(fx *f)
{
    assert_int_equal(vmt_ptm_check(f->ptm), VMT_OK);
    vmt_ptm_events_free(&f->ev);
    vmt_ptm_free(f->ptm);
    vmt_core_free(f->vmi);
    free(f);
}

static int setup(void **state)
{
    *state = fx_new();
    return 0;
}

static int teardown(void **state)
{
    fx_free(*state);
    return 0;
}

/* ---- helpers ---- */

static uint64_t peek64(fx *f, vmt_pa pa)
{
    uint64_t v;
    assert_int_equal(vmt_mock_peek(f->mock, pa, &v, sizeof v), VMT_OK);
    return v;
}

static void poke64(fx *f, vmt_pa pa, uint64_t v)
{
    assert_int_equal(vmt_mock_poke(f->mock, pa, &v, sizeof v), VMT_OK);
}

static vmt_pa new_root(fx *f)
{
    vmt_pa root;
    assert_int_equal(vmt_mock_new_root(f->mock, &root), VMT_OK);
    return root;
}

static vmt_pa new_table(fx *f)
{
    vmt_pa t;
    assert_int_equal(vmt_mock_alloc_table(f->mock, &t), VMT_OK);
    return t;
}

static void map4k(fx *f, vmt_pa root, vmt_va va, vmt_pa pa)
{
    assert_int_equal(vmt_mock_map(f->mock, root, va & ~0xfffull, pa, VMT_MOCK_4K, VMT_PTE_W),
                     VMT_OK);
}

static vmt_pa entry_at(fx *f, vmt_pa root, vmt_va va, int level)
{
    vmt_pa pa;
    assert_int_equal(vmt_mock_entry_pa(f->mock, root, va, level, &pa), VMT_OK);
    return pa;
}

/* The table page holding va's entry at `level`. */
static vmt_pa table_at(fx *f, vmt_pa root, vmt_va va, int level)
{
    return entry_at(f, root, va, level) & ~0xfffull;
}

/* A guest write to an entry, then the write event reported on vcpu.
 * Returns what mark_dirty_entry answered. */
static bool guest_write(fx *f, vmt_pa epa, uint64_t value, vmt_view view, vmt_vcpu vcpu)
{
    poke64(f, epa, value);
    return vmt_ptm_mark_dirty_entry(f->ptm, epa, view, vcpu);
}

/* Processes vcpu's dirty entries; f->ev then holds exactly their events. */
static void process(fx *f, vmt_vcpu vcpu)
{
    f->ev.len = 0;
    assert_int_equal(vmt_ptm_process_dirty_entries(f->ptm, f->vmi, vcpu, &f->ev), VMT_OK);
    assert_int_equal(vmt_ptm_check(f->ptm), VMT_OK);
}

static vmt_access access_of(fx *f, vmt_pa pa, vmt_view view)
{
    vmt_access a;
    assert_int_equal(vmt_core_get_access(f->vmi, vmt_gfn_from_pa(pa), view, &a), VMT_OK);
    return a;
}

static void expect_event(const fx *f, size_t i, vmt_ptm_event_kind kind, vmt_view view,
                         vmt_addr_ctx ctx, vmt_pa pa, uintptr_t tag)
{
    assert_true(i < f->ev.len);
    const vmt_ptm_event *e = &f->ev.items[i];
    assert_int_equal(e->kind, kind);
    assert_int_equal(e->view, view);
    assert_true(vmt_ctx_eq(e->ctx, ctx));
    assert_int_equal(e->pa, pa);
    assert_int_equal(e->tag, tag);
}

static void expect_counts(fx *f, size_t tables, size_t entries, size_t paged_in)
{
    assert_int_equal(vmt_ptm_check(f->ptm), VMT_OK);
    assert_int_equal(vmt_ptm_monitored_tables(f->ptm), tables);
    assert_int_equal(vmt_ptm_monitored_entries(f->ptm), entries);
    assert_int_equal(vmt_ptm_paged_in_entries(f->ptm), paged_in);
}

static void expect_translation(fx *f, vmt_addr_ctx ctx, vmt_view view, bool in, vmt_pa pa)
{
    bool paged_in = !in;
    vmt_pa got = 0;
    assert_true(vmt_ptm_lookup(f->ptm, ctx, view, NULL, &paged_in, &got));
    assert_int_equal(paged_in, in);
    if (in)
        assert_int_equal(got, pa);
}

#define VA_USER 0x00007f1234567321ull /* user half, with an offset in its page */
#define FRAME_A 0x200000ull
#define FRAME_B 0x300000ull

/* ---- monitoring write-protects exactly the walk ---- */

static void test_monitor_protects_walk(void **state)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    map4k(f, root, VA_USER, FRAME_A);
    vmt_addr_ctx ctx = vmt_ctx(VA_USER, root);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx, 0, 7), VMT_OK);
    expect_counts(f, 4, 4, 1);
    expect_translation(f, ctx, 0, true, FRAME_A | (VA_USER & 0xfff));
    for (int level = 4; level >= 1; level--) {
        vmt_pa t = table_at(f, root, VA_USER, level);
        assert_int_equal(access_of(f, t, 0), VMT_ACCESS_R);
        assert_int_equal(vmt_mock_last_access_flags(f->mock, vmt_gfn_from_pa(t), 0),
                         VMT_SET_ACCESS_IGNORE_PAGE_WALK_UPDATES);
        assert_true(vmt_ptm_mark_dirty_entry(f->ptm, entry_at(f, root, VA_USER, level), 0, 0));
    }
    assert_int_equal(access_of(f, FRAME_A, 0), VMT_ACCESS_RWX); /* the data page is not a table */
    /* Another entry of a protected table is not monitored. */
    assert_false(vmt_ptm_mark_dirty_entry(f->ptm, entry_at(f, root, VA_USER, 1) + 8, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 0); /* nothing changed */

    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, ctx, 0), VMT_OK);
    expect_counts(f, 0, 0, 0);
    for (int level = 4; level >= 1; level--)
        assert_int_equal(access_of(f, table_at(f, root, VA_USER, level), 0), VMT_ACCESS_RWX);
    assert_false(vmt_ptm_lookup(f->ptm, ctx, 0, NULL, NULL, NULL));
}

/* ---- page-out and page-in at every level ---- */

static void page_out_in_at(void **state, int level)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    map4k(f, root, VA_USER, FRAME_A);
    vmt_addr_ctx ctx = vmt_ctx(VA_USER, root);
    vmt_pa pa = FRAME_A | (VA_USER & 0xfff);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx, 0, 0xabc), VMT_OK);

    vmt_pa epa = entry_at(f, root, VA_USER, level);
    uint64_t old = peek64(f, epa);
    vmt_pa below[4], below_entry[4];
    for (int l = level - 1; l >= 1; l--) {
        below[l] = table_at(f, root, VA_USER, l);
        below_entry[l] = entry_at(f, root, VA_USER, l);
    }

    assert_true(guest_write(f, epa, old & ~VMT_PTE_P, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 1);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, ctx, pa, 0xabc);
    size_t kept = (size_t)(5 - level); /* the tables from the root down to the cleared entry */
    expect_counts(f, kept, kept, 0);
    expect_translation(f, ctx, 0, false, 0);
    for (int l = level - 1; l >= 1; l--) {
        assert_int_equal(access_of(f, below[l], 0), VMT_ACCESS_RWX);
        assert_false(vmt_ptm_mark_dirty_entry(f->ptm, below_entry[l], 0, 0));
    }

    assert_true(guest_write(f, epa, old, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 1);
    expect_event(f, 0, VMT_PTM_PAGE_IN, 0, ctx, pa, 0xabc);
    expect_counts(f, 4, 4, 1);
    for (int l = level - 1; l >= 1; l--)
        assert_int_equal(access_of(f, below[l], 0), VMT_ACCESS_R);
}

static void test_page_out_in_pte(void **state)
{
    page_out_in_at(state, 1);
}
static void test_page_out_in_pde(void **state)
{
    page_out_in_at(state, 2);
}
static void test_page_out_in_pdpte(void **state)
{
    page_out_in_at(state, 3);
}
static void test_page_out_in_pml4e(void **state)
{
    page_out_in_at(state, 4);
}

/* An address with nothing mapped: only the root's entry is monitored; the
 * guest building the whole hierarchy below it pages it in. */
static void test_walk_extends_from_empty_root(void **state)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    vmt_addr_ctx ctx = vmt_ctx(VA_USER, root);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx, 0, 1), VMT_OK);
    expect_counts(f, 1, 1, 0);
    map4k(f, root, VA_USER, FRAME_A); /* writes the PML4E and the new tables */
    assert_true(vmt_ptm_mark_dirty_entry(f->ptm, entry_at(f, root, VA_USER, 4), 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 1);
    expect_event(f, 0, VMT_PTM_PAGE_IN, 0, ctx, FRAME_A | (VA_USER & 0xfff), 1);
    expect_counts(f, 4, 4, 1);
    assert_int_equal(access_of(f, table_at(f, root, VA_USER, 1), 0), VMT_ACCESS_R);
}

/* ---- a whole subtree going away ---- */

#define VA_BASE 0x0000100000000000ull /* PML4 index 32 */

static void test_subtree_cleared(void **state)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    vmt_addr_ctx ctx[24];
    vmt_pa pa[24];
    for (int p = 0; p < 8; p++) {
        for (int k = 0; k < 3; k++) {
            int i = p * 3 + k;
            vmt_va va = VA_BASE + (vmt_va)p * 0x200000 + (vmt_va)k * 37 * 0x1000 + (vmt_va)i * 8;
            pa[i] = 0x1000000 + (vmt_pa)i * 0x1000 + (va & 0xfff);
            map4k(f, root, va, pa[i] & ~0xfffull);
            ctx[i] = vmt_ctx(va, root);
            assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx[i], 0, (uintptr_t)i), VMT_OK);
        }
    }
    vmt_va other_va = VA_BASE + 0x40000000; /* next PDPTE: a different PD and PT */
    map4k(f, root, other_va, FRAME_B);
    vmt_addr_ctx other = vmt_ctx(other_va, root);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, other, 0, 99), VMT_OK);
    /* PML4, PDPT, PD + 8 PTs, and PD + PT for `other`. */
    expect_counts(f, 13, 1 + 2 + 9 + 25, 25);

    vmt_pa pd = table_at(f, root, VA_BASE, 2);
    vmt_pa pts[8];
    for (int p = 0; p < 8; p++)
        pts[p] = table_at(f, root, ctx[p * 3].va, 1);

    /* The PDPTE above the 8 PTs goes: 24 page-outs, in monitor order. */
    vmt_pa pdpte = entry_at(f, root, VA_BASE, 3);
    uint64_t old = peek64(f, pdpte);
    assert_true(guest_write(f, pdpte, 0, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 24);
    for (int i = 0; i < 24; i++)
        expect_event(f, (size_t)i, VMT_PTM_PAGE_OUT, 0, ctx[i], pa[i], (uintptr_t)i);
    expect_counts(f, 4, 1 + 2 + 1 + 1, 1);
    assert_int_equal(access_of(f, pd, 0), VMT_ACCESS_RWX);
    for (int p = 0; p < 8; p++)
        assert_int_equal(access_of(f, pts[p], 0), VMT_ACCESS_RWX);
    expect_translation(f, other, 0, true, FRAME_B);

    assert_true(guest_write(f, pdpte, old, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 24);
    for (int i = 0; i < 24; i++)
        expect_event(f, (size_t)i, VMT_PTM_PAGE_IN, 0, ctx[i], pa[i], (uintptr_t)i);
    expect_counts(f, 13, 37, 25);

    /* One PDE: its three addresses only. */
    vmt_pa pde = entry_at(f, root, ctx[9].va, 2);
    assert_true(guest_write(f, pde, peek64(f, pde) & ~VMT_PTE_P, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 3);
    for (int i = 9; i < 12; i++)
        expect_event(f, (size_t)(i - 9), VMT_PTM_PAGE_OUT, 0, ctx[i], pa[i], (uintptr_t)i);
    expect_counts(f, 12, 37 - 3, 22);
    assert_int_equal(access_of(f, pts[3], 0), VMT_ACCESS_RWX);
}

/* ---- relocation ---- */

static void test_relocation(void **state)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    map4k(f, root, VA_USER, FRAME_A);
    vmt_addr_ctx ctx = vmt_ctx(VA_USER, root);
    vmt_pa off = VA_USER & 0xfff;
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx, 0, 5), VMT_OK);

    /* The leaf moves to another frame while present: out (old), then in (new). */
    vmt_pa pte = entry_at(f, root, VA_USER, 1);
    assert_true(guest_write(f, pte, FRAME_B | VMT_PTE_P | VMT_PTE_W, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 2);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, ctx, FRAME_A | off, 5);
    expect_event(f, 1, VMT_PTM_PAGE_IN, 0, ctx, FRAME_B | off, 5);
    expect_counts(f, 4, 4, 1);

    /* Permission bits only: no event. */
    assert_true(guest_write(f, pte, FRAME_B | VMT_PTE_P | VMT_PTE_NX, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 0);

    /* The PDE switches to a new PT that maps the address elsewhere. */
    vmt_pa old_pt = table_at(f, root, VA_USER, 1);
    vmt_pa new_pt = new_table(f);
    vmt_pa frame_c = 0x400000;
    poke64(f, new_pt + (pte & 0xfff), frame_c | VMT_PTE_P);
    vmt_pa pde = entry_at(f, root, VA_USER, 2);
    assert_true(guest_write(f, pde, new_pt | VMT_PTE_P | VMT_PTE_W | VMT_PTE_U, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 2);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, ctx, FRAME_B | off, 5);
    expect_event(f, 1, VMT_PTM_PAGE_IN, 0, ctx, frame_c | off, 5);
    expect_counts(f, 4, 4, 1);
    assert_int_equal(access_of(f, old_pt, 0), VMT_ACCESS_RWX);
    assert_int_equal(access_of(f, new_pt, 0), VMT_ACCESS_R);
    assert_false(vmt_ptm_mark_dirty_entry(f->ptm, pte, 0, 0)); /* the old PT's entry */
}

/* ---- large pages ---- */

static void test_large_2m(void **state)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    vmt_va va = 0x0000000040a00000ull + 0x12345; /* in a 2 MiB page */
    vmt_va base = va & ~0x1fffffull;
    assert_int_equal(vmt_mock_map(f->mock, root, base, 0x400000, VMT_MOCK_2M, VMT_PTE_W), VMT_OK);
    vmt_addr_ctx ctx = vmt_ctx(va, root);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx, 0, 2), VMT_OK);
    expect_counts(f, 3, 3, 1);
    expect_translation(f, ctx, 0, true, 0x400000 + 0x12345);

    /* The 2 MiB leaf becomes a table mapping a 4 KiB frame elsewhere. */
    vmt_pa pde = entry_at(f, root, va, 2);
    vmt_pa pt = new_table(f);
    poke64(f, pt + 8 * ((va >> 12) & 0x1ff), FRAME_A | VMT_PTE_P);
    assert_true(guest_write(f, pde, pt | VMT_PTE_P | VMT_PTE_W, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 2);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, ctx, 0x400000 + 0x12345, 2);
    expect_event(f, 1, VMT_PTM_PAGE_IN, 0, ctx, FRAME_A + 0x345, 2);
    expect_counts(f, 4, 4, 1);
    assert_int_equal(access_of(f, pt, 0), VMT_ACCESS_R);

    /* Back to a 2 MiB page at another base: the PT is released. */
    assert_true(guest_write(f, pde, 0x600000 | VMT_PTE_P | VMT_PTE_PS, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 2);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, ctx, FRAME_A + 0x345, 2);
    expect_event(f, 1, VMT_PTM_PAGE_IN, 0, ctx, 0x600000 + 0x12345, 2);
    expect_counts(f, 3, 3, 1);
    assert_int_equal(access_of(f, pt, 0), VMT_ACCESS_RWX);

    /* The same bytes through a 4 KiB mapping: the translation holds, no event. */
    poke64(f, pt + 8 * ((va >> 12) & 0x1ff), (0x600000 + 0x12000) | VMT_PTE_P);
    assert_true(guest_write(f, pde, pt | VMT_PTE_P, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 0);
    expect_counts(f, 4, 4, 1);
    assert_true(guest_write(f, pde, 0x600000 | VMT_PTE_P | VMT_PTE_PS, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 0);

    /* The large page disappears, then appears. */
    assert_true(guest_write(f, pde, 0x600000 | VMT_PTE_PS, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 1);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, ctx, 0x600000 + 0x12345, 2);
    expect_counts(f, 3, 3, 0);
    assert_true(guest_write(f, pde, 0x800000 | VMT_PTE_P | VMT_PTE_PS, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 1);
    expect_event(f, 0, VMT_PTM_PAGE_IN, 0, ctx, 0x800000 + 0x12345, 2);
    expect_counts(f, 3, 3, 1);
}

static void test_large_1g(void **state)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    vmt_va va = 0x0000008040000000ull + 0x1234567; /* PML4 index 1, in a 1 GiB page */
    vmt_va base = va & ~0x3fffffffull;
    assert_int_equal(vmt_mock_map(f->mock, root, base, 0x40000000, VMT_MOCK_1G, 0), VMT_OK);
    vmt_addr_ctx ctx = vmt_ctx(va, root);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx, 0, 3), VMT_OK);
    expect_counts(f, 2, 2, 1);
    expect_translation(f, ctx, 0, true, 0x40000000 + 0x1234567);

    vmt_pa pdpte = entry_at(f, root, va, 3);
    uint64_t leaf = peek64(f, pdpte);
    assert_true(guest_write(f, pdpte, leaf & ~VMT_PTE_P, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 1);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, ctx, 0x40000000 + 0x1234567, 3);
    expect_counts(f, 2, 2, 0);

    assert_true(guest_write(f, pdpte, leaf, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 1);
    expect_event(f, 0, VMT_PTM_PAGE_IN, 0, ctx, 0x40000000 + 0x1234567, 3);

    /* The 1 GiB leaf becomes a PD holding a 2 MiB leaf. */
    vmt_pa pd = new_table(f);
    poke64(f, pd + 8 * ((va >> 21) & 0x1ff), 0xa00000 | VMT_PTE_P | VMT_PTE_PS);
    assert_true(guest_write(f, pdpte, pd | VMT_PTE_P | VMT_PTE_W, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 2);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, ctx, 0x40000000 + 0x1234567, 3);
    expect_event(f, 1, VMT_PTM_PAGE_IN, 0, ctx, 0xa00000 + (va & 0x1fffff), 3);
    expect_counts(f, 3, 3, 1);
    assert_int_equal(access_of(f, pd, 0), VMT_ACCESS_R);
}

/* ---- sharing ---- */

#define VA_KERNEL 0xffff800000201000ull

/* Two address spaces share the kernel half: one PDPT below both roots. */
static void test_shared_tables_across_roots(void **state)
{
    fx *f = *state;
    vmt_pa r1 = new_root(f), r2 = new_root(f);
    map4k(f, r1, VA_KERNEL, FRAME_A);
    vmt_pa e1 = entry_at(f, r1, VA_KERNEL, 4);
    vmt_pa e2 = r2 + (e1 & 0xfff);
    poke64(f, e2, peek64(f, e1));
    vmt_addr_ctx c1 = vmt_ctx(VA_KERNEL, r1), c2 = vmt_ctx(VA_KERNEL, r2);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, c1, 0, 1), VMT_OK);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, c2, 0, 2), VMT_OK);
    expect_counts(f, 5, 5, 2); /* 2 roots + shared PDPT, PD, PT */

    vmt_pa pte = entry_at(f, r1, VA_KERNEL, 1);
    uint64_t old = peek64(f, pte);
    assert_true(guest_write(f, pte, 0, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 2);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, c1, FRAME_A, 1);
    expect_event(f, 1, VMT_PTM_PAGE_OUT, 0, c2, FRAME_A, 2);
    assert_true(guest_write(f, pte, old, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 2);
    expect_event(f, 0, VMT_PTM_PAGE_IN, 0, c1, FRAME_A, 1);
    expect_event(f, 1, VMT_PTM_PAGE_IN, 0, c2, FRAME_A, 2);

    vmt_pa shared[3] = {table_at(f, r1, VA_KERNEL, 3), table_at(f, r1, VA_KERNEL, 2),
                        table_at(f, r1, VA_KERNEL, 1)};
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, c1, 0), VMT_OK);
    expect_counts(f, 4, 4, 1);
    assert_int_equal(access_of(f, r1, 0), VMT_ACCESS_RWX);
    for (int i = 0; i < 3; i++)
        assert_int_equal(access_of(f, shared[i], 0), VMT_ACCESS_R);
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, c2, 0), VMT_OK);
    expect_counts(f, 0, 0, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(access_of(f, shared[i], 0), VMT_ACCESS_RWX);
    assert_int_equal(access_of(f, r2, 0), VMT_ACCESS_RWX);
}

static vmt_va sign_extend(vmt_va va)
{
    return (va & (1ull << 47)) ? va | 0xffff000000000000ull : va;
}

/* A self-referencing PML4 (as Windows has) makes the root page a PML4, a
 * PDPT, a PD and a PT at once, and puts one entry on a walk three times. */
static void test_table_at_several_levels(void **state)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    const vmt_va self = 0x1ed;
    poke64(f, root + 8 * self, root | VMT_PTE_P | VMT_PTE_W);
    vmt_va va_n = 0x0000008000001000ull; /* PML4 index 1 */
    map4k(f, root, va_n, FRAME_A);
    vmt_pa pdpt_n = table_at(f, root, va_n, 3);
    /* Through the self entry three times, then the PML4E at index 1 as a
     * PTE: this address reads the PDPT of va_n as data. */
    vmt_va va_r = sign_extend(self << 39 | self << 30 | self << 21 | 1ull << 12) + 0x10;
    vmt_addr_ctx cr = vmt_ctx(va_r, root), cn = vmt_ctx(va_n, root);

    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, cr, 0, 'R'), VMT_OK);
    expect_counts(f, 1, 2, 1);
    expect_translation(f, cr, 0, true, pdpt_n + 0x10);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, cn, 0, 'N'), VMT_OK);
    expect_counts(f, 4, 5, 2);

    /* PML4E 1 is va_n's PML4E and va_r's PTE. */
    vmt_pa e = root + 8;
    uint64_t old = peek64(f, e);
    assert_true(guest_write(f, e, old & ~VMT_PTE_P, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 2);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, cr, pdpt_n + 0x10, 'R');
    expect_event(f, 1, VMT_PTM_PAGE_OUT, 0, cn, FRAME_A, 'N');
    expect_counts(f, 1, 2, 0);
    assert_int_equal(access_of(f, pdpt_n, 0), VMT_ACCESS_RWX);
    assert_true(guest_write(f, e, old, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 2);
    expect_event(f, 0, VMT_PTM_PAGE_IN, 0, cr, pdpt_n + 0x10, 'R');
    expect_event(f, 1, VMT_PTM_PAGE_IN, 0, cn, FRAME_A, 'N');

    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, cr, 0), VMT_OK);
    expect_counts(f, 4, 4, 1);
    assert_int_equal(access_of(f, root, 0), VMT_ACCESS_R); /* still va_n's PML4 */
    assert_false(vmt_ptm_mark_dirty_entry(f->ptm, root + 8 * self, 0, 0));
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, cn, 0), VMT_OK);
    expect_counts(f, 0, 0, 0);
    assert_int_equal(access_of(f, root, 0), VMT_ACCESS_RWX);
}

/* Two processes map one frame (a shared library page). One loses it: the
 * frame went out, so the other's unchanged translation is announced again
 * after the page-out, for consumers that handle page-outs per frame. */
static void test_shared_frame_announced_again(void **state)
{
    fx *f = *state;
    vmt_pa r1 = new_root(f), r2 = new_root(f);
    vmt_va lib = 0x00007f0000010000ull;
    map4k(f, r1, lib, FRAME_A);
    map4k(f, r2, lib, FRAME_A);
    map4k(f, r2, lib + 0x1000, FRAME_B);
    vmt_addr_ctx c1 = vmt_ctx(lib + 0x40, r1), c2 = vmt_ctx(lib + 0x80, r2);
    vmt_addr_ctx c3 = vmt_ctx(lib + 0x1000, r2);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, c1, 0, 1), VMT_OK);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, c2, 0, 2), VMT_OK);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, c3, 0, 3), VMT_OK);

    vmt_pa pte1 = entry_at(f, r1, lib, 1);
    uint64_t old = peek64(f, pte1);
    assert_true(guest_write(f, pte1, 0, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 2);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, c1, FRAME_A + 0x40, 1);
    expect_event(f, 1, VMT_PTM_PAGE_IN, 0, c2, FRAME_A + 0x80, 2); /* again; c3 is elsewhere */

    /* Coming back is an ordinary page-in: nothing went out. */
    assert_true(guest_write(f, pte1, old, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 1);
    expect_event(f, 0, VMT_PTM_PAGE_IN, 0, c1, FRAME_A + 0x40, 1);

    /* c1 moves to c3's frame: FRAME_A went out, c2 is announced again. */
    vmt_pa pte2 = entry_at(f, r2, lib, 1);
    assert_true(guest_write(f, pte1, FRAME_B | VMT_PTE_P, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 3);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, c1, FRAME_A + 0x40, 1);
    expect_event(f, 1, VMT_PTM_PAGE_IN, 0, c1, FRAME_B + 0x40, 1);
    expect_event(f, 2, VMT_PTM_PAGE_IN, 0, c2, FRAME_A + 0x80, 2);
    /* c2 goes out of FRAME_A while c1 comes back to it. Same level: the
     * entry at the lower address first, which is c2's (the mock hands out
     * tables downwards, r2's after r1's). c1's own page-in comes after
     * FRAME_A's page-out: not announced again; c3's frame, which c1 left,
     * is. */
    assert_true(pte2 < pte1);
    assert_true(guest_write(f, pte2, 0, 0, 0));
    assert_true(vmt_ptm_mark_dirty_entry(f->ptm, pte1, 0, 0));
    poke64(f, pte1, FRAME_A | VMT_PTE_P);
    process(f, 0);
    assert_int_equal(f->ev.len, 4);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, c2, FRAME_A + 0x80, 2);
    expect_event(f, 1, VMT_PTM_PAGE_OUT, 0, c1, FRAME_B + 0x40, 1);
    expect_event(f, 2, VMT_PTM_PAGE_IN, 0, c1, FRAME_A + 0x40, 1);
    expect_event(f, 3, VMT_PTM_PAGE_IN, 0, c3, FRAME_B, 3);
    expect_counts(f, 8, 9, 2); /* two full hierarchies; c2's PTE stays monitored */
}

/* ---- reference counting ---- */

static void test_reference_counting(void **state)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    map4k(f, root, VA_USER, FRAME_A);
    vmt_addr_ctx ctx = vmt_ctx(VA_USER, root);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx, 0, 1), VMT_OK);
    uint64_t calls = vmt_mock_total_calls(f->mock);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx, 0, 2), VMT_OK);
    assert_int_equal(vmt_mock_total_calls(f->mock), calls); /* only counted */
    expect_counts(f, 4, 4, 1);
    uintptr_t tag = 0;
    assert_true(vmt_ptm_lookup(f->ptm, ctx, 0, &tag, NULL, NULL));
    assert_int_equal(tag, 1); /* the first tag stays */

    /* Another address in the same page: same walk, nothing new. */
    vmt_addr_ctx same_page = vmt_ctx(VA_USER + 0x10, root);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, same_page, 0, 3), VMT_OK);
    expect_counts(f, 4, 4, 2);
    /* One under another PDE: a PDE, a PT and a PTE more. */
    vmt_addr_ctx near = vmt_ctx(VA_USER + 0x200000, root);
    map4k(f, root, near.va, FRAME_B);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, near, 0, 4), VMT_OK);
    expect_counts(f, 5, 6, 3);

    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, ctx, 0), VMT_OK);
    assert_true(vmt_ptm_lookup(f->ptm, ctx, 0, NULL, NULL, NULL));
    expect_counts(f, 5, 6, 3);
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, ctx, 0), VMT_OK);
    assert_false(vmt_ptm_lookup(f->ptm, ctx, 0, NULL, NULL, NULL));
    expect_counts(f, 5, 6, 2);
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, near, 0), VMT_OK);
    expect_counts(f, 4, 4, 1);
    assert_int_equal(access_of(f, table_at(f, root, near.va, 1), 0), VMT_ACCESS_RWX);
    assert_int_equal(access_of(f, table_at(f, root, VA_USER, 1), 0), VMT_ACCESS_R);
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, same_page, 0), VMT_OK);
    expect_counts(f, 0, 0, 0);

    /* by_force drops every reference at once. */
    for (int i = 0; i < 3; i++)
        assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx, 0, 1), VMT_OK);
    assert_int_equal(vmt_ptm_unmonitor_by_force(f->ptm, f->vmi, ctx, 0), VMT_OK);
    expect_counts(f, 0, 0, 0);
    assert_int_equal(access_of(f, root, 0), VMT_ACCESS_RWX);
}

/* ---- access restored exactly, by every way of unmonitoring ---- */

typedef struct access_case {
    vmt_pa root;
    vmt_addr_ctx ctx;
    vmt_pa tables[4]; /* PML4 .. PT */
} access_case;

/* View 1 with a PT that was RX and a PD that was already R. */
static void access_case_init(fx *f, access_case *c)
{
    vmt_view v;
    assert_int_equal(vmt_core_create_view(f->vmi, VMT_ACCESS_RWX, &v), VMT_OK);
    assert_int_equal(v, 1);
    c->root = new_root(f);
    map4k(f, c->root, VA_USER, FRAME_A);
    c->ctx = vmt_ctx(VA_USER, c->root);
    for (int level = 4; level >= 1; level--)
        c->tables[4 - level] = table_at(f, c->root, VA_USER, level);
    assert_int_equal(
        vmt_core_set_access(f->vmi, vmt_gfn_from_pa(c->tables[3]), 1, VMT_ACCESS_RX, 0), VMT_OK);
    assert_int_equal(vmt_core_set_access(f->vmi, vmt_gfn_from_pa(c->tables[2]), 1, VMT_ACCESS_R, 0),
                     VMT_OK);
}

static void expect_view1_restored(fx *f, const access_case *c)
{
    assert_int_equal(access_of(f, c->tables[0], 1), VMT_ACCESS_RWX);
    assert_int_equal(access_of(f, c->tables[1], 1), VMT_ACCESS_RWX);
    assert_int_equal(access_of(f, c->tables[2], 1), VMT_ACCESS_R);
    assert_int_equal(access_of(f, c->tables[3], 1), VMT_ACCESS_RX);
}

static void expect_protected(fx *f, const access_case *c, vmt_view view)
{
    for (int i = 0; i < 4; i++) {
        assert_int_equal(access_of(f, c->tables[i], view), VMT_ACCESS_R);
        assert_int_equal(vmt_mock_last_access_flags(f->mock, vmt_gfn_from_pa(c->tables[i]), view),
                         VMT_SET_ACCESS_IGNORE_PAGE_WALK_UPDATES);
    }
}

static void test_access_restored_exactly(void **state)
{
    fx *f = *state;
    access_case c;
    access_case_init(f, &c);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, c.ctx, 0, 0), VMT_OK);

    /* unmonitor */
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, c.ctx, 1, 0), VMT_OK);
    expect_protected(f, &c, 1);
    expect_counts(f, 8, 8, 2); /* per view */
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, c.ctx, 1), VMT_OK);
    expect_view1_restored(f, &c);
    expect_protected(f, &c, 0);

    /* by force */
    for (int i = 0; i < 3; i++)
        assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, c.ctx, 1, 0), VMT_OK);
    expect_protected(f, &c, 1);
    assert_int_equal(vmt_ptm_unmonitor_by_force(f->ptm, f->vmi, c.ctx, 1), VMT_OK);
    expect_view1_restored(f, &c);

    /* a view */
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, c.ctx, 1, 0), VMT_OK);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, vmt_ctx(VA_USER + 0x200000, c.root), 1, 0),
                     VMT_OK); /* not mapped: stops at the PDE */
    vmt_ptm_unmonitor_view(f->ptm, f->vmi, 1);
    expect_view1_restored(f, &c);
    expect_protected(f, &c, 0);
    expect_counts(f, 4, 4, 1);

    /* all */
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, c.ctx, 1, 0), VMT_OK);
    vmt_ptm_unmonitor_all(f->ptm, f->vmi);
    expect_counts(f, 0, 0, 0);
    expect_view1_restored(f, &c);
    for (int i = 0; i < 4; i++)
        assert_int_equal(access_of(f, c.tables[i], 0), VMT_ACCESS_RWX);
    assert_int_equal(vmt_ptm_pending_restores(f->ptm), 0);
}

/* A page whose access changed while unmonitored gets its new access back. */
static void test_freed_table_reused(void **state)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    map4k(f, root, VA_USER, FRAME_A);
    vmt_addr_ctx ctx = vmt_ctx(VA_USER, root);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx, 0, 0), VMT_OK);
    vmt_pa pt = table_at(f, root, VA_USER, 1);
    vmt_pa pde = entry_at(f, root, VA_USER, 2);
    assert_true(guest_write(f, pde, 0, 0, 0));
    process(f, 0);
    assert_int_equal(access_of(f, pt, 0), VMT_ACCESS_RWX);

    /* The guest reuses the page as data: its writes are not ours. */
    assert_false(guest_write(f, pt + 0x100, 0x4141414141414141ull, 0, 0));
    assert_int_equal(vmt_core_set_access(f->vmi, vmt_gfn_from_pa(pt), 0, VMT_ACCESS_RW, 0), VMT_OK);

    /* ... then as the PT of another address. */
    vmt_va va2 = VA_USER + 0x40000000;             /* another PDPTE */
    map4k(f, root, va2 & ~0x3fffffffull, FRAME_B); /* builds its PD */
    vmt_pa pde2 = entry_at(f, root, va2, 2);
    for (int i = 0; i < 512; i++)
        poke64(f, pt + 8 * (vmt_pa)i, 0);
    poke64(f, pt + 8 * ((va2 >> 12) & 0x1ff), FRAME_B | VMT_PTE_P);
    poke64(f, pde2, pt | VMT_PTE_P | VMT_PTE_W);
    vmt_addr_ctx ctx2 = vmt_ctx(va2, root);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx2, 0, 0), VMT_OK);
    assert_int_equal(access_of(f, pt, 0), VMT_ACCESS_R);
    expect_translation(f, ctx2, 0, true, FRAME_B | (va2 & 0xfff));
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, ctx2, 0), VMT_OK);
    assert_int_equal(access_of(f, pt, 0), VMT_ACCESS_RW);
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, ctx, 0), VMT_OK);
    expect_counts(f, 0, 0, 0);
}

/* ---- bad input and no-ops ---- */

static void test_unmonitor_not_monitored(void **state)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    map4k(f, root, VA_USER, FRAME_A);
    vmt_addr_ctx ctx = vmt_ctx(VA_USER, root);
    uint64_t calls = vmt_mock_total_calls(f->mock);
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, ctx, 0), VMT_OK);
    assert_int_equal(vmt_ptm_unmonitor_by_force(f->ptm, f->vmi, ctx, 0), VMT_OK);
    vmt_ptm_unmonitor_view(f->ptm, f->vmi, 3);
    vmt_ptm_unmonitor_all(f->ptm, f->vmi);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx, 0, 0), VMT_OK);
    calls = vmt_mock_total_calls(f->mock);
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, vmt_ctx(VA_USER + 0x1000, root), 0), VMT_OK);
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, ctx, 9), VMT_OK);
    assert_int_equal(vmt_mock_total_calls(f->mock), calls);
    expect_counts(f, 4, 4, 1);
}

static void test_bad_input(void **state)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    vmt_addr_ctx ok = vmt_ctx(VA_USER, root);
    vmt_addr_ctx noncanonical = vmt_ctx(0x0000800000000000ull, root);
    vmt_addr_ctx flagged_root = vmt_ctx(VA_USER, root | 0x18);
    assert_int_equal(vmt_ptm_new(NULL), VMT_E_INVALID);
    assert_int_equal(vmt_ptm_monitor(NULL, f->vmi, ok, 0, 0), VMT_E_INVALID);
    assert_int_equal(vmt_ptm_monitor(f->ptm, NULL, ok, 0, 0), VMT_E_INVALID);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, noncanonical, 0, 0), VMT_E_INVALID);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, flagged_root, 0, 0), VMT_E_INVALID);
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, noncanonical, 0), VMT_E_INVALID);
    assert_int_equal(vmt_ptm_unmonitor_by_force(NULL, f->vmi, ok, 0), VMT_E_INVALID);
    assert_int_equal(vmt_ptm_process_dirty_entries(f->ptm, f->vmi, 0, NULL), VMT_E_INVALID);
    vmt_ptm_events bad = {.items = NULL, .len = 2, .cap = 1};
    assert_int_equal(vmt_ptm_process_dirty_entries(f->ptm, f->vmi, 0, &bad), VMT_E_INVALID);
    assert_false(vmt_ptm_mark_dirty_entry(NULL, 0, 0, 0));
    /* A view the driver does not have. */
    map4k(f, root, VA_USER, FRAME_A);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ok, 7, 0), VMT_E_VIEW_NOT_FOUND);
    expect_counts(f, 0, 0, 0);
    /* A root outside guest memory: the walk's read fails, nothing is kept. */
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, vmt_ctx(VA_USER, 0x100000000000ull), 0, 0),
                     VMT_E_OUT_OF_BOUNDS);
    expect_counts(f, 0, 0, 0);
    vmt_ptm_free(NULL);
    vmt_ptm_events_free(NULL);
    assert_int_equal(vmt_ptm_monitored_tables(NULL), 0);
    assert_int_equal(vmt_ptm_check(NULL), VMT_E_INVALID);
}

/* ---- dirty sets ---- */

static void test_dirty_per_vcpu(void **state)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    map4k(f, root, VA_USER, FRAME_A);
    vmt_addr_ctx ctx = vmt_ctx(VA_USER, root);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx, 0, 0), VMT_OK);
    vmt_pa pte = entry_at(f, root, VA_USER, 1);
    uint64_t old = peek64(f, pte);

    assert_true(guest_write(f, pte, 0, 0, 1));
    process(f, 0); /* vCPU 0 has nothing dirty */
    assert_int_equal(f->ev.len, 0);
    expect_counts(f, 4, 4, 1);
    process(f, 1);
    assert_int_equal(f->ev.len, 1);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, ctx, FRAME_A | (VA_USER & 0xfff), 0);
    process(f, 1); /* processed once */
    assert_int_equal(f->ev.len, 0);

    /* A write to the upper half of the entry counts; other views do not. */
    poke64(f, pte, old);
    assert_false(vmt_ptm_mark_dirty_entry(f->ptm, pte + 4, 1, 0));
    assert_true(vmt_ptm_mark_dirty_entry(f->ptm, pte + 4, 0, 0));
    assert_true(vmt_ptm_mark_dirty_entry(f->ptm, pte, 0, 1));
    process(f, 0);
    assert_int_equal(f->ev.len, 1);
    expect_event(f, 0, VMT_PTM_PAGE_IN, 0, ctx, FRAME_A | (VA_USER & 0xfff), 0);
    process(f, 1); /* the same write seen by vCPU 1: already applied */
    assert_int_equal(f->ev.len, 0);
}

/* Entries dirty when their address stops being monitored. */
static void test_unmonitor_while_dirty(void **state)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    map4k(f, root, VA_USER, FRAME_A);
    map4k(f, root, VA_USER + 0x1000, FRAME_B);
    vmt_addr_ctx a = vmt_ctx(VA_USER, root), b = vmt_ctx(VA_USER + 0x1000, root);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, a, 0, 1), VMT_OK);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, b, 0, 2), VMT_OK);
    assert_true(guest_write(f, entry_at(f, root, a.va, 1), 0, 0, 0));
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, a, 0), VMT_OK);
    process(f, 0);
    assert_int_equal(f->ev.len, 0);
    expect_counts(f, 4, 4, 1);

    vmt_pa pde = entry_at(f, root, b.va, 2);
    assert_true(guest_write(f, pde, 0, 0, 0));
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, b, 0), VMT_OK);
    process(f, 0);
    assert_int_equal(f->ev.len, 0);
    expect_counts(f, 0, 0, 0);

    /* Dropped and monitored again before processing: no stale event. */
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, b, 0, 2), VMT_OK);
    assert_true(vmt_ptm_mark_dirty_entry(f->ptm, pde, 0, 0));
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, b, 0), VMT_OK);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, b, 0, 2), VMT_OK);
    process(f, 0);
    assert_int_equal(f->ev.len, 0);
}

/* Several dirty entries in one processing: highest level first whatever
 * order they were written in; addresses of one entry in monitor order. */
static void test_event_order(void **state)
{
    fx *f = *state;
    vmt_pa root = new_root(f);
    vmt_addr_ctx a = vmt_ctx(VA_USER, root);
    vmt_addr_ctx b = vmt_ctx(VA_USER + 0x200000, root); /* another PT */
    vmt_addr_ctx c = vmt_ctx(VA_USER + 0x201000, root); /* b's PT */
    map4k(f, root, a.va, FRAME_A);
    map4k(f, root, b.va, FRAME_B);
    map4k(f, root, c.va, 0x500000);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, c, 0, 'c'), VMT_OK);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, a, 0, 'a'), VMT_OK);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, b, 0, 'b'), VMT_OK);

    /* a's PTE moves first, then b's and c's PDE goes. */
    assert_true(guest_write(f, entry_at(f, root, a.va, 1), 0x600000 | VMT_PTE_P, 0, 0));
    assert_true(guest_write(f, entry_at(f, root, b.va, 2), 0, 0, 0));
    process(f, 0);
    assert_int_equal(f->ev.len, 4);
    expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, c, 0x500000 | (c.va & 0xfff), 'c');
    expect_event(f, 1, VMT_PTM_PAGE_OUT, 0, b, FRAME_B | (b.va & 0xfff), 'b');
    expect_event(f, 2, VMT_PTM_PAGE_OUT, 0, a, FRAME_A | (a.va & 0xfff), 'a');
    expect_event(f, 3, VMT_PTM_PAGE_IN, 0, a, 0x600000 | (a.va & 0xfff), 'a');

    /* Events are appended to what the caller already has. */
    size_t before = f->ev.len;
    assert_true(guest_write(f, entry_at(f, root, a.va, 1), 0, 0, 0));
    assert_int_equal(vmt_ptm_process_dirty_entries(f->ptm, f->vmi, 0, &f->ev), VMT_OK);
    assert_int_equal(f->ev.len, before + 1);
    expect_event(f, before, VMT_PTM_PAGE_OUT, 0, a, 0x600000 | (a.va & 0xfff), 'a');
}

/* A destroyed view has nothing left to restore. */
static void test_view_destroyed(void **state)
{
    fx *f = *state;
    vmt_view v;
    assert_int_equal(vmt_core_create_view(f->vmi, VMT_ACCESS_RWX, &v), VMT_OK);
    vmt_pa root = new_root(f);
    map4k(f, root, VA_USER, FRAME_A);
    vmt_addr_ctx ctx = vmt_ctx(VA_USER, root);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, ctx, v, 0), VMT_OK);
    assert_int_equal(vmt_core_destroy_view(f->vmi, v), VMT_OK);
    assert_int_equal(vmt_ptm_unmonitor(f->ptm, f->vmi, ctx, v), VMT_OK);
    expect_counts(f, 0, 0, 0);
    assert_int_equal(vmt_ptm_pending_restores(f->ptm), 0);
}

/* ---- fault injection: every driver call of an operation fails in turn ---- */

/* Arms a failure of the nth driver call from now; after the operation,
 * disarms it and tells whether it fired. */
static void fail_nth(fx *f, unsigned n)
{
    vmt_mock_fail_nth_any(f->mock, n, VMT_E_DRIVER);
}

static bool fired(fx *f, uint64_t injected_before)
{
    vmt_mock_fail_nth_any(f->mock, 0, VMT_OK);
    return vmt_mock_injected(f->mock) > injected_before;
}

/* In a fresh address space, a on FRAME_A and b on FRAME_B, 12 KiB apart in
 * one PT: *pt is that PT and *pde the entry that links it. */
static void map_two_in_one_pt(fx *f, vmt_addr_ctx *a, vmt_addr_ctx *b, vmt_pa *pde, vmt_pa *pt)
{
    vmt_pa root = new_root(f);
    *a = vmt_ctx(VA_USER, root);
    *b = vmt_ctx(VA_USER + 0x3000, root);
    map4k(f, root, a->va, FRAME_A);
    map4k(f, root, b->va, FRAME_B);
    *pde = entry_at(f, root, a->va, 2);
    *pt = table_at(f, root, a->va, 1);
}

/* Processes the dirty entries with the n-th driver call failing. The ptm
 * must stay consistent; if the fault fired the call reports VMT_E_DRIVER
 * and a second call (appending to f->ev) must finish the work. Returns
 * whether the fault fired. */
static bool process_under_fault(fx *f, unsigned n)
{
    uint64_t inj = vmt_mock_injected(f->mock);
    fail_nth(f, n);
    vmt_status st = vmt_ptm_process_dirty_entries(f->ptm, f->vmi, 0, &f->ev);
    bool failed = fired(f, inj);
    assert_int_equal(vmt_ptm_check(f->ptm), VMT_OK);
    if (failed) {
        assert_int_equal(st, VMT_E_DRIVER);
        st = vmt_ptm_process_dirty_entries(f->ptm, f->vmi, 0, &f->ev);
    }
    assert_int_equal(st, VMT_OK);
    return failed;
}

#define N_TABLES 6

/* A (already monitored) and B (another PDPTE: a PD and a PT of its own). */
typedef struct two_addrs {
    vmt_addr_ctx a, b;
    vmt_pa tables[N_TABLES]; /* PML4, PDPT, PD a, PT a, PD b, PT b */
} two_addrs;

static void two_addrs_init(fx *f, two_addrs *t)
{
    vmt_pa root = new_root(f);
    t->a = vmt_ctx(VA_USER, root);
    t->b = vmt_ctx(VA_USER + 0x40000000, root);
    map4k(f, root, t->a.va, FRAME_A);
    map4k(f, root, t->b.va, FRAME_B);
    t->tables[0] = root;
    t->tables[1] = table_at(f, root, t->a.va, 3);
    t->tables[2] = table_at(f, root, t->a.va, 2);
    t->tables[3] = table_at(f, root, t->a.va, 1);
    t->tables[4] = table_at(f, root, t->b.va, 2);
    t->tables[5] = table_at(f, root, t->b.va, 1);
    /* Non-default access on one of B's tables, to see it come back. */
    assert_int_equal(
        vmt_core_set_access(f->vmi, vmt_gfn_from_pa(t->tables[5]), 0, VMT_ACCESS_RX, 0), VMT_OK);
}

static void snapshot_access(fx *f, const two_addrs *t, vmt_access out[N_TABLES])
{
    for (int i = 0; i < N_TABLES; i++)
        out[i] = access_of(f, t->tables[i], 0);
}

static void test_fault_monitor(void **state)
{
    fx *f = *state;
    two_addrs t;
    two_addrs_init(f, &t);
    vmt_access original[N_TABLES], before[N_TABLES], now[N_TABLES];
    snapshot_access(f, &t, original);
    assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, t.a, 0, 1), VMT_OK);
    snapshot_access(f, &t, before);

    unsigned n;
    for (n = 1;; n++) {
        uint64_t inj = vmt_mock_injected(f->mock);
        fail_nth(f, n);
        vmt_status st = vmt_ptm_monitor(f->ptm, f->vmi, t.b, 0, 2);
        if (!fired(f, inj)) {
            assert_int_equal(st, VMT_OK);
            break;
        }
        /* Nothing changed: indexes, counters, the guest. */
        assert_int_equal(st, VMT_E_DRIVER);
        expect_counts(f, 4, 4, 1);
        assert_false(vmt_ptm_lookup(f->ptm, t.b, 0, NULL, NULL, NULL));
        assert_int_equal(vmt_ptm_pending_restores(f->ptm), 0);
        snapshot_access(f, &t, now);
        assert_memory_equal(before, now, sizeof now);
    }
    assert_true(n > 4); /* the walk's reads and the two new tables' access calls */
    expect_counts(f, 6, 7, 2);
    snapshot_access(f, &t, now);
    for (int i = 0; i < N_TABLES; i++)
        assert_int_equal(now[i], VMT_ACCESS_R);
    vmt_ptm_unmonitor_all(f->ptm, f->vmi);
    snapshot_access(f, &t, now);
    assert_memory_equal(original, now, sizeof now);
}

/* A failed restore leaves the page owed; the next unmonitor call pays. */
static void test_fault_unmonitor(void **state)
{
    (void)state;
    for (unsigned n = 1;; n++) {
        fx *f = fx_new();
        two_addrs t;
        two_addrs_init(f, &t);
        vmt_access before[N_TABLES], now[N_TABLES];
        snapshot_access(f, &t, before);
        assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, t.b, 0, 2), VMT_OK);
        uint64_t inj = vmt_mock_injected(f->mock);
        fail_nth(f, n);
        vmt_status st = vmt_ptm_unmonitor(f->ptm, f->vmi, t.b, 0);
        bool failed = fired(f, inj);
        if (failed) {
            assert_int_equal(st, VMT_E_DRIVER);
            assert_false(vmt_ptm_lookup(f->ptm, t.b, 0, NULL, NULL, NULL));
            expect_counts(f, 0, 0, 0);
            assert_int_equal(vmt_ptm_pending_restores(f->ptm), 1);
            snapshot_access(f, &t, now);
            int still_r = 0;
            for (int i = 0; i < N_TABLES; i++)
                still_r += now[i] != before[i];
            assert_int_equal(still_r, 1);                   /* the page whose restore failed */
            st = vmt_ptm_unmonitor(f->ptm, f->vmi, t.b, 0); /* retry: pays the debt */
        }
        assert_int_equal(st, VMT_OK);
        assert_int_equal(vmt_ptm_pending_restores(f->ptm), 0);
        snapshot_access(f, &t, now);
        assert_memory_equal(before, now, sizeof now);
        fx_free(f);
        if (!failed)
            break;
    }
}

/* unmonitor_view and unmonitor_all cannot report a failure; the debt
 * stays and is paid by the next call. */
static void test_fault_unmonitor_all(void **state)
{
    (void)state;
    for (unsigned n = 1;; n++) {
        fx *f = fx_new();
        two_addrs t;
        two_addrs_init(f, &t);
        vmt_access before[N_TABLES], now[N_TABLES];
        snapshot_access(f, &t, before);
        assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, t.a, 0, 1), VMT_OK);
        assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, t.b, 0, 2), VMT_OK);
        uint64_t inj = vmt_mock_injected(f->mock);
        fail_nth(f, n);
        if (n % 2)
            vmt_ptm_unmonitor_all(f->ptm, f->vmi);
        else
            vmt_ptm_unmonitor_view(f->ptm, f->vmi, 0);
        bool failed = fired(f, inj);
        expect_counts(f, 0, 0, 0);
        if (failed) {
            assert_int_equal(vmt_ptm_pending_restores(f->ptm), 1);
            vmt_ptm_unmonitor_all(f->ptm, f->vmi);
        }
        assert_int_equal(vmt_ptm_pending_restores(f->ptm), 0);
        snapshot_access(f, &t, now);
        assert_memory_equal(before, now, sizeof now);
        fx_free(f);
        if (!failed)
            break;
    }
}

/* A PDE appears with a PT holding two monitored addresses. A failure may
 * come after the first address was applied: its event is delivered then,
 * and the retry delivers only the rest. */
static void test_fault_process_page_in(void **state)
{
    (void)state;
    for (unsigned n = 1;; n++) {
        fx *f = fx_new();
        vmt_addr_ctx a, b;
        vmt_pa pde, pt;
        map_two_in_one_pt(f, &a, &b, &pde, &pt);
        uint64_t linked = peek64(f, pde);
        poke64(f, pde, 0);
        assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, a, 0, 'a'), VMT_OK);
        assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, b, 0, 'b'), VMT_OK);
        assert_true(guest_write(f, pde, linked, 0, 0));

        bool failed = process_under_fault(f, n);
        assert_int_equal(f->ev.len, 2);
        expect_event(f, 0, VMT_PTM_PAGE_IN, 0, a, FRAME_A | (a.va & 0xfff), 'a');
        expect_event(f, 1, VMT_PTM_PAGE_IN, 0, b, FRAME_B | (b.va & 0xfff), 'b');
        expect_counts(f, 4, 5, 2);
        assert_int_equal(access_of(f, pt, 0), VMT_ACCESS_R);
        process(f, 0); /* nothing left */
        assert_int_equal(f->ev.len, 0);
        fx_free(f);
        if (!failed)
            break;
    }
}

/* The PDE goes: the PT's restore may fail after both page-outs were
 * applied; processing again pays the debt and yields nothing new. */
static void test_fault_process_page_out(void **state)
{
    (void)state;
    for (unsigned n = 1;; n++) {
        fx *f = fx_new();
        vmt_addr_ctx a, b;
        vmt_pa pde, pt;
        map_two_in_one_pt(f, &a, &b, &pde, &pt);
        assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, a, 0, 'a'), VMT_OK);
        assert_int_equal(vmt_ptm_monitor(f->ptm, f->vmi, b, 0, 'b'), VMT_OK);
        assert_true(guest_write(f, pde, 0, 0, 0));

        bool failed = process_under_fault(f, n);
        assert_int_equal(f->ev.len, 2);
        expect_event(f, 0, VMT_PTM_PAGE_OUT, 0, a, FRAME_A | (a.va & 0xfff), 'a');
        expect_event(f, 1, VMT_PTM_PAGE_OUT, 0, b, FRAME_B | (b.va & 0xfff), 'b');
        expect_counts(f, 3, 3, 0);
        assert_int_equal(vmt_ptm_pending_restores(f->ptm), 0);
        assert_int_equal(access_of(f, pt, 0), VMT_ACCESS_RWX);
        fx_free(f);
        if (!failed)
            break;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_monitor_protects_walk, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_out_in_pte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_out_in_pde, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_out_in_pdpte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_out_in_pml4e, setup, teardown),
        cmocka_unit_test_setup_teardown(test_walk_extends_from_empty_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_subtree_cleared, setup, teardown),
        cmocka_unit_test_setup_teardown(test_relocation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_2m, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_1g, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_tables_across_roots, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_at_several_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shared_frame_announced_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reference_counting, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access_restored_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_freed_table_reused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unmonitor_not_monitored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dirty_per_vcpu, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unmonitor_while_dirty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_event_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_view_destroyed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_monitor, setup, teardown),
        cmocka_unit_test(test_fault_unmonitor),
        cmocka_unit_test(test_fault_unmonitor_all),
        cmocka_unit_test(test_fault_process_page_in),
        cmocka_unit_test(test_fault_process_page_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
