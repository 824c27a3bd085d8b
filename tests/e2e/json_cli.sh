#!/usr/bin/env bash
# JSON reports (--json): a real multi-model, multi-mode run with a failing model under
# --keep-going validates against the documented schema (tests/ort/validate_report.mjs), names
# the failure with its error, and agrees with the files written; --json - puts the JSON alone on
# stdout (the human report goes to stderr); a run that fails outright still writes its report.
set -uo pipefail
quantize=$1 dir=$2
rm -rf "$dir" && mkdir -p "$dir/zoo" "$dir/out"
source "$(dirname "$0")/checks.sh"
here=$(cd "$(dirname "$0")" && pwd)
models=$here/../../models
validate() { node "$here/../ort/validate_report.mjs" "$1" || fail "$1 does not validate"; }

cp "$models/mnist.onnx" "$models/stories260K/stories260K.onnx" "$dir/zoo/"
echo "not a model" >"$dir/zoo/broken.onnx"
"$quantize" "$dir/zoo" --q4 --fp16 --output-dir "$dir/out" --keep-going --calib random \
  --calib-samples 2 --json "$dir/report.json" >"$dir/human.txt" 2>&1
[ $? = 7 ] || fail "expected exit 7 (a model failed under --keep-going)"
validate "$dir/report.json"
node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
const fs = require("fs");
const problems = [];
if (r.exit_code !== 7) problems.push("exit_code " + r.exit_code);
if (r.failures.length !== 1 || !r.failures[0].model.endsWith("broken.onnx") ||
    !r.failures[0].error.includes("not an ONNX model")) problems.push("the failure is not named");
const written = r.outputs.filter((o) => o.status === "written");
if (written.length !== 4) problems.push(written.length + " outputs written, 4 expected");
for (const o of written) {
  if (fs.statSync(o.output).size !== o.bytes_after) problems.push(o.output + ": size differs");
  if (!o.verification || o.verification.samples < 1) problems.push(o.output + ": no verification");
}
const q4 = written.find((o) => o.mode === "q4" && o.input.endsWith("stories260K.onnx"));
const t = q4 && q4.passes.flatMap((p) => p.tensors).find((t) => t.to.startsWith("q4"));
if (!t || !(t.rel_rms > 0)) problems.push("no q4 tensor with its error");
if (r.summary.failed !== 1 || r.summary.written !== 4) problems.push("summary counts");
for (const p of problems) console.log("FAIL: " + p);
process.exit(problems.length ? 1 : 0);
' "$dir/report.json" || fail "the report does not match the run"

"$quantize" "$dir/out/mnist_q4.onnx" --fp16 -o "$dir/m.onnx" --json - 2>"$dir/stderr.txt" \
  >"$dir/stdout.json" || fail "--json - run"
validate "$dir/stdout.json"
grep -q -- "->" "$dir/stderr.txt" || fail "with --json -, the human report goes to stderr"

"$quantize" "$dir/zoo/broken.onnx" --q4 --json "$dir/failed.json" >/dev/null 2>&1
[ $? = 3 ] || fail "a broken model alone: exit 3"
validate "$dir/failed.json"
grep -q '"exit_code": 3' "$dir/failed.json" || fail "the failed run's report has its exit code"

finish json
