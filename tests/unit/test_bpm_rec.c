/* The recording controller (see test_bpm_rec.h). */
#include "test_bpm_rec.h"

#include <stdio.h>
#include <string.h>

#include "bpm/bpm_internal.h"

static uint64_t vkey(vmt_view view, uint64_t addr)
{
    return ((uint64_t)view << 52) ^ addr;
}

static gboolean has(GHashTable *t, uint64_t k)
{
    return g_hash_table_contains(t, &k);
}

static void put(GHashTable *t, uint64_t k)
{
    uint64_t *p = g_new(uint64_t, 1);
    *p = k;
    g_hash_table_add(t, p);
}

static bool page_has_trap(rec_ctl *r, vmt_view view, vmt_gfn gfn)
{
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, r->traps);
    while (g_hash_table_iter_next(&it, &k, &v)) {
        uint64_t key = *(uint64_t *)k;
        if (key >> 52 == view && ((key & ((1ull << 52) - 1)) >> 12) == gfn)
            return true;
    }
    return false;
}

static bool dead(const rec_ctl *r, vmt_view view)
{
    return g_hash_table_contains(r->dead_views, GUINT_TO_POINTER(view + 1u));
}

/* A dead view's traps and monitored frames are gone with it: a call that
 * failed with VMT_E_VIEW_NOT_FOUND on a killed view drops key k from set. */
static void drop_if_dead(const rec_ctl *r, vmt_status st, vmt_view view, GHashTable *set,
                         uint64_t k)
{
    if (st == VMT_E_VIEW_NOT_FOUND && dead(r, view))
        g_hash_table_remove(set, &k);
}

/* Counts the call, logs it, and decides whether it fails. */
static vmt_status enter(rec_ctl *r, rec_op op, vmt_view view, uint64_t addr)
{
    r->calls++;
    vmt_status st = VMT_OK;
    if (r->fail_at && r->calls == r->fail_at) {
        st = r->fail_status;
        r->fail_at = r->fail_more ? r->fail_at + 1 : 0;
        if (r->fail_more)
            r->fail_more--;
    } else if (dead(r, view)) {
        st = VMT_E_VIEW_NOT_FOUND;
    }
    if (r->keep_log) {
        rec_call c = {op, view, addr, st};
        g_array_append_val(r->log, c);
    }
    return st;
}

static bool rc_check_event(void *self, const vmt_event *ev, vmt_view *view, vmt_gfn *gfn)
{
    (void)self;
    if (!ev->has_view || ev->reason != VMT_EVENT_SOFTWARE_BREAKPOINT)
        return false;
    *view = ev->view;
    *gfn = ev->u.software_breakpoint.gfn;
    return true;
}

static vmt_status rc_insert(void *self, vmt_core *vmi, vmt_pa pa, vmt_view view)
{
    rec_ctl *r = self;
    (void)vmi;
    vmt_status st = enter(r, REC_INSERT, view, pa);
    if (st != VMT_OK)
        return st;
    if (has(r->traps, vkey(view, pa)))
        r->violations++;
    else
        put(r->traps, vkey(view, pa));
    return VMT_OK;
}

static vmt_status rc_remove(void *self, vmt_core *vmi, vmt_pa pa, vmt_view view)
{
    rec_ctl *r = self;
    (void)vmi;
    vmt_status st = enter(r, REC_REMOVE, view, pa);
    uint64_t k = vkey(view, pa);
    drop_if_dead(r, st, view, r->traps, k);
    if (st != VMT_OK)
        return st;
    if (!g_hash_table_remove(r->traps, &k))
        r->violations++;
    return VMT_OK;
}

static vmt_status rc_monitor(void *self, vmt_core *vmi, vmt_gfn gfn, vmt_view view)
{
    rec_ctl *r = self;
    (void)vmi;
    vmt_status st = enter(r, REC_MONITOR, view, gfn);
    if (st != VMT_OK)
        return st;
    if (has(r->monitored, vkey(view, gfn)) || !page_has_trap(r, view, gfn))
        r->violations++;
    put(r->monitored, vkey(view, gfn));
    return VMT_OK;
}

static vmt_status rc_unmonitor(void *self, vmt_core *vmi, vmt_gfn gfn, vmt_view view)
{
    rec_ctl *r = self;
    (void)vmi;
    vmt_status st = enter(r, REC_UNMONITOR, view, gfn);
    uint64_t k = vkey(view, gfn);
    drop_if_dead(r, st, view, r->monitored, k);
    if (st != VMT_OK)
        return st;
    if (!g_hash_table_remove(r->monitored, &k) || page_has_trap(r, view, gfn))
        r->violations++;
    return VMT_OK;
}

static void rc_destroy(void *self)
{
    rec_ctl *r = self;
    g_array_free(r->log, TRUE);
    g_hash_table_destroy(r->traps);
    g_hash_table_destroy(r->monitored);
    g_hash_table_destroy(r->dead_views);
    g_free(r);
}

