// Element-wise ops with numpy broadcasting: arithmetic, comparisons, logic, activations, Cast.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "kernels/kernels.h"
#include "model/tensor_data.h"
#include "ops.h"
#include "support/threads.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

template <typename T, typename R, typename F>
void binary_typed(OpContext& ctx, const Tensor& a, const Tensor& b, int out_type, F f) {
  const auto shape = broadcast_shape(ctx, a.shape(), b.shape());
  Tensor out(out_type, shape, Tensor::Uninitialized{});
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  R* po = out.data<R>();
  const int64_t n = out.size();
  if (a.shape() == shape && b.shape() == shape) {
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
  } else if (a.shape() == shape && b.size() == 1) {
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[0]);
  } else {
    // Runs over the longest suffix of axes along which each input is either whole or
    // broadcast (a per-channel bias over [N, C, H, W] runs over H x W): offsets per run only.
    const size_t rank = shape.size();
    auto padded = [&](const std::vector<int64_t>& s) {
      std::vector<int64_t> p(rank - s.size(), 1);
      p.insert(p.end(), s.begin(), s.end());
      return p;
    };
    const std::vector<int64_t> sa = padded(a.shape()), sb = padded(b.shape());
    int whole_a = -1, whole_b = -1;  // along the suffix: 1 whole, 0 broadcast, -1 either
    auto fits = [](int& state, int64_t d, int64_t o) {
      if (o == 1) return true;
      const int want = d == o ? 1 : 0;
      if (state >= 0 && state != want) return false;
      state = want;
      return true;
    };
    size_t k = rank;
    int64_t inner = 1;
    while (k > 0 && fits(whole_a, sa[k - 1], shape[k - 1]) &&
           fits(whole_b, sb[k - 1], shape[k - 1])) {
      --k;
      inner *= shape[k];
    }
    const std::vector<int64_t> outer_shape(shape.begin(), shape.begin() + k);
    const auto oa = broadcast_offsets({sa.begin(), sa.begin() + k}, outer_shape),
               ob = broadcast_offsets({sb.begin(), sb.begin() + k}, outer_shape);
    const int64_t step_a = whole_a == 1 ? inner : 1, step_b = whole_b == 1 ? inner : 1;
    for (size_t r = 0; r < oa.size(); ++r) {
      const T* ra = pa + oa[r] * step_a;
      const T* rb = pb + ob[r] * step_b;
      R* ro = po + static_cast<int64_t>(r) * inner;
      if (whole_a == 1 && whole_b == 1) {
        for (int64_t i = 0; i < inner; ++i) ro[i] = f(ra[i], rb[i]);
      } else if (whole_a == 1) {
        for (int64_t i = 0; i < inner; ++i) ro[i] = f(ra[i], rb[0]);
      } else if (whole_b == 1) {
        for (int64_t i = 0; i < inner; ++i) ro[i] = f(ra[0], rb[i]);
      } else {
        for (int64_t i = 0; i < inner; ++i) ro[i] = f(ra[0], rb[0]);
      }
    }
  }
  ctx.output(0) = std::move(out);
}

// Dispatches on the (common) input type; F is a generic lambda.
template <typename F>
void arithmetic(OpContext& ctx, F f) {
  if (ctx.input_count() != 2) ctx.fail("{} inputs (2 are supported)", ctx.input_count());
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  if (a.dtype() != b.dtype()) ctx.fail("input types {} and {} differ", a.dtype(), b.dtype());
  switch (a.dtype()) {
    case TensorProto::FLOAT:
      return binary_typed<float, float>(ctx, a, b, a.dtype(), f);
    case TensorProto::DOUBLE:
      return binary_typed<double, double>(ctx, a, b, a.dtype(), f);
    case TensorProto::INT64:
      return binary_typed<int64_t, int64_t>(ctx, a, b, a.dtype(), f);
    case TensorProto::INT32:
      return binary_typed<int32_t, int32_t>(ctx, a, b, a.dtype(), f);
    case TensorProto::INT16:
      return binary_typed<int16_t, int16_t>(ctx, a, b, a.dtype(), f);
    case TensorProto::INT8:
      return binary_typed<int8_t, int8_t>(ctx, a, b, a.dtype(), f);
    case TensorProto::UINT8:
      return binary_typed<uint8_t, uint8_t>(ctx, a, b, a.dtype(), f);
    case TensorProto::UINT16:
      return binary_typed<uint16_t, uint16_t>(ctx, a, b, a.dtype(), f);
    case TensorProto::UINT32:
      return binary_typed<uint32_t, uint32_t>(ctx, a, b, a.dtype(), f);
    case TensorProto::UINT64:
      return binary_typed<uint64_t, uint64_t>(ctx, a, b, a.dtype(), f);
    default:
      ctx.fail("data type {} is not supported", a.dtype());
  }
}

