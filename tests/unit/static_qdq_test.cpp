// Static INT8: the calibrators against hand-computed ranges, and QDQ placement on a small graph.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "calibration/calibrate.h"
#include "model/tensor_data.h"
#include "passes/passes.h"
#include "quantize/error.h"
#include "quantize/pipeline.h"
#include "test_util.h"

namespace quantize {
namespace {
using testing::count_ops;
using testing::find_initializer;
using testing::find_node;

std::vector<uint8_t> bytes_of(const Model& m, const onnx::TensorProto& t) {
  PayloadBytes b(tensor_payload(m, t));
  return {b.data(), b.data() + b.size()};
}

template <typename T>
std::vector<T> values_of(const Model& m, const onnx::TensorProto* t) {
  auto raw = bytes_of(m, *t);
  std::vector<T> v(raw.size() / sizeof(T));
  std::memcpy(v.data(), raw.data(), raw.size());
  return v;
}

TEST(Calibration, MinMaxIsTheRunningRange) {
  TensorStats s(false);
  const float a[] = {0.5f, -2.0f, NAN}, b[] = {3.0f, INFINITY, 1.0f};
  s.add(a, 3);
  s.add(b, 3);
  const Range r = s.range(CalibMethod::kMinMax);
  EXPECT_EQ(r.lo, -2.0f);
  EXPECT_EQ(r.hi, 3.0f);
  EXPECT_EQ(s.count(), 4u);  // NaN and infinity ignored
}

TEST(Calibration, HistogramGrowsByMergingPairsExactly) {
  TensorStats s(true);
  const float small[] = {0.3f, -0.3f, 0.7f};
  s.add(small, 3);
  EXPECT_EQ(s.limit(), 1.0f);
  const float big[] = {5.0f};
  s.add(big, 1);
  EXPECT_EQ(s.limit(), 8.0f);  // 1 -> 2 -> 4 -> 8
  uint64_t total = 0;
  for (uint32_t c : s.bins()) total += c;
  EXPECT_EQ(total, 4u);
  // Each value sits in the bin that covers it at the new width (16 / 8192).
  const double width = 16.0 / TensorStats::kBins;
  for (float v : {0.3f, -0.3f, 0.7f, 5.0f}) {
    EXPECT_GE(s.bins()[static_cast<size_t>((v + 8.0) / width)], 1u) << v;
  }
}

TEST(Calibration, PercentileReadsTheQuantileBins) {
  // 0, 1, ..., 9999: H = 16384, bins 4 wide. 99%: the 9900th value (9899) lies in [9896, 9900),
  // the 100th (99) in [96, 100).
  std::vector<float> v(10000);
  for (int i = 0; i < 10000; ++i) v[i] = static_cast<float>(i);
  TensorStats s(true);
  s.add(v.data(), v.size());
  const Range r = s.range(CalibMethod::kPercentile, 99.0);
  EXPECT_EQ(r.hi, 9900.0f);
  EXPECT_EQ(r.lo, 96.0f);
  const Range all = s.range(CalibMethod::kPercentile, 100.0);
  EXPECT_EQ(all.hi, 9999.0f);  // clipped to the maximum
  EXPECT_EQ(all.lo, 0.0f);
}

// Samples from a fixed generator, the same on every standard library: uniform in (0, 1).
struct Samples {
  std::mt19937 rng{12345};
  double uniform() { return (rng() + 0.5) / 4294967296.0; }
  double gauss() {
    const double radius = std::sqrt(-2 * std::log(uniform()));
    return radius * std::cos(6.283185307179586 * uniform());
  }
  double laplace() {
    const double u = uniform();
    return u < 0.5 ? std::log(2 * u) : -std::log(2 * (1 - u));
  }
};

// ONNX Runtime's entropy threshold (calibrate.py get_entropy_threshold), written out plainly on
// the histogram np.histogram(x, bins, range=(-M, M)) of the samples themselves.
Range ort_entropy_reference(const std::vector<float>& x, int bins, int quantized) {
  float lo = x[0], hi = x[0];
  for (float v : x) lo = std::min(lo, v), hi = std::max(hi, v);
  const double m = std::max(-double{lo}, double{hi}), width = 2 * m / bins;
  std::vector<int64_t> hist(bins, 0);
  for (float v : x) ++hist[std::min(static_cast<int>((v + m) / width), bins - 1)];
  const int zero = bins / 2, half = quantized / 2;
  double best = INFINITY;
  Range r;
  for (int i = half; i <= zero; ++i) {
    const int start = zero - i, end = std::min(zero + i + 1, bins), n = end - start;
    std::vector<double> p(hist.begin() + start, hist.begin() + end), q(n, 0.0);
    for (int k = 0; k < start; ++k) p[0] += hist[k];
    for (int k = end; k < bins; ++k) p[n - 1] += hist[k];
    const int merged = n / quantized;
    for (int j = 0; j < quantized; ++j) {
      int64_t sum = 0, nonzero = 0;
      for (int k = j * merged; k < (j + 1) * merged; ++k)
        sum += hist[start + k], nonzero += p[k] != 0;
      if (j == quantized - 1) {
        for (int k = quantized * merged; k < n; ++k) sum += hist[start + k];
      }
      for (int k = j * merged; nonzero && k < (j + 1) * merged; ++k) q[k] = double(sum / nonzero);
    }
    for (std::vector<double>* v : {&p, &q}) {
      double zeros = 0;
      for (double e : *v) zeros += e == 0;
      const double eps1 = 1e-4 * zeros / (n - zeros);
      for (double& e : *v) e = e == 0 ? 1e-4 : e - eps1;
    }
    double sp = 0, sq = 0, kl = 0;
    for (int k = 0; k < n; ++k) sp += p[k], sq += q[k];
    for (int k = 0; k < n; ++k) kl += p[k] / sp * std::log((p[k] / sp) / (q[k] / sq));
    if (kl < best) {
      best = kl;
      r = {std::max(float(-m + start * width), lo), std::min(float(-m + end * width), hi)};
    }
  }
  return r;
}

TEST(Calibration, EntropyAtOnnxRuntimesDefaultsIsTheWholeRange) {
  // 128 bins and 128 quantized bins leave one candidate, the whole histogram: [min, max] however
  // long the tail (the TensorRT-style search this replaces cut this exponential's tail).
  std::vector<float> e;
  for (int i = 1; i <= 200000; ++i) e.push_back(-std::log(i / 200001.0f));
  TensorStats tail(true);
  tail.add(e.data(), e.size());
  const Range r = tail.range(CalibMethod::kEntropy);
  EXPECT_EQ(r.lo, tail.min());
  EXPECT_EQ(r.hi, tail.max());
  std::vector<float> v;
  for (int i = 0; i < 10000; ++i) v.push_back(i / 10000.0f - 0.25f);
  for (int i = 0; i < 3; ++i) v.push_back(-100.0f);
  TensorStats outliers(true);
  outliers.add(v.data(), v.size());
  EXPECT_EQ(outliers.range(CalibMethod::kEntropy).lo, -100.0f);
  EXPECT_EQ(outliers.range(CalibMethod::kEntropy).hi, 0.7499f);
}

TEST(Calibration, EntropyWithMoreBinsIsOnnxRuntimesSearch) {
  // With more bins than quantized bins (ORT's num_bins option) the search runs. Laplace values
  // on a lattice of 1/16, so P has empty bins inside Q's runs, and a last value at 8: M = 8 =
  // H / 2, so ORT's bins are unions of ours and the re-binning is exact.
  Samples g;
  std::vector<float> x;
  for (int i = 0; i < 100000; ++i) x.push_back(std::round(16 * 0.6f * g.laplace()) / 16);
  x.push_back(8.0f);
  TensorStats s(true);
  s.add(x.data(), x.size());
  ASSERT_EQ(s.limit(), 16.0f);
  for (int bins : {512, 1024}) {
    const Range ours = s.entropy_range(bins, 128), theirs = ort_entropy_reference(x, bins, 128);
    EXPECT_FLOAT_EQ(ours.hi, theirs.hi) << bins;
    EXPECT_FLOAT_EQ(ours.lo, theirs.lo) << bins;
    EXPECT_LT(ours.hi, 7.0f) << bins;  // the sparse tail is cut
    EXPECT_GT(ours.hi, 2.0f) << bins;
  }
}

// static_qdq's 8-bit activation quantizer for a calibrated range: the mean squared
// quantize-dequantize error over `x`, each of whose values counts `repeat` times, plus `extra`.
double qdq_error(const std::vector<float>& x, Range r, int repeat = 1,
                 const std::vector<float>& extra = {}) {
  const float lo = std::min(r.lo, 0.0f), hi = std::max(r.hi, 0.0f), scale = (hi - lo) / 255;
  const float zp = std::clamp(std::nearbyint(-lo / scale), 0.0f, 255.0f);
  auto error = [&](float v) {
    const float q = std::clamp(std::nearbyint(v / scale) + zp, 0.0f, 255.0f);
    const double d = double{v} - double{(q - zp) * scale};
    return d * d;
  };
  double sum = 0, extra_sum = 0;
  for (float v : x) sum += error(v);
  for (float v : extra) extra_sum += error(v);
  return (sum * repeat + extra_sum) / (double(x.size()) * repeat + extra.size());
}

// The least qdq_error over ranges [-t, t] (or [0, t]), t = top * k / 400.
double brute_force_mse(const std::vector<float>& x, float top, bool one_sided, int repeat = 1,
                       const std::vector<float>& extra = {}) {
  double best = INFINITY;
  for (int k = 1; k <= 400; ++k) {
    const float t = top * k / 400;
    best = std::min(best, qdq_error(x, {one_sided ? 0.0f : -t, t}, repeat, extra));
  }
  return best;
}

TEST(Calibration, MseFindsTheLeastQuantizationError) {
  Samples g;
  // Laplace: the optimum clips at ~10 b of a maximum of ~11 b; within 1% of brute force.
  std::vector<float> laplace;
  for (int i = 0; i < 50000; ++i) laplace.push_back(static_cast<float>(g.laplace()));
  TensorStats l(true);
  l.add(laplace.data(), laplace.size());
  const Range rl = l.range(CalibMethod::kMse);
  EXPECT_LT(qdq_error(laplace, rl), 1.01 * brute_force_mse(laplace, l.max(), false));
  EXPECT_LT(rl.hi, 0.95f * l.max());
  // After a ReLU: half the values exactly 0 (represented exactly, whatever the scale).
  std::vector<float> relu;
  for (int i = 0; i < 50000; ++i)
    relu.push_back(i % 2 ? 0.0f : static_cast<float>(std::fabs(g.gauss())));
  TensorStats z(true);
  z.add(relu.data(), relu.size());
  EXPECT_EQ(z.zeros(), 25000u);
  const Range rz = z.range(CalibMethod::kMse);
  EXPECT_EQ(rz.lo, 0.0f);
  EXPECT_LT(qdq_error(relu, rz), 1.01 * brute_force_mse(relu, z.max(), true));
  // A Gaussian bulk, 20 times over (1M values), and one value at -60 and one at +60: min/max
  // spends the 256 levels on the two; clipping them (at ~17) costs far less than that.
  std::vector<float> bulk, far = {-60.0f, 60.0f};
  for (int i = 0; i < 50000; ++i) bulk.push_back(static_cast<float>(g.gauss()));
  TensorStats h(true);
  for (int i = 0; i < 20; ++i) h.add(bulk.data(), bulk.size());
  h.add(far.data(), far.size());
  const Range rh = h.range(CalibMethod::kMse);
  const double mse = qdq_error(bulk, rh, 20, far);
  EXPECT_LT(mse, 1.02 * brute_force_mse(bulk, 60.0f, false, 20, far));
  EXPECT_LT(mse, 0.35 * qdq_error(bulk, {h.min(), h.max()}, 20, far));
  EXPECT_LT(rh.hi, 25.0f);
  EXPECT_GT(rh.lo, -25.0f);
}

TEST(Calibration, MseKeepsTheRangeOfUniformAndGridData) {
  Samples g;
  // Uniform: clipping gains next to nothing (the optimum trims ~0.2% off the range).
  std::vector<float> u;
  for (int i = 0; i < 100000; ++i) u.push_back(static_cast<float>(4 * g.uniform() - 1));
  TensorStats s(true);
  s.add(u.data(), u.size());
  const Range r = s.range(CalibMethod::kMse);
  EXPECT_GT(r.hi, 0.99f * s.max());
  EXPECT_LT(r.lo, 0.99f * s.min());
  // Pixels k / 255 lie on the grid of [0, 1] exactly: no other range comes close.
  std::vector<float> pixels;
  for (int i = 0; i < 100000; ++i) pixels.push_back(static_cast<float>(g.rng() % 256) / 255.0f);
  TensorStats p(true);
  p.add(pixels.data(), pixels.size());
  EXPECT_EQ(p.range(CalibMethod::kMse).lo, 0.0f);
  EXPECT_EQ(p.range(CalibMethod::kMse).hi, 1.0f);
  // Integers -128 .. 127, Gaussian (sd 25): the s^2 / 12 model alone would clip the sparse tails,
  // but on [min, max] every value is a grid point, so the exact check keeps it.
  std::vector<float> ints = {-128.0f, 127.0f};
  for (int i = 0; i < 100000; ++i)
    ints.push_back(std::clamp(std::round(25 * static_cast<float>(g.gauss())), -128.0f, 127.0f));
  TensorStats n(true);
  n.add(ints.data(), ints.size());
  EXPECT_EQ(n.range(CalibMethod::kMse).lo, -128.0f);
  EXPECT_EQ(n.range(CalibMethod::kMse).hi, 127.0f);
  EXPECT_EQ(qdq_error(ints, n.range(CalibMethod::kMse)), 0.0);
}

// A 2 x 3 float32 array as NumPy writes it (format 1.0, header padded to 128 bytes).
std::vector<uint8_t> npy_2x3(const float (&values)[6]) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  header.resize(128 - 10 - 1, ' ');
  header += '\n';
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes += static_cast<char>(header.size());
  bytes += '\0';
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(values), 24);
  return {bytes.begin(), bytes.end()};
}

