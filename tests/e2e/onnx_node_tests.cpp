// onnx_node_tests DATA_DIR [--list | --all]: runs ONNX's backend node tests
// (DATA_DIR/test_*/model.onnx with test_data_set_*/input_N.pb, output_N.pb) in the executor and
// counts, per op: passed, wrong (outputs beyond rtol 1e-3 / atol 1e-7, ONNX's defaults), refused
// (the executor named an attribute or type it does not handle), skipped (an op it does not run) and
// stale (a listed test whose reference data ONNX has since changed, see stale_tests()). Exits 1
// when any test gives a wrong answer: refusing is allowed, a wrong result never is.
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <map>

#include "quantize/error.h"
#include "quantize/executor.h"

namespace fs = std::filesystem;
using namespace quantize;

struct Counts {
  int passed = 0, wrong = 0, refused = 0, skipped = 0, stale = 0;
  int total() const { return passed + wrong + refused + skipped + stale; }
};

// Tests whose expected outputs ONNX has since regenerated under a changed definition: a
// mismatch there is reported as "stale", and never counts as passed.
const std::map<std::string, std::string>& stale_tests() {
  static const std::map<std::string, std::string> stale = {
      {"test_cast_FLOAT_to_BFLOAT16",
       "ONNX 1.12 made this data by truncating to bfloat16; ONNX 1.13+ and "
       "ONNX Runtime round to nearest even, as the executor does (onnx/onnx#3876)"},
      {"test_castlike_FLOAT_to_BFLOAT16", "as test_cast_FLOAT_to_BFLOAT16"},
      {"test_castlike_FLOAT_to_BFLOAT16_expanded", "as test_cast_FLOAT_to_BFLOAT16"},
  };
  return stale;
}

// The op families of the executor issue, for the per-family table. A test belongs to the op its
// folder is named after (test_reduce_sum_... -> ReduceSum; the longest op name that prefixes
// it, underscores ignored; "_expanded" variants count with their op).
const std::map<std::string, std::vector<std::string>>& families() {
  static const std::map<std::string, std::vector<std::string>> f = {
      {"element-wise and activations", {"Abs",         "Acos",        "Acosh",
                                        "Add",         "And",         "Asin",
                                        "Asinh",       "Atan",        "Atanh",
                                        "BitShift",    "Ceil",        "Celu",
                                        "Clip",        "Cos",         "Cosh",
                                        "Div",         "Elu",         "Equal",
                                        "Erf",         "Exp",         "Floor",
                                        "Gelu",        "Greater",     "GreaterOrEqual",
                                        "HardSigmoid", "HardSwish",   "Hardmax",
                                        "IsInf",       "IsNaN",       "LeakyRelu",
                                        "Less",        "LessOrEqual", "Log",
                                        "LogSoftmax",  "Max",         "Mean",
                                        "Min",         "Mish",        "Mod",
                                        "Mul",         "Neg",         "Not",
                                        "Or",          "Pow",         "PRelu",
                                        "Reciprocal",  "Relu",        "Round",
                                        "Selu",        "Shrink",      "Sigmoid",
                                        "Sign",        "Sin",         "Sinh",
                                        "Softmax",     "Softplus",    "Softsign",
                                        "Sqrt",        "Sub",         "Sum",
                                        "Tan",         "Tanh",        "ThresholdedRelu",
                                        "Where",       "Xor"}},
      {"normalization",
       {"BatchNormalization", "LayerNormalization", "InstanceNormalization", "GroupNormalization",
        "LpNormalization", "MeanVarianceNormalization", "LRN"}},
      {"pooling",
       {"AveragePool", "MaxPool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "MaxUnpool",
        "MaxRoiPool"}},
      {"convolution", {"Conv", "ConvTranspose", "DeformConv"}},
      {"shape and indexing",
       {"Shape",
        "Size",
        "Reshape",
        "Flatten",
        "Transpose",
        "Squeeze",
        "Unsqueeze",
        "Concat",
        "Split",
        "Slice",
        "Gather",
        "GatherElements",
        "GatherND",
        "Scatter",
        "ScatterElements",
        "ScatterND",
        "Expand",
        "Tile",
        "Pad",
        "DepthToSpace",
        "SpaceToDepth",
        "Range",
        "ConstantOfShape",
        "Compress",
        "NonZero",
        "OneHot",
        "Trilu",
        "Resize",
        "Upsample",
        "Identity",
        "Cast",
        "CastLike",
        "ReverseSequence",
        "EyeLike",
        "TopK",
        "Unique"}},
      {"reductions",
       {"ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin", "CumSum"}},
      {"recurrent", {"RNN", "GRU", "LSTM"}},
      {"quantization",
       {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger",
        "ConvInteger", "QLinearConv", "QLinearMatMul"}},
  };
  return f;
}

