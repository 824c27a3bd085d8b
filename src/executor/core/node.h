// Internal: one node's run as the executor does it, shared by Executor::run_nodes and
// evaluate_node: the checks before it, its opset, and float16 arithmetic run in float32.
#pragma once

#include <onnx/onnx_pb.h>

#include <string>
#include <vector>

#include "quantize/executor.h"
#include "quantize/model.h"

namespace quantize::exec {

// Why the executor refuses the node in this model (an opset 1-6 form whose meaning has changed
// since), or "" when it does not.
std::string legacy_refusal(const Model& model, const onnx::NodeProto& node);

// The opset of the node's domain in the model's imports.
int node_opset(const Model& model, const onnx::NodeProto& node);

// Fails (an Error naming the model and node) when an input is of a kind the op does not take:
// string tensors outside Cast, CastLike and Identity, sequences and optionals outside the ops
// made for them.
void check_input_kinds(const Model& model, const onnx::NodeProto& node,
                       const std::vector<const Tensor*>& inputs);

// float16 and bfloat16 arithmetic runs in float32, its float results rounded back to the input
// type: on construction, the 16-bit float entries of `inputs` are pointed at float32 copies held
// here, unless the op only moves bytes (those run on 16-bit tensors as they are). Keep it alive
// while the op runs.
class HalfAsFloat {
 public:
  HalfAsFloat(const onnx::NodeProto& node, std::vector<const Tensor*>& inputs);
  HalfAsFloat(const HalfAsFloat&) = delete;
  HalfAsFloat& operator=(const HalfAsFloat&) = delete;

  bool widened() const { return type_ != 0; }
  // Rounds the float32 outputs back to the inputs' type (IEEE round to nearest even,
  // overflowing to inf) when they were widened.
  void narrow_outputs(std::vector<Tensor>& outputs) const;

 private:
  int type_ = 0;  // FLOAT16 or BFLOAT16 when the inputs were widened
  std::vector<Tensor> widened_;
};

}  // namespace quantize::exec