static const vmt_tap_controller_ops rec_ops = {
    .check_event = rc_check_event,
    .insert_breakpoint = rc_insert,
    .remove_breakpoint = rc_remove,
    .monitor = rc_monitor,
    .unmonitor = rc_unmonitor,
    .destroy = rc_destroy,
};

vmt_tap_controller rec_new(rec_ctl **out)
{
    rec_ctl *r = g_new0(rec_ctl, 1);
    r->log = g_array_new(FALSE, FALSE, sizeof(rec_call));
    r->traps = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    r->monitored = g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL);
    r->dead_views = g_hash_table_new(g_direct_hash, g_direct_equal);
    r->keep_log = true;
    *out = r;
    return (vmt_tap_controller){&rec_ops, r};
}

void rec_fail_nth(rec_ctl *r, unsigned nth, vmt_status st)
{
    r->fail_at = nth ? r->calls + nth : 0;
    r->fail_more = 0;
    r->fail_status = st;
}

void rec_fail_run(rec_ctl *r, unsigned nth, unsigned count, vmt_status st)
{
    rec_fail_nth(r, nth, st);
    r->fail_more = count ? count - 1 : 0;
}

void rec_kill_view(rec_ctl *r, vmt_view view)
{
    g_hash_table_add(r->dead_views, GUINT_TO_POINTER(view + 1u));
}

void rec_revive_view(rec_ctl *r, vmt_view view)
{
    g_hash_table_remove(r->dead_views, GUINT_TO_POINTER(view + 1u));
}

void rec_clear_log(rec_ctl *r)
{
    g_array_set_size(r->log, 0);
}

size_t rec_ntraps(const rec_ctl *r)
{
    return g_hash_table_size(r->traps);
}

size_t rec_nmonitored(const rec_ctl *r)
{
    return g_hash_table_size(r->monitored);
}

bool rec_has_trap(const rec_ctl *r, vmt_view view, vmt_pa pa)
{
    return has(r->traps, vkey(view, pa));
}

bool rec_is_monitored(const rec_ctl *r, vmt_view view, vmt_gfn gfn)
{
    return has(r->monitored, vkey(view, gfn));
}

char *rec_log_str(const rec_ctl *r)
{
    GString *s = g_string_new(NULL);
    static const char names[] = "?IRMU";
    for (guint i = 0; i < r->log->len; i++) {
        rec_call *c = &g_array_index(r->log, rec_call, i);
        g_string_append_printf(s, "%s%c%u:%llx%s", i ? " " : "", names[c->op], c->view,
                               (unsigned long long)c->addr, c->result ? "!" : "");
    }
    return g_string_free(s, FALSE);
}

typedef struct match_ctx {
    const rec_ctl *r;
    GHashTable *traps, *pages;
    bool ok;
} match_ctx;

/* Entries of a set of vkeys outside dead views. */
static size_t live_count(const rec_ctl *r, GHashTable *set)
{
    size_t n = 0;
    GHashTableIter it;
    gpointer k, v;
    g_hash_table_iter_init(&it, set);
    while (g_hash_table_iter_next(&it, &k, &v))
        n += !dead(r, (vmt_view)(*(uint64_t *)k >> 52));
    return n;
}

static void match_arm(void *user, const vmt_breakpoint *bp, vmt_gfn gfn)
{
    match_ctx *m = user;
    if (dead(m->r, bp->view)) /* a destroyed view holds nothing */
        return;
    uint64_t t = vkey(bp->view, vmt_pa_in_gfn(gfn, bp->ctx.va));
    uint64_t p = vkey(bp->view, gfn);
    if (!has(m->r->traps, t) || !has(m->r->monitored, p))
        m->ok = false;
    if (!has(m->traps, t))
        put(m->traps, t);
    if (!has(m->pages, p))
        put(m->pages, p);
}

bool rec_matches_bpm(const rec_ctl *r, const vmt_bpm *bpm)
{
    match_ctx m = {r, g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL),
                   g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL), true};
    vmt_bpm_foreach_arm(bpm, match_arm, &m);
    bool ok = m.ok && g_hash_table_size(m.traps) == live_count(r, r->traps) &&
              g_hash_table_size(m.pages) == live_count(r, r->monitored);
    g_hash_table_destroy(m.traps);
    g_hash_table_destroy(m.pages);
    return ok;
}

vmt_event rec_event(vmt_view view, vmt_va va, vmt_pa cr3, vmt_gfn gfn)
{
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.has_view = true;
    ev.view = view;
    ev.reason = VMT_EVENT_SOFTWARE_BREAKPOINT;
    ev.regs.rip = va;
    ev.regs.cr3 = cr3;
    ev.u.software_breakpoint.gfn = gfn;
    ev.u.software_breakpoint.insn_len = 1;
    return ev;
}