std::string squash(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch != '_') out += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  return out;
}

// The family of a test folder, or "" when its op is in none.
std::string family_of(const std::string& dir_name) {
  const std::string name = squash(dir_name.rfind("test_", 0) == 0 ? dir_name.substr(5) : dir_name);
  std::string best_family;
  size_t best = 0;
  for (const auto& [family, ops] : families()) {
    for (const auto& op : ops) {
      const std::string key = squash(op);
      if (key.size() > best && name.compare(0, key.size(), key) == 0)
        best = key.size(), best_family = family;
    }
  }
  return best_family;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: onnx_node_tests DATA_DIR [--list]\n");
    return 2;
  }
  const bool list = argc > 2 && std::string(argv[2]) == "--list";
  const bool all = argc > 2 && std::string(argv[2]) == "--all";  // ops it does not run too
  std::vector<fs::path> dirs;
  for (const auto& e : fs::directory_iterator(argv[1])) {
    if (e.is_directory() && fs::exists(e.path() / "model.onnx")) dirs.push_back(e.path());
  }
  std::sort(dirs.begin(), dirs.end());
  std::map<std::string, Counts> by_op, by_family;
  Counts total;
  for (const auto& dir : dirs) {
    std::string op = "?", outcome, detail;
    try {
      Model model = load_model(dir / "model.onnx");
      if (model.proto.graph().node_size() > 0) op = model.proto.graph().node(0).op_type();
      try {
        Executor executor(model);
        outcome = "passed";
        for (const auto& set : test_data_dirs(dir)) {
          const auto& graph = model.proto.graph();
          auto inputs = read_test_inputs(set, executor.input_names().size(),
                                         declared_types(graph, executor.input_names()));
          auto outputs = executor.run(inputs);
          auto expected = read_test_outputs(set, declared_types(graph, executor.output_names()));
          for (size_t i = 0; i < expected.size() && i < outputs.size(); ++i) {
            if (!compare(outputs[i], expected[i], 1e-3, 1e-7).within) {
              outcome = "wrong";
              detail = fmt::format("output {} of {}", i, set.filename().string());
            }
          }
        }
      } catch (const Error& e) {
        const std::string what = e.what();
        outcome = what.find("which the executor does not run") != std::string::npos ? "skipped"
                                                                                    : "refused";
        detail = what;
      }
    } catch (const Error& e) {
      outcome = "refused";
      detail = e.what();
    }
    if (outcome == "wrong" && stale_tests().count(dir.filename().string())) {
      outcome = "stale";
      detail = stale_tests().at(dir.filename().string());
    }
    Counts& f = by_family[family_of(dir.filename().string())];
    if (outcome == "passed")
      ++f.passed;
    else if (outcome == "wrong")
      ++f.wrong;
    else if (outcome == "refused")
      ++f.refused;
    else if (outcome == "stale")
      ++f.stale;
    else
      ++f.skipped;
    Counts& c = by_op[op];
    if (outcome == "passed")
      ++c.passed, ++total.passed;
    else if (outcome == "wrong")
      ++c.wrong, ++total.wrong;
    else if (outcome == "refused")
      ++c.refused, ++total.refused;
    else if (outcome == "stale")
      ++c.stale, ++total.stale;
    else
      ++c.skipped, ++total.skipped;
    if (list && outcome != "passed") {
      std::printf("%-8s %-28s %s: %s\n", outcome.c_str(),
                  family_of(dir.filename().string()).c_str(), dir.filename().c_str(),
                  detail.substr(0, 160).c_str());
    }
  }
  std::printf("%-28s %6s %6s %7s %7s %6s\n", "op", "passed", "wrong", "refused", "skipped",
              "stale");
  for (const auto& [op, c] : by_op) {
    if (!all && c.passed + c.wrong + c.refused + c.stale == 0)
      continue;  // ops the executor does not run
    std::printf("%-28s %6d %6d %7d %7d %6d\n", op.c_str(), c.passed, c.wrong, c.refused, c.skipped,
                c.stale);
  }
  std::printf("\n%-30s %6s %6s %7s %7s %6s %6s\n", "family", "passed", "wrong", "refused",
              "skipped", "stale", "pass%");
  for (const auto& [family, c] : by_family) {
    if (family.empty() || c.total() == 0) continue;
    std::printf("%-30s %6d %6d %7d %7d %6d %5.1f%%\n", family.c_str(), c.passed, c.wrong, c.refused,
                c.skipped, c.stale, 100.0 * c.passed / c.total());
  }
  std::printf(
      "node tests: %d passed, %d wrong, %d refused, %d skipped (op not supported), %d stale "
      "(reference data since changed)\n",
      total.passed, total.wrong, total.refused, total.skipped, total.stale);
  return total.wrong == 0 ? 0 : 1;
}
