// Verification figures against values computed by hand, and the held-out split.
#include "verify/verify.h"

#include <gtest/gtest.h>

#include <cmath>

#include "model/tensor_data.h"
#include "passes/passes.h"
#include "quantize/pipeline.h"
#include "quantize/run.h"
#include "test_util.h"

namespace quantize {
namespace {

Tensor floats(std::vector<int64_t> shape, std::vector<float> values) {
  Tensor t(onnx::TensorProto::FLOAT, std::move(shape));
  for (size_t i = 0; i < values.size(); ++i) t.data<float>()[i] = values[i];
  return t;
}

TEST(Metrics, AgainstHandComputedValues) {
  // f = [3, 4], q = [3, 5]: f.q = 29, |f| = 5, |q| = sqrt(34), |q - f| = 1.
  MetricsAccumulator acc("y");
  acc.add(floats({1, 2}, {3, 4}), floats({1, 2}, {3, 5}));
  const OutputMetrics m = acc.result();
  EXPECT_NEAR(m.cosine, 29 / (5 * std::sqrt(34.0)), 1e-12);
  EXPECT_NEAR(m.rel_l2, 1.0 / 5, 1e-12);
  EXPECT_NEAR(m.max_abs, 1, 1e-12);
  EXPECT_NEAR(m.snr_db, 10 * std::log10(25.0), 1e-12);
  ASSERT_TRUE(m.logits);  // last axis 2
  EXPECT_EQ(m.rows, 1u);
  EXPECT_EQ(m.top1, 1.0);  // argmax 1 in both
  // KL(softmax [3,4] || softmax [3,5]) = sum p (log p - log q).
  const double p0 = 1 / (1 + std::exp(1.0)), p1 = 1 - p0;
  const double q0 = 1 / (1 + std::exp(2.0)), q1 = 1 - q0;
  EXPECT_NEAR(m.kl, p0 * std::log(p0 / q0) + p1 * std::log(p1 / q1), 1e-12);
}

TEST(Metrics, AccumulatesOverSamplesAndRows) {
  MetricsAccumulator acc("y");
  // Two samples of two rows: argmax agrees in 3 of the 4 rows.
  acc.add(floats({2, 2}, {1, 0, 0, 1}), floats({2, 2}, {1, 0, 1, 0}));
  acc.add(floats({2, 2}, {2, 0, 0, 2}), floats({2, 2}, {2, 0, 0, 2}));
  const OutputMetrics m = acc.result();
  EXPECT_EQ(m.rows, 4u);
  EXPECT_DOUBLE_EQ(m.top1, 0.75);
  EXPECT_EQ(m.elements, 8u);
  // One vector over both samples: f = [1,0,0,1,2,0,0,2], q = [1,0,1,0,2,0,0,2].
  EXPECT_NEAR(m.cosine, 9 / std::sqrt(10.0 * 10.0), 1e-12);
  EXPECT_NEAR(m.snr_db, 10 * std::log10(10.0 / 2.0), 1e-12);
}

TEST(Metrics, NonFiniteAndNonFloatOutputs) {
  MetricsAccumulator acc("y");
  acc.add(floats({3}, {1, 2, 3}), floats({3}, {1, NAN, 3}));
  EXPECT_FALSE(acc.result().finite);
  MetricsAccumulator ids("ids");
  Tensor a(onnx::TensorProto::INT64, {4}), b(onnx::TensorProto::INT64, {4});
  for (int i = 0; i < 4; ++i) a.data<int64_t>()[i] = i, b.data<int64_t>()[i] = i < 3 ? i : 9;
  ids.add(a, b);
  EXPECT_FALSE(ids.result().is_float);
  EXPECT_DOUBLE_EQ(ids.result().exact, 0.75);
}

TEST(Verification, WorstOverOutputs) {
  Verification v;
  v.outputs.resize(2);
  OutputMetrics& a = v.outputs[0];
  a.name = std::string("a");
  a.cosine = 0.99;
  a.logits = true;
  a.kl = 0.01;
  a.top1 = 0.9;
  OutputMetrics& b = v.outputs[1];
  b.name = std::string("b");
  b.cosine = 0.98;
  EXPECT_DOUBLE_EQ(v.worst("cosine"), 0.98);
  EXPECT_DOUBLE_EQ(v.worst("cosine", "a"), 0.99);
  EXPECT_DOUBLE_EQ(v.worst("kl"), 0.01);
  EXPECT_TRUE(std::isnan(v.worst("top1", "b")));
}

// --calib only: every 4th sample judges, the rest calibrates; --no-holdout uses all for both.
TEST(Verification, HeldOutShare) {
  Model model = testing::round_trip(testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4] x) => (float[1, 4] y) { y = Relu(x) })"));
  Options options;
  options.calib = "random";
  options.calib_samples = 8;
  RunData d = open_run_data(options, model);
  ASSERT_TRUE(d.calibration && d.evaluation);
  EXPECT_EQ(d.calibration->count, 6u);
  EXPECT_EQ(d.evaluation->count, 2u);
  options.holdout = false;
  d = open_run_data(options, model);
  EXPECT_EQ(d.calibration->count, 8u);
  EXPECT_EQ(d.evaluation->count, 8u);
  options.verify = Options::Verify::kNever;
  d = open_run_data(options, model);
  EXPECT_EQ(d.calibration->count, 8u);
  EXPECT_FALSE(d.evaluation);
  options.calib.clear();
  options.verify = Options::Verify::kAlways;
  d = open_run_data(options, model);
  EXPECT_FALSE(d.calibration);
  ASSERT_TRUE(d.evaluation);
  EXPECT_TRUE(d.evaluation->synthetic);
}

}  // namespace
}  // namespace quantize

