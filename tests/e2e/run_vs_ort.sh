#!/usr/bin/env bash
# run_vs_ort.sh QUANTIZE MODEL OUTDIR [compare.mjs input flags...]
# ONNX Runtime runs MODEL on generated inputs and saves them with its outputs as ONNX test data;
# then the tool's own executor (`quantize run`) must reproduce those outputs.
# ONNX Runtime runs at optimization level "disabled": its fusions (DequantizeLinear + MatMul,
# for one) change the numerics, and the executor follows the ONNX specification.
set -euo pipefail
quantize=$1 model=$2 outdir=$3
shift 3
here=$(cd "$(dirname "$0")" && pwd)
# A model of ../shared/models that may not be shipped (models/README.md) is absent from a clone
# elsewhere: the test is skipped, and says so.
if [ ! -f "$model" ]; then
  echo "SKIPPED: $model is not here (not shipped with the repository)"
  exit 77
fi
rm -rf "$outdir" && mkdir -p "$outdir"
# QUANTIZE_FIRST (env): quantize flags; the check then runs on the tool's own output.
if [ -n "${QUANTIZE_FIRST:-}" ]; then
  # shellcheck disable=SC2086
  "$quantize" "$model" $QUANTIZE_FIRST -o "$outdir/quantized.onnx" > "$outdir/report.txt" 2>&1
  # Without VNNI, ONNX Runtime's uint8 x int8 kernels saturate, so it is no reference there:
  # 7-bit weights (--reduce-range) keep its integer sums exact.
  if grep -q "this machine has no VNNI" "$outdir/report.txt"; then
    echo "NOTE: no VNNI here: checking the --reduce-range model"
    # shellcheck disable=SC2086
    "$quantize" "$model" $QUANTIZE_FIRST --reduce-range -o "$outdir/quantized.onnx" --force -q
  fi
  model=$outdir/quantized.onnx
fi
node "$here/../ort/compare.mjs" --float "$model" --quant "$model" --save-float "$outdir" \
  --ort-optimization disabled "$@" >/dev/null
# RUN_TOLERANCE (env): `quantize run` tolerance flags, e.g. "--rtol 0.02 --atol 0.15" for
# float16 models, where ONNX Runtime rounds some intermediate results to float16 differently.
# shellcheck disable=SC2086
"$quantize" run "$model" --data "$outdir" ${RUN_TOLERANCE:-}
