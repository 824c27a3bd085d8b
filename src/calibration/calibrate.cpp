// Calibration statistics, samples and the calibration run (see include/quantize/calibrate.h).
#include "calibration/calibrate.h"

#include <cblas.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>
#include <utility>

#include "kernels/kernels.h"
#include "model/payload.h"
#include "model/tensor_data.h"
#include "quantize/error.h"

namespace quantize {
namespace fs = std::filesystem;
using onnx::TensorProto;

// --- statistics ---------------------------------------------------------------------------------

void TensorStats::grow(float magnitude) {
  if (limit_ == 0) {
    int e = 0;
    std::frexp(std::max(magnitude, 0x1p-30f), &e);  // 2^e > magnitude
    limit_ = std::ldexp(1.0f, e);
    bins_.assign(kBins, 0);
    return;
  }
  while (limit_ < magnitude) {  // bin i of [-H, H] lies in bin (kBins/2 + i) / 2 of [-2H, 2H]
    std::vector<uint32_t> merged(kBins, 0);
    for (int i = 0; i < kBins; ++i) merged[(kBins / 2 + i) / 2] += bins_[i];
    bins_.swap(merged);
    limit_ *= 2;
  }
}

void TensorStats::add(const float* x, size_t n) {
  float lo = std::numeric_limits<float>::infinity(), hi = -lo;
  size_t finite = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) continue;
    lo = std::min(lo, x[i]);
    hi = std::max(hi, x[i]);
    ++finite;
  }
  if (finite == 0) return;
  min_ = count_ ? std::min(min_, lo) : lo;
  max_ = count_ ? std::max(max_, hi) : hi;
  count_ += finite;
  if (!histogram_) return;
  const float magnitude = std::max(-lo, hi);
  if (limit_ == 0 || magnitude > limit_) grow(magnitude);
  const float to_bin = kBins / (2 * limit_);
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) continue;
    int b = static_cast<int>((x[i] + limit_) * to_bin);
    ++bins_[std::clamp(b, 0, kBins - 1)];
    zeros_ += x[i] == 0;
  }
}

Range TensorStats::range(CalibMethod method, double percentile, int levels) const {
  if (count_ == 0) return {};
  if (method == CalibMethod::kMinMax || !histogram_) return {min_, max_};
  switch (method) {
    case CalibMethod::kPercentile:
      return percentile_range(percentile);
    case CalibMethod::kEntropy:
      return entropy_range();
    case CalibMethod::kMse:
      return mse_range(levels);
    default:
      return {min_, max_};
  }
}

Range TensorStats::percentile_range(double percentile) const {
  const double width = 2.0 * limit_ / kBins;
  double total = 0;
  for (uint32_t c : bins_) total += c;
  const double hi_target = total * percentile / 100, lo_target = total * (100 - percentile) / 100;
  Range r{min_, max_};
  double cum = 0;
  bool lo_set = false;
  for (int b = 0; b < kBins; ++b) {
    cum += bins_[b];
    if (!lo_set && bins_[b] && cum >= lo_target) {
      r.lo = std::max(min_, static_cast<float>(-limit_ + b * width));
      lo_set = true;
    }
    if (cum >= hi_target && bins_[b]) {
      r.hi = std::min(max_, static_cast<float>(-limit_ + (b + 1) * width));
      break;
    }
  }
  return r;
}