// Max, Min, Sum, Mean: any number of inputs, folded left to right with broadcasting.
template <typename F>
void variadic(OpContext& ctx, F f, bool mean = false) {
  if (ctx.input_count() < 1) ctx.fail("no inputs");
  Tensor acc = ctx.input(0);
  for (int i = 1; i < ctx.input_count(); ++i) {
    std::vector<Tensor> out(1);
    std::vector<const Tensor*> pair{&acc, &ctx.input(i)};
    OpContext step(ctx.model, ctx.node, ctx.opset, pair, out);
    arithmetic(step, f);
    acc = std::move(out[0]);
  }
  if (mean) {
    if (acc.dtype() != TensorProto::FLOAT)
      ctx.fail("Mean of data type {} is not supported", acc.dtype());
    for (int64_t i = 0; i < acc.size(); ++i)
      acc.data<float>()[i] /= static_cast<float>(ctx.input_count());
  }
  ctx.output(0) = std::move(acc);
}

template <typename F>
void comparison(OpContext& ctx, F f) {
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  if (a.dtype() != b.dtype()) ctx.fail("input types {} and {} differ", a.dtype(), b.dtype());
  switch (a.dtype()) {
    case TensorProto::FLOAT:
      return binary_typed<float, uint8_t>(ctx, a, b, TensorProto::BOOL, f);
    case TensorProto::DOUBLE:
      return binary_typed<double, uint8_t>(ctx, a, b, TensorProto::BOOL, f);
    case TensorProto::INT64:
      return binary_typed<int64_t, uint8_t>(ctx, a, b, TensorProto::BOOL, f);
    case TensorProto::INT32:
      return binary_typed<int32_t, uint8_t>(ctx, a, b, TensorProto::BOOL, f);
    case TensorProto::BOOL:
      return binary_typed<uint8_t, uint8_t>(ctx, a, b, TensorProto::BOOL, f);
    default:
      ctx.fail("data type {} is not supported", a.dtype());
  }
}

template <typename F>
void unary_float(OpContext& ctx, F f) {
  const Tensor& x = ctx.input(0);
  Tensor out(x.dtype(), x.shape(), Tensor::Uninitialized{});
  if (x.dtype() == TensorProto::FLOAT) {
    const float* px = x.data<float>();
    float* po = out.data<float>();
    parallel_for(static_cast<size_t>(x.size()), 1 << 16, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) po[i] = f(px[i]);
    });
  } else if (x.dtype() == TensorProto::DOUBLE) {
    const double* px = x.data<double>();
    double* po = out.data<double>();
    for (int64_t i = 0; i < x.size(); ++i) po[i] = f(px[i]);
  } else {
    ctx.fail("data type {} is not supported (float32 and float64 are)", x.dtype());
  }
  ctx.output(0) = std::move(out);
}

