# SPDX-License-Identifier: MIT
# shellcheck shell=bash disable=SC2034  # sets variables for the sourcing script
# Sourced by scripts/kvm-test.sh and scripts/run.sh: where a KVM program
# runs here. Sets KVM_WHERE and KVM_WHY:
#   native  /dev/kvm opens read-write, or VMITAP_KVM=native (then KVM_WHY
#           says why /dev/kvm cannot be used, if it cannot), or we are
#           already inside the bed (VMITAP_IN_BED)
#   bed     the KVM test bed (scripts/kvm-bed.sh): VMITAP_KVM=bed, or
#           /dev/kvm cannot be opened read-write (KVM_WHY says why)
#   invalid VMITAP_KVM is none of auto, bed, native (KVM_WHY says so)

# True when /dev/kvm opens read-write; else false with KVM_WHY set. The -c
# test comes first: `<>` on a missing path would create a regular file.
kvm_usable() {
  if [ ! -e /dev/kvm ]; then
    KVM_WHY="/dev/kvm: No such file or directory"
    return 1
  fi
  if [ ! -c /dev/kvm ]; then
    KVM_WHY="/dev/kvm is not a character device"
    return 1
  fi
  local err
  if ! err=$( { : <>/dev/kvm; } 2>&1 ); then
    KVM_WHY="/dev/kvm: ${err##*: }"   # bash says "...: /dev/kvm: Permission denied"
    return 1
  fi
  return 0
}

kvm_where() {
  KVM_WHY=""
  if [ -n "${VMITAP_IN_BED:-}" ]; then
    KVM_WHERE=native
    return
  fi
  case ${VMITAP_KVM:-auto} in
    native)
      KVM_WHERE=native
      kvm_usable || true
      ;;
    auto)
      if kvm_usable; then KVM_WHERE=native; else KVM_WHERE=bed; fi
      ;;
    bed)
      KVM_WHERE=bed
      KVM_WHY="VMITAP_KVM=bed"
      ;;
    *)
      KVM_WHERE=invalid
      KVM_WHY="VMITAP_KVM=$VMITAP_KVM: expected auto, bed or native"
      ;;
  esac
}
