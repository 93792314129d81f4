// SPDX-License-Identifier: MIT
/* vmitap — the contract between the bundled test guest and the host (the
 * KVM micro-VM driver, the tracer, the tests and benchmarks, and programs
 * that embed the tracer and compare with the guest's counters, as
 * examples/embed_tracer.c does through vmt_kvm_guest_stats).
 *
 * Plain C, no libc: included by freestanding guest code and by host code.
 * Thread-safety: constants, plain structs and one pure inline function.
 * ABI: the structs only grow at the end (see below); the library never
 * writes them into caller memory (the stats live in guest memory).
 * Everything here is at a fixed guest-physical address so the host can
 * find it without symbols. The guest owner may extend the structs at the
 * end (bump VMT_GUEST_ABI_VERSION); never reorder.
 *
 * Boot protocol (what the VMM does before the first KVM_RUN):
 * - loads every PT_LOAD segment of the guest ELF at its p_paddr;
 * - builds boot page tables at VMT_GUEST_BOOT_PML4_PA.. that identity-map
 *   guest-physical [0, 1 GiB) with 2 MiB pages and map the same range at
 *   VMT_GUEST_KERNEL_VBASE (so a kernel linked high can run at once);
 * - long mode on (CR0.PG|PE, CR4.PAE, EFER.LME|LMA|NXE), a flat 64-bit
 *   code segment, interrupts off; CPUID with NX (the guest maps data NX
 *   and sets EFER.NXE itself too), e.g. KVM_GET_SUPPORTED_CPUID's;
 * - fills the parameter block at VMT_GUEST_PARAMS_PA;
 * - RIP = ELF entry, RSP = VMT_GUEST_BOOT_STACK_TOP, RDI = params PA.
 * The guest then installs its own GDT/IDT/TSS and page tables.
 *
 * End of run: the guest sets stats->done, then writes its exit code to
 * port VMT_GUEST_DONE_PORT with a 32-bit `outl` (0 = success, its
 * self-checks passed; the code always fits in one byte, see
 * VMT_GUEST_EXIT_*) and halts (cli; hlt loop).
 * Console: bytes written to port VMT_GUEST_CONSOLE_PORT, one `outb` each.
 * Exit loop (VMT_GUEST_F_EXIT_LOOP): the guest writes `iterations` bytes
 * to VMT_GUEST_NOP_PORT, which the VMM ignores, then ends as above; the
 * read loop (VMT_GUEST_F_READ_LOOP) likewise, with reads of its code.
 *
 * What the guest sets up itself (guest/README.md has the details):
 * - the kernel image is linked at VMT_GUEST_KERNEL_VBASE +
 *   VMT_GUEST_KERNEL_PA and runs from one 2 MiB page; the kernel maps all of
 *   guest-physical [0, 1 GiB) at VMT_GUEST_KERNEL_VBASE + pa with 2 MiB
 *   pages in every address space;
 * - the IDT vector 3 (#BP) entry stub sits alone in its own 4 KiB page
 *   (symbol `vmt_bp_entry`), so a VMM that traps fetches there traps nothing
 *   else; it leaves that page within three instructions;
 * - VMT_GUEST_NPROCS ring-3 processes, each with its own CR3, published in
 *   stats->proc_cr3[] before the first one runs; user layout below;
 * - system calls are a `cli` at symbol lib_syscall_site in ring 3: the #GP
 *   it raises is the kernel entry (a VMM sees ordinary #GP faults there);
 * - the guest's own int3: lib_int3 (CPL 3, always) and kernel_int3_probe
 *   (CPL 0, only with VMT_GUEST_F_KERNEL_INT3); any other #BP that reaches
 *   the guest ends the run with VMT_GUEST_EXIT_BAD_BP. */
#ifndef VMITAP_GUEST_H
#define VMITAP_GUEST_H

#include <stdint.h>

#define VMT_GUEST_ABI_VERSION 2u

