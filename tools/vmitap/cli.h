// SPDX-License-Identifier: MIT
/* vmitap command-line tool: what the commands share. */
#ifndef VMITAP_CLI_H
#define VMITAP_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tracer/symbols.h"
#include "vmitap/tracer.h"

/* Exit codes (documented in --help and docs/vmitap.1.scd). */
enum {
    CLI_EXIT_OK = 0,        /* traced; every breakpoint matched the guest's counter */
    CLI_EXIT_RUNTIME = 1,   /* could not run: no KVM, unreadable guest, guest crashed, ... */
    CLI_EXIT_USAGE = 2,     /* bad command line: unknown option, symbol or address */
    CLI_EXIT_MISMATCH = 3,  /* a breakpoint's hits differ from the guest's own counter */
    CLI_EXIT_GUEST_FAIL = 4,/* the guest finished but reported a failed self-check */
    CLI_EXIT_INTERRUPTED = 130, /* stopped by SIGINT / SIGTERM */
};

/* Which processes a breakpoint applies to. */
enum { SPEC_GLOBAL = -1, SPEC_EACH_PROC = -2 };

#define CLI_MAX_IDS 8 /* VMT_GUEST_MAX_PROCS */

/* One -b argument, resolved. */
typedef struct bp_spec {
    const char *text;     /* as given on the command line */
    char name[96];        /* symbol[+off] or the address in hex */
    char sym[64];         /* symbol when given by name (offset 0), for the counter */
    vmt_va va;
    bool kernel;          /* upper-half address: global in every address space */
    int proc;             /* process index, SPEC_GLOBAL or SPEC_EACH_PROC */
    vmt_tracer_bp_id ids[CLI_MAX_IDS];
    unsigned nids;
    bool installed;
} bp_spec;

typedef struct cli_opts {
    const char *guest;    /* ELF path */
    bool guest_given;
    bool json;
    bool show_hits;
    bool global_user;     /* --global: user breakpoints without @P are one global breakpoint */
    bool execute_only;    /* --execute-only: ask the KVM driver to emulate execute-only pages */
    int verbose;
    bool progress;        /* live line (stdout is a terminal and not --json) */
    vmt_tracer_controller controller;
    uint64_t iterations, seed;
    uint32_t pager;
    bool pager_given;
    double timeout_s;     /* 0 = none */
    bp_spec *specs;
    unsigned nspecs;
    /* linux: --linux DIR and its options */
    const char *linux_dir;
    bool linux_no_probe, linux_baseline, linux_console;
} cli_opts;

/* Parses one -b argument against the symbol table; prints one line and
 * returns false on error. */
bool cli_parse_spec(const char *arg, const vmt_symtab *syms, bp_spec *out);
/* Reads the guest ELF's symbols; prints one line and returns false on error. */
bool cli_load_symbols(const char *path, vmt_symtab **out);

/* True when /dev/kvm can be used; else prints one line saying why and what
 * to do (modules, the kvm group, nested virtualisation, the test bed). */
bool cli_kvm_check(void);

int cmd_run(cli_opts *o, vmt_symtab *syms);
/* linux: vmitap run --linux DIR (run_linux.c); breaks are kernel function names. */
int cmd_run_linux(cli_opts *o, const char **breaks, unsigned nbreaks);

/* JSON string output (escaped, quoted). */
void json_str(FILE *f, const char *s);

#endif /* VMITAP_CLI_H */
