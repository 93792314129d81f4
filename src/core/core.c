/* The core: one driver behind thin, checked wrappers, plus the AMD64
 * translation that every layer above uses. */
#include "vmitap/core.h"

#include <stdlib.h>
#include <string.h>

#include "core/amd64.h"
#include "vmitap/log.h"

struct vmt_core {
    const vmt_driver_ops *ops;
    void *driver;
};

vmt_status vmt_core_new(const vmt_driver_ops *ops, void *driver, vmt_core **out)
{
    if (!ops || !out) {
        if (ops && ops->destroy && driver)
            ops->destroy(driver);
        return VMT_E_INVALID;
    }
    vmt_core *vmi = calloc(1, sizeof *vmi);
    if (!vmi) {
        if (ops->destroy && driver)
            ops->destroy(driver);
        return VMT_E_NOMEM;
    }
    vmi->ops = ops;
    vmi->driver = driver;
    *out = vmi;
    return VMT_OK;
}

void vmt_core_free(vmt_core *vmi)
{
    if (!vmi)
        return;
    if (vmi->ops->destroy && vmi->driver)
        vmi->ops->destroy(vmi->driver);
    free(vmi);
}

const vmt_driver_ops *vmt_core_driver_ops(const vmt_core *vmi) { return vmi ? vmi->ops : NULL; }

void *vmt_core_driver(const vmt_core *vmi) { return vmi ? vmi->driver : NULL; }

vmt_view vmt_core_default_view(const vmt_core *vmi)
{
    (void)vmi;
    return 0;
}

/* Every wrapper: NULL core is VMT_E_INVALID, a missing op VMT_E_UNSUPPORTED. */
#define CALL_OP(vmi, op, ...)                                                                      \
    do {                                                                                           \
        if (!(vmi))                                                                                \
            return VMT_E_INVALID;                                                                  \
        if (!(vmi)->ops->op)                                                                       \
            return VMT_E_UNSUPPORTED;                                                              \
        return (vmi)->ops->op((vmi)->driver, __VA_ARGS__);                                         \
    } while (0)

vmt_status vmt_core_read(vmt_core *vmi, vmt_pa pa, void *buf, size_t len)
{
    if (!buf && len)
        return VMT_E_INVALID;
    if (len == 0)
        return vmi ? VMT_OK : VMT_E_INVALID;
    CALL_OP(vmi, read, pa, buf, len);
}

vmt_status vmt_core_write(vmt_core *vmi, vmt_pa pa, const void *buf, size_t len)
{
    if (!buf && len)
        return VMT_E_INVALID;
    if (len == 0)
        return vmi ? VMT_OK : VMT_E_INVALID;
    CALL_OP(vmi, write, pa, buf, len);
}

static vmt_status core_read_cb(void *user, vmt_pa pa, void *buf, size_t len)
{
    return vmt_core_read(user, pa, buf, len);
}

vmt_status vmt_core_walk(vmt_core *vmi, vmt_addr_ctx ctx, vmt_walk *out)
{
    if (!vmi || !out)
        return VMT_E_INVALID;
    return vmt_amd64_walk(core_read_cb, vmi, ctx, out);
}

vmt_status vmt_core_translate(vmt_core *vmi, vmt_addr_ctx ctx, vmt_pa *out)
{
    if (!vmi || !out)
        return VMT_E_INVALID;
    vmt_walk w;
    vmt_status st = vmt_amd64_walk(core_read_cb, vmi, ctx, &w);
    if (st == VMT_OK)
        *out = w.pa;
    return st;
}

/* [va, va + len) (len > 0) neither wraps nor leaves the canonical half va
 * is in (the two halves are contiguous ranges, so both ends suffice). */
static bool va_range_valid(vmt_va va, size_t len)
{
    vmt_va last = va + (len - 1);
    return last >= va && vmt_va_is_canonical(va) && vmt_va_is_canonical(last) &&
           (va >> 63) == (last >> 63);
}

/* Translates [ctx.va, ctx.va + len) page by page and, if dst is not NULL,
 * reads each page into dst. */
static vmt_status read_va_pages(vmt_core *vmi, vmt_addr_ctx ctx, uint8_t *dst, size_t len)
{
    for (size_t done = 0; done < len;) {
        vmt_va va = ctx.va + done;
        size_t chunk = VMT_PAGE_SIZE - (va & (VMT_PAGE_SIZE - 1));
        if (chunk > len - done)
            chunk = len - done;
        vmt_pa pa;
        vmt_status st = vmt_core_translate(vmi, vmt_ctx(va, ctx.root), &pa);
        if (st == VMT_OK && dst)
            st = vmt_core_read(vmi, pa, dst + done, chunk);
        if (st != VMT_OK)
            return st;
        done += chunk;
    }
    return VMT_OK;
}

