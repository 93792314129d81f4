/* The run loop of the KVM driver: KVM_RUN, exits turned into events, and
 * the responses applied. Exact semantics: drivers/kvm/README.md.
 *
 * Event kinds and where they come from:
 *   MEMORY_ACCESS W   a write to an RO or HOLE frame whose view denies W
 *                     (KVM_EXIT_MMIO, instruction decoded, not yet retired)
 *   MEMORY_ACCESS R   a read of a HOLE frame whose view denies R (same)
 *   MEMORY_ACCESS X   a fetch from a HOLE frame (KVM_EXIT_INTERNAL_ERROR,
 *                     emulation, RIP at the instruction, nothing executed)
 *   SOFTWARE_BREAKPOINT  int3 intercepted by KVM (KVM_EXIT_DEBUG #BP, or
 *                     the emulation-failure quirk with 0xCC at RIP), or
 *                     caught when the CPU delivered #BP to the guest's IDT
 *                     vector-3 handler, whose frame is kept a hole
 *   SINGLESTEP        KVM_EXIT_DEBUG #DB after a requested step */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "drivers/kvm/kvm_internal.h"
#include "vmitap/log.h"

/* EV_PTW: a page-table entry found changed (kvm_ptw.c); the write is done. */
enum ev_kind { EV_MMIO, EV_FETCH, EV_BP_KVM, EV_BP_IDT, EV_STEP, EV_PTW };

typedef struct pending_ev {
    enum ev_kind kind;
    vmt_event ev;
} pending_ev;

enum handled { H_RUN, H_EVENT, H_STOP };

/* ---- timeout: a per-thread POSIX timer and a kick signal never delivered ----
 *
 * The timer sends k->kick_sig to the thread in wait_for_event. That thread
 * keeps the signal blocked while it runs driver code, and the vCPU's
 * KVM_SET_SIGNAL_MASK mask (the thread's own mask without the kick) lets
 * it through only inside KVM_RUN: a kick makes KVM_RUN return EINTR (at
 * once when it came before), yet it stays pending, never delivered, until
 * sigtimedwait takes it. No handler and nothing process-wide; the thread's
 * mask is as before when wait_for_event returns. */

static bool kick_take(const vmt_kvm *k)
{
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, k->kick_sig);
    const struct timespec zero = {0};
    return sigtimedwait(&s, NULL, &zero) == k->kick_sig;
}

/* Blocks the kick in this thread (*saved: the mask to restore) and gives
 * KVM_RUN the thread's mask without it (one ioctl when that changed). */
static bool kick_enter(vmt_kvm *k, sigset_t *saved)
{
    sigset_t kick, run;
    sigemptyset(&kick);
    sigaddset(&kick, k->kick_sig);
    if (pthread_sigmask(SIG_BLOCK, &kick, saved) != 0)
        return false;
    run = *saved;
    sigdelset(&run, k->kick_sig);
    /* the kernel's sigset is 8 bytes on x86-64; glibc's starts with it */
    uint64_t bits;
    memcpy(&bits, &run, sizeof bits);
    if (k->have_run_mask && bits == k->run_mask)
        return true;
    /* struct kvm_signal_mask: u32 len, then the set's bytes */
    _Static_assert(offsetof(struct kvm_signal_mask, sigset) == 4, "kvm_signal_mask layout");
    uint32_t m[3] = {sizeof bits};
    memcpy(&m[1], &bits, sizeof bits);
    if (ioctl(k->vcpu_fd, KVM_SET_SIGNAL_MASK, m) < 0) {
        vmt_log(VMT_LOG_ERROR, "kvm: KVM_SET_SIGNAL_MASK: %s", strerror(errno));
        pthread_sigmask(SIG_SETMASK, saved, NULL);
        return false;
    }
    k->run_mask = bits;
    k->have_run_mask = true;
    return true;
}

static void kick_leave(const vmt_kvm *k, const sigset_t *saved)
{
    if (!sigismember(saved, k->kick_sig))
        pthread_sigmask(SIG_SETMASK, saved, NULL);
}

static bool timer_arm(vmt_kvm *k, int timeout_ms)
{
    timer_t *t = &k->timer;
    bool *have = &k->have_timer;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    if (*have && k->timer_tid != tid) { /* called from another thread now */
        timer_delete(*t);
        *have = false;
    }
    if (!*have) {
        struct sigevent se = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = k->kick_sig};
        se._sigev_un._tid = tid;
        if (timer_create(CLOCK_MONOTONIC, &se, t) < 0)
            return false;
        *have = true;
        k->timer_tid = tid;
    }
    struct itimerspec its = {.it_value = {.tv_sec = timeout_ms / 1000, .tv_nsec = (long)(timeout_ms % 1000) * 1000000L}};
    if (timeout_ms == 0)
        its.it_value.tv_nsec = 1;
    return timer_settime(*t, 0, &its, NULL) == 0;
}

/* Stops the timer; a kick it sent and nobody took yet is taken now, so
 * none is left pending when the thread's mask is restored. */
static void timer_disarm(vmt_kvm *k)
{
    struct itimerspec off = {0}, old;
    if (timer_settime(k->timer, 0, &off, &old) == 0 &&
        (old.it_value.tv_sec || old.it_value.tv_nsec))
        return; /* it had not expired */
    kick_take(k);
}

/* ---- state ---- */

void kvm_crash(vmt_kvm *k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(k->crash, sizeof k->crash, fmt, ap);
    va_end(ap);
    k->state = VMT_KVM_CRASHED;
    vmt_log(VMT_LOG_ERROR, "kvm: guest crashed: %s", k->crash);
}

static void console_put(vmt_kvm *k, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n && k->console_len + 1 < KVM_CONSOLE_MAX; i++)
        k->console[k->console_len++] = (char)p[i];
    k->console[k->console_len] = 0;
}

