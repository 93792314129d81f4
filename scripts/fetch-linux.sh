#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fetches Debian's stock x86-64 kernel and busybox-static with apt and builds
# the small initramfs that the Linux-guest tests and `vmitap run --linux` boot.
#
#   scripts/fetch-linux.sh [DIR]      (default: $VMITAP_LINUX_DIR, else
#                                      ~/.cache/vmitap/linux)
#
# DIR then holds (nothing of it is ever committed):
#   vmlinuz            the bzImage of linux-image-6.1.0-*-amd64
#   vmlinux            the same kernel decompressed (an ELF without symbols)
#   System.map         its symbols, read from the kernel's own kallsyms
#                      tables by scripts/linux-kallsyms.py (the package's
#                      System.map is a stub: the real one is in the 900 MB
#                      -dbg package); the live addresses under `nokaslr`
#   busybox            the static busybox binary (for its ELF entry point)
#   initramfs.cpio     cpio newc, uncompressed (inflating it in a guest whose
#                      kernel mode is emulated took 70 s): /init,
#                      /bin/busybox, /vmt/uname
#   kernel-version     the kernel package's version string
#   bed-modules/       the kernel's kvm, kvm_amd and virtio 9p modules (and
#                      what they depend on), for scripts/kvm-bed.sh
#
# Idempotent: a complete DIR is left alone (delete it to refetch). Installs
# what it needs (cpio) with apt-get, with sudo when not root.
# Exit status: 0 ready; 77 when apt cannot reach the Debian archive (no
# network), so a test that needs the kernel can report "skipped"; 1 on any
# other failure.
set -euo pipefail

DIR=${1:-${VMITAP_LINUX_DIR:-$HOME/.cache/vmitap/linux}}
# The workload's file count; the tests read it from DIR/workload-files.
NFILES=16
# Bumped whenever what this script makes changes: an older DIR is redone.
FORMAT=4

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

say() { echo "fetch-linux: $*" >&2; }

no_network() {
  say "**************************************************************"
  say "SKIP: apt cannot download from the Debian archive (no network?)"
  say "      $*"
  say "**************************************************************"
  exit 77
}

complete() {
  for f in vmlinuz vmlinux System.map busybox initramfs.cpio kernel-version workload-files; do
    [ -s "$DIR/$f" ] || return 1
  done
  [ -s "$DIR/bed-modules/kvm-amd.ko" ] || return 1
  [ "$(cat "$DIR/format" 2>/dev/null)" = "$FORMAT" ]
}

if complete; then
  exit 0
fi

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
# One fetch at a time per DIR (tests may start together).
exec 9>"$DIR/.lock"
flock 9
if complete; then
  exit 0
