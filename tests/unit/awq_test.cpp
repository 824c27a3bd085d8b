// AWQ: the scale search against a direct computation of the output error in double, a planted
// case where scaling must win, and the pass's rewrite (the division by s folded into an RMSNorm-
// like Mul, or a Mul of its own) keeping the float function.
#include "passes/awq.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"
#include "passes/passes.h"
#include "test_util.h"

namespace quantize {
namespace {
using testing::gram_of;

// rows x K activations whose channels 3, 17, 40, ... (every 13th) are 20x the others: the
// salient channels AWQ protects.
std::vector<float> salient_activations(int64_t rows, int64_t k, uint32_t seed) {
  std::vector<float> a = testing::random_floats(rows * k, seed);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 3; i < k; i += 13) a[r * k + i] *= 20.0f;
  }
  return a;
}

// sum over columns of d^T H d, d = Q(s w) / s - w, all in double but the quantizer's own work.
double direct_error(const Gram& h, const AwqColumns& w, const std::vector<float>& s,
                    const BlockQuantizer& quantizer) {
  const int64_t k = h.k;
  const std::vector<float> ms = h.mean_square();
  std::vector<float> importance(k), scaled(k), y(k), scales(w.format.blocks(k));
  for (int64_t j = 0; j < k; ++j) importance[j] = ms[j] / (s[j] * s[j]);
  std::vector<uint8_t> packed(w.format.blocks(k) * w.format.blob_bytes());
  double total = 0;
  for (int64_t c = 0; c < w.count; ++c) {
    const float* x = w.values.data() + c * k;
    for (int64_t j = 0; j < k; ++j) scaled[j] = x[j] * s[j];
    quantizer.quantize(scaled.data(), k, w.format, importance.data(), packed.data(), scales.data(),
                       nullptr);
    kernels().dequantize_blocks(packed.data(), scales.data(), nullptr, k, w.format, y.data());
    std::vector<double> d(k);
    for (int64_t j = 0; j < k; ++j) d[j] = double(y[j]) / s[j] - x[j];
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) total += d[i] * double(h.sum[i * k + j]) * d[j];
    }
  }
  return total;
}

TEST(Awq, SearchMatchesDirectErrorAndProtectsSalientChannels) {
  const int64_t k = 96, rows = 256;
  const Gram h = gram_of(salient_activations(rows, k, 5), rows, k);
  AwqColumns w;
  w.format = {4, 32, true};
  w.count = 24;
  w.values = testing::random_floats(w.count * k, 6);
  const AwqChoice choice = awq_search(h, {w}, scale_search());
  ASSERT_EQ(choice.scales.size(), static_cast<size_t>(k));
  EXPECT_GT(choice.alpha, 0.0) << "scaling the salient channels must win here";
  EXPECT_LT(choice.error, 0.8 * choice.unscaled_error);
  // Normalised: max(s) min(s) = 1; salient channels scaled up.
  const auto [lo, hi] = std::minmax_element(choice.scales.begin(), choice.scales.end());
  EXPECT_NEAR(double(*lo) * *hi, 1.0, 1e-4);
  EXPECT_GT(choice.scales[3], choice.scales[4]);
  // The errors it compared are the output errors, computed directly.
  EXPECT_NEAR(choice.error, direct_error(h, w, choice.scales, scale_search()), 1e-3 * choice.error);
  EXPECT_NEAR(choice.unscaled_error,
              direct_error(h, w, std::vector<float>(k, 1.0f), scale_search()),
              1e-3 * choice.unscaled_error);
}

TEST(Awq, UniformChannelsNeedNoScaling) {
  // Channels of one size: whatever alpha wins, every s stays near 1, and the choice is never
  // worse than not scaling.
  const int64_t k = 64, rows = 128;
  const Gram h = gram_of(testing::random_floats(rows * k, 8), rows, k);
  AwqColumns w;
  w.format = {4, 32, false};
  w.count = 16;
  w.values = testing::random_floats(w.count * k, 9);
  const AwqChoice choice = awq_search(h, {w}, scale_search());
  EXPECT_LE(choice.error, choice.unscaled_error);
  for (float s : choice.scales) EXPECT_NEAR(s, 1.0f, 0.25f);
}

