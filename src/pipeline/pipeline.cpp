#include "quantize/pipeline.h"

#include <chrono>

#include "graph/graph.h"
#include "passes/passes.h"
#include "quantize/error.h"
#include "quantize/log.h"

namespace quantize {

void set_metadata(onnx::ModelProto& model, const std::string& key, const std::string& value) {
  for (auto& entry : *model.mutable_metadata_props()) {
    if (entry.key() == key) {
      entry.set_value(value);
      return;
    }
  }
  auto* entry = model.add_metadata_props();
  entry->set_key(key);
  entry->set_value(value);
}

std::string get_metadata(const onnx::ModelProto& model, const std::string& key) {
  for (const auto& entry : model.metadata_props()) {
    if (entry.key() == key) return entry.value();
  }
  return "";
}

namespace {}  // namespace

std::vector<PassResult> run_passes(Model& model, Mode mode, const Options& options,
                                   const RunData& data, const Precisions& precisions) {
  // Opsets before 7 broadcast by attribute and spell several ops differently; the passes emit
  // opset 7+ forms. (The executor runs such models where their ops mean the same.)
  const int opset = opset_of(model.proto, "");
  if (opset == 0) {
    fail(ExitCode::kInput,
         "{}: the model imports no default-domain (ai.onnx) opset: none of its ops is one this "
         "tool quantizes",
         model.source);
  }
  if (opset < 7) {
    fail(ExitCode::kInput,
         "{}: default-domain opset {} is not supported for quantization (7 to 21 are)",
         model.source, opset);
  }
  std::vector<PassResult> results;
  for (auto& pass : build_pipeline(mode, options, data, precisions)) {
    const auto start = std::chrono::steady_clock::now();
    results.push_back(pass->run(model));
    log().debug("{} pass {}: {} node(s) changed, {} kept, {:.3f} s", mode_info(mode).flag,
                pass->name(), results.back().changed.size(), results.back().skipped.size(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  set_metadata(model.proto, "quantize.version", QUANTIZE_VERSION);
  set_metadata(model.proto, "quantize.mode", mode_info(mode).flag);
  set_metadata(model.proto, "quantize.options", options.describe(mode));
  // Which new values stand for which of the float model's ("quantize diff" reads it): one
  // "new<TAB>float" line each.
  std::string map;
  for (const auto& r : results) {
    for (const auto& [made, source] : r.stands_for) map += made + "\t" + source + "\n";
  }
  if (!map.empty()) set_metadata(model.proto, kTensorMapKey, map);
  return results;
}

std::vector<PassResult> run_pipeline(Model& model, Mode mode, const Options& options) {
  Options no_verify = options;
  no_verify.verify = Options::Verify::kNever;
  return run_passes(model, mode, options, open_run_data(no_verify, model));
}

}  // namespace quantize
