// The losses, float32 in, double inside: NegativeLogLikelihoodLoss, SoftmaxCrossEntropyLoss.
#include <algorithm>
#include <cmath>
#include <string>

#include "executor/core/ops.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

// NegativeLogLikelihoodLoss: loss[n, d...] = -input[n, target[n, d...], d...] * weight[target]
// (0 where target == ignore_index); reduction none, sum, or mean (the sum over the summed
// weights of the targets counted). In double.
Tensor nll_loss(const OpContext& c, const Tensor& input, const Tensor& target,
                const Tensor* weight) {
  if (input.rank() < 2 || target.rank() != input.rank() - 1 ||
      target.shape()[0] != input.shape()[0]) {
    c.fail("input must be [N, C, d...] and target [N, d...]");
  }
  const auto labels = target.to_int64();
  const std::string reduction = c.attr_string("reduction", "mean");
  if (reduction != "mean" && reduction != "sum" && reduction != "none")
    c.fail("reduction '{}' is not supported", reduction);
  const bool ignoring = c.has_attr("ignore_index");
  const int64_t ignore = c.attr_int("ignore_index", 0);
  const int64_t batch = input.shape()[0], classes = input.shape()[1],
                inner = target.size() / std::max<int64_t>(batch, 1);
  std::vector<double> loss(static_cast<size_t>(target.size()));
  double total = 0, weights = 0;
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t d = 0; d < inner; ++d) {
      const int64_t at = n * inner + d, label = labels[at];
      if (ignoring && label == ignore) continue;
      if (label < 0 || label >= classes) c.fail("target {} is not a class of {}", label, classes);
      const double w = weight ? weight->data<float>()[label] : 1.0;
      loss[at] = -static_cast<double>(input.data<float>()[(n * classes + label) * inner + d]) * w;
      total += loss[at];
      weights += w;
    }
  }
  if (reduction == "none") {
    Tensor out(TensorProto::FLOAT, target.shape());
    for (int64_t i = 0; i < out.size(); ++i) out.data<float>()[i] = static_cast<float>(loss[i]);
    return out;
  }
  Tensor out(TensorProto::FLOAT, {});
  out.data<float>()[0] = static_cast<float>(reduction == "sum" ? total : total / weights);
  return out;
}

void negative_log_likelihood_loss(OpContext& c) {
  require_float(c, c.input(0), "input");
  if (c.has_input(2)) require_float(c, c.input(2), "weight");
  c.output(0) = nll_loss(c, c.input(0), c.input(1), c.has_input(2) ? &c.input(2) : nullptr);
}

// SoftmaxCrossEntropyLoss: NegativeLogLikelihoodLoss of the log-softmax over axis 1 of the
// scores; the log-probabilities as the second output.
void softmax_cross_entropy_loss(OpContext& c) {
  const Tensor& scores = c.input(0);
  require_float(c, scores, "scores");
  if (c.has_input(2)) require_float(c, c.input(2), "weights");
  if (scores.rank() < 2) c.fail("scores must be [N, C, d...]");
  const int64_t batch = scores.shape()[0], classes = scores.shape()[1],
                inner = scores.size() / std::max<int64_t>(batch * classes, 1);
  Tensor log_prob(TensorProto::FLOAT, scores.shape());
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t d = 0; d < inner; ++d) {
      const float* x = scores.data<float>() + n * classes * inner + d;
      double top = -INFINITY, sum = 0;
      for (int64_t k = 0; k < classes; ++k) top = std::max(top, static_cast<double>(x[k * inner]));
      for (int64_t k = 0; k < classes; ++k) sum += std::exp(x[k * inner] - top);
      const double log_sum = std::log(sum);
      for (int64_t k = 0; k < classes; ++k) {
        log_prob.data<float>()[(n * classes + k) * inner + d] =
            static_cast<float>(x[k * inner] - top - log_sum);
      }
    }
  }
  c.output(0) = nll_loss(c, log_prob, c.input(1), c.has_input(2) ? &c.input(2) : nullptr);
  if (c.output_count() > 1) c.output(1) = std::move(log_prob);
}

}  // namespace

void register_loss(Registry& r) {
  r["NegativeLogLikelihoodLoss"] = negative_log_likelihood_loss;
  r["SoftmaxCrossEntropyLoss"] = softmax_cross_entropy_loss;
}

}  // namespace quantize::exec
