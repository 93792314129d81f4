// SPDX-License-Identifier: MIT
/* vmitap — command-line front end: options (each checked to apply to the
 * command and mode), help, `symbols`. Breakpoint specs and numbers are
 * checked in spec.c, the `run` command lives in run.c (run_linux.c for
 * --linux), JSON Lines in jsonl.c. */
#define _GNU_SOURCE /* getopt_long */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tools/vmitap/cli.h"
#include "vmitap/kvm.h"
#include "vmitap/version.h"
#include "vmitap/log.h"

#define SYNOPSIS                                                                   \
    "usage: vmitap run [options] [-b BREAKPOINT]...\n"                             \
    "       vmitap symbols [--guest FILE | --linux DIR] [--json] [SUBSTRING]\n"     \
    "       vmitap --help | --version\n"

/* bare `vmitap`: a few lines on stderr, status 2 */
static const char short_usage[] = SYNOPSIS "Try 'vmitap --help' for more.\n";

static const char usage_text[] =
    SYNOPSIS
    "\n"
    "Boots a guest on the built-in KVM micro-VM, sets invisible breakpoints on\n"
    "its code from outside, and counts their hits while the guest pages code\n"
    "out and in and moves it between frames. With the bundled guest, the hits\n"
    "are checked against the guest's own per-function call counters.\n"
    "\n"
    "run options:\n"
    "  -b, --break SPEC      breakpoint (repeatable). SPEC is SYMBOL, SYMBOL+OFF or\n"
    "                        0xADDR, optionally followed by @P (process P only) or\n"
    "                        @* (every process, one breakpoint each). Kernel\n"
    "                        addresses are global; a user address without @ means @*.\n"
    "                        OFF (decimal or 0x hex) must be inside SYMBOL and, as\n"
    "                        0xADDR, start an instruction\n"
    "      --global          a user SPEC without @ is one global breakpoint instead\n"
    "                        (right for code shared by all processes)\n"
    "  -g, --guest FILE      guest ELF to boot (default: the bundled test guest)\n"
    "  -c, --controller C    int3 | memory | auto (default auto: int3 on execute-only\n"
    "                        pages the KVM driver emulates: stealthy, and much\n"
    "                        faster than memory here)\n"
    "      --execute-only    with int3: have the KVM driver emulate execute-only\n"
    "                        pages, so that guest reads do not see the int3 bytes\n"
    "  -n, --iterations N    guest scheduler rounds, decimal (default: the guest's, 1000)\n"
    "  -s, --seed N          guest PRNG seed, decimal (pager choices)\n"
    "  -p, --pager PCT       pager aggressiveness 0..100 (0 = never evict)\n"
    "  -t, --timeout SEC     stop after SEC seconds, 0.001..1000000 (counters are then\n"
    "                        not compared)\n"
    "      --hits            print every hit\n"
    "      --linux DIR       boot Debian's Linux kernel prepared in DIR by\n"
    "                        scripts/fetch-linux.sh instead; -b then names kernel\n"
    "                        functions from DIR/System.map (global breakpoints),\n"
    "                        and a user-space breakpoint waits, pending, for the\n"
    "                        busybox entry point in the init script's probe process\n"
    "      --no-probe        (--linux) no user-space breakpoint\n"
    "      --baseline        (--linux) no tracer at all: boot and workload times\n"
    "      --console         (--linux) print the guest's serial console at the end\n"
    "      --json            JSON Lines instead of text (one object per line)\n"
    "  -v, --verbose         library diagnostics on stderr (-vv: debug)\n"
    "\n"
    "symbols options: --guest FILE, --linux DIR (DIR/System.map), --json, -v\n"
    "\n"
    "exit status:\n"
    "  0    traced; every breakpoint with a guest counter matched it\n"
    "  1    runtime error (no /dev/kvm, unreadable guest, guest crashed, ...)\n"
    "  2    usage error (bad option, unknown symbol, bad address)\n"
    "  3    a breakpoint's hits differ from the guest's own counter\n"
    "  4    the guest reported a failed self-check (exit code != 0)\n"
    "  130  interrupted (SIGINT/SIGTERM); the summary is still printed\n"
    "\n"
    "examples:\n"
    "  vmitap run -b schedule -b syscall_dispatch -b lib_getpid -b prog_work_a@1\n"
    "  vmitap run --pager 50 --iterations 200 -b prog_work_b --controller memory\n"
    "  vmitap run --json -b 0x400010 --timeout 5\n"
    "  vmitap run --linux ~/.cache/vmitap/linux -b do_sys_openat2 --console\n"
    "  vmitap symbols prog_\n";

