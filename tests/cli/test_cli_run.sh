#!/usr/bin/env bash
# vmitap run on the bundled guest, as a user runs it. Skipped (77) when KVM
# cannot be used; the "cannot use KVM" error must then be one clear line.
. "$(dirname "$0")/lib.sh"

run run -n 1 --controller int3
if [ "$RC" -eq 1 ] && grep -q 'cannot use KVM' "$ERR"; then
  expect_one_line_error
  echo "skipped: $(cat "$ERR")"
  [ "$FAILS" -eq 0 ] && exit 77
  finish
fi

# Text: a table with the guest's counters, every row ok.
run run -n 40 --pager 50 --controller int3 -b schedule -b syscall_dispatch -b pager_page_in
expect_rc 0
expect_out '^BREAKPOINT +ADDRESS +PROCESS +HITS +GUEST +PG-OUT +PG-IN +MOVED'
expect_out '^schedule +0xffffffff8[0-9a-f]+ +kernel +[1-9][0-9]* +[1-9][0-9]* .* ok$'
expect_out '^guest exited with code 0'
expect_out '^controller int3 '
expect_out 'every breakpoint with a guest counter matches it'
[ "$(grep -c ' ok$' "$OUT")" -eq 3 ] || fail "not every row is ok"
if grep -q $'\r' "$OUT"; then fail "progress line written while stdout is not a terminal"; fi

# JSON lines: one object per breakpoint and a summary; hits on request;
# every line valid against docs/vmitap-jsonl.schema.json (expect_json_lines).
run run --json --hits -n 20 --controller int3 -b syscall_dispatch -b schedule+2
expect_rc 0; expect_json_lines
expect_out '^\{"type":"hit",.*"breakpoint":"syscall_dispatch".*"cpl":0\}$'
expect_out '^\{"type":"breakpoint","breakpoint":"syscall_dispatch",.*"match":true\}$'
expect_out '^\{"type":"breakpoint","breakpoint":"schedule\+2",.*"scope":"kernel","process":null,.*"guest_calls":null,.*"match":null\}$'
expect_out '^\{"type":"summary","stop":"guest exited".*"guest_exit_code":0.*"mismatches":0\}$'
hits=$(grep -c '"type":"hit"' "$OUT")
sum=$(awk -F'"hits":' '/"type":"breakpoint"/ { split($2, a, ","); s += a[1] } END { print s + 0 }' "$OUT")
[ "$hits" -eq "$sum" ] || fail "$hits hit lines, but the breakpoints count $sum hits"

# Stopped early: counters are shown but not judged.
run run -n 100000 --timeout 0.5 --controller int3 -b schedule
expect_rc 0; expect_out 'counters not compared'; expect_out '^stopped \(timeout\)'

# Interrupted: the summary still comes, and the status says so.
"$VMITAP" run -n 1000000 --controller int3 -b schedule >"$TMP/out" 2>"$TMP/err" </dev/null &
pid=$!
sleep 2
kill -INT "$pid"
wait "$pid"
RC=$?; OUT=$TMP/out; ERR=$TMP/err; LAST="vmitap run (SIGINT)"
expect_rc 130; expect_out '^stopped \(interrupted\)'; expect_out '^schedule '

# On a terminal, a live progress line is redrawn in place on stderr
# (util-linux script gives the run a pseudo-terminal); stdout, here a file,
# gets none of it, with --json too.
if command -v script >/dev/null; then
  script -qec "$VMITAP run -n 300 --controller int3 -b schedule >$TMP/stdout" /dev/null \
    >"$TMP/out" 2>&1 </dev/null
  RC=$?; OUT=$TMP/out; ERR=$TMP/out; LAST="vmitap run (terminal)"
  expect_rc 0
  grep -q $'\r.*s  hits [0-9]* *events [0-9]*' "$OUT" || fail "no progress line on the terminal"
  OUT=$TMP/stdout
  expect_out 'every breakpoint with a guest counter matches it'
  if grep -q $'\r' "$OUT"; then fail "progress line written to stdout"; fi
  script -qec "$VMITAP run --json -n 300 --controller int3 -b schedule >$TMP/stdout" /dev/null \
    >"$TMP/out" 2>&1 </dev/null
  RC=$?; OUT=$TMP/out; LAST="vmitap run --json (terminal)"
  expect_rc 0
  grep -q $'\r.*s  hits [0-9]*' "$OUT" || fail "no progress line on the terminal"
  OUT=$TMP/stdout
  expect_json_lines
