// MatMul -> MatMulNBits on small inline graphs: structure, and every dequantized weight within
// scale/2 of the original (unpacked here by the FORMATS.md layout, not by the kernels).
// One exception is the symmetric format's by design: scale = m / -L maps the block's extreme m
// exactly and spends the extra level on it, so values near -m clamp to (L - 1)|scale| and are
// off by up to |scale| (the reference tools' algorithm; measured on real models end to end).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>

#include "kernels/kernels.h"
#include "model/tensor_data.h"
#include "passes/passes.h"
#include "quantize/executor.h"
#include "quantize/pipeline.h"
#include "test_util.h"

namespace quantize {
namespace {
using testing::count_ops;
using testing::find_initializer;
using testing::find_node;
using testing::int_attr;

std::vector<uint8_t> bytes_of(const Model& m, const onnx::TensorProto& t) {
  PayloadBytes b(tensor_payload(m, t));
  return {b.data(), b.data() + b.size()};
}

std::vector<float> scales_of(const Model& m, const onnx::TensorProto& t) {
  auto raw = bytes_of(m, t);
  std::vector<float> out;
  if (t.data_type() == onnx::TensorProto::FLOAT16) {
    for (size_t i = 0; i < raw.size(); i += 2) {
      out.push_back(f16_to_f32_scalar(static_cast<uint16_t>(raw[i] | raw[i + 1] << 8)));
    }
  } else {
    out.resize(raw.size() / 4);
    std::memcpy(out.data(), raw.data(), raw.size());
  }
  return out;
}

// Checks a MatMulNBits node against the float weight w [K, N].
void expect_dequantizes_to(const Model& m, const onnx::NodeProto& node, const std::vector<float>& w,
                           int64_t k, int64_t n, int bits, int block) {
  const auto& g = m.proto.graph();
  ASSERT_EQ(node.op_type(), "MatMulNBits");
  EXPECT_EQ(node.domain(), "com.microsoft");
  EXPECT_EQ(int_attr(node, "K"), k);
  EXPECT_EQ(int_attr(node, "N"), n);
  EXPECT_EQ(int_attr(node, "bits"), bits);
  EXPECT_EQ(int_attr(node, "block_size"), block);
  const int64_t nb = (k + block - 1) / block, blob = block * bits / 8;
  const auto* b = find_initializer(g, node.input(1));
  const auto* s = find_initializer(g, node.input(2));
  ASSERT_TRUE(b && s);
  EXPECT_EQ(std::vector<int64_t>(b->dims().begin(), b->dims().end()),
            (std::vector<int64_t>{n, nb, blob}));
  EXPECT_EQ(std::vector<int64_t>(s->dims().begin(), s->dims().end()),
            (std::vector<int64_t>{n, nb}));
  auto packed = bytes_of(m, *b);
  auto scales = scales_of(m, *s);
  ASSERT_EQ(packed.size(), static_cast<size_t>(n * nb * blob));
  std::vector<uint8_t> zp_bytes;
  const int64_t zrow = (nb * bits + 7) / 8;
  if (node.input_size() > 3) {
    const auto* z = find_initializer(g, node.input(3));
    ASSERT_TRUE(z);
    EXPECT_EQ(std::vector<int64_t>(z->dims().begin(), z->dims().end()),
              (std::vector<int64_t>{n, zrow}));
    zp_bytes = bytes_of(m, *z);
  }
  for (int64_t col = 0; col < n; ++col) {
    for (int64_t row = 0; row < k; ++row) {
      const int64_t blk = row / block, i = row % block;
      const uint8_t* blob_ptr = packed.data() + (col * nb + blk) * blob;
      int q = bits == 8 ? blob_ptr[i] : (blob_ptr[i / 2] >> (4 * (i % 2))) & 15;
      int zp = 1 << (bits - 1);
      if (!zp_bytes.empty()) {
        uint8_t zb = zp_bytes[col * zrow + blk * bits / 8];
        zp = bits == 8 ? zb : (zb >> (4 * (blk % 2))) & 15;
      }
      const float scale = scales[col * nb + blk];
      const float got = (q - zp) * scale;
      const float want = w[row * n + col];
      // The grid's ends: levels 0 and 2^bits - 1.
      const float lo = std::min(-zp * scale, ((1 << bits) - 1 - zp) * scale);
      const float hi = std::max(-zp * scale, ((1 << bits) - 1 - zp) * scale);
      const float half = std::fabs(scale) / 2;
      const bool clamped = want < lo - half || want > hi + half;
      const float bound = (clamped ? std::fabs(scale) : std::fabs(scale) / 2) * 1.0001f + 1e-7f;
      ASSERT_LE(std::fabs(got - want), bound)
          << "w[" << row << "][" << col << "] = " << want << " dequantized to " << got
          << (clamped ? " (clamped)" : "");
      if (clamped) {
        ASSERT_TRUE(zp == 1 << (bits - 1)) << "only the symmetric format clamps";
      }
    }
  }
}

const char* kTwoMatMuls = R"(
  <ir_version: 8, opset_import: ["" : 17]>
  g (float[1, 3, 100] a, float[100, 20] b) => (float[1, 3, 20] y, float[1, 3, 20] z) {
    y = MatMul(a, w)
    z = MatMul(a, b)
  })";

struct Fixture {
  Model model;
  std::vector<float> w;
};

Fixture two_matmuls(uint32_t seed) {
  auto proto = testing::parse(kTwoMatMuls);
  Fixture f;
  f.w = testing::random_floats(100 * 20, seed, -2, 2);
  testing::set_floats(proto, "w", {100, 20}, f.w);
  f.model = testing::round_trip(proto);
  return f;
}

PassResult run_nbits(Model& model, NBitsConfig config) {
  return make_matmul_nbits_pass(std::move(config))->run(model);
}

struct Case {
  int bits, block;
  bool symmetric, f16_scales;
};

class NBitsFormats : public ::testing::TestWithParam<Case> {};

TEST_P(NBitsFormats, QuantizesConstantWeightAndKeepsRuntimeOne) {
  const Case c = GetParam();
  Fixture f = two_matmuls(7);
  NBitsConfig config;
  config.policy.precision = {c.bits, c.block, c.symmetric};
  config.float16_scales = c.f16_scales;
  PassResult r = run_nbits(f.model, config);
  const auto& g = f.model.proto.graph();
  EXPECT_EQ(r.changed.size(), 1u);
  ASSERT_EQ(r.skipped.size(), 1u);  // z's B is a graph input, not a constant
  EXPECT_NE(r.skipped[0].reason.find("graph input"), std::string::npos) << r.skipped[0].reason;
  EXPECT_EQ(count_ops(g, "MatMulNBits"), 1);
  EXPECT_EQ(count_ops(g, "MatMul"), 1);
  EXPECT_EQ(find_initializer(g, "w"), nullptr) << "the float weight is gone";
  const auto* node = find_node(g, "MatMulNBits");
  EXPECT_EQ(node->input_size(), c.symmetric ? 3 : 4);
  EXPECT_EQ(find_initializer(g, node->input(2))->data_type(),
            c.f16_scales ? onnx::TensorProto::FLOAT16 : onnx::TensorProto::FLOAT);
  bool has_ms = false;
  for (const auto& o : f.model.proto.opset_import()) has_ms |= o.domain() == "com.microsoft";
  EXPECT_TRUE(has_ms);
  if (c.f16_scales) return;  // scale/2 bound holds for the float32 scale that quantized
  expect_dequantizes_to(f.model, *node, f.w, 100, 20, c.bits, c.block);
}

INSTANTIATE_TEST_SUITE_P(All, NBitsFormats,
                         ::testing::Values(Case{4, 32, true, false}, Case{4, 32, false, false},
                                           Case{4, 16, true, false}, Case{4, 128, false, false},
                                           Case{8, 32, true, false}, Case{8, 64, false, false},
                                           Case{4, 32, true, true}));

// An output projection (a MatMul whose result is a graph output) gets 8 bits when the policy
// says so, unless a per-node override decides; a MatMul inside the graph keeps 4. The report
// carries each weight's reconstruction error once the bytes are computed.
TEST(NBits, OutputProjectionKeepsEightBitsUnlessOverridden) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 3, 64] a) => (float[1, 3, 32] y) {
      h = MatMul(a, w1)
      y = MatMul(h, w2)
    })");
  testing::set_floats(proto, "w1", {64, 64}, testing::random_floats(64 * 64, 31));
  testing::set_floats(proto, "w2", {64, 32}, testing::random_floats(64 * 32, 32));
  for (const bool override_head : {false, true}) {
    Model model = testing::round_trip(proto);
    NBitsConfig config;
    config.policy.precision = {4, 32, true};
    config.policy.output_projection_8bit = true;
    if (override_head) config.policy.overrides["y"] = Precision::kQ4;  // node_key: 1st output
    PassResult r = run_nbits(model, config);
    ASSERT_EQ(r.changed.size(), 2u);
    const auto& g = model.proto.graph();
    for (const auto& n : g.node()) {
      ASSERT_EQ(n.op_type(), "MatMulNBits");
      const bool head = n.output(0) == "y";
      EXPECT_EQ(int_attr(n, "bits"), head && !override_head ? 8 : 4) << n.output(0);
    }
    ASSERT_EQ(r.tensors.size(), 2u);
    for (const auto& t : r.tensors) {
      ASSERT_TRUE(t.error);
      EXPECT_TRUE(std::isnan(*t.error)) << "not computed before the bytes are read";
    }
    // Reading the packed bytes computes them, and the error with them.
    for (const auto& t : r.tensors) {
      const auto* packed = find_initializer(g, t.name + (t.to.rfind("q8", 0) == 0 ? "_Q8" : "_Q4"));
      ASSERT_NE(packed, nullptr) << t.name;
      bytes_of(model, *packed);
      EXPECT_GT(*t.error, 0.0) << t.name;
      EXPECT_LT(*t.error, t.to.rfind("q8", 0) == 0 ? 0.01 : 0.2) << t.name;
    }
  }
}

