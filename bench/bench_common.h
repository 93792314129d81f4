// SPDX-License-Identifier: MIT
/* Helpers shared by the benchmark programs: a monotonic clock and the
 * median of a handful of repetitions (docs/benchmarks.md: every figure is the
 * median of at least 5). Header-only: each bench is one .c file. */
#ifndef VMITAP_BENCH_COMMON_H
#define VMITAP_BENCH_COMMON_H

#include <stdlib.h>
#include <time.h>

/* Wall-clock nanoseconds (CLOCK_MONOTONIC). */
static inline double bench_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v[0..n) in place and returns its median (upper middle for even n). */
static inline double bench_median(double *v, size_t n)
{
    qsort(v, n, sizeof v[0], bench_cmp_double);
    return v[n / 2];
}

#endif /* VMITAP_BENCH_COMMON_H */
