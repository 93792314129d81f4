/* vmitap — registers, events and responses. API.md section 2. */
#ifndef VMITAP_EVENT_H
#define VMITAP_EVENT_H

#include "vmitap/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vmt_regs {
    uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t rip, rflags;
    uint64_t cr0, cr2, cr3, cr4, efer;
    uint64_t fs_base, gs_base, kernel_gs_base;
    uint16_t cs, ss; /* selectors; CPL = cs & 3 */
} vmt_regs;

/* cr3 & 0x000ffffffffff000: the page-table root with CR3's flag and PCID
 * bits masked off. 0 (no root) for regs == NULL. */
vmt_pa vmt_regs_translation_root(const vmt_regs *regs, vmt_va va);

typedef enum vmt_event_reason {
    VMT_EVENT_MEMORY_ACCESS = 1,       /* EPT/permission violation */
    VMT_EVENT_SOFTWARE_BREAKPOINT = 2, /* the guest executed a trap instruction */
    VMT_EVENT_SINGLESTEP = 3,
} vmt_event_reason;

typedef struct vmt_event {
    vmt_vcpu vcpu;
    bool has_view; /* false when the driver cannot tell the view */
    vmt_view view; /* the vCPU's view when the event fired */
    vmt_regs regs; /* at the event; rip points AT the trap instruction */
    vmt_event_reason reason;
    union {
        struct {
            vmt_pa pa;
            vmt_va va;
            vmt_access access;
        } memory_access;
        struct {
            vmt_gfn gfn;
            uint8_t insn_len;
        } software_breakpoint;
        struct {
            vmt_gfn gfn;
        } singlestep;
    } u;
} vmt_event;
/* gfn values are the frames as the guest addresses them (never a shadow frame). */

typedef enum vmt_action {
    VMT_ACTION_CONTINUE = 0,    /* resume; the instruction proceeds */
    VMT_ACTION_REINJECT,        /* deliver the trap to the guest's own handler */
    VMT_ACTION_SINGLESTEP,      /* execute one instruction, then a SINGLESTEP event */
    VMT_ACTION_FAST_SINGLESTEP, /* one instruction in resp.view, then silently back */
    VMT_ACTION_EMULATE,         /* driver emulates the faulting access */
} vmt_action;

typedef struct vmt_response {
    vmt_action action;
    bool set_view;
    vmt_view view; /* view for the vCPU after the response */
    bool set_regs;
    vmt_regs regs; /* registers to write back */
} vmt_response;

#ifdef __cplusplus
}
#endif
#endif /* VMITAP_EVENT_H */
