#!/usr/bin/env bash
# Precision plans from the command line: --tensor-type overrides written with --plan-out, then
# replayed with --plan, give byte-identical models (q4 on the built-in TinyStories model, static
# uint8 with 16-bit activations on MNIST); a plan for another mode is refused.
set -uo pipefail
quantize=$1 dir=$2
rm -rf "$dir" && mkdir -p "$dir"
source "$(dirname "$0")/checks.sh"
here=$(cd "$(dirname "$0")" && pwd)
mnist=$here/../../models/mnist.onnx

"$quantize" --q4 --tensor-type 'down_proj=q8' --tensor-type 'lm_head=float' \
  --plan-out "$dir/q4.json" -o "$dir/a.onnx" | tee "$dir/a.txt" || fail "q4 with overrides"
grep -q "q8 (--tensor-type down_proj=q8)" "$dir/a.txt" || fail "the report lists the plan"
grep -q '"precision": "q8"' "$dir/q4.json" || fail "the plan holds the q8 nodes"
"$quantize" --q4 --plan "$dir/q4.json" -o "$dir/b.onnx" -q || fail "q4 replay"
cmp "$dir/a.onnx" "$dir/b.onnx" || fail "q4: replaying the plan changed the bytes"
"$quantize" --q4 -o "$dir/plain.onnx" -q || fail "plain q4"
cmp -s "$dir/a.onnx" "$dir/plain.onnx" && fail "the overrides changed nothing"

"$quantize" "$mnist" --uint8 --static --calib random --calib-samples 4 --no-verify \
  --tensor-type 'Convolution=a16' --plan-out "$dir/static.json" -o "$dir/c.onnx" -q ||
  fail "static with a16"
"$quantize" "$mnist" --uint8 --static --calib random --calib-samples 4 --no-verify \
  --plan "$dir/static.json" -o "$dir/d.onnx" -q || fail "static replay"
cmp "$dir/c.onnx" "$dir/d.onnx" || fail "static: replaying the plan changed the bytes"

"$quantize" "$mnist" --int8 --plan "$dir/static.json" -o "$dir/e.onnx" -q
[ $? = 2 ] || fail "a static_uint8 plan replayed for --int8 must be a usage error"
finish plans
