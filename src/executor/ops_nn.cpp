// Convolutional-network ops, float32: Conv (any spatial rank, groups, dilations, pads, auto_pad;
// the GEMM in conv_gemm.cpp), ConvTranspose, the pools, MaxUnpool, the normalizations (Batch,
// Layer, Simplified, Instance, MeanVariance, LRN), SpaceToDepth / DepthToSpace, Resize /
// Upsample, GridSample, RoiAlign.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <type_traits>

#include "model/tensor_data.h"
#include "ops.h"
#include "support/threads.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

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

Window window(const OpContext& c, const std::vector<int64_t>& x_shape, std::vector<int64_t> kernel,
              bool ceil_mode = false) {
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
  for (int64_t p : pads) {
    if (p < 0) c.fail("negative pads are not supported");
  }
  if (w.stride.size() != n || w.dilation.size() != n)
    c.fail("strides or dilations do not have {} values", n);
  for (size_t i = 0; i < n; ++i) {
    if (w.stride[i] < 1 || w.dilation[i] < 1 || w.kernel[i] < 1)
      c.fail("kernel, strides and dilations must be positive");
  }
  const std::string auto_pad = c.attr_string("auto_pad", "NOTSET");
  w.pad_begin.resize(n);
  w.out.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t extent = (w.kernel[i] - 1) * w.dilation[i] + 1;
    if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      w.out[i] = (w.in[i] + w.stride[i] - 1) / w.stride[i];
      const int64_t total = std::max<int64_t>(0, (w.out[i] - 1) * w.stride[i] + extent - w.in[i]);
      w.pad_begin[i] = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      continue;
    }
    if (auto_pad == "VALID")
      pads[i] = pads[i + n] = 0;
    else if (auto_pad != "NOTSET")
      c.fail("auto_pad '{}' is not supported", auto_pad);
    w.pad_begin[i] = pads[i];
    const int64_t span = w.in[i] + pads[i] + pads[i + n] - extent;
    w.out[i] = (ceil_mode ? (span + w.stride[i] - 1) / w.stride[i] : span / w.stride[i]) + 1;
    if (ceil_mode && (w.out[i] - 1) * w.stride[i] >= w.in[i] + pads[i]) --w.out[i];
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
std::vector<int64_t> tap_offsets(const Window& w) {
  const int64_t taps = w.kernel_size();
  std::vector<int64_t> offsets(static_cast<size_t>(w.out_size() * taps));
  for_each_tap(w, [&](int64_t o, int64_t t, int64_t off) { offsets[o * taps + t] = off; });
  return offsets;
}

