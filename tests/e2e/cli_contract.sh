#!/usr/bin/env bash
# The command line's promises: default names beside the input, the input never overwritten, an
# existing output kept without --force, several modes from one load, documented exit codes.
set -uo pipefail
quantize=$1 dir=$2
rm -rf "$dir" && mkdir -p "$dir"
failures=0
check() {  # check DESCRIPTION EXPECTED_EXIT COMMAND...
  local what=$1 want=$2
  shift 2
  "$@" >"$dir/last.log" 2>&1
  local got=$?
  if [ "$got" != "$want" ]; then
    echo "FAIL: $what: exit $got, expected $want"; cat "$dir/last.log"; failures=$((failures + 1))
  else
    echo "ok: $what"
  fi
}
cp "$(dirname "$0")/../../models/mnist.onnx" "$dir/m.onnx"
sum=$(md5sum <"$dir/m.onnx")
check "several modes, one call" 0 "$quantize" "$dir/m.onnx" --q4 --q4f16 --fp16
for mode in q4 q4f16 fp16; do
  [ -s "$dir/m_$mode.onnx" ] || { echo "FAIL: m_$mode.onnx missing"; failures=$((failures + 1)); }
done
check "existing output, up to date: skipped" 0 "$quantize" "$dir/m.onnx" --q4
grep -q "up to date" <<<"$("$quantize" "$dir/m.onnx" --q4)" ||
  { echo "FAIL: an up-to-date output is not reported as such"; failures=$((failures + 1)); }
cp "$dir/m.onnx" "$dir/edited.onnx"
check "an output of this input" 0 "$quantize" "$dir/edited.onnx" --q4
printf '\x9a\x05\x00' >>"$dir/edited.onnx"  # an unknown empty field: the same model, other bytes
check "existing output of other input bytes without --force" 4 "$quantize" "$dir/edited.onnx" --q4
check "existing output of other options without --force" 4 "$quantize" "$dir/m.onnx" --q4 \
  --asymmetric
check "existing output with --force" 0 "$quantize" "$dir/m.onnx" --q4 --force
check "refuses to write over the input" 2 "$quantize" "$dir/m.onnx" --q4 -o "$dir/m.onnx" --force
check "-o with two modes" 2 "$quantize" "$dir/m.onnx" --q4 --fp16 -o "$dir/x.onnx"
check "bad --bits" 2 "$quantize" "$dir/m.onnx" --q4 --bits 3
check "bad regex" 2 "$quantize" "$dir/m.onnx" --q4 --exclude "(" --dry-run
check "--nf4 has no standard form" 2 "$quantize" "$dir/m.onnx" --nf4 --format qdq --dry-run
check "unknown --target runtime" 2 "$quantize" "$dir/m.onnx" --q4 --target nosuch --dry-run
check "dynamic INT8 for QNN" 2 "$quantize" "$dir/m.onnx" --int8 --target qnn --dry-run
check "uint8 weights for TensorRT" 2 "$quantize" "$dir/m.onnx" --uint8 --static --calib random \
  --target tensorrt --dry-run
check "--nf4 for a standard runtime" 2 "$quantize" "$dir/m.onnx" --nf4 --target generic --dry-run
check "--static with neither type nor runtime" 2 "$quantize" "$dir/m.onnx" --static --calib random \
  --dry-run
# --static alone with --target: the profile picks the type (ort-cpu: by this CPU's VNNI).
check "--static typed by --target ort-web" 0 "$quantize" "$dir/m.onnx" --static --calib random \
  --target ort-web -o "$dir/web.onnx"
grep -q -- "ort-web set --static --uint8" "$dir/last.log" ||
  { echo "FAIL: --target ort-web did not say it chose --uint8"; failures=$((failures + 1)); }
check "--static typed by --target ort-cpu" 0 "$quantize" "$dir/m.onnx" --static --calib random \
  --target ort-cpu -o "$dir/cpu.onnx"
grep -Eq -- "ort-cpu set --static --(int8 \(S8S8: this CPU has VNNI|uint8 \(this CPU has no VNNI)" \
  "$dir/last.log" ||
  { echo "FAIL: --target ort-cpu did not say why it chose the type"; failures=$((failures + 1)); }
# A float model needs calibration data for --static (a quantized one does not): a usage error,
# nothing written.
check "--static without --calib" 2 "$quantize" "$dir/m.onnx" --int8 --static -o "$dir/nocalib.onnx"
grep -q -- "--static needs calibration data" "$dir/last.log" && [ ! -e "$dir/nocalib.onnx" ] ||
  { echo "FAIL: --static without --calib: no clear message, or an output was written"; failures=$((failures + 1)); }
printf 'not a model' >"$dir/bad.onnx"
check "malformed model" 3 "$quantize" "$dir/bad.onnx" --q4
check "missing output folder" 4 "$quantize" "$dir/m.onnx" --q4 -o "$dir/none/x.onnx"
# The same bytes whatever the thread count or instruction set.
check "one thread" 0 "$quantize" "$dir/m.onnx" --q4f16 --asymmetric --threads 1 -o "$dir/t1.onnx"
check "scalar kernels" 0 env QUANTIZE_ISA=scalar "$quantize" "$dir/m.onnx" --q4f16 --asymmetric \
  --threads 2 -o "$dir/t2.onnx"
check "stories, one thread" 0 "$quantize" --q4f16 --asymmetric --threads 1 -o "$dir/s1.onnx"
check "stories, scalar" 0 env QUANTIZE_ISA=scalar "$quantize" --q4f16 --asymmetric --threads 2 -o "$dir/s2.onnx"
check "identical bytes (mnist)" 0 cmp "$dir/t1.onnx" "$dir/t2.onnx"
check "identical bytes (stories)" 0 cmp "$dir/s1.onnx" "$dir/s2.onnx"
check "dry run" 0 "$quantize" "$dir/m.onnx" --fp16 --dry-run -o "$dir/dry.onnx"
[ ! -e "$dir/dry.onnx" ] || { echo "FAIL: --dry-run wrote a file"; failures=$((failures + 1)); }
check "built-in model, --output-dir" 0 "$quantize" --q4f16 --output-dir "$dir"
[ -s "$dir/stories260K_q4f16.onnx" ] || { echo "FAIL: built-in output missing"; failures=$((failures + 1)); }
[ "$(md5sum <"$dir/m.onnx")" = "$sum" ] || { echo "FAIL: input changed"; failures=$((failures + 1)); }
leftovers=$(find "$dir" -name '.*.tmp*' | wc -l)
[ "$leftovers" = 0 ] || { echo "FAIL: temporary files left"; failures=$((failures + 1)); }
[ $failures = 0 ] && echo "cli contract: all passed" || exit 1
