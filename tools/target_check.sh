#!/usr/bin/env bash
# Accuracy-driven static INT8 on the CNNs of models/ and ../shared/models: each is calibrated on
# six photos with --target (default cosine=0.99), then judged in ONNX Runtime 1.30 on four other
# photos. Prints per model: the tool's figures, ONNX Runtime's cosine (optimizations on, and off:
# on x86 CPUs without VNNI its fused int8 kernels saturate, unfused it follows ONNX), the share of
# multiply-adds left in 8 bits, and the time.
#   tools/target_check.sh [WORKDIR] [--target SPEC|none] [--mode int8|uint8] [--only NAME]
#                         [--judge NAME,NAME,...]   (other photos of build/test-images to judge on)
#                         [--flags "QUANTIZE FLAGS"] (more flags for quantize, e.g. --calib-method mse)
# Needs a built tree and the photos (tools/bootstrap.sh --tests).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$root/build/target_check
target=cosine=0.99
mode=int8
only=
extra=
judge_names=motorcycle_right,camera,page,ihc
while [ $# -gt 0 ]; do
  case $1 in
    --target) target=$2; shift 2 ;;
    --mode) mode=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --judge) judge_names=$2; shift 2 ;;
    --flags) extra=$2; shift 2 ;;
    *) work=$1; shift ;;
  esac
done
quantize=$root/build/quantize
compare=$root/tests/ort/compare.mjs
img=$root/build/test-images
shared=$root/../shared/models
calib=$img/astronaut.png,$img/chelsea.png,$img/coffee.png,$img/motorcycle_left.png,$img/moon.png,$img/coins.png
judge=$img/${judge_names//,/.png,$img/}.png
mkdir -p "$work"
# name | model | image flags (compare.mjs)
models=(
  "yolox-nano|$shared/yolox-nano/yolox_nano.onnx|--image-order bgr"
  "fastestdet|$root/models/fastestdet/FastestDet.onnx|--image-scale 0.00392157"
  "ultraface|$root/models/ultraface/Ultraface_version-RFB-320.onnx|--image-scale 0.0078125 --image-offset -0.9921875"
  "superres|$root/models/superres/pytorch_super_resolution.onnx|--image-scale 0.00392157"
  "mnist|$root/models/mnist.onnx|"
  "blazeface-front|$root/models/blazeface/face_detection_front_128x128_barracuda.onnx|--image-layout nhwc --image-scale 0.00784314 --image-offset -1"
  "blazeface-back|$root/models/blazeface/face_detection_back_256x256_barracuda.onnx|--image-layout nhwc --image-scale 0.00784314 --image-offset -1"
  "paddleocr-cls|$root/models/paddleocr-cls/ch_ppocr_mobile_v2.0_cls_infer.onnx|--dim p2o.DynamicDimension.1=48 --dim p2o.DynamicDimension.2=192 --image-scale 0.00784314 --image-offset -1"
)
printf '%-16s %-30s %-22s %-22s %8s %7s %6s\n' model "tool (held-out)" "ORT cosine (opt on)" "ORT cosine (opt off)" "8-bit" raised "s"
for entry in "${models[@]}"; do
  IFS='|' read -r name model flags <<<"$entry"
  [ -z "$only" ] || [ "$only" = "$name" ] || continue
  [ -f "$model" ] || { echo "$name: $model not here, skipped"; continue; }
  dir=$work/$name
  rm -rf "$dir" && mkdir -p "$dir"
  # shellcheck disable=SC2086
  node "$compare" --float "$model" --quant "$model" --images "$calib" $flags --save-float "$dir/calib" >/dev/null
  start=$(date +%s.%N)
  rc=0
  target_flags=(--target "$target")
  [ "$target" = none ] && target_flags=()
  # shellcheck disable=SC2086
  "$quantize" "$model" --$mode --static --per-channel --calib "$dir/calib" "${target_flags[@]}" \
    $extra -o "$dir/q.onnx" >"$dir/report.txt" 2>&1 || rc=$?
  seconds=$(echo "$(date +%s.%N) - $start" | bc)
  tool=$(sed -n 's/^    \([^ ]*\): *cosine \([0-9.]*\),.*/\1 \2/p' "$dir/report.txt" | awk '{print $2}' | sort -g | head -1)
  share=$(sed -n 's/.*own precision: \([0-9.]*\)%.*/\1%/p' "$dir/report.txt")
  raised=$(sed -n 's/.*raised \([0-9]* of [0-9]*\) node.*/\1/p' "$dir/report.txt")
  if [ "$rc" != 0 ]; then
    printf '%-16s exit %s: %s\n' "$name" "$rc" "$(grep -m1 error "$dir/report.txt")"
    continue
  fi
  ort() {  # the worst output cosine in ONNX Runtime on the judging photos
    # shellcheck disable=SC2086
    node "$compare" --float "$model" --quant "$dir/q.onnx" --images "$judge" $flags "$@" |
      sed -n 's/^[^ ]*: cosine \([0-9.]*\).*/\1/p' | sort -g | head -1
  }
  printf '%-16s %-30s %-22s %-22s %8s %7s %6.1f\n' "$name" "${tool:-?} (target $target)" "$(ort)" \
    "$(ort --ort-optimization disabled)" "${share:-100%}" "${raised:-0}" "$seconds"
done
