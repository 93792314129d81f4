// SPDX-License-Identifier: MIT
/* Host side: the counter values an unobserved run of the test guest must
 * end with, derived from the behaviour guest/README.md describes (a model
 * of the guest program, kept next to it: change both together).
 *
 * For a breakpoint test the guest's own counters are the reference; this
 * is for checking that a run was complete and undisturbed, e.g. that the
 * counters of a run with breakpoints equal those of a run without. */
#ifndef VMITAP_GUEST_EXPECTED_H
#define VMITAP_GUEST_EXPECTED_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "abi.h"

/* Calls of counter `name` ("fn" or "fn@P") after `iterations` rounds with
 * `flags` and pager aggressiveness `pager`; -1 if the name is unknown or
 * the value depends on the pager's random choices (pager_page_in and
 * pager_page_out when pager > 0). */
static inline int64_t vmt_guest_expected_calls(const char *name, uint64_t iterations,
                                               uint32_t flags, uint32_t pager)
{
    const int64_t n = (int64_t)iterations, nprocs = VMT_GUEST_NPROCS;
    const char *at = strchr(name, '@');
    size_t len = at ? (size_t)(at - name) : strlen(name);
    int64_t p = at ? strtol(at + 1, NULL, 10) : -1; /* -1: the sum over processes */
    int64_t sum = 0;

#define IS(s) (len == sizeof(s) - 1 && memcmp(name, s, len) == 0)
    if (p >= nprocs)
        return -1;
    if (!at) { /* kernel counters */
        int64_t interval = n / 4 ? n / 4 : 1;
        if (IS("syscall_dispatch"))
            return nprocs * (n + 1); /* one lib_getpid and n yields per process */
        if (IS("schedule"))
            return nprocs * n;
        if (IS("selfcheck_run"))
            return (n - 1) / interval + 1; /* periodic ones, then the final one */
        if (IS("kernel_int3_probe"))
            return flags & VMT_GUEST_F_KERNEL_INT3 ? n / 10 : 0;
        if (IS("patch_target"))
            return n + (flags & VMT_GUEST_F_SELF_PATCH ? 2 : 0);
        if (IS("patch_neighbor"))
            return n;
        if (IS("pager_page_in")) /* 1 shared page + 4 private pages per process, all touched once n
                                    >= 3 */
            return pager ? -1 : n >= nprocs ? 1 + nprocs * VMT_GUEST_USER_CODE_PAGES : -1;
        if (IS("pager_page_out"))
            return pager ? -1 : 0;
    }
    for (int64_t q = 0; q < nprocs; q++) {
        int64_t v;
        if (p >= 0 && q != p)
            continue;
        if (IS("prog_main") || IS("lib_getpid"))
            v = 1;
        else if (IS("prog_work_a") || IS("lib_yield"))
            v = n;
        else if (IS("prog_work_b"))
            v = n * (q + 1);
        else if (IS("prog_work_c")) /* rounds r < n with r % 3 == q */
            v = n > q ? (n - q + 2) / 3 : 0;
        else if (IS("lib_int3")) /* rounds r < n with r % 8 == 7 */
            v = n / 8;
        else if (IS("lib_mix")) /* from prog_work_a and prog_work_b */
            v = n + n * (q + 1);
        else
            return -1;
        sum += v;
    }
#undef IS
    return sum;
}

/* stats->breakpoints after an unobserved run: every int3 of the guest's own. */
static inline int64_t vmt_guest_expected_breakpoints(uint64_t iterations, uint32_t flags)
{
    return vmt_guest_expected_calls("lib_int3", iterations, flags, 0) +
           vmt_guest_expected_calls("kernel_int3_probe", iterations, flags, 0);
}

#endif /* VMITAP_GUEST_EXPECTED_H */
