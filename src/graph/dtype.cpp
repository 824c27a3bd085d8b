#include "graph/dtype.h"

#include <onnx/shape_inference/implementation.h>

#include <unordered_set>

namespace quantize {
namespace {

using onnx::TensorProto;

void declare(const onnx::ValueInfoProto& v, TypeMap& types) {
  if (v.type().has_tensor_type() && v.type().tensor_type().elem_type() != 0) {
    types.emplace(v.name(), v.type().tensor_type().elem_type());
  }
}

void declare_graph(const onnx::GraphProto& graph, TypeMap& types) {
  for (const auto& t : graph.initializer()) types.emplace(t.name(), t.data_type());
  for (const auto& v : graph.input()) declare(v, types);
  for (const auto& v : graph.output()) declare(v, types);
  for (const auto& v : graph.value_info()) declare(v, types);
}

const onnx::AttributeProto* attribute(const onnx::NodeProto& node, const char* name) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

int graph_output_type(const onnx::GraphProto& body, int index) {
  if (index >= body.output_size()) return 0;
  return body.output(index).type().tensor_type().elem_type();
}

// The element types of a node's outputs; 0 where unknown.
std::vector<int> output_types(const onnx::NodeProto& node, const TypeMap& types) {
  auto in = [&](int i) -> int {
    if (i >= node.input_size() || node.input(i).empty()) return 0;
    auto it = types.find(node.input(i));
    return it == types.end() ? 0 : it->second;
  };
  auto attr_int = [&](const char* name, int fallback) {
    const auto* a = attribute(node, name);
    return a ? static_cast<int>(a->i()) : fallback;
  };
  const std::string& op = node.op_type();
  const int n = node.output_size();
  auto all = [&](int type) { return std::vector<int>(n, type); };
  static const std::unordered_set<std::string> kInt64 = {"Shape",  "Size",   "NonZero",
                                                         "ArgMax", "ArgMin", "NonMaxSuppression"};
  static const std::unordered_set<std::string> kBool = {
      "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not",
      "And",   "Or",   "Xor",     "IsNaN",       "IsInf"};
  if (kInt64.count(op)) return all(TensorProto::INT64);
  if (kBool.count(op)) return all(TensorProto::BOOL);
  if (op == "MatMulInteger" || op == "ConvInteger") return all(TensorProto::INT32);
  if (op == "DynamicQuantizeLinear") {
    return {TensorProto::UINT8, TensorProto::FLOAT, TensorProto::UINT8};
  }
  if (op == "Cast") return all(attr_int("to", 0));
  if (op == "CastLike") return all(in(1));
  if (op == "Constant") {
    if (const auto* a = attribute(node, "value"); a && a->has_t()) return all(a->t().data_type());
    if (attribute(node, "value_float") || attribute(node, "value_floats")) {
      return all(TensorProto::FLOAT);
    }
    if (attribute(node, "value_int") || attribute(node, "value_ints")) {
      return all(TensorProto::INT64);
    }
    return all(0);
  }
  if (op == "ConstantOfShape") {
    const auto* a = attribute(node, "value");
    return all(a && a->has_t() ? a->t().data_type() : TensorProto::FLOAT);
  }
  if (op == "RandomNormal" || op == "RandomUniform") return all(attr_int("dtype", 1));
  if (op == "RandomNormalLike" || op == "RandomUniformLike" || op == "EyeLike") {
    return all(attr_int("dtype", in(0)));
  }
  if (op == "Multinomial") return all(attr_int("dtype", TensorProto::INT32));
  if (op == "QuantizeLinear") return all(in(2) ? in(2) : TensorProto::UINT8);
  if (op == "DequantizeLinear") return all(in(1));
  if (op == "TopK" || op == "MaxPool") return {in(0), TensorProto::INT64};
  if (op == "Unique") return {in(0), TensorProto::INT64, TensorProto::INT64, TensorProto::INT64};
  if (op == "Where") return all(in(1));
  if (op == "OneHot") return all(in(2));
  if (op == "GatherBlockQuantized") return all(in(2));
  if (op == "If") {
    if (const auto* a = attribute(node, "then_branch"); a && a->has_g()) {
      std::vector<int> out;
      for (int i = 0; i < n; ++i) out.push_back(graph_output_type(a->g(), i));
      return out;
    }
  }
  if (op == "Loop" || op == "Scan") {
    if (const auto* a = attribute(node, "body"); a && a->has_g()) {
      std::vector<int> out;
      const int skip = op == "Loop" ? 1 : 0;  // Loop's body also returns the condition
      for (int i = 0; i < n; ++i) out.push_back(graph_output_type(a->g(), i + skip));
      return out;
    }
  }
  // Most ops (element-wise, shape and indexing, MatMulNBits, ...): the first known input type.
  for (int i = 0; i < node.input_size(); ++i) {
    if (int t = in(i)) return all(t);
  }
  return all(0);
}

}  // namespace

TypeMap infer_types(const onnx::ModelProto& model) {
  TypeMap types;
  declare_graph(model.graph(), types);
  try {
    onnx::ModelProto copy = model;
    onnx::shape_inference::InferShapes(copy);
    for (const auto& v : copy.graph().value_info()) declare(v, types);
  } catch (const std::exception&) {
    // Opsets or domains ONNX 1.12 does not know: the op rules below fill in.
  }
  // Nodes may be out of order in a model being rewritten: repeat until nothing changes.
  for (bool changed = true; changed;) {
    changed = false;
    for (const auto& node : model.graph().node()) {
      auto out = output_types(node, types);
      for (int i = 0; i < node.output_size(); ++i) {
        if (node.output(i).empty() || out[i] == 0) continue;
        changed |= types.emplace(node.output(i), out[i]).second;
      }
    }
  }
  return types;
}

}  // namespace quantize
