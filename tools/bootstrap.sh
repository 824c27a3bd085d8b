#!/usr/bin/env bash
# Installs what is missing on a Debian bookworm machine, then configures and builds.
#   tools/bootstrap.sh           the `quantize` command (build/quantize)
#   tools/bootstrap.sh --tests   everything, plus ONNX Runtime for the tests (tests/ort, from npm)
set -euo pipefail
cd "$(dirname "$0")/.."
tests=0
[ "${1:-}" = "--tests" ] && tests=1

packages=(cmake g++ make pkg-config zlib1g-dev libonnx-dev libprotobuf-dev protobuf-compiler libcli11-dev
          libspdlog-dev libfmt-dev libopenblas-dev libgtest-dev libbenchmark-dev nlohmann-json3-dev
          help2man)  # the man page
if [ $tests = 1 ]; then
  packages+=(dpkg-dev file)       # cpack -G DEB, checked by the packaging test
  packages+=(libonnx-testdata)  # ONNX's backend node tests, for the executor and the sweep
  packages+=(clang-format)      # the format check
  if ! { command -v node && command -v npm; } >/dev/null; then packages+=(nodejs npm); fi
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "bootstrap: installing ${missing[*]}"
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
if [ $tests = 1 ]; then
  cmake --build build -j2
  # The same code under ASan + UBSan, for the hostile-input tests (asan_* in ctest).
  cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DQUANTIZE_SANITIZE=ON \
    -DQUANTIZE_BUILD_BENCH=OFF >/dev/null
  cmake --build build/asan -j2 --target quantize unit_tests quantize_fuzz
  # ONNX Runtime 1.30 (CPU library inside the npm package; its install script only downloads
  # GPU extras, so it is skipped), pinned by tests/ort/package-lock.json.
  npm ci --ignore-scripts --no-audit --no-fund --prefix tests/ort >/dev/null
  # Real data for the tests, taken from Debian packages without installing them: scikit-image's
  # sample photos (BSD-3-Clause) for static-quantization calibration and evaluation, and
  # scikit-learn's copy of the UCI handwritten digits (CC BY 4.0) for MNIST.
  fetch() {  # fetch PACKAGE PATH-IN-PACKAGE...: copies the files into build/test-images
    rm -rf build/test-images.tmp && mkdir -p build/test-images.tmp build/test-images
    (cd build/test-images.tmp && apt-get download -qq "$1" 2>/dev/null && dpkg-deb -x "$1"_*.deb x)
    local package=$1
    shift
    for f in "$@"; do cp build/test-images.tmp/x/$f build/test-images/; done
    rm -rf build/test-images.tmp
    echo "bootstrap: test data from $package"
  }
  [ -f build/test-images/astronaut.png ] ||
    fetch python3-skimage 'usr/lib/python3/dist-packages/skimage/data/*.png'
  [ -f build/test-images/digits.csv.gz ] ||
    fetch python3-sklearn usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz
else
  cmake --build build -j2 --target quantize
fi
