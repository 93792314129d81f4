// SPDX-License-Identifier: MIT
/* The core: one driver behind thin, checked wrappers, plus the AMD64
 * translation that every layer above uses. */
#include "vmitap/core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/amd64.h"
#include "core/holds.h"
#include "core/htab.h"
#include "vmitap/log.h"

struct vmt_core {
    const vmt_driver_ops *ops;
    void *driver;
    vmt_htab holds; /* access holds (holds.h): HOLD_KEY(view, gfn) -> core_hold */
};

vmt_status vmt_core_new(const vmt_driver_ops *ops, void *driver, vmt_core **out)
{
    if (!ops || !out) {
        if (ops && ops->destroy && driver)
            ops->destroy(driver);
        return VMT_E_INVALID;
    }
    vmt_core *vmi = vmt_calloc(1, sizeof *vmi);
    if (!vmi) {
        if (ops->destroy && driver)
            ops->destroy(driver);
        return VMT_E_NOMEM;
    }
    vmi->ops = ops;
    vmi->driver = driver;
    vmt_htab_init(&vmi->holds, vmt_htab_hash_ptr, NULL);
    *out = vmi;
    return VMT_OK;
}

typedef struct core_hold core_hold;
static void core_hold_free(core_hold *c);

void vmt_core_free(vmt_core *vmi)
{
    if (!vmi)
        return;
    if (vmi->ops->destroy && vmi->driver)
        vmi->ops->destroy(vmi->driver);
    for (size_t i = 0; (i = vmt_htab_next(&vmi->holds, i)) < vmi->holds.n; i++)
        core_hold_free(vmi->holds.slots[i].val);
    vmt_htab_fini(&vmi->holds);
    vmt_free(vmi);
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
        if (!(tmp = vmt_malloc(len)))
            return VMT_E_NOMEM;
    }
    vmt_status st = read_va_pages(vmi, ctx, tmp ? tmp : small, len);
    if (st == VMT_OK)
        memcpy(buf, tmp ? tmp : small, len);
    vmt_free(tmp);
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

static void holds_drop_view(vmt_core *vmi, vmt_view view);

static vmt_status core_destroy_view(vmt_core *vmi, vmt_view view)
{
    CALL_OP(vmi, destroy_view, view);
}

vmt_status vmt_core_destroy_view(vmt_core *vmi, vmt_view view)
{
    vmt_status st = core_destroy_view(vmi, view);
    if (st == VMT_OK)
        holds_drop_view(vmi, view); /* a view created later with its id starts afresh */
    return st;
}

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

/* ---- access holds (holds.h) ---- */

/* Memory from core/alloc.h, made before the driver is called: a hold
 * fails with VMT_E_NOMEM with nothing changed, and a release never
 * allocates. */

typedef struct hold_entry {
    uint64_t who;
    vmt_access_hold h;
    unsigned n; /* times who holds the frame */
} hold_entry;

typedef struct core_hold {
    vmt_access base; /* access before the first holder */
    hold_entry *holders;
    size_t n_holders, cap;
} core_hold;

static void core_hold_free(core_hold *c)
{
    vmt_free(c->holders);
    vmt_free(c);
}

#define HOLD_KEY(view, gfn) ((void *)(uintptr_t)(((uint64_t)(view) << 48) | (gfn)))

/* The access the holders leave (holds.h), or the base when there are none;
 * skip (if not NULL) is left out. */
static vmt_access hold_access(const core_hold *c, const hold_entry *skip, unsigned *flags)
{
    unsigned on = 0, off = 0, soft_on = 0, soft_off = 0, fl = 0, n = 0;
    for (size_t i = 0; i < c->n_holders; i++) {
        const hold_entry *e = &c->holders[i];
        if (e == skip)
            continue;
        on |= e->h.on;
        off |= e->h.off;
        soft_on |= e->h.soft_on;
        soft_off |= e->h.soft_off;
        fl |= e->h.flags;
        n++;
    }
    *flags = fl;
    if (n == 0)
        return c->base;
    unsigned a = (((c->base | soft_on) & ~soft_off) | on) & ~off;
    return (vmt_access)(a & VMT_ACCESS_RWX);
}

static hold_entry *hold_find(const core_hold *c, uint64_t who)
{
    for (size_t i = 0; i < c->n_holders; i++)
        if (c->holders[i].who == who)
            return &c->holders[i];
    return NULL;
}