void add(OpContext& c) {
  arithmetic(c, [](auto a, auto b) { return a + b; });
}
void sub(OpContext& c) {
  arithmetic(c, [](auto a, auto b) { return a - b; });
}
void mul(OpContext& c) {
  arithmetic(c, [](auto a, auto b) { return a * b; });
}
void div(OpContext& c) {
  arithmetic(c,
             [](auto a, auto b) { return b == 0 && std::is_integral_v<decltype(a)> ? 0 : a / b; });
}
// Pow: float bases with any numeric exponent; integer bases (int32, int64) computed in double
// and converted back, as the result type is the base's.
void pow(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& e = c.input(1);
  if (x.dtype() == TensorProto::INT32 || x.dtype() == TensorProto::INT64) {
    Tensor xd(TensorProto::DOUBLE, x.shape()), ed(TensorProto::DOUBLE, e.shape());
    for (int64_t i = 0; i < x.size(); ++i) xd.data<double>()[i] = x.element_as_double(i);
    for (int64_t i = 0; i < e.size(); ++i) ed.data<double>()[i] = e.element_as_double(i);
    std::vector<Tensor> out(1);
    std::vector<const Tensor*> in{&xd, &ed};
    OpContext step(c.model, c.node, c.opset, in, out);
    binary_typed<double, double>(step, xd, ed, TensorProto::DOUBLE,
                                 [](double a, double b) { return std::pow(a, b); });
    Tensor result(x.dtype(), out[0].shape());
    for (int64_t i = 0; i < result.size(); ++i) {
      const double v = out[0].data<double>()[i];
      if (x.dtype() == TensorProto::INT32)
        result.data<int32_t>()[i] = static_cast<int32_t>(v);
      else
        result.data<int64_t>()[i] = static_cast<int64_t>(v);
    }
    c.output(0) = std::move(result);
    return;
  }
  if (x.dtype() != TensorProto::FLOAT) c.fail("base type {} is not supported", x.dtype());
  Tensor y(TensorProto::FLOAT, e.shape());
  for (int64_t i = 0; i < y.size(); ++i)
    y.data<float>()[i] = static_cast<float>(e.element_as_double(i));
  binary_typed<float, float>(c, x, y, TensorProto::FLOAT,
                             [](float a, float b) { return b == 2.0f ? a * a : std::pow(a, b); });
}
void max_op(OpContext& c) {
  variadic(c, [](auto a, auto b) { return a > b || a != a ? a : b; });
}
void min_op(OpContext& c) {
  variadic(c, [](auto a, auto b) { return a < b || a != a ? a : b; });
}
void sum_op(OpContext& c) {
  variadic(c, [](auto a, auto b) { return a + b; });
}
void mean_op(OpContext& c) {
  variadic(
      c, [](auto a, auto b) { return a + b; }, true);
}
void equal(OpContext& c) {
  comparison(c, [](auto a, auto b) -> uint8_t { return a == b; });
}
void less(OpContext& c) {
  comparison(c, [](auto a, auto b) -> uint8_t { return a < b; });
}
void greater(OpContext& c) {
  comparison(c, [](auto a, auto b) -> uint8_t { return a > b; });
}
void less_equal(OpContext& c) {
  comparison(c, [](auto a, auto b) -> uint8_t { return a <= b; });
}
void greater_equal(OpContext& c) {
  comparison(c, [](auto a, auto b) -> uint8_t { return a >= b; });
}
void logical_and(OpContext& c) {
  comparison(c, [](auto a, auto b) -> uint8_t { return a && b; });
}
void logical_or(OpContext& c) {
  comparison(c, [](auto a, auto b) -> uint8_t { return a || b; });
}
void logical_xor(OpContext& c) {
  comparison(c, [](auto a, auto b) -> uint8_t { return !a != !b; });
}

// BitShift of unsigned integers; shifting by the type's width or more gives 0.
void bit_shift(OpContext& c) {
  const std::string direction = c.attr_string("direction", "");
  if (direction != "LEFT" && direction != "RIGHT")
    c.fail("direction '{}' is not LEFT or RIGHT", direction);
  const int type = c.input(0).dtype();
  if (type != TensorProto::UINT8 && type != TensorProto::UINT16 && type != TensorProto::UINT32 &&
      type != TensorProto::UINT64) {
    c.fail("data type {} is not an unsigned integer type", type);
  }
  const bool left = direction == "LEFT";
  arithmetic(c, [left](auto a, auto b) {
    using T = decltype(a);
    if constexpr (std::is_integral_v<T>) {
      if (b < 0 || static_cast<uint64_t>(b) >= sizeof(T) * 8) return T(0);
      return left ? static_cast<T>(a << b) : static_cast<T>(a >> b);
    } else {
      return a;  // not reached: the type was checked above
    }
  });
}

void logical_not(OpContext& c) {
  const Tensor& x = c.input(0);
  Tensor out(TensorProto::BOOL, x.shape());
  for (int64_t i = 0; i < x.size(); ++i) out.data<uint8_t>()[i] = !x.data<uint8_t>()[i];
  c.output(0) = std::move(out);
}

