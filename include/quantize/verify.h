// How closely a quantized model follows its float model: per graph output, figures accumulated
// over samples as both run in the built-in executor.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace quantize {

struct OutputMetrics {
  std::string name;
  bool is_float = true;   // float outputs get the figures below; others only `exact`
  uint64_t elements = 0;  // compared, over all samples
  // Over all samples' values taken as one vector:
  double cosine = 1;                                        // f.q / (|f| |q|)
  double rel_l2 = 0;                                        // |q - f| / |f|
  double max_abs = 0;                                       // max |q - f|
  double snr_db = std::numeric_limits<double>::infinity();  // 10 log10(|f|^2 / |q - f|^2)
  bool finite = true;  // no NaN or infinity in q where f has none
  // Outputs that look like class scores or logits (float, last axis >= 2), per row of the last
  // axis: the share whose argmax agrees, and the mean KL(softmax f || softmax q).
  bool logits = false;
  uint64_t rows = 0;
  double top1 = 1;
  double kl = 0;
  double exact = 1;  // share of identical elements (non-float outputs)
};

struct Verification {
  std::string data;        // what the samples were ("3 held-out samples of calib/", ...)
  bool synthetic = false;  // random inputs from the declared shapes
  size_t samples = 0;
  std::vector<OutputMetrics> outputs;

  // The worst value of a metric over the outputs it applies to ("cosine", "top1", "kl", "snr"),
  // or of one output's; NaN when no output has it.
  double worst(const std::string& metric, const std::string& output = "") const;
};

}  // namespace quantize
