// Gathers and scatters: Gather, GatherElements, GatherND, ScatterND, ScatterElements (and the
// older Scatter).
#include <algorithm>
#include <cstring>
#include <string>

#include "executor/core/ops.h"
#include "model/tensor_data.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

int64_t checked_index(const OpContext& c, int64_t k, int64_t dim) {
  if (k < 0) k += dim;
  if (k < 0 || k >= dim)
    c.fail("index {} is out of range for a dimension of {}", k < 0 ? k - dim : k, dim);
  return k;
}

// How a scatter combines an update with the value in place: reduction = none, add, mul, max, min.
template <typename T>
T combine(const std::string& reduction, T old, T update) {
  if (reduction == "add") return static_cast<T>(old + update);
  if (reduction == "mul") return static_cast<T>(old * update);
  if (reduction == "max") return std::max(old, update);
  if (reduction == "min") return std::min(old, update);
  return update;
}

void check_reduction(const OpContext& c, const std::string& reduction) {
  if (reduction != "none" && reduction != "add" && reduction != "mul" && reduction != "max" &&
      reduction != "min") {
    c.fail("reduction '{}' is not supported", reduction);
  }
}

void gather(OpContext& c) {
  const Tensor& data = c.input(0);
  if (data.rank() == 0) c.fail("data is a scalar: nothing to gather along");
  const auto idx = c.input(1).to_int64();
  const int64_t axis = normalize_axis(c, c.attr_int("axis", 0), data.rank());
  std::vector<int64_t> shape(data.shape().begin(), data.shape().begin() + axis);
  for (int64_t d : c.input(1).shape()) shape.push_back(d);
  for (int64_t i = axis + 1; i < data.rank(); ++i) shape.push_back(data.shape()[i]);
  Tensor out(data.dtype(), shape);
  int64_t outer = 1, inner = element_size(data.dtype());
  for (int64_t i = 0; i < axis; ++i) outer *= data.shape()[i];
  for (int64_t i = axis + 1; i < data.rank(); ++i) inner *= data.shape()[i];
  const int64_t dim = data.shape()[axis], count = static_cast<int64_t>(idx.size());
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t k = 0; k < count; ++k) {
      int64_t j = idx[k] < 0 ? idx[k] + dim : idx[k];
      if (j < 0 || j >= dim) c.fail("index {} is out of range [{}, {})", idx[k], -dim, dim);
      std::memcpy(out.raw() + (o * count + k) * inner, data.raw() + (o * dim + j) * inner, inner);
    }
  }
  c.output(0) = std::move(out);
}

// GatherElements: out[i...] = data[i... with index[i...] on `axis`] (negative indices count back).
void gather_elements(OpContext& c) {
  const Tensor& data = c.input(0);
  const Tensor& idx_t = c.input(1);
  const auto idx = idx_t.to_int64();
  const int64_t axis = normalize_axis(c, c.attr_int("axis", 0), data.rank());
  Tensor out(data.dtype(), idx_t.shape());
  const size_t size = element_size(data.dtype());
  const auto st = strides_of(data.shape());
  std::vector<int64_t> index;
  for (int64_t o = 0; o < out.size(); ++o) {
    unflatten(o, idx_t.shape(), index);
    int64_t k = idx[o];
    if (k < 0) k += data.shape()[axis];
    if (k < 0 || k >= data.shape()[axis]) c.fail("index {} out of range", idx[o]);
    index[axis] = k;
    int64_t src = 0;
    for (int64_t i = 0; i < data.rank(); ++i) src += index[i] * st[i];
    std::memcpy(out.raw() + o * size, data.raw() + src * size, size);
  }
  c.output(0) = std::move(out);
}

