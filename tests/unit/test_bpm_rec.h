// SPDX-License-Identifier: MIT
/* A recording tap controller for the bpm tests: needs no driver. It logs
 * every insert/remove/monitor/unmonitor call, keeps the set of traps and
 * monitored frames the manager has asked for, flags any call that breaks the
 * manager's contract (a second insert at one (view, pa), remove of what was
 * not inserted, monitor before insert, unmonitor before remove, ...), and
 * can fail its Nth call. Views marked dead answer VMT_E_VIEW_NOT_FOUND. */
#ifndef TEST_BPM_REC_H
#define TEST_BPM_REC_H

#include <glib.h>

#include "vmitap/bpm.h"

typedef enum { REC_INSERT = 1, REC_REMOVE, REC_MONITOR, REC_UNMONITOR } rec_op;

typedef struct rec_call {
    rec_op op;
    vmt_view view;
    uint64_t addr; /* pa for insert/remove, gfn for monitor/unmonitor */
    vmt_status result;
} rec_call;

typedef struct rec_ctl {
    GArray *log;           /* of rec_call */
    GHashTable *traps;     /* "view:pa" keys of inserted traps */
    GHashTable *monitored; /* "view:gfn" keys */
    unsigned violations;
    unsigned calls;     /* controller calls so far (check_event excluded) */
    unsigned fail_at;   /* fail the call with this number (1-based), 0 = never */
    unsigned fail_more; /* ... and this many calls after it (double faults) */
    vmt_status fail_status;
    GHashTable *dead_views;
    bool keep_log;
} rec_ctl;

/* A controller whose self is a new rec_ctl (freed by the controller's
 * destroy, i.e. by vmt_bpm_free). */
vmt_tap_controller rec_new(rec_ctl **out);
/* The nth controller call from now fails with st (0: cancel). */
void rec_fail_nth(rec_ctl *r, unsigned nth, vmt_status st);
/* The nth call from now and the `count - 1` calls after it fail. */
void rec_fail_run(rec_ctl *r, unsigned nth, unsigned count, vmt_status st);
void rec_kill_view(rec_ctl *r, vmt_view view);
void rec_revive_view(rec_ctl *r, vmt_view view);
void rec_clear_log(rec_ctl *r);
size_t rec_ntraps(const rec_ctl *r);
size_t rec_nmonitored(const rec_ctl *r);
bool rec_has_trap(const rec_ctl *r, vmt_view view, vmt_pa pa);
bool rec_is_monitored(const rec_ctl *r, vmt_view view, vmt_gfn gfn);
/* The log as a string, e.g. "I0:1008 M0:1 R0:1008 U0:1" (hex). */
char *rec_log_str(const rec_ctl *r);
/* True iff the controller's traps and monitored frames are exactly the
 * (view, pa) and (view, gfn) pairs the manager has armed claims on, in
 * every view not marked dead. */
bool rec_matches_bpm(const rec_ctl *r, const vmt_bpm *bpm);

/* A software-breakpoint event at va under cr3 in the view, on frame gfn. */
vmt_event rec_event(vmt_view view, vmt_va va, vmt_pa cr3, vmt_gfn gfn);

#endif