bool pointwise(const Window& w) {
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

// The im2col rows of one padded input channel for output positions [o0, o0 + n):
// cols[(ky * kw + kx) * n + j] = the input tap (ky, kx) of output position o0 + j reads.
void im2col_2d(const Window& w, const PaddedPlane& layout, const float* plane, int64_t o0,
               int64_t n, float* cols) {
  const int64_t ow = w.out[1];
  for (int64_t ky = 0; ky < w.kernel[0]; ++ky) {
    for (int64_t kx = 0; kx < w.kernel[1]; ++kx) {
      float* row = cols + (ky * w.kernel[1] + kx) * n;
      int64_t oy = o0 / ow, ox = o0 % ow;
      for (int64_t j = 0; j < n; ++oy, ox = 0) {  // one output row's run at a time
        const int64_t run = std::min(ow - ox, n - j);
        const float* src =
            layout.run(plane, oy * w.stride[0] + ky * w.dilation[0], kx * w.dilation[1]);
        std::memcpy(row + j, src + ox, static_cast<size_t>(run) * sizeof(float));
        j += run;
      }
    }
  }
}

typedef float v8 __attribute__((vector_size(32), aligned(4)));  // unaligned 8-float vectors

// A vector of sums finished as a Conv output: + bias (when there is one), then clamped as Clip
// does (x < lo ? lo : x > hi ? hi : x).
__attribute__((always_inline)) inline v8 finish(v8 a, const float* bias, v8 lo, v8 hi) {
  if (bias) a += *bias;
  a = a < lo ? lo : a;
  return a > hi ? hi : a;
}

// One channel of a 2-D depthwise convolution from its padded plane: out[oy][ox] = the sum over
// taps (ky, kx) of k[ky][kx] * input, eight (or 32) outputs at a time kept in registers while
// the taps are summed, in tap order; then finished with the channel's bias and bounds.
QUANTIZE_CLONES
void depthwise_2d(const Window& w, const PaddedPlane& layout, const float* plane, const float* k,
                  const float* bias, float lo, float hi, float* out) {
  const int64_t oh = w.out[0], ow = w.out[1], kh = w.kernel[0], kw = w.kernel[1], taps = kh * kw;
  const v8 vlo = v8{} + lo, vhi = v8{} + hi;
  std::vector<const float*> src(static_cast<size_t>(taps));
  for (int64_t oy = 0; oy < oh; ++oy) {
    for (int64_t ky = 0; ky < kh; ++ky) {
      for (int64_t kx = 0; kx < kw; ++kx) {
        src[ky * kw + kx] =
            layout.run(plane, oy * w.stride[0] + ky * w.dilation[0], kx * w.dilation[1]);
      }
    }
    float* dst = out + oy * ow;
    int64_t ox = 0;
    for (; ox + 32 <= ow; ox += 32) {
      v8 a0 = {}, a1 = {}, a2 = {}, a3 = {};
      for (int64_t t = 0; t < taps; ++t) {
        const float* p = src[t] + ox;
        const float kv = k[t];
        a0 += kv * *reinterpret_cast<const v8*>(p), a1 += kv * *reinterpret_cast<const v8*>(p + 8);
        a2 += kv * *reinterpret_cast<const v8*>(p + 16),
            a3 += kv * *reinterpret_cast<const v8*>(p + 24);
      }
      *reinterpret_cast<v8*>(dst + ox) = finish(a0, bias, vlo, vhi);
      *reinterpret_cast<v8*>(dst + ox + 8) = finish(a1, bias, vlo, vhi);
      *reinterpret_cast<v8*>(dst + ox + 16) = finish(a2, bias, vlo, vhi);
      *reinterpret_cast<v8*>(dst + ox + 24) = finish(a3, bias, vlo, vhi);
    }
    for (; ox + 8 <= ow; ox += 8) {
      v8 a = {};
      for (int64_t t = 0; t < taps; ++t) a += k[t] * *reinterpret_cast<const v8*>(src[t] + ox);
      *reinterpret_cast<v8*>(dst + ox) = finish(a, bias, vlo, vhi);
    }
    if (ox < ow) {  // the last few: a whole vector, of which the row's part is kept
      v8 a = {};
      for (int64_t t = 0; t < taps; ++t) a += k[t] * *reinterpret_cast<const v8*>(src[t] + ox);
      a = finish(a, bias, vlo, vhi);
      float part[8];
      std::memcpy(part, &a, sizeof part);
      std::copy(part, part + (ow - ox), dst + ox);
    }
  }
}

// The geometry of a Conv of x [N, C, spatial...] by w [M, C/group, kernel...].
struct ConvShape {
  int64_t batch, channels, filters, group, cg, mg;  // cg, mg: input, output channels per group
  Window w;
  std::vector<int64_t> out;  // [N, M, spatial out...]
  int64_t taps() const { return w.kernel_size(); }
  int64_t rows() const { return cg * taps(); }  // of the column matrix
};

ConvShape conv_shape(const OpContext& c, const std::vector<int64_t>& x_shape,
                     const std::vector<int64_t>& w_shape) {
  if (x_shape.size() < 3) c.fail("X must have spatial axes");
  if (w_shape.size() != x_shape.size())
    c.fail("W has rank {}, X rank {}", w_shape.size(), x_shape.size());
  ConvShape s;
  s.batch = x_shape[0], s.channels = x_shape[1], s.filters = w_shape[0];
  s.group = c.attr_int("group", 1);
  if (s.group < 1) c.fail("group {} is not valid", s.group);
  s.cg = s.channels / s.group, s.mg = s.filters / s.group;
  if (s.cg * s.group != s.channels || s.mg * s.group != s.filters || w_shape[1] != s.cg) {
    c.fail("channels do not match W and group");
  }
  std::vector<int64_t> kernel = c.attr_ints("kernel_shape");
  if (kernel.empty()) kernel.assign(w_shape.begin() + 2, w_shape.end());
  s.w = window(c, x_shape, kernel);
  s.out = {s.batch, s.filters};
  s.out.insert(s.out.end(), s.w.out.begin(), s.w.out.end());
  return s;
}

// What a float Conv does to each output channel after its sums: + bias[m], then the fused
// Relu/Clip bounds.
struct Epilogue {
  const float* bias = nullptr;
  float lo = -std::numeric_limits<float>::infinity(), hi = std::numeric_limits<float>::infinity();
};

// Float Conv: 1x1 convolutions as one GEMM on X itself, 2-D depthwise ones directly, the rest as
// im2col + GEMM in tiles of output positions. Each block gets its bias and bounds on the thread
// that computed it, while it is in cache.
void conv_float(const ConvShape& s, const float* x, const float* weight, const Epilogue& e,
                float* out) {
  const Window& w = s.w;
  const int64_t taps = s.taps(), spatial = w.out_size(), rows = s.rows();
  // Convolutions under ~1M multiply-adds run on the calling thread: waking the pool would cost
  // more than it saves (MNIST's are 0.2M-0.6M).
  const bool small = s.batch * s.filters * spatial * s.cg * taps < (1 << 20);
  auto grain = [small](int64_t n) {
    return small ? static_cast<size_t>(std::max<int64_t>(n, 1)) : size_t{1};
  };
  if (pointwise(w)) {  // X [cg, spatial] per (image, group) is the column matrix
    const int64_t block =
        s.mg * s.cg * spatial >= (1 << 18) && spatial >= 64
            ? std::max<int64_t>(32, (spatial / (4 * thread_count()) + 15) / 16 * 16)
            : spatial;
    const int64_t blocks = (spatial + block - 1) / block;
    for (int64_t b = 0; b < s.batch; ++b) {
      for (int64_t g = 0; g < s.group; ++g) {
        const float* in = x + (b * s.channels + g * s.cg) * spatial;
        float* y = out + (b * s.filters + g * s.mg) * spatial;
        parallel_for(static_cast<size_t>(blocks), grain(blocks), [&](size_t b0, size_t b1) {
          for (size_t blk = b0; blk < b1; ++blk) {
            const int64_t j0 = static_cast<int64_t>(blk) * block, n = std::min(block, spatial - j0);
            conv_gemm(s.mg, n, s.cg, weight + g * s.mg * s.cg, in + j0, spatial, y + j0, spatial,
                      e.bias ? e.bias + g * s.mg : nullptr, e.lo, e.hi);
          }
        });
      }
    }
    return;
  }
  if (s.cg == 1 && s.mg == 1 && w.in.size() == 2) {  // depthwise 2-D: one channel per task
    const PaddedPlane layout(w);
    parallel_for(static_cast<size_t>(s.batch * s.channels), grain(s.batch * s.channels),
                 [&](size_t c0, size_t c1) {
                   std::vector<float> plane(static_cast<size_t>(layout.allocation()));
                   for (size_t bc = c0; bc < c1; ++bc) {
                     const int64_t ch = static_cast<int64_t>(bc) % s.channels;
                     float* y = out + bc * spatial;
                     layout.fill(w, x + bc * w.in_size(), plane.data());
                     depthwise_2d(w, layout, plane.data(), weight + ch * taps,
                                  e.bias ? e.bias + ch : nullptr, e.lo, e.hi, y);
                   }
                 });
    return;
  }
  // Tiles of output positions, each built and multiplied by one thread, so the column matrix
  // stays in cache instead of taking rows x spatial floats of memory.
  // 2-D inputs are first laid out padded (PaddedPlane), so the column matrix is built by copies.
  const bool two_d = w.in.size() == 2;
  const std::vector<int64_t> offsets = two_d ? std::vector<int64_t>{} : tap_offsets(w);
  const std::optional<PaddedPlane> layout = two_d ? std::optional<PaddedPlane>(w) : std::nullopt;
  std::vector<float> padded(two_d ? static_cast<size_t>(layout->size() * s.cg + 8) : 0);
  const int64_t tile =
      std::max<int64_t>(64, std::min<int64_t>(spatial, (1 << 16) / std::max<int64_t>(rows, 1)));
  const int64_t tiles = (spatial + tile - 1) / tile;
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t g = 0; g < s.group; ++g) {
      const float* in = x + (b * s.channels + g * s.cg) * w.in_size();
      float* y = out + (b * s.filters + g * s.mg) * spatial;
      if (two_d) {
        parallel_for(static_cast<size_t>(s.cg), grain(s.cg), [&](size_t c0, size_t c1) {
          for (size_t ch = c0; ch < c1; ++ch)
            layout->fill(w, in + ch * w.in_size(), padded.data() + ch * layout->size());
        });
      }
      parallel_for(static_cast<size_t>(tiles), grain(tiles), [&](size_t t0, size_t t1) {
        std::vector<float> cols(static_cast<size_t>(rows * tile));
        for (size_t ti = t0; ti < t1; ++ti) {
          const int64_t o0 = static_cast<int64_t>(ti) * tile, n = std::min(tile, spatial - o0);
          for (int64_t ch = 0; ch < s.cg; ++ch) {
            if (two_d) {
              im2col_2d(w, *layout, padded.data() + ch * layout->size(), o0, n,
                        cols.data() + ch * taps * n);
              continue;
            }
            const float* src = in + ch * w.in_size();
            for (int64_t t = 0; t < taps; ++t) {
              float* row = cols.data() + (ch * taps + t) * n;
              const int64_t* off = offsets.data() + o0 * taps + t;
              for (int64_t o = 0; o < n; ++o)
                row[o] = off[o * taps] < 0 ? 0.0f : src[off[o * taps]];
            }
          }
          conv_gemm(s.mg, n, rows, weight + g * s.mg * rows, cols.data(), n, y + o0, spatial,
                    e.bias ? e.bias + g * s.mg : nullptr, e.lo, e.hi);
        }
      });
    }
  }
}

}  // namespace

// Convolution of integer operands (ConvInteger, QLinearConv, zero points already removed),
// accumulated exactly in T: the whole column matrix, output channels on threads.
template <typename T>
std::vector<T> convolve(const OpContext& c, const std::vector<int64_t>& x_shape, const T* x,
                        const std::vector<int64_t>& w_shape, const T* weight,
                        std::vector<int64_t>& out_shape) {
  const ConvShape s = conv_shape(c, x_shape, w_shape);
  const Window& w = s.w;
  out_shape = s.out;
  const int64_t taps = s.taps(), spatial = w.out_size(), rows = s.rows();
  std::vector<T> out(static_cast<size_t>(s.batch * s.filters * spatial));
  const std::vector<int64_t> offsets = tap_offsets(w);
  std::vector<T> cols(static_cast<size_t>(rows * spatial));
  for (int64_t b = 0; b < s.batch; ++b) {
    for (int64_t g = 0; g < s.group; ++g) {
      const T* in = x + (b * s.channels + g * s.cg) * w.in_size();
      parallel_for(static_cast<size_t>(s.cg), std::max<size_t>(1, 65536 / (taps * spatial + 1)),
                   [&](size_t c0, size_t c1) {
                     for (size_t ch = c0; ch < c1; ++ch) {
                       for (int64_t t = 0; t < taps; ++t) {
                         T* row = cols.data() + (ch * taps + t) * spatial;
                         for (int64_t o = 0; o < spatial; ++o) {
                           const int64_t off = offsets[o * taps + t];
                           row[o] = off < 0 ? T(0) : in[ch * w.in_size() + off];
                         }
                       }
                     }
                   });
      const T* wg = weight + g * s.mg * rows;
      T* y = out.data() + (b * s.filters + g * s.mg) * spatial;
      parallel_for(static_cast<size_t>(s.mg), 4, [&](size_t m0, size_t m1) {
        for (size_t m = m0; m < m1; ++m) {
          T* dst = y + m * spatial;
          for (int64_t r = 0; r < rows; ++r) {
            const T wv = wg[m * rows + r];
            const T* src = cols.data() + r * spatial;
            for (int64_t o = 0; o < spatial; ++o) dst[o] += wv * src[o];
          }
        }
      });
    }
  }
  return out;
}