// Tied weights: an embedding table whose transpose is the output projection's weight is stored
// once (the projection's 8-bit packed weight, reshaped for GatherBlockQuantized), and the model
// computes what it did; a table that differs in one value is not tied.
TEST(NBits, TiedEmbeddingAndOutputProjectionShareOneTable) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (int64[2, 3] ids) => (float[2, 3, 16] y) {
      h = Gather(table, ids)
      y = MatMul(h, w)
    })");
  const int64_t v = 16, d = 64;
  const std::vector<float> table = testing::random_floats(v * d, 41);
  std::vector<float> w(d * v);
  for (int64_t r = 0; r < v; ++r) {
    for (int64_t c = 0; c < d; ++c) w[c * v + r] = table[r * d + c];
  }
  for (const bool tied : {true, false}) {
    if (!tied) w[5] += 0.5f;
    testing::set_floats(proto, "table", {v, d}, table);
    testing::set_floats(proto, "w", {d, v}, w);
    const Model before = testing::round_trip(proto);
    Model model = testing::round_trip(proto);
    NBitsConfig config;
    config.policy.precision = {4, 32, true};
    config.policy.output_projection_8bit = true;
    PassResult r = run_nbits(model, config);
    const auto& g = model.proto.graph();
    ASSERT_EQ(r.changed.size(), 2u);
    EXPECT_EQ(r.tensors.size(), tied ? 1u : 2u) << "one packed table when tied";
    EXPECT_EQ(testing::count_ops(g, "Reshape"), tied ? 1 : 0);
    const auto* gather = find_node(g, "GatherBlockQuantized");
    const auto* head = find_node(g, "MatMulNBits");
    ASSERT_TRUE(gather && head);
    EXPECT_EQ(int_attr(*gather, "bits"), tied ? 8 : 4) << "the projection's precision when shared";
    EXPECT_EQ(gather->input(2) == head->input(2), tied) << "the same scales";
    const auto gap = testing::output_gap(before, model, 2, 1, v);
    EXPECT_GT(gap.min_cosine, 0.999);
  }
}