Range TensorStats::entropy_range(int bins, int quantized_bins) const {
  if (count_ == 0) return {};
  const double m =
      std::max(std::fabs(static_cast<double>(min_)), std::fabs(static_cast<double>(max_)));
  const int zero = bins / 2, half = quantized_bins / 2;
  if (!histogram_ || !(m > 0) || bins < 2 || quantized_bins < 1 || half > zero) {
    return {min_, max_};
  }
  // Ours in their layout, B bins over [-M, M]: each of our bins whole in the bin of its centre.
  std::vector<double> hist(bins, 0.0);
  const double ours = 2.0 * limit_ / kBins, theirs = 2 * m / bins;
  for (int k = 0; k < kBins; ++k) {
    if (!bins_[k]) continue;
    const double centre = -limit_ + (k + 0.5) * ours;
    hist[std::clamp(static_cast<int>(std::floor((centre + m) / theirs)), 0, bins - 1)] += bins_[k];
  }
  std::vector<double> cum(bins + 1, 0.0);  // cum[k]: the count of bins [0, k)
  for (int k = 0; k < bins; ++k) cum[k + 1] = cum[k] + hist[k];
  auto edge = [&](int k) { return k == bins ? m : -m + k * theirs; };
  // Zero bins get 1e-4, the others lose 1e-4 * zeros / non-zeros; false when every bin is 0.
  auto smooth = [](std::vector<double>& v) {
    const auto nonzero = std::count_if(v.begin(), v.end(), [](double x) { return x != 0; });
    if (nonzero == 0) return false;
    const double eps = 1e-4, eps1 = eps * static_cast<double>(v.size() - nonzero) / nonzero;
    for (double& x : v) x += x == 0 ? eps : -eps1;
    return true;
  };

  double best_kl = std::numeric_limits<double>::infinity();
  int best_start = zero - half, best_end = std::min(zero + half + 1, bins);
  std::vector<double> p, q;
  for (int i = half; i <= zero; ++i) {
    const int start = zero - i, end = std::min(zero + i + 1, bins), n = end - start;
    p.assign(hist.begin() + start, hist.begin() + end);
    p.front() += cum[start];             // the counts left of the slice
    p.back() += cum[bins] - cum[end];    // and right of it
    const int run = n / quantized_bins;  // slice bins per quantized bin
    q.assign(n, 0.0);
    for (int j = 0; run > 0 && j < quantized_bins; ++j) {
      const int b0 = j * run, b1 = b0 + run;
      // The slice's own counts (no outliers); the leftover bins go to the last run.
      const double sum = cum[start + (j == quantized_bins - 1 ? n : b1)] - cum[start + b0];
      int nonzero = 0;
      for (int k = b0; k < b1; ++k) nonzero += p[k] != 0;
      if (nonzero == 0) continue;
      // Every bin of the run, empty in P or not, gets the truncated share (an int64 array).
      for (int k = b0; k < b1; ++k) q[k] = std::floor(sum / nonzero);
    }
    double kl = std::numeric_limits<double>::infinity();
    if (run > 0 && smooth(p) && smooth(q)) {
      double p_total = 0, q_total = 0;
      for (int k = 0; k < n; ++k) p_total += p[k], q_total += q[k];
      kl = 0;
      for (int k = 0; k < n; ++k) {
        const double pk = p[k] / p_total;
        kl += pk * std::log(pk / (q[k] / q_total));
      }
    }
    if (kl < best_kl) {  // the first minimum, as numpy's argmin
      best_kl = kl;
      best_start = start;
      best_end = end;
    }
  }
  return {std::max(static_cast<float>(edge(best_start)), min_),
          std::min(static_cast<float>(edge(best_end)), max_)};
}

namespace {

// The grid static_qdq quantizes a calibrated range to (activation_params): the range widened to
// include 0, s = (hi - lo) / (levels - 1), zero point z = round(-lo / s); the points s * (k - z),
// k = 0 .. levels - 1, of which `lo` and `hi` here are the ends.
struct Grid {
  double step, lo, hi;
};

Grid grid_for(double lo, double hi, int levels) {
  lo = std::min(lo, 0.0);
  hi = std::max(hi, 0.0);
  const double steps = levels - 1, s = (hi - lo) / steps;
  const double z = std::clamp(std::nearbyint(-lo / s), 0.0, steps);
  return {s, -z * s, (steps - z) * s};
}

// The expected squared quantize-dequantize error, summed over the values a histogram counts,
// each bin's count spread evenly over the bin, the exact zeros apart (a grid holds 0 exactly).
class HistogramError {
 public:
  HistogramError(const std::vector<uint32_t>& bins, uint64_t zeros, double limit)
      : n_(static_cast<int>(bins.size())),
        width_(2 * limit / n_),
        limit_(limit),
        count_(bins.begin(), bins.end()),
        cum0_(n_ + 1, 0.0),
        cum1_(n_ + 1, 0.0),
        cum2_(n_ + 1, 0.0) {
    count_[n_ / 2] -= static_cast<double>(zeros);  // zeros are counted in the bin [0, w)
    for (int k = 0; k < n_; ++k) {
      const double c = count_[k], centre = -limit_ + (k + 0.5) * width_;
      cum0_[k + 1] = cum0_[k] + c;
      cum1_[k + 1] = cum1_[k] + c * centre;
      cum2_[k + 1] = cum2_[k] + c * (centre * centre + width_ * width_ / 12);  // E[x^2] in bin
    }
  }

