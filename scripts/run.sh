#!/usr/bin/env bash
# Sets up, builds (release) and runs the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DVMITAP_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc 2>/dev/null || echo 2)"
# The main job: boot the bundled test guest on the KVM micro-VM and trace
# its kernel (scheduler, system calls, pager) from the outside while its
# three processes run and its pager evicts and relocates their code; the
# table compares every breakpoint's hits with the guest's own call counter.
# Extra arguments go to `vmitap run` (e.g. -b lib_getpid -b prog_work_a@1).
cmd=(build-release/tools/vmitap/vmitap run --controller int3 --iterations 300 --pager 40
     -b schedule -b syscall_dispatch -b pager_page_in -b pager_page_out -b selfcheck_run "$@")
echo "+ ${cmd[*]}" >&2
exec "${cmd[@]}"