TEST(Calibration, ReadsNpy) {
  const float values[] = {1, 2, 3, 4, 5, 6};
  std::vector<uint8_t> file = npy_2x3(values);
  Tensor t = read_npy(file.data(), file.size(), "test.npy");
  EXPECT_EQ(t.shape(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(t.data<float>()[5], 6.0f);
  file.resize(file.size() - 4);
  EXPECT_THROW(read_npy(file.data(), file.size(), "short.npy"), Error);
}

// A .npz as NumPy's savez writes it: a ZIP of stored (uncompressed) members named <array>.npy.
std::vector<uint8_t> stored_zip(const std::string& name, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> zip;
  auto u16 = [&](uint32_t v) { zip.push_back(v & 0xff), zip.push_back(v >> 8 & 0xff); };
  auto u32 = [&](uint32_t v) { u16(v & 0xffff), u16(v >> 16); };
  const uint32_t crc = 0;  // not checked by the reader
  u32(0x04034b50), u16(20), u16(0), u16(0), u16(0), u16(0), u32(crc);
  u32(data.size()), u32(data.size()), u16(name.size()), u16(0);
  zip.insert(zip.end(), name.begin(), name.end());
  zip.insert(zip.end(), data.begin(), data.end());
  const uint32_t directory = zip.size();
  u32(0x02014b50), u16(20), u16(20), u16(0), u16(0), u16(0), u16(0), u32(crc);
  u32(data.size()), u32(data.size()), u16(name.size()), u16(0), u16(0), u16(0), u16(0), u32(0);
  u32(0);  // local header offset
  zip.insert(zip.end(), name.begin(), name.end());
  const uint32_t directory_size = zip.size() - directory;
  u32(0x06054b50), u16(0), u16(0), u16(1), u16(1), u32(directory_size), u32(directory), u16(0);
  return zip;
}

TEST(Calibration, ReadsNpzAndSplitsBatches) {
  // Model input x [3]: a [2, 3] array is a batch of two samples.
  Model model = testing::round_trip(testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3] x) => (float[3] y) { y = Relu(x) })"));
  const float values[] = {1, 2, 3, 4, 5, 6};
  const auto dir = testing::temp_dir() / "npz";
  std::filesystem::create_directories(dir);
  const auto zip = stored_zip("x.npy", npy_2x3(values));
  {
    std::ofstream out(dir / "calib.npz", std::ios::binary);
    out.write(reinterpret_cast<const char*>(zip.data()), zip.size());
  }
  CalibrationData data = open_calibration_data((dir / "calib.npz").string(), model, 0);
  ASSERT_EQ(data.count, 2u);
  const auto second = data.sample(1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].shape(), (std::vector<int64_t>{3}));
  EXPECT_EQ(second[0].data<float>()[0], 4.0f);
  EXPECT_EQ(second[0].data<float>()[2], 6.0f);
  // A member named unlike the input is an error naming both.
  const auto wrong = stored_zip("images.npy", npy_2x3(values));
  {
    std::ofstream out(dir / "wrong.npz", std::ios::binary);
    out.write(reinterpret_cast<const char*>(wrong.data()), wrong.size());
  }
  try {
    open_calibration_data((dir / "wrong.npz").string(), model, 0);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no array named 'x'"), std::string::npos) << e.what();
  }
}

