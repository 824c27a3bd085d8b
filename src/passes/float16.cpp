// float32 -> float16 conversion of a whole model (the --fp16 mode, and the second half of q4f16).
//
//   Before:  x f32 -> Conv(W f32) -> Relu -> TopK -> y f32
//   After:   x f32 -> Cast(f16) -> Conv(W f16) -> Relu -> Cast(f32) -> TopK -> y f32
//
// Every graph is converted, If/Loop/Scan bodies included (each on its own, after the graph that
// encloses it): every node either computes in float16 ("converted") or stays float32 ("kept",
// with the reason reported), and a Cast goes on each float edge whose two ends disagree, once per
// value, direction and graph, so no redundant cast pairs appear. Which ops and which of their
// inputs take float16 comes from one table (float16_ops.h: ONNX's schemas and ONNX Runtime's
// exceptions). Also kept:
//  - nodes with subgraphs (their bodies are converted, float32 at the boundary), nodes that take
//    or make sequences and optionals, casts from or to strings;
//  - MatMuls reading a batch-transposing Transpose (ONNX Runtime 1.30's fusion of them crashes);
//  - float values computed from tensor shapes (shape arithmetic loses integers in float16);
//  - x^2 reductions (RMSNorm / variance: Pow or Mul(x, x) -> ReduceMean and the few nodes after
//    it), which overflow float16 as soon as |x| > 256;
//  - nodes reading a constant with a finite value beyond +-65504 (that constant stays float32).
// Inputs and outputs of the main graph stay float32 unless keep_io_types is off; those of bodies
// always do. Values below float16's smallest subnormal flush to zero (counted). A model with no
// float32 value is left as it is.
#include <cmath>
#include <cstring>
#include <unordered_set>

#include "graph/dtype.h"
#include "graph/graph.h"
#include "kernels/kernels.h"
#include "model/tensor_data.h"
#include "passes/float16_ops.h"
#include "passes/passes.h"
#include "quantize/error.h"
#include "support/threads.h"

namespace quantize {
namespace {

using onnx::TensorProto;
constexpr int kF32 = TensorProto::FLOAT;
constexpr int kF16 = TensorProto::FLOAT16;

// Ops that only look at their input's shape: any precision will do, no cast is needed.
bool reads_shape_only(const std::string& op) { return op == "Shape" || op == "Size"; }

// ONNX Runtime 1.30 (CPU, optimization level "all") fuses Transpose -> MatMul into FusedMatMul;
// with float16 and a "transpose batch" perm ([1..r-2, 0, r-1] or [1..r-2, r-1, 0]) the session
// crashes. Such MatMuls and the Transposes feeding them stay float32 (a Cast between the two is
// not enough: the optimizer moves the Transpose past it).
bool is_batch_transpose(const onnx::NodeProto& node) {
  if (node.op_type() != "Transpose") return false;
  const std::vector<int64_t> perm = attr_ints(node, "perm");
  const int r = static_cast<int>(perm.size());
  if (r < 3) return false;
  for (int i = 0; i < r - 2; ++i) {
    if (perm[i] != i + 1) return false;
  }
  return (perm[r - 2] == 0 && perm[r - 1] == r - 1) || (perm[r - 2] == r - 1 && perm[r - 1] == 0);
}

struct RangeScan {
  uint64_t overflow = 0;  // finite values beyond +-65504
  uint64_t flushed = 0;   // nonzero values that become zero
};

RangeScan scan_range(const float* x, uint64_t n) {
  constexpr float kMax = 65504.0f, kTiny = 2.98023224e-08f;  // 2^-25 rounds to zero
  constexpr uint64_t kGrain = 1 << 16;
  const uint64_t chunks = (n + kGrain - 1) / kGrain;
  std::vector<RangeScan> parts(chunks);
  parallel_for(chunks, 1, [&](size_t c0, size_t c1) {
    for (size_t c = c0; c < c1; ++c) {
      RangeScan s;
      for (uint64_t i = c * kGrain, e = std::min(n, (c + 1) * kGrain); i < e; ++i) {
        float a = std::fabs(x[i]);
        s.overflow += (a > kMax) & (a != INFINITY);
        s.flushed += (a <= kTiny) & (a != 0.0f);
      }
      parts[c] = s;
    }
  });
  RangeScan total;
  for (const auto& p : parts) {
    total.overflow += p.overflow;
    total.flushed += p.flushed;
  }
  return total;
}

PayloadPtr to_float16(PayloadPtr source) {
  const uint64_t n = source->size() / 4;
  return make_lazy_payload(n * 2, [source, n](uint8_t* out) {
    PayloadBytes in(source);
    const float* x = reinterpret_cast<const float*>(in.data());
    uint16_t* y = reinterpret_cast<uint16_t*>(out);
    parallel_for(n, 1 << 18,
                 [&](size_t b, size_t e) { kernels().f32_to_f16(x + b, e - b, y + b); });
  });
}

// What the whole model's conversion shares across its graphs.
struct Shared {
  Model* model = nullptr;
  const ModelIndex* index = nullptr;
  TypeMap types;
  std::optional<NameSet> names;
  std::unordered_set<std::string> f16;  // float values that hold float16 after the pass
  std::unordered_map<const onnx::GraphProto*, std::unordered_set<std::string>> constants;
  PassResult* result = nullptr;
  uint64_t flushed = 0;
  bool keep_io_types = true;
  const Precisions* precisions = nullptr;

