// Calibration for static quantization: the float model runs in the executor on sample inputs and
// every tensor of interest is summarised as it is produced (the executor's observer), so memory
// follows the number of tensors tracked, never the number of samples.
//
// Statistics per tensor: running min/max and, for the histogram methods, a histogram of kBins
// equal bins over [-H, H], H a power of two, plus the count of exact zeros. When a value falls
// outside, H doubles and neighbouring bins merge pairwise, which is exact (no count is smeared
// over a bin boundary).
//
// Ranges (always widened to include 0 afterwards, by the quantizer):
//   minmax      [min, max]
//   percentile  the p/100 and (1 - p/100) quantiles, each read at the far edge of the bin where
//               the cumulative count reaches it, clipped to [min, max]
//   entropy     ONNX Runtime's quantize_static with CalibrationMethod.Entropy (calibrate.py,
//               HistogramCollector.collect_value and get_entropy_threshold) at its defaults,
//               B = 128 bins and Q = 128 quantized bins; ORT histograms all samples in one go.
//               Their histogram: B equal bins over [-M, M], M = max(|min|, |max|); ours is
//               re-binned into it, each of our bins counted whole in the bin of its centre.
//               Candidates i = Q/2 .. B/2: the slice of bins [B/2 - i, min(B/2 + i + 1, B)),
//               threshold its outer edges. P: the slice, with the counts left of it added to its
//               first bin and those right of it to its last. Q: the slice without them, cut into
//               Q runs of m = len / Q bins (the leftover bins' counts go to the last run's sum);
//               every bin of a run, empty in P or not, gets floor(run sum / the run's bins
//               non-zero in P), or 0 when there are none; the leftover bins get 0. Both smoothed:
//               each zero bin gets 1e-4, each non-zero bin loses 1e-4 * zeros / non-zeros (no
//               non-zero bin: KL is infinite); KL(P || Q) of the normalised vectors (in double
//               precision; ORT smooths in float32). The first minimum wins; the range is its
//               threshold clipped to [min, max]. At the defaults (B = Q) the one candidate is the
//               whole histogram, so the range is [min, max], the same as minmax.
//   mse         the [lo, hi] minimising the expected squared error of the quantize-dequantize the
//               quantizer applies with `levels` levels (256; static_qdq's activation_params):
//               after widening to 0, s = (hi - lo) / (levels - 1), z = round(-lo / s), the grid
//               s * (k - z) for k = 0 .. levels - 1, x -> nearest grid point, clamped to its ends.
//               Each bin's count (exact zeros apart: always represented exactly) is taken as
//               spread evenly over the bin. Search: mass beyond the grid's ends costs its exact
//               squared distance to them, mass within s^2 / 12; lo and hi run over the bin edges
//               between min and 0 and between 0 and max (and min, max themselves): the best of a
//               64 x 64 subgrid, then alternate full scans of one end with the other fixed until
//               neither moves. Last, the exact expected error (each bin's own rounding to the
//               grid, not s^2 / 12) decides between that optimum, [min, max] and the two mixes,
//               so data lying on the min/max grid (integers, x / 255 pixels) keeps min/max.
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
  uint64_t zeros() const { return zeros_; }  // exact zeros (with a histogram only)
  float min() const { return min_; }
  float max() const { return max_; }
  float limit() const { return limit_; }  // H (0 before any finite value)
  const std::vector<uint32_t>& bins() const { return bins_; }

  // `levels`: the quantizer's (mse only).
  Range range(CalibMethod method, double percentile = 99.999, int levels = 256) const;

  // The methods (see the top of the file); range() uses them at their defaults.
  Range entropy_range(int bins = 128, int quantized_bins = 128) const;
  Range mse_range(int levels = 256) const;

 private:
  void grow(float magnitude);
  Range percentile_range(double percentile) const;

  bool histogram_;
  uint64_t count_ = 0, zeros_ = 0;
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

// Per-channel statistics of a float tensor: what equalization (largest magnitude), bias
// correction (mean) and the buried-channel check (mean square) read.
struct ChannelStats {
  std::vector<double> mean, mean_square;
  std::vector<float> max_abs;
};

// ChannelStats of the float tensors named, along `axis` (negative: from the end; 1 is NCHW's).
// A tensor whose channel count changes between samples keeps the first.
class ChannelStatsCollector final : public Collector {
 public:
  ChannelStatsCollector(std::set<std::string> tensors, int axis)
      : tensors_(std::move(tensors)), axis_(axis) {}
  void observe(const std::string& name, const Tensor& value) override;
  std::unordered_map<std::string, ChannelStats> stats() const;

 private:
  struct Sums {
    std::vector<double> sum, squares;
    std::vector<float> max_abs;
    uint64_t count = 0;  // elements per channel so far
  };
  std::set<std::string> tensors_;
  int axis_;
  std::unordered_map<std::string, Sums> sums_;
};

// Second moments of the rows of float tensors (rows: the last axis, K values; the leading axes
// are flattened): the sum over rows of x x^T, K x K, for data-aware weight quantization (GPTQ
// reads it whole; the importance-weighted search its diagonal), accumulated in float32 by OpenBLAS
// (K^2 * 4 bytes per tensor). A tensor whose K changes between samples keeps the first; rows with
// a non-finite value are skipped.
struct Gram {
  int64_t k = 0;
  uint64_t rows = 0;
  std::vector<float> sum;  // k x k, row-major, symmetric (both triangles filled by gram())
  // The mean of x_i^2 per channel: sum's diagonal over rows.
  std::vector<float> mean_square() const;
};

class GramCollector final : public Collector {
 public:
  explicit GramCollector(std::set<std::string> tensors) : tensors_(std::move(tensors)) {}
  void observe(const std::string& name, const Tensor& value) override;
  // Moves the sums out, by tensor name.
  std::unordered_map<std::string, Gram> take();

 private:
  std::set<std::string> tensors_;
  std::unordered_map<std::string, Gram> grams_;
};

// Runs the model on every sample with the collectors watching; progress(done, total) after each.
void run_calibration(const Model& model, const CalibrationData& data,
                     const std::vector<Collector*>& collectors,
                     const std::function<void(size_t done, size_t total)>& progress = {});

}  // namespace quantize
