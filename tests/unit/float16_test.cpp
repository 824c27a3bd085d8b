// float16 conversion on small inline graphs: which values become float16, where casts go, and
// the failure modes of existing converters that this pass must not have.
#include <gtest/gtest.h>

#include <unordered_map>
#include <unordered_set>

#include "kernels/kernels.h"
#include "model/tensor_data.h"
#include "passes/passes.h"
#include "quantize/pipeline.h"
#include "test_util.h"

namespace quantize {
namespace {
using testing::count_ops;
using testing::find_initializer;
using testing::int_attr;

PassResult run_f16(Model& model, bool keep_io = true) {
  return make_float16_pass({keep_io, {}})->run(model);
}

// Every input is a graph input, an initializer or an earlier node's output; names are unique.
void expect_well_formed(const onnx::GraphProto& g) {
  std::unordered_set<std::string> defined, node_names;
  for (const auto& v : g.input()) defined.insert(v.name());
  for (const auto& t : g.initializer()) defined.insert(t.name());
  for (const auto& n : g.node()) {
    for (const auto& in : n.input()) {
      if (!in.empty()) {
        EXPECT_TRUE(defined.count(in)) << n.name() << " reads " << in << " early";
      }
    }
    for (const auto& o : n.output()) {
      EXPECT_TRUE(defined.insert(o).second) << "two writers: " << o;
    }
    if (!n.name().empty()) {
      EXPECT_TRUE(node_names.insert(n.name()).second) << n.name();
    }
  }
  for (const auto& o : g.output()) EXPECT_TRUE(defined.count(o.name())) << o.name();
}

// No Cast reads the output of a Cast that undoes it (fp32 -> fp16 -> fp32 or the reverse).
void expect_no_cast_pairs(const onnx::GraphProto& g) {
  std::unordered_map<std::string, const onnx::NodeProto*> producer;
  for (const auto& n : g.node()) {
    for (const auto& o : n.output()) producer[o] = &n;
  }
  for (const auto& n : g.node()) {
    if (n.op_type() != "Cast") continue;
    auto it = producer.find(n.input(0));
    if (it != producer.end() && it->second->op_type() == "Cast") {
      ADD_FAILURE() << "cast pair: " << it->second->name() << " -> " << n.name();
    }
  }
}

int elem_type(const onnx::ValueInfoProto& v) { return v.type().tensor_type().elem_type(); }

TEST(Float16, ConvertsWeightsAndCastsAtTheBoundaries) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 64] x) => (float[2, 16] y, int64[2, 3] idx) {
      h = MatMul(x, w)
      r = Relu(h)
      y, idx = TopK(r, k)
    })");
  testing::set_floats(proto, "w", {64, 16}, testing::random_floats(64 * 16, 1));
  auto* k = proto.mutable_graph()->add_initializer();
  k->set_name("k");
  k->set_data_type(onnx::TensorProto::INT64);
  k->add_dims(1);
  k->add_int64_data(3);
  Model model = testing::round_trip(proto);
  PassResult r = run_f16(model);
  const auto& g = model.proto.graph();
  expect_well_formed(g);
  expect_no_cast_pairs(g);
  EXPECT_EQ(find_initializer(g, "w")->data_type(), onnx::TensorProto::FLOAT16);
  EXPECT_EQ(find_initializer(g, "k")->data_type(), onnx::TensorProto::INT64);
  EXPECT_EQ(elem_type(g.input(0)), onnx::TensorProto::FLOAT);
  EXPECT_EQ(elem_type(g.output(0)), onnx::TensorProto::FLOAT);
  // x -> Cast(f16) -> MatMul -> Relu -> Cast(f32) -> TopK: two casts.
  EXPECT_EQ(count_ops(g, "Cast"), 2);
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].reason.find("no float16 kernel"), std::string::npos);
  EXPECT_EQ(r.changed.size(), 2u);  // MatMul, Relu
  // The weight's values are the float16 rounding of the originals.
  auto w = testing::random_floats(64 * 16, 1);
  PayloadBytes bytes(tensor_payload(model, *find_initializer(g, "w")));
  ASSERT_EQ(bytes.size(), w.size() * 2);
  const uint16_t* h = reinterpret_cast<const uint16_t*>(bytes.data());
  for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(h[i], f32_to_f16_scalar(w[i])) << i;
}

