// SPDX-License-Identifier: MIT
/* The breakpoint manager's data structures, shared by bpm.c (operations)
 * and bpm_check.c (consistency check, accessors). Nothing else includes it.
 *
 * A claim is one breakpoint per (view, key, ctx); a global claim's ctx
 * carries the canonical root of its (view, va). A claim exists while it is
 * pending (has a pending copy) or armed on at least one frame. Indexes:
 *
 *   claims   (key, ctx) -> chain of claims, one per view  ("locations per
 *            (key, ctx)": each claim lists the frames it is armed on)
 *   pages    (view, gfn) -> page: the claims armed on that frame and a
 *            count per page offset (one controller trap per (view, pa))
 *   views    view -> its pages (a list: "frames per view") and its pending
 *            claims by ctx ("pending claims per (view, ctx)")
 *   globals  (view, va) -> canonical root and number of global claims
 *   armed    every armed (claim, frame) pair with the claim's identity
 *            inline (armset.h): the hot path of contains_by_event
 *
 * The claims, pages, views and globals indexes are vmt_htab tables
 * (core/htab.h: a GHashTable that reports out-of-memory). The armed set
 * and the views' pending indexes (pendmap.h) are small open-addressing
 * tables of their own, where W1 measured that a GHashTable costs too much
 * (docs/PERFORMANCE.md).
 *
 * Out of memory: every operation makes its allocations (and reserves room
 * in the indexes) before it calls the controller, so that it either fails
 * with VMT_E_NOMEM before anything changed or commits without allocating.
 *
 * Hash tables store the record itself as key and value, with
 * hash and equality on the record's identity fields, so that a lookup
 * needs no allocation and an entry costs one pointer. Chained records (the
 * other views of a (key, ctx), the other keys pending at a (view, ctx))
 * hang off the record the table holds. */
#ifndef VMITAP_BPM_IMPL_H
#define VMITAP_BPM_IMPL_H

#include "bpm/armset.h"
#include "bpm/pendmap.h"
#include "core/htab.h"
#include "vmitap/bpm.h"

typedef struct bpm_page bpm_page;

/* One frame a claim is armed on, and the claim's slot in page->claims.
 * (The event lookup reads the armed set, not the claim: no gfn copy here.) */
typedef struct bpm_arm {
    bpm_page *page;
    uint32_t idx;
} bpm_arm;

typedef struct bpm_claim {
    uint64_t key;
    vmt_addr_ctx ctx;
    uintptr_t tag;
    vmt_view view;
    bool global;
    bool pending;      /* has a pending copy, linked in its view's pending index */
    bool claims_head;  /* the claims index holds this one (head of its chain) */
    bool pending_head; /* its view's pending index holds this one */
    uint16_t n_arms;   /* frames armed on */
    uint16_t arms_cap; /* 0: the one arm is inline (one_page, one_idx) */
    uint32_t one_idx;  /* in the padding: the claim is 72 bytes, an 80-byte malloc chunk */
    union {
        bpm_page *one_page;
        bpm_arm *many;
    } arms;
    struct bpm_claim *next_view;    /* same (key, ctx), another view */
    struct bpm_claim *next_pending; /* same (view, ctx), another key, also pending */
} bpm_claim;

typedef struct bpm_off {
    uint16_t off;   /* page offset of a trap */
    uint32_t count; /* claims armed at it */
} bpm_off;

struct bpm_page {
    uint64_t id;           /* (view, gfn) packed */
    bpm_page *prev, *next; /* in the view's page list */
    bpm_claim **claims;
    uint32_t n_claims, cap;
    bpm_off *offs;
    uint16_t n_offs, offs_cap;
    bool monitored; /* controller monitor done (false only after a double fault) */
};

typedef struct bpm_view {
    vmt_view view;
    bpm_page *pages; /* list head */
    size_t n_pages;
    bpm_pendmap pending; /* head claim of each (view, ctx) chain, by ctx */
    size_t n_pending;
} bpm_view;

typedef struct bpm_global {
    uint64_t id;    /* (view, va) packed */
    vmt_pa root;    /* canonical root */
    uint32_t count; /* global claims (pending or armed) at (view, va) */
    uint32_t seen;  /* scratch of vmt_bpm_check (which allocates nothing) */
} bpm_global;

struct vmt_bpm {
    vmt_tap_controller ctl;
    vmt_htab claims;  /* bpm_claim (chain heads) by (key, ctx) */
    vmt_htab pages;   /* bpm_page by id */
    vmt_htab views;   /* BPM_VIEW_KEY(view) -> bpm_view */
    vmt_htab globals; /* bpm_global by id */
    bpm_armset armed;    /* one entry per armed (claim, frame) pair */
    size_t n_arms;       /* armed (claim, frame) pairs */
    size_t n_pending;    /* pending claims */
    bool gc_views;       /* some view may have become empty */
    bpm_view *last_view; /* the view last looked up (NULL after a view is freed) */
    bpm_page *last_page; /* the page last armed on (NULL after it is freed) */
    bpm_page *spare;     /* a page (freed, or allocated ahead) for the next page_new */
};

#define BPM_VIEW_KEY(view) ((void *)(uintptr_t)(view))

/* Physical addresses have at most 52 bits (the AMD64 architectural limit),
 * so a gfn fits in the 48 low bits of a page id. */
#define BPM_PA_LIMIT (1ull << 52)
/* Frames one claim can be armed on. Its arms are a plain array searched
 * linearly: a claim is armed on one frame, or a few (a global address under
 * roots that map it differently), never on thousands. */
#define BPM_MAX_ARMS 4096u

static inline uint64_t bpm_page_id(vmt_view view, vmt_gfn gfn)
{
    return ((uint64_t)view << 48) | gfn;
}
static inline vmt_gfn bpm_page_gfn(const bpm_page *p)
{
    return p->id & ((1ull << 48) - 1);
}
static inline vmt_view bpm_page_view(const bpm_page *p)
{
    return (vmt_view)(p->id >> 48);
}
/* Canonical VAs have 48 significant bits. */
static inline uint64_t bpm_global_id(vmt_view view, vmt_va va)
{
    return ((uint64_t)view << 48) | (va & ((1ull << 48) - 1));
}
static inline unsigned bpm_va_off(vmt_va va)
{
    return (unsigned)(va & (VMT_PAGE_SIZE - 1));
}

/* Arm i of a claim: its page and its slot in page->claims. */
static inline bpm_page *bpm_arm_page(const bpm_claim *c, unsigned i)
{
    return c->arms_cap ? c->arms.many[i].page : c->arms.one_page;
}
static inline uint32_t bpm_arm_idx(const bpm_claim *c, unsigned i)
{
    return c->arms_cap ? c->arms.many[i].idx : c->one_idx;
}

/* Lookups shared with the checker. */
bpm_claim *bpm_claim_lookup(const vmt_bpm *bpm, vmt_view view, uint64_t key, vmt_addr_ctx ctx);
bpm_page *bpm_page_lookup(const vmt_bpm *bpm, vmt_view view, vmt_gfn gfn);
bpm_global *bpm_global_lookup(const vmt_bpm *bpm, vmt_view view, vmt_va va);
bpm_view *bpm_view_lookup(const vmt_bpm *bpm, vmt_view view);
vmt_breakpoint bpm_claim_breakpoint(const bpm_claim *c);

#endif /* VMITAP_BPM_IMPL_H */
