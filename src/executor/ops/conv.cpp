// Float convolutions: Conv (any spatial rank, groups, dilations, pads, auto_pad; the GEMM in
// conv_gemm.cpp) and ConvTranspose; and the integer convolution of ConvInteger and QLinearConv.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>

#include "executor/core/ops.h"
#include "executor/ops/window.h"
#include "support/threads.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

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

// The kernel's spatial shape: W's, which a kernel_shape attribute may only repeat (the GEMM
// reads W by it).
std::vector<int64_t> kernel_of(const OpContext& c, const std::vector<int64_t>& w_shape) {
  std::vector<int64_t> kernel(w_shape.begin() + 2, w_shape.end());
  const std::vector<int64_t> declared = c.attr_ints("kernel_shape");
  if (!declared.empty() && declared != kernel) {
    c.fail("kernel_shape [{}] is not W's [{}]", fmt::join(declared, ", "), fmt::join(kernel, ", "));
  }
  return kernel;
}

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
  s.w = window(c, x_shape, kernel_of(c, w_shape));
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

// ConvTranspose: every input element scattered through the kernel, out[n, m, p * stride + k *
// dilation - pad_begin] += x[n, c, p] * W[c, m - group offset, k]; + B[m].
void conv_transpose(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& weight = c.input(1);
  require_float(c, x, "X");
  require_float(c, weight, "W");
  const int64_t n = x.rank() - 2;
  if (n < 1) c.fail("X must have spatial axes");
  if (weight.rank() != x.rank()) c.fail("W has rank {}, X rank {}", weight.rank(), x.rank());
  const int64_t batch = x.shape()[0], channels = x.shape()[1];
  const int64_t group = c.attr_int("group", 1);
  if (group < 1) c.fail("group {} is not valid", group);
  const int64_t cg = channels / group;
  const int64_t mg = weight.shape()[1], filters = mg * group;
  if (weight.shape()[0] != channels || cg * group != channels)
    c.fail("channels do not match W and group");
  const std::vector<int64_t> kernel = kernel_of(c, weight.shape());
  std::vector<int64_t> stride = c.attr_ints("strides"), dilation = c.attr_ints("dilations"),
                       pads = c.attr_ints("pads"), out_pad = c.attr_ints("output_padding"),
                       out_shape_attr = c.attr_ints("output_shape");
  if (stride.empty()) stride.assign(n, 1);
  if (dilation.empty()) dilation.assign(n, 1);
  if (out_pad.empty()) out_pad.assign(n, 0);
  if (pads.empty()) pads.assign(2 * n, 0);
  constexpr int64_t kLimit = int64_t{1} << 31;
  auto in_range = [&](const std::vector<int64_t>& v, size_t size, int64_t lo) {
    return v.size() == size &&
           std::all_of(v.begin(), v.end(), [&](int64_t d) { return d >= lo && d <= kLimit; });
  };
  if (!in_range(stride, n, 1) || !in_range(dilation, n, 1) || !in_range(out_pad, n, 0) ||
      !in_range(pads, 2 * n, 0) ||
      (!out_shape_attr.empty() && !in_range(out_shape_attr, out_shape_attr.size(), 1)) ||
      (!out_shape_attr.empty() && out_shape_attr.size() < static_cast<size_t>(n))) {
    c.fail("strides, dilations, pads, output_padding or output_shape out of range");
  }
  if (c.has_input(2)) {
    require_float(c, c.input(2), "B");
    if (c.input(2).size() != filters)
      c.fail("B has {} values for {} output channels", c.input(2).size(), filters);
  }
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
  for (int64_t i = 0; i < n; ++i) {
    if (out[i] < 1) c.fail("output axis {} would have size {}", i, out[i]);
  }
  std::vector<int64_t> shape{batch, filters};
  shape.insert(shape.end(), out.begin(), out.end());
  Tensor y(TensorProto::FLOAT, shape);
  int64_t in_size = 1, out_size = 1, taps = 1;
  for (int64_t i = 0; i < n; ++i) in_size *= in[i], out_size *= out[i], taps *= kernel[i];
  if (taps > 0 && in_size > (int64_t{1} << 28) / taps)
    c.fail("{} input positions times {} kernel taps are too many", in_size, taps);
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

}  // namespace

void register_conv(Registry& r) {
  r["Conv"] = conv;
  r["ConvTranspose"] = conv_transpose;
}

}  // namespace quantize::exec
