#!/usr/bin/env bash
# Sets up, builds (release) and runs the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release -DVMITAP_BUILD_TESTS=OFF >/dev/null
cmake --build build-release -j"$(nproc 2>/dev/null || echo 2)"
if [ -x build-release/examples/translate ]; then
  exec build-release/examples/translate
fi
echo "run.sh: nothing to run yet" >&2
