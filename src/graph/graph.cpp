#include "graph/graph.h"

#include <algorithm>
#include <cstring>
#include <queue>
#include <set>

#include "model/tensor_data.h"
#include "quantize/error.h"

namespace quantize {
namespace {

// Calls fn(attribute, graph) for every subgraph attribute of a node.
template <typename F>
void for_each_body(onnx::NodeProto& node, const F& fn) {
  for (auto& attr : *node.mutable_attribute()) {
    if (attr.has_g()) fn(attr, *attr.mutable_g());
    for (auto& g : *attr.mutable_graphs()) fn(attr, g);
  }
}

template <typename F>
void for_each_body(const onnx::NodeProto& node, const F& fn) {
  for (const auto& attr : node.attribute()) {
    if (attr.has_g()) fn(attr, attr.g());
    for (const auto& g : attr.graphs()) fn(attr, g);
  }
}

void node_tensors(onnx::NodeProto& node, const std::string& graph_name,
                  const std::function<void(onnx::TensorProto&, const std::string&)>& fn) {
  for (auto& attr : *node.mutable_attribute()) {
    std::string where = fmt::format("attribute '{}' of node {} in graph '{}'", attr.name(),
                                    node_label(node), graph_name);
    if (attr.has_t()) fn(*attr.mutable_t(), where);
    for (auto& t : *attr.mutable_tensors()) fn(t, where);
  }
}

// Names a graph defines itself: inputs, initializers and node outputs.
void defined_names(const onnx::GraphProto& graph, std::unordered_set<std::string>& out) {
  for (const auto& v : graph.input()) out.insert(v.name());
  for (const auto& t : graph.initializer()) out.insert(t.name());
  for (const auto& n : graph.node()) {
    for (const auto& o : n.output()) out.insert(o);
  }
}

void collect_free(const onnx::GraphProto& graph, std::unordered_set<std::string> defined,
                  std::vector<std::string>& out, std::unordered_set<std::string>& seen) {
  defined_names(graph, defined);
  auto use = [&](const std::string& name) {
    if (!name.empty() && !defined.count(name) && seen.insert(name).second) out.push_back(name);
  };
  for (const auto& n : graph.node()) {
    for (const auto& i : n.input()) use(i);
    for_each_body(n, [&](const onnx::AttributeProto&, const onnx::GraphProto& g) {
      collect_free(g, defined, out, seen);
    });
  }
  for (const auto& o : graph.output()) use(o.name());
}

void count_graph_uses(const onnx::GraphProto& graph, std::unordered_map<std::string, int>& uses) {
  for (const auto& n : graph.node()) {
    for (const auto& i : n.input()) {
      if (!i.empty()) ++uses[i];
    }
    for_each_body(n, [&](const onnx::AttributeProto&, const onnx::GraphProto& g) {
      count_graph_uses(g, uses);
    });
  }
  for (const auto& o : graph.output()) ++uses[o.name()];
}

onnx::AttributeProto& attribute_slot(onnx::NodeProto& node, std::string_view name) {
  for (auto& a : *node.mutable_attribute()) {
    if (a.name() == name) {
      a.Clear();
      a.set_name(std::string(name));
      return a;
    }
  }
  auto* a = node.add_attribute();
  a->set_name(std::string(name));
  return *a;
}

const std::vector<ModelIndex::Use> kNoUses;

}  // namespace

// --- nodes and attributes ------------------------------------------------------------------------

std::string node_label(const onnx::NodeProto& node) {
  if (!node.name().empty()) return fmt::format("'{}' ({})", node.name(), node.op_type());
  return fmt::format("{} -> '{}'", node.op_type(), node.output_size() ? node.output(0) : "");
}

std::string node_key(const onnx::NodeProto& node) {
  if (!node.name().empty() || node.output_size() == 0) return node.name();
  return node.output(0);
}

bool is_default_domain(const onnx::NodeProto& node) {
  return node.domain().empty() || node.domain() == "ai.onnx";
}

bool has_subgraph(const onnx::NodeProto& node) {
  for (const auto& a : node.attribute()) {
    if (a.has_g() || a.graphs_size() > 0) return true;
  }
  return false;
}

const onnx::AttributeProto* find_attribute(const onnx::NodeProto& node, std::string_view name) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

int64_t attr_int(const onnx::NodeProto& node, std::string_view name, int64_t fallback) {
  const auto* a = find_attribute(node, name);
  return a ? a->i() : fallback;
}

float attr_float(const onnx::NodeProto& node, std::string_view name, float fallback) {
  const auto* a = find_attribute(node, name);
  return a ? a->f() : fallback;
}

std::vector<int64_t> attr_ints(const onnx::NodeProto& node, std::string_view name) {
  const auto* a = find_attribute(node, name);
  return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : std::vector<int64_t>{};
}

std::string attr_string(const onnx::NodeProto& node, std::string_view name,
                        const std::string& fallback) {
  const auto* a = find_attribute(node, name);
  return a ? a->s() : fallback;
}

void set_attr(onnx::NodeProto& node, std::string_view name, int64_t value) {
  auto& a = attribute_slot(node, name);
  a.set_type(onnx::AttributeProto::INT);
  a.set_i(value);
}

void set_float(onnx::NodeProto& node, std::string_view name, float value) {
  auto& a = attribute_slot(node, name);
  a.set_type(onnx::AttributeProto::FLOAT);
  a.set_f(value);
}

void set_ints(onnx::NodeProto& node, std::string_view name, const std::vector<int64_t>& values) {
  auto& a = attribute_slot(node, name);
  a.set_type(onnx::AttributeProto::INTS);
  a.clear_ints();
  for (int64_t v : values) a.add_ints(v);
}

// --- the index -----------------------------------------------------------------------------------

std::string ModelIndex::Graph::where() const {
  if (!parent) return "";
  std::string outer = parent->where();
  std::string here = fmt::format("in {} {}", node_label(*owner), attribute);
  return outer.empty() ? here : outer + ", " + here;
}

ModelIndex::ModelIndex(onnx::ModelProto& model) {
  add_graph(model.mutable_graph(), nullptr, nullptr, "");
}

void ModelIndex::add_graph(onnx::GraphProto* proto, const Graph* parent, onnx::NodeProto* owner,
                           const std::string& attribute) {
  auto graph = std::make_unique<Graph>();
  graph->proto = proto;
  graph->parent = parent;
  graph->owner = owner;
  graph->attribute = attribute;
  const Graph* g = graph.get();
  graphs_.push_back(std::move(graph));
  Defs& defs = defs_[g];
  for (const auto& v : proto->input()) defs.inputs.insert(v.name());
  for (auto& t : *proto->mutable_initializer()) defs.initializers[t.name()] = &t;
  for (auto& node : *proto->mutable_node()) {
    for (const auto& o : node.output()) {
      if (!o.empty()) defs.producers[o] = &node;
    }
    for (int i = 0; i < node.input_size(); ++i) {
      if (!node.input(i).empty()) defs.readers[node.input(i)].push_back({&node, i});
    }
    for (const auto& name : implicit_inputs(node)) defs.readers[name].push_back({&node, -1});
  }
  for (const auto& o : proto->output()) defs.readers[o.name()].push_back({nullptr, -1});
  for (auto& node : *proto->mutable_node()) {
    for_each_body(node, [&](const onnx::AttributeProto& attr, onnx::GraphProto& body) {
      add_graph(&body, g, &node, attr.name());
    });
  }
}

bool ModelIndex::defines(const Graph& g, const std::string& name) const {
  const Defs& d = defs_.at(&g);
  return d.producers.count(name) || d.initializers.count(name) || d.inputs.count(name);
}

const ModelIndex::Graph* ModelIndex::defining_graph(const Graph& g, const std::string& name) const {
  for (const Graph* s = &g; s; s = s->parent) {
    if (defines(*s, name)) return s;
  }
  return nullptr;
}

onnx::NodeProto* ModelIndex::producer(const Graph& g, const std::string& name) const {
  const Graph* s = defining_graph(g, name);
  if (!s) return nullptr;
  const auto& producers = defs_.at(s).producers;
  auto it = producers.find(name);
  return it == producers.end() ? nullptr : it->second;
}

bool ModelIndex::is_graph_input(const Graph& g, const std::string& name) const {
  const Graph* s = defining_graph(g, name);
  return s && defs_.at(s).inputs.count(name) && !defs_.at(s).initializers.count(name);
}

std::optional<ConstantRef> ModelIndex::constant(const Graph& g, const std::string& name) const {
  const Graph* s = defining_graph(g, name);
  if (!s) return std::nullopt;
  const Defs& d = defs_.at(s);
  if (auto it = d.initializers.find(name); it != d.initializers.end()) {
    // An initializer that is also a graph input (IR < 4 style) can be overridden by a feed; ONNX
    // Runtime still treats it as the default, and so do the exporters that write it.
    return ConstantRef{s->proto, it->second, nullptr};
  }
  auto it = d.producers.find(name);
  if (it == d.producers.end()) return std::nullopt;
  onnx::NodeProto* node = it->second;
  if (node->op_type() != "Constant" || !is_default_domain(*node) || node->output_size() != 1) {
    return std::nullopt;
  }
  for (auto& attr : *node->mutable_attribute()) {
    if (attr.name() == "value" && attr.has_t())
      return ConstantRef{s->proto, attr.mutable_t(), node};
  }
  return std::nullopt;  // value_float, value_ints, ...: not a weight
}

const std::vector<ModelIndex::Use>& ModelIndex::readers(const Graph& g,
                                                        const std::string& name) const {
  const auto& readers = defs_.at(&g).readers;
  auto it = readers.find(name);
  return it == readers.end() ? kNoUses : it->second;
}

std::string ModelIndex::why_not_constant(const Graph& g, const std::string& name) const {
  if (const onnx::NodeProto* p = producer(g, name)) {
    return fmt::format("computed at run time (by {})", p->op_type());
  }
  if (is_graph_input(g, name)) return "a graph input, not a constant";
  return "not a constant";
}

namespace {

void rename_in(onnx::GraphProto& graph, const std::string& from, const std::string& to, bool body) {
  for (auto& node : *graph.mutable_node()) {
    for (auto& in : *node.mutable_input()) {
      if (in == from) in = to;
    }
    for_each_body(node, [&](const onnx::AttributeProto&, onnx::GraphProto& g) {
      rename_in(g, from, to, true);
    });
  }
  if (!body) return;
  for (auto& o : *graph.mutable_output()) {
    if (o.name() == from) o.set_name(to);
  }
}

}  // namespace

int activation_quantizers(const ModelIndex& index) {
  int count = 0;
  for (const auto& node : index.main().proto->node()) {
    count += node.op_type() == "QuantizeLinear" && node.input_size() > 0 &&
             !index.constant(index.main(), node.input(0));
  }
  return count;
}

void rename_reads(onnx::GraphProto& graph, const std::string& from, const std::string& to) {
  rename_in(graph, from, to, false);
}

std::vector<std::string> implicit_inputs(const onnx::NodeProto& node) {
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  for_each_body(node, [&](const onnx::AttributeProto&, const onnx::GraphProto& g) {
    collect_free(g, {}, out, seen);
  });
  return out;
}

// --- editing -------------------------------------------------------------------------------------

NameSet::NameSet(const onnx::ModelProto& model) {
  std::function<void(const onnx::GraphProto&)> add = [&](const onnx::GraphProto& graph) {
    defined_names(graph, used_);
    for (const auto& n : graph.node()) {
      if (!n.name().empty()) used_.insert(n.name());
      for (const auto& i : n.input()) used_.insert(i);
      for_each_body(n, [&](const onnx::AttributeProto&, const onnx::GraphProto& g) { add(g); });
    }
    for (const auto& o : graph.output()) used_.insert(o.name());
    for (const auto& v : graph.value_info()) used_.insert(v.name());
  };
  add(model.graph());
}

std::string NameSet::unique(const std::string& base) {
  std::string name = base;
  for (int i = 1; used_.count(name); ++i) name = fmt::format("{}_{}", base, i);
  used_.insert(name);
  return name;
}

GraphEditor::GraphEditor(Model& model) : model_(model), names_(model.proto) {}

onnx::NodeProto& GraphEditor::add_node(onnx::GraphProto& graph, const std::string& op,
                                       const std::string& name, std::vector<std::string> inputs,
                                       std::vector<std::string> outputs, const std::string& domain,
                                       const onnx::NodeProto* before) {
  auto node = std::make_unique<onnx::NodeProto>();
  node->set_op_type(op);
  node->set_name(names_.unique(name.empty() ? op : name));
  if (!domain.empty()) node->set_domain(domain);
  for (auto& i : inputs) node->add_input(std::move(i));
  for (auto& o : outputs) node->add_output(std::move(o));
  auto& slot = added_[&graph];
  slot.push_back({std::move(node), before});
  return *slot.back().node;
}

onnx::NodeProto& GraphEditor::add_copy(onnx::GraphProto& graph, const onnx::NodeProto& node,
                                       const onnx::NodeProto* before) {
  auto& slot = added_[&graph];
  slot.push_back({std::make_unique<onnx::NodeProto>(node), before});
  return *slot.back().node;
}

std::string GraphEditor::add_initializer(onnx::GraphProto& graph, const std::string& base,
                                         int data_type, const std::vector<int64_t>& dims,
                                         PayloadPtr payload) {
  auto* t = graph.add_initializer();
  t->set_name(names_.unique(base.empty() ? "constant" : base));
  t->set_data_type(data_type);
  for (int64_t d : dims) t->add_dims(d);
  set_tensor_payload(model_, *t, std::move(payload));
  initializers_added_ = true;
  return t->name();
}

std::string GraphEditor::add_initializer(onnx::GraphProto& graph, const std::string& base,
                                         int data_type, const std::vector<int64_t>& dims,
                                         const void* data, size_t bytes) {
  std::vector<uint8_t> raw(bytes);
  if (bytes) std::memcpy(raw.data(), data, bytes);
  return add_initializer(graph, base, data_type, dims, make_owned_payload(std::move(raw)));
}

std::string GraphEditor::add_floats(onnx::GraphProto& graph, const std::string& base,
                                    const std::vector<int64_t>& dims,
                                    const std::vector<float>& values) {
  return add_initializer(graph, base, onnx::TensorProto::FLOAT, dims, values.data(),
                         values.size() * sizeof(float));
}

void GraphEditor::remove_node(onnx::NodeProto& node) { removed_.insert(&node); }

bool GraphEditor::apply() {
  std::set<onnx::GraphProto*> touched;
  // New nodes first, each just before its anchor (or at the end): the order stays close to the
  // original, and the sort below only moves what must move.
  for (auto& [graph, added] : added_) {
    auto* nodes = graph->mutable_node();
    std::vector<onnx::NodeProto*> old;  // the existing nodes, moved out without copies
    old.reserve(nodes->size());
    while (!nodes->empty()) old.push_back(nodes->ReleaseLast());
    std::reverse(old.begin(), old.end());
    const std::unordered_set<const onnx::NodeProto*> present(old.begin(), old.end());
    std::unordered_map<const onnx::NodeProto*, std::vector<onnx::NodeProto*>> before;
    std::vector<onnx::NodeProto*> at_end;
    for (auto& a : added) {
      (present.count(a.before) ? before[a.before] : at_end).push_back(a.node.release());
    }
    for (onnx::NodeProto* node : old) {
      if (auto it = before.find(node); it != before.end()) {
        for (auto* n : it->second) nodes->AddAllocated(n);
      }
      nodes->AddAllocated(node);
    }
    for (auto* n : at_end) nodes->AddAllocated(n);
    touched.insert(graph);
  }
  if (!removed_.empty()) {
    std::function<void(onnx::GraphProto&)> sweep = [&](onnx::GraphProto& graph) {
      auto* nodes = graph.mutable_node();
      for (int i = nodes->size() - 1; i >= 0; --i) {
        if (removed_.count(&nodes->Get(i))) {
          nodes->DeleteSubrange(i, 1);
          touched.insert(&graph);
        }
      }
      for (auto& node : *nodes) {
        for_each_body(node, [&](const onnx::AttributeProto&, onnx::GraphProto& g) { sweep(g); });
      }
    };
    sweep(*model_.proto.mutable_graph());
  }
  for (auto* graph : touched) topological_sort(*graph);
  const bool changed = !touched.empty() || initializers_added_;
  if (changed) remove_unused_constants(model_.proto);
  added_.clear();
  removed_.clear();
  initializers_added_ = false;
  return changed;
}

// --- the per-node driver -------------------------------------------------------------------------

std::string node_label(const ModelIndex::Graph& graph, const onnx::NodeProto& node) {
  return graph.parent ? node_label(node) + " " + graph.where() : node_label(node);
}

void visit_nodes(const ModelIndex& index, PassResult& result,
                 const std::function<bool(const onnx::NodeProto&)>& candidate,
                 const std::function<Verdict(const ModelIndex::Graph&, onnx::NodeProto&)>& visit,
                 const NodeFilter* filter) {
  for (const auto& graph : index.graphs()) {
    std::vector<onnx::NodeProto*> nodes;
    for (auto& node : *graph->proto->mutable_node()) nodes.push_back(&node);
    for (onnx::NodeProto* node : nodes) {
      if (!candidate(*node)) continue;
      const std::string label = node_label(*graph, *node);
      if (filter) {
        if (std::string why = filter->why_not(node->name()); !why.empty()) {
          result.skipped.push_back({label, why});
          continue;
        }
      }
      const std::string key = node_key(*node);
      Verdict v = visit(*graph, *node);
      (v.changed ? result.changed : result.skipped).push_back({label, std::move(v.text), key});
    }
  }
}

// --- upkeep --------------------------------------------------------------------------------------

void for_each_tensor(onnx::ModelProto& model,
                     const std::function<void(onnx::TensorProto&, const std::string&)>& fn) {
  std::function<void(onnx::GraphProto&)> walk = [&](onnx::GraphProto& graph) {
    for (auto& t : *graph.mutable_initializer()) {
      fn(t, fmt::format("initializer '{}' of graph '{}'", t.name(), graph.name()));
    }
    for (auto& node : *graph.mutable_node()) {
      node_tensors(node, graph.name(), fn);
      for_each_body(node, [&](const onnx::AttributeProto&, onnx::GraphProto& g) { walk(g); });
    }
  };
  walk(*model.mutable_graph());
  for (auto& function : *model.mutable_functions()) {
    for (auto& node : *function.mutable_node()) node_tensors(node, function.name(), fn);
  }
}

void topological_sort(onnx::GraphProto& graph) {
  const int n = graph.node_size();
  std::unordered_map<std::string, int> producer;
  for (int i = 0; i < n; ++i) {
    for (const auto& o : graph.node(i).output()) {
      if (!o.empty()) producer[o] = i;
    }
  }
  std::vector<std::vector<int>> users(n);
  std::vector<int> pending(n, 0);
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> inputs(graph.node(i).input().begin(), graph.node(i).input().end());
    for (auto& name : implicit_inputs(graph.node(i))) inputs.push_back(std::move(name));
    std::unordered_set<int> deps;
    for (const auto& name : inputs) {
      auto it = producer.find(name);
      if (it != producer.end() && it->second != i && deps.insert(it->second).second) {
        users[it->second].push_back(i);
        ++pending[i];
      }
    }
  }
  // Kahn's algorithm, always taking the earliest ready node: keeps a valid order unchanged.
  std::priority_queue<int, std::vector<int>, std::greater<int>> ready;
  for (int i = 0; i < n; ++i) {
    if (pending[i] == 0) ready.push(i);
  }
  std::vector<int> order;
  order.reserve(n);
  while (!ready.empty()) {
    int i = ready.top();
    ready.pop();
    order.push_back(i);
    for (int u : users[i]) {
      if (--pending[u] == 0) ready.push(u);
    }
  }
  if (static_cast<int>(order.size()) != n) {
    fail(ExitCode::kInput, "graph '{}' has a cycle", graph.name());
  }
  // Reorder the node objects themselves: pointers to nodes (and to their bodies) stay valid.
  auto* nodes = graph.mutable_node();
  std::vector<onnx::NodeProto*> released(n);
  for (int i = n - 1; i >= 0; --i) released[i] = nodes->ReleaseLast();
  for (int i : order) nodes->AddAllocated(released[i]);
}