template std::vector<int32_t> convolve(const OpContext&, const std::vector<int64_t>&,
                                       const int32_t*, const std::vector<int64_t>&, const int32_t*,
                                       std::vector<int64_t>&);

namespace {

void conv(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& weight = c.input(1);
  require_float(c, x, "X");
  require_float(c, weight, "W");
  const ConvShape s = conv_shape(c, x.shape(), weight.shape());
  Epilogue e;
  if (c.has_input(2)) {
    const Tensor& bias = c.input(2);
    require_float(c, bias, "B");
    if (bias.size() != s.filters)
      c.fail("B has {} values for {} output channels", bias.size(), s.filters);
    e.bias = bias.data<float>();
  }
  if (c.fused) e.lo = c.fused->lo, e.hi = c.fused->hi;
  Tensor out(TensorProto::FLOAT, s.out, Tensor::Uninitialized{});
  conv_float(s, x.data<float>(), weight.data<float>(), e, out.data<float>());
  c.output(0) = std::move(out);
}

// One plane of a 2-D max or average pool from its padded plane: each output row takes its taps'
// runs in tap order (the max, or the sum divided by valid_y[oy] * valid_x[ox] or, when valid_y
// is null, by the kernel size).
template <bool kMax>
QUANTIZE_CLONES_NO_FMA void pool_2d(const Window& w, const PaddedPlane& layout, const float* plane,
                                    const float* valid_y, const float* valid_x, float* out) {
  const int64_t oh = w.out[0], ow = w.out[1];
  for (int64_t oy = 0; oy < oh; ++oy) {
    float* __restrict dst = out + oy * ow;
    std::fill(dst, dst + ow, kMax ? -std::numeric_limits<float>::infinity() : 0.0f);
    for (int64_t ky = 0; ky < w.kernel[0]; ++ky) {
      for (int64_t kx = 0; kx < w.kernel[1]; ++kx) {
        const float* __restrict src =
            layout.run(plane, oy * w.stride[0] + ky * w.dilation[0], kx * w.dilation[1]);
        for (int64_t ox = 0; ox < ow; ++ox)
          dst[ox] = kMax ? (dst[ox] < src[ox] ? src[ox] : dst[ox]) : dst[ox] + src[ox];
      }
    }
    if (kMax) continue;
    if (valid_y) {
      for (int64_t ox = 0; ox < ow; ++ox) dst[ox] /= valid_y[oy] * valid_x[ox];
    } else {
      const float taps = static_cast<float>(w.kernel_size());
      for (int64_t ox = 0; ox < ow; ++ox) dst[ox] /= taps;
    }
  }
}

// MaxPool of any ordered type, with the Indices output: the flat index into X of each maximum
// (the first one on ties), spatial axes in row-major order, or column-major with
// storage_order = 1.
template <typename T>
void max_pool_indexed(OpContext& c, const Window& w, std::vector<int64_t> shape) {
  const Tensor& x = c.input(0);
  const bool column_major = c.attr_int("storage_order", 0) != 0;
  Tensor out(x.dtype(), shape), indices(TensorProto::INT64, shape);
  const std::vector<int64_t> offsets = tap_offsets(w);
  const int64_t planes = x.shape()[0] * x.shape()[1], taps = w.kernel_size();
  std::vector<int64_t> at;
  for (int64_t p = 0; p < planes; ++p) {
    const T* in = x.data<T>() + p * w.in_size();
    for (int64_t o = 0; o < w.out_size(); ++o) {
      int64_t best = -1;
      for (int64_t t = 0; t < taps; ++t) {
        const int64_t off = offsets[o * taps + t];
        if (off >= 0 && (best < 0 || in[off] > in[best])) best = off;
      }
      if (best < 0) c.fail("a window lies wholly in the padding");
      out.data<T>()[p * w.out_size() + o] = in[best];
      int64_t flat = best;
      if (column_major) {
        unflatten(best, w.in, at);
        flat = 0;
        for (size_t i = at.size(); i-- > 0;) flat = flat * w.in[i] + at[i];
      }
      indices.data<int64_t>()[p * w.out_size() + o] = p * w.in_size() + flat;
    }
  }
  c.output(0) = std::move(out);
  if (c.output_count() > 1) c.output(1) = std::move(indices);
}

// MaxUnpool: zeros of the pooled-from shape (from the attributes), X's values written at the
// flat positions of I. With output_shape, the same positions in that (larger) shape.
void max_unpool(OpContext& c) {
  const Tensor& x = c.input(0);
  const auto where = c.input(1).to_int64();
  if (x.rank() < 3) c.fail("X must have spatial axes");
  if (c.input(1).size() != x.size()) c.fail("I and X differ in size");
  const auto kernel = c.attr_ints("kernel_shape");
  auto strides = c.attr_ints("strides"), pads = c.attr_ints("pads");
  const size_t n = x.shape().size() - 2;
  if (kernel.size() != n)
    c.fail("kernel_shape has {} values for {} spatial axes", kernel.size(), n);
  if (strides.empty()) strides.assign(n, 1);
  if (pads.empty()) pads.assign(2 * n, 0);
  std::vector<int64_t> pooled{x.shape()[0], x.shape()[1]};
  for (size_t i = 0; i < n; ++i)
    pooled.push_back((x.shape()[i + 2] - 1) * strides[i] - pads[i] - pads[i + n] + kernel[i]);
  const std::vector<int64_t> shape = c.has_input(2) ? c.input(2).to_int64() : pooled;
  if (shape.size() != pooled.size())
    c.fail("output_shape has rank {}, X {}", shape.size(), pooled.size());
  Tensor out(x.dtype(), shape);
  const size_t size = element_size(x.dtype());
  const auto st = strides_of(shape);
  std::vector<int64_t> at;
  int64_t pooled_size = 1;
  for (int64_t d : pooled) pooled_size *= d;
  for (int64_t i = 0; i < x.size(); ++i) {
    if (where[i] < 0 || where[i] >= pooled_size)
      c.fail("index {} is outside the pooled-from shape", where[i]);
    unflatten(where[i], pooled, at);
    int64_t flat = 0;
    for (size_t d = 0; d < at.size(); ++d) {
      if (at[d] >= shape[d]) c.fail("index {} is outside output_shape", where[i]);
      flat += at[d] * st[d];
    }
    std::memcpy(out.raw() + flat * size, x.raw() + i * size, size);
  }
  c.output(0) = std::move(out);
}

template <bool kMax>
void pool(OpContext& c) {
  const Tensor& x = c.input(0);
  if (kMax && (c.output_count() > 1 || x.dtype() != TensorProto::FLOAT)) {
    if (x.rank() < 3) c.fail("X must have spatial axes");
    const Window w =
        window(c, x.shape(), c.attr_ints("kernel_shape"), c.attr_int("ceil_mode", 0) != 0);
    std::vector<int64_t> shape{x.shape()[0], x.shape()[1]};
    shape.insert(shape.end(), w.out.begin(), w.out.end());
    switch (x.dtype()) {
      case TensorProto::FLOAT:
        return max_pool_indexed<float>(c, w, shape);
      case TensorProto::DOUBLE:
        return max_pool_indexed<double>(c, w, shape);
      case TensorProto::INT8:
        return max_pool_indexed<int8_t>(c, w, shape);
      case TensorProto::UINT8:
        return max_pool_indexed<uint8_t>(c, w, shape);
      default:
        c.fail("X is data type {}: MaxPool takes float32, float64, int8 and uint8", x.dtype());
    }
  }
  require_float(c, x, "X");
  const Window w =
      window(c, x.shape(), c.attr_ints("kernel_shape"), c.attr_int("ceil_mode", 0) != 0);
  const bool count_pad = c.attr_int("count_include_pad", 0) != 0;
  std::vector<int64_t> shape{x.shape()[0], x.shape()[1]};
  shape.insert(shape.end(), w.out.begin(), w.out.end());
  Tensor out(TensorProto::FLOAT, shape);
  const int64_t planes = x.shape()[0] * x.shape()[1];
  // Pools under ~64K window reads run on the calling thread.
  const size_t grain = planes * w.out_size() * w.kernel_size() < (1 << 16)
                           ? static_cast<size_t>(std::max<int64_t>(planes, 1))
                           : 1;
  if (w.in.size() == 2) {  // from padded planes: -inf around a max pool, 0 around an average
    const PaddedPlane layout(w);
    // Per axis, the taps of each output position that fall inside the input: the divisor of an
    // average without count_include_pad is their product.
    std::vector<float> valid_y(static_cast<size_t>(w.out[0])),
        valid_x(static_cast<size_t>(w.out[1]));
    for (int a = 0; a < 2; ++a) {
      auto& valid = a == 0 ? valid_y : valid_x;
      for (int64_t o = 0; o < w.out[a]; ++o) {
        int64_t n = 0;
        for (int64_t k = 0; k < w.kernel[a]; ++k) {
          const int64_t pos = o * w.stride[a] - w.pad_begin[a] + k * w.dilation[a];
          n += pos >= 0 && pos < w.in[a];
        }
        valid[o] = static_cast<float>(n);
      }
    }
    parallel_for(static_cast<size_t>(planes), grain, [&](size_t p0, size_t p1) {
      std::vector<float> plane(static_cast<size_t>(layout.allocation()),
                               kMax ? -std::numeric_limits<float>::infinity() : 0.0f);
      for (size_t p = p0; p < p1; ++p) {
        layout.fill(w, x.data<float>() + p * w.in_size(), plane.data());
        pool_2d<kMax>(w, layout, plane.data(), count_pad ? nullptr : valid_y.data(), valid_x.data(),
                      out.data<float>() + p * w.out_size());
      }
    });
    c.output(0) = std::move(out);
    return;
  }
  const std::vector<int64_t> offsets = tap_offsets(w);
  parallel_for(static_cast<size_t>(planes), grain, [&](size_t p0, size_t p1) {
    for (size_t p = p0; p < p1; ++p) {
      const float* in = x.data<float>() + p * w.in_size();
      float* y = out.data<float>() + p * w.out_size();
      for (int64_t o = 0; o < w.out_size(); ++o) {
        float acc = kMax ? -std::numeric_limits<float>::infinity() : 0.0f;
        int64_t n = 0;
        for (int64_t t = 0; t < w.kernel_size(); ++t) {
          const int64_t off = offsets[o * w.kernel_size() + t];
          if (off < 0) continue;
          acc = kMax ? std::max(acc, in[off]) : acc + in[off];
          ++n;
        }
        y[o] =
            kMax ? acc
                 : acc / static_cast<float>(count_pad ? w.kernel_size() : std::max<int64_t>(n, 1));
      }
    }
  });
  c.output(0) = std::move(out);
}

template <bool kMax>
void global_pool(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "X");
  std::vector<int64_t> shape = x.shape();
  int64_t size = 1;
  for (size_t i = 2; i < shape.size(); ++i) {
    size *= shape[i];
    shape[i] = 1;
  }
  Tensor out(TensorProto::FLOAT, shape);
  for (int64_t p = 0; p < out.size(); ++p) {
    const float* in = x.data<float>() + p * size;
    float acc = kMax ? -std::numeric_limits<float>::infinity() : 0.0f;
    for (int64_t i = 0; i < size; ++i) acc = kMax ? std::max(acc, in[i]) : acc + in[i];
    out.data<float>()[p] = kMax ? acc : acc / static_cast<float>(size);
  }
  c.output(0) = std::move(out);
}

