/* vmitap — the KVM micro-VM driver: a small VMM on /dev/kvm that boots an
 * x86-64 ELF guest (the bundled test guest by default) on one vCPU and
 * implements the whole driver interface (vmitap/driver.h).
 *
 * Capabilities (info.caps): VMT_CAP_VIEWS, VMT_CAP_FAST_SINGLESTEP,
 * VMT_CAP_EMULATE. VMT_CAP_EXECUTE_ONLY only with
 * VMT_KVM_F_EMULATE_EXECUTE_ONLY: instruction fetches from a frame run
 * natively only when it is mapped in a KVM memslot, and then the guest's
 * data reads of that frame run natively too, so "execute but trap reads"
 * has no native form; without the flag, set_access (and create_view) with
 * X but without R returns VMT_E_UNSUPPORTED. See drivers/kvm/README.md for
 * the exact semantics of every access right and response action. */
#ifndef VMITAP_KVM_H
#define VMITAP_KVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmitap/core.h"
#include "vmitap/driver.h"

#ifdef __cplusplus
extern "C" {
#endif

struct vmt_guest_stats; /* guest/abi.h */

typedef struct vmt_kvm vmt_kvm;

typedef struct vmt_kvm_opts {
    size_t sz;              /* sizeof(vmt_kvm_opts), for forward compatibility */
    const char *guest_path; /* ELF to boot; NULL: $VMITAP_GUEST, else the bundled guest */
    uint64_t ram_bytes;     /* guest RAM; 0: 64 MiB; rounded up to 2 MiB */
    uint64_t iterations;    /* params block; 0: guest default */
    uint64_t seed;          /* params block */
    uint32_t pager;         /* params block: pager aggressiveness 0..100 */
    uint32_t guest_flags;   /* params block: VMT_GUEST_F_* */
    uint32_t flags;         /* VMT_KVM_F_* */
    /* linux: boot a Linux bzImage instead of guest_path (see kvm_linux.c):
     * 64-bit boot protocol, in-kernel PIC/IOAPIC/LAPIC and PIT, COM1 as
     * the console (vmt_kvm_console), the keyboard-controller reset as
     * power-off. ram_bytes should then be 128 MiB or more. */
    const char *kernel_path; /* bzImage; NULL: boot guest_path */
    const char *initrd_path; /* optional initramfs */
    const char *cmdline;     /* NULL: vmt_kvm_linux_default_cmdline */
    /* The signal that bounds KVM_RUN for wait_for_event's timeout; 0:
     * SIGRTMIN + 3. A real-time signal or SIGUSR1/SIGUSR2, else
     * VMT_E_INVALID. It is never delivered and needs no handler: see
     * vmt_kvm_new. */
    int kick_signal;
} vmt_kvm_opts;

/* Emulate execute-only access (and advertise VMT_CAP_EXECUTE_ONLY): a frame
 * with X but without R has no memslot, so every read of it by an
 * instruction elsewhere exits and is reported; its instructions are run
 * one single-step at a time while the vCPU stays in the frame (about one
 * exit per instruction). Inexact in one way: an instruction of that frame
 * reading its own frame reads natively, without an event, and sees the
 * default view's bytes (the frame shows them while the vCPU runs in it,
 * except for the instruction at RIP when its first byte differs there:
 * a breakpoint's int3). */
#define VMT_KVM_F_EMULATE_EXECUTE_ONLY (1u << 0)

/* Events' regs.kernel_gs_base holds the value the driver last read (it is
 * stale once the guest has run swapgs since), saving one vCPU ioctl per
 * event (about one VM exit's cost on nested hosts). get_regs always reads
 * it; set_regs writes it only when it differs from the last value read. */
#define VMT_KVM_F_LAZY_KERNEL_GS_BASE (1u << 1)

/* linux: the command line used when vmt_kvm_opts.cmdline is NULL: serial
 * console, no KASLR (System.map / kallsyms addresses are the live ones),
 * no ACPI and no PCI, reset through the keyboard controller. */
extern const char *const vmt_kvm_linux_default_cmdline;

/* linux: true where the host's KVM is kvm_pvm, a software hypervisor that
 * runs guest kernel-mode code in KVM's instruction emulator, one
 * instruction at a time (user mode runs natively). A stock Linux kernel
 * boots there, but thousands of times slower than on hardware
 * virtualization: minutes to reach user space. */
bool vmt_kvm_emulates_kernel_mode(void);

/* linux: queues bytes for the guest to read from COM1 (its console
 * input). VMT_E_UNSUPPORTED if the guest is not a Linux boot, VMT_E_NOMEM
 * if the 4 KiB receive buffer cannot take them all (nothing queued). */
vmt_status vmt_kvm_serial_input(vmt_kvm *kvm, const void *buf, size_t len);

typedef enum vmt_kvm_state {
    VMT_KVM_RUNNING = 0, /* booted, not finished (it may be paused) */
    VMT_KVM_EXITED,      /* wrote its exit code to the done port */
    VMT_KVM_CRASHED,     /* triple fault, emulation failure, bad state */
} vmt_kvm_state;

/* The driver table; its `d` argument is a vmt_kvm *. */
const vmt_driver_ops *vmt_kvm_driver_ops(void);

/* True if /dev/kvm can be opened and has the API this driver needs; else
 * false with a one-line reason in why (if why is non-NULL). */
bool vmt_kvm_available(char *why, size_t len);

/* Path of the bundled guest ELF: $VMITAP_GUEST if set, else the build
 * tree's guest. Never NULL. */
const char *vmt_kvm_default_guest(void);

/* Creates the VM, loads the guest and prepares the vCPU at the guest's
 * entry (it first runs in wait_for_event). opts may be NULL.
 *
 * No process-wide side effects: the driver installs no signal handler.
 * wait_for_event (and vmt_kvm_run) bound KVM_RUN with a POSIX timer that
 * sends opts->kick_signal to the calling thread. That thread has the signal
 * blocked while the call runs and unblocked only inside KVM_RUN (through
 * KVM_SET_SIGNAL_MASK), so the signal makes KVM_RUN return and stays
 * pending until the driver takes it with sigtimedwait; the thread's signal
 * mask is restored before the call returns. The application must not use
 * that signal otherwise on threads that call wait_for_event: one sent to
 * such a thread (or to the process, while such a thread is inside KVM_RUN)
 * can be taken by the driver as a timeout. Other signals interrupt KVM_RUN
 * as usual (the thread's mask applies in KVM_RUN) and the wait goes on. */
vmt_status vmt_kvm_new(const vmt_kvm_opts *opts, vmt_kvm **out);
void vmt_kvm_free(vmt_kvm *kvm);

/* vmt_kvm_new + vmt_core_new: the core owns the driver; *kvm_out (optional)
 * stays valid until vmt_core_free. */
vmt_status vmt_kvm_core_new(const vmt_kvm_opts *opts, vmt_core **out, vmt_kvm **kvm_out);

vmt_kvm_state vmt_kvm_get_state(const vmt_kvm *kvm);
/* The guest's exit code (valid in VMT_KVM_EXITED). */
uint32_t vmt_kvm_exit_code(const vmt_kvm *kvm);
/* Why the guest crashed (valid in VMT_KVM_CRASHED), else "". */
const char *vmt_kvm_crash_reason(const vmt_kvm *kvm);
/* NUL-terminated console output (port 0xE9) captured so far. */
const char *vmt_kvm_console(const vmt_kvm *kvm, size_t *len);
/* The guest's stats page (guest-physical VMT_GUEST_STATS_PA), live. */
const struct vmt_guest_stats *vmt_kvm_guest_stats(const vmt_kvm *kvm);

/* Runs the guest without any observer until it exits, crashes, or
 * timeout_ms passes (negative: no limit). Events that the driver would
 * report are answered with CONTINUE (REINJECT for int3). */
vmt_status vmt_kvm_run(vmt_kvm *kvm, int timeout_ms);

/* Counters of what the driver did (for benchmarks and tests). */
typedef struct vmt_kvm_counters {
    uint64_t runs;          /* KVM_RUN calls */
    uint64_t exits;         /* exits handled */
    uint64_t mmio;          /* MMIO exits served */
    uint64_t memslot_ops;   /* KVM_SET_USER_MEMORY_REGION calls */
    uint64_t remaps;        /* mmap(MAP_FIXED) of a frame's backing */
    uint64_t events;        /* events delivered */
    uint64_t steps;         /* single-steps executed */
} vmt_kvm_counters;
void vmt_kvm_counters_get(const vmt_kvm *kvm, vmt_kvm_counters *out);

/* The host profile: what this host's KVM does, found by tiny probe VMs the
 * first time a VM is made (cached for the process). The driver picks its
 * mechanisms from it (drivers/kvm/README.md, "Host profiles"). */
typedef struct vmt_kvm_host {
    bool probed;          /* the probes ran */
    bool hw_breakpoints;  /* execute breakpoints in DR0-3 exit (KVM_EXIT_DEBUG) */
    bool int3_exits;      /* int3 exits as KVM_EXIT_DEBUG #BP */
    bool int3_emulation;  /* int3 exits as an emulation failure (kvm_pvm) */
    bool step_exits;      /* KVM_GUESTDBG_SINGLESTEP exits after one instruction */
    bool kvm_pvm;         /* the paravirtual nested KVM: a CPL 3 step's #DB reaches the guest */
} vmt_kvm_host;
/* Opens /dev/kvm and probes it: VMT_E_UNSUPPORTED where it cannot be used. */
vmt_status vmt_kvm_host_probe(vmt_kvm_host *out);

#ifdef __cplusplus
}
#endif
#endif /* VMITAP_KVM_H */
