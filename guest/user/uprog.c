// SPDX-License-Identifier: MIT
/* The private program: every process runs its own copy, at the same
 * virtual addresses (VMT_GUEST_USER_CODE_VA), one function per page so
 * that the pager moves them independently.
 *
 * Per round, process P calls prog_work_a once, prog_work_b P+1 times,
 * prog_work_c when round % 3 == P, lib_int3 when round % 8 == 7, then
 * yields. */
#include "user.h"

UPAGE(0) void prog_main(uint64_t pid)
{
    UCOUNT(prog_main);
    uint64_t x = pid + 1;

    if (lib_getpid() != pid)
        lib_fail(1);
    for (uint64_t round = 0;; round++) {
        x = prog_work_a(x);
        for (uint64_t i = 0; i <= pid; i++)
            x = prog_work_b(x, i);
        if (round % 3 == pid)
            x = prog_work_c(x);
        if (round % 8 == 7)
            lib_int3();
        lib_yield();
    }
}

UPAGE(1) uint64_t prog_work_a(uint64_t x)
{
    UCOUNT(prog_work_a);
    return lib_mix(x, 1);
}

UPAGE(2) uint64_t prog_work_b(uint64_t x, uint64_t i)
{
    UCOUNT(prog_work_b);
    return lib_mix(x, i + 2);
}

/* A little work that stays on this page. */
UPAGE(3) uint64_t prog_work_c(uint64_t x)
{
    UCOUNT(prog_work_c);
    for (int i = 0; i < 16; i++)
        x = (x << 7 | x >> 57) ^ (uint64_t)i;
    return x;
}
