// SPDX-License-Identifier: MIT
/* Driving a tracer on the mock driver from a unit test: building its
 * events and running it until the mock's event queue is empty. */
#ifndef VMT_TESTS_UNIT_TRACER_FIXTURE_H
#define VMT_TESTS_UNIT_TRACER_FIXTURE_H

#include "vmitap/mock.h"
#include "vmitap/tracer.h"

/* An event of the given reason on vCPU 0 at rip, in user mode (cs 0x33) of
 * the address space root, seen in the tracer's view; everything else is
 * zero, for the caller to fill in what the reason needs. */
vmt_event tracer_event(vmt_tracer *t, vmt_pa root, vmt_event_reason why, vmt_va rip);

/* Handles every event queued on mock. The mock never blocks (an empty
 * queue is an immediate timeout), so each short run handles at least the
 * first event it finds and must end on its timeout; repeats until the
 * queue is empty, and fails the test after max_runs runs. */
void tracer_drain(vmt_tracer *t, vmt_mock *mock, int max_runs);

#endif
