// SPDX-License-Identifier: MIT
/* Internal declarations of the guest kernel. */
#ifndef VMT_GUEST_KERNEL_H
#define VMT_GUEST_KERNEL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "../abi.h"
#include "../counters.h"

#define PAGE_SIZE 4096ull
#define PAGE_MASK (~(PAGE_SIZE - 1))

/* Kernel virtual address of guest-physical `pa` (the 1 GiB direct map). */
#define P2V(pa) ((void *)(uintptr_t)(VMT_GUEST_KERNEL_VBASE + (uint64_t)(pa)))
#define V2P(va) (((uint64_t)(uintptr_t)(va)) - VMT_GUEST_KERNEL_VBASE)

#define STATS ((volatile vmt_guest_stats *)P2V(VMT_GUEST_STATS_PA))

/* Every instrumented kernel function starts with this. */
#define KCOUNT(name) (STATS->counters[KCNT_##name].calls++)

/* Instrumented functions must be entered at their symbol on every call:
 * never inlined, cloned or otherwise changed by inter-procedural passes. */
#define INSTRUMENTED __attribute__((noipa))

/* Page-table entry bits. */
#define PTE_P (1ull << 0)
#define PTE_W (1ull << 1)
#define PTE_U (1ull << 2)
#define PTE_PS (1ull << 7)
#define PTE_NX (1ull << 63)
#define PTE_ADDR 0x000ffffffffff000ull

/* Segment selectors (GDT layout in trap.c). */
#define SEL_KCODE 0x08
#define SEL_KDATA 0x10
#define SEL_UDATA 0x1b
#define SEL_UCODE 0x23
#define SEL_TSS 0x28

/* What the entry stubs in boot.S push, lowest address first. */
struct trap_frame {
    uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
    uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
    uint64_t vector, error;
    uint64_t rip, cs, rflags, rsp, ss; /* pushed by the CPU */
};

/* One user code page of a process (or the shared library page). */
enum page_state { PAGE_UNLOADED, PAGE_RESIDENT, PAGE_EVICTED };
struct upage {
    uint64_t va;
    uint64_t frame; /* 0 while never loaded; kept while evicted */
    enum page_state state;
    uint64_t template_pa; /* where the ELF image holds its original bytes */
};

struct proc {
    unsigned index;
    uint64_t cr3;
    struct trap_frame frame; /* user state while not running */
    struct upage code[VMT_GUEST_USER_CODE_PAGES];
};

/* Run parameters after defaults are applied. */
struct run_params {
    uint64_t iterations;
    uint64_t seed;
    uint32_t pager; /* % of rounds that evict a page */
    uint32_t flags;
    uint64_t ram_bytes;
};

extern struct run_params params;
extern struct proc procs[VMT_GUEST_NPROCS];
extern struct proc *current;
extern struct upage shared_lib;

/* Linker-script symbols (guest.ld). */
extern char __ktext_start[], __ktext_end[], __bss_start[], __bss_end[];
extern char __ulib_load_pa[], __uprog_load_pa[];
extern char kernel_stack_top[];

/* boot.S */
void gdt_load(const void *gdtr, uint16_t tss_sel);
void enter_user(struct trap_frame *frame) __attribute__((noreturn));
extern const uint64_t isr_table[32];

/* console.c */
void kputc(char c);
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf(const char *fmt, va_list ap);

/* lib.c */
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
uint64_t prng_next(void);
void prng_seed(uint64_t seed);
uint64_t prng_below(uint64_t n);

/* cpu helpers */
static inline void outb(uint16_t port, uint8_t v)
{
    __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(uint16_t port, uint32_t v)
{
    __asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}
static inline void write_cr3(uint64_t v)
{
    __asm__ volatile("mov %0, %%cr3" : : "r"(v) : "memory");
}
static inline uint64_t read_cr2(void)
{
    uint64_t v;
    __asm__ volatile("mov %%cr2, %0" : "=r"(v));
    return v;
}
static inline uint64_t rdmsr(uint32_t msr)
{
    uint32_t lo, hi;
    __asm__ volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
    return (uint64_t)hi << 32 | lo;
}
static inline void wrmsr(uint32_t msr, uint64_t v)
{
    __asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}
static inline void invlpg(uint64_t va)
{
    __asm__ volatile("invlpg (%0)" : : "r"(va) : "memory");
}

/* trap.c */
void trap_init(void);
void kernel_int3_probe(void);
void finish(uint32_t code) __attribute__((noreturn));
void fatal(uint32_t code, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));

/* mm.c */
void mm_init(void);
uint64_t frame_alloc(void);
void frame_free(uint64_t pa);
uint64_t mm_new_address_space(void);
void mm_map(uint64_t cr3, uint64_t va, uint64_t pa, uint64_t flags);
void mm_unmap(uint64_t cr3, uint64_t va);

/* pager.c */
void pager_init(void);
int pager_fault(uint64_t va);
void pager_tick(void);

/* sched.c */
void sched_init(void);
void sched_start(void) __attribute__((noreturn));
void syscall_dispatch(struct trap_frame *f);

/* selfcheck.c */
void selfcheck_init(void);
uint64_t selfcheck_run(void);
void self_patch_step(void);
void patch_tick(void);
int patch_target(void);
void patch_neighbor(void);

#endif
