// SPDX-License-Identifier: MIT
/* vmitap — umbrella header: everything public. */
#ifndef VMITAP_VMITAP_H
#define VMITAP_VMITAP_H

#include "vmitap/version.h"
#include "vmitap/types.h"
#include "vmitap/log.h"
#include "vmitap/event.h"
#include "vmitap/driver.h"
#include "vmitap/core.h"
#include "vmitap/ptm.h"
#include "vmitap/bpm.h"
#include "vmitap/mock.h"
#include "vmitap/kvm.h"
#include "vmitap/tracer.h"
#include "vmitap/guest.h"
#include "vmitap/coherence.h"

#endif /* VMITAP_VMITAP_H */
