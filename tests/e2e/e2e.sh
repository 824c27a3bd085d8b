#!/usr/bin/env bash
# e2e.sh QUANTIZE MODEL OUTDIR [quantize flags...] -- [compare.mjs flags...]
# Quantizes MODEL into OUTDIR, then runs the float and the quantized model side by side in
# ONNX Runtime (tests/ort/compare.mjs), which checks the thresholds.
# MODEL "constants:PATH" first rewrites PATH's weights as Constant nodes; "fp16:PATH" first makes
# PATH a float16 model (quantize --fp16), which is then the model quantized and judged against;
# "bf16:PATH" makes that float16 model bfloat16, quantizes it, and judges it against PATH itself
# (ONNX Runtime's CPU provider cannot run the bfloat16 model); "qat:PATH" makes PATH a model as
# quantization-aware training exports them (static QDQ with fake-quantized float weights), the
# model then quantized and judged against, and the output must be under half its size. EXPECT_REPORT (env):
# a regular expression the quantize report must contain. STANDARD_OPS (env): see below.
set -euo pipefail
quantize=$1 model=$2 outdir=$3
shift 3
qargs=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do qargs+=("$1"); shift; done
[ $# -gt 0 ] && shift
here=$(cd "$(dirname "$0")" && pwd)
# A model of ../shared/models that may not be shipped (models/README.md) is absent from a clone
# elsewhere: the test is skipped, and says so.
src=${model#constants:}
src=${src#fp16:}
src=${src#bf16:}
src=${src#qat:}
if [ ! -f "$src" ]; then
  echo "SKIPPED: $src is not here (not shipped with the repository)"
  exit 77
fi
rm -rf "$outdir" && mkdir -p "$outdir"
if [[ $model == constants:* ]]; then
  model=$outdir/$(basename "${src%.onnx}")_constants.onnx
  "$(dirname "$quantize")/tests/make_constant_weights" "$src" "$model"
elif [[ $model == fp16:* ]]; then
  model=$outdir/$(basename "${src%.onnx}")_float16.onnx
  "$quantize" "$src" --fp16 -o "$model" -q
elif [[ $model == bf16:* ]]; then
  model=$outdir/$(basename "${src%.onnx}")_bfloat16.onnx
  "$quantize" "$src" --fp16 -o "$outdir/float16.onnx" -q
  "$(dirname "$quantize")/tests/make_bfloat16" "$outdir/float16.onnx" "$model"
  reference=$src
elif [[ $model == qat:* ]]; then
  model=$outdir/$(basename "${src%.onnx}")_qat.onnx
  "$quantize" "$src" --int8 --static --per-channel --calib random -o "$outdir/static.onnx" -q
  "$(dirname "$quantize")/tests/make_fake_quant" "$outdir/static.onnx" "$model"
  half_size=$(($(stat -c %s "$model") / 2))
fi
# The float model the quantized one is judged against.
reference=${reference:-$model}
# CALIB (env): compare.mjs input flags (--images ..., --random N, --data ...); ONNX Runtime saves
# those inputs as test data in OUTDIR/calib, which quantize gets as --calib (static INT8).
if [ -n "${CALIB:-}" ]; then
  # shellcheck disable=SC2086
  node "$here/../ort/compare.mjs" --float "$reference" --quant "$reference" --save-float "$outdir/calib" \
    $CALIB > /dev/null
  qargs+=(--calib "$outdir/calib")
  EVAL=${EVAL:-1}  # judge on the evaluation inputs below, so all of CALIB calibrates
fi
# EVAL (env, 1): the evaluation inputs (compare.mjs flags after --) saved as test data in
# OUTDIR/eval, which quantize gets as --eval: its verification judges the same inputs ONNX Runtime
# does. VERIFY_AGREES (env, a tolerance): the tool's cosine of each output must be within it of
# ONNX Runtime's.
if [ "${EVAL:-0}" = 1 ]; then
  node "$here/../ort/compare.mjs" --float "$reference" --quant "$reference" --save-float "$outdir/eval" \
    "$@" > /dev/null
  qargs+=(--eval "$outdir/eval")
fi
out=$outdir/quantized.onnx
"$quantize" "$model" "${qargs[@]}" -o "$out" -v 2>&1 | tee "$outdir/report.txt"
if [ -n "${half_size:-}" ] && [ "$(stat -c %s "$out")" -ge "$half_size" ]; then
  echo "FAILED: $out is not under half the size of $model"
  exit 1
fi
# EXPECT_REPORT: a regular expression the report or the diagnostics must contain (a warning, say).
if [ -n "${EXPECT_REPORT:-}" ] && ! grep -Eq "$EXPECT_REPORT" "$outdir/report.txt"; then
  echo "FAILED: the report does not say: $EXPECT_REPORT"
  exit 1
fi
# STANDARD_OPS (env): the output may hold standard ONNX ops only ("1"), or those and the
# comma-separated domain.Op list given (tests/ort/ops.mjs).
if [ -n "${STANDARD_OPS:-}" ]; then
  allow=()
  [ "$STANDARD_OPS" = 1 ] || allow=(--allow "$STANDARD_OPS")
  node "$here/../ort/ops.mjs" "$out" --standard "${allow[@]}" > "$outdir/ops.txt" ||
    { cat "$outdir/ops.txt"; exit 1; }
fi
# On an x86 CPU without VNNI, ONNX Runtime's uint8 x int8 MatMulInteger saturates (the tool
# warns so): its outputs there say more about this CPU than about the model. ONNX Runtime still
# loads and runs the model (figures printed for information); the thresholds judge the tool's own
# executor, whose integer sums are exact as on a VNNI CPU.
if grep -q "this machine has no VNNI" "$outdir/report.txt"; then
  echo "NOTE: no VNNI here: ONNX Runtime's saturated figures are for information; judging the executor's outputs"
  node "$here/../ort/compare.mjs" --float "$reference" --quant "$out" --save-float "$outdir/data" "$@" \
    | sed 's/^/  ONNX Runtime (saturating): /' || true
  rc=0
  "$quantize" run "$out" --data "$outdir/data" --save "$outdir/executor" > /dev/null || rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 5 ]  # 5: differs from the float outputs, which is expected
  exec node "$here/../ort/compare.mjs" --float "$reference" --quant "$out" \
    --quant-outputs "$outdir/executor" "$@"
fi
node "$here/../ort/compare.mjs" --float "$reference" --quant "$out" "$@" | tee "$outdir/ort.txt"
status=${PIPESTATUS[0]}
if [ -n "${VERIFY_AGREES:-}" ]; then  # the tool's verification against ONNX Runtime's figures
  while read -r name cosine; do
    ort=$(sed -n "s/^$name: cosine \([0-9.]*\).*/\1/p" "$outdir/ort.txt")
    echo "verification: $name cosine $cosine (tool) vs $ort (ONNX Runtime)"
    awk -v a="$cosine" -v b="$ort" -v t="$VERIFY_AGREES" \
      'BEGIN { d = a - b; if (d < 0) d = -d; exit !(b != "" && d <= t) }' ||
      { echo "FAILED: the tool's verification differs from ONNX Runtime's by more than $VERIFY_AGREES"; exit 1; }
  done < <(sed -n 's/^    \([^ ]*\):  *cosine \([0-9.]*\),.*/\1 \2/p' "$outdir/report.txt")
  grep -q "^  verify" "$outdir/report.txt" || { echo "FAILED: no verification in the report"; exit 1; }
fi
exit "$status"
