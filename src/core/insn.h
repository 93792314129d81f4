// SPDX-License-Identifier: MIT
/* x86-64 instruction lengths and boundaries, decoded by Zydis (64-bit
 * mode), for every place vmitap needs them: the CLI's check that a
 * breakpoint starts an instruction, the KVM driver's hand-stepped
 * instructions, the tracer's step-over emulation. Internal. */
#ifndef VMITAP_CORE_INSN_H
#define VMITAP_CORE_INSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length of the instruction at p, of which avail bytes are readable (at
 * most 15 are looked at); 0 when they do not decode: invalid, or cut
 * short by avail. */
unsigned vmt_insn_len(const uint8_t *p, size_t avail);

typedef enum vmt_insn_where {
    VMT_INSN_START = 0,   /* off is the first byte of an instruction */
    VMT_INSN_INSIDE,      /* off is inside the instruction at *at */
    VMT_INSN_UNDECODABLE, /* the bytes at *at do not decode */
} vmt_insn_where;

/* Decodes code[0..len) from its first byte, one instruction after the
 * other, up to off (< len). *at / *at_len (optional): the start and
 * length of the instruction that holds off (or that fails to decode;
 * *at_len is then 0). Straight-line decoding: data inside the code (jump
 * tables) would throw it off, which compilers do not put in x86-64 .text
 * functions. */
vmt_insn_where vmt_insn_where_is(const uint8_t *code, size_t len, size_t off, size_t *at,
                                 unsigned *at_len);

#endif /* VMITAP_CORE_INSN_H */
