// SPDX-License-Identifier: MIT
/* The mock driver: an in-memory guest for unit tests (vmitap/mock.h).
 *
 * Guest-physical memory is a sparse map gfn -> 4 KiB page: a frame that
 * was never written reads as zeros and costs nothing, so a mock can claim
 * 4 GiB of RAM while tests touch a handful of frames. Views hold only what
 * differs from their default: per-gfn access overrides and per-gfn frame
 * remappings. Every driver operation goes through mock_enter(), which
 * counts the call and decides whether an injected fault fires. */
#include "vmitap/mock.h"

#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "core/opts.h"
#include "vmitap/log.h"

#define MOCK_DEFAULT_MAX_GFN 0x100000ull
/* PAs must fit the 52 bits an AMD64 entry can hold, shadow frames included. */
#define MOCK_LIMIT_GFN (1ull << 40)
#define MOCK_DEFAULT_CAPS                                                                          \
    (VMT_CAP_VIEWS | VMT_CAP_EXECUTE_ONLY | VMT_CAP_FAST_SINGLESTEP | VMT_CAP_EMULATE)
#define MOCK_MAX_VIEWS 0xffffu

/* Values of the gfn-keyed tables start with their key, so the key pointer
 * is the value pointer and one allocation holds both. */
typedef struct mock_page {
    gint64 gfn;
    uint8_t data[VMT_PAGE_SIZE];
} mock_page;

typedef struct mock_access {
    gint64 gfn;
    vmt_access access;
    unsigned flags; /* last flags given to set_access */
} mock_access;

typedef struct mock_remap {
    gint64 gfn;      /* the frame the guest addresses */
    vmt_gfn backing; /* the frame it sees there */
} mock_remap;

typedef struct mock_view {
    vmt_access default_access;
    GHashTable *access; /* gfn -> mock_access */
    GHashTable *remap;  /* gfn -> mock_remap */
} mock_view;

typedef struct mock_fault {
    unsigned countdown; /* 0 = none armed */
    vmt_status status;
} mock_fault;

struct vmt_mock {
    vmt_gfn max_gfn;
    uint16_t vcpus;
    uint32_t caps;

    GHashTable *pages;     /* gfn -> mock_page */
    GHashTable *allocated; /* set of shadow gfns (gint64 keys) */
    vmt_gfn alloc_hint;    /* no free shadow frame below this */
    vmt_gfn table_next;    /* next page-table frame; the pool grows down */

    GHashTable *views; /* view id -> mock_view */
    vmt_view current_view;
    unsigned pause_depth;
    bool monitoring[VMT_EVENT_SINGLESTEP + 1];

    vmt_regs *regs;    /* [vcpus] */
    GQueue *events;    /* of vmt_event* */
    GArray *responses; /* of vmt_response */

    uint64_t calls[VMT_MOCK_OP_COUNT];
    uint64_t injected;
    mock_fault fault_op[VMT_MOCK_OP_COUNT];
    mock_fault fault_any;
};

/* ---------------------------------------------------------------------
 * Counting and fault injection
 * ------------------------------------------------------------------- */

static const char *const op_names[VMT_MOCK_OP_COUNT] = {
    [VMT_MOCK_OP_INFO] = "info",
    [VMT_MOCK_OP_READ] = "read",
    [VMT_MOCK_OP_WRITE] = "write",
    [VMT_MOCK_OP_GET_ACCESS] = "get_access",
    [VMT_MOCK_OP_SET_ACCESS] = "set_access",
    [VMT_MOCK_OP_CREATE_VIEW] = "create_view",
    [VMT_MOCK_OP_DESTROY_VIEW] = "destroy_view",
    [VMT_MOCK_OP_SWITCH_VIEW] = "switch_view",
    [VMT_MOCK_OP_CHANGE_VIEW_GFN] = "change_view_gfn",
    [VMT_MOCK_OP_RESET_VIEW_GFN] = "reset_view_gfn",
    [VMT_MOCK_OP_ALLOCATE_GFN] = "allocate_gfn",
    [VMT_MOCK_OP_FREE_GFN] = "free_gfn",
    [VMT_MOCK_OP_PAUSE] = "pause",
    [VMT_MOCK_OP_RESUME] = "resume",
    [VMT_MOCK_OP_GET_REGS] = "get_regs",
    [VMT_MOCK_OP_SET_REGS] = "set_regs",
    [VMT_MOCK_OP_MONITOR] = "monitor",
    [VMT_MOCK_OP_WAIT_FOR_EVENT] = "wait_for_event",
};

