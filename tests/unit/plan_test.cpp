// Per-node precisions: each pass honours them, rules match node and weight names, and plans
// survive a write and a read.
#include "pipeline/plan.h"

#include <gtest/gtest.h>

#include <fstream>

#include "calibration/calibrate.h"
#include "model/tensor_data.h"
#include "passes/passes.h"
#include "quantize/error.h"
#include "test_util.h"

namespace quantize {
namespace {
using testing::count_ops;
using testing::find_node;

const char* kTwoLayers = R"(
  <ir_version: 8, opset_import: ["" : 17]>
  g (float[2, 64] x) => (float[2, 32] y) {
    h = MatMul(x, w1)
    r = Relu(h)
    y = MatMul(r, w2)
  })";

Model two_layers() {
  auto proto = testing::parse(kTwoLayers);
  proto.mutable_graph()->mutable_node(0)->set_name("first");
  proto.mutable_graph()->mutable_node(2)->set_name("second");
  testing::set_floats(proto, "w1", {64, 64}, testing::random_floats(64 * 64, 1));
  testing::set_floats(proto, "w2", {64, 32}, testing::random_floats(64 * 32, 2));
  return testing::round_trip(proto);
}

TEST(Plan, WeightOnlyHonoursQ8AndFloat) {
  Model model = two_layers();
  NBitsConfig config;
  config.policy.overrides = {{"first", Precision::kQ8}, {"second", Precision::kFloat}};
  PassResult r = make_matmul_nbits_pass(config)->run(model);
  const auto* nbits = find_node(model.proto.graph(), "MatMulNBits");
  ASSERT_NE(nbits, nullptr);
  EXPECT_EQ(testing::int_attr(*nbits, "bits"), 8);
  EXPECT_EQ(count_ops(model.proto.graph(), "MatMul"), 1) << "'second' stays float";
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].reason.find("precision plan"), std::string::npos);
}

TEST(Plan, DynamicAndFloat16KeepFloatNodes) {
  Model a = two_layers();
  DynamicInt8Config dyn;
  dyn.precisions = {{"second", Precision::kFloat}};
  make_dynamic_int8_pass(dyn)->run(a);
  EXPECT_EQ(count_ops(a.proto.graph(), "MatMulInteger"), 1);
  EXPECT_EQ(count_ops(a.proto.graph(), "MatMul"), 1);
  Model b = two_layers();
  PassResult r = make_float16_pass({true, {{"second", Precision::kFloat}}})->run(b);
  bool kept = false;
  for (const auto& k : r.skipped) kept |= k.node.find("second") != std::string::npos;
  EXPECT_TRUE(kept);
  const auto* second = find_node(b.proto.graph(), "MatMul");
  ASSERT_NE(second, nullptr);
  for (const auto& n : b.proto.graph().node()) {
    if (n.name() == "second") {
      // Its weight stayed float32: a float32 constant is read directly.
      const auto* w = testing::find_initializer(b.proto.graph(), n.input(1));
      ASSERT_NE(w, nullptr);
      EXPECT_EQ(w->data_type(), onnx::TensorProto::FLOAT);
    }
  }
}

// a16: the node's activations get 16-bit pairs (com.microsoft below opset 21) over four times
// the calibrated range (data beyond it does not clip), the rest 8 bits; float: the node stays
// float.
TEST(Plan, StaticA16AndFloat) {
  Model model = two_layers();
  StaticQdqConfig config;
  config.signed_activations = false;
  config.precisions = {{"first", Precision::kA16}, {"second", Precision::kFloat}};
  std::unordered_map<std::string, Range> calibrated;
  config.calibrate = [&calibrated](const Model& m, const std::set<std::string>& tensors) {
    CalibrationData data;
    data.count = 4;
    data.sample = [&m](size_t i) { return testing::random_inputs(m, 10 + i); };
    RangeCollector ranges(tensors, CalibMethod::kMinMax, 99.999);
    run_calibration(m, data, {&ranges});
    Calibration c;
    c.ranges = ranges.ranges();
    calibrated = c.ranges;
    return c;
  };
  Model before = copy_model(model);
  PassResult r = make_static_qdq_pass(config)->run(model);
  const auto& g = model.proto.graph();
  int wide = 0;
  for (const auto& n : g.node()) {
    if (n.op_type() != "QuantizeLinear") continue;
    const auto* zp = testing::find_initializer(g, n.input(2));
    ASSERT_NE(zp, nullptr);
    EXPECT_EQ(zp->data_type(), onnx::TensorProto::UINT16) << n.name();
    EXPECT_EQ(n.domain(), "com.microsoft");
    const auto* scale = testing::find_initializer(g, n.input(1));
    ASSERT_NE(scale, nullptr);
    ASSERT_TRUE(calibrated.count(n.input(0))) << n.input(0);
    const Range r = calibrated.at(n.input(0));
    const float span = std::max(r.hi, 0.0f) - std::min(r.lo, 0.0f);
    EXPECT_FLOAT_EQ(tensor_floats(model, *scale).at(0), 4 * span / 65535);
    ++wide;
  }
  EXPECT_EQ(wide, 1) << "x, the input of 'first' (its output feeds a float node)";
  EXPECT_EQ(count_ops(g, "MatMul"), 2);
  bool kept = false;
  for (const auto& k : r.skipped) kept |= k.reason.find("precision plan") != std::string::npos;
  EXPECT_TRUE(kept);
  const auto gap = testing::output_gap(before, model, 2);
  EXPECT_GT(gap.min_cosine, 0.9999) << "16-bit activations and an 8-bit weight";
}

TEST(Plan, RulesMatchNodeAndWeightNames) {
  Model model = two_layers();
  std::vector<PrecisionRule> rules = {PrecisionRule::parse("w2=q8"),
                                      PrecisionRule::parse("^fir=float")};
  auto entries = apply_rules(model, rules);
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].node, "first");
  EXPECT_EQ(entries[0].precision, Precision::kFloat);
  EXPECT_EQ(entries[1].node, "second");  // through its weight's name
  EXPECT_EQ(entries[1].precision, Precision::kQ8);
  EXPECT_NE(entries[1].why.find("--tensor-type w2=q8"), std::string::npos);
  EXPECT_THROW(PrecisionRule::parse("w2=q3"), Error);
  EXPECT_THROW(PrecisionRule::parse("=q8"), Error);
}

TEST(Plan, WriteAndReadBack) {
  PrecisionPlan plan;
  plan.mode = "static_int8";
  plan.entries = {{"Conv_1", Precision::kA16, "target search", 0.991},
                  {"out/proj", Precision::kFloat, "--tensor-type proj=float", std::nullopt}};
  const auto path = (testing::temp_dir() / "plan.json").string();
  write_plan(plan, path);
  const PrecisionPlan back = read_plan(path);
  EXPECT_EQ(back.mode, "static_int8");
  ASSERT_EQ(back.entries.size(), 2u);
  EXPECT_EQ(back.entries[0].node, "Conv_1");
  EXPECT_EQ(back.entries[0].precision, Precision::kA16);
  EXPECT_DOUBLE_EQ(*back.entries[0].effect, 0.991);
  EXPECT_FALSE(back.entries[1].effect);
  EXPECT_EQ(back.by_node().at("out/proj"), Precision::kFloat);
  std::ofstream(testing::temp_dir() / "bad.json") << "{\"nodes\": 3}";
  EXPECT_THROW(read_plan((testing::temp_dir() / "bad.json").string()), Error);
}

}  // namespace
}  // namespace quantize