  bool is_f32(const std::string& value) const {
    auto it = types.find(value);
    return it != types.end() && it->second.is_tensor(kF32);
  }
  bool is_tensor(const std::string& value) const {
    auto it = types.find(value);
    return it == types.end() || it->second.kind == ValueType::kTensor;
  }
};

// Converts one graph; the graphs enclosing it are already converted.
class GraphConverter {
 public:
  GraphConverter(Shared& shared, const ModelIndex::Graph& graph)
      : s_(shared), g_(graph), graph_(graph.proto) {}

  void run() {
    collect_constants();
    plan_nodes();
    choose_kept_nodes();
    decide_constants();
    assign_outputs();
    insert_casts();
    convert_nodes();
    retype_declarations();
    topological_sort(*graph_);
  }

 private:
  struct ConstantInfo {
    TensorProto* tensor = nullptr;
    int node = -1;  // Constant node index, or -1 for an initializer
    RangeScan range;
    bool scanned = false;
  };

  // Constants visible here: this graph's and its enclosing graphs'.
  bool is_constant(const std::string& name) const {
    for (const ModelIndex::Graph* g = &g_; g; g = g->parent) {
      auto it = s_.constants.find(g->proto);
      if (it != s_.constants.end() && it->second.count(name)) return true;
    }
    return false;
  }

  void collect_constants() {
    auto& visible = s_.constants[graph_];
    for (auto& t : *graph_->mutable_initializer()) {
      visible.insert(t.name());
      if (t.data_type() == kF32) constants_[t.name()] = ConstantInfo{&t, -1, {}, false};
    }
    for (int i = 0; i < graph_->node_size(); ++i) {
      auto& node = *graph_->mutable_node(i);
      if (node.op_type() != "Constant" || !node.domain().empty()) continue;
      visible.insert(node.output(0));
      for (auto& a : *node.mutable_attribute()) {
        if (a.name() == "value" && a.has_t() && a.t().data_type() == kF32) {
          constants_[node.output(0)] = ConstantInfo{a.mutable_t(), i, {}, false};
        }
      }
    }
  }

  ConstantInfo& scanned(const std::string& name) {
    ConstantInfo& c = constants_.at(name);
    if (!c.scanned) {
      PayloadBytes bytes(tensor_payload(*s_.model, *c.tensor));
      c.range = scan_range(reinterpret_cast<const float*>(bytes.data()), bytes.size() / 4);
      c.scanned = true;
    }
    return c;
  }

  void keep(int node, std::string reason) {
    if (reason_[node].empty()) reason_[node] = std::move(reason);
  }

  void plan_nodes() {
    const int n = graph_->node_size();
    plan_.resize(n);
    for (int i = 0; i < n; ++i) {
      const auto& node = graph_->node(i);
      plan_[i] = float16_plan(node, opset_of(s_.model->proto, node.domain()));
      // Attribute-typed outputs that follow the node: Cast to float, ConstantOfShape of a float.
      if (node.op_type() == "Cast" && attr_int(node, "to", 0) == kF32 && node.output_size()) {
        plan_[i].outputs[0] = true;
      }
      if (node.op_type() == "Constant") {  // constants follow their readers (decide_constants)
        plan_[i].keep.clear();
        plan_[i].outputs.assign(node.output_size(), false);
      }
      if (node.op_type() == "ConstantOfShape" && node.output_size()) {
        const auto* a = find_attribute(node, "value");
        plan_[i].outputs[0] = !a || !a->has_t() || a->t().data_type() == kF32;
      }
    }
  }

