/* Small helpers over the basic types (API.md §1, §2). */
#include "vmitap/event.h"
#include "vmitap/types.h"

vmt_gfn vmt_gfn_from_pa(vmt_pa pa) { return pa >> VMT_PAGE_SHIFT; }

vmt_pa vmt_pa_from_gfn(vmt_gfn gfn) { return gfn << VMT_PAGE_SHIFT; }

vmt_pa vmt_pa_in_gfn(vmt_gfn gfn, vmt_va va)
{
    return vmt_pa_from_gfn(gfn) | (va & (VMT_PAGE_SIZE - 1));
}

vmt_addr_ctx vmt_ctx(vmt_va va, vmt_pa root)
{
    vmt_addr_ctx c = {.va = va, .root = root};
    return c;
}

bool vmt_ctx_eq(vmt_addr_ctx a, vmt_addr_ctx b) { return a.va == b.va && a.root == b.root; }

bool vmt_va_is_canonical(vmt_va va)
{
    /* Bits 63..47 must all equal bit 47. */
    uint64_t top = va >> 47;
    return top == 0 || top == 0x1ffff;
}

vmt_pa vmt_regs_translation_root(const vmt_regs *regs, vmt_va va)
{
    (void)va; /* one root for user and kernel halves (no KPTI split here) */
    return regs ? regs->cr3 & 0x000ffffffffff000ull : 0;
}

const char *vmt_status_str(vmt_status s)
{
    switch (s) {
    case VMT_OK: return "ok";
    case VMT_E_TRANSLATION: return "address has no present translation";
    case VMT_E_VIEW_NOT_FOUND: return "view not found";
    case VMT_E_OUT_OF_BOUNDS: return "out of bounds";
    case VMT_E_CONFLICT: return "conflicts with existing state";
    case VMT_E_INVALID: return "invalid argument";
    case VMT_E_NOMEM: return "out of memory";
    case VMT_E_UNSUPPORTED: return "not supported by the driver";
    case VMT_E_DRIVER: return "driver or hypervisor failure";
    case VMT_E_TIMEOUT: return "timed out waiting for an event";
    case VMT_E_GUEST_EXITED: return "the guest has exited";
    case VMT_E_GUEST_CRASHED: return "the guest crashed";
    }
    return "unknown status";
}