static void log_to_stderr(void *user, vmt_log_level level, const char *fmt, va_list ap)
{
    static const char *names[] = {"error", "warn", "info", "debug", "trace"};
    /* -v: errors and warnings, -vv: info, -vvv: debug, -vvvv: every event */
    int verbose = *(const int *)user;
    if ((int)level >= verbose + (verbose > 0))
        return;
    fprintf(stderr, "vmitap: %s: ", names[level]);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

bool cli_load_symbols(const char *path, vmt_symtab **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "vmitap: cannot read guest %s: %s\n", path, strerror(errno));
        return false;
    }
    fclose(f);
    if (vmt_symtab_load(path, out) != VMT_OK) {
        fprintf(stderr, "vmitap: %s is not an ELF file with function symbols\n", path);
        return false;
    }
    return true;
}

bool cli_kvm_check(void)
{
    char why[256];
    if (vmt_kvm_available(why, sizeof why))
        return true;
    /* What to do depends on what is wrong: no device (module not loaded, or
     * a VM without nested virtualisation), no permission, or a KVM too old.
     * One line, as every error of this tool; the test bed is the way out
     * where none of these can be fixed (CI machines, containers). */
    const char *fix;
    if (access("/dev/kvm", F_OK) != 0)
        fix = "load kvm_intel or kvm_amd (inside a VM, enable nested virtualisation first)";
    else if (access("/dev/kvm", R_OK | W_OK) != 0)
        fix = "add your user to the kvm group (then log in again)";
    else
        fix = "this kernel's KVM is too old for vmitap";
    fprintf(stderr,
            "vmitap: cannot use KVM: %s; %s, or run this command in the KVM test bed "
            "of vmitap's source tree: scripts/kvm-bed.sh -- vmitap ...\n",
            why, fix);
    return false;
}

/* Reads DIR/System.map (symbols --linux); one line on error. */
bool cli_load_system_map(const char *dir, vmt_symtab **out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/System.map", dir);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "vmitap: cannot read %s: %s (scripts/fetch-linux.sh DIR prepares it)\n",
                path, strerror(errno));
        return false;
    }
    fclose(f);
    if (vmt_symtab_load_system_map(path, out) != VMT_OK) {
        fprintf(stderr, "vmitap: %s has no text symbols (not a System.map?)\n", path);
        return false;
    }
    return true;
}

static int cmd_symbols(const cli_opts *o, const char *filter)
{
    vmt_symtab *syms;
    if (o->linux_dir ? !cli_load_system_map(o->linux_dir, &syms) : !cli_load_symbols(o->guest, &syms))
        return CLI_EXIT_RUNTIME;
    for (size_t i = 0; i < vmt_symtab_count(syms); i++) {
        const vmt_symbol *s = vmt_symtab_at(syms, i);
        if (filter && !strstr(s->name, filter))
            continue;
        const char *kind = (s->addr >> 47) ? "kernel" : "user";
        if (o->json) {
            jl_obj *j = jl_begin("symbol");
            jl_str(j, "name", s->name);
            jl_hex(j, "address", s->addr);
            if (s->size)
                jl_u64(j, "size", s->size);
            else
                jl_null(j, "size"); /* unknown (System.map has none) */
            jl_str(j, "space", kind);
            jl_end(j, stdout);
        } else {
            printf("%#18" PRIx64 " %6" PRIu64 " %-6s %s\n", s->addr, s->size, kind, s->name);
        }
    }
    vmt_symtab_free(syms);
    return CLI_EXIT_OK;
}

enum { OPT_GLOBAL = 256, OPT_HITS, OPT_JSON, OPT_XO,
       OPT_LINUX, OPT_NO_PROBE, OPT_BASELINE, OPT_CONSOLE, /* linux: the last four */
       OPT_END };

