#!/usr/bin/env bash
# run_vs_ort.sh QUANTIZE MODEL OUTDIR [compare.mjs input flags...]
# ONNX Runtime runs MODEL on generated inputs and saves them with its outputs as ONNX test data;
# then the tool's own executor (`quantize run`) must reproduce those outputs.
set -euo pipefail
quantize=$1 model=$2 outdir=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$outdir" && mkdir -p "$outdir"
node "$here/../ort/compare.mjs" --float "$model" --quant "$model" --save-float "$outdir" "$@" >/dev/null
"$quantize" run "$model" --data "$outdir"
