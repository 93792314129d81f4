// SPDX-License-Identifier: MIT
/* Descriptor tables, exception handling and the end of the run. */
#include "kernel.h"

struct tss {
    uint32_t reserved0;
    uint64_t rsp0, rsp1, rsp2;
    uint64_t reserved1;
    uint64_t ist[7];
    uint64_t reserved2;
    uint16_t reserved3;
    uint16_t iomap_base;
} __attribute__((packed));

struct idt_entry {
    uint16_t offset_lo;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_hi;
    uint32_t zero;
};

struct table_reg {
    uint16_t limit;
    uint64_t base;
} __attribute__((packed));

static uint64_t gdt[7] __attribute__((aligned(16)));
static struct idt_entry idt[256] __attribute__((aligned(16)));
static struct tss tss __attribute__((aligned(16)));
static uint8_t df_stack[4096] __attribute__((aligned(16)));

/* int3 sites of the guest's own (the only #BP it accepts). */
extern char kernel_int3_site[], lib_int3_site[];

/* The system call instruction (ulib.c). */
extern char lib_syscall_site[];

#define GATE_KERNEL 0x8e /* present, DPL 0, 64-bit interrupt gate */
#define GATE_USER 0xee   /* present, DPL 3: reachable by int3 from ring 3 */

#define MSR_EFER 0xc0000080
#define EFER_NXE (1ull << 11)

static void set_gate(unsigned vec, uint64_t handler, uint8_t type_attr, uint8_t ist)
{
    idt[vec] = (struct idt_entry){
        .offset_lo = (uint16_t)handler,
        .selector = SEL_KCODE,
        .ist = ist,
        .type_attr = type_attr,
        .offset_mid = (uint16_t)(handler >> 16),
        .offset_hi = (uint32_t)(handler >> 32),
    };
}

void trap_init(void)
{
    uint64_t base = (uint64_t)(uintptr_t)&tss, limit = sizeof(tss) - 1;

    gdt[0] = 0;
    gdt[1] = 0x00af9a000000ffffull; /* kernel code, 64-bit */
    gdt[2] = 0x00cf92000000ffffull; /* kernel data */
    gdt[3] = 0x00cff2000000ffffull; /* user data (DPL 3) */
    gdt[4] = 0x00affa000000ffffull; /* user code, 64-bit (DPL 3) */
    gdt[5] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
             ((limit >> 16) << 48) | (((base >> 24) & 0xff) << 56);
    gdt[6] = base >> 32;

    tss.rsp0 = (uint64_t)(uintptr_t)kernel_stack_top;
    tss.ist[0] = (uint64_t)(uintptr_t)(df_stack + sizeof(df_stack));
    tss.iomap_base = sizeof(tss); /* no I/O bitmap: user port I/O faults */

    for (unsigned v = 0; v < 32; v++)
        set_gate(v, isr_table[v], GATE_KERNEL, v == 8 ? 1 : 0);
    set_gate(3, isr_table[3], GATE_USER, 0);

    struct table_reg gdtr = {sizeof(gdt) - 1, (uint64_t)(uintptr_t)gdt};
    struct table_reg idtr = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};
    gdt_load(&gdtr, SEL_TSS);
    __asm__ volatile("lidt %0" : : "m"(idtr));

    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NXE);
}

/* #BP: an int3 trap leaves RIP after the int3, so returning resumes past
 * it. Only the guest's own int3 sites are expected; anything else means a
 * breakpoint of the host leaked into the guest. */
static void breakpoint(struct trap_frame *f)
{
    uint64_t site = f->rip - 1;

    STATS->breakpoints++;
    if (site != (uint64_t)(uintptr_t)kernel_int3_site && site != (uint64_t)(uintptr_t)lib_int3_site)
        fatal(VMT_GUEST_EXIT_BAD_BP, "#BP from an int3 that is not the guest's: rip=%lx cs=%lx",
              f->rip, f->cs);
}

/* Executes an int3 of the guest's own, at CPL 0: the #BP handler counts it
 * and execution continues after it. */
INSTRUMENTED void kernel_int3_probe(void)
{
    KCOUNT(kernel_int3_probe);
    __asm__ volatile(".globl kernel_int3_site\nkernel_int3_site:\n\tint3" : : : "memory");
}

static void page_fault(struct trap_frame *f)
{
    uint64_t va = read_cr2();

    STATS->page_faults++;
    /* A user fetch/read of a not-present user code page: demand paging. */
    if ((f->error & 5) == 4 && pager_fault(va))
        return;
    fatal(VMT_GUEST_EXIT_EXCEPTION + 14, "page fault at %lx, rip=%lx error=%lx cs=%lx", va, f->rip,
          f->error, f->cs);
}

/* #GP: from the system call site it is a system call (see ulib.c): resume
 * after the one-byte cli. */
static void general_protection(struct trap_frame *f)
{
    if ((f->cs & 3) == 3 && f->rip == (uint64_t)(uintptr_t)lib_syscall_site) {
        f->rip += 1;
        syscall_dispatch(f);
        return;
    }
    fatal(VMT_GUEST_EXIT_EXCEPTION + 13, "general protection fault at rip=%lx error=%lx cs=%lx",
          f->rip, f->error, f->cs);
}

void trap_dispatch(struct trap_frame *f);
void trap_dispatch(struct trap_frame *f)
{
    switch (f->vector) {
    case 3:
        breakpoint(f);
        break;
    case 14:
        page_fault(f);
        break;
    case 13:
        general_protection(f);
        break;
    default:
        fatal(VMT_GUEST_EXIT_EXCEPTION + (uint32_t)(f->vector & 31),
              "unexpected exception %lu at rip=%lx error=%lx cs=%lx rsp=%lx", f->vector, f->rip,
              f->error, f->cs, f->rsp);
    }
}

void fatal(uint32_t code, const char *fmt, ...)
{
    va_list ap;

    kprintf("vmitap-guest: FATAL: ");
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
    kputc('\n');
    finish(code);
}

void finish(uint32_t code)
{
    volatile vmt_guest_stats *st = STATS;

    kprintf("vmitap-guest: %s rounds=%lu page_ins=%lu page_outs=%lu relocations=%lu "
            "page_faults=%lu breakpoints=%lu selfcheck=%lu/%lu self_patches=%lu exit=%u\n",
            code ? "FAILED" : "done", st->rounds, st->page_ins, st->page_outs, st->relocations,
            st->page_faults, st->breakpoints, st->selfcheck_runs, st->selfcheck_mismatches,
            st->self_patches, code);
    st->exit_code = code;
    st->done = 1;
    outl(VMT_GUEST_DONE_PORT, code);
    for (;;)
        __asm__ volatile("cli; hlt");
}
