// SPDX-License-Identifier: MIT
/* The operation decoder and the reference model (see test_bpm_model.h).
 *
 * The model is a flat array of claims searched linearly, written straight
 * from docs/api.md (breakpoint manager): nothing in it shares code or structure with the
 * manager. A small universe (3 views, 2 keys, 3 roots, 6 addresses on 2
 * pages, 4 frames) makes collisions (same frame, same address, several
 * keys, global vs. non-global) common. */
#include "test_bpm_model.h"

#include <glib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpm/bpm_internal.h"
#include "bpm/controllers.h"
#include "test_bpm_rec.h"
#include "vmitap/mock.h"

#define NV 3
#define NK 2
#define NR 3
#define NVA 6
#define NF 4
#define NOFF 4
#define GFN0 0x10u
#define MAX_GFN 0x1000u
#define MAXC 256

static const vmt_va vas[NVA] = {0x400010, 0x400020, 0x400800, 0x401010, 0x401020, 0x401ff0};
static const unsigned offs[NOFF] = {0x010, 0x020, 0x800, 0xff0};

typedef struct mclaim {
    bool used;
    vmt_view view;
    uint64_t key;
    vmt_va va;
    vmt_pa root;
    bool global;
    uintptr_t tag;
    bool pending;
    unsigned arms; /* bit i: armed on frame GFN0 + i */
} mclaim;

struct harness {
    harness_mode mode;
    vmt_core *core;
    vmt_mock *mock;
    vmt_bpm *bpm;
    rec_ctl *rec;
    vmt_pa roots[NR];
    mclaim c[MAXC];
    unsigned fault_nth; /* a fault armed for the next operation */
    unsigned sweep_nth; /* harness_sweep: the fault for the next operation */
    bool sweep_fired;   /* ... and whether it fired */
    bool no_faults;     /* harness_sweep: OP_FAULT does nothing */
    uint64_t ops, faults;
    bool trace; /* VMT_BPM_TRACE set: every operation on stderr */
    char err[4096];
};

static uint8_t pattern(vmt_gfn gfn, unsigned off)
{
    return (uint8_t)(gfn * 13 + off * 5 + 3);
}

/* ---- the reference model ---- */

static mclaim *m_find(harness *h, vmt_view view, uint64_t key, vmt_va va, vmt_pa root)
{
    for (int i = 0; i < MAXC; i++) {
        mclaim *c = &h->c[i];
        if (c->used && c->view == view && c->key == key && c->va == va && c->root == root)
            return c;
    }
    return NULL;
}

/* The root every global claim at (view, va) carries, if there is one. */
static bool m_canonical(harness *h, vmt_view view, vmt_va va, vmt_pa *root)
{
    for (int i = 0; i < MAXC; i++) {
        mclaim *c = &h->c[i];
        if (c->used && c->global && c->view == view && c->va == va) {
            *root = c->root;
            return true;
        }
    }
    return false;
}

static mclaim *m_new(harness *h, const vmt_breakpoint *bp, vmt_pa root)
{
    for (int i = 0; i < MAXC; i++) {
        mclaim *c = &h->c[i];
        if (!c->used) {
            *c = (mclaim){.used = true,
                          .view = bp->view,
                          .key = bp->key,
                          .va = bp->ctx.va,
                          .root = root,
                          .global = bp->global,
                          .tag = bp->tag};
            return c;
        }
    }
    return NULL; /* cannot happen: the universe has fewer claims */
}

static vmt_pa m_resolve(harness *h, const vmt_breakpoint *bp)
{
    vmt_pa canon;
    if (bp->global && m_canonical(h, bp->view, bp->ctx.va, &canon))
        return canon;
    return bp->ctx.root;
}

/* docs/api.md, breakpoint manager semantics: a claim is (view, key, ctx), a global bp's ctx taking
 * the canonical root of its (view, va); re-inserting a claim with the other
 * global flag conflicts, nothing else does (a non-global claim beside a
 * global one under another root is accepted). */
static bool m_conflict(harness *h, const vmt_breakpoint *bp)
{
    mclaim *c = m_find(h, bp->view, bp->key, bp->ctx.va, m_resolve(h, bp));
    return c && c->global != bp->global;
}

static vmt_status m_insert(harness *h, const vmt_breakpoint *bp, int frame, bool *inserted)
{
    if (m_conflict(h, bp))
        return VMT_E_CONFLICT;
    vmt_pa root = m_resolve(h, bp);
    mclaim *c = m_find(h, bp->view, bp->key, bp->ctx.va, root);
    if (frame < 0) {
        *inserted = !c || !c->pending;
        if (!c)
            c = m_new(h, bp, root);
        c->pending = true;
        return VMT_OK;
    }
    if (c && (c->arms & (1u << frame))) {
        *inserted = false;
        return VMT_OK;
    }
    if (!c)
        c = m_new(h, bp, root);
    c->arms |= 1u << frame;
    c->pending = false;
    *inserted = true;
    return VMT_OK;
}

