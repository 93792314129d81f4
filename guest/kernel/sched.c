// SPDX-License-Identifier: MIT
/* Processes, the cooperative scheduler and the system calls.
 *
 * Each process has its own CR3 and runs the same private program
 * (prog_main) from its own copy of the code. A process runs until it
 * yields (system call SYS_YIELD); the scheduler then saves its trap frame and
 * resumes the next one, round robin. When the last process yields, a round
 * is complete (main.c: round_complete). There is one kernel stack: traps
 * from user mode start on it empty, so saving the frame is all a switch
 * needs. */
#include "kernel.h"

struct proc procs[VMT_GUEST_NPROCS];
struct proc *current;

void round_complete(void);
extern char prog_main[]; /* user VA of the private program's entry */

#define USER_STACK_PAGES 4

static void proc_create(struct proc *p, unsigned index)
{
    uint64_t info;

    p->index = index;
    p->cr3 = mm_new_address_space();
    for (uint64_t off = 0; off < 2 * PAGE_SIZE; off += PAGE_SIZE)
        mm_map(p->cr3, VMT_GUEST_USER_STATS_VA + off, VMT_GUEST_STATS_PA + off,
               PTE_U | PTE_W | PTE_NX);
    info = frame_alloc();
    *(uint64_t *)P2V(info) = index;
    mm_map(p->cr3, VMT_GUEST_USER_INFO_VA, info, PTE_U | PTE_NX);
    for (uint64_t i = 1; i <= USER_STACK_PAGES; i++)
        mm_map(p->cr3, VMT_GUEST_USER_STACK_TOP - i * PAGE_SIZE, frame_alloc(),
               PTE_U | PTE_W | PTE_NX);
    /* Code pages stay unmapped: the first fetch pages them in. */

    p->frame = (struct trap_frame){
        .rip = (uint64_t)(uintptr_t)prog_main,
        .cs = SEL_UCODE,
        .rflags = 0x2, /* interrupts off: nothing but traps enters the kernel */
        .rsp = VMT_GUEST_USER_STACK_TOP - 8, /* as if called: rsp+8 16-byte aligned */
        .ss = SEL_UDATA,
        .rdi = index,
    };
    STATS->proc_cr3[index] = p->cr3;
}

void sched_init(void)
{
    for (unsigned i = 0; i < VMT_GUEST_NPROCS; i++)
        proc_create(&procs[i], i);
    STATS->nprocs = VMT_GUEST_NPROCS;
}

void sched_start(void)
{
    current = &procs[0];
    write_cr3(current->cr3);
    enter_user(&current->frame);
}

/* Switch from the yielding process to the next one; f is the frame on the
 * kernel stack that the return to user mode will restore. */
INSTRUMENTED void schedule(struct trap_frame *f);
INSTRUMENTED void schedule(struct trap_frame *f)
{
    KCOUNT(schedule);
    struct proc *next = &procs[(current->index + 1) % VMT_GUEST_NPROCS];

    if (next->index == 0)
        round_complete();
    if (next == current)
        return;
    current->frame = *f;
    *f = next->frame;
    current = next;
    write_cr3(current->cr3);
}

INSTRUMENTED void syscall_dispatch(struct trap_frame *f)
{
    KCOUNT(syscall_dispatch);
    switch (f->rax) {
    case SYS_YIELD:
        f->rax = 0;
        schedule(f);
        break;
    case SYS_GETPID:
        f->rax = current->index;
        break;
    case SYS_FAIL:
        fatal(VMT_GUEST_EXIT_USER, "process %u: user check %lu failed", current->index, f->rdi);
    default:
        fatal(VMT_GUEST_EXIT_USER, "process %u: unknown system call %lu", current->index, f->rax);
    }
}