/* ---- traps on the guest's IDT handler frames (#BP, #DB, #PF) ---- */

/* Keeps a frame trapped exactly when `on`: *trap and *cur say whether and
 * which frame is trapped now. kvm_sync_frame decides a frame's class from
 * all the traps (a hole for handler frames, read-only for the entry
 * stack), so two traps may share a frame. */
static void hold_trap(vmt_kvm *k, bool *trap, vmt_gfn *cur, bool on, vmt_gfn gfn)
{
    if (*trap && (!on || gfn != *cur)) {
        *trap = false;
        kvm_sync_frame(k, *cur);
    }
    if (on && !*trap) {
        *trap = true;
        *cur = gfn;
        kvm_sync_frame(k, gfn);
    }
}

/* The handler of IDT vector vec and the RAM frame it starts in. */
bool kvm_idt_gate(vmt_kvm *k, unsigned vec, uint64_t *handler, vmt_gfn *gfn)
{
    const struct kvm_sregs *s = kvm_sregs(k);
    uint8_t g[16];
    if (s->idt.limit < (vec + 1) * 16 - 1 || kvm_va_read(k, s->cr3, s->idt.base + vec * 16, g, sizeof g) != VMT_OK ||
        !(g[5] & 0x80))
        return false;
    uint64_t off = (uint64_t)g[0] | (uint64_t)g[1] << 8 | (uint64_t)g[6] << 16 | (uint64_t)g[7] << 24;
    uint64_t hi;
    memcpy(&hi, g + 8, 8);
    off |= (hi & 0xffffffffull) << 32;
    vmt_pa pa;
    if (kvm_va_to_pa(k, s->cr3, off, &pa) != VMT_OK || (pa >> VMT_PAGE_SHIFT) >= k->ram_frames)
        return false;
    *handler = off;
    *gfn = pa >> VMT_PAGE_SHIFT;
    return true;
}

/* The frame below the top of the stack the CPU switches to when it enters
 * the kernel from user mode (TSS.RSP0), once the guest has a valid TSS. */
static bool entry_stack_gfn(vmt_kvm *k, vmt_gfn *gfn)
{
    const struct kvm_sregs *s = kvm_sregs(k);
    uint64_t rsp0;
    vmt_pa pa;
    if (!s->tr.base || s->tr.limit < 0x67 || kvm_va_read(k, s->cr3, s->tr.base + 4, &rsp0, 8) != VMT_OK ||
        !rsp0 || kvm_va_to_pa(k, s->cr3, rsp0 - 8, &pa) != VMT_OK || (pa >> VMT_PAGE_SHIFT) >= k->ram_frames)
        return false;
    *gfn = pa >> VMT_PAGE_SHIFT;
    return true;
}

/* Finds gate 3 (and, for kvm_linux_fix_syscall, gate 14) of the guest's
 * IDT and keeps their handlers' frames trapped. */
static void refresh_idt_traps(vmt_kvm *k)
{
    uint64_t handler = 0;
    vmt_gfn gfn = 0;
    /* linux: Linux's vector-3 handler shares its page with the syscall
     * and interrupt entry code, so trapping it costs every syscall and
     * interrupt a few single-steps: only while breakpoints are monitored. */
    bool on = (!k->linux_boot || k->bp_monitor) && kvm_idt_gate(k, 3, &handler, &gfn);
    hold_trap(k, &k->bp_trap, &k->bp_gfn, on, gfn);
    k->bp_handler = handler;
    bool want = kvm_linux_wants_pf_trap(k);
    /* The #PF handler's frame is a hole for kvm_linux_fix_syscall (kvm_pvm)
     * or, where debug registers do not fire, for kvm_ptw.c: the exits at
     * its entry and when the handler's code comes back into the frame
     * after the page-in (before the faulting instruction runs again) are
     * page-table checkpoints. */
    on = ((want && k->user_seen) || kvm_ptw_wants_pf_trap(k)) && kvm_idt_gate(k, 14, &handler, &gfn);
    hold_trap(k, &k->pf_trap, &k->pf_gfn, on, gfn);
    k->pf_handler = on ? handler : 0;
    on = want && !k->user_seen && entry_stack_gfn(k, &gfn);
    hold_trap(k, &k->es_trap, &k->es_gfn, on, gfn);
    kvm_ptw_refresh(k);
}

/* kvm_pvm only (its CPL 3 step #DB reaches the guest instead of exiting):
 * traps the guest's #DB handler frame exactly while a step at CPL 3 is
 * due (two memslot changes per such step sequence). Standard KVM and the
 * bed exit for that #DB. */
static void update_db_trap(vmt_kvm *k, bool stepping)
{
    uint64_t handler = 0;
    vmt_gfn gfn = 0;
    bool on = k->host.kvm_pvm && stepping && (kvm_sregs(k)->cs.selector & 3) == 3 &&
              kvm_idt_gate(k, 1, &handler, &gfn);
    hold_trap(k, &k->db_trap, &k->db_gfn, on, gfn);
    k->db_handler = handler;
}

/* ---- stepping ---- */

static bool want_step(const vmt_kvm *k)
{
    return k->step.user || k->step.fast || k->step.passthrough || k->step.ntemp || k->monitor_ss || k->nxo;
}

/* Overrides gfn for one step: the guest fetches `backing`'s content with
 * class cls; accesses that exit are decided by `view`'s rights.
 *
 * When the class does not change and writes exit anyway (RO or HOLE), the
 * content is swapped instead of remapped: the installed frame receives a
 * copy of `backing` and gets its own bytes back after the step (two 4 KiB
 * copies instead of two mmap calls that KVM must also unmap from the
 * nested page tables). This is exact: every write to the frame exits and
 * goes to `backing`, so the temporary copy is never written. */