static bool m_remove(harness *h, const vmt_breakpoint *bp)
{
    mclaim *c = m_find(h, bp->view, bp->key, bp->ctx.va, m_resolve(h, bp));
    if (!c || c->global != bp->global)
        return false;
    c->used = false;
    return true;
}

/* frame < 0: armed anywhere. */
static mclaim *m_claim_at(harness *h, vmt_view view, uint64_t key, vmt_va va, vmt_pa root,
                          int frame)
{
    unsigned want = frame < 0 ? ~0u : 1u << frame;
    mclaim *c = m_find(h, view, key, va, root);
    if (c && (c->arms & want))
        return c;
    vmt_pa canon;
    if (m_canonical(h, view, va, &canon) && canon != root) {
        c = m_find(h, view, key, va, canon);
        if (c && c->global && (c->arms & want))
            return c;
    }
    return NULL;
}

static bool m_page_armed(harness *h, vmt_view view, int frame)
{
    for (int i = 0; i < MAXC; i++)
        if (h->c[i].used && h->c[i].view == view && (h->c[i].arms & (1u << frame)))
            return true;
    return false;
}

static vmt_removal m_remove_by_event(harness *h, vmt_view view, int frame, vmt_va va, vmt_pa root,
                                     uint64_t key)
{
    mclaim *t = m_claim_at(h, view, key, va, root, frame);
    if (!t)
        return VMT_REMOVED_NONE;
    for (vmt_view v = 0; v < NV; v++) {
        if (v == view)
            continue;
        mclaim *c = t->global ? m_claim_at(h, v, key, t->va, t->root, -1)
                              : m_find(h, v, key, t->va, t->root);
        if (c && c->global == t->global && c->arms)
            c->used = false;
    }
    t->used = false;
    return m_page_armed(h, view, frame) ? VMT_REMOVED_SOME : VMT_REMOVED_LAST;
}

static bool m_remove_by_view(harness *h, vmt_view view)
{
    bool any = false;
    for (int i = 0; i < MAXC; i++)
        if (h->c[i].used && h->c[i].view == view) {
            h->c[i].used = false;
            any = true;
        }
    return any;
}

static bool m_page_out(harness *h, vmt_view view, int frame)
{
    bool any = false;
    for (int i = 0; i < MAXC; i++) {
        mclaim *c = &h->c[i];
        if (c->used && c->view == view && (c->arms & (1u << frame))) {
            c->arms &= ~(1u << frame);
            c->pending = true;
            any = true;
        }
    }
    return any;
}

static bool m_page_in(harness *h, vmt_view view, vmt_va va, vmt_pa root, int frame)
{
    vmt_pa canon;
    bool has_canon = m_canonical(h, view, va, &canon) && canon != root;
    bool any = false;
    for (int i = 0; i < MAXC; i++) {
        mclaim *c = &h->c[i];
        if (!c->used || !c->pending || c->view != view || c->va != va)
            continue;
        if (c->root == root || (has_canon && c->global && c->root == canon)) {
            c->arms |= 1u << frame;
            c->pending = false;
            any = true;
        }
    }
    return any;
}

static bool m_contains_by_address(harness *h, vmt_va va, vmt_pa root, uint64_t key)
{
    for (vmt_view v = 0; v < NV; v++)
        if (m_claim_at(h, v, key, va, root, -1))
            return true;
    return false;
}

/* ---- fingerprints of both sides ---- */

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ull;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dull;
    return x ^ (x >> 33);
}

static uint64_t fp_claim(bool pending, const vmt_breakpoint *bp, vmt_gfn gfn)
{
    uint64_t x = mix(bp->view * 3u + pending);
    x = mix(x ^ bp->key);
    x = mix(x ^ bp->ctx.va);
    x = mix(x ^ bp->ctx.root);
    x = mix(x ^ bp->global);
    x = mix(x ^ bp->tag);
    return mix(x ^ gfn);
}

typedef struct fp {
    uint64_t sum;
    size_t n;
    GString *text; /* optional listing */
} fp;

static void fp_arm(void *user, const vmt_breakpoint *bp, vmt_gfn gfn)
{
    fp *f = user;
    f->sum += fp_claim(false, bp, gfn);
    f->n++;
    if (f->text)
        g_string_append_printf(f->text, " [v%u k%llu %llx/%llx%s t%lu @%llx]", bp->view,
                               (unsigned long long)bp->key, (unsigned long long)bp->ctx.va,
                               (unsigned long long)bp->ctx.root, bp->global ? " g" : "",
                               (unsigned long)bp->tag, (unsigned long long)gfn);
}