vmt_status vmt_core_read_va(vmt_core *vmi, vmt_addr_ctx ctx, void *buf, size_t len)
{
    if (!vmi || (!buf && len))
        return VMT_E_INVALID;
    if (len == 0)
        return vmt_va_is_canonical(ctx.va) ? VMT_OK : VMT_E_INVALID;
    if (!va_range_valid(ctx.va, len))
        return VMT_E_INVALID;
    /* Into a scratch buffer, so that a failure part-way leaves the caller's
     * buffer untouched. A large one is allocated only once every page of
     * the range translates: the length is the caller's, the allocation
     * must not come before the guest has shown that it maps that much. */
    uint8_t small[256];
    uint8_t *tmp = NULL;
    if (len > sizeof small) {
        vmt_status st = read_va_pages(vmi, ctx, NULL, len);
        if (st != VMT_OK)
            return st;
        if (!(tmp = malloc(len)))
            return VMT_E_NOMEM;
    }
    vmt_status st = read_va_pages(vmi, ctx, tmp ? tmp : small, len);
    if (st == VMT_OK)
        memcpy(buf, tmp ? tmp : small, len);
    free(tmp);
    return st;
}

vmt_status vmt_core_get_access(vmt_core *vmi, vmt_gfn gfn, vmt_view view, vmt_access *out)
{
    if (!out)
        return VMT_E_INVALID;
    CALL_OP(vmi, get_access, gfn, view, out);
}

vmt_status vmt_core_set_access(vmt_core *vmi, vmt_gfn gfn, vmt_view view, vmt_access a, unsigned flags)
{
    if ((unsigned)a > VMT_ACCESS_RWX)
        return VMT_E_INVALID;
    CALL_OP(vmi, set_access, gfn, view, a, flags);
}

vmt_status vmt_core_info(vmt_core *vmi, vmt_driver_info *out)
{
    if (!out)
        return VMT_E_INVALID;
    CALL_OP(vmi, info, out);
}

vmt_status vmt_core_create_view(vmt_core *vmi, vmt_access default_access, vmt_view *out)
{
    if (!out || (unsigned)default_access > VMT_ACCESS_RWX)
        return VMT_E_INVALID;
    CALL_OP(vmi, create_view, default_access, out);
}

vmt_status vmt_core_destroy_view(vmt_core *vmi, vmt_view view) { CALL_OP(vmi, destroy_view, view); }

vmt_status vmt_core_switch_view(vmt_core *vmi, vmt_view view) { CALL_OP(vmi, switch_view, view); }

vmt_status vmt_core_change_view_gfn(vmt_core *vmi, vmt_view view, vmt_gfn old_gfn, vmt_gfn new_gfn)
{
    CALL_OP(vmi, change_view_gfn, view, old_gfn, new_gfn);
}

vmt_status vmt_core_reset_view_gfn(vmt_core *vmi, vmt_view view, vmt_gfn gfn)
{
    CALL_OP(vmi, reset_view_gfn, view, gfn);
}

vmt_status vmt_core_allocate_gfn(vmt_core *vmi, vmt_gfn *out)
{
    if (!out)
        return VMT_E_INVALID;
    CALL_OP(vmi, allocate_gfn, out);
}

vmt_status vmt_core_free_gfn(vmt_core *vmi, vmt_gfn gfn) { CALL_OP(vmi, free_gfn, gfn); }

/* pause/resume take no arguments besides the driver. */
vmt_status vmt_core_pause(vmt_core *vmi)
{
    if (!vmi)
        return VMT_E_INVALID;
    if (!vmi->ops->pause)
        return VMT_E_UNSUPPORTED;
    return vmi->ops->pause(vmi->driver);
}

vmt_status vmt_core_resume(vmt_core *vmi)
{
    if (!vmi)
        return VMT_E_INVALID;
    if (!vmi->ops->resume)
        return VMT_E_UNSUPPORTED;
    return vmi->ops->resume(vmi->driver);
}

vmt_status vmt_core_get_regs(vmt_core *vmi, vmt_vcpu vcpu, vmt_regs *out)
{
    if (!out)
        return VMT_E_INVALID;
    CALL_OP(vmi, get_regs, vcpu, out);
}

vmt_status vmt_core_set_regs(vmt_core *vmi, vmt_vcpu vcpu, const vmt_regs *regs)
{
    if (!regs)
        return VMT_E_INVALID;
    CALL_OP(vmi, set_regs, vcpu, regs);
}

vmt_status vmt_core_monitor(vmt_core *vmi, vmt_event_reason what, bool enable)
{
    CALL_OP(vmi, monitor, what, enable);
}

vmt_status vmt_core_wait_for_event(vmt_core *vmi, int timeout_ms, vmt_event_fn fn, void *user)
{
    if (!fn)
        return VMT_E_INVALID;
    CALL_OP(vmi, wait_for_event, timeout_ms, fn, user);
}