static vmt_status add_temp(vmt_kvm *k, vmt_gfn gfn, unsigned cls, vmt_gfn backing, vmt_view view)
{
    if (gfn >= k->ram_frames || k->step.ntemp == KVM_MAX_TEMP)
        return VMT_OK;
    for (unsigned i = 0; i < k->step.ntemp; i++)
        if (k->step.temp[i].gfn == gfn)
            return VMT_OK;
    unsigned i = k->step.ntemp++;
    kvm_temp *t = &k->step.temp[i];
    *t = (kvm_temp){.gfn = gfn, .cls = (uint8_t)cls, .backing = backing, .access_view = view};
    if (cls == k->cls[gfn] && cls != CLASS_NORMAL && backing != k->backing[gfn]) {
        t->swap = true;
        t->backing = k->backing[gfn];
        memcpy(k->swap_save[i], kvm_frame_raw(k, t->backing), VMT_PAGE_SIZE);
        memcpy(kvm_frame_raw(k, t->backing), kvm_frame_raw(k, backing), VMT_PAGE_SIZE);
        return VMT_OK;
    }
    return kvm_sync_frame(k, gfn);
}

static void drop_temps(vmt_kvm *k)
{
    unsigned n = k->step.ntemp;
    kvm_temp t[KVM_MAX_TEMP];
    memcpy(t, k->step.temp, sizeof t);
    k->step.ntemp = 0;
    for (unsigned i = 0; i < n; i++) {
        if (t[i].swap)
            memcpy(kvm_frame_raw(k, t[i].backing), k->swap_save[i], VMT_PAGE_SIZE);
        kvm_sync_frame(k, t[i].gfn); /* the view may have changed meanwhile */
    }
}

/* The frames an instruction at rip may be fetched from (two if it may cross). */
static unsigned insn_frames(vmt_kvm *k, uint64_t cr3, uint64_t rip, vmt_gfn out[2])
{
    unsigned n = 0;
    vmt_pa pa;
    if (kvm_va_to_pa(k, cr3, rip, &pa) != VMT_OK || (pa >> VMT_PAGE_SHIFT) >= k->ram_frames)
        return 0; /* no RAM there: nothing of ours */
    out[n++] = pa >> VMT_PAGE_SHIFT;
    if ((rip & 0xfff) > 0xff0 && kvm_va_to_pa(k, cr3, (rip | 0xfff) + 1, &pa) == VMT_OK &&
        (pa >> VMT_PAGE_SHIFT) < k->ram_frames)
        out[n++] = pa >> VMT_PAGE_SHIFT;
    return n;
}

/* Makes the instruction at rip fetchable as in view `view` for one step:
 * its frames get view's backing; the class is the stricter of the current
 * and view's class (so no memslot change in the common case), except that
 * a frame must be fetchable. Accesses that exit meanwhile are decided by
 * view's rights. */
static vmt_status temps_for_insn(vmt_kvm *k, const vmt_regs *r, vmt_view view)
{
    kvm_view *v = kvm_view_get(k, view);
    vmt_gfn f[2];
    unsigned n = insn_frames(k, r->cr3, r->rip, f);
    for (unsigned i = 0; i < n; i++) {
        vmt_access acc;
        vmt_gfn backing;
        kvm_view_lookup(v, f[i], &acc, &backing);
        unsigned cur = k->cls[f[i]], want = kvm_class_of(acc);
        unsigned cls = want > cur ? want : cur;
        if (cls == CLASS_HOLE)
            cls = (want == CLASS_HOLE) ? CLASS_RO : want;
        vmt_status st = add_temp(k, f[i], cls, backing, view);
        if (st != VMT_OK)
            return st;
    }
    return VMT_OK;
}

/* ---- event construction ---- */

static vmt_status make_event(vmt_kvm *k, pending_ev *p, enum ev_kind kind, vmt_event_reason reason)
{
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->ev.reason = reason;
    p->ev.has_view = true;
    p->ev.view = k->active;
    return kvm_regs_get(k, &p->ev.regs);
}

static vmt_gfn rip_gfn(vmt_kvm *k, const vmt_regs *r)
{
    vmt_pa pa;
    return kvm_va_to_pa(k, r->cr3, r->rip, &pa) == VMT_OK ? pa >> VMT_PAGE_SHIFT : (vmt_gfn)-1;
}

static enum handled bp_event(vmt_kvm *k, pending_ev *p, enum ev_kind kind)
{
    if (make_event(k, p, kind, VMT_EVENT_SOFTWARE_BREAKPOINT) != VMT_OK) {
        kvm_crash(k, "cannot read registers at a breakpoint");
        return H_STOP;
    }
    p->ev.u.software_breakpoint.gfn = rip_gfn(k, &p->ev.regs);
    p->ev.u.software_breakpoint.insn_len = 1;
    return H_EVENT;
}

/* ---- MMIO ---- */

/* Whose rights and which backing decide an access to gfn right now. */
static void frame_rights(vmt_kvm *k, vmt_gfn gfn, vmt_view *view, vmt_access *acc, vmt_gfn *backing)
{
    *view = k->active;
    for (unsigned i = 0; i < k->step.ntemp; i++)
        if (k->step.temp[i].gfn == gfn && kvm_view_get(k, k->step.temp[i].access_view))
            *view = k->step.temp[i].access_view; /* (unless destroyed meanwhile) */
    kvm_view_lookup(kvm_view_get(k, *view), gfn, acc, backing);
}

/* Performs the pending MMIO access on backing page `backing`. */
static void mmio_serve(vmt_kvm *k, vmt_gfn backing)
{
    struct kvm_run *run = k->run;
    size_t off = run->mmio.phys_addr & (VMT_PAGE_SIZE - 1);
    uint32_t len = run->mmio.len > 8 ? 8 : run->mmio.len;
    uint8_t *page = kvm_frame_raw(k, backing);
    if (run->mmio.is_write)
        memcpy(page + off, run->mmio.data, len);
    else
        memcpy(run->mmio.data, page + off, len);
    k->ctr.mmio++;
}

