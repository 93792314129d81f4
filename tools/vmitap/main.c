// SPDX-License-Identifier: MIT
/* vmitap — command-line front end: argument parsing, help, `symbols`.
 * The `run` command lives in run.c. */
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
#include "vmitap/log.h"

static const char usage_text[] =
    "usage: vmitap run [options] [-b BREAKPOINT]...\n"
    "       vmitap symbols [--guest FILE] [--json] [SUBSTRING]\n"
    "       vmitap --help | --version\n"
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
    "      --global          a user SPEC without @ is one global breakpoint instead\n"
    "                        (right for code shared by all processes)\n"
    "  -g, --guest FILE      guest ELF to boot (default: the bundled test guest)\n"
    "  -c, --controller C    int3 | memory | auto (default auto: int3 on execute-only\n"
    "                        pages the KVM driver emulates: stealthy, and much\n"
    "                        faster than memory here)\n"
    "      --execute-only    with int3: have the KVM driver emulate execute-only\n"
    "                        pages, so that guest reads do not see the int3 bytes\n"
    "  -n, --iterations N    guest scheduler rounds (default: the guest's, 1000)\n"
    "  -s, --seed N          guest PRNG seed (pager choices)\n"
    "  -p, --pager PCT       pager aggressiveness 0..100 (0 = never evict)\n"
    "  -t, --timeout SEC     stop after SEC seconds (counters are then not compared)\n"
    "      --hits            print every hit\n"
    "      --linux DIR       boot Debian's Linux kernel prepared in DIR by\n"
    "                        scripts/fetch-linux.sh instead; -b then names kernel\n"
    "                        functions from DIR/System.map (global breakpoints),\n"
    "                        and a user-space breakpoint waits, pending, for the\n"
    "                        busybox entry point in the init script's probe process\n"
    "      --no-probe        (--linux) no user-space breakpoint\n"
    "      --baseline        (--linux) no tracer at all: boot and workload times\n"
    "      --console         (--linux) print the guest's serial console at the end\n"
    "      --json            JSON lines instead of text (one object per line)\n"
    "  -v, --verbose         library diagnostics on stderr (-vv: debug)\n"
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
    "  vmitap run --json -b 0xffffffff80201000 --timeout 5\n"
    "  vmitap run --linux ~/.cache/vmitap/linux -b do_sys_openat2 --console\n"
    "  vmitap symbols prog_\n";

static void usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vmitap: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see 'vmitap --help')\n", stderr);
    va_end(ap);
}

void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

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

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return false;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

/* "@P" / "@*" suffix. */
static bool parse_proc(const char *s, int *proc)
{
    if (!s) {
        *proc = SPEC_GLOBAL; /* decided later from kernel/user and --global */
        return true;
    }
    if (strcmp(s, "*") == 0) {
        *proc = SPEC_EACH_PROC;
        return true;
    }
    uint64_t p;
    if (!parse_u64(s, &p) || p >= CLI_MAX_IDS)
        return false;
    *proc = (int)p;
    return true;
}

bool cli_parse_spec(const char *arg, const vmt_symtab *syms, bp_spec *out)
{
    bp_spec s = {.text = arg};
    char where[96];
    const char *at = strchr(arg, '@');
    size_t n = at ? (size_t)(at - arg) : strlen(arg);
    if (n == 0 || n >= sizeof where) {
        usage_error("bad breakpoint '%s'", arg);
        return false;
    }
    memcpy(where, arg, n);
    where[n] = '\0';
    if (!parse_proc(at ? at + 1 : NULL, &s.proc)) {
        usage_error("bad process in breakpoint '%s': expected @0..@%d or @*", arg, CLI_MAX_IDS - 1);
        return false;
    }
    uint64_t off = 0;
    char *plus = strchr(where, '+');
    if (plus) {
        *plus = '\0';
        if (!parse_u64(plus + 1, &off)) {
            usage_error("bad offset in breakpoint '%s'", arg);
            return false;
        }
    }
    if (where[0] >= '0' && where[0] <= '9') {
        if (plus || !parse_u64(where, &s.va) || !vmt_va_is_canonical(s.va)) {
            usage_error("bad address '%s': expected a canonical hex address like 0x401000", where);
            return false;
        }
        snprintf(s.name, sizeof s.name, "%#" PRIx64, s.va);
    } else {
        const vmt_symbol *sym = vmt_symtab_lookup(syms, where);
        if (!sym) {
            fprintf(stderr, "vmitap: unknown symbol '%s' (see 'vmitap symbols')\n", where);
            return false;
        }
        s.va = sym->addr + off;
        if (off)
            snprintf(s.name, sizeof s.name, "%s+%#" PRIx64, sym->name, off);
        else
            snprintf(s.name, sizeof s.name, "%s", sym->name);
        if (!off)
            snprintf(s.sym, sizeof s.sym, "%s", sym->name);
    }
    s.kernel = (s.va >> 47) != 0;
    if (s.kernel && s.proc != SPEC_GLOBAL) {
        usage_error("'%s': kernel addresses are global, @P does not apply", arg);
        return false;
    }
    *out = s;
    return true;
}

