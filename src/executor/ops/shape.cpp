// Ops on shapes alone, the data copied as it is: Shape, Size, Reshape, Flatten, Squeeze,
// Unsqueeze.
#include <algorithm>
#include <cstring>

#include "executor/core/ops.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

// A copy of x with another shape (same element count).
Tensor reshaped(const OpContext& c, const Tensor& x, std::vector<int64_t> shape) {
  Tensor t(x.dtype(), std::move(shape));
  if (t.size() != x.size()) c.fail("cannot reshape {} elements to {}", x.size(), t.size());
  std::memcpy(t.raw(), x.raw(), x.bytes());
  return t;
}

void shape_op(OpContext& c) {
  const auto& s = c.input(0).shape();
  const int64_t rank = static_cast<int64_t>(s.size());
  int64_t start = c.attr_int("start", 0), end = c.attr_int("end", rank);
  if (start < 0) start += rank;
  if (end < 0) end += rank;
  start = std::clamp<int64_t>(start, 0, rank);
  end = std::clamp<int64_t>(end, start, rank);
  std::vector<int64_t> v(s.begin() + start, s.begin() + end);
  c.output(0) = int64_tensor(v, {static_cast<int64_t>(v.size())});
}

void size_op(OpContext& c) { c.output(0) = int64_tensor({c.input(0).size()}, {}); }

void reshape(OpContext& c) {
  const Tensor& x = c.input(0);
  std::vector<int64_t> shape = c.opset >= 5 ? c.input(1).to_int64() : c.attr_ints("shape");
  const bool allow_zero = c.attr_int("allowzero", 0) != 0;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 0 && !allow_zero) {
      if (i >= x.shape().size()) c.fail("0 in the shape has no input dimension to copy");
      shape[i] = x.shape()[i];
    }
    if (shape[i] == -1) {
      if (infer >= 0) c.fail("more than one -1 in the shape");
      infer = static_cast<int64_t>(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) shape[infer] = known ? x.size() / known : 0;
  c.output(0) = reshaped(c, x, shape);
}

void flatten(OpContext& c) {
  const Tensor& x = c.input(0);
  int64_t axis = c.attr_int("axis", 1);  // in [-rank, rank]
  if (axis < -x.rank() || axis > x.rank())
    c.fail("axis {} is out of range for rank {}", axis, x.rank());
  if (axis < 0) axis += x.rank();
  int64_t outer = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.shape()[i];
  c.output(0) = reshaped(c, x, {outer, outer ? x.size() / outer : 0});
}

std::vector<int64_t> axes_of(const OpContext& c, int input) {
  if (c.opset >= 13) return c.has_input(input) ? c.input(input).to_int64() : std::vector<int64_t>{};
  return c.attr_ints("axes");
}

void unsqueeze(OpContext& c) {
  const Tensor& x = c.input(0);
  auto axes = axes_of(c, 1);
  const int64_t rank = x.rank() + static_cast<int64_t>(axes.size());
  std::vector<bool> inserted(rank, false);
  for (int64_t a : axes) {
    const int64_t at = normalize_axis(c, a, rank);
    if (inserted[at]) c.fail("axis {} is given twice", a);
    inserted[at] = true;
  }
  std::vector<int64_t> shape;
  size_t k = 0;
  for (int64_t i = 0; i < rank; ++i) shape.push_back(inserted[i] ? 1 : x.shape()[k++]);
  c.output(0) = reshaped(c, x, shape);
}

void squeeze(OpContext& c) {
  const Tensor& x = c.input(0);
  auto axes = axes_of(c, 1);
  std::vector<bool> drop(x.rank(), axes.empty());
  if (axes.empty()) {
    for (int64_t i = 0; i < x.rank(); ++i) drop[i] = x.shape()[i] == 1;
  }
  for (int64_t a : axes) {
    if (x.rank() == 0) c.fail("a scalar has no axis {} to squeeze", a);
    drop[normalize_axis(c, a, x.rank())] = true;
  }
  std::vector<int64_t> shape;
  for (int64_t i = 0; i < x.rank(); ++i) {
    if (!drop[i]) shape.push_back(x.shape()[i]);
  }
  c.output(0) = reshaped(c, x, shape);
}

}  // namespace

void register_shape(Registry& r) {
  r["Shape"] = shape_op;
  r["Size"] = size_op;
  r["Reshape"] = reshape;
  r["Flatten"] = flatten;
  r["Unsqueeze"] = unsqueeze;
  r["Squeeze"] = squeeze;
}

}  // namespace quantize::exec