static bool mmio_unbacked(vmt_kvm *k)
{
    struct kvm_run *run = k->run;
    if ((run->mmio.phys_addr >> VMT_PAGE_SHIFT) < k->ram_frames)
        return false;
    vmt_log(VMT_LOG_DEBUG, "kvm: guest %s at 0x%llx: no RAM there", run->mmio.is_write ? "write" : "read",
            (unsigned long long)run->mmio.phys_addr);
    if (!run->mmio.is_write)
        memset(run->mmio.data, 0xff, sizeof run->mmio.data);
    return true;
}

static enum handled on_mmio(vmt_kvm *k, pending_ev *p)
{
    if (mmio_unbacked(k))
        return H_RUN;
    struct kvm_run *run = k->run;
    vmt_gfn gfn = run->mmio.phys_addr >> VMT_PAGE_SHIFT, backing;
    if (k->es_trap && gfn == k->es_gfn && run->mmio.is_write) {
        /* linux: the first entry from user mode; from now on the #PF trap
         * (set up before the CPU goes on to fetch the handler). */
        k->user_seen = true;
        vmt_log(VMT_LOG_DEBUG, "kvm: first entry from user mode (rip 0x%llx): #PF trap on",
                (unsigned long long)kvm_rip(k));
        refresh_idt_traps(k);
    }
    vmt_view view;
    vmt_access acc;
    frame_rights(k, gfn, &view, &acc, &backing);
    vmt_access need = run->mmio.is_write ? VMT_ACCESS_W : VMT_ACCESS_R;
    if (acc & need) {
        mmio_serve(k, backing);
        return H_RUN;
    }
    if (make_event(k, p, EV_MMIO, VMT_EVENT_MEMORY_ACCESS) != VMT_OK) {
        kvm_crash(k, "cannot read registers at a memory access");
        return H_STOP;
    }
    p->ev.view = view;
    p->ev.u.memory_access.pa = run->mmio.phys_addr;
    p->ev.u.memory_access.access = need;
    return H_EVENT;
}

/* Retires the instruction behind a pending MMIO access without running any
 * further guest instruction; more accesses of the same instruction are
 * served from `view`'s backing. */
static vmt_status finish_mmio(vmt_kvm *k, vmt_view view)
{
    for (int guard = 0; guard < 64; guard++) {
        k->run->immediate_exit = 1;
        int r = ioctl(k->vcpu_fd, KVM_RUN, 0);
        k->run->immediate_exit = 0;
        kvm_regs_ran(k);
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            return VMT_OK;
        if (r < 0 || k->run->exit_reason != KVM_EXIT_MMIO) {
            kvm_crash(k, "completing an emulated access: exit %u (%s)", r < 0 ? 0 : k->run->exit_reason,
                      r < 0 ? strerror(errno) : "unexpected exit");
            return VMT_E_GUEST_CRASHED;
        }
        if (!mmio_unbacked(k)) {
            vmt_access acc;
            vmt_gfn backing;
            kvm_view_lookup(kvm_view_get(k, view), k->run->mmio.phys_addr >> VMT_PAGE_SHIFT, &acc, &backing);
            mmio_serve(k, backing);
        }
    }
    kvm_crash(k, "an instruction kept exiting for emulated accesses");
    return VMT_E_GUEST_CRASHED;
}

/* ---- fetch exits (emulation failures) ---- */

/* A #BP delivered to the trapped handler: the 5-word frame is at RSP. */
static enum handled on_bp_delivery(vmt_kvm *k, pending_ev *p, const vmt_regs *r)
{
    uint64_t f[5]; /* RIP, CS, RFLAGS, RSP, SS */
    uint8_t byte = 0;
    if (kvm_va_read(k, r->cr3, r->rsp, f, sizeof f) != VMT_OK ||
        kvm_va_read(k, r->cr3, f[0] - 1, &byte, 1) != VMT_OK || byte != 0xCC)
        return H_RUN; /* not an int3 delivery: the caller lets the handler run */
    if (make_event(k, p, EV_BP_IDT, VMT_EVENT_SOFTWARE_BREAKPOINT) != VMT_OK)
        return H_STOP;
    vmt_regs *e = &p->ev.regs;
    e->rip = f[0] - 1;
    e->cs = (uint16_t)f[1];
    e->rflags = f[2];
    e->rsp = f[3];
    e->ss = (uint16_t)f[4];
    p->ev.u.software_breakpoint.gfn = rip_gfn(k, e);
    p->ev.u.software_breakpoint.insn_len = 1;
    return H_EVENT;
}

/* A fetch from an execute-only frame (emulated, see vmitap/kvm.h): the
 * frame becomes fetchable (read-only memslot) and the vCPU is stepped
 * until it leaves it. */
static void xo_drop(vmt_kvm *k, unsigned i)
{
    vmt_gfn g = k->xo_gfn[i];
    vmt_log(VMT_LOG_TRACE, "kvm: xo: left frame 0x%llx", (unsigned long long)g);
    k->xo_gfn[i] = k->xo_gfn[--k->nxo];
    kvm_sync_frame(k, g);
}

/* The vCPU runs in the frames of its current instruction only (f, n): a
 * listed frame that is not one of them was left without a step noticing,
 * and becomes a hole again. That happens whenever the instruction that
 * leaves it jumps straight into another execute-only frame (a call from
 * private code into the shared library): the fetch from that hole exits
 * first and the step's #DB is never reported. Without this, such frames
 * filled the list and every later fetch from an execute-only frame was
 * reported as an X event instead of running (the tracer then missed the
 * hits there). */
static void xo_forget_others(vmt_kvm *k, const vmt_gfn *f, unsigned n)
{
    for (unsigned i = 0; i < k->nxo;) {
        bool current = false;
        for (unsigned j = 0; j < n; j++)
            current |= k->xo_gfn[i] == f[j];
        if (current)
            i++;
        else
            xo_drop(k, i);
    }
}

