#!/usr/bin/env bash
# Calibration memory against the number of samples: static INT8 of YOLOX-nano calibrated on 8
# and on 64 random images (ONNX test data written by ONNX Runtime), peak RSS and time of each,
# per calibration method, and for min/max with the refinements (equalization, bias correction)
# off and chosen automatically (four candidate models, cross-fitted on the calibration share);
# last, the default: the ranges chosen too (--calib-method auto: eight candidates).
# Statistics are streamed, so peak RSS should not grow with the samples.
# Needs a built tree with tests/ort installed (tools/bootstrap.sh --tests) and ../shared/models.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
model=${1:-$root/../shared/models/yolox-nano/yolox_nano.onnx}
work=$root/build/bench_calib
rm -rf "$work" && mkdir -p "$work"
node "$root/tests/ort/compare.mjs" --float "$model" --quant "$model" --save-float "$work/data" \
  --random 64 --range images=0:255 > /dev/null
printf '%-11s %-8s %8s %10s %12s\n' method refine samples "time s" "peak RSS MB"
for run in "minmax off" "minmax auto" "percentile auto" "entropy auto" "mse auto" "auto auto"; do
  read -r method refine <<<"$run"
  for n in 8 64; do
    /usr/bin/time -f '%e %M' -o "$work/time" "$root/build/quantize" "$model" --int8 --static \
      --per-channel --calib "$work/data" --calib-samples "$n" --calib-method "$method" \
      --equalize "$refine" --bias-correction "$refine" -o "$work/out.onnx" --force -q
    read -r seconds kb < "$work/time"
    printf '%-11s %-8s %8d %10.1f %12.1f\n' "$method" "$refine" "$n" "$seconds" \
      "$(awk "BEGIN{print $kb / 1024}")"
  done
done
