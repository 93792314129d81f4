#!/usr/bin/env bash
# vmitap run on the bundled guest, as a user runs it. Skipped (77) when KVM
# cannot be used; the "cannot use KVM" error must then be one clear line.
. "$(dirname "$0")/lib.sh"

run run -n 30 -b schedule
if [ "$RC" -eq 1 ] && grep -q 'cannot use KVM' "$ERR"; then
  expect_one_line_error
  echo "skipped: $(cat "$ERR")"
  [ "$FAILS" -eq 0 ] && exit 77
  finish
fi

# Text: a table with the guest's counters, every row ok.
run run -n 40 --pager 50 -b schedule -b syscall_dispatch -b lib_getpid -b prog_work_a -b prog_work_b@1
expect_rc 0
expect_out '^BREAKPOINT +ADDRESS +PROCESS +HITS +GUEST +PG-OUT +PG-IN +MOVED'
expect_out '^schedule +0xffffffff8[0-9a-f]+ +kernel +[1-9][0-9]* +[1-9][0-9]* .* ok$'
expect_out '^prog_work_a +0x[0-9a-f]+ +all\(3\) +[1-9][0-9]* .* ok$'
expect_out '^prog_work_b@1 +0x[0-9a-f]+ +1 +[1-9][0-9]* .* ok$'
expect_out '^guest exited with code 0'
expect_out 'every breakpoint with a guest counter matches it'
[ "$(grep -c ' ok$' "$OUT")" -eq 5 ] || fail "not every row is ok"
if grep -q $'\r' "$OUT"; then fail "progress line written while stdout is not a terminal"; fi

# JSON lines: one object per breakpoint and a summary; hits on request.
run run --json --hits -n 20 -b syscall_dispatch -b lib_yield@2
expect_rc 0; expect_json_lines
expect_out '^\{"type":"hit",.*"breakpoint":"syscall_dispatch"'
expect_out '^\{"type":"hit",.*"breakpoint":"lib_yield@2".*"process":2'
expect_out '^\{"type":"breakpoint","breakpoint":"lib_yield@2",.*"match":true\}$'
expect_out '^\{"type":"summary","stop":"guest exited".*"guest_exit_code":0.*"mismatches":0\}$'
hits=$(grep -c '"type":"hit"' "$OUT")
sum=$(awk -F'"hits":' '/"type":"breakpoint"/ { split($2, a, ","); s += a[1] } END { print s + 0 }' "$OUT")
[ "$hits" -eq "$sum" ] || fail "$hits hit lines, but the breakpoints count $sum hits"

# Both controllers count exactly.
for c in int3 memory; do
  run run -n 20 --controller $c -b schedule -b lib_getpid
  expect_out "^controller $c "
  [ "$(grep -c ' ok$' "$OUT")" -eq 2 ] || fail "controller $c: rows not ok"
done

# A global breakpoint on per-process code sees one process only: the hits
# fall short of the guest's counter, and the exit status says so.
run run -n 20 --global -b prog_work_a
expect_rc 3; expect_out 'MISMATCH'; expect_out '^prog_work_a .* global .*MISMATCH$'

# Stopped early: counters are shown but not judged.
run run -n 100000 --timeout 0.5 -b schedule
expect_rc 0; expect_out 'counters not compared'

finish