  void choose_kept_nodes() {
    const int n = graph_->node_size();
    reason_.assign(n, "");
    std::unordered_map<std::string, int> producer;
    std::unordered_map<std::string, std::vector<int>> consumers;
    for (int i = 0; i < n; ++i) {
      for (const auto& o : graph_->node(i).output()) producer[o] = i;
      for (const auto& in : graph_->node(i).input()) consumers[in].push_back(i);
    }
    std::unordered_set<std::string> from_shapes;
    for (int i = 0; i < n; ++i) {
      const auto& node = graph_->node(i);
      const std::string& op = node.op_type();
      if (auto it = s_.precisions->find(node_key(node));
          it != s_.precisions->end() && it->second == Precision::kFloat) {
        keep(i, "kept float32 by the precision plan");
      } else if (has_subgraph(node)) {
        keep(i, "has a subgraph (converted on its own, float32 at its boundary)");
      } else if (!plan_[i].keep.empty()) {
        keep(i, plan_[i].keep);
      } else if ((op == "Cast" || op == "CastLike") && touches_strings(node)) {
        keep(i, "casts from or to strings (float16 would change the text)");
      } else if (touches_containers(node)) {
        keep(i, "takes or makes sequences or optionals (their tensors stay float32)");
      } else if (op == "MatMul" && reads_batch_transpose(node, producer)) {
        const std::string why =
            "ONNX Runtime 1.30 crashes on float16 batch-transpose MatMul fusion";
        keep(i, why);
        for (const auto& in : node.input()) {  // its optimizer moves casts past the Transpose
          auto it = producer.find(in);
          if (it != producer.end() && is_batch_transpose(graph_->node(it->second))) {
            keep(it->second, why);
          }
        }
      }
      // Values derived from shapes (Shape -> Cast -> Mul -> ... -> Cast -> Reshape).
      bool shape_input = false, other_input = false;
      for (const auto& in : node.input()) {
        if (in.empty()) continue;
        if (from_shapes.count(in)) {
          shape_input = true;
        } else if (!is_constant(in) && !is_constant_output(in, producer)) {
          other_input = true;
        }
      }
      if (op == "Shape" || op == "Size" || (shape_input && !other_input)) {
        bool touches_float = false;
        for (const auto& o : node.output()) {
          from_shapes.insert(o);
          touches_float |= s_.is_f32(o);
        }
        if (!reads_shape_only(op)) {
          for (const auto& in : node.input()) touches_float |= s_.is_f32(in);
        }
        if (touches_float) keep(i, "computes on tensor shapes");
      }
      // Constants beyond float16's range keep their readers in float32.
      for (const auto& in : node.input()) {
        if (!constants_.count(in) || op == "Constant") continue;
        if (scanned(in).range.overflow > 0) {
          keep(i, fmt::format("reads '{}', whose values exceed float16's range", in));
        }
      }
      if (op == "Constant" && node.output_size() == 1 && constants_.count(node.output(0)) &&
          scanned(node.output(0)).range.overflow > 0) {
        keep(i, "value exceeds float16's range");
      }
    }
    // x^2 reductions and the nodes that finish the normalization.
    for (int i = 0; i < n; ++i) {
      const auto& node = graph_->node(i);
      const std::string& op = node.op_type();
      if ((op != "ReduceMean" && op != "ReduceSum") || node.input_size() == 0) continue;
      auto p = producer.find(node.input(0));
      if (p == producer.end() || !is_square(graph_->node(p->second))) continue;
      const std::string why = "x^2 reduction overflows float16 (RMS / variance)";
      keep(p->second, why);
      keep(i, why);
      int current = i;
      for (int depth = 0; depth < 4; ++depth) {
        const auto& users = consumers[graph_->node(current).output(0)];
        if (users.size() != 1) break;
        int next = users[0];
        keep(next, why);
        const auto& nn = graph_->node(next);
        bool joins = false;  // another activation: the normalization ends here
        for (const auto& in : nn.input()) {
          if (in != graph_->node(current).output(0) && !is_constant(in) &&
              !is_constant_output(in, producer)) {
            joins = true;
          }
        }
        if (joins || nn.output_size() != 1) break;
        current = next;
      }
    }
  }