#define VMT_GUEST_CONSOLE_PORT 0xE9
#define VMT_GUEST_DONE_PORT 0xF4
#define VMT_GUEST_NOP_PORT 0xF6 /* written by the exit loop only; the VMM ignores it */

#define VMT_GUEST_BOOT_PML4_PA 0x1000ull /* 0x1000..0x4fff: boot tables */
#define VMT_GUEST_PARAMS_PA 0x6000ull
#define VMT_GUEST_STATS_PA 0x7000ull /* 0x7000..0x8fff: stats (2 pages) */
#define VMT_GUEST_BOOT_STACK_TOP 0x80000ull
#define VMT_GUEST_KERNEL_VBASE 0xffffffff80000000ull
#define VMT_GUEST_KERNEL_PA 0x200000ull /* kernel image: one 2 MiB page */

#define VMT_GUEST_PARAMS_MAGIC 0x534d524150544d56ull /* "VMTPARMS" */
#define VMT_GUEST_STATS_MAGIC 0x5354415453544d56ull  /* "VMTSTATS" */

/* Filled by the VMM before start. Zero fields mean "guest default". */
typedef struct vmt_guest_params {
    uint64_t magic;       /* VMT_GUEST_PARAMS_MAGIC */
    uint32_t abi_version; /* VMT_GUEST_ABI_VERSION */
    uint32_t flags;       /* VMT_GUEST_F_* */
    uint64_t ram_bytes;   /* size of guest RAM, from 0 */
    uint64_t iterations;  /* scheduler rounds over all processes */
    uint64_t seed;        /* for the guest's PRNG (pager choices) */
    uint32_t pager;       /* pager aggressiveness: 0 = never evict, 1..100 = % of rounds */
    uint32_t reserved;
} vmt_guest_params;

/* Run the self-patching step (issue 8). */
#define VMT_GUEST_F_SELF_PATCH (1u << 0)
/* Only a tight port-I/O exit loop, for W2's raw exit cost. */
#define VMT_GUEST_F_EXIT_LOOP (1u << 1)
/* Also run kernel_int3_probe (an int3 at CPL 0) every 10 rounds. Off by
 * default: on the nested AMD hosts of docs/design.md an int3 at CPL 0 exits to
 * the VMM as KVM_EXIT_INTERNAL_ERROR even without guest debugging, so only
 * a VMM that delivers it (reinjects #BP) can run with this flag. The
 * guest's own int3 at CPL 3 (lib_int3) runs in every mode. */
#define VMT_GUEST_F_KERNEL_INT3 (1u << 2)
/* Only `iterations` 8-byte reads of the first bytes of the kernel function
 * patch_neighbor (never called in this mode), for W2's cost of a guest read
 * of a page that holds a hidden breakpoint. Reads that differ from the
 * first one count as selfcheck_mismatches (exit VMT_GUEST_EXIT_SELFCHECK). */
#define VMT_GUEST_F_READ_LOOP (1u << 3)

/* Guest defaults for zero parameter fields. RAM must be at least
 * VMT_GUEST_MIN_RAM: the guest's frame pool is [4 MiB, 8 MiB). */
#define VMT_GUEST_DEFAULT_ITERATIONS 1000u
#define VMT_GUEST_DEFAULT_EXIT_LOOP_ITERATIONS 10000u /* also for the read loop */
#define VMT_GUEST_DEFAULT_SEED 1u
#define VMT_GUEST_MIN_RAM (8ull << 20)

/* Exit codes (stats->exit_code and the value written to the done port). */
#define VMT_GUEST_EXIT_OK 0u
#define VMT_GUEST_EXIT_SELFCHECK 1u    /* a code-page checksum changed */
#define VMT_GUEST_EXIT_SELF_PATCH 2u   /* the patched code did not read back or run as written */
#define VMT_GUEST_EXIT_PARAMS 3u       /* unusable parameter block (e.g. RAM too small) */
#define VMT_GUEST_EXIT_NOMEM 4u        /* frame pool exhausted */
#define VMT_GUEST_EXIT_USER 5u         /* a user process reported a failed check */
#define VMT_GUEST_EXIT_BAD_BP 6u       /* #BP at an address that holds no int3 of the guest's own */
#define VMT_GUEST_EXIT_EXCEPTION 0x40u /* + vector: unexpected exception */

