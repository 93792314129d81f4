// SPDX-License-Identifier: MIT
/* Page-table write detection that keeps the CPU's own page walks working.
 *
 * Why not a read-only memslot: on AMD NPT (and on Intel EPT with A/D bits,
 * KVM's default) the CPU's walk of the guest's page tables is a *write*
 * access to the nested tables, whatever the guest instruction does. A page
 * table in a KVM_MEM_READONLY slot therefore makes every walk through it
 * fault: KVM emulates the wrong instruction against the table or retries
 * forever (measured in the bed, see docs/design.md). So a frame set with
 * VMT_SET_ACCESS_IGNORE_PAGE_WALK_UPDATES and no W stays a normal, writable
 * memslot, and the driver finds the guest's writes itself:
 *
 *  - A snapshot of every watched frame; at each checkpoint the frame is
 *    compared with it, entry by entry, ignoring the accessed and dirty bits
 *    (bits 5 and 6: the CPU sets them, a guest may clear them; neither
 *    changes a translation). Each changed entry becomes one MEMORY_ACCESS
 *    W event (pa = the entry, va = 0), delivered before the guest runs
 *    another instruction.
 *  - Checkpoints: before every KVM_RUN (so every exit, whatever its cause),
 *    and when the guest returns from its page-fault handler: a hardware
 *    execute breakpoint (DR0) on the handler's first instruction, IDT
 *    vector 14, gives an exit at every #PF; the return address in the
 *    exception frame then gets a breakpoint of its own (DR1-DR3), whose
 *    exit is the checkpoint. A page brought in by the handler is thus seen
 *    before the faulting instruction runs again: breakpointed code never
 *    runs unarmed from a new frame when it came in through a page fault.
 *
 * What is not exact: a write made outside the #PF handler (an eviction, a
 * relocation of a present page) is seen at the next exit, not at the
 * store; the event's registers are those of that moment. More than three
 * #PF handlers pending at once (nested or switched away) drop the oldest
 * return breakpoint (counted). What a guest could notice: its own use of
 * debug registers is virtualised by KVM while ours are loaded (it reads
 * back what it wrote, but its breakpoints do not fire), and the time the
 * exits take. */
#include <string.h>

#include "drivers/kvm/kvm_internal.h"
#include "vmitap/log.h"

#define PTE_AD_BITS 0x60ull
#define DR7_L(i) (1ull << (2 * (i)))
#define DR6_B(i) (1ull << (i))
#define RFLAGS_RF (1ull << 16)

typedef struct ptw_frame {
    vmt_view view; /* the view whose rights protect it (events carry it) */
    uint64_t snap[512];
} ptw_frame;

typedef struct ptw_change {
    vmt_pa pa;
    vmt_view view;
} ptw_change;

void kvm_ptw_init(vmt_kvm *k)
{
    k->ptw.frames = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
    k->ptw.queue = g_array_new(FALSE, FALSE, sizeof(ptw_change));
}

void kvm_ptw_fini(vmt_kvm *k)
{
    if (k->ptw.frames)
        g_hash_table_destroy(k->ptw.frames);
    if (k->ptw.queue)
        g_array_free(k->ptw.queue, TRUE);
}

static const uint64_t *frame_now(vmt_kvm *k, vmt_gfn gfn)
{
    return (const uint64_t *)(k->gmap + (gfn << VMT_PAGE_SHIFT));
}

/* The page-table monitor's protection: walked by the CPU, readable, not writable. */
static bool watched(vmt_access acc) { return (acc & KVM_ACCESS_WALK) && (acc & VMT_ACCESS_R) && !(acc & VMT_ACCESS_W); }

void kvm_ptw_update(vmt_kvm *k, vmt_gfn gfn, vmt_view view, vmt_access acc)
{
    ptw_frame *f = g_hash_table_lookup(k->ptw.frames, GSIZE_TO_POINTER(gfn));
    if (watched(acc)) {
        if (!f) {
            f = g_new(ptw_frame, 1);
            memcpy(f->snap, frame_now(k, gfn), sizeof f->snap);
            g_hash_table_insert(k->ptw.frames, GSIZE_TO_POINTER(gfn), f);
        }
        f->view = view;
    } else if (f && f->view == view) {
        g_hash_table_remove(k->ptw.frames, GSIZE_TO_POINTER(gfn));
    }
}

static gboolean of_view(gpointer key, gpointer val, gpointer user)
{
    (void)key;
    return ((ptw_frame *)val)->view == GPOINTER_TO_UINT(user);
}

void kvm_ptw_view_destroyed(vmt_kvm *k, vmt_view view)
{
    g_hash_table_foreach_remove(k->ptw.frames, of_view, GUINT_TO_POINTER(view));
}

void kvm_ptw_host_wrote(vmt_kvm *k, vmt_pa pa, size_t len)
{
    if (!g_hash_table_size(k->ptw.frames) || !len)
        return;
    for (vmt_gfn g = pa >> VMT_PAGE_SHIFT; g <= (pa + len - 1) >> VMT_PAGE_SHIFT; g++) {
        ptw_frame *f = g_hash_table_lookup(k->ptw.frames, GSIZE_TO_POINTER(g));
        if (f && g < k->ram_frames)
            memcpy(f->snap, frame_now(k, g), sizeof f->snap);
    }
}

