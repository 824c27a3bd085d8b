// Every pass on graphs with If/Loop bodies, in ONNX Runtime's TransformerTester pattern: the
// original and the rewritten model run in the executor on the same random inputs, and their
// outputs must agree (exactly for the preparation passes, within each format's error for the
// quantizing ones), next to structural checks of what the pass wrote.
#include <gtest/gtest.h>

#include "calibration/calibrate.h"
#include "passes/passes.h"
#include "test_util.h"

namespace quantize {
namespace {
using testing::count_ops;
using testing::output_gap;

// Ops of a graph and its bodies.
int count_all(const onnx::GraphProto& graph, const std::string& op) {
  int n = 0;
  for (const auto& node : graph.node()) {
    n += node.op_type() == op;
    for (const auto& a : node.attribute()) {
      if (a.has_g()) n += count_all(a.g(), op);
    }
  }
  return n;
}

std::string reasons(const PassResult& r) {
  std::string s;
  for (const auto& k : r.skipped) s += k.node + ": " + k.reason + "\n";
  for (const auto& w : r.warnings) s += "warning: " + w + "\n";
  return s;
}

// Weights behind Reshape, Cast, DequantizeLinear and Transpose, in the main graph and in a body;
// a repeated subexpression; and a constant Expand too large to fold.
const char* kFoldable = R"(
  <ir_version: 8, opset_import: ["" : 17]>
  g (float[2, 8] x, int64[3] ids, bool cond) => (float[2, 4] y, float[3, 8] e, float[2, 4] z,
                                                 float[1, 1] r, float[2, 4] b) {
    shape = Constant <value = int64[2] {8, 4}> ()
    w = Reshape(w_flat, shape)
    y0 = MatMul(x, w)
    w16f = Cast <to = 1> (w16)
    y1 = MatMul(x, w16f)
    y = Add(y0, y1)
    tq = DequantizeLinear(t_int8, t_scale, t_zp)
    t = Transpose <perm = [1, 0]> (tq)
    e = Gather(t, ids)
    w2 = Reshape(w_flat, shape)
    z = MatMul(x, w2)
    big_shape = Constant <value = int64[2] {256, 256}> ()
    one = Constant <value = float[1] {1.0}> ()
    big = Expand(one, big_shape)
    r = ReduceSum(big)
    b = If (cond) <
      then_branch = then_g () => (float[2, 4] bt) {
        wt = Reshape(w_flat, shape)
        bt = MatMul(x, wt)
      },
      else_branch = else_g () => (float[2, 4] be) { be = Identity(y0) }
    >
  })";

Model foldable() {
  auto proto = testing::parse(kFoldable);
  testing::set_floats(proto, "w_flat", {32}, testing::random_floats(32, 1));
  auto* g = proto.mutable_graph();
  auto* w16 = g->add_initializer();  // float16 [8, 4]: the values 0.5 + i / 64
  w16->set_name("w16");
  w16->set_data_type(onnx::TensorProto::FLOAT16);
  w16->add_dims(8);
  w16->add_dims(4);
  std::string half;
  for (int i = 0; i < 32; ++i) {
    const uint16_t h = f32_to_f16_scalar(0.5f + i / 64.0f);
    half.push_back(static_cast<char>(h & 0xff));
    half.push_back(static_cast<char>(h >> 8));
  }
  w16->set_raw_data(half);
  auto* tq = g->add_initializer();  // int8 [8, 5] table, transposed to [5, 8] rows
  tq->set_name("t_int8");
  tq->set_data_type(onnx::TensorProto::INT8);
  tq->add_dims(8);
  tq->add_dims(5);
  std::string bytes;
  for (int i = 0; i < 40; ++i) bytes.push_back(static_cast<char>(i * 7 - 100));
  tq->set_raw_data(bytes);
  auto* ts = g->add_initializer();
  ts->set_name("t_scale");
  ts->set_data_type(onnx::TensorProto::FLOAT);
  ts->add_float_data(0.02f);
  auto* tz = g->add_initializer();
  tz->set_name("t_zp");
  tz->set_data_type(onnx::TensorProto::INT8);
  tz->add_int32_data(3);
  return testing::round_trip(proto);
}

TEST(PassEquivalence, FoldGivesTheSameOutputs) {
  Model before = foldable();
  Model after = copy_model(before);
  FoldConfig config;
  config.weight_inputs = {{"MatMul", 1}, {"Gather", 0}};
  PassResult r = make_fold_pass(config)->run(after);
  const auto& g = after.proto.graph();
  for (const char* op : {"Reshape", "Cast", "DequantizeLinear", "Transpose"}) {
    EXPECT_EQ(count_all(g, op), 0) << op << " should be folded\n" << reasons(r);
  }
  EXPECT_EQ(count_ops(g, "Expand"), 1) << "a 256 KiB result from 4 bytes is not folded";
  bool merged = false, capped = false;
  for (const auto& c : r.changed) merged |= c.reason.find("identical") != std::string::npos;
  for (const auto& k : r.skipped) capped |= k.reason.find("outgrow") != std::string::npos;
  EXPECT_TRUE(merged) << "the second Reshape(w_flat, shape) is the first one";
  EXPECT_TRUE(capped) << reasons(r);
  // Folded weights are initializers of the graph holding the node (the body's in the body).
  const auto& then_g = testing::find_node(g, "If")->attribute(0).g();
  EXPECT_EQ(then_g.initializer_size(), 1);
  const auto gap = output_gap(before, after, 3);
  EXPECT_TRUE(gap.same_shapes && gap.same_others);
  EXPECT_EQ(gap.max_abs, 0.0) << "folding computes exactly what the graph did";
}

// A constant shape asking for 40 GB is judged by its inputs before anything runs.
TEST(PassEquivalence, FoldNeverRunsHugeGenerators) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1] x) => (float[1] y) {
      shape = Constant <value = int64[2] {100000, 100000}> ()
      big = ConstantOfShape(shape)
      s = ReduceSum <keepdims = 0> (big)
      y = Add(x, s)
    })");
  Model model = testing::round_trip(proto);
  PassResult r = make_fold_pass({})->run(model);
  EXPECT_EQ(count_ops(model.proto.graph(), "ConstantOfShape"), 1);
  ASSERT_FALSE(r.skipped.empty());
  EXPECT_NE(r.skipped[0].reason.find("up to 74.5 GiB"), std::string::npos) << reasons(r);
}

