// Element-wise arithmetic with numpy broadcasting: Add, Sub, Mul, Div, Pow, Mod, Neg, and the
// variadic Max, Min, Sum and Mean.
#include <cmath>
#include <type_traits>

#include "executor/core/ops.h"
#include "executor/ops/elementwise.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

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

void neg(OpContext& c) {
  if (c.input(0).dtype() == TensorProto::INT64) {
    Tensor out = c.input(0);
    for (int64_t i = 0; i < out.size(); ++i) out.data<int64_t>()[i] = -out.data<int64_t>()[i];
    c.output(0) = std::move(out);
    return;
  }
  unary_float(c, [](auto x) { return -x; });
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

}  // namespace

void register_arithmetic(Registry& r) {
  r["Add"] = add;
  r["Sub"] = sub;
  r["Mul"] = mul;
  r["Div"] = div;
  r["Pow"] = pow;
  r["Max"] = max_op;
  r["Min"] = min_op;
  r["Sum"] = sum_op;
  r["Mean"] = mean_op;
  r["Neg"] = neg;
  r["Mod"] = mod;
}

}  // namespace quantize::exec