void sqrt_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::sqrt(x); });
}
void exp_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::exp(x); });
}
void log_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::log(x); });
}
// tanh over a row of floats: for |x| >= 0.5, (1 - e) / (1 + e) with e = e^(-2|x|) by exp_poly;
// below, where 1 - e would cancel, the odd Taylor series to x^13 (relative error < 1e-7 there).
QUANTIZE_CLONES_NO_FMA
void tanh_row(const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float v = x[i], a = v < 0 ? -v : v, a2 = a * a;
    float p = 21844.0f / 6081075;
    p = p * a2 - 1382.0f / 155925;
    p = p * a2 + 62.0f / 2835;
    p = p * a2 - 17.0f / 315;
    p = p * a2 + 2.0f / 15;
    p = p * a2 - 1.0f / 3;
    const float small = (p * a2 + 1.0f) * a;
    const float e = exp_poly(-2.0f * a);
    const float t = a < 0.5f ? small : (1.0f - e) / (1.0f + e);
    y[i] = v != v ? v : v < 0 ? -t : t;
  }
}

void tanh_op(OpContext& c) {
  const Tensor& x = c.input(0);
  if (x.dtype() == TensorProto::FLOAT) {
    Tensor out(TensorProto::FLOAT, x.shape(), Tensor::Uninitialized{});
    parallel_for(static_cast<size_t>(x.size()), 1 << 16, [&](size_t i0, size_t i1) {
      tanh_row(x.data<float>() + i0, out.data<float>() + i0, i1 - i0);
    });
    c.output(0) = std::move(out);
    return;
  }
  unary_float(c, [](auto v) { return std::tanh(v); });
}
void erf_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::erf(x); });
}
void abs_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::fabs(x); });
}
void floor_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::floor(x); });
}
void ceil_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::ceil(x); });
}
void reciprocal(OpContext& c) {
  unary_float(c, [](auto x) { return decltype(x)(1) / x; });
}
// NaN stays NaN, as in Clip(x, 0): the executor fuses Relu into Conv as that clamp.
void relu(OpContext& c) {
  unary_float(c, [](auto x) { return x < 0 ? decltype(x)(0) : x; });
}
// y = 1 / (1 + e^-x) over a row; compiled for AVX2 too and chosen at run time (GCC
// target_clones), no FMA contraction, so every ISA computes the same floats.
QUANTIZE_CLONES_NO_FMA
void sigmoid_row(const float* x, float* y, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + exp_poly(-x[i]));
}

void sigmoid(OpContext& c) {
  const Tensor& x = c.input(0);
  if (x.dtype() == TensorProto::FLOAT) {
    Tensor out(TensorProto::FLOAT, x.shape());
    parallel_for(static_cast<size_t>(x.size()), 1 << 16, [&](size_t i0, size_t i1) {
      sigmoid_row(x.data<float>() + i0, out.data<float>() + i0, i1 - i0);
    });
    c.output(0) = std::move(out);
    return;
  }
  unary_float(c, [](auto x) { return decltype(x)(1) / (decltype(x)(1) + std::exp(-x)); });
}
void leaky_relu(OpContext& c) {
  const float alpha = c.attr_float("alpha", 0.01f);
  unary_float(c, [alpha](auto x) { return x < 0 ? x * alpha : x; });
}
void elu(OpContext& c) {
  const float alpha = c.attr_float("alpha", 1.0f);
  unary_float(c, [alpha](auto x) { return x < 0 ? alpha * (std::exp(x) - 1) : x; });
}
void selu(OpContext& c) {
  const float alpha = c.attr_float("alpha", 1.67326319217681884765625f);
  const float gamma = c.attr_float("gamma", 1.05070102214813232421875f);
  unary_float(c, [=](auto x) { return gamma * (x <= 0 ? alpha * (std::exp(x) - 1) : x); });
}
void hard_sigmoid(OpContext& c) {
  const float alpha = c.attr_float("alpha", 0.2f), beta = c.attr_float("beta", 0.5f);
  unary_float(c, [=](auto x) {
    return std::max<decltype(x)>(0, std::min<decltype(x)>(1, alpha * x + beta));
  });
}
void hard_swish(OpContext& c) {
  unary_float(c, [](auto x) {
    return x * std::max<decltype(x)>(0, std::min<decltype(x)>(1, x / 6 + decltype(x)(0.5)));
  });
}
void softplus(OpContext& c) {
  unary_float(c, [](auto x) { return std::log1p(std::exp(x)); });
}
void softsign(OpContext& c) {
  unary_float(c, [](auto x) { return x / (1 + std::fabs(x)); });
}
void thresholded_relu(OpContext& c) {
  const float alpha = c.attr_float("alpha", 1.0f);
  unary_float(c, [alpha](auto x) { return x > alpha ? x : decltype(x)(0); });
}
void mish(OpContext& c) {
  unary_float(c, [](auto x) { return x * std::tanh(std::log1p(std::exp(x))); });
}
void sin_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::sin(x); });
}
void cos_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::cos(x); });
}
void round_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::nearbyint(x); });
}
void sign_op(OpContext& c) {
  unary_float(c, [](auto x) { return decltype(x)(x > 0) - decltype(x)(x < 0); });
}
void gelu(OpContext& c) {
  if (c.attr_string("approximate", "none") == "tanh") {
    unary_float(c, [](auto x) {
      return decltype(x)(0.5) * x *
             (1 +
              std::tanh(decltype(x)(0.7978845608028654) * (x + decltype(x)(0.044715) * x * x * x)));
    });
  } else {
    unary_float(c, [](auto x) {
      return decltype(x)(0.5) * x * (1 + std::erf(x * decltype(x)(0.7071067811865476)));
    });
  }
}
// Clip of integer tensors: bounds of the input's type, compared exactly.
template <typename T>
void clip_integer(OpContext& c) {
  const Tensor& x = c.input(0);
  T lo = std::numeric_limits<T>::lowest(), hi = std::numeric_limits<T>::max();
  if (c.has_input(1)) lo = c.input(1).data<T>()[0];
  if (c.has_input(2)) hi = c.input(2).data<T>()[0];
  Tensor out(x.dtype(), x.shape(), Tensor::Uninitialized{});
  for (int64_t i = 0; i < x.size(); ++i) {
    const T v = x.data<T>()[i];
    out.data<T>()[i] = v < lo ? lo : v > hi ? hi : v;
  }
  c.output(0) = std::move(out);
}