  // Mass beyond the grid at its exact squared distance to the ends, mass within at s^2 / 12.
  double approximate(const Grid& g) const {
    const auto [above, above_error] = beyond(g.hi, true);
    const auto [below, below_error] = beyond(g.lo, false);
    const double within = std::max(cum0_[n_] - above - below, 0.0);
    return above_error + below_error + within * g.step * g.step / 12;
  }

  // Exact: the integral of (x - Q(x))^2 over each bin, with Q the grid's nearest point, clamped.
  double exact(const Grid& g, int levels) const {
    const double s = g.step, s3 = s * s * s, inner = s3 * (levels - 1) / 12;
    auto integral = [&](double x) {  // of (t - Q(t))^2 from g.lo to x
      if (x <= g.lo) return -std::pow(g.lo - x, 3) / 3;
      if (x >= g.hi) return inner + std::pow(x - g.hi, 3) / 3;
      const double u = (x - g.lo) / s, k = std::floor(u), r = u - k;
      return s3 * (k / 12 + (r <= 0.5 ? r * r * r / 3 : 1.0 / 12 - std::pow(1 - r, 3) / 3));
    };
    double error = 0;
    for (int k = 0; k < n_; ++k) {
      if (count_[k] <= 0) continue;
      const double a = -limit_ + k * width_;
      error += count_[k] / width_ * (integral(a + width_) - integral(a));
    }
    return error;
  }

 private:
  // The mass beyond `edge` (above it, or below) and its squared distance to `edge`, summed.
  std::pair<double, double> beyond(double edge, bool above) const {
    const double u = (edge + limit_) / width_;
    if (above ? u >= n_ : u <= 0) return {0, 0};
    const int k = std::clamp(static_cast<int>(std::floor(u)), 0, n_ - 1);
    const double f = above ? k + 1 - u : u - k;               // the part of bin k beyond the edge
    const int from = above ? k + 1 : 0, to = above ? n_ : k;  // the bins wholly beyond
    const double c = cum0_[to] - cum0_[from], c1 = cum1_[to] - cum1_[from];
    const double c2 = cum2_[to] - cum2_[from];
    const double whole = std::max(c2 - 2 * edge * c1 + edge * edge * c, 0.0);
    const double part = count_[k] * f * f * f * width_ * width_ / 3;
    return {c + count_[k] * f, whole + part};
  }

  int n_;
  double width_, limit_;
  std::vector<double> count_, cum0_, cum1_, cum2_;
};

}  // namespace

Range TensorStats::mse_range(int levels) const {
  if (count_ == 0) return {};
  if (!histogram_ || min_ == max_ || levels < 2) return {min_, max_};
  const HistogramError model(bins_, zeros_, limit_);
  // Candidate ends: the bin edges strictly between 0 and max (min and 0), then max (min).
  const double width = 2.0 * limit_ / kBins;
  std::vector<double> his, los;
  for (int k = kBins / 2 + 1; max_ > 0 && k < kBins && -limit_ + k * width < max_; ++k) {
    his.push_back(-limit_ + k * width);
  }
  his.push_back(std::max(max_, 0.0f));
  for (int k = kBins / 2 - 1; min_ < 0 && k > 0 && -limit_ + k * width > min_; --k) {
    los.push_back(-limit_ + k * width);
  }
  los.push_back(std::min(min_, 0.0f));

  auto cost = [&](size_t lo, size_t hi) {
    return model.approximate(grid_for(los[lo], his[hi], levels));
  };
  size_t lo = los.size() - 1, hi = his.size() - 1;
  double best = cost(lo, hi);
  auto consider = [&](size_t l, size_t h) {
    const double c = cost(l, h);
    if (c >= best) return false;
    best = c, lo = l, hi = h;
    return true;
  };
  // The best of a subgrid of at most 64 x 64 ends, then alternate full scans of one end with the
  // other fixed until neither moves.
  const size_t parts_lo = std::min<size_t>(64, los.size()),
               parts_hi = std::min<size_t>(64, his.size());
  for (size_t a = 0; a < parts_lo; ++a) {
    for (size_t b = 0; b < parts_hi; ++b) {
      consider(parts_lo > 1 ? (los.size() - 1) * a / (parts_lo - 1) : 0,
               parts_hi > 1 ? (his.size() - 1) * b / (parts_hi - 1) : 0);
    }
  }
  for (int round = 0; round < 32; ++round) {
    bool moved = false;
    for (size_t h = 0, l = lo; h < his.size(); ++h) moved |= consider(l, h);
    for (size_t l = 0, h = hi; l < los.size(); ++l) moved |= consider(l, h);
    if (!moved) break;
  }
  // The exact error decides between the optimum, [min, max] and the two mixes.
  const std::pair<double, double> choices[] = {
      {los.back(), his.back()}, {los[lo], his[hi]}, {los[lo], his.back()}, {los.back(), his[hi]}};
  double best_exact = std::numeric_limits<double>::infinity();
  Range r{min_, max_};
  for (const auto& [l, h] : choices) {
    const double e = model.exact(grid_for(l, h, levels), levels);
    if (e < best_exact) {
      best_exact = e;
      r = {min_ < 0 ? static_cast<float>(l) : min_, max_ > 0 ? static_cast<float>(h) : max_};
    }
  }
  return r;
}