fi

# User code: global (shared page), every process, one process, with paging.
# Counts are exact; the int3 bytes in user pages are visible to the guest's
# self-check on KVM (no execute-only), so the guest reports a failure: 4.
run run -n 40 --pager 50 --controller int3 -b schedule -b lib_getpid --global -b prog_work_a@* \
  -b prog_work_b@1
expect_rc 4
expect_out '^lib_getpid +0x[0-9a-f]+ +global +[1-9][0-9]* .* ok$'
expect_out '^prog_work_a@\* +0x[0-9a-f]+ +all\(3\) +[1-9][0-9]* .* ok$'
expect_out '^prog_work_b@1 +0x[0-9a-f]+ +1 +[1-9][0-9]* .* ok$'
expect_out 'every breakpoint with a guest counter matches it'
expect_out '^the guest reported a failure: exit code 1 \(its self-check saw changed code\)'
[ "$(grep -c ' ok$' "$OUT")" -eq 4 ] || fail "not every row is ok"

run run --json --hits -n 20 --controller int3 -b lib_yield@2 -b prog_work_a
expect_rc 4; expect_json_lines
expect_out '^\{"type":"hit",.*"breakpoint":"lib_yield@2".*"process":2,"cpl":3\}$'
expect_out '^\{"type":"breakpoint","breakpoint":"lib_yield@2",.*"scope":"process","process":2,.*"match":true\}$'
expect_out '^\{"type":"breakpoint","breakpoint":"prog_work_a",.*"scope":"each","process":null,"breakpoints":3,.*"match":true\}$'

# A global breakpoint on per-process code sees one process only: the hits
# fall short of the guest's counter, and the exit status says so.
run run -n 20 --global --controller int3 -b prog_work_a
expect_rc 3; expect_out 'MISMATCH'; expect_out '^prog_work_a .* global .*MISMATCH$'

# The default controller on KVM (auto: int3 on emulated execute-only
# pages) counts exactly on shared-library and per-process code through
# page-outs and relocations, and the guest's self-check sees nothing: exit 0.
# (Regression: execute-only frames left without a step filled the driver's
# list, so prog_work_b@1 lost most hits after ~100 rounds; and selfcheck_run,
# on the page of the hidden sched_start breakpoint, read that page's int3.)
run run -n 300 --pager 40 -b lib_getpid -b prog_work_a -b prog_work_b@1
expect_rc 0; expect_out "^controller int3 \(guest reads see the original code\)"
[ "$(grep -c ' ok$' "$OUT")" -eq 3 ] || fail "auto controller: rows not ok"
expect_out 'self-check mismatches 0'

# The memory controller (single-steps user code at CPL 3) counts exactly too,
# here on per-process code pages, and the guest's self-check sees nothing.
run run -n 20 --pager 50 --controller memory -b prog_work_a -b prog_work_c@2
expect_rc 0; expect_out "^controller memory \(guest reads see the original code\)"
[ "$(grep -c ' ok$' "$OUT")" -eq 2 ] || fail "memory controller: rows not ok"
expect_out 'self-check mismatches 0'

# --linux --json: the Linux summary is valid against the schema too (the
# untraced baseline: a boot and the workload, about 20 s in the bed). The
# kernel is the one scripts/fetch-linux.sh prepared, which the bed fetches.
LXDIR=${VMITAP_LINUX_DIR:-$HOME/.cache/vmitap/linux}
if [ -r "$LXDIR/System.map" ] && [ -r "$LXDIR/vmlinux" ]; then
  run run --linux "$LXDIR" --baseline --json -t 200
  expect_rc 0; expect_json_lines
  expect_out '^\{"type":"summary","state":"powered off",.*"workload_done":true,.*"kernel_hits":\{\}\}$'
else
  echo "note: no Linux kernel in $LXDIR (scripts/fetch-linux.sh): --linux --json not checked"
fi

finish
