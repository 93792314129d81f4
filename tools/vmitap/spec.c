// SPDX-License-Identifier: MIT
/* vmitap: what the command line names, checked before anything boots:
 * numbers (decimal only, in range), addresses (0x hex only, canonical),
 * breakpoint specs (within their symbol, at the start of an instruction,
 * decoded with Zydis from the function's first byte), and the names
 * closest to an unknown one. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/insn.h"
#include "tools/vmitap/cli.h"
#include "vmitap/guest.h"

/* Functions larger than this are not decoded (none in a kernel is). */
#define MAX_DECODE (1u << 20)

void cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("vmitap: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see 'vmitap --help')\n", stderr);
    va_end(ap);
}

bool cli_parse_dec(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    if (v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool cli_parse_hex(const char *s, uint64_t *out)
{
    if (!s || s[0] != '0' || (s[1] != 'x' && s[1] != 'X') || !s[2] || strlen(s + 2) > 16)
        return false;
    uint64_t v = 0;
    for (const char *p = s + 2; *p; p++) {
        if (!isxdigit((unsigned char)*p))
            return false;
        v = v << 4 | (uint64_t)(isdigit((unsigned char)*p) ? *p - '0' : (tolower((unsigned char)*p) - 'a' + 10));
    }
    *out = v;
    return true;
}

bool cli_parse_seconds(const char *s, double max, double *out)
{
    /* DIGITS[.DIGITS]: no sign, exponent, hex, inf or nan */
    size_t n = strspn(s, "0123456789");
    if (n == 0)
        return false;
    if (s[n] == '.') {
        size_t f = strspn(s + n + 1, "0123456789");
        if (f == 0)
            return false;
        n += 1 + f;
    }
    if (s[n])
        return false;
    double v = strtod(s, NULL);
    if (!isfinite(v) || v < 0.001 || v > max) /* whole milliseconds: 0.0001 would be none */
        return false;
    *out = v;
    return true;
}

/* Edit distance of a and b, or limit + 1 when it is more than limit. */
static unsigned distance(const char *a, const char *b, unsigned limit)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64 || (la > lb ? la - lb : lb - la) > limit)
        return limit + 1;
    unsigned row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = (unsigned)j;
    for (size_t i = 1; i <= la; i++) {
        unsigned diag = row[0], best;
        row[0] = (unsigned)i;
        best = row[0];
        for (size_t j = 1; j <= lb; j++) {
            unsigned up = row[j];
            unsigned v = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < v)
                v = up + 1;
            if (row[j - 1] + 1 < v)
                v = row[j - 1] + 1;
            row[j] = v;
            diag = up;
            if (v < best)
                best = v;
        }
        if (best > limit)
            return limit + 1;
    }
    return row[lb];
}

void cli_suggest(const vmt_symtab *syms, const char *name, char *out, size_t len)
{
    enum { N = 3 };
    const char *best[N] = {0};
    unsigned dist[N];
    unsigned limit = strlen(name) < 6 ? 1u : (unsigned)strlen(name) / 4 + 1;
    for (size_t i = 0; i < vmt_symtab_count(syms); i++) {
        const char *s = vmt_symtab_at(syms, i)->name;
        unsigned d = distance(name, s, limit);
        if (d > limit && !(strlen(name) >= 4 && strstr(s, name)))
            continue;
        if (d > limit)
            d = limit + 1; /* a substring match ranks after close spellings */
        for (unsigned k = 0; k < N; k++) {
            if (best[k] && strcmp(best[k], s) == 0)
                break;
            if (!best[k] || d < dist[k]) {
                memmove(best + k + 1, best + k, (N - 1 - k) * sizeof *best);
                memmove(dist + k + 1, dist + k, (N - 1 - k) * sizeof *dist);
                best[k] = s;
                dist[k] = d;
                break;
            }
        }
    }
    out[0] = '\0';
    unsigned n = 0;
    while (n < N && best[n])
        n++;
    for (unsigned k = 0; k < n; k++) {
        size_t used = strlen(out);
        const char *sep = k == 0 ? "; did you mean " : k + 1 == n ? " or " : ", ";
        snprintf(out + used, len - used, "%s%s", sep, best[k]);
    }
    if (best[0]) {
        size_t used = strlen(out);
        snprintf(out + used, len - used, "?");
    }
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
    /* The bundled guest runs VMT_GUEST_NPROCS processes (vmitap/guest.h):
     * a process beyond them is refused here, before the boot. */
    if (!cli_parse_dec(s, 0, VMT_GUEST_NPROCS - 1, &p))
        return false;
    *proc = (int)p;
    return true;
}

/* off into sym must start an instruction: decodes sym from its first byte
 * (the ELF's bytes, what the guest runs). Prints one line when not. */
