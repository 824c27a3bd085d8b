// Helpers for tests that build small models inline (ONNX text syntax) and run passes on them.
#pragma once

#include <onnx/onnx_pb.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

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

}  // namespace quantize::testing