void clip(OpContext& c) {
  if (c.opset >= 11) {
    for (int i = 1; i < 3; ++i) {
      if (c.has_input(i) && c.input(i).dtype() != c.input(0).dtype())
        c.fail("bound {} is not of X's type", i);
    }
    switch (c.input(0).dtype()) {
      case TensorProto::INT8:
        return clip_integer<int8_t>(c);
      case TensorProto::UINT8:
        return clip_integer<uint8_t>(c);
      case TensorProto::INT16:
        return clip_integer<int16_t>(c);
      case TensorProto::UINT16:
        return clip_integer<uint16_t>(c);
      case TensorProto::INT32:
        return clip_integer<int32_t>(c);
      case TensorProto::UINT32:
        return clip_integer<uint32_t>(c);
      case TensorProto::INT64:
        return clip_integer<int64_t>(c);
      case TensorProto::UINT64:
        return clip_integer<uint64_t>(c);
      default:
        break;
    }
  }
  float lo = -INFINITY, hi = INFINITY;
  if (c.opset < 11) {
    lo = c.attr_float("min", lo);
    hi = c.attr_float("max", hi);
  } else {
    if (c.has_input(1)) lo = static_cast<float>(c.input(1).element_as_double(0));
    if (c.has_input(2)) hi = static_cast<float>(c.input(2).element_as_double(0));
  }
  unary_float(c, [=](auto x) { return x < lo ? decltype(x)(lo) : x > hi ? decltype(x)(hi) : x; });
}
void prelu(OpContext& c) {
  arithmetic(c, [](auto x, auto slope) { return x < 0 ? x * slope : x; });
}

void neg(OpContext& c) {
  if (c.input(0).dtype() == TensorProto::INT64) {
    Tensor out = c.input(0);
    for (int64_t i = 0; i < out.size(); ++i) out.data<int64_t>()[i] = -out.data<int64_t>()[i];
    c.output(0) = std::move(out);
    return;
  }
  unary_float(c, [](auto x) { return -x; });
}