const char* kConvNet = R"(
  <ir_version: 8, opset_import: ["" : 17]>
  g (float[1, 2, 4, 4] x) => (float[1, 3] y) {
    c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
    r = Relu(c)
    p = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (r)
    f = Flatten(p)
    y = Gemm <transB = 1> (f, w2, b2)
  })";

// kConvNet with the weights w (random, seed 1), w2 (seed 2) and the given biases.
Model conv_net(const std::vector<float>& b, const std::vector<float>& b2) {
  auto proto = testing::parse(kConvNet);
  testing::set_floats(proto, "w", {4, 2, 3, 3}, testing::random_floats(4 * 2 * 3 * 3, 1));
  testing::set_floats(proto, "b", {4}, b);
  testing::set_floats(proto, "w2", {3, 16}, testing::random_floats(3 * 16, 2));
  testing::set_floats(proto, "b2", {3}, b2);
  return testing::round_trip(proto);
}

// Ranges such as a calibration of kConvNet gives.
Calibration conv_net_ranges(const Model&, const std::set<std::string>&) {
  Calibration c;
  c.description = "fixed ranges";
  c.ranges = {{"x", {-1, 1}}, {"c", {-3, 5}}, {"r", {0, 5}},
              {"p", {0, 5}},  {"f", {0, 5}},  {"y", {-4, 4}}};
  return c;
}

