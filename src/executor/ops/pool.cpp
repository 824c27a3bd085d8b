// Pooling, float32 unless noted: MaxPool (any ordered type with Indices), AveragePool,
// GlobalMaxPool, GlobalAveragePool, MaxUnpool.
#include <algorithm>
#include <cstring>
#include <limits>

#include "executor/core/ops.h"
#include "executor/ops/window.h"
#include "model/tensor_data.h"
#include "support/threads.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

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

}  // namespace

void register_pool(Registry& r) {
  r["MaxPool"] = pool<true>;
  r["MaxUnpool"] = max_unpool;
  r["AveragePool"] = pool<false>;
  r["GlobalMaxPool"] = global_pool<true>;
  r["GlobalAveragePool"] = global_pool<false>;
}

}  // namespace quantize::exec