// --- samples ------------------------------------------------------------------------------------

namespace {

std::vector<uint8_t> read_file(const fs::path& path) {
  require_regular_file(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ExitCode::kInput, "{}: cannot read", path.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

uint32_t le16(const uint8_t* p) { return p[0] | p[1] << 8; }
uint32_t le32(const uint8_t* p) { return le16(p) | le16(p + 2) << 16; }

// The members of a .npz (a ZIP archive, stored or deflated) as name -> bytes.
std::vector<std::pair<std::string, std::vector<uint8_t>>> read_npz(const fs::path& path) {
  const std::vector<uint8_t> zip = read_file(path);
  const std::string what = path.string();
  // End of central directory: signature, then the entry count at +10 and the offset at +16.
  size_t end = zip.size() >= 22 ? zip.size() - 22 : std::string::npos;
  while (end != std::string::npos && le32(&zip[end]) != 0x06054b50)
    end = end ? end - 1 : std::string::npos;
  if (end == std::string::npos) fail(ExitCode::kInput, "{}: not a .npz (ZIP) file", what);
  const uint32_t entries = le16(&zip[end + 10]);
  size_t at = le32(&zip[end + 16]);
  std::vector<std::pair<std::string, std::vector<uint8_t>>> members;
  for (uint32_t e = 0; e < entries; ++e) {
    if (at + 46 > zip.size() || le32(&zip[at]) != 0x02014b50) {
      fail(ExitCode::kInput, "{}: damaged ZIP directory", what);
    }
    const uint32_t method = le16(&zip[at + 10]);
    const uint32_t packed = le32(&zip[at + 20]), size = le32(&zip[at + 24]);
    const uint32_t name_len = le16(&zip[at + 28]);
    const size_t local = le32(&zip[at + 42]);
    std::string name(reinterpret_cast<const char*>(&zip[at + 46]), name_len);
    at += 46 + name_len + le16(&zip[at + 30]) + le16(&zip[at + 32]);
    if (packed == 0xffffffffu || size == 0xffffffffu) {
      fail(ExitCode::kInput, "{}: member '{}' is a ZIP64 entry (over 4 GiB), not supported", what,
           name);
    }
    if (local + 30 > zip.size()) fail(ExitCode::kInput, "{}: damaged ZIP entry '{}'", what, name);
    const size_t data = local + 30 + le16(&zip[local + 26]) + le16(&zip[local + 28]);
    if (data + packed > zip.size())
      fail(ExitCode::kInput, "{}: member '{}' is truncated", what, name);
    std::vector<uint8_t> bytes(size);
    if (method == 0) {
      std::memcpy(bytes.data(), &zip[data], size);
    } else if (method == 8) {
      z_stream z{};
      inflateInit2(&z, -MAX_WBITS);
      z.next_in = const_cast<Bytef*>(&zip[data]);
      z.avail_in = packed;
      z.next_out = bytes.data();
      z.avail_out = size;
      const int rc = inflate(&z, Z_FINISH);
      inflateEnd(&z);
      if (rc != Z_STREAM_END)
        fail(ExitCode::kInput, "{}: member '{}' does not inflate", what, name);
    } else {
      fail(ExitCode::kInput, "{}: member '{}' uses ZIP method {} (only stored and deflate)", what,
           name, method);
    }
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0)
      name.resize(name.size() - 4);
    members.emplace_back(std::move(name), std::move(bytes));
  }
  return members;
}

std::string header_value(const std::string& header, const std::string& key) {
  const size_t k = header.find("'" + key + "'");
  if (k == std::string::npos) return {};
  size_t v = header.find(':', k);
  if (v == std::string::npos) return {};
  ++v;
  while (v < header.size() && header[v] == ' ') ++v;
  if (v >= header.size()) return {};
  const char open = header[v];
  const char close = open == '\'' ? '\'' : open == '(' ? ')' : ',';
  const size_t e = header.find(close, v + 1);
  if (e == std::string::npos) return {};
  return header.substr(open == '\'' || open == '(' ? v + 1 : v,
                       e - v - (open == '\'' || open == '(' ? 1 : 0));
}

// One input's shape from the graph: symbolic or missing dims are -1.
std::vector<int64_t> declared_shape(const onnx::ValueInfoProto& v) {
  std::vector<int64_t> shape;
  for (const auto& d : v.type().tensor_type().shape().dim()) {
    shape.push_back(d.has_dim_value() ? d.dim_value() : -1);
  }
  return shape;
}

const onnx::ValueInfoProto& graph_input(const Model& model, const std::string& name) {
  for (const auto& v : model.proto.graph().input()) {
    if (v.name() == name) return v;
  }
  fail(ExitCode::kInternal, "graph input '{}' vanished", name);
}

// Converts to the input's declared element type where the .npy's differs (float64 -> float32,
// int32 -> int64, ...), so data written by NumPy defaults feeds the model.
Tensor to_type(const Tensor& t, int dtype, const std::string& what) {
  if (t.dtype() == dtype || dtype == 0) return t;
  Tensor out(dtype, t.shape());
  for (int64_t i = 0; i < t.size(); ++i) {
    const double v = t.element_as_double(i);
    switch (dtype) {
      case TensorProto::FLOAT:
        out.data<float>()[i] = static_cast<float>(v);
        break;
      case TensorProto::DOUBLE:
        out.data<double>()[i] = v;
        break;
      case TensorProto::INT64:
        out.data<int64_t>()[i] = static_cast<int64_t>(v);
        break;
      case TensorProto::INT32:
        out.data<int32_t>()[i] = static_cast<int32_t>(v);
        break;
      case TensorProto::UINT8:
      case TensorProto::BOOL:
        out.raw()[i] = static_cast<uint8_t>(v);
        break;
      case TensorProto::INT8:
        out.data<int8_t>()[i] = static_cast<int8_t>(v);
        break;
      default:
        fail(ExitCode::kInput, "{}: cannot convert to input data type {}", what, dtype);
    }
  }
  return out;
}

// Row `row` of a batch (axis 0), or the whole tensor when row < 0.
Tensor slice_row(const Tensor& t, int64_t row) {
  if (row < 0) return t;
  std::vector<int64_t> shape(t.shape().begin() + 1, t.shape().end());
  Tensor out(t.dtype(), shape);
  std::memcpy(out.raw(), t.raw() + row * out.bytes(), out.bytes());
  return out;
}

struct NpySample {
  fs::path file;
  int64_t row = -1;  // a batch row, or -1 for the whole file
};

// Arrays of one .npy/.npz file, by input name.
std::vector<std::pair<std::string, Tensor>> read_arrays(const fs::path& file,
                                                        const std::vector<std::string>& inputs) {
  std::vector<std::pair<std::string, Tensor>> arrays;
  if (file.extension() == ".npz") {
    for (auto& [name, bytes] : read_npz(file)) {
      arrays.emplace_back(name, read_npy(bytes.data(), bytes.size(), file.string() + ":" + name));
    }
    for (const auto& input : inputs) {
      if (std::none_of(arrays.begin(), arrays.end(),
                       [&](const auto& a) { return a.first == input; })) {
        fail(ExitCode::kInput, "{}: no array named '{}' (the model's input)", file.string(), input);
      }
    }
  } else {
    if (inputs.size() != 1) {
      fail(ExitCode::kInput, "{}: a .npy holds one array, the model has {} inputs (use .npz)",
           file.string(), inputs.size());
    }
    auto bytes = read_file(file);
    arrays.emplace_back(inputs[0], read_npy(bytes.data(), bytes.size(), file.string()));
  }
  return arrays;
}

CalibrationData random_data(const Model& model, const std::vector<std::string>& inputs,
                            size_t count) {
  CalibrationData data;
  data.synthetic = true;
  data.count = count;
  data.description = fmt::format("{} random input sets from the declared shapes", count);
  std::vector<std::pair<int, std::vector<int64_t>>> types;
  for (const auto& name : inputs) {
    const auto& v = graph_input(model, name);
    auto shape = declared_shape(v);
    for (auto& d : shape) d = d < 0 ? 1 : d;
    types.emplace_back(v.type().tensor_type().elem_type(), shape);
  }
  data.sample = [types](size_t index) {
    std::mt19937 rng(static_cast<uint32_t>(1000 + index));
    std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
    std::vector<Tensor> sample;
    for (const auto& [dtype, shape] : types) {
      Tensor t(dtype, shape);
      for (int64_t i = 0; i < t.size(); ++i) {
        if (dtype == TensorProto::FLOAT)
          t.data<float>()[i] = uniform(rng);
        else if (dtype == TensorProto::INT64)
          t.data<int64_t>()[i] = rng() % 10;
        else if (dtype == TensorProto::INT32)
          t.data<int32_t>()[i] = rng() % 10;
      }
      sample.push_back(std::move(t));
    }
    return sample;
  };
  return data;
}

}  // namespace

Tensor read_npy(const uint8_t* data, size_t size, const std::string& what) {
  if (size < 10 || std::memcmp(data, "\x93NUMPY", 6) != 0)
    fail(ExitCode::kInput, "{}: not a .npy array", what);
  const int major = data[6];
  const size_t header_len = major == 1 ? le16(data + 8) : le32(data + 8);
  const size_t start = (major == 1 ? 10 : 12) + header_len;
  if (start > size) fail(ExitCode::kInput, "{}: truncated .npy header", what);
  const std::string header(reinterpret_cast<const char*>(data + (major == 1 ? 10 : 12)),
                           header_len);
  const std::string descr = header_value(header, "descr");
  if (header_value(header, "fortran_order").rfind("True", 0) == 0) {
    fail(ExitCode::kInput, "{}: Fortran-order arrays are not supported", what);
  }
  // shape: a tuple of non-negative integers, a trailing comma allowed (header_value gives what
  // is between the parentheses).
  if (header.find("'shape'") == std::string::npos)
    fail(ExitCode::kInput, "{}: the .npy header has no shape", what);
  std::vector<int64_t> shape;
  const std::string dims = header_value(header, "shape");
  for (size_t p = dims.find_first_not_of(' '); p != std::string::npos;) {
    const size_t q = dims.find_first_not_of("0123456789", p);
    const size_t digits = (q == std::string::npos ? dims.size() : q) - p;
    if (digits == 0 || digits > 15) {  // 15 digits: below 2^50
      fail(ExitCode::kInput, "{}: the .npy shape ({}) is not a tuple of sizes", what, dims);
    }
    shape.push_back(std::stoll(dims.substr(p, digits)));
    p = dims.find_first_not_of(' ', p + digits);
    if (p != std::string::npos && dims[p] != ',') {
      fail(ExitCode::kInput, "{}: the .npy shape ({}) is not a tuple of sizes", what, dims);
    }
    if (p != std::string::npos) p = dims.find_first_not_of(' ', p + 1);
  }
  struct Kind {
    const char* descr;
    int dtype;
  };
  static const Kind kinds[] = {{"<f4", TensorProto::FLOAT}, {"<f8", TensorProto::DOUBLE},
                               {"<i8", TensorProto::INT64}, {"<i4", TensorProto::INT32},
                               {"|u1", TensorProto::UINT8}, {"|i1", TensorProto::INT8},
                               {"|b1", TensorProto::BOOL}};
  int dtype = 0;
  for (const auto& k : kinds) dtype = descr == k.descr ? k.dtype : dtype;
  if (!dtype) fail(ExitCode::kInput, "{}: element type '{}' is not supported", what, descr);
  // The data must be exactly what the shape says: checked before anything is allocated.
  const uint64_t held = size - start;
  uint64_t bytes = element_size(dtype);
  bool overflow = false;
  for (int64_t d : shape)
    overflow |= __builtin_mul_overflow(bytes, static_cast<uint64_t>(d), &bytes);
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) overflow = false, bytes = 0;
  if (overflow || bytes != held) {
    fail(ExitCode::kInput, "{}: the .npy shape ({}) needs {} data bytes, the file holds {}", what,
         fmt::join(shape, ", "), overflow ? "over 2^64" : std::to_string(bytes), held);
  }
  Tensor t(dtype, shape);
  if (t.bytes() > 0) std::memcpy(t.raw(), data + start, t.bytes());  // no null pointers
  return t;
}