// LayerNormalization: over axes [axis, rank) of X, y = (x - mean) / sqrt(var + epsilon) * Scale
// (+ B); Mean and InvStdDev outputs with those axes kept as 1. Statistics in double.
// SimplifiedLayerNormalization (ONNX Runtime's RMS norm, kSimplified): no mean taken, var the
// mean square; outputs Y and InvStdDev.
template <bool kSimplified>
void layer_norm(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& scale = c.input(1);
  require_float(c, x, "X");
  require_float(c, scale, "Scale");
  const int64_t axis = normalize_axis(c, c.attr_int("axis", -1), x.rank());
  const double epsilon = c.attr_float("epsilon", 1e-5f);
  std::vector<int64_t> norm_shape(x.shape().begin() + axis, x.shape().end()),
      stat_shape = x.shape();
  int64_t outer = 1, len = 1;
  for (int64_t i = 0; i < x.rank(); ++i) {
    if (i < axis)
      outer *= x.shape()[i];
    else
      len *= x.shape()[i], stat_shape[i] = 1;
  }
  const auto scale_at = broadcast_offsets(scale.shape(), norm_shape);
  std::vector<int64_t> bias_at;
  if (c.has_input(2)) {
    require_float(c, c.input(2), "B");
    bias_at = broadcast_offsets(c.input(2).shape(), norm_shape);
  }
  Tensor y(TensorProto::FLOAT, x.shape()), mean_out(TensorProto::FLOAT, stat_shape),
      inv_out(TensorProto::FLOAT, stat_shape);
  for (int64_t o = 0; o < outer; ++o) {
    const float* px = x.data<float>() + o * len;
    double mean = 0, var = 0;
    if (!kSimplified) {
      for (int64_t i = 0; i < len; ++i) mean += px[i];
      mean /= static_cast<double>(len);
    }
    for (int64_t i = 0; i < len; ++i) var += (px[i] - mean) * (px[i] - mean);
    const double inv = 1.0 / std::sqrt(var / static_cast<double>(len) + epsilon);
    float* py = y.data<float>() + o * len;
    for (int64_t i = 0; i < len; ++i) {
      double v = (px[i] - mean) * inv * scale.data<float>()[scale_at[i]];
      if (!bias_at.empty()) v += c.input(2).data<float>()[bias_at[i]];
      py[i] = static_cast<float>(v);
    }
    mean_out.data<float>()[o] = static_cast<float>(mean);
    inv_out.data<float>()[o] = static_cast<float>(inv);
  }
  c.output(0) = std::move(y);
  if (kSimplified) {
    if (c.output_count() > 1) c.output(1) = std::move(inv_out);
    return;
  }
  if (c.output_count() > 1) c.output(1) = std::move(mean_out);
  if (c.output_count() > 2) c.output(2) = std::move(inv_out);
}

