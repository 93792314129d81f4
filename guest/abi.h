// SPDX-License-Identifier: MIT
/* The guest/host contract now lives in the public, installed header
 * include/vmitap/guest.h (vmt_kvm_guest_stats returns its stats struct);
 * the guest's freestanding code and the host's internals keep including
 * this name. */
#ifndef VMITAP_GUEST_ABI_FWD_H
#define VMITAP_GUEST_ABI_FWD_H
#include "../include/vmitap/guest.h"
#endif