  bool touches_strings(const onnx::NodeProto& node) const {
    auto is_string = [&](const std::string& v) {
      auto it = s_.types.find(v);
      return it != s_.types.end() && it->second.is_tensor(TensorProto::STRING);
    };
    for (const auto& v : node.input()) {
      if (is_string(v)) return true;
    }
    for (const auto& v : node.output()) {
      if (is_string(v)) return true;
    }
    return node.op_type() == "Cast" && attr_int(node, "to", 0) == TensorProto::STRING;
  }

  bool touches_containers(const onnx::NodeProto& node) const {
    for (const auto& v : node.input()) {
      if (!v.empty() && !s_.is_tensor(v)) return true;
    }
    for (const auto& v : node.output()) {
      if (!v.empty() && !s_.is_tensor(v)) return true;
    }
    return false;
  }

  bool reads_batch_transpose(const onnx::NodeProto& node,
                             const std::unordered_map<std::string, int>& producer) const {
    for (const auto& in : node.input()) {
      auto it = producer.find(in);
      if (it != producer.end() && is_batch_transpose(graph_->node(it->second))) return true;
    }
    return false;
  }

  bool is_constant_output(const std::string& value,
                          const std::unordered_map<std::string, int>& producer) const {
    auto it = producer.find(value);
    return it != producer.end() && graph_->node(it->second).op_type() == "Constant";
  }

  bool is_square(const onnx::NodeProto& node) const {
    if (node.op_type() == "Mul") return node.input_size() == 2 && node.input(0) == node.input(1);
    if (node.op_type() != "Pow" || node.input_size() != 2) return false;
    auto it = constants_.find(node.input(1));
    if (it == constants_.end() || element_count(*it->second.tensor) != 1) return false;
    return tensor_floats(*s_.model, *it->second.tensor)[0] == 2.0f;
  }

  bool converted(int node) const { return reason_[node].empty(); }

  // Whether the reader at (node, input index) wants float16.
  bool wants_f16(int node, int index) const {
    return converted(node) && index < static_cast<int>(plan_[node].inputs.size()) &&
           plan_[node].inputs[index];
  }

  bool is_output(const std::string& name) const {
    for (const auto& o : graph_->output()) {
      if (o.name() == name) return true;
    }
    return false;
  }

  // A float32 constant of this graph becomes float16 when every reader wants float16 and it
  // fits. Reads inside bodies count as float32 (a body casts what it needs).
  void decide_constants() {
    std::unordered_map<std::string, std::pair<int, int>> wants;  // value -> (f16, f32) readers
    for (int i = 0; i < graph_->node_size(); ++i) {
      const auto& node = graph_->node(i);
      if (reads_shape_only(node.op_type())) continue;
      for (int k = 0; k < node.input_size(); ++k) {
        auto& w = wants[node.input(k)];
        (wants_f16(i, k) ? w.first : w.second)++;
      }
      for (const auto& name : implicit_inputs(node)) wants[name].second++;
    }
    for (auto& [name, c] : constants_) {
      auto w = wants[name];
      if (c.node >= 0 && !converted(c.node)) continue;
      if (w.first == 0 || w.second > 0 || is_output(name)) {
        if (c.node >= 0) keep(c.node, "read as float32");
        continue;
      }
      if (scanned(name).range.overflow > 0) continue;
      s_.f16.insert(name);
    }
  }

  // Precision of node outputs: converted nodes produce float16 where their plan says so.
  void assign_outputs() {
    for (int i = 0; i < graph_->node_size(); ++i) {
      if (!converted(i)) continue;
      const auto& node = graph_->node(i);
      for (int k = 0; k < node.output_size(); ++k) {
        if (k < static_cast<int>(plan_[i].outputs.size()) && plan_[i].outputs[k] &&
            s_.is_f32(node.output(k))) {
          s_.f16.insert(node.output(k));
        }
      }
    }
    if (!g_.parent && !s_.keep_io_types) {
      for (const auto& v : graph_->input()) {
        if (s_.is_f32(v.name())) s_.f16.insert(v.name());
      }
    }
  }

  std::string cast_of(const std::string& value, bool to_f16) {
    auto& memo = to_f16 ? cast_f16_ : cast_f32_;
    auto it = memo.find(value);
    if (it != memo.end()) return it->second;
    std::string out = s_.names->unique(value + (to_f16 ? "_fp16" : "_fp32"));
    add_cast(value, out, to_f16 ? kF16 : kF32);
    s_.result->stands_for.emplace_back(out, original(value));
    s_.types[out] = {ValueType::kTensor, kF32};  // a float value; f16 holds its precision
    if (to_f16) s_.f16.insert(out);
    memo[value] = out;
    return out;
  }

