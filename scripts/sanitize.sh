#!/usr/bin/env bash
# compute-sanitizer memcheck, racecheck and synccheck over a subset of shapes
# (every kernel path: one block, many blocks, int32/int64, pad on/off, EP ids).
# Fails if any tool reports an error.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
for tool in memcheck racecheck synccheck; do
  echo "--- $tool"
  compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 20 \
    python3 scripts/sanitize_cases.py || status=1
done
exit $status
