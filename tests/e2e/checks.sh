# Sourced by the CLI test scripts: fail records a failed check and goes on; finish NAME ends the
# script, exit 1 if any check failed.
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
finish() {
  [ "$failures" = 0 ] && echo "$1: all checks passed"
  exit $((failures > 0))
}
