// SPDX-License-Identifier: MIT
/* Internal interface of the page-table monitor, for tests and the tracer. */
#ifndef VMITAP_PTM_INTERNAL_H
#define VMITAP_PTM_INTERNAL_H

#include "vmitap/ptm.h"

/* VMT_OK iff every internal index agrees with the others: each monitored
 * address's recorded walk is referenced by exactly the entries it names,
 * each entry's per-level counts match its users, each table page counts
 * exactly the monitored entries it holds, dirty sets only name monitored
 * entries, and the three counters match. VMT_E_INVALID otherwise (the
 * first disagreement is logged at error level). Touches no guest state. */
vmt_status vmt_ptm_check(const vmt_ptm *ptm);

/* Table pages whose access could not be restored when their last entry
 * went (the driver failed). They stay write-protected and are retried by
 * every unmonitor and processing call. Not counted by
 * vmt_ptm_monitored_tables(). */
size_t vmt_ptm_pending_restores(const vmt_ptm *ptm);

/* Whether (view, ctx) is monitored, and if so its tag, whether it is
 * currently paged in and (if so) its translation. Any out-pointer may be
 * NULL. */
bool vmt_ptm_lookup(const vmt_ptm *ptm, vmt_addr_ctx ctx, vmt_view view, uintptr_t *tag,
                    bool *paged_in, vmt_pa *pa);

#endif /* VMITAP_PTM_INTERNAL_H */