  // The float model's value a value of this pass stands for (a cast of a cast: its source).
  std::string original(const std::string& value) const {
    for (const auto& [made, source] : s_.result->stands_for) {
      if (made == value) return source;
    }
    return value;
  }

  void add_cast(const std::string& in, const std::string& out, int to) {
    auto* node = graph_->add_node();
    node->set_name(s_.names->unique(out + "_cast"));
    node->set_op_type("Cast");
    node->add_input(in);
    node->add_output(out);
    set_attr(*node, "to", static_cast<int64_t>(to));
    reason_.push_back("inserted cast");
    plan_.push_back({});
  }

  void insert_casts() {
    const int original = graph_->node_size();
    // Graph outputs whose precision differs from what the declaration wants: the producer
    // writes a renamed value and a Cast restores the declared name. (A body may rename its
    // outputs instead: they are bound by position.)
    const bool want16 = !g_.parent && !s_.keep_io_types;
    for (auto& o : *graph_->mutable_output()) {
      const std::string name = o.name();
      if (!s_.is_f32(name) || constants_.count(name)) continue;
      const bool have16 = s_.f16.count(name) > 0;
      if (want16 == have16) continue;
      bool produced = false;
      for (int i = 0; i < original && !produced; ++i) {
        for (auto& out : *graph_->mutable_node(i)->mutable_output()) {
          if (out != name) continue;
          produced = true;
          std::string inner = s_.names->unique(name + (have16 ? "_fp16" : "_fp32"));
          s_.result->stands_for.emplace_back(inner, name);
          out = inner;
          rename_reads(*graph_, name, inner);
          s_.types[inner] = {ValueType::kTensor, kF32};
          if (have16) s_.f16.insert(inner);
          add_cast(inner, name, want16 ? kF16 : kF32);
          reason_.back() = "output cast";
        }
      }
      if (!produced && g_.parent) {  // an enclosing graph's value, passed through
        o.set_name(cast_of(name, false));
        continue;
      }
      if (want16) {
        s_.f16.insert(name);
      } else {
        s_.f16.erase(name);
      }
    }
    for (int i = 0; i < original; ++i) {
      auto* node = graph_->mutable_node(i);
      if (reads_shape_only(node->op_type())) continue;
      bool mixed = false;  // a kept node reading float16 where float32 is bound too
      for (int k = 0; k < node->input_size(); ++k) {
        const std::string in = node->input(k);
        if (in.empty() || !s_.is_f32(in)) continue;
        const bool w16 = wants_f16(i, k), have16 = s_.f16.count(in) > 0;
        if (w16 != have16) node->set_input(k, cast_of(in, w16));
        node = graph_->mutable_node(i);
        mixed |=
            !converted(i) && k < static_cast<int>(plan_[i].inputs.size()) && plan_[i].inputs[k];
      }
      if (mixed) {  // its float16 constants (say, q4f16's scales) must meet float32 too
        for (int k = 0; k < node->input_size(); ++k) {
          const std::string in = node->input(k);
          auto it = s_.types.find(in);
          if (k < static_cast<int>(plan_[i].inputs.size()) && plan_[i].inputs[k] &&
              it != s_.types.end() && it->second.is_tensor(kF16)) {
            node->set_input(k, cast_of(in, false));
            node = graph_->mutable_node(i);
          }
        }
      }
    }
  }

  void convert_constant(TensorProto& t) {
    PayloadPtr source = tensor_payload(*s_.model, t);
    const uint64_t before = source->size();
    TensorChange change{
        t.name(), {t.dims().begin(), t.dims().end()}, "f32", "f16", before, before / 2, nullptr};
    if (has_payload(t)) {
      set_tensor_payload(*s_.model, t, to_float16(source));
    } else {  // small: convert now, in the proto
      PayloadBytes bytes(source);
      std::string raw(bytes.size() / 2, '\0');
      kernels().f32_to_f16(reinterpret_cast<const float*>(bytes.data()), bytes.size() / 4,
                           reinterpret_cast<uint16_t*>(raw.data()));
      t.clear_float_data();
      t.set_raw_data(std::move(raw));
    }
    t.set_data_type(kF16);
    if (before >= 1024) s_.result->tensors.push_back(std::move(change));
  }