static bool xo_enter(vmt_kvm *k, vmt_gfn gfn, const vmt_gfn *f, unsigned n)
{
    vmt_view view;
    vmt_access acc;
    vmt_gfn backing;
    frame_rights(k, gfn, &view, &acc, &backing);
    if (!k->xo || !(acc & VMT_ACCESS_X) || (acc & VMT_ACCESS_R))
        return false;
    xo_forget_others(k, f, n);
    if (k->nxo == 2)
        return false;
    vmt_log(VMT_LOG_TRACE, "kvm: xo: entering frame 0x%llx at 0x%llx", (unsigned long long)gfn,
            (unsigned long long)kvm_rip(k));
    k->xo_gfn[k->nxo++] = gfn;
    if (kvm_sync_frame(k, gfn) != VMT_OK) {
        k->nxo--;
        return false;
    }
    return true;
}

/* After a step: execute-only frames the vCPU left are holes again. */
static void xo_next(vmt_kvm *k)
{
    if (!k->nxo)
        return;
    vmt_gfn at = rip_gfn(k, &(vmt_regs){.rip = kvm_rip(k), .cr3 = kvm_cr3(k)});
    for (unsigned i = 0; i < k->nxo;) {
        if (k->xo_gfn[i] == at) {
            kvm_sync_frame(k, at); /* the next instruction decides its content */
            i++;
            continue;
        }
        xo_drop(k, i);
    }
}

static vmt_status start_passthrough(vmt_kvm *k, vmt_gfn gfn)
{
    if (k->step.passthrough && k->pt_gfn != gfn) {
        k->step.passthrough = false;
        kvm_sync_frame(k, k->pt_gfn);
    }
    k->step.passthrough = true;
    k->pt_gfn = gfn;
    return kvm_sync_frame(k, gfn);
}

static enum handled on_step(vmt_kvm *k, pending_ev *p);

/* The #DB of our step at CPL 3, delivered to the trapped handler: undo
 * the delivery (5-word frame at RSP, TF cleared) and finish the step. */
static bool undo_db_delivery(vmt_kvm *k, const vmt_regs *r)
{
    uint64_t f[5]; /* RIP, CS, RFLAGS, RSP, SS */
    if (kvm_va_read(k, r->cr3, r->rsp, f, sizeof f) != VMT_OK || (f[1] & 3) != 3)
        return false;
    vmt_regs n = *r;
    n.rip = f[0];
    n.cs = (uint16_t)f[1];
    n.rflags = f[2] & ~(1ull << 8);
    n.rsp = f[3];
    n.ss = (uint16_t)f[4];
    return kvm_regs_set(k, &n) == VMT_OK;
}

static enum handled on_emulation_failure(vmt_kvm *k, pending_ev *p)
{
    vmt_regs r;
    if (kvm_regs_get(k, &r) != VMT_OK) {
        kvm_crash(k, "emulation failure, registers unreadable");
        return H_STOP;
    }
    vmt_gfn f[2];
    unsigned n = insn_frames(k, r.cr3, r.rip, f);
    for (unsigned i = 0; i < n; i++) {
        if (k->cls[f[i]] != CLASS_HOLE)
            continue;
        bool passing = k->step.passthrough && f[i] == k->pt_gfn;
        if (k->db_trap && f[i] == k->db_gfn && !passing) {
            if (i == 0 && r.rip == k->db_handler && want_step(k) && undo_db_delivery(k, &r))
                return on_step(k, p);
            return start_passthrough(k, f[i]) == VMT_OK ? H_RUN : H_STOP;
        }
        bool bp = k->bp_trap && f[i] == k->bp_gfn, pf = k->pf_trap && f[i] == k->pf_gfn;
        if ((bp || pf) && !passing) {
            if (i == 0 && bp && r.rip == k->bp_handler) {
                enum handled h = on_bp_delivery(k, p, &r);
                if (h != H_RUN)
                    return h;
            }
            if (i == 0 && pf && r.rip == k->pf_handler && kvm_linux_wants_pf_trap(k) && kvm_linux_fix_syscall(k, &r))
                return H_RUN;
            if (i == 0 && kvm_linux_window_by_hand(k, &r))
                return H_RUN;
            return start_passthrough(k, f[i]) == VMT_OK ? H_RUN : H_STOP;
        }
        if (xo_enter(k, f[i], f, n))
            return H_RUN;
        if (make_event(k, p, EV_FETCH, VMT_EVENT_MEMORY_ACCESS) != VMT_OK)
            return H_STOP;
        p->ev.u.memory_access.pa = (f[i] << VMT_PAGE_SHIFT) | (i == 0 ? (r.rip & 0xfff) : 0);
        p->ev.u.memory_access.va = i == 0 ? r.rip : (r.rip | 0xfff) + 1;
        p->ev.u.memory_access.access = VMT_ACCESS_X;
        return H_EVENT;
    }
    uint8_t b = 0;
    if (kvm_va_read(k, r.cr3, r.rip, &b, 1) == VMT_OK && b == 0xCC)
        return bp_event(k, p, EV_BP_KVM); /* the int3 quirk of these hosts */
    if (kvm_linux_emulation_retry(k, r.rip)) /* linux: kvm_pvm's spurious failures */
        return H_RUN;
    struct kvm_run *run = k->run;
    kvm_crash(k, "KVM could not emulate the instruction at rip 0x%llx (cpl %u, suberror %u)",
              (unsigned long long)r.rip, r.cs & 3u, run->internal.suberror);
    return H_STOP;
}

/* ---- single-step completion ---- */

/* iretq, done by hand: a single-step over it may not trap (the popped
 * RFLAGS decide), so the handler could run on unobserved. */
