#!/usr/bin/env bash
# Checks that every C++ file of the repository is formatted as .clang-format says (clang-format
# --dry-run -Werror). tools/check_format.sh [--fix] : --fix rewrites the files instead.
# Exit 77 (a skip for ctest) when clang-format is not installed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v clang-format >/dev/null; then
  echo "SKIP: clang-format is not installed (Debian package clang-format)"
  exit 77
fi
mapfile -t files < <(find include src tools tests \( -name '*.cpp' -o -name '*.h' \) \
  -not -path 'tests/ort/node_modules/*' | sort)
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
if clang-format --dry-run -Werror "${files[@]}"; then
  echo "format: ${#files[@]} files as .clang-format says ($(clang-format --version | head -1))"
else
  echo "format: files above differ from .clang-format; tools/check_format.sh --fix rewrites them"
  exit 1
fi
