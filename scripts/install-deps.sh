#!/usr/bin/env bash
# Installs the Debian packages vmitap needs to build, test and run.
# Idempotent: does nothing when everything is present; runs `apt-get update`
# once, only when something is missing. Uses sudo when not root.
set -euo pipefail

PACKAGES=(
  build-essential gcc clang cmake make pkg-config
  libclang-rt-dev    # ASan/UBSan/libFuzzer runtimes: only "recommended" by clang
  libglib2.0-dev libcmocka-dev libelf-dev
  libzydis-dev       # x86-64 instruction decoding (lengths, boundaries)
  libjson-glib-dev   # the CLI's JSON output
  valgrind
  python3            # the CLI tests parse vmitap's JSON output
  python3-jsonschema # ... and validate it against docs/vmitap-jsonl.schema.json
)

# The KVM test bed (scripts/kvm-bed.sh), where end-to-end tests and the main
# job run when /dev/kvm cannot be opened (or VMITAP_KVM=bed): QEMU, and what
# scripts/fetch-linux.sh needs to unpack Debian's kernel and build the
# initramfs. (The kernel and busybox-static themselves are fetched with
# `apt-get download` into a cache, not installed.) On a host with usable KVM
# they are left out; kvm-bed.sh and fetch-linux.sh install them when a bed
# is asked for later.
. "$(dirname "$0")/kvm-where.sh"
kvm_where
if [ "$KVM_WHERE" = bed ]; then
  PACKAGES+=(qemu-system-x86 cpio xz-utils)
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
