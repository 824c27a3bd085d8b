// Running a mode over a loaded model.
#pragma once

#include <string>
#include <vector>

#include "quantize/model.h"
#include "quantize/options.h"
#include "quantize/pass.h"

namespace quantize {

// The metadata_props key of the map from values a mode made to the float values they stand for.
inline constexpr char kTensorMapKey[] = "quantize.tensor_map";

// metadata_props[key] = value (added, or replaced).
void set_metadata(onnx::ModelProto& model, const std::string& key, const std::string& value);
// metadata_props[key], or "" when absent.
std::string get_metadata(const onnx::ModelProto& model, const std::string& key);

// Runs the mode's passes over the model and records provenance (tool version, mode, options) in
// its metadata_props.
std::vector<PassResult> run_pipeline(Model& model, Mode mode, const Options& options);

}  // namespace quantize
