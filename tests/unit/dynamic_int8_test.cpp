// Dynamic INT8 rewrites on small inline graphs: the IntegerOps structure, QDQ weights, and every
// dequantized weight within scale/2 of the original.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "model/tensor_data.h"
#include "passes/passes.h"
#include "quantize/pipeline.h"
#include "test_util.h"

namespace quantize {
namespace {
using testing::count_ops;
using testing::find_initializer;
using testing::find_node;

PassResult run_int8(Model& model, DynamicInt8Config config) {
  return make_dynamic_int8_pass(std::move(config))->run(model);
}

std::vector<uint8_t> bytes_of(const Model& m, const onnx::TensorProto& t) {
  PayloadBytes b(tensor_payload(m, t));
  return {b.data(), b.data() + b.size()};
}

std::vector<float> floats_of(const Model& m, const onnx::TensorProto& t) {
  auto raw = bytes_of(m, t);
  std::vector<float> v(raw.size() / 4);
  std::memcpy(v.data(), raw.data(), raw.size());
  return v;
}

// w [rows, cols] against q (stored [rows, cols], or [cols, rows] when transposed) with scales
// and zero points per column (or one for all).
void expect_close(const Model& m, const std::vector<float>& w, int64_t rows, int64_t cols,
                  const std::string& q_name, const std::string& scale_name,
                  const std::string& zp_name, bool transposed = false, float scale_divisor = 1) {
  const auto& g = m.proto.graph();
  const auto* qt = find_initializer(g, q_name);
  ASSERT_NE(qt, nullptr);
  const bool is_signed = qt->data_type() == onnx::TensorProto::INT8;
  auto q = bytes_of(m, *qt);
  auto scales = floats_of(m, *find_initializer(g, scale_name));
  auto zps = bytes_of(m, *find_initializer(g, zp_name));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const uint8_t raw = transposed ? q[c * rows + r] : q[r * cols + c];
      const int v = is_signed ? static_cast<int8_t>(raw) : raw;
      const float scale = scales[scales.size() == 1 ? 0 : c] / scale_divisor;
      const int zp = is_signed ? static_cast<int8_t>(zps[zps.size() == 1 ? 0 : c])
                               : zps[zps.size() == 1 ? 0 : c];
      ASSERT_LE(std::fabs((v - zp) * scale - w[r * cols + c]), scale / 2 * 1.0001f)
          << "w[" << r << "][" << c << "]";
    }
  }
}

const char* kMatMulGather = R"(
  <ir_version: 8, opset_import: ["" : 17]>
  g (float[2, 3, 64] a, int64[2, 3] ids) => (float[2, 3, 32] y, float[2, 3, 64] e) {
    y = MatMul(a, w)
    e = Gather(table, ids)
  })";

TEST(DynamicInt8, MatMulBecomesIntegerOps) {
  for (bool per_channel : {false, true}) {
    for (auto weights : {DynamicInt8Config::Weights::kInt8, DynamicInt8Config::Weights::kUInt8}) {
      SCOPED_TRACE(::testing::Message()
                   << (per_channel ? "per channel " : "per tensor ") << static_cast<int>(weights));
      auto proto = testing::parse(kMatMulGather);
      auto w = testing::random_floats(64 * 32, 1, -1, 3);
      testing::set_floats(proto, "w", {64, 32}, w);
      auto table = testing::random_floats(100 * 64, 2);
      testing::set_floats(proto, "table", {100, 64}, table);
      Model model = testing::round_trip(proto);
      DynamicInt8Config config;
      config.weights = weights;
      config.per_channel = per_channel;
      PassResult r = run_int8(model, config);
      const auto& g = model.proto.graph();
      EXPECT_EQ(r.changed.size(), 2u);
      EXPECT_EQ(count_ops(g, "DynamicQuantizeLinear"), 1);
      EXPECT_EQ(count_ops(g, "MatMulInteger"), 1);
      EXPECT_EQ(count_ops(g, "MatMul"), 0);
      EXPECT_EQ(count_ops(g, "DequantizeLinear"), 1);
      EXPECT_EQ(find_initializer(g, "w"), nullptr);
      EXPECT_EQ(find_initializer(g, "table"), nullptr);
      const auto* mm = find_node(g, "MatMulInteger");
      expect_close(model, w, 64, 32, mm->input(1), find_node(g, "Mul")->input(1), mm->input(3));
      const auto* scale = find_initializer(g, find_node(g, "Mul")->input(1));
      EXPECT_EQ(scale->dims_size(), per_channel ? 1 : 0);
      // The graph output keeps its name, produced by the last Mul.
      bool y_written = false;
      for (const auto& n : g.node()) y_written |= n.op_type() == "Mul" && n.output(0) == "y";
      EXPECT_TRUE(y_written);
      const auto* dq = find_node(g, "DequantizeLinear");
      EXPECT_EQ(dq->output(0), "e");
      expect_close(model, table, 100, 64, find_node(g, "Gather")->input(0), dq->input(1),
                   dq->input(2));
    }
  }
}

