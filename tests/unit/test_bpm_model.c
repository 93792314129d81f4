// SPDX-License-Identifier: MIT
/* Model-based random test of the breakpoint manager: seeded, reproducible
 * random operation sequences (see test_bpm_model.h), every step compared
 * with the reference model, vmt_bpm_check and the controller's or guest's
 * state. Two runs: a recording controller with controller faults, and the
 * breakpoint controller on the mock driver with driver faults. Then, for
 * both, a fault at every call index of every operation of short random
 * sequences (harness_sweep).
 *
 * Environment: VMT_BPM_SEED=<n> replays a seed; VMT_BPM_OPS=<n> sets the
 * operations of the first run (default 1,000,000; the second run does a
 * tenth); VMT_UNDER_VALGRIND shortens both. The seed is printed first. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "seeded.h"
#include "test_bpm_model.h"

static int run(harness_mode mode, uint64_t seed, uint64_t nops)
{
    const char *name =
        mode == HARNESS_RECORDING ? "recording controller" : "breakpoint controller on mock";
    harness *h = harness_new(mode);
    uint64_t s = seed;
    const char *err = NULL;
    uint64_t i;
    for (i = 0; i < nops && !err; i++) {
        uint64_t r = splitmix64(&s);
        uint8_t bytes[8];
        for (int b = 0; b < 8; b++)
            bytes[b] = (uint8_t)(r >> (8 * b));
        size_t used;
        err = harness_step(h, bytes, sizeof bytes, &used);
    }
    if (!err)
        err = harness_finish(h);
    if (err) {
        fprintf(stderr, "FAIL (%s): seed %" PRIu64 ", operation %" PRIu64 ": %s\n", name, seed, i,
                err);
        harness_free(h);
        return 1;
    }
    printf("%s: %" PRIu64 " operations, %" PRIu64
           " with an injected fault, all agreed with the model\n",
           name, harness_ops(h), harness_faults(h));
    harness_free(h);
    return 0;
}

/* Fault injection at every call index (harness_sweep) over nseq random
 * sequences of SWEEP_OPS operations. */
#define SWEEP_OPS 24
static int sweep(harness_mode mode, uint64_t seed, unsigned nseq)
{
    const char *name =
        mode == HARNESS_RECORDING ? "recording controller" : "breakpoint controller on mock";
    uint64_t s = seed, faults = 0;
    for (unsigned q = 0; q < nseq; q++) {
        uint8_t bytes[SWEEP_OPS * 4];
        for (size_t b = 0; b < sizeof bytes; b += 8) {
            uint64_t r = splitmix64(&s);
            for (size_t i = 0; i < 8 && b + i < sizeof bytes; i++)
                bytes[b + i] = (uint8_t)(r >> (8 * i));
        }
        const char *err = harness_sweep(mode, bytes, sizeof bytes, &faults);
        if (err) {
            fprintf(stderr, "FAIL (%s, fault sweep): seed %" PRIu64 ", sequence %u: %s\n", name,
                    seed, q, err);
            return 1;
        }
    }
    printf("%s: %u sequences of %d operations, a fault at every call index of each: %" PRIu64
           " faults, all agreed with the model\n",
           name, nseq, SWEEP_OPS, faults);
    return 0;
}

int main(void)
{
    uint64_t seed = seed_from_env("VMT_BPM_SEED");
    const char *e = getenv("VMT_BPM_OPS");
    uint64_t nops = e ? strtoull(e, NULL, 0) : 1000000;
    if (getenv("VMT_UNDER_VALGRIND"))
        nops = nops / 50;
    printf("seed %" PRIu64 " (replay with VMT_BPM_SEED=%" PRIu64 ")\n", seed, seed);
    fflush(stdout);
    int rc = run(HARNESS_RECORDING, seed, nops);
    rc |= run(HARNESS_BREAKPOINT, seed ^ 0x5eed, nops / 10);
    unsigned nseq = getenv("VMT_UNDER_VALGRIND") ? 4 : 400;
    rc |= sweep(HARNESS_RECORDING, seed ^ 0x5e1, nseq);
    rc |= sweep(HARNESS_BREAKPOINT, seed ^ 0x5e2, nseq / 2);
    return rc;
}