namespace {

// How many node inputs (in any graph, subgraphs included) and graph outputs read each name.
std::unordered_map<std::string, int> count_uses(const onnx::ModelProto& model) {
  std::unordered_map<std::string, int> uses;
  count_graph_uses(model.graph(), uses);
  for (const auto& f : model.functions()) {
    for (const auto& n : f.node()) {
      for (const auto& i : n.input()) ++uses[i];
    }
  }
  return uses;
}

void drop_unused(onnx::GraphProto& graph, const std::unordered_map<std::string, int>& uses) {
  auto used = [&](const std::string& name) {
    auto it = uses.find(name);
    return it != uses.end() && it->second > 0;
  };
  auto* nodes = graph.mutable_node();
  for (int i = nodes->size() - 1; i >= 0; --i) {
    const auto& n = nodes->Get(i);
    if (n.op_type() == "Constant" && is_default_domain(n) && n.output_size() == 1 &&
        !used(n.output(0))) {
      nodes->DeleteSubrange(i, 1);
    }
  }
  std::unordered_set<std::string> dropped;
  auto* inits = graph.mutable_initializer();
  for (int i = inits->size() - 1; i >= 0; --i) {
    if (!used(inits->Get(i).name())) {
      dropped.insert(inits->Get(i).name());
      inits->DeleteSubrange(i, 1);
    }
  }
  auto* inputs = graph.mutable_input();
  for (int i = inputs->size() - 1; i >= 0; --i) {
    if (dropped.count(inputs->Get(i).name())) inputs->DeleteSubrange(i, 1);
  }
  for (auto& node : *nodes) {
    for_each_body(node,
                  [&](const onnx::AttributeProto&, onnx::GraphProto& g) { drop_unused(g, uses); });
  }
}

}  // namespace

void remove_unused_constants(onnx::ModelProto& model) {
  drop_unused(*model.mutable_graph(), count_uses(model));
}

int opset_of(const onnx::ModelProto& model, const std::string& domain) {
  for (const auto& o : model.opset_import()) {
    if (o.domain() == domain || (domain.empty() && o.domain() == "ai.onnx")) {
      return static_cast<int>(o.version());
    }
  }
  return 0;
}

void ensure_opset(onnx::ModelProto& model, const std::string& domain, int version) {
  for (const auto& o : model.opset_import()) {
    if (o.domain() == domain) return;
  }
  auto* o = model.add_opset_import();
  o->set_domain(domain);
  o->set_version(version);
}

}  // namespace quantize
