// The executor (issue 4, first part): TinyStories LLaMA against its reference logits (a float64
// NumPy forward pass), our own q4 output, the observer hook, and unsupported ops.
#include "quantize/executor.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

#include "executor/core/evaluate.h"
#include "model/tensor_data.h"
#include "passes/passes.h"
#include "quantize/error.h"
#include "quantize/pipeline.h"
#include "test_util.h"

namespace quantize {
namespace {

const std::string kStories = std::string(QUANTIZE_SOURCE_DIR) + "/models/stories260K/";

Tensor read_pb(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  onnx::TensorProto proto;
  EXPECT_TRUE(proto.ParseFromIstream(&in)) << path;
  return tensor_from_proto(Model{}, proto);
}

int argmax(const float* v, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i) best = v[i] > v[best] ? i : best;
  return best;
}

TEST(Executor, TinyStoriesMatchesTheReferenceLogits) {
  Model model = load_model(kStories + "stories260K.onnx");
  Executor executor(model);
  ASSERT_EQ(executor.input_names(), std::vector<std::string>{"input_ids"});
  for (int set = 0; set < 8; ++set) {
    SCOPED_TRACE(set);
    const std::string dir = kStories + "test_data_set_" + std::to_string(set) + "/";
    auto out = executor.run({read_pb(dir + "input_0.pb")});
    const Tensor ref = read_pb(dir + "output_0.pb");
    ASSERT_EQ(out[0].shape(), ref.shape());
    double max_ref = 0, max_err = 0;
    for (int64_t i = 0; i < ref.size(); ++i) {
      max_ref = std::max(max_ref, std::fabs(ref.element_as_double(i)));
      max_err = std::max(max_err, std::fabs(out[0].data<float>()[i] - ref.element_as_double(i)));
    }
    EXPECT_LE(max_err, 1e-4 * max_ref) << "max abs error " << max_err << " of max " << max_ref;
  }
}

TEST(Executor, RunsOurQ4OutputAndKeepsTopTokens) {
  Model model = load_model(kStories + "stories260K.onnx");
  Options options;
  run_pipeline(model, Mode::kQ4, options);
  Executor executor(model);
  int same = 0, total = 0;
  for (int set = 0; set < 8; ++set) {
    const std::string dir = kStories + "test_data_set_" + std::to_string(set) + "/";
    auto out = executor.run({read_pb(dir + "input_0.pb")});
    const Tensor ref = read_pb(dir + "output_0.pb");
    std::vector<float> ref_f(ref.size());
    for (int64_t i = 0; i < ref.size(); ++i)
      ref_f[i] = static_cast<float>(ref.element_as_double(i));
    for (int64_t t = 0; t < ref.size() / 512; ++t) {
      same += argmax(out[0].data<float>() + t * 512, 512) == argmax(ref_f.data() + t * 512, 512);
      ++total;
    }
  }
  // ONNX Runtime keeps 84.64% of the top tokens on this q4 model; the executor must agree.
  EXPECT_GE(static_cast<double>(same) / total, 0.84) << same << " of " << total;
}

TEST(Executor, ObserverSeesEveryValue) {
  Model model = load_model(kStories + "stories260K.onnx");
  Executor executor(model);
  int values = 0;
  bool saw_logits = false;
  executor.run({read_pb(kStories + "test_data_set_0/input_0.pb")},
               [&](const std::string& name, const Tensor& t) {
                 ++values;
                 saw_logits |= name == "logits" && t.rank() == 3;
               });
  int outputs = 0;
  for (const auto& n : model.proto.graph().node()) outputs += n.output_size();
  EXPECT_EQ(values, outputs);
  EXPECT_TRUE(saw_logits);
}

TEST(Executor, UnsupportedOpNamesTheNode) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4, 4] x) => (float[4, 4] y) {
      y = Bernoulli(x)
    })");
  proto.mutable_graph()->mutable_node(0)->set_name("the_node");
  Model model = testing::round_trip(proto);
  try {
    Executor executor(model);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the_node"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("Bernoulli"), std::string::npos) << e.what();
  }
}

