#!/usr/bin/env bash
# Patch an installed sglang so that its fused MoE calls sgl_kernel_ext directly (for forks of sglang;
# without a fork, the plugin does the same at run time and edits nothing). See patches/README.md.
#
# usage: scripts/apply_patches.sh [--dry-run] [--reverse] [--version X.Y.Z] [DIR]
#   DIR        the installed sglang package (.../site-packages/sglang) or the folder holding it
#              (default: where $PYTHON, else python, finds sglang; sglang is not imported)
#   --dry-run  only check that the patch applies (or, with --reverse, comes out); change nothing
#   --reverse  take the patch out again
#   --version  which patches/sglang-<version>.patch to use (default: the version in DIR's
#              sglang-*.dist-info)
# The patches hold paths relative to site-packages (a/sglang/..., b/sglang/...) and go in with patch -p1.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }
fail() { echo "apply_patches.sh: $*" >&2; exit 1; }

dry_run=0 reverse=0 version="" dir=""
while (($#)); do
  case "$1" in
    --dry-run) dry_run=1 ;;
    --reverse) reverse=1 ;;
    --version) version=${2:?--version needs a value}; shift ;;
    -h|--help) usage 0 ;;
    -*) echo "apply_patches.sh: unknown option $1" >&2; usage ;;
    *) [[ -z "$dir" ]] || usage; dir=$1 ;;
  esac
  shift
done
command -v patch >/dev/null || fail "needs GNU patch (apt-get install patch)"

if [[ -z "$dir" ]]; then
  dir=$("${PYTHON:-python}" -c 'import importlib.util as u, os; s = u.find_spec("sglang"); print(os.path.dirname(s.origin) if s and s.origin else "")')
  [[ -n "$dir" ]] || fail "sglang is not installed for ${PYTHON:-python}; pass its folder"
fi
dir=$(cd "$dir" && pwd)
# The package folder itself, or its parent (site-packages).
if [[ -f "$dir/__init__.py" && -d "$dir/srt" ]]; then root=$(dirname "$dir"); else root=$dir; fi
[[ -d "$root/sglang/srt" ]] || fail "no sglang package in $dir"

if [[ -z "$version" ]]; then
  shopt -s nullglob
  metadata=("$root"/sglang-*.dist-info/METADATA)
  shopt -u nullglob
  ((${#metadata[@]} == 1)) || fail "found ${#metadata[@]} sglang-*.dist-info in $root; say which version with --version"
  version=$(sed -n 's/^Version: //p' "${metadata[0]}" | head -n1)
fi
patch_file="$here/patches/sglang-$version.patch"
[[ -f "$patch_file" ]] || fail "no patch for sglang $version (have: $(cd "$here/patches" && echo sglang-*.patch))"

if ((reverse)); then direction=(--reverse) doing="come out of" done_word="taken out of"
else direction=(--forward) doing="apply to" done_word="applied to"; fi
run_patch() {
  patch -p1 --batch --fuzz=0 --no-backup-if-mismatch --directory "$root" --input "$patch_file" "${direction[@]}" "$@"
}
name=$(basename "$patch_file")
# Check first, so that a patch that does not fit leaves no half-patched file and no .rej behind.
if ! check=$(run_patch --dry-run 2>&1); then
  fail "$name does not $doing $root/sglang (done already, or another sglang?):
$check"
fi
if ((dry_run)); then
  echo "apply_patches.sh: $name would $doing $root/sglang (dry run, nothing changed)"
else
  run_patch >/dev/null
  echo "apply_patches.sh: $name $done_word $root/sglang"
fi
