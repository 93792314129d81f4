// SPDX-License-Identifier: MIT
/* vmitap — basic types: addresses, frames, views, access rights, status codes.
 * docs/api.md.
 *
 * Thread-safety: the functions here are pure; safe from any thread. */
#ifndef VMITAP_TYPES_H
#define VMITAP_TYPES_H

#include "vmitap/api.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint64_t vmt_va;   /* guest virtual address */
typedef uint64_t vmt_pa;   /* guest physical address */
typedef uint64_t vmt_gfn;  /* guest frame number = pa >> 12 */
typedef uint16_t vmt_view; /* EPT/altp2m view; 0 is the default view */
typedef uint16_t vmt_vcpu;

/* A virtual address together with the page-table root (CR3 with its PCID
 * and flag bits masked off) it is translated through. */
typedef struct vmt_addr_ctx {
    vmt_va va;
    vmt_pa root;
} vmt_addr_ctx;

#define VMT_PAGE_SHIFT 12
#define VMT_PAGE_SIZE 4096u

VMT_API vmt_gfn vmt_gfn_from_pa(vmt_pa pa);
VMT_API vmt_pa vmt_pa_from_gfn(vmt_gfn gfn);
VMT_API vmt_pa vmt_pa_in_gfn(vmt_gfn gfn, vmt_va va); /* frame base + 4 KiB offset of va */
VMT_API vmt_addr_ctx vmt_ctx(vmt_va va, vmt_pa root);
VMT_API bool vmt_ctx_eq(vmt_addr_ctx a, vmt_addr_ctx b);

typedef enum vmt_access {
    VMT_ACCESS_NONE = 0,
    VMT_ACCESS_R = 1,
    VMT_ACCESS_W = 2,
    VMT_ACCESS_X = 4,
    VMT_ACCESS_RW = 3,
    VMT_ACCESS_RX = 5,
    VMT_ACCESS_WX = 6,
    VMT_ACCESS_RWX = 7,
} vmt_access;

typedef enum vmt_status {
    VMT_OK = 0,
    VMT_E_TRANSLATION,    /* the address has no present translation */
    VMT_E_VIEW_NOT_FOUND, /* the view does not exist (any more) */
    VMT_E_OUT_OF_BOUNDS,  /* outside guest memory, or a trap would cross a page */
    VMT_E_CONFLICT,       /* request contradicts existing state (see bpm) */
    VMT_E_INVALID,        /* bad argument: NULL, non-canonical VA, ... */
    VMT_E_NOMEM,
    VMT_E_UNSUPPORTED, /* the driver lacks this capability */
    VMT_E_DRIVER,      /* the hypervisor/driver failed */
    VMT_E_TIMEOUT,     /* wait_for_event saw no event in time */
    /* Additions (the API allows new enum values, docs/api.md): */
    VMT_E_GUEST_EXITED,  /* the guest has powered off / finished: no more events */
    VMT_E_GUEST_CRASHED, /* the guest died (triple fault, bad state); see the log */
} vmt_status;

/* A short, constant, human-readable description; never NULL (unknown codes
 * give "unknown status"). */
VMT_API const char *vmt_status_str(vmt_status s);

/* True if va is canonical for 48-bit virtual addresses (bits 63..47 equal). */
VMT_API bool vmt_va_is_canonical(vmt_va va);

#ifdef __cplusplus
}
#endif
#endif /* VMITAP_TYPES_H */