CalibrationData open_calibration_data(const std::string& spec, const Model& model,
                                      size_t max_samples) {
  const std::vector<std::string> inputs = fed_inputs(model);
  if (spec == "random") return random_data(model, inputs, max_samples ? max_samples : 8);
  const fs::path path(spec);
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(ExitCode::kInput, "--calib {}: no such file or folder", spec);

  auto is_array = [](const fs::path& p) {
    return p.extension() == ".npy" || p.extension() == ".npz";
  };
  std::vector<fs::path> files;
  if (fs::is_directory(path)) {
    for (const auto& entry : fs::directory_iterator(path)) {
      if (entry.is_regular_file() && is_array(entry.path())) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
  } else if (is_array(path)) {
    files.push_back(path);
  } else {
    fail(ExitCode::kInput, "--calib {}: not a folder, .npy or .npz", spec);
  }

  CalibrationData data;
  if (files.empty()) {  // ONNX test data
    auto dirs = std::make_shared<std::vector<fs::path>>(test_data_dirs(path));
    if (max_samples && dirs->size() > max_samples) dirs->resize(max_samples);
    data.count = dirs->size();
    data.description = fmt::format("{} test-data set(s) in {}", data.count, spec);
    // Inputs are read as their declared types: sequences and optionals are not TensorProtos.
    auto types = std::make_shared<std::vector<onnx::TypeProto>>();
    for (const auto* t : declared_types(model.proto.graph(), inputs)) {
      types->push_back(t ? *t : onnx::TypeProto());
    }
    const size_t n = inputs.size();
    data.sample = [dirs, n, types](size_t i) {
      std::vector<const onnx::TypeProto*> declared;
      for (const auto& t : *types) declared.push_back(&t);
      return read_test_inputs((*dirs)[i], n, declared);
    };
    return data;
  }
  // One sample per file, or per batch row when an array has one more axis than its input.
  auto samples = std::make_shared<std::vector<NpySample>>();
  for (const auto& file : files) {
    auto arrays = read_arrays(file, inputs);
    const auto& first = arrays.front().second;
    const size_t rank = declared_shape(graph_input(model, arrays.front().first)).size();
    if (first.rank() == static_cast<int64_t>(rank) + 1) {
      for (int64_t r = 0; r < first.shape()[0]; ++r) samples->push_back({file, r});
    } else {
      samples->push_back({file, -1});
    }
    if (max_samples && samples->size() >= max_samples) break;
  }
  if (max_samples && samples->size() > max_samples) samples->resize(max_samples);
  if (samples->empty()) fail(ExitCode::kInput, "--calib {}: the arrays hold no samples", spec);
  data.count = samples->size();
  data.description =
      fmt::format("{} sample(s) from {} array file(s) in {}", data.count, files.size(), spec);
  std::vector<int> types;
  for (const auto& name : inputs)
    types.push_back(graph_input(model, name).type().tensor_type().elem_type());
  data.sample = [samples, inputs, types](size_t i) {
    const NpySample& s = (*samples)[i];
    auto arrays = read_arrays(s.file, inputs);
    std::vector<Tensor> sample;
    for (size_t k = 0; k < inputs.size(); ++k) {
      for (const auto& [name, array] : arrays) {
        if (name == inputs[k]) {
          sample.push_back(
              to_type(slice_row(array, s.row), types[k], s.file.string() + ":" + name));
        }
      }
    }
    return sample;
  };
  return data;
}

// --- the run ------------------------------------------------------------------------------------

RangeCollector::RangeCollector(std::set<std::string> tensors, CalibMethod method, double percentile)
    : tensors_(std::move(tensors)), method_(method), percentile_(percentile) {}

void RangeCollector::observe(const std::string& name, const Tensor& value) {
  if (value.dtype() != TensorProto::FLOAT || !tensors_.count(name)) return;
  auto& s = stats_.try_emplace(name, method_ != CalibMethod::kMinMax).first->second;
  s.add(value.data<float>(), value.size());
}

std::unordered_map<std::string, Range> RangeCollector::ranges() const {
  std::unordered_map<std::string, Range> ranges;
  for (const auto& [name, s] : stats_) ranges[name] = s.range(method_, percentile_);
  return ranges;
}

void ChannelStatsCollector::observe(const std::string& name, const Tensor& value) {
  if (!tensors_.count(name) || value.dtype() != TensorProto::FLOAT || value.rank() < 1) return;
  const int64_t rank = value.rank();
  const int64_t axis = axis_ < 0 ? axis_ + rank : axis_;
  if (axis < 0 || axis >= rank) return;
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= value.shape()[i];
  for (int64_t i = axis + 1; i < rank; ++i) inner *= value.shape()[i];
  const int64_t channels = value.shape()[axis];
  Sums& s = sums_[name];
  if (s.sum.empty()) {
    s.sum.assign(channels, 0.0);
    s.squares.assign(channels, 0.0);
    s.max_abs.assign(channels, 0.0f);
  }
  if (static_cast<int64_t>(s.sum.size()) != channels) return;  // the shape changed: keep the first
  const float* x = value.data<float>();
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < channels; ++c) {
      const float* p = x + (o * channels + c) * inner;
      double sum = 0, squares = 0;
      float top = s.max_abs[c];
      for (int64_t k = 0; k < inner; ++k) {
        if (!std::isfinite(p[k])) continue;
        sum += p[k];
        squares += double(p[k]) * p[k];
        top = std::max(top, std::fabs(p[k]));
      }
      s.sum[c] += sum;
      s.squares[c] += squares;
      s.max_abs[c] = top;
    }
  }
  s.count += outer * inner;
}