TEST(StaticQdq, PlacesPairsFoldsReluAndSharesScales) {
  const auto w = testing::random_floats(4 * 2 * 3 * 3, 1);  // conv_net's
  Model model = conv_net({0.1f, -0.2f, 0.3f, 0.0f}, {0.5f, 0.25f, -1.0f});
  std::set<std::string> asked;
  StaticQdqConfig config;
  config.per_channel = true;
  config.calibrate = [&](const Model& m, const std::set<std::string>& tensors) {
    asked = tensors;
    Calibration c = conv_net_ranges(m, tensors);
    c.ranges["r"] = {0, 5.1f};  // unlike p and f: MaxPool and Flatten must take r's anyway
    return c;
  };
  PassResult result = make_static_qdq_pass(config)->run(model);
  const auto& g = model.proto.graph();
  EXPECT_TRUE(asked.count("x") && asked.count("r") && asked.count("y"));
  EXPECT_FALSE(asked.count("w"));      // constants are not calibrated
  EXPECT_EQ(count_ops(g, "Relu"), 0);  // folded: Conv writes r, whose range starts at 0
  EXPECT_EQ(find_node(g, "Conv")->output(0), "r");
  // Activations read by quantized ops (x, r, p, f): one pair each; y, a graph output, stays
  // float. Weights w, w2 and biases b, b2: one DQ each.
  EXPECT_EQ(count_ops(g, "QuantizeLinear"), 4);
  EXPECT_EQ(count_ops(g, "DequantizeLinear"), 8);
  // MaxPool and Flatten take r's scale and zero point, so the fused int8 ops need no requantize.
  std::map<std::string, std::string> scale_of;
  for (const auto& n : g.node()) {
    if (n.op_type() == "QuantizeLinear") scale_of[n.input(0)] = n.input(1);
  }
  EXPECT_EQ(scale_of["p"], scale_of["r"]);
  EXPECT_EQ(scale_of["f"], scale_of["r"]);
  EXPECT_NE(scale_of["x"], scale_of["r"]);
  // x: int8, range [-1, 1] -> scale 2/255, zero point rne(-128 + 127.5) = -0 -> 0.
  const float sx = values_of<float>(model, find_initializer(g, scale_of["x"])).at(0);
  EXPECT_FLOAT_EQ(sx, 2.0f / 255);
  // The Conv weight: int8 per channel (axis 0), every value within scale/2.
  const auto* conv = find_node(g, "Conv");
  const onnx::NodeProto* wdq = nullptr;
  const onnx::NodeProto* bdq = nullptr;
  for (const auto& n : g.node()) {
    if (n.op_type() == "DequantizeLinear" && n.output(0) == conv->input(1)) wdq = &n;
    if (n.op_type() == "DequantizeLinear" && n.output(0) == conv->input(2)) bdq = &n;
  }
  ASSERT_TRUE(wdq && bdq);
  const auto* wq = find_initializer(g, wdq->input(0));
  const auto* ws = find_initializer(g, wdq->input(1));
  ASSERT_EQ(wq->data_type(), onnx::TensorProto::INT8);
  ASSERT_EQ(ws->dims(0), 4);
  const auto scales = values_of<float>(model, ws);
  const auto wq_values = values_of<int8_t>(model, wq);
  for (size_t i = 0; i < w.size(); ++i) {
    const float q = wq_values[i];
    EXPECT_LE(std::fabs(q * scales[i / 18] - w[i]), scales[i / 18] / 2 * 1.0001f) << i;
  }
  // The bias: int32 at scale sx * sw[c].
  const auto* bq = find_initializer(g, bdq->input(0));
  const auto* bs = find_initializer(g, bdq->input(1));
  ASSERT_EQ(bq->data_type(), onnx::TensorProto::INT32);
  const auto bias_scales = values_of<float>(model, bs);
  const auto bias = values_of<int32_t>(model, bq);
  for (int c = 0; c < 4; ++c) {
    EXPECT_FLOAT_EQ(bias_scales[c], sx * scales[c]);
    EXPECT_EQ(bias[c], static_cast<int32_t>(std::nearbyint(
                           std::vector<float>{0.1f, -0.2f, 0.3f, 0.0f}[c] / bias_scales[c])));
  }
  EXPECT_FALSE(result.changed.empty());
}

