#include "graph/graph.h"

#include <queue>

#include "quantize/error.h"

namespace quantize {
namespace {

void walk_graphs(onnx::GraphProto& graph, const Scope* parent,
                 const std::function<void(onnx::GraphProto&, const Scope&)>& fn) {
  Scope scope{&graph, parent};
  fn(graph, scope);
  for (auto& node : *graph.mutable_node()) {
    for (auto& attr : *node.mutable_attribute()) {
      if (attr.has_g()) walk_graphs(*attr.mutable_g(), &scope, fn);
      for (auto& g : *attr.mutable_graphs()) walk_graphs(g, &scope, fn);
    }
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
    for (const auto& attr : n.attribute()) {
      if (attr.has_g()) collect_free(attr.g(), defined, out, seen);
      for (const auto& g : attr.graphs()) collect_free(g, defined, out, seen);
    }
  }
  for (const auto& o : graph.output()) use(o.name());
}

void count_graph_uses(const onnx::GraphProto& graph, std::unordered_map<std::string, int>& uses) {
  for (const auto& n : graph.node()) {
    for (const auto& i : n.input()) {
      if (!i.empty()) ++uses[i];
    }
    for (const auto& attr : n.attribute()) {
      if (attr.has_g()) count_graph_uses(attr.g(), uses);
      for (const auto& g : attr.graphs()) count_graph_uses(g, uses);
    }
  }
  for (const auto& o : graph.output()) ++uses[o.name()];
}

}  // namespace

void for_each_graph(onnx::ModelProto& model,
                    const std::function<void(onnx::GraphProto&, const Scope&)>& fn) {
  walk_graphs(*model.mutable_graph(), nullptr, fn);
}

void for_each_tensor(onnx::ModelProto& model,
                     const std::function<void(onnx::TensorProto&, const std::string&)>& fn) {
  for_each_graph(model, [&](onnx::GraphProto& graph, const Scope&) {
    for (auto& t : *graph.mutable_initializer()) {
      fn(t, fmt::format("initializer '{}' of graph '{}'", t.name(), graph.name()));
    }
    for (auto& node : *graph.mutable_node()) node_tensors(node, graph.name(), fn);
  });
  for (auto& function : *model.mutable_functions()) {
    for (auto& node : *function.mutable_node()) node_tensors(node, function.name(), fn);
  }
}

std::optional<ConstantRef> find_constant(const Scope& scope, const std::string& name) {
  for (const Scope* s = &scope; s != nullptr; s = s->parent) {
    auto& graph = *s->graph;
    for (auto& t : *graph.mutable_initializer()) {
      if (t.name() == name) return ConstantRef{&graph, &t, -1};
    }
    for (int i = 0; i < graph.node_size(); ++i) {
      auto& node = *graph.mutable_node(i);
      if (node.op_type() != "Constant" || !node.domain().empty() || node.output_size() != 1 ||
          node.output(0) != name) {
        continue;
      }
      for (auto& attr : *node.mutable_attribute()) {
        if (attr.name() == "value" && attr.has_t()) return ConstantRef{&graph, attr.mutable_t(), i};
      }
      return std::nullopt;  // value_float, value_ints, ...: not a weight
    }
    // A node output of this name in this graph is not a constant, and hides outer names.
    for (const auto& node : graph.node()) {
      for (const auto& o : node.output()) {
        if (o == name) return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

NameSet::NameSet(const onnx::ModelProto& model) {
  auto& m = const_cast<onnx::ModelProto&>(model);
  for_each_graph(m, [&](onnx::GraphProto& graph, const Scope&) {
    defined_names(graph, used_);
    for (const auto& n : graph.node()) {
      if (!n.name().empty()) used_.insert(n.name());
      for (const auto& i : n.input()) used_.insert(i);
    }
    for (const auto& o : graph.output()) used_.insert(o.name());
    for (const auto& v : graph.value_info()) used_.insert(v.name());
  });
}

std::string NameSet::unique(const std::string& base) {
  std::string name = base;
  for (int i = 1; used_.count(name); ++i) name = fmt::format("{}_{}", base, i);
  used_.insert(name);
  return name;
}

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

std::vector<std::string> implicit_inputs(const onnx::NodeProto& node) {
  std::vector<std::string> out;
  std::unordered_set<std::string> seen;
  for (const auto& attr : node.attribute()) {
    if (attr.has_g()) collect_free(attr.g(), {}, out, seen);
    for (const auto& g : attr.graphs()) collect_free(g, {}, out, seen);
  }
  return out;
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
  google::protobuf::RepeatedPtrField<onnx::NodeProto> sorted;
  for (int i : order) *sorted.Add() = std::move(*graph.mutable_node(i));
  graph.mutable_node()->Swap(&sorted);
}

int remove_unused_initializers(onnx::ModelProto& model) {
  auto uses = count_uses(model);
  int removed = 0;
  for_each_graph(model, [&](onnx::GraphProto& graph, const Scope&) {
    std::unordered_set<std::string> dropped;
    auto* inits = graph.mutable_initializer();
    for (int i = inits->size() - 1; i >= 0; --i) {
      if (uses[inits->Get(i).name()] == 0) {
        dropped.insert(inits->Get(i).name());
        inits->DeleteSubrange(i, 1);
        ++removed;
      }
    }
    auto* inputs = graph.mutable_input();
    for (int i = inputs->size() - 1; i >= 0; --i) {
      if (dropped.count(inputs->Get(i).name())) inputs->DeleteSubrange(i, 1);
    }
  });
  return removed;
}

std::string node_label(const onnx::NodeProto& node) {
  if (!node.name().empty()) return fmt::format("'{}' ({})", node.name(), node.op_type());
  return fmt::format("{} -> '{}'", node.op_type(), node.output_size() ? node.output(0) : "");
}

void remove_unused_constants(onnx::ModelProto& model) {
  auto uses = count_uses(model);
  for_each_graph(model, [&](onnx::GraphProto& graph, const Scope&) {
    auto* nodes = graph.mutable_node();
    for (int i = nodes->size() - 1; i >= 0; --i) {
      const auto& n = nodes->Get(i);
      if (n.op_type() == "Constant" && n.output_size() == 1 && uses[n.output(0)] == 0) {
        nodes->DeleteSubrange(i, 1);
      }
    }
  });
  remove_unused_initializers(model);
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
