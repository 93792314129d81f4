#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Sets up, builds and runs the whole test suite:
#  1. the normal build (gcc, warnings as errors): unit, model-based random,
#     and end-to-end KVM tests;
#  2. clang with ASan+UBSan, same tests, plus a short libFuzzer run;
#  3. the unit tests again under valgrind.
# End-to-end tests run natively where /dev/kvm opens, else in the KVM test
# bed (scripts/kvm-test.sh, scripts/kvm-bed.sh; docs/test-bed.md); they are
# reported "skipped" (never "passed") only where neither can run.
# VMITAP_KVM=bed runs them in the bed even where /dev/kvm opens.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
# One download of Debian's kernel for the bed and the Linux tests of all
# three builds (each build tree would otherwise fetch its own).
export VMITAP_LINUX_DIR=${VMITAP_LINUX_DIR:-$PWD/build/linux-guest}

JOBS=$(nproc 2>/dev/null || echo 2)

echo "== build (gcc, -Werror) =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVMITAP_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"
echo "== tests =="
ctest --test-dir build --output-on-failure -j"$JOBS"

echo "== build (clang, ASan+UBSan, libFuzzer) =="
cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug \
  -DVMITAP_SANITIZE=ON -DVMITAP_FUZZ=ON -DVMITAP_WERROR=ON -DVMITAP_BUILD_BENCH=OFF >/dev/null
cmake --build build-asan -j"$JOBS"
echo "== tests under ASan+UBSan (and fuzzing) =="
ctest --test-dir build-asan --output-on-failure -j"$JOBS"

echo "== unit tests under valgrind =="
cmake -S . -B build-vg -DCMAKE_BUILD_TYPE=Debug -DVMITAP_VALGRIND=ON -DVMITAP_BUILD_BENCH=OFF >/dev/null
cmake --build build-vg -j"$JOBS"
ctest --test-dir build-vg --output-on-failure -j"$JOBS" -L valgrind
