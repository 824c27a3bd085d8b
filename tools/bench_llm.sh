#!/usr/bin/env bash
# Billion-parameter scale: every mode on a synthetic LLaMA with TinyLlama's shape (1.1B
# parameters, 4.4 GB of external data), page cache warm, next to two floors: reading the files
# (`cat` to /dev/null) and `cp` of them (reading, and writing as many bytes). Reports wall time, user + system CPU time
# and peak RSS per mode, best of three.
#   tools/bench_llm.sh [WORKDIR] [--7b]
# --7b adds a 7B-shaped model (dim 4096, hidden 11008, 32 layers, 27 GB; not for CI), made by
# tools/synth_llama_stream.py, which writes the weights as it draws them (the model is larger
# than this machine's memory). It is run once per mode, each output deleted before the next, and
# the cp floor only when the disk has room for a second copy; the page cache cannot hold it, so
# its runs read from disk.
# Needs a built tree (tools/bootstrap.sh), python3-onnx and python3-numpy (Debian) and
# ../shared/tools/llama2c-to-onnx to generate the models once (cached in WORKDIR; a few minutes
# and, for the 1.1B model, twice its size on disk while generating).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$root/build/bench_llm
seven=0
for a in "$@"; do
  case $a in
    --7b) seven=1 ;;
    *) work=$a ;;
  esac
done
gen=$root/../shared/tools/llama2c-to-onnx
quantize=$root/build/quantize
command -v /usr/bin/time >/dev/null || { echo "bench_llm: needs GNU time (apt-get install time)"; exit 1; }
[ -x "$quantize" ] || { echo "bench_llm: build first (tools/bootstrap.sh)"; exit 1; }
[ -d "$gen" ] || { echo "bench_llm: needs $gen to generate the models"; exit 1; }
mkdir -p "$work"

make_model() {  # make_model NAME ARGS...: NAME/NAME.onnx with external data
  local name=$1
  shift
  [ -s "$work/$name/$name.onnx" ] && return
  echo "generating $name (once) ..." >&2
  mkdir -p "$work/$name"
  /usr/bin/python3 "$gen/gen_synth_checkpoint.py" "$work/$name.bin" "$@" >/dev/null
  /usr/bin/python3 "$gen/build_llama_onnx.py" "$work/$name.bin" "$work/$name/$name.onnx" \
    --external-data >/dev/null
  rm -f "$work/$name.bin"
}

bytes() {  # total size of the files given that exist
  local total=0 f
  for f in "$@"; do [ -f "$f" ] && total=$((total + $(stat -c %s "$f"))); done
  echo $total
}

# best NAME COMMAND...: runs it $runs times, prints the best wall time with its CPU time and RSS.
runs=3
best() {
  local name=$1
  shift
  local best="" line
  for _ in $(seq $runs); do
    /usr/bin/time -f "%e %U %S %M" -o "$work/time.txt" "$@" >/dev/null
    sync  # the written bytes reach the disk outside the timings
    line=$(cat "$work/time.txt")
    if [ -z "$best" ] || awk "BEGIN{exit !(${line%% *} < ${best%% *})}"; then best=$line; fi
  done
  read -r secs user sys kb <<<"$best"
  printf '%-12s %8.2f s %8.2f s %8d MB\n' "$name" "$secs" "$(awk "BEGIN{print $user + $sys}")" \
    $((kb / 1024))
}

bench() {  # bench NAME: the floor, then every mode
  local name=$1 model=$work/$1/$1.onnx out=$work/out
  local files=("$work/$name"/*)
  echo "== $name: $(($(bytes "${files[@]}") / 1000000)) MB in ${#files[@]} file(s), $(nproc) cores"
  cat "${files[@]}" >/dev/null  # page cache warm
  printf '%-12s %10s %10s %11s\n' mode wall cpu "peak RSS"
  rm -rf "$out" && mkdir -p "$out"
  best "read" cat "${files[@]}"
  local size_kb free_kb
  size_kb=$(du -sk "$work/$name" | cut -f1)
  free_kb=$(df -Pk "$work" | awk 'NR == 2 {print $4}')
  if [ "$free_kb" -gt $((size_kb + size_kb / 10)) ]; then
    best "cp" cp -r "$work/$name" "$out/copy"
  else
    echo "cp           skipped: $((free_kb / 1048576)) GB free, the copy needs $((size_kb / 1048576)) GB"
  fi
  rm -rf "$out/copy"
  for mode in q4 q4f16 fp16 int8; do
    best "--$mode" "$quantize" "$model" "--$mode" --output-dir "$out" --force -q
    rm -rf "${out:?}"/*
  done
  # The 4-bit default searches each block's scale; round to nearest is the reference tools' cost.
  best "--q4 rtn" "$quantize" "$model" --q4 --algo rtn --output-dir "$out" --force -q
  rm -rf "$out"
}

make_model tinyllama_shape --dim 2048 --hidden-dim 5632 --n-layers 22 --n-heads 32 --n-kv-heads 4
bench tinyllama_shape
if [ $seven = 1 ]; then
  if [ ! -s "$work/llama7b_shape/llama7b_shape.onnx" ]; then
    echo "generating llama7b_shape (once) ..." >&2
    mkdir -p "$work/llama7b_shape"
    /usr/bin/python3 "$root/tools/synth_llama_stream.py" "$work/llama7b_shape/llama7b_shape.onnx" \
      --dim 4096 --hidden-dim 11008 --n-layers 32 --n-heads 32 --builder "$gen" >/dev/null
  fi
  runs=1
  bench llama7b_shape
fi
