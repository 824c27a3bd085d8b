#!/usr/bin/env bash
# The built-in executor's speed next to ONNX Runtime's (onnxruntime-node, CPU, 2 intra-op
# threads; the executor uses all cores, 2 on the project's machines) on the real models, same inputs; the best of 30 runs each. Needs a built tree with
# tests/ort installed (tools/bootstrap.sh --tests) and ../shared/models.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shared=$root/../shared/models
work=${1:-$root/build/bench_executor}
mkdir -p "$work"
printf '%-14s %10s %12s %7s\n' model "ORT ms" "executor ms" ratio
bench() {  # bench NAME MODEL [compare.mjs input flags...]
  local name=$1 model=$2
  shift 2
  rm -rf "${work:?}/$name"
  local ort
  ort=$(node "$root/tests/ort/compare.mjs" --float "$model" --quant "$model" --save-float "$work/$name" \
    --time-runs 30 "$@" | awk '/^ort_ms/ {print $3; exit}')
  local ours
  ours=$("$root/build/quantize" run "$model" --data "$work/$name/test_data_set_0" --repeat 30 \
    | awk -F'[(]' '/ s\)$/ {sub(/ s\)/, "", $2); print $2 * 1000; exit}')
  printf '%-14s %10.2f %12.2f %7.2f\n' "$name" "$ort" "$ours" "$(awk "BEGIN{print $ours / $ort}")"
}
bench mnist "$root/models/mnist.onnx" --random 1 --float-range 0:1
bench ultraface "$root/models/ultraface/Ultraface_version-RFB-320.onnx" --random 1
bench fastestdet "$root/models/fastestdet/FastestDet.onnx" --random 1 --float-range 0:1
bench superres "$root/models/superres/pytorch_super_resolution.onnx" --random 1 --float-range 0:1
bench yolox_nano "$shared/yolox-nano/yolox_nano.onnx" --random 1 --range images=0:255
bench magika "$root/models/magika/model.onnx" --random 1 --dim unk__214=1 --range bytes=0:255
bench stories260K "$root/models/stories260K/stories260K.onnx" --data "$root/models/stories260K/test_data_set_7"
bench gru "$root/models/hinglish-gru/model.onnx" --random 1 --dim batch_size=1 --range input=0:129
