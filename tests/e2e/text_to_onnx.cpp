// text_to_onnx IN.txt OUT.onnx: writes the model IN describes in ONNX's textual syntax (the
// test set's small contrib-op graphs, run in ONNX Runtime and in the executor side by side).
#include <onnx/defs/parser.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "quantize/error.h"
#include "quantize/model.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: text_to_onnx IN.txt OUT.onnx\n");
    return 2;
  }
  std::ifstream in(argv[1]);
  std::stringstream text;
  text << in.rdbuf();
  quantize::Model model;
  const auto status = onnx::OnnxParser::Parse(model.proto, text.str().c_str());
  if (!in || !status.IsOK()) {
    std::fprintf(stderr, "%s: %s\n", argv[1], in ? status.ErrorMessage().c_str() : "cannot read");
    return 1;
  }
  try {
    quantize::save_model(model, argv[2], {});
  } catch (const quantize::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