namespace quantize {
namespace {

// A small conv net, statically quantized, with one activation's scale planted 50x too large:
// `quantize diff` must name that tensor as where the damage enters.
TEST(Diff, FindsAPlantedWrongScale) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 2, 8, 8] x) => (float[1, 4, 8, 8] y) {
      a = Conv <pads = [1, 1, 1, 1]> (x, w1)
      b = Relu(a)
      c = Conv <pads = [1, 1, 1, 1]> (b, w2)
      d = Relu(c)
      y = Conv <pads = [1, 1, 1, 1]> (d, w3)
    })");
  testing::set_floats(proto, "w1", {4, 2, 3, 3}, testing::random_floats(72, 1));
  testing::set_floats(proto, "w2", {4, 4, 3, 3}, testing::random_floats(144, 2));
  testing::set_floats(proto, "w3", {4, 4, 3, 3}, testing::random_floats(144, 3));
  const auto dir = testing::temp_dir();
  Model float_model;
  float_model.proto = proto;
  save_model(float_model, dir / "float.onnx", {});
  Model model = load_model(dir / "float.onnx");
  Options options;
  options.calib = "random";
  options.calib_samples = 8;
  run_pipeline(model, Mode::kStaticUInt8, options);
  // The pair of d (Relu -> Conv): its scale, shared by Q and DQ, 50x too large.
  bool planted = false;
  for (auto& t : *model.proto.mutable_graph()->mutable_initializer()) {
    if (t.name() == "d_scale") {
      auto v = tensor_floats(model, t);
      v[0] *= 50;
      t.clear_float_data();
      t.clear_data_location();
      t.clear_external_data();
      t.set_raw_data(std::string(reinterpret_cast<const char*>(v.data()), 4));
      planted = true;
    }
  }
  ASSERT_TRUE(planted) << "the static pass names activation scales <tensor>_scale";
  save_model(model, dir / "quant.onnx", {});
  DiffRequest request{(dir / "float.onnx").string(), (dir / "quant.onnx").string(), "random", 4};
  const DiffResult r = diff_models(request);
  ASSERT_GE(r.entry, 0);
  EXPECT_EQ(r.values[r.entry].float_name, "d");
  EXPECT_EQ(r.values[r.entry].op, "DequantizeLinear");
  ASSERT_FALSE(r.worst.empty());
  EXPECT_EQ(r.values[r.worst[0]].float_name, "d") << "the planted pair adds the most noise";
  // The values before it are fine.
  for (int k = 0; k < r.entry; ++k) EXPECT_GT(r.values[k].metrics.snr_db, 25) << r.values[k].name;
}

}  // namespace
}  // namespace quantize
