/* Step-over by emulation of a few simple instructions. See emulate.h.
 *
 * The forms are matched on their bytes by hand, not decoded with Zydis
 * (core/insn.h, which the rest of vmitap uses for instruction lengths):
 * this runs at every breakpoint hit, and a Zydis decode first made it
 * measurably slower: +105..185 ns a call, i.e. nop 34 -> 140 ns and a
 * form it does not know 30 -> 190 ns (docs/PERFORMANCE.md, "Instruction
 * decoding"). test_tracer checks each form's length against Zydis. */
#include "tracer/emulate.h"

#include <string.h>

#define PTE_W (1ull << 1)
#define PTE_U (1ull << 2)
#define CR0_WP (1ull << 16)
#define CR4_SMAP (1ull << 21)
#define RFLAGS_AC (1ull << 18)
#define EFER_LMA (1ull << 10)

/* Register number (x86 encoding, 0..15) -> field. */
static uint64_t *reg(vmt_regs *r, unsigned n)
{
    uint64_t *regs[16] = {&r->rax, &r->rcx, &r->rdx, &r->rbx, &r->rsp, &r->rbp, &r->rsi, &r->rdi,
                          &r->r8,  &r->r9,  &r->r10, &r->r11, &r->r12, &r->r13, &r->r14, &r->r15};
    return regs[n & 15];
}

/* Translates an 8-byte access at va the way the CPU would allow it, or
 * fails (then the caller single-steps and the CPU decides). */
static bool translate(vmt_core *vmi, vmt_view view, const vmt_regs *r, vmt_va va, bool write,
                      vmt_pa *pa)
{
    if ((va & (VMT_PAGE_SIZE - 1)) > VMT_PAGE_SIZE - 8)
        return false; /* crosses a page */
    vmt_walk w;
    if (vmt_core_walk(vmi, vmt_ctx(va, vmt_regs_translation_root(r, va)), &w) != VMT_OK)
        return false;
    bool user = (r->cs & 3) == 3, user_page = true;
    for (unsigned i = 0; i < w.levels; i++) {
        user_page &= (w.entry[i] & PTE_U) != 0;
        if (write && !(w.entry[i] & PTE_W) && (user || (r->cr0 & CR0_WP)))
            return false;
    }
    if (user && !user_page)
        return false;
    if (!user && user_page && (r->cr4 & CR4_SMAP) && !(r->rflags & RFLAGS_AC))
        return false;
    vmt_access a;
    if (write && (vmt_core_get_access(vmi, vmt_gfn_from_pa(w.pa), view, &a) != VMT_OK ||
                  !(a & VMT_ACCESS_W)))
        return false;
    *pa = w.pa;
    return true;
}

static bool push(vmt_core *vmi, vmt_view view, vmt_regs *r, unsigned n, unsigned len)
{
    uint64_t value = *reg(r, n);
    vmt_pa pa;
    if (!translate(vmi, view, r, r->rsp - 8, true, &pa) || vmt_core_write(vmi, pa, &value, 8) != VMT_OK)
        return false;
    r->rsp -= 8;
    r->rip += len;
    return true;
}

static bool load_abs32(vmt_core *vmi, vmt_view view, vmt_regs *r, unsigned n, int32_t disp,
                       unsigned len)
{
    vmt_va va = (vmt_va)(int64_t)disp;
    vmt_pa pa;
    uint64_t value;
    if (!translate(vmi, view, r, va, false, &pa) || vmt_core_read(vmi, pa, &value, 8) != VMT_OK)
        return false;
    *reg(r, n) = value;
    r->rip += len;
    return true;
}

bool vmt_emulate_simple(vmt_core *vmi, vmt_view view, vmt_regs *regs, const uint8_t *p,
                        size_t len)
{
    if (!vmi || !regs || !p || len == 0 || !(regs->efer & EFER_LMA))
        return false;
    vmt_regs r = *regs;
    bool done = false;
    if (p[0] == 0x90) { /* nop */
        r.rip += 1;
        done = true;
    } else if (len >= 4 && memcmp(p, "\xf3\x0f\x1e\xfa", 4) == 0) { /* endbr64 */
        r.rip += 4;
        done = true;
    } else if (p[0] >= 0x50 && p[0] <= 0x57) { /* push r64 */
        done = push(vmi, view, &r, p[0] - 0x50u, 1);
    } else if (len >= 2 && p[0] == 0x41 && p[1] >= 0x50 && p[1] <= 0x57) { /* push r8..r15 */
        done = push(vmi, view, &r, 8u + (p[1] - 0x50u), 2);
    } else if (len >= 8 && (p[0] & 0xfb) == 0x48 && p[1] == 0x8b && (p[2] & 0xc7) == 0x04 &&
               p[3] == 0x25) {
        /* REX.W [+R] 8B, ModRM mod=00 rm=100, SIB no base no index: mov r64, [disp32] */
        int32_t disp;
        memcpy(&disp, p + 4, 4);
        unsigned n = ((p[2] >> 3) & 7u) | ((p[0] & 0x04) ? 8u : 0u);
        done = load_abs32(vmi, view, &r, n, disp, 8);
    }
    if (done)
        *regs = r;
    return done;
}