TEST(Executor, BroadcastingAndShapeOps) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 3] x, float[3] b) => (float[3, 2] y, int64[2] s) {
      a = Add(x, b)
      y = Transpose <perm = [1, 0]> (a)
      s = Shape(x)
    })");
  Model model = testing::round_trip(proto);
  Executor executor(model);
  Tensor x(onnx::TensorProto::FLOAT, {2, 3}), b(onnx::TensorProto::FLOAT, {3});
  for (int i = 0; i < 6; ++i) x.data<float>()[i] = static_cast<float>(i);
  for (int i = 0; i < 3; ++i) b.data<float>()[i] = 10.0f * static_cast<float>(i);
  auto out = executor.run({x, b});
  // a = [[0, 11, 22], [3, 14, 25]] -> y = [[0, 3], [11, 14], [22, 25]]
  const float want[6] = {0, 3, 11, 14, 22, 25};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(out[0].data<float>()[i], want[i]) << i;
  EXPECT_EQ(out[1].to_int64(), (std::vector<int64_t>{2, 3}));
}

// Opset 21's block-wise DequantizeLinear of 4-bit weights, hand-computed: x INT4 [3, 2] (two
// codes per byte, the first in the low nibble; an odd count leaves half a byte), blocks of 2
// along axis 0, so scale and zero point are [2, 2]; UINT4 zero points.
TEST(Executor, BlockwiseDequantizeLinearOfInt4) {
  auto proto = testing::parse(R"(
    <ir_version: 10, opset_import: ["" : 21]>
    g (float[1] unused) => (float[3, 2] y, float[3, 2] u) {
      y = DequantizeLinear <axis = 0, block_size = 2> (x, scale)
      u = DequantizeLinear <axis = 0, block_size = 2> (xu, scale, zp)
    })");
  auto add = [&](const char* name, int type, std::vector<int64_t> dims, std::string raw) {
    auto* t = proto.mutable_graph()->add_initializer();
    t->set_name(name);
    t->set_data_type(type);
    for (int64_t d : dims) t->add_dims(d);
    t->set_raw_data(raw);
  };
  // x = [[1, -2], [7, -8], [3, 0]]: nibbles 1, 0xE, 7, 8, 3, 0.
  add("x", kInt4, {3, 2}, std::string("\xE1\x87\x03", 3));
  // xu = [[1, 14], [7, 8], [3, 0]] as UINT4: the same bytes.
  add("xu", kUInt4, {3, 2}, std::string("\xE1\x87\x03", 3));
  // zp = [[1, 2], [3, 4]] as UINT4.
  add("zp", kUInt4, {2, 2}, std::string("\x21\x43", 2));
  testing::set_floats(proto, "scale", {2, 2}, {0.5f, 2.0f, 0.25f, 4.0f});
  Model model = testing::round_trip(proto);
  auto out = Executor(model).run({Tensor(onnx::TensorProto::FLOAT, {1})});
  // Rows 0-1 take scale row 0, row 2 takes scale row 1.
  const float want_y[6] = {0.5f, -4.0f, 3.5f, -16.0f, 0.75f, 0.0f};
  const float want_u[6] = {0.0f, 24.0f, 3.0f, 12.0f, 0.0f, -16.0f};
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(out[0].data<float>()[i], want_y[i]) << i;
    EXPECT_EQ(out[1].data<float>()[i], want_u[i]) << i;
  }
}

// Conv against a direct float64 sum over every tap, on shapes that reach each path of the
// executor's convolution: 1x1 (one GEMM on X), 2-D depthwise (strides 1 and 2, padding,
// dilation, rows of 7 to 37 outputs), grouped and k x k (im2col tiles), 1-D and 3-D, output
// channel counts that leave every remainder of the GEMM's 6-row blocks.
struct ConvCase {
  std::vector<int64_t> x, w;
  int64_t group, stride, pad, dilation;
};

