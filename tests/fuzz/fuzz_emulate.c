// SPDX-License-Identifier: MIT
/* libFuzzer target: the tracer's instruction emulator (src/tracer/
 * emulate.c) over random code bytes and registers, on a guest whose pages
 * differ in every permission that matters (writable or not, user or
 * supervisor, writable in the view or not, not present, outside RAM).
 *
 * An oracle decodes the four forms independently and applies the x86
 * rules itself (independent page walk, W/U bits at every level, CR0.WP,
 * CR4.SMAP with RFLAGS.AC, no page crossing): when the emulator answers
 * true, the registers and memory after it must be exactly the oracle's;
 * when it answers false, nothing may have changed, and the oracle must
 * agree there was a reason (not a simple form, not allowed, not in RAM). */
#include <stdbool.h>

#include "fuzz_util.h"
#include "model_walk.h"
#include "tracer/emulate.h"
#include "vmitap/core.h"
#include "vmitap/mock.h"

#define RAM_FRAMES 0x400u
#define NDATA 8

/* Pages: va, frame, PTE flags, view-1 access of the frame. */
typedef struct page {
    vmt_va va;
    vmt_pa pa;
    uint64_t flags;
} page;

static const page pages[NDATA] = {
    {0x7ff000, 0x10000, VMT_PTE_W | VMT_PTE_U},                 /* user stack */
    {0x800000, 0x11000, VMT_PTE_W | VMT_PTE_U},                 /* user stack, next page */
    {0x801000, 0x12000, VMT_PTE_U},                             /* user, read only */
    {0x802000, 0x13000, VMT_PTE_W},                             /* supervisor, writable */
    {0x803000, 0x14000, 0},                                     /* supervisor, read only */
    {0x1000, 0x15000, VMT_PTE_W | VMT_PTE_U},                   /* low data (disp32) */
    {0xffffffff80000000ull, 0x16000, VMT_PTE_W},                /* kernel data (disp32) */
    {0xffffffff80001000ull, 0x17000, VMT_PTE_W | VMT_PTE_U},    /* kernel half, U page */
};
/* 0x804000 and 0x2000 are not mapped; 0x805000 maps a frame outside RAM. */
#define OUTSIDE_VA 0x805000ull

static uint64_t *reg_of(vmt_regs *r, unsigned n)
{
    switch (n & 15) {
    case 0: return &r->rax;
    case 1: return &r->rcx;
    case 2: return &r->rdx;
    case 3: return &r->rbx;
    case 4: return &r->rsp;
    case 5: return &r->rbp;
    case 6: return &r->rsi;
    case 7: return &r->rdi;
    case 8: return &r->r8;
    case 9: return &r->r9;
    case 10: return &r->r10;
    case 11: return &r->r11;
    case 12: return &r->r12;
    case 13: return &r->r13;
    case 14: return &r->r14;
    default: return &r->r15;
    }
}

/* The oracle's 8-byte access check: the x86 rules, written on their own. */
static bool allowed(vmt_core *vmi, vmt_mock *mock, vmt_view view, const vmt_regs *r, vmt_va va,
                    bool write, vmt_pa *pa)
{
    if ((va & 0xfff) + 8 > 0x1000)
        return false;
    model_walk w;
    if (model_walk_va(mock, vmt_ctx(va, r->cr3 & 0x000ffffffffff000ull), &w) != VMT_OK ||
        !w.present)
        return false;
    bool user = (r->cs & 3) == 3;
    bool u_all = true, w_all = true;
    for (unsigned i = 0; i < w.levels; i++) {
        u_all = u_all && (w.entry[i] & VMT_PTE_U);
        w_all = w_all && (w.entry[i] & VMT_PTE_W);
    }
    if (user && !u_all)
        return false;
    if (write && !w_all && (user || (r->cr0 & (1ull << 16))))
        return false;
    if (!user && u_all && (r->cr4 & (1ull << 21)) && !(r->rflags & (1ull << 18)))
        return false;
    if (write) {
        vmt_access a;
        if (vmt_core_get_access(vmi, w.pa >> 12, view, &a) != VMT_OK || !(a & VMT_ACCESS_W))
            return false;
    }
    *pa = w.pa;
    return true;
}

