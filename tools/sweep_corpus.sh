#!/usr/bin/env bash
# Corpus sweep: every mode of the tool over every model of Debian's ONNX backend test corpus
# (libonnx-testdata: node, pytorch-converted, pytorch-operator, simple; 1,072 models), each output
# checked in ONNX Runtime 1.30 against the float model on the model's test_data_set_0.
#   tools/sweep_corpus.sh QUANTIZE_BINARY OUTDIR [--modes q4,q4f16,fp16,int8,uint8,q8,static_int8,static_uint8,nf4,fp4,q4_qdq]
#                         [--filter REGEX] [--jobs N] [--corpus DIR] [--timeout SECONDS]
#                         [--models LIST]
# Needs ONNX Runtime from npm in tests/ort/node_modules (tools/bootstrap.sh --tests) and the
# Debian package libonnx-testdata. All modes take about 2-4 minutes on 2 cores.
#
# Runs the tool once per model and mode, --jobs at a time (default: the number of cores):
# `QUANTIZE_BINARY model.onnx --MODE -o OUTDIR/out/<set>/<test>/<mode>.onnx --force -q`, static
# modes as `--static --int8|--uint8 --calib <model dir>/test_data_set_0 --per-channel`, each run
# q4_qdq as `--q4 --format qdq`;
# under `timeout` (--timeout, default 60 s). --filter keeps the models whose "<set>/<test>" name
# matches the (extended) regex. Exit status and stderr go beside each output (.rc, .err), and
# one JSON line per run into OUTDIR/manifest.jsonl; then tests/ort/sweep.mjs checks every output
# (see its header for the classes: ok, refused, invalid, wrong, crash, not-runnable, opset<7),
# prints a table per mode and every entry that is not ok with its reason, and writes
# OUTDIR/summary.json (counts and non-ok entries) and OUTDIR/results.jsonl (every entry).
# --models LIST sweeps other models instead: one per line, "NAME PATH [compare.mjs input flags]"
# (# starts a comment; a PATH that does not exist is reported and skipped). Their test data is
# one random input set made by tests/ort/compare.mjs with those flags (--dim, --range, ...),
# saved with ONNX Runtime's float outputs as OUTDIR/data/NAME/test_data_set_0.
# Exit status: 1 iff any entry is invalid, wrong or a crash; 2 on a usage or sweep error; 77 when
# the corpus is not installed (ctest reports the test as skipped).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

usage() {
  sed -n '5,6p' "$0" | sed 's/^# //' >&2
  exit 2
}
[ $# -ge 2 ] || usage
bin=$(realpath "$1")
out=$(mkdir -p "$2" && cd "$2" && pwd)
shift 2
modes=q4,q4f16,fp16,int8,uint8,q8,static_int8,static_uint8,nf4,fp4,q4_qdq
filter=
jobs=$(nproc)
corpus=/usr/share/libonnx-testdata/data
tool_timeout=60
model_list=
while [ $# -gt 0 ]; do
  case $1 in
    --modes) modes=$2; shift 2 ;;
    --filter) filter=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --corpus) corpus=$2; shift 2 ;;
    --timeout) tool_timeout=$2; shift 2 ;;
    --models) model_list=$(realpath "$2"); shift 2 ;;
    *) usage ;;
  esac
done
[ -x "$bin" ] || { echo "sweep_corpus: $bin is not an executable" >&2; exit 2; }
if [ -n "$model_list" ]; then  # a corpus of the listed models, with random test data
  corpus=$out/data
  rm -rf "$corpus"
  while read -r name path flags; do
    [ -n "$name" ] && [ "${name:0:1}" != "#" ] || continue
    path=${path/#@ROOT@/$root}
    if [ ! -f "$path" ]; then
      echo "sweep: $name: $path not found, skipped" >&2
      continue
    fi
    mkdir -p "$corpus/models/$name"
    realpath "$path" >"$corpus/models/$name/model.path"  # read in place (with its external data)
    # shellcheck disable=SC2086
    node "$root/tests/ort/compare.mjs" --float "$path" --quant "$path" --random 1 \
      --save-float "$corpus/models/$name" $flags >/dev/null 2>"$corpus/models/$name/data.err" ||
      echo "sweep: $name: no test data ($(head -c 300 "$corpus/models/$name/data.err"))" >&2
  done <"$model_list"
fi
if [ ! -d "$corpus" ]; then  # 77: CTest's SKIP_RETURN_CODE for this test
  echo "SKIP: no ONNX backend test corpus at $corpus (Debian package libonnx-testdata)" >&2
  exit 77
fi
[ -d "$root/tests/ort/node_modules/onnxruntime-node" ] ||
  { echo "sweep_corpus: no ONNX Runtime in tests/ort/node_modules (run tools/bootstrap.sh --tests)" >&2; exit 2; }
IFS=, read -r -a mode_list <<<"$modes"
for m in "${mode_list[@]}"; do
  case $m in
    q4 | q4f16 | fp16 | int8 | uint8 | q8 | static_int8 | static_uint8 | nf4 | fp4 | q4_qdq) ;;
    *) echo "sweep_corpus: unknown mode '$m'" >&2; exit 2 ;;
  esac
