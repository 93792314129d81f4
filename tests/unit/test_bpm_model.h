// SPDX-License-Identifier: MIT
/* Model-based testing of the breakpoint manager: an operation decoder that
 * turns bytes into bpm operations (insert, remove, hinted variants, page-in,
 * page-out, remove_by_event, remove_by_view, clear, page-table changes for
 * the translating insert, injected faults, queries), applies each to the
 * real manager and to a deliberately simple reference model, and compares
 * them after every step (return values, full state, stats, vmt_bpm_check,
 * and what the controller or the guest holds). Shared by the seeded random
 * test (test_bpm_model.c) and the libFuzzer target (tests/fuzz). */
#ifndef TEST_BPM_MODEL_H
#define TEST_BPM_MODEL_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    HARNESS_RECORDING,  /* recording controller, controller faults */
    HARNESS_BREAKPOINT, /* breakpoint controller on the mock, driver faults */
} harness_mode;

typedef struct harness harness;

harness *harness_new(harness_mode mode);
void harness_free(harness *h);
/* Decodes one operation from data[0..len) (missing bytes read as 0), runs
 * it on both sides and compares. Returns NULL if all agrees, otherwise a
 * description of the disagreement (owned by the harness, valid until the
 * next call). *used = bytes consumed (at least 1). */
const char *harness_step(harness *h, const uint8_t *data, size_t len, size_t *used);
/* Operations run so far, and how many of them had a fault fire. */
uint64_t harness_ops(const harness *h);
uint64_t harness_faults(const harness *h);
/* Ends the run: clear on both sides, final checks. NULL if all agrees. */
const char *harness_finish(harness *h);
/* Fault injection at every call index: for each operation k of data (4
 * bytes each), and each n = 1, 2, ... until the operation no longer
 * reaches its nth driver (or controller) call, replays operations 0..k-1
 * on a fresh harness without faults, runs operation k with its nth call
 * failing, and checks the state after the failed call against the model
 * before and after it (an insert changes nothing; a multi-step operation
 * stops part way, every item of the state in the state before or after),
 * then the retry against the model. Adds the faults that fired to
 * *faults. NULL if all agrees. */
const char *harness_sweep(harness_mode mode, const uint8_t *data, size_t len, uint64_t *faults);

#endif
