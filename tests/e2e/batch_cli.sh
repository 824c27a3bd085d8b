#!/usr/bin/env bash
# Folders and batches: a folder converts with --recursive into --output-dir, mirroring its tree;
# a broken model fails the run, or with --keep-going is listed in the summary (exit 7) while the
# others are written; a second run writes nothing (every output up to date) and says so; --shard
# 1/2 and 2/2 together cover every model exactly once; outputs written beside their inputs are
# not taken for inputs on the next run.
set -uo pipefail
quantize=$1 dir=$2
rm -rf "$dir" && mkdir -p "$dir"
source "$(dirname "$0")/checks.sh"
models=$(cd "$(dirname "$0")/../../models" && pwd)

zoo=$dir/zoo out=$dir/out
mkdir -p "$zoo/vision" "$zoo/text/lm" "$out"
cp "$models/mnist.onnx" "$zoo/vision/"
cp "$models/magika/model.onnx" "$zoo/text/magika.onnx"
cp "$models/stories260K/stories260K.onnx" "$zoo/text/lm/"
echo "not a model" >"$zoo/text/broken.onnx"

"$quantize" "$zoo" --recursive --q4 --output-dir "$out" >"$dir/first.txt" 2>&1
[ $? = 3 ] || fail "a broken model without --keep-going must fail the run (exit 3)"

"$quantize" "$zoo" --recursive --q4 --output-dir "$out" --keep-going >"$dir/keep.txt" 2>&1
[ $? = 7 ] || fail "--keep-going with a failed model must exit 7"
grep -q "FAILED .*broken.onnx" "$dir/keep.txt" || fail "the summary names the failed model"
grep -q "4 model(s): .* 1 failed" "$dir/keep.txt" || fail "the summary counts the failure"
for f in vision/mnist_q4.onnx text/magika_q4.onnx text/lm/stories260K_q4.onnx; do
  [ -s "$out/$f" ] || fail "$f missing: outputs mirror the folder's tree"
done
rm "$zoo/text/broken.onnx"

sums=$(cd "$out" && find . -type f | sort | xargs md5sum)
"$quantize" "$zoo" --recursive --q4 --output-dir "$out" >"$dir/again.txt" 2>&1 ||
  fail "a second run must succeed"
grep -q "3 model(s): 0 output(s) written, 3 up to date, 0 failed" "$dir/again.txt" ||
  fail "a second run says every output is up to date"
[ "$sums" = "$(cd "$out" && find . -type f | sort | xargs md5sum)" ] ||
  fail "a second run changed the outputs"
cp "$models/mnist.onnx" "$zoo/vision/mnist2.onnx"
"$quantize" "$zoo" --recursive --q4 --output-dir "$out" >"$dir/new.txt" 2>&1 ||
  fail "a run with one new model must succeed"
grep -q "4 model(s): 1 output(s) written, 3 up to date" "$dir/new.txt" ||
  fail "only the new model is converted"
"$quantize" "$zoo" --recursive --q4 --asymmetric --output-dir "$out" >/dev/null 2>&1
[ $? = 4 ] || fail "outputs of other options exist: exit 4 without --force"

for i in 1 2; do
  "$quantize" "$zoo" --recursive --q4 --dry-run --shard "$i/2" | grep -o "^[^ ]*\.onnx ->" \
    >"$dir/shard$i.txt"
done
sort "$dir/shard1.txt" "$dir/shard2.txt" >"$dir/shards.txt"
"$quantize" "$zoo" --recursive --q4 --dry-run | grep -o "^[^ ]*\.onnx ->" | sort >"$dir/all.txt"
[ "$(wc -l <"$dir/all.txt")" = 4 ] || fail "the dry run lists the 4 models"
cmp -s "$dir/shards.txt" "$dir/all.txt" || fail "--shard 1/2 + 2/2 is not every model exactly once"
[ -s "$dir/shard1.txt" ] && [ -s "$dir/shard2.txt" ] || fail "both shards have models"
"$quantize" "$zoo" --q4 --dry-run >/dev/null 2>&1
[ $? = 3 ] || fail "a folder with no .onnx at its top (no --recursive) is an input error"
"$quantize" "$zoo" --recursive --q4 --shard 3/2 --dry-run >/dev/null 2>&1
[ $? = 2 ] || fail "--shard 3/2 is a usage error"

beside=$dir/beside
mkdir -p "$beside" && cp "$models/mnist.onnx" "$beside/"
"$quantize" "$beside" --q4 -q || fail "a folder, outputs beside the models"
"$quantize" "$beside" --q4 --fp16 >"$dir/beside.txt" 2>&1 || fail "second run beside"
grep -q "skipped (outputs of this tool)" "$dir/beside.txt" ||
  fail "an output found in the folder is not taken for an input"
[ -e "$beside/mnist_q4_q4.onnx" ] && fail "an output was quantized again"

finish batch
