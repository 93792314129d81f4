/* vmitap command-line tool: what the commands share. */
#ifndef VMITAP_CLI_H
#define VMITAP_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tracer/symbols.h"
#include "vmitap/tracer.h"

/* Exit codes (documented in --help and docs/vmitap.md). */
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
#define CLI_MAX_TIMEOUT_S 1000000 /* --timeout: about 11 days */

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
    bool progress;        /* live line on stderr (stderr is a terminal) */
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

/* Parses one -b argument against the symbol table of the ELF file elf:
 * a SYMBOL+OFF within the symbol, a canonical 0x address in a function,
 * either at the start of an instruction (Zydis). Prints one line and
 * returns false on error (spec.c). */
bool cli_parse_spec(const char *arg, const vmt_symtab *syms, const char *elf, bp_spec *out);
/* Numbers on the command line (spec.c): decimal digits only, in
 * [min, max]; 0x and 1..16 hex digits; seconds as DIGITS[.DIGITS],
 * 0.001..max. */
bool cli_parse_dec(const char *s, uint64_t min, uint64_t max, uint64_t *out);
bool cli_parse_hex(const char *s, uint64_t *out);
bool cli_parse_seconds(const char *s, double max, double *out);
/* "; did you mean A, B or C?" with the names of syms closest to name, or
 * "" when none is close. */
void cli_suggest(const vmt_symtab *syms, const char *name, char *out, size_t len);
/* "vmitap: MESSAGE (see 'vmitap --help')" on stderr. */
void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reads the guest ELF's symbols; prints one line and returns false on error. */
bool cli_load_symbols(const char *path, vmt_symtab **out);

/* True when /dev/kvm can be used; else prints one line saying why and what
 * to do (modules, the kvm group, nested virtualisation, the test bed). */
bool cli_kvm_check(void);

int cmd_run(cli_opts *o, vmt_symtab *syms);
/* linux: vmitap run --linux DIR (run_linux.c); breaks are kernel function
 * names, checked against DIR/System.map before anything boots. */
int cmd_run_linux(cli_opts *o, const char **breaks, unsigned nbreaks);
/* linux: reads DIR/System.map's text symbols; prints one line on error. */
bool cli_load_system_map(const char *dir, vmt_symtab **out);

/* JSON Lines (jsonl.c): jl_begin makes an object with its "type", the
 * jl_* calls add members, jl_end prints it as one line and frees it.
 * Strings may hold any bytes (NULL: null). */
typedef struct _JsonBuilder jl_obj;
jl_obj *jl_begin(const char *type);
void jl_str(jl_obj *b, const char *key, const char *val);
void jl_u64(jl_obj *b, const char *key, uint64_t val);
void jl_int(jl_obj *b, const char *key, int64_t val);
void jl_double(jl_obj *b, const char *key, double val);
void jl_bool(jl_obj *b, const char *key, bool val);
void jl_null(jl_obj *b, const char *key);
void jl_hex(jl_obj *b, const char *key, uint64_t val); /* "0x..." */
void jl_begin_member_object(jl_obj *b, const char *key);
void jl_end_member_object(jl_obj *b);
void jl_end(jl_obj *b, FILE *f);

#endif /* VMITAP_CLI_H */