// Gather from a constant table -> GatherBlockQuantized: its packed bytes and scales are the
// hand-computed round-to-nearest ones (symmetric 4-bit: scale = m / -8, m the block's value of
// largest magnitude, code = round(x / scale) + 8, two codes per byte, low nibble first), stored
// [V, D / 2]; the executor gathers the dequantized rows. A table whose rows are not whole blocks
// stays a float Gather, and says why.
TEST(NBits, GatherBecomesGatherBlockQuantizedWithHandComputedBytes) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (int64[2, 3] ids) => (float[2, 3, 64] y, float[2, 3, 40] z) {
      y = Gather(t, ids)
      z = Gather(u, ids)
    })");
  const int64_t v = 6, d = 64;
  const std::vector<float> t = testing::random_floats(v * d, 41);
  testing::set_floats(proto, "t", {v, d}, t);
  testing::set_floats(proto, "u", {v, 40}, testing::random_floats(v * 40, 42));
  Model model = testing::round_trip(proto);
  NBitsConfig config;
  config.policy.precision = {4, 32, true};
  PassResult r = run_nbits(model, config);
  ASSERT_EQ(r.changed.size(), 1u);
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].reason.find("not whole blocks of 32"), std::string::npos)
      << r.skipped[0].reason;
  const auto& g = model.proto.graph();
  const auto* node = find_node(g, "GatherBlockQuantized");
  ASSERT_NE(node, nullptr);
  EXPECT_EQ(node->domain(), "com.microsoft");
  EXPECT_EQ(int_attr(node[0], "bits"), 4);
  EXPECT_EQ(int_attr(node[0], "block_size"), 32);
  EXPECT_EQ(int_attr(node[0], "gather_axis"), 0);
  EXPECT_EQ(int_attr(node[0], "quantize_axis"), 1);
  ASSERT_EQ(node->input_size(), 3);  // symmetric: no zero points (8 by default)
  EXPECT_EQ(node->input(1), "ids");
  const auto* data = find_initializer(g, node->input(0));
  const auto* sc = find_initializer(g, node->input(2));
  ASSERT_TRUE(data && sc);
  EXPECT_EQ(std::vector<int64_t>(data->dims().begin(), data->dims().end()),
            (std::vector<int64_t>{v, d / 2}));
  EXPECT_EQ(std::vector<int64_t>(sc->dims().begin(), sc->dims().end()),
            (std::vector<int64_t>{v, d / 32}));
  const auto bytes = bytes_of(model, *data);
  const auto scales = scales_of(model, *sc);
  std::vector<float> dequantized(v * d);
  for (int64_t row = 0; row < v; ++row) {
    for (int64_t b = 0; b < d / 32; ++b) {
      const float* x = t.data() + row * d + b * 32;
      float m = 0;
      for (int i = 0; i < 32; ++i) {
        if (std::fabs(x[i]) > std::fabs(m)) m = x[i];
      }
      const float scale = m / -8.0f;
      EXPECT_FLOAT_EQ(scales[row * 2 + b], scale);
      for (int i = 0; i < 32; i += 2) {
        auto code = [&](float value) {
          return static_cast<int>(std::clamp(std::nearbyint(value * (1.0f / scale)), -8.0f, 7.0f)) +
                 8;
        };
        const uint8_t want = static_cast<uint8_t>(code(x[i]) | code(x[i + 1]) << 4);
        EXPECT_EQ(bytes[row * 32 + b * 16 + i / 2], want)
            << "row " << row << " value " << b * 32 + i;
        dequantized[row * d + b * 32 + i] = (code(x[i]) - 8) * scale;
        dequantized[row * d + b * 32 + i + 1] = (code(x[i + 1]) - 8) * scale;
      }
    }
  }
  // The executor gathers the dequantized rows.
  Tensor ids(onnx::TensorProto::INT64, {2, 3});
  const int64_t picks[] = {5, 0, 3, 3, 1, 4};
  std::copy(picks, picks + 6, ids.data<int64_t>());
  Executor executor(model);
  const std::vector<Tensor> out = executor.run({ids});
  for (int64_t i = 0; i < 6; ++i) {
    for (int64_t j = 0; j < d; ++j) {
      ASSERT_FLOAT_EQ(out[0].data<float>()[i * d + j], dequantized[picks[i] * d + j]);
    }
  }
}

