// Ops that make tensors from attributes, shapes or scalars: Constant, ConstantOfShape, Range,
// OneHot, EyeLike.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "executor/core/ops.h"
#include "model/tensor_data.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

void range(OpContext& c) {
  const Tensor& start = c.input(0);
  const double s = start.element_as_double(0), limit = c.input(1).element_as_double(0),
               delta = c.input(2).element_as_double(0);
  if (delta == 0) c.fail("delta 0");
  const int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((limit - s) / delta)));
  Tensor out(start.dtype(), {n});
  for (int64_t i = 0; i < n; ++i) {
    const double v = s + static_cast<double>(i) * delta;
    switch (start.dtype()) {
      case TensorProto::FLOAT:
        out.data<float>()[i] = static_cast<float>(v);
        break;
      case TensorProto::INT64:
        out.data<int64_t>()[i] = static_cast<int64_t>(v);
        break;
      case TensorProto::INT32:
        out.data<int32_t>()[i] = static_cast<int32_t>(v);
        break;
      case TensorProto::DOUBLE:
        out.data<double>()[i] = v;
        break;
      default:
        c.fail("data type {} is not supported", start.dtype());
    }
  }
  c.output(0) = std::move(out);
}

void constant(OpContext& c) {
  if (const auto* t = c.attr_tensor("value")) {
    c.output(0) = tensor_from_proto(c.model, *t);
  } else if (c.has_attr("value_float")) {
    Tensor t(TensorProto::FLOAT, {});
    t.data<float>()[0] = c.attr_float("value_float", 0);
    c.output(0) = std::move(t);
  } else if (c.has_attr("value_int")) {
    c.output(0) = int64_tensor({c.attr_int("value_int", 0)}, {});
  } else if (c.has_attr("value_ints")) {
    auto v = c.attr_ints("value_ints");
    c.output(0) = int64_tensor(v, {static_cast<int64_t>(v.size())});
  } else {
    c.fail("only value, value_float, value_int and value_ints are supported");
  }
}

void constant_of_shape(OpContext& c) {
  const auto shape = c.input(0).to_int64();
  const onnx::TensorProto* value = c.attr_tensor("value");
  Tensor fill = value ? tensor_from_proto(c.model, *value) : Tensor(TensorProto::FLOAT, {1});
  Tensor out(fill.dtype(), shape);
  const size_t size = element_size(fill.dtype());
  for (int64_t i = 0; i < out.size(); ++i) std::memcpy(out.raw() + i * size, fill.raw(), size);
  c.output(0) = std::move(out);
}

// OneHot: indices (negative count back from depth), depth, values [off, on]; the new axis.
void one_hot(OpContext& c) {
  const Tensor& indices = c.input(0);
  const int64_t depth = static_cast<int64_t>(c.input(1).element_as_double(0));
  const Tensor& values = c.input(2);
  const int64_t rank = indices.rank() + 1;
  const int64_t axis = normalize_axis(c, c.attr_int("axis", -1), rank);
  std::vector<int64_t> shape = indices.shape();
  shape.insert(shape.begin() + axis, depth);
  Tensor out(values.dtype(), shape);
  const size_t size = element_size(values.dtype());
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= shape[i];
  for (int64_t i = axis + 1; i < rank; ++i) inner *= shape[i];
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t d = 0; d < depth; ++d) {
      for (int64_t in = 0; in < inner; ++in) {
        int64_t k = static_cast<int64_t>(indices.element_as_double(o * inner + in));
        if (k < 0) k += depth;
        const int64_t which = k == d ? 1 : 0;
        std::memcpy(out.raw() + ((o * depth + d) * inner + in) * size, values.raw() + which * size,
                    size);
      }
    }
  }
  c.output(0) = std::move(out);
}

// EyeLike: ones on diagonal k of a 2-D tensor shaped like the input, of type `dtype` (default the
// input's).
void eye_like(OpContext& c) {
  const Tensor& x = c.input(0);
  if (x.rank() != 2) c.fail("the input has rank {}, EyeLike needs 2", x.rank());
  const int dtype = static_cast<int>(c.attr_int("dtype", x.dtype()));
  const int64_t k = c.attr_int("k", 0), rows = x.shape()[0], cols = x.shape()[1];
  Tensor out(dtype, x.shape());
  with_type(c, dtype, [&](auto zero) {
    using T = decltype(zero);
    for (int64_t i = 0; i < rows; ++i) {
      if (i + k >= 0 && i + k < cols) out.data<T>()[i * cols + i + k] = T(1);
    }
  });
  c.output(0) = std::move(out);
}

}  // namespace

void register_constant(Registry& r) {
  r["OneHot"] = one_hot;
  r["Range"] = range;
  r["Constant"] = constant;
  r["ConstantOfShape"] = constant_of_shape;
  r["EyeLike"] = eye_like;
}

}  // namespace quantize::exec