// ConvTranspose: every input element scattered through the kernel, out[n, m, p * stride + k *
// dilation - pad_begin] += x[n, c, p] * W[c, m - group offset, k]; + B[m].
void conv_transpose(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& weight = c.input(1);
  require_float(c, x, "X");
  require_float(c, weight, "W");
  const int64_t n = x.rank() - 2;
  if (n < 1) c.fail("X must have spatial axes");
  const int64_t batch = x.shape()[0], channels = x.shape()[1];
  const int64_t group = c.attr_int("group", 1), cg = channels / group;
  const int64_t mg = weight.shape()[1], filters = mg * group;
  if (weight.shape()[0] != channels || cg * group != channels)
    c.fail("channels do not match W and group");
  std::vector<int64_t> kernel = c.attr_ints("kernel_shape");
  if (kernel.empty()) kernel.assign(weight.shape().begin() + 2, weight.shape().end());
  std::vector<int64_t> stride = c.attr_ints("strides"), dilation = c.attr_ints("dilations"),
                       pads = c.attr_ints("pads"), out_pad = c.attr_ints("output_padding"),
                       out_shape_attr = c.attr_ints("output_shape");
  if (stride.empty()) stride.assign(n, 1);
  if (dilation.empty()) dilation.assign(n, 1);
  if (out_pad.empty()) out_pad.assign(n, 0);
  if (pads.empty()) pads.assign(2 * n, 0);
  const std::string auto_pad = c.attr_string("auto_pad", "NOTSET");
  std::vector<int64_t> in(x.shape().begin() + 2, x.shape().end()), out(n), pad_begin(n);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t extent = (kernel[i] - 1) * dilation[i] + 1;
    const int64_t full = stride[i] * (in[i] - 1) + out_pad[i] + extent;
    if (!out_shape_attr.empty() || auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
      out[i] = !out_shape_attr.empty() ? out_shape_attr[out_shape_attr.size() - n + i]
                                       : in[i] * stride[i];
      const int64_t total = full - out[i];  // may be negative: the output gets zeros at the end
      const int64_t half = total >= 0 ? total / 2 : -((-total + 1) / 2);  // floor(total / 2)
      pad_begin[i] = auto_pad == "SAME_UPPER" ? half : total - half;
    } else {
      if (auto_pad != "NOTSET" && auto_pad != "VALID")
        c.fail("auto_pad '{}' is not supported", auto_pad);
      if (auto_pad == "VALID") pads[i] = pads[i + n] = 0;
      pad_begin[i] = pads[i];
      out[i] = full - pads[i] - pads[i + n];
    }
  }
  std::vector<int64_t> shape{batch, filters};
  shape.insert(shape.end(), out.begin(), out.end());
  Tensor y(TensorProto::FLOAT, shape);
  int64_t in_size = 1, out_size = 1, taps = 1;
  for (int64_t i = 0; i < n; ++i) in_size *= in[i], out_size *= out[i], taps *= kernel[i];
  // For every (input position, tap): the output offset, or -1 outside.
  std::vector<int64_t> target(static_cast<size_t>(in_size * taps));
  std::vector<int64_t> p(n, 0), k(n, 0);
  for (int64_t ip = 0; ip < in_size; ++ip) {
    std::fill(k.begin(), k.end(), 0);
    for (int64_t t = 0; t < taps; ++t) {
      int64_t off = 0;
      bool inside = true;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t pos = p[i] * stride[i] + k[i] * dilation[i] - pad_begin[i];
        inside &= pos >= 0 && pos < out[i];
        off = off * out[i] + pos;
      }
      target[ip * taps + t] = inside ? off : -1;
      for (int64_t i = n; i-- > 0;) {
        if (++k[i] < kernel[i]) break;
        k[i] = 0;
      }
    }
    for (int64_t i = n; i-- > 0;) {
      if (++p[i] < in[i]) break;
      p[i] = 0;
    }
  }
  const float* px = x.data<float>();
  const float* pw = weight.data<float>();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t g = 0; g < group; ++g) {
      for (int64_t m = 0; m < mg; ++m) {
        float* dst = y.data<float>() + (b * filters + g * mg + m) * out_size;
        for (int64_t ch = g * cg; ch < (g + 1) * cg; ++ch) {
          const float* src = px + (b * channels + ch) * in_size;
          const float* wk = pw + (ch * mg + m) * taps;
          for (int64_t ip = 0; ip < in_size; ++ip) {
            for (int64_t t = 0; t < taps; ++t) {
              const int64_t off = target[ip * taps + t];
              if (off >= 0) dst[off] += src[ip] * wk[t];
            }
          }
        }
        if (c.has_input(2)) {
          const float bias = c.input(2).data<float>()[g * mg + m];
          for (int64_t o = 0; o < out_size; ++o) dst[o] += bias;
        }
      }
    }
  }
  c.output(0) = std::move(y);
}

// SpaceToDepth: [N, C, H, W] -> [N, C * b * b, H / b, W / b], blocks (by, bx) as channel groups.
void space_to_depth(OpContext& c) {
  const Tensor& x = c.input(0);
  const int64_t b = c.attr_int("blocksize", 0);
  if (x.rank() != 4 || b <= 0 || x.shape()[2] % b || x.shape()[3] % b)
    c.fail("needs a 4-D input divisible by blocksize");
  const int64_t n = x.shape()[0], ch = x.shape()[1], h = x.shape()[2] / b, w = x.shape()[3] / b;
  Tensor y(x.dtype(), {n, ch * b * b, h, w});
  const size_t size = element_size(x.dtype());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t by = 0; by < b; ++by)
      for (int64_t bx = 0; bx < b; ++bx)
        for (int64_t cc = 0; cc < ch; ++cc)
          for (int64_t yy = 0; yy < h; ++yy)
            for (int64_t xx = 0; xx < w; ++xx) {
              const int64_t oc = (by * b + bx) * ch + cc;
              const int64_t src = ((i * ch + cc) * h * b + yy * b + by) * w * b + xx * b + bx;
              const int64_t dst = ((i * ch * b * b + oc) * h + yy) * w + xx;
              std::memcpy(y.raw() + dst * size, x.raw() + src * size, size);
            }
  c.output(0) = std::move(y);
}

// InstanceNormalization: per (image, channel) over the spatial axes, y = (x - mean) /
// sqrt(var + epsilon) * scale[c] + B[c]. MeanVarianceNormalization: over `axes` (default 0, 2,
// 3), y = (x - mean) / sqrt(var + 1e-9), as ONNX's function body defines it. Statistics in
// double.
void normalize_groups(const OpContext& c, const Tensor& x, const std::vector<int64_t>& axes,
                      double epsilon, const float* scale, const float* bias, Tensor& y) {
  std::vector<bool> reduced(static_cast<size_t>(x.rank()), false);
  for (int64_t a : axes) reduced[normalize_axis(c, a, x.rank())] = true;
  // Each element's group: its index with the reduced axes dropped.
  std::vector<int64_t> group_shape, index;
  for (int64_t i = 0; i < x.rank(); ++i) group_shape.push_back(reduced[i] ? 1 : x.shape()[i]);
  const auto gst = strides_of(group_shape);
  int64_t groups = 1;
  for (int64_t d : group_shape) groups *= d;
  std::vector<double> sum(static_cast<size_t>(groups)), sq(static_cast<size_t>(groups));
  std::vector<int64_t> group_of(static_cast<size_t>(x.size()));
  for (int64_t e = 0; e < x.size(); ++e) {
    unflatten(e, x.shape(), index);
    int64_t g = 0;
    for (int64_t i = 0; i < x.rank(); ++i) g += (reduced[i] ? 0 : index[i]) * gst[i];
    group_of[e] = g;
    sum[g] += x.data<float>()[e];
  }
  const double count =
      static_cast<double>(x.size()) / static_cast<double>(std::max<int64_t>(groups, 1));
  for (int64_t e = 0; e < x.size(); ++e) {
    const double d = x.data<float>()[e] - sum[group_of[e]] / count;
    sq[group_of[e]] += d * d;
  }
  const int64_t channel_stride = x.rank() > 1 ? strides_of(x.shape())[1] : 1;
  const int64_t channels = x.rank() > 1 ? x.shape()[1] : 1;
  for (int64_t e = 0; e < x.size(); ++e) {
    const int64_t g = group_of[e];
    const int64_t ch = (e / channel_stride) % channels;
    double v = (x.data<float>()[e] - sum[g] / count) / std::sqrt(sq[g] / count + epsilon);
    if (scale) v = v * scale[ch] + bias[ch];
    y.data<float>()[e] = static_cast<float>(v);
  }
}

void instance_norm(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "input");
  require_float(c, c.input(1), "scale");
  require_float(c, c.input(2), "B");
  if (x.rank() < 3) c.fail("input must have spatial axes");
  if (c.input(1).size() != x.shape()[1] || c.input(2).size() != x.shape()[1])
    c.fail("scale and B must have one value per channel");
  std::vector<int64_t> axes;
  for (int64_t i = 2; i < x.rank(); ++i) axes.push_back(i);
  Tensor y(TensorProto::FLOAT, x.shape());
  normalize_groups(c, x, axes, c.attr_float("epsilon", 1e-5f), c.input(1).data<float>(),
                   c.input(2).data<float>(), y);
  c.output(0) = std::move(y);
}

void mean_variance_norm(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "X");
  std::vector<int64_t> axes = c.attr_ints("axes");
  if (!c.has_attr("axes")) axes = {0, 2, 3};
  Tensor y(TensorProto::FLOAT, x.shape());
  normalize_groups(c, x, axes, 1e-9, nullptr, nullptr, y);
  c.output(0) = std::move(y);
}

