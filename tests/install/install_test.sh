#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The installed package stands alone. Builds vmitap afresh from SRC (same
# compiler, same sanitizer setting as the calling build), installs it into
# a temporary prefix, DELETES that build tree, and then uses only the
# prefix: the installed `vmitap symbols` (which must find the installed
# guest), the man page, the ABI check, and both examples (installed under
# share/doc/vmitap/examples) built with pkg-config and with CMake, each
# against the shared and the static library, and run.
# Usage: install_test.sh SRC C_COMPILER "EXTRA_CFLAGS" WORK_DIR SANITIZE(0|1) GCC
set -euo pipefail
src=$1 cc=$2 flags=$3 work=$4 sanitize=$5 auxcc=$6

rm -rf "$work"
mkdir -p "$work"
prefix="$work/prefix"
build="$work/build"
log="$work/log"
mkdir -p "$log"
fail() { echo "FAIL: $*" >&2; exit 1; }

echo "== build and install into $prefix =="
san=OFF
[ "$sanitize" = 1 ] && san=ON
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER="$cc" \
  -DVMITAP_SANITIZE=$san -DVMITAP_BUILD_TESTS=OFF -DVMITAP_BUILD_BENCH=OFF \
  -DCMAKE_INSTALL_PREFIX=/nonexistent/vmitap-prefix >"$log/configure" 2>&1 ||
  { cat "$log/configure" >&2; fail "configure"; }
nice -n 10 cmake --build "$build" -j2 >"$log/build" 2>&1 || { tail -50 "$log/build" >&2; fail "build"; }
# Installed to another prefix than configured: everything must follow.
cmake --install "$build" --prefix "$prefix" >"$log/install" 2>&1 || { cat "$log/install" >&2; fail "install"; }
rm -rf "$build"
echo "build tree $build deleted"
# Nothing installed may name the build tree (nor, but for the sanitizers'
# metadata, the source tree). The guest's own debug info and link map
# (share/vmitap/) record where it was compiled; nothing reads that.
trees=(-e "$build")
[ "$sanitize" = 1 ] || trees+=(-e "$src/")
if grep -rlF "${trees[@]}" "$prefix" | grep -v "^$prefix/share/vmitap/"; then
  fail "the files above name the build or source tree"
fi

unset VMITAP_GUEST
bin="$prefix/bin"
libdir=$(dirname "$(find "$prefix" -name 'libvmitap.so' | head -1)")
[ -d "$libdir" ] || fail "libvmitap.so not installed"

echo "== installed files =="
for f in bin/vmitap bin/vmt-kvm-run share/vmitap/vmitap-guest.elf share/vmitap/vmitap-guest.map \
         share/doc/vmitap/LICENSE share/doc/vmitap/api.md \
         share/man/man1/vmitap.1 include/vmitap/version.h include/vmitap/guest.h \
         share/doc/vmitap/examples/embed_tracer.c share/doc/vmitap/examples/CMakeLists.txt; do
  [ -e "$prefix/$f" ] || fail "$f not installed"
done
[ -e "$libdir/libvmitap.a" ] || fail "libvmitap.a not installed"
grep -q '^\.TH "vmitap" "1"' "$prefix/share/man/man1/vmitap.1" || fail "vmitap.1 is not a man page"
if command -v man >/dev/null; then
  man -l "$prefix/share/man/man1/vmitap.1" 2>/dev/null | grep -q "vmitap symbols" || fail "man page unreadable"
fi

