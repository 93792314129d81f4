/* Internals of the KVM micro-VM driver, shared by its .c files.
 *
 * Memory model. Every frame the VMM owns (guest RAM, then shadow frames
 * from allocate_gfn) is a page of one memfd. `raw` maps the whole memfd:
 * driver read/write are memcpy on it. `gmap` maps guest RAM as the guest
 * sees it in the active view: page g of gmap maps the memfd page of g's
 * backing frame (mmap MAP_FIXED remaps it), and the KVM memslots point
 * into gmap. So changing which frame backs a gfn costs one mmap, not a
 * memslot change.
 *
 * Access rights become a "class" per frame, which is what memslots can
 * express:
 *   NORMAL  read/write/execute natively (RWX)
 *   RO      KVM_MEM_READONLY slot: reads and fetches native, writes exit
 *           as MMIO (RX)
 *   HOLE    no memslot: reads and writes exit as MMIO (served or
 *           reported), fetches exit as an emulation failure (anything
 *           without X, or without R)
 * RAM is covered by one memslot per 2 MiB chunk until a frame of the chunk
 * needs another class; the chunk is then split once into one memslot per
 * frame (holes have none), so later changes cost one or two memslot ops. */
#ifndef VMITAP_DRIVERS_KVM_INTERNAL_H
#define VMITAP_DRIVERS_KVM_INTERNAL_H

#include <glib.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "guest/abi.h"
#include "vmitap/kvm.h"

#define KVM_CHUNK_FRAMES 512u          /* 2 MiB per initial memslot */
#define KVM_SHADOW_FRAMES (1u << 16)   /* capacity for allocate_gfn (sparse) */
#define KVM_CONSOLE_MAX (1u << 20)     /* console bytes kept */
#define KVM_MAX_TEMP 4                 /* frames overridden during one step */

enum kvm_class { CLASS_NORMAL = 0, CLASS_RO = 1, CLASS_HOLE = 2 };

/* Stored with a frame's access in a view: set with
 * VMT_SET_ACCESS_IGNORE_PAGE_WALK_UPDATES, the frame holds page tables and
 * must stay walkable by the CPU (see kvm_op_set_access). */
#define KVM_ACCESS_WALK 8

/* A view: default access plus the frames that differ from it. Values of
 * `frames` pack (backing gfn << 4) | access (with KVM_ACCESS_WALK). */
typedef struct kvm_view {
    vmt_access def;
    GHashTable *frames; /* gfn -> packed entry */
} kvm_view;

/* Page-table write detection (kvm_ptw.c). */
typedef struct kvm_ptw {
    GHashTable *frames;   /* watched page-table gfn -> ptw_frame (snapshot) */
    GArray *queue;        /* changed entries not yet reported */
    uint64_t handler;     /* the #PF handler DR0 is on, 0 = none */
    unsigned next_slot;   /* return breakpoint to replace when all are pending */
    uint64_t writes, faults, returns, dropped;
} kvm_ptw;

/* A frame forced to some class/backing for the duration of one step. */
typedef struct kvm_temp {
    vmt_gfn gfn;
    uint8_t cls;
    vmt_gfn backing;
    vmt_view access_view; /* whose access rights decide MMIO on this frame */
    bool swap;            /* content swapped into the installed frame (see add_temp) */
} kvm_temp;

/* What the vCPU is single-stepping for (several may be true at once). */
typedef struct kvm_step {
    bool user;          /* a SINGLESTEP response: report a SINGLESTEP event after */
    bool fast;          /* FAST_SINGLESTEP: temps revert silently after */
    bool passthrough;   /* running a trapped handler frame (pt_gfn), step by step */
    unsigned ntemp;
    kvm_temp temp[KVM_MAX_TEMP];
} kvm_step;

/* linux: COM1 of the Linux guest (kvm_serial.c) */
#define KVM_UART_BASE 0x3f8
#define KVM_UART_IRQ 4
typedef struct kvm_uart {
    uint8_t ier, lcr, mcr, fcr, scr, dll, dlm;
    bool thri_pending; /* THR empty, not yet acknowledged by an IIR read */
    bool irq_level;    /* what IRQ 4 was last set to */
    uint8_t rx[4096];  /* bytes from vmt_kvm_serial_input, not yet read */
    uint32_t rx_head, rx_tail;
} kvm_uart;

struct vmt_kvm {
    int kvm_fd, vm_fd, vcpu_fd;
    struct kvm_run *run;
    size_t run_size;