// LRN: y = x / (bias + alpha / size * sum of x^2 over the channels c - (size-1)/2 ..
// c + ceil((size-1)/2))^beta, the sum in double.
void lrn(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "X");
  if (x.rank() < 3) c.fail("X must have spatial axes");
  const int64_t size = c.attr_int("size", 0);
  if (size < 1) c.fail("size {} is not valid", size);
  const double alpha = c.attr_float("alpha", 1e-4f), beta = c.attr_float("beta", 0.75f),
               bias = c.attr_float("bias", 1.0f);
  const int64_t batch = x.shape()[0], channels = x.shape()[1],
                spatial = x.size() / std::max<int64_t>(1, batch * channels);
  const int64_t before = (size - 1) / 2, after = size - 1 - before;
  Tensor y(TensorProto::FLOAT, x.shape());
  const float* px = x.data<float>();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t ch = 0; ch < channels; ++ch) {
      for (int64_t s = 0; s < spatial; ++s) {
        double sum = 0;
        for (int64_t k = std::max<int64_t>(0, ch - before); k <= std::min(channels - 1, ch + after);
             ++k) {
          const double v = px[(b * channels + k) * spatial + s];
          sum += v * v;
        }
        const int64_t at = (b * channels + ch) * spatial + s;
        y.data<float>()[at] =
            static_cast<float>(px[at] / std::pow(bias + alpha / size * sum, beta));
      }
    }
  }
  c.output(0) = std::move(y);
}

void batch_norm(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "X");
  if (c.output_count() > 1) c.fail("training outputs are not supported");
  const float eps = c.attr_float("epsilon", 1e-5f);
  const int64_t channels = x.shape()[1], inner = x.size() / (x.shape()[0] * channels);
  Tensor out(TensorProto::FLOAT, x.shape());
  for (int64_t ch = 0; ch < channels; ++ch) {
    const float scale =
        c.input(1).data<float>()[ch] / std::sqrt(c.input(4).data<float>()[ch] + eps);
    const float shift = c.input(2).data<float>()[ch] - c.input(3).data<float>()[ch] * scale;
    for (int64_t b = 0; b < x.shape()[0]; ++b) {
      const int64_t base = (b * channels + ch) * inner;
      for (int64_t i = 0; i < inner; ++i) {
        out.data<float>()[base + i] = x.data<float>()[base + i] * scale + shift;
      }
    }
  }
  c.output(0) = std::move(out);
}

void depth_to_space(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "X");
  if (x.rank() != 4) c.fail("X must be 4-D");
  const int64_t bs = c.attr_int("blocksize", 0);
  const bool crd = c.attr_string("mode", "DCR") == "CRD";
  const int64_t n = x.shape()[0], ch = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  const int64_t oc = ch / (bs * bs);
  Tensor out(TensorProto::FLOAT, {n, oc, h * bs, w * bs});
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t o = 0; o < oc; ++o) {
      for (int64_t y = 0; y < h * bs; ++y) {
        for (int64_t xx = 0; xx < w * bs; ++xx) {
          const int64_t by = y % bs, bx = xx % bs;
          const int64_t in_c = crd ? (o * bs + by) * bs + bx : (by * bs + bx) * oc + o;
          out.data<float>()[((b * oc + o) * h * bs + y) * w * bs + xx] =
              x.data<float>()[((b * ch + in_c) * h + y / bs) * w + xx / bs];
        }
      }
    }
  }
  c.output(0) = std::move(out);
}

// Resize (opset 10+) and Upsample, one axis at a time (each mode is separable). How each axis maps:
// mode nearest / linear / cubic, the coordinate transformation, nearest rounding, the cubic
// coefficient and exclude_outside, and for tf_crop_and_resize the region of interest and the value
// outside it.
struct ResizeMode {
  std::string mode, coord, nearest;
  double cubic_a = -0.75;
  bool exclude_outside = false;
  std::vector<double> roi;  // [starts..., ends...], tf_crop_and_resize only
  float extrapolation = 0.0f;
};

// Resizes x axis by axis: out[o] = sum over taps of w * in[i] (indices at the edges clamped,
// as ONNX pads with edge values); with scales, or sizes when scales is empty.
Tensor resize_axes(const OpContext& c, const Tensor& x, const std::vector<float>& scales,
                   const std::vector<int64_t>& sizes, const ResizeMode& m) {
  if (m.mode != "nearest" && m.mode != "linear" && m.mode != "cubic")
    c.fail("mode '{}' is not supported", m.mode);
  const int64_t rank = x.rank();
  if (static_cast<int64_t>(sizes.empty() ? scales.size() : sizes.size()) != rank) {
    c.fail("{} scales or sizes for rank {}", sizes.empty() ? scales.size() : sizes.size(), rank);
  }
  Tensor cur = x;
  for (int64_t axis = 0; axis < rank; ++axis) {
    const int64_t in = cur.shape()[axis];
    const int64_t out_len =
        sizes.empty() ? static_cast<int64_t>(std::floor(in * scales[axis])) : sizes[axis];
    const float scale = sizes.empty() ? scales[axis] : static_cast<float>(out_len) / in;
    // The resized length in the coordinate formulas: in * scale when scales are given.
    const double resized =
        sizes.empty() ? static_cast<double>(in) * scale : static_cast<double>(out_len);
    const bool crop = m.coord == "tf_crop_and_resize";
    if (out_len == in && scale == 1.0f && !crop) continue;
    std::vector<int64_t> shape = cur.shape();
    shape[axis] = out_len;
    Tensor next(TensorProto::FLOAT, shape);
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < axis; ++i) outer *= shape[i];
    for (int64_t i = axis + 1; i < rank; ++i) inner *= shape[i];
    // Per output position: its input taps and weights (none when outside a crop), then the
    // copies or sums, output position by position within each outer block.
    std::vector<std::vector<int64_t>> tap_lists(static_cast<size_t>(out_len));
    std::vector<std::vector<double>> weight_lists(static_cast<size_t>(out_len));
    for (int64_t o = 0; o < out_len; ++o) {
      auto& taps = tap_lists[o];
      auto& weights = weight_lists[o];
      double pos;
      if (m.coord == "half_pixel")
        pos = (o + 0.5) / scale - 0.5;
      else if (m.coord == "pytorch_half_pixel")
        pos = out_len > 1 ? (o + 0.5) / scale - 0.5 : 0;
      else if (m.coord == "align_corners")
        pos = resized > 1 ? o * (in - 1.0) / (resized - 1) : 0;
      else if (m.coord == "asymmetric")
        pos = o / scale;
      else if (m.coord == "tf_half_pixel_for_nn")
        pos = (o + 0.5) / scale;
      else if (crop) {
        const double start = m.roi.at(axis), end = m.roi.at(axis + rank);
        pos = out_len > 1 ? start * (in - 1) + o * (end - start) * (in - 1) / (out_len - 1)
                          : 0.5 * (start + end) * (in - 1);
      } else {
        c.fail("coordinate_transformation_mode '{}' is not supported", m.coord);
      }
      const bool outside = crop && (pos < 0 || pos > in - 1);
      if (m.mode == "nearest") {
        int64_t i0;
        if (m.nearest == "floor")
          i0 = static_cast<int64_t>(std::floor(pos));
        else if (m.nearest == "ceil")
          i0 = static_cast<int64_t>(std::ceil(pos));
        else if (m.nearest == "round_prefer_ceil")
          i0 = static_cast<int64_t>(std::floor(pos + 0.5));
        else
          i0 = static_cast<int64_t>(std::ceil(pos - 0.5));  // round_prefer_floor
        taps = {std::clamp<int64_t>(i0, 0, in - 1)}, weights = {1.0};
      } else if (m.mode == "linear") {
        const double p = std::clamp(pos, 0.0, static_cast<double>(in - 1));
        const int64_t i0 = static_cast<int64_t>(std::floor(p));
        taps = {i0, std::min(i0 + 1, in - 1)}, weights = {1 - (p - i0), p - i0};
      } else {  // cubic convolution (Keys), 4 taps around floor(pos)
        const int64_t i0 = static_cast<int64_t>(std::floor(pos));
        const double t = pos - i0, a = m.cubic_a;
        auto near = [a](double d) { return ((a + 2) * d - (a + 3)) * d * d + 1; };  // |d| <= 1
        auto far = [a](double d) {
          return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a;
        };  // 1 < |d| < 2
        const double w[4] = {far(t + 1), near(t), near(1 - t), far(2 - t)};
        double sum = 0;
        for (int k = 0; k < 4; ++k) {
          const int64_t i = i0 - 1 + k;
          if (m.exclude_outside && (i < 0 || i >= in)) continue;
          taps.push_back(std::clamp<int64_t>(i, 0, in - 1));
          weights.push_back(w[k]);
          sum += w[k];
        }
        if (m.exclude_outside) {
          for (double& v : weights) v /= sum;
        }
      }
      if (outside) taps.clear(), weights.clear();
    }
    const float* src = cur.data<float>();
    if (m.mode == "nearest" && !crop && inner == 1) {  // the last axis, nearest: a gather
      std::vector<int64_t> pick(static_cast<size_t>(out_len));
      for (int64_t o = 0; o < out_len; ++o) pick[o] = tap_lists[o][0];
      for (int64_t b = 0; b < outer; ++b) {
        float* dst = next.data<float>() + b * out_len;
        const float* in_block = src + b * in;
        for (int64_t o = 0; o < out_len; ++o) dst[o] = in_block[pick[o]];
      }
      cur = std::move(next);
      continue;
    }
    for (int64_t b = 0; b < outer; ++b) {
      float* dst = next.data<float>() + b * out_len * inner;
      const float* in_block = src + b * in * inner;
      for (int64_t o = 0; o < out_len; ++o, dst += inner) {
        const auto& taps = tap_lists[o];
        const auto& weights = weight_lists[o];
        if (taps.empty()) {
          std::fill(dst, dst + inner, m.extrapolation);
        } else if (taps.size() == 1) {  // nearest: a copy
          std::copy(in_block + taps[0] * inner, in_block + (taps[0] + 1) * inner, dst);
        } else {
          for (int64_t i = 0; i < inner; ++i) {
            double acc = 0;
            for (size_t k = 0; k < taps.size(); ++k)
              acc += weights[k] * in_block[taps[k] * inner + i];
            dst[i] = static_cast<float>(acc);
          }
        }
      }
    }
    cur = std::move(next);
  }
  return cur;
}

