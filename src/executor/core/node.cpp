// One node's run as the executor does it: refusals and input checks before it, float16 and
// bfloat16 inputs widened to float32 and the float results rounded back.
#include "executor/core/node.h"

#include <cmath>
#include <unordered_set>

#include "graph/graph.h"
#include "kernels/kernels.h"
#include "quantize/error.h"

namespace quantize::exec {
namespace {

// Ops that move bytes without arithmetic: they run on float16 tensors as they are.
const std::unordered_set<std::string> kAnyType = {
    "Reshape", "Transpose", "Squeeze",         "Unsqueeze", "Concat", "Split",
    "Slice",   "Gather",    "Expand",          "Identity",  "Shape",  "Size",
    "Flatten", "Constant",  "ConstantOfShape", "Where",     "Cast"};

Tensor widen(const Tensor& half) {
  Tensor t(onnx::TensorProto::FLOAT, half.shape());
  const bool bf16 = half.dtype() == onnx::TensorProto::BFLOAT16;
  for (int64_t i = 0; i < half.size(); ++i) {
    const uint16_t h = half.data<uint16_t>()[i];
    t.data<float>()[i] = bf16 ? bf16_to_f32_scalar(h) : f16_to_f32_scalar(h);
  }
  return t;
}

// IEEE round to nearest even, overflowing to inf (unlike the quantizer's clamping conversion).
Tensor narrow(const Tensor& full, int type) {
  Tensor t(type, full.shape());
  for (int64_t i = 0; i < full.size(); ++i) {
    const float x = full.data<float>()[i];
    uint16_t h;
    if (type == onnx::TensorProto::BFLOAT16) {
      h = f32_to_bf16_scalar(x);
    } else {
      h = f32_to_f16_scalar(x);
      if ((h & 0x7fff) == 0x7bff && std::fabs(x) >= 65520.0f)
        h = static_cast<uint16_t>((h & 0x8000) | 0x7c00);
    }
    t.data<uint16_t>()[i] = h;
  }
  return t;
}

bool is_half(const Tensor* t) {
  return t &&
         (t->dtype() == onnx::TensorProto::FLOAT16 || t->dtype() == onnx::TensorProto::BFLOAT16);
}

// Ops that take sequence and optional values; the others refuse them by name.
const std::unordered_set<std::string> kTakesContainers = {"Identity",
                                                          "If",
                                                          "Loop",
                                                          "SequenceConstruct",
                                                          "SequenceAt",
                                                          "SequenceInsert",
                                                          "SequenceErase",
                                                          "SequenceLength",
                                                          "ConcatFromSequence",
                                                          "SplitToSequence",
                                                          "SequenceMap",
                                                          "Optional",
                                                          "OptionalHasElement",
                                                          "OptionalGetElement"};

// Why a node of an opset 1-6 model cannot run as its opset 7+ form, or "" when it can: most ops
// only lost the consumed_inputs hint since, but these changed meaning.
std::string legacy_form(const onnx::NodeProto& node, int opset) {
  if (!node.domain().empty() && node.domain() != "ai.onnx") return "";
  for (const auto& a : node.attribute()) {
    if (a.name() == "broadcast" && a.i() != 0) return "the broadcast attribute";
  }
  static const std::unordered_set<std::string> changed = {
      "Cast",  // 'to' was a type name
      "Pad",   // 'paddings'
      "Reshape",
      "Tile",
      "Upsample",  // attributes that became inputs, or other semantics
      "GRU",
      "LSTM",
      "RNN",  // output_sequence, linear_before_reset
      "BatchNormalization",
      "Dropout",  // spatial / is_test outputs
      "PRelu"};   // slope broadcasting
  if (changed.count(node.op_type())) return "its opset 7 form differs";
  if (node.op_type() == "Concat" && opset < 4) {
    for (const auto& a : node.attribute()) {
      if (a.name() == "axis") return "";
    }
    return "axis defaults to 1 there";
  }
  return "";
}

}  // namespace

std::string legacy_refusal(const Model& model, const onnx::NodeProto& node) {
  const int default_opset = opset_of(model.proto, "");
  return default_opset < 7 ? legacy_form(node, default_opset) : "";
}

int node_opset(const Model& model, const onnx::NodeProto& node) {
  return opset_of(model.proto, node.domain());
}

void check_input_kinds(const Model& model, const onnx::NodeProto& node,
                       const std::vector<const Tensor*>& inputs) {
  for (const Tensor* t : inputs) {
    if (t && t->dtype() == onnx::TensorProto::STRING && node.op_type() != "Cast" &&
        node.op_type() != "CastLike" && node.op_type() != "Identity") {
      fail(ExitCode::kInput,
           "{}: node {}: string tensors are supported by Cast, CastLike and "
           "Identity only",
           model.source, node_label(node));
    }
    if (t && t->is_container() && !kTakesContainers.count(node.op_type())) {
      fail(ExitCode::kInput, "{}: node {}: {} does not take sequences or optionals", model.source,
           node_label(node), node.op_type());
    }
  }
}

HalfAsFloat::HalfAsFloat(const onnx::NodeProto& node, std::vector<const Tensor*>& inputs) {
  if (kAnyType.count(node.op_type())) return;
  for (const Tensor* t : inputs) {
    if (is_half(t)) type_ = t->dtype();
  }
  if (type_) {
    widened_.reserve(inputs.size());  // no reallocation: `inputs` points into it
    for (auto& t : inputs) {
      if (is_half(t)) {
        widened_.push_back(widen(*t));
        t = &widened_.back();
      }
    }
  }
}

void HalfAsFloat::narrow_outputs(std::vector<Tensor>& outputs) const {
  if (!type_) return;
  for (auto& t : outputs) {
    if (t.dtype() == onnx::TensorProto::FLOAT) t = narrow(t, type_);
  }
}

}  // namespace quantize::exec
