// SPDX-License-Identifier: MIT
/* Instruction lengths and boundaries by Zydis. See insn.h. */
#include "core/insn.h"

#include <Zydis/Zydis.h>

/* One decoder for the process: ZydisDecoderInit only fills the struct, so
 * a local one per call costs nothing worth sharing state for. */
static bool decoder(ZydisDecoder *d)
{
    return ZYAN_SUCCESS(ZydisDecoderInit(d, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64));
}

unsigned vmt_insn_len(const uint8_t *p, size_t avail)
{
    ZydisDecoder d;
    ZydisDecodedInstruction insn;
    if (!p || avail == 0 || !decoder(&d))
        return 0;
    if (avail > ZYDIS_MAX_INSTRUCTION_LENGTH)
        avail = ZYDIS_MAX_INSTRUCTION_LENGTH;
    /* no operands: only the length is wanted */
    if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&d, NULL, p, avail, &insn)))
        return 0;
    return insn.length;
}

vmt_insn_where vmt_insn_where_is(const uint8_t *code, size_t len, size_t off, size_t *at,
                                 unsigned *at_len)
{
    size_t pos = 0;
    unsigned n = 0;
    vmt_insn_where w = VMT_INSN_UNDECODABLE;
    while (code && pos < len) {
        n = vmt_insn_len(code + pos, len - pos);
        if (n == 0) {
            w = VMT_INSN_UNDECODABLE;
            break;
        }
        if (pos == off) {
            w = VMT_INSN_START;
            break;
        }
        if (off < pos + n) {
            w = VMT_INSN_INSIDE;
            break;
        }
        pos += n;
    }
    if (at)
        *at = pos;
    if (at_len)
        *at_len = w == VMT_INSN_UNDECODABLE ? 0 : n;
    return w;
}