// A float16 weight is quantized as read (no float32 model copy) into exactly the bytes its
// float32 values give, with float16 scales (in a float16 model, A is float16 too); the report
// says f16.
TEST(NBits, Float16WeightGivesTheBytesOfItsFloat32Values) {
  const char* text = R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[1, 3, 96] a) => (float[1, 3, 24] y, float[1, 3, 96] h) {
      h = Identity(a)
      y = MatMul(a, w)
    })";
  std::vector<float> w = testing::random_floats(96 * 24, 51);
  std::vector<uint16_t> half(w.size());
  kernels().f32_to_f16(w.data(), w.size(), half.data());
  kernels().f16_to_f32(half.data(), half.size(), w.data());  // the values float16 holds
  auto f32 = testing::parse(text);
  testing::set_floats(f32, "w", {96, 24}, w);
  auto f16 = f32;
  for (auto& t : *f16.mutable_graph()->mutable_initializer()) {
    if (t.name() != "w") continue;
    t.set_data_type(onnx::TensorProto::FLOAT16);
    t.set_raw_data(std::string(reinterpret_cast<const char*>(half.data()), half.size() * 2));
  }
  Model a = testing::round_trip(f32, "a.onnx"), b = testing::round_trip(f16, "b.onnx");
  NBitsConfig config;
  config.policy.precision = {4, 32, false};
  PassResult ra = run_nbits(a, config), rb = run_nbits(b, config);
  ASSERT_EQ(rb.changed.size(), 1u) << (rb.skipped.empty() ? "" : rb.skipped[0].reason);
  ASSERT_EQ(rb.tensors.size(), 1u);
  EXPECT_EQ(rb.tensors[0].from, "f16");
  EXPECT_EQ(rb.tensors[0].bytes_before, 96u * 24 * 2);
  const auto* na = find_node(a.proto.graph(), "MatMulNBits");
  const auto* nb = find_node(b.proto.graph(), "MatMulNBits");
  ASSERT_TRUE(na && nb);
  EXPECT_EQ(bytes_of(a, *find_initializer(a.proto.graph(), na->input(1))),
            bytes_of(b, *find_initializer(b.proto.graph(), nb->input(1))));
  EXPECT_EQ(bytes_of(a, *find_initializer(a.proto.graph(), na->input(3))),
            bytes_of(b, *find_initializer(b.proto.graph(), nb->input(3))));  // zero points
  const auto* sb = find_initializer(b.proto.graph(), nb->input(2));
  EXPECT_EQ(sb->data_type(), onnx::TensorProto::FLOAT16);
  const auto sa = scales_of(a, *find_initializer(a.proto.graph(), na->input(2)));
  std::vector<uint16_t> want(sa.size());
  kernels().f32_to_f16(sa.data(), sa.size(), want.data());
  const auto got = bytes_of(b, *sb);
  ASSERT_EQ(got.size(), want.size() * 2);
  EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size()), 0);
}

