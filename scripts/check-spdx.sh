#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Fails if a source file lacks an SPDX license tag in its first three
# lines. Source files: C, headers, assembly, linker scripts and version
# scripts, CMake files and templates, shell and Python scripts, the man
# page source. Lists the tracked files (git) or, outside a git checkout,
# every such file under the source tree.
# Usage: check-spdx.sh [SOURCE_DIR]
set -euo pipefail
cd "${1:-$(dirname "$0")/..}"

is_source() {
  case "$1" in
    tests/fuzz/corpus/*) return 1 ;;
    *.c | *.h | *.S | *.ld | *.map | *.cmake | */CMakeLists.txt | CMakeLists.txt | *.in | *.sh | *.py | *.scd) return 0 ;;
    .ci/*) return 0 ;;
  esac
  return 1
}

if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  list() { git ls-files; }
else
  list() { find . -path ./build -prune -o -path './build-*' -prune -o -type f -print | sed 's|^\./||'; }
fi

missing=0 checked=0
while IFS= read -r f; do
  is_source "$f" || continue
  [ -f "$f" ] || continue
  checked=$((checked + 1))
  if ! head -n 3 "$f" | grep -q 'SPDX-License-Identifier: MIT'; then
    echo "no SPDX-License-Identifier in the first 3 lines: $f"
    missing=$((missing + 1))
  fi
done < <(list)
[ "$checked" -gt 0 ] || { echo "no source files found" >&2; exit 1; }
if [ "$missing" -gt 0 ]; then
  echo "FAIL: $missing of $checked source files lack an SPDX tag" >&2
  exit 1
fi
echo "SPDX ok: $checked source files"
