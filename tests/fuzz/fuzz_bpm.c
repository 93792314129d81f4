// SPDX-License-Identifier: MIT
/* libFuzzer target over the model-based test's operation decoder
 * (tests/unit/test_bpm_model.h): each input is a sequence of operations,
 * run on the breakpoint manager and on the reference model, which must
 * agree after every step. The first input byte picks the controller. */
#include <stdio.h>
#include <stdlib.h>

#include "test_bpm_model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    harness *h = harness_new(data[0] & 1 ? HARNESS_BREAKPOINT : HARNESS_RECORDING);
    data++, size--;
    const char *err = NULL;
    while (size && !err) {
        size_t used;
        err = harness_step(h, data, size, &used);
        data += used, size -= used;
    }
    if (!err)
        err = harness_finish(h);
    if (err) {
        fprintf(stderr, "fuzz_bpm: bpm and model disagree: %s\n", err);
        abort();
    }
    harness_free(h);
    return 0;
}