static void fp_pending(void *user, const vmt_breakpoint *bp)
{
    fp *f = user;
    f->sum += fp_claim(true, bp, 0);
    f->n++;
    if (f->text)
        g_string_append_printf(f->text, " [v%u k%llu %llx/%llx%s t%lu pending]", bp->view,
                               (unsigned long long)bp->key, (unsigned long long)bp->ctx.va,
                               (unsigned long long)bp->ctx.root, bp->global ? " g" : "",
                               (unsigned long)bp->tag);
}

static void model_fp(harness *h, fp *f)
{
    for (int i = 0; i < MAXC; i++) {
        mclaim *c = &h->c[i];
        if (!c->used)
            continue;
        vmt_breakpoint bp = {.ctx = vmt_ctx(c->va, c->root),
                             .view = c->view,
                             .global = c->global,
                             .key = c->key,
                             .tag = c->tag};
        for (int fr = 0; fr < NF; fr++)
            if (c->arms & (1u << fr))
                fp_arm(f, &bp, GFN0 + (unsigned)fr);
        if (c->pending)
            fp_pending(f, &bp);
    }
}

static void bpm_fp(harness *h, fp *f)
{
    vmt_bpm_foreach_arm(h->bpm, fp_arm, f);
    vmt_bpm_foreach_pending(h->bpm, fp_pending, f);
}

static void model_stats(harness *h, vmt_bpm_stats *s)
{
    memset(s, 0, sizeof *s);
    s->sz = sizeof *s;
    bool page[NV][NF] = {{false}}, glob[NV][NVA] = {{false}};
    for (int i = 0; i < MAXC; i++) {
        mclaim *c = &h->c[i];
        if (!c->used)
            continue;
        s->pending += c->pending;
        for (int fr = 0; fr < NF; fr++)
            if (c->arms & (1u << fr)) {
                s->active++;
                page[c->view][fr] = true;
            }
        if (c->global)
            for (int a = 0; a < NVA; a++)
                glob[c->view][a] |= vas[a] == c->va;
    }
    for (int v = 0; v < NV; v++) {
        for (int fr = 0; fr < NF; fr++)
            s->pages += page[v][fr];
        for (int a = 0; a < NVA; a++)
            s->global += glob[v][a];
    }
}

