// SPDX-License-Identifier: MIT
/* Embeds the vmitap tracer in a program: boots the bundled test guest on
 * the KVM micro-VM, puts an invisible breakpoint on a kernel function
 * (default `schedule`), runs the guest to the end and compares the hits
 * with the guest's own call counter.   usage: embed_tracer [SYMBOL]
 *
 * Builds against the installed package alone (pkg-config vmitap, or
 * find_package(vmitap)). Exit status: 0 hits == calls; 1 an error or a
 * mismatch; 77 no usable /dev/kvm (nothing was run). */
#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include <vmitap/vmitap.h>

static void on_hit(void *user, vmt_tracer *t, const vmt_tracer_hit *hit)
{
    (void)t;
    uint64_t *seen = user;
    if ((*seen)++ < 3)
        printf("hit %s at rip %#" PRIx64 ", cr3 %#" PRIx64 "\n", hit->bp->name, hit->regs->rip,
               hit->regs->cr3);
}

int main(int argc, char **argv)
{
    const char *symbol = argc > 1 ? argv[1] : "schedule";
    const char *guest = vmt_kvm_default_guest(); /* $VMITAP_GUEST or the installed one */
    char why[200];
    printf("vmitap %s, guest %s\n", vmt_version(), guest);
    if (access(guest, R_OK) != 0) {
        fprintf(stderr, "embed_tracer: cannot read the guest %s\n", guest);
        return 1;
    }
    if (!vmt_kvm_available(why, sizeof why)) {
        fprintf(stderr, "embed_tracer: no KVM: %s\n", why);
        return 77;
    }
    vmt_core *vmi;
    vmt_kvm *kvm;
    VMT_OPTS(vmt_kvm_opts, ko, .iterations = 50);
    vmt_regs regs;
    if (vmt_kvm_core_new(&ko, &vmi, &kvm) != VMT_OK || vmt_core_get_regs(vmi, 0, &regs) != VMT_OK)
        return 1;
    uint64_t seen = 0;
    /* int3: fast; the memory controller would be invisible to guest reads
     * on KVM but makes every fetch from the (hot) kernel page trap. */
    VMT_OPTS(vmt_tracer_opts, to, .controller = VMT_TRACER_CONTROLLER_INT3, .on_hit = on_hit,
             .user = &seen);
    vmt_tracer *t;
    VMT_OPTS(vmt_tracer_bp_opts, bo, .global = true); /* kernel: every address space */
             vmt_tracer_bp_id id;
    vmt_tracer_stop_reason stop;
    vmt_status st = vmt_tracer_new(vmi, &to, &t);
    if (st == VMT_OK)
        st = vmt_tracer_load_symbols(t, guest);
    if (st == VMT_OK)
        st = vmt_tracer_add_symbol(t, symbol, vmt_regs_translation_root(&regs, 0), &bo, &id);
    if (st == VMT_OK)
        st = vmt_tracer_run(t, NULL, &stop); /* until the guest exits */
    if (st != VMT_OK) {
        fprintf(stderr, "embed_tracer: %s\n", vmt_status_str(st));
        return 1;
    }
    VMT_OPTS(vmt_tracer_bp_info, bi);
    vmt_tracer_bp_get(t, id, &bi);
    const vmt_guest_counter *c = vmt_guest_counter_find(vmt_kvm_guest_stats(kvm), symbol);
    uint64_t calls = c ? c->calls : 0; /* guest memory: gone after vmt_core_free */
    printf("%s: %" PRIu64 " hits, guest counted %" PRIu64 " calls (%s)\n", symbol, bi.hits, calls,
           vmt_tracer_stop_reason_str(stop));
    vmt_tracer_free(t); /* detaches: the guest is left as it was */
    vmt_core_free(vmi);
    return c && calls == bi.hits ? 0 : 1;
}
