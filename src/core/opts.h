// SPDX-License-Identifier: MIT
/* The options-struct rule of vmitap/api.h, in one place: every function
 * that takes an options struct or fills a sized output struct goes
 * through these two helpers. Internal (hidden, never exported). */
#ifndef VMITAP_SRC_CORE_OPTS_H
#define VMITAP_SRC_CORE_OPTS_H

#include <stddef.h>

#include "vmitap/types.h"

/* Copies the caller's options (first member size_t sz) into dst, the
 * library's struct of `known` bytes. opts NULL: dst all zero (defaults).
 * sz == 0, sz too small to hold sz itself, or a non-zero byte beyond
 * `known`: VMT_E_INVALID and dst untouched. A smaller sz leaves the
 * missing fields zero. */
vmt_status vmt_opts_load(void *dst, size_t known, const void *opts);

/* Stores the library's filled struct src (`known` bytes, first member
 * size_t sz) into the caller's dst, whose sz the caller set: copies what
 * fits, zeroes dst up to its sz, keeps dst->sz. VMT_E_INVALID (dst
 * untouched) when dst is NULL or its sz is 0 or too small for sz itself. */
vmt_status vmt_out_store(void *dst, const void *src, size_t known);

/* Convenience: VMT_OPTS_LOAD(&local, opts) with local's type. */
#define VMT_OPTS_LOAD(dst, opts) vmt_opts_load((dst), sizeof *(dst), (opts))
#define VMT_OUT_STORE(dst, src) vmt_out_store((dst), (src), sizeof *(src))

#endif /* VMITAP_SRC_CORE_OPTS_H */