TEST(StaticQdq, QOperatorFormFusesConvAndItsPairs) {
  Model model = conv_net({0.1f, 0, 0, 0}, {0, 0, 0});
  StaticQdqConfig config;
  config.qoperator = true;
  config.per_channel = true;
  config.calibrate = conv_net_ranges;
  make_static_qdq_pass(config)->run(model);
  const auto& g = model.proto.graph();
  // Conv (its Relu folded) -> QLinearConv reading x's QuantizeLinear and writing r's quantized
  // tensor; Gemm has no QLinear form and keeps its pairs.
  EXPECT_EQ(count_ops(g, "Conv"), 0);
  ASSERT_EQ(count_ops(g, "QLinearConv"), 1);
  const auto* qc = find_node(g, "QLinearConv");
  EXPECT_EQ(qc->input_size(), 9);  // x, scale, zp, w, scale, zp, y scale, y zp, int32 bias
  EXPECT_EQ(find_initializer(g, qc->input(8))->data_type(), onnx::TensorProto::INT32);
  EXPECT_EQ(find_initializer(g, qc->input(4))->dims(0), 4);  // per-channel scales
  EXPECT_EQ(count_ops(g, "Gemm"), 1);
  // QLinearConv writes r's quantized tensor itself: no QuantizeLinear of r is left.
  int r_quantize = 0;
  for (const auto& n : g.node()) r_quantize += n.op_type() == "QuantizeLinear" && n.input(0) == "r";
  EXPECT_EQ(r_quantize, 0);
}

