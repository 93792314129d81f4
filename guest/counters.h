// SPDX-License-Identifier: MIT
/* The instrumented functions of the guest, kernel and user side.
 *
 * Each name is both the ELF symbol of a function and the name of its
 * counter in the stats page; the function bumps the counter as the first
 * thing it does, so a breakpoint on the symbol hits exactly once per count.
 * A user function has 1 + VMT_GUEST_NPROCS counters, in this order:
 * `name` (all processes), then `name@0`, `name@1`, ... (one process each). */
#ifndef VMT_GUEST_COUNTERS_H
#define VMT_GUEST_COUNTERS_H

#include "abi.h"

#define VMT_KERNEL_COUNTERS(X)                                                                     \
    X(syscall_dispatch)                                                                            \
    X(schedule)                                                                                    \
    X(pager_page_in)                                                                               \
    X(pager_page_out)                                                                              \
    X(selfcheck_run)                                                                               \
    X(kernel_int3_probe)                                                                           \
    X(patch_target)                                                                                \
    X(patch_neighbor)

#define VMT_USER_COUNTERS(X)                                                                       \
    X(lib_mix)                                                                                     \
    X(lib_getpid)                                                                                  \
    X(lib_yield)                                                                                   \
    X(lib_int3)                                                                                    \
    X(prog_main)                                                                                   \
    X(prog_work_a)                                                                                 \
    X(prog_work_b)                                                                                 \
    X(prog_work_c)

enum vmt_kernel_counter {
#define X(name) KCNT_##name,
    VMT_KERNEL_COUNTERS(X)
#undef X
        KCNT_COUNT
};

enum vmt_user_counter {
#define X(name) UCNT_##name,
    VMT_USER_COUNTERS(X)
#undef X
        UCNT_COUNT
};

/* Index in stats->counters[] of user counter u: the sum, then per process. */
#define UCNT_SLOTS (1u + VMT_GUEST_NPROCS)
#define UCNT_INDEX(u) (KCNT_COUNT + (u)*UCNT_SLOTS)
#define UCNT_INDEX_PROC(u, p) (UCNT_INDEX(u) + 1u + (p))
#define VMT_GUEST_NCOUNTERS (KCNT_COUNT + UCNT_COUNT * UCNT_SLOTS)

_Static_assert(VMT_GUEST_NCOUNTERS <= VMT_GUEST_MAX_COUNTERS, "too many counters");
_Static_assert(VMT_GUEST_NPROCS <= VMT_GUEST_MAX_PROCS, "too many processes");

/* System call numbers (lib_syscall in user/ulib.c: number in rax,
 * argument in rdi, result in rax). */
#define SYS_YIELD 0
#define SYS_GETPID 1
#define SYS_FAIL 2 /* a user check failed: rdi = what; ends the run */

#endif