static const struct option long_opts[] = {
    {"break", required_argument, NULL, 'b'},
    {"guest", required_argument, NULL, 'g'},
    {"controller", required_argument, NULL, 'c'},
    {"iterations", required_argument, NULL, 'n'},
    {"seed", required_argument, NULL, 's'},
    {"pager", required_argument, NULL, 'p'},
    {"timeout", required_argument, NULL, 't'},
    {"verbose", no_argument, NULL, 'v'},
    {"global", no_argument, NULL, OPT_GLOBAL},
    {"hits", no_argument, NULL, OPT_HITS},
    {"json", no_argument, NULL, OPT_JSON},
    {"execute-only", no_argument, NULL, OPT_XO},
    {"help", no_argument, NULL, 'h'},
    {"linux", required_argument, NULL, OPT_LINUX},     /* linux */
    {"no-probe", no_argument, NULL, OPT_NO_PROBE},     /* linux */
    {"baseline", no_argument, NULL, OPT_BASELINE},     /* linux */
    {"console", no_argument, NULL, OPT_CONSOLE},       /* linux */
    {NULL, 0, NULL, 0},
};

/* Where each option applies: `run` on an ELF guest, `run --linux`, `symbols`. */
enum { IN_RUN = 1, IN_LINUX = 2, IN_SYMBOLS = 4 };

static unsigned applies(int opt)
{
    switch (opt) {
    case 'g': return IN_RUN | IN_SYMBOLS;
    case 'n': case 's': case 'p': case OPT_GLOBAL: case OPT_XO: return IN_RUN;
    case 'b': case 'c': case 't': case OPT_HITS: return IN_RUN | IN_LINUX;
    case OPT_NO_PROBE: case OPT_BASELINE: case OPT_CONSOLE: return IN_LINUX;
    default: return IN_RUN | IN_LINUX | IN_SYMBOLS; /* -v, --json, --linux */
    }
}

static const char *opt_name(int opt)
{
    for (const struct option *lo = long_opts; lo->name; lo++)
        if (lo->val == opt)
            return lo->name;
    return "?";
}

static bool parse_controller(const char *s, vmt_tracer_controller *out)
{
    static const vmt_tracer_controller all[] = {VMT_TRACER_CONTROLLER_AUTO,
                                                VMT_TRACER_CONTROLLER_INT3,
                                                VMT_TRACER_CONTROLLER_MEMORY};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(s, vmt_tracer_controller_name(all[i])) == 0) {
            *out = all[i];
            return true;
        }
    return false;
}

/* One option's value; returns false after printing the error. */
static bool parse_value(int c, const char *arg, cli_opts *o)
{
    uint64_t v;
    switch (c) {
    case 'g': o->guest = arg; o->guest_given = true; return true;
    case 'c':
        if (parse_controller(arg, &o->controller))
            return true;
        cli_usage_error("unknown controller '%s': expected int3, memory or auto", arg);
        return false;
    case 'n':
        if (cli_parse_dec(arg, 1, UINT64_MAX, &o->iterations))
            return true;
        cli_usage_error("bad --iterations '%s': expected a positive decimal number", arg);
        return false;
    case 's':
        if (cli_parse_dec(arg, 0, UINT64_MAX, &o->seed))
            return true;
        cli_usage_error("bad --seed '%s': expected a decimal number below 2^64", arg);
        return false;
    case 'p':
        if (!cli_parse_dec(arg, 0, 100, &v)) {
            cli_usage_error("bad --pager '%s': expected 0..100", arg);
            return false;
        }
        o->pager = (uint32_t)v;
        o->pager_given = true;
        return true;
    case 't':
        if (cli_parse_seconds(arg, CLI_MAX_TIMEOUT_S, &o->timeout_s))
            return true;
        cli_usage_error("bad --timeout '%s': expected seconds, 0.001..%d, like 2 or 0.5", arg,
                        CLI_MAX_TIMEOUT_S);
        return false;
    case OPT_LINUX: o->linux_dir = arg; return true;
    }
    return true;
}

/* Options given that do not apply to the command or mode; one line each
 * for the first one found. */
static bool check_applies(bool symbols, const cli_opts *o, const bool *given, unsigned nbreaks)
{
    unsigned where = symbols ? IN_SYMBOLS : o->linux_dir ? IN_LINUX : IN_RUN;
    for (int opt = 0; opt < OPT_END; opt++) {
        if (!given[opt] || (applies(opt) & where))
            continue;
        if (symbols)
            cli_usage_error("option '--%s' does not apply to 'vmitap symbols'", opt_name(opt));
        else if (o->linux_dir)
            cli_usage_error("option '--%s' does not apply with --linux", opt_name(opt));
        else
            cli_usage_error("option '--%s' applies only with --linux", opt_name(opt));
        return false;
    }
    if (o->guest_given && o->linux_dir) {
        cli_usage_error("--guest and --linux exclude each other");
        return false;
    }
    if (o->linux_baseline && (nbreaks || given['c'] || given[OPT_HITS] || given[OPT_NO_PROBE])) {
        cli_usage_error("--baseline traces nothing: -b, --controller, --hits and --no-probe do not apply");
        return false;
    }
    if (o->execute_only && o->controller == VMT_TRACER_CONTROLLER_MEMORY) {
        cli_usage_error("--execute-only applies to the int3 controller, not to memory");
        return false;
    }
    return true;
}

