#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# vmitap's command line without running a guest: help, usage errors, bad
# breakpoints, unreadable guests, the symbols command. Needs no KVM: every
# case here is refused (or answered) before anything boots, each with its
# exit status (2: usage, 1: runtime, 0: done).
. "$(dirname "$0")/lib.sh"

# ---- help, version, bare vmitap ----
run --help
expect_rc 0; expect_out '^usage: vmitap run'; expect_out 'exit status'; expect_out 'examples:'; expect_no_err
run run --help
expect_rc 0; expect_out '^usage: vmitap run'
run --version
expect_rc 0; expect_out '^vmitap [0-9]+\.[0-9]+'

run # bare: a short usage on stderr, not the whole help
expect_rc 2; expect_no_out; expect_err '^usage: vmitap run'; expect_err "vmitap --help"
[ "$(wc -l <"$ERR")" -le 5 ] || fail "bare vmitap printed $(wc -l <"$ERR") lines"
run frobnicate
expect_rc 2; expect_one_line_error; expect_err "unknown command 'frobnicate'"
run run --frobnicate
expect_rc 2; expect_one_line_error; expect_err "unknown option '--frobnicate'"
run run -b
expect_rc 2; expect_one_line_error; expect_err "needs a value"
run run --controller magic
expect_rc 2; expect_one_line_error; expect_err "unknown controller 'magic'"
run run stray
expect_rc 2; expect_one_line_error; expect_err "unexpected argument 'stray'"

# ---- counts: decimal only, in range ----
for bad in 101 -1 0x10 010x 1.5 '' ' 5'; do
  run run --pager "$bad"
  expect_rc 2; expect_one_line_error; expect_err "bad --pager"
done
for bad in -5 0 0x10 1e3 18446744073709551616 abc; do
  run run --iterations "$bad"
  expect_rc 2; expect_one_line_error; expect_err "bad --iterations"
done
for bad in -1 0x10 18446744073709551616 1.0; do
  run run --seed "$bad"
  expect_rc 2; expect_one_line_error; expect_err "bad --seed"
done
for bad in 0 0.0 0.0001 -1 inf INF nan infinity 1e3 0x10 1. .5 1000001 ' 1'; do
  run run --timeout "$bad"
  expect_rc 2; expect_one_line_error; expect_err "bad --timeout"
done
# 010 is ten (decimal), never eight: it passes the parser, and the run then
# stops at the breakpoint check (a known-bad one, so nothing boots).
run run -n 010 -s 007 -p 010 -t 010.5 -b schedule+1
expect_rc 2; expect_one_line_error; expect_err "inside the instruction"
run run -b prog_work_a@010
expect_rc 2; expect_one_line_error; expect_err "bad process"
# The bundled guest runs 3 processes: @3 is refused before the boot.
run run -b prog_work_a@3
expect_rc 2; expect_one_line_error; expect_err "bad process in breakpoint 'prog_work_a@3': expected @0..@2 or @\*"

# ---- breakpoint specs, checked against the guest's symbols and code ----
run run -b no_such_function_anywhere
expect_rc 2; expect_one_line_error; expect_err "unknown symbol 'no_such_function_anywhere'"
run run -b schedul # close names are suggested
expect_rc 2; expect_one_line_error; expect_err "unknown symbol 'schedul'; did you mean schedule"
run run -b 0x0000900000000000
expect_rc 2; expect_one_line_error; expect_err "bad address '0x0000900000000000'"
run run -b 0xzz
expect_rc 2; expect_one_line_error; expect_err "bad address"
run run -b 0x
expect_rc 2; expect_one_line_error; expect_err "bad address"
run run -b 0x11112222333344445
expect_rc 2; expect_one_line_error; expect_err "bad address"
sched_hex=$("$VMITAP" symbols schedule | awk '$4 == "schedule" { print $1 }')
sched=$(printf '%u' "$sched_hex")
run run -b "$sched" # the right address, but in decimal
expect_rc 2; expect_one_line_error; expect_err "bad address '$sched': expected a canonical hex address"
run run -b 0x1000 # canonical, but in no function of the guest
expect_rc 2; expect_one_line_error; expect_err "0x1000 is in no function of the guest"
run run -b schedule@1
expect_rc 2; expect_one_line_error; expect_err "kernel addresses are global"
run run -b prog_work_a@9
expect_rc 2; expect_one_line_error; expect_err "bad process"
run run -b prog_work_a@-1
expect_rc 2; expect_one_line_error; expect_err "bad process"
run run -b schedule+zz
expect_rc 2; expect_one_line_error; expect_err "bad offset"
run run -b schedule+-1
expect_rc 2; expect_one_line_error; expect_err "bad offset"
run run -b prog_work_a+0x7fffffffffff # far beyond the symbol (and not canonical)
expect_rc 2; expect_one_line_error; expect_err "offset 0x7fffffffffff is beyond prog_work_a \([0-9]+ bytes\)"
size=$("$VMITAP" symbols schedule | awk '$4 == "schedule" { print $2 }')
run run -b "schedule+$size" # one past the end
expect_rc 2; expect_one_line_error; expect_err "is beyond schedule \($size bytes\)"
run run -b schedule+0xffffffffffffffff
expect_rc 2; expect_one_line_error; expect_err "is beyond schedule"
# Instruction boundaries: schedule starts with a multi-byte instruction
# (Zydis decodes the function from its first byte).
run run -b schedule+1
expect_rc 2; expect_one_line_error
expect_err "'schedule\+1' is inside the instruction at schedule\+0 \([2-9] bytes\)"
run run -b "$(printf '0x%x' $((sched_hex + 1)))"
expect_rc 2; expect_one_line_error; expect_err "is inside the instruction at schedule\+0"