const char *vmt_mock_op_name(vmt_mock_op op)
{
    if ((unsigned)op >= VMT_MOCK_OP_COUNT)
        return "unknown";
    return op_names[op];
}

/* Advances a countdown; true when this call is the one it was armed for. */
static bool fault_fires(mock_fault *f)
{
    if (f->countdown == 0)
        return false;
    return --f->countdown == 0;
}

/* Called first by every driver operation: counts the call and returns the
 * injected status if a fault fires on it (the op then returns at once, so
 * an injected failure never has an effect). */
static vmt_status mock_enter(vmt_mock *m, vmt_mock_op op)
{
    m->calls[op]++;
    /* Both countdowns advance on every call so that each keeps counting
     * calls "from now" even while the other fires. */
    bool any = fault_fires(&m->fault_any);
    bool one = fault_fires(&m->fault_op[op]);
    if (!any && !one)
        return VMT_OK;
    m->injected++;
    vmt_status st = one ? m->fault_op[op].status : m->fault_any.status;
    vmt_log(VMT_LOG_DEBUG, "mock: injected %s into %s call #%llu", vmt_status_str(st), op_names[op],
            (unsigned long long)m->calls[op]);
    return st;
}

uint64_t vmt_mock_calls(const vmt_mock *mock, vmt_mock_op op)
{
    if (!mock || (unsigned)op >= VMT_MOCK_OP_COUNT)
        return 0;
    return mock->calls[op];
}

uint64_t vmt_mock_total_calls(const vmt_mock *mock)
{
    uint64_t sum = 0;
    for (int op = 0; mock && op < VMT_MOCK_OP_COUNT; op++)
        sum += mock->calls[op];
    return sum;
}

void vmt_mock_fail_nth(vmt_mock *mock, vmt_mock_op op, unsigned nth, vmt_status status)
{
    if (!mock || (unsigned)op >= VMT_MOCK_OP_COUNT)
        return;
    mock->fault_op[op].countdown = nth;
    mock->fault_op[op].status = status;
}

void vmt_mock_fail_nth_any(vmt_mock *mock, unsigned nth, vmt_status status)
{
    if (!mock)
        return;
    mock->fault_any.countdown = nth;
    mock->fault_any.status = status;
}

uint64_t vmt_mock_injected(const vmt_mock *mock)
{
    return mock ? mock->injected : 0;
}

/* ---------------------------------------------------------------------
 * Physical memory
 * ------------------------------------------------------------------- */

static bool is_allocated(const vmt_mock *m, vmt_gfn gfn)
{
    gint64 key = (gint64)gfn;
    return g_hash_table_contains(m->allocated, &key);
}

/* A frame exists if it is guest RAM or a shadow frame handed out. */
static bool gfn_exists(const vmt_mock *m, vmt_gfn gfn)
{
    return gfn < m->max_gfn || is_allocated(m, gfn);
}

static mock_page *page_lookup(const vmt_mock *m, vmt_gfn gfn)
{
    gint64 key = (gint64)gfn;
    return g_hash_table_lookup(m->pages, &key);
}

static mock_page *page_touch(vmt_mock *m, vmt_gfn gfn)
{
    mock_page *p = page_lookup(m, gfn);
    if (!p) {
        p = g_new0(mock_page, 1);
        p->gfn = (gint64)gfn;
        g_hash_table_insert(m->pages, &p->gfn, p);
    }
    return p;
}