/* Parses the options of `run` / `symbols` (argv[0] is the command).
 * Breakpoint arguments are collected raw in *breaks; returns an exit code
 * or -1 to go on. */
static int parse_opts(int argc, char **argv, cli_opts *o, bool *given, const char ***breaks,
                      unsigned *nbreaks)
{
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":b:g:c:n:s:p:t:vh", long_opts, NULL)) != -1) {
        if (c >= 0 && c < OPT_END && c != '?' && c != ':')
            given[c] = true;
        switch (c) {
        case 'b': (*breaks)[(*nbreaks)++] = optarg; break;
        case 'v': o->verbose++; break;
        case OPT_GLOBAL: o->global_user = true; break;
        case OPT_HITS: o->show_hits = true; break;
        case OPT_JSON: o->json = true; break;
        case OPT_XO: o->execute_only = true; break;
        case OPT_NO_PROBE: o->linux_no_probe = true; break;
        case OPT_BASELINE: o->linux_baseline = true; break;
        case OPT_CONSOLE: o->linux_console = true; break;
        case 'h': fputs(usage_text, stdout); return CLI_EXIT_OK;
        case ':': cli_usage_error("option '%s' needs a value", argv[optind - 1]); return CLI_EXIT_USAGE;
        case '?': cli_usage_error("unknown option '%s'", argv[optind - 1]); return CLI_EXIT_USAGE;
        default:
            if (!parse_value(c, optarg, o))
                return CLI_EXIT_USAGE;
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(short_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("vmitap %s\n", vmt_version()); /* the library it runs with */
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "run") != 0 && strcmp(cmd, "symbols") != 0) {
        cli_usage_error("unknown command '%s'", cmd);
        return CLI_EXIT_USAGE;
    }
    bool symbols = strcmp(cmd, "symbols") == 0;
    cli_opts o = {.controller = VMT_TRACER_CONTROLLER_AUTO};
    bool given[OPT_END] = {0};
    const char **breaks = calloc((size_t)argc, sizeof *breaks);
    unsigned nbreaks = 0;
    int rc = parse_opts(argc - 1, argv + 1, &o, given, &breaks, &nbreaks);
    if (rc >= 0)
        goto out;
    rc = CLI_EXIT_USAGE;
    if (!check_applies(symbols, &o, given, nbreaks))
        goto out;
    vmt_set_log_fn(log_to_stderr, &o.verbose);
    if (!o.guest)
        o.guest = vmt_kvm_default_guest();
    int first_arg = optind + 1; /* argv + 1 was parsed */
    if (symbols) {
        if (argc - first_arg > 1) {
            cli_usage_error("'symbols' takes one SUBSTRING at most");
            goto out;
        }
        rc = cmd_symbols(&o, first_arg < argc ? argv[first_arg] : NULL);
        goto out;
    }
    if (first_arg < argc) {
        cli_usage_error("unexpected argument '%s' (breakpoints go after -b)", argv[first_arg]);
        goto out;
    }
    o.progress = isatty(STDERR_FILENO);
    if (o.linux_dir) { /* linux */
        rc = cmd_run_linux(&o, breaks, nbreaks);
        goto out;
    }
    vmt_symtab *syms;
    if (!cli_load_symbols(o.guest, &syms)) {
        rc = CLI_EXIT_RUNTIME;
        goto out;
    }
    o.specs = calloc(nbreaks ? nbreaks : 1, sizeof *o.specs);
    for (unsigned i = 0; i < nbreaks; i++) {
        if (!cli_parse_spec(breaks[i], syms, o.guest, &o.specs[i])) {
            vmt_symtab_free(syms);
            goto out;
        }
        o.nspecs++;
    }
    rc = cmd_run(&o, syms);
    vmt_symtab_free(syms);
out:
    free(o.specs);
    free(breaks);
    return rc;
}
