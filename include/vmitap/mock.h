// SPDX-License-Identifier: MIT
/* vmitap — the mock driver: an in-memory guest for unit tests.
 *
 * Thread-safety: a vmt_mock is not thread-safe (one thread at a time, like
 * the core that owns it); separate mocks share no state.
 *
 * Sparse guest-physical memory (frames below max_gfn materialise zeroed on
 * first touch), per-view access rights and frame remapping, frames handed
 * out by allocate_gfn above guest RAM (shadow frames), a queue of events
 * that tests push and wait_for_event delivers (the callback's responses are
 * recorded), helpers to build AMD64 page tables, and fault injection: fail
 * the Nth call of a chosen driver operation with a chosen status.
 *
 * Semantics the tests rely on:
 * - views: view 0 exists from the start; create_view hands out 1, 2, ...
 *   A view's access for a frame is its default access until set_access;
 *   change_view_gfn(view, old, new) makes the guest see frame `new` at
 *   `old` in that view; reset_view_gfn undoes it. destroy_view(0) is
 *   VMT_E_INVALID; an unknown view is VMT_E_VIEW_NOT_FOUND.
 * - read/write are raw physical (never through a view); an address at or
 *   above max_gfn that is not an allocated shadow frame is
 *   VMT_E_OUT_OF_BOUNDS.
 * - allocate_gfn returns frames from max_gfn upwards; free_gfn of a frame
 *   not allocated is VMT_E_INVALID.
 * - every op call is counted, including failed and injected ones.
 * Details the header above leaves open (the mock's choices):
 * - create_view hands out the lowest free id; destroying the current view
 *   puts the guest back in view 0. Without VMT_CAP_VIEWS create_view is
 *   VMT_E_UNSUPPORTED; without VMT_CAP_EXECUTE_ONLY so is set_access(X).
 * - change_view_gfn(v, g, g) and reset_view_gfn of a frame that is not
 *   remapped are no-ops returning VMT_OK.
 * - free_gfn of a frame some view still shows in place of another is
 *   VMT_E_CONFLICT (reset_view_gfn first); a freed frame loses its
 *   contents and access overrides, and is handed out again (lowest first).
 * - pause nests (a depth); resume at depth 0 is VMT_E_INVALID.
 * - wait_for_event never sleeps. The callback gets a zeroed response; if it
 *   returns an error, wait_for_event returns it and nothing is recorded or
 *   applied. A set_view naming an unknown view is recorded, not applied
 *   (regs neither), and gives VMT_E_VIEW_NOT_FOUND.
 * - page-table helpers, peek/poke and the inspection functions below are
 *   neither counted nor subject to fault injection. */
#ifndef VMITAP_MOCK_H
#define VMITAP_MOCK_H

#include "vmitap/api.h"

#include "vmitap/core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmt_mock vmt_mock;

typedef struct vmt_mock_opts {
    size_t sz;       /* sizeof(vmt_mock_opts); 0 means "all defaults" */
    vmt_gfn max_gfn; /* guest RAM frames [0, max_gfn); default 0x100000 (4 GiB);
                        2 <= max_gfn < 2^39, else vmt_mock_new is VMT_E_INVALID */
    uint16_t vcpus;  /* default 1 */
    uint32_t caps;   /* default (also when 0) VIEWS | EXECUTE_ONLY | FAST_SINGLESTEP | EMULATE */
} vmt_mock_opts;

/* The ops table of the mock driver (static, never NULL). */
VMT_API const vmt_driver_ops *vmt_mock_driver_ops(void);
/* opts may be NULL (defaults). */
VMT_API vmt_status vmt_mock_new(const vmt_mock_opts *opts, vmt_mock **out);
VMT_API void vmt_mock_free(vmt_mock *mock); /* same as ops->destroy */
/* Convenience: a mock wrapped in a core. The core owns the mock; *mock_out
 * (optional) stays valid until vmt_core_free. */
VMT_API vmt_status vmt_mock_core_new(const vmt_mock_opts *opts, vmt_core **out,
                                     vmt_mock **mock_out);

/* ---- operations, for counting and fault injection ---- */
typedef enum vmt_mock_op {
    VMT_MOCK_OP_INFO = 0,
    VMT_MOCK_OP_READ,
    VMT_MOCK_OP_WRITE,
    VMT_MOCK_OP_GET_ACCESS,
    VMT_MOCK_OP_SET_ACCESS,
    VMT_MOCK_OP_CREATE_VIEW,
    VMT_MOCK_OP_DESTROY_VIEW,
    VMT_MOCK_OP_SWITCH_VIEW,
    VMT_MOCK_OP_CHANGE_VIEW_GFN,
    VMT_MOCK_OP_RESET_VIEW_GFN,
    VMT_MOCK_OP_ALLOCATE_GFN,
    VMT_MOCK_OP_FREE_GFN,
    VMT_MOCK_OP_PAUSE,
    VMT_MOCK_OP_RESUME,
    VMT_MOCK_OP_GET_REGS,
    VMT_MOCK_OP_SET_REGS,
    VMT_MOCK_OP_MONITOR,
    VMT_MOCK_OP_WAIT_FOR_EVENT,
    VMT_MOCK_OP_COUNT
} vmt_mock_op;
VMT_API const char *vmt_mock_op_name(vmt_mock_op op);

/* Calls of op so far (successful, failed and injected). */
VMT_API uint64_t vmt_mock_calls(const vmt_mock *mock, vmt_mock_op op);
/* Sum over all ops. */
VMT_API uint64_t vmt_mock_total_calls(const vmt_mock *mock);
/* The nth call from now (1 = the very next) of op fails with status and has
 * no effect. One injection per op at a time; nth = 0 cancels. */