// A float16 model's Gemm (transB, alpha, beta * C): the bytes of its float32 values, and the
// bias beta * C in float16 (MatMulNBits' bias is of A's type).
TEST(NBits, Float16GemmWithBias) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float16[2, 64] a) => (float16[2, 16] y) {
      y = Gemm <transB = 1, alpha = 0.5, beta = 2.0> (a, b, c)
    })");
  auto to_half = [](std::vector<float> v) {
    std::vector<uint16_t> h(v.size());
    kernels().f32_to_f16(v.data(), v.size(), h.data());
    return h;
  };
  const auto b = to_half(testing::random_floats(16 * 64, 61));
  const auto c = to_half(testing::random_floats(16, 62));
  for (auto [name, dims, values] : {std::tuple{"b", std::vector<int64_t>{16, 64}, &b},
                                    std::tuple{"c", std::vector<int64_t>{16}, &c}}) {
    auto* t = proto.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT16);
    for (int64_t d : dims) t->add_dims(d);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(values->data()), values->size() * 2));
  }
  Model model = testing::round_trip(proto);
  PassResult r = run_nbits(model, {});
  ASSERT_EQ(r.changed.size(), 1u) << (r.skipped.empty() ? "" : r.skipped[0].reason);
  const auto* n = find_node(model.proto.graph(), "MatMulNBits");
  ASSERT_NE(n, nullptr);
  ASSERT_EQ(n->input_size(), 6);
  const auto* bias = find_initializer(model.proto.graph(), n->input(5));
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(bias->data_type(), onnx::TensorProto::FLOAT16);
  const auto got = bytes_of(model, *bias);
  ASSERT_EQ(got.size(), 32u);
  for (int i = 0; i < 16; ++i) {
    uint16_t h;
    std::memcpy(&h, got.data() + 2 * i, 2);
    EXPECT_EQ(f16_to_f32_scalar(h), 2.0f * f16_to_f32_scalar(c[i])) << i;  // exact: times 2
  }
  EXPECT_EQ(find_initializer(model.proto.graph(), n->input(2))->data_type(),
            onnx::TensorProto::FLOAT16);
}

TEST(NBits, ConstantNodeWeightsAndSharedWeights) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 64] a, float[2, 64] b) => (float[2, 16] y, float[2, 16] z) {
      w = Constant <value = float[64, 16] {0.0}> ()
      y = MatMul(a, w)
      z = MatMul(b, w)
    })");
  auto w = testing::random_floats(64 * 16, 9);
  testing::set_constant_floats(proto, 0, w);
  Model model = testing::round_trip(proto);
  PassResult r = run_nbits(model, {});
  const auto& g = model.proto.graph();
  EXPECT_EQ(r.changed.size(), 2u);
  EXPECT_EQ(r.tensors.size(), 1u) << "a shared weight is quantized once";
  EXPECT_EQ(count_ops(g, "Constant"), 0) << "the unused Constant node is removed";
  EXPECT_EQ(count_ops(g, "MatMulNBits"), 2);
  EXPECT_EQ(g.node(0).input(1), g.node(1).input(1));
  expect_dequantizes_to(model, g.node(0), w, 64, 16, 4, 32);
}

TEST(NBits, IncludeExcludeAndIneligibleWeights) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 8] a, float[8] v) => (float[2, 4] y, float[2, 4] z, float[2] u, int32[2, 4] q) {
      y = MatMul(a, w)
      z = MatMul(a, w2)
      u = MatMul(a, v)
      q = MatMul(ai, wi)
    })");
  auto* g = proto.mutable_graph();
  g->mutable_node(0)->set_name("attn/q_proj");
  g->mutable_node(1)->set_name("lm_head");
  testing::set_floats(proto, "w", {8, 4}, testing::random_floats(32, 1));
  testing::set_floats(proto, "w2", {8, 4}, testing::random_floats(32, 2));
  auto* wi = g->add_initializer();
  wi->set_name("wi");
  wi->set_data_type(onnx::TensorProto::INT32);
  wi->add_dims(8);
  wi->add_dims(4);
  for (int i = 0; i < 32; ++i) wi->add_int32_data(i);
  auto* ai = g->add_initializer();
  *ai = *wi;
  ai->set_name("ai");
  Model model = testing::round_trip(proto);
  NBitsConfig config;
  config.policy.filter = NodeFilter("", "lm_head");
  PassResult r = run_nbits(model, config);
  ASSERT_EQ(r.changed.size(), 1u);
  EXPECT_NE(r.changed[0].node.find("attn/q_proj"), std::string::npos);
  std::vector<std::string> reasons;
  for (const auto& s : r.skipped) reasons.push_back(s.reason);
  EXPECT_EQ(reasons.size(), 3u);
  auto has = [&](const char* text) {
    for (const auto& reason : reasons) {
      if (reason.find(text) != std::string::npos) return true;
    }
    return false;
  };
  EXPECT_TRUE(has("--exclude"));
  EXPECT_TRUE(has("graph input"));
  EXPECT_TRUE(has("INT32"));
}

