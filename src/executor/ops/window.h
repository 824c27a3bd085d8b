// Internal: the spatial geometry Conv and the pools share (output sizes, padding, kernel taps)
// and the padded, stride-phase-split planes their 2-D kernels read.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "executor/core/ops.h"

namespace quantize::exec {

// Spatial geometry shared by Conv and pooling: output sizes and the padding before each axis.
struct Window {
  std::vector<int64_t> in, kernel, stride, dilation, pad_begin, out;
  int64_t in_size() const { return product(in); }
  int64_t out_size() const { return product(out); }
  int64_t kernel_size() const { return product(kernel); }
  static int64_t product(const std::vector<int64_t>& v) {
    int64_t p = 1;
    for (int64_t d : v) p *= d;
    return p;
  }
};

inline Window window(const OpContext& c, const std::vector<int64_t>& x_shape,
                     std::vector<int64_t> kernel, bool ceil_mode = false) {
  const size_t n = x_shape.size() - 2;
  Window w;
  w.in.assign(x_shape.begin() + 2, x_shape.end());
  w.kernel = std::move(kernel);
  if (w.kernel.size() != n) c.fail("kernel rank {} for {} spatial axes", w.kernel.size(), n);
  w.stride = c.attr_ints("strides");
  w.dilation = c.attr_ints("dilations");
  if (w.stride.empty()) w.stride.assign(n, 1);
  if (w.dilation.empty()) w.dilation.assign(n, 1);
  std::vector<int64_t> pads = c.attr_ints("pads");
  if (pads.empty()) pads.assign(2 * n, 0);
  if (pads.size() != 2 * n) c.fail("pads has {} values for {} spatial axes", pads.size(), n);
  // Geometry past 2^31 is a file's lie, not a model: refused before it overflows the sums below.
  constexpr int64_t kLimit = int64_t{1} << 31;
  for (int64_t p : pads) {
    if (p < 0) c.fail("negative pads are not supported");
    if (p > kLimit) c.fail("pads of {}", p);
  }
  if (w.stride.size() != n || w.dilation.size() != n)
    c.fail("strides or dilations do not have {} values", n);
  for (size_t i = 0; i < n; ++i) {
    if (w.stride[i] < 1 || w.dilation[i] < 1 || w.kernel[i] < 1)
      c.fail("kernel, strides and dilations must be positive");
    if (w.stride[i] > kLimit || w.dilation[i] > kLimit || w.kernel[i] > kLimit)
      c.fail("kernel, strides or dilations past 2^31");
  }
  const std::string auto_pad = c.attr_string("auto_pad", "NOTSET");
  w.pad_begin.resize(n);
  w.out.resize(n);
  int64_t padded = 1;
  for (size_t i = 0; i < n; ++i) {
    const int64_t extent = (w.kernel[i] - 1) * w.dilation[i] + 1;
    if (extent > kLimit) c.fail("a kernel extent of {}", extent);
    int64_t padded_axis = 0;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      w.out[i] = (w.in[i] + w.stride[i] - 1) / w.stride[i];
      const int64_t total = std::max<int64_t>(0, (w.out[i] - 1) * w.stride[i] + extent - w.in[i]);
      w.pad_begin[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      padded_axis = w.in[i] + total;
    } else {
      if (auto_pad == "VALID")
        pads[i] = pads[i + n] = 0;
      else if (auto_pad != "NOTSET")
        c.fail("auto_pad '{}' is not supported", auto_pad);
      w.pad_begin[i] = pads[i];
      const int64_t span = w.in[i] + pads[i] + pads[i + n] - extent;
      w.out[i] = (ceil_mode ? (span + w.stride[i] - 1) / w.stride[i] : span / w.stride[i]) + 1;
      if (ceil_mode && (w.out[i] - 1) * w.stride[i] >= w.in[i] + pads[i]) --w.out[i];
      padded_axis = w.in[i] + pads[i] + pads[i + n];
    }
    if (padded_axis > kLimit || (padded *= padded_axis) > kLimit)
      c.fail("the padded input has more than 2^31 positions");
    if (w.out[i] < 1)
      c.fail("a kernel of extent {} does not fit spatial axis {} of size {} (pads {}, {})", extent,
             i, w.in[i], w.pad_begin[i], padded_axis - w.in[i] - w.pad_begin[i]);
  }
  return w;
}

// Calls f(out_index, in_offset or -1 when in the padding) for every output position and kernel
// tap, in order: output-major, taps inner.
template <typename F>
void for_each_tap(const Window& w, F f) {
  const size_t n = w.in.size();
  std::vector<int64_t> o(n, 0), k(n, 0);
  for (int64_t out = 0; out < w.out_size(); ++out) {
    std::fill(k.begin(), k.end(), 0);
    for (int64_t tap = 0; tap < w.kernel_size(); ++tap) {
      int64_t offset = 0;
      bool inside = true;
      for (size_t i = 0; i < n; ++i) {
        const int64_t pos = o[i] * w.stride[i] - w.pad_begin[i] + k[i] * w.dilation[i];
        inside &= pos >= 0 && pos < w.in[i];
        offset = offset * w.in[i] + pos;
      }
      f(out, tap, inside ? offset : -1);
      for (size_t i = n; i-- > 0;) {
        if (++k[i] < w.kernel[i]) break;
        k[i] = 0;
      }
    }
    for (size_t i = n; i-- > 0;) {
      if (++o[i] < w.out[i]) break;
      o[i] = 0;
    }
  }
}

// For each output position o and kernel tap t, at [o * taps + t]: the input offset of that tap,
// or -1 in the padding.
inline std::vector<int64_t> tap_offsets(const Window& w) {
  const int64_t taps = w.kernel_size();
  std::vector<int64_t> offsets(static_cast<size_t>(w.out_size() * taps));
  for_each_tap(w, [&](int64_t o, int64_t t, int64_t off) { offsets[o * taps + t] = off; });
  return offsets;
}

inline bool pointwise(const Window& w) {
  for (size_t i = 0; i < w.in.size(); ++i) {
    if (w.kernel[i] != 1 || w.stride[i] != 1 || w.pad_begin[i] != 0 || w.out[i] != w.in[i])
      return false;
  }
  return true;
}

// A 2-D input plane laid out so that every kernel tap reads a contiguous run: the padding is
// made explicit (zeros) and the columns are split by phase modulo the column stride (phase p
// holds padded columns p, p + sx, p + 2 sx, ...). The input that tap (ky, kx) reads for output
// row oy, columns 0 .. ow-1, is then run(oy * sy + ky * dy, kx * dx)[0 .. ow-1].
struct PaddedPlane {
  int64_t rows, width, phases;  // width: columns per phase
  int64_t size() const { return rows * width * phases; }

