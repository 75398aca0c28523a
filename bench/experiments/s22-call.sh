#!/usr/bin/env bash
# The first device call planned for the twenty-second session (bench/NOTES.md): the merged
# branch experiment/dependent-launch-and-rank-while-counting against main's kernel in the lab,
# with and without programmatic dependent launch, then its GPU tests and the sanitizer, in one call
# of at most 600 s (each part bounded, the likeliest verdicts first; outputs under $OUT).
#   git checkout main && bash bench/experiments/s21-lab.sh --prepare   # here: .lab (needs main's kernel)
#   git checkout experiment/dependent-launch-and-rank-while-counting
#   bash bench/experiments/s22-call.sh                                 # on the device, carrying .lab
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/s22-out}
mkdir -p $OUT
base=.lab/base.cuh
export TORCH_CUDA_ARCH_LIST=9.0
# The extension's JIT build (one nvcc, a minute or two) beside the lab: its timings are graph
# replays, interleaved base and new, so a busy CPU core touches both sides alike.
OUT=$OUT/gpu-check STAGE_TIMEOUT=240 bash scripts/gpu_check.sh build >/dev/null 2>&1 &
build=$!
LAB_AB_TOKENS=1,16,512,2048,8192,16384,32768,65536 OUT=$OUT/branch timeout 170 \
  bash scripts/lab_ab.sh $base check ab phases 2>&1 | tee $OUT/lab-branch.log
LAB_NO_PDL=1 LAB_AB_TOKENS=1,1024,4096,16384,65536 OUT=$OUT/branch-no-pdl timeout 80 \
  bash scripts/lab_ab.sh $base ab 2>&1 | tee $OUT/lab-branch-no-pdl.log
wait $build
cat $OUT/gpu-check/build.log
left=$((480 - SECONDS))
OUT=$OUT/gpu-check-test STAGE_TIMEOUT=$((left > 60 ? left : 60)) bash scripts/gpu_check.sh test
left=$((590 - SECONDS))
[ $left -gt 30 ] && OUT=$OUT/gpu-check-sanitize STAGE_TIMEOUT=$left bash scripts/gpu_check.sh sanitize
echo "=== summary ($SECONDS s)"
grep -H -E "^ab|failed|passed|^=== |ERROR SUMMARY" $OUT/lab-*.log $OUT/gpu-check*/*.log