std::vector<float> reference_conv(const ConvCase& c, const std::vector<float>& x,
                                  const std::vector<float>& w, const std::vector<float>& b,
                                  std::vector<int64_t>& out_shape) {
  const size_t n = c.x.size() - 2;
  std::vector<int64_t> out(n);
  int64_t spatial = 1, in_size = 1, taps = 1;
  for (size_t i = 0; i < n; ++i) {
    out[i] = (c.x[i + 2] + 2 * c.pad - (c.w[i + 2] - 1) * c.dilation - 1) / c.stride + 1;
    spatial *= out[i], in_size *= c.x[i + 2], taps *= c.w[i + 2];
  }
  out_shape = {c.x[0], c.w[0]};
  out_shape.insert(out_shape.end(), out.begin(), out.end());
  const int64_t cg = c.x[1] / c.group, mg = c.w[0] / c.group;
  std::vector<float> y(static_cast<size_t>(c.x[0] * c.w[0] * spatial));
  for (int64_t bi = 0; bi < c.x[0]; ++bi) {
    for (int64_t m = 0; m < c.w[0]; ++m) {
      for (int64_t o = 0; o < spatial; ++o) {
        double acc = b[m];
        for (int64_t ch = 0; ch < cg; ++ch) {
          for (int64_t t = 0; t < taps; ++t) {
            int64_t in_off = 0, orest = o, trest = t;
            bool inside = true;
            std::vector<int64_t> oi(n), ti(n);
            for (size_t i = n; i-- > 0;)
              oi[i] = orest % out[i], orest /= out[i], ti[i] = trest % c.w[i + 2],
              trest /= c.w[i + 2];
            for (size_t i = 0; i < n; ++i) {
              const int64_t pos = oi[i] * c.stride - c.pad + ti[i] * c.dilation;
              inside &= pos >= 0 && pos < c.x[i + 2];
              in_off = in_off * c.x[i + 2] + pos;
            }
            if (!inside) continue;
            const int64_t in_ch = (m / mg) * cg + ch;
            acc += static_cast<double>(x[(bi * c.x[1] + in_ch) * in_size + in_off]) *
                   w[(m * cg + ch) * taps + t];
          }
        }
        y[(bi * c.w[0] + m) * spatial + o] = static_cast<float>(acc);
      }
    }
  }
  return y;
}

// A Conv of the case's geometry, its output read by `after`; `initializers` (ONNX text
// syntax, without the brackets) declares constants `after` uses.
Model conv_model(const ConvCase& c, const std::string& after,
                 const std::string& initializers = "") {
  const size_t n = c.x.size() - 2;
  std::vector<int64_t> pads(2 * n, c.pad), strides(n, c.stride), dilations(n, c.dilation);
  const std::string text =
      fmt::format(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[{}] x, float[{}] w, float[{}] b) => (float y) {} {{
      c = Conv <group = {}, pads = [{}], strides = [{}], dilations = [{}]> (x, w, b)
      {}
    }})",
                  fmt::join(c.x, ","), fmt::join(c.w, ","), c.w[0],
                  initializers.empty() ? "" : "<" + initializers + ">", c.group,
                  fmt::join(pads, ","), fmt::join(strides, ","), fmt::join(dilations, ","), after);
  return testing::round_trip(testing::parse(text.c_str()));
}

