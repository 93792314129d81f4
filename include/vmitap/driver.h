// SPDX-License-Identifier: MIT
/* vmitap — the driver interface a hypervisor backend implements.
 * docs/api.md.
 *
 * Thread-safety: the core calls a driver from the thread that calls the
 * core, one call at a time; a driver need not lock against itself. Any function may be NULL; the core then answers
 * VMT_E_UNSUPPORTED. read/write address raw guest-physical frames (shadow
 * frames included) and never go through a view; views only change what the
 * guest sees. */
#ifndef VMITAP_DRIVER_H
#define VMITAP_DRIVER_H

#include "vmitap/api.h"

#include "vmitap/event.h"
#include "vmitap/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef vmt_status (*vmt_event_fn)(void *user, const vmt_event *ev, vmt_response *resp);

enum {
    VMT_CAP_VIEWS = 1u << 0,
    VMT_CAP_EXECUTE_ONLY = 1u << 1,
    VMT_CAP_FAST_SINGLESTEP = 1u << 2,
    VMT_CAP_EMULATE = 1u << 3
};
enum { VMT_SET_ACCESS_IGNORE_PAGE_WALK_UPDATES = 1u << 0 };

typedef struct vmt_driver_info {
    vmt_gfn max_gfn;
    uint16_t vcpus;
    uint32_t caps;
} vmt_driver_info;

typedef struct vmt_driver_ops {
    const char *name;
    vmt_status (*info)(void *d, vmt_driver_info *out);
    vmt_status (*read)(void *d, vmt_pa pa, void *buf, size_t len);
    vmt_status (*write)(void *d, vmt_pa pa, const void *buf, size_t len);
    vmt_status (*get_access)(void *d, vmt_gfn gfn, vmt_view view, vmt_access *out);
    vmt_status (*set_access)(void *d, vmt_gfn gfn, vmt_view view, vmt_access access, unsigned flags);
    vmt_status (*create_view)(void *d, vmt_access default_access, vmt_view *out);
    vmt_status (*destroy_view)(void *d, vmt_view view);
    vmt_status (*switch_view)(void *d, vmt_view view);
    vmt_status (*change_view_gfn)(void *d, vmt_view view, vmt_gfn old_gfn, vmt_gfn new_gfn);
    vmt_status (*reset_view_gfn)(void *d, vmt_view view, vmt_gfn gfn);
    vmt_status (*allocate_gfn)(void *d, vmt_gfn *out);
    vmt_status (*free_gfn)(void *d, vmt_gfn gfn);
    vmt_status (*pause)(void *d);
    vmt_status (*resume)(void *d);
    vmt_status (*get_regs)(void *d, vmt_vcpu vcpu, vmt_regs *out);
    vmt_status (*set_regs)(void *d, vmt_vcpu vcpu, const vmt_regs *regs);
    vmt_status (*monitor)(void *d, vmt_event_reason what, bool enable);
    vmt_status (*wait_for_event)(void *d, int timeout_ms, vmt_event_fn fn, void *user);
    void (*destroy)(void *d);
} vmt_driver_ops;

#ifdef __cplusplus
}
#endif
#endif /* VMITAP_DRIVER_H */