TEST(NBits, GemmHonoursTransBAlphaAndBias) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4, 64] a, float[4, 16] d) => (float[4, 16] y, float[4, 16] z) {
      y = Gemm <transB = 1, alpha = 0.5, beta = 2.0> (a, b, c)
      z = Gemm (a, bt, d)
    })");
  auto b = testing::random_floats(16 * 64, 12);
  testing::set_floats(proto, "b", {16, 64}, b);  // [N, K]
  testing::set_floats(proto, "c", {16}, testing::random_floats(16, 13));
  std::vector<float> bt(64 * 16);  // the same weight as [K, N]
  for (int n = 0; n < 16; ++n) {
    for (int k = 0; k < 64; ++k) bt[k * 16 + n] = b[n * 64 + k];
  }
  testing::set_floats(proto, "bt", {64, 16}, bt);
  Model model = testing::round_trip(proto);
  PassResult r = run_nbits(model, {});
  const auto& g = model.proto.graph();
  ASSERT_EQ(r.changed.size(), 2u);
  EXPECT_EQ(count_ops(g, "Gemm"), 0);
  const onnx::NodeProto *y = nullptr, *z = nullptr;
  for (const auto& n : g.node()) {
    if (n.op_type() == "MatMulNBits" && n.output(0) == "y") y = &n;
    if (n.op_type() == "MatMulNBits") z = n.output(0) == "y" ? z : &n;
  }
  ASSERT_TRUE(y && z);
  ASSERT_EQ(y->input_size(), 6);  // A, B, scales, (no zero points), (no g_idx), bias = beta * C
  EXPECT_EQ(y->input(3), "");
  const auto* bias = find_initializer(g, y->input(5));
  ASSERT_NE(bias, nullptr);
  EXPECT_EQ(tensor_floats(model, *bias)[0], 2.0f * testing::random_floats(16, 13)[0]);
  // Both packings hold the same weight; y's scales also carry alpha = 0.5.
  auto packed_y = bytes_of(model, *find_initializer(g, y->input(1)));
  auto packed_z = bytes_of(model, *find_initializer(g, z->input(1)));
  EXPECT_EQ(packed_y, packed_z);
  auto sy = scales_of(model, *find_initializer(g, y->input(2)));
  auto sz = scales_of(model, *find_initializer(g, z->input(2)));
  for (size_t i = 0; i < sy.size(); ++i) EXPECT_EQ(sy[i], sz[i] * 0.5f);
  // z's C is computed at run time (beta 1): MatMulNBits, then an Add.
  EXPECT_EQ(count_ops(g, "Add"), 1);
  expect_dequantizes_to(model, *z, bt, 64, 16, 4, 32);
}

TEST(NBits, SubgraphMatMulsAreCandidates) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (bool cond, float[2, 64] a) => (float[2, 32] y) {
      y = If (cond) <
        then_branch = then_g () => (float[2, 32] t) { t = MatMul(a, w) },
        else_branch = else_g () => (float[2, 32] e) { e = MatMul(a, w) }
      >
    })");
  auto w = testing::random_floats(64 * 32, 3);
  testing::set_floats(proto, "w", {64, 32}, w);
  Model model = testing::round_trip(proto);
  PassResult r = run_nbits(model, {});
  EXPECT_EQ(r.changed.size(), 2u);
  const auto& then_g = model.proto.graph().node(0).attribute(0).g();
  EXPECT_EQ(then_g.node(0).op_type(), "MatMulNBits");
  EXPECT_EQ(find_initializer(model.proto.graph(), "w"), nullptr);
  // The packed weight lives in the outer graph, beside the float one it replaced.
  expect_dequantizes_to(model, then_g.node(0), w, 64, 32, 4, 32);
}

}  // namespace
}  // namespace quantize