TEST(StaticQdq, KeepFloatAndUncalibratedTensorsStayFloat) {
  Model model = conv_net({0, 0, 0, 0}, {0, 0, 0});
  StaticQdqConfig config;
  config.keep_float = {"f"};
  config.calibrate = conv_net_ranges;
  PassResult result = make_static_qdq_pass(config)->run(model);
  bool gemm_kept = false;
  for (const auto& s : result.skipped)
    gemm_kept |= s.reason.find("--keep-float") != std::string::npos;
  EXPECT_TRUE(gemm_kept);
  EXPECT_EQ(count_ops(model.proto.graph(), "Gemm"), 1);
  for (const auto& n : model.proto.graph().node()) {
    if (n.op_type() == "QuantizeLinear") {
      EXPECT_NE(n.input(0), "f");
    }
  }
}

// A depthwise Conv: channel 0 carries large inputs through a small weight, channel 1 small
// inputs through a large one. Input range [-100, 100]: step 200/255, rounding noise step^2/12 =
// 0.0513 per element; through w1 = 10 that is 5.13 in output channel 1, against its mean square.
TEST(StaticQdq, KeepsFloatAConvWhoseInputWouldBuryAChannel) {
  // The reason the Conv stays float (or, without the fallback, the note that it did not).
  auto run = [](double channel1_power, bool fallback = true) {
    auto proto = testing::parse(R"(
      <ir_version: 8, opset_import: ["" : 17]>
      g (float[1, 2, 4, 4] x) => (float[1, 2, 4, 4] y) {
        c = Conv <group = 2> (x, w)
        y = Relu(c)
      })");
    testing::set_floats(proto, "w", {2, 1, 1, 1}, {0.01f, 10.0f});
    Model model = testing::round_trip(proto);
    StaticQdqConfig config;
    config.float_fallback = fallback;
    config.calibrate = [&](const Model&, const std::set<std::string>&) {
      Calibration c;
      c.ranges = {{"x", {-100, 100}}, {"c", {-1, 1}}, {"y", {0, 1}}};
      c.channel_stats["c"].mean_square = {1.0, channel1_power};
      return c;
    };
    PassResult r = make_static_qdq_pass(config)->run(model);
    const bool x_quantized = count_ops(model.proto.graph(), "QuantizeLinear") > 0;
    for (const auto& s : r.skipped) {
      if (s.reason.find("bury output channel 1") != std::string::npos) {
        EXPECT_FALSE(x_quantized);
        return "kept: " + s.reason;
      }
    }
    for (const auto& note : r.notes) {
      if (note.find("bury output channel 1") != std::string::npos) {
        EXPECT_TRUE(x_quantized);
        return "noted: " + note;
      }
    }
    return std::string();
  };
  // Signal 1.0 against noise 5.13: -7 dB, kept float.
  EXPECT_NE(run(1.0).find("kept: an 8-bit input would bury output channel 1 (estimated SNR -7 dB"),
            std::string::npos)
      << run(1.0);
  // Signal 1000: +23 dB, quantized.
  EXPECT_EQ(run(1000.0), "");
  // --float-fallback off: quantized all the same, and the report says what it risks.
  EXPECT_NE(run(1.0, false).find("noted:"), std::string::npos) << run(1.0, false);
  EXPECT_NE(run(1.0, false).find("quantized anyway (--float-fallback off)"), std::string::npos);
}

