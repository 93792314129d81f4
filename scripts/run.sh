#!/usr/bin/env bash
# Sets up, builds (release) and runs the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DVMITAP_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc 2>/dev/null || echo 2)"
# The main job: boot the bundled test guest on the KVM micro-VM and trace,
# from the outside, its kernel (scheduler, system calls) and its user code:
# a shared library function (lib_getpid, one frame in every process), a
# function of the private program in every process (prog_work_a) and in
# process 1 only (prog_work_b@1), while the guest's pager evicts user code
# pages and pages them back, often into another frame (PG-OUT, PG-IN,
# MOVED). The default controller (auto) uses int3 on execute-only pages the
# driver emulates, so the guest's self-check of its own code sees nothing;
# the table compares every breakpoint's hits with the guest's own counter.
# Extra arguments go to `vmitap run` (e.g. -b prog_work_c@2 --hits).
cmd=(build-release/tools/vmitap/vmitap run --iterations 200 --pager 40
     -b schedule -b syscall_dispatch -b lib_getpid -b prog_work_a -b prog_work_b@1 "$@")
echo "+ ${cmd[*]}" >&2
# Without a usable /dev/kvm (or with VMITAP_KVM=bed) the same command runs in
# the KVM test bed: QEMU emulating an AMD-V CPU, Debian's kernel with kvm_amd,
# this machine's files at the same paths (docs/test-bed.md). The table and
# the exit status are vmitap's; the bed's console merges stderr into stdout.
. scripts/kvm-where.sh
kvm_where
case $KVM_WHERE in
  native) exec "${cmd[@]}" ;;   # VMITAP_KVM=native: vmitap says what is wrong
  invalid) echo "run.sh: $KVM_WHY" >&2; exit 2 ;;
esac
echo "run.sh: $KVM_WHY; running vmitap in the KVM test bed (scripts/kvm-bed.sh)" >&2
# In the bed, vmitap's stderr is the bed's serial console, a terminal, so it
# would draw its live progress line; here that arrives only line by line
# (and as escape codes where stdout is a file): a pipe inside turns it off
# (the console merges stderr into stdout anyway).
export VMITAP_BED_QUIET=1
exec scripts/kvm-bed.sh -- bash -o pipefail -c '"$@" 2>&1 | cat' vmitap "${cmd[@]}"
