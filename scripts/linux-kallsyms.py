#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes a System.map (address, type, name) from the kallsyms tables that a
Linux vmlinux carries in its own read-only data.

Debian's kernel package ships only a stub System.map (the real one is in the
900 MB -dbg package), but every kernel built with CONFIG_KALLSYMS holds its
symbol table, compressed, for /proc/kallsyms. This reads it from the
decompressed vmlinux, for kernels 6.1 built with CONFIG_KALLSYMS_BASE_RELATIVE
(the x86-64 default). The tables, as scripts/kallsyms.c lays them out, each
8-byte aligned, in this order:

  kallsyms_offsets        s32[num]   addresses relative to the base
  kallsyms_relative_base  u64
  kallsyms_num_syms       u32
  kallsyms_names          per symbol: length (1 byte, or 2 if the first has
                          bit 7 set), then that many token indices; the
                          expansion's first character is the symbol type
  kallsyms_markers        offsets into names of every 256th symbol
  (kallsyms_seqs_of_names in kernels that have it)
  kallsyms_token_table    256 NUL-terminated tokens
  kallsyms_token_index    u16[256] offsets of the tokens in the table

How they are found: the token table holds the single-character tokens of
the characters used in symbol names at their own codes, so "0".."9" appear
as one run of ten NUL-terminated strings; the table start is then the
8-aligned position from which 256 strings put "0" at index 0x30, confirmed
by the u16 index that follows. The base is the lowest address of the kernel
text (the ELF's first PT_LOAD), looked for just before a plausible symbol
count, and confirmed by decoding every name and finding the markers right
after them.

usage: linux-kallsyms.py VMLINUX > System.map
"""
import struct
import sys


def align8(x):
    return (x + 7) & ~7


def elf_text_base(img):
    if img[:4] != b"\x7fELF" or img[4] != 2:
        sys.exit("linux-kallsyms: not a 64-bit ELF")
    phoff, = struct.unpack_from("<Q", img, 32)
    phentsize, phnum = struct.unpack_from("<HH", img, 54)
    for i in range(phnum):
        p_type, = struct.unpack_from("<I", img, phoff + i * phentsize)
        if p_type == 1:
            vaddr, = struct.unpack_from("<Q", img, phoff + i * phentsize + 16)
            return vaddr
    sys.exit("linux-kallsyms: no PT_LOAD")


def find_token_table(img):
    digits = b"".join(bytes([c]) + b"\0" for c in b"0123456789")
    pos = img.find(digits)
    while pos >= 0:
        for start in range(pos & ~7, max(pos - 16384, 0), -8):
            offs, p = [], start
            for _ in range(256):
                offs.append(p - start)
                end = img.find(b"\0", p)
                if end < 0 or end - p > 64:
                    break
                p = end + 1
            else:
                if offs[0x30] != pos - start:
                    continue
                index = struct.unpack_from("<256H", img, align8(p))
                if list(index) == offs:
                    tokens = [img[start + o:img.index(b"\0", start + o)].decode("latin-1") for o in offs]
                    return start, tokens
        pos = img.find(digits, pos + 1)
    sys.exit("linux-kallsyms: no kallsyms token table found")


def decode_names(img, at, num, tokens):
    names, p = [], at
    starts = []
    for _ in range(num):
        starts.append(p - at)
        n = img[p]
        p += 1
        if n & 0x80:
            n = (n & 0x7F) | (img[p] << 7)
            p += 1
        names.append("".join(tokens[b] for b in img[p:p + n]))
        p += n
    return names, p, starts


def find_tables(img, base, token_start, tokens):
    needle = struct.pack("<Q", base)
    pos = img.rfind(needle, 0, token_start)
    while pos >= 0:
        if pos % 8 == 0:
            num, = struct.unpack_from("<I", img, pos + 8)
            names_at = align8(pos + 12)
            if 1000 < num < 2000000 and names_at < token_start:
                names, end, starts = decode_names(img, names_at, num, tokens)
                # markers (u32 or u64 by version) follow the names: the
                # offsets of symbols 0, 256, 512, ...
                m_at = align8(end)
                for fmt in ("<3I", "<3Q"):
                    marks = struct.unpack_from(fmt, img, m_at)
                    if num > 512 and list(marks) == [starts[0], starts[256], starts[512]]:
                        offsets_at = pos - align8(4 * num)
                        offsets = struct.unpack_from("<%di" % num, img, offsets_at)
                        return names, offsets
        pos = img.rfind(needle, 0, pos)
    sys.exit("linux-kallsyms: no kallsyms_relative_base / names found")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    img = open(sys.argv[1], "rb").read()
    base = elf_text_base(img)
    token_start, tokens = find_token_table(img)
    names, offsets = find_tables(img, base, token_start, tokens)
    out = []
    for name, off in zip(names, offsets):
        # CONFIG_KALLSYMS_ABSOLUTE_PERCPU: non-negative offsets are absolute
        # (per-CPU symbols), negative ones count down from base - 1.
        addr = off if off >= 0 else base - 1 - off
        out.append("%016x %s %s\n" % (addr & 0xFFFFFFFFFFFFFFFF, name[:1], name[1:]))
    sys.stdout.write("".join(out))


if __name__ == "__main__":
    main()
