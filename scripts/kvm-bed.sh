#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The KVM test bed: runs one command on standard KVM where this machine has
# none. QEMU emulates an AMD-V CPU (TCG, `-cpu EPYC,+svm,+npt`, one vCPU);
# inside it Debian's stock kernel loads kvm_amd, so the command finds a real
# /dev/kvm. The host's root file system is shared read-write into the bed
# (virtio 9p) and the command runs chrooted into it: build outputs, their
# shared libraries, scripts and the working directory are all at the same
# paths as here.
#
#   scripts/kvm-bed.sh [-t SECONDS] [-m MiB] [-v] -- COMMAND [ARG...]
#
#   -t  kill the bed after SECONDS (default $VMITAP_BED_TIMEOUT, else 1800);
#       then exit 124 with a line saying so
#   -m  the bed's memory (default $VMITAP_BED_MEM, else 2048)
#   -v  show the bed kernel's boot messages
#
# The command's output (stdout and stderr together, through the bed's serial
# console) streams to stdout; the exit status is the command's. 125: the bed
# itself failed (the reason is printed). 77: no bed can run here (no Debian
# archive to fetch the kernel and QEMU from), so a test can report skipped.
#
# Environment passed in: the working directory, PATH, HOME and every
# variable named VMT_*, VMITAP_*, ASAN_*, UBSAN_*, LSAN_*, CI. Inside,
# VMITAP_IN_BED=1 is set and /tmp is the bed's own tmpfs.
#
# Kernel and modules: scripts/fetch-linux.sh (the same download as the
# Linux guest; DIR = $VMITAP_LINUX_DIR, else ~/.cache/vmitap/linux).
# Installs qemu-system-x86 when missing (apt-get, sudo when not root).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
TIMEOUT=${VMITAP_BED_TIMEOUT:-1800}
MEM=${VMITAP_BED_MEM:-2048}
VERBOSE=0

say() { echo "kvm-bed: $*" >&2; }
usage() { sed -n '9,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

while getopts "t:m:vh" o; do
  case $o in
    t) TIMEOUT=$OPTARG ;;
    m) MEM=$OPTARG ;;
    v) VERBOSE=1 ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ "${1:-}" = "--" ] && shift
[ $# -gt 0 ] || usage

if [ -n "${VMITAP_IN_BED:-}" ]; then
  say "already inside the bed; running the command directly"
  exec "$@"
fi

# ---- what the bed needs ----
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
if ! command -v qemu-system-x86_64 >/dev/null; then
  say "installing qemu-system-x86"
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null; } ||
    { say "SKIP: cannot install qemu-system-x86 with apt-get"; exit 77; }
fi
LINUX_DIR=${VMITAP_LINUX_DIR:-$HOME/.cache/vmitap/linux}
rc=0
"$HERE/fetch-linux.sh" "$LINUX_DIR" || rc=$?
if [ $rc -eq 77 ]; then exit 77; fi
[ $rc -eq 0 ] || { say "fetch-linux.sh failed ($rc)"; exit 125; }
LINUX_DIR=$(cd "$LINUX_DIR" && pwd)