/* Formats into h->err; the arguments may themselves point into h->err. */
static const char *fail(harness *h, const char *fmt, ...)
{
    char buf[sizeof h->err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(h->err, buf, sizeof buf);
    return h->err;
}

/* ---- consistency of the controller's / guest's side ---- */

typedef struct guest_map {
    bool at[NV][NF][NOFF];
    bool page[NV][NF];
    bool stray;
} guest_map;

static void guest_arm(void *user, const vmt_breakpoint *bp, vmt_gfn gfn)
{
    guest_map *m = user;
    if (bp->view >= NV || gfn < GFN0 || gfn >= GFN0 + NF) {
        m->stray = true;
        return;
    }
    for (int o = 0; o < NOFF; o++)
        if ((bp->ctx.va & 0xfff) == offs[o])
            m->at[bp->view][gfn - GFN0][o] = true;
    m->page[bp->view][gfn - GFN0] = true;
}

static const char *check_guest(harness *h)
{
    guest_map m;
    memset(&m, 0, sizeof m);
    vmt_bpm_foreach_arm(h->bpm, guest_arm, &m);
    if (m.stray)
        return fail(h, "armed outside the test frames");
    size_t pages = 0;
    for (int v = 0; v < NV; v++)
        for (int fr = 0; fr < NF; fr++) {
            vmt_gfn gfn = GFN0 + (unsigned)fr, backing;
            vmt_access a;
            if (vmt_mock_view_backing(h->mock, (vmt_view)v, gfn, &backing) ||
                vmt_core_get_access(h->core, gfn, (vmt_view)v, &a))
                return fail(h, "mock query failed");
            bool armed = m.page[v][fr];
            pages += armed;
            if (armed != (backing != gfn) || a != (armed ? VMT_ACCESS_X : VMT_ACCESS_RWX))
                return fail(h, "view %d frame 0x%llx: armed %d, backing 0x%llx, access %d", v,
                            (unsigned long long)gfn, armed, (unsigned long long)backing, a);
            for (int o = 0; o < NOFF; o++) {
                uint8_t b, own;
                vmt_pa pa = vmt_pa_from_gfn(gfn) + offs[o];
                vmt_mock_view_read(h->mock, (vmt_view)v, pa, &b, 1);
                vmt_mock_peek(h->mock, pa, &own, 1);
                uint8_t want = m.at[v][fr][o] ? 0xCC : pattern(gfn, offs[o]);
                if (b != want || own != pattern(gfn, offs[o]))
                    return fail(
                        h, "view %d pa 0x%llx: guest sees 0x%02x, want 0x%02x (own frame 0x%02x)",
                        v, (unsigned long long)pa, b, want, own);
            }
        }
    if (vmt_mock_allocated_gfns(h->mock) != pages)
        return fail(h, "%zu shadow frames for %zu armed pages", vmt_mock_allocated_gfns(h->mock),
                    pages);
    return NULL;
}

static const char *check_consistent(harness *h)
{
    if (vmt_bpm_check(h->bpm) != VMT_OK)
        return fail(h, "vmt_bpm_check failed");
    if (h->mode == HARNESS_RECORDING) {
        if (h->rec->violations)
            return fail(h, "controller contract broken (%u violations)", h->rec->violations);
        if (!rec_matches_bpm(h->rec, h->bpm))
            return fail(h, "controller traps/monitors differ from the manager's arms");
        return NULL;
    }
    return check_guest(h);
}

static const char *compare_state(harness *h)
{
    fp a = {0}, b = {0};
    bpm_fp(h, &a);
    model_fp(h, &b);
    if (a.sum != b.sum || a.n != b.n) {
        a = (fp){.text = g_string_new(NULL)};
        b = (fp){.text = g_string_new(NULL)};
        bpm_fp(h, &a);
        model_fp(h, &b);
        fail(h, "state differs:\n  bpm:  %s\n  model:%s", a.text->str, b.text->str);
        g_string_free(a.text, TRUE);
        g_string_free(b.text, TRUE);
        return h->err;
    }
    VMT_OPTS(vmt_bpm_stats, s);
    VMT_OPTS(vmt_bpm_stats, ms);
    vmt_bpm_stats_get(h->bpm, &s);
    model_stats(h, &ms);
    if (memcmp(&s, &ms, sizeof s) != 0)
        return fail(h, "stats differ: bpm %zu/%zu/%zu/%zu, model %zu/%zu/%zu/%zu", s.active,
                    s.pending, s.pages, s.global, ms.active, ms.pending, ms.pages, ms.global);
    return check_consistent(h);
}

/* ---- the state after a failed call ----
 *
 * A failed call either changed nothing (a single (claim, frame) step:
 * insert, insert_with_hint) or stopped a sequence of such steps part way
 * (bpm.c: every step is done whole or undone): every item of the
 * manager's state (an armed (claim, frame) pair or a pending claim) is
 * then in the state before the call or in the one the model gives after
 * it, and every item in both is still there. */

typedef struct items {
    GHashTable *set; /* fingerprints of the items */
} items;

static void items_arm(void *user, const vmt_breakpoint *bp, vmt_gfn gfn)
{
    uint64_t *k = g_new(uint64_t, 1);
    *k = fp_claim(false, bp, gfn);
    g_hash_table_add(((items *)user)->set, k);
}

static void items_pending(void *user, const vmt_breakpoint *bp)
{
    uint64_t *k = g_new(uint64_t, 1);
    *k = fp_claim(true, bp, 0);
    g_hash_table_add(((items *)user)->set, k);
}

static items items_new(void)
{
    return (items){g_hash_table_new_full(g_int64_hash, g_int64_equal, g_free, NULL)};
}

static items model_items(const mclaim *c)
{
    items it = items_new();
    for (int i = 0; i < MAXC; i++) {
        if (!c[i].used)
            continue;
        vmt_breakpoint bp = {.ctx = vmt_ctx(c[i].va, c[i].root),
                             .view = c[i].view,
                             .global = c[i].global,
                             .key = c[i].key,
                             .tag = c[i].tag};
        for (int fr = 0; fr < NF; fr++)
            if (c[i].arms & (1u << fr))
                items_arm(&it, &bp, GFN0 + (unsigned)fr);
        if (c[i].pending)
            items_pending(&it, &bp);
    }
    return it;
}

static bool items_subset(GHashTable *a, GHashTable *b, GHashTable *c)
{
    GHashTableIter i;
    gpointer k;
    g_hash_table_iter_init(&i, a);
    while (g_hash_table_iter_next(&i, &k, NULL))
        if (!g_hash_table_contains(b, k) && (!c || !g_hash_table_contains(c, k)))
            return false;
    return true;
}

/* Compares the manager after a failed call with before[] (the model
 * before the call) and h->c (the model after it). */
static const char *check_after_fault(harness *h, const mclaim *before, bool atomic)
{
    items now = items_new(), was = model_items(before), will = model_items(h->c);
    vmt_bpm_foreach_arm(h->bpm, items_arm, &now);
    vmt_bpm_foreach_pending(h->bpm, items_pending, &now);
    const char *e = NULL;
    if (atomic && (g_hash_table_size(now.set) != g_hash_table_size(was.set) ||
                   !items_subset(now.set, was.set, NULL)))
        e = "the state changed";
    else if (!items_subset(now.set, was.set, will.set))
        e = "an item neither before nor after the call";
    else {
        /* items in both states must have stayed */
        GHashTableIter i;
        gpointer k;
        g_hash_table_iter_init(&i, was.set);
        while (!e && g_hash_table_iter_next(&i, &k, NULL))
            if (g_hash_table_contains(will.set, k) && !g_hash_table_contains(now.set, k))
                e = "an item of both states is gone";
    }
    g_hash_table_destroy(now.set);
    g_hash_table_destroy(was.set);
    g_hash_table_destroy(will.set);
    return e ? fail(h, "%s", e) : NULL;
}

/* ---- setup ---- */

harness *harness_new(harness_mode mode)
{
    harness *h = g_new0(harness, 1);
    h->mode = mode;
    h->trace = getenv("VMT_BPM_TRACE") != NULL;
    VMT_OPTS(vmt_mock_opts, o, .max_gfn = MAX_GFN);
    if (vmt_mock_core_new(&o, &h->core, &h->mock) != VMT_OK)
        g_error("mock");
    for (int v = 1; v < NV; v++) {
        vmt_view id;
        vmt_core_create_view(h->core, VMT_ACCESS_RWX, &id);
    }
    for (int r = 0; r < NR; r++)
        vmt_mock_new_root(h->mock, &h->roots[r]);
    uint8_t buf[VMT_PAGE_SIZE];
    for (unsigned fr = 0; fr < NF; fr++) {
        for (unsigned i = 0; i < VMT_PAGE_SIZE; i++)
            buf[i] = pattern(GFN0 + fr, i);
        vmt_mock_poke(h->mock, vmt_pa_from_gfn(GFN0 + fr), buf, sizeof buf);
    }
    vmt_tap_controller c;
    if (mode == HARNESS_RECORDING) {
        c = rec_new(&h->rec);
        h->rec->keep_log = false;
    } else {
        vmt_breakpoint_controller_new(&c);
    }
    if (vmt_bpm_new(c, &h->bpm) != VMT_OK)
        g_error("bpm");
    return h;
}

void harness_free(harness *h)
{
    if (!h)
        return;
    vmt_bpm_free(h->bpm);
    vmt_core_free(h->core);
    g_free(h);
}

uint64_t harness_ops(const harness *h)
{
    return h->ops;
}
uint64_t harness_faults(const harness *h)
{
    return h->faults;
}

/* ---- operations ---- */

typedef enum {
    OP_INSERT_HINT,
    OP_INSERT,
    OP_REMOVE,
    OP_REMOVE_HINT,
    OP_PAGE_OUT,
    OP_PAGE_IN,
    OP_REMOVE_BY_EVENT,
    OP_REMOVE_BY_VIEW,
    OP_CLEAR,
    OP_MAP,
    OP_FAULT,
    OP_QUERY
} op_kind;

typedef struct op {
    op_kind kind;
    vmt_breakpoint bp;
    int frame; /* -1: no frame (pending) */
    vmt_view view;
    vmt_va va;
    vmt_pa root;
    uint64_t key;
} op;

typedef struct op_result {
    bool flag;
    vmt_removal removal;
} op_result;

typedef struct input {
    const uint8_t *p;
    size_t n, i;
} input;

static uint8_t rd(input *in)
{
    return in->i < in->n ? in->p[in->i++] : (in->i++, 0);
}

static op_kind decode_kind(uint8_t b)
{
    static const op_kind table[32] = {
        OP_INSERT_HINT,
        OP_INSERT_HINT,
        OP_INSERT_HINT,
        OP_INSERT_HINT,
        OP_INSERT_HINT,
        OP_INSERT_HINT,
        OP_INSERT_HINT,
        OP_INSERT,
        OP_INSERT,
        OP_REMOVE,
        OP_REMOVE,
        OP_REMOVE_HINT,
        OP_PAGE_OUT,
        OP_PAGE_OUT,
        OP_PAGE_OUT,
        OP_PAGE_IN,
        OP_PAGE_IN,
        OP_PAGE_IN,
        OP_PAGE_IN,
        OP_REMOVE_BY_EVENT,
        OP_REMOVE_BY_EVENT,
        OP_REMOVE_BY_VIEW,
        OP_CLEAR,
        OP_MAP,
        OP_MAP,
        OP_MAP,
        OP_FAULT,
        OP_FAULT,
        OP_QUERY,
        OP_QUERY,
        OP_QUERY,
        OP_INSERT_HINT,
    };
    return table[b % 32];
}

static void decode(harness *h, input *in, op *o)
{
    memset(o, 0, sizeof *o);
    o->kind = decode_kind(rd(in));
    uint8_t a = rd(in), b = rd(in), c = rd(in);
    o->view = a % NV;
    o->key = (a / NV) % NK;
    o->va = vas[b % NVA];
    o->root = h->roots[(b / NVA) % NR];
    o->frame = c % 5 == 4 ? -1 : c % 5;
    o->bp = (vmt_breakpoint){.ctx = vmt_ctx(o->va, o->root),
                             .view = o->view,
                             .global = (a / (NV * NK)) % 3 == 0,
                             .key = o->key,
                             .tag = c / 5};
}

static vmt_pa frame_pa(int frame, vmt_va va)
{
    return vmt_pa_in_gfn(GFN0 + (unsigned)frame, va);
}

/* Translation in the model: read back what OP_MAP wrote (the mock's tables
 * are the page tables; the model asks them through a separate walk). */
static int m_translate(harness *h, vmt_addr_ctx ctx, vmt_status *st)
{
    vmt_walk w;
    *st = vmt_core_walk(h->core, ctx, &w);
    if (*st != VMT_OK)
        return -1;
    return (int)(vmt_gfn_from_pa(w.pa) - GFN0);
}

static vmt_event sw_event(vmt_view view, int frame, vmt_va va, vmt_pa root)
{
    vmt_event ev;
    memset(&ev, 0, sizeof ev);
    ev.has_view = true;
    ev.view = view;
    ev.reason = VMT_EVENT_SOFTWARE_BREAKPOINT;
    ev.regs.rip = va;
    ev.regs.cr3 = root | 0x5; /* PCID-ish low bits are masked off */
    ev.u.software_breakpoint.gfn = GFN0 + (unsigned)frame;
    return ev;
}

static vmt_status bpm_do(harness *h, const op *o, op_result *r)
{
    vmt_pa pa = o->frame >= 0 ? frame_pa(o->frame, o->va) : 0;
    const vmt_pa *hint = o->frame >= 0 ? &pa : NULL;
    switch (o->kind) {
    case OP_INSERT_HINT:
        return vmt_bpm_insert_with_hint(h->bpm, h->core, &o->bp, hint, &r->flag);
    case OP_INSERT:
        return vmt_bpm_insert(h->bpm, h->core, &o->bp, &r->flag);
    case OP_REMOVE:
        return vmt_bpm_remove(h->bpm, h->core, &o->bp, &r->flag);
    case OP_REMOVE_HINT:
        return vmt_bpm_remove_with_hint(h->bpm, h->core, &o->bp, hint, &r->flag);
    case OP_PAGE_OUT:
    case OP_PAGE_IN: {
        int fr = o->frame < 0 ? 0 : o->frame;
        vmt_ptm_event ev = {.kind = o->kind == OP_PAGE_IN ? VMT_PTM_PAGE_IN : VMT_PTM_PAGE_OUT,
                            .view = o->view,
                            .ctx = vmt_ctx(o->va, o->root),
                            .pa = frame_pa(fr, o->va),
                            .tag = 1};
        return vmt_bpm_handle_ptm_event(h->bpm, h->core, &ev, &r->flag);
    }
    case OP_REMOVE_BY_EVENT: {
        vmt_event ev = sw_event(o->view, o->frame < 0 ? 0 : o->frame, o->va, o->root);
        return vmt_bpm_remove_by_event(h->bpm, h->core, &ev, o->key, &r->removal);
    }
    case OP_REMOVE_BY_VIEW:
        return vmt_bpm_remove_by_view(h->bpm, h->core, o->view, &r->flag);
    case OP_CLEAR:
        return vmt_bpm_clear(h->bpm, h->core);
    default:
        return VMT_E_INVALID;
    }
}

static vmt_status model_do(harness *h, const op *o, op_result *r)
{
    int fr = o->frame < 0 ? 0 : o->frame;
    switch (o->kind) {
    case OP_INSERT_HINT:
        return m_insert(h, &o->bp, o->frame, &r->flag);
    case OP_INSERT: {
        vmt_status st;
        int f = m_translate(h, o->bp.ctx, &st);
        if (st != VMT_OK && st != VMT_E_TRANSLATION)
            return st;
        return m_insert(h, &o->bp, f, &r->flag);
    }
    case OP_REMOVE:
    case OP_REMOVE_HINT:
        r->flag = m_remove(h, &o->bp);
        return VMT_OK;
    case OP_PAGE_OUT:
        r->flag = m_page_out(h, o->view, fr);
        return VMT_OK;
    case OP_PAGE_IN:
        r->flag = m_page_in(h, o->view, o->va, o->root, fr);
        return VMT_OK;
    case OP_REMOVE_BY_EVENT:
        r->removal = m_remove_by_event(h, o->view, fr, o->va, o->root, o->key);
        return VMT_OK;
    case OP_REMOVE_BY_VIEW:
        r->flag = m_remove_by_view(h, o->view);
        return VMT_OK;
    case OP_CLEAR:
        memset(h->c, 0, sizeof h->c);
        return VMT_OK;
    default:
        return VMT_E_INVALID;
    }
}

static void do_map(harness *h, const op *o)
{
    vmt_va page = o->va & ~0xfffull;
    if (o->frame < 0)
        vmt_mock_unmap(h->mock, o->root, page, 1); /* VMT_E_TRANSLATION if never mapped: fine */
    else
        vmt_mock_map(h->mock, o->root, page, vmt_pa_from_gfn(GFN0 + (unsigned)o->frame),
                     VMT_MOCK_4K, 0);
}

static const char *do_query(harness *h, const op *o)
{
    int fr = o->frame < 0 ? 0 : o->frame;
    vmt_event ev = sw_event(o->view, fr, o->va, o->root);
    vmt_breakpoint got;
    bool b = vmt_bpm_get_by_event(h->bpm, &ev, o->key, &got);
    mclaim *m = m_claim_at(h, o->view, o->key, o->va, o->root, fr);
    if (b != (m != NULL) || vmt_bpm_contains_by_event(h->bpm, &ev, o->key) != b)
        return fail(h, "get_by_event: bpm %d, model %d", b, m != NULL);
    if (b && (got.view != m->view || got.key != m->key || got.ctx.va != m->va ||
              got.ctx.root != m->root || got.global != m->global || got.tag != m->tag))
        return fail(h, "get_by_event returned another breakpoint");
    bool ca = vmt_bpm_contains_by_address(h->bpm, vmt_ctx(o->va, o->root), o->key);
    if (ca != m_contains_by_address(h, o->va, o->root, o->key))
        return fail(h, "contains_by_address: bpm %d", ca);
    return NULL;
}

static void arm_fault(harness *h)
{
    if (h->sweep_nth)
        h->fault_nth = h->sweep_nth;
    if (!h->fault_nth)
        return;
    if (h->mode == HARNESS_RECORDING)
        rec_fail_nth(h->rec, h->fault_nth, VMT_E_DRIVER);
    else
        vmt_mock_fail_nth_any(h->mock, h->fault_nth, VMT_E_DRIVER);
}

/* Cancels the armed fault; true if it fired. */
static bool disarm_fault(harness *h, uint64_t injected_before)
{
    if (!h->fault_nth)
        return false;
    h->fault_nth = 0;
    if (h->mode == HARNESS_RECORDING) {
        bool fired = h->rec->fail_at == 0;
        rec_fail_nth(h->rec, 0, VMT_OK);
        return fired;
    }
    vmt_mock_fail_nth_any(h->mock, 0, VMT_OK);
    return vmt_mock_injected(h->mock) != injected_before;
}

static const char *op_name(op_kind k)
{
    static const char *names[] = {"insert_with_hint",
                                  "insert",
                                  "remove",
                                  "remove_with_hint",
                                  "page_out",
                                  "page_in",
                                  "remove_by_event",
                                  "remove_by_view",
                                  "clear",
                                  "map",
                                  "fault",
                                  "query"};
    return names[k];
}

static const char *run_op(harness *h, const op *o);

const char *harness_step(harness *h, const uint8_t *data, size_t len, size_t *used)
{
    input in = {data, len, 0};
    op o;
    decode(h, &in, &o);
    *used = in.i < len ? in.i : len;
    if (*used == 0)
        *used = 1;
    h->ops++;
    if (h->trace)
        fprintf(stderr, "%llu: %s view %u key %llu va %llx root %llx%s frame %d tag %lu%s\n",
                (unsigned long long)h->ops, op_name(o.kind), o.view, (unsigned long long)o.key,
                (unsigned long long)o.va, (unsigned long long)o.root, o.bp.global ? " global" : "",
                o.frame, (unsigned long)o.bp.tag, h->fault_nth ? " (fault armed)" : "");
    switch (o.kind) {
    case OP_MAP:
        do_map(h, &o);
        return NULL;
    case OP_FAULT:
        if (!h->no_faults)
            h->fault_nth = 1 + (unsigned)(o.bp.tag % 6);
        return NULL;
    case OP_QUERY:
        return do_query(h, &o);
    case OP_CLEAR:
        if (o.bp.tag % 8) /* keep the state growing most of the time */
            return do_query(h, &o);
        break;
    default:
        break;
    }
    if (h->trace) {
        fp a = {.text = g_string_new(NULL)};
        bpm_fp(h, &a);
        fprintf(stderr, "   before:%s\n", a.text->str);
        g_string_free(a.text, TRUE);
    }
    /* Half of the remove_by_view ops (recording controller) find the view
     * already destroyed: every controller call answers VIEW_NOT_FOUND,
     * which removal must tolerate. */
    bool killed = h->mode == HARNESS_RECORDING && o.kind == OP_REMOVE_BY_VIEW && o.bp.tag % 2 == 0;
    if (killed)
        rec_kill_view(h->rec, o.view);
    const char *e = run_op(h, &o);
    if (killed)
        rec_revive_view(h->rec, o.view);
    return e;
}

/* Runs o on the manager (with any armed fault) and on the model. */
static const char *run_op(harness *h, const op *op_)
{
    op o = *op_;
    uint64_t injected = vmt_mock_injected(h->mock);
    op_result r = {0}, mr = {0};
    static mclaim before[MAXC];
    memcpy(before, h->c, sizeof before);
    arm_fault(h);
    vmt_status st = bpm_do(h, &o, &r);
    bool fired = disarm_fault(h, injected);
    h->sweep_fired = fired;
    vmt_status mst = model_do(h, &o, &mr);
    const char *e;
    if (fired) {
        h->faults++;
        if (st == VMT_OK)
            return fail(h, "%s: injected fault fired, call reported success", op_name(o.kind));
        if ((e = check_consistent(h)))
            return fail(h, "%s after a fault: %s", op_name(o.kind), e);
        bool atomic = o.kind == OP_INSERT || o.kind == OP_INSERT_HINT;
        if ((e = check_after_fault(h, before, atomic)))
            return fail(h, "%s after a fault (%s): %s", op_name(o.kind), vmt_status_str(st), e);
        if ((st = bpm_do(h, &o, &r)) != mst)
            return fail(h, "%s retried after a fault: %s, model %s", op_name(o.kind),
                        vmt_status_str(st), vmt_status_str(mst));
    } else {
        if (st != mst)
            return fail(h, "%s: status %s, model %s", op_name(o.kind), vmt_status_str(st),
                        vmt_status_str(mst));
        if (o.kind == OP_REMOVE_BY_EVENT ? r.removal != mr.removal : r.flag != mr.flag)
            return fail(h, "%s: result %d, model %d", op_name(o.kind),
                        o.kind == OP_REMOVE_BY_EVENT ? (int)r.removal : r.flag,
                        o.kind == OP_REMOVE_BY_EVENT ? (int)mr.removal : mr.flag);
    }
    if ((e = compare_state(h)))
        return fail(h, "after %s (view %u key %llu va %llx root %llx%s frame %d): %s",
                    op_name(o.kind), o.view, (unsigned long long)o.key, (unsigned long long)o.va,
                    (unsigned long long)o.root, o.bp.global ? " global" : "", o.frame, e);
    return NULL;
}

const char *harness_finish(harness *h)
{
    if (vmt_bpm_clear(h->bpm, h->core) != VMT_OK)
        return fail(h, "final clear failed");
    memset(h->c, 0, sizeof h->c);
    const char *e = compare_state(h);
    if (e)
        return e;
    VMT_OPTS(vmt_bpm_stats, s);
    vmt_bpm_stats_get(h->bpm, &s);
    if (s.active || s.pending || s.pages || s.global)
        return fail(h, "not empty after clear");
    return NULL;
}

/* Operations are OP_BYTES bytes each (decode reads four). */
#define OP_BYTES 4

const char *harness_sweep(harness_mode mode, const uint8_t *data, size_t len, uint64_t *faults)
{
    static char err[4200];
    size_t nops = len / OP_BYTES;
    for (size_t k = 0; k < nops; k++) {
        for (unsigned n = 1;; n++) {
            harness *h = harness_new(mode);
            h->no_faults = true;
            const char *e = NULL;
            size_t used;
            for (size_t i = 0; i < k && !e; i++)
                e = harness_step(h, data + i * OP_BYTES, OP_BYTES, &used);
            if (!e) {
                h->sweep_nth = n;
                e = harness_step(h, data + k * OP_BYTES, OP_BYTES, &used);
                h->sweep_nth = 0;
            }
            bool fired = h->sweep_fired;
            h->sweep_fired = false;
            if (!e)
                e = harness_finish(h);
            if (e)
                snprintf(err, sizeof err, "operation %zu, fault at call %u: %s", k, n, e);
            harness_free(h);
            if (e)
                return err;
            if (!fired)
                break;
            (*faults)++;
        }
    }
    return NULL;
}
