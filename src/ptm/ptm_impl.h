/* The page-table monitor's indexes, shared by ptm.c and ptm_check.c.
 * See ptm.c for what they mean and how they change. */
#ifndef VMITAP_PTM_IMPL_H
#define VMITAP_PTM_IMPL_H

#include <glib.h>

#include "vmitap/ptm.h"

typedef struct ptm_addr {
    vmt_addr_ctx ctx; /* hash key */
    uintptr_t tag;
    unsigned refs; /* monitor calls not yet matched by unmonitor */
    uint64_t seq;  /* when it was first monitored: orders events */
    bool paged_in; /* the recorded walk reached a present leaf */
    vmt_walk walk; /* as last seen; walk.pa valid when paged_in */
} ptm_addr;

typedef struct ptm_entry {
    vmt_pa pa;              /* hash key */
    unsigned level_refs[4]; /* occurrences on recorded walks, [level - 1] */
    GHashTable *users;      /* ptm_addr * -> occurrences on its walk */
} ptm_entry;

typedef struct ptm_table {
    vmt_gfn gfn;      /* hash key */
    unsigned entries; /* monitored entries in the page; 0: restore owed */
} ptm_table;

typedef struct ptm_view {
    vmt_view view;
    GHashTable *addrs;   /* &addr->ctx -> ptm_addr (owned) */
    GHashTable *entries; /* &entry->pa -> ptm_entry (owned) */
    GHashTable *tables;  /* &table->gfn -> ptm_table (owned) */
    GHashTable *dirty;   /* vcpu -> set of ptm_entry * */
    GHashTable *frames;  /* &frame->gfn -> ptm_frame: who translates into a frame */
    size_t owed;         /* tables whose restore failed */
} ptm_view;

/* The paged-in addresses of a view that translate into one frame. */
typedef struct ptm_frame {
    vmt_gfn gfn;       /* hash key */
    GHashTable *addrs; /* set of ptm_addr * */
} ptm_frame;

struct vmt_ptm {
    GHashTable *views; /* view -> ptm_view (owned) */
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
