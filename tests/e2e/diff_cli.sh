#!/usr/bin/env bash
# `quantize diff` from the command line: MNIST statically quantized, then diffed on handwritten
# digits; the table, the damage entry and the outputs are printed, and --json writes a document
# node can parse with every value in it.
set -euo pipefail
quantize=$1 dir=$2 digits=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$dir" && mkdir -p "$dir"
model=$here/../../models/mnist.onnx
node "$here/../ort/compare.mjs" --float "$model" --quant "$model" --digits "$digits:100:8" \
  --save-float "$dir/digits" > /dev/null
"$quantize" "$model" --uint8 --static --per-channel --calib "$dir/digits" -o "$dir/q.onnx" -q
"$quantize" diff "$model" "$dir/q.onnx" --data "$dir/digits" --json "$dir/diff.json" | tee "$dir/diff.txt"
grep -q "DequantizeLinear" "$dir/diff.txt"
grep -q "^worst contributors" "$dir/diff.txt"
grep -q "^  Plus214_Output_0: cosine" "$dir/diff.txt"
node -e '
  const j = JSON.parse(require("fs").readFileSync(process.argv[1]));
  if (!(j.samples === 8 && j.values.length > 10 && j.outputs.length === 1 && j.worst.length > 0))
    throw new Error("diff.json is missing figures");
  if (!j.values.every((v) => "snr_db" in v || "identical" in v)) throw new Error("a value without figures");
  console.log(`diff.json: ${j.values.length} values, output cosine ${j.outputs[0].cosine}`);
' "$dir/diff.json"