echo "== every installed header compiles on its own =="
for h in "$prefix"/include/vmitap/*.h; do
  printf '#include <vmitap/%s>\nint main(void) { return 0; }\n' "$(basename "$h")" >"$work/h.c"
  # shellcheck disable=SC2086
  "$cc" -std=c11 -Wall -Wextra -Wpedantic -Werror $flags -I"$prefix/include" -c "$work/h.c" -o "$work/h.o" ||
    fail "$(basename "$h") does not compile on its own"
done

echo "== installed vmitap symbols =="
"$bin/vmitap" symbols schedule >"$log/symbols" 2>&1 || { cat "$log/symbols" >&2; fail "vmitap symbols"; }
cat "$log/symbols"
grep -q ' schedule$' "$log/symbols" || fail "vmitap symbols did not list schedule"
"$bin/vmitap" --version

echo "== ABI of the installed libraries =="
bash "$(dirname "$0")/check_abi.sh" "$libdir/libvmitap.so" "$libdir/libvmitap.a" "$auxcc" "$prefix/include"

# run_example NAME PROGRAM LINKAGE: translate must pass; embed_tracer must
# find the installed guest, then trace it (0), or stop for want of KVM (77).
run_example() {
  local name=$1 prog=$2 linkage=$3 out rc=0
  out="$log/$name"
  if [ "$linkage" = static ]; then
    # A statically linked program outside the prefix cannot know where the
    # prefix is: it is told (vmitap(1), ENVIRONMENT).
    VMITAP_GUEST="$prefix/share/vmitap/vmitap-guest.elf" "$prog" >"$out" 2>&1 || rc=$?
  else
    LD_LIBRARY_PATH="$libdir" "$prog" >"$out" 2>&1 || rc=$?
  fi
  echo "-- $name: exit $rc"
  head -3 "$out"
  case "$(basename "$prog")" in
    translate*) [ $rc -eq 0 ] || { cat "$out" >&2; fail "$name exited $rc"; } ;;
    embed_tracer*)
      grep -q "guest $prefix/share/vmitap/vmitap-guest.elf" "$out" ||
        grep -q "guest $(realpath "$prefix")/share/vmitap/vmitap-guest.elf" "$out" ||
        fail "$name did not find the installed guest"
      if [ $rc -eq 77 ]; then
        grep -q "no KVM" "$out" || fail "$name exited 77 without saying why"
        echo "($name: no usable /dev/kvm here; it found the installed guest)"
      elif [ $rc -ne 0 ]; then
        fail "$name exited $rc"
      fi ;;
  esac
}

examples="$prefix/share/doc/vmitap/examples"
warn="-std=c11 -Wall -Wextra -Wpedantic -Werror"
export PKG_CONFIG_PATH
PKG_CONFIG_PATH="$libdir/pkgconfig"
case "$(pkg-config --variable=libdir vmitap)" in
  "$prefix"/*) ;;
  *) fail "vmitap.pc points outside the prefix" ;;
esac

echo "== examples with pkg-config =="
for ex in translate embed_tracer; do
  # shellcheck disable=SC2046,SC2086  # word splitting of flags is intended
  "$cc" $warn $flags $(pkg-config --cflags vmitap) "$examples/$ex.c" -o "$work/${ex}_pc_shared" \
    $(pkg-config --libs vmitap)
  # shellcheck disable=SC2046,SC2086
  "$cc" $warn $flags $(pkg-config --cflags vmitap) "$examples/$ex.c" -o "$work/${ex}_pc_static" \
    "$libdir/libvmitap.a" $(pkg-config --static --libs vmitap | sed 's/-lvmitap\b//')
  run_example "${ex}_pc_shared" "$work/${ex}_pc_shared" shared
  run_example "${ex}_pc_static" "$work/${ex}_pc_static" static
done

echo "== examples with find_package(vmitap) =="
for linkage in shared static; do
  st=OFF
  [ $linkage = static ] && st=ON
  cmake -S "$examples" -B "$work/cmake_$linkage" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
    -DCMAKE_C_FLAGS="$warn $flags" -DVMITAP_EXAMPLES_STATIC=$st >"$log/cmake_$linkage" 2>&1 ||
    { cat "$log/cmake_$linkage" >&2; fail "examples: configure ($linkage)"; }
  cmake --build "$work/cmake_$linkage" >>"$log/cmake_$linkage" 2>&1 ||
    { cat "$log/cmake_$linkage" >&2; fail "examples: build ($linkage)"; }
  for ex in translate embed_tracer; do
    run_example "${ex}_cmake_$linkage" "$work/cmake_$linkage/$ex" $linkage
  done
done
echo "install test passed"