static void page_drop(vmt_mock *m, vmt_gfn gfn)
{
    gint64 key = (gint64)gfn;
    g_hash_table_remove(m->pages, &key);
}

/* VMT_OK if every frame of [pa, pa + len) exists. */
static vmt_status range_check(const vmt_mock *m, vmt_pa pa, size_t len)
{
    if (len == 0)
        return VMT_OK;
    if (pa + len < pa)
        return VMT_E_OUT_OF_BOUNDS;
    vmt_gfn last = vmt_gfn_from_pa(pa + len - 1);
    for (vmt_gfn g = vmt_gfn_from_pa(pa); g <= last; g++)
        if (!gfn_exists(m, g))
            return VMT_E_OUT_OF_BOUNDS;
    return VMT_OK;
}

/* Bytes from pa to the end of its frame, at most len. */
static size_t chunk_len(vmt_pa pa, size_t len)
{
    size_t room = VMT_PAGE_SIZE - (size_t)(pa & (VMT_PAGE_SIZE - 1));
    return len < room ? len : room;
}

/* Reads frame by frame; `view` NULL means raw, else through its remaps. */
static void mem_read(const vmt_mock *m, const mock_view *view, vmt_pa pa, void *buf, size_t len)
{
    uint8_t *dst = buf;
    while (len) {
        size_t n = chunk_len(pa, len);
        vmt_gfn gfn = vmt_gfn_from_pa(pa);
        if (view) {
            gint64 key = (gint64)gfn;
            const mock_remap *r = g_hash_table_lookup(view->remap, &key);
            if (r)
                gfn = r->backing;
        }
        const mock_page *p = page_lookup(m, gfn);
        if (p)
            memcpy(dst, p->data + (pa & (VMT_PAGE_SIZE - 1)), n);
        else
            memset(dst, 0, n); /* never written: zeros, and stays unallocated */
        dst += n;
        pa += n;
        len -= n;
    }
}

static void mem_write(vmt_mock *m, vmt_pa pa, const void *buf, size_t len)
{
    const uint8_t *src = buf;
    while (len) {
        size_t n = chunk_len(pa, len);
        mock_page *p = page_touch(m, vmt_gfn_from_pa(pa));
        memcpy(p->data + (pa & (VMT_PAGE_SIZE - 1)), src, n);
        src += n;
        pa += n;
        len -= n;
    }
}

vmt_status vmt_mock_peek(const vmt_mock *mock, vmt_pa pa, void *buf, size_t len)
{
    if (!mock || (!buf && len))
        return VMT_E_INVALID;
    vmt_status st = range_check(mock, pa, len);
    if (st == VMT_OK)
        mem_read(mock, NULL, pa, buf, len);
    return st;
}

vmt_status vmt_mock_poke(vmt_mock *mock, vmt_pa pa, const void *buf, size_t len)
{
    if (!mock || (!buf && len))
        return VMT_E_INVALID;
    vmt_status st = range_check(mock, pa, len);
    if (st == VMT_OK)
        mem_write(mock, pa, buf, len);
    return st;
}

size_t vmt_mock_resident_frames(const vmt_mock *mock)
{
    return mock ? g_hash_table_size(mock->pages) : 0;
}

/* ---------------------------------------------------------------------
 * Views
 * ------------------------------------------------------------------- */

static mock_view *view_new(vmt_access default_access)
{
    mock_view *v = g_new0(mock_view, 1);
    v->default_access = default_access;
    v->access = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
    v->remap = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
    return v;
}

static void view_free(void *p)
{
    mock_view *v = p;
    g_hash_table_destroy(v->access);
    g_hash_table_destroy(v->remap);
    g_free(v);
}

static mock_view *view_lookup(const vmt_mock *m, vmt_view view)
{
    return g_hash_table_lookup(m->views, GUINT_TO_POINTER((unsigned)view));
}

