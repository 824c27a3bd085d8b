// Ops that move elements to new places, any type: Transpose, SpaceToDepth, DepthToSpace
// (float32), Slice, Concat, Split, Expand, Tile, Pad.
#include <algorithm>
#include <cstring>
#include <numeric>

#include "executor/core/ops.h"
#include "model/tensor_data.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

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

// SpaceToDepth: [N, C, H, W] -> [N, C * b * b, H / b, W / b], blocks (by, bx) as channel groups.
void space_to_depth(OpContext& c) {
  const Tensor& x = c.input(0);
  const int64_t b = c.attr_int("blocksize", 0);
  if (x.rank() != 4 || b <= 0 || x.shape()[2] % b || x.shape()[3] % b)
    c.fail("needs a 4-D input divisible by blocksize");
  const int64_t n = x.shape()[0], ch = x.shape()[1], h = x.shape()[2] / b, w = x.shape()[3] / b;
  Tensor y(x.dtype(), {n, ch * b * b, h, w});
  const size_t size = element_size(x.dtype());
  for (int64_t i = 0; i < n; ++i)
    for (int64_t by = 0; by < b; ++by)
      for (int64_t bx = 0; bx < b; ++bx)
        for (int64_t cc = 0; cc < ch; ++cc)
          for (int64_t yy = 0; yy < h; ++yy)
            for (int64_t xx = 0; xx < w; ++xx) {
              const int64_t oc = (by * b + bx) * ch + cc;
              const int64_t src = ((i * ch + cc) * h * b + yy * b + by) * w * b + xx * b + bx;
              const int64_t dst = ((i * ch * b * b + oc) * h + yy) * w + xx;
              std::memcpy(y.raw() + dst * size, x.raw() + src * size, size);
            }
  c.output(0) = std::move(y);
}

void depth_to_space(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "X");
  if (x.rank() != 4) c.fail("X must be 4-D");
  const int64_t bs = c.attr_int("blocksize", 0);
  const bool crd = c.attr_string("mode", "DCR") == "CRD";
  const int64_t n = x.shape()[0], ch = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
  const int64_t oc = ch / (bs * bs);
  Tensor out(TensorProto::FLOAT, {n, oc, h * bs, w * bs});
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t o = 0; o < oc; ++o) {
      for (int64_t y = 0; y < h * bs; ++y) {
        for (int64_t xx = 0; xx < w * bs; ++xx) {
          const int64_t by = y % bs, bx = xx % bs;
          const int64_t in_c = crd ? (o * bs + by) * bs + bx : (by * bs + bx) * oc + o;
          out.data<float>()[((b * oc + o) * h * bs + y) * w * bs + xx] =
              x.data<float>()[((b * ch + in_c) * h + y / bs) * w + xx / bs];
        }
      }
    }
  }
  c.output(0) = std::move(out);
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
  for (int i = 0; i < c.input_count(); ++i) {
    const Tensor& x = c.input(i);
    if (x.dtype() != first.dtype() || x.rank() != first.rank())
      c.fail("input {} is not of input 0's type and rank", i);
    for (int64_t d = 0; d < first.rank(); ++d) {
      if (d != axis && x.shape()[d] != first.shape()[d])
        c.fail("input {} has shape [{}], input 0 [{}]", i, fmt::join(x.shape(), ", "),
               fmt::join(first.shape(), ", "));
    }
    shape[axis] += x.shape()[axis];
  }
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
  int64_t total = 0;
  for (int64_t s : sizes) {
    if (s < 0) c.fail("a negative split size {}", s);
    total += s;
  }
  if (total != dim) c.fail("split sizes add up to {}, not the axis's {}", total, dim);
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

}  // namespace

void register_rearrange(Registry& r) {
  r["Transpose"] = transpose;
  r["Concat"] = concat;
  r["Split"] = split;
  r["Slice"] = slice;
  r["Tile"] = tile;
  r["Pad"] = pad;
  r["Expand"] = expand;
  r["SpaceToDepth"] = space_to_depth;
  r["DepthToSpace"] = depth_to_space;
}

}  // namespace quantize::exec
