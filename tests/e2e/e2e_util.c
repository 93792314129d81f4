// SPDX-License-Identifier: MIT
#include "e2e_util.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "vmitap/log.h"

static void log_stderr(void *user, vmt_log_level level, const char *fmt, va_list ap)
{
    (void)user;
    if (level > (getenv("VMT_TEST_DEBUG") ? VMT_LOG_TRACE : VMT_LOG_WARN))
        return;
    fputs("vmitap: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

bool e2e_kvm_setup(const char *test)
{
    vmt_set_log_fn(log_stderr, NULL);
    if (getenv("VMT_TEST_ONLY"))
        cmocka_set_test_filter(getenv("VMT_TEST_ONLY"));
    char why[256];
    if (!vmt_kvm_available(why, sizeof why)) {
        fprintf(stderr, "%s: skipped: %s\n", test, why);
        return false;
    }
    return true;
}

uint64_t e2e_elf_sym(const char *path, const char *name)
{
    uint64_t addr = 0;
    elf_version(EV_CURRENT);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    Elf *e = elf_begin(fd, ELF_C_READ, NULL);
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(e, scn))) {
        GElf_Shdr sh;
        gelf_getshdr(scn, &sh);
        if (sh.sh_type != SHT_SYMTAB)
            continue;
        Elf_Data *d = elf_getdata(scn, NULL);
        for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
            GElf_Sym s;
            gelf_getsym(d, (int)i, &s);
            if (!strcmp(elf_strptr(e, sh.sh_link, s.st_name), name))
                addr = s.st_value;
        }
    }
    elf_end(e);
    close(fd);
    assert_true(addr != 0);
    return addr;
}

int e2e_fetch_linux(const char *test, const char *script, const char *default_dir, const char **dir)
{
    *dir = getenv("VMITAP_LINUX_DIR");
    if (!*dir || !**dir)
        *dir = default_dir;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' '%s'", script, *dir);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc) || (WEXITSTATUS(rc) != 0 && WEXITSTATUS(rc) != 77)) {
        fprintf(stderr, "%s: %s failed (status %d)\n", test, cmd, rc);
        return 1;
    }
    if (WEXITSTATUS(rc) == 77) {
        fprintf(stderr, "SKIP: *** the Linux kernel package could not be fetched: apt has no network ***\n");
        return 77;
    }
    return 0;
}

void e2e_start(e2e_session *s, const vmt_kvm_opts *ko, vmt_tracer_controller ctl, unsigned max_bps)
{
    memset(s, 0, sizeof *s);
    assert_true(max_bps <= E2E_MAX_BPS);
    s->max_bps = max_bps;
    assert_int_equal(vmt_kvm_core_new(ko, &s->vmi, &s->kvm), VMT_OK);
    vmt_regs regs;
    assert_int_equal(vmt_core_get_regs(s->vmi, 0, &regs), VMT_OK);
    s->boot_root = vmt_regs_translation_root(&regs, 0);
    assert_int_equal(vmt_symtab_load(vmt_kvm_default_guest(), &s->syms), VMT_OK);
    VMT_OPTS(vmt_tracer_opts, to, .controller = ctl);
    assert_int_equal(vmt_tracer_new(s->vmi, &to, &s->t), VMT_OK);
}

void e2e_finish(e2e_session *s)
{
    vmt_tracer_free(s->t);
    vmt_symtab_free(s->syms);
    vmt_core_free(s->vmi);
}

const vmt_guest_stats *e2e_gstats(e2e_session *s)
{
    return vmt_kvm_guest_stats(s->kvm);
}

vmt_va e2e_sym_addr(e2e_session *s, const char *name)
{
    const vmt_symbol *sym = vmt_symtab_lookup(s->syms, name);
    if (!sym)
        fail_msg("the guest has no symbol %s", name);
    return sym->addr;
}

e2e_bp *e2e_add(e2e_session *s, const char *symbol, int proc)
{
    assert_true(s->nbps < s->max_bps);
    e2e_bp *w = &s->bps[s->nbps++];
    w->symbol = symbol;
    w->proc = proc;
    vmt_va va = e2e_sym_addr(s, symbol);
    vmt_pa root = s->boot_root;
    if (va >> 47 == 0)
        root = e2e_gstats(s)->proc_cr3[proc < 0 ? 0 : proc] & 0x000ffffffffff000ull;
    VMT_OPTS(vmt_tracer_bp_opts, bo, .global = proc < 0, .name = symbol);
    assert_int_equal(vmt_tracer_add(s->t, vmt_ctx(va, root), &bo, &w->id), VMT_OK);
    return w;
}

void e2e_run_to_end(e2e_session *s)
{
    vmt_tracer_stop_reason why = VMT_TRACER_STOP_NONE;
    vmt_status st = vmt_tracer_run(s->t, NULL, &why);
    if (st != VMT_OK)
        fail_msg("run: %s (%s)", vmt_status_str(st), vmt_kvm_crash_reason(s->kvm));
    assert_int_equal(why, VMT_TRACER_STOP_GUEST_EXITED);
    assert_int_equal(vmt_kvm_get_state(s->kvm), VMT_KVM_EXITED); /* not crashed */
}

uint64_t e2e_counter(e2e_session *s, const char *symbol, int proc)
{
    char name[64];
    if (proc >= 0)
        snprintf(name, sizeof name, "%s@%d", symbol, proc);
    else
        snprintf(name, sizeof name, "%s", symbol);
    const vmt_guest_counter *c = vmt_guest_counter_find(e2e_gstats(s), name);
    if (!c)
        fail_msg("the guest has no counter %s", name);
    return c->calls;
}
