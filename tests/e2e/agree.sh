#!/usr/bin/env bash
# agree.sh QUANTIZE MODEL OUTDIR "FLAGS A" "FLAGS B" -- [compare.mjs flags...]
# Quantizes MODEL twice, with FLAGS A and with FLAGS B, and judges B's outputs against A's in
# ONNX Runtime (tests/ort/compare.mjs, with its thresholds): two forms of the same weights, say.
set -euo pipefail
quantize=$1 model=$2 outdir=$3 flags_a=$4 flags_b=$5
shift 5
[ "${1:-}" = "--" ] && shift
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$outdir" && mkdir -p "$outdir"
# shellcheck disable=SC2086
"$quantize" "$model" $flags_a -o "$outdir/a.onnx" -q
# shellcheck disable=SC2086
"$quantize" "$model" $flags_b -o "$outdir/b.onnx" -v 2>&1 | tee "$outdir/report.txt"
exec node "$here/../ort/compare.mjs" --float "$outdir/a.onnx" --quant "$outdir/b.onnx" "$@"
