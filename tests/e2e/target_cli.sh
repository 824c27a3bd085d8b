#!/usr/bin/env bash
# Accuracy targets from the command line, judged in ONNX Runtime on data the search never saw:
#  - TinyStories --q4 calibrated on models/stories260K/calib with --target kl=0.05 reaches mean
#    KL <= 0.05 on the eight test sets at no more than 1.3x the bytes of plain --q4 (which misses);
#    its --plan-out replayed with --plan gives the same bytes;
#  - a target out of reach (every node pinned to q4 by --tensor-type) exits 6 and writes nothing;
#  - static int8 MNIST calibrated on 12 digits with --target cosine=0.999 holds on 50 other digits;
#  - bad targets are usage errors.
set -uo pipefail
quantize=$1 dir=$2 digits=$3
rm -rf "$dir" && mkdir -p "$dir"
source "$(dirname "$0")/checks.sh"
here=$(cd "$(dirname "$0")" && pwd)
models=$here/../../models
compare=$here/../ort/compare.mjs
stories=$models/stories260K/stories260K.onnx
sets=()
for i in 0 1 2 3 4 5 6 7; do sets+=(--data "$models/stories260K/test_data_set_$i"); done

"$quantize" --q4 --calib "$models/stories260K/calib" --target kl=0.05 --plan-out "$dir/plan.json" \
  -o "$dir/t.onnx" | tee "$dir/t.txt" || fail "q4 --target kl=0.05"
grep -q "kl <= 0.05 on .*: met" "$dir/t.txt" || fail "the report says the target is met"
grep -q "^    size: .* fully quantized" "$dir/t.txt" || fail "the report gives the size it costs"
"$quantize" --q4 -o "$dir/plain.onnx" -q || fail "plain q4"
bytes=$(stat -c %s "$dir/t.onnx") plain=$(stat -c %s "$dir/plain.onnx")
echo "searched: $bytes bytes, plain q4: $plain bytes"
[ $((bytes * 10)) -le $((plain * 13)) ] || fail "the searched model is more than 1.3x plain q4"
node "$compare" --float "$stories" --quant "$dir/t.onnx" "${sets[@]}" --top1 logits --max-kl 0.05 ||
  fail "q4 --target: KL in ONNX Runtime on the test sets"
node "$compare" --float "$stories" --quant "$dir/plain.onnx" "${sets[@]}" --top1 logits \
  --max-kl 0.05 >/dev/null && fail "plain q4 already meets KL 0.05: the test proves nothing"
"$quantize" --q4 --calib "$models/stories260K/calib" --plan "$dir/plan.json" -o "$dir/r.onnx" -q ||
  fail "replaying the searched plan"
cmp "$dir/t.onnx" "$dir/r.onnx" || fail "the replayed plan gives other bytes"

# Every node pinned to 4 bits by hand leaves the search nothing to raise.
"$quantize" --q4 --calib "$models/stories260K/calib" --tensor-type '.=q4' --target kl=0.05 \
  -o "$dir/u.onnx" >"$dir/u.txt" 2>&1
rc=$?
[ $rc = 6 ] || fail "an unreachable target must exit 6 (got $rc)"
[ -e "$dir/u.onnx" ] && fail "an unmet target wrote its output"
grep -q "NOT MET" "$dir/u.txt" || fail "the report says the target is not met"

node "$compare" --float "$models/mnist.onnx" --quant "$models/mnist.onnx" --digits "$digits:0:12" \
  --save-float "$dir/calib" >/dev/null
node "$compare" --float "$models/mnist.onnx" --quant "$models/mnist.onnx" --digits "$digits:500:50" \
  --save-float "$dir/judge" >/dev/null
"$quantize" "$models/mnist.onnx" --int8 --static --per-channel --calib "$dir/calib" \
  --target cosine=0.999 -o "$dir/m.onnx" | tee "$dir/m.txt" || fail "static --target cosine=0.999"
before=$(sed -n 's/.*: fully quantized \([0-9.]*\),.*/\1/p' "$dir/m.txt")
awk -v c="${before:-1}" 'BEGIN { exit !(c < 0.999) }' ||
  fail "MNIST fully quantized (cosine ${before:-?}) already met the target: the test proves nothing"
judged=()
for i in $(seq 0 49); do judged+=(--data "$dir/judge/test_data_set_$i"); done
node "$compare" --float "$models/mnist.onnx" --quant "$dir/m.onnx" "${judged[@]}" --min-cosine 0.999 ||
  fail "static --target: cosine in ONNX Runtime on other digits"

for bad in cosine=1.5 kl=-1 loss=0.1 cosine=high; do
  "$quantize" --q4 --calib "$models/stories260K/calib" --target "$bad" --dry-run -q 2>/dev/null
  rc=$?
  [ $rc = 2 ] || fail "--target $bad must be a usage error (got $rc)"
done
"$quantize" --q4 --target kl=0.05 --dry-run -q 2>/dev/null
[ $? = 2 ] || fail "--target without data must be a usage error"
finish targets
