// The float16 op table (see float16_ops.h). Facts about ONNX Runtime 1.30's CPU provider were
// checked by loading and running one small model per op in float32 and float16
// (onnxruntime-node 1.30.0, x86-64) and by the corpus sweep (tools/sweep_corpus.sh).
#include "passes/float16_ops.h"

#include <onnx/defs/schema.h>

#include <algorithm>
#include <map>
#include <set>

#include "graph/graph.h"

namespace quantize {
namespace {

struct Exception {
  const char* op;
  const char* why;
};

// Ops ONNX allows in float16 that stay float32 here.
constexpr Exception kKeep[] = {
    // ONNX Runtime: no float16 kernel and no fallback that works, or a crash.
    {"MeanVarianceNormalization",
     "ONNX Runtime expands it into a body that adds a float32 constant to float16 data"},
    {"GRU", "recurrent op: ONNX Runtime 1.30's CPU provider crashes on it in float16"},
    {"LSTM", "recurrent op: ONNX Runtime 1.30's CPU provider crashes on it in float16"},
    {"RNN", "recurrent op: ONNX Runtime 1.30's CPU provider crashes on it in float16"},
    {"TopK", "no float16 kernel in ONNX Runtime's CPU provider"},
    {"RoiAlign", "no float16 kernel in ONNX Runtime's CPU provider"},
    {"CumSum", "no float16 kernel in ONNX Runtime's CPU provider"},
    {"GridSample", "ONNX Runtime 1.30 types its output float32 for float16 data (opset 16)"},
    {"EyeLike", "its output type is an attribute"},
    {"RandomUniformLike", "random op: its output type is an attribute"},
    {"RandomNormalLike", "random op: its output type is an attribute"},
    {"Multinomial", "random op"},
    {"Bernoulli", "random op"},
    // Numerics: sums of squares and exponentials overflow float16's 65504.
    {"ReduceSumSquare", "sums squares, which overflow float16"},
    {"ReduceL2", "sums squares, which overflow float16"},
    {"ReduceLogSumExp", "sums exponentials, which overflow float16"},
};

// Inputs ONNX allows in float16 that stay float32: Resize's roi (coordinates, which ONNX Runtime's
// float kernel reads as float32 whenever X is float32).
struct FixedInput {
  const char* op;
  int input;
};
constexpr FixedInput kFloat32Inputs[] = {{"Resize", 1}};

// com.microsoft ops with float16 kernels: the inputs and outputs that share the activation type.
struct MsOp {
  const char* op;
  std::vector<int> inputs, outputs;
};
const MsOp kMsOps[] = {
    {"MatMulNBits", {0, 2, 5}, {0}},        // A, scales, bias -> Y
    {"MatMulBnb4", {0, 2}, {0}},            // A, absmax -> Y
    {"GatherBlockQuantized", {2, 3}, {0}},  // scales, float zero points -> output
    {"SkipSimplifiedLayerNormalization", {0, 1, 2, 3}, {0, 3}},
};

// The allowed type strings of a formal parameter's type.
std::vector<std::string> allowed_types(const onnx::OpSchema& schema,
                                       const onnx::OpSchema::FormalParameter& formal) {
  for (const auto& c : schema.typeConstraintParams()) {
    if (c.type_param_str == formal.GetTypeStr()) return c.allowed_type_strs;
  }
  return {formal.GetTypeStr()};  // a fixed type such as "tensor(float)"
}

const onnx::OpSchema::FormalParameter* formal_at(
    const std::vector<onnx::OpSchema::FormalParameter>& formals, int index) {
  if (index < static_cast<int>(formals.size())) return &formals[index];
  if (!formals.empty() && formals.back().GetOption() == onnx::OpSchema::Variadic) {
    return &formals.back();
  }
  return nullptr;
}

bool takes_float16(const std::vector<std::string>& allowed) {
  auto has = [&](const char* t) {
    return std::find(allowed.begin(), allowed.end(), t) != allowed.end();
  };
  return has("tensor(float16)") && has("tensor(float)");
}

Float16Plan from_schema(const onnx::NodeProto& node, const onnx::OpSchema& schema, int opset) {
  Float16Plan plan;
  plan.inputs.assign(node.input_size(), false);
  plan.outputs.assign(node.output_size(), false);
  std::set<std::string> input_params;  // type parameters the converted inputs bind
  for (int i = 0; i < node.input_size(); ++i) {
    const auto* f = formal_at(schema.inputs(), i);
    if (f && takes_float16(allowed_types(schema, *f))) {
      plan.inputs[i] = true;
      input_params.insert(f->GetTypeStr());
    }
  }
  for (int i = 0; i < node.output_size(); ++i) {
    const auto* f = formal_at(schema.outputs(), i);
    // An output follows the node only through a type parameter an input binds; others (Cast's
    // `to`, ConstantOfShape's value, a window's output_datatype) are set by attributes.
    if (f && takes_float16(allowed_types(schema, *f)) && input_params.count(f->GetTypeStr())) {
      plan.outputs[i] = true;
    }
  }
  const bool any = std::count(plan.inputs.begin(), plan.inputs.end(), true) +
                       std::count(plan.outputs.begin(), plan.outputs.end(), true) >
                   0;
  if (!any) plan.keep = fmt::format("no float16 form in ONNX at opset {}", opset);
  return plan;
}

}  // namespace

Float16Plan float16_plan(const onnx::NodeProto& node, int opset) {
  Float16Plan plan;
  const std::string& op = node.op_type();
  auto keep = [&](std::string why) {
    plan.keep = std::move(why);
    plan.inputs.assign(node.input_size(), false);
    plan.outputs.assign(node.output_size(), false);
    return plan;
  };
  if (node.domain() == "com.microsoft") {
    for (const auto& ms : kMsOps) {
      if (op != ms.op) continue;
      plan.inputs.assign(node.input_size(), false);
      plan.outputs.assign(node.output_size(), false);
      for (int i : ms.inputs) {
        if (i < node.input_size()) plan.inputs[i] = true;
      }
      for (int i : ms.outputs) {
        if (i < node.output_size()) plan.outputs[i] = true;
      }
      return plan;
    }
    return keep("com.microsoft op without known float16 support");
  }
  if (op == "SimplifiedLayerNormalization" && is_default_domain(node)) {
    // An ONNX Runtime op that its exporters put in the default domain: X, scale -> Y.
    plan.inputs.assign(node.input_size(), false);
    plan.outputs.assign(node.output_size(), false);
    for (int i = 0; i < std::min(2, node.input_size()); ++i) plan.inputs[i] = true;
    if (node.output_size() > 0) plan.outputs[0] = true;
    return plan;
  }
  if (!is_default_domain(node)) {
    return keep(fmt::format("op of domain '{}' without known float16 support", node.domain()));
  }
  for (const auto& e : kKeep) {
    if (op == e.op) return keep(e.why);
  }
  if (op == "ScatterND" || op == "ScatterElements") {
    const std::string reduction = attr_string(node, "reduction", "none");
    if (reduction == "add" || reduction == "mul" || (op == "ScatterND" && reduction != "none")) {
      return keep(fmt::format("ONNX Runtime's float16 {} has no '{}' reduction", op, reduction));
    }
  }
  if (op == "DequantizeLinear" && opset >= 19 && node.input_size() >= 2) {
    // ONNX 1.12 knows DequantizeLinear-13 (float32 only); from 19 the scale, and so y, may be
    // float16.
    plan.inputs.assign(node.input_size(), false);
    plan.outputs.assign(node.output_size(), false);
    plan.inputs[1] = true;
    if (node.output_size() > 0) plan.outputs[0] = true;
    return plan;
  }
  const onnx::OpSchema* schema = onnx::OpSchemaRegistry::Schema(op, opset, "");
  if (!schema) return keep(fmt::format("ONNX 1.12 has no schema for {} at opset {}", op, opset));
  plan = from_schema(node, *schema, opset);
  for (const auto& f : kFloat32Inputs) {
    if (op == f.op && f.input < node.input_size()) plan.inputs[f.input] = false;
  }
  return plan;
}

}  // namespace quantize
