// SPDX-License-Identifier: MIT
/* The host profile: what this KVM actually does, found by tiny probes.
 *
 * Each probe is a throw-away VM with one vCPU in real mode (no page tables
 * needed), 64 KiB of RAM, a few bytes of code at 0x1000 and a `hlt` at
 * 0x2000 that the IVT's vectors 1 and 3 point to: where KVM does not exit
 * for what we asked, the guest's own handler runs and halts there.
 *
 *   hw_breakpoints   an execute breakpoint in DR0 (KVM_GUESTDBG_USE_HW_BP)
 *                    exits as KVM_EXIT_DEBUG with DR6.B0 (real hardware);
 *                    not on QEMU's emulated AMD-V, which loads DR7 from the
 *                    VMCB without arming it
 *   int3_exits       0xCC with KVM_GUESTDBG_USE_SW_BP exits as
 *                    KVM_EXIT_DEBUG #BP (real hardware); QEMU's emulated
 *                    AMD-V raises int3 as a software interrupt, so the
 *                    guest's vector 3 runs instead
 *   int3_emulation   int3 exits as an emulation failure with 0xCC at RIP
 *                    (kvm_pvm)
 *   step_exits       KVM_GUESTDBG_SINGLESTEP exits after one instruction
 *
 * Run once per process (the answer does not change) and cached.
 * VMITAP_KVM_PROFILE=no-hw-breakpoints makes a VM act as if debug
 * registers did not fire (tests of the fallback on real hardware). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "drivers/kvm/kvm_internal.h"
#include "vmitap/log.h"

#define PROBE_RAM 0x10000u
#define PROBE_CODE 0x1000u
#define PROBE_HALT 0x2000u

typedef struct probe_vm {
    int vm, vcpu;
    uint8_t *ram;
    struct kvm_run *run;
    size_t run_size;
} probe_vm;

static void probe_free(probe_vm *p)
{
    if (p->run)
        munmap(p->run, p->run_size);
    if (p->ram)
        munmap(p->ram, PROBE_RAM);
    if (p->vcpu >= 0)
        close(p->vcpu);
    if (p->vm >= 0)
        close(p->vm);
}

/* A real-mode VM whose code at 0x1000 is `code`. */
static bool probe_new(int kvm_fd, probe_vm *p, const uint8_t *code, size_t len)
{
    *p = (probe_vm){.vm = -1, .vcpu = -1};
    p->vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
    if (p->vm < 0)
        return false;
    ioctl(p->vm, KVM_SET_TSS_ADDR, 0xfffbd000ul);
    struct kvm_enable_cap cap = {.cap = KVM_CAP_EXIT_ON_EMULATION_FAILURE, .args = {1}};
    ioctl(p->vm, KVM_ENABLE_CAP, &cap); /* where missing, the probes still tell */
    p->ram = mmap(NULL, PROBE_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p->ram == MAP_FAILED) {
        p->ram = NULL;
        return false;
    }
    struct kvm_userspace_memory_region mr = {.slot = 0, .memory_size = PROBE_RAM,
                                             .userspace_addr = (uintptr_t)p->ram};
    if (ioctl(p->vm, KVM_SET_USER_MEMORY_REGION, &mr) < 0)
        return false;
    /* IVT: vectors 1 and 3 at 0000:2000, a hlt */
    uint16_t ivt[2] = {PROBE_HALT, 0};
    memcpy(p->ram + 1 * 4, ivt, 4);
    memcpy(p->ram + 3 * 4, ivt, 4);
    p->ram[PROBE_HALT] = 0xf4;
    memcpy(p->ram + PROBE_CODE, code, len);
    p->vcpu = ioctl(p->vm, KVM_CREATE_VCPU, 0);
    int sz = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (p->vcpu < 0 || sz <= 0)
        return false;
    p->run_size = (size_t)sz;
    p->run = mmap(NULL, p->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, p->vcpu, 0);
    if (p->run == MAP_FAILED) {
        p->run = NULL;
        return false;
    }
    struct kvm_sregs s;
    if (ioctl(p->vcpu, KVM_GET_SREGS, &s) < 0)
        return false;
    s.cs.base = 0;
    s.cs.selector = 0;
    if (ioctl(p->vcpu, KVM_SET_SREGS, &s) < 0)
        return false;
    struct kvm_regs r = {.rip = PROBE_CODE, .rsp = 0x8000, .rflags = 2};
    return ioctl(p->vcpu, KVM_SET_REGS, &r) == 0;
}

