// evaluate_node: one node through the executor's own steps (core/node.h) and op registry.
#include "executor/core/evaluate.h"

#include "executor/core/node.h"
#include "executor/core/ops.h"
#include "graph/graph.h"
#include "quantize/error.h"

namespace quantize {

std::optional<std::vector<Tensor>> evaluate_node(const Model& model, const onnx::NodeProto& node,
                                                 const std::vector<const Tensor*>& inputs) {
  const exec::OpFn op = exec::find_op(node);
  if (!op || !exec::legacy_refusal(model, node).empty()) return std::nullopt;
  // If, Loop, Scan, SequenceMap: their bodies read the enclosing graph, which is not here.
  for (const auto& a : node.attribute()) {
    if (a.has_g() || a.graphs_size() > 0) return std::nullopt;
  }
  if (inputs.size() != static_cast<size_t>(node.input_size())) {
    fail(ExitCode::kInternal, "evaluate_node: {} inputs given for node {}, which has {}",
         inputs.size(), node_label(node), node.input_size());
  }
  std::vector<const Tensor*> in = inputs;
  exec::blas_single_threaded();
  exec::check_input_kinds(model, node, in);
  const exec::HalfAsFloat half(node, in);
  std::vector<Tensor> out(node.output_size());
  exec::OpContext ctx(model, node, exec::node_opset(model, node), in, out);
  exec::run_op(op, ctx);
  half.narrow_outputs(out);
  return out;
}

}  // namespace quantize
