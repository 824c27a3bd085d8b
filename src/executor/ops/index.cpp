// Ops that select, sort or search: Compress, NonZero, TopK, Unique, ReverseSequence,
// NonMaxSuppression.
#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>

#include "executor/core/ops.h"
#include "model/tensor_data.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

// An input seen along `axis`, or flattened to one axis when the node has none (Compress,
// Unique): the shape used, the axis, and the element counts before and after it.
struct AxisView {
  std::vector<int64_t> shape;
  int64_t axis = 0, outer = 1, inner = 1;
};

AxisView axis_view(const OpContext& c, const Tensor& x) {
  AxisView v;
  v.shape = x.shape();
  if (c.has_attr("axis")) {
    v.axis = normalize_axis(c, c.attr_int("axis", 0), x.rank());
  } else {
    v.shape = {x.size()};
  }
  for (int64_t i = 0; i < v.axis; ++i) v.outer *= v.shape[i];
  for (size_t i = v.axis + 1; i < v.shape.size(); ++i) v.inner *= v.shape[i];
  return v;
}

// Compress: the slices along `axis` (of the flattened input when there is none) whose condition
// entry is true; entries past the condition's end are dropped.
void compress(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& cond = c.input(1);
  const AxisView v = axis_view(c, x);
  const std::vector<int64_t>& shape = v.shape;
  const int64_t axis = v.axis, outer = v.outer, inner = v.inner;
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < std::min(cond.size(), shape[axis]); ++i) {
    if (cond.element_as_double(i) != 0) keep.push_back(i);
  }
  std::vector<int64_t> out_shape = shape;
  out_shape[axis] = static_cast<int64_t>(keep.size());
  Tensor out(x.dtype(), out_shape);
  const size_t size = element_size(x.dtype()) * inner;
  uint8_t* dst = out.raw();
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t i : keep) {
      std::memcpy(dst, x.raw() + (o * shape[axis] + i) * size, size);
      dst += size;
    }
  }
  c.output(0) = std::move(out);
}

// NonZero: the indices of the non-zero elements, [rank, count], in row-major order.
void non_zero(OpContext& c) {
  const Tensor& x = c.input(0);
  std::vector<int64_t> hits;
  for (int64_t i = 0; i < x.size(); ++i) {
    if (x.element_as_double(i) != 0) hits.push_back(i);
  }
  const int64_t rank = std::max<int64_t>(x.rank(), 1), n = static_cast<int64_t>(hits.size());
  std::vector<int64_t> out(static_cast<size_t>(rank * n));
  std::vector<int64_t> index;
  for (int64_t j = 0; j < n; ++j) {
    unflatten(hits[j], x.rank() ? x.shape() : std::vector<int64_t>{1}, index);
    for (int64_t d = 0; d < rank; ++d) out[d * n + j] = index[d];
  }
  c.output(0) = int64_tensor(out, {rank, n});
}

// TopK: the k largest (or smallest) along `axis`, sorted; equal values keep their index order.
void top_k(OpContext& c) {
  const Tensor& x = c.input(0);
  const int64_t k = c.opset >= 10 ? c.input(1).to_int64().at(0) : c.attr_int("k", 0);
  const int64_t axis = normalize_axis(c, c.attr_int("axis", -1), x.rank());
  const bool largest = c.attr_int("largest", 1) != 0;
  if (c.attr_int("sorted", 1) == 0) c.fail("sorted = 0 is not supported");
  const int64_t dim = x.shape()[axis];
  if (k < 0 || k > dim) c.fail("k = {} for an axis of {}", k, dim);
  std::vector<int64_t> shape = x.shape();
  shape[axis] = k;
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.shape()[i];
  for (int64_t i = axis + 1; i < x.rank(); ++i) inner *= x.shape()[i];
  Tensor values(x.dtype(), shape);
  std::vector<int64_t> indices(static_cast<size_t>(outer * k * inner));
  with_type(c, x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    std::vector<int64_t> order(static_cast<size_t>(dim));
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t in = 0; in < inner; ++in) {
        const T* src = x.data<T>() + o * dim * inner + in;
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
          return largest ? src[a * inner] > src[b * inner] : src[a * inner] < src[b * inner];
        });
        for (int64_t j = 0; j < k; ++j) {
          const int64_t at = (o * k + j) * inner + in;
          values.data<T>()[at] = src[order[j] * inner];
          indices[at] = order[j];
        }
      }
    }
  });
  c.output(0) = std::move(values);
  if (c.output_count() > 1) c.output(1) = int64_tensor(indices, shape);
}

