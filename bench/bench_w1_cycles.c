// SPDX-License-Identifier: MIT
/* W1's page cycle in the steady state, for profilers and cache simulators:
 * insert N breakpoints as W1 does (8 per 4 KiB page, no-op controller),
 * then R times page out every page and page every breakpoint back in.
 * Prints nothing but errors; time it from outside, e.g.
 *
 *   bench_w1_cycles N R      (default 131072 20)
 *   valgrind --tool=cachegrind --cache-sim=yes --LL=33554432,16,64 bench_w1_cycles 131072 1
 *
 * and subtract the run with R = 0. */
#include <stdio.h>
#include <stdlib.h>

#include "vmitap/bpm.h"
#include "vmitap/mock.h"

#include "noop_controller.h"

#define VA0 0xffff800000000000ull
#define PA0 0x100000000ull
#define ROOT 0x1000ull
#define STRIDE 0x200ull

/* ok is read after the call (not as an argument next to it: the order in
 * which arguments are evaluated is unspecified). */
static void check(const char *what, vmt_status st, const bool *ok)
{
    if (st != VMT_OK || !*ok) {
        fprintf(stderr, "bench_w1_cycles: %s: %s\n", what, vmt_status_str(st));
        exit(1);
    }
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 0) : 131072;
    long reps = argc > 2 ? strtol(argv[2], NULL, 0) : 20;
    vmt_core *vmi;
    vmt_bpm *bpm;
    bool done = true;
    check("mock", vmt_mock_core_new(NULL, &vmi, NULL), &done);
    check("bpm_new", vmt_bpm_new((vmt_tap_controller){&noop_ops, NULL}, &bpm), &done);
    for (size_t i = 0; i < n; i++) {
        vmt_breakpoint bp = {.ctx = vmt_ctx(VA0 + i * STRIDE, ROOT)};
        vmt_pa pa = PA0 + i * STRIDE;
        check("insert", vmt_bpm_insert_with_hint(bpm, vmi, &bp, &pa, &done), &done);
    }
    for (long r = 0; r < reps; r++) {
        for (size_t p = 0; p < n / 8; p++) {
            vmt_ptm_event ev = {.kind = VMT_PTM_PAGE_OUT,
                                .ctx = vmt_ctx(VA0 + p * 4096, ROOT),
                                .pa = PA0 + p * 4096};
            check("page_out", vmt_bpm_handle_ptm_event(bpm, vmi, &ev, &done), &done);
        }
        for (size_t i = 0; i < n; i++) {
            vmt_ptm_event ev = {.kind = VMT_PTM_PAGE_IN,
                                .ctx = vmt_ctx(VA0 + i * STRIDE, ROOT),
                                .pa = PA0 + i * STRIDE};
            check("page_in", vmt_bpm_handle_ptm_event(bpm, vmi, &ev, &done), &done);
        }
    }
    vmt_bpm_free(bpm);
    vmt_core_free(vmi);
    return 0;
}