# ---- options that do not apply to the command or mode ----
for opt in "-b schedule" "-c int3" "-n 5" "-s 1" "-p 5" "-t 1" --hits --global --execute-only \
           --no-probe --baseline --console; do
  run symbols $opt
  expect_rc 2; expect_one_line_error; expect_err "does not apply to 'vmitap symbols'"
done
for opt in --no-probe --baseline --console; do
  run run $opt
  expect_rc 2; expect_one_line_error; expect_err "option '$opt' applies only with --linux"
done
for opt in "-n 5" "-s 1" "-p 5" --global --execute-only "-g /bin/true"; do
  run run --linux "$TMP" $opt
  expect_rc 2; expect_one_line_error; expect_err "does not apply with --linux"
done
run symbols --linux "$TMP" --guest /bin/true
expect_rc 2; expect_one_line_error; expect_err "--guest and --linux exclude each other"
run run --linux "$TMP" --baseline -b schedule
expect_rc 2; expect_one_line_error; expect_err "--baseline traces nothing"
run run --linux "$TMP" --baseline --no-probe
expect_rc 2; expect_one_line_error; expect_err "--baseline traces nothing"
run run --controller memory --execute-only
expect_rc 2; expect_one_line_error; expect_err "--execute-only applies to the int3 controller"

# ---- --linux: kernel function names checked in DIR/System.map before boot ----
# A stand-in for what scripts/fetch-linux.sh prepares: the files exist, and
# System.map lists a few text symbols.
LX=$TMP/linux
mkdir -p "$LX"
for f in vmlinux initramfs.cpio busybox workload-files; do : >"$LX/$f"; done
cat >"$LX/System.map" <<'MAP'
ffffffff81000000 T _stext
ffffffff81363fa0 T do_sys_openat2
ffffffff81364110 t __do_sys_openat2
ffffffff81364470 T do_sys_open
ffffffff81a00000 D some_data
MAP
run run --linux "$LX" -b do_sys_opnat2
expect_rc 2; expect_one_line_error
expect_err "unknown kernel function 'do_sys_opnat2' in .*/System.map; did you mean do_sys_openat2"
run run --linux "$LX" -b some_data # data, not a function
expect_rc 2; expect_one_line_error; expect_err "unknown kernel function 'some_data'"
run run --linux "$LX" -b do_sys_open+4
expect_rc 2; expect_one_line_error; expect_err "takes kernel function names, not 'do_sys_open\+4'"
run run --linux "$LX" -b 0xffffffff81364470
expect_rc 2; expect_one_line_error; expect_err "takes kernel function names"
args=(); for i in $(seq 17); do args+=(-b do_sys_open); done
run run --linux "$LX" "${args[@]}"
expect_rc 2; expect_one_line_error; expect_err "at most 16 kernel functions"
run run --linux /nonexistent -b do_sys_open
expect_rc 1; expect_one_line_error; expect_err "/nonexistent/vmlinux is missing"
run symbols --linux /nonexistent
expect_rc 1; expect_one_line_error; expect_err "cannot read /nonexistent/System.map"
run symbols --linux "$LX" do_sys
expect_rc 0; expect_no_err
expect_out '^0xffffffff81363fa0 +0 kernel do_sys_openat2$'
[ "$(wc -l <"$OUT")" -eq 3 ] || fail "expected the 3 do_sys text symbols"
run symbols --linux "$LX" --json
expect_rc 0; expect_json_lines
expect_out '^\{"type":"symbol","name":"do_sys_open","address":"0xffffffff81364470","size":null,"space":"kernel"\}$'

# ---- guests that cannot be used ----
run run --guest /nonexistent/guest.elf -b schedule
expect_rc 1; expect_one_line_error; expect_err "cannot read guest /nonexistent/guest.elf: No such file"
echo "not an elf" >"$TMP/text"
run run --guest "$TMP/text"
expect_rc 1; expect_one_line_error; expect_err "is not an ELF file"
run symbols --guest /nonexistent/guest.elf
expect_rc 1; expect_one_line_error

# ---- symbols: the bundled guest's functions, kernel and user ----
run symbols
expect_rc 0; expect_no_err
expect_out '^0xffffffff8[0-9a-f]+ +[0-9]+ kernel schedule$'
expect_out ' user +prog_work_a$'
run symbols prog_
expect_rc 0
if grep -v 'prog_' "$OUT" | grep -q .; then fail "filter let other symbols through"; fi
run symbols --json lib_
expect_rc 0; expect_json_lines
expect_out '^\{"type":"symbol","name":"lib_getpid","address":"0x4[0-9a-f]+","size":[0-9]+,"space":"user"\}$'
run symbols --json
expect_rc 0; expect_json_lines
run symbols a b
expect_rc 2; expect_one_line_error

# A symbol name that is not UTF-8 (the bundled guest's ELF with the bytes
# of one name changed) still gives valid JSON: each bad byte becomes U+FFFD.
python3 - "${VMITAP_TEST_GUEST:?set by CMake}" "$TMP/odd.elf" <<'PY' || fail "cannot patch the guest ELF"
import sys
data = open(sys.argv[1], "rb").read()
old, new = b"\0prog_work_c\0", b"\0prog_work\xff\xfe\0"
assert old in data
open(sys.argv[2], "wb").write(data.replace(old, new))
PY
run symbols --guest "$TMP/odd.elf" prog_work
expect_rc 0; grep -q $'prog_work\xff\xfe$' "$OUT" || fail "text output does not keep the name's bytes"
run symbols --guest "$TMP/odd.elf" --json prog_work
expect_rc 0; expect_json_lines
expect_out '"name":"prog_work'$'\xef\xbf\xbd\xef\xbf\xbd''"'

finish
