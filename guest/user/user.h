// SPDX-License-Identifier: MIT
/* What the user programs share: sections, counters, system calls.
 *
 * User code is linked at user virtual addresses (guest.ld) and runs in
 * ring 3 from copies the kernel makes at page-in; it may use nothing of
 * the kernel, no data and no string constants (it has no data pages). */
#ifndef VMT_GUEST_USER_H
#define VMT_GUEST_USER_H

#include <stdint.h>

#include "../abi.h"
#include "../counters.h"

/* Functions of the shared library page, and of private code page n. */
#define ULIB __attribute__((noipa, section(".ulib.text")))
#define UPAGE(n) __attribute__((noipa, section(".uprog.p" #n)))

#define USTATS ((volatile vmt_guest_stats *)VMT_GUEST_USER_STATS_VA)
#define UPID (*(const volatile uint64_t *)VMT_GUEST_USER_INFO_VA)

/* Every instrumented user function starts with this: the sum and the
 * counter of this process. */
#define UCOUNT(name)                                                                               \
    do {                                                                                           \
        USTATS->counters[UCNT_INDEX(UCNT_##name)].calls++;                                         \
        USTATS->counters[UCNT_INDEX_PROC(UCNT_##name, UPID)].calls++;                              \
    } while (0)

/* ulib.c: the shared library. */
uint64_t lib_syscall(uint64_t nr, uint64_t arg);
uint64_t lib_mix(uint64_t x, uint64_t y);
uint64_t lib_getpid(void);
void lib_yield(void);
void lib_int3(void);
void lib_fail(uint64_t what) __attribute__((noreturn));

/* uprog.c: the private program. */
void prog_main(uint64_t pid) __attribute__((noreturn));
uint64_t prog_work_a(uint64_t x);
uint64_t prog_work_b(uint64_t x, uint64_t i);
uint64_t prog_work_c(uint64_t x);

#endif
