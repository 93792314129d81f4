// SPDX-License-Identifier: MIT
/* The fixture most unit tests start from: a core on the mock driver. */
#ifndef VMT_TESTS_UNIT_FIXTURE_H
#define VMT_TESTS_UNIT_FIXTURE_H

#include <stdbool.h>

#include "vmitap/mock.h"

typedef struct fixture {
    vmt_core *core;
    vmt_mock *mock;
    vmt_pa root; /* an empty address space, if asked for; 0 otherwise */
} fixture;

/* cmocka setup body: a fresh core on a mock built with opts (NULL for the
 * mock's defaults), plus an empty page-table root when with_root is set.
 * Stores the fixture in *state; returns 0, or -1 when the mock refuses.
 * The fixture is one static object: each test program runs one test at a
 * time, and the teardown frees what the setup built. */
int fixture_setup(void **state, const vmt_mock_opts *opts, bool with_root);

/* cmocka teardown: frees the core, which frees the mock it owns. */
int fixture_teardown(void **state);

#endif
