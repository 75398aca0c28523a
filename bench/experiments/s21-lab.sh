#!/usr/bin/env bash
# The twenty-first session's lab call (bench/NOTES.md): five variants (.lab/VARIANT, made by
# scripts/lab_ab.sh --variant) against HEAD's kernel (.lab/base.cuh), the likeliest first; on the
# device, carrying .lab. Under the 600 s a call may run.
#   bash bench/experiments/s21-lab.sh --prepare   # here (git): .lab/base.cuh and the variants
#   bash bench/experiments/s21-lab.sh             # on the device
cd "$(dirname "$0")/../.."
x=bench/experiments
if [ "${1:-}" = --prepare ]; then
  bash scripts/lab_ab.sh --baseline HEAD .lab/base.cuh &&
    bash scripts/lab_ab.sh --variant s21-rank-while-counting $x/s21-rank-while-counting.patch &&
    bash scripts/lab_ab.sh --variant s21-rank-while-counting-staged $x/s21-rank-while-counting.patch \
      $x/s21-rank-while-counting-staged.patch &&
    bash scripts/lab_ab.sh --variant s21-pdl $x/s21-dependent-launch.patch &&
    bash scripts/lab_ab.sh --variant s20-two-per-sm $x/s20-two-cluster-blocks-per-sm.patch &&
    bash scripts/lab_ab.sh --variant s21-grids-256 $x/s20-two-cluster-blocks-per-sm.patch $x/s21-cluster-grids-of-256.patch
  exit
fi
OUT=${OUT:-/tmp/lab-out}
for v in s21-rank-while-counting s21-rank-while-counting-staged s21-pdl s20-two-per-sm s21-grids-256; do
  tokens=4096,16384,32768,65536
  [ $v = s21-pdl ] && tokens=1,16,128,512,2048,4096,16384,65536
  [ $v = s21-rank-while-counting ] && tokens=1024,2048,4096,8192,16384
  [ $v = s21-rank-while-counting-staged ] && tokens=16384,32768,65536
  stages="check ab"
  [ $v = s20-two-per-sm ] || [ $v = s21-pdl ] || stages="check ab phases"
  LAB_NEW=.lab/$v OUT=$OUT/$v LAB_AB_TOKENS=$tokens timeout 110 bash scripts/lab_ab.sh .lab/base.cuh $stages
done
LAB_NEW=.lab/s20-two-per-sm OUT=$OUT/s20-two-per-sm LAB_TOKENS=16384,65536 LAB_ROUTINGS=DeepSeek-V3,Qwen3-Next \
  timeout 60 bash scripts/lab_ab.sh .lab/base.cuh time