// The pass: a Mul by constants (an RMSNorm's weight) feeding two MatMuls gets the division folded
// in; a Relu feeding one gets a Mul of its own. At 8 bits the quantization error is small, so the
// outputs must stay those of the float model: a scale applied the wrong way round would not.
TEST(Awq, PassFoldsOrInsertsTheDivisionAndKeepsTheFunction) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4, 64] x) => (float[4, 16] y1, float[4, 16] y2, float[4, 16] y3) {
      n = Mul(x, gamma)
      y1 = MatMul(n, w1)
      y2 = MatMul(n, w2)
      r = Relu(x)
      y3 = MatMul(r, w3)
    })");
  const int64_t k = 64;
  const std::vector<float> gamma = testing::random_floats(k, 1, 0.5f, 1.5f);
  testing::set_floats(proto, "gamma", {k}, gamma);
  testing::set_floats(proto, "w1", {k, 16}, testing::random_floats(k * 16, 2));
  testing::set_floats(proto, "w2", {k, 16}, testing::random_floats(k * 16, 3));
  testing::set_floats(proto, "w3", {k, 16}, testing::random_floats(k * 16, 4));
  const Model before = testing::round_trip(proto);
  for (int bits : {8, 4}) {
    Model model = testing::round_trip(proto);
    NBitsConfig config;
    config.policy.precision = {bits, 32, true};
    config.quantizer = &scale_search();
    config.awq = true;
    std::set<std::string> asked;
    config.statistics = [&](const Model&, const std::set<std::string>& names) {
      asked = names;
      InputStatisticsMap out;
      for (const auto& name : names) {
        auto s = std::make_shared<InputStatistics>();
        auto g = std::make_shared<Gram>(gram_of(salient_activations(256, k, 7), 256, k));
        s->mean_square = g->mean_square();
        s->gram = std::move(g);
        out[name] = std::move(s);
      }
      return out;
    };
    PassResult r = make_matmul_nbits_pass(config)->run(model);
    EXPECT_EQ(asked, (std::set<std::string>{"n", "r"}));
    const auto& g = model.proto.graph();
    ASSERT_EQ(testing::count_ops(g, "MatMulNBits"), 3);
    ASSERT_EQ(testing::count_ops(g, "Mul"), 2) << "the RMSNorm-like Mul, and one for Relu's output";
    const onnx::NodeProto* norm = nullptr;
    for (const auto& node : g.node()) {
      if (node.op_type() == "Mul" && node.input(0) == "x") norm = &node;
      if (node.op_type() == "MatMulNBits" && node.output(0) == "y3") {
        EXPECT_EQ(node.input(0), "r_awq");
      }
      if (node.op_type() == "MatMulNBits" && node.output(0) != "y3") {
        EXPECT_EQ(node.input(0), "n") << "folded: the MatMuls read the Mul's output as before";
      }
    }
    ASSERT_NE(norm, nullptr);
    EXPECT_NE(norm->input(1), "gamma") << "gamma / s, a new initializer";
    ASSERT_FALSE(r.notes.empty());
    EXPECT_NE(r.notes.back().find("2 of 2 weight inputs scaled (1 folded"), std::string::npos)
        << r.notes.back();
    for (const auto& t : r.tensors) EXPECT_NE(t.to.find("awq"), std::string::npos) << t.to;
    const auto gap = testing::output_gap(before, model, 3);
    if (bits == 8) {
      EXPECT_GT(gap.min_cosine, 0.9999);
    } else {
      EXPECT_GT(gap.min_cosine, 0.99);
    }
  }
}

}  // namespace
}  // namespace quantize