done

# The job list: one "<set>/<test> <mode>" line per run.
started=$(date +%s%N)
rm -rf "$out/out" "$out/manifest.jsonl" "$out"/.manifest.*
jobs_file=$out/jobs.txt
: >"$jobs_file"
models=0
for dir in "$corpus"/{node,pytorch-converted,pytorch-operator,simple,models}/*/; do
  [ -f "$dir/model.onnx" ] || [ -f "$dir/model.path" ] || continue
  name=${dir%/}
  name=${name#"$corpus"/}
  [ -z "$filter" ] || [[ $name =~ $filter ]] || continue
  mkdir -p "$out/out/$name"
  models=$((models + 1))
  for m in "${mode_list[@]}"; do echo "$name $m" >>"$jobs_file"; done
done
[ "$models" -gt 0 ] || { echo "sweep_corpus: no model in $corpus matches '$filter'" >&2; exit 2; }
echo "sweep: $models models x ${#mode_list[@]} modes with $bin, $jobs jobs" >&2

# One batch of runs (arguments: name mode name mode ...); appends manifest lines to a file of
# its own so that parallel batches never interleave.
run_batch() {
  local part=$SWEEP_OUT/.manifest.$BASHPID name mode dir model dst err rc t0 t1
  local -a flags
  while [ $# -ge 2 ]; do
    name=$1 mode=$2
    shift 2
    dir=$SWEEP_CORPUS/$name
    model=$dir/model.onnx
    [ -f "$dir/model.path" ] && model=$(cat "$dir/model.path")
    dst=$SWEEP_OUT/out/$name/$mode.onnx
    err=$SWEEP_OUT/out/$name/$mode.err
    case $mode in
      static_int8) flags=(--static --int8 --calib "$dir/test_data_set_0" --per-channel) ;;
      static_uint8) flags=(--static --uint8 --calib "$dir/test_data_set_0" --per-channel) ;;
      q4_qdq) flags=(--q4 --format qdq) ;;
      *) flags=("--$mode") ;;
    esac
    rc=0
    t0=$EPOCHREALTIME
    timeout -k 5 "$SWEEP_TIMEOUT" "$SWEEP_BIN" "$model" "${flags[@]}" -o "$dst" --force -q \
      >/dev/null 2>"$err" || rc=$?
    t1=$EPOCHREALTIME
    echo "$rc" >"${dst%.onnx}.rc"
    printf '{"model":"%s","mode":"%s","float":"%s","quant":"%s","data":"%s","exit":%d,"stderr":"%s","ms":%d}\n' \
      "$name" "$mode" "$model" "$dst" "$dir/test_data_set_0" "$rc" "$err" \
      $(((${t1/./} - ${t0/./}) / 1000)) >>"$part"
  done
}
export -f run_batch
export SWEEP_OUT=$out SWEEP_CORPUS=$corpus SWEEP_BIN=$bin SWEEP_TIMEOUT=$tool_timeout
tr ' ' '\n' <"$jobs_file" | xargs -d '\n' -P "$jobs" -n 64 bash -c 'run_batch "$@"' _
cat "$out"/.manifest.* >"$out/manifest.jsonl"
rm -f "$out"/.manifest.*
tool_done=$(date +%s%N)
secs() { printf '%d.%d' $((($2 - $1) / 1000000000)) $((($2 - $1) / 100000000 % 10)); }
echo "sweep: $(wc -l <"$out/manifest.jsonl") tool runs in $(secs "$started" "$tool_done") s" >&2

status=0
check=exact
[ -z "$model_list" ] || check=load  # real models on random inputs: loading and running is judged
node "$root/tests/ort/sweep.mjs" --manifest "$out/manifest.jsonl" --summary "$out/summary.json" \
  --results "$out/results.jsonl" --jobs "$jobs" --check "$check" || status=$?
finished=$(date +%s%N)
echo "sweep: total $(secs "$started" "$finished") s (tool runs $(secs "$started" "$tool_done") s, ONNX Runtime $(secs "$tool_done" "$finished") s)"
exit $status
