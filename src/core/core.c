/* The core: one driver behind thin, checked wrappers, plus the AMD64
 * translation that every layer above uses. */
#include "vmitap/core.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

#include "core/amd64.h"
#include "core/holds.h"
#include "vmitap/log.h"

struct vmt_core {
    const vmt_driver_ops *ops;
    void *driver;
    GHashTable *holds; /* access holds (holds.h): packed (view, gfn) -> core_hold; lazily */
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
    if (vmi->holds)
        g_hash_table_destroy(vmi->holds);
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

typedef struct hold_entry {
    uint64_t who;
    vmt_access_hold h;
    unsigned n; /* times who holds the frame */
} hold_entry;

typedef struct core_hold {
    vmt_access base; /* access before the first holder */
    GArray *holders; /* hold_entry */
} core_hold;

static void core_hold_free(gpointer p)
{
    core_hold *c = p;
    g_array_free(c->holders, TRUE);
    g_free(c);
}

static uint64_t hold_key(vmt_view view, vmt_gfn gfn)
{
    return ((uint64_t)view << 48) | gfn;
}

/* The access the holders leave (holds.h), or the base when there are none;
 * skip (if not NULL) is left out. */
static vmt_access hold_access(const core_hold *c, const hold_entry *skip, unsigned *flags)
{
    unsigned on = 0, off = 0, soft_on = 0, soft_off = 0, fl = 0, n = 0;
    for (guint i = 0; i < c->holders->len; i++) {
        const hold_entry *e = &g_array_index(c->holders, hold_entry, i);
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
    for (guint i = 0; i < c->holders->len; i++) {
        hold_entry *e = &g_array_index(c->holders, hold_entry, i);
        if (e->who == who)
            return e;
    }
    return NULL;
}

uint64_t vmt_core_holder_new(void)
{
    static atomic_uint_fast64_t next = 1;
    return (uint64_t)atomic_fetch_add(&next, 1);
}

vmt_status vmt_core_hold_access(vmt_core *vmi, vmt_gfn gfn, vmt_view view, uint64_t who,
                                const vmt_access_hold *h)
{
    if (!vmi || !who || !h || gfn >= (1ull << 48) ||
        (h->on | h->off | h->soft_on | h->soft_off) > VMT_ACCESS_RWX)
        return VMT_E_INVALID;
    if (!vmi->holds)
        vmi->holds = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, core_hold_free);
    gint64 key = (gint64)hold_key(view, gfn);
    core_hold *c = g_hash_table_lookup(vmi->holds, &key);
    hold_entry *e = c ? hold_find(c, who) : NULL;
    if (e) { /* held again by the same holder: counted, nothing to set */
        e->n++;
        return VMT_OK;
    }
    bool fresh = !c;
    if (fresh) {
        vmt_access base;
        vmt_status st = vmt_core_get_access(vmi, gfn, view, &base);
        if (st != VMT_OK)
            return st;
        c = g_new(core_hold, 1);
        c->base = base;
        c->holders = g_array_new(FALSE, FALSE, sizeof(hold_entry));
    }
    hold_entry ne = {.who = who, .h = *h, .n = 1};
    g_array_append_val(c->holders, ne);
    unsigned flags;
    vmt_access a = hold_access(c, NULL, &flags);
    vmt_status st = vmt_core_set_access(vmi, gfn, view, a, flags);
    if (st != VMT_OK) {
        g_array_set_size(c->holders, c->holders->len - 1);
        if (fresh)
            core_hold_free(c);
        return st;
    }
    if (fresh) {
        gint64 *k = g_new(gint64, 1);
        *k = key;
        g_hash_table_insert(vmi->holds, k, c);
    }
    return VMT_OK;
}

vmt_status vmt_core_release_access(vmt_core *vmi, vmt_gfn gfn, vmt_view view, uint64_t who)
{
    if (!vmi || !who || gfn >= (1ull << 48))
        return VMT_E_INVALID;
    gint64 key = (gint64)hold_key(view, gfn);
    core_hold *c = vmi->holds ? g_hash_table_lookup(vmi->holds, &key) : NULL;
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
    g_array_remove_index_fast(c->holders, (guint)(e - &g_array_index(c->holders, hold_entry, 0)));
    if (c->holders->len == 0)
        g_hash_table_remove(vmi->holds, &key);
    return st;
}

bool vmt_core_access_held(const vmt_core *vmi, vmt_gfn gfn, vmt_view view, vmt_access *base)
{
    gint64 key = (gint64)hold_key(view, gfn);
    const core_hold *c = vmi && vmi->holds && gfn < (1ull << 48)
                             ? g_hash_table_lookup(vmi->holds, &key)
                             : NULL;
    if (c && base)
        *base = c->base;
    return c != NULL;
}

static gboolean hold_in_view(gpointer k, gpointer v, gpointer user)
{
    (void)v;
    return (vmt_view)((uint64_t)*(gint64 *)k >> 48) == *(vmt_view *)user;
}

static void holds_drop_view(vmt_core *vmi, vmt_view view)
{
    if (vmi && vmi->holds)
        g_hash_table_foreach_remove(vmi->holds, hold_in_view, &view);
}
