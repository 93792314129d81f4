// SPDX-License-Identifier: MIT
/* vmitap — what every public header shares: the export macro and the
 * options-struct rule.
 *
 * VMT_API marks the library's public functions and data. The library is
 * compiled with -fvisibility=hidden, so only what carries VMT_API is
 * exported from libvmitap.so (in version node VMITAP_0.1), and the static
 * libvmitap.a defines nothing else globally.
 *
 * Options structs (libbpf's rule). Every struct a function takes as
 * options starts with `size_t sz`, which the caller sets to the struct's
 * size as it knows it; declare one with VMT_OPTS, which sets sz and zeroes
 * every field not named:
 *
 *     VMT_OPTS(vmt_tracer_opts, to, .controller = VMT_TRACER_CONTROLLER_INT3);
 *     vmt_tracer_new(core, &to, &t);
 *
 * The library then accepts a struct
 * - of its own size;
 * - smaller (a caller built against an older vmitap): the missing fields
 *   are zero, i.e. their defaults;
 * - larger (a caller built against a newer vmitap) only when every byte
 *   beyond the fields the library knows is zero, else VMT_E_INVALID: a
 *   caller asked for something this library cannot do;
 * and refuses sz == 0 (a struct nobody sized) with VMT_E_INVALID. A NULL
 * options pointer means all defaults wherever the function says so.
 *
 * Structs the library fills for the caller (statistics, breakpoint info,
 * host profile) follow the same rule in the other direction: the caller
 * sets sz (VMT_OPTS declares them too), the library fills the fields that
 * fit in sz, zeroes the rest up to sz, and never writes past it; sz == 0
 * is VMT_E_INVALID. Structs that carry no sz (vmt_regs, vmt_event,
 * vmt_walk, ...) are fixed for this ABI version: a new field there would
 * be a new struct and a new function. */
#ifndef VMITAP_API_H
#define VMITAP_API_H

#if defined(__GNUC__) || defined(__clang__)
#define VMT_API __attribute__((visibility("default")))
#else
#define VMT_API
#endif

/* Declares `type name` with .sz = sizeof(type) and the given designated
 * initializers; every other field (and byte) is zero. Usable wherever a
 * declaration is. The helper takes the trailing empty argument so that
 * VMT_OPTS(type, name) without initializers is valid ISO C. */
#define VMT_OPTS(...) VMT_OPTS_(__VA_ARGS__, )
#define VMT_OPTS_(type, name, ...) type name = {.sz = sizeof(type), __VA_ARGS__}

#endif /* VMITAP_API_H */
