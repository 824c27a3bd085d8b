#!/usr/bin/env bash
# Hostile input at the command line: each case ends with its documented exit code and a one-line
# message naming the file, leaves nothing in the output folder and the input byte-identical, and
# nothing blocks (special files) or is left half-written (a write that fails, as on a full disk).
# The lies inside models are covered one by one by the unit tests (Hostile.*).
set -uo pipefail
quantize=$1 dir=$2
if [ ! -x "$quantize" ]; then  # the ASan + UBSan build, where it was not built
  echo "SKIPPED: $quantize is not built (tools/bootstrap.sh --tests builds the ASan + UBSan tree)"
  exit 77
fi
rm -rf "$dir" && mkdir -p "$dir/in" "$dir/out"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() {  # check DESCRIPTION EXPECTED_EXIT NAMED COMMAND...: NAMED must be in the message
  local what=$1 want=$2 named=$3
  shift 3
  timeout 60 "$@" >"$dir/stdout.log" 2>"$dir/stderr.log"
  local got=$?
  if [ "$got" != "$want" ]; then
    fail "$what: exit $got, expected $want"; cat "$dir/stderr.log"
  elif [ "$want" != 0 ] && ! grep -qF -- "$named" "$dir/stderr.log"; then
    fail "$what: the message does not name $named"; cat "$dir/stderr.log"
  elif [ "$want" -gt 2 ] && [ "$(grep -c . "$dir/stderr.log")" != 1 ]; then
    fail "$what: not one line"; cat "$dir/stderr.log"
  elif [ -n "$(ls -A "$dir/out")" ]; then
    fail "$what: left $(ls -A "$dir/out") in the output folder"; rm -rf "${dir:?}/out/"*
  else
    echo "ok: $what"
  fi
}
models=$(dirname "$0")/../../models
cp "$models/mnist.onnx" "$dir/in/m.onnx"
sum=$(md5sum <"$dir/in/m.onnx")
head -c 3000 "$dir/in/m.onnx" >"$dir/in/truncated.onnx"
check "truncated model" 3 truncated.onnx "$quantize" "$dir/in/truncated.onnx" --q4 \
  --output-dir "$dir/out"
mkfifo "$dir/in/fifo.onnx"
check "a FIFO as the model (no blocking read)" 3 fifo.onnx "$quantize" "$dir/in/fifo.onnx" --q4 \
  --output-dir "$dir/out"
mkfifo "$dir/in/calib.npy"
check "a FIFO as calibration data" 3 calib.npy "$quantize" "$dir/in/m.onnx" --static --int8 \
  --calib "$dir/in/calib.npy" --output-dir "$dir/out"
# .npy calibration arrays that lie about their shape (MNIST's input is 1x1x28x28 float32).
npy() {  # npy FILE SHAPE DATA_BYTES: a version 1.0 header padded to 64 bytes, then zeros
  local header="{'descr': '<f4', 'fortran_order': False, 'shape': ($2), }"
  while [ $(( (10 + ${#header} + 1) % 64 )) != 0 ]; do header+=" "; done
  { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $(( (${#header} + 1) % 256 )))"
    printf "\\x$(printf %02x $(( (${#header} + 1) / 256 )))"; printf '%s\n' "$header"
    head -c "$3" /dev/zero; } >"$1"
}
npy "$dir/in/good.npy" "2, 1, 1, 28, 28" 6272
check "a well-formed .npy (the helper's own check)" 0 "" "$quantize" "$dir/in/m.onnx" --static \
  --int8 --calib "$dir/in/good.npy" --dry-run --output-dir "$dir/out"
while IFS=: read -r name shape bytes what; do  # each refused, naming the file
  npy "$dir/in/$name" "$shape" "$bytes"
  check "a .npy $what" 3 "$name" "$quantize" "$dir/in/m.onnx" --static --int8 \
    --calib "$dir/in/$name" --output-dir "$dir/out"
done <<'LIES'
negative.npy:-1, 64:256:of shape (-1, 64)
short.npy:2, 1, 1, 28, 28:3000:shorter than its shape
huge.npy:1099511627776, 1099511627776, 64:64:claiming 2^86 bytes
empty.npy:0, 1, 1, 28, 28:0:with no samples
LIES
check "--calib-samples -1" 2 calib-samples "$quantize" "$dir/in/m.onnx" --static --int8 \
  --calib random --calib-samples -1 --output-dir "$dir/out"
# A write that fails part way (file size limit: EFBIG, as ENOSPC on a full disk): exit 4, the path
# named, no partial file.
check "a write that fails" 4 "$dir/out/m_q4f16.onnx" bash -c \
  "trap '' XFSZ; ulimit -f 8; exec \"\$0\" \"\$1\" --q4f16 --output-dir \"\$2\"" \
  "$quantize" "$dir/in/m.onnx" "$dir/out"
[ "$(md5sum <"$dir/in/m.onnx")" = "$sum" ] || fail "the input changed"
if [ $failures -gt 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "all hostile CLI cases pass"