namespace quantize {
namespace {

// The scale search (--algo search): its codes decode through the same kernels as RTN's, and no
// block ends with a larger x^2-weighted squared error than round-to-nearest's, 4 and 8 bits,
// symmetric and asymmetric, on uniform and heavy-tailed (cubed) columns with a partial last
// block; on most blocks it is strictly smaller.
TEST(NBits, ScaleSearchNeverWorseThanRoundToNearest) {
  for (const int bits : {4, 8})
    for (const bool symmetric : {true, false}) {
      const BlockFormat fmt{bits, 32, symmetric};
      const size_t k = 32 * 40 + 7;
      for (const bool heavy : {false, true}) {
        std::vector<float> x = testing::random_floats(k, bits * 10 + heavy);
        if (heavy) {
          for (float& v : x) v = v * v * v;
        }
        const size_t nb = fmt.blocks(k);
        std::vector<uint8_t> p_rtn(nb * fmt.blob_bytes()), p_s(nb * fmt.blob_bytes());
        std::vector<float> s_rtn(nb), s_s(nb), y_rtn(k), y_s(k);
        std::vector<uint8_t> z_rtn(nb), z_s(nb);
        round_to_nearest().quantize(x.data(), k, fmt, nullptr, p_rtn.data(), s_rtn.data(),
                                    z_rtn.data());
        scale_search().quantize(x.data(), k, fmt, nullptr, p_s.data(), s_s.data(), z_s.data());
        kernels().dequantize_blocks(p_rtn.data(), s_rtn.data(), z_rtn.data(), k, fmt, y_rtn.data());
        kernels().dequantize_blocks(p_s.data(), s_s.data(), z_s.data(), k, fmt, y_s.data());
        int better = 0;
        for (size_t b = 0; b < nb; ++b) {
          double e_rtn = 0, e_s = 0;
          for (size_t j = b * 32; j < std::min(k, b * 32 + 32); ++j) {
            const double w = double(x[j]) * x[j];
            e_rtn += w * (x[j] - y_rtn[j]) * (x[j] - y_rtn[j]);
            e_s += w * (x[j] - y_s[j]) * (x[j] - y_s[j]);
          }
          ASSERT_LE(e_s, e_rtn * (1 + 1e-6) + 1e-30)
              << bits << " bits, symmetric " << symmetric << ", block " << b;
          better += e_s < e_rtn * 0.999;
        }
        EXPECT_GT(better, static_cast<int>(nb) / 2)
            << bits << " bits, symmetric " << symmetric << ", heavy " << heavy;
      }
    }
}

// bitsandbytes' codebooks: a value at a codebook level times the block's absmax gets that
// level's code, first code of a pair in the high nibble; the absmax is the scale; values between
// two levels go to the nearer.
TEST(Bnb4, CodebookCodesAreTheNearestLevels) {
  for (int type : {0, 1}) {
    const float* levels = kBnb4Codebooks[type];
    const BlockFormat fmt{4, 16, true};
    std::vector<float> x(16);
    const float absmax = 2.5f;
    for (int c = 0; c < 16; ++c) x[c] = levels[c] * absmax;
    uint8_t packed[8];
    float scale = 0;
    const BlockQuantizer& q = bnb4_codebook(type);
    q.quantize(x.data(), 16, fmt, nullptr, packed, &scale, nullptr);
    EXPECT_EQ(scale, absmax);
    std::vector<float> y(16);
    q.dequantize(packed, &scale, nullptr, 16, fmt, y.data());
    for (int c = 0; c < 16; ++c) {
      const int code = c % 2 == 0 ? packed[c / 2] >> 4 : packed[c / 2] & 15;
      EXPECT_EQ(levels[code], levels[c]) << "type " << type << " code " << c;  // +-0 share
      EXPECT_EQ(y[c], x[c]);
    }
  }
  // NF4: 0.3 * absmax lies between 0.24611 and 0.33792 (midpoint 0.29201): the upper level, 11.
  const BlockFormat fmt{4, 16, true};
  std::vector<float> x(16, 0.0f);
  x[0] = 1.0f;
  x[1] = 0.3f;
  x[2] = 0.29f;  // below the midpoint: level 10
  uint8_t packed[8];
  float scale = 0;
  bnb4_codebook(1).quantize(x.data(), 16, fmt, nullptr, packed, &scale, nullptr);
  EXPECT_EQ(packed[0], (15 << 4) | 11);
  EXPECT_EQ(packed[1] >> 4, 10);
  EXPECT_EQ(packed[1] & 15, 7);  // 0 is NF4's level 7
}

// --nf4's pass: MatMul -> MatMulBnb4 with the flattened [N, K] codes and absmax, 1-D; its output
// in the executor is A times the dequantized weight, close to the float one; a weight whose K is
// not whole blocks takes MatMulNBits' 4 bits.
TEST(Bnb4, MatMulBecomesMatMulBnb4) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 3, 128] a, float[2, 3, 100] b) => (float[2, 3, 8] y, float[2, 3, 8] z) {
      y = MatMul(a, w)
      z = MatMul(b, v)
    })");
  const std::vector<float> w = testing::random_floats(128 * 8, 3);
  testing::set_floats(proto, "w", {128, 8}, w);
  testing::set_floats(proto, "v", {100, 8}, testing::random_floats(100 * 8, 4));
  Model before = testing::round_trip(proto);
  Model model = testing::round_trip(proto);
  NBitsConfig config;
  config.policy.precision = {4, 64, true};
  config.bnb4 = 1;
  PassResult r = run_nbits(model, config);
  const auto& g = model.proto.graph();
  ASSERT_EQ(count_ops(g, "MatMulBnb4"), 1);
  ASSERT_EQ(count_ops(g, "MatMulNBits"), 1);
  ASSERT_EQ(r.changed.size(), 2u);
  EXPECT_NE(r.changed[1].reason.find("K = 100 is not whole blocks"), std::string::npos)
      << r.changed[1].reason;
  const auto* node = find_node(g, "MatMulBnb4");
  EXPECT_EQ(node->domain(), "com.microsoft");
  EXPECT_EQ(int_attr(node[0], "K"), 128);
  EXPECT_EQ(int_attr(node[0], "N"), 8);
  EXPECT_EQ(int_attr(node[0], "block_size"), 64);
  EXPECT_EQ(int_attr(node[0], "quant_type"), 1);
  const auto* b = find_initializer(g, node->input(1));
  const auto* absmax = find_initializer(g, node->input(2));
  ASSERT_TRUE(b && absmax);
  EXPECT_EQ(std::vector<int64_t>(b->dims().begin(), b->dims().end()),
            std::vector<int64_t>{8 * 128 / 2});
  EXPECT_EQ(std::vector<int64_t>(absmax->dims().begin(), absmax->dims().end()),
            std::vector<int64_t>{8 * 128 / 64});
  // Every weight dequantizes (FORMATS: flat index n * K + k) to its nearest level's value.
  const auto packed = bytes_of(model, *b);
  const auto scales = scales_of(model, *absmax);
  for (int64_t n = 0; n < 8; ++n) {
    for (int64_t k = 0; k < 128; ++k) {
      const int64_t i = n * 128 + k;
      const int code = i % 2 == 0 ? packed[i / 2] >> 4 : packed[i / 2] & 15;
      const float s = scales[i / 64];
      const float got = kBnb4Codebooks[1][code] * s, x = w[k * 8 + n];
      for (float level : kBnb4Codebooks[1]) {
        ASSERT_LE(std::fabs(got - x), std::fabs(level * s - x) + 1e-6f) << n << ", " << k;
      }
    }
  }
  const testing::OutputGap gap = testing::output_gap(before, model, 2);
  EXPECT_GT(gap.min_cosine, 0.99);
  EXPECT_TRUE(gap.same_shapes);
}

}  // namespace
}  // namespace quantize

