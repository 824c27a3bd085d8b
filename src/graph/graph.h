// The graph-rewrite toolkit every pass is built on:
//  - ModelIndex: producers, readers and constants of every value, in the main graph and in every
//    If/Loop/Scan body, names resolved through enclosing scopes (a body reads outer values);
//  - attribute readers and writers;
//  - GraphEditor: node and initializer builders with deterministic unique names, and an edit list
//    (nodes added and removed) applied at the end, which re-sorts the graphs it touched and drops
//    the constants nothing reads any more;
//  - visit_nodes: the per-node driver, which walks every graph and records for each candidate
//    node what it became or why it was kept, for the report;
//  - graph upkeep: topological order, unused constants, opset imports.
#pragma once

#include <fmt/format.h>
#include <onnx/onnx_pb.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "model/payload.h"
#include "quantize/model.h"
#include "quantize/options.h"
#include "quantize/pass.h"

namespace quantize {

// --- nodes and attributes ------------------------------------------------------------------------

// "'name' (Op)", or "Op -> 'first output'" for an unnamed node.
std::string node_label(const onnx::NodeProto& node);
bool is_default_domain(const onnx::NodeProto& node);  // "" or "ai.onnx"
// How plans name a node: its name, or its first output when it has none.
std::string node_key(const onnx::NodeProto& node);
bool has_subgraph(const onnx::NodeProto& node);

const onnx::AttributeProto* find_attribute(const onnx::NodeProto& node, std::string_view name);
int64_t attr_int(const onnx::NodeProto& node, std::string_view name, int64_t fallback);
float attr_float(const onnx::NodeProto& node, std::string_view name, float fallback);
std::vector<int64_t> attr_ints(const onnx::NodeProto& node, std::string_view name);
std::string attr_string(const onnx::NodeProto& node, std::string_view name,
                        const std::string& fallback = "");
// Sets an INT attribute (replacing any attribute of that name).
void set_attr(onnx::NodeProto& node, std::string_view name, int64_t value);
// Sets a FLOAT / INTS attribute likewise.
void set_float(onnx::NodeProto& node, std::string_view name, float value);
void set_ints(onnx::NodeProto& node, std::string_view name, const std::vector<int64_t>& values);

// --- the index -----------------------------------------------------------------------------------

// A constant tensor visible from a graph: an initializer, or a Constant node's `value` tensor.
struct ConstantRef {
  onnx::GraphProto* graph = nullptr;  // where it lives
  onnx::TensorProto* tensor = nullptr;
  onnx::NodeProto* node = nullptr;  // the Constant node, or nullptr for an initializer
};

class ModelIndex {
 public:
  struct Graph {
    onnx::GraphProto* proto = nullptr;
    const Graph* parent = nullptr;     // nullptr for the main graph
    onnx::NodeProto* owner = nullptr;  // the node whose attribute holds this body
    std::string attribute;             // "then_branch", "body", ...
    // "" for the main graph, else "in If 'name' then_branch" (outermost first when nested).
    std::string where() const;
  };
  // A read of a value: input `input` of `node`; input -1: read inside the node's subgraphs (an
  // outer value a body uses); node nullptr: the value is an output of the graph.
  struct Use {
    onnx::NodeProto* node = nullptr;
    int input = -1;
  };

  explicit ModelIndex(onnx::ModelProto& model);

  // Every graph: the main graph first, then the bodies depth first.
  const std::vector<std::unique_ptr<Graph>>& graphs() const { return graphs_; }
  const Graph& main() const { return *graphs_.front(); }

  // The node computing `name` as seen from `g` (in g or an enclosing graph), or nullptr.
  onnx::NodeProto* producer(const Graph& g, const std::string& name) const;
  std::optional<ConstantRef> constant(const Graph& g, const std::string& name) const;
  // Reads of `name` in graph g (not in its bodies: those count as one read by their node).
  const std::vector<Use>& readers(const Graph& g, const std::string& name) const;

  // Why a value that should be a constant is not one: a graph input, or which op computes it.
  std::string why_not_constant(const Graph& g, const std::string& name) const;

 private:
  struct Defs {
    std::unordered_map<std::string, onnx::NodeProto*> producers;
    std::unordered_map<std::string, onnx::TensorProto*> initializers;
    std::unordered_set<std::string> inputs;
    std::unordered_map<std::string, std::vector<Use>> readers;
  };
  void add_graph(onnx::GraphProto* proto, const Graph* parent, onnx::NodeProto* owner,
                 const std::string& attribute);
  bool defines(const Graph& g, const std::string& name) const;
  // The graph (g or an enclosing one) that defines `name`, or nullptr (undefined).
  const Graph* defining_graph(const Graph& g, const std::string& name) const;
  bool is_graph_input(const Graph& g, const std::string& name) const;

