#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The ABI is exactly the API: compares what libvmitap.so exports (nm -D)
# with every function and variable the public headers declare, and checks
# that libvmitap.a defines no global symbol outside that list.
# Usage: check_abi.sh LIBVMITAP.so LIBVMITAP.a C_COMPILER INCLUDE_DIR...
# (INCLUDE_DIRs: where vmitap/*.h are; the installed include dir, or the
# source and build trees' include dirs.)
set -euo pipefail
so=$1 ar=$2 cc=$3
shift 3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Declared: the compiler lists every function prototype it saw (-aux-info),
# with the header it came from; static inline ones are not part of the ABI.
incs=()
for d in "$@"; do incs+=("-I$d"); done
echo '#include <vmitap/vmitap.h>' >"$work/all.c"
"$cc" -std=c11 "${incs[@]}" -aux-info "$work/aux" -fsyntax-only "$work/all.c"
grep '/vmitap/[a-z_]*\.h:' "$work/aux" | grep -v ' static ' |
  sed -E 's|^/\*[^*]*\*/ *||; s/^([^(]*[ *])?([A-Za-z_][A-Za-z0-9_]*) \(.*/\2/' >"$work/declared"
# Variables: "extern" declarations at file scope of the headers.
for d in "$@"; do
  [ -d "$d/vmitap" ] && cat "$d"/vmitap/*.h
done | grep -E '^(VMT_API )?extern [^(]*;' | sed -E 's/.*[ *]([A-Za-z_][A-Za-z0-9_]*) *;.*/\1/' \
  >>"$work/declared"
sort -u "$work/declared" -o "$work/declared"
[ -s "$work/declared" ] || { echo "no declarations found in $*" >&2; exit 1; }

# Exported: defined dynamic symbols, every one in version node VMITAP_0.1.
nm -D --defined-only "$so" | awk '$2 != "A" {print $3}' >"$work/dyn"
if grep -v '@@VMITAP_0\.1$' "$work/dyn"; then
  echo "FAIL: the symbols above are not in version node VMITAP_0.1" >&2
  exit 1
fi
sed 's/@@VMITAP_0\.1$//' "$work/dyn" | sort -u >"$work/exported"

status=0
if ! diff -u --label declared "$work/declared" --label exported "$work/exported"; then
  echo "FAIL: $so exports (+) what no header declares, or lacks (-) what one does" >&2
  status=1
fi

# The static library: global definitions only for declared names.
nm -g --defined-only "$ar" | awk 'NF == 3 {print $3}' | sort -u >"$work/static"
if ! diff -u --label declared "$work/declared" --label static "$work/static"; then
  echo "FAIL: $ar defines (+) global symbols no header declares, or lacks (-) some" >&2
  status=1
fi
if grep -v '^vmt_' "$work/static"; then
  echo "FAIL: $ar defines the global symbols above without the vmt_ prefix" >&2
  status=1
fi
[ $status -eq 0 ] && echo "ABI ok: $(wc -l <"$work/exported") symbols, all declared, all in VMITAP_0.1"
exit $status
