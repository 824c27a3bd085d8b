#!/usr/bin/env bash
# e2e.sh QUANTIZE MODEL OUTDIR [quantize flags...] -- [compare.mjs flags...]
# Quantizes MODEL into OUTDIR, then runs the float and the quantized model side by side in
# ONNX Runtime (tests/ort/compare.mjs), which checks the thresholds.
# MODEL "constants:PATH" first rewrites PATH's weights as Constant nodes. EXPECT_REPORT (env):
# a regular expression the quantize report must contain.
set -euo pipefail
quantize=$1 model=$2 outdir=$3
shift 3
qargs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do qargs+=("$1"); shift; done
[ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$outdir" && mkdir -p "$outdir"
if [[ $model == constants:* ]]; then
  src=${model#constants:}
  model=$outdir/$(basename "${src%.onnx}")_constants.onnx
  "$(dirname "$quantize")/tests/make_constant_weights" "$src" "$model"
fi
# CALIB (env): compare.mjs input flags (--images ..., --random N, --data ...); ONNX Runtime saves
# those inputs as test data in OUTDIR/calib, which quantize gets as --calib (static INT8).
if [ -n "${CALIB:-}" ]; then
  # shellcheck disable=SC2086
  node "$here/../ort/compare.mjs" --float "$model" --quant "$model" --save-float "$outdir/calib" \
    $CALIB > /dev/null
  qargs+=(--calib "$outdir/calib")
fi
out=$outdir/quantized.onnx
"$quantize" "$model" "${qargs[@]}" -o "$out" -v 2>&1 | tee "$outdir/report.txt"
# EXPECT_REPORT: a regular expression the report or the diagnostics must contain (a warning, say).
if [ -n "${EXPECT_REPORT:-}" ] && ! grep -Eq "$EXPECT_REPORT" "$outdir/report.txt"; then
  echo "FAILED: the report does not say: $EXPECT_REPORT"
  exit 1
fi
# On an x86 CPU without VNNI, ONNX Runtime's uint8 x int8 MatMulInteger saturates (the tool
# warns so): its outputs there say more about this CPU than about the model. ONNX Runtime still
# loads and runs the model (figures printed for information); the thresholds judge the tool's own
# executor, whose integer sums are exact as on a VNNI CPU.
if grep -q "this machine has no VNNI" "$outdir/report.txt"; then
  echo "NOTE: no VNNI here: ONNX Runtime's saturated figures are for information; judging the executor's outputs"
  node "$here/../ort/compare.mjs" --float "$model" --quant "$out" --save-float "$outdir/data" "$@" \
    | sed 's/^/  ONNX Runtime (saturating): /' || true
  rc=0
  "$quantize" run "$out" --data "$outdir/data" --save "$outdir/executor" > /dev/null || rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 5 ]  # 5: differs from the float outputs, which is expected
  exec node "$here/../ort/compare.mjs" --float "$model" --quant "$out" \
    --quant-outputs "$outdir/executor" "$@"
fi
node "$here/../ort/compare.mjs" --float "$model" --quant "$out" "$@"
