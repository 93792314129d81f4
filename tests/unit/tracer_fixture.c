// SPDX-License-Identifier: MIT
#include "tracer_fixture.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

vmt_event tracer_event(vmt_tracer *t, vmt_pa root, vmt_event_reason why, vmt_va rip)
{
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.vcpu = 0;
    ev.has_view = true;
    ev.view = vmt_tracer_view(t);
    ev.reason = why;
    ev.regs.rip = rip;
    ev.regs.cr3 = root;
    ev.regs.cs = 0x33;
    return ev;
}

void tracer_drain(vmt_tracer *t, vmt_mock *mock, int max_runs)
{
    for (int tries = 0; vmt_mock_pending_events(mock) > 0; tries++) {
        assert_true(tries < max_runs);
        VMT_OPTS(vmt_tracer_run_opts, ro, .timeout_ms = 1);
        vmt_tracer_stop_reason why = VMT_TRACER_STOP_NONE;
        assert_int_equal(vmt_tracer_run(t, &ro, &why), VMT_OK);
        assert_int_equal(why, VMT_TRACER_STOP_TIMEOUT);
    }
}
