#!/usr/bin/env bash
# Install smoke test: installs the build into a temporary prefix, then
# builds and runs a small program against it twice: once with pkg-config,
# once with find_package(vmitap) (shared and static libraries).
# Usage: install_test.sh BUILD_DIR CONSUMER_DIR C_COMPILER "EXTRA_CFLAGS" WORK_DIR
set -euo pipefail
build=$1 here=$2 cc=$3 flags=$4 work=$5

rm -rf "$work"
mkdir -p "$work"
prefix="$work/prefix"
cmake --install "$build" --prefix "$prefix" >"$work/install.log"

# Only what was installed may be used: nothing from the source tree.
warn="-std=c11 -Wall -Wextra -Wpedantic -Werror"

echo "== pkg-config =="
pc=$(find "$prefix" -name vmitap.pc)
[ -n "$pc" ] || { echo "vmitap.pc was not installed" >&2; exit 1; }
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
libdir=$(pkg-config --variable=libdir vmitap)
case "$libdir" in "$prefix"/*) ;; *) echo "vmitap.pc points outside the prefix: $libdir" >&2; exit 1;; esac
# shellcheck disable=SC2046,SC2086  # word splitting of flags is intended
"$cc" $warn $flags $(pkg-config --cflags vmitap) "$here/consumer.c" -o "$work/consumer_pc" \
  $(pkg-config --libs vmitap)
LD_LIBRARY_PATH="$libdir" "$work/consumer_pc"

echo "== find_package(vmitap) =="
cmake -S "$here" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
  -DCMAKE_C_FLAGS="$warn $flags" >"$work/configure.log"
cmake --build "$work/cmake" >"$work/build.log"
"$work/cmake/consumer_shared"
"$work/cmake/consumer_static"