void resize(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "X");
  std::vector<float> scales;
  std::vector<int64_t> sizes;
  const int scales_input = c.opset >= 11 ? 2 : 1;
  if (c.opset >= 11 && c.has_input(3) && c.input(3).size() > 0) {
    sizes = c.input(3).to_int64();
  } else if (c.has_input(scales_input) && c.input(scales_input).size() > 0) {
    for (int64_t i = 0; i < c.input(scales_input).size(); ++i) {
      scales.push_back(static_cast<float>(c.input(scales_input).element_as_double(i)));
    }
  } else {
    c.fail("neither scales nor sizes given");
  }
  if (c.attr_int("antialias", 0) != 0) c.fail("antialias is not supported");
  if (c.has_attr("axes")) c.fail("the axes attribute is not supported");
  if (c.attr_string("keep_aspect_ratio_policy", "stretch") != "stretch")
    c.fail("keep_aspect_ratio_policy is not supported");
  ResizeMode m;
  m.mode = c.attr_string("mode", "nearest");
  m.coord =
      c.attr_string("coordinate_transformation_mode", c.opset >= 11 ? "half_pixel" : "asymmetric");
  m.nearest = c.attr_string("nearest_mode", "round_prefer_floor");
  m.cubic_a = c.attr_float("cubic_coeff_a", -0.75f);
  m.exclude_outside = c.attr_int("exclude_outside", 0) != 0;
  m.extrapolation = c.attr_float("extrapolation_value", 0.0f);
  if (m.coord == "tf_crop_and_resize") {
    if (!c.has_input(1) || c.input(1).size() != 2 * x.rank())
      c.fail("tf_crop_and_resize needs roi of 2 x rank values");
    for (int64_t i = 0; i < c.input(1).size(); ++i)
      m.roi.push_back(c.input(1).element_as_double(i));
  }
  c.output(0) = resize_axes(c, x, scales, sizes, m);
}

// Upsample (opset 7-9): Resize with asymmetric coordinates, nearest taking the floor.
void upsample(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "X");
  std::vector<float> scales;
  if (c.opset >= 9) {
    for (int64_t i = 0; i < c.input(1).size(); ++i)
      scales.push_back(static_cast<float>(c.input(1).element_as_double(i)));
  } else {
    for (const auto& a : c.node.attribute()) {
      if (a.name() == "scales") scales.assign(a.floats().begin(), a.floats().end());
    }
  }
  ResizeMode m;
  m.mode = c.attr_string("mode", "nearest");
  if (m.mode == "bilinear") m.mode = "linear";
  m.coord = "asymmetric";
  m.nearest = "floor";
  c.output(0) = resize_axes(c, x, scales, {}, m);
}

// GridSample (2-D): out[n, c, h, w] = X[n, c] sampled at grid[n, h, w] = (x, y) in [-1, 1]
// (corner pixels' centers with align_corners, their outer edges without), nearest (ties to
// even), bilinear or bicubic (Keys, a = -0.75); taps outside the image are 0 (zeros), the
// nearest edge pixel (border) or mirrored at the edges (reflection).
void grid_sample(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& grid = c.input(1);
  require_float(c, x, "X");
  require_float(c, grid, "grid");
  if (x.rank() != 4 || grid.rank() != 4 || grid.shape()[3] != 2 ||
      grid.shape()[0] != x.shape()[0]) {
    c.fail("X must be [N, C, H, W] and grid [N, H_out, W_out, 2]");
  }
  const std::string mode = c.attr_string("mode", "bilinear"),
                    padding = c.attr_string("padding_mode", "zeros");
  if (mode != "bilinear" && mode != "nearest" && mode != "bicubic")
    c.fail("mode '{}' is not supported", mode);
  if (padding != "zeros" && padding != "border" && padding != "reflection")
    c.fail("padding_mode '{}' is not supported", padding);
  const bool align = c.attr_int("align_corners", 0) != 0;
  const int64_t batch = x.shape()[0], channels = x.shape()[1], ih = x.shape()[2], iw = x.shape()[3];
  const int64_t oh = grid.shape()[1], ow = grid.shape()[2];
  Tensor out(TensorProto::FLOAT, {batch, channels, oh, ow});
  auto unnormalize = [&](double g, int64_t size) {
    return align ? (g + 1) / 2 * (size - 1) : ((g + 1) * size - 1) / 2;
  };
  // A coordinate mirrored into [lo, hi] (the image's extent for this align_corners).
  auto reflect = [](double v, double lo, double hi) {
    const double range = hi - lo;
    if (range <= 0) return lo;
    double d = v < lo ? lo - v : v > hi ? v - hi : 0;
    if (d == 0) return v;
    const double flips = std::floor(d / range);
    d -= flips * range;
    const bool even = static_cast<int64_t>(flips) % 2 == 0;
    return v < lo ? (even ? lo + d : hi - d) : (even ? hi - d : lo + d);
  };
  // The value of pixel (iy, ix) of a plane under the padding mode.
  auto pixel = [&](const float* plane, int64_t iy, int64_t ix) -> double {
    if (padding == "zeros")
      return iy < 0 || iy >= ih || ix < 0 || ix >= iw ? 0.0 : plane[iy * iw + ix];
    double y = static_cast<double>(iy), xx = static_cast<double>(ix);
    if (padding == "reflection") {
      y = align ? reflect(y, 0, ih - 1) : reflect(y, -0.5, ih - 0.5);
      xx = align ? reflect(xx, 0, iw - 1) : reflect(xx, -0.5, iw - 0.5);
    }
    const int64_t cy = std::clamp<int64_t>(static_cast<int64_t>(std::floor(y + 0.5)), 0, ih - 1);
    const int64_t cx = std::clamp<int64_t>(static_cast<int64_t>(std::floor(xx + 0.5)), 0, iw - 1);
    return plane[cy * iw + cx];
  };
  auto cubic = [](double t, double w[4]) {
    const double a = -0.75;
    auto near = [a](double d) { return ((a + 2) * d - (a + 3)) * d * d + 1; };
    auto far = [a](double d) { return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a; };
    w[0] = far(t + 1), w[1] = near(t), w[2] = near(1 - t), w[3] = far(2 - t);
  };
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t h = 0; h < oh; ++h) {
      for (int64_t w = 0; w < ow; ++w) {
        const float* g = grid.data<float>() + ((n * oh + h) * ow + w) * 2;
        double px = unnormalize(g[0], iw), py = unnormalize(g[1], ih);
        if (mode != "bicubic") {  // coordinates themselves kept inside for border / reflection
          if (padding == "border") {
            px = std::clamp(px, 0.0, static_cast<double>(iw - 1)),
            py = std::clamp(py, 0.0, static_cast<double>(ih - 1));
          } else if (padding == "reflection") {
            px = align ? reflect(px, 0, iw - 1) : reflect(px, -0.5, iw - 0.5);
            py = align ? reflect(py, 0, ih - 1) : reflect(py, -0.5, ih - 0.5);
            px = std::clamp(px, 0.0, static_cast<double>(iw - 1)),
            py = std::clamp(py, 0.0, static_cast<double>(ih - 1));
          }
        }
        for (int64_t ch = 0; ch < channels; ++ch) {
          const float* plane = x.data<float>() + (n * channels + ch) * ih * iw;
          double v = 0;
          if (mode == "nearest") {
            v = pixel(plane, static_cast<int64_t>(std::nearbyint(py)),
                      static_cast<int64_t>(std::nearbyint(px)));
          } else if (mode == "bilinear") {
            const int64_t x0 = static_cast<int64_t>(std::floor(px)),
                          y0 = static_cast<int64_t>(std::floor(py));
            const double tx = px - x0, ty = py - y0;
            v = (1 - ty) * ((1 - tx) * pixel(plane, y0, x0) + tx * pixel(plane, y0, x0 + 1)) +
                ty * ((1 - tx) * pixel(plane, y0 + 1, x0) + tx * pixel(plane, y0 + 1, x0 + 1));
          } else {
            const int64_t x0 = static_cast<int64_t>(std::floor(px)),
                          y0 = static_cast<int64_t>(std::floor(py));
            double wx[4], wy[4];
            cubic(px - x0, wx), cubic(py - y0, wy);
            for (int i = 0; i < 4; ++i) {
              double row = 0;
              for (int j = 0; j < 4; ++j) row += wx[j] * pixel(plane, y0 - 1 + i, x0 - 1 + j);
              v += wy[i] * row;
            }
          }
          out.data<float>()[((n * channels + ch) * oh + h) * ow + w] = static_cast<float>(v);
        }
      }
    }
  }
  c.output(0) = std::move(out);
}