    /* memory */
    int mem_fd;
    uint8_t *raw;  /* all frames, raw */
    uint8_t *gmap; /* RAM as the guest sees it */
    uint64_t ram_frames, shadow_cap, shadow_next;
    GHashTable *shadow_free; /* freed shadow gfns (set) */
    GHashTable *shadow_used; /* allocated shadow gfns (set) */

    /* memslots */
    uint32_t nchunks, max_slots;
    uint8_t *chunk_split;
    uint8_t *cls;      /* installed class per RAM frame */
    uint64_t *backing; /* installed backing per RAM frame */
    int32_t *fslot;    /* per-frame memslot id (split chunks), -1 = none */
    uint32_t *free_slots;
    uint32_t nfree_slots;

    /* views */
    GHashTable *views; /* view id -> kvm_view* */
    vmt_view active;
    vmt_view next_view;

    /* the guest's #BP handler frame, kept a hole to catch int3 at CPL 3 */
    bool bp_trap;
    vmt_gfn bp_gfn;
    uint64_t bp_handler; /* handler VA */
    /* the guest's #DB handler frame, a hole while a step at CPL 3 is due:
     * these hosts deliver that step's #DB to the guest instead of exiting */
    bool db_trap;
    vmt_gfn db_gfn;
    uint64_t db_handler;
    vmt_gfn pt_gfn; /* the trapped frame being passed through (step.passthrough) */
    uint64_t idt_base;   /* IDT base the trap was computed for */

    /* run state */
    vmt_kvm_state state;
    uint32_t exit_code;
    char crash[256];
    bool paused;
    bool monitor_ss;    /* report every instruction as SINGLESTEP */
    bool pending_ss;    /* a SINGLESTEP event is due before running again */
    bool read_pending;  /* an MMIO read awaits its data (during a callback) */
    bool xo;            /* VMT_KVM_F_EMULATE_EXECUTE_ONLY */
    unsigned nxo;       /* execute-only frames made fetchable while the vCPU runs in them */
    vmt_gfn xo_gfn[2];
    bool have_timer;
    timer_t timer;      /* bounds KVM_RUN for wait_for_event's timeout */
    pid_t timer_tid;    /* the thread the timer signals */
    int kick_sig;       /* the timer's signal, never delivered (kvm_run.c) */
    bool have_run_mask;
    uint64_t run_mask;  /* the vCPU's KVM_SET_SIGNAL_MASK (the kernel's 8-byte set) */
    uint32_t dbg_flags; /* KVM_SET_GUEST_DEBUG control currently set (0: reload) */
    bool step_after_mmio; /* the next step exit follows an emulated access */
    uint64_t dbg_dr[8]; /* our debug registers: DR0-3 addresses, DR7 (kvm_ptw.c) */
    kvm_ptw ptw;
#define KVM_EXIT_REASONS_LOGGED 40
    uint64_t exit_reasons[KVM_EXIT_REASONS_LOGGED]; /* exits by KVM_EXIT_*, logged at free */
    vmt_kvm_host host; /* what this KVM does (kvm_probe.c) */
    bool kgs_valid;     /* kgs holds KERNEL_GS_BASE since the last KVM_RUN */
    bool kgs_known;     /* kgs was read at least once */
    bool lazy_kgs;      /* VMT_KVM_F_LAZY_KERNEL_GS_BASE */
    uint64_t kgs;
    kvm_step step;
    uint8_t swap_save[KVM_MAX_TEMP][4096]; /* installed frames' own bytes during a swap */
    char *console;
    size_t console_len;
    vmt_kvm_counters ctr;

    /* linux: a bzImage boot (kvm_linux.c) with its board devices */
    bool linux_boot;
    bool emulated_cpl0; /* the host emulates guest kernel code (kvm_pvm) */
    bool bp_monitor;    /* SOFTWARE_BREAKPOINT monitored: keep the #BP trap */
    bool step_blockirq; /* single-steps use KVM_GUESTDBG_BLOCKIRQ */
    uint64_t retry_rip; /* last emulation failure retried, and how often */
    unsigned retries;
    uint64_t emu_retries; /* emulation failures resumed (kvm_pvm) */
    /* kvm_pvm runs SYSCALL from guest user mode half-way (see
     * kvm_linux_fix_syscall): the guest's #PF handler frame is then kept a
     * hole, so the #PF that follows is seen and turned into the entry. */
    bool pf_trap;
    vmt_gfn pf_gfn;
    uint64_t pf_handler;
    /* Until the guest first enters the kernel from user mode, the #PF trap
     * waits (it costs every interrupt a few steps): the frame of the
     * kernel's entry stack (TSS.RSP0) is kept read-only instead, and the
     * first write there switches to the #PF trap. That first write is the
     * kernel's own, before user mode ever ran: Linux copies the IRET frame
     * of its first return to user mode onto that stack. */
    bool user_seen;
    bool es_trap;
    vmt_gfn es_gfn;
    uint64_t syscall_fixups; /* SYSCALLs finished by hand */
    bool layout_warned;      /* LSTAR found off the trapped page (said once) */
    kvm_uart uart;
    uint8_t cmos_index; /* the RTC's register select (port 0x70) */
    uint8_t cmos[128];  /* its registers as last written */
};