uint64_t vmt_core_holder_new(void)
{
    static atomic_uint_fast64_t next = 1;
    return (uint64_t)atomic_fetch_add(&next, 1);
}

/* Room for one more holder of c. VMT_E_NOMEM: nothing changed. */
static vmt_status hold_reserve(core_hold *c)
{
    hold_entry *h = vmt_grow_array(c->holders, &c->cap, c->n_holders + 1, sizeof *h, 2);
    if (!h)
        return VMT_E_NOMEM;
    c->holders = h;
    return VMT_OK;
}

vmt_status vmt_core_hold_access(vmt_core *vmi, vmt_gfn gfn, vmt_view view, uint64_t who,
                                const vmt_access_hold *h)
{
    if (!vmi || !who || !h || gfn >= (1ull << 48) ||
        (h->on | h->off | h->soft_on | h->soft_off) > VMT_ACCESS_RWX)
        return VMT_E_INVALID;
    core_hold *c = vmt_htab_get(&vmi->holds, HOLD_KEY(view, gfn));
    hold_entry *e = c ? hold_find(c, who) : NULL;
    if (e) { /* held again by the same holder: counted, nothing to set */
        e->n++;
        return VMT_OK;
    }
    bool fresh = !c;
    if (fresh && (!(c = vmt_calloc(1, sizeof *c)) || vmt_htab_reserve(&vmi->holds, 1) != VMT_OK)) {
        vmt_free(c);
        return VMT_E_NOMEM;
    }
    vmt_status st = hold_reserve(c);
    if (st == VMT_OK && fresh)
        st = vmt_core_get_access(vmi, gfn, view, &c->base);
    if (st == VMT_OK) {
        c->holders[c->n_holders++] = (hold_entry){.who = who, .h = *h, .n = 1};
        unsigned flags;
        vmt_access a = hold_access(c, NULL, &flags);
        if ((st = vmt_core_set_access(vmi, gfn, view, a, flags)) != VMT_OK)
            c->n_holders--;
    }
    if (st != VMT_OK) {
        if (fresh)
            core_hold_free(c);
        return st;
    }
    if (fresh)
        (void)vmt_htab_put(&vmi->holds, HOLD_KEY(view, gfn), c); /* reserved above */
    return VMT_OK;
}

vmt_status vmt_core_release_access(vmt_core *vmi, vmt_gfn gfn, vmt_view view, uint64_t who)
{
    if (!vmi || !who || gfn >= (1ull << 48))
        return VMT_E_INVALID;
    core_hold *c = vmt_htab_get(&vmi->holds, HOLD_KEY(view, gfn));
    hold_entry *e = c ? hold_find(c, who) : NULL;
    if (!e)
        return VMT_OK;
    if (e->n > 1) {
        e->n--;
        return VMT_OK;
    }
    unsigned flags;
    vmt_access a = hold_access(c, e, &flags);
    vmt_status st = vmt_core_set_access(vmi, gfn, view, a, flags);
    if (st != VMT_OK && st != VMT_E_VIEW_NOT_FOUND)
        return st;
    *e = c->holders[--c->n_holders];
    if (c->n_holders == 0) {
        vmt_htab_del(&vmi->holds, HOLD_KEY(view, gfn));
        core_hold_free(c);
    }
    return st;
}

bool vmt_core_access_held(const vmt_core *vmi, vmt_gfn gfn, vmt_view view, vmt_access *base)
{
    const core_hold *c =
        vmi && gfn < (1ull << 48) ? vmt_htab_get(&vmi->holds, HOLD_KEY(view, gfn)) : NULL;
    if (c && base)
        *base = c->base;
    return c != NULL;
}

static void holds_drop_view(vmt_core *vmi, vmt_view view)
{
    for (size_t i = 0; vmi && (i = vmt_htab_next(&vmi->holds, i)) < vmi->holds.n; i++) {
        vmt_htab_slot *sl = &vmi->holds.slots[i];
        if ((vmt_view)((uint64_t)(uintptr_t)sl->key >> 48) != view)
            continue;
        core_hold *c = sl->val;
        vmt_htab_del(&vmi->holds, sl->key); /* removal moves nothing */
        core_hold_free(c);
    }
}
