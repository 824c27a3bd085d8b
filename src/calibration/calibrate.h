// Calibration for static quantization: the float model runs in the executor on sample inputs and
// every tensor of interest is summarised as it is produced (the executor's observer), so memory
// follows the number of tensors tracked, never the number of samples.
//
// Statistics per tensor: running min/max and, for the percentile and entropy methods, a histogram
// of kBins equal bins over [-H, H], H a power of two. When a value falls outside, H doubles and
// neighbouring bins merge pairwise, which is exact (no count is smeared over a bin boundary).
//
// Ranges (always widened to include 0 afterwards, by the quantizer):
//   minmax      [min, max]
//   percentile  the p/100 and (1 - p/100) quantiles, each read at the far edge of the bin where
//               the cumulative count reaches it, clipped to [min, max]
//   entropy     the |x| threshold T minimising KL(P || Q) (TensorRT's method): P is the |x|
//               histogram cut at T with the mass beyond T added to its last bin, Q the cut
//               histogram (without that mass) merged into 128 levels, each spread evenly over
//               the level's bins that are non-empty in P; both normalised, an empty Q bin
//               counted as 1e-9. T runs over 128, 144, ..., 2048 of 2048 |x| bins; the range
//               is [max(min, -T), min(max, T)].
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "quantize/executor.h"
#include "quantize/options.h"

namespace quantize {

// CalibMethod: quantize/options.h

struct Range {
  float lo = 0, hi = 0;
};

class TensorStats {
 public:
  static constexpr int kBins = 8192;  // over [-H, H]; a multiple of 4, so doubling merges pairs

  explicit TensorStats(bool histogram) : histogram_(histogram) {}
  void add(const float* x, size_t n);  // NaN and infinities are ignored

  uint64_t count() const { return count_; }
  float min() const { return min_; }
  float max() const { return max_; }
  float limit() const { return limit_; }  // H (0 before any finite value)
  const std::vector<uint32_t>& bins() const { return bins_; }

  Range range(CalibMethod method, double percentile = 99.999) const;

 private:
  void grow(float magnitude);
  Range percentile_range(double percentile) const;
  Range entropy_range() const;

  bool histogram_;
  uint64_t count_ = 0;
  float min_ = 0, max_ = 0;
  float limit_ = 0;
  std::vector<uint32_t> bins_;
};

// Calibration samples, read one at a time.
struct CalibrationData {
  std::string description;  // for the report: "8 test-data sets in calib/"
  bool synthetic = false;   // --calib random
  size_t count = 0;
  std::function<std::vector<Tensor>(size_t index)> sample;  // the model's inputs, in order
};

// `spec`: "random" (synthetic inputs, symbolic dims 1, floats uniform in [0, 1)); a folder of
// ONNX test data (input_N.pb, or test_data_set_* folders, one sample each); a .npy or .npz file,
// or a folder of them (one sample per file; .npz arrays named like the inputs; a .npy needs a
// one-input model; an array with one more axis than its input is a batch, split along axis 0).
// At most `max_samples` (0: all; "random" defaults to 8).
CalibrationData open_calibration_data(const std::string& spec, const Model& model,
                                      size_t max_samples);

// A .npy array as a Tensor (float32, float64 -> float32, integers, bool); little-endian, C order.
Tensor read_npy(const uint8_t* data, size_t size, const std::string& what);

// Calibration is a run of the float model with collectors watching: each sees every value
// produced (graph inputs included) and keeps the statistics it is for. New kinds of statistics
// (per-input second moments for data-aware weight quantization, say) are new collectors.
class Collector {
 public:
  virtual ~Collector() = default;
  virtual void observe(const std::string& name, const Tensor& value) = 0;
};

// The range of each float tensor named in `tensors`, by the given method.
class RangeCollector final : public Collector {
 public:
  RangeCollector(std::set<std::string> tensors, CalibMethod method, double percentile);
  void observe(const std::string& name, const Tensor& value) override;
  std::unordered_map<std::string, Range> ranges() const;

 private:
  std::set<std::string> tensors_;
  CalibMethod method_;
  double percentile_;
  std::unordered_map<std::string, TensorStats> stats_;
};

// The mean square of each channel (axis 1, as in NCHW) of the float tensors of rank 3 or more
// named in `tensors`.
class ChannelPowerCollector final : public Collector {
 public:
  explicit ChannelPowerCollector(std::set<std::string> tensors) : tensors_(std::move(tensors)) {}
  void observe(const std::string& name, const Tensor& value) override;
  std::unordered_map<std::string, std::vector<double>> power() const;

 private:
  struct Sums {
    std::vector<double> squares;
    uint64_t count = 0;  // elements per channel so far
  };
  std::set<std::string> tensors_;
  std::unordered_map<std::string, Sums> sums_;
};

// Runs the model on every sample with the collectors watching; progress(done, total) after each.
void run_calibration(const Model& model, const CalibrationData& data,
                     const std::vector<Collector*>& collectors,
                     const std::function<void(size_t done, size_t total)>& progress = {});

}  // namespace quantize
