// SPDX-License-Identifier: MIT
/* The page-table monitor's indexes, shared by ptm.c and ptm_check.c.
 * See ptm.c for what they mean and how they change. */
#ifndef VMITAP_PTM_IMPL_H
#define VMITAP_PTM_IMPL_H

#include "core/htab.h"
#include "vmitap/ptm.h"

/* Memory comes from core/alloc.h and the indexes are vmt_htab tables, so
 * that out-of-memory is reported (VMT_E_NOMEM) instead of aborting as
 * GLib does: every allocation an operation needs is made before it changes
 * the guest. Dirty marks and the frames' address lists are intrusive and
 * need no allocation at all. */

typedef struct ptm_addr {
    vmt_addr_ctx ctx; /* hash key */
    uintptr_t tag;
    unsigned refs;                            /* monitor calls not yet matched by unmonitor */
    uint64_t seq;                             /* when it was first monitored: orders events */
    bool paged_in;                            /* the recorded walk reached a present leaf */
    vmt_walk walk;                            /* as last seen; walk.pa valid when paged_in */
    struct ptm_addr *frame_prev, *frame_next; /* in its frame's list while paged in */
} ptm_addr;

typedef struct ptm_entry {
    vmt_pa pa;              /* hash key */
    unsigned level_refs[4]; /* occurrences on recorded walks, [level - 1] */
    vmt_htab users;         /* ptm_addr * -> (void *)occurrences on its walk */
    uint64_t dirty;         /* bit n: a write of vCPU n touched it, not yet processed */
    struct ptm_entry *dirty_prev, *dirty_next; /* in its view's dirty list while dirty */
} ptm_entry;

/* vCPUs whose page-table writes the monitor tracks (vmt_ptm_mark_dirty_entry). */
#define PTM_MAX_VCPUS 64

typedef struct ptm_table {
    vmt_gfn gfn;      /* hash key */
    unsigned entries; /* monitored entries in the page; 0: restore owed */
    unsigned check;   /* scratch of vmt_ptm_check */
} ptm_table;

typedef struct ptm_view {
    vmt_view view;
    vmt_htab addrs;   /* &addr->ctx -> ptm_addr (owned) */
    vmt_htab entries; /* &entry->pa -> ptm_entry (owned) */
    vmt_htab tables;  /* &table->gfn -> ptm_table (owned) */
    vmt_htab frames;  /* &frame->gfn -> ptm_frame: who translates into a frame */
    ptm_entry *dirty; /* the entries with a dirty bit */
    size_t owed;      /* tables whose restore failed */
} ptm_view;

/* The paged-in addresses of a view that translate into one frame. */
typedef struct ptm_frame {
    vmt_gfn gfn;     /* hash key */
    ptm_addr *addrs; /* linked by frame_next */
    size_t n;
} ptm_frame;

#define PTM_VIEW_KEY(view) ((void *)(uintptr_t)(view))

struct vmt_ptm {
    vmt_htab views; /* PTM_VIEW_KEY(view) -> ptm_view (owned) */
    void *scratch;  /* the re-announcement's work space (ptm.c), grown ahead */
    size_t scratch_cap;
    uint64_t next_seq;
    size_t tables, entries, paged_in; /* the three public counters */
    uint64_t holder; /* its name for the core's access holds (core/holds.h) */
};

/* Walk position i (0 = PML4E) is at paging level 4 - i. */
static inline int walk_level(unsigned i)
{
    return 4 - (int)i;
}

#endif /* VMITAP_PTM_IMPL_H */