// A weight behind a Cast: after folding, the mode's weight pass sees a constant.
TEST(PassEquivalence, FoldHandsFloat16WeightsToQ4) {
  Model model = foldable();
  FoldConfig config;
  config.weight_inputs = {{"MatMul", 1}};
  make_fold_pass(config)->run(model);
  NBitsConfig nbits;
  nbits.policy.precision.block_size = 16;
  PassResult r = make_matmul_nbits_pass(nbits)->run(model);
  EXPECT_EQ(r.changed.size(), 4u) << reasons(r);  // y0, y1, z and the body's MatMul
  EXPECT_EQ(count_all(model.proto.graph(), "MatMulNBits"), 4);
}

// Opset 9 -> 10: Slice's attributes become inputs; BatchNormalization-9 holds until 14.
TEST(PassEquivalence, OpsetConversionKeepsOutputs) {
  auto proto = testing::parse(R"(
    <ir_version: 5, opset_import: ["" : 9]>
    g (float[1, 2, 4, 4] x) => (float[1, 2, 2, 4] y) {
      b = BatchNormalization <epsilon = 0.001> (x, scale, bias, mean, var)
      y = Slice <starts = [1], ends = [3], axes = [2]> (b)
    })");
  testing::set_floats(proto, "scale", {2}, {1.5f, 0.5f});
  testing::set_floats(proto, "bias", {2}, {0.1f, -0.2f});
  testing::set_floats(proto, "mean", {2}, {0.3f, 0.0f});
  testing::set_floats(proto, "var", {2}, {2.0f, 0.25f});
  Model before = testing::round_trip(proto);
  Model after = copy_model(before);
  PassResult r = make_opset_pass({10, 10, "a test"})->run(after);
  EXPECT_TRUE(r.warnings.empty()) << reasons(r);
  EXPECT_EQ(opset_of(after.proto), 10);
  const auto* slice = testing::find_node(after.proto.graph(), "Slice");
  ASSERT_NE(slice, nullptr);
  EXPECT_GE(slice->input_size(), 3) << "Slice-10 takes starts and ends as inputs";
  EXPECT_EQ(count_ops(after.proto.graph(), "BatchNormalization"), 1);
  const auto gap = output_gap(before, after, 2);
  EXPECT_TRUE(gap.same_shapes);
  EXPECT_EQ(gap.max_abs, 0.0);
}

