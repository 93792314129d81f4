/* Embeds the vmitap tracer in a program: boots the bundled test guest on
 * the KVM micro-VM, puts an invisible breakpoint on a kernel function
 * (default `schedule`), runs the guest to the end and compares the hits
 * with the guest's own call counter.   usage: embed_tracer [SYMBOL] */
#include <inttypes.h>
#include <stdio.h>

#include "guest/abi.h"
#include "vmitap/kvm.h"
#include "vmitap/vmitap.h"

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
    char why[200];
    if (!vmt_kvm_available(why, sizeof why)) {
        fprintf(stderr, "embed_tracer: no KVM: %s\n", why);
        return 1;
    }
    vmt_core *vmi;
    vmt_kvm *kvm;
    vmt_kvm_opts ko = {.sz = sizeof ko, .iterations = 50};
    vmt_regs regs;
    if (vmt_kvm_core_new(&ko, &vmi, &kvm) != VMT_OK || vmt_core_get_regs(vmi, 0, &regs) != VMT_OK)
        return 1;
    uint64_t seen = 0;
    /* int3: fast; the memory controller would be invisible to guest reads
     * on KVM but makes every fetch from the (hot) kernel page trap. */
    vmt_tracer_opts to = {.sz = sizeof to, .controller = VMT_TRACER_CONTROLLER_INT3,
                          .on_hit = on_hit, .user = &seen};
    vmt_tracer *t;
    vmt_tracer_bp_opts bo = {.sz = sizeof bo, .global = true}; /* kernel: every address space */
    vmt_tracer_bp_id id;
    vmt_tracer_stop_reason stop;
    vmt_status st = vmt_tracer_new(vmi, &to, &t);
    if (st == VMT_OK)
        st = vmt_tracer_load_symbols(t, vmt_kvm_default_guest());
    if (st == VMT_OK)
        st = vmt_tracer_add_symbol(t, symbol, vmt_regs_translation_root(&regs, 0), &bo, &id);
    if (st == VMT_OK)
        st = vmt_tracer_run(t, NULL, &stop); /* until the guest exits */
    if (st != VMT_OK) {
        fprintf(stderr, "embed_tracer: %s\n", vmt_status_str(st));
        return 1;
    }
    vmt_tracer_bp_info bi;
    vmt_tracer_bp_get(t, id, &bi);
    const vmt_guest_counter *c = vmt_guest_counter_find(vmt_kvm_guest_stats(kvm), symbol);
    uint64_t calls = c ? c->calls : 0; /* guest memory: gone after vmt_core_free */
    printf("%s: %" PRIu64 " hits, guest counted %" PRIu64 " calls (%s)\n", symbol, bi.hits, calls,
           vmt_tracer_stop_reason_str(stop));
    vmt_tracer_free(t); /* detaches: the guest is left as it was */
    vmt_core_free(vmi);
    return c && calls == bi.hits ? 0 : 1;
}