  std::vector<std::unique_ptr<Graph>> graphs_;
  std::unordered_map<const Graph*, Defs> defs_;
};

// QuantizeLinear nodes of the main graph that quantize an activation (not a constant): a model
// with any is quantized already.
int activation_quantizers(const ModelIndex& index);

// Makes every read of the value `from` in `graph` and its bodies read `to` instead (node inputs,
// and outputs of bodies that name it; the graph's own outputs stay).
void rename_reads(onnx::GraphProto& graph, const std::string& from, const std::string& to);

// Names a node's subgraphs read from enclosing scopes.
std::vector<std::string> implicit_inputs(const onnx::NodeProto& node);

// --- editing -------------------------------------------------------------------------------------

// Hands out names unused anywhere in the model: `base` itself if free, else base_1, base_2, ...
// (deterministic: the same model and calls give the same names).
class NameSet {
 public:
  explicit NameSet(const onnx::ModelProto& model);
  std::string unique(const std::string& base);

 private:
  std::unordered_set<std::string> used_;
};

// Builds new nodes and initializers and records removals; apply() carries them out.
class GraphEditor {
 public:
  explicit GraphEditor(Model& model);

  Model& model() { return model_; }
  std::string unique(const std::string& base) { return names_.unique(base); }

  // A node added to `graph` when apply() runs (node name made unique from `name`, or from the
  // op type when empty), placed just before `before` (a node of that graph: the one it replaces,
  // say), or at the end. The reference stays valid until apply().
  onnx::NodeProto& add_node(onnx::GraphProto& graph, const std::string& op, const std::string& name,
                            std::vector<std::string> inputs, std::vector<std::string> outputs,
                            const std::string& domain = "",
                            const onnx::NodeProto* before = nullptr);
  // A copy of `node` (same name: the original is to be removed) added like add_node.
  onnx::NodeProto& add_copy(onnx::GraphProto& graph, const onnx::NodeProto& node,
                            const onnx::NodeProto* before = nullptr);
  // An initializer added to `graph` now, named uniquely from `base`; returns its name.
  std::string add_initializer(onnx::GraphProto& graph, const std::string& base, int data_type,
                              const std::vector<int64_t>& dims, PayloadPtr payload);
  std::string add_initializer(onnx::GraphProto& graph, const std::string& base, int data_type,
                              const std::vector<int64_t>& dims, const void* data, size_t bytes);
  std::string add_floats(onnx::GraphProto& graph, const std::string& base,
                         const std::vector<int64_t>& dims, const std::vector<float>& values);
  // The node goes when apply() runs.
  void remove_node(onnx::NodeProto& node);
  bool removed(const onnx::NodeProto& node) const { return removed_.count(&node) > 0; }

  // Removes and adds the recorded nodes, sorts every graph touched topologically, then drops
  // Constant nodes and initializers nothing reads any more. Returns whether anything changed.
  bool apply();

 private:
  Model& model_;
  NameSet names_;
  struct Added {
    std::unique_ptr<onnx::NodeProto> node;
    const onnx::NodeProto* before;
  };
  std::map<onnx::GraphProto*, std::vector<Added>> added_;
  std::unordered_set<const onnx::NodeProto*> removed_;
  bool initializers_added_ = false;
};

// --- the per-node driver -------------------------------------------------------------------------

// What a pass did with one candidate node.
struct Verdict {
  bool changed = false;
  std::string text;  // what it became, or why it was kept
  static Verdict done(std::string what) { return {true, std::move(what)}; }
  static Verdict kept(std::string why) { return {false, std::move(why)}; }
};

// Calls `visit` for every node of every graph (main graph first, bodies depth first; nodes added
// meanwhile are not visited) for which `candidate` holds, and records each verdict in `result`
// (changed or skipped, labelled with the node and, in a body, where it is). With a filter,
// nodes it rejects are recorded as kept with its reason and not visited.
void visit_nodes(const ModelIndex& index, PassResult& result,
                 const std::function<bool(const onnx::NodeProto&)>& candidate,
                 const std::function<Verdict(const ModelIndex::Graph&, onnx::NodeProto&)>& visit,
                 const NodeFilter* filter = nullptr);

// The label visit_nodes records: node_label, plus where the node is when in a body.
std::string node_label(const ModelIndex::Graph& graph, const onnx::NodeProto& node);

// --- upkeep --------------------------------------------------------------------------------------

// Calls fn for every tensor that carries data: initializers and tensor attributes, in subgraphs
// and functions too. `where` describes it for messages ("initializer 'w'").
void for_each_tensor(onnx::ModelProto& model,
                     const std::function<void(onnx::TensorProto&, const std::string& where)>& fn);

// Orders nodes so every node follows the producers of its inputs (implicit subgraph inputs
// included), keeping the existing order where it already is valid. The node objects keep their
// addresses. Throws on a cycle.
void topological_sort(onnx::GraphProto& graph);

// Removes Constant nodes and initializers nothing reads (with the graph-input entries of such
// initializers, as IR < 4 models list initializers among the inputs), in every graph.
void remove_unused_constants(onnx::ModelProto& model);

// The model's opset version for `domain` ("" and "ai.onnx": the default domain), 0 if absent.
int opset_of(const onnx::ModelProto& model, const std::string& domain = "");
// Adds an opset import for `domain` at `version` unless the model has one.
void ensure_opset(onnx::ModelProto& model, const std::string& domain, int version);

}  // namespace quantize