/* kvm_mem.c */
vmt_status kvm_mem_init(vmt_kvm *k, uint64_t ram_bytes);
void kvm_mem_fini(vmt_kvm *k);
bool kvm_pa_backed(const vmt_kvm *k, vmt_pa pa, size_t len);
uint8_t *kvm_frame_raw(vmt_kvm *k, vmt_gfn gfn);
uint8_t *kvm_frame_content(vmt_kvm *k, vmt_gfn gfn);
void kvm_raw_copy(vmt_kvm *k, vmt_pa pa, void *buf, size_t len, bool write);
vmt_status kvm_install(vmt_kvm *k, vmt_gfn gfn, unsigned cls, vmt_gfn backing);
/* Effective access and backing of gfn in a view (view must exist). */
void kvm_view_lookup(const kvm_view *v, vmt_gfn gfn, vmt_access *acc, vmt_gfn *backing);
kvm_view *kvm_view_get(vmt_kvm *k, vmt_view id);
unsigned kvm_class_of(vmt_access a);
/* Re-installs gfn as the active view + traps + temps say. */
vmt_status kvm_sync_frame(vmt_kvm *k, vmt_gfn gfn);
/* Reads/writes the guest-visible RAM (through the active layout). */
vmt_status kvm_guest_read(void *k, vmt_pa pa, void *buf, size_t len);
vmt_status kvm_guest_write(vmt_kvm *k, vmt_pa pa, const void *buf, size_t len);

/* kvm_views.c: driver ops on memory, access rights and views */
vmt_status kvm_views_init(vmt_kvm *k);
void kvm_views_fini(vmt_kvm *k);
vmt_status kvm_switch_view(vmt_kvm *k, vmt_view id);
vmt_status kvm_op_read(void *d, vmt_pa pa, void *buf, size_t len);
vmt_status kvm_op_write(void *d, vmt_pa pa, const void *buf, size_t len);
vmt_status kvm_op_get_access(void *d, vmt_gfn gfn, vmt_view view, vmt_access *out);
vmt_status kvm_op_set_access(void *d, vmt_gfn gfn, vmt_view view, vmt_access access, unsigned flags);
vmt_status kvm_op_create_view(void *d, vmt_access default_access, vmt_view *out);
vmt_status kvm_op_destroy_view(void *d, vmt_view view);
vmt_status kvm_op_switch_view(void *d, vmt_view view);
vmt_status kvm_op_change_view_gfn(void *d, vmt_view view, vmt_gfn old_gfn, vmt_gfn new_gfn);
vmt_status kvm_op_reset_view_gfn(void *d, vmt_view view, vmt_gfn gfn);
vmt_status kvm_op_allocate_gfn(void *d, vmt_gfn *out);
vmt_status kvm_op_free_gfn(void *d, vmt_gfn gfn);

/* kvm_probe.c: the host profile, probed once per process */
void kvm_probe_host(int kvm_fd, vmt_kvm_host *out);

/* kvm_ptw.c: page-table writes on standard KVM */
void kvm_ptw_init(vmt_kvm *k);
void kvm_ptw_fini(vmt_kvm *k);
/* gfn's access in view changed to acc: watch it or stop. */
void kvm_ptw_update(vmt_kvm *k, vmt_gfn gfn, vmt_view view, vmt_access acc);
void kvm_ptw_view_destroyed(vmt_kvm *k, vmt_view view);
/* The VMM wrote guest memory: not a guest write. */
void kvm_ptw_host_wrote(vmt_kvm *k, vmt_pa pa, size_t len);
/* Queues what changed since the last check; true when something is queued. */
bool kvm_ptw_check(vmt_kvm *k);
bool kvm_ptw_pop(vmt_kvm *k, vmt_pa *pa, vmt_view *view);
/* True where the guest's #PF handler frame must be a hole: frames are
 * watched and debug registers do not fire on this host. */
