// Shape and indexing ops: Shape, Reshape, Transpose, (Un)Squeeze, Concat, Split, Slice, Gather,
// Expand, Range, Constant, ConstantOfShape, Flatten.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <type_traits>

#include "model/tensor_data.h"
#include "ops.h"

namespace quantize::exec {

std::vector<int64_t> strides_of(const std::vector<int64_t>& shape) {
  std::vector<int64_t> st(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) st[i - 1] = st[i] * shape[i];
  return st;
}

void unflatten(int64_t flat, const std::vector<int64_t>& shape, std::vector<int64_t>& index) {
  index.resize(shape.size());
  for (size_t i = shape.size(); i-- > 0;) {
    index[i] = shape[i] ? flat % shape[i] : 0;
    flat = shape[i] ? flat / shape[i] : 0;
  }
}

Tensor int64_tensor(const std::vector<int64_t>& v, std::vector<int64_t> shape) {
  Tensor t(onnx::TensorProto::INT64, std::move(shape));
  if (!v.empty()) std::memcpy(t.raw(), v.data(), v.size() * sizeof(int64_t));
  return t;
}

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

// n elements of type T from src every `step` elements to dst, contiguous.
template <typename T>
void copy_strided(uint8_t* dst, const uint8_t* src, int64_t n, int64_t step) {
  T* d = reinterpret_cast<T*>(dst);
  const T* s = reinterpret_cast<const T*>(src);
  for (int64_t k = 0; k < n; ++k) d[k] = s[k * step];
}

// The same for elements of `size` bytes.
void gather_row(uint8_t* dst, const uint8_t* src, int64_t n, int64_t step, size_t size) {
  if (step == 1) {
    std::memcpy(dst, src, n * size);
    return;
  }
  switch (size) {
    case 4:
      copy_strided<uint32_t>(dst, src, n, step);
      break;
    case 8:
      copy_strided<uint64_t>(dst, src, n, step);
      break;
    case 2:
      copy_strided<uint16_t>(dst, src, n, step);
      break;
    case 1:
      copy_strided<uint8_t>(dst, src, n, step);
      break;
    default:
      for (int64_t k = 0; k < n; ++k) std::memcpy(dst + k * size, src + k * step * size, size);
  }
}

void transpose(OpContext& c) {
  const Tensor& x = c.input(0);
  const int64_t rank = x.rank();
  std::vector<int64_t> perm = c.attr_ints("perm");
  if (perm.empty()) {
    perm.resize(rank);
    for (int64_t i = 0; i < rank; ++i) perm[i] = rank - 1 - i;
  }
  if (static_cast<int64_t>(perm.size()) != rank)
    c.fail("perm has {} entries for rank {}", perm.size(), rank);
  std::vector<int64_t> shape(rank), in_strides(rank), strides(rank);
  int64_t s = 1;
  for (int64_t i = rank; i-- > 0;) {
    in_strides[i] = s;
    s *= x.shape()[i];
  }
  for (int64_t i = 0; i < rank; ++i) {
    shape[i] = x.shape()[normalize_axis(c, perm[i], rank)];
    strides[i] = in_strides[perm[i]];
  }
  Tensor out(x.dtype(), shape);
  if (out.size() == 0 || rank == 0) {
    if (out.size()) std::memcpy(out.raw(), x.raw(), out.bytes());
    c.output(0) = std::move(out);
    return;
  }
  // Output rows along the last axis, each a strided gather from x.
  const size_t size = element_size(x.dtype());
  const int64_t last = rank - 1, row = shape[last], rows = out.size() / row, step = strides[last];
  std::vector<int64_t> index(rank, 0);
  int64_t offset = 0;
  for (int64_t r = 0; r < rows; ++r) {
    uint8_t* dst = out.raw() + r * row * size;
    const uint8_t* src = x.raw() + offset * size;
    gather_row(dst, src, row, step, size);
    for (int64_t i = last; i-- > 0;) {
      ++index[i];
      offset += strides[i];
      if (index[i] < shape[i]) break;
      offset -= strides[i] * index[i];
      index[i] = 0;
    }
  }
  c.output(0) = std::move(out);
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
  for (int64_t a : axes) inserted[normalize_axis(c, a, rank)] = true;
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
  for (int64_t a : axes) drop[normalize_axis(c, a, x.rank())] = true;
  std::vector<int64_t> shape;
  for (int64_t i = 0; i < x.rank(); ++i) {
    if (!drop[i]) shape.push_back(x.shape()[i]);
  }
  c.output(0) = reshaped(c, x, shape);
}

// Copies `count` blocks of `inner` bytes between strided positions.
void copy_blocks(uint8_t* dst, int64_t dst_stride, const uint8_t* src, int64_t src_stride,
                 int64_t count, int64_t inner) {
  for (int64_t i = 0; i < count; ++i)
    std::memcpy(dst + i * dst_stride, src + i * src_stride, inner);
}

void concat(OpContext& c) {
  const Tensor& first = c.input(0);
  const int64_t axis = normalize_axis(c, c.attr_int("axis", 0), first.rank());
  std::vector<int64_t> shape = first.shape();
  shape[axis] = 0;
  for (int i = 0; i < c.input_count(); ++i) shape[axis] += c.input(i).shape()[axis];
  Tensor out(first.dtype(), shape);
  int64_t outer = 1, inner = element_size(first.dtype());
  for (int64_t i = 0; i < axis; ++i) outer *= shape[i];
  for (int64_t i = axis + 1; i < first.rank(); ++i) inner *= shape[i];
  int64_t at = 0;
  for (int i = 0; i < c.input_count(); ++i) {
    const Tensor& x = c.input(i);
    const int64_t chunk = x.shape()[axis] * inner;
    copy_blocks(out.raw() + at, shape[axis] * inner, x.raw(), chunk, outer, chunk);
    at += chunk;
  }
  c.output(0) = std::move(out);
}

void split(OpContext& c) {
  const Tensor& x = c.input(0);
  const int64_t axis = normalize_axis(c, c.attr_int("axis", 0), x.rank());
  std::vector<int64_t> sizes =
      c.opset >= 13 ? (c.has_input(1) ? c.input(1).to_int64() : std::vector<int64_t>{})
                    : c.attr_ints("split");
  const int64_t n = c.output_count(), dim = x.shape()[axis];
  if (sizes.empty()) {
    const int64_t each = (dim + n - 1) / n;
    for (int64_t i = 0; i < n; ++i) sizes.push_back(std::min(each, dim - i * each));
  }
  if (static_cast<int64_t>(sizes.size()) != n)
    c.fail("{} split sizes for {} outputs", sizes.size(), n);
  int64_t outer = 1, inner = element_size(x.dtype());
  for (int64_t i = 0; i < axis; ++i) outer *= x.shape()[i];
  for (int64_t i = axis + 1; i < x.rank(); ++i) inner *= x.shape()[i];
  int64_t at = 0;
  for (int64_t k = 0; k < n; ++k) {
    std::vector<int64_t> shape = x.shape();
    shape[axis] = sizes[k];
    Tensor out(x.dtype(), shape);
    copy_blocks(out.raw(), sizes[k] * inner, x.raw() + at, dim * inner, outer, sizes[k] * inner);
    at += sizes[k] * inner;
    c.output(k) = std::move(out);
  }
}

void slice(OpContext& c) {
  const Tensor& x = c.input(0);
  const int64_t rank = x.rank();
  std::vector<int64_t> starts, ends, axes, steps;
  if (c.opset >= 10) {
    starts = c.input(1).to_int64();
    ends = c.input(2).to_int64();
    if (c.has_input(3)) axes = c.input(3).to_int64();
    if (c.has_input(4)) steps = c.input(4).to_int64();
  } else {
    starts = c.attr_ints("starts");
    ends = c.attr_ints("ends");
    axes = c.attr_ints("axes");
  }
  if (axes.empty()) {
    axes.resize(starts.size());
    std::iota(axes.begin(), axes.end(), 0);
  }
  if (steps.empty()) steps.assign(starts.size(), 1);
  std::vector<int64_t> begin(rank, 0), step(rank, 1), shape = x.shape();
  for (size_t i = 0; i < axes.size(); ++i) {
    const int64_t a = normalize_axis(c, axes[i], rank), dim = x.shape()[a], st = steps[i];
    if (st == 0) c.fail("slice step 0");
    int64_t s = starts[i] < 0 ? starts[i] + dim : starts[i];
    int64_t e = ends[i] < 0 ? ends[i] + dim : ends[i];
    if (st > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      shape[a] = e > s ? (e - s + st - 1) / st : 0;
    } else {
      s = std::clamp<int64_t>(s, 0, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      shape[a] = s > e ? (s - e - st - 1) / -st : 0;
    }
    begin[a] = s;
    step[a] = st;
  }
  Tensor out(x.dtype(), shape);
  const size_t size = element_size(x.dtype());
  std::vector<int64_t> in_strides(rank);
  int64_t s = 1;
  for (int64_t i = rank; i-- > 0;) {
    in_strides[i] = s;
    s *= x.shape()[i];
  }
  if (out.size() == 0) {
    c.output(0) = std::move(out);
    return;
  }
  // Trailing axes taken whole form one unit of `unit` elements; then row by row along the last
  // sliced axis: the row's start from the outer indices, then a strided copy of units.
  int64_t k = rank, unit = 1;
  while (k > 0 && begin[k - 1] == 0 && step[k - 1] == 1 && shape[k - 1] == x.shape()[k - 1])
    unit *= shape[--k];
  if (k == 0) {
    std::memcpy(out.raw(), x.raw(), x.bytes());
    c.output(0) = std::move(out);
    return;
  }
  const int64_t last = k - 1, row = shape[last], rows = out.size() / (row * unit);
  std::vector<int64_t> index(static_cast<size_t>(last), 0);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t offset = begin[last] * in_strides[last];
    for (int64_t i = 0; i < last; ++i) offset += (begin[i] + index[i] * step[i]) * in_strides[i];
    const uint8_t* src = x.raw() + offset * size;
    uint8_t* dst = out.raw() + r * row * unit * size;
    gather_row(dst, src, row, step[last], unit * size);
    for (int64_t i = last; i-- > 0;) {
      if (++index[i] < shape[i]) break;
      index[i] = 0;
    }
  }
  c.output(0) = std::move(out);
}

void gather(OpContext& c) {
  const Tensor& data = c.input(0);
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

void expand(OpContext& c) {
  const Tensor& x = c.input(0);
  const auto shape = broadcast_shape(c, x.shape(), c.input(1).to_int64());
  Tensor out(x.dtype(), shape);
  const auto offsets = broadcast_offsets(x.shape(), shape);
  const size_t size = element_size(x.dtype());
  for (int64_t i = 0; i < out.size(); ++i) {
    std::memcpy(out.raw() + i * size, x.raw() + offsets[i] * size, size);
  }
  c.output(0) = std::move(out);
}

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

void tile(OpContext& c) {
  const Tensor& x = c.input(0);
  const auto repeats = c.input(1).to_int64();
  if (static_cast<int64_t>(repeats.size()) != x.rank())
    c.fail("repeats has {} entries for rank {}", repeats.size(), x.rank());
  std::vector<int64_t> shape = x.shape();
  for (int64_t i = 0; i < x.rank(); ++i) shape[i] *= repeats[i];
  Tensor out(x.dtype(), shape);
  const size_t size = element_size(x.dtype());
  const auto in_st = strides_of(x.shape());
  std::vector<int64_t> index;
  for (int64_t o = 0; o < out.size(); ++o) {
    unflatten(o, shape, index);
    int64_t src = 0;
    for (int64_t i = 0; i < x.rank(); ++i) src += (index[i] % x.shape()[i]) * in_st[i];
    std::memcpy(out.raw() + o * size, x.raw() + src * size, size);
  }
  c.output(0) = std::move(out);
}

// Pad (opset >= 11: pads, constant_value and axes as inputs; before: attributes): constant,
// reflect, edge and wrap modes.
void pad(OpContext& c) {
  const Tensor& x = c.input(0);
  const int64_t rank = x.rank();
  std::vector<int64_t> pads = c.opset >= 11 ? c.input(1).to_int64() : c.attr_ints("pads");
  const std::string mode = c.attr_string("mode", "constant");
  std::vector<int64_t> axes;
  if (c.opset >= 18 && c.has_input(3)) axes = c.input(3).to_int64();
  std::vector<int64_t> begin(rank, 0), end(rank, 0);
  if (axes.empty()) {
    if (static_cast<int64_t>(pads.size()) != 2 * rank)
      c.fail("pads has {} entries for rank {}", pads.size(), rank);
    for (int64_t i = 0; i < rank; ++i) begin[i] = pads[i], end[i] = pads[i + rank];
  } else {
    for (size_t k = 0; k < axes.size(); ++k) {
      const int64_t a = normalize_axis(c, axes[k], rank);
      begin[a] = pads[k], end[a] = pads[k + axes.size()];
    }
  }
  std::vector<int64_t> shape(rank);
  for (int64_t i = 0; i < rank; ++i) shape[i] = x.shape()[i] + begin[i] + end[i];
  Tensor out(x.dtype(), shape);
  const size_t size = element_size(x.dtype());
  Tensor fill(x.dtype(), {});
  if (mode == "constant") {
    if (c.opset >= 11 && c.has_input(2)) {
      std::memcpy(fill.raw(), c.input(2).raw(), size);
    } else if (c.opset < 11) {
      const float v = c.attr_float("value", 0.0f);
      if (x.dtype() != TensorProto::FLOAT)
        c.fail("Pad value on data type {} is not supported", x.dtype());
      std::memcpy(fill.raw(), &v, 4);
    }
  } else if (mode != "reflect" && mode != "edge" && mode != "wrap") {
    c.fail("mode '{}' is not supported", mode);
  }
  const auto in_st = strides_of(x.shape());
  std::vector<int64_t> index;
  for (int64_t o = 0; o < out.size(); ++o) {
    unflatten(o, shape, index);
    int64_t src = 0;
    bool outside = false;
    for (int64_t i = 0; i < rank && !outside; ++i) {
      const int64_t dim = x.shape()[i];
      int64_t p = index[i] - begin[i];
      if (p < 0 || p >= dim) {
        if (mode == "constant" || dim == 0) {
          outside = true;
          break;
        }
        if (mode == "edge")
          p = std::clamp<int64_t>(p, 0, dim - 1);
        else if (mode == "wrap")
          p = ((p % dim) + dim) % dim;
        else if (dim == 1)
          p = 0;
        else {  // reflect, without repeating the edge
          const int64_t period = 2 * (dim - 1);
          p = ((p % period) + period) % period;
          if (p >= dim) p = period - p;
        }
      }
      src += p * in_st[i];
    }
    std::memcpy(out.raw() + o * size, outside ? fill.raw() : x.raw() + src * size, size);
  }
  c.output(0) = std::move(out);
}

// Trilu: keep the upper (upper = 1) or lower triangle of the last two axes from diagonal k.
void trilu(OpContext& c) {
  const Tensor& x = c.input(0);
  if (x.rank() < 2) c.fail("input must have rank >= 2");
  const int64_t k = c.has_input(1) ? c.input(1).to_int64().at(0) : 0;
  const bool upper = c.attr_int("upper", 1) != 0;
  const int64_t rows = x.shape()[x.rank() - 2], cols = x.shape()[x.rank() - 1];
  Tensor out = x;
  const size_t size = element_size(x.dtype());
  for (int64_t m = 0; m < x.size() / std::max<int64_t>(rows * cols, 1); ++m) {
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        const bool keep = upper ? j - i >= k : j - i <= k;
        if (!keep) std::memset(out.raw() + ((m * rows + i) * cols + j) * size, 0, size);
      }
    }
  }
  c.output(0) = std::move(out);
}