static bool emulate_iretq(vmt_kvm *k, vmt_regs *r)
{
    uint8_t insn[2];
    uint64_t f[5]; /* RIP, CS, RFLAGS, RSP, SS */
    if (kvm_va_read(k, r->cr3, r->rip, insn, 2) != VMT_OK || insn[0] != 0x48 || insn[1] != 0xcf ||
        kvm_va_read(k, r->cr3, r->rsp, f, sizeof f) != VMT_OK)
        return false;
    vmt_regs n = *r;
    n.rip = f[0];
    n.cs = (uint16_t)f[1];
    n.rflags = (f[2] & 0x3f7fd7ull) | 2;
    n.rsp = f[3];
    n.ss = (uint16_t)f[4];
    if (kvm_regs_set(k, &n) != VMT_OK)
        return false;
    *r = n;
    return true;
}

/* One instruction of a trapped handler frame ran: stop passing through
 * once RIP has left the frame. */
static void passthrough_next(vmt_kvm *k)
{
    vmt_regs r;
    if (kvm_regs_get(k, &r) != VMT_OK)
        return;
    if (rip_gfn(k, &r) == k->pt_gfn && (emulate_iretq(k, &r) || kvm_linux_window_by_hand(k, &r)))
        k->ctr.steps++;
    if (rip_gfn(k, &r) != k->pt_gfn) {
        k->step.passthrough = false;
        kvm_sync_frame(k, k->pt_gfn);
    }
}

static enum handled on_step(vmt_kvm *k, pending_ev *p)
{
    k->ctr.steps++;
    vmt_log(VMT_LOG_TRACE, "kvm: step done at 0x%llx", (unsigned long long)k->run->debug.arch.pc);
    if (k->step_after_mmio) { /* see KVM_EXIT_MMIO in handle_exit */
        k->step_after_mmio = false;
        k->dbg_flags = 0;
    }
    bool report = k->step.user || k->monitor_ss;
    k->step.user = false;
    k->step.fast = false;
    if (k->step.ntemp)
        drop_temps(k);
    xo_next(k);
    if (k->step.passthrough)
        passthrough_next(k);
    if (!report)
        return H_RUN;
    if (make_event(k, p, EV_STEP, VMT_EVENT_SINGLESTEP) != VMT_OK)
        return H_STOP;
    p->ev.u.singlestep.gfn = rip_gfn(k, &p->ev.regs);
    return H_EVENT;
}

/* ---- the exit dispatcher ---- */

static enum handled on_io(vmt_kvm *k)
{
    struct kvm_run *run = k->run;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    size_t n = (size_t)run->io.size * run->io.count;
    if (k->linux_boot) { /* linux: the board's serial port and reset */
        int r = kvm_linux_io(k, run->io.port, run->io.direction == KVM_EXIT_IO_OUT, data, run->io.size,
                             run->io.count);
        /* The kernel installs its IDT while it prints: follow it. */
        if (r != KVM_LINUX_IO_STOP && !k->step.passthrough)
            refresh_idt_traps(k);
        if (r != KVM_LINUX_IO_NOT_MINE)
            return r == KVM_LINUX_IO_STOP ? H_STOP : H_RUN;
    }
    if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == VMT_GUEST_CONSOLE_PORT) {
        console_put(k, data, n);
        /* A guest prints after installing its IDT: a cheap moment to look
         * for (a new) #BP handler. Other ports stay fast. */
        if (!k->step.passthrough)
            refresh_idt_traps(k);
    } else if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == VMT_GUEST_DONE_PORT) {
        uint32_t code = 0;
        memcpy(&code, data, run->io.size < 4 ? run->io.size : 4);
        k->exit_code = code;
        k->state = VMT_KVM_EXITED;
        vmt_log(VMT_LOG_INFO, "kvm: guest exited with code %u", code);
        return H_STOP;
    } else if (run->io.direction == KVM_EXIT_IO_IN) {
        memset(data, 0xff, n);
    }
    return H_RUN;
}

static enum handled handle_exit(vmt_kvm *k, pending_ev *p)
{
    struct kvm_run *run = k->run;
    k->ctr.exits++;
    if (run->exit_reason < KVM_EXIT_REASONS_LOGGED)
        k->exit_reasons[run->exit_reason]++;
    /* KVM single-steps by setting the guest's TF, re-set only while RIP is
     * where KVM_SET_GUEST_DEBUG was issued: an exception the guest takes
     * (TF cleared by the delivery), the emulator's RFLAGS write-back, or
     * our own register writes drop it, and the vCPU would then run free
     * (seen on kvm_amd in the bed). So while stepping, every exit other
     * than a step's own #DB re-arms the step before the next run. */
    if ((k->dbg_flags & KVM_GUESTDBG_SINGLESTEP) &&
        !(run->exit_reason == KVM_EXIT_DEBUG && run->debug.arch.exception == 1))
        k->dbg_flags = 0;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        return on_io(k);
    case KVM_EXIT_MMIO:
        /* After an emulated access the step exit comes from KVM's
         * emulator, and the guest's TF is gone: re-arm after it too. */
        if (k->dbg_flags == 0 && want_step(k))
            k->step_after_mmio = true;
        return on_mmio(k, p);
    case KVM_EXIT_DEBUG:
        if (run->debug.arch.exception == 1) {
            /* DR6: B0-B3 our breakpoints (kvm_ptw.c), BS a step; both may
             * come in one exit. A host reporting neither: a step. */
            uint64_t dr6 = run->debug.arch.dr6;
            vmt_log(VMT_LOG_TRACE, "kvm: #DB exit, dr6 0x%llx pc 0x%llx", (unsigned long long)dr6,
                    (unsigned long long)run->debug.arch.pc);
            bool bp = kvm_ptw_on_debug(k, dr6);
            if (!bp || (dr6 & (1ull << 14)))
                return on_step(k, p);
            return H_RUN;
        }
        if (run->debug.arch.exception == 3)
            return bp_event(k, p, EV_BP_KVM);
        vmt_log(VMT_LOG_WARN, "kvm: debug exit for exception %u ignored", run->debug.arch.exception);
        return H_RUN;
    case KVM_EXIT_INTERNAL_ERROR:
        if (run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION)
            return on_emulation_failure(k, p);
        kvm_crash(k, "KVM internal error, suberror %u", run->internal.suberror);
        return H_STOP;
    case KVM_EXIT_HLT:
        kvm_crash(k, "the guest halted without signalling done (no interrupt can wake it)");
        return H_STOP;
    case KVM_EXIT_SHUTDOWN:
        kvm_crash(k, "triple fault (KVM_EXIT_SHUTDOWN)");
        return H_STOP;
    case KVM_EXIT_FAIL_ENTRY:
        kvm_crash(k, "VM entry failed, hardware reason 0x%llx",
                  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        return H_STOP;
    case KVM_EXIT_INTR:
        return H_RUN;
    default:
        kvm_crash(k, "unexpected KVM exit reason %u", run->exit_reason);
        return H_STOP;
    }
}

