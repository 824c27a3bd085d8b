// Activations: Relu, Sigmoid, Tanh (vectorized, exp_poly), LeakyRelu, PRelu, Elu, Selu, Celu,
// HardSigmoid, HardSwish, Softplus, Softsign, ThresholdedRelu, Mish, Gelu, Shrink, Clip.
#include <algorithm>
#include <cmath>
#include <limits>

#include "executor/core/ops.h"
#include "executor/ops/elementwise.h"
#include "support/threads.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

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

}  // namespace

void register_activation(Registry& r) {
  r["LeakyRelu"] = leaky_relu;
  r["Elu"] = elu;
  r["Selu"] = selu;
  r["HardSigmoid"] = hard_sigmoid;
  r["HardSwish"] = hard_swish;
  r["Softplus"] = softplus;
  r["Softsign"] = softsign;
  r["ThresholdedRelu"] = thresholded_relu;
  r["Mish"] = mish;
  r["Gelu"] = gelu;
  r["Clip"] = clip;
  r["PRelu"] = prelu;
  r["Tanh"] = tanh_op;
  r["Relu"] = relu;
  r["Sigmoid"] = sigmoid;
  r["Celu"] = celu;
  r["Shrink"] = shrink;
}

}  // namespace quantize::exec
