#include "graph/dtype.h"

#include <onnx/shape_inference/implementation.h>

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace quantize {
namespace {

using onnx::TensorProto;

void declare(const onnx::ValueInfoProto& v, TypeMap& types) {
  ValueType t = value_type(v.type());
  if (t.kind != ValueType::kTensor || t.elem != 0) types.emplace(v.name(), t);
}

// Calls fn on the graph and, depth first, on every graph in its nodes' attributes.
template <typename F>
void for_each_graph(const onnx::GraphProto& graph, const F& fn) {
  fn(graph);
  for (const auto& node : graph.node()) {
    for (const auto& a : node.attribute()) {
      if (a.has_g()) for_each_graph(a.g(), fn);
      for (const auto& g : a.graphs()) for_each_graph(g, fn);
    }
  }
}

void declare_graph(const onnx::GraphProto& graph, TypeMap& types) {
  for (const auto& t : graph.initializer())
    types.emplace(t.name(), ValueType{ValueType::kTensor, t.data_type()});
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

// The types of a node's outputs (elem 0 where unknown).
std::vector<ValueType> output_types(const onnx::NodeProto& node, const TypeMap& types) {
  auto in_type = [&](int i) -> ValueType {
    if (i >= node.input_size() || node.input(i).empty()) return {};
    auto it = types.find(node.input(i));
    return it == types.end() ? ValueType{} : it->second;
  };
  auto in = [&](int i) -> int {  // a tensor input's element type
    ValueType t = in_type(i);
    return t.kind == ValueType::kTensor ? t.elem : 0;
  };
  auto attr_int = [&](const char* name, int fallback) {
    const auto* a = attribute(node, name);
    return a ? static_cast<int>(a->i()) : fallback;
  };
  const std::string& op = node.op_type();
  const int n = node.output_size();
  auto all = [&](int type) { return std::vector<ValueType>(n, {ValueType::kTensor, type}); };
  auto of = [](std::initializer_list<int> elems) {
    std::vector<ValueType> out;
    for (int e : elems) out.push_back({ValueType::kTensor, e});
    return out;
  };
  auto body_outputs = [&](const char* attr, int skip) {
    std::vector<ValueType> out(n);
    const auto* a = attribute(node, attr);
    if (!a || !a->has_g()) return out;
    for (int i = 0; i < n && i + skip < a->g().output_size(); ++i) {
      out[i] = value_type(a->g().output(i + skip).type());
    }
    return out;
  };
  static const std::unordered_set<std::string> kInt64 = {
      "Shape", "Size", "NonZero", "ArgMax", "ArgMin", "NonMaxSuppression", "SequenceLength"};
  static const std::unordered_set<std::string> kBool = {
      "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not",
      "And",   "Or",   "Xor",     "IsNaN",       "IsInf",          "OptionalHasElement"};
  if (kInt64.count(op)) return all(TensorProto::INT64);
  if (kBool.count(op)) return all(TensorProto::BOOL);
  if (op == "MatMulInteger" || op == "ConvInteger") return all(TensorProto::INT32);
  if (op == "DynamicQuantizeLinear") {
    return of({TensorProto::UINT8, TensorProto::FLOAT, TensorProto::UINT8});
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
    if (attribute(node, "value_string") || attribute(node, "value_strings")) {
      return all(TensorProto::STRING);
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
  if (op == "TopK" || op == "MaxPool") return of({in(0), TensorProto::INT64});
  if (op == "Unique") {
    return of({in(0), TensorProto::INT64, TensorProto::INT64, TensorProto::INT64});
  }
  if (op == "Where") return all(in(1));
  if (op == "OneHot") return all(in(2));
  if (op == "GatherBlockQuantized") return all(in(2));
  // Sequences and optionals.
  if (op == "SequenceEmpty") {
    return {ValueType{ValueType::kSequence, attr_int("dtype", TensorProto::FLOAT)}};
  }
  if (op == "SequenceConstruct" || op == "SplitToSequence") {
    return {ValueType{ValueType::kSequence, in(0)}};
  }
  if (op == "SequenceInsert" || op == "SequenceErase") {
    return {ValueType{ValueType::kSequence, in_type(0).elem ? in_type(0).elem : in(1)}};
  }
  if (op == "SequenceAt" || op == "ConcatFromSequence") return all(in_type(0).elem);
  if (op == "Optional") {
    if (const auto* a = attribute(node, "type"); a && a->has_tp()) {
      return {ValueType{ValueType::kOptional, value_type(a->tp()).elem}};
    }
    return {ValueType{ValueType::kOptional, in_type(0).elem}};
  }
  if (op == "OptionalGetElement") {
    ValueType t = in_type(0);
    return {t.kind == ValueType::kOptional ? ValueType{ValueType::kTensor, t.elem} : t};
  }
  if (op == "If") return body_outputs("then_branch", 0);
  if (op == "Loop") return body_outputs("body", 1);  // its body also returns the condition
  if (op == "Scan" || op == "SequenceMap") return body_outputs("body", 0);
  if (op == "Identity") return {in_type(0)};
  // Most ops (element-wise, shape and indexing, MatMulNBits, ...): the first known input type.
  for (int i = 0; i < node.input_size(); ++i) {
    if (int t = in(i)) return all(t);
  }
  return all(0);
}

}  // namespace

ValueType value_type(const onnx::TypeProto& type) {
  if (type.has_tensor_type()) return {ValueType::kTensor, type.tensor_type().elem_type()};
  auto element = [](const onnx::TypeProto& t) {
    return t.has_tensor_type() ? t.tensor_type().elem_type() : 0;
  };
  if (type.has_sequence_type()) {
    return {ValueType::kSequence, element(type.sequence_type().elem_type())};
  }
  if (type.has_optional_type()) {
    return {ValueType::kOptional, element(type.optional_type().elem_type())};
  }
  return {ValueType::kOther, 0};
}

// A graph's nodes, each after the producers of its inputs (Kahn's algorithm, linear; nodes on a
// cycle, which the loader refuses, go last).
std::vector<const onnx::NodeProto*> in_order(const onnx::GraphProto& g) {
  const int n = g.node_size();
  std::unordered_map<std::string, int> producer;
  for (int i = 0; i < n; ++i) {
    for (const auto& o : g.node(i).output()) producer.emplace(o, i);
  }
  std::vector<std::vector<int>> users(n);
  std::vector<int> pending(n, 0);
  for (int i = 0; i < n; ++i) {
    for (const auto& in : g.node(i).input()) {
      auto it = producer.find(in);
      if (it != producer.end() && it->second != i) {
        users[it->second].push_back(i);
        ++pending[i];
      }
    }
  }
  std::vector<const onnx::NodeProto*> order;
  std::vector<int> ready;
  for (int i = n - 1; i >= 0; --i) {
    if (pending[i] == 0) ready.push_back(i);
  }
  std::vector<bool> placed(n, false);
  while (!ready.empty()) {
    const int i = ready.back();
    ready.pop_back();
    placed[i] = true;
    order.push_back(&g.node(i));
    for (int u : users[i]) {
      if (--pending[u] == 0) ready.push_back(u);
    }
  }
  for (int i = 0; i < n; ++i) {
    if (!placed[i]) order.push_back(&g.node(i));
  }
  return order;
}

TypeMap infer_types(const onnx::ModelProto& model) {
  TypeMap types;
  for_each_graph(model.graph(), [&](const onnx::GraphProto& g) { declare_graph(g, types); });
  try {
    onnx::ModelProto copy = model;
    onnx::shape_inference::InferShapes(copy);
    for_each_graph(copy.graph(), [&](const onnx::GraphProto& g) {
      for (const auto& v : g.value_info()) declare(v, types);
    });
  } catch (const std::exception&) {
    // Opsets or domains ONNX 1.12 does not know: the op rules below fill in.
  }
  // Nodes may be out of order in a model being rewritten: taken in dependency order (one sweep
  // then suffices but for values a body reads), and repeated until nothing changes.
  std::vector<std::vector<const onnx::NodeProto*>> orders;
  for_each_graph(model.graph(), [&](const onnx::GraphProto& g) { orders.push_back(in_order(g)); });
  for (bool changed = true; changed;) {
    changed = false;
    for (const auto& order : orders) {
      for (const onnx::NodeProto* n : order) {
        const onnx::NodeProto& node = *n;
        auto out = output_types(node, types);
        for (int i = 0; i < node.output_size() && i < static_cast<int>(out.size()); ++i) {
          if (node.output(i).empty() || out[i].elem == 0) continue;
          changed |= types.emplace(node.output(i), out[i]).second;
        }
      }
    }
  }
  return types;
}

bool is_float_type(int data_type) {
  return data_type == onnx::TensorProto::FLOAT || data_type == onnx::TensorProto::FLOAT16 ||
         data_type == onnx::TensorProto::DOUBLE || data_type == onnx::TensorProto::BFLOAT16;
}

}  // namespace quantize