void where(OpContext& c) {
  const Tensor& cond = c.input(0);
  const Tensor& x = c.input(1);
  const Tensor& y = c.input(2);
  if (x.dtype() != y.dtype()) c.fail("X and Y types differ");
  const auto shape = broadcast_shape(c, broadcast_shape(c, cond.shape(), x.shape()), y.shape());
  Tensor out(x.dtype(), shape);
  const auto oc = broadcast_offsets(cond.shape(), shape), ox = broadcast_offsets(x.shape(), shape),
             oy = broadcast_offsets(y.shape(), shape);
  const size_t size = element_size(x.dtype());
  for (int64_t i = 0; i < out.size(); ++i) {
    const uint8_t* src =
        cond.data<uint8_t>()[oc[i]] ? x.raw() + ox[i] * size : y.raw() + oy[i] * size;
    std::memcpy(out.raw() + i * size, src, size);
  }
  c.output(0) = std::move(out);
}

void identity(OpContext& c) { c.output(0) = c.input(0); }

void cast_to(OpContext& c, int to);

// Cast to STRING: numbers in their shortest round-trip form, NaN and infinities as ONNX spells
// them; from STRING: parsed as numbers (NaN, INF, +INF, -INF in any case included).
Tensor cast_text(OpContext& c, const Tensor& x, int to) {
  Tensor out(to, x.shape());
  if (to == TensorProto::STRING) {
    const bool integral = x.dtype() != TensorProto::FLOAT && x.dtype() != TensorProto::DOUBLE &&
                          x.dtype() != TensorProto::FLOAT16 && x.dtype() != TensorProto::BFLOAT16;
    for (int64_t i = 0; i < x.size(); ++i) {
      const double v = x.element_as_double(i);
      char buf[64];
      if (std::isnan(v)) {
        out.strings()[i] = "NaN";
      } else if (std::isinf(v)) {
        out.strings()[i] = v < 0 ? "-INF" : "INF";
      } else if (integral) {
        out.strings()[i] = x.dtype() == TensorProto::INT64 ? std::to_string(x.data<int64_t>()[i])
                           : x.dtype() == TensorProto::UINT64
                               ? std::to_string(x.data<uint64_t>()[i])
                               : std::to_string(static_cast<int64_t>(v));
      } else {
        const auto r = x.dtype() == TensorProto::DOUBLE
                           ? std::to_chars(buf, buf + sizeof buf, v)
                           : std::to_chars(buf, buf + sizeof buf, static_cast<float>(v));
        out.strings()[i].assign(buf, r.ptr);
      }
    }
    return out;
  }
  Tensor number(TensorProto::DOUBLE, x.shape());
  for (int64_t i = 0; i < x.size(); ++i) {
    const std::string& text = x.strings()[i];
    char* end = nullptr;
    number.data<double>()[i] = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || *end != '\0') c.fail("'{}' is not a number", text);
  }
  if (to == TensorProto::DOUBLE) return number;
  std::vector<Tensor> result(1);
  std::vector<const Tensor*> in{&number};
  OpContext step(c.model, c.node, c.opset, in, result);
  cast_to(step, to);
  return std::move(result[0]);
}

bool plain_number(int dtype) {
  return dtype != TensorProto::FLOAT16 && dtype != TensorProto::BFLOAT16 &&
         dtype != TensorProto::STRING && dtype != TensorProto::BOOL && element_size(dtype) != 0;
}