TEST(Executor, ConvMatchesADirectSumOnEveryPath) {
  const std::vector<ConvCase> cases = {
      {{1, 16, 9, 13}, {13, 16, 1, 1}, 1, 1, 0, 1},    // 1x1: one GEMM, 6-row blocks + 1
      {{2, 8, 5, 7}, {11, 8, 1, 1}, 1, 1, 0, 1},       // 1x1, batch 2, remainder 5
      {{1, 6, 14, 37}, {6, 1, 3, 3}, 6, 1, 1, 1},      // depthwise, stride 1
      {{1, 5, 15, 23}, {5, 1, 3, 3}, 5, 2, 1, 1},      // depthwise, stride 2
      {{1, 4, 22, 22}, {4, 1, 5, 5}, 4, 1, 2, 1},      // depthwise 5x5
      {{1, 3, 12, 9}, {3, 1, 3, 3}, 3, 1, 2, 2},       // depthwise, dilation 2
      {{1, 3, 35, 33}, {10, 3, 3, 3}, 1, 2, 1, 1},     // k x k, stride 2 (first layers)
      {{1, 8, 10, 11}, {10, 4, 3, 3}, 2, 1, 1, 1},     // grouped
      {{1, 4, 9, 8}, {4, 4, 3, 3}, 1, 1, 2, 2},        // k x k dilated
      {{1, 8, 12, 12}, {4, 8, 1, 1}, 1, 2, 0, 1},      // 1x1 with stride: im2col
      {{2, 3, 17}, {4, 3, 5}, 1, 1, 2, 1},             // 1-D
      {{1, 2, 5, 6, 7}, {3, 2, 3, 3, 3}, 1, 1, 1, 1},  // 3-D
  };
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  for (const auto& c : cases) {
    SCOPED_TRACE(fmt::format("x [{}] w [{}] group {} stride {} pad {} dilation {}",
                             fmt::join(c.x, ","), fmt::join(c.w, ","), c.group, c.stride, c.pad,
                             c.dilation));
    Tensor x(onnx::TensorProto::FLOAT, c.x), w(onnx::TensorProto::FLOAT, c.w),
        b(onnx::TensorProto::FLOAT, {c.w[0]});
    for (Tensor* t : {&x, &w, &b}) {
      for (int64_t i = 0; i < t->size(); ++i) t->data<float>()[i] = uniform(rng);
    }
    std::vector<int64_t> shape;
    const auto want = reference_conv(c, {x.data<float>(), x.data<float>() + x.size()},
                                     {w.data<float>(), w.data<float>() + w.size()},
                                     {b.data<float>(), b.data<float>() + b.size()}, shape);
    Model model = conv_model(c, "y = Identity(c)");
    auto out = Executor(model).run({x, w, b});
    ASSERT_EQ(out[0].shape(), shape);
    for (int64_t i = 0; i < out[0].size(); ++i)
      ASSERT_NEAR(out[0].data<float>()[i], want[i], 1e-5) << i;
  }
}

// A Relu or Clip that is a Conv's only reader is folded into the Conv when no observer watches;
// the results are the same either way, and an observer still sees the Conv's own output.
TEST(Executor, FusedReluAndClipMatchTheSeparateOps) {
  const ConvCase c{{1, 4, 11, 10}, {7, 4, 3, 3}, 1, 1, 1, 1};
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  Tensor x(onnx::TensorProto::FLOAT, c.x), w(onnx::TensorProto::FLOAT, c.w),
      b(onnx::TensorProto::FLOAT, {7});
  for (Tensor* t : {&x, &w, &b}) {
    for (int64_t i = 0; i < t->size(); ++i) t->data<float>()[i] = uniform(rng);
  }
  // Clip's bounds as initializers: constants the executor can fold into the Conv.
  for (const std::string after : {"y = Relu(c)", "y = Clip(c, lo, hi)"}) {
    SCOPED_TRACE(after);
    Model model =
        conv_model(c, after, after[4] == 'R' ? "" : "float lo = {-0.25}, float hi = {0.5}");
    Executor executor(model);
    const auto fused = executor.run({x, w, b});
    int negatives = 0;
    const auto watched = executor.run({x, w, b}, [&](const std::string& name, const Tensor& t) {
      if (name != "c") return;
      for (int64_t i = 0; i < t.size(); ++i) negatives += t.data<float>()[i] < -0.25f;
    });
    EXPECT_GT(negatives, 0);  // the observer saw the Conv's output before the clamp
    ASSERT_EQ(fused[0].shape(), watched[0].shape());
    float lowest = INFINITY;
    for (int64_t i = 0; i < fused[0].size(); ++i) {
      ASSERT_EQ(fused[0].data<float>()[i], watched[0].data<float>()[i]) << i;
      lowest = std::min(lowest, fused[0].data<float>()[i]);
    }
    EXPECT_GE(lowest, after[4] == 'R' ? 0.0f : -0.25f);
  }
}

