// Internal: LayerNormalization and ONNX Runtime's SimplifiedLayerNormalization (RMS norm), one
// template for both (ops/normalization.cpp and contrib/transformer.cpp register them).
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "executor/core/ops.h"

namespace quantize::exec {

// LayerNormalization: over axes [axis, rank) of X, y = (x - mean) / sqrt(var + epsilon) * Scale
// (+ B); Mean and InvStdDev outputs with those axes kept as 1. Statistics in double.
// SimplifiedLayerNormalization (ONNX Runtime's RMS norm, kSimplified): no mean taken, var the
// mean square; outputs Y and InvStdDev.
template <bool kSimplified>
void layer_norm(OpContext& c) {
  const Tensor& x = c.input(0);
  const Tensor& scale = c.input(1);
  require_float(c, x, "X");
  require_float(c, scale, "Scale");
  const int64_t axis = normalize_axis(c, c.attr_int("axis", -1), x.rank());
  const double epsilon = c.attr_float("epsilon", 1e-5f);
  std::vector<int64_t> norm_shape(x.shape().begin() + axis, x.shape().end()),
      stat_shape = x.shape();
  int64_t outer = 1, len = 1;
  for (int64_t i = 0; i < x.rank(); ++i) {
    if (i < axis)
      outer *= x.shape()[i];
    else
      len *= x.shape()[i], stat_shape[i] = 1;
  }
  const auto scale_at = broadcast_offsets(scale.shape(), norm_shape);
  std::vector<int64_t> bias_at;
  if (c.has_input(2)) {
    require_float(c, c.input(2), "B");
    bias_at = broadcast_offsets(c.input(2).shape(), norm_shape);
  }
  Tensor y(onnx::TensorProto::FLOAT, x.shape()), mean_out(onnx::TensorProto::FLOAT, stat_shape),
      inv_out(onnx::TensorProto::FLOAT, stat_shape);
  for (int64_t o = 0; o < outer; ++o) {
    const float* px = x.data<float>() + o * len;
    double mean = 0, var = 0;
    if (!kSimplified) {
      for (int64_t i = 0; i < len; ++i) mean += px[i];
      mean /= static_cast<double>(len);
    }
    for (int64_t i = 0; i < len; ++i) var += (px[i] - mean) * (px[i] - mean);
    const double inv = 1.0 / std::sqrt(var / static_cast<double>(len) + epsilon);
    float* py = y.data<float>() + o * len;
    for (int64_t i = 0; i < len; ++i) {
      double v = (px[i] - mean) * inv * scale.data<float>()[scale_at[i]];
      if (!bias_at.empty()) v += c.input(2).data<float>()[bias_at[i]];
      py[i] = static_cast<float>(v);
    }
    mean_out.data<float>()[o] = static_cast<float>(mean);
    inv_out.data<float>()[o] = static_cast<float>(inv);
  }
  c.output(0) = std::move(y);
  if (kSimplified) {
    if (c.output_count() > 1) c.output(1) = std::move(inv_out);
    return;
  }
  if (c.output_count() > 1) c.output(1) = std::move(mean_out);
  if (c.output_count() > 2) c.output(2) = std::move(inv_out);
}

}  // namespace quantize::exec