/* Sets *out to the view that an operation on frame gfn of view works in.
 * Every such operation checks in this order: an unknown view is
 * VMT_E_VIEW_NOT_FOUND, then a frame that does not exist (gfn_exists)
 * VMT_E_OUT_OF_BOUNDS. */
static vmt_status view_frame(const vmt_mock *m, vmt_view view, vmt_gfn gfn, mock_view **out)
{
    mock_view *v = view_lookup(m, view);
    if (!v)
        return VMT_E_VIEW_NOT_FOUND;
    if (!gfn_exists(m, gfn))
        return VMT_E_OUT_OF_BOUNDS;
    *out = v;
    return VMT_OK;
}

static vmt_gfn view_backing(const mock_view *v, vmt_gfn gfn)
{
    gint64 key = (gint64)gfn;
    const mock_remap *r = g_hash_table_lookup(v->remap, &key);
    return r ? r->backing : gfn;
}

bool vmt_mock_view_exists(const vmt_mock *mock, vmt_view view)
{
    return mock && view_lookup(mock, view) != NULL;
}

vmt_view vmt_mock_current_view(const vmt_mock *mock)
{
    return mock ? mock->current_view : 0;
}

vmt_status vmt_mock_view_backing(const vmt_mock *mock, vmt_view view, vmt_gfn gfn, vmt_gfn *out)
{
    if (!mock || !out)
        return VMT_E_INVALID;
    mock_view *v;
    vmt_status st = view_frame(mock, view, gfn, &v);
    if (st != VMT_OK)
        return st;
    *out = view_backing(v, gfn);
    return VMT_OK;
}

vmt_status vmt_mock_view_read(const vmt_mock *mock, vmt_view view, vmt_pa pa, void *buf, size_t len)
{
    if (!mock || (!buf && len))
        return VMT_E_INVALID;
    const mock_view *v = view_lookup(mock, view);
    if (!v)
        return VMT_E_VIEW_NOT_FOUND;
    vmt_status st = range_check(mock, pa, len);
    if (st == VMT_OK)
        mem_read(mock, v, pa, buf, len);
    return st;
}

unsigned vmt_mock_last_access_flags(const vmt_mock *mock, vmt_gfn gfn, vmt_view view)
{
    const mock_view *v = mock ? view_lookup(mock, view) : NULL;
    if (!v)
        return 0;
    gint64 key = (gint64)gfn;
    const mock_access *a = g_hash_table_lookup(v->access, &key);
    return a ? a->flags : 0;
}

/* ---------------------------------------------------------------------
 * Driver operations
 * ------------------------------------------------------------------- */

static vmt_status op_info(void *d, vmt_driver_info *out)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_INFO);
    if (st != VMT_OK)
        return st;
    if (!out)
        return VMT_E_INVALID;
    out->max_gfn = m->max_gfn;
    out->vcpus = m->vcpus;
    out->caps = m->caps;
    return VMT_OK;
}

static vmt_status op_read(void *d, vmt_pa pa, void *buf, size_t len)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_READ);
    return st != VMT_OK ? st : vmt_mock_peek(m, pa, buf, len);
}

static vmt_status op_write(void *d, vmt_pa pa, const void *buf, size_t len)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_WRITE);
    return st != VMT_OK ? st : vmt_mock_poke(m, pa, buf, len);
}

static vmt_status op_get_access(void *d, vmt_gfn gfn, vmt_view view, vmt_access *out)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_GET_ACCESS);
    if (st != VMT_OK)
        return st;
    if (!out)
        return VMT_E_INVALID;
    mock_view *v;
    st = view_frame(m, view, gfn, &v);
    if (st != VMT_OK)
        return st;
    gint64 key = (gint64)gfn;
    const mock_access *a = g_hash_table_lookup(v->access, &key);
    *out = a ? a->access : v->default_access;
    return VMT_OK;
}