// Loop and If run their bodies as subgraphs that read the enclosing graph by name: here the
// body reads `w`, whose only other reader ran before the Loop, so `w` must outlive that reader.
TEST(Executor, LoopAndIfReadTheEnclosingGraph) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3] x, float[3] w, int64 n, bool big) => (float[3] sum, float[4, 3] steps, float[3] picked) {
      w2 = Mul(w, w)
      cond = Constant <value = bool {1}> ()
      sum, steps = Loop (n, cond, x) <body = body (int64 i, bool c, float[3] acc) => (bool c_out, float[3] next, float[3] scan) {
        c_out = Identity(c)
        next = Add(acc, w)
        scan = Identity(next)
      }>
      picked = If (big) <then_branch = then () => (float[3] t) { t = Identity(w2) },
                         else_branch = other () => (float[3] e) { e = Identity(x) }>
    })");
  Model model = testing::round_trip(proto);
  Executor executor(model);
  Tensor x(onnx::TensorProto::FLOAT, {3}), w(onnx::TensorProto::FLOAT, {3}),
      n(onnx::TensorProto::INT64, {}), big(onnx::TensorProto::BOOL, {});
  for (int i = 0; i < 3; ++i)
    x.data<float>()[i] = static_cast<float>(i), w.data<float>()[i] = 1.0f + i;
  n.data<int64_t>()[0] = 4;
  big.data<uint8_t>()[0] = 1;
  auto out = executor.run({x, w, n, big});
  ASSERT_EQ(out[1].shape(), (std::vector<int64_t>{4, 3}));
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(out[0].data<float>()[i], x.data<float>()[i] + 4 * w.data<float>()[i]) << i;
    EXPECT_EQ(out[1].data<float>()[3 + i], x.data<float>()[i] + 2 * w.data<float>()[i]) << i;
    EXPECT_EQ(out[2].data<float>()[i], w.data<float>()[i] * w.data<float>()[i]) << i;
  }
  big.data<uint8_t>()[0] = 0;
  n.data<int64_t>()[0] = 0;
  out = executor.run({x, w, n, big});
  EXPECT_EQ(out[1].shape(), (std::vector<int64_t>{0}));
  for (int i = 0; i < 3; ++i) EXPECT_EQ(out[2].data<float>()[i], x.data<float>()[i]) << i;
}

// The vectorized Tanh and Softmax (polynomial exp) against libm in double precision.
TEST(Executor, TanhAndSoftmaxMatchLibm) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4001] x, float[7, 571] s) => (float[4001] t, float[7, 571] p) {
      t = Tanh(x)
      p = Softmax <axis = -1> (s)
    })");
  Model model = testing::round_trip(proto);
  Tensor x(onnx::TensorProto::FLOAT, {4001}), s(onnx::TensorProto::FLOAT, {7, 571});
  for (int i = 0; i < 4001; ++i) x.data<float>()[i] = (i - 2000) * 0.005f * (i % 3 ? 1.0f : 0.01f);
  x.data<float>()[17] = 1e-30f, x.data<float>()[18] = -60.0f, x.data<float>()[19] = NAN;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uniform(-30.0f, 30.0f);
  for (int64_t i = 0; i < s.size(); ++i) s.data<float>()[i] = uniform(rng);
  auto out = Executor(model).run({x, s});
  for (int i = 0; i < 4001; ++i) {
    const double want = std::tanh(static_cast<double>(x.data<float>()[i]));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(out[0].data<float>()[i])) << i;
      continue;
    }
    EXPECT_NEAR(out[0].data<float>()[i], want, 3e-7 * std::fabs(want) + 1e-38)
        << "tanh(" << x.data<float>()[i] << ")";
  }
  for (int r = 0; r < 7; ++r) {
    const float* row = s.data<float>() + r * 571;
    double top = -INFINITY, sum = 0;
    for (int i = 0; i < 571; ++i) top = std::max(top, static_cast<double>(row[i]));
    for (int i = 0; i < 571; ++i) sum += std::exp(row[i] - top);
    for (int i = 0; i < 571; ++i) {
      const double want = std::exp(row[i] - top) / sum;
      // float32 rounds x - max itself: a relative error up to ~6e-8 |x - max| in e^(x - max).
      const double tolerance = (1e-6 + 6e-8 * (top - row[i])) * want + 1e-30;
      EXPECT_NEAR(out[1].data<float>()[r * 571 + i], want, tolerance) << r << "," << i;
    }
  }
}