namespace quantize {
namespace {

// --format qdq: the same codes as MatMulNBits, written as standard DequantizeLinear (INT4 / UINT4,
// INT8 / UINT8, block_size, opset 21) feeding the MatMul, Gemm or Gather, which stay: the executor
// gives the MatMulNBits model's outputs. K = 41 (a partial block, an odd number of 4-bit codes),
// a Gemm with transB and alpha, a Gather table.
class NBitsQdq : public ::testing::TestWithParam<std::pair<int, bool>> {};

TEST_P(NBitsQdq, SameWeightsAsMatMulNBits) {
  const auto [bits, symmetric] = GetParam();
  auto proto = testing::parse(R"(
    <ir_version: 10, opset_import: ["" : 21]>
    g (float[3, 64] a, float[3, 41] a2, int64[5] ids) => (float[3, 32] y, float[3, 16] z,
                                                          float[3, 7] y2, float[5, 64] e) {
      y = MatMul(a, w)
      z = Gemm <transB = 1, alpha = 0.5> (a, bt, c)
      y2 = MatMul(a2, w2)
      e = Gather(table, ids)
    })");
  testing::set_floats(proto, "w", {64, 32}, testing::random_floats(64 * 32, 21));
  testing::set_floats(proto, "bt", {16, 64}, testing::random_floats(16 * 64, 22));
  testing::set_floats(proto, "c", {16}, testing::random_floats(16, 23));
  testing::set_floats(proto, "w2", {41, 7}, testing::random_floats(41 * 7, 24));
  testing::set_floats(proto, "table", {10, 64}, testing::random_floats(10 * 64, 25));
  Model nbits = testing::round_trip(proto);
  Model qdq = copy_model(nbits);
  NBitsConfig config;
  config.policy.precision = {bits, 32, symmetric};
  run_nbits(nbits, config);
  config.qdq = true;
  PassResult r = run_nbits(qdq, config);
  ASSERT_EQ(r.changed.size(), 4u);
  const auto& g = qdq.proto.graph();
  EXPECT_EQ(count_ops(g, "DequantizeLinear"), 4);
  EXPECT_EQ(count_ops(g, "MatMul"), 2);
  EXPECT_EQ(count_ops(g, "Gemm"), 1);
  for (const auto& o : qdq.proto.opset_import()) EXPECT_EQ(o.domain(), "") << "standard ops only";
  for (const auto& n : g.node()) {
    EXPECT_EQ(n.domain(), "");
    if (n.op_type() == "Gemm") {
      EXPECT_EQ(attr_float(n, "alpha", 1.0f), 1.0f) << "in the scales";
    }
    if (n.op_type() != "DequantizeLinear") continue;
    const auto* x = find_initializer(g, n.input(0));
    const auto* scales = find_initializer(g, n.input(1));
    ASSERT_TRUE(x && scales);
    EXPECT_EQ(x->data_type(),
              bits == 4 ? (symmetric ? kInt4 : kUInt4)
                        : (symmetric ? onnx::TensorProto::INT8 : onnx::TensorProto::UINT8));
    EXPECT_EQ(n.input_size(), symmetric ? 2 : 3);
    EXPECT_EQ(testing::int_attr(n, "block_size"), 32);
    const int64_t axis = testing::int_attr(n, "axis");
    const int64_t k = x->dims(axis);
    EXPECT_EQ(scales->dims(axis), (k + 31) / 32);
    EXPECT_EQ(scales->dims(1 - axis), x->dims(1 - axis));
    EXPECT_EQ(tensor_payload(qdq, *x)->size(),
              tensor_bytes(x->data_type(), x->dims(0) * x->dims(1)));
  }
  const auto gap = testing::output_gap(nbits, qdq, 2);
  EXPECT_TRUE(gap.same_shapes);
  EXPECT_LE(gap.max_abs, 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Formats, NBitsQdq,
                         ::testing::Values(std::pair{4, true}, std::pair{4, false},
                                           std::pair{8, true}, std::pair{8, false}));

// Below opset 21 (the opset pass could not raise it) the weights stay float, with the reason.
TEST(NBitsQdq, NeedsOpset21) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3, 64] a) => (float[3, 32] y) { y = MatMul(a, w) })");
  testing::set_floats(proto, "w", {64, 32}, testing::random_floats(64 * 32, 21));
  Model model = testing::round_trip(proto);
  NBitsConfig config;
  config.qdq = true;
  PassResult r = run_nbits(model, config);
  EXPECT_TRUE(r.changed.empty());
  ASSERT_EQ(r.skipped.size(), 1u);
  EXPECT_NE(r.skipped[0].reason.find("opset 17"), std::string::npos) << r.skipped[0].reason;
}

}  // namespace
}  // namespace quantize