/* Runs the probe once with guest-debug `control` (and DR0/DR7): the exit. */
static bool probe_run(int kvm_fd, const uint8_t *code, size_t len, uint32_t control, uint64_t dr0,
                      uint64_t dr7, struct kvm_run *out)
{
    probe_vm p;
    bool ok = probe_new(kvm_fd, &p, code, len);
    if (ok) {
        struct kvm_guest_debug dbg = {.control = control};
        dbg.arch.debugreg[0] = dr0;
        dbg.arch.debugreg[7] = dr7;
        ok = ioctl(p.vcpu, KVM_SET_GUEST_DEBUG, &dbg) == 0;
        int r;
        do
            r = ok ? ioctl(p.vcpu, KVM_RUN, 0) : 0;
        while (ok && r < 0 && errno == EINTR);
        ok = ok && r == 0;
        if (ok)
            *out = *p.run;
    }
    probe_free(&p);
    return ok;
}

static bool debug_exit(const struct kvm_run *r, unsigned exc) { return r->exit_reason == KVM_EXIT_DEBUG && r->debug.arch.exception == exc; }

static void probe_all(int kvm_fd, vmt_kvm_host *h)
{
    static const uint8_t nops[] = {0x90, 0x90, 0xf4}; /* nop; nop; hlt */
    static const uint8_t int3[] = {0xcc, 0xf4};       /* int3; hlt */
    struct kvm_run r;
    uint32_t dbg = KVM_GUESTDBG_ENABLE;

    h->hw_breakpoints = probe_run(kvm_fd, nops, sizeof nops, dbg | KVM_GUESTDBG_USE_HW_BP, PROBE_CODE + 1, 1, &r) &&
                        debug_exit(&r, 1) && (r.debug.arch.dr6 & 1);
    if (probe_run(kvm_fd, int3, sizeof int3, dbg | KVM_GUESTDBG_USE_SW_BP, 0, 0, &r)) {
        h->int3_exits = debug_exit(&r, 3);
        h->int3_emulation = r.exit_reason == KVM_EXIT_INTERNAL_ERROR;
    }
    h->step_exits = probe_run(kvm_fd, nops, sizeof nops, dbg | KVM_GUESTDBG_SINGLESTEP, 0, 0, &r) &&
                    debug_exit(&r, 1);
    /* Not probed (the probe VMs run at CPL 0): named by its module. */
    h->kvm_pvm = vmt_kvm_emulates_kernel_mode();
    h->probed = true;
}

static vmt_kvm_host g_host;

void kvm_probe_host(int kvm_fd, vmt_kvm_host *out)
{
    static gsize done;
    if (g_once_init_enter(&done)) {
        probe_all(kvm_fd, &g_host);
        vmt_log(VMT_LOG_DEBUG, "kvm: host profile: hw breakpoints %d, int3 exits %d, int3 emulation %d, steps %d",
                g_host.hw_breakpoints, g_host.int3_exits, g_host.int3_emulation, g_host.step_exits);
        g_once_init_leave(&done, 1);
    }
    *out = g_host;
    /* Tests force another profile's mechanism on a host that would not
     * take it (read at every VM creation). */
    const char *force = getenv("VMITAP_KVM_PROFILE");
    if (force && strstr(force, "no-hw-breakpoints"))
        out->hw_breakpoints = false;
}
