// SPDX-License-Identifier: MIT
/* Helpers shared by the KVM end-to-end tests: the start of their main(),
 * ELF symbol lookup, and a tracer session on the bundled guest (the KVM
 * micro-VM, its symbols, a tracer and the breakpoints a test asked for).
 * They fail the running cmocka test on any error, so the tests read as the
 * steps they take. */
#ifndef VMITAP_TESTS_E2E_UTIL_H
#define VMITAP_TESTS_E2E_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include "guest/abi.h"
#include "tracer/symbols.h"
#include "vmitap/kvm.h"
#include "vmitap/tracer.h"

/* The start of a KVM test's main(): the library's warnings (everything
 * with VMT_TEST_DEBUG set) go to stderr, VMT_TEST_ONLY filters the tests.
 * False, after saying why on stderr, when /dev/kvm cannot be used: the
 * test then exits 77 (skipped). */
bool e2e_kvm_setup(const char *test);

/* The value of the ELF symbol `name` in the file at `path`; fails the
 * test when there is none (or it is 0). */
uint64_t e2e_elf_sym(const char *path, const char *name);

/* The Linux tests' guest files: `*dir` becomes VMITAP_LINUX_DIR, else
 * `default_dir`, and `script` (scripts/fetch-linux.sh) fetches them there.
 * Returns 0 when it did, 77 (skip) when apt has no network, 1 when the
 * script failed; says which on stderr, as `test`. */
int e2e_fetch_linux(const char *test, const char *script, const char *default_dir, const char **dir);

#define E2E_MAX_BPS 64

typedef struct e2e_bp {
    const char *symbol;
    int proc; /* -1: global (kernel or shared page), else process index */
    vmt_tracer_bp_id id;
} e2e_bp;

typedef struct e2e_session {
    vmt_core *vmi;
    vmt_kvm *kvm;
    vmt_tracer *t;
    vmt_symtab *syms;
    vmt_pa boot_root;
    e2e_bp bps[E2E_MAX_BPS];
    unsigned nbps;
    unsigned max_bps; /* the test's own bound on nbps, at most E2E_MAX_BPS */
} e2e_session;

/* Boots the guest with `ko`, loads its symbols and puts a tracer with
 * controller `ctl` on it; the test may add at most `max_bps` breakpoints. */
void e2e_start(e2e_session *s, const vmt_kvm_opts *ko, vmt_tracer_controller ctl, unsigned max_bps);
void e2e_finish(e2e_session *s);
const vmt_guest_stats *e2e_gstats(e2e_session *s);
vmt_va e2e_sym_addr(e2e_session *s, const char *name);
/* A breakpoint on `symbol`: global when proc < 0, else in process `proc`
 * (user addresses translate through that process's page tables). */
e2e_bp *e2e_add(e2e_session *s, const char *symbol, int proc);
/* Runs the tracer until the guest exits; fails on anything else. */
void e2e_run_to_end(e2e_session *s);
/* The guest's call counter of `symbol` (in process `proc` when >= 0). */
uint64_t e2e_counter(e2e_session *s, const char *symbol, int proc);

#endif
