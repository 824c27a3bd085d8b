// Static INT8 refinements: BatchNormalization folding and cross-layer equalization keep the float
// model's outputs (executor, 1e-5) while evening each activation's channels; bias correction
// takes the weights' rounding shift out of the output mean; 16-bit Q/DQ round trips exactly.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "calibration/calibrate.h"
#include "passes/passes.h"
#include "test_util.h"

namespace quantize {
namespace {
using testing::count_ops;

// A MobileNet/BlazeFace-like block: Conv -> BN -> Relu (r), then a depthwise Conv and a pointwise
// Conv whose sum with r is the residual stream (Relu), a zero channel Pad and a MaxPool on the
// way to a last Conv. Channel 1 of the stream is 100x weaker than the others.
Model block() {
  auto proto = testing::parse(R"(
      <ir_version: 8, opset_import: ["" : 13]>
      g (float[1, 3, 8, 8] x) => (float[1, 2, 4, 4] y) <float[4, 3, 3, 3] w1, float[4] b1,
          float[4] gamma, float[4] beta, float[4] mean, float[4] var, float[4, 1, 3, 3] wd,
          float[4, 4, 1, 1] wp, float[4] bp, float[2, 6, 1, 1] wo, float[2] bo,
          int64[8] pads> {
        c1 = Conv <pads = [1, 1, 1, 1]> (x, w1, b1)
        n1 = BatchNormalization (c1, gamma, beta, mean, var)
        r = Relu (n1)
        d = Conv <group = 4, pads = [1, 1, 1, 1]> (r, wd)
        p = Conv (d, wp, bp)
        s = Add (p, r)
        t = Relu (s)
        q = Pad (t, pads)
        m = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (q)
        y = Conv (m, wo, bo)
      })");
  std::vector<float> w1 = testing::random_floats(4 * 27, 1);
  for (int k = 0; k < 27; ++k) w1[27 + k] *= 0.01f;  // channel 1: 100x weaker
  testing::set_floats(proto, "w1", {4, 3, 3, 3}, w1);
  testing::set_floats(proto, "b1", {4}, {0.1f, 0.001f, -0.05f, 0.2f});
  testing::set_floats(proto, "gamma", {4}, {1.5f, 0.5f, 2.0f, 1.0f});
  testing::set_floats(proto, "beta", {4}, {0.1f, 0.002f, 0.3f, -0.1f});
  testing::set_floats(proto, "mean", {4}, {0.05f, 0.0f, -0.1f, 0.02f});
  testing::set_floats(proto, "var", {4}, {0.8f, 1.2f, 0.5f, 2.0f});
  testing::set_floats(proto, "wd", {4, 1, 3, 3}, testing::random_floats(36, 2));
  std::vector<float> wp = testing::random_floats(16, 3);
  for (int k = 0; k < 4; ++k) wp[4 + k] *= 0.01f;  // the residual stream's channel 1 stays weak
  testing::set_floats(proto, "wp", {4, 4, 1, 1}, wp);
  testing::set_floats(proto, "bp", {4}, {0.01f, 0.0002f, -0.01f, 0.0f});
  testing::set_floats(proto, "wo", {2, 6, 1, 1}, testing::random_floats(12, 4));
  testing::set_floats(proto, "bo", {2}, {0.5f, -0.5f});
  // pads for [N, C, H, W]: one zero channel before, one after
  onnx::TensorProto* pads = nullptr;
  for (auto& i : *proto.mutable_graph()->mutable_initializer()) {
    if (i.name() == "pads") pads = &i;
  }
  if (!pads) pads = proto.mutable_graph()->add_initializer();
  pads->Clear();
  pads->set_name("pads");
  pads->set_data_type(onnx::TensorProto::INT64);
  pads->add_dims(8);
  for (int64_t v : {0, 1, 0, 0, 0, 1, 0, 0}) pads->add_int64_data(v);
  return testing::round_trip(proto);
}

EqualizeConfig measured() {
  return {[](const Model& m, const std::set<std::string>& tensors) {
    CalibrationData data;
    data.count = 4;
    data.sample = [&m](size_t i) { return testing::random_inputs(m, 20 + i); };
    ChannelStatsCollector c(tensors, 1);
    run_calibration(m, data, {&c});
    return c.stats();
  }};
}

// Largest channel range over smallest, of the named tensor on random inputs.
double spread(const Model& m, const std::string& tensor) {
  auto stats = measured().channel_stats(m, {tensor});
  const auto& v = stats.at(tensor).max_abs;
  return *std::max_element(v.begin(), v.end()) / *std::min_element(v.begin(), v.end());
}

TEST(Equalize, KeepsFloatOutputsAndEvensTheChannels) {
  Model model = block();
  const Model before = copy_model(model);
  PassResult folded = make_fold_batchnorm_pass()->run(model);
  ASSERT_EQ(folded.changed.size(), 1u);
  EXPECT_EQ(count_ops(model.proto.graph(), "BatchNormalization"), 0);
  auto gap = testing::output_gap(before, model, 3);
  EXPECT_LT(gap.max_abs, 1e-5);

  const double r_before = spread(model, "r"), d_before = spread(model, "d");
  PassResult r = make_equalize_pass(measured())->run(model);
  EXPECT_EQ(count_ops(model.proto.graph(), "Conv"), 4);
  gap = testing::output_gap(before, model, 3);
  EXPECT_TRUE(gap.same_shapes);
  EXPECT_LT(gap.max_abs, 1e-5) << "equalization changed the float model";
  // The residual stream (r, s, t), the depthwise output and the padded/pooled tensors changed
  // scale per channel: renamed, and far more even.
  ASSERT_FALSE(r.notes.empty());
  EXPECT_NE(r.notes[0].find("4 Conv(s) rescaled"), std::string::npos) << r.notes[0];
  EXPECT_GT(r_before, 20);
  EXPECT_LT(spread(model, "r_equalized"), r_before / 5);
  EXPECT_LT(spread(model, "d_equalized"), d_before);
  for (const auto& n : model.proto.graph().node()) {
    for (const auto& in : n.input()) EXPECT_NE(in, "r") << "a reader kept the old name";
  }
}

// Zero channels appended by Concat (how tf2onnx pads a residual stream's channels; folded to a
// constant) take any scale: the stream before them is still equalized.
TEST(Equalize, SeesThroughZeroChannelConcat) {
  auto proto = testing::parse(R"(
      <ir_version: 8, opset_import: ["" : 13]>
      g (float[1, 2, 4, 4] x) => (float[1, 2, 4, 4] y) <float[2, 2, 1, 1] w1, float[1, 2, 4, 4] z,
          float[2, 4, 1, 1] w2> {
        a = Conv (x, w1)
        c = Concat <axis = 1> (a, z)
        y = Conv (c, w2)
      })");
  testing::set_floats(proto, "w1", {2, 2, 1, 1}, {1, 0.5f, 0.002f, 0.001f});
  testing::set_floats(proto, "z", {1, 2, 4, 4}, std::vector<float>(32, 0.0f));
  testing::set_floats(proto, "w2", {2, 4, 1, 1}, {1, 1, 1, 1, 0.5f, 1, 1, 1});
  Model model = testing::round_trip(proto);
  const Model before = copy_model(model);
  PassResult r = make_equalize_pass(measured())->run(model);
  EXPECT_EQ(r.changed.size(), 2u) << "both Convs rescaled";
  EXPECT_LT(testing::output_gap(before, model, 2).max_abs, 1e-5);
  EXPECT_LT(spread(model, "a_equalized"), spread(before, "a") / 4);
}

// A tensor read by an op that does not commute with a per-channel scale (Sigmoid) or that is a
// graph output fixes its channels: nothing changes.
TEST(Equalize, LeavesChannelsReadElsewhereAlone) {
  auto proto = testing::parse(R"(
      <ir_version: 8, opset_import: ["" : 13]>
      g (float[1, 2, 4, 4] x) => (float[1, 2, 4, 4] y, float[1, 2, 4, 4] z) <float[2, 2, 1, 1] w1,
          float[2, 2, 1, 1] w2> {
        a = Conv (x, w1)
        z = Sigmoid (a)
        y = Conv (a, w2)
      })");
  testing::set_floats(proto, "w1", {2, 2, 1, 1}, {1, 0, 0, 0.001f});
  testing::set_floats(proto, "w2", {2, 2, 1, 1}, {1, 1, 1, 1});
  Model model = testing::round_trip(proto);
  const Model before = copy_model(model);
  PassResult r = make_equalize_pass(measured())->run(model);
  EXPECT_TRUE(r.changed.empty());
  EXPECT_LT(testing::output_gap(before, model, 2).max_abs, 1e-7);
}

// A 1x1 Conv over 64 channels of mean 5 (x + 5), each filter one large weight and 63 that round
// to zero at its per-channel scale: every output is shifted by about -63 * 0.0035 * 5. Bias
// correction takes that out of the bias, so the mean output error goes to about zero.
TEST(BiasCorrection, TakesTheRoundingShiftOutOfTheMean) {
  auto proto = testing::parse(R"(
      <ir_version: 8, opset_import: ["" : 13]>
      g (float[1, 64, 4, 4] x) => (float[1, 4, 4, 4] y) <float[1] five, float[4, 64, 1, 1] w,
          float[4] b> {
        s = Add (x, five)
        y = Conv (s, w, b)
      })");
  testing::set_floats(proto, "five", {1}, {5.0f});
  std::vector<float> w(4 * 64, 0.0035f);
  for (int o = 0; o < 4; ++o) w[o * 64 + o] = 1.0f;  // scale 1/127: 0.0035 is 0.44 of a step
  testing::set_floats(proto, "w", {4, 64, 1, 1}, w);
  testing::set_floats(proto, "b", {4}, {0.1f, -0.2f, 0.3f, 0.0f});
  const Model source = testing::round_trip(proto);
  auto mean_error = [&](bool correct) {
    Model model = copy_model(source);
    StaticQdqConfig config;
    config.per_channel = true;
    config.bias_correction = correct;
    config.calibrate = testing::random_calibrator(4, 30);
    PassResult r = make_static_qdq_pass(config)->run(model);
    bool noted = false;
    for (const auto& c : r.changed) noted |= c.reason.find("bias corrected") != std::string::npos;
    EXPECT_EQ(noted, correct);
    Executor f(source), q(model);
    double sum = 0;
    size_t n = 0;
    for (uint32_t seed = 50; seed < 54; ++seed) {  // samples it was not calibrated on
      const auto inputs = testing::random_inputs(source, seed);
      const Tensor a = f.run(inputs)[0], b = q.run(inputs)[0];
      for (int64_t i = 0; i < a.size(); ++i) sum += b.data<float>()[i] - a.data<float>()[i];
      n += a.size();
    }
    return sum / n;
  };
  const double plain = mean_error(false), corrected = mean_error(true);
  EXPECT_LT(plain, -0.5) << "the planted shift: about -63 * 0.0035 * 5 = -1.1";
  EXPECT_LT(std::fabs(corrected), 0.1 * std::fabs(plain));
}

// 16-bit QuantizeLinear / DequantizeLinear (com.microsoft below opset 21), as --activations
// int16|uint16 writes them: every grid value comes back exactly, and its code is the one expected.
TEST(Qdq16, RoundTripIsExact) {
  for (const bool is_signed : {true, false}) {
    const char* type = is_signed ? "int16" : "uint16";
    const std::string text = fmt::format(R"(
        <ir_version: 8, opset_import: ["" : 13, "com.microsoft" : 1]>
        g (float[65536] x) => (float[65536] y, {0}[65536] q) <float scale, {0} zp> {{
          q = com.microsoft.QuantizeLinear (x, scale, zp)
          y = com.microsoft.DequantizeLinear (q, scale, zp)
        }})",
                                         type);
    auto proto = testing::parse(text.c_str());
    const float scale = 0.0078125f;  // 2^-7: grid values are exact in float
    const int zp = is_signed ? 0 : 32768;
    testing::set_floats(proto, "scale", {}, {scale});
    auto& init = *proto.mutable_graph()->add_initializer();  // declared above, no value yet
    init.set_name("zp");
    init.set_data_type(is_signed ? onnx::TensorProto::INT16 : onnx::TensorProto::UINT16);
    init.add_int32_data(zp);
    const Model model = testing::round_trip(proto);
    Tensor x(onnx::TensorProto::FLOAT, {65536});
    const int lo = is_signed ? -32768 : 0;
    for (int i = 0; i < 65536; ++i) x.data<float>()[i] = (lo + i - zp) * scale;
    Executor e(model);
    const auto out = e.run({x});
    for (int i = 0; i < 65536; ++i) {
      ASSERT_EQ(out[0].data<float>()[i], x.data<float>()[i]) << type << " code " << lo + i;
      const int code = is_signed ? out[1].data<int16_t>()[i] : out[1].data<uint16_t>()[i];
      ASSERT_EQ(code, lo + i) << type;
    }
  }
}

}  // namespace
}  // namespace quantize
