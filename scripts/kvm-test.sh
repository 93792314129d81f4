#!/usr/bin/env bash
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

if [ -n "${VMITAP_IN_BED:-}" ]; then
  exec "$@"
fi

# Sets WHY and fails when /dev/kvm cannot be opened read-write. The -c
# test comes first: `<>` on a missing path would create a regular file.
kvm_usable() {
  if [ ! -e /dev/kvm ]; then
    WHY="/dev/kvm: No such file or directory"
    return 1
  fi
  if [ ! -c /dev/kvm ]; then
    WHY="/dev/kvm is not a character device"
    return 1
  fi
  local err
  if ! err=$( { : <>/dev/kvm; } 2>&1 ); then
    WHY="/dev/kvm: ${err##*: }"   # bash's "…: /dev/kvm: Permission denied"
    return 1
  fi
  return 0
}

WHY=""
mode=${VMITAP_KVM:-auto}
case $mode in
  native)
    kvm_usable || { say "VMITAP_KVM=native, but $WHY"; exit 1; }
    exec "$@"
    ;;
  auto)
    if kvm_usable; then exec "$@"; fi
    ;;
  bed)
    WHY="VMITAP_KVM=bed"
    ;;
  *)
    say "VMITAP_KVM=$mode: expected auto, bed or native"
    exit 2
    ;;
esac

say "$WHY; running in the KVM test bed (scripts/kvm-bed.sh)"
# One kernel download for the bed and the Linux tests it runs (they read
# the same variable inside the bed, which has no network to fetch with).
if [ -z "${VMITAP_LINUX_DIR:-}" ] && [ -n "$LINUX_DIR" ]; then
  export VMITAP_LINUX_DIR=$LINUX_DIR
fi
bed=("$HERE/kvm-bed.sh")
[ -z "$BED_TIMEOUT" ] || bed+=(-t "$BED_TIMEOUT")
exec "${bed[@]}" -- "$@"
