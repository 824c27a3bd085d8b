// Verification: the float and the quantized model side by side in the executor, their outputs
// compared as they are produced (memory follows one sample, not the number of samples).
#pragma once

#include <optional>
#include <vector>

#include "calibration/calibrate.h"
#include "quantize/executor.h"
#include "quantize/model.h"
#include "quantize/run.h"
#include "quantize/verify.h"

namespace quantize {

// Accumulates the figures of one output over samples.
class MetricsAccumulator {
 public:
  explicit MetricsAccumulator(std::string name) { m_.name = std::move(name); }
  // reference: the float model's output; candidate: the quantized model's (same shape).
  void add(const Tensor& reference, const Tensor& candidate);
  OutputMetrics result() const;

 private:
  OutputMetrics m_;
  double dot_ = 0, ff_ = 0, qq_ = 0, ee_ = 0, kl_sum_ = 0;
  uint64_t top1_same_ = 0, same_ = 0;
  bool seen_ = false;
};

// Runs both models on every sample, comparing as it goes: memory follows one sample.
Verification verify(const Model& reference, const Model& candidate, const CalibrationData& data);

// The float model's outputs on every sample, computed once (the target search compares many
// candidates against them: outputs are kept, not activations).
struct Reference {
  std::vector<std::vector<Tensor>> outputs;  // per sample
  std::vector<std::string> names;
};
Reference reference_outputs(const Model& model, const CalibrationData& data);

Verification verify(const Reference& reference, const Model& candidate,
                    const CalibrationData& data);

// quantize diff on models in memory (see DiffRequest in quantize/run.h).
DiffResult diff(const Model& float_model, const Model& quant_model, const CalibrationData& data);

// The samples of `data` whose index `keep` accepts, renumbered.
CalibrationData subset(const CalibrationData& data, const std::function<bool(size_t)>& keep,
                       std::string description);

}  // namespace quantize
