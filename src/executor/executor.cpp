#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <cblas.h>

#include <map>
#include <optional>
#include <unordered_set>

#include "graph/graph.h"
#include "kernels/kernels.h"
#include "ops.h"
#include "support/threads.h"

namespace quantize {
namespace exec {

const Tensor& OpContext::input(int i) const {
  if (!has_input(i)) fail("input {} is missing", i);
  return *inputs_[i];
}

const onnx::AttributeProto* OpContext::find(const char* name) const {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return &a;
  }
  return nullptr;
}

int64_t OpContext::attr_int(const char* name, int64_t fallback) const {
  const auto* a = find(name);
  return a ? a->i() : fallback;
}

float OpContext::attr_float(const char* name, float fallback) const {
  const auto* a = find(name);
  return a ? a->f() : fallback;
}

std::vector<int64_t> OpContext::attr_ints(const char* name) const {
  const auto* a = find(name);
  return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : std::vector<int64_t>{};
}

std::string OpContext::attr_string(const char* name, const std::string& fallback) const {
  const auto* a = find(name);
  return a ? a->s() : fallback;
}

const onnx::TensorProto* OpContext::attr_tensor(const char* name) const {
  const auto* a = find(name);
  return a && a->has_t() ? &a->t() : nullptr;
}

const onnx::GraphProto* OpContext::attr_graph(const char* name) const {
  const auto* a = find(name);
  return a && a->has_g() ? &a->g() : nullptr;
}

std::string OpContext::label() const { return node_label(node); }

const Registry& registry() {
  static const Registry r = [] {
    Registry r;
    register_elementwise(r);
    register_shape(r);
    register_math(r);
    register_nn(r);
    register_quant(r);
    register_rnn(r);
    register_index(r);
    register_control(r);
    register_transformer(r);
    register_signal(r);
    register_sequence(r);
    return r;
  }();
  return r;
}

std::vector<int64_t> broadcast_shape(const OpContext& ctx, const std::vector<int64_t>& a,
                                     const std::vector<int64_t>& b) {
  const size_t rank = std::max(a.size(), b.size());
  std::vector<int64_t> out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) {
      ctx.fail("shapes [{}] and [{}] do not broadcast", fmt::join(a, ","), fmt::join(b, ","));
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

std::vector<int64_t> broadcast_offsets(const std::vector<int64_t>& shape,
                                       const std::vector<int64_t>& out) {
  const size_t rank = out.size(), pad = rank - shape.size();
  std::vector<int64_t> stride(rank, 0);
  int64_t s = 1;
  for (size_t i = rank; i-- > pad;) {
    const int64_t d = shape[i - pad];
    stride[i] = d == 1 ? 0 : s;
    s *= d;
  }
  int64_t total = 1;
  for (int64_t d : out) total *= d;
  std::vector<int64_t> offsets(static_cast<size_t>(total));
  std::vector<int64_t> index(rank, 0);
  int64_t offset = 0;
  for (int64_t n = 0; n < total; ++n) {
    offsets[n] = offset;
    for (size_t i = rank; i-- > 0;) {  // odometer increment
      ++index[i];
      offset += stride[i];
      if (index[i] < out[i]) break;
      offset -= stride[i] * index[i];
      index[i] = 0;
    }
  }
  return offsets;
}

int64_t normalize_axis(const OpContext& ctx, int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= std::max<int64_t>(rank, 1)) {
    ctx.fail("axis {} is out of range for rank {}", axis, rank);
  }
  return axis < 0 ? axis + rank : axis;
}

void sgemm(bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, const float* b,
           float* c) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::fill(c, c + m * n, 0.0f);
    return;
  }
  // OpenBLAS runs single-threaded (its idle workers spin and starve the executor's own threads);
  // large products are split over the executor's threads by column blocks instead.
  const int64_t block =
      n * m * k >= (1 << 18) && n >= 64 ? std::max<int64_t>(32, n / (4 * thread_count())) : n;
  parallel_for(static_cast<size_t>((n + block - 1) / block), 1, [&](size_t b0, size_t b1) {
    for (size_t blk = b0; blk < b1; ++blk) {
      const int64_t j0 = static_cast<int64_t>(blk) * block, cols = std::min(block, n - j0);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                  static_cast<int>(m), static_cast<int>(cols), static_cast<int>(k), 1.0f, a,
                  static_cast<int>(k), trans_b ? b + j0 * k : b + j0,
                  static_cast<int>(trans_b ? k : n), 0.0f, c + j0, static_cast<int>(n));
    }
  });
}

void sgemm_block(int64_t m, int64_t n, int64_t k, const float* a, const float* b, int64_t ldb,
                 float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), 1.0f, a, static_cast<int>(k), b, static_cast<int>(ldb), 0.0f, c,
              static_cast<int>(ldc));
}

