// SPDX-License-Identifier: MIT
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

/* One MSR through KVM_GET/SET_MSRS (a struct with a flexible array). */
static vmt_status msr_io(vmt_kvm *k, unsigned long req, uint32_t index, uint64_t *val)
{
    _Alignas(struct kvm_msrs) uint8_t buf[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
    memset(buf, 0, sizeof buf);
    struct kvm_msrs *m = (struct kvm_msrs *)buf;
    m->nmsrs = 1;
    m->entries[0].index = index;
    m->entries[0].data = *val;
    if (ioctl(k->vcpu_fd, req, m) != 1)
        return VMT_E_DRIVER;
    *val = m->entries[0].data;
    return VMT_OK;
}

vmt_status kvm_msr_get(vmt_kvm *k, uint32_t index, uint64_t *out)
{
    *out = 0;
    return msr_io(k, KVM_GET_MSRS, index, out);
}

static vmt_status get_kgs(vmt_kvm *k, uint64_t *out) { return kvm_msr_get(k, MSR_KERNEL_GS_BASE, out); }

static vmt_status set_kgs(vmt_kvm *k, uint64_t v) { return msr_io(k, KVM_SET_MSRS, MSR_KERNEL_GS_BASE, &v); }

/* Registers live in the kvm_run page between two KVM_RUNs
 * (KVM_CAP_SYNC_REGS): KVM stores them there at every exit and loads the
 * ones marked dirty at the next entry. Each vCPU ioctl costs about as much
 * as a VM exit on these hosts (nested), so the driver reads and writes
 * registers there and never with KVM_GET/SET_REGS/SREGS once running. */
static struct kvm_regs *R(vmt_kvm *k) { return &k->run->s.regs.regs; }
static struct kvm_sregs *S(vmt_kvm *k) { return &k->run->s.regs.sregs; }

vmt_status kvm_sync_init(vmt_kvm *k)
{
    int caps = ioctl(k->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
    if ((caps & (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS)) != (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS)) {
        vmt_log(VMT_LOG_ERROR, "kvm: KVM_CAP_SYNC_REGS lacks regs/sregs");
        return VMT_E_UNSUPPORTED;
    }
    k->run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
    if (ioctl(k->vcpu_fd, KVM_GET_REGS, R(k)) < 0 || ioctl(k->vcpu_fd, KVM_GET_SREGS, S(k)) < 0)
        return VMT_E_DRIVER;
    return VMT_OK;
}

const struct kvm_sregs *kvm_sregs(vmt_kvm *k) { return S(k); }

/* KERNEL_GS_BASE is not in the synced state and can change without an
 * exit (swapgs): read once per stop of the vCPU, when asked; with
 * VMT_KVM_F_LAZY_KERNEL_GS_BASE events reuse the last value read. */
static vmt_status kgs(vmt_kvm *k, uint64_t *out, bool exact)
{
    if (!k->kgs_valid && (exact || !k->lazy_kgs || !k->kgs_known)) {
        if (get_kgs(k, &k->kgs) != VMT_OK)
            return VMT_E_DRIVER;
        k->kgs_valid = k->kgs_known = true;
    }
    *out = k->kgs;
    return VMT_OK;
}

static vmt_status regs_get(vmt_kvm *k, vmt_regs *out, bool exact);

vmt_status kvm_regs_get(vmt_kvm *k, vmt_regs *out) { return regs_get(k, out, false); }
vmt_status kvm_regs_get_exact(vmt_kvm *k, vmt_regs *out) { return regs_get(k, out, true); }

static vmt_status regs_get(vmt_kvm *k, vmt_regs *out, bool exact)
{
    const struct kvm_regs *r = R(k);
    const struct kvm_sregs *s = S(k);
    uint64_t kg;
    if (kgs(k, &kg, exact) != VMT_OK) {
        vmt_log(VMT_LOG_ERROR, "kvm: reading KERNEL_GS_BASE: %s", strerror(errno));
        return VMT_E_DRIVER;
    }
    *out = (vmt_regs){
        .rax = r->rax, .rbx = r->rbx, .rcx = r->rcx, .rdx = r->rdx, .rsi = r->rsi, .rdi = r->rdi,
        .rbp = r->rbp, .rsp = r->rsp, .r8 = r->r8, .r9 = r->r9, .r10 = r->r10, .r11 = r->r11,
        .r12 = r->r12, .r13 = r->r13, .r14 = r->r14, .r15 = r->r15, .rip = r->rip,
        .rflags = r->rflags,
        .cr0 = s->cr0, .cr2 = s->cr2, .cr3 = s->cr3, .cr4 = s->cr4, .efer = s->efer,
        .fs_base = s->fs.base, .gs_base = s->gs.base, .kernel_gs_base = kg,
        .cs = s->cs.selector, .ss = s->ss.selector,
    };
    return VMT_OK;
}

uint64_t kvm_rip(vmt_kvm *k) { return R(k)->rip; }
uint64_t kvm_rsp(vmt_kvm *k) { return R(k)->rsp; }
uint64_t kvm_cr3(vmt_kvm *k) { return S(k)->cr3; }

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
    struct kvm_sregs s = *S(k);
    if (k->dbg_flags & KVM_GUESTDBG_SINGLESTEP)
        k->dbg_flags = 0; /* the step is tied to the RIP it was armed at (handle_exit) */
    s.cr0 = v->cr0;
    s.cr2 = v->cr2;
    s.cr3 = v->cr3;
    s.cr4 = v->cr4;
    s.efer = v->efer;
    s.fs.base = v->fs_base;
    s.gs.base = v->gs_base;
    vmt_status st = VMT_OK;
    if (v->cs != s.cs.selector)
        st = load_segment(k, &s, v->cs, &s.cs);
    if (st == VMT_OK && v->ss != s.ss.selector)
        st = load_segment(k, &s, v->ss, &s.ss);
    if (st != VMT_OK) {
        vmt_log(VMT_LOG_WARN, "kvm: set_regs: cannot load cs 0x%x / ss 0x%x from the guest GDT", v->cs, v->ss);
        return VMT_E_INVALID;
    }
    /* lazy: a value equal to the one last reported means "unchanged" */
    uint64_t kg;
    if (kgs(k, &kg, false) != VMT_OK)
        return VMT_E_DRIVER;
    if (kg != v->kernel_gs_base) {
        if (set_kgs(k, v->kernel_gs_base) != VMT_OK) {
            vmt_log(VMT_LOG_ERROR, "kvm: writing KERNEL_GS_BASE: %s", strerror(errno));
            return VMT_E_DRIVER;
        }
        k->kgs = v->kernel_gs_base;
    }
    if (memcmp(&s, S(k), sizeof s) != 0) {
        *S(k) = s;
        k->run->kvm_dirty_regs |= KVM_SYNC_X86_SREGS;
    }
    *R(k) = (struct kvm_regs){
        .rax = v->rax, .rbx = v->rbx, .rcx = v->rcx, .rdx = v->rdx, .rsi = v->rsi, .rdi = v->rdi,
        .rbp = v->rbp, .rsp = v->rsp, .r8 = v->r8, .r9 = v->r9, .r10 = v->r10, .r11 = v->r11,
        .r12 = v->r12, .r13 = v->r13, .r14 = v->r14, .r15 = v->r15, .rip = v->rip,
        .rflags = v->rflags,
    };
    k->run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
    return VMT_OK;
}

/* Called after every KVM_RUN: the synced registers are fresh, the MSR
 * may have changed. */
void kvm_regs_ran(vmt_kvm *k)
{
    k->run->kvm_dirty_regs = 0;
    k->kgs_valid = false;
    k->read_pending = false;
}

static vmt_status set_debug(vmt_kvm *k, bool step)
{
    uint32_t flags = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP | (step ? KVM_GUESTDBG_SINGLESTEP : 0);
    if (step && k->step_blockirq) /* linux: no interrupt may slip into a step */
        flags |= KVM_GUESTDBG_BLOCKIRQ;
    if (k->dbg_dr[7])
        flags |= KVM_GUESTDBG_USE_HW_BP; /* kvm_ptw.c's breakpoints */
    if (flags == k->dbg_flags)
        return VMT_OK;
    struct kvm_guest_debug dbg = {.control = flags};
    if (k->dbg_dr[7]) {
        memcpy(dbg.arch.debugreg, k->dbg_dr, 4 * sizeof k->dbg_dr[0]);
        dbg.arch.debugreg[7] = k->dbg_dr[7];
    }
    /* KVM_SET_GUEST_DEBUG reads and writes RFLAGS: hand it ours first. */
    if ((k->run->kvm_dirty_regs & KVM_SYNC_X86_REGS) && ioctl(k->vcpu_fd, KVM_SET_REGS, R(k)) < 0)
        return VMT_E_DRIVER;
    k->run->kvm_dirty_regs &= ~(uint64_t)KVM_SYNC_X86_REGS;
    if (ioctl(k->vcpu_fd, KVM_SET_GUEST_DEBUG, &dbg) < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: KVM_SET_GUEST_DEBUG: %s", strerror(errno));
        return VMT_E_DRIVER;
    }
    k->dbg_flags = flags;
    return VMT_OK;
}

vmt_status kvm_debug_init(vmt_kvm *k) { return set_debug(k, false); }

/* Makes the next KVM_RUN execute one instruction, or run freely. Measured
 * here: a step by setting TF ourselves (with #DB intercepted through
 * KVM_GUESTDBG_USE_HW_BP) is not intercepted on these nested hosts, the
 * #DB reaches the guest; KVM's own single-step works, at two ioctls per
 * step (on and off). */
vmt_status kvm_step_arm(vmt_kvm *k, bool step) { return set_debug(k, step); }

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