TEST(Float16, Float16InputsAndOutputsOnRequest) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 4] x) => (float[2, 4] y) {
      y = Relu(x)
    })");
  Model model = testing::round_trip(proto);
  run_f16(model, /*keep_io=*/false);
  const auto& g = model.proto.graph();
  EXPECT_EQ(elem_type(g.input(0)), onnx::TensorProto::FLOAT16);
  EXPECT_EQ(elem_type(g.output(0)), onnx::TensorProto::FLOAT16);
  EXPECT_EQ(count_ops(g, "Cast"), 0);
}

TEST(Float16, ResizeScalesStayFloat32AndOutputIsCastBack) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 13]>
    g (float[1, 1, 4, 4] x) => (float[1, 1, 8, 8] y) {
      roi = Constant <value = float[0] {}> ()
      scales = Constant <value = float[4] {1.0, 1.0, 2.0, 2.0}> ()
      y = Resize(x, roi, scales)
    })");
  Model model = testing::round_trip(proto);
  run_f16(model);
  const auto& g = model.proto.graph();
  expect_well_formed(g);
  for (const auto& n : g.node()) {
    if (n.op_type() == "Constant") {
      EXPECT_EQ(n.attribute(0).t().data_type(), onnx::TensorProto::FLOAT) << n.output(0);
    }
  }
  // The Resize output (a graph output) is renamed and cast back to the declared float32 name.
  const onnx::NodeProto* last = nullptr;
  for (const auto& n : g.node()) {
    if (n.output(0) == "y") last = &n;
  }
  ASSERT_NE(last, nullptr);
  EXPECT_EQ(last->op_type(), "Cast");
  EXPECT_EQ(int_attr(*last, "to"), onnx::TensorProto::FLOAT);
}

TEST(Float16, OutOfRangeConstantKeepsItsReaderInFloat32) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 2048] x) => (float[1, 2048] y) {
      a = Mul(x, big)
      y = Add(a, small)
    })");
  std::vector<float> big(2048, 1.0f), small(2048, 0.5f);
  big[7] = 1e8f;     // a BatchNorm-variance-like value
  small[3] = 1e-9f;  // flushes to zero in float16
  testing::set_floats(proto, "big", {1, 2048}, big);
  testing::set_floats(proto, "small", {1, 2048}, small);
  Model model = testing::round_trip(proto);
  PassResult r = run_f16(model);
  const auto& g = model.proto.graph();
  expect_well_formed(g);
  EXPECT_EQ(find_initializer(g, "big")->data_type(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(find_initializer(g, "small")->data_type(), onnx::TensorProto::FLOAT16);
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].reason.find("'big'"), std::string::npos) << r.skipped[0].reason;
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("1 nonzero"), std::string::npos) << r.warnings[0];
}

TEST(Float16, SquareReductionsStayFloat32) {
  // RMSNorm as exported: x / sqrt(mean(x^2) + eps) * g
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 4, 8] x) => (float[1, 4, 8] y) {
      two = Constant <value = float {2.0}> ()
      eps = Constant <value = float {1e-5}> ()
      sq = Pow(x, two)
      ms = ReduceMean <axes = [-1]> (sq)
      me = Add(ms, eps)
      rt = Sqrt(me)
      n = Div(x, rt)
      y = Mul(n, gain)
    })");
  testing::set_floats(proto, "gain", {8}, testing::random_floats(8, 2));
  Model model = testing::round_trip(proto);
  PassResult r = run_f16(model);
  const auto& g = model.proto.graph();
  expect_well_formed(g);
  expect_no_cast_pairs(g);
  std::unordered_set<std::string> kept;
  for (const auto& s : r.skipped) kept.insert(s.node);
  EXPECT_EQ(kept.size(), 5u) << "Pow, ReduceMean, Add, Sqrt, Div";
  EXPECT_EQ(r.changed.size(), 1u) << "Mul by the gain";
}

