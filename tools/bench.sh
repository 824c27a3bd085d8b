#!/usr/bin/env bash
# Whole-tool speed and memory on synthetic LLaMA models (llama2.c layout, realistic outlier
# channels) built by ../shared/tools/llama2c-to-onnx, then the kernel benchmarks.
#   tools/bench.sh [WORKDIR]     (needs a built tree: tools/bootstrap.sh --tests)
# Needs python3-onnx and python3-numpy (Debian) to generate the models (~1 min the first time).
# Reports, per model and mode: wall time, peak RSS, and peak RSS relative to the input size.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$root/build/bench}
gen=$root/../shared/tools/llama2c-to-onnx
quantize=$root/build/quantize
mkdir -p "$work"
command -v /usr/bin/time >/dev/null || { echo "bench: needs GNU time (apt-get install time)"; exit 1; }

make_model() {  # make_model NAME ARGS...: single-file NAME.onnx and external-data ext_NAME/
  local name=$1
  shift
  [ -s "$work/$name.onnx" ] && [ -s "$work/ext_$name/$name.onnx" ] && return
  /usr/bin/python3 "$gen/gen_synth_checkpoint.py" "$work/$name.bin" "$@" >/dev/null
  /usr/bin/python3 "$gen/build_llama_onnx.py" "$work/$name.bin" "$work/$name.onnx" >/dev/null
  mkdir -p "$work/ext_$name"
  /usr/bin/python3 "$gen/build_llama_onnx.py" "$work/$name.bin" "$work/ext_$name/$name.onnx" \
    --external-data >/dev/null
  rm -f "$work/$name.bin"
}

make_model synth134m                    # ~134M parameters, 537 MB
make_model synth_deep --n-layers 24     # same widths, twice the layers (~1 GB)

bytes() {  # total size of the files given that exist
  local total=0 f
  for f in "$@"; do [ -f "$f" ] && total=$((total + $(stat -c %s "$f"))); done
  echo $total
}

# Calibration data for the data-aware weight algorithms: 32 sequences of 128 random tokens.
[ -s "$work/calib32x128.npy" ] || /usr/bin/python3 -c "
import numpy as np
np.save('$work/calib32x128.npy',
        np.random.default_rng(7).integers(1, 32000, size=(32, 1, 128)).astype(np.int64))"

printf '%-34s %-30s %8s %10s %8s %10s\n' model mode seconds "peak RSS" "x input" output
run() {  # run MODEL_PATH MODE [extra flags]
  local model=$1 mode=$2
  shift 2
  local out=$work/out_$mode.onnx
  local in_bytes
  in_bytes=$(bytes "$model" "${model}_data")
  local best=""
  for _ in 1 2 3; do  # best of three: the first run may also be reading the file from disk
    /usr/bin/time -f "%e %M" -o "$work/time.txt" "$quantize" "$model" "--$mode" -o "$out" \
      --force -q "$@"
    read -r secs kb <"$work/time.txt"
    if [ -z "$best" ] || awk "BEGIN{exit !($secs < ${best%% *})}"; then best="$secs $kb"; fi
  done
  read -r secs kb <<<"$best"
  local out_bytes
  out_bytes=$(bytes "$out" "$out.data")
  local flags="$*"
  printf '%-34s %-30s %8s %7d MB %8.2f %7d MB\n' "${model#$work/}" "$mode${flags:+ ${flags//$work\//}}" "$secs" \
    $((kb / 1024)) "$(awk "BEGIN{print $kb * 1024 / $in_bytes}")" $((out_bytes / 1000000))
}
for mode in q4f16 fp16 q4 int8 q8; do run "$work/synth134m.onnx" $mode; done
run "$work/synth134m.onnx" int8 --per-channel
# Weight algorithms (q4 above is the default, the data-free search): round to nearest, and GPTQ,
# AWQ and both on all 32 calibration sequences (no held-out share, no verification: the algorithm's own cost).
run "$work/synth134m.onnx" q4 --algo rtn
for algo in gptq awq awq+gptq; do
  run "$work/synth134m.onnx" q4 --algo $algo --calib "$work/calib32x128.npy" --no-holdout --no-verify
done
for mode in q4f16 fp16 int8; do
  run "$work/ext_synth134m/synth134m.onnx" $mode --external-data
  run "$work/ext_synth_deep/synth_deep.onnx" $mode --external-data
done
rm -f "$work"/out_*

echo
"$root/build/bench_kernels" --benchmark_min_time=0.2 --benchmark_filter="${BENCH_FILTER:-.}"