// int8 weights into MatMulInteger saturate in ONNX Runtime on x86 CPUs without VNNI: the report
// says so, except when 7-bit weights (--reduce-range) or uint8 weights make the sums exact.
TEST(DynamicInt8, WarnsOfSaturationWithoutVnni) {
  auto warned = [](DynamicInt8Config::Weights weights, bool reduce_range) {
    auto proto = testing::parse(kMatMulGather);
    testing::set_floats(proto, "w", {64, 32}, testing::random_floats(64 * 32, 1));
    testing::set_floats(proto, "table", {100, 64}, testing::random_floats(100 * 64, 2));
    Model model = testing::round_trip(proto);
    DynamicInt8Config config;
    config.weights = weights;
    config.reduce_range = reduce_range;
    bool found = false;
    for (const auto& w : run_int8(model, config).warnings) {
      found |= w.find("1 MatMulInteger op(s) multiply uint8 activations by int8 weights") == 0;
    }
    return found;
  };
  EXPECT_TRUE(warned(DynamicInt8Config::Weights::kInt8, false));
  EXPECT_FALSE(warned(DynamicInt8Config::Weights::kInt8, true));
  EXPECT_FALSE(warned(DynamicInt8Config::Weights::kUInt8, false));
}

TEST(DynamicInt8, GemmFoldsAlphaBetaAndTransposedWeights) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4, 16] a) => (float[4, 8] y) {
      y = Gemm <transB = 1, alpha = 2.0, beta = 0.5> (a, b, c)
    })");
  auto b = testing::random_floats(8 * 16, 3);
  testing::set_floats(proto, "b", {8, 16}, b);
  testing::set_floats(proto, "c", {8}, testing::random_floats(8, 4));
  Model model = testing::round_trip(proto);
  DynamicInt8Config config;
  config.per_channel = true;
  PassResult r = run_int8(model, config);
  ASSERT_EQ(r.changed.size(), 1u);
  const auto& g = model.proto.graph();
  const auto* mm = find_node(g, "MatMulInteger");
  ASSERT_NE(mm, nullptr);
  const auto* q = find_initializer(g, mm->input(1));
  EXPECT_EQ(q->dims(0), 16);  // stored as B^T: [K, N]
  EXPECT_EQ(q->dims(1), 8);
  // B is [N, K]; its transpose [K, N] was quantized per column n. The stored scales carry
  // alpha = 2: divided by it, they are the quantization's own.
  std::vector<float> bt(16 * 8);
  for (int n = 0; n < 8; ++n) {
    for (int k = 0; k < 16; ++k) bt[k * 8 + n] = b[n * 16 + k];
  }
  expect_close(model, bt, 16, 8, mm->input(1), find_node(g, "Mul")->input(1), mm->input(3),
               /*transposed=*/false, /*scale_divisor=*/2.0f);
  EXPECT_EQ(count_ops(g, "Add"), 1);  // + beta * C
}

