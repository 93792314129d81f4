// SPDX-License-Identifier: MIT
/* libFuzzer target: address translation (src/core/amd64.c, core.c) over
 * hostile page tables. The input writes entries into a pool of table
 * pages on the mock driver (tables, 4 KiB / 2 MiB / 1 GiB leaves, loops,
 * entries and tables outside guest RAM, garbage bits), then asks for
 * translations. Each answer of vmt_core_walk, vmt_core_translate and
 * vmt_core_read_va is compared with an independent walker
 * (tests/unit/model_walk.c): same status, same entries read, same
 * translation, same bytes; a failed read leaves the buffer untouched. */
#include "fuzz_util.h"
#include "model_walk.h"
#include "vmitap/core.h"
#include "vmitap/mock.h"

#define RAM_FRAMES 0x400u /* 4 MiB */
#define NT 8

static const unsigned idx_choice[4] = {0, 1, 2, 511};

static vmt_pa pool[NT];

static uint64_t entry_value(fz *f)
{
    uint64_t flags = fz_u8(f) & 0x6e; /* W, U, PWT, PCD, A, D: never P or PS */
    switch (fz_pick(f, 7)) {
    case 0:
        return 0;
    case 1: /* a table of the pool (a loop when it is one above) */
        return pool[fz_pick(f, NT)] | VMT_PTE_P | flags;
    case 2: /* a 4 KiB leaf in RAM */
        return ((vmt_pa)fz_pick(f, 255) << 12) | VMT_PTE_P | flags;
    case 3: /* a 2 MiB leaf, maybe with the PAT bit and more low bits */
        return ((vmt_pa)fz_pick(f, 4) << 21) | ((vmt_pa)fz_u8(f) << 12) | VMT_PTE_P |
               VMT_PTE_PS | flags;
    case 4: /* a 1 GiB leaf */
        return ((vmt_pa)fz_pick(f, 2) << 30) | ((vmt_pa)fz_u8(f) << 12) | VMT_PTE_P |
               VMT_PTE_PS | flags;
    case 5: /* a table or frame outside guest RAM */
        return (((vmt_pa)RAM_FRAMES + fz_u8(f)) << 12) | VMT_PTE_P | flags;
    default: /* anything */
        return fz_u64(f);
    }
}

static vmt_va pick_va(fz *f)
{
    if (fz_pick(f, 8) == 0)
        return fz_u64(f); /* often not canonical */
    vmt_va va = 0;
    for (int level = 4; level >= 1; level--)
        va |= (vmt_va)idx_choice[fz_pick(f, 4)] << (12 + 9 * (level - 1));
    if (va & (1ull << 47))
        va |= 0xffff000000000000ull;
    return va | (fz_u8(f) * 16 + (fz_u8(f) & 0xf)) % 4096;
}

static void check_walk(vmt_core *vmi, vmt_mock *mock, vmt_addr_ctx ctx)
{
    model_walk m;
    vmt_status mst = model_walk_va(mock, ctx, &m);
    vmt_walk w;
    memset(&w, 0xa5, sizeof w);
    vmt_status st = vmt_core_walk(vmi, ctx, &w);
    vmt_status want = mst != VMT_OK ? mst : m.present ? VMT_OK : VMT_E_TRANSLATION;
    FUZZ_CHECK(st == want, "walk of %llx in %llx: status %d, model %d",
               (unsigned long long)ctx.va, (unsigned long long)ctx.root, st, want);
    if (st == VMT_OK || st == VMT_E_TRANSLATION) {
        FUZZ_CHECK(w.levels == m.levels, "levels %u, model %u", w.levels, m.levels);
        for (unsigned i = 0; i < m.levels; i++)
            FUZZ_CHECK(w.entry_pa[i] == m.entry_pa[i] && w.entry[i] == m.entry[i],
                       "entry %u differs", i);
    }
    if (st == VMT_OK)
        FUZZ_CHECK(w.pa == m.pa && w.page_shift == m.page_shift,
                   "va %llx: pa %llx/%u, model %llx/%u", (unsigned long long)ctx.va,
                   (unsigned long long)w.pa, w.page_shift, (unsigned long long)m.pa,
                   m.page_shift);
    vmt_pa pa = 0x1234;
    st = vmt_core_translate(vmi, ctx, &pa);
    FUZZ_CHECK(st == want, "translate: status %d, model %d", st, want);
    FUZZ_CHECK(st == VMT_OK ? pa == m.pa : pa == 0x1234, "translate: pa %llx",
               (unsigned long long)pa);
}

