// Normalizations, float32: BatchNormalization (inference), LayerNormalization,
// InstanceNormalization, MeanVarianceNormalization, LRN.
#include <algorithm>
#include <cmath>
#include <vector>

#include "executor/core/ops.h"
#include "executor/ops/layer_norm.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

// InstanceNormalization: per (image, channel) over the spatial axes, y = (x - mean) /
// sqrt(var + epsilon) * scale[c] + B[c]. MeanVarianceNormalization: over `axes` (default 0, 2,
// 3), y = (x - mean) / sqrt(var + 1e-9), as ONNX's function body defines it. Statistics in
// double.
void normalize_groups(const OpContext& c, const Tensor& x, const std::vector<int64_t>& axes,
                      double epsilon, const float* scale, const float* bias, Tensor& y) {
  std::vector<bool> reduced(static_cast<size_t>(x.rank()), false);
  for (int64_t a : axes) reduced[normalize_axis(c, a, x.rank())] = true;
  // Each element's group: its index with the reduced axes dropped.
  std::vector<int64_t> group_shape, index;
  for (int64_t i = 0; i < x.rank(); ++i) group_shape.push_back(reduced[i] ? 1 : x.shape()[i]);
  const auto gst = strides_of(group_shape);
  int64_t groups = 1;
  for (int64_t d : group_shape) groups *= d;
  std::vector<double> sum(static_cast<size_t>(groups)), sq(static_cast<size_t>(groups));
  std::vector<int64_t> group_of(static_cast<size_t>(x.size()));
  for (int64_t e = 0; e < x.size(); ++e) {
    unflatten(e, x.shape(), index);
    int64_t g = 0;
    for (int64_t i = 0; i < x.rank(); ++i) g += (reduced[i] ? 0 : index[i]) * gst[i];
    group_of[e] = g;
    sum[g] += x.data<float>()[e];
  }
  const double count =
      static_cast<double>(x.size()) / static_cast<double>(std::max<int64_t>(groups, 1));
  for (int64_t e = 0; e < x.size(); ++e) {
    const double d = x.data<float>()[e] - sum[group_of[e]] / count;
    sq[group_of[e]] += d * d;
  }
  const int64_t channel_stride = x.rank() > 1 ? strides_of(x.shape())[1] : 1;
  const int64_t channels = x.rank() > 1 ? x.shape()[1] : 1;
  for (int64_t e = 0; e < x.size(); ++e) {
    const int64_t g = group_of[e];
    const int64_t ch = (e / channel_stride) % channels;
    double v = (x.data<float>()[e] - sum[g] / count) / std::sqrt(sq[g] / count + epsilon);
    if (scale) v = v * scale[ch] + bias[ch];
    y.data<float>()[e] = static_cast<float>(v);
  }
}

void instance_norm(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "input");
  if (x.rank() < 3) c.fail("input must have spatial axes");
  const float* scale = float_values(c, 1, "scale", x.shape()[1]);
  const float* bias = float_values(c, 2, "B", x.shape()[1]);
  std::vector<int64_t> axes;
  for (int64_t i = 2; i < x.rank(); ++i) axes.push_back(i);
  Tensor y(TensorProto::FLOAT, x.shape());
  normalize_groups(c, x, axes, c.attr_float("epsilon", 1e-5f), scale, bias, y);
  c.output(0) = std::move(y);
}

void mean_variance_norm(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "X");
  std::vector<int64_t> axes = c.attr_ints("axes");
  if (!c.has_attr("axes")) axes = {0, 2, 3};
  Tensor y(TensorProto::FLOAT, x.shape());
  normalize_groups(c, x, axes, 1e-9, nullptr, nullptr, y);
  c.output(0) = std::move(y);
}

// LRN: y = x / (bias + alpha / size * sum of x^2 over the channels c - (size-1)/2 ..
// c + ceil((size-1)/2))^beta, the sum in double.
void lrn(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "X");
  if (x.rank() < 3) c.fail("X must have spatial axes");
  const int64_t size = c.attr_int("size", 0);
  if (size < 1) c.fail("size {} is not valid", size);
  const double alpha = c.attr_float("alpha", 1e-4f), beta = c.attr_float("beta", 0.75f),
               bias = c.attr_float("bias", 1.0f);
  const int64_t batch = x.shape()[0], channels = x.shape()[1],
                spatial = x.size() / std::max<int64_t>(1, batch * channels);
  const int64_t before = (size - 1) / 2, after = size - 1 - before;
  Tensor y(TensorProto::FLOAT, x.shape());
  const float* px = x.data<float>();
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t ch = 0; ch < channels; ++ch) {
      for (int64_t s = 0; s < spatial; ++s) {
        double sum = 0;
        for (int64_t k = std::max<int64_t>(0, ch - before); k <= std::min(channels - 1, ch + after);
             ++k) {
          const double v = px[(b * channels + k) * spatial + s];
          sum += v * v;
        }
        const int64_t at = (b * channels + ch) * spatial + s;
        y.data<float>()[at] =
            static_cast<float>(px[at] / std::pow(bias + alpha / size * sum, beta));
      }
    }
  }
  c.output(0) = std::move(y);
}

void batch_norm(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "X");
  if (c.output_count() > 1) c.fail("training outputs are not supported");
  const float eps = c.attr_float("epsilon", 1e-5f);
  if (x.rank() < 2) c.fail("X has rank {}: no channel axis", x.rank());
  const int64_t channels = x.shape()[1];
  int64_t inner = 1;
  for (int64_t i = 2; i < x.rank(); ++i) inner *= x.shape()[i];
  const float* gamma = float_values(c, 1, "scale", channels);
  const float* beta = float_values(c, 2, "B", channels);
  const float* mean = float_values(c, 3, "input_mean", channels);
  const float* var = float_values(c, 4, "input_var", channels);
  Tensor out(TensorProto::FLOAT, x.shape());
  for (int64_t ch = 0; ch < channels; ++ch) {
    const float scale = gamma[ch] / std::sqrt(var[ch] + eps);
    const float shift = beta[ch] - mean[ch] * scale;
    for (int64_t b = 0; b < x.shape()[0]; ++b) {
      const int64_t base = (b * channels + ch) * inner;
      for (int64_t i = 0; i < inner; ++i) {
        out.data<float>()[base + i] = x.data<float>()[base + i] * scale + shift;
      }
    }
  }
  c.output(0) = std::move(out);
}

}  // namespace

void register_normalization(Registry& r) {
  r["BatchNormalization"] = batch_norm;
  r["LRN"] = lrn;
  r["InstanceNormalization"] = instance_norm;
  r["MeanVarianceNormalization"] = mean_variance_norm;
  r["LayerNormalization"] = layer_norm<false>;
}

}  // namespace quantize::exec