  void convert_nodes() {
    for (auto& [name, c] : constants_) {
      if (!s_.f16.count(name)) continue;
      s_.flushed += scanned(name).range.flushed;
      convert_constant(*c.tensor);
    }
    for (int i = 0; i < graph_->node_size(); ++i) {
      auto& node = *graph_->mutable_node(i);
      const std::string label = node_label(g_, node);
      // Constants follow their readers; inserted casts are not the model's nodes.
      if (node.op_type() == "Constant" || reason_[i] == "inserted cast" ||
          reason_[i] == "output cast") {
        continue;
      }
      if (!converted(i)) {
        bool touches_float = false;
        for (const auto& in : node.input()) touches_float |= s_.is_f32(in);
        for (const auto& o : node.output()) touches_float |= s_.is_f32(o);
        if (touches_float) s_.result->skipped.push_back({label, reason_[i]});
        continue;
      }
      bool float_out = false;
      for (const auto& o : node.output()) float_out |= s_.f16.count(o) > 0;
      if (!float_out) continue;
      if (node.op_type() == "Cast") {
        if (attr_int(node, "to", 0) == kF32) set_attr(node, "to", static_cast<int64_t>(kF16));
      } else if (node.op_type() == "ConstantOfShape") {
        convert_constant_of_shape(node);
      }
      s_.result->changed.push_back({label, "float16", node_key(node)});
    }
  }

  void convert_constant_of_shape(onnx::NodeProto& node) {
    for (auto& a : *node.mutable_attribute()) {
      if (a.name() == "value" && a.has_t()) {
        if (a.t().data_type() == kF32) convert_constant(*a.mutable_t());
        return;
      }
    }
    auto* a = node.add_attribute();  // the default value is a float32 zero
    a->set_name("value");
    a->set_type(onnx::AttributeProto::TENSOR);
    a->mutable_t()->set_data_type(kF16);
    a->mutable_t()->add_dims(1);
    a->mutable_t()->set_raw_data(std::string(2, '\0'));
  }

  void retype(onnx::ValueInfoProto& v) {
    auto* tt = v.mutable_type()->mutable_tensor_type();
    if (tt->elem_type() == kF32 && s_.f16.count(v.name())) tt->set_elem_type(kF16);
  }

  void retype_declarations() {
    for (auto& v : *graph_->mutable_value_info()) retype(v);
    if (g_.parent) return;  // a body's inputs and outputs stay float32
    for (auto& v : *graph_->mutable_input()) retype(v);
    for (auto& v : *graph_->mutable_output()) retype(v);
  }

  Shared& s_;
  const ModelIndex::Graph& g_;
  onnx::GraphProto* graph_;
  std::unordered_map<std::string, ConstantInfo> constants_;  // this graph's float32 constants
  std::vector<Float16Plan> plan_;                            // per node
  std::vector<std::string> reason_;  // per node: why it stays float32; empty when converted
  std::unordered_map<std::string, std::string> cast_f16_, cast_f32_;
};

class Float16Pass final : public Pass {
 public:
  explicit Float16Pass(Float16Config config) : config_(config) {}
  const char* name() const override { return "float16"; }

  PassResult run(Model& model) override {
    PassResult result;
    result.pass = name();
    Shared shared;
    shared.model = &model;
    shared.types = infer_types(model.proto);
    bool any_f32 = false;
    for (const auto& [name, type] : shared.types) any_f32 |= type.is_tensor(kF32);
    if (!any_f32) {
      result.warnings.push_back("the model has no float32 values (already float16?): unchanged");
      return result;
    }
    ModelIndex index(model.proto);  // bodies after the graphs that enclose them
    shared.index = &index;
    shared.names.emplace(model.proto);
    shared.result = &result;
    shared.keep_io_types = config_.keep_io_types;
    shared.precisions = &config_.precisions;
    for (const auto& graph : index.graphs()) GraphConverter(shared, *graph).run();
    if (shared.flushed) {
      result.warnings.push_back(fmt::format(
          "{} nonzero weight values below float16's smallest subnormal became 0", shared.flushed));
    }
    remove_unused_constants(model.proto);
    return result;
  }

 private:
  Float16Config config_;
};

}  // namespace

std::unique_ptr<Pass> make_float16_pass(Float16Config config) {
  return std::make_unique<Float16Pass>(config);
}

}  // namespace quantize