  explicit PaddedPlane(const Window& w) : phases(w.stride[1]) {
    rows = std::max(w.in[0] + w.pad_begin[0],
                    (w.out[0] - 1) * w.stride[0] + (w.kernel[0] - 1) * w.dilation[0] + 1);
    const int64_t cols =
        std::max(w.in[1] + w.pad_begin[1],
                 (w.out[1] - 1) * w.stride[1] + (w.kernel[1] - 1) * w.dilation[1] + 1);
    width = (cols + phases - 1) / phases;
  }
  // Floats to allocate per plane: size() and 8 more, which vector loops may read past a row's end.
  int64_t allocation() const { return size() + 8; }
  // Copies one input plane into dst, a plane of this layout whose padding already holds the
  // padding value (0 for convolutions and averages, -inf for max pools): the padding is the same
  // for every plane, so one buffer filled once serves plane after plane.
  void fill(const Window& w, const float* in, float* dst) const {
    const int64_t ih = w.in[0], iw = w.in[1], py = w.pad_begin[0], px = w.pad_begin[1];
    for (int64_t iy = 0; iy < ih; ++iy) {
      const float* src = in + iy * iw;
      float* row = dst + (iy + py) * width;
      if (phases == 1) {
        std::memcpy(row + px, src, static_cast<size_t>(iw) * sizeof(float));
        continue;
      }
      if (phases == 2) {  // the common stride 2, in a loop the compiler can vectorize
        float* even = row;
        float* odd = row + rows * width;
        const int64_t e0 = px % 2;  // the first input column landing in an even padded column
        for (int64_t ix = e0, j = (e0 + px) / 2; ix < iw; ix += 2, ++j) even[j] = src[ix];
        for (int64_t ix = 1 - e0, j = (1 - e0 + px) / 2; ix < iw; ix += 2, ++j) odd[j] = src[ix];
        continue;
      }
      for (int64_t p = 0; p < phases; ++p) {  // padded columns p, p + sx, ...: inputs ix = c - px
        float* dst_p = row + p * rows * width;
        int64_t j = 0;  // padded column p + j * phases
        while (p + j * phases < px) ++j;
        for (int64_t ix = p + j * phases - px; ix < iw; ix += phases) dst_p[j++] = src[ix];
      }
    }
  }
  const float* run(const float* plane, int64_t r, int64_t c) const {
    return plane + (c % phases) * rows * width + r * width + c / phases;
  }
};

}  // namespace quantize::exec