static vmt_status op_set_access(void *d, vmt_gfn gfn, vmt_view view, vmt_access access,
                                unsigned flags)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_SET_ACCESS);
    if (st != VMT_OK)
        return st;
    if ((unsigned)access > VMT_ACCESS_RWX ||
        (flags & ~(unsigned)VMT_SET_ACCESS_IGNORE_PAGE_WALK_UPDATES))
        return VMT_E_INVALID;
    /* Execute-only is a hardware capability (EPT has it, NPT does not). */
    if (access == VMT_ACCESS_X && !(m->caps & VMT_CAP_EXECUTE_ONLY))
        return VMT_E_UNSUPPORTED;
    mock_view *v;
    st = view_frame(m, view, gfn, &v);
    if (st != VMT_OK)
        return st;
    gint64 key = (gint64)gfn;
    mock_access *a = g_hash_table_lookup(v->access, &key);
    if (!a) {
        a = g_new0(mock_access, 1);
        a->gfn = key;
        g_hash_table_insert(v->access, &a->gfn, a);
    }
    a->access = access;
    a->flags = flags;
    return VMT_OK;
}

static vmt_status op_create_view(void *d, vmt_access default_access, vmt_view *out)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_CREATE_VIEW);
    if (st != VMT_OK)
        return st;
    if (!out || (unsigned)default_access > VMT_ACCESS_RWX)
        return VMT_E_INVALID;
    if (!(m->caps & VMT_CAP_VIEWS))
        return VMT_E_UNSUPPORTED;
    /* The lowest free id, as Xen's altp2m does. */
    unsigned id = 1;
    while (id <= MOCK_MAX_VIEWS && view_lookup(m, (vmt_view)id))
        id++;
    if (id > MOCK_MAX_VIEWS)
        return VMT_E_NOMEM;
    g_hash_table_insert(m->views, GUINT_TO_POINTER(id), view_new(default_access));
    *out = (vmt_view)id;
    return VMT_OK;
}

static vmt_status op_destroy_view(void *d, vmt_view view)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_DESTROY_VIEW);
    if (st != VMT_OK)
        return st;
    if (view == 0)
        return VMT_E_INVALID;
    if (!g_hash_table_remove(m->views, GUINT_TO_POINTER((unsigned)view)))
        return VMT_E_VIEW_NOT_FOUND;
    if (m->current_view == view)
        m->current_view = 0; /* the guest falls back to the default view */
    return VMT_OK;
}

static vmt_status op_switch_view(void *d, vmt_view view)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_SWITCH_VIEW);
    if (st != VMT_OK)
        return st;
    if (!view_lookup(m, view))
        return VMT_E_VIEW_NOT_FOUND;
    m->current_view = view;
    return VMT_OK;
}

static vmt_status op_change_view_gfn(void *d, vmt_view view, vmt_gfn old_gfn, vmt_gfn new_gfn)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_CHANGE_VIEW_GFN);
    if (st != VMT_OK)
        return st;
    mock_view *v;
    st = view_frame(m, view, old_gfn, &v);
    if (st != VMT_OK)
        return st;
    if (!gfn_exists(m, new_gfn))
        return VMT_E_OUT_OF_BOUNDS;
    gint64 key = (gint64)old_gfn;
    if (new_gfn == old_gfn) {
        g_hash_table_remove(v->remap, &key);
        return VMT_OK;
    }
    mock_remap *r = g_hash_table_lookup(v->remap, &key);
    if (!r) {
        r = g_new0(mock_remap, 1);
        r->gfn = key;
        g_hash_table_insert(v->remap, &r->gfn, r);
    }
    r->backing = new_gfn;
    return VMT_OK;
}

static vmt_status op_reset_view_gfn(void *d, vmt_view view, vmt_gfn gfn)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_RESET_VIEW_GFN);
    if (st != VMT_OK)
        return st;
    mock_view *v;
    st = view_frame(m, view, gfn, &v);
    if (st != VMT_OK)
        return st;
    gint64 key = (gint64)gfn;
    g_hash_table_remove(v->remap, &key); /* not remapped: nothing to undo */
    return VMT_OK;
}

