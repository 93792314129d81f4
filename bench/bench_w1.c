// SPDX-License-Identifier: MIT
/* W1 of docs/benchmarks.md: the breakpoint manager alone, with a no-op
 * controller over the mock driver.
 *
 *   bench_w1 [N ...]        default: 1024 131072 1048576
 *
 * Phases, each repeated REPS times on a fresh manager (the median is
 * printed): insert N breakpoints with vmt_bpm_insert_with_hint (8 per 4 KiB
 * page), 1,000,000 vmt_bpm_contains_by_event (90% at breakpoints, 10% at
 * other addresses of their pages), a PAGE_OUT per page and a PAGE_IN per
 * breakpoint, and vmt_bpm_remove_with_hint of all N. Bytes per breakpoint
 * is the growth of the resident set over the inserts. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmitap/bpm.h"
#include "vmitap/mock.h"

#include "noop_controller.h"

#define REPS 5
#define LOOKUPS 1000000
#define VA0 0xffff800000000000ull
#define PA0 0x100000000ull
#define ROOT 0x1000ull
#define STRIDE 0x200ull

/* The machines are shared (2 cores, several busy agents): phases are timed
 * in CPU time of this thread, which time spent descheduled does not
 * inflate; wall-clock time is reported alongside. */
static double clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

typedef struct stamp {
    double cpu, wall;
} stamp;

static stamp now(void)
{
    return (stamp){clock_ns(CLOCK_THREAD_CPUTIME_ID), clock_ns(CLOCK_MONOTONIC)};
}

static long rss_bytes(void)
{
    long pages_total, pages_res;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages_total, &pages_res) != 2) {
        if (f)
            fclose(f);
        return 0;
    }
    fclose(f);
    return pages_res * sysconf(_SC_PAGESIZE);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const char *what, vmt_status st)
{
    fprintf(stderr, "bench_w1: %s: %s\n", what, vmt_status_str(st));
    exit(1);
}

static vmt_breakpoint bp_at(size_t i)
{
    vmt_breakpoint bp = {.ctx = vmt_ctx(VA0 + i * STRIDE, ROOT)};
    return bp;
}

/* xorshift64*: reproducible addresses for the lookups. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545f4914f6cdd1dull;
}

enum { PH_INSERT, PH_CONTAINS, PH_PAGE_OUT, PH_PAGE_IN, PH_REMOVE, NPHASES };

typedef struct result {
    double cpu[NPHASES], wall[NPHASES]; /* ns per operation */
    double bytes;
} result;

static void record(result *r, int phase, stamp t0, size_t ops)
{
    stamp t1 = now();
    r->cpu[phase] = (t1.cpu - t0.cpu) / (double)ops;
    r->wall[phase] = (t1.wall - t0.wall) / (double)ops;
}