// GatherND: out[i..., :] = data[batch(i), indices[i..., 0..k-1], :] for the last axis of indices
// of length k, the first batch_dims axes shared by data and indices.
void gather_nd(OpContext& c) {
  const Tensor& data = c.input(0);
  const Tensor& indices = c.input(1);
  const auto idx = indices.to_int64();
  const int64_t b = c.attr_int("batch_dims", 0), r = data.rank(), q = indices.rank();
  if (q < 1 || b < 0 || b >= std::min(r, q))
    c.fail("batch_dims {} does not fit ranks {} and {}", b, r, q);
  const int64_t k = indices.shape().back();
  if (k < 1 || k > r - b)
    c.fail("index tuples of {} for data of rank {} and batch_dims {}", k, r, b);
  std::vector<int64_t> shape(indices.shape().begin(), indices.shape().end() - 1);
  shape.insert(shape.end(), data.shape().begin() + b + k, data.shape().end());
  Tensor out(data.dtype(), shape);
  int64_t batch = 1, slice = 1, per_batch = 1;
  for (int64_t i = 0; i < b; ++i) batch *= data.shape()[i];
  for (int64_t i = b + k; i < r; ++i) slice *= data.shape()[i];
  for (int64_t i = b; i < r; ++i) per_batch *= data.shape()[i];
  const auto st = strides_of(data.shape());
  const int64_t tuples = static_cast<int64_t>(idx.size()) / k, per = batch ? tuples / batch : 0;
  const size_t size = element_size(data.dtype());
  for (int64_t t = 0; t < tuples; ++t) {
    int64_t src = (per ? t / per : 0) * per_batch;
    for (int64_t j = 0; j < k; ++j)
      src += checked_index(c, idx[t * k + j], data.shape()[b + j]) * st[b + j];
    std::memcpy(out.raw() + t * slice * size, data.raw() + src * size, slice * size);
  }
  c.output(0) = std::move(out);
}

// ScatterND: a copy of data with the slices that indices [..., k] name replaced (or combined, by
// `reduction`) by updates, in order.
void scatter_nd(OpContext& c) {
  const Tensor& data = c.input(0);
  const auto idx = c.input(1).to_int64();
  const Tensor& updates = c.input(2);
  const std::string reduction = c.attr_string("reduction", "none");
  check_reduction(c, reduction);
  if (updates.dtype() != data.dtype()) c.fail("updates are not of data's type");
  const int64_t k = c.input(1).shape().back();
  if (k < 1 || k > data.rank()) c.fail("index tuples of {} for data of rank {}", k, data.rank());
  int64_t slice = 1;
  for (int64_t i = k; i < data.rank(); ++i) slice *= data.shape()[i];
  const int64_t tuples = static_cast<int64_t>(idx.size()) / k;
  if (updates.size() != tuples * slice)
    c.fail("updates hold {} values, {} expected", updates.size(), tuples * slice);
  const auto st = strides_of(data.shape());
  Tensor out = data;
  with_type(c, data.dtype(), [&](auto zero) {
    using T = decltype(zero);
    for (int64_t t = 0; t < tuples; ++t) {
      int64_t dst = 0;
      for (int64_t j = 0; j < k; ++j)
        dst += checked_index(c, idx[t * k + j], data.shape()[j]) * st[j];
      for (int64_t e = 0; e < slice; ++e) {
        T& v = out.data<T>()[dst + e];
        v = combine(reduction, v, updates.data<T>()[t * slice + e]);
      }
    }
  });
  c.output(0) = std::move(out);
}

// ScatterElements (and Scatter, its opset 9-10 name): out[index with index[axis] = indices[p]]
// = updates[p] for every position p of indices, combined by `reduction`.
void scatter_elements(OpContext& c) {
  const Tensor& data = c.input(0);
  const Tensor& indices = c.input(1);
  const Tensor& updates = c.input(2);
  const auto idx = indices.to_int64();
  const std::string reduction = c.attr_string("reduction", "none");
  check_reduction(c, reduction);
  if (updates.dtype() != data.dtype()) c.fail("updates are not of data's type");
  if (updates.shape() != indices.shape()) c.fail("updates and indices differ in shape");
  const int64_t axis = normalize_axis(c, c.attr_int("axis", 0), data.rank());
  const auto st = strides_of(data.shape());
  Tensor out = data;
  std::vector<int64_t> index;
  with_type(c, data.dtype(), [&](auto zero) {
    using T = decltype(zero);
    for (int64_t p = 0; p < indices.size(); ++p) {
      unflatten(p, indices.shape(), index);
      index[axis] = checked_index(c, idx[p], data.shape()[axis]);
      int64_t dst = 0;
      for (int64_t i = 0; i < data.rank(); ++i) dst += index[i] * st[i];
      T& v = out.data<T>()[dst];
      v = combine(reduction, v, updates.data<T>()[p]);
    }
  });
  c.output(0) = std::move(out);
}

}  // namespace

void register_gather_scatter(Registry& r) {
  r["Gather"] = gather;
  r["GatherElements"] = gather_elements;
  r["GatherND"] = gather_nd;
  r["ScatterND"] = scatter_nd;
  r["ScatterElements"] = scatter_elements;
  r["Scatter"] = scatter_elements;
}

}  // namespace quantize::exec