static int cmd_symbols(const char *guest, bool json, const char *filter)
{
    vmt_symtab *syms;
    if (!cli_load_symbols(guest, &syms))
        return CLI_EXIT_RUNTIME;
    for (size_t i = 0; i < vmt_symtab_count(syms); i++) {
        const vmt_symbol *s = vmt_symtab_at(syms, i);
        if (filter && !strstr(s->name, filter))
            continue;
        const char *kind = (s->addr >> 47) ? "kernel" : "user";
        if (json) {
            printf("{\"name\":");
            json_str(stdout, s->name);
            printf(",\"address\":\"%#" PRIx64 "\",\"size\":%" PRIu64 ",\"space\":\"%s\"}\n",
                   s->addr, s->size, kind);
        } else {
            printf("%#18" PRIx64 " %6" PRIu64 " %-6s %s\n", s->addr, s->size, kind, s->name);
        }
    }
    vmt_symtab_free(syms);
    return CLI_EXIT_OK;
}

enum { OPT_GLOBAL = 256, OPT_HITS, OPT_JSON, OPT_XO,
       OPT_LINUX, OPT_NO_PROBE, OPT_BASELINE, OPT_CONSOLE }; /* linux: the last four */

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

/* Parses the options of `run` / `symbols` (argv[0] is the command).
 * Breakpoint arguments are collected raw in *breaks; returns an exit code
 * or -1 to go on. */
static int parse_opts(int argc, char **argv, cli_opts *o, const char ***breaks, unsigned *nbreaks)
{
    int c;
    uint64_t v;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":b:g:c:n:s:p:t:vh", long_opts, NULL)) != -1) {
        switch (c) {
        case 'b': (*breaks)[(*nbreaks)++] = optarg; break;
        case 'g': o->guest = optarg; o->guest_given = true; break;
        case 'c':
            if (!parse_controller(optarg, &o->controller)) {
                usage_error("unknown controller '%s': expected int3, memory or auto", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'n':
            if (!parse_u64(optarg, &o->iterations) || o->iterations == 0) {
                usage_error("bad --iterations '%s': expected a positive number", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 's':
            if (!parse_u64(optarg, &o->seed)) {
                usage_error("bad --seed '%s'", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        case 'p':
            if (!parse_u64(optarg, &v) || v > 100) {
                usage_error("bad --pager '%s': expected 0..100", optarg);
                return CLI_EXIT_USAGE;
            }
            o->pager = (uint32_t)v;
            o->pager_given = true;
            break;
        case 't': {
            char *end;
            o->timeout_s = strtod(optarg, &end);
            if (*end || !(o->timeout_s > 0)) {
                usage_error("bad --timeout '%s': expected seconds > 0", optarg);
                return CLI_EXIT_USAGE;
            }
            break;
        }
        case 'v': o->verbose++; break;
        case OPT_GLOBAL: o->global_user = true; break;
        case OPT_HITS: o->show_hits = true; break;
        case OPT_JSON: o->json = true; break;
        case OPT_XO: o->execute_only = true; break;
        case OPT_LINUX: o->linux_dir = optarg; break;
        case OPT_NO_PROBE: o->linux_no_probe = true; break;
        case OPT_BASELINE: o->linux_baseline = true; break;
        case OPT_CONSOLE: o->linux_console = true; break;
        case 'h': fputs(usage_text, stdout); return CLI_EXIT_OK;
        case ':': usage_error("option '%s' needs a value", argv[optind - 1]); return CLI_EXIT_USAGE;
        default: usage_error("unknown option '%s'", argv[optind - 1]); return CLI_EXIT_USAGE;
        }
    }
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(usage_text, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("vmitap %s\n", VMITAP_VERSION);
        return CLI_EXIT_OK;
    }
    if (strcmp(cmd, "run") != 0 && strcmp(cmd, "symbols") != 0) {
        usage_error("unknown command '%s'", cmd);
        return CLI_EXIT_USAGE;
    }
    cli_opts o = {.controller = VMT_TRACER_CONTROLLER_AUTO};
    const char **breaks = calloc((size_t)argc, sizeof *breaks);
    unsigned nbreaks = 0;
    int rc = parse_opts(argc - 1, argv + 1, &o, &breaks, &nbreaks);
    if (rc >= 0)
        goto out;
    vmt_set_log_fn(log_to_stderr, &o.verbose);
    if (!o.guest)
        o.guest = vmt_kvm_default_guest();
    int first_arg = optind + 1; /* argv + 1 was parsed */
    if (strcmp(cmd, "symbols") == 0) {
        if (nbreaks || argc - first_arg > 1) {
            usage_error("'symbols' takes only --guest, --json and one SUBSTRING");
            rc = CLI_EXIT_USAGE;
            goto out;
        }
        rc = cmd_symbols(o.guest, o.json, first_arg < argc ? argv[first_arg] : NULL);
        goto out;
    }
    if (first_arg < argc) {
        usage_error("unexpected argument '%s' (breakpoints go after -b)", argv[first_arg]);
        rc = CLI_EXIT_USAGE;
        goto out;
    }
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
        if (!cli_parse_spec(breaks[i], syms, &o.specs[i])) {
            rc = CLI_EXIT_USAGE;
            vmt_symtab_free(syms);
            goto out;
        }
        o.nspecs++;
    }
    o.progress = !o.json && isatty(STDOUT_FILENO);
    rc = cmd_run(&o, syms);
    vmt_symtab_free(syms);
out:
    free(o.specs);
    free(breaks);
    return rc;
}