TEST(Float16, ShapeArithmeticStaysFloat32) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 3, 10] x) => (float[1, 3, 20] y) {
      s = Shape(x)
      sf = Cast <to = 1> (s)
      two = Constant <value = float[3] {1.0, 1.0, 2.0}> ()
      t = Mul(sf, two)
      ti = Cast <to = 7> (t)
      z = Expand(x, one)
      y = Tile(x, reps)
    })");
  auto* reps = proto.mutable_graph()->add_initializer();
  reps->set_name("reps");
  reps->set_data_type(onnx::TensorProto::INT64);
  reps->add_dims(3);
  for (int64_t v : {1, 1, 2}) reps->add_int64_data(v);
  auto* one = proto.mutable_graph()->add_initializer();
  *one = *reps;
  one->set_name("one");
  Model model = testing::round_trip(proto);
  PassResult r = run_f16(model);
  const auto& g = model.proto.graph();
  for (const auto& n : g.node()) {
    if (n.op_type() == "Cast" && n.input(0) == "s") {
      EXPECT_EQ(int_attr(n, "to"), onnx::TensorProto::FLOAT) << "shape cast stays float32";
    }
  }
  int shape_kept = 0;
  for (const auto& s : r.skipped) shape_kept += s.reason.find("shapes") != std::string::npos;
  EXPECT_EQ(shape_kept, 3) << "Cast(s), Mul and the Cast back to int64";
}

// Bodies are converted too, each on its own with float32 at its boundary: they read the
// enclosing graph's float16 values directly and cast their outputs back to float32.
TEST(Float16, SubgraphBodiesAreConvertedWithFloat32Boundaries) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool cond, float[2, 4] x) => (float[2, 4] y) {
      h = Relu(x)
      y = If (cond) <
        then_branch = then_g () => (float[2, 4] t) { t = Neg(h) },
        else_branch = else_g () => (float[2, 4] e) { e = Abs(h) }
      >
    })");
  Model model = testing::round_trip(proto);
  PassResult r = run_f16(model);
  const auto& g = model.proto.graph();
  expect_well_formed(g);
  const onnx::NodeProto* if_node = testing::find_node(g, "If");
  ASSERT_NE(if_node, nullptr);
  for (int b = 0; b < 2; ++b) {
    const auto& body = if_node->attribute(b).g();
    const onnx::NodeProto* op = testing::find_node(body, b == 0 ? "Neg" : "Abs");
    ASSERT_NE(op, nullptr);
    EXPECT_EQ(op->input(0), "h") << "h is float16 already: read as it is";
    // The body's declared float32 output is a cast of the float16 result.
    const std::string out = body.output(0).name();
    const onnx::NodeProto* cast = nullptr;
    for (const auto& n : body.node()) {
      if (n.op_type() == "Cast" && n.output(0) == out) cast = &n;
    }
    ASSERT_NE(cast, nullptr) << "branch " << b;
    EXPECT_EQ(cast->input(0), op->output(0));
    EXPECT_EQ(int_attr(*cast, "to"), onnx::TensorProto::FLOAT);
    EXPECT_EQ(elem_type(body.output(0)), onnx::TensorProto::FLOAT);
  }
  // The If itself keeps its float32 interface, and says why; its body nodes are converted.
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].reason.find("subgraph"), std::string::npos);
  int body_nodes = 0;
  for (const auto& c : r.changed)
    body_nodes += c.node.find("then_branch") != std::string::npos ||
                  c.node.find("else_branch") != std::string::npos;
  EXPECT_EQ(body_nodes, 2);
}

