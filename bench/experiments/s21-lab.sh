#!/usr/bin/env bash
# The twenty-first session's lab call (bench/NOTES.md): three variants (.lab/VARIANT, made by
# scripts/lab_ab.sh --variant) against HEAD's kernel (.lab/base.cuh). On the device, carrying .lab.
OUT=${OUT:-/tmp/lab-out}
for v in s21-pdl s20-two-per-sm s21-grids-256; do
  tokens=4096,16384,32768,65536
  [ $v = s21-pdl ] && tokens=1,16,128,512,2048,4096,16384,65536
  stages="check ab"
  [ $v = s21-grids-256 ] && stages="check ab phases"
  LAB_NEW=.lab/$v OUT=$OUT/$v LAB_AB_TOKENS=$tokens timeout 200 bash scripts/lab_ab.sh .lab/base.cuh $stages
done
LAB_NEW=.lab/s20-two-per-sm OUT=$OUT/s20-two-per-sm LAB_TOKENS=16384,65536 LAB_ROUTINGS=DeepSeek-V3,Qwen3-Next \
  timeout 120 bash scripts/lab_ab.sh .lab/base.cuh time