static vmt_status op_allocate_gfn(void *d, vmt_gfn *out)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_ALLOCATE_GFN);
    if (st != VMT_OK)
        return st;
    if (!out)
        return VMT_E_INVALID;
    vmt_gfn gfn = m->alloc_hint;
    while (gfn < MOCK_LIMIT_GFN && is_allocated(m, gfn))
        gfn++;
    if (gfn >= MOCK_LIMIT_GFN)
        return VMT_E_NOMEM;
    gint64 *key = g_new(gint64, 1);
    *key = (gint64)gfn;
    g_hash_table_add(m->allocated, key);
    page_drop(m, gfn); /* a fresh frame reads as zeros */
    m->alloc_hint = gfn + 1;
    *out = gfn;
    return VMT_OK;
}

/* True if some view shows gfn in place of another frame. */
static bool is_remap_target(const vmt_mock *m, vmt_gfn gfn)
{
    GHashTableIter vi;
    void *vp;
    g_hash_table_iter_init(&vi, m->views);
    while (g_hash_table_iter_next(&vi, NULL, &vp)) {
        GHashTableIter ri;
        void *rp;
        g_hash_table_iter_init(&ri, ((mock_view *)vp)->remap);
        while (g_hash_table_iter_next(&ri, NULL, &rp))
            if (((mock_remap *)rp)->backing == gfn)
                return true;
    }
    return false;
}

static vmt_status op_free_gfn(void *d, vmt_gfn gfn)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_FREE_GFN);
    if (st != VMT_OK)
        return st;
    if (!is_allocated(m, gfn))
        return VMT_E_INVALID;
    /* A real hypervisor would leave the view pointing at freed memory;
     * the mock refuses, so that tests catch the wrong order. */
    if (is_remap_target(m, gfn))
        return VMT_E_CONFLICT;
    gint64 key = (gint64)gfn;
    g_hash_table_remove(m->allocated, &key);
    page_drop(m, gfn);
    GHashTableIter vi;
    void *vp;
    g_hash_table_iter_init(&vi, m->views);
    while (g_hash_table_iter_next(&vi, NULL, &vp)) {
        mock_view *v = vp;
        g_hash_table_remove(v->access, &key);
        g_hash_table_remove(v->remap, &key);
    }
    if (gfn < m->alloc_hint)
        m->alloc_hint = gfn;
    return VMT_OK;
}

static vmt_status op_pause(void *d)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_PAUSE);
    if (st != VMT_OK)
        return st;
    m->pause_depth++;
    return VMT_OK;
}

static vmt_status op_resume(void *d)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_RESUME);
    if (st != VMT_OK)
        return st;
    if (m->pause_depth == 0)
        return VMT_E_INVALID; /* unbalanced: a bug in the caller */
    m->pause_depth--;
    return VMT_OK;
}

static vmt_status op_get_regs(void *d, vmt_vcpu vcpu, vmt_regs *out)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_GET_REGS);
    if (st != VMT_OK)
        return st;
    if (!out || vcpu >= m->vcpus)
        return VMT_E_INVALID;
    *out = m->regs[vcpu];
    return VMT_OK;
}

static vmt_status op_set_regs(void *d, vmt_vcpu vcpu, const vmt_regs *regs)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_SET_REGS);
    if (st != VMT_OK)
        return st;
    if (!regs || vcpu >= m->vcpus)
        return VMT_E_INVALID;
    m->regs[vcpu] = *regs;
    return VMT_OK;
}

static bool reason_valid(vmt_event_reason what)
{
    return what == VMT_EVENT_MEMORY_ACCESS || what == VMT_EVENT_SOFTWARE_BREAKPOINT ||
           what == VMT_EVENT_SINGLESTEP;
}

static vmt_status op_monitor(void *d, vmt_event_reason what, bool enable)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_MONITOR);
    if (st != VMT_OK)
        return st;
    if (!reason_valid(what))
        return VMT_E_INVALID;
    m->monitoring[what] = enable;
    return VMT_OK;
}

