#!/usr/bin/env bash
# The kernel lab in one device call: build it, then check, ab against an older kernel, and phases.
#
#   bash scripts/lab_ab.sh --baseline REV FILE    # here (needs git): REV's kernel as FILE, for ab
#   bash scripts/lab_ab.sh --variant NAME PATCH...  # here: the kernel headers with PATCHes applied, in .lab/NAME
#   bash scripts/lab_ab.sh FILE [STAGES...]       # on the GPU machine (its copy of the tree has no git)
#
# LAB_NEW=.lab/NAME makes that variant the new side (default: the checkout's headers), so that one
# device call can try several experiments against one baseline:
#   for v in a b; do LAB_NEW=.lab/$v OUT=$OUT/$v bash scripts/lab_ab.sh .lab/base.cuh check ab; done
#
# STAGES: any of check ab phases time (default: check ab phases). Each stage's output goes to
# $OUT/lab-STAGE.txt (OUT default /tmp/lab-out); LAB_AB_TOKENS, LAB_TOKENS and LAB_ROUTINGS pass
# through to the lab (scripts/kernel_lab.cu's header). FILE is REV's moe_align.cuh in namespace
# ske_base, with the functions whose int arguments would match ::ske's alike renamed; it includes
# the new side's portability.cuh, so a change there needs REV's version of the changed functions
# copied into FILE by hand; only launch_clusters, which became launch_ex (the same launch without
# its dependent flag), is renamed here where the new side has no launch_clusters.
set -uo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
if [ "${1:-}" = --variant ]; then
  [ $# -ge 3 ] || { echo "usage: $0 --variant NAME PATCH..." >&2; exit 2; }
  dir=.lab/$2
  shift 2
  rm -rf "$dir" && mkdir -p "$dir/sgl_kernel_ext/csrc" && cp sgl_kernel_ext/csrc/*.cuh "$dir/sgl_kernel_ext/csrc/"
  for patch_file in "$@"; do
    [[ $patch_file = /* ]] || patch_file=$caller/$patch_file
    patch -s -p1 -d "$dir" <"$patch_file" || { echo "$patch_file does not apply" >&2; exit 1; }
  done
  echo "wrote $dir"
  exit 0
fi
if [ "${1:-}" = --baseline ]; then
  [ $# = 3 ] || { echo "usage: $0 --baseline REV FILE" >&2; exit 2; }
  mkdir -p "$(dirname "$3")"
  git show "$2:sgl_kernel_ext/csrc/moe_align.cuh" |
    sed -e 's/^namespace ske {/namespace ske_base { using namespace ::ske;/' \
      -e 's/\b\(plan_ranged\|ranged_room\|block_slots_for\|moe_align_ranged_smem_bytes\|ranged_ints_before_peers\|scan_warp_rows\|thread_bucket_run\|bucket_of_slot\|zero_shared\)\b/base_\1/g' \
      >"$3" || { echo "no kernel at $2" >&2; exit 1; }
  echo "wrote $3 from $2"
  exit 0
fi
[ $# -ge 1 ] && [ -f "$1" ] || { echo "usage: $0 BASELINE_FILE [check|ab|phases|time ...]" >&2; exit 2; }
base=$(realpath "$1")
new=${LAB_NEW:-.}/sgl_kernel_ext/csrc
[ -f "$new/moe_align.cuh" ] || { echo "no $new/moe_align.cuh" >&2; exit 2; }
shift
stages=${*:-check ab phases}
OUT=${OUT:-/tmp/lab-out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv,noheader
flags=(-O3 -std=c++17 -arch=sm_90 -I "$new")
bin=$(mktemp -d)
if ! grep -q '\blaunch_clusters\b' "$new/portability.cuh"; then
  sed 's/\blaunch_clusters\b/launch_ex/g' "$base" >"$bin/base.cuh"
  base=$bin/base.cuh
fi
echo "new: $new/moe_align.cuh; base: $base"
builds=()
nvcc "${flags[@]}" -DSKE_BASELINE="\"$base\"" scripts/kernel_lab.cu -o "$bin/kernel_lab_ab" &
builds+=($!)
if [[ " $stages " == *" phases "* ]]; then
  nvcc "${flags[@]}" -DSKE_PHASE_CLOCKS scripts/kernel_lab.cu -o "$bin/kernel_lab_phases" &
  builds+=($!)
fi
status=0
for b in "${builds[@]}"; do wait "$b" || status=1; done
[ $status = 0 ] || { echo "lab build failed"; exit 1; }
for stage in $stages; do
  lab=$bin/kernel_lab_ab
  [ "$stage" = phases ] && lab=$bin/kernel_lab_phases
  t0=$SECONDS
  "$lab" "$stage" >"$OUT/lab-$stage.txt" 2>&1
  rc=$?
  echo "=== $stage: rc=$rc in $((SECONDS - t0)) s ($OUT/lab-$stage.txt)"
  [ $rc = 0 ] || status=1
  if [ "$stage" = check ]; then
    tail -n 1 "$OUT/lab-$stage.txt"
  elif grep -q WRONG "$OUT/lab-$stage.txt"; then
    echo "WRONG results in $stage:"
    grep WRONG "$OUT/lab-$stage.txt" | head
    status=1
  fi
  if [ "$stage" = ab ]; then
    awk -F, 'NR > 1 && $12 != "" { s += $12; n++; if ($7 != "0") { ss += $12; sn++ } }
      END { if (n) printf "ab: new/base mean %.3f over %d shapes", s / n, n;
            if (sn) printf ", %.3f over the %d staged", ss / sn, sn; print "" }' "$OUT/lab-ab.txt"
    awk -F, 'NR > 1 && $12 != "" { if (!($2 in n)) k[++m] = $2 + 0; s[$2] += $12; n[$2]++; if ($12 > w[$2]) w[$2] = $12 }
      END { for (i = 2; i <= m; ++i) for (j = i; j > 1 && k[j - 1] > k[j]; --j) { t = k[j]; k[j] = k[j - 1]; k[j - 1] = t }
            printf "ab by tokens (mean, worst):";
            for (i = 1; i <= m; ++i) printf " %d %.3f %.3f;", k[i], s[k[i]] / n[k[i]], w[k[i]]; print "" }' \
      "$OUT/lab-ab.txt"
  fi
done
exit $status