void cast_to(OpContext& c, int to) {
  const Tensor& x = c.input(0);
  if (x.dtype() == TensorProto::STRING || to == TensorProto::STRING) {
    c.output(0) = x.dtype() == to ? x : cast_text(c, x, to);
    return;
  }
  if (plain_number(x.dtype()) && (plain_number(to) || to == TensorProto::BOOL)) {
    // Between C++ number types: one typed loop (bool: != 0).
    Tensor out(to, x.shape(), Tensor::Uninitialized{});
    with_type(c, x.dtype(), [&](auto from) {
      using F = decltype(from);
      const F* src = x.data<F>();
      if (to == TensorProto::BOOL) {
        for (int64_t i = 0; i < x.size(); ++i) out.data<uint8_t>()[i] = src[i] != F(0);
        return;
      }
      with_type(c, to, [&](auto into) {
        using T = decltype(into);
        T* dst = out.data<T>();
        for (int64_t i = 0; i < x.size(); ++i) dst[i] = static_cast<T>(src[i]);
      });
    });
    c.output(0) = std::move(out);
    return;
  }
  Tensor out(to, x.shape());
  for (int64_t i = 0; i < x.size(); ++i) {
    switch (to) {
      case TensorProto::FLOAT:
        out.data<float>()[i] = x.dtype() == TensorProto::FLOAT16
                                   ? f16_to_f32_scalar(x.data<uint16_t>()[i])
                                   : static_cast<float>(x.element_as_double(i));
        break;
      case TensorProto::FLOAT16:
        out.data<uint16_t>()[i] = f32_to_f16_scalar(static_cast<float>(x.element_as_double(i)));
        break;
      case TensorProto::DOUBLE:
        out.data<double>()[i] = x.element_as_double(i);
        break;
      case TensorProto::INT64:
        out.data<int64_t>()[i] = x.dtype() == TensorProto::INT64
                                     ? x.data<int64_t>()[i]
                                     : static_cast<int64_t>(x.element_as_double(i));
        break;
      case TensorProto::INT32:
        out.data<int32_t>()[i] = static_cast<int32_t>(x.element_as_double(i));
        break;
      case TensorProto::BOOL:
        out.data<uint8_t>()[i] = x.element_as_double(i) != 0;
        break;
      case TensorProto::UINT8:
        out.data<uint8_t>()[i] = static_cast<uint8_t>(x.element_as_double(i));
        break;
      case TensorProto::INT8:
        out.data<int8_t>()[i] = static_cast<int8_t>(x.element_as_double(i));
        break;
      case TensorProto::INT16:
        out.data<int16_t>()[i] = static_cast<int16_t>(x.element_as_double(i));
        break;
      case TensorProto::UINT16:
        out.data<uint16_t>()[i] = static_cast<uint16_t>(x.element_as_double(i));
        break;
      case TensorProto::UINT32:
        out.data<uint32_t>()[i] = static_cast<uint32_t>(x.element_as_double(i));
        break;
      case TensorProto::UINT64:
        out.data<uint64_t>()[i] = x.dtype() == TensorProto::UINT64
                                      ? x.data<uint64_t>()[i]
                                      : static_cast<uint64_t>(x.element_as_double(i));
        break;
      case TensorProto::BFLOAT16: {  // round to nearest even; NaN stays a quiet NaN
        const float f = static_cast<float>(x.element_as_double(i));
        uint32_t bits;
        std::memcpy(&bits, &f, sizeof bits);
        out.data<uint16_t>()[i] =
            std::isnan(f) ? static_cast<uint16_t>((bits >> 16) | 0x40)
                          : static_cast<uint16_t>((bits + 0x7fff + ((bits >> 16) & 1)) >> 16);
        break;
      }
      default:
        c.fail("Cast to data type {} is not supported", to);
    }
  }
  c.output(0) = std::move(out);
}

void cast(OpContext& c) { cast_to(c, static_cast<int>(c.attr_int("to", 0))); }
void cast_like(OpContext& c) { cast_to(c, c.input(1).dtype()); }

void tan_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::tan(x); });
}
void sinh_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::sinh(x); });
}
void cosh_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::cosh(x); });
}
void asin_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::asin(x); });
}
void acos_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::acos(x); });
}
void atan_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::atan(x); });
}
void asinh_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::asinh(x); });
}
void acosh_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::acosh(x); });
}
void atanh_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::atanh(x); });
}
void celu(OpContext& c) {
  const float alpha = c.attr_float("alpha", 1.0f);
  unary_float(c, [alpha](auto x) {
    using T = decltype(x);
    return std::max<T>(0, x) + std::min<T>(0, T(alpha) * (std::exp(x / T(alpha)) - 1));
  });
}
void shrink(OpContext& c) {
  const float lambd = c.attr_float("lambd", 0.5f), bias = c.attr_float("bias", 0.0f);
  unary_float(c, [=](auto x) {
    using T = decltype(x);
    return x < -lambd ? x + T(bias) : x > lambd ? x - T(bias) : T(0);
  });
}

// IsNaN, IsInf (detect_negative / detect_positive): bool per element of a float tensor.
template <bool kNaN>
void float_class(OpContext& c) {
  const Tensor& x = c.input(0);
  if (x.dtype() != TensorProto::FLOAT && x.dtype() != TensorProto::DOUBLE)
    c.fail("input data type {} is not supported", x.dtype());
  const bool neg = c.attr_int("detect_negative", 1) != 0,
             pos = c.attr_int("detect_positive", 1) != 0;
  Tensor out(TensorProto::BOOL, x.shape());
  for (int64_t i = 0; i < x.size(); ++i) {
    const double v = x.element_as_double(i);
    out.data<uint8_t>()[i] =
        kNaN ? std::isnan(v) : std::isinf(v) && ((v < 0 && neg) || (v > 0 && pos));
  }
  c.output(0) = std::move(out);
}