/* Applies what the callback asked for, as a hypervisor would on resume. */
static vmt_status apply_response(vmt_mock *m, const vmt_event *ev, const vmt_response *resp)
{
    if (resp->set_view && !view_lookup(m, resp->view))
        return VMT_E_VIEW_NOT_FOUND;
    if (resp->set_regs)
        m->regs[ev->vcpu] = resp->regs;
    if (resp->set_view)
        m->current_view = resp->view;
    return VMT_OK;
}

static vmt_status op_wait_for_event(void *d, int timeout_ms, vmt_event_fn fn, void *user)
{
    vmt_mock *m = d;
    vmt_status st = mock_enter(m, VMT_MOCK_OP_WAIT_FOR_EVENT);
    if (st != VMT_OK)
        return st;
    (void)timeout_ms; /* nothing can arrive while we wait: never sleeps */
    if (!fn)
        return VMT_E_INVALID;
    vmt_event *ev = g_queue_pop_head(m->events);
    if (!ev)
        return VMT_E_TIMEOUT;
    vmt_response resp;
    memset(&resp, 0, sizeof resp);
    st = fn(user, ev, &resp);
    if (st == VMT_OK) {
        g_array_append_val(m->responses, resp);
        st = apply_response(m, ev, &resp);
    }
    g_free(ev);
    return st;
}

static void op_destroy(void *d)
{
    vmt_mock_free(d);
}

static const vmt_driver_ops mock_ops = {
    .name = "mock",
    .info = op_info,
    .read = op_read,
    .write = op_write,
    .get_access = op_get_access,
    .set_access = op_set_access,
    .create_view = op_create_view,
    .destroy_view = op_destroy_view,
    .switch_view = op_switch_view,
    .change_view_gfn = op_change_view_gfn,
    .reset_view_gfn = op_reset_view_gfn,
    .allocate_gfn = op_allocate_gfn,
    .free_gfn = op_free_gfn,
    .pause = op_pause,
    .resume = op_resume,
    .get_regs = op_get_regs,
    .set_regs = op_set_regs,
    .monitor = op_monitor,
    .wait_for_event = op_wait_for_event,
    .destroy = op_destroy,
};

const vmt_driver_ops *vmt_mock_driver_ops(void)
{
    return &mock_ops;
}

/* ---------------------------------------------------------------------
 * Life cycle, inspection, events
 * ------------------------------------------------------------------- */

/* Reads opts by the rule of vmitap/api.h (an older, shorter struct's
 * missing fields are zero); a zero field means its default. */
static vmt_status read_opts(const vmt_mock_opts *opts, vmt_gfn *max_gfn, uint16_t *vcpus,
                            uint32_t *caps)
{
    vmt_mock_opts o;
    vmt_status st = VMT_OPTS_LOAD(&o, opts);
    if (st != VMT_OK)
        return st;
    *max_gfn = o.max_gfn ? o.max_gfn : MOCK_DEFAULT_MAX_GFN;
    *vcpus = o.vcpus ? o.vcpus : 1;
    *caps = o.caps ? o.caps : MOCK_DEFAULT_CAPS;
    /* Room for the page-table pool (at least one frame above gfn 0) and
     * for shadow frames above RAM within 52-bit physical addresses. */
    if (*max_gfn < 2 || *max_gfn >= MOCK_LIMIT_GFN / 2)
        return VMT_E_INVALID;
    return VMT_OK;
}