/* ---- responses ---- */

/* #BP delivered by hand for REINJECT of an int3 that KVM intercepted:
 * the frame the CPU would push, on the stack the CPU would choose. */
static vmt_status deliver_bp(vmt_kvm *k, const vmt_regs *r)
{
    struct kvm_sregs s = *kvm_sregs(k);
    uint8_t g[16];
    vmt_status st = kvm_va_read(k, s.cr3, s.idt.base + 3 * 16, g, sizeof g);
    if (st != VMT_OK || !(g[5] & 0x80) || s.idt.limit < 4 * 16 - 1)
        return VMT_E_INVALID;
    uint64_t hi;
    memcpy(&hi, g + 8, 8);
    uint64_t target = (uint64_t)g[0] | (uint64_t)g[1] << 8 | (uint64_t)g[6] << 16 | (uint64_t)g[7] << 24 |
                      (hi & 0xffffffffull) << 32;
    uint16_t sel = (uint16_t)(g[2] | g[3] << 8);
    unsigned ist = g[4] & 7, type = g[5] & 0xf;
    bool cpl_change = (r->cs & 3) != (sel & 3);
    uint64_t rsp = r->rsp;
    if (ist || cpl_change) {
        uint64_t off = ist ? 0x24 + 8ull * (ist - 1) : 4;
        if ((st = kvm_va_read(k, s.cr3, s.tr.base + off, &rsp, 8)) != VMT_OK)
            return st;
    }
    rsp &= ~0xfull;
    uint64_t frame[5] = {r->rip + 1, r->cs, r->rflags, r->rsp, r->ss};
    rsp -= sizeof frame;
    if ((st = kvm_va_write(k, s.cr3, rsp, frame, sizeof frame)) != VMT_OK)
        return st;
    vmt_regs n = *r;
    n.rip = target;
    n.rsp = rsp;
    n.cs = sel;
    n.ss = cpl_change ? (uint16_t)(sel & 3) : r->ss;
    n.rflags &= ~((1ull << 8) | (1ull << 14) | (1ull << 16) | (1ull << 17)); /* TF NT RF VM */
    if (type == 0xe)
        n.rflags &= ~(1ull << 9); /* interrupt gate: IF off */
    return kvm_regs_set(k, &n);
}

static vmt_status apply_response(vmt_kvm *k, pending_ev *p, const vmt_response *resp)
{
    vmt_status st = VMT_OK;
    vmt_action a = resp->action;
    if (resp->set_view && !kvm_view_get(k, resp->view))
        return VMT_E_VIEW_NOT_FOUND;
    vmt_view target = a == VMT_ACTION_FAST_SINGLESTEP ? resp->view : p->ev.view;
    if (a == VMT_ACTION_FAST_SINGLESTEP && !kvm_view_get(k, target))
        return VMT_E_VIEW_NOT_FOUND;

    if (p->kind == EV_MMIO) {
        /* every action lets the access happen: from target's backing */
        vmt_access acc;
        vmt_gfn backing;
        kvm_view_lookup(kvm_view_get(k, target), p->ev.u.memory_access.pa >> VMT_PAGE_SHIFT, &acc, &backing);
        mmio_serve(k, backing);
        /* The next KVM_RUN retires the instruction anyway; retire it now
         * (an extra KVM_RUN, about one exit's cost) only when something
         * must happen after it and before the guest runs on. */
        bool plain = (a == VMT_ACTION_CONTINUE || a == VMT_ACTION_EMULATE || a == VMT_ACTION_FAST_SINGLESTEP) &&
                     !resp->set_regs && !resp->set_view;
        if (!plain && (st = finish_mmio(k, target)) != VMT_OK)
            return st;
        if (plain)
            k->read_pending = !k->run->mmio.is_write;
    }
    bool reinject = a == VMT_ACTION_REINJECT && (p->kind == EV_BP_KVM || p->kind == EV_BP_IDT);
    if (reinject && p->kind == EV_BP_KVM) {
        if ((st = deliver_bp(k, &p->ev.regs)) != VMT_OK) {
            vmt_log(VMT_LOG_ERROR, "kvm: cannot reinject #BP: %s", vmt_status_str(st));
            return st;
        }
    } else if (!reinject && (resp->set_regs || p->kind == EV_BP_IDT)) {
        /* for EV_BP_IDT this undoes the #BP delivery */
        if ((st = kvm_regs_set(k, resp->set_regs ? &resp->regs : &p->ev.regs)) != VMT_OK)
            return st;
    }
    if (reinject && k->bp_trap && (st = start_passthrough(k, k->bp_gfn)) != VMT_OK)
        return st;
    if (resp->set_view && (st = kvm_switch_view(k, resp->view)) != VMT_OK)
        return st;

    switch (a) {
    case VMT_ACTION_SINGLESTEP:
        if (p->kind == EV_MMIO || p->kind == EV_PTW) {
            k->pending_ss = true; /* the instruction already retired */
            break;
        }
        k->step.user = true;
        if (p->kind == EV_FETCH) {
            vmt_regs r;
            if ((st = kvm_regs_get(k, &r)) == VMT_OK)
                st = temps_for_insn(k, &r, k->active);
        }
        break;
    case VMT_ACTION_FAST_SINGLESTEP:
        if (p->kind == EV_MMIO || p->kind == EV_PTW)
            break; /* done: the access was served from resp.view */
        {
            vmt_regs r;
            if ((st = kvm_regs_get(k, &r)) == VMT_OK)
                st = temps_for_insn(k, &r, target);
            k->step.fast = true;
        }
        break;
    case VMT_ACTION_CONTINUE:
    case VMT_ACTION_EMULATE:
    case VMT_ACTION_REINJECT:
        if (p->kind == EV_FETCH) {
            vmt_regs r;
            if ((st = kvm_regs_get(k, &r)) == VMT_OK)
                st = temps_for_insn(k, &r, k->active);
        }
        break;
    default:
        return VMT_E_INVALID;
    }
    return st;
}

