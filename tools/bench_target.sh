#!/usr/bin/env bash
# The cost of the --target search: static int8 YOLOX-nano (../shared/models) calibrated on 6
# photos and on 24, --target cosine=0.99. Prints wall time, peak RSS and what the search judged;
# peak RSS should barely move with the sample count (activations stream; only the graph
# outputs of each sample are kept as the reference).
#   tools/bench_target.sh [WORKDIR]     (needs a built tree and the photos: tools/bootstrap.sh --tests)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$root/build/bench_target}
quantize=$root/build/quantize
img=$root/build/test-images
model=$root/../shared/models/yolox-nano/yolox_nano.onnx
command -v /usr/bin/time >/dev/null || { echo "bench: needs GNU time (apt-get install time)"; exit 1; }
[ -f "$model" ] || { echo "bench: $model not here"; exit 1; }
six=astronaut,chelsea,coffee,motorcycle_left,moon,coins
more=$six,brick,grass,gravel,horse,rocket,hubble_deep_field,immunohistochemistry,cell,color,logo
more=$more,microaneurysms,retina,phantom,clock_motion,text,checker_bilevel,chessboard_RGB,lily
mkdir -p "$work"
printf '%-10s %8s %10s  %s\n' photos seconds "peak RSS" "search"
for set in six more; do
  names=${!set}
  files=
  for n in ${names//,/ }; do
    [ -f "$img/$n.png" ] && files=${files:+$files,}$img/$n.png
  done
  count=$(tr ',' '\n' <<<"$files" | wc -l)
  rm -rf "$work/$set" && mkdir -p "$work/$set"
  node "$root/tests/ort/compare.mjs" --float "$model" --quant "$model" --images "$files" \
    --image-order bgr --save-float "$work/$set/calib" >/dev/null
  /usr/bin/time -f '%e %M' -o "$work/$set/time.txt" "$quantize" "$model" --int8 --static \
    --per-channel --calib "$work/$set/calib" --target cosine=0.99 -o "$work/$set/q.onnx" \
    >"$work/$set/report.txt" 2>&1 || true
  read -r seconds kib <"$work/$set/time.txt"
  printf '%-10s %8s %7d MiB  %s\n' "$count" "$seconds" $((kib / 1024)) \
    "$(sed -n 's/^    \(raised .*judged\).*/\1/p' "$work/$set/report.txt")"
done