// A body reading a float32 value of the enclosing graph that a converted node wants in float16
// casts it inside the body; constants of the body convert with their readers.
TEST(Float16, BodyCastsOuterFloat32ValuesItNeedsInFloat16) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool cond, float[2, 4] x) => (float[2, 4] y) {
      y = If (cond) <
        then_branch = then_g () => (float[2, 4] t) {
          k = Constant <value = float[4] {1.0, 2.0, 3.0, 4.0}> ()
          t = Mul(x, k)
        },
        else_branch = else_g () => (float[2, 4] e) { e = Identity(x) }
      >
    })");
  Model model = testing::round_trip(proto);
  run_f16(model);
  const auto& then_g = testing::find_node(model.proto.graph(), "If")->attribute(0).g();
  const onnx::NodeProto* mul = testing::find_node(then_g, "Mul");
  ASSERT_NE(mul, nullptr);
  const onnx::NodeProto* cast_in = nullptr;
  for (const auto& n : then_g.node()) {
    if (n.op_type() == "Cast" && n.output(0) == mul->input(0)) cast_in = &n;
  }
  ASSERT_NE(cast_in, nullptr) << "x is cast to float16 inside the body";
  EXPECT_EQ(cast_in->input(0), "x");
  EXPECT_EQ(int_attr(*cast_in, "to"), onnx::TensorProto::FLOAT16);
  const onnx::NodeProto* k = testing::find_node(then_g, "Constant");
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->attribute(0).t().data_type(), onnx::TensorProto::FLOAT16);
}

TEST(Float16, BatchTransposeMatMulStaysFloat32) {
  // ONNX Runtime 1.30 crashes when it fuses these two in float16 (seen on a real GRU model).
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[12, 1, 256] x) => (float[1, 12, 5] y, float[1, 256, 12] z) {
      t = Transpose <perm = [1, 0, 2]> (x)
      y = MatMul(t, w)
      u = Transpose <perm = [1, 2, 0]> (x)
      z = Relu(u)
    })");
  testing::set_floats(proto, "w", {256, 5}, testing::random_floats(256 * 5, 4));
  Model model = testing::round_trip(proto);
  PassResult r = run_f16(model);
  ASSERT_EQ(r.skipped.size(), 2u) << "the MatMul and the Transpose feeding it";
  for (const auto& s : r.skipped) {
    EXPECT_NE(s.reason.find("batch-transpose"), std::string::npos) << s.node;
  }
  expect_well_formed(model.proto.graph());
}

TEST(Float16, AlreadyFloat16ModelIsLeftAlone) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float16[2, 4] x) => (float16[2, 4] y) {
      y = Relu(x)
    })");
  Model model = testing::round_trip(proto);
  std::string before = model.proto.SerializeAsString();
  PassResult r = run_f16(model);
  EXPECT_EQ(model.proto.SerializeAsString(), before);
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_NE(r.warnings[0].find("no float32"), std::string::npos);
}

TEST(Float16, UnnamedNodesGetUniqueCastNames) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4] a, float[4] b) => (float[4] y, float[4] z) {
      y = Relu(a)
      z = Relu(b)
    })");
  Model model = testing::round_trip(proto);
  run_f16(model);
  const auto& g = model.proto.graph();
  expect_well_formed(g);
  EXPECT_EQ(count_ops(g, "Cast"), 4);
}

TEST(Float16, Q4F16PipelineMakesTheWholeChainFloat16) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 3, 64] a) => (float[1, 3, 32] y) {
      h = MatMul(a, w)
      y = Relu(h)
    })");
  testing::set_floats(proto, "w", {64, 32}, testing::random_floats(64 * 32, 5));
  Model model = testing::round_trip(proto);
  Options options;
  auto results = run_pipeline(model, Mode::kQ4F16, options);
  ASSERT_EQ(results.size(), 4u);  // widen (nothing to do), fold, matmul_nbits, float16
  EXPECT_EQ(results[1].pass, "fold");
  const auto& g = model.proto.graph();
  expect_well_formed(g);
  const auto* nbits = testing::find_node(g, "MatMulNBits");
  ASSERT_NE(nbits, nullptr);
  EXPECT_EQ(find_initializer(g, nbits->input(2))->data_type(), onnx::TensorProto::FLOAT16);
  EXPECT_EQ(count_ops(g, "Cast"), 2);  // a -> f16, y -> f32
  bool provenance = false;
  for (const auto& p : model.proto.metadata_props()) provenance |= p.key() == "quantize.mode";
  EXPECT_TRUE(provenance);
}

