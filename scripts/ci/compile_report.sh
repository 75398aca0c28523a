#!/usr/bin/env bash
# Compile-only resource report for the MoE align kernel (no GPU needed).
#
#   bash scripts/ci/compile_report.sh [resource_report.py options]
#
# 1. Makes sure the toolchains are there: the machine's nvcc (CUDA), Debian's
#    hipcc + libamdhip64-dev + rocm-device-libs (ROCm 5.2: gfx908/gfx90a/gfx940),
#    and Debian's clang-19 + lld-19 (gfx942). apt-get runs only for what is missing.
# 2. Compiles tests/compile/moe_align_instances.cu for sm_90, sm_80 and the AMD
#    targets, keeps the raw reports in build/resource-usage/raw/, and writes
#    build/resource-usage.json and build/resource-usage.md (the table is printed).
#
# Exits non-zero on any compile error, spill or scratch use. gfx942 is skipped
# (not failed) when the clang-19 + Debian ROCm toolchain itself cannot be set up.
# SKE_NO_APT=1 skips step 1's installs (report on whatever is installed).
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { echo "[compile_report] $*"; }

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo "$@"
  else
    echo "not root and no passwordless sudo: cannot run $*" >&2
    return 1
  fi
}

missing_pkgs() {  # prints the packages of "$@" that are not installed
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
  done
}

APT_UPDATED=0
apt_install() {  # apt_install pkg...: installs what is missing; returns non-zero on failure
  local missing
  missing=$(missing_pkgs "$@" | tr '\n' ' ')
  if [ -z "${missing// /}" ]; then
    log "already installed: $*"
    return 0
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not available; missing: $missing" >&2
    return 1
  fi
  if [ "$APT_UPDATED" = 0 ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
    APT_UPDATED=1
  fi
  log "apt-get install $missing"
  # shellcheck disable=SC2086
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null || return 1
}

if [ "${SKE_NO_APT:-0}" != 1 ] && command -v dpkg-query >/dev/null 2>&1; then
  if ! apt_install hipcc libamdhip64-dev rocm-device-libs; then
    export SKE_HIP_APT_ERROR="apt-get install hipcc libamdhip64-dev rocm-device-libs failed"
    log "$SKE_HIP_APT_ERROR (the hipcc targets will fail)"
  fi
  if ! apt_install clang-19 lld-19; then
    export SKE_CLANG19_APT_ERROR="apt-get install clang-19 lld-19 failed"
    log "$SKE_CLANG19_APT_ERROR (gfx942 will be skipped)"
  fi
fi

# nvcc may live outside PATH on CI images
if ! command -v nvcc >/dev/null 2>&1; then
  for d in "${CUDA_HOME:-}" /usr/local/cuda /usr/local/cuda-13.0; do
    if [ -n "$d" ] && [ -x "$d/bin/nvcc" ]; then export PATH="$d/bin:$PATH"; break; fi
  done
fi

PY=${PYTHON:-python3}
exec "$PY" scripts/ci/resource_report.py "$@"
