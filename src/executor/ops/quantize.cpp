// Quantization ops: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear, MatMulInteger,
// ConvInteger, QLinearConv, QLinearMatMul (ONNX Runtime's versions: contrib/quantization.cpp).
#include "executor/ops/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "executor/core/ops.h"

// Formulas from the ONNX specification: QuantizeLinear y = saturate(rne(x / scale) + zp);
// DequantizeLinear y = (x - zp) * scale; DynamicQuantizeLinear: uint8 with the range of x widened
// to include 0.

namespace quantize::exec {
namespace {

using onnx::TensorProto;

bool is_8bit(int t) { return t == TensorProto::UINT8 || t == TensorProto::INT8; }
bool is_16bit(int t) { return t == TensorProto::UINT16 || t == TensorProto::INT16; }

int32_t value_at(const Tensor& t, int64_t i) {
  switch (t.dtype()) {
    case TensorProto::UINT8:
      return t.data<uint8_t>()[i];
    case TensorProto::INT8:
      return t.data<int8_t>()[i];
    case TensorProto::UINT16:
      return t.data<uint16_t>()[i];
    case TensorProto::INT16:
      return t.data<int16_t>()[i];
    case TensorProto::INT32:
      return t.data<int32_t>()[i];
    default:
      return 0;
  }
}

// Per-element index into a scale/zero point: per tensor, along `axis` of x, or (block > 0) per
// block of `block` values along it, the scale shaped as x with ceil(D / block) on the axis.
struct Broadcast {
  int64_t inner = 1, count = 1, block = 0, dim = 0;
  int64_t at(int64_t i) const {
    if (count == 1 && block == 0) return 0;
    if (block == 0) return (i / inner) % count;
    const int64_t outer = i / (inner * dim), d = i / inner % dim;
    return (outer * count + d / block) * inner + i % inner;
  }
};

Broadcast along_axis(const OpContext& c, const Tensor& x, const Tensor& scale) {
  Broadcast b;
  const int64_t block = c.attr_int("block_size", 0);
  if (scale.size() == 0) c.fail("an empty scale");
  if (scale.size() <= 1 && block == 0) {
    if (c.has_input(2) && c.input(2).size() < 1) c.fail("an empty zero point");
    return b;
  }
  const int64_t axis = normalize_axis(c, c.attr_int("axis", 1), x.rank());
  for (int64_t i = axis + 1; i < x.rank(); ++i) b.inner *= x.shape()[i];
  if (c.has_input(2) && c.input(2).size() != scale.size())
    c.fail("{} zero points for {} scales", c.input(2).size(), scale.size());
  if (block == 0) {
    if (scale.size() != x.shape()[axis])
      c.fail("{} scales for axis {} of size {}", scale.size(), axis, x.shape()[axis]);
    b.count = scale.size();
    return b;
  }
  if (block < 0) c.fail("block_size {} is negative", block);
  b.block = block;
  b.dim = x.shape()[axis];
  b.count = (b.dim + block - 1) / block;
  std::vector<int64_t> want = x.shape();
  want[axis] = b.count;
  if (scale.shape() != want) {
    c.fail("scale of shape [{}] for blocks of {} along axis {} of [{}]",
           fmt::join(scale.shape(), ", "), block, axis, fmt::join(x.shape(), ", "));
  }
  return b;
}

}  // namespace

void quantize_linear(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& scale = c.input(1);
  if (x.dtype() != TensorProto::FLOAT || scale.dtype() != TensorProto::FLOAT)
    c.fail("only float32 x and scale are supported");
  const int type = c.has_input(2) ? c.input(2).dtype() : TensorProto::UINT8;
  if (!is_8bit(type) && !is_16bit(type)) c.fail("output type {} is not supported", type);
  const bool wide = is_16bit(type);
  const bool is_unsigned = type == TensorProto::UINT8 || type == TensorProto::UINT16;
  const int lo = is_unsigned ? 0 : wide ? -32768 : -128;
  const int hi = is_unsigned ? (wide ? 65535 : 255) : (wide ? 32767 : 127);
  const Broadcast b = along_axis(c, x, scale);
  Tensor y(type, x.shape());
  for (int64_t i = 0; i < x.size(); ++i) {
    const int64_t k = b.at(i);
    const int32_t zp = c.has_input(2) ? value_at(c.input(2), k) : 0;
    const float q =
        std::nearbyint(x.data<float>()[i] / scale.data<float>()[k]) + static_cast<float>(zp);
    const int32_t v =
        static_cast<int32_t>(std::clamp(q, static_cast<float>(lo), static_cast<float>(hi)));
    if (wide) {
      y.data<uint16_t>()[i] = static_cast<uint16_t>(v);
    } else {
      y.raw()[i] = static_cast<uint8_t>(v);
    }
  }
  c.output(0) = std::move(y);
}

void dequantize_linear(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& scale = c.input(1);
  if (scale.dtype() != TensorProto::FLOAT) c.fail("only float32 scales are supported");
  if (!is_8bit(x.dtype()) && !is_16bit(x.dtype()) && x.dtype() != TensorProto::INT32)
    c.fail("x of data type {} is not supported", x.dtype());
  const Broadcast b = along_axis(c, x, scale);
  Tensor y(TensorProto::FLOAT, x.shape());
  for (int64_t i = 0; i < x.size(); ++i) {
    const int64_t k = b.at(i);
    const int32_t zp = c.has_input(2) ? value_at(c.input(2), k) : 0;
    y.data<float>()[i] = static_cast<float>(value_at(x, i) - zp) * scale.data<float>()[k];
  }
  c.output(0) = std::move(y);
}

Dynamic dynamic_quantize(const OpContext& c, const Tensor& x) {
  if (x.dtype() != TensorProto::FLOAT) c.fail("only float32 input is supported");
  float lo = 0.0f, hi = 0.0f;
  for (int64_t i = 0; i < x.size(); ++i) {
    lo = std::min(lo, x.data<float>()[i]);
    hi = std::max(hi, x.data<float>()[i]);
  }
  const float scale = (hi - lo) / 255.0f;
  const float zp = scale == 0.0f ? 0.0f : std::clamp(std::nearbyint(-lo / scale), 0.0f, 255.0f);
  Dynamic d{Tensor(TensorProto::UINT8, x.shape()), Tensor(TensorProto::FLOAT, {}),
            Tensor(TensorProto::UINT8, {})};
  for (int64_t i = 0; i < x.size(); ++i) {
    const float q = scale == 0.0f ? zp : std::nearbyint(x.data<float>()[i] / scale) + zp;
    d.q.data<uint8_t>()[i] = static_cast<uint8_t>(std::clamp(q, 0.0f, 255.0f));
  }
  d.scale.data<float>()[0] = scale;
  d.zp.data<uint8_t>()[0] = static_cast<uint8_t>(zp);
  return d;
}

// (A - a_zp)(B - b_zp) in int32, A [..., M, K] (batched) and B [K, N] (b_zp per tensor or per
// column).
Tensor integer_matmul(const OpContext& c, const Tensor& a, const Tensor& b, const Tensor* a_zp,
                      const Tensor* b_zp) {
  if (!is_8bit(a.dtype()) || !is_8bit(b.dtype())) c.fail("A and B must be 8-bit");
  if (b.rank() != 2 || a.rank() < 2) c.fail("only A [..., M, K] and B [K, N] are supported");
  const int64_t k = b.shape()[0], n = b.shape()[1];
  if (a.shape().back() != k) c.fail("inner dimensions differ");
  if (a_zp && a_zp->size() > 1) c.fail("per-row A zero points are not supported");
  const int32_t az = a_zp ? value_at(*a_zp, 0) : 0;
  std::vector<int32_t> bw(static_cast<size_t>(k * n));
  for (int64_t p = 0; p < k; ++p) {
    for (int64_t j = 0; j < n; ++j) {
      const int32_t bz = b_zp ? value_at(*b_zp, b_zp->size() > 1 ? j : 0) : 0;
      bw[p * n + j] = value_at(b, p * n + j) - bz;
    }
  }
  std::vector<int64_t> shape = a.shape();
  shape.back() = n;
  Tensor y(TensorProto::INT32, shape);
  const int64_t rows = a.size() / k;
  for (int64_t r = 0; r < rows; ++r) {
    int32_t* dst = y.data<int32_t>() + r * n;
    for (int64_t p = 0; p < k; ++p) {
      const int32_t av = value_at(a, r * k + p) - az;
      for (int64_t j = 0; j < n; ++j) dst[j] += av * bw[p * n + j];
    }
  }
  return y;
}

namespace {

void dynamic_quantize_linear(OpContext& c) {
  Dynamic d = dynamic_quantize(c, c.input(0));
  c.output(0) = std::move(d.q);
  c.output(1) = std::move(d.scale);
  c.output(2) = std::move(d.zp);
}

void matmul_integer(OpContext& c) {
  c.output(0) = integer_matmul(c, c.input(0), c.input(1), c.has_input(2) ? &c.input(2) : nullptr,
                               c.has_input(3) ? &c.input(3) : nullptr);
}

void conv_integer(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& w = c.input(1);
  if (!is_8bit(x.dtype()) || !is_8bit(w.dtype())) c.fail("X and W must be 8-bit");
  if ((c.has_input(2) && c.input(2).size() > 1) || (c.has_input(3) && c.input(3).size() > 1)) {
    c.fail("only per-tensor zero points are supported");
  }
  const int32_t xz = c.has_input(2) ? value_at(c.input(2), 0) : 0;
  const int32_t wz = c.has_input(3) ? value_at(c.input(3), 0) : 0;
  std::vector<int32_t> xi(static_cast<size_t>(x.size())), wi(static_cast<size_t>(w.size()));
  for (int64_t i = 0; i < x.size(); ++i) xi[i] = value_at(x, i) - xz;
  for (int64_t i = 0; i < w.size(); ++i) wi[i] = value_at(w, i) - wz;
  std::vector<int64_t> shape;
  std::vector<int32_t> y = convolve(c, x.shape(), xi.data(), w.shape(), wi.data(), shape);
  Tensor out(TensorProto::INT32, shape);
  std::copy(y.begin(), y.end(), out.data<int32_t>());
  c.output(0) = std::move(out);
}

// Requantizes int32 accumulators: multiplier = x_scale * w_scale[c] / y_scale and the product
// acc * multiplier in float32 (as ONNX Runtime does; the specification leaves the precision
// open), y = saturate(rint(acc * multiplier) + y_zp), c the output channel of
// element i (channel = (i / inner) % channels; channels 1 for per-tensor scales).
Tensor requantize(const OpContext& c, const Tensor& acc, const Tensor& x_scale,
                  const Tensor& w_scale, const Tensor& y_scale, const Tensor* y_zp, int64_t inner,
                  int64_t channels) {
  const int type = y_zp ? y_zp->dtype() : TensorProto::UINT8;
  if (!is_8bit(type)) c.fail("output type {} is not supported", type);
  const int lo = type == TensorProto::UINT8 ? 0 : -128, hi = lo + 255;
  const int32_t zy = y_zp ? value_at(*y_zp, 0) : 0;
  Tensor y(type, acc.shape());
  for (int64_t i = 0; i < acc.size(); ++i) {
    const int64_t ch = w_scale.size() > 1 ? (i / inner) % channels : 0;
    const float m = x_scale.data<float>()[0] * w_scale.data<float>()[ch] / y_scale.data<float>()[0];
    const float v =
        std::nearbyint(static_cast<float>(acc.data<int32_t>()[i]) * m) + static_cast<float>(zy);
    y.raw()[i] = static_cast<uint8_t>(static_cast<int32_t>(std::clamp(v, float(lo), float(hi))));
  }
  return y;
}

// QLinearConv: conv of (x - x_zp) and (w - w_zp[m]) in int32, + B, requantized to y.
void qlinear_conv(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& w = c.input(3);
  if (!is_8bit(x.dtype()) || !is_8bit(w.dtype())) c.fail("x and w must be 8-bit");
  const int32_t xz = value_at(c.input(2), 0);
  const Tensor& wz = c.input(5);
  const int64_t filters = w.shape()[0], per = w.size() / filters;
  std::vector<int32_t> xi(static_cast<size_t>(x.size())), wi(static_cast<size_t>(w.size()));
  for (int64_t i = 0; i < x.size(); ++i) xi[i] = value_at(x, i) - xz;
  for (int64_t i = 0; i < w.size(); ++i)
    wi[i] = value_at(w, i) - value_at(wz, wz.size() > 1 ? i / per : 0);
  std::vector<int64_t> shape;
  std::vector<int32_t> acc = convolve(c, x.shape(), xi.data(), w.shape(), wi.data(), shape);
  Tensor sum(TensorProto::INT32, shape);
  const int64_t spatial = sum.size() / (shape[0] * filters);
  for (int64_t i = 0; i < sum.size(); ++i) {
    sum.data<int32_t>()[i] =
        acc[i] + (c.has_input(8) ? c.input(8).data<int32_t>()[(i / spatial) % filters] : 0);
  }
  c.output(0) = requantize(c, sum, c.input(1), c.input(4), c.input(6),
                           c.has_input(7) ? &c.input(7) : nullptr, spatial, filters);
}

// QLinearMatMul: (a - a_zp)(b - b_zp) in int32 (b's parameters per tensor or per column),
// requantized to y.
void qlinear_matmul(OpContext& c) {
  const Tensor& a = c.input(0);
  const Tensor& b = c.input(3);
  if (b.rank() > 2) {  // batched B [..., K, N] with A [..., M, K] of the same batch: one pair each
    if (a.rank() != b.rank() ||
        !std::equal(a.shape().begin(), a.shape().end() - 2, b.shape().begin())) {
      c.fail("batched B needs A with the same batch dimensions");
    }
    if (c.input(4).size() > 1 || c.input(5).size() > 1)
      c.fail("batched B takes per-tensor parameters");
    const int64_t m = a.shape()[a.rank() - 2], k = a.shape().back(), n = b.shape().back();
    const int64_t batches = a.size() / (m * k);
    std::vector<int64_t> shape = a.shape();
    shape.back() = n;
    Tensor acc(TensorProto::INT32, shape);
    for (int64_t t = 0; t < batches; ++t) {
      Tensor at(a.dtype(), {m, k}), bt(b.dtype(), {k, n});
      std::memcpy(at.raw(), a.raw() + t * m * k, m * k);
      std::memcpy(bt.raw(), b.raw() + t * k * n, k * n);
      Tensor yt = integer_matmul(c, at, bt, &c.input(2), &c.input(5));
      std::memcpy(acc.data<int32_t>() + t * m * n, yt.raw(), yt.bytes());
    }
    c.output(0) = requantize(c, acc, c.input(1), c.input(4), c.input(6),
                             c.has_input(7) ? &c.input(7) : nullptr, 1, 1);
    return;
  }
  Tensor acc = integer_matmul(c, a, b, &c.input(2), &c.input(5));
  const int64_t n = b.shape().back();
  c.output(0) = requantize(c, acc, c.input(1), c.input(4), c.input(6),
                           c.has_input(7) ? &c.input(7) : nullptr, 1, n);
}

}  // namespace

void register_quantize(Registry& r) {
  r["QuantizeLinear"] = quantize_linear;
  r["DequantizeLinear"] = dequantize_linear;
  r["DynamicQuantizeLinear"] = dynamic_quantize_linear;
  r["MatMulInteger"] = matmul_integer;
  r["ConvInteger"] = conv_integer;
  r["QLinearConv"] = qlinear_conv;
  r["QLinearMatMul"] = qlinear_matmul;
}

}  // namespace quantize::exec