bool kvm_ptw_wants_pf_trap(const vmt_kvm *k);
/* Follows the guest's #PF handler with DR0 (call when the IDT may have changed). */
void kvm_ptw_refresh(vmt_kvm *k);
/* A #DB exit with DR6 = dr6: true if one of our breakpoints (DR0-3) fired. */
bool kvm_ptw_on_debug(vmt_kvm *k, uint64_t dr6);

/* kvm_boot.c */
vmt_status kvm_boot_load(vmt_kvm *k, const char *path, const vmt_kvm_opts *o);

/* linux: kvm_linux.c and kvm_serial.c */
enum { KVM_LINUX_IO_NOT_MINE = 0, KVM_LINUX_IO_DONE = 1, KVM_LINUX_IO_STOP = 2 };
vmt_status kvm_linux_vm_init(vmt_kvm *k); /* before the vCPU exists */
vmt_status kvm_linux_boot(vmt_kvm *k, const vmt_kvm_opts *o);
/* Port I/O of the Linux board (serial, reset); KVM_LINUX_IO_STOP: the guest is over. */
int kvm_linux_io(vmt_kvm *k, uint16_t port, bool out, uint8_t *data, size_t size, size_t count);
/* True where the #PF handler's frame must be trapped for kvm_linux_fix_syscall. */
bool kvm_linux_wants_pf_trap(const vmt_kvm *k);
/* r: the vCPU at the first fetch of the #PF handler. If the #PF is the
 * one kvm_pvm raises after a half-done SYSCALL, puts the vCPU where the
 * SYSCALL should have left it and returns true; else false (nothing
 * changed). */
bool kvm_linux_fix_syscall(vmt_kvm *k, const vmt_regs *r);
/* kvm_pvm: if r is in a CPL 0 window with the user's stack or GS.base
 * (SYSCALL entry, SYSRETQ exit), runs it to its end by hand (*r updated,
 * true). */
bool kvm_linux_window_by_hand(vmt_kvm *k, vmt_regs *r);
/* True to resume after an emulation failure at rip on an emulating host
 * (retried, then single-stepped once) rather than call it a crash. */
bool kvm_linux_emulation_retry(vmt_kvm *k, uint64_t rip);
bool kvm_serial_io(vmt_kvm *k, uint16_t port, bool out, uint8_t *data, size_t size, size_t count);

/* kvm_cpu.c: registers */
vmt_status kvm_regs_get(vmt_kvm *k, vmt_regs *out);
vmt_status kvm_regs_get_exact(vmt_kvm *k, vmt_regs *out); /* KERNEL_GS_BASE read even if lazy */
vmt_status kvm_regs_set(vmt_kvm *k, const vmt_regs *r);
vmt_status kvm_sync_init(vmt_kvm *k);
vmt_status kvm_debug_init(vmt_kvm *k);
void kvm_regs_ran(vmt_kvm *k);
const struct kvm_sregs *kvm_sregs(vmt_kvm *k);
uint64_t kvm_rip(vmt_kvm *k);
uint64_t kvm_rsp(vmt_kvm *k);
uint64_t kvm_cr3(vmt_kvm *k);
vmt_status kvm_step_arm(vmt_kvm *k, bool step);
vmt_status kvm_msr_get(vmt_kvm *k, uint32_t index, uint64_t *out); /* one vCPU ioctl */

/* Virtual-address access through the current CR3 and the guest view. */
vmt_status kvm_va_read(vmt_kvm *k, uint64_t cr3, uint64_t va, void *buf, size_t len);
vmt_status kvm_va_write(vmt_kvm *k, uint64_t cr3, uint64_t va, const void *buf, size_t len);
vmt_status kvm_va_to_pa(vmt_kvm *k, uint64_t cr3, uint64_t va, vmt_pa *out);

/* kvm_run.c */
/* The handler of the guest's IDT vector vec and the RAM frame it starts in. */
bool kvm_idt_gate(vmt_kvm *k, unsigned vec, uint64_t *handler, vmt_gfn *gfn);
vmt_status kvm_wait_for_event(void *d, int timeout_ms, vmt_event_fn fn, void *user);
void kvm_crash(vmt_kvm *k, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;


#endif /* VMITAP_DRIVERS_KVM_INTERNAL_H */