/* Compares every watched frame with its snapshot; queues the changes. */
bool kvm_ptw_check(vmt_kvm *k)
{
    GHashTableIter it;
    gpointer key, val;
    g_hash_table_iter_init(&it, k->ptw.frames);
    while (g_hash_table_iter_next(&it, &key, &val)) {
        vmt_gfn gfn = GPOINTER_TO_SIZE(key);
        ptw_frame *f = val;
        const uint64_t *now = frame_now(k, gfn);
        if (!memcmp(now, f->snap, sizeof f->snap))
            continue;
        for (unsigned i = 0; i < 512; i++) {
            uint64_t v = now[i];
            if (((v ^ f->snap[i]) & ~PTE_AD_BITS) != 0) {
                ptw_change c = {.pa = (gfn << VMT_PAGE_SHIFT) | (i * 8u), .view = f->view};
                vmt_log(VMT_LOG_DEBUG, "kvm: ptw: entry 0x%llx: 0x%llx -> 0x%llx", (unsigned long long)c.pa,
                        (unsigned long long)f->snap[i], (unsigned long long)v);
                g_array_append_val(k->ptw.queue, c);
                k->ptw.writes++;
            }
            f->snap[i] = v;
        }
    }
    return k->ptw.queue->len > 0;
}

bool kvm_ptw_pop(vmt_kvm *k, vmt_pa *pa, vmt_view *view)
{
    if (!k->ptw.queue->len)
        return false;
    ptw_change c = g_array_index(k->ptw.queue, ptw_change, 0);
    g_array_remove_index(k->ptw.queue, 0);
    if (!kvm_view_get(k, c.view)) /* destroyed meanwhile */
        return kvm_ptw_pop(k, pa, view);
    *pa = c.pa;
    *view = c.view;
    return true;
}

/* ---- the #PF handler and its returns, through debug registers ---- */

bool kvm_ptw_wants_pf_trap(const vmt_kvm *k) { return !k->host.hw_breakpoints && g_hash_table_size(k->ptw.frames); }

/* Keeps DR0 on the #PF handler while frames are watched (where debug
 * registers work; elsewhere kvm_run.c keeps the handler's frame a hole). */
void kvm_ptw_refresh(vmt_kvm *k)
{
    uint64_t handler = 0;
    vmt_gfn gfn;
    bool on = k->host.hw_breakpoints && g_hash_table_size(k->ptw.frames) && kvm_idt_gate(k, 14, &handler, &gfn);
    uint64_t dr7 = k->dbg_dr[7];
    if (on) {
        k->dbg_dr[0] = handler;
        dr7 |= DR7_L(0);
    } else {
        dr7 = 0; /* returns no longer matter either */
    }
    if (dr7 != k->dbg_dr[7] || (on && handler != k->ptw.handler)) {
        k->dbg_dr[7] = dr7;
        k->dbg_flags = 0; /* reload */
    }
    if ((on ? handler : 0) != k->ptw.handler)
        vmt_log(VMT_LOG_DEBUG, "kvm: ptw: #PF handler breakpoint %s 0x%llx", on ? "on" : "off",
                (unsigned long long)handler);
    k->ptw.handler = on ? handler : 0;
}

static void arm_return(vmt_kvm *k, uint64_t rip)
{
    for (unsigned i = 1; i < 4; i++)
        if ((k->dbg_dr[7] & DR7_L(i)) && k->dbg_dr[i] == rip)
            return;
    unsigned slot = 0;
    for (unsigned i = 1; i < 4 && !slot; i++)
        if (!(k->dbg_dr[7] & DR7_L(i)))
            slot = i;
    if (!slot) { /* all pending: the oldest goes */
        slot = 1 + k->ptw.next_slot;
        k->ptw.next_slot = (k->ptw.next_slot + 1) % 3;
        k->ptw.dropped++;
    }
    k->dbg_dr[slot] = rip;
    k->dbg_dr[7] |= DR7_L(slot);
    k->dbg_flags = 0;
}

bool kvm_ptw_on_debug(vmt_kvm *k, uint64_t dr6)
{
    if (!(dr6 & 0xf) || !k->ptw.handler)
        return false;
    if (dr6 & DR6_B(0)) {
        /* #PF entry: the frame is error code, RIP, CS, RFLAGS, RSP, SS. */
        vmt_regs r;
        uint64_t ret;
        k->ptw.faults++;
        if (kvm_regs_get(k, &r) == VMT_OK && r.rip == k->ptw.handler &&
            kvm_va_read(k, r.cr3, r.rsp + 8, &ret, 8) == VMT_OK) {
            vmt_log(VMT_LOG_DEBUG, "kvm: ptw: #PF entry, return to 0x%llx", (unsigned long long)ret);
            arm_return(k, ret);
        }
        /* RF: the handler's first instruction runs without hitting DR0 again. */
        r.rflags |= RFLAGS_RF;
        kvm_regs_set(k, &r);
    }
    for (unsigned i = 1; i < 4; i++)
        if ((dr6 & DR6_B(i)) && (k->dbg_dr[7] & DR7_L(i))) {
            /* back from the handler: the next loop turn is the checkpoint */
            vmt_log(VMT_LOG_DEBUG, "kvm: ptw: back at 0x%llx", (unsigned long long)k->dbg_dr[i]);
            k->dbg_dr[7] &= ~DR7_L(i);
            k->dbg_flags = 0;
            k->ptw.returns++;
        }
    return true;
}