/* ---- wait_for_event ---- */

/* The next page-table write found by kvm_ptw.c, as a W event. */
static bool ptw_event(vmt_kvm *k, pending_ev *p)
{
    vmt_pa pa;
    vmt_view view;
    /* Not in the middle of a step the application asked for: its
     * SINGLESTEP event comes first (one instruction later). */
    if (k->step.user || k->step.fast || k->step.ntemp || k->pending_ss)
        return false;
    kvm_ptw_check(k);
    if (!kvm_ptw_pop(k, &pa, &view) || make_event(k, p, EV_PTW, VMT_EVENT_MEMORY_ACCESS) != VMT_OK)
        return false;
    p->ev.view = view;
    p->ev.u.memory_access.pa = pa;
    p->ev.u.memory_access.access = VMT_ACCESS_W;
    return true;
}

static vmt_status stop_status(const vmt_kvm *k)
{
    return k->state == VMT_KVM_EXITED ? VMT_E_GUEST_EXITED : VMT_E_GUEST_CRASHED;
}

static vmt_status deliver(vmt_kvm *k, pending_ev *p, vmt_event_fn fn, void *user)
{
    vmt_response resp = {.action = VMT_ACTION_CONTINUE};
    k->ctr.events++;
    k->read_pending = p->kind == EV_MMIO && !k->run->mmio.is_write;
    vmt_status st = fn ? fn(user, &p->ev, &resp) : VMT_OK;
    k->read_pending = false; /* apply_response may set it again */
    if (st != VMT_OK)
        vmt_log(VMT_LOG_WARN, "kvm: event callback returned %s; continuing", vmt_status_str(st));
    vmt_log(VMT_LOG_DEBUG, "kvm: event %d (kind %d) at rip 0x%llx view %u -> action %d", p->ev.reason, p->kind,
            (unsigned long long)p->ev.regs.rip, p->ev.view, resp.action);
    st = apply_response(k, p, &resp);
    if (st == VMT_OK)
        st = kvm_step_arm(k, want_step(k));
    if (st != VMT_OK && k->state != VMT_KVM_RUNNING)
        return stop_status(k);
    return st;
}

vmt_status kvm_wait_for_event(void *d, int timeout_ms, vmt_event_fn fn, void *user)
{
    vmt_kvm *k = d;
    if (k->state != VMT_KVM_RUNNING)
        return stop_status(k);
    if (k->paused) {
        if (timeout_ms > 0)
            usleep((useconds_t)timeout_ms * 1000);
        return VMT_E_TIMEOUT;
    }
    pending_ev p;
    if (!k->step.passthrough)
        refresh_idt_traps(k);
    if (k->pending_ss) {
        k->pending_ss = false;
        if (make_event(k, &p, EV_STEP, VMT_EVENT_SINGLESTEP) != VMT_OK)
            return VMT_E_DRIVER;
        p.ev.u.singlestep.gfn = rip_gfn(k, &p.ev.regs);
        return deliver(k, &p, fn, user);
    }
    sigset_t saved;
    if (!kick_enter(k, &saved))
        return VMT_E_DRIVER;
    bool timed = timeout_ms >= 0;
    if (timed && !timer_arm(k, timeout_ms)) {
        kick_leave(k, &saved);
        return VMT_E_DRIVER;
    }
    vmt_status st = VMT_OK;
    for (;;) {
        /* The checkpoint of page-table writes: nothing runs before they are reported. */
        if (ptw_event(k, &p)) {
            st = deliver(k, &p, fn, user);
            break;
        }
        update_db_trap(k, want_step(k));
        if ((st = kvm_step_arm(k, want_step(k))) != VMT_OK)
            break;
        int r = ioctl(k->vcpu_fd, KVM_RUN, 0);
        kvm_regs_ran(k);
        k->ctr.runs++;
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                k->run->immediate_exit = 0;
                if (timed && kick_take(k)) { /* the timer's kick; else another signal */
                    timed = false;
                    st = VMT_E_TIMEOUT;
                    break;
                }
                continue;
            }
            kvm_crash(k, "KVM_RUN failed: %s", strerror(errno));
            st = VMT_E_GUEST_CRASHED;
            break;
        }
        enum handled h = handle_exit(k, &p);
        if (h == H_STOP) {
            st = k->state == VMT_KVM_RUNNING ? VMT_E_DRIVER : stop_status(k);
            break;
        }
        if (h == H_EVENT) {
            st = deliver(k, &p, fn, user);
            break;
        }
    }
    k->run->immediate_exit = 0;
    if (timed)
        timer_disarm(k);
    kick_leave(k, &saved);
    return st;
}
