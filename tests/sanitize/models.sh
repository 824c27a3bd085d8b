#!/usr/bin/env bash
# Every real model (models/, and ../shared/models when it is there) in every mode through the
# ASan + UBSan build: dry runs (nothing written), static INT8 calibrated on synthetic inputs.
# usage: models.sh QUANTIZE_ASAN SOURCE_DIR
set -euo pipefail
quantize=$1 root=$2
here=$(dirname "$0")
if [ ! -x "$quantize" ]; then
  echo "SKIPPED: $quantize is not built (tools/bootstrap.sh --tests builds the ASan + UBSan tree)"
  exit 77
fi
mapfile -t models < <(find "$root/models" "$root/../shared/models" -name '*.onnx' 2>/dev/null |
                      grep -v -e '/test_data' -e '_q4' -e '_int8' -e 'gemma3' | sort)
[ -d "$root/../shared/models" ] ||
  echo "NOTE: ../shared/models is not here: only the models shipped in models/ are checked"
failed=0
for m in "${models[@]}"; do
  for modes in "--q4 --q4f16 --fp16 --int8 --uint8 --q8" \
               "--static --int8 --uint8 --calib random --calib-samples 2"; do
    rc=0
    # shellcheck disable=SC2086
    out=$(bash "$here/run.sh" "$quantize" "$m" $modes --dry-run -q 2>&1) || rc=$?
    # A refusal (exit 2-4) is fine for a model a mode cannot take; an internal error (1), a
    # signal or a sanitizer report is not.
    if [ $rc = 1 ] || [ $rc -gt 7 ] || echo "$out" | grep -q -e 'Sanitizer' -e 'runtime error'; then
      echo "FAILED (exit $rc): $m $modes"
      echo "$out" | head -40
      failed=1
    fi
  done
done
echo "${#models[@]} models checked"
exit $failed