# ---- the bed's initramfs: busybox, the modules, /init ----
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vmitap-bed.XXXXXX")
QPID=""
cleanup() {
  if [ -n "$QPID" ]; then kill "$QPID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ROOT=$WORK/root
mkdir -p "$ROOT"/{bin,dev,proc,sys,host,modules}
cp "$LINUX_DIR/busybox" "$ROOT/bin/busybox"
cp "$LINUX_DIR"/bed-modules/*.ko "$ROOT/modules/"

# The command, as a bash script run inside the chroot.
{
  echo "export VMITAP_IN_BED=1"
  for v in PATH HOME CI $(compgen -e | grep -E '^(VMT_|VMITAP_|ASAN_|UBSAN_|LSAN_)' || true); do
    [ "$v" = VMITAP_IN_BED ] && continue
    [ -n "${!v+x}" ] && printf 'export %s=%q\n' "$v" "${!v}"
  done
  printf 'cd %q || exit 125\n' "$PWD"
  printf '%q ' "$@"
  echo
} >"$ROOT/cmd"

cat >"$ROOT/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
stty -onlcr 2>/dev/null
fail() { echo "VMT-BED-FAIL: $*"; poweroff -f; }
# Dependencies first (there is no modules.dep: depmod is not run).
for m in irqbypass ccp kvm kvm-amd virtio_ring virtio virtio_pci_legacy_dev \
         virtio_pci_modern_dev virtio_pci netfs fscache 9pnet 9pnet_virtio 9p; do
  insmod /modules/$m.ko 2>/tmp.err || { cat /tmp.err; fail "insmod $m"; }
done
[ -c /dev/kvm ] || fail "no /dev/kvm after loading kvm_amd"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose host /host ||
  fail "cannot mount the host's file system"
mount -t proc proc /host/proc
mount -t sysfs sysfs /host/sys
mount -t devtmpfs devtmpfs /host/dev
# Pseudo-terminals, for commands that need one (`script` in the CLI tests).
mkdir -p /host/dev/pts && mount -t devpts devpts /host/dev/pts
mount -t tmpfs tmpfs /host/dev/shm 2>/dev/null
mount -t tmpfs tmpfs /host/tmp
mount -t tmpfs tmpfs /host/run 2>/dev/null
cp /cmd /host/tmp/vmt-bed-cmd
echo "VMT-BED-READY"
chroot /host /bin/bash /tmp/vmt-bed-cmd
echo "VMT-BED-STATUS: $?"
sync
poweroff -f
EOF
chmod 755 "$ROOT/init"
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$WORK/initramfs.cpio"

# ---- boot ----
CMDLINE="console=ttyS0 panic=-1 mitigations=off"
[ "$VERBOSE" -eq 1 ] || CMDLINE="$CMDLINE quiet loglevel=1"
# multidevs=remap: the share spans several host file systems (/, /proc,
# /sys, /dev, ...) whose inode numbers overlap; without it QEMU's 9p gives
# their files the same ids, and the bed's /proc showed /sys.
QEMU=(qemu-system-x86_64 -machine q35 -accel tcg -cpu EPYC,+svm,+npt -smp 1 -m "$MEM"
      -kernel "$LINUX_DIR/vmlinuz" -initrd "$WORK/initramfs.cpio" -append "$CMDLINE"
      -display none -monitor none -serial stdio -no-reboot -nodefaults
      -fsdev local,id=hostfs,path=/,security_model=passthrough,multidevs=remap
      -device virtio-9p-pci,fsdev=hostfs,mount_tag=host)

start=$(date +%s)
STATUS=$WORK/status
mkfifo "$WORK/out"
timeout -k 10 "$TIMEOUT" "${QEMU[@]}" </dev/null >"$WORK/out" 2>"$WORK/qemu.err" &
QPID=$!
# Stream the console; keep the markers for us.
awk -v status="$STATUS" -v verbose="$VERBOSE" '
  { sub(/\r$/, "") }
  /^VMT-BED-READY$/ { ready = 1; next }
  /^VMT-BED-STATUS: [0-9]+$/ { print $2 > status; close(status); ready = 0; next }
  /^VMT-BED-FAIL: / { print "kvm-bed: bed failed: " substr($0, 15) > "/dev/stderr"; print "fail" > status; close(status); next }
  ready || verbose { print; fflush() }
' <"$WORK/out"
qrc=0
wait "$QPID" || qrc=$?
QPID=""
took=$(( $(date +%s) - start ))

if [ $qrc -eq 124 ] || [ $qrc -eq 137 ]; then
  say "timed out after ${TIMEOUT}s (the command did not finish): $*"
  exit 124
fi
if [ ! -s "$STATUS" ]; then
  say "the bed stopped without the command's status (qemu exit $qrc, ${took}s)"
  cat "$WORK/qemu.err" >&2
  exit 125
fi
st=$(cat "$STATUS")
[ "$st" = fail ] && exit 125
[ -n "${VMITAP_BED_QUIET:-}" ] || say "exit $st after ${took}s"
exit "$st"