// RoiAlign: for each region (x1, y1, x2, y2) * spatial_scale of image batch_indices[r], an
// output_height x output_width grid of bins, each the average (or max) of sampling_ratio^2
// bilinear samples (adaptive: ceil(bin size) per axis when 0). half_pixel shifts the region by
// -0.5; output_half_pixel (the older behaviour) does not, and makes regions at least 1 x 1.
// Samples beyond a pixel outside the image count as 0, as in ONNX Runtime.
void roi_align(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& rois = c.input(1);
  require_float(c, x, "X");
  require_float(c, rois, "rois");
  const auto batch_index = c.input(2).to_int64();
  if (x.rank() != 4 || rois.rank() != 2 || rois.shape()[1] != 4 ||
      static_cast<int64_t>(batch_index.size()) != rois.shape()[0]) {
    c.fail("X must be [N, C, H, W], rois [R, 4] and batch_indices [R]");
  }
  const std::string mode = c.attr_string("mode", "avg");
  if (mode != "avg" && mode != "max") c.fail("mode '{}' is not supported", mode);
  const std::string coord = c.attr_string("coordinate_transformation_mode",
                                          c.opset >= 16 ? "half_pixel" : "output_half_pixel");
  if (coord != "half_pixel" && coord != "output_half_pixel")
    c.fail("coordinate_transformation_mode '{}' is not supported", coord);
  const bool half = coord == "half_pixel";
  const int64_t out_h = c.attr_int("output_height", 1), out_w = c.attr_int("output_width", 1);
  const int64_t ratio = c.attr_int("sampling_ratio", 0);
  const double scale = c.attr_float("spatial_scale", 1.0f);
  const int64_t channels = x.shape()[1], ih = x.shape()[2], iw = x.shape()[3],
                regions = rois.shape()[0];
  Tensor out(TensorProto::FLOAT, {regions, channels, out_h, out_w});
  for (int64_t r = 0; r < regions; ++r) {
    const float* box = rois.data<float>() + r * 4;
    const int64_t n = batch_index[r];
    if (n < 0 || n >= x.shape()[0]) c.fail("batch index {} is out of range", n);
    const double offset = half ? 0.5 : 0.0;
    const double x0 = box[0] * scale - offset, y0 = box[1] * scale - offset;
    double roi_w = box[2] * scale - offset - x0, roi_h = box[3] * scale - offset - y0;
    if (!half) roi_w = std::max(roi_w, 1.0), roi_h = std::max(roi_h, 1.0);
    const double bin_h = roi_h / out_h, bin_w = roi_w / out_w;
    const int64_t grid_h = ratio > 0 ? ratio : static_cast<int64_t>(std::ceil(roi_h / out_h));
    const int64_t grid_w = ratio > 0 ? ratio : static_cast<int64_t>(std::ceil(roi_w / out_w));
    const double count = static_cast<double>(std::max<int64_t>(grid_h * grid_w, 1));
    for (int64_t ch = 0; ch < channels; ++ch) {
      const float* plane = x.data<float>() + (n * channels + ch) * ih * iw;
      for (int64_t ph = 0; ph < out_h; ++ph) {
        for (int64_t pw = 0; pw < out_w; ++pw) {
          double acc = mode == "max" ? -std::numeric_limits<double>::infinity() : 0.0;
          bool any = false;
          for (int64_t gy = 0; gy < grid_h; ++gy) {
            for (int64_t gx = 0; gx < grid_w; ++gx) {
              double y = y0 + ph * bin_h + (gy + 0.5) * bin_h / grid_h;
              double xx = x0 + pw * bin_w + (gx + 0.5) * bin_w / grid_w;
              double terms[4] = {0, 0, 0, 0};
              if (!(y < -1.0 || y > ih || xx < -1.0 || xx > iw)) {
                y = std::max(y, 0.0), xx = std::max(xx, 0.0);
                int64_t ylo = static_cast<int64_t>(y), xlo = static_cast<int64_t>(xx), yhi, xhi;
                if (ylo >= ih - 1)
                  yhi = ylo = ih - 1, y = static_cast<double>(ylo);
                else
                  yhi = ylo + 1;
                if (xlo >= iw - 1)
                  xhi = xlo = iw - 1, xx = static_cast<double>(xlo);
                else
                  xhi = xlo + 1;
                const double ly = y - ylo, lx = xx - xlo, hy = 1 - ly, hx = 1 - lx;
                terms[0] = hy * hx * plane[ylo * iw + xlo],
                terms[1] = hy * lx * plane[ylo * iw + xhi];
                terms[2] = ly * hx * plane[yhi * iw + xlo],
                terms[3] = ly * lx * plane[yhi * iw + xhi];
              }
              if (mode == "avg") {
                acc += terms[0] + terms[1] + terms[2] + terms[3];
              } else {  // ONNX Runtime's max: of the weighted corner terms
                for (double t : terms) acc = any ? std::max(acc, t) : t, any = true;
              }
            }
          }
          out.data<float>()[((r * channels + ch) * out_h + ph) * out_w + pw] =
              static_cast<float>(mode == "avg" ? acc / count : acc);
        }
      }
    }
  }
  c.output(0) = std::move(out);
}

}  // namespace

void register_nn(Registry& r) {
  r["RoiAlign"] = roi_align;
  r["GridSample"] = grid_sample;
  r["Conv"] = conv;
  r["MaxPool"] = pool<true>;
  r["MaxUnpool"] = max_unpool;
  r["AveragePool"] = pool<false>;
  r["GlobalMaxPool"] = global_pool<true>;
  r["GlobalAveragePool"] = global_pool<false>;
  r["BatchNormalization"] = batch_norm;
  r["LRN"] = lrn;
  r["InstanceNormalization"] = instance_norm;
  r["MeanVarianceNormalization"] = mean_variance_norm;
  r["LayerNormalization"] = layer_norm<false>;
  r["SimplifiedLayerNormalization"] = layer_norm<true>;
  r["ConvTranspose"] = conv_transpose;
  r["SpaceToDepth"] = space_to_depth;
  r["DepthToSpace"] = depth_to_space;
  r["Resize"] = resize;
  r["Upsample"] = upsample;
}

}  // namespace quantize::exec
