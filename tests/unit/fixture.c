// SPDX-License-Identifier: MIT
#include "fixture.h"

#include <string.h>

int fixture_setup(void **state, const vmt_mock_opts *opts, bool with_root)
{
    static fixture f;
    memset(&f, 0, sizeof f);
    if (vmt_mock_core_new(opts, &f.core, &f.mock) != VMT_OK)
        return -1;
    if (with_root && vmt_mock_new_root(f.mock, &f.root) != VMT_OK)
        return -1;
    *state = &f;
    return 0;
}

int fixture_teardown(void **state)
{
    fixture *f = *state;
    vmt_core_free(f->core);
    return 0;
}
