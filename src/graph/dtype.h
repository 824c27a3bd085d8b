// Element types of the values of a graph: from the model's declarations (inputs, outputs,
// value_info, initializers), ONNX shape inference where it applies, and per-op rules for the
// rest (including the com.microsoft ops this tool writes). Unknown values are absent.
#pragma once

#include <onnx/onnx_pb.h>

#include <string>
#include <unordered_map>

namespace quantize {

using TypeMap = std::unordered_map<std::string, int>;  // value name -> TensorProto::DataType

// Types of the values of the main graph (names its subgraphs read come from it too).
TypeMap infer_types(const onnx::ModelProto& model);

}  // namespace quantize
