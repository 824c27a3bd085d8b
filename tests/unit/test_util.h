// Helpers for tests that build small models inline (ONNX text syntax) and run passes on them.
#pragma once

#include <onnx/onnx_pb.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "calibration/calibrate.h"
#include "passes/passes.h"
#include "quantize/executor.h"
#include "quantize/model.h"

namespace quantize::testing {

// A fresh empty folder under the system temp folder, removed at exit of the test binary.
std::filesystem::path temp_dir();

// Parses ONNX text syntax into a model; fails the test on a parse error.
onnx::ModelProto parse(const char* text);

// Sets the named initializer to `values` (raw_data) with the given dims.
void set_floats(onnx::ModelProto& model, const std::string& name, const std::vector<int64_t>& dims,
                const std::vector<float>& values);

// Sets the `value` tensor of the graph's node `index` (a Constant) to `values`, keeping its dims.
void set_constant_floats(onnx::ModelProto& model, int index, const std::vector<float>& values);

std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1, float hi = 1);

// Saves through the real writer and loads through the real loader.
Model round_trip(const onnx::ModelProto& proto, const std::string& name = "model.onnx");

const onnx::TensorProto* find_initializer(const onnx::GraphProto& graph, const std::string& name);
const onnx::NodeProto* find_node(const onnx::GraphProto& graph, const std::string& op_type);
int count_ops(const onnx::GraphProto& graph, const std::string& op_type);
int64_t int_attr(const onnx::NodeProto& node, const std::string& name, int64_t fallback = -1);

// --- running a graph before and after a pass (ONNX Runtime's TransformerTester pattern) ---

// Random inputs for a model's fed inputs from their declared types and shapes (symbolic dims 1):
// floats (float16 and bfloat16 too) uniform in [-1, 1), integers in [0, int_hi), bools 0/1.
std::vector<Tensor> random_inputs(const Model& model, uint32_t seed, int64_t int_hi = 4);

// How far a rewritten model's outputs are from the original's on the same inputs.
struct OutputGap {
  double max_abs = 0;     // over all float outputs
  double min_cosine = 1;  // the worst float output
  bool same_shapes = true;
  bool same_others = true;  // non-float outputs identical
};
// Runs both models in the executor on `samples` random input sets.
OutputGap output_gap(const Model& before, const Model& after, int samples = 2, uint32_t seed = 1,
                     int64_t int_hi = 4);

// A static-INT8 calibrator over `count` random input sets (seeds seed, seed + 1, ...): min/max
// ranges and per-channel statistics (axis 1).
Calibrator random_calibrator(size_t count, uint32_t seed, int64_t int_hi = 4);

// The second-moment matrix (GramCollector's) of `rows` x `k` activations.
Gram gram_of(const std::vector<float>& a, int64_t rows, int64_t k);

}  // namespace quantize::testing
