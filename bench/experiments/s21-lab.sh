#!/usr/bin/env bash
# The twenty-first session's lab call (bench/NOTES.md): six variants (.lab/VARIANT, made by
# scripts/lab_ab.sh --variant) against HEAD's kernel (.lab/base.cuh), the likeliest first; on the
# device, carrying .lab. All six take ~5-7 minutes of the 10 a call may run; name some to run fewer.
#   bash bench/experiments/s21-lab.sh --prepare      # here (git): .lab/base.cuh and the variants
#   bash bench/experiments/s21-lab.sh [VARIANT...]   # on the device; outputs in $OUT/VARIANT*/
cd "$(dirname "$0")/../.."
x=bench/experiments
rwc=$x/s21-rank-while-counting
if [ "${1:-}" = --prepare ]; then
  bash scripts/lab_ab.sh --baseline HEAD .lab/base.cuh &&
    bash scripts/lab_ab.sh --variant s21-rank-while-counting $rwc.patch &&
    bash scripts/lab_ab.sh --variant s21-rank-while-counting-staged $rwc.patch $rwc-staged.patch &&
    bash scripts/lab_ab.sh --variant s21-rank-while-counting-without-clusters $rwc.patch $rwc-staged.patch \
      $rwc-without-clusters.patch &&
    bash scripts/lab_ab.sh --variant s21-pdl $x/s21-dependent-launch.patch &&
    bash scripts/lab_ab.sh --variant s20-two-per-sm $x/s20-two-cluster-blocks-per-sm.patch &&
    bash scripts/lab_ab.sh --variant s21-grids-256 $x/s20-two-cluster-blocks-per-sm.patch \
      $x/s21-cluster-grids-of-256.patch
  exit
fi
OUT=${OUT:-/tmp/lab-out}
lab() {  # variant, out subfolder, seconds, stages...; env passes through
  local v=$1 out=$2 secs=$3
  shift 3
  LAB_NEW=.lab/$v OUT=$OUT/$out timeout "$secs" bash scripts/lab_ab.sh .lab/base.cuh "$@"
}
variants=${*:-s21-rank-while-counting s21-rank-while-counting-staged s21-pdl s21-rank-while-counting-without-clusters s20-two-per-sm s21-grids-256}
for v in $variants; do
  case $v in
    s21-rank-while-counting) LAB_AB_TOKENS=1024,2048,4096,8192,16384 lab $v $v 100 check ab phases ;;
    s21-rank-while-counting-staged) LAB_AB_TOKENS=16384,32768,65536 lab $v $v 100 check ab phases ;;
    s21-pdl) LAB_AB_TOKENS=1,16,128,512,2048,4096,16384,65536 lab $v $v 100 check ab ;;
    s21-rank-while-counting-without-clusters)  # the sm_80 and HIP exchanges, on this GPU
      lab $v $v 60 check
      LAB_NO_CLUSTERS=1 LAB_AB_TOKENS=2048,4096,16384,65536 lab $v $v-no-clusters 60 ab ;;
    s20-two-per-sm)
      LAB_AB_TOKENS=4096,16384,32768,65536 lab $v $v 80 check ab
      LAB_TOKENS=16384,65536 LAB_ROUTINGS=DeepSeek-V3,Qwen3-Next lab $v $v 60 time ;;
    s21-grids-256) LAB_AB_TOKENS=4096,16384,32768,65536 lab $v $v 80 check ab phases ;;
    *) echo "unknown variant $v" ;;
  esac
done
