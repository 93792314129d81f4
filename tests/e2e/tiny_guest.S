/* SPDX-License-Identifier: MIT */
/* A tiny freestanding x86-64 guest for the KVM driver's own end-to-end
 * tests, independent of the bundled guest. Booted per guest/abi.h; the
 * params block's `seed` selects the mode:
 *   0 hello: prints "hello\n" on port 0xE9 and exits with code 0
 *   1 loop (CPL 0): forever: counter++; if cmd == 1 { cmd = 0; int3 };
 *     call func (own page F); A++ (page A); B++ (page B); dsum += D (page D);
 *     fread = the first 8 bytes of func (a read of page F);
 *     if selfon: call fself (page F), fself = the first 8 bytes of func
 *     read by an instruction in page F itself;
 *     exits with code `stop` when stop != 0
 *   2 user: drops to CPL 3 and executes `iterations` int3 (ucount++ after
 *     each), then exits with code 0 from CPL 3 (IOPL 3)
 *   3 crash: empty IDT, then ud2: triple fault
 *   4 kernel int3: `iterations` int3 at CPL 0 (bpcount counts the ones
 *     reaching the handler), then exits with code 0
 * Everything is identity-mapped at its physical address; one page per
 * role so that tests can change access rights page by page. */
    .code64
    .text
    .globl _start

    .set DATA,  0x204000
    .set CMD,     DATA + 0x00
    .set COUNTER, DATA + 0x08
    .set FVAL,    DATA + 0x10
    .set BPCOUNT, DATA + 0x18
    .set DSUM,    DATA + 0x20
    .set STOP,    DATA + 0x28
    .set UCOUNT,  DATA + 0x30
    .set FREAD,   DATA + 0x38
    .set DBCOUNT, DATA + 0x40
    .set SELFON,  DATA + 0x48
    .set FSELF,   DATA + 0x50
    .set PAGE_A,  0x205000
    .set PAGE_B,  0x206000
    .set PAGE_D,  0x207000
    .set PML4,    0x209000
    .set PDPT,    0x20a000
    .set PD,      0x20b000

/* 0x200000: entry and the CPL-0 loop */
_start:
    movq 32(%rdi), %r15          /* mode = params->seed */
    movq 24(%rdi), %r14          /* iterations */
    lgdt gdtr
    pushq $0x08
    pushq $1f
    lretq
1:  movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    cmpq $3, %r15
    je mode_crash
    movw $0x28, %ax
    ltr %ax
    lidt idtr
    /* page tables: 1 GiB identity, 2 MiB pages, user-accessible */
    movq $PD, %rdi
    xorq %rcx, %rcx
2:  movq %rcx, %rax
    shlq $21, %rax
    orq $0x87, %rax
    movq %rax, (%rdi,%rcx,8)
    incq %rcx
    cmpq $512, %rcx
    jne 2b
    movq $(PD + 7), PDPT
    movq $(PDPT + 7), PML4
    movq $PML4, %rax
    movq %rax, %cr3
    cmpq $0, %r15
    je mode_hello
    cmpq $2, %r15
    je mode_user
    cmpq $4, %r15
    je mode_kint3

    .globl loop, loop_int3, done, after_a
loop:
    incq COUNTER
    cmpq $1, CMD
    jne 3f
    movq $0, CMD
loop_int3:
    int3
3:  call func
    incq PAGE_A
after_a:
    incq PAGE_B
    movq PAGE_D, %rax
    addq %rax, DSUM
    movq func, %rax              /* a data read of page F */
    movq %rax, FREAD
    cmpq $0, SELFON
    je 8f
    call fself
8:  movq STOP, %rax
    testq %rax, %rax
    jz loop
done:                            /* exit code in %al */
    outb %al, $0xf4
    hlt

mode_hello:
    movq $hello, %rsi
4:  movb (%rsi), %al
    testb %al, %al
    jz 5f
    outb %al, $0xe9
    incq %rsi
    jmp 4b
5:  xorl %eax, %eax
    jmp done

mode_user:
    movb $'U', %al               /* an exit after the IDT is set up */
    outb %al, $0xe9
    pushq $0x1b                  /* SS: user data */
    pushq $0x210000              /* RSP */
    pushq $0x3002                /* RFLAGS: IOPL 3 */
    pushq $0x23                  /* CS: user code */
    pushq $user_code
    iretq

    .globl kint3
mode_kint3:
    testq %r14, %r14
    jz 6f
kint3:
    int3
    decq %r14
    jmp mode_kint3
6:  xorl %eax, %eax
    jmp done

mode_crash:
    lidt idtr_empty
    ud2

hello:
    .asciz "hello\n"
    .balign 8
gdtr:
    .word gdt_end - gdt - 1
    .quad gdt
idtr:
    .word idt_end - idt - 1
    .quad idt
idtr_empty:
    .word 0
    .quad 0

/* 0x201000: page F */
    .balign 4096
    .globl func
func:
    movq $0x1111, FVAL
    ret

/* fself (when SELFON != 0): page F reading its own page */
    .balign 64
    .globl fself
fself:
    movq func, %rax
    movq %rax, FSELF
    ret

/* 0x202000: the #BP handler, alone in its page */
    .balign 4096
    .globl bp_handler
bp_handler:
    incq BPCOUNT
    iretq

    .balign 2048                 /* the #DB handler, same page */
    .globl db_handler
db_handler:
    incq DBCOUNT
    iretq

/* 0x203000: user code */
    .balign 4096
    .globl user_code, user_int3
user_code:
    testq %r14, %r14
    jz 7f
user_int3:
    int3
    incq UCOUNT
    decq %r14
    jmp user_code
7:  xorl %eax, %eax
    outb %al, $0xf4
8:  jmp 8b

/* 0x204000: data */
    .balign 4096
    .fill 4096, 1, 0
/* 0x205000: A, 0x206000: B, 0x207000: D */
    .fill 4096, 1, 0
    .fill 4096, 1, 0
    .quad 42
    .balign 4096
/* 0x208000: GDT, TSS, IDT */
gdt:
    .quad 0
    .quad 0x00af9b000000ffff     /* 0x08 kernel code */
    .quad 0x00cf93000000ffff     /* 0x10 kernel data */
    .quad 0x00cff3000000ffff     /* 0x18 user data */
    .quad 0x00affb000000ffff     /* 0x20 user code */
    .quad 0x0000892081000067     /* 0x28 TSS at 0x208100 */
    .quad 0
gdt_end:
    .balign 256
tss:                             /* 0x208100 */
    .long 0
    .quad 0x20e000               /* RSP0 */
    .fill 0x68 - 12, 1, 0
    .balign 256
idt:                             /* 0x208200: vectors 0..3, 1 and 3 present */
    .quad 0, 0
    .quad 0x00208e0000082800     /* vector 1 -> 0x202800, DPL 0, interrupt gate */
    .quad 0
    .quad 0, 0
    .quad 0x0020ee0000082000     /* vector 3 -> 0x202000, DPL 3, interrupt gate */
    .quad 0
idt_end:
    .balign 4096
/* 0x209000..0x20bfff page tables, 0x20c000..0x20dfff kernel stack,
 * 0x20e000..0x20ffff user stack */
    .fill 7 * 4096, 1, 0