// A bfloat16 model: its values computed in float32 (exact conversions), its inputs and outputs
// still bfloat16; the executor runs both, and they agree within bfloat16's rounding.
TEST(Widen, BfloatModelComputesInFloat32AndKeepsItsInterface) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (bfloat16[2, 8] x) => (bfloat16[2, 4] y, float[2, 4] z) {
      m = MatMul(x, w)
      y = Relu(m)
      c = Cast<to = 1>(m)
      h = Cast<to = 16>(c)
      z = Cast<to = 1>(h)
    })");
  const std::vector<float> w = testing::random_floats(8 * 4, 3);
  std::string raw;
  std::vector<float> w_bf16;  // the values the model holds
  for (float v : w) {
    const uint16_t b = f32_to_bf16_scalar(v);
    raw.append(reinterpret_cast<const char*>(&b), 2);
    w_bf16.push_back(bf16_to_f32_scalar(b));
  }
  auto* t = proto.mutable_graph()->add_initializer();
  t->set_name("w");
  t->set_data_type(onnx::TensorProto::BFLOAT16);
  t->add_dims(8);
  t->add_dims(4);
  t->set_raw_data(raw);
  Model before = testing::round_trip(proto);
  Model model = testing::round_trip(proto);
  PassResult r = make_widen_pass({{onnx::TensorProto::BFLOAT16}})->run(model);
  ASSERT_EQ(r.notes.size(), 1u);
  EXPECT_NE(r.notes[0].find("bfloat16 values computed in float32 (1 tensor(s)"), std::string::npos)
      << r.notes[0];
  const auto& g = model.proto.graph();
  expect_well_formed(g);
  const auto* wide = find_initializer(g, "w");
  ASSERT_NE(wide, nullptr);
  EXPECT_EQ(wide->data_type(), onnx::TensorProto::FLOAT);
  EXPECT_EQ(tensor_floats(model, *wide), w_bf16);  // exact
  EXPECT_EQ(elem_type(g.input(0)), onnx::TensorProto::BFLOAT16);
  EXPECT_EQ(elem_type(g.output(0)), onnx::TensorProto::BFLOAT16);
  EXPECT_EQ(elem_type(g.output(1)), onnx::TensorProto::FLOAT);
  int to_bf16 = 0;
  for (const auto& n : g.node()) {
    if (n.op_type() == "Cast") to_bf16 += int_attr(n, "to") == onnx::TensorProto::BFLOAT16;
  }
  EXPECT_EQ(to_bf16, 1);  // only the cast back at output y
  EXPECT_EQ(count_ops(g, "Cast"), 5);
  const testing::OutputGap gap = testing::output_gap(before, model, 3);
  EXPECT_TRUE(gap.same_shapes);
  EXPECT_LT(gap.max_abs, 0.03);  // z: bfloat16's rounding of m (|m| < 4, half an ulp 2^-7)
  EXPECT_GT(gap.min_cosine, 0.9999);
}

// Dynamic INT8 of a float16 model: computed in float32 around the integer ops, float16 at the
// boundary, close to the float16 model.
TEST(Widen, Float16ModelQuantizesToDynamicInt8) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3, 64] a) => (float[3, 32] y) {
      h = MatMul(a, w)
      y = Relu(h)
    })");
  testing::set_floats(proto, "w", {64, 32}, testing::random_floats(64 * 32, 5));
  Model source = testing::round_trip(proto);
  run_f16(source, /*keep_io=*/false);
  const auto path = testing::temp_dir() / "half.onnx";
  save_model(source, path, {});
  Model half = load_model(path);
  ASSERT_EQ(find_initializer(half.proto.graph(), "w")->data_type(), onnx::TensorProto::FLOAT16);
  Model model = load_model(path);
  Options options;
  run_pipeline(model, Mode::kInt8, options);
  const auto& g = model.proto.graph();
  expect_well_formed(g);
  EXPECT_EQ(count_ops(g, "MatMulInteger"), 1);
  EXPECT_EQ(elem_type(g.input(0)), onnx::TensorProto::FLOAT16);
  EXPECT_EQ(elem_type(g.output(0)), onnx::TensorProto::FLOAT16);
  const testing::OutputGap gap = testing::output_gap(half, model, 3);
  EXPECT_GT(gap.min_cosine, 0.999);
}

}  // namespace
}  // namespace quantize
