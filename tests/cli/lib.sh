# Helpers for the CLI tests: run the binary, capture out/err/status, check.
# Each check prints one line; the script's status is the number of failures.
VMITAP=${1:?usage: $0 path/to/vmitap}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FAILS=0
SHOWN=

# run ARGS...: sets $OUT, $ERR (files) and $RC. A run that hangs is killed
# after 240 s (status 124), so the failing command and its output are shown.
run() {
  timeout 240 "$VMITAP" "$@" >"$TMP/out" 2>"$TMP/err" </dev/null
  RC=$?
  OUT=$TMP/out
  ERR=$TMP/err
  LAST="vmitap $*"
}

# Prints the failed check, and the command's output once per command.
fail() {
  echo "FAIL: $LAST: $*"
  if [ "$SHOWN" != "$LAST" ]; then
    echo "  exit $RC; stdout:"; sed 's/^/    /' "$OUT" | head -30
    echo "  stderr:"; sed 's/^/    /' "$ERR" | head -10
    SHOWN=$LAST
  fi
  FAILS=$((FAILS + 1))
}

expect_rc() { [ "$RC" -eq "$1" ] || fail "exit status $RC, expected $1"; }
expect_out() { grep -qE -- "$1" "$OUT" || fail "stdout lacks /$1/"; }
expect_err() { grep -qE -- "$1" "$ERR" || fail "stderr lacks /$1/"; }
expect_no_out() { [ ! -s "$OUT" ] || fail "stdout not empty"; }
expect_no_err() { [ ! -s "$ERR" ] || fail "stderr not empty"; }
# An error is exactly one line on stderr, starting with "vmitap: ".
expect_one_line_error() {
  [ "$(wc -l <"$ERR")" -eq 1 ] || fail "stderr is not exactly one line"
  grep -q '^vmitap: ' "$ERR" || fail "stderr does not start with 'vmitap: '"
  expect_no_out
}
# Every stdout line is a JSON object valid against the documented schema
# (docs/vmitap-jsonl.schema.json; python3-jsonschema, from install-deps.sh).
SCHEMA=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../docs" && pwd)/vmitap-jsonl.schema.json
expect_json_lines() {
  [ -s "$OUT" ] || fail "no output"
  if grep -qv '^{.*}$' "$OUT"; then fail "a line is not a JSON object"; fi
  python3 "$(dirname "${BASH_SOURCE[0]}")/validate_jsonl.py" "$SCHEMA" "$OUT" >"$TMP/schema" 2>&1 ||
    fail "not valid JSON Lines of the schema: $(head -3 "$TMP/schema")"
}

finish() {
  if [ "$FAILS" -eq 0 ]; then echo "all checks passed"; exit 0; fi
  echo "$FAILS check(s) failed"; exit 1
}
