/* vCPU state of the KVM driver: registers, segment loading from the
 * guest's GDT, guest-debug flags, and virtual-address access through the
 * guest's page tables as the guest currently sees memory. */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/amd64.h"
#include "drivers/kvm/kvm_internal.h"
#include "vmitap/log.h"

#define MSR_KERNEL_GS_BASE 0xc0000102u

static vmt_status get_kgs(vmt_kvm *k, uint64_t *out)
{
    struct {
        struct kvm_msrs m;
        struct kvm_msr_entry e;
    } msrs = {.m.nmsrs = 1, .e.index = MSR_KERNEL_GS_BASE};
    if (ioctl(k->vcpu_fd, KVM_GET_MSRS, &msrs) != 1)
        return VMT_E_DRIVER;
    *out = msrs.e.data;
    return VMT_OK;
}

static vmt_status set_kgs(vmt_kvm *k, uint64_t v)
{
    struct {
        struct kvm_msrs m;
        struct kvm_msr_entry e;
    } msrs = {.m.nmsrs = 1, .e.index = MSR_KERNEL_GS_BASE, .e.data = v};
    return ioctl(k->vcpu_fd, KVM_SET_MSRS, &msrs) == 1 ? VMT_OK : VMT_E_DRIVER;
}

vmt_status kvm_regs_get(vmt_kvm *k, vmt_regs *out)
{
    struct kvm_regs r;
    struct kvm_sregs s;
    uint64_t kgs;
    if (ioctl(k->vcpu_fd, KVM_GET_REGS, &r) < 0 || ioctl(k->vcpu_fd, KVM_GET_SREGS, &s) < 0 ||
        get_kgs(k, &kgs) != VMT_OK) {
        vmt_log(VMT_LOG_ERROR, "kvm: reading registers: %s", strerror(errno));
        return VMT_E_DRIVER;
    }
    *out = (vmt_regs){
        .rax = r.rax, .rbx = r.rbx, .rcx = r.rcx, .rdx = r.rdx, .rsi = r.rsi, .rdi = r.rdi,
        .rbp = r.rbp, .rsp = r.rsp, .r8 = r.r8, .r9 = r.r9, .r10 = r.r10, .r11 = r.r11,
        .r12 = r.r12, .r13 = r.r13, .r14 = r.r14, .r15 = r.r15, .rip = r.rip, .rflags = r.rflags,
        .cr0 = s.cr0, .cr2 = s.cr2, .cr3 = s.cr3, .cr4 = s.cr4, .efer = s.efer,
        .fs_base = s.fs.base, .gs_base = s.gs.base, .kernel_gs_base = kgs,
        .cs = s.cs.selector, .ss = s.ss.selector,
    };
    return VMT_OK;
}

/* The descriptor-cache contents for selector sel, from the guest's GDT. */
static vmt_status load_segment(vmt_kvm *k, const struct kvm_sregs *s, uint16_t sel, struct kvm_segment *out)
{
    memset(out, 0, sizeof *out);
    out->selector = sel;
    if ((sel & ~3u) == 0) { /* null: allowed for SS in 64-bit mode */
        out->unusable = 1;
        out->dpl = sel & 3;
        return VMT_OK;
    }
    if ((sel & 4) || (uint32_t)(sel | 7) > s->gdt.limit)
        return VMT_E_INVALID;
    uint64_t d;
    vmt_status st = kvm_va_read(k, s->cr3, s->gdt.base + (sel & ~7u), &d, sizeof d);
    if (st != VMT_OK)
        return st;
    uint32_t limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));
    out->base = ((d >> 16) & 0xffffff) | (((d >> 56) & 0xff) << 24);
    out->type = (d >> 40) & 0xf;
    out->s = (d >> 44) & 1;
    out->dpl = (d >> 45) & 3;
    out->present = (d >> 47) & 1;
    out->avl = (d >> 52) & 1;
    out->l = (d >> 53) & 1;
    out->db = (d >> 54) & 1;
    out->g = (d >> 55) & 1;
    out->limit = out->g ? (limit << 12) | 0xfff : limit;
    return VMT_OK;
}