// Sequences: split and joined back they give the input; an op that does not take sequences
// refuses one by name instead of reading it as a tensor.
TEST(Executor, SequencesRoundTripAndAreRefusedByOtherOps) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3, 4] x) => (float[3, 4] y, int64 n) {
      s = SplitToSequence <axis = 0> (x)
      n = SequenceLength(s)
      y = ConcatFromSequence <axis = 0> (s)
    })");
  Model model = testing::round_trip(proto);
  Tensor x(onnx::TensorProto::FLOAT, {3, 4});
  for (int i = 0; i < 12; ++i) x.data<float>()[i] = static_cast<float>(i) * 0.5f;
  auto out = Executor(model).run({x});
  ASSERT_EQ(out[0].shape(), x.shape());
  for (int i = 0; i < 12; ++i) EXPECT_EQ(out[0].data<float>()[i], x.data<float>()[i]) << i;
  EXPECT_EQ(out[1].to_int64(), std::vector<int64_t>{3});

  auto bad = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[3, 4] x) => (float[3, 4] y) {
      s = SplitToSequence <axis = 0> (x)
      y = Relu(s)
    })");
  bad.mutable_graph()->mutable_node(1)->set_name("relu_of_a_sequence");
  Model bad_model = testing::round_trip(bad, "bad_sequence.onnx");
  try {
    Executor(bad_model).run({x});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("relu_of_a_sequence"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("sequences"), std::string::npos) << e.what();
  }
}