// Weights stored as Constant nodes (paddle2onnx) large enough to live in payloads: ONNX's IR
// drops payload marks, so the pass must carry them through (it once lost them: a silent zero
// weight).
TEST(PassEquivalence, OpsetConversionKeepsConstantNodeWeights) {
  auto proto = testing::parse(R"(
    <ir_version: 5, opset_import: ["" : 9]>
    g (float[1, 2, 8, 8] x) => (float[1, 8, 8, 8] y) {
      w = Constant <value = float[16, 2, 3, 3] {0.0}> ()
      c = Conv <pads = [1, 1, 1, 1]> (x, w)
      y = Slice <starts = [0], ends = [8], axes = [1]> (c)
    })");
  testing::set_constant_floats(proto, 0, testing::random_floats(16 * 2 * 9, 7));
  Model before = testing::round_trip(proto);
  Model after = copy_model(before);
  PassResult r = make_opset_pass({10, 10, "a test"})->run(after);
  EXPECT_TRUE(r.warnings.empty()) << reasons(r);
  EXPECT_EQ(opset_of(after.proto), 10);
  const auto gap = output_gap(before, after, 2);
  EXPECT_TRUE(gap.same_shapes);
  EXPECT_EQ(gap.max_abs, 0.0);
  EXPECT_GT(gap.min_cosine, 0.999999) << "the weight must not come back empty";
}

// ONNX's converter leaves bodies alone: a body with an op that changed form keeps the model.
TEST(PassEquivalence, OpsetConversionRefusesChangedOpsInBodies) {
  auto proto = testing::parse(R"(
    <ir_version: 5, opset_import: ["" : 9]>
    g (bool cond, float[4, 4] x) => (float[2, 4] y) {
      y = If (cond) <
        then_branch = then_g () => (float[2, 4] t) { t = Slice <starts = [0], ends = [2], axes = [0]> (x) },
        else_branch = else_g () => (float[2, 4] e) { e = Slice <starts = [2], ends = [4], axes = [0]> (x) }
      >
    })");
  Model model = testing::round_trip(proto);
  PassResult r = make_opset_pass({10, 10, "a test"})->run(model);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("subgraph"), std::string::npos) << r.warnings[0];
  EXPECT_EQ(opset_of(model.proto), 9);
}

// Opset 17 -> 21, past ONNX 1.12's converter: the tool's own rewrite (Reduce axes and DFT's axis
// become inputs, Split names its output count, GridSample's modes are renamed), in bodies too,
// and the outputs stay exactly the same.
TEST(PassEquivalence, OpsetRaiseTo21KeepsOutputs) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool cond, float[2, 6, 4] x, float[1, 2, 4, 4] img, float[1, 3, 3, 2] grid)
        => (float[2, 1, 4] m, float[6, 2] a, float[6, 2] b, float[2, 6, 1] s, float[2, 6, 4, 2] f,
            float[1, 2, 3, 3] gs) {
      m = ReduceMean <axes = [1]> (x)
      t = ReduceMax <axes = [0], keepdims = 0> (x)
      a, b = Split <axis = 1> (t)
      s = If (cond) <
        then_branch = then_g () => (float[2, 6, 1] p) { p = ReduceMin <axes = [2]> (x) },
        else_branch = else_g () => (float[2, 6, 1] q) { q = ReduceMax <axes = [2]> (x) }
      >
      x4 = Unsqueeze (x, minus1)
      f = DFT <axis = 2> (x4)
      gs = GridSample <mode = "bicubic"> (img, grid)
    })");
  auto ints = [&](const char* name, std::vector<int64_t> v) {
    auto* t = proto.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(v.size()));
    for (int64_t x : v) t->add_int64_data(x);
  };
  ints("minus1", {-1});
  Model before = testing::round_trip(proto);
  Model after = copy_model(before);
  PassResult r = make_opset_pass({21, 21, "a test"})->run(after);
  EXPECT_TRUE(r.warnings.empty()) << reasons(r);
  EXPECT_EQ(opset_of(after.proto), 21);
  EXPECT_GE(after.proto.ir_version(), 10);
  const auto& g = after.proto.graph();
  EXPECT_EQ(testing::find_node(g, "ReduceMean")->input_size(), 2);
  EXPECT_EQ(testing::int_attr(*testing::find_node(g, "Split"), "num_outputs"), 2);
  EXPECT_EQ(testing::find_node(g, "DFT")->input_size(), 3);
  EXPECT_EQ(attr_string(*testing::find_node(g, "GridSample"), "mode"), "cubic");
  const auto& body = testing::find_node(g, "If")->attribute(0).g();
  EXPECT_EQ(body.node(0).input_size(), 2) << "the body's ReduceMin takes its axes as an input";
  for (bool cond : {true, false}) {
    std::vector<Tensor> in = testing::random_inputs(before, cond ? 1 : 2);
    in[0].data<bool>()[0] = cond;
    auto x = Executor(before).run(in);
    auto y = Executor(after).run(in);
    ASSERT_EQ(x.size(), y.size());
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(x[i].shape(), y[i].shape()) << i;
      for (int64_t j = 0; j < x[i].size(); ++j) {
        EXPECT_EQ(x[i].data<float>()[j], y[i].data<float>()[j]) << i << " " << j;
      }
    }
  }
}