vmt_status kvm_regs_set(vmt_kvm *k, const vmt_regs *v)
{
    struct kvm_regs r = {
        .rax = v->rax, .rbx = v->rbx, .rcx = v->rcx, .rdx = v->rdx, .rsi = v->rsi, .rdi = v->rdi,
        .rbp = v->rbp, .rsp = v->rsp, .r8 = v->r8, .r9 = v->r9, .r10 = v->r10, .r11 = v->r11,
        .r12 = v->r12, .r13 = v->r13, .r14 = v->r14, .r15 = v->r15, .rip = v->rip, .rflags = v->rflags,
    };
    struct kvm_sregs s, old;
    uint64_t kgs;
    if (ioctl(k->vcpu_fd, KVM_GET_SREGS, &s) < 0 || get_kgs(k, &kgs) != VMT_OK)
        return VMT_E_DRIVER;
    old = s;
    s.cr0 = v->cr0;
    s.cr2 = v->cr2;
    s.cr3 = v->cr3;
    s.cr4 = v->cr4;
    s.efer = v->efer;
    s.fs.base = v->fs_base;
    s.gs.base = v->gs_base;
    vmt_status st = VMT_OK;
    if (v->cs != old.cs.selector)
        st = load_segment(k, &s, v->cs, &s.cs);
    if (st == VMT_OK && v->ss != old.ss.selector)
        st = load_segment(k, &s, v->ss, &s.ss);
    if (st != VMT_OK) {
        vmt_log(VMT_LOG_WARN, "kvm: set_regs: cannot load cs 0x%x / ss 0x%x from the guest GDT", v->cs, v->ss);
        return VMT_E_INVALID;
    }
    bool sregs_changed = memcmp(&s, &old, sizeof s) != 0;
    if (ioctl(k->vcpu_fd, KVM_SET_REGS, &r) < 0 || (sregs_changed && ioctl(k->vcpu_fd, KVM_SET_SREGS, &s) < 0) ||
        (kgs != v->kernel_gs_base && set_kgs(k, v->kernel_gs_base) != VMT_OK)) {
        vmt_log(VMT_LOG_ERROR, "kvm: writing registers: %s", strerror(errno));
        return VMT_E_DRIVER;
    }
    return VMT_OK;
}

vmt_status kvm_set_debug(vmt_kvm *k, bool step)
{
    uint32_t flags = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP | (step ? KVM_GUESTDBG_SINGLESTEP : 0);
    if (step && k->step_blockirq) /* linux: no interrupt may slip into a step */
        flags |= KVM_GUESTDBG_BLOCKIRQ;
    if (flags == k->dbg_flags)
        return VMT_OK;
    struct kvm_guest_debug dbg = {.control = flags};
    if (ioctl(k->vcpu_fd, KVM_SET_GUEST_DEBUG, &dbg) < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: KVM_SET_GUEST_DEBUG: %s", strerror(errno));
        return VMT_E_DRIVER;
    }
    k->dbg_flags = flags;
    return VMT_OK;
}

vmt_status kvm_va_to_pa(vmt_kvm *k, uint64_t cr3, uint64_t va, vmt_pa *out)
{
    vmt_walk w;
    vmt_status st = vmt_amd64_walk(kvm_guest_read, k, vmt_ctx(va, cr3 & VMT_AMD64_ADDR_MASK), &w);
    if (st == VMT_OK)
        *out = w.pa;
    return st;
}

/* Page by page: consecutive virtual pages need not be physically adjacent. */
static vmt_status va_access(vmt_kvm *k, uint64_t cr3, uint64_t va, void *buf, size_t len, bool write)
{
    uint8_t *p = buf;
    while (len) {
        size_t n = VMT_PAGE_SIZE - (va & (VMT_PAGE_SIZE - 1));
        if (n > len)
            n = len;
        vmt_pa pa;
        vmt_status st = kvm_va_to_pa(k, cr3, va, &pa);
        if (st == VMT_OK)
            st = write ? kvm_guest_write(k, pa, p, n) : kvm_guest_read(k, pa, p, n);
        if (st != VMT_OK)
            return st;
        va += n;
        p += n;
        len -= n;
    }
    return VMT_OK;
}

vmt_status kvm_va_read(vmt_kvm *k, uint64_t cr3, uint64_t va, void *buf, size_t len)
{
    return va_access(k, cr3, va, buf, len, false);
}

vmt_status kvm_va_write(vmt_kvm *k, uint64_t cr3, uint64_t va, const void *buf, size_t len)
{
    return va_access(k, cr3, va, (void *)(uintptr_t)buf, len, true);
}
