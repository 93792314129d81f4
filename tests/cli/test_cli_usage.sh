#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# vmitap's command line without running a guest: help, usage errors, bad
# breakpoints, unreadable guests, the symbols command. Needs no KVM.
. "$(dirname "$0")/lib.sh"

run --help
expect_rc 0; expect_out '^usage: vmitap run'; expect_out 'exit status'; expect_out 'examples:'; expect_no_err
run run --help
expect_rc 0; expect_out '^usage: vmitap run'
run --version
expect_rc 0; expect_out '^vmitap [0-9]+\.[0-9]+'

run
expect_rc 2; expect_err 'usage: vmitap run'
run frobnicate
expect_rc 2; expect_one_line_error; expect_err "unknown command 'frobnicate'"
run run --frobnicate
expect_rc 2; expect_one_line_error; expect_err "unknown option '--frobnicate'"
run run -b
expect_rc 2; expect_one_line_error; expect_err "needs a value"
run run --controller magic
expect_rc 2; expect_one_line_error; expect_err "unknown controller 'magic'"
run run --pager 101
expect_rc 2; expect_one_line_error; expect_err "bad --pager"
run run --iterations -5
expect_rc 2; expect_one_line_error; expect_err "bad --iterations"
run run --timeout 0
expect_rc 2; expect_one_line_error; expect_err "bad --timeout"
run run stray
expect_rc 2; expect_one_line_error; expect_err "unexpected argument 'stray'"

# Breakpoint specs are checked against the guest's symbols before any VM starts.
run run -b no_such_function_anywhere
expect_rc 2; expect_one_line_error; expect_err "unknown symbol 'no_such_function_anywhere'"
run run -b 0x0000900000000000
expect_rc 2; expect_one_line_error; expect_err "bad address '0x0000900000000000'"
run run -b 0xzz
expect_rc 2; expect_one_line_error; expect_err "bad address"
run run -b schedule@1
expect_rc 2; expect_one_line_error; expect_err "kernel addresses are global"
run run -b prog_work_a@9
expect_rc 2; expect_one_line_error; expect_err "bad process"
run run -b schedule+zz
expect_rc 2; expect_one_line_error; expect_err "bad offset"

# Guests that cannot be used.
run run --guest /nonexistent/guest.elf -b schedule
expect_rc 1; expect_one_line_error; expect_err "cannot read guest /nonexistent/guest.elf: No such file"
echo "not an elf" >"$TMP/text"
run run --guest "$TMP/text"
expect_rc 1; expect_one_line_error; expect_err "is not an ELF file"
run symbols --guest /nonexistent/guest.elf
expect_rc 1; expect_one_line_error

# symbols: the bundled guest's functions, kernel and user.
run symbols
expect_rc 0; expect_no_err
expect_out '^0xffffffff8[0-9a-f]+ +[0-9]+ kernel schedule$'
expect_out ' user +prog_work_a$'
run symbols prog_
expect_rc 0
if grep -v 'prog_' "$OUT" | grep -q .; then fail "filter let other symbols through"; fi
run symbols --json lib_
expect_rc 0; expect_json_lines; expect_out '"name":"lib_getpid","address":"0x4[0-9a-f]+","size":[0-9]+,"space":"user"'
run symbols a b
expect_rc 2; expect_one_line_error

finish