VMT_API void vmt_mock_fail_nth(vmt_mock *mock, vmt_mock_op op, unsigned nth, vmt_status status);
/* The nth driver call from now, whatever its op, fails (0 cancels). Lets a
 * test walk a fault through every call an operation makes. */
VMT_API void vmt_mock_fail_nth_any(vmt_mock *mock, unsigned nth, vmt_status status);
/* Number of injected failures that have fired since creation. */
VMT_API uint64_t vmt_mock_injected(const vmt_mock *mock);

/* ---- memory, bypassing counting and fault injection ---- */
VMT_API vmt_status vmt_mock_peek(const vmt_mock *mock, vmt_pa pa, void *buf, size_t len);
VMT_API vmt_status vmt_mock_poke(vmt_mock *mock, vmt_pa pa, const void *buf, size_t len);

/* Frames whose contents the mock stores (written at least once since they
 * were last zeroed); reading a never-written frame does not add one. */
VMT_API size_t vmt_mock_resident_frames(const vmt_mock *mock);

/* ---- page tables ---- */
typedef enum vmt_mock_page_size {
    VMT_MOCK_4K = 12,
    VMT_MOCK_2M = 21,
    VMT_MOCK_1G = 30
} vmt_mock_page_size;

/* PTE flag bits used by the map helper (x86 names). */
#define VMT_PTE_P (1ull << 0)
#define VMT_PTE_W (1ull << 1)
#define VMT_PTE_U (1ull << 2)
#define VMT_PTE_PS (1ull << 7)
#define VMT_PTE_NX (1ull << 63)
#define VMT_PTE_ADDR_MASK 0x000ffffffffff000ull

/* A zeroed frame for page tables from the mock's table pool, which lives
 * at the top of guest RAM and grows downwards (away from the low frames
 * tests use for data). */
VMT_API vmt_status vmt_mock_alloc_table(vmt_mock *mock, vmt_pa *out);
/* A new, empty PML4. */
VMT_API vmt_status vmt_mock_new_root(vmt_mock *mock, vmt_pa *root);
/* Maps va -> pa in root with a page of the given size, creating
 * intermediate tables (P|W|U) as needed. flags are the leaf's (P is added,
 * and PS for large pages). va and pa must be aligned to the page size.
 * VMT_E_CONFLICT if a large page is in the way, or a table is where a
 * large leaf should go. */
VMT_API vmt_status vmt_mock_map(vmt_mock *mock, vmt_pa root, vmt_va va, vmt_pa pa,
                                vmt_mock_page_size size, uint64_t flags);
/* Clears the Present bit of the entry at `level` on va's walk (4 = PML4E,
 * 3 = PDPTE, 2 = PDE, 1 = PTE), keeping the rest of the entry.
 * VMT_E_TRANSLATION if the walk ends above that level. */
VMT_API vmt_status vmt_mock_unmap(vmt_mock *mock, vmt_pa root, vmt_va va, int level);
/* Physical address of the entry at `level` on va's walk (same levels). */
VMT_API vmt_status vmt_mock_entry_pa(const vmt_mock *mock, vmt_pa root, vmt_va va, int level,
                                     vmt_pa *out);

/* ---- views, as the mock sees them ---- */
VMT_API bool vmt_mock_view_exists(const vmt_mock *mock, vmt_view view);
/* The frame the guest sees at gfn in view (gfn itself unless remapped). */
VMT_API vmt_status vmt_mock_view_backing(const vmt_mock *mock, vmt_view view, vmt_gfn gfn,
                                         vmt_gfn *out);
/* Reads what the guest would read at pa in view (through the remapping). */
VMT_API vmt_status vmt_mock_view_read(const vmt_mock *mock, vmt_view view, vmt_pa pa, void *buf,
                                      size_t len);
VMT_API vmt_view vmt_mock_current_view(const vmt_mock *mock);
/* Number of frames currently handed out by allocate_gfn. */
VMT_API size_t vmt_mock_allocated_gfns(const vmt_mock *mock);
/* Last flags passed to set_access for (gfn, view), 0 if never set. */
VMT_API unsigned vmt_mock_last_access_flags(const vmt_mock *mock, vmt_gfn gfn, vmt_view view);
VMT_API bool vmt_mock_paused(const vmt_mock *mock);
/* pause calls not yet matched by a resume. */
VMT_API unsigned vmt_mock_pause_depth(const vmt_mock *mock);
/* Monitoring switched on for reason (via the monitor op). */
VMT_API bool vmt_mock_monitoring(const vmt_mock *mock, vmt_event_reason what);

/* ---- registers and events ---- */
/* Registers of a vCPU (what get_regs returns, what set_regs writes). */
VMT_API vmt_regs *vmt_mock_regs(vmt_mock *mock, vmt_vcpu vcpu);
/* Queues an event; wait_for_event delivers queued events in order, one per
 * call, and returns VMT_E_TIMEOUT when the queue is empty. A response with
 * set_regs writes the vCPU's registers; set_view switches the view. */
VMT_API vmt_status vmt_mock_push_event(vmt_mock *mock, const vmt_event *ev);
VMT_API size_t vmt_mock_pending_events(const vmt_mock *mock);
/* Responses recorded so far, in delivery order (array owned by the mock). */
VMT_API size_t vmt_mock_responses(const vmt_mock *mock, const vmt_response **out);
VMT_API void vmt_mock_clear_responses(vmt_mock *mock);

#ifdef __cplusplus
}
#endif
#endif /* VMITAP_MOCK_H */
