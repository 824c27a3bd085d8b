// One node run outside a graph, as the executor runs it inside one: for constant folding.
#pragma once

#include <onnx/onnx_pb.h>

#include <optional>
#include <vector>

#include "quantize/executor.h"
#include "quantize/model.h"

namespace quantize {

// Runs one node of `model` on the given inputs (nullptr for an absent optional input), as the
// executor would inside a graph (float16 arithmetic widened to float32 and rounded back, opset
// from the model's imports). Nodes with subgraphs are not supported. Returns std::nullopt when
// the executor has no implementation of the op (or refuses its form); throws Error as the
// executor does for bad inputs.
std::optional<std::vector<Tensor>> evaluate_node(const Model& model, const onnx::NodeProto& node,
                                                 const std::vector<const Tensor*>& inputs);

}  // namespace quantize
