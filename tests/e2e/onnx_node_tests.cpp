// onnx_node_tests DATA_DIR [--list | --all]: runs ONNX's backend node tests (DATA_DIR/test_*/model.onnx
// with test_data_set_*/input_N.pb, output_N.pb) in the executor and counts, per op: passed,
// wrong (outputs beyond rtol 1e-3 / atol 1e-7, ONNX's defaults), refused (the executor named an
// attribute or type it does not handle) and skipped (an op it does not run). Exits 1 when any
// test gives a wrong answer: refusing is allowed, a wrong result never is.
#include <cstdio>
#include <filesystem>
#include <map>

#include "quantize/error.h"
#include "quantize/executor.h"

namespace fs = std::filesystem;
using namespace quantize;

struct Counts {
  int passed = 0, wrong = 0, refused = 0, skipped = 0;
};

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
  std::map<std::string, Counts> by_op;
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
          auto outputs = executor.run(read_test_inputs(set, executor.input_names().size()));
          auto expected = read_test_outputs(set);
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
    Counts& c = by_op[op];
    if (outcome == "passed") ++c.passed, ++total.passed;
    else if (outcome == "wrong") ++c.wrong, ++total.wrong;
    else if (outcome == "refused") ++c.refused, ++total.refused;
    else ++c.skipped, ++total.skipped;
    if (list && outcome != "passed" && outcome != "skipped") {
      std::printf("%-8s %s: %s\n", outcome.c_str(), dir.filename().c_str(), detail.substr(0, 160).c_str());
    }
  }
  std::printf("%-28s %6s %6s %7s %7s\n", "op", "passed", "wrong", "refused", "skipped");
  for (const auto& [op, c] : by_op) {
    if (!all && c.passed + c.wrong + c.refused == 0) continue;  // ops the executor does not run
    std::printf("%-28s %6d %6d %7d %7d\n", op.c_str(), c.passed, c.wrong, c.refused, c.skipped);
  }
  std::printf("node tests: %d passed, %d wrong, %d refused, %d skipped (op not supported)\n",
              total.passed, total.wrong, total.refused, total.skipped);
  return total.wrong == 0 ? 0 : 1;
}
