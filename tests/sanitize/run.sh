#!/usr/bin/env bash
# Runs a program of the ASan + UBSan build (build/asan, made by tools/bootstrap.sh --tests) with
# every report fatal. usage: run.sh PROGRAM [ARGS...]
set -euo pipefail
program=$1
shift
if ! command -v "$program" >/dev/null; then
  echo "SKIPPED: $program is not built (tools/bootstrap.sh --tests builds the ASan + UBSan tree)"
  exit 77
fi
export ASAN_OPTIONS=abort_on_error=0:halt_on_error=1:detect_leaks=1:strict_string_checks=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
exec "$program" "$@"
