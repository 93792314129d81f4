// SPDX-License-Identifier: MIT
/* Internal accessors of the tracer, for tests and fuzz targets: the
 * manager and the monitor behind a session, to run their consistency
 * checks (vmt_bpm_check, vmt_ptm_check) on them. */
#ifndef VMITAP_TRACER_INTERNAL_H
#define VMITAP_TRACER_INTERNAL_H

#include "vmitap/tracer.h"

const vmt_bpm *vmt_tracer_bpm(const vmt_tracer *t);
const vmt_ptm *vmt_tracer_ptm(const vmt_tracer *t);

#endif /* VMITAP_TRACER_INTERNAL_H */