// GroupNormalization's scale and bias changed meaning at opset 21: such a model keeps its opset,
// and a model with nothing the mode would write keeps it too.
TEST(PassEquivalence, OpsetRaiseRefusesGroupNormalizationAndWaitsToBeWanted) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 18]>
    g (float[1, 4, 2, 2] x, float[2] scale, float[2] bias) => (float[1, 4, 2, 2] y) {
      y = GroupNormalization <num_groups = 2> (x, scale, bias)
    })");
  Model model = testing::round_trip(proto);
  PassResult r = make_opset_pass({21, 21, "a test"})->run(model);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("GroupNormalization"), std::string::npos) << r.warnings[0];
  EXPECT_EQ(opset_of(model.proto), 18);

  auto plain = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 3] x) => (float[2, 1] y) { y = ReduceMean <axes = [1]> (x) })");
  Model unwanted = testing::round_trip(plain);
  OpsetConfig config{21, 21, "a test", [](onnx::ModelProto&) { return false; }};
  r = make_opset_pass(config)->run(unwanted);
  EXPECT_TRUE(r.warnings.empty() && r.notes.empty());
  EXPECT_EQ(opset_of(unwanted.proto), 17);
}

// MatMuls and Gemms in the main graph and in If / Loop bodies.
const char* kWeighted = R"(
  <ir_version: 8, opset_import: ["" : 17]>
  g (float[3, 64] x, bool cond, int64 trips) => (float[3, 32] y, float[3, 32] z, float[3, 32] l) {
    y = MatMul(x, w1)
    z = If (cond) <
      then_branch = then_g () => (float[3, 32] t) { t = Gemm <transB = 1> (x, w2, c2) },
      else_branch = else_g () => (float[3, 32] e) { e = MatMul(x, w1) }
    >
    go = Constant <value = bool {1}> ()
    l = Loop (trips, go, y) <
      body = loop_g (int64 i, bool c_in, float[3, 32] acc) => (bool c_out, float[3, 32] next) {
        c_out = Identity(c_in)
        m = MatMul(acc, w3)
        next = Tanh(m)
      }
    >
  })";

Model weighted() {
  auto proto = testing::parse(kWeighted);
  testing::set_floats(proto, "w1", {64, 32}, testing::random_floats(64 * 32, 2, -0.2f, 0.2f));
  testing::set_floats(proto, "w2", {32, 64}, testing::random_floats(64 * 32, 3, -0.2f, 0.2f));
  testing::set_floats(proto, "c2", {32}, testing::random_floats(32, 4));
  testing::set_floats(proto, "w3", {32, 32}, testing::random_floats(32 * 32, 5, -0.3f, 0.3f));
  return testing::round_trip(proto);
}