std::unordered_map<std::string, ChannelStats> ChannelStatsCollector::stats() const {
  std::unordered_map<std::string, ChannelStats> out;
  for (const auto& [name, s] : sums_) {
    ChannelStats& c = out[name];
    const double n = s.count ? static_cast<double>(s.count) : 1.0;
    for (size_t k = 0; k < s.sum.size(); ++k) {
      c.mean.push_back(s.sum[k] / n);
      c.mean_square.push_back(s.squares[k] / n);
    }
    c.max_abs = s.max_abs;
  }
  return out;
}

std::vector<float> Gram::mean_square() const {
  std::vector<float> out(k);
  const double n = rows ? static_cast<double>(rows) : 1.0;
  for (int64_t i = 0; i < k; ++i) out[i] = static_cast<float>(sum[i * k + i] / n);
  return out;
}

void GramCollector::observe(const std::string& name, const Tensor& value) {
  if (!tensors_.count(name) || value.rank() < 1) return;
  std::vector<float> converted;  // a float16 model's activations, as float32
  if (value.dtype() == TensorProto::FLOAT16) {
    converted.resize(value.size());
    kernels().f16_to_f32(value.data<uint16_t>(), value.size(), converted.data());
  } else if (value.dtype() != TensorProto::FLOAT) {
    return;
  }
  const int64_t k = value.shape().back();
  if (k <= 0) return;
  Gram& g = grams_[name];
  if (g.k == 0) {
    g.k = k;
    g.sum.assign(k * k, 0.0f);
  }
  if (g.k != k) return;  // the shape changed: keep the first
  const int64_t rows = value.size() / k;
  const float* x = converted.empty() ? value.data<float>() : converted.data();
  std::vector<float> finite;  // the finite rows, when some are not
  if (!std::all_of(x, x + value.size(), [](float v) { return std::isfinite(v); })) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* row = x + r * k;
      if (std::all_of(row, row + k, [](float v) { return std::isfinite(v); })) {
        finite.insert(finite.end(), row, row + k);
      }
    }
    x = finite.data();
  }
  const int64_t used = finite.empty() ? rows : static_cast<int64_t>(finite.size()) / k;
  if (used == 0 || x == nullptr) return;
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(k), static_cast<int>(used),
              1.0f, x, static_cast<int>(k), 1.0f, g.sum.data(), static_cast<int>(k));
  g.rows += used;
}

std::unordered_map<std::string, Gram> GramCollector::take() {
  for (auto& [name, g] : grams_) {
    for (int64_t i = 0; i < g.k; ++i) {
      for (int64_t j = 0; j < i; ++j) g.sum[i * g.k + j] = g.sum[j * g.k + i];
    }
  }
  return std::move(grams_);
}

void run_calibration(const Model& model, const CalibrationData& data,
                     const std::vector<Collector*>& collectors,
                     const std::function<void(size_t, size_t)>& progress) {
  Executor executor(model);
  auto observe = [&](const std::string& name, const Tensor& value) {
    for (Collector* c : collectors) c->observe(name, value);
  };
  for (size_t i = 0; i < data.count; ++i) {
    const std::vector<Tensor> inputs = data.sample(i);
    for (size_t k = 0; k < inputs.size() && k < executor.input_names().size(); ++k) {
      if (!inputs[k].is_container()) observe(executor.input_names()[k], inputs[k]);
    }
    executor.run(inputs, observe);
    if (progress) progress(i + 1, data.count);
  }
}

}  // namespace quantize
