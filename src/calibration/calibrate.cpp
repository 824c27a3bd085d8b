// Calibration statistics, samples and the calibration run (see include/quantize/calibrate.h).
#include "calibration/calibrate.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <random>

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
  }
}

Range TensorStats::range(CalibMethod method, double percentile) const {
  if (count_ == 0) return {};
  if (method == CalibMethod::kMinMax || !histogram_) return {min_, max_};
  return method == CalibMethod::kPercentile ? percentile_range(percentile) : entropy_range();
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

Range TensorStats::entropy_range() const {
  constexpr int kAbsBins = 2048, kLevels = 128, kStep = 16;
  // |x| histogram: kBins/2 bins per side folded, then pairs merged down to kAbsBins.
  std::vector<double> a(kAbsBins, 0.0);
  const int half = kBins / 2, merge = half / kAbsBins;
  for (int k = 0; k < half; ++k) a[k / merge] += bins_[half + k] + bins_[half - 1 - k];
  const double width = static_cast<double>(limit_) / kAbsBins;
  double total = 0;
  for (double c : a) total += c;
  if (total == 0) return {min_, max_};

  double best_kl = std::numeric_limits<double>::infinity();
  int best = kAbsBins;
  std::vector<double> p, q;
  for (int i = kLevels; i <= kAbsBins; i += kStep) {
    p.assign(a.begin(), a.begin() + i);
    for (int k = i; k < kAbsBins; ++k) p[i - 1] += a[k];  // mass beyond T into the last bin
    q.assign(i, 0.0);
    for (int level = 0; level < kLevels; ++level) {
      const int b0 = level * i / kLevels, b1 = (level + 1) * i / kLevels;
      double sum = 0;
      int nonzero = 0;
      for (int k = b0; k < b1; ++k) {
        sum += a[k];  // the cut histogram without the clipped mass
        nonzero += p[k] > 0;
      }
      for (int k = b0; k < b1; ++k) q[k] = p[k] > 0 ? sum / nonzero : 0;
    }
    double q_total = 0;
    for (double v : q) q_total += v;
    if (q_total == 0) continue;
    double kl = 0;
    for (int k = 0; k < i; ++k) {  // a bin Q leaves empty costs as if Q held 1e-9 of the mass
      if (p[k] > 0) kl += p[k] / total * std::log((p[k] / total) / std::max(q[k] / q_total, 1e-9));
    }
    if (kl < best_kl) {
      best_kl = kl;
      best = i;
    }
  }
  const float t = static_cast<float>(best * width);
  return {std::max(min_, -t), std::min(max_, t)};
}

// --- samples ------------------------------------------------------------------------------------

namespace {

std::vector<uint8_t> read_file(const fs::path& path) {
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
  std::vector<int64_t> shape;
  const std::string dims = header_value(header, "shape");
  for (size_t p = 0; p < dims.size();) {
    while (p < dims.size() && !std::isdigit(static_cast<unsigned char>(dims[p]))) ++p;
    if (p >= dims.size()) break;
    size_t q = p;
    while (q < dims.size() && std::isdigit(static_cast<unsigned char>(dims[q]))) ++q;
    shape.push_back(std::stoll(dims.substr(p, q - p)));
    p = q;
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
  Tensor t(dtype, shape);
  if (start + t.bytes() > size) fail(ExitCode::kInput, "{}: truncated .npy data", what);
  std::memcpy(t.raw(), data + start, t.bytes());
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

void ChannelPowerCollector::observe(const std::string& name, const Tensor& value) {
  if (value.dtype() != TensorProto::FLOAT || value.rank() < 3 || !tensors_.count(name)) return;
  const int64_t outer = value.shape()[0], channels = value.shape()[1];
  int64_t inner = 1;
  for (int64_t i = 2; i < value.rank(); ++i) inner *= value.shape()[i];
  Sums& s = sums_[name];
  if (s.squares.empty()) s.squares.assign(channels, 0.0);
  if (static_cast<int64_t>(s.squares.size()) != channels)
    return;  // the shape changed: keep the first
  const float* x = value.data<float>();
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t c = 0; c < channels; ++c) {
      const float* p = x + (o * channels + c) * inner;
      double sum = 0;
      for (int64_t k = 0; k < inner; ++k) sum += std::isfinite(p[k]) ? double(p[k]) * p[k] : 0.0;
      s.squares[c] += sum;
    }
  }
  s.count += outer * inner;
}

std::unordered_map<std::string, std::vector<double>> ChannelPowerCollector::power() const {
  std::unordered_map<std::string, std::vector<double>> out;
  for (const auto& [name, s] : sums_) {
    std::vector<double>& power = out[name];
    for (double sq : s.squares) power.push_back(s.count ? sq / s.count : 0);
  }
  return out;
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
