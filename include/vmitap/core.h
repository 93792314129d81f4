/* vmitap — the core: wraps one driver. API.md section 4. */
#ifndef VMITAP_CORE_H
#define VMITAP_CORE_H

#include "vmitap/driver.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmt_core vmt_core;

/* Takes ownership of driver: on success vmt_core_free() destroys it, on
 * failure it is destroyed before returning. */
vmt_status vmt_core_new(const vmt_driver_ops *ops, void *driver, vmt_core **out);
void vmt_core_free(vmt_core *vmi); /* calls ops->destroy */
const vmt_driver_ops *vmt_core_driver_ops(const vmt_core *vmi);
void *vmt_core_driver(const vmt_core *vmi);
vmt_view vmt_core_default_view(const vmt_core *vmi); /* 0 */

vmt_status vmt_core_read(vmt_core *vmi, vmt_pa pa, void *buf, size_t len);
vmt_status vmt_core_write(vmt_core *vmi, vmt_pa pa, const void *buf, size_t len);
/* AMD64 4-level walk through guest memory (1 GiB and 2 MiB pages included);
 * VMT_E_TRANSLATION when an entry on the way is not present. */
vmt_status vmt_core_translate(vmt_core *vmi, vmt_addr_ctx ctx, vmt_pa *out);
/* Reads len bytes of guest memory at ctx.va through ctx.root. VMT_E_INVALID
 * if [va, va + len) wraps or is not all canonical; otherwise the first
 * failure of a translation or read is returned and buf is untouched (no
 * allocation is made before every page of a large range translates). */
vmt_status vmt_core_read_va(vmt_core *vmi, vmt_addr_ctx ctx, void *buf, size_t len);
vmt_status vmt_core_get_access(vmt_core *vmi, vmt_gfn gfn, vmt_view view, vmt_access *out);
vmt_status vmt_core_set_access(vmt_core *vmi, vmt_gfn gfn, vmt_view view, vmt_access a, unsigned flags);

/* One thin wrapper for every other driver op, same arguments. */
vmt_status vmt_core_info(vmt_core *vmi, vmt_driver_info *out);
vmt_status vmt_core_create_view(vmt_core *vmi, vmt_access default_access, vmt_view *out);
vmt_status vmt_core_destroy_view(vmt_core *vmi, vmt_view view);
vmt_status vmt_core_switch_view(vmt_core *vmi, vmt_view view);
vmt_status vmt_core_change_view_gfn(vmt_core *vmi, vmt_view view, vmt_gfn old_gfn, vmt_gfn new_gfn);
vmt_status vmt_core_reset_view_gfn(vmt_core *vmi, vmt_view view, vmt_gfn gfn);
vmt_status vmt_core_allocate_gfn(vmt_core *vmi, vmt_gfn *out);
vmt_status vmt_core_free_gfn(vmt_core *vmi, vmt_gfn gfn);
vmt_status vmt_core_pause(vmt_core *vmi);
vmt_status vmt_core_resume(vmt_core *vmi);
vmt_status vmt_core_get_regs(vmt_core *vmi, vmt_vcpu vcpu, vmt_regs *out);
vmt_status vmt_core_set_regs(vmt_core *vmi, vmt_vcpu vcpu, const vmt_regs *regs);
vmt_status vmt_core_monitor(vmt_core *vmi, vmt_event_reason what, bool enable);
vmt_status vmt_core_wait_for_event(vmt_core *vmi, int timeout_ms, vmt_event_fn fn, void *user);

/* Additions beyond API.md §4 (allowed: new functions). */

/* Like vmt_core_translate, but also reports the physical address of every
 * paging-structure entry read on the way (entry_pa[0] = PML4E, ... up to the
 * leaf or the first non-present one) and its value. levels_out = number of
 * entries read. Any of the arrays may be NULL. On VMT_E_TRANSLATION the
 * arrays still describe the walk up to and including the non-present entry
 * (that is the one exception to "out-parameters untouched on failure"). */
typedef struct vmt_walk {
    unsigned levels;        /* entries read: 1..4 */
    vmt_pa entry_pa[4];     /* [0] = PML4E address, [1] = PDPTE, [2] = PDE, [3] = PTE */
    uint64_t entry[4];      /* their values */
    vmt_pa pa;              /* final translation (valid when VMT_OK) */
    unsigned page_shift;    /* 12, 21 or 30 (valid when VMT_OK) */
} vmt_walk;
vmt_status vmt_core_walk(vmt_core *vmi, vmt_addr_ctx ctx, vmt_walk *out);

#ifdef __cplusplus
}
#endif
#endif /* VMITAP_CORE_H */