fi
WORK=$(mktemp -d "$DIR/.work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

updated=0
apt_update() {
  if [ $updated -eq 0 ]; then
    $SUDO apt-get update -qq >&2 || no_network "apt-get update failed"
    updated=1
  fi
}

# cpio builds the archive, xz unpacks the kernel, python3 reads its
# kallsyms; dpkg-deb comes with dpkg.
need=()
command -v cpio >/dev/null || need+=(cpio)
command -v xz >/dev/null || need+=(xz-utils)
command -v python3 >/dev/null || need+=(python3-minimal)
if [ ${#need[@]} -gt 0 ]; then
  apt_update
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
HERE=$(cd "$(dirname "$0")" && pwd)

# The metapackage linux-image-amd64 depends on the versioned image package
# (linux-image-6.1.0-NN-amd64 on bookworm): that one holds the kernel.
image_pkg() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*-amd64\)$/\1/p' | head -n1
}
PKG=$(image_pkg)
if [ -z "$PKG" ]; then
  apt_update
  PKG=$(image_pkg)
fi
[ -n "$PKG" ] || { say "cannot resolve linux-image-amd64's kernel package"; exit 1; }

download() {
  (cd "$WORK" && apt-get download -qq "$@" >&2)
}
if ! download "$PKG" busybox-static; then
  apt_update
  download "$PKG" busybox-static || no_network "apt-get download $PKG busybox-static failed"
fi

mkdir -p "$WORK/kernel" "$WORK/bb"
dpkg-deb -x "$WORK"/linux-image-*.deb "$WORK/kernel"
dpkg-deb -x "$WORK"/busybox-static_*.deb "$WORK/bb"
VMLINUZ=$(ls "$WORK"/kernel/boot/vmlinuz-* | head -n1)
SYSMAP=$(ls "$WORK"/kernel/boot/System.map-* | head -n1)
VERSION=${VMLINUZ##*/vmlinuz-}

# ---- the initramfs ----
ROOT="$WORK/root"
mkdir -p "$ROOT"/{bin,dev,proc,sys,tmp,vmt}
cp "$WORK/bb/bin/busybox" "$ROOT/bin/busybox"
# The probe: busybox under an applet's name in its own path, so that the
# shell execs it as a new process (a path with a slash is always execve'd,
# never run as a built-in applet) and the tracer can tell its exec apart.
ln "$ROOT/bin/busybox" "$ROOT/vmt/uname"
cat >"$ROOT/init" <<EOF
#!/bin/busybox sh
# vmitap Linux guest: a known workload, one probe process, then power-off.
/bin/busybox --install -s /bin
# No /dev/console in the archive (making the node needs root): take the
# console from devtmpfs instead.
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
echo "VMT-INIT: start"
# With vmt.wait on the kernel command line, wait for one line on the
# console before the workload: a tracer attaches meanwhile, then sends it.
if grep -q 'vmt[.]wait' /proc/cmdline; then
  echo "VMT-INIT: waiting"
  read -r go
fi
# Workload: create NFILES files, then read each back. Each file is opened
# exactly twice (once by the redirection that creates it, once by cat).
N=$NFILES
i=1
while [ \$i -le \$N ]; do echo "file \$i" > /vmt/f\$i; i=\$((i + 1)); done
i=1
while [ \$i -le \$N ]; do cat /vmt/f\$i >/dev/null; i=\$((i + 1)); done
echo "VMT-INIT: opened \$N files twice"
# With vmt.debug: which interrupts the boot and the workload took.
if grep -q 'vmt[.]debug' /proc/cmdline; then cat /proc/interrupts; fi
# The probe process for the user-space breakpoint.
/vmt/uname -s
echo "VMT-INIT: done"
# Power-off: the kernel (reboot=k) resets through the keyboard controller,
# which the VMM takes as the end of the guest.
reboot -f
EOF
chmod 755 "$ROOT/init"

(
  cd "$ROOT"
  find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet
) >"$WORK/initramfs.cpio"

# ---- the uncompressed kernel and its symbols ----
# Debian compresses the kernel with xz: its stream starts at the first xz
# magic in the bzImage; what follows the stream is ignored.
off=$(LC_ALL=C grep -m1 -obUaP '\xfd7zXZ\x00' "$VMLINUZ" | cut -d: -f1 || true)
[ -n "$off" ] || { say "no xz stream in $VMLINUZ"; exit 1; }
xz -dc --single-stream < <(tail -c +$((off + 1)) "$VMLINUZ") >"$WORK/vmlinux.out"
python3 "$HERE/linux-kallsyms.py" "$WORK/vmlinux.out" >"$WORK/System.map.out"
grep -q ' T do_sys_open$' "$WORK/System.map.out" || { say "kallsyms: do_sys_open missing"; exit 1; }
if grep -q '^ffffffffffffffff' "$SYSMAP"; then :; else
  cp "$SYSMAP" "$WORK/System.map.out" # a real System.map after all
fi

# ---- the test bed's modules (scripts/kvm-bed.sh) ----
rm -rf "$DIR/bed-modules" && mkdir -p "$WORK/bed-modules"
for m in irqbypass ccp kvm kvm-amd virtio_ring virtio virtio_pci_legacy_dev \
         virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p; do
  ko=$(find "$WORK/kernel/lib/modules" -name "$m.ko" | head -n1)
  [ -n "$ko" ] || { say "module $m.ko missing from $PKG"; exit 1; }
  cp "$ko" "$WORK/bed-modules/"
done
mv "$WORK/bed-modules" "$DIR/bed-modules"

cp "$VMLINUZ" "$WORK/vmlinuz.out"
mv "$WORK/vmlinuz.out" "$DIR/vmlinuz"
mv "$WORK/vmlinux.out" "$DIR/vmlinux"
mv "$WORK/System.map.out" "$DIR/System.map"
cp "$WORK/bb/bin/busybox" "$DIR/busybox"
mv "$WORK/initramfs.cpio" "$DIR/initramfs.cpio"
rm -f "$DIR/initramfs.cpio.gz" # format 2
echo "$NFILES" >"$DIR/workload-files"
echo "$FORMAT" >"$DIR/format"
echo "$PKG $VERSION" >"$DIR/kernel-version"
say "ready in $DIR ($PKG, busybox-static)"