// Mod: fmod = 1, C's fmod (sign of the dividend); fmod = 0 (integers only), the sign of the
// divisor.
void mod(OpContext& c) {
  const bool fmod = c.attr_int("fmod", 0) != 0;
  if (!fmod &&
      (c.input(0).dtype() == TensorProto::FLOAT || c.input(0).dtype() == TensorProto::DOUBLE)) {
    c.fail("fmod = 0 on floating-point inputs is not defined");
  }
  arithmetic(c, [fmod](auto a, auto b) {
    using T = decltype(a);
    if constexpr (std::is_floating_point_v<T>) {
      return static_cast<T>(std::fmod(a, b));
    } else {
      if (b == 0) return T(0);
      T r = static_cast<T>(a % b);
      if (!fmod && r != 0 && ((r < 0) != (b < 0))) r = static_cast<T>(r + b);
      return r;
    }
  });
}

// Dropout at inference: the input unchanged, the mask all true. Training mode is refused.
void dropout(OpContext& c) {
  if (c.has_input(2) && c.input(2).element_as_double(0) != 0)
    c.fail("training_mode is not supported");
  c.output(0) = c.input(0);
  if (c.output_count() > 1) {
    Tensor mask(TensorProto::BOOL, c.input(0).shape());
    std::fill(mask.raw(), mask.raw() + mask.bytes(), uint8_t{1});
    c.output(1) = std::move(mask);
  }
}

}  // namespace

void register_elementwise(Registry& r) {
  r["Add"] = add;
  r["Sub"] = sub;
  r["Mul"] = mul;
  r["Div"] = div;
  r["Pow"] = pow;
  r["Max"] = max_op;
  r["Min"] = min_op;
  r["Sum"] = sum_op;
  r["Mean"] = mean_op;
  r["LeakyRelu"] = leaky_relu;
  r["Elu"] = elu;
  r["Selu"] = selu;
  r["HardSigmoid"] = hard_sigmoid;
  r["HardSwish"] = hard_swish;
  r["Softplus"] = softplus;
  r["Softsign"] = softsign;
  r["ThresholdedRelu"] = thresholded_relu;
  r["Mish"] = mish;
  r["Sin"] = sin_op;
  r["Cos"] = cos_op;
  r["Round"] = round_op;
  r["Sign"] = sign_op;
  r["Gelu"] = gelu;
  r["Clip"] = clip;
  r["PRelu"] = prelu;
  r["Equal"] = equal;
  r["Less"] = less;
  r["Greater"] = greater;
  r["LessOrEqual"] = less_equal;
  r["GreaterOrEqual"] = greater_equal;
  r["And"] = logical_and;
  r["Or"] = logical_or;
  r["Xor"] = logical_xor;
  r["Not"] = logical_not;
  r["BitShift"] = bit_shift;
  r["Sqrt"] = sqrt_op;
  r["Exp"] = exp_op;
  r["Log"] = log_op;
  r["Tanh"] = tanh_op;
  r["Erf"] = erf_op;
  r["Abs"] = abs_op;
  r["Floor"] = floor_op;
  r["Ceil"] = ceil_op;
  r["Reciprocal"] = reciprocal;
  r["Relu"] = relu;
  r["Sigmoid"] = sigmoid;
  r["Neg"] = neg;
  r["Where"] = where;
  r["Identity"] = identity;
  r["Cast"] = cast;
  r["CastLike"] = cast_like;
  r["Tan"] = tan_op;
  r["Sinh"] = sinh_op;
  r["Cosh"] = cosh_op;
  r["Asin"] = asin_op;
  r["Acos"] = acos_op;
  r["Atan"] = atan_op;
  r["Asinh"] = asinh_op;
  r["Acosh"] = acosh_op;
  r["Atanh"] = atanh_op;
  r["Celu"] = celu;
  r["Shrink"] = shrink;
  r["IsNaN"] = float_class<true>;
  r["IsInf"] = float_class<false>;
  r["Mod"] = mod;
  r["Dropout"] = dropout;
}

}  // namespace quantize::exec
