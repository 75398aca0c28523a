#!/usr/bin/env bash
# On a GPU machine: build the kernel, then run the requested stages, logging
# each to $OUT (default /tmp/sgl-kernel-ext-out). Stages: build probe test
# sanitize bench (default: build test sanitize bench). Exits non-zero if any fails.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/sgl-kernel-ext-out}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
stages=${*:-build test sanitize bench}
status=0
run() {  # name, command...
  local name=$1; shift
  echo "=== $name: $*"
  local t0=$SECONDS
  "$@" 2>&1 | tee "$OUT/$name.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: rc=$rc in $((SECONDS - t0)) s"
  [ "$rc" = 0 ] || status=1
}
for stage in $stages; do
  case $stage in
    build) run build python3 -c "import sgl_kernel_ext, torch; print(sgl_kernel_ext.load(), torch.cuda.get_device_name())" ;;
    probe) run probe python3 scripts/probe_upstream.py ;;
    test) run test python3 -m pytest tests/gpu -q -rs -x --durations=5 ;;
    sanitize) run sanitize bash scripts/sanitize.sh ;;
    bench) run bench python3 -m sgl_kernel_ext bench --out "$OUT" ;;
    *) echo "unknown stage $stage"; status=1 ;;
  esac
done
exit $status
