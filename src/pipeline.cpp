#include "quantize/options.h"

namespace quantize {
namespace {

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

}  // namespace

std::vector<PassResult> run_pipeline(Model& model, Mode mode, const Options& options) {
  std::vector<PassResult> results;
  for (auto& pass : build_pipeline(mode, options)) results.push_back(pass->run(model));
  set_metadata(model.proto, "quantize.version", QUANTIZE_VERSION);
  set_metadata(model.proto, "quantize.mode", mode_info(mode).flag);
  set_metadata(model.proto, "quantize.options", options.describe(mode));
  return results;
}

}  // namespace quantize
