#!/usr/bin/env bash
# compute-sanitizer memcheck, racecheck and synccheck over a subset of shapes
# (every kernel path: one block, many blocks, int32/int64, pad on/off, EP ids).
# Fails if any tool reports an error.
set -uo pipefail
cd "$(dirname "$0")/.."
# Twice: with thread-block clusters where the GPU has them (sm_90+), and without, so that the
# other exchange instances run under the tools too.
status=0
for clusters in 1 0; do
  for tool in memcheck racecheck synccheck; do
    echo "--- $tool, SGL_KERNEL_EXT_CLUSTERS=$clusters"
    SGL_KERNEL_EXT_CLUSTERS=$clusters compute-sanitizer --tool "$tool" --error-exitcode 99 --print-limit 20 \
      python3 scripts/sanitize_cases.py || status=1
  done
done
exit $status