typedef struct snapshot {
    uint8_t b[NDATA][4096];
} snapshot;

static void snap(vmt_mock *mock, snapshot *s)
{
    for (int i = 0; i < NDATA; i++)
        vmt_mock_peek(mock, pages[i].pa, s->b[i], 4096);
}

static vmt_va pick_addr(fz *f)
{
    static const vmt_va near[] = {0x7ff000, 0x800000, 0x801000, 0x802000, 0x803000, 0x804000,
                                  OUTSIDE_VA, 0x1000, 0x2000, 0xffffffff80000000ull,
                                  0xffffffff80001000ull, 0x7ff000 + 0xff8};
    if (fz_pick(f, 8) == 0)
        return fz_u64(f);
    vmt_va base = near[fz_pick(f, sizeof near / sizeof near[0])];
    return base + (vmt_va)(int64_t)(int8_t)fz_u8(f) * 8 + (fz_pick(f, 4) == 0 ? fz_pick(f, 8) : 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz f = fz_new(data, size);
    /* One guest for every input: the emulator writes only the stack
     * pages, which are filled again below. */
    static vmt_core *vmi;
    static vmt_mock *mock;
    static vmt_view v1;
    static vmt_pa root;
    if (!vmi) {
        vmt_mock_opts o = {.sz = sizeof o, .max_gfn = RAM_FRAMES};
        if (vmt_mock_core_new(&o, &vmi, &mock) != VMT_OK ||
            vmt_core_create_view(vmi, VMT_ACCESS_RWX, &v1) != VMT_OK ||
            vmt_mock_new_root(mock, &root) != VMT_OK)
            abort();
        for (int i = 0; i < NDATA; i++)
            if (vmt_mock_map(mock, root, pages[i].va, pages[i].pa, VMT_MOCK_4K, pages[i].flags) !=
                VMT_OK)
                abort();
        vmt_mock_map(mock, root, OUTSIDE_VA, (vmt_pa)(RAM_FRAMES + 5) << 12, VMT_MOCK_4K,
                     VMT_PTE_W | VMT_PTE_U);
    }
    static snapshot fill; /* the pages' contents at the start of every input */
    static bool filled;
    for (int i = 0; i < NDATA && !filled; i++)
        for (int k = 0; k < 4096; k++)
            fill.b[i][k] = (uint8_t)(i * 37 + k * 11);
    filled = true;
    for (int i = 0; i < NDATA; i++) {
        vmt_mock_poke(mock, pages[i].pa, fill.b[i], 4096);
        /* In view 1 some frames are not writable (a breakpoint page, a
         * write-protected page table). */
        vmt_access a = (fz_u8(&f) & 3) == 0 ? VMT_ACCESS_RX : VMT_ACCESS_RWX;
        vmt_core_set_access(vmi, pages[i].pa >> 12, v1, a, 0);
    }

    vmt_regs r;
    memset(&r, 0, sizeof r);
    for (unsigned n = 0; n < 16; n++)
        *reg_of(&r, n) = fz_pick(&f, 2) ? fz_u64(&f) : 0x1111111111111111ull * n;
    r.rsp = pick_addr(&f);
    r.rip = 0x400000;
    r.cr3 = root | (fz_pick(&f, 4) == 0 ? 0x18 : 0);
    uint8_t mode = fz_u8(&f);
    r.cs = (mode & 1) ? 0x33 : 0x10;
    r.cr0 = (mode & 2) ? 1ull << 16 : 0;
    r.cr4 = (mode & 4) ? 1ull << 21 : 0;
    r.rflags = (mode & 8) ? 1ull << 18 : 0x2;
    r.efer = (mode & 0x70) ? 1ull << 10 : 0; /* LMA, nearly always */
    vmt_view view = (mode & 0x80) ? v1 : 0;

    /* The code: a template with random parts, or raw bytes. */
    uint8_t insn[16];
    size_t len = 1 + fz_pick(&f, 16);
    for (size_t i = 0; i < sizeof insn; i++)
        insn[i] = fz_u8(&f);
    switch (fz_pick(&f, 6)) {
    case 0: insn[0] = 0x90; break;
    case 1: memcpy(insn, "\xf3\x0f\x1e\xfa", 4); break;
    case 2: insn[0] = 0x50 + (insn[1] & 7); break;
    case 3: insn[0] = 0x41; insn[1] = 0x50 + (insn[1] & 7); break;
    case 4: {
        insn[0] = 0x48 | (insn[0] & 4);
        insn[1] = 0x8b;
        insn[2] = (insn[2] & 0x38) | 0x04;
        insn[3] = 0x25;
        uint32_t d = (uint32_t)pick_addr(&f);
        memcpy(insn + 4, &d, 4);
        break;
    }
    default: break;
    }

    static snapshot before_s, after_s;
    snapshot *before = &before_s, *after = &after_s;
    snap(mock, before);
    vmt_regs got = r;
    bool done = vmt_emulate_simple(vmi, view, &got, insn, len);
    snap(mock, after);

    /* The oracle. */
    vmt_regs want = r;
    bool lma = r.efer & (1ull << 10);
    int form = 0; /* 0 none, 1 nop/endbr64, 2 push, 3 mov */
    unsigned n = 0, ilen = 0;
    int32_t disp = 0;
    if (insn[0] == 0x90)
        form = 1, ilen = 1;
    else if (len >= 4 && memcmp(insn, "\xf3\x0f\x1e\xfa", 4) == 0)
        form = 1, ilen = 4;
    else if (insn[0] >= 0x50 && insn[0] <= 0x57)
        form = 2, n = insn[0] - 0x50u, ilen = 1;
    else if (len >= 2 && insn[0] == 0x41 && insn[1] >= 0x50 && insn[1] <= 0x57)
        form = 2, n = 8 + insn[1] - 0x50u, ilen = 2;
    else if (len >= 8 && (insn[0] == 0x48 || insn[0] == 0x4c) && insn[1] == 0x8b &&
             (insn[2] & 0xc7) == 0x04 && insn[3] == 0x25) {
        form = 3, ilen = 8;
        n = ((insn[2] >> 3) & 7u) + (insn[0] == 0x4c ? 8u : 0u);
        memcpy(&disp, insn + 4, 4);
    }
    bool can = false;
    vmt_pa pa = 0;
    uint64_t value = 0;
    if (lma && form == 1) {
        can = true;
    } else if (lma && form == 2) {
        value = *reg_of(&r, n);
        can = allowed(vmi, mock, view, &r, r.rsp - 8, true, &pa) && pa < (RAM_FRAMES << 12);
        want.rsp -= 8;
    } else if (lma && form == 3) {
        can = allowed(vmi, mock, view, &r, (vmt_va)(int64_t)disp, false, &pa) &&
              pa < (RAM_FRAMES << 12);
        if (can)
            vmt_mock_peek(mock, pa, reg_of(&want, n), 8);
    }
    want.rip += ilen;
    FUZZ_CHECK(done == can, "emulated %d, oracle %d (form %d, byte %02x, len %zu)", done, can, form,
               insn[0], len);
    if (done) {
        FUZZ_CHECK(memcmp(&got, &want, sizeof got) == 0, "registers after form %d differ", form);
        if (form == 2) {
            /* the only bytes written: the 8 at the new top of stack */
            for (int i = 0; i < NDATA; i++)
                if (pa >> 12 == pages[i].pa >> 12)
                    memcpy(before->b[i] + (pa & 0xfff), &value, 8);
        }
    } else {
        FUZZ_CHECK(memcmp(&got, &r, sizeof got) == 0, "registers changed although declined");
    }
    FUZZ_CHECK(memcmp(before, after, sizeof *before) == 0, "memory differs from the oracle's");
    return 0;
}
