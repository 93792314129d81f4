// SPDX-License-Identifier: MIT
/* End-to-end, short: Debian's kernel boots in the KVM micro-VM far enough
 * to show that its symbols are the live addresses, traced from outside.
 *
 * Boots the vmlinux that scripts/fetch-linux.sh prepared, unobserved,
 * until the kernel prints its command line (start_kernel, after
 * setup_arch), attaches a tracer with a global breakpoint on mem_init from
 * System.map (kallsyms), which start_kernel calls exactly once a little
 * later, and checks:
 *   - the breakpoint fires once, at the System.map address, in kernel mode;
 *   - the function's code read through the guest's page tables at that
 *     moment is the vmlinux file's (nothing has patched it yet: ftrace and
 *     alternatives run later), so address and image agree;
 *   - after detaching, the kernel boots on to a later message.
 * The full traced workload is tests/e2e/test_linux.c; this one stays short
 * even where the host emulates the guest's kernel mode.
 *
 * Skips (exit 77, with the reason on stderr) when /dev/kvm cannot be
 * opened, or when apt cannot download the kernel package (no network). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "e2e_util.h"
#include "tracer/symbols.h"
#include "vmitap/kvm.h"
#include "vmitap/tracer.h"

#ifndef VMT_FETCH_LINUX
#define VMT_FETCH_LINUX "scripts/fetch-linux.sh"
#endif
#ifndef VMT_LINUX_DIR
#define VMT_LINUX_DIR "linux-guest"
#endif

#define FUNC "mem_init"
#define ATTACH_MARKER "Kernel command line:" /* printed before mm_init -> mem_init */
#define LATER_MARKER "NR_IRQS:"              /* early_irq_init, well after mem_init */
#define CODE_BYTES 64
#define TIMEOUT_MS (8 * 60 * 1000)           /* each phase; minutes where kernel mode is emulated */

static const char *dir;

typedef struct hit_log {
    unsigned hits;
    vmt_regs regs;
} hit_log;

static void on_hit(void *user, vmt_tracer *t, const vmt_tracer_hit *h)
{
    (void)t;
    hit_log *log = user;
    if (log->hits++ == 0)
        log->regs = *h->regs;
}

static char *path_in(const char *name)
{
    char *p;
    if (asprintf(&p, "%s/%s", dir, name) < 0)
        return NULL;
    return p;
}

/* The bytes of vmlinux at virtual address va (from its PT_LOAD headers). */
static bool file_bytes(const char *vmlinux, uint64_t va, uint8_t *out, size_t len)
{
    FILE *f = fopen(vmlinux, "rb");
    uint8_t eh[64];
    bool ok = false;
    if (!f || fread(eh, 1, sizeof eh, f) != sizeof eh) {
        if (f)
            fclose(f);
        return false;
    }
    uint64_t phoff;
    uint16_t phentsize, phnum;
    memcpy(&phoff, eh + 32, 8);
    memcpy(&phentsize, eh + 54, 2);
    memcpy(&phnum, eh + 56, 2);
    for (uint16_t i = 0; i < phnum && !ok; i++) {
        uint8_t ph[56];
        if (fseek(f, (long)(phoff + (uint64_t)i * phentsize), SEEK_SET) != 0 || fread(ph, 1, sizeof ph, f) != sizeof ph)
            break;
        uint32_t type;
        uint64_t off, vaddr, filesz;
        memcpy(&type, ph, 4);
        memcpy(&off, ph + 8, 8);
        memcpy(&vaddr, ph + 16, 8);
        memcpy(&filesz, ph + 32, 8);
        if (type == 1 && va >= vaddr && va + len <= vaddr + filesz)
            ok = fseek(f, (long)(off + (va - vaddr)), SEEK_SET) == 0 && fread(out, 1, len, f) == len;
    }
    fclose(f);
    return ok;
}

/* Runs in short slices until marker is on the console. The slice must be
 * short against the time from the marker to mem_init: in the test bed that
 * is about 0.1 s, and a 200 ms slice ran past it now and then. */