// CumSum along an axis (input), exclusive and reverse attributes; float, double, int32, int64.
void cumsum(OpContext& c) {
  const Tensor& x = c.input(0);
  const int64_t axis = normalize_axis(c, c.input(1).to_int64().at(0), x.rank());
  const bool exclusive = c.attr_int("exclusive", 0) != 0, reverse = c.attr_int("reverse", 0) != 0;
  int64_t outer = 1, len = x.shape()[axis], inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.shape()[i];
  for (int64_t i = axis + 1; i < x.rank(); ++i) inner *= x.shape()[i];
  Tensor out(x.dtype(), x.shape());
  auto run = [&](auto* px, auto* po) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(px)>>;
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t in = 0; in < inner; ++in) {
        T acc = 0;
        for (int64_t s = 0; s < len; ++s) {
          const int64_t i = reverse ? len - 1 - s : s;
          const int64_t at = (o * len + i) * inner + in;
          if (exclusive) {
            po[at] = acc;
            acc += px[at];
          } else {
            acc += px[at];
            po[at] = acc;
          }
        }
      }
    }
  };
  switch (x.dtype()) {
    case TensorProto::FLOAT:
      run(x.data<float>(), out.data<float>());
      break;
    case TensorProto::DOUBLE:
      run(x.data<double>(), out.data<double>());
      break;
    case TensorProto::INT32:
      run(x.data<int32_t>(), out.data<int32_t>());
      break;
    case TensorProto::INT64:
      run(x.data<int64_t>(), out.data<int64_t>());
      break;
    default:
      c.fail("data type {} is not supported", x.dtype());
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

}  // namespace

void register_shape(Registry& r) {
  r["Shape"] = shape_op;
  r["Size"] = size_op;
  r["Reshape"] = reshape;
  r["Flatten"] = flatten;
  r["Transpose"] = transpose;
  r["Unsqueeze"] = unsqueeze;
  r["Squeeze"] = squeeze;
  r["Concat"] = concat;
  r["Split"] = split;
  r["Slice"] = slice;
  r["Gather"] = gather;
  r["GatherElements"] = gather_elements;
  r["Tile"] = tile;
  r["Pad"] = pad;
  r["Trilu"] = trilu;
  r["CumSum"] = cumsum;
  r["OneHot"] = one_hot;
  r["Expand"] = expand;
  r["Range"] = range;
  r["Constant"] = constant;
  r["ConstantOfShape"] = constant_of_shape;
}

}  // namespace quantize::exec
