#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Line coverage of the unit tests plus one pass over every fuzz corpus
# (docs/coverage.md): clang source-based coverage (-fprofile-instr-generate
# -fcoverage-mapping), llvm-profdata and llvm-cov from Debian's llvm.
#
#   scripts/coverage.sh            build-cov/, report on stdout
#   VMITAP_COV_BUILD=dir scripts/coverage.sh
#
# End-to-end tests are not run (they need KVM or the test bed); the fuzz
# targets only replay their committed corpora (tests/fuzz/corpus/<target>/),
# so the figures are the same on every run.
set -euo pipefail
cd "$(dirname "$0")/.."
B=${VMITAP_COV_BUILD:-build-cov}
JOBS=$(nproc 2>/dev/null || echo 2)

if ! command -v llvm-profdata >/dev/null || ! command -v llvm-cov >/dev/null; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  echo "coverage: installing llvm (llvm-profdata, llvm-cov)" >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq llvm >/dev/null
fi

FLAGS="-fprofile-instr-generate -fcoverage-mapping"
cmake -S . -B "$B" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DVMITAP_FUZZ=ON \
  -DVMITAP_BUILD_BENCH=OFF -DCMAKE_C_FLAGS="$FLAGS" \
  -DCMAKE_EXE_LINKER_FLAGS="-fprofile-instr-generate" >/dev/null
cmake --build "$B" -j"$JOBS" >/dev/null

PROF=$PWD/$B/profraw
rm -rf "$PROF" && mkdir -p "$PROF"
LLVM_PROFILE_FILE="$PROF/unit-%p-%m.profraw" ctest --test-dir "$B" -L unit -j"$JOBS" >/dev/null
objects=()
for t in "$B"/tests/fuzz/fuzz_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  LLVM_PROFILE_FILE="$PROF/$name-%p-%m.profraw" "$t" -runs=0 "tests/fuzz/corpus/$name" \
    >/dev/null 2>&1
  objects+=(-object "$t")
done
for t in "$B"/tests/unit/test_*; do
  [ -x "$t" ] && objects+=(-object "$t")
done
llvm-profdata merge -sparse "$PROF"/*.profraw -o "$B/coverage.profdata"

# Sources reported: everything under src/ that the unit tests and fuzz
# targets reach (the KVM driver and the Linux session need a guest).
mapfile -t sources < <(ls src/bpm/*.c src/ptm/*.c src/core/*.c src/tracer/*.c)
first=${objects[1]}
llvm-cov report -instr-profile "$B/coverage.profdata" "$first" "${objects[@]}" \
  -show-region-summary=false -show-branch-summary=false "${sources[@]}"
