/* The contract between the bundled test guest and the host (the KVM
 * micro-VM driver, the tracer, the tests and benchmarks).
 *
 * Plain C, no libc: included by freestanding guest code and by host code.
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
 *   code segment, interrupts off;
 * - fills the parameter block at VMT_GUEST_PARAMS_PA;
 * - RIP = ELF entry, RSP = VMT_GUEST_BOOT_STACK_TOP, RDI = params PA.
 * The guest then installs its own GDT/IDT/TSS and page tables.
 *
 * End of run: the guest sets stats->done, then writes its exit code to
 * port VMT_GUEST_DONE_PORT (0 = success, its self-checks passed) and halts.
 * Console: bytes written to port VMT_GUEST_CONSOLE_PORT. */
#ifndef VMITAP_GUEST_ABI_H
#define VMITAP_GUEST_ABI_H

#include <stdint.h>

#define VMT_GUEST_ABI_VERSION 1u

#define VMT_GUEST_CONSOLE_PORT 0xE9
#define VMT_GUEST_DONE_PORT 0xF4

#define VMT_GUEST_BOOT_PML4_PA 0x1000ull /* 0x1000..0x4fff: boot tables */
#define VMT_GUEST_PARAMS_PA 0x6000ull
#define VMT_GUEST_STATS_PA 0x7000ull     /* 0x7000..0x8fff: stats (2 pages) */
#define VMT_GUEST_BOOT_STACK_TOP 0x80000ull
#define VMT_GUEST_KERNEL_VBASE 0xffffffff80000000ull
#define VMT_GUEST_KERNEL_PA 0x200000ull  /* kernel image: one 2 MiB page */

#define VMT_GUEST_PARAMS_MAGIC 0x534d524150544d56ull /* "VMTPARMS" */
#define VMT_GUEST_STATS_MAGIC 0x5354415453544d56ull  /* "VMTSTATS" */

/* Filled by the VMM before start. Zero fields mean "guest default". */
typedef struct vmt_guest_params {
    uint64_t magic;        /* VMT_GUEST_PARAMS_MAGIC */
    uint32_t abi_version;  /* VMT_GUEST_ABI_VERSION */
    uint32_t flags;        /* VMT_GUEST_F_* */
    uint64_t ram_bytes;    /* size of guest RAM, from 0 */
    uint64_t iterations;   /* scheduler rounds over all processes */
    uint64_t seed;         /* for the guest's PRNG (pager choices) */
    uint32_t pager;        /* pager aggressiveness: 0 = never evict, 1..100 = % of rounds */
    uint32_t reserved;
} vmt_guest_params;

#define VMT_GUEST_F_SELF_PATCH (1u << 0) /* run the self-patching step (issue 8) */
#define VMT_GUEST_F_EXIT_LOOP (1u << 1)  /* only a tight port-I/O exit loop, for W2's raw exit cost */

#define VMT_GUEST_MAX_COUNTERS 64
#define VMT_GUEST_NAME_LEN 32

/* One per instrumented guest function: the host matches a breakpoint on
 * symbol `name` with `calls`, the number of times the function was entered. */
typedef struct vmt_guest_counter {
    char name[VMT_GUEST_NAME_LEN]; /* NUL-terminated symbol name */
    uint64_t calls;
} vmt_guest_counter;

typedef struct vmt_guest_stats {
    uint64_t magic;          /* VMT_GUEST_STATS_MAGIC, set at boot */
    uint32_t abi_version;
    uint32_t done;           /* 1 once the run is over */
    uint32_t exit_code;      /* 0 = success */
    uint32_t ncounters;
    uint64_t rounds;         /* scheduler rounds completed */
    uint64_t page_outs;      /* user code pages evicted */
    uint64_t page_ins;       /* pages brought back (demand faults served) */
    uint64_t relocations;    /* page-ins into a different frame than before */
    uint64_t page_faults;
    uint64_t breakpoints;    /* #BP that reached the guest's own handler */
    uint64_t selfcheck_runs;
    uint64_t selfcheck_mismatches; /* code-page checksums that changed */
    uint64_t reserved[8];
    vmt_guest_counter counters[VMT_GUEST_MAX_COUNTERS];
} vmt_guest_stats;

#endif /* VMITAP_GUEST_ABI_H */