#define SLICE_MS 2
static bool run_until(vmt_kvm *kvm, const char *marker)
{
    for (int waited = 0; waited < TIMEOUT_MS; waited += SLICE_MS) {
        if (strstr(vmt_kvm_console(kvm, NULL), marker))
            return true;
        vmt_status st = vmt_kvm_run(kvm, SLICE_MS);
        if (st != VMT_E_TIMEOUT && st != VMT_OK)
            return strstr(vmt_kvm_console(kvm, NULL), marker) != NULL;
    }
    return false;
}

static void symbols_are_live(void **state)
{
    (void)state;
    char *vmlinux = path_in("vmlinux"), *initrd = path_in("initramfs.cpio"), *map = path_in("System.map");
    assert_non_null(vmlinux);
    assert_non_null(initrd);
    assert_non_null(map);
    vmt_symtab *syms;
    assert_int_equal(vmt_symtab_load_system_map(map, &syms), VMT_OK);
    const vmt_symbol *fn = vmt_symtab_lookup(syms, FUNC);
    assert_non_null(fn);
    uint8_t image[CODE_BYTES];
    assert_true(file_bytes(vmlinux, fn->addr, image, sizeof image));

    VMT_OPTS(vmt_kvm_opts, ko, .ram_bytes = 256ull << 20, .kernel_path = vmlinux, .initrd_path = initrd);
    vmt_core *vmi;
    vmt_kvm *kvm;
    assert_int_equal(vmt_kvm_core_new(&ko, &vmi, &kvm), VMT_OK);
    bool attached_in_time = run_until(kvm, ATTACH_MARKER);
    if (!attached_in_time)
        fprintf(stderr, "console:\n%s\n", vmt_kvm_console(kvm, NULL));
    assert_true(attached_in_time);
    assert_null(strstr(vmt_kvm_console(kvm, NULL), "Memory:")); /* mem_init has not run yet */

    hit_log log = {0};
    VMT_OPTS(vmt_tracer_opts, to, .controller = VMT_TRACER_CONTROLLER_INT3, .on_hit = on_hit, .user = &log);
    vmt_tracer *t;
    assert_int_equal(vmt_tracer_new(vmi, &to, &t), VMT_OK);
    vmt_regs regs;
    assert_int_equal(vmt_core_get_regs(vmi, 0, &regs), VMT_OK);
    VMT_OPTS(vmt_tracer_bp_opts, bo, .global = true, .name = FUNC);
    assert_int_equal(vmt_tracer_add(t, vmt_ctx(fn->addr, vmt_regs_translation_root(&regs, fn->addr)), &bo, NULL),
                     VMT_OK);
    VMT_OPTS(vmt_tracer_run_opts, ro, .timeout_ms = TIMEOUT_MS, .max_hits = 1);
    vmt_tracer_stop_reason why;
    assert_int_equal(vmt_tracer_run(t, &ro, &why), VMT_OK);
    assert_int_equal(why, VMT_TRACER_STOP_HITS);
    assert_int_equal(log.hits, 1);
    assert_int_equal(log.regs.rip, fn->addr);
    assert_int_equal(log.regs.cs & 3u, 0);

    uint8_t live[CODE_BYTES];
    vmt_addr_ctx ctx = vmt_ctx(fn->addr, vmt_regs_translation_root(&log.regs, fn->addr));
    assert_int_equal(vmt_core_read_va(vmi, ctx, live, sizeof live), VMT_OK);
    assert_memory_equal(live, image, sizeof live);

    assert_int_equal(vmt_tracer_detach(t), VMT_OK);
    bool later = run_until(kvm, LATER_MARKER);
    if (!later)
        fprintf(stderr, "console:\n%s\ncrash: %s\n", vmt_kvm_console(kvm, NULL), vmt_kvm_crash_reason(kvm));
    assert_true(later);
    assert_int_equal(log.hits, 1); /* detached: no more hits counted */
    assert_int_equal(vmt_kvm_get_state(kvm), VMT_KVM_RUNNING);

    vmt_tracer_free(t);
    vmt_core_free(vmi);
    vmt_symtab_free(syms);
    free(vmlinux);
    free(initrd);
    free(map);
}

int main(void)
{
    if (!e2e_kvm_setup("test_linux_early"))
        return 77;
    int fetched = e2e_fetch_linux("test_linux_early", VMT_FETCH_LINUX, VMT_LINUX_DIR, &dir);
    if (fetched != 0)
        return fetched;
    const struct CMUnitTest tests[] = {cmocka_unit_test(symbols_are_live)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