TEST(DynamicInt8, ConvPerChannelUsesOneZeroPoint) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1, 3, 8, 8] x) => (float[1, 4, 6, 6] y) {
      y = Conv <kernel_shape = [3, 3]> (x, w, bias)
    })");
  testing::set_floats(proto, "w", {4, 3, 3, 3}, testing::random_floats(4 * 27, 5));
  testing::set_floats(proto, "bias", {4}, testing::random_floats(4, 6));
  Model model = testing::round_trip(proto);
  DynamicInt8Config config;
  config.weights = DynamicInt8Config::Weights::kUInt8;
  config.per_channel = true;
  PassResult r = run_int8(model, config);
  ASSERT_EQ(r.changed.size(), 1u);
  const auto& g = model.proto.graph();
  const auto* conv = find_node(g, "ConvInteger");
  ASSERT_NE(conv, nullptr);
  ASSERT_EQ(conv->attribute_size(), 1);  // Conv's attributes, copied
  EXPECT_EQ(conv->attribute(0).ints_size(), 2);
  const auto* zp = find_initializer(g, conv->input(3));
  EXPECT_EQ(zp->dims_size(), 0);
  EXPECT_EQ(bytes_of(model, *zp)[0], 128);
  bool warned = false;
  for (const auto& w : r.warnings) warned |= w.find("Conv") != std::string::npos;
  EXPECT_TRUE(warned) << "dynamic Conv quantization is flagged";
}

TEST(DynamicInt8, QdqWeightsFeedTheFloatOp) {
  auto proto = testing::parse(kMatMulGather);
  testing::set_floats(proto, "w", {64, 32}, testing::random_floats(64 * 32, 7));
  testing::set_floats(proto, "table", {100, 64}, testing::random_floats(100 * 64, 8));
  Model model = testing::round_trip(proto);
  DynamicInt8Config config;
  config.qdq = true;
  config.per_channel = true;
  config.op_types = {"MatMul"};
  PassResult r = run_int8(model, config);
  const auto& g = model.proto.graph();
  EXPECT_EQ(r.changed.size(), 1u);
  EXPECT_EQ(count_ops(g, "MatMul"), 1);
  EXPECT_EQ(count_ops(g, "Gather"), 1);
  EXPECT_NE(find_initializer(g, "table"), nullptr) << "--op-types MatMul leaves Gather alone";
  const auto* dq = find_node(g, "DequantizeLinear");
  ASSERT_NE(dq, nullptr);
  EXPECT_EQ(testing::int_attr(*dq, "axis"), 1);
  EXPECT_EQ(find_node(g, "MatMul")->input(1), dq->output(0));
}

TEST(DynamicInt8, SharedWeightsAndActivationsAreQuantizedOnce) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 64] a) => (float[2, 32] y, float[2, 32] z) {
      w = Constant <value = float[64, 32] {0.0}> ()
      y = MatMul(a, w)
      z = MatMul(a, w)
    })");
  auto w = testing::random_floats(64 * 32, 11);
  testing::set_constant_floats(proto, 0, w);
  Model model = testing::round_trip(proto);
  PassResult r = run_int8(model, {});
  const auto& g = model.proto.graph();
  EXPECT_EQ(r.changed.size(), 2u);
  EXPECT_EQ(r.tensors.size(), 1u) << "one weight, quantized once";
  EXPECT_EQ(count_ops(g, "DynamicQuantizeLinear"), 1) << "one activation, quantized once";
  EXPECT_EQ(count_ops(g, "Constant"), 0) << "the float weight is gone";
  EXPECT_EQ(count_ops(g, "MatMulInteger"), 2);
}

TEST(DynamicInt8, OldOpsetsUseTheFusedContribOp) {
  auto proto = testing::parse(R"(
    <ir_version: 5, opset_import: ["" : 9]>
    g (float[2, 64] a, float[1, 3, 8, 8] x) => (float[2, 32] y, float[1, 4, 6, 6] z) {
      y = MatMul(a, w)
      z = Conv <kernel_shape = [3, 3]> (x, f)
    })");
  testing::set_floats(proto, "w", {64, 32}, testing::random_floats(64 * 32, 9));
  testing::set_floats(proto, "f", {4, 3, 3, 3}, testing::random_floats(4 * 27, 10));
  Model model = testing::round_trip(proto);
  PassResult r = run_int8(model, {});
  const auto& g = model.proto.graph();
  ASSERT_EQ(r.changed.size(), 1u);
  EXPECT_EQ(find_node(g, "DynamicQuantizeMatMul")->domain(), "com.microsoft");
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].reason.find("opset 11"), std::string::npos);
  EXPECT_NE(find_initializer(g, "f"), nullptr) << "the Conv keeps its float weight";
}

}  // namespace
}  // namespace quantize