void require_float(const OpContext& ctx, const Tensor& t, const char* what) {
  if (t.dtype() != onnx::TensorProto::FLOAT) {
    ctx.fail("{} is data type {}: only float32 is supported", what, t.dtype());
  }
}

}  // namespace exec

namespace {

// Ops that move bytes without arithmetic: they run on float16 tensors as they are.
const std::unordered_set<std::string> kAnyType = {
    "Reshape", "Transpose", "Squeeze",         "Unsqueeze", "Concat", "Split",
    "Slice",   "Gather",    "Expand",          "Identity",  "Shape",  "Size",
    "Flatten", "Constant",  "ConstantOfShape", "Where",     "Cast"};

Tensor widen(const Tensor& half) {
  Tensor t(onnx::TensorProto::FLOAT, half.shape());
  for (int64_t i = 0; i < half.size(); ++i)
    t.data<float>()[i] = f16_to_f32_scalar(half.data<uint16_t>()[i]);
  return t;
}

// IEEE round to nearest even, overflowing to inf (unlike the quantizer's clamping conversion).
Tensor narrow(const Tensor& full) {
  Tensor t(onnx::TensorProto::FLOAT16, full.shape());
  for (int64_t i = 0; i < full.size(); ++i) {
    const float x = full.data<float>()[i];
    uint16_t h = f32_to_f16_scalar(x);
    if ((h & 0x7fff) == 0x7bff && std::fabs(x) >= 65520.0f)
      h = static_cast<uint16_t>((h & 0x8000) | 0x7c00);
    t.data<uint16_t>()[i] = h;
  }
  return t;
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
std::string legacy_refusal(const onnx::NodeProto& node, int opset) {
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

std::string op_key(const onnx::NodeProto& node) {
  return node.domain().empty() || node.domain() == "ai.onnx" ? node.op_type()
                                                             : node.domain() + "." + node.op_type();
}

}  // namespace

Executor::Executor(const Model& model) : model_(model) {
  openblas_set_num_threads(1);
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
    if (!exec::registry().count(op_key(node))) {
      fail(ExitCode::kInput, "{}: node {} uses {}, which the executor does not run", model.source,
           node_label(node), op_key(node));
    }
    const std::string reason = default_opset < 7 ? legacy_refusal(node, default_opset) : "";
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
  const int default_opset = opset_of(model_.proto, "");
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
    for (const Tensor* t : in) {
      if (t && t->dtype() == onnx::TensorProto::STRING && node.op_type() != "Cast" &&
          node.op_type() != "CastLike" && node.op_type() != "Identity") {
        fail(ExitCode::kInput,
             "{}: node {}: string tensors are supported by Cast, CastLike and "
             "Identity only",
             model_.source, node_label(node));
      }
      if (t && t->is_container() && !kTakesContainers.count(node.op_type())) {
        fail(ExitCode::kInput, "{}: node {}: {} does not take sequences or optionals",
             model_.source, node_label(node), node.op_type());
      }
    }
    // float16 arithmetic runs in float32, its float results rounded back to float16.
    bool half = false;
    for (const Tensor* t : in) half |= t && t->dtype() == onnx::TensorProto::FLOAT16;
    half &= !kAnyType.count(node.op_type());
    std::vector<Tensor> widened;
    if (half) {
      widened.reserve(in.size());
      for (auto& t : in) {
        if (t && t->dtype() == onnx::TensorProto::FLOAT16) {
          widened.push_back(widen(*t));
          t = &widened.back();
        }
      }
    }
    std::vector<Tensor> out(node.output_size());
    const int opset = node.domain().empty() ? default_opset : opset_of(model_.proto, node.domain());
    exec::OpContext ctx(model_, node, opset, in, out);
    ctx.run_subgraph = [this, &scope](const onnx::GraphProto& g,
                                      const std::vector<Tensor>& inputs) {
      return run_subgraph(g, scope, inputs);
    };
    // The reader this node absorbs, for float32 runs nobody observes (float16 results are
    // rounded after the op, so there the reader runs as its own step).
    const auto fusion = observer || half || !main_graph ? fusions_.end() : fusions_.find(k);
    exec::Clamp clamp{};
    if (fusion != fusions_.end()) {
      clamp = {fusion->second.lo, fusion->second.hi};
      ctx.fused = &clamp;
      skipped[fusion->second.reader] = true;
    }
    const auto op_start = std::chrono::steady_clock::now();
    exec::registry().at(op_key(node))(ctx);
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
    if (half) {
      for (auto& t : out) {
        if (t.dtype() == onnx::TensorProto::FLOAT) t = narrow(t);
      }
    }
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
