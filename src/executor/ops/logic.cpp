// Element-wise comparisons and logic with numpy broadcasting: Equal, Less, Greater,
// LessOrEqual, GreaterOrEqual, And, Or, Xor, Not, BitShift, Where, IsNaN, IsInf.
#include <cmath>
#include <cstring>
#include <string>
#include <type_traits>

#include "executor/core/ops.h"
#include "executor/ops/elementwise.h"
#include "model/tensor_data.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

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

}  // namespace

void register_logic(Registry& r) {
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
  r["Where"] = where;
  r["IsNaN"] = float_class<true>;
  r["IsInf"] = float_class<false>;
}

}  // namespace quantize::exec