static void run_once(vmt_core *vmi, size_t n, result *r, const vmt_va *lookup_va)
{
    vmt_bpm *bpm;
    vmt_status st = vmt_bpm_new((vmt_tap_controller){&noop_ops, NULL}, &bpm);
    if (st)
        die("bpm_new", st);
    long rss0 = rss_bytes();
    stamp t0 = now();
    for (size_t i = 0; i < n; i++) {
        vmt_breakpoint bp = bp_at(i);
        vmt_pa pa = PA0 + i * STRIDE;
        bool ins;
        if ((st = vmt_bpm_insert_with_hint(bpm, vmi, &bp, &pa, &ins)) || !ins)
            die("insert", st);
    }
    record(r, PH_INSERT, t0, n);
    r->bytes = (double)(rss_bytes() - rss0) / n;

    /* One event structure, refilled per lookup as a driver would. */
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.has_view = true;
    ev.reason = VMT_EVENT_SOFTWARE_BREAKPOINT;
    ev.regs.cr3 = ROOT;
    size_t hits = 0;
    t0 = now();
    for (size_t i = 0; i < LOOKUPS; i++) {
        ev.regs.rip = lookup_va[i];
        ev.u.software_breakpoint.gfn = vmt_gfn_from_pa(PA0 + (lookup_va[i] - VA0));
        hits += vmt_bpm_contains_by_event(bpm, &ev, 0);
    }
    record(r, PH_CONTAINS, t0, LOOKUPS);
    if (hits < LOOKUPS * 8 / 10)
        die("contains: too few hits", VMT_E_CONFLICT);

    size_t pages = n / 8;
    t0 = now();
    for (size_t p = 0; p < pages; p++) {
        vmt_ptm_event ev = {.kind = VMT_PTM_PAGE_OUT,
                            .view = 0,
                            .ctx = vmt_ctx(VA0 + p * 4096, ROOT),
                            .pa = PA0 + p * 4096};
        bool upd;
        if ((st = vmt_bpm_handle_ptm_event(bpm, vmi, &ev, &upd)) || !upd)
            die("page_out", st);
    }
    record(r, PH_PAGE_OUT, t0, pages);
    t0 = now();
    for (size_t i = 0; i < n; i++) {
        vmt_ptm_event ev = {.kind = VMT_PTM_PAGE_IN,
                            .view = 0,
                            .ctx = vmt_ctx(VA0 + i * STRIDE, ROOT),
                            .pa = PA0 + i * STRIDE};
        bool upd;
        if ((st = vmt_bpm_handle_ptm_event(bpm, vmi, &ev, &upd)) || !upd)
            die("page_in", st);
    }
    record(r, PH_PAGE_IN, t0, n);
    VMT_OPTS(vmt_bpm_stats, stats);
    vmt_bpm_stats_get(bpm, &stats);
    if (stats.active != n || stats.pending != 0)
        die("after page-in: not all active", VMT_E_CONFLICT);

    t0 = now();
    for (size_t i = 0; i < n; i++) {
        vmt_breakpoint bp = bp_at(i);
        vmt_pa pa = PA0 + i * STRIDE;
        bool rem;
        if ((st = vmt_bpm_remove_with_hint(bpm, vmi, &bp, &pa, &rem)) || !rem)
            die("remove", st);
    }
    record(r, PH_REMOVE, t0, n);
    vmt_bpm_free(bpm);
}

static void bench(vmt_core *vmi, size_t n)
{
    vmt_va *lookup_va = calloc(LOOKUPS, sizeof *lookup_va);
    uint64_t seed = 0x5eed0000u + n;
    for (size_t i = 0; i < LOOKUPS; i++) {
        size_t b = rng_next(&seed) % n;
        vmt_va va = VA0 + b * STRIDE;
        if (rng_next(&seed) % 10 == 0)
            va += 1 + rng_next(&seed) % (STRIDE - 1); /* same page, no breakpoint */
        lookup_va[i] = va;
    }
    double cpu[NPHASES][REPS], wall[NPHASES][REPS], bytes = 0;
    for (int rep = 0; rep < REPS; rep++) {
        result r;
        run_once(vmi, n, &r, lookup_va);
        for (int p = 0; p < NPHASES; p++)
            cpu[p][rep] = r.cpu[p], wall[p][rep] = r.wall[p];
        if (rep == 0) /* later repetitions reuse the memory the first one freed */
            bytes = r.bytes;
    }
    free(lookup_va);
    static const char *phase[NPHASES] = {"insert", "contains", "page_out", "page_in", "remove"};
    double med[NPHASES];
    for (int p = 0; p < NPHASES; p++) {
        long ops = p == PH_CONTAINS ? LOOKUPS : p == PH_PAGE_OUT ? (long)n / 8 : (long)n;
        med[p] = median(cpu[p], REPS);
        printf("w1 n=%zu phase=%s ns_per_op=%.1f wall_ns_per_op=%.1f ops=%ld reps=%d\n", n,
               phase[p], med[p], median(wall[p], REPS), ops, REPS);
    }
    /* The goal's unit: one page-out of an 8-breakpoint page and its 8 page-ins. */
    printf("w1 n=%zu phase=page_cycle ns_per_page=%.1f\n", n,
           med[PH_PAGE_OUT] + 8 * med[PH_PAGE_IN]);
    printf("w1 n=%zu bytes_per_bp=%.1f\n", n, bytes);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    vmt_core *vmi;
    vmt_status st = vmt_mock_core_new(NULL, &vmi, NULL);
    if (st)
        die("mock", st);
    if (argc > 1) {
        for (int i = 1; i < argc; i++)
            bench(vmi, strtoull(argv[i], NULL, 0));
    } else {
        bench(vmi, 1024);
        bench(vmi, 131072);
        bench(vmi, 1048576);
    }
    vmt_core_free(vmi);
    return 0;
}
