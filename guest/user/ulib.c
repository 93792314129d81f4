// SPDX-License-Identifier: MIT
/* The shared library: one page at VMT_GUEST_USER_LIB_VA, the same frame in
 * every process. */
#include "user.h"

/* The system call: a cli at this one known address. In ring 3 it raises
 * #GP, which the kernel takes as a system call (number in rax, argument in
 * rdi, result in rax) and resumes after it. Not int 0x80, syscall or a
 * call gate: on the KVM of the (nested, AMD EPYC) machines this guest was
 * built on, int 0x80 and a far call through a call gate came back as #UD,
 * and syscall jumped to LSTAR still at CPL 3, while faults such as #GP are
 * delivered correctly. Not instrumented. */
ULIB uint64_t lib_syscall(uint64_t nr, uint64_t arg)
{
    uint64_t ret;

    __asm__ volatile(".globl lib_syscall_site\nlib_syscall_site:\n\tcli"
                     : "=a"(ret)
                     : "a"(nr), "D"(arg)
                     : "memory");
    return ret;
}

ULIB uint64_t lib_mix(uint64_t x, uint64_t y)
{
    UCOUNT(lib_mix);
    x ^= y + 0x9e3779b97f4a7c15ull + (x << 6) + (x >> 2);
    x *= 0xff51afd7ed558ccdull;
    return x ^ (x >> 33);
}

ULIB uint64_t lib_getpid(void)
{
    UCOUNT(lib_getpid);
    return lib_syscall(SYS_GETPID, 0);
}

ULIB void lib_yield(void)
{
    UCOUNT(lib_yield);
    lib_syscall(SYS_YIELD, 0);
}

/* An int3 of the guest's own, at CPL 3: the kernel's #BP handler counts it
 * and returns after it. */
ULIB void lib_int3(void)
{
    UCOUNT(lib_int3);
    __asm__ volatile(".globl lib_int3_site\nlib_int3_site:\n\tint3" : : : "memory");
}

/* Not instrumented: ends the run with VMT_GUEST_EXIT_USER. */
ULIB void lib_fail(uint64_t what)
{
    for (;;)
        lib_syscall(SYS_FAIL, what);
}