vmt_status vmt_mock_new(const vmt_mock_opts *opts, vmt_mock **out)
{
    if (!out)
        return VMT_E_INVALID;
    vmt_gfn max_gfn;
    uint16_t vcpus;
    uint32_t caps;
    vmt_status st = read_opts(opts, &max_gfn, &vcpus, &caps);
    if (st != VMT_OK)
        return st;

    vmt_mock *m = g_new0(vmt_mock, 1);
    m->max_gfn = max_gfn;
    m->vcpus = vcpus;
    m->caps = caps;
    m->pages = g_hash_table_new_full(g_int64_hash, g_int64_equal, NULL, g_free);
    m->allocated = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    m->alloc_hint = max_gfn;
    m->table_next = max_gfn - 1;
    m->views = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, view_free);
    g_hash_table_insert(m->views, GUINT_TO_POINTER(0u), view_new(VMT_ACCESS_RWX));
    m->regs = g_new0(vmt_regs, vcpus);
    m->events = g_queue_new();
    m->responses = g_array_new(FALSE, TRUE, sizeof(vmt_response));
    *out = m;
    return VMT_OK;
}

void vmt_mock_free(vmt_mock *mock)
{
    if (!mock)
        return;
    g_hash_table_destroy(mock->pages);
    g_hash_table_destroy(mock->allocated);
    g_hash_table_destroy(mock->views);
    g_free(mock->regs);
    g_queue_free_full(mock->events, g_free);
    g_array_free(mock->responses, TRUE);
    g_free(mock);
}

vmt_status vmt_mock_core_new(const vmt_mock_opts *opts, vmt_core **out, vmt_mock **mock_out)
{
    if (!out)
        return VMT_E_INVALID;
    vmt_mock *m;
    vmt_status st = vmt_mock_new(opts, &m);
    if (st != VMT_OK)
        return st;
    vmt_core *core;
    st = vmt_core_new(&mock_ops, m, &core); /* destroys m on failure */
    if (st != VMT_OK)
        return st;
    *out = core;
    if (mock_out)
        *mock_out = m;
    return VMT_OK;
}

size_t vmt_mock_allocated_gfns(const vmt_mock *mock)
{
    return mock ? g_hash_table_size(mock->allocated) : 0;
}

bool vmt_mock_paused(const vmt_mock *mock)
{
    return mock && mock->pause_depth > 0;
}

unsigned vmt_mock_pause_depth(const vmt_mock *mock)
{
    return mock ? mock->pause_depth : 0;
}

bool vmt_mock_monitoring(const vmt_mock *mock, vmt_event_reason what)
{
    return mock && reason_valid(what) && mock->monitoring[what];
}

vmt_regs *vmt_mock_regs(vmt_mock *mock, vmt_vcpu vcpu)
{
    if (!mock || vcpu >= mock->vcpus)
        return NULL;
    return &mock->regs[vcpu];
}

vmt_status vmt_mock_push_event(vmt_mock *mock, const vmt_event *ev)
{
    if (!mock || !ev || ev->vcpu >= mock->vcpus || !reason_valid(ev->reason))
        return VMT_E_INVALID;
    g_queue_push_tail(mock->events, g_memdup2(ev, sizeof *ev));
    return VMT_OK;
}

size_t vmt_mock_pending_events(const vmt_mock *mock)
{
    return mock ? g_queue_get_length(mock->events) : 0;
}

size_t vmt_mock_responses(const vmt_mock *mock, const vmt_response **out)
{
    if (!mock)
        return 0;
    if (out)
        *out = (const vmt_response *)(void *)mock->responses->data;
    return mock->responses->len;
}

void vmt_mock_clear_responses(vmt_mock *mock)
{
    if (mock)
        g_array_set_size(mock->responses, 0);
}

/* ---------------------------------------------------------------------
 * Page-table pool (the walk-based helpers are in mock_pt.c)
 * ------------------------------------------------------------------- */

vmt_status vmt_mock_alloc_table(vmt_mock *mock, vmt_pa *out)
{
    if (!mock || !out)
        return VMT_E_INVALID;
    if (mock->table_next == 0)
        return VMT_E_NOMEM; /* gfn 0 is never a table: the pool is spent */
    vmt_gfn gfn = mock->table_next--;
    page_drop(mock, gfn); /* zeroed, even if a test wrote there before */
    *out = vmt_pa_from_gfn(gfn);
    return VMT_OK;
}
