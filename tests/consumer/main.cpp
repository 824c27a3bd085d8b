// Quantizes the library's built-in model with --q4 through the public API and prints what the
// passes did: "matmul_nbits: N changed".
#include <quantize/model.h>
#include <quantize/options.h>
#include <quantize/pipeline.h>

#include <cstdio>

int main() {
  quantize::Model model = quantize::load_embedded_model();
  quantize::Options options;
  options.modes = {quantize::Mode::kQ4};
  for (const auto& pass : quantize::run_pipeline(model, quantize::Mode::kQ4, options)) {
    std::printf("%s: %zu changed\n", pass.pass.c_str(), pass.changed.size());
  }
  return 0;
}