// What only moves a result on its way to a graph output (BlazeFace's heads: Conv -> Transpose ->
// Reshape -> Concat -> output) stays float like the output; a path that reaches a quantized op
// (MaxPool) keeps its pairs.
TEST(StaticQdq, DataMovedOnlyToAGraphOutputStaysFloat) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 2, 4, 4] x) => (float[1, 32] y, float[1, 2, 2, 2] z) {
      c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
      t = Transpose <perm = [0, 2, 3, 1]> (c)
      y = Flatten(t)
      u = Transpose <perm = [0, 1, 3, 2]> (c)
      z = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (u)
    })");
  testing::set_floats(proto, "w", {2, 2, 3, 3}, testing::random_floats(2 * 2 * 3 * 3, 1));
  testing::set_floats(proto, "b", {2}, {0.1f, -0.1f});
  Model model = testing::round_trip(proto);
  StaticQdqConfig config;
  config.calibrate = [](const Model&, const std::set<std::string>&) {
    Calibration c;
    for (const char* t : {"x", "c", "t", "y", "u", "z"}) c.ranges[t] = {-2, 2};
    return c;
  };
  PassResult result = make_static_qdq_pass(config)->run(model);
  std::set<std::string> quantized;
  for (const auto& n : model.proto.graph().node()) {
    if (n.op_type() == "QuantizeLinear") quantized.insert(n.input(0));
  }
  EXPECT_EQ(quantized, (std::set<std::string>{"x", "c", "u"}));
  int kept = 0;
  for (const auto& s : result.skipped) {
    kept += s.reason.find("on their way to a graph output") != std::string::npos;
  }
  EXPECT_EQ(kept, 2);  // Transpose t and Flatten y

  // For an NPU (--target qnn) the results stay quantized up to the outputs, as before.
  Model npu = testing::round_trip(proto);
  config.float_results = false;
  make_static_qdq_pass(config)->run(npu);
  quantized.clear();
  for (const auto& n : npu.proto.graph().node()) {
    if (n.op_type() == "QuantizeLinear") quantized.insert(n.input(0));
  }
  EXPECT_EQ(quantized, (std::set<std::string>{"x", "c", "t", "u"}));
}

}  // namespace
}  // namespace quantize