static bool check_boundary(const char *arg, const char *elf, const vmt_symbol *sym, uint64_t off)
{
    if (off == 0)
        return true;
    if (sym->size == 0 || sym->size > MAX_DECODE) {
        fprintf(stderr, "vmitap: '%s': %s has no known size, so vmitap cannot check that +%#" PRIx64
                        " starts an instruction\n", arg, sym->name, off);
        return false;
    }
    uint8_t *code = malloc(sym->size);
    if (!code || vmt_elf_read_va(elf, sym->addr, code, sym->size) != VMT_OK) {
        free(code);
        fprintf(stderr, "vmitap: '%s': cannot read the code of %s from %s\n", arg, sym->name, elf);
        return false;
    }
    size_t at;
    unsigned n;
    vmt_insn_where w = vmt_insn_where_is(code, sym->size, off, &at, &n);
    free(code);
    if (w == VMT_INSN_INSIDE)
        fprintf(stderr, "vmitap: '%s' is inside the instruction at %s+%#zx (%u bytes): a "
                        "breakpoint must be at the start of an instruction\n", arg, sym->name, at, n);
    else if (w == VMT_INSN_UNDECODABLE)
        fprintf(stderr, "vmitap: '%s': the code of %s does not decode at +%#zx, so vmitap "
                        "cannot check that +%#" PRIx64 " starts an instruction\n",
                arg, sym->name, at, off);
    return w == VMT_INSN_START;
}

/* SYMBOL[+OFF] -> s->va, s->name, s->sym; prints one line on error. */
static bool resolve_symbol(const char *arg, char *where, const vmt_symtab *syms, const char *elf,
                           bp_spec *s)
{
    uint64_t off = 0;
    char *plus = strchr(where, '+');
    if (plus) {
        *plus = '\0';
        if (!cli_parse_dec(plus + 1, 0, UINT64_MAX, &off) && !cli_parse_hex(plus + 1, &off)) {
            cli_usage_error("bad offset in breakpoint '%s': expected decimal or 0x hex", arg);
            return false;
        }
    }
    const vmt_symbol *sym = vmt_symtab_lookup(syms, where);
    if (!sym) {
        char hint[256];
        cli_suggest(syms, where, hint, sizeof hint);
        fprintf(stderr, "vmitap: unknown symbol '%s'%s (see 'vmitap symbols')\n", where, hint);
        return false;
    }
    if (off && sym->size && off >= sym->size) {
        fprintf(stderr, "vmitap: '%s': offset %#" PRIx64 " is beyond %s (%" PRIu64 " bytes)\n", arg,
                off, sym->name, sym->size);
        return false;
    }
    s->va = sym->addr + off;
    if (s->va < sym->addr || !vmt_va_is_canonical(s->va)) {
        fprintf(stderr, "vmitap: '%s' is not a canonical address\n", arg);
        return false;
    }
    if (!check_boundary(arg, elf, sym, off))
        return false;
    if (off)
        snprintf(s->name, sizeof s->name, "%s+%#" PRIx64, sym->name, off);
    else
        snprintf(s->name, sizeof s->name, "%s", sym->name);
    if (!off)
        snprintf(s->sym, sizeof s->sym, "%s", sym->name);
    return true;
}

/* 0xADDR -> s->va; it must be in a function of the guest, at the start of
 * an instruction. */
static bool resolve_address(const char *arg, const char *where, const vmt_symtab *syms,
                            const char *elf, bp_spec *s)
{
    if (strchr(where, '+') || !cli_parse_hex(where, &s->va) || !vmt_va_is_canonical(s->va)) {
        cli_usage_error("bad address '%s': expected a canonical hex address like 0x401000", where);
        return false;
    }
    uint64_t off;
    const vmt_symbol *sym = vmt_symtab_find_addr(syms, s->va, &off);
    if (!sym || (sym->size == 0 && off)) {
        fprintf(stderr, "vmitap: '%s': %#" PRIx64 " is in no function of the guest "
                        "(see 'vmitap symbols')\n", arg, s->va);
        return false;
    }
    if (!check_boundary(arg, elf, sym, off))
        return false;
    snprintf(s->name, sizeof s->name, "%#" PRIx64, s->va);
    return true;
}

bool cli_parse_spec(const char *arg, const vmt_symtab *syms, const char *elf, bp_spec *out)
{
    bp_spec s = {.text = arg};
    char where[96];
    const char *at = strchr(arg, '@');
    size_t n = at ? (size_t)(at - arg) : strlen(arg);
    if (n == 0 || n >= sizeof where) {
        cli_usage_error("bad breakpoint '%s'", arg);
        return false;
    }
    memcpy(where, arg, n);
    where[n] = '\0';
    if (!parse_proc(at ? at + 1 : NULL, &s.proc)) {
        cli_usage_error("bad process in breakpoint '%s': expected @0..@%u or @*", arg,
                        VMT_GUEST_NPROCS - 1);
        return false;
    }
    bool ok = isdigit((unsigned char)where[0]) ? resolve_address(arg, where, syms, elf, &s)
                                               : resolve_symbol(arg, where, syms, elf, &s);
    if (!ok)
        return false;
    s.kernel = (s.va >> 47) != 0;
    if (s.kernel && s.proc != SPEC_GLOBAL) {
        cli_usage_error("'%s': kernel addresses are global, @P does not apply", arg);
        return false;
    }
    *out = s;
    return true;
}
