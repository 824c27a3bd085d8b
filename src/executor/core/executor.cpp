// The graph interpreter: Executor checks a model's nodes and plans its fusions, then runs the
// graph (and If / Loop / Scan bodies) node by node, freeing each value after its last reader.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <map>
#include <optional>
#include <unordered_set>

#include "executor/core/node.h"
#include "executor/core/ops.h"
#include "graph/graph.h"

namespace quantize {

namespace {

// Calls f on every node of the graph and, depth first, of the graphs in its nodes' attributes.
template <typename F>
void for_each_node(const onnx::GraphProto& graph, const F& f) {
  for (const auto& node : graph.node()) {
    f(node);
    for (const auto& a : node.attribute()) {
      if (a.has_g()) for_each_node(a.g(), f);
      for (const auto& g : a.graphs()) for_each_node(g, f);
    }
  }
}

// The names a node's subgraphs read (an over-approximation: every input of their nodes and
// every output they name), so the enclosing graph keeps those values until the node has run.
std::vector<std::string> subgraph_reads(const onnx::NodeProto& node) {
  std::vector<std::string> names;
  for (const auto& a : node.attribute()) {
    if (!a.has_g()) continue;
    for_each_node(a.g(), [&](const onnx::NodeProto& n) {
      names.insert(names.end(), n.input().begin(), n.input().end());
    });
    for (const auto& o : a.g().output()) names.push_back(o.name());
  }
  return names;
}

}  // namespace

Executor::Executor(const Model& model) : model_(model) {
  exec::blas_single_threaded();
#if defined(__GLIBC__)
  // Activations are allocated and freed in the same pattern on every run: keep freed memory in
  // the heap for the next ones (up to glibc's largest mmap threshold, 32 MiB per block) rather
  // than returning it to the system and taking page faults to get it back. Peak memory is
  // unchanged: it still follows the live set.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  const auto& graph = model.proto.graph();
  const int default_opset = opset_of(model.proto, "");
  for_each_node(graph, [&](const onnx::NodeProto& node) {
    if (!exec::find_op(node)) {
      fail(ExitCode::kInput, "{}: node {} uses {}, which the executor does not run", model.source,
           node_label(node), exec::op_key(node));
    }
    const std::string reason = exec::legacy_refusal(model, node);
    if (!reason.empty()) {
      fail(ExitCode::kInput, "{}: node {}: {} at opset {} is not supported ({})", model.source,
           node_label(node), node.op_type(), default_opset, reason);
    }
  });
  for (const auto& t : graph.initializer()) {
    constants_[t.name()] = std::make_shared<const Tensor>(tensor_from_proto(model, t));
  }
  inputs_ = fed_inputs(model);
  for (const auto& v : graph.output()) outputs_.push_back(v.name());
  plan_fusions();
}

void Executor::plan_fusions() {
  const auto& graph = model_.proto.graph();
  std::unordered_map<std::string, std::vector<size_t>> readers;
  for (size_t k = 0; k < static_cast<size_t>(graph.node_size()); ++k) {
    for (const auto& in : graph.node(k).input()) readers[in].push_back(k);
    for (const auto& in : subgraph_reads(graph.node(k))) readers[in].push_back(k);
  }
  for (const auto& o : outputs_) readers[o].push_back(SIZE_MAX);  // graph outputs stay as they are
  const int default_opset = opset_of(model_.proto, "");
  // A constant float bound of Clip (input `i`), or `fallback` when the input is absent.
  auto bound = [&](const onnx::NodeProto& clip, int i, float fallback) -> std::optional<float> {
    if (clip.input_size() <= i || clip.input(i).empty()) return fallback;
    auto it = constants_.find(clip.input(i));
    if (it == constants_.end() || it->second->dtype() != onnx::TensorProto::FLOAT ||
        it->second->size() != 1) {
      return std::nullopt;
    }
    return it->second->data<float>()[0];
  };
  for (size_t k = 0; k < static_cast<size_t>(graph.node_size()); ++k) {
    const auto& node = graph.node(k);
    if (node.op_type() != "Conv" || !node.domain().empty() || node.output_size() != 1) continue;
    const auto& users = readers[node.output(0)];
    if (users.size() != 1 || users[0] == SIZE_MAX) continue;
    const auto& next = graph.node(users[0]);
    if (!next.domain().empty() || next.input(0) != node.output(0) || next.output_size() != 1)
      continue;
    if (next.op_type() == "Relu") {
      fusions_[k] = {users[0], 0.0f, INFINITY};
    } else if (next.op_type() == "Clip") {
      std::optional<float> lo = -INFINITY, hi = INFINITY;
      if (default_opset < 11) {
        for (const auto& a : next.attribute()) {
          if (a.name() == "min") lo = a.f();
          if (a.name() == "max") hi = a.f();
        }
      } else {
        lo = bound(next, 1, -INFINITY), hi = bound(next, 2, INFINITY);
      }
      if (lo && hi) fusions_[k] = {users[0], *lo, *hi};
    }
  }
}

std::vector<std::string> fed_inputs(const Model& model) {
  const auto& graph = model.proto.graph();
  std::unordered_set<std::string> initializers;
  for (const auto& t : graph.initializer()) initializers.insert(t.name());
  std::vector<std::string> inputs;
  for (const auto& v : graph.input()) {
    if (initializers.count(v.name())) continue;
    if (!v.type().has_tensor_type() && !v.type().has_sequence_type() &&
        !v.type().has_optional_type()) {
      fail(ExitCode::kInput,
           "{}: input '{}' is not a tensor, a sequence or an optional (maps and "
           "sparse tensors are not supported)",
           model.source, v.name());
    }
    inputs.push_back(v.name());
  }
  return inputs;
}

Executor::~Executor() = default;

const Tensor* Executor::Scope::find(const std::string& name) const {
  for (const Scope* s = this; s; s = s->outer) {
    auto it = s->values.find(name);
    if (it != s->values.end()) return it->second.get();
  }
  return nullptr;
}

std::vector<Tensor> Executor::run(const std::vector<Tensor>& inputs, const Observer& observer) {
  if (inputs.size() != inputs_.size()) {
    fail(ExitCode::kInput, "{}: {} inputs given, the model takes {}", model_.source, inputs.size(),
         inputs_.size());
  }
  Scope scope;
  scope.values = constants_;
  for (size_t i = 0; i < inputs.size(); ++i) {
    scope.values[inputs_[i]] = std::make_shared<const Tensor>(inputs[i]);
  }
  run_nodes(model_.proto.graph(), scope, outputs_, observer, true);
  return results_of(scope, outputs_);
}

std::vector<Tensor> Executor::results_of(const Scope& scope,
                                         const std::vector<std::string>& names) const {
  std::vector<Tensor> results;
  for (const auto& name : names) {
    const Tensor* t = scope.find(name);
    if (!t) fail(ExitCode::kInput, "{}: output '{}' was not produced", model_.source, name);
    results.push_back(*t);
  }
  return results;
}

std::vector<Tensor> Executor::run_subgraph(const onnx::GraphProto& graph, const Scope& outer,
                                           const std::vector<Tensor>& inputs) {
  Scope scope;
  scope.outer = &outer;
  for (const auto& t : graph.initializer()) {
    scope.values[t.name()] = std::make_shared<const Tensor>(tensor_from_proto(model_, t));
  }
  if (inputs.size() != static_cast<size_t>(graph.input_size())) {
    fail(ExitCode::kInput, "{}: subgraph '{}' takes {} inputs, {} given", model_.source,
         graph.name(), graph.input_size(), inputs.size());
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    scope.values[graph.input(static_cast<int>(i)).name()] =
        std::make_shared<const Tensor>(inputs[i]);
  }
  std::vector<std::string> outputs;
  for (const auto& o : graph.output()) outputs.push_back(o.name());
  run_nodes(graph, scope, outputs, {}, false);
  return results_of(scope, outputs);
}

void Executor::run_nodes(const onnx::GraphProto& graph, Scope& scope,
                         const std::vector<std::string>& keep, const Observer& observer,
                         bool main_graph) {
  auto& values = scope.values;
  // Readers left per value: a value is dropped when the last one has run.
  std::unordered_map<std::string, int> readers;
  std::vector<std::vector<std::string>> implicit(static_cast<size_t>(graph.node_size()));
  for (size_t k = 0; k < static_cast<size_t>(graph.node_size()); ++k) {
    for (const auto& in : graph.node(k).input()) ++readers[in];
    implicit[k] = subgraph_reads(graph.node(k));
    for (const auto& in : implicit[k]) ++readers[in];
  }
  for (const auto& o : keep) readers[o] += 1 << 20;  // graph outputs are never dropped
  auto release = [&](const std::string& name) {
    if (!name.empty() && --readers[name] == 0 && !constants_.count(name)) values.erase(name);
  };
  // QUANTIZE_PROFILE=1: time per op type on stderr after each run; =node: per node too.
  static const char* profile_env = std::getenv("QUANTIZE_PROFILE");
  static const bool profile = profile_env != nullptr;
  static const bool profile_nodes = profile && std::string(profile_env) == "node";
  std::map<std::string, double> profile_time;
  std::map<std::string, int64_t> profile_elements;
  std::vector<bool> skipped(static_cast<size_t>(graph.node_size()), false);
  for (size_t k = 0; k < static_cast<size_t>(graph.node_size()); ++k) {
    if (skipped[k]) continue;
    const auto& node = graph.node(k);
    std::vector<const Tensor*> in;
    for (const auto& name : node.input()) {
      if (name.empty()) {
        in.push_back(nullptr);
        continue;
      }
      const Tensor* t = scope.find(name);
      if (!t) {
        fail(ExitCode::kInput, "{}: node {} reads '{}', which nothing produced", model_.source,
             node_label(node), name);
      }
      in.push_back(t);
    }
    exec::check_input_kinds(model_, node, in);
    const exec::HalfAsFloat half(node, in);
    std::vector<Tensor> out(node.output_size());
    exec::OpContext ctx(model_, node, exec::node_opset(model_, node), in, out);
    ctx.run_subgraph = [this, &scope](const onnx::GraphProto& g,
                                      const std::vector<Tensor>& inputs) {
      return run_subgraph(g, scope, inputs);
    };
    // The reader this node absorbs, for float32 runs nobody observes (float16 results are
    // rounded after the op, so there the reader runs as its own step).
    const auto fusion =
        observer || half.widened() || !main_graph ? fusions_.end() : fusions_.find(k);
    exec::Clamp clamp{};
    if (fusion != fusions_.end()) {
      clamp = {fusion->second.lo, fusion->second.hi};
      ctx.fused = &clamp;
      skipped[fusion->second.reader] = true;
    }
    const auto op_start = std::chrono::steady_clock::now();
    exec::run_op(exec::find_op(node), ctx);  // present: the constructor checked every node
    if (profile) {
      std::string key = node.op_type();
      if (key == "Conv" && in.size() > 1 && in[1]) {  // by kind: depthwise, grouped, 1x1, k x k
        const auto& ws = in[1]->shape();
        const int64_t group = ctx.attr_int("group", 1);
        key += group > 1 && ws[1] == 1                ? " depthwise"
               : group > 1                            ? " grouped"
               : ws.size() == 4 && ws[2] * ws[3] == 1 ? " 1x1"
                                                      : " kxk";
      }
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - op_start).count();
      profile_time[key] += seconds;
      if (profile_nodes) {
        std::fprintf(stderr, "node %-40s %-16s %8.3f ms [%s]\n", node_label(node).c_str(),
                     key.c_str(), seconds * 1e3,
                     out.empty() ? "" : fmt::format("{}", fmt::join(out[0].shape(), "x")).c_str());
      }
      profile_elements[key] += out.empty() ? 0 : out[0].size();
    }
    half.narrow_outputs(out);
    for (int i = 0; i < node.output_size(); ++i) {
      if (node.output(i).empty()) continue;
      auto value = std::make_shared<const Tensor>(std::move(out[i]));
      if (observer && !value->is_container()) observer(node.output(i), *value);
      const bool absorbed = fusion != fusions_.end() && i == 0;
      values[absorbed ? graph.node(fusion->second.reader).output(0) : node.output(i)] =
          std::move(value);
    }
    for (const auto& name : node.input()) release(name);
    for (const auto& name : implicit[k]) release(name);
  }
  if (profile) {
    for (const auto& [op, seconds] : profile_time) {
      std::fprintf(stderr, "profile %-22s %8.2f ms %12lld elements out\n", op.c_str(),
                   seconds * 1e3, static_cast<long long>(profile_elements[op]));
    }
  }
}

}  // namespace quantize
