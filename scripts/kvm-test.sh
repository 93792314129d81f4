#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs one end-to-end test on KVM: natively where /dev/kvm opens, else in
# the KVM test bed (scripts/kvm-bed.sh). Every e2e CTest test is run
# through this script (tests/CMakeLists.txt, vmt_add_e2e_test), so that the
# suite runs every end-to-end test on every machine, with or without KVM.
#
#   scripts/kvm-test.sh [-t SECONDS] [-l DIR] -- COMMAND [ARG...]
#
#   -t  in the bed, stop it after SECONDS (kvm-bed.sh -t; CTest's TIMEOUT
#       for the test is set a little higher, so that the bed, not CTest,
#       stops a hung test and says so)
#   -l  the Linux kernel files for the bed (and the Linux tests inside it),
#       unless $VMITAP_LINUX_DIR is set: scripts/fetch-linux.sh's DIR
#
# VMITAP_KVM chooses:
#   (unset), auto  native when /dev/kvm opens read-write, else the bed
#   bed            the bed even where /dev/kvm opens (to compare the two)
#   native         native; fails (exit 1) when /dev/kvm cannot be opened
# Inside the bed (VMITAP_IN_BED is set) the command always runs directly.
# Exit status: the command's; 77 (CTest: skipped) when the bed cannot run
# here either, with the reason printed by kvm-bed.sh; 124 when the bed's
# time ran out; 125 when the bed itself failed.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
BED_TIMEOUT=""
LINUX_DIR=""

say() { echo "kvm-test: $*" >&2; }
usage() { sed -n '7,16p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while getopts "t:l:h" o; do
  case $o in
    t) BED_TIMEOUT=$OPTARG ;;
    l) LINUX_DIR=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || usage

. "$HERE/kvm-where.sh"
kvm_where
case $KVM_WHERE in
  native)
    if [ -n "$KVM_WHY" ]; then say "VMITAP_KVM=native, but $KVM_WHY"; exit 1; fi
    exec "$@"
    ;;
  invalid)
    say "$KVM_WHY"
    exit 2
    ;;
esac

say "$KVM_WHY; running in the KVM test bed (scripts/kvm-bed.sh)"
# One kernel download for the bed and the Linux tests it runs (they read
# the same variable inside the bed, which has no network to fetch with).
if [ -z "${VMITAP_LINUX_DIR:-}" ] && [ -n "$LINUX_DIR" ]; then
  export VMITAP_LINUX_DIR=$LINUX_DIR
fi
bed=("$HERE/kvm-bed.sh")
[ -z "$BED_TIMEOUT" ] || bed+=(-t "$BED_TIMEOUT")
exec "${bed[@]}" -- "$@"