/* read_va of len bytes: the model translates every byte on its own. */
static void check_read(vmt_core *vmi, vmt_mock *mock, vmt_addr_ctx ctx, size_t len)
{
    uint8_t want[64], got[64];
    bool ok = true, invalid = false;
    for (size_t i = 0; i < len && ok; i++) {
        model_walk m;
        vmt_addr_ctx c = vmt_ctx(ctx.va + i, ctx.root);
        vmt_status ms = ctx.va + i < ctx.va ? VMT_E_INVALID : model_walk_va(mock, c, &m);
        invalid = ms == VMT_E_INVALID; /* the range wraps, or leaves the canonical half */
        ok = ms == VMT_OK && m.present && vmt_mock_peek(mock, m.pa, &want[i], 1) == VMT_OK;
    }
    memset(got, 0x5a, sizeof got);
    vmt_status st = vmt_core_read_va(vmi, ctx, got, len);
    FUZZ_CHECK((st == VMT_OK) == ok, "read_va of %zu at %llx: status %d, model %s", len,
               (unsigned long long)ctx.va, st, ok ? "readable" : "not readable");
    if (invalid) /* whatever else, an invalid range is refused as such */
        FUZZ_CHECK(st == VMT_E_INVALID, "read_va of a bad range: status %d", st);
    if (ok) {
        FUZZ_CHECK(memcmp(got, want, len) == 0, "read_va: other bytes");
    } else {
        for (size_t i = 0; i < sizeof got; i++)
            FUZZ_CHECK(got[i] == 0x5a, "failed read_va wrote its buffer");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = fz_new(data, size);
    vmt_core *vmi;
    vmt_mock *mock;
    vmt_mock_opts o = {.sz = sizeof o, .max_gfn = RAM_FRAMES};
    if (vmt_mock_core_new(&o, &vmi, &mock) != VMT_OK)
        abort();
    for (int i = 0; i < NT; i++)
        if (vmt_mock_alloc_table(mock, &pool[i]) != VMT_OK)
            abort();
    /* Data frames hold recognisable bytes. */
    for (vmt_pa pa = 0; pa < 0x10000; pa += 0x1000) {
        uint64_t v = pa | 0xda7a;
        vmt_mock_poke(mock, pa, &v, sizeof v);
        vmt_mock_poke(mock, pa + 0xff8, &v, sizeof v);
    }
    unsigned writes = fz_pick(&f, 33);
    for (unsigned i = 0; i < writes; i++) {
        unsigned t = fz_pick(&f, NT);
        unsigned idx = fz_pick(&f, 2) ? idx_choice[fz_pick(&f, 4)] : fz_u8(&f) * 2u;
        uint64_t e = entry_value(&f);
        vmt_mock_poke(mock, pool[t] + 8 * idx, &e, sizeof e);
    }
    while (!fz_done(&f)) {
        vmt_pa root = pool[fz_pick(&f, NT)] | (fz_pick(&f, 4) == 0 ? fz_u8(&f) & 0xfff : 0);
        vmt_addr_ctx ctx = vmt_ctx(pick_va(&f), root);
        check_walk(vmi, mock, ctx);
        check_read(vmi, mock, ctx, 1 + fz_pick(&f, 64));
    }
    vmt_core_free(vmi);
    return 0;
}
