// Graph helpers shared by the passes: walking graphs and subgraphs, finding constants, unique
// names, use counts and topological order.
#pragma once

#include <onnx/onnx_pb.h>

#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace quantize {

// A graph and the graphs enclosing it (subgraph bodies see names of their outer graphs).
struct Scope {
  onnx::GraphProto* graph = nullptr;
  const Scope* parent = nullptr;
  int depth() const { return parent ? parent->depth() + 1 : 0; }
};

// Calls fn for the main graph, then for every subgraph (If/Loop/Scan bodies), depth first.
void for_each_graph(onnx::ModelProto& model,
                    const std::function<void(onnx::GraphProto&, const Scope&)>& fn);

// Calls fn for every tensor that carries data: initializers and tensor attributes, in subgraphs
// and functions too. `where` describes it for messages ("initializer 'w'").
void for_each_tensor(onnx::ModelProto& model,
                     const std::function<void(onnx::TensorProto&, const std::string& where)>& fn);

// A constant tensor visible from a scope: an initializer, or the output of a Constant node with
// a `value` tensor attribute.
struct ConstantRef {
  onnx::GraphProto* graph = nullptr;
  onnx::TensorProto* tensor = nullptr;
  int node_index = -1;  // the Constant node, or -1 for an initializer
};
std::optional<ConstantRef> find_constant(const Scope& scope, const std::string& name);

// Names used anywhere in the model (values and nodes); hands out new unique ones.
class NameSet {
 public:
  explicit NameSet(const onnx::ModelProto& model);
  // `base` itself if unused, else base_1, base_2, ...; the result is reserved.
  std::string unique(const std::string& base);

 private:
  std::unordered_set<std::string> used_;
};

// How many node inputs (in any graph, subgraphs included) and graph outputs read each name.
std::unordered_map<std::string, int> count_uses(const onnx::ModelProto& model);

// Names a node's subgraphs read from enclosing scopes.
std::vector<std::string> implicit_inputs(const onnx::NodeProto& node);

// Orders nodes so every node follows the producers of its inputs (implicit subgraph inputs
// included), keeping the existing order where it already is valid. Throws on a cycle.
void topological_sort(onnx::GraphProto& graph);

// Removes initializers nothing reads (and their graph-input entries, as IR < 4 models list
// initializers among the inputs), in every graph. Returns how many were removed.
int remove_unused_initializers(onnx::ModelProto& model);

// Removes Constant nodes nothing reads, then unused initializers (the float weights a
// quantization pass replaced).
void remove_unused_constants(onnx::ModelProto& model);

std::string node_label(const onnx::NodeProto& node);

// The model's opset version for `domain` ("" and "ai.onnx": the default domain), 0 if absent.
int opset_of(const onnx::ModelProto& model, const std::string& domain = "");

// Adds an opset import for `domain` at `version` unless the model has one.
void ensure_opset(onnx::ModelProto& model, const std::string& domain,
                  int version);  // "name (Op)" or "Op #output"

}  // namespace quantize