// evaluate_node, constant folding's entry: one node of a model run as the executor runs it in the
// graph (float16 arithmetic in float32, rounded back); nullopt for what the executor does not
// run (an unknown op, a node with subgraphs, an opset 1-6 form it refuses), an Error for bad
// inputs.
TEST(Executor, EvaluatesSingleNodes) {
  auto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[2, 3] x, float16[3] h, float hi, bool big) => (float[3, 2] y, float[3, 2] t,
        float[3] f, float16[3] d, float[2, 3] clipped, float[2, 3] z, float[2, 3] picked) {
      s = Constant <value = int64[2] {3, 2}> ()
      y = Reshape(x, s)
      t = Transpose <perm = [1, 0]> (x)
      f = Cast <to = 1> (h)
      d = Add(h, h)
      clipped = Clip(x, hi, hi)
      z = Bernoulli(x)
      picked = If (big) <then_branch = then () => (float[2, 3] a) { a = Identity(x) },
                         else_branch = other () => (float[2, 3] b) { b = Neg(x) }>
    })");
  proto.mutable_graph()->mutable_node(5)->set_input(1, "");  // Clip without a lower bound
  const Model model = testing::round_trip(proto);
  const auto& nodes = model.proto.graph().node();
  Tensor x(onnx::TensorProto::FLOAT, {2, 3});
  for (int i = 0; i < 6; ++i) x.data<float>()[i] = static_cast<float>(i);

  const auto shape = evaluate_node(model, nodes[0], {});
  ASSERT_TRUE(shape.has_value());
  ASSERT_EQ(shape->size(), 1u);
  EXPECT_EQ((*shape)[0].to_int64(), (std::vector<int64_t>{3, 2}));
  const auto y = evaluate_node(model, nodes[1], {&x, &(*shape)[0]});
  ASSERT_TRUE(y.has_value());
  EXPECT_EQ((*y)[0].shape(), (std::vector<int64_t>{3, 2}));
  for (int i = 0; i < 6; ++i) EXPECT_EQ((*y)[0].data<float>()[i], static_cast<float>(i)) << i;

  const auto t = evaluate_node(model, nodes[2], {&x});
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ((*t)[0].shape(), (std::vector<int64_t>{3, 2}));
  const float transposed[6] = {0, 3, 1, 4, 2, 5};
  for (int i = 0; i < 6; ++i) EXPECT_EQ((*t)[0].data<float>()[i], transposed[i]) << i;

  // float16 1.5, -2, 65504 (the largest finite one).
  Tensor h(onnx::TensorProto::FLOAT16, {3});
  const uint16_t half[3] = {0x3E00, 0xC000, 0x7BFF};
  for (int i = 0; i < 3; ++i) h.data<uint16_t>()[i] = half[i];
  const auto f = evaluate_node(model, nodes[3], {&h});
  ASSERT_TRUE(f.has_value());
  ASSERT_EQ((*f)[0].dtype(), onnx::TensorProto::FLOAT);
  const float widened[3] = {1.5f, -2.0f, 65504.0f};
  for (int i = 0; i < 3; ++i) EXPECT_EQ((*f)[0].data<float>()[i], widened[i]) << i;
  // Added in float32 and rounded back: 3, -4, and 131008 overflows to infinity.
  const auto d = evaluate_node(model, nodes[4], {&h, &h});
  ASSERT_TRUE(d.has_value());
  ASSERT_EQ((*d)[0].dtype(), onnx::TensorProto::FLOAT16);
  const uint16_t sums[3] = {0x4200, 0xC400, 0x7C00};
  for (int i = 0; i < 3; ++i) EXPECT_EQ((*d)[0].data<uint16_t>()[i], sums[i]) << i;

  Tensor hi(onnx::TensorProto::FLOAT, {});
  hi.data<float>()[0] = 2.5f;
  const auto clipped = evaluate_node(model, nodes[5], {&x, nullptr, &hi});
  ASSERT_TRUE(clipped.has_value());
  for (int i = 0; i < 6; ++i)
    EXPECT_EQ((*clipped)[0].data<float>()[i], std::min(static_cast<float>(i), 2.5f)) << i;

  Tensor big(onnx::TensorProto::BOOL, {});
  EXPECT_FALSE(evaluate_node(model, nodes[6], {&x}).has_value());    // Bernoulli: not run
  EXPECT_FALSE(evaluate_node(model, nodes[7], {&big}).has_value());  // If: has subgraphs

  Tensor four(onnx::TensorProto::INT64, {1});
  four.data<int64_t>()[0] = 4;
  EXPECT_THROW(evaluate_node(model, nodes[1], {&x, &four}), Error);  // 6 elements into 4

  // Opset 6: Add with the broadcast attribute, whose meaning the executor does not take.
  const auto legacy_proto = testing::parse(R"(
    <ir_version: 3, opset_import: ["" : 6]>
    g (float[2, 3] a, float[3] b) => (float[2, 3] c) {
      c = Add <broadcast = 1> (a, b)
    })");
  const Model legacy = testing::round_trip(legacy_proto, "legacy.onnx");
  Tensor b(onnx::TensorProto::FLOAT, {3});
  EXPECT_FALSE(evaluate_node(legacy, legacy.proto.graph().node(0), {&x, &b}).has_value());
}

}  // namespace
}  // namespace quantize
