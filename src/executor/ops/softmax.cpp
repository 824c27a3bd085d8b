// Softmax (vectorized rows, exp_poly), LogSoftmax and Hardmax, float32.
#include <algorithm>
#include <cmath>
#include <limits>

#include "executor/core/ops.h"
#include "support/threads.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

enum class SoftmaxKind { kSoftmax, kLogSoftmax, kHardmax };

// One softmax row: e^(x - max) by exp_poly, in 8 lanes so the loops vectorize, then scaled by
// 1 / sum. No contraction in this file: the same floats on every CPU.
QUANTIZE_CLONES_NO_FMA
void softmax_row(const float* x, float* y, int64_t n) {
  constexpr int kLanes = 8;
  float top[kLanes], sum[kLanes];
  for (int j = 0; j < kLanes; ++j) top[j] = -INFINITY, sum[j] = 0.0f;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) top[j] = x[i + j] > top[j] ? x[i + j] : top[j];
  }
  float mx = -INFINITY;
  for (; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  for (int j = 0; j < kLanes; ++j) mx = top[j] > mx ? top[j] : mx;
  for (i = 0; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      y[i + j] = exp_poly(x[i + j] - mx);
      sum[j] += y[i + j];
    }
  }
  float total = 0.0f;
  for (; i < n; ++i) {
    y[i] = exp_poly(x[i] - mx);
    total += y[i];
  }
  for (int j = 0; j < kLanes; ++j) total += sum[j];
  const float inv = 1.0f / total;
  for (i = 0; i < n; ++i) y[i] *= inv;
}

template <SoftmaxKind kind = SoftmaxKind::kSoftmax>
void softmax(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "input");
  const int64_t axis = normalize_axis(c, c.attr_int("axis", c.opset >= 13 ? -1 : 1), x.rank());
  // opset >= 13: along one axis; before: over all dimensions from `axis` on.
  int64_t outer = 1, len = 1, inner = 1;
  for (int64_t i = 0; i < x.rank(); ++i) {
    if (i < axis)
      outer *= x.shape()[i];
    else if (i == axis || c.opset < 13)
      len *= x.shape()[i];
    else
      inner *= x.shape()[i];
  }
  Tensor out(TensorProto::FLOAT, x.shape());
  const float* px = x.data<float>();
  float* py = out.data<float>();
  if (kind == SoftmaxKind::kSoftmax && inner == 1) {  // contiguous rows, vectorized
    parallel_for(static_cast<size_t>(outer),
                 std::max<size_t>(1, 16384 / static_cast<size_t>(std::max<int64_t>(len, 1))),
                 [&](size_t o0, size_t o1) {
                   for (size_t o = o0; o < o1; ++o) softmax_row(px + o * len, py + o * len, len);
                 });
    c.output(0) = std::move(out);
    return;
  }
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t in = 0; in < inner; ++in) {
      const int64_t base = o * len * inner + in;
      float mx = -std::numeric_limits<float>::infinity();
      int64_t arg = 0;
      for (int64_t i = 0; i < len; ++i) {
        if (px[base + i * inner] > mx) mx = px[base + i * inner], arg = i;
      }
      if constexpr (kind == SoftmaxKind::kHardmax) {  // 1 at the first maximum
        for (int64_t i = 0; i < len; ++i) py[base + i * inner] = i == arg ? 1.0f : 0.0f;
        continue;
      }
      if constexpr (kind == SoftmaxKind::kLogSoftmax) {  // x - max - log(sum(exp(x - max)))
        double total = 0;
        for (int64_t i = 0; i < len; ++i) total += std::exp(double(px[base + i * inner]) - mx);
        const double log_total = std::log(total);
        for (int64_t i = 0; i < len; ++i)
          py[base + i * inner] = static_cast<float>(px[base + i * inner] - mx - log_total);
        continue;
      }
      double sum = 0;
      for (int64_t i = 0; i < len; ++i) {
        py[base + i * inner] = std::exp(px[base + i * inner] - mx);
        sum += py[base + i * inner];
      }
      for (int64_t i = 0; i < len; ++i)
        py[base + i * inner] = static_cast<float>(py[base + i * inner] / sum);
    }
  }
  c.output(0) = std::move(out);
}

}  // namespace

void register_softmax(Registry& r) {
  r["Softmax"] = softmax<SoftmaxKind::kSoftmax>;
  r["LogSoftmax"] = softmax<SoftmaxKind::kLogSoftmax>;
  r["Hardmax"] = softmax<SoftmaxKind::kHardmax>;
}

}  // namespace quantize::exec
