/* SPDX-License-Identifier: MIT */
/* Entry point, interrupt entry stubs and the return to user mode.
 *
 * The VMM enters _start in 64-bit mode on its boot page tables with
 * RDI = guest-physical address of the parameter block (guest/abi.h). */

#define KSTACK_SIZE 16384

    .section .text.boot, "ax"
    .globl _start
_start:
    cli
    cld
    mov %rdi, %r12                  /* params PA, kept across the bss clear */
    /* Zero .bss before anything lives there (the kernel stack does). */
    lea __bss_start(%rip), %rdi
    lea __bss_end(%rip), %rcx
    sub %rdi, %rcx
    xor %eax, %eax
    rep stosb
    lea kernel_stack_top(%rip), %rsp
    mov %r12, %rdi
    call kmain
1:  hlt
    jmp 1b

/* gdt_load(gdtr, tss_sel): load the GDT, reload every segment, load TR. */
    .text
    .globl gdt_load
gdt_load:
    lgdt (%rdi)
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    ltr %si
    popq %rax                       /* return address: far-return through the new CS */
    pushq $0x08
    pushq %rax
    lretq

/* Entry stubs: push a dummy error code where the CPU pushes none, then the
 * vector, and join trap_common. */
.macro STUB vec
    .globl isr\vec
isr\vec:
    .if (\vec == 8) || (\vec >= 10 && \vec <= 14) || (\vec == 17) || (\vec == 21) || (\vec == 29) || (\vec == 30)
    .else
    pushq $0
    .endif
    pushq $\vec
    jmp trap_common
.endm

    .text
    STUB 0
    STUB 1
    STUB 2
    STUB 4
    STUB 5
    STUB 6
    STUB 7
    STUB 8
    STUB 9
    STUB 10
    STUB 11
    STUB 12
    STUB 13
    STUB 15
    STUB 16
    STUB 17
    STUB 18
    STUB 19
    STUB 20
    STUB 21
    STUB 22
    STUB 23
    STUB 24
    STUB 25
    STUB 26
    STUB 27
    STUB 28
    STUB 29
    STUB 30
    STUB 31


/* The #BP stub alone in its own page (guest.ld keeps the page to itself):
 * a VMM may make this frame a hole to see every #BP delivery (docs/design.md). */
    .section .text.bpentry, "ax"
    .globl vmt_bp_entry
vmt_bp_entry:
    pushq $0
    pushq $3
    jmp trap_common

/* Saves the registers, calls trap_dispatch(frame), restores them and
 * returns from the exception (the vector and error code are on the stack). */
.macro TRAP_BODY
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    mov %rsp, %rdi
    cld
    call trap_dispatch
.endm

.macro TRAP_RETURN
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    add $16, %rsp                   /* vector, error code */
    iretq
.endm

    .text
trap_common:
    TRAP_BODY
    .globl trap_return
trap_return:
    TRAP_RETURN

/* The #PF entry alone in its own page, with its own copy of the save,
 * call and return (guest.ld keeps the page to itself): a VMM may make this
 * frame a hole and see both the entry and the return from trap_dispatch,
 * after a page-in and before the faulting instruction runs again. */
    .section .text.pfentry, "ax"
    .globl isr14
isr14:
    pushq $14
    TRAP_BODY
    TRAP_RETURN

/* enter_user(frame): run a saved frame (first entry into a process). */
    .globl enter_user
enter_user:
    mov %rdi, %rsp
    jmp trap_return

    .section .rodata
    .globl isr_table
    .p2align 3
isr_table:
    .quad isr0, isr1, isr2, vmt_bp_entry, isr4, isr5, isr6, isr7
    .quad isr8, isr9, isr10, isr11, isr12, isr13, isr14, isr15
    .quad isr16, isr17, isr18, isr19, isr20, isr21, isr22, isr23
    .quad isr24, isr25, isr26, isr27, isr28, isr29, isr30, isr31

    .bss
    .p2align 12
    .globl kernel_stack_top
kernel_stack:
    .skip KSTACK_SIZE
kernel_stack_top:

    .section .note.GNU-stack, "", @progbits