// Unique: the distinct elements (or slices along `axis`), sorted or in order of first
// appearance; with the index of each one's first appearance, each input's position among them,
// and their counts.
void unique(OpContext& c) {
  const Tensor& x = c.input(0);
  const bool sorted = c.attr_int("sorted", 1) != 0;
  const AxisView v = axis_view(c, x);
  const std::vector<int64_t>& shape = v.shape;
  const int64_t axis = v.axis, outer = v.outer, inner = v.inner;
  const int64_t n = shape[axis];
  std::vector<int64_t> first, inverse(static_cast<size_t>(n)), counts, order;
  Tensor y;
  with_type(c, x.dtype(), [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.data<T>();
    // Slice i of the input: the elements (o, i, in) for all o, in.
    auto less = [&](int64_t a, int64_t b) {
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t in = 0; in < inner; ++in) {
          const T va = px[(o * n + a) * inner + in], vb = px[(o * n + b) * inner + in];
          if (va != vb) return va < vb;
        }
      }
      return false;
    };
    auto same = [&](int64_t a, int64_t b) { return !less(a, b) && !less(b, a); };
    for (int64_t i = 0; i < n; ++i) {
      int64_t found = -1;
      for (size_t u = 0; u < first.size() && found < 0; ++u) {
        if (same(first[u], i)) found = static_cast<int64_t>(u);
      }
      if (found < 0) {
        found = static_cast<int64_t>(first.size());
        first.push_back(i);
        counts.push_back(0);
      }
      inverse[i] = found;
      ++counts[found];
    }
    order.resize(first.size());
    std::iota(order.begin(), order.end(), 0);
    if (sorted)
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return less(first[a], first[b]); });
    std::vector<int64_t> out_shape = shape;
    out_shape[axis] = static_cast<int64_t>(first.size());
    y = Tensor(x.dtype(), out_shape);
    for (int64_t o = 0; o < outer; ++o) {
      for (size_t u = 0; u < order.size(); ++u) {
        for (int64_t in = 0; in < inner; ++in) {
          y.data<T>()[(o * static_cast<int64_t>(order.size()) + static_cast<int64_t>(u)) * inner +
                      in] = px[(o * n + first[order[u]]) * inner + in];
        }
      }
    }
  });
  std::vector<int64_t> rank_of(order.size());  // position in the output of each unique value
  for (size_t u = 0; u < order.size(); ++u) rank_of[order[u]] = static_cast<int64_t>(u);
  std::vector<int64_t> out_first(order.size()), out_counts(order.size()),
      out_inverse(inverse.size());
  for (size_t u = 0; u < order.size(); ++u)
    out_first[u] = first[order[u]], out_counts[u] = counts[order[u]];
  for (size_t i = 0; i < inverse.size(); ++i) out_inverse[i] = rank_of[inverse[i]];
  const int64_t m = static_cast<int64_t>(order.size());
  c.output(0) = std::move(y);
  if (c.output_count() > 1) c.output(1) = int64_tensor(out_first, {m});
  if (c.output_count() > 2) c.output(2) = int64_tensor(out_inverse, {n});
  if (c.output_count() > 3) c.output(3) = int64_tensor(out_counts, {m});
}

// ReverseSequence: for each batch entry b, the first sequence_lens[b] steps along time_axis in
// reverse order, the rest as they are.
void reverse_sequence(OpContext& c) {
  const Tensor& x = c.input(0);
  const auto lens = c.input(1).to_int64();
  const int64_t batch_axis = normalize_axis(c, c.attr_int("batch_axis", 1), x.rank());
  const int64_t time_axis = normalize_axis(c, c.attr_int("time_axis", 0), x.rank());
  if (x.rank() < 2 || batch_axis == time_axis || std::max(batch_axis, time_axis) > 1) {
    c.fail("batch_axis and time_axis must be 0 and 1");
  }
  const int64_t steps = x.shape()[time_axis], batch = x.shape()[batch_axis];
  if (static_cast<int64_t>(lens.size()) != batch)
    c.fail("{} sequence lengths for a batch of {}", lens.size(), batch);
  int64_t inner = 1;
  for (int64_t i = 2; i < x.rank(); ++i) inner *= x.shape()[i];
  const size_t size = element_size(x.dtype()) * inner;
  Tensor out(x.dtype(), x.shape());
  auto at = [&](int64_t t, int64_t b) {
    return (time_axis == 0 ? t * batch + b : b * steps + t) * size;
  };
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t len = lens[b];
    if (len < 0 || len > steps) c.fail("sequence length {} for {} steps", len, steps);
    for (int64_t t = 0; t < steps; ++t) {
      std::memcpy(out.raw() + at(t, b), x.raw() + at(t < len ? len - 1 - t : t, b), size);
    }
  }
  c.output(0) = std::move(out);
}