TEST(PassEquivalence, MatMulNBitsInEveryGraph) {
  Model before = weighted();
  Model after = copy_model(before);
  NBitsConfig config;
  PassResult r = make_matmul_nbits_pass(config)->run(after);
  EXPECT_EQ(r.changed.size(), 4u) << reasons(r);
  EXPECT_EQ(r.tensors.size(), 3u) << "w1, read in the main graph and a body, is packed once";
  EXPECT_EQ(count_all(after.proto.graph(), "MatMulNBits"), 4);
  EXPECT_EQ(count_all(after.proto.graph(), "MatMul") + count_all(after.proto.graph(), "Gemm"), 0);
  const auto gap = output_gap(before, after, 4, 1, 3);
  EXPECT_TRUE(gap.same_shapes && gap.same_others);
  EXPECT_GT(gap.min_cosine, 0.99);
}

TEST(PassEquivalence, Float16InEveryGraph) {
  Model before = weighted();
  Model after = copy_model(before);
  PassResult r = make_float16_pass({true, {}})->run(after);
  EXPECT_TRUE(r.warnings.empty()) << reasons(r);
  // Inside the bodies: the Gemm, the MatMuls and the Tanh compute in float16.
  int body_nodes = 0;
  for (const auto& c : r.changed) body_nodes += c.node.find(" in ") != std::string::npos;
  EXPECT_GE(body_nodes, 3);
  const auto gap = output_gap(before, after, 4, 1, 3);
  EXPECT_TRUE(gap.same_shapes && gap.same_others);
  EXPECT_GT(gap.min_cosine, 0.9999);
  EXPECT_LT(gap.max_abs, 0.05);
}

TEST(PassEquivalence, Q4F16ChainLoadsInBodies) {
  // MatMulNBits writes float16 scales; the float16 pass then makes A float16 in every body.
  Model before = weighted();
  Model after = copy_model(before);
  NBitsConfig config;
  config.float16_scales = true;
  make_matmul_nbits_pass(config)->run(after);
  make_float16_pass({true, {}})->run(after);
  std::function<void(const onnx::GraphProto&)> check = [&](const onnx::GraphProto& g) {
    for (const auto& n : g.node()) {
      if (n.op_type() == "MatMulNBits") {
        EXPECT_NE(n.input(0).find("fp16"), std::string::npos)
            << n.name() << " reads " << n.input(0) << ", not a float16 value";
      }
      for (const auto& a : n.attribute()) {
        if (a.has_g()) check(a.g());
      }
    }
  };
  check(after.proto.graph());
  const auto gap = output_gap(before, after, 4, 1, 3);
  EXPECT_GT(gap.min_cosine, 0.99);
}

TEST(PassEquivalence, DynamicInt8InEveryGraph) {
  Model before = weighted();
  Model after = copy_model(before);
  DynamicInt8Config config;
  config.weights = DynamicInt8Config::Weights::kUInt8;
  PassResult r = make_dynamic_int8_pass(config)->run(after);
  EXPECT_EQ(r.changed.size(), 4u) << reasons(r);
  EXPECT_EQ(count_all(after.proto.graph(), "MatMulInteger"), 4);
  const auto gap = output_gap(before, after, 4, 1, 3);
  EXPECT_TRUE(gap.same_shapes && gap.same_others);
  EXPECT_GT(gap.min_cosine, 0.999);
}

// Static QDQ calibrated by really running the model: main-graph nodes get pairs, body nodes
// stay float and say why.
TEST(PassEquivalence, StaticQdqMainGraphBodiesReported) {
  Model before = weighted();
  Model after = copy_model(before);
  StaticQdqConfig config;
  config.per_channel = true;
  config.calibrate = testing::random_calibrator(8, 100, 3);
  PassResult r = make_static_qdq_pass(config)->run(after);
  EXPECT_GT(count_ops(after.proto.graph(), "QuantizeLinear"), 0);
  int in_bodies = 0;
  for (const auto& k : r.skipped) in_bodies += k.reason.find("subgraph") != std::string::npos;
  EXPECT_EQ(in_bodies, 3) << reasons(r);  // the Gemm, a MatMul, the Loop's MatMul
  const auto gap = output_gap(before, after, 4, 1, 3);
  EXPECT_TRUE(gap.same_shapes && gap.same_others);
  EXPECT_GT(gap.min_cosine, 0.99);
}

}  // namespace
}  // namespace quantize