namespace quantize {
namespace {

// A model that quantizes its activations already is not quantized again, nor calibrated.
TEST(StaticQdq, QuantizedModelKeepsItsRanges) {
  Model model = conv_net({0.1f, -0.2f, 0.3f, 0.0f}, {0.5f, 0.25f, -1.0f});
  StaticQdqConfig config;
  config.calibrate = conv_net_ranges;
  make_static_qdq_pass(config)->run(model);
  const int pairs = count_ops(model.proto.graph(), "QuantizeLinear");
  ASSERT_GT(pairs, 0);
  config.calibrate = [](const Model&, const std::set<std::string>&) -> Calibration {
    ADD_FAILURE() << "calibrated a quantized model";
    return {};
  };
  PassResult again = make_static_qdq_pass(config)->run(model);
  EXPECT_EQ(count_ops(model.proto.graph(), "QuantizeLinear"), pairs);
  EXPECT_TRUE(again.changed.empty());
  ASSERT_EQ(again.notes.size(), 1u);
  EXPECT_NE(again.notes[0].find("quantized already"), std::string::npos) << again.notes[0];
}

// Quantization-aware training's export: QuantizeLinear over a float weight. Static INT8 stores
// the weight's integers (no calibration data needed), and the outputs stay bit-exact.
TEST(StaticQdq, FakeQuantizedWeightsAreFinalized) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1, 2, 5, 5] x) => (float[1, 4, 3, 3] y) <float sx = {0.02}, int8 zx = {0},
                                                     float[4] sw = {0.01, 0.02, 0.03, 0.04},
                                                     int8[4] zw = {0, 0, 0, 0}> {
      xq = QuantizeLinear(x, sx, zx)
      xd = DequantizeLinear(xq, sx, zx)
      wq = QuantizeLinear<axis = 0>(w, sw, zw)
      wd = DequantizeLinear<axis = 0>(wq, sw, zw)
      y = Conv(xd, wd)
    })");
  testing::set_floats(proto, "w", {4, 2, 3, 3}, testing::random_floats(4 * 2 * 3 * 3, 8));
  Model before = testing::round_trip(proto);
  Model model = testing::round_trip(proto);
  auto results = run_pipeline(model, Mode::kStaticInt8, Options{});
  const auto& g = model.proto.graph();
  EXPECT_EQ(count_ops(g, "QuantizeLinear"), 1);  // x's
  const auto* wd = find_node(g, "Conv");
  ASSERT_NE(wd, nullptr);
  const onnx::NodeProto* dq = nullptr;
  for (const auto& n : g.node()) {
    if (n.output(0) == wd->input(1)) dq = &n;
  }
  ASSERT_TRUE(dq && dq->op_type() == "DequantizeLinear");
  const auto* stored = find_initializer(g, dq->input(0));
  ASSERT_NE(stored, nullptr);
  EXPECT_EQ(stored->data_type(), onnx::TensorProto::INT8);
  const testing::OutputGap gap = testing::output_gap(before, model, 3);
  EXPECT_EQ(gap.max_abs, 0.0);
}

}  // namespace
}  // namespace quantize