/* Per-process user address space (identical in every process). */
#define VMT_GUEST_NPROCS 3u
#define VMT_GUEST_MAX_PROCS 8u
#define VMT_GUEST_USER_LIB_VA 0x400000ull   /* shared library: 1 page, same frame in all processes \
                                             */
#define VMT_GUEST_USER_STATS_VA 0x500000ull /* the stats pages, user-writable (user counters) */
#define VMT_GUEST_USER_CODE_VA                                                                     \
    0x600000ull /* private code: VMT_GUEST_USER_CODE_PAGES pages, own frames */
#define VMT_GUEST_USER_CODE_PAGES 4u
#define VMT_GUEST_USER_INFO_VA 0x700000ull /* read-only page: the process index (uint64_t) */
#define VMT_GUEST_USER_STACK_TOP 0x800000ull

#define VMT_GUEST_MAX_COUNTERS 64
#define VMT_GUEST_NAME_LEN 32

/* One per instrumented guest function: the host matches a breakpoint on
 * symbol `name` with `calls`, the number of times the function was entered. */
typedef struct vmt_guest_counter {
    char name[VMT_GUEST_NAME_LEN]; /* NUL-terminated symbol name */
    uint64_t calls;
} vmt_guest_counter;

typedef struct vmt_guest_stats {
    uint64_t magic; /* VMT_GUEST_STATS_MAGIC, set at boot */
    uint32_t abi_version;
    uint32_t done;      /* 1 once the run is over */
    uint32_t exit_code; /* 0 = success */
    uint32_t ncounters;
    uint64_t rounds;      /* scheduler rounds completed */
    uint64_t page_outs;   /* user code pages evicted */
    uint64_t page_ins;    /* pages brought back (demand faults served) */
    uint64_t relocations; /* page-ins into a different frame than before */
    uint64_t page_faults;
    uint64_t breakpoints; /* #BP that reached the guest's own handler */
    uint64_t selfcheck_runs;
    uint64_t selfcheck_mismatches; /* code-page checksums that changed */
    uint64_t reserved[8];
    vmt_guest_counter counters[VMT_GUEST_MAX_COUNTERS];
    /* ABI version 2 */
    uint32_t nprocs;
    uint32_t reserved2;
    uint64_t proc_cr3[VMT_GUEST_MAX_PROCS]; /* CR3 (PML4 PA) of process i */
    uint64_t self_patches;                  /* code patches written (VMT_GUEST_F_SELF_PATCH) */
    uint64_t self_patch_errors;             /* read-back or behaviour mismatches after a patch */
    uint64_t patch_v1_calls;                /* calls of patch_target that ran the original code */
    uint64_t patch_v2_calls;                /* calls that ran the patched code */
} vmt_guest_stats;

/* Counter names: `name` is the ELF symbol of the function; for user
 * functions there is also `name@P` (P = process index 0..nprocs-1, decimal)
 * counting the calls made in process P alone, whose CR3 is
 * stats->proc_cr3[P]; `name` is the sum over processes. Returns the counter
 * or NULL. */
static inline const vmt_guest_counter *vmt_guest_counter_find(const vmt_guest_stats *st,
                                                              const char *name)
{
    for (uint32_t i = 0; i < st->ncounters && i < VMT_GUEST_MAX_COUNTERS; i++) {
        const char *a = st->counters[i].name, *b = name;
        uint32_t k = 0;
        while (k < VMT_GUEST_NAME_LEN && a[k] != '\0' && a[k] == b[k])
            k++;
        if (k < VMT_GUEST_NAME_LEN && a[k] == b[k])
            return &st->counters[i];
    }
    return 0;
}

#endif /* VMITAP_GUEST_H */