// NonMaxSuppression: per batch entry and class, the boxes whose score is above score_threshold,
// best first (ties by index), each kept unless its IoU with a kept box exceeds iou_threshold, at
// most max_output_boxes_per_class (0: none). Boxes are corners [y1, x1, y2, x2] in either order,
// or with center_point_box [x_center, y_center, width, height]. Output rows: (batch, class, box).
void non_max_suppression(OpContext& c) {
  const Tensor& boxes = c.input(0);
  const Tensor& scores = c.input(1);
  require_float(c, boxes, "boxes");
  require_float(c, scores, "scores");
  if (boxes.rank() != 3 || boxes.shape()[2] != 4 || scores.rank() != 3 ||
      scores.shape()[0] != boxes.shape()[0] || scores.shape()[2] != boxes.shape()[1]) {
    c.fail("boxes must be [B, N, 4] and scores [B, C, N]");
  }
  const int64_t limit = c.has_input(2) && c.input(2).size() > 0 ? c.input(2).to_int64()[0] : 0;
  const float iou_threshold =
      c.has_input(3) && c.input(3).size() > 0 ? c.input(3).data<float>()[0] : 0.0f;
  const bool thresholded = c.has_input(4) && c.input(4).size() > 0;
  const float score_threshold = thresholded ? c.input(4).data<float>()[0] : 0.0f;
  const bool center = c.attr_int("center_point_box", 0) != 0;
  const int64_t batches = boxes.shape()[0], n = boxes.shape()[1], classes = scores.shape()[1];
  // [y1, x1, y2, x2] with y1 <= y2, x1 <= x2.
  auto corners = [&](int64_t b, int64_t i) {
    const float* p = boxes.data<float>() + (b * n + i) * 4;
    std::array<float, 4> q;
    if (center) {
      q = {p[1] - p[3] / 2, p[0] - p[2] / 2, p[1] + p[3] / 2, p[0] + p[2] / 2};
    } else {
      q = {std::min(p[0], p[2]), std::min(p[1], p[3]), std::max(p[0], p[2]), std::max(p[1], p[3])};
    }
    return q;
  };
  auto iou = [](const std::array<float, 4>& a, const std::array<float, 4>& z) {
    const float area_a = (a[2] - a[0]) * (a[3] - a[1]), area_z = (z[2] - z[0]) * (z[3] - z[1]);
    if (area_a <= 0 || area_z <= 0) return 0.0f;
    const float h = std::max(0.0f, std::min(a[2], z[2]) - std::max(a[0], z[0]));
    const float w = std::max(0.0f, std::min(a[3], z[3]) - std::max(a[1], z[1]));
    const float inter = h * w;
    return inter / (area_a + area_z - inter);
  };
  std::vector<int64_t> selected;
  std::vector<int64_t> order;
  std::vector<std::array<float, 4>> kept;
  for (int64_t b = 0; b < batches; ++b) {
    for (int64_t k = 0; k < classes; ++k) {
      const float* sc = scores.data<float>() + (b * classes + k) * n;
      order.clear();
      for (int64_t i = 0; i < n; ++i) {
        if (!thresholded || sc[i] > score_threshold) order.push_back(i);
      }
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t x, int64_t y) { return sc[x] > sc[y]; });
      kept.clear();
      for (int64_t i : order) {
        if (static_cast<int64_t>(kept.size()) >= limit) break;
        const auto box = corners(b, i);
        bool keep = true;
        for (const auto& other : kept) keep = keep && !(iou(box, other) > iou_threshold);
        if (!keep) continue;
        kept.push_back(box);
        selected.insert(selected.end(), {b, k, i});
      }
    }
  }
  c.output(0) = int64_tensor(selected, {static_cast<int64_t>(selected.size() / 3), 3});
}

}  // namespace

void register_index(Registry& r) {
  r["NonMaxSuppression"] = non_max_suppression;
  r["Compress"] = compress;
  r["NonZero"] = non_zero;
  r["TopK"] = top_k;
  r["Unique"] = unique;
  r["ReverseSequence"] = reverse_sequence;
}

}  // namespace quantize::exec
