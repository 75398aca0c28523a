#!/usr/bin/env bash
# On a GPU machine: run the requested stages, logging each to $OUT (default
# /tmp/sgl-kernel-ext-out). Exits non-zero if any stage fails.
#
#   bash scripts/gpu_check.sh [STAGES...]    # default: build test sanitize bench
#
# Stages: aot (pip-install the package ahead of time into $SITE, as a user's install,
# which SGLang's plugin loader needs for tests/e2e), build (load the kernel: AOT if
# installed, else JIT), probe, test (tests/gpu), sanitize, bench, e2e (tests/e2e; only
# e2e-identical.json and the log go to $OUT, the engine logs stay in /tmp/e2e).
# STAGE_TIMEOUT (seconds, default 600) bounds each stage.
#
# For a machine without network that has torch but not SGLang: set SGLANG_BUNDLE to
# the tarball that ../shared/offline-gpu/build_sglang_bundle.sh writes; it is unpacked
# into $SITE (default /tmp/site) once, and $SITE goes on PYTHONPATH.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/sgl-kernel-ext-out}
SITE=${SITE:-/tmp/site}
mkdir -p "$OUT"
if [ -n "${SGLANG_BUNDLE:-}" ]; then
  if [ ! -d "$SITE/sglang" ]; then
    mkdir -p "$SITE" && tar -xJf "$SGLANG_BUNDLE" -C "$SITE" || { echo "cannot unpack $SGLANG_BUNDLE"; exit 1; }
  fi
  export SGLANG_ENABLE_JIT_DEEPGEMM=${SGLANG_ENABLE_JIT_DEEPGEMM:-0}  # as the bundle's header says
fi
# The checkout first: the tests import the package from here (with the AOT library copied in).
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export OUT SITE
stages=${*:-build test sanitize bench}
status=0
run() {  # name, shell command
  echo "=== $1: $2"
  local t0=$SECONDS
  timeout "${STAGE_TIMEOUT:-600}" bash -c "$2" 2>&1 | tee "$OUT/$1.log"
  local rc=${PIPESTATUS[0]}
  echo "=== $1: rc=$rc in $((SECONDS - t0)) s"
  [ "$rc" = 0 ] || status=1
}
for stage in $stages; do
  case $stage in
    aot) run aot 'python3 -m pip install -q --no-build-isolation --no-deps --target "$SITE" . &&
                  cp "$SITE"/sgl_kernel_ext/_C*.so sgl_kernel_ext/' ;;
    build) run build 'python3 -c "import sgl_kernel_ext, torch; print(sgl_kernel_ext.load(), torch.cuda.get_device_name())"' ;;
    probe) run probe 'python3 scripts/probe_upstream.py' ;;
    test) run test 'python3 -m pytest tests/gpu -q -rs -x --durations=5' ;;
    sanitize) run sanitize 'bash scripts/sanitize.sh' ;;
    bench) run bench 'python3 -m sgl_kernel_ext bench --out "$OUT"' ;;
    e2e) run e2e 'SGL_KERNEL_EXT_E2E_OUT=/tmp/e2e python3 -m pytest tests/e2e -q -rs -x --durations=5; rc=$?
                  cp /tmp/e2e/e2e-identical.json "$OUT/" 2>/dev/null; exit $rc' ;;
    *) echo "unknown stage $stage"; status=1 ;;
  esac
done
exit $status
