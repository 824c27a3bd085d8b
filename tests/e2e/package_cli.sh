#!/usr/bin/env bash
# Install and packaging: `cmake --install` puts the tool, the headers, the CMake package, the man
# page and the bash completion in place; a project outside the repository builds against the
# installed package (find_package(quantize), quantize::quantize) and runs; `cpack -G DEB` makes a
# package that dpkg installs (into a scratch root) and whose `quantize --version` runs.
set -uo pipefail
build=$1 source=$2 dir=$3
rm -rf "$dir" && mkdir -p "$dir"
source "$(dirname "$0")/checks.sh"

prefix=$dir/prefix
cmake --install "$build" --prefix "$prefix" >"$dir/install.txt" 2>&1 || fail "cmake --install"
for f in bin/quantize include/quantize/run.h lib/libquantize_core.a \
  lib/cmake/quantize/quantizeConfig.cmake share/bash-completion/completions/quantize; do
  [ -e "$prefix/$f" ] || fail "$f not installed"
done
if command -v help2man >/dev/null; then
  [ -s "$prefix/share/man/man1/quantize.1" ] || fail "the man page is not installed"
fi
grep -q "^quantize " <<<"$("$prefix/bin/quantize" --version)" || fail "the installed tool does not run"

cmake -S "$source/tests/consumer" -B "$dir/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
  >"$dir/consumer.txt" 2>&1 || fail "configuring a consumer against the installed package"
cmake --build "$dir/consumer" -j2 >>"$dir/consumer.txt" 2>&1 || fail "building the consumer"
"$dir/consumer/consumer" >"$dir/consumer.out" || fail "the consumer failed"
grep -q "matmul_nbits: 37 changed" "$dir/consumer.out" ||
  fail "the consumer's q4 did not quantize the built-in model"

if command -v dpkg-deb >/dev/null && command -v dpkg-shlibdeps >/dev/null; then
  (cd "$dir" && cpack -G DEB --config "$build/CPackConfig.cmake" >"$dir/cpack.txt" 2>&1) ||
    fail "cpack -G DEB"
  deb=$(ls "$dir"/quantize_*.deb 2>/dev/null | head -1)
  if [ -n "$deb" ]; then
    grep -q "Depends:.*libonnx" <<<"$(dpkg-deb -I "$deb")" ||
      fail "the package does not depend on libonnx"
    root=$dir/root
    mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
    touch "$root/var/lib/dpkg/status"
    dpkg --root="$root" --force-not-root --force-depends --force-script-chrootless \
      --log=/dev/null -i "$deb" >"$dir/dpkg.txt" 2>&1 || fail "dpkg -i (scratch root)"
    grep -q "^quantize " <<<"$("$root/usr/bin/quantize" --version)" ||
      fail "quantize --version from the package"
  else
    fail "cpack made no .deb"
  fi
else
  echo "SKIPPED: dpkg-dev is not installed (cpack -G DEB needs dpkg-shlibdeps)"
fi
finish package
