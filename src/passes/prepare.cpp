// Preparation passes, run before a mode's quantization passes and reported like them.
//
// fold: constant folding through the built-in executor. A node whose inputs are all constants
// (initializers, Constant nodes, or outputs already folded), in any graph, becomes an initializer
// holding its output:
//
//   Before:  W f16 -> Cast(to=float) -> Reshape(., shape) -> MatMul(x, .)
//   After:   W' f32 (an initializer) -> MatMul(x, W')
//
// so weights exporters put behind Reshape, Transpose, Cast, Identity or DequantizeLinear reach
// the quantization passes as constants. A subexpression read by several nodes is folded once, and
// identical constant subexpressions are merged. Size cap: a result may not outgrow its inputs
// (or 64 KiB), except on its way to an input the mode quantizes (a weight, at most 4x its
// inputs: float16 or int8 weights widened to float32). Left alone: random ops, nodes with
// subgraphs, sequence results, graph outputs, and ops the executor does not run. Large results
// are computed again when written, so memory does not grow with the model.
//
// opset: raises the default-domain opset through ONNX's own version converter when the mode
// needs a newer one (static QDQ: QuantizeLinear is opset 10; dynamic INT8:
// DynamicQuantizeLinear is opset 11). A model the converter cannot carry over stays as it is,
// with the reason; opsets below 7 are refused before any pass runs.
#include <onnx/defs/schema.h>
#include <onnx/shape_inference/implementation.h>
#include <onnx/version_converter/convert.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "executor/core/evaluate.h"
#include "graph/dtype.h"
#include "graph/graph.h"
#include "model/tensor_data.h"
#include "passes/passes.h"
#include "quantize/error.h"
#include "quantize/report.h"

namespace quantize {
namespace {

const std::set<std::string> kNondeterministic = {"RandomNormal",     "RandomUniform",
                                                 "RandomNormalLike", "RandomUniformLike",
                                                 "Multinomial",      "Bernoulli"};
constexpr uint64_t kSmall = 64 << 10;        // results this small are always folded
constexpr uint64_t kKeepInMemory = 1 << 20;  // larger results are recomputed when written

// A constant's bytes, wherever they are (an initializer's payload, a folded result's).
struct Source {
  int dtype = 0;
  std::vector<int64_t> dims;
  PayloadPtr bytes;

  Tensor decode() const {
    Tensor t(dtype, dims, Tensor::Uninitialized{});
    if (t.bytes() != bytes->size()) {
      fail(ExitCode::kInput, "a constant of {} bytes holds {}", t.bytes(), bytes->size());
    }
    if (t.bytes()) bytes->read(t.raw());
    return t;
  }
};

// The bytes of a tensor as a payload (raw little-endian, as raw_data holds them).
PayloadPtr owned_payload(const Tensor& t) {
  std::vector<uint8_t> bytes(t.raw(), t.raw() + t.bytes());
  return make_owned_payload(std::move(bytes));
}

// A model with only the opset imports of `model`: enough for evaluate_node.
std::shared_ptr<Model> opset_only(const Model& model) {
  auto m = std::make_shared<Model>();
  *m->proto.mutable_opset_import() = model.proto.opset_import();
  m->source = model.source;
  return m;
}

class FoldPass final : public Pass {
 public:
  explicit FoldPass(FoldConfig config) : config_(std::move(config)) {}
  const char* name() const override { return "fold"; }

  PassResult run(Model& model) override {
    PassResult result;
    result.pass = name();
    model_ = &model;
    imports_ = opset_only(model);
    fake_quantized_.clear();
    ModelIndex index(model.proto);
    // A model that quantizes activations already: its DequantizeLinears of constants stay.
    const bool quantized_model = activation_quantizers(index) > 0;
    GraphEditor editor(model);
    uint64_t folded_bytes = 0;
    int merged = 0;
    for (const auto& graph : index.graphs()) {
      std::set<std::string> outputs;
      for (const auto& o : graph->proto->output()) outputs.insert(o.name());
      const std::set<std::string> weight_bound = weight_bound_values(*graph);
      std::map<std::string, std::vector<std::string>> seen;  // subexpression -> its outputs
      std::vector<onnx::NodeProto*> nodes;
      for (auto& node : *graph->proto->mutable_node()) nodes.push_back(&node);
      for (onnx::NodeProto* node : nodes) {
        if (!foldable_form(*node, outputs)) continue;
        std::vector<std::optional<Source>> inputs;
        if (!constant_inputs(index, *graph, *node, inputs)) continue;
        if (config_.finalize_fake_quant && node->op_type() == "DequantizeLinear" &&
            (quantized_model || fake_quantized_.count(node->input(0)))) {
          continue;  // a quantized weight (or bias) stays quantized
        }
        const std::string label = node_label(*graph, *node);
        // Identical constant subexpressions: the later one reads the earlier one's outputs.
        const std::string key = subexpression_key(*node);
        if (auto it = seen.find(key); it != seen.end()) {
          for (int i = 0; i < node->output_size(); ++i) {
            rename_reads(*graph->proto, node->output(i), it->second[i]);
            sources_[node->output(i)] = sources_[it->second[i]];
          }
          editor.remove_node(*node);
          result.changed.push_back({label, "merged with an identical constant subexpression"});
          ++merged;
          continue;
        }
        std::string why = fold(editor, *graph, *node, inputs, weight_bound, folded_bytes);
        if (!why.empty()) {
          result.skipped.push_back({label, why});
          continue;
        }
        seen[key] = {node->output().begin(), node->output().end()};
        // QuantizeLinear over a float weight: quantization-aware training's fake quantization.
        const bool fake_quant = config_.finalize_fake_quant &&
                                node->op_type() == "QuantizeLinear" && inputs[0] &&
                                is_float_type(inputs[0]->dtype);
        if (fake_quant) fake_quantized_.insert(node->output(0));
        result.changed.push_back({label, fake_quant
                                             ? "fake-quantized weight stored as its integers (QAT)"
                                             : "folded into a constant"});
      }
    }
    editor.apply();
    if (!fake_quantized_.empty()) {
      result.notes.push_back(fmt::format(
          "{} fake-quantized weight(s) (QuantizeLinear over a float constant, as "
          "quantization-aware training exports them) stored as integers: the trained scales and "
          "zero points are kept, the outputs are unchanged",
          fake_quantized_.size()));
    }
    const size_t folded = result.changed.size() - merged;
    if (folded > 0) {
      result.notes.push_back(fmt::format("{} node(s) folded into {} of constants", folded,
                                         format_bytes(folded_bytes)));
    }
    return result;
  }

 private:
  // Values that feed, through constant-only nodes, an input the mode quantizes.
  std::set<std::string> weight_bound_values(const ModelIndex::Graph& graph) const {
    std::set<std::string> bound;
    const auto& nodes = graph.proto->node();
    for (const auto& node : nodes) {
      for (int i = 0; i < node.input_size(); ++i) {
        if (config_.weight_inputs.count({node.op_type(), i})) bound.insert(node.input(i));
      }
    }
    // Backwards: a node whose output is bound binds its inputs (graphs are in order).
    for (int k = nodes.size() - 1; k >= 0; --k) {
      const auto& node = nodes[k];
      bool any = false;
      for (const auto& o : node.output()) any |= bound.count(o) > 0;
      if (!any) continue;
      for (const auto& in : node.input()) bound.insert(in);
    }
    return bound;
  }

  static bool foldable_form(const onnx::NodeProto& node, const std::set<std::string>& outputs) {
    // ONNX Runtime's QuantizeLinear / DequantizeLinear (per axis below opset 13) fold too.
    const bool ms_qdq = node.domain() == "com.microsoft" && (node.op_type() == "QuantizeLinear" ||
                                                             node.op_type() == "DequantizeLinear");
    if ((!is_default_domain(node) && !ms_qdq) || node.op_type() == "Constant" ||
        has_subgraph(node) || kNondeterministic.count(node.op_type()) || node.input_size() == 0) {
      return false;
    }
    for (const auto& o : node.output()) {
      if (outputs.count(o)) return false;  // a graph output stays a computed value
    }
    return true;
  }

  // The node's inputs when all are constants (absent optional inputs: nullopt).
  bool constant_inputs(const ModelIndex& index, const ModelIndex::Graph& graph,
                       const onnx::NodeProto& node, std::vector<std::optional<Source>>& inputs) {
    for (const auto& name : node.input()) {
      if (name.empty()) {
        inputs.emplace_back();
        continue;
      }
      auto source = constant_source(index, graph, name);
      if (!source) return false;
      inputs.push_back(std::move(source));
    }
    return true;
  }

  std::optional<Source> constant_source(const ModelIndex& index, const ModelIndex::Graph& graph,
                                        const std::string& name) {
    if (auto it = sources_.find(name); it != sources_.end()) return it->second;
    Source s;
    if (auto ref = index.constant(graph, name)) {
      if (ref->tensor->data_type() == onnx::TensorProto::STRING) return std::nullopt;
      s.dtype = ref->tensor->data_type();
      s.dims.assign(ref->tensor->dims().begin(), ref->tensor->dims().end());
      s.bytes = tensor_payload(*model_, *ref->tensor);
    } else if (const onnx::NodeProto* p = index.producer(graph, name);
               p && p->op_type() == "Constant" && is_default_domain(*p)) {
      auto out = evaluate_node(*imports_, *p, {});  // value_float, value_ints, ...
      if (!out || out->size() != 1 || (*out)[0].is_container() ||
          (*out)[0].dtype() == onnx::TensorProto::STRING) {
        return std::nullopt;
      }
      s.dtype = (*out)[0].dtype();
      s.dims = (*out)[0].shape();
      s.bytes = owned_payload((*out)[0]);
    } else {
      return std::nullopt;
    }
    sources_[name] = s;
    return s;
  }

  // Runs the node on its constant inputs (decoded for the call).
  std::optional<std::vector<Tensor>> evaluate(const onnx::NodeProto& node,
                                              const std::vector<std::optional<Source>>& inputs) {
    return evaluate_sources(*imports_, node, inputs);
  }

  static std::optional<std::vector<Tensor>> evaluate_sources(
      const Model& imports, const onnx::NodeProto& node,
      const std::vector<std::optional<Source>>& inputs) {
    std::vector<Tensor> decoded;
    decoded.reserve(inputs.size());
    std::vector<const Tensor*> raw;
    for (const auto& s : inputs) {
      if (!s) {
        raw.push_back(nullptr);
        continue;
      }
      decoded.push_back(s->decode());
      raw.push_back(&decoded.back());
    }
    return evaluate_node(imports, node, raw);
  }

  // Folds the node into initializers of its graph; returns why not, or "".
  std::string fold(GraphEditor& editor, const ModelIndex::Graph& graph, onnx::NodeProto& node,
                   const std::vector<std::optional<Source>>& inputs,
                   const std::set<std::string>& weight_bound, uint64_t& folded_bytes) {
    uint64_t in_bytes = 0;
    for (const auto& s : inputs) in_bytes += s ? s->bytes->size() : 0;
    const bool bound_early = weight_bound.count(node.output(0)) > 0;
    const uint64_t cap_early = std::max(kSmall, bound_early ? 4 * in_bytes : in_bytes);
    if (auto bytes = generated_bytes(node, inputs); bytes && *bytes > cap_early) {
      return fmt::format("its result (up to {}) would outgrow its constant inputs ({})",
                         format_bytes(*bytes), format_bytes(in_bytes));
    }
    std::optional<std::vector<Tensor>> out;
    try {
      out = evaluate(node, inputs);
    } catch (const std::exception& e) {
      return fmt::format("its constant inputs do not run: {}", e.what());
    }
    if (!out) return "the executor does not run this op, so it is not folded";
    bool bound = false;
    uint64_t out_bytes = 0;
    for (size_t i = 0; i < out->size(); ++i) {
      const Tensor& t = (*out)[i];
      if (t.is_container() || t.dtype() == onnx::TensorProto::STRING) {
        return "its result is not a numeric tensor";
      }
      out_bytes += t.bytes();
      bound |= weight_bound.count(node.output(static_cast<int>(i))) > 0;
    }
    const uint64_t cap = std::max(kSmall, bound ? 4 * in_bytes : in_bytes);
    if (out_bytes > cap) {
      return fmt::format("its result ({}) would outgrow its constant inputs ({})",
                         format_bytes(out_bytes), format_bytes(in_bytes));
    }
    for (size_t i = 0; i < out->size(); ++i) {
      const std::string& name = node.output(static_cast<int>(i));
      if (name.empty()) continue;
      const Tensor& t = (*out)[i];
      Source s{
          t.dtype(), t.shape(),
          t.bytes() <= kKeepInMemory ? owned_payload(t) : recompute(node, inputs, i, t.bytes())};
      auto* init = graph.proto->add_initializer();
      init->set_name(name);
      init->set_data_type(s.dtype);
      for (int64_t d : s.dims) init->add_dims(d);
      set_tensor_payload(editor.model(), *init, s.bytes);
      folded_bytes += t.bytes();
      sources_[name] = std::move(s);
    }
    editor.remove_node(node);
    return {};
  }

  // For ops whose result can be far larger than their inputs (ConstantOfShape, Expand, Tile,
  // Range), an upper bound of its bytes, known before running them; nullopt for other ops.
  static std::optional<uint64_t> generated_bytes(const onnx::NodeProto& node,
                                                 const std::vector<std::optional<Source>>& in) {
    const std::string& op = node.op_type();
    auto values = [&](size_t i) -> std::vector<int64_t> {
      if (i >= in.size() || !in[i]) return {};
      return in[i]->decode().to_int64();
    };
    auto saturating_product = [](const std::vector<int64_t>& dims) {
      double n = 1;
      for (int64_t d : dims) n *= static_cast<double>(std::max<int64_t>(d, 0));
      return n;
    };
    double elements = -1;
    if (op == "ConstantOfShape") {
      elements = saturating_product(values(0));
    } else if ((op == "Expand" || op == "Tile") && in.size() > 1 && in[0]) {
      std::vector<int64_t> data = in[0]->dims, other = values(1);
      if (op == "Tile") {
        for (size_t i = 0; i < data.size() && i < other.size(); ++i) data[i] *= other[i];
        elements = saturating_product(data);
      } else {
        const size_t rank = std::max(data.size(), other.size());
        std::vector<int64_t> out(rank, 1);
        for (size_t i = 0; i < rank; ++i) {
          const int64_t a = i + data.size() >= rank ? data[i + data.size() - rank] : 1;
          const int64_t b = i + other.size() >= rank ? other[i + other.size() - rank] : 1;
          out[i] = std::max(a, b);
        }
        elements = saturating_product(out);
      }
    } else if (op == "Range" && in.size() == 3 && in[0] && in[1] && in[2]) {
      const double start = in[0]->decode().element_as_double(0);
      const double limit = in[1]->decode().element_as_double(0);
      const double delta = in[2]->decode().element_as_double(0);
      elements = delta != 0 ? std::max(0.0, std::ceil((limit - start) / delta)) : 0;
    }
    if (elements < 0) return std::nullopt;
    return static_cast<uint64_t>(std::min(elements * 8, 1e18));  // 8: the widest element
  }

  // A payload that evaluates the node again when read: large results are not kept in memory.
  PayloadPtr recompute(const onnx::NodeProto& node,
                       const std::vector<std::optional<Source>>& inputs, size_t output,
                       uint64_t bytes) {
    auto imports = imports_;
    return make_lazy_payload(bytes, [imports, node, inputs, output, bytes](uint8_t* out) {
      auto result = evaluate_sources(*imports, node, inputs);
      if (!result || (*result)[output].bytes() != bytes) {
        fail(ExitCode::kInternal, "folded node {} changed its result", node_label(node));
      }
      std::memcpy(out, (*result)[output].raw(), bytes);
    });
  }

  static std::string subexpression_key(const onnx::NodeProto& node) {
    onnx::NodeProto key = node;
    key.clear_name();
    key.clear_output();
    key.clear_doc_string();
    return key.SerializeAsString();
  }

  FoldConfig config_;
  Model* model_ = nullptr;
  std::shared_ptr<Model> imports_;
  std::unordered_map<std::string, Source> sources_;  // constants read so far, and folded results
  std::set<std::string> fake_quantized_;  // the integer weights finalized fake quantization made
};

// Whether any op in a body changed form between the two opsets (ONNX's converter leaves bodies
// as they are).
std::string body_op_changed(const onnx::GraphProto& graph, int from, int to, bool in_body) {
  for (const auto& node : graph.node()) {
    if (in_body && is_default_domain(node)) {
      const auto* a = onnx::OpSchemaRegistry::Schema(node.op_type(), from, "");
      const auto* b = onnx::OpSchemaRegistry::Schema(node.op_type(), to, "");
      if (!a || !b || a->SinceVersion() != b->SinceVersion()) return node_label(node);
    }
    for (const auto& attr : node.attribute()) {
      if (attr.has_g()) {
        if (auto s = body_op_changed(attr.g(), from, to, true); !s.empty()) return s;
      }
      for (const auto& g : attr.graphs()) {
        if (auto s = body_op_changed(g, from, to, true); !s.empty()) return s;
      }
    }
  }
  return "";
}

constexpr char kTag[] = "quantize.payload:";

// Replaces each payload mark by a tag in raw_data; returns how many.
size_t tag_payloads(onnx::ModelProto& model) {
  size_t n = 0;
  for_each_tensor(model, [&](onnx::TensorProto& t, const std::string&) {
    if (!has_payload(t)) return;
    std::string tag = kTag;
    for (const auto& e : t.external_data()) {
      if (e.key() == kPayloadKey) tag += e.value();
    }
    t.clear_external_data();
    t.clear_data_location();
    t.set_raw_data(tag);
    ++n;
  });
  return n;
}

// Turns tags back into payload marks; returns how many.
size_t untag_payloads(onnx::ModelProto& model) {
  size_t n = 0;
  for_each_tensor(model, [&](onnx::TensorProto& t, const std::string&) {
    if (t.raw_data().rfind(kTag, 0) != 0) return;
    auto* e = t.add_external_data();
    e->set_key(kPayloadKey);
    e->set_value(t.raw_data().substr(sizeof(kTag) - 1));
    t.set_data_location(onnx::TensorProto::EXTERNAL);
    t.clear_raw_data();
    ++n;
  });
  return n;
}

// Whether two declared types disagree: element types, ranks or dims that both give.
bool types_differ(const onnx::TypeProto& a, const onnx::TypeProto& b) {
  if (a.value_case() != b.value_case()) return true;
  if (!a.has_tensor_type()) return a.SerializeAsString() != b.SerializeAsString();
  const auto &ta = a.tensor_type(), &tb = b.tensor_type();
  if (ta.elem_type() && tb.elem_type() && ta.elem_type() != tb.elem_type()) return true;
  if (!ta.has_shape() || !tb.has_shape()) return false;
  if (ta.shape().dim_size() != tb.shape().dim_size()) return true;
  for (int i = 0; i < ta.shape().dim_size(); ++i) {
    const auto &da = ta.shape().dim(i), &db = tb.shape().dim(i);
    if (da.has_dim_value() && db.has_dim_value() && da.dim_value() != db.dim_value()) return true;
  }
  return false;
}

// The first graph input or output whose name, type or shape differs between two graphs, or "".
std::string interface_change(const onnx::GraphProto& before, const onnx::GraphProto& after) {
  auto differ = [](const auto& a, const auto& b, const char* what) -> std::string {
    if (a.size() != b.size()) return fmt::format("number of {}s", what);
    for (int i = 0; i < a.size(); ++i) {
      if (a.Get(i).name() != b.Get(i).name() || types_differ(a.Get(i).type(), b.Get(i).type())) {
        return fmt::format("{} '{}'", what, a.Get(i).name());
      }
    }
    return "";
  };
  std::string what = differ(before.input(), after.input(), "input");
  return what.empty() ? differ(before.output(), after.output(), "output") : what;
}

// ONNX 1.12's converter knows opsets up to 17. Past it, this tool raises the opset itself: the
// changes from 17 to 21 that alter how a node is written (every other op only gained types or
// optional attributes), in every graph, bodies included.
constexpr int kConverterLatest = 17;
const std::set<std::string> kReduceWithAxesInput = {  // opset 18 (ReduceSum: 13 already)
    "ReduceL1",   "ReduceL2",  "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
    "ReduceMean", "ReduceMin", "ReduceProd",   "ReduceSumSquare"};

void remove_attribute(onnx::NodeProto& node, std::string_view name) {
  auto* attrs = node.mutable_attribute();
  for (int i = attrs->size() - 1; i >= 0; --i) {
    if (attrs->Get(i).name() == name) attrs->DeleteSubrange(i, 1);
  }
}

// The node the raise from `from` (>= 17) to `to` cannot carry over, with why; or "".
std::string cannot_raise(const ModelIndex& index, int from, int to) {
  if (from >= 21 || to < 21) return "";
  for (const auto& g : index.graphs()) {
    for (const auto& node : g->proto->node()) {
      if (is_default_domain(node) && node.op_type() == "GroupNormalization") {
        return fmt::format(
            "node {}: GroupNormalization's scale and bias are per group before opset 21, per "
            "channel from it",
            node_label(*g, node));
      }
    }
  }
  return "";
}

void raise_nodes(GraphEditor& editor, const ModelIndex& index, int from, int to) {
  auto crosses = [&](int version) { return from < version && version <= to; };
  auto add_ints = [&](onnx::GraphProto& g, const onnx::NodeProto& node, const char* what,
                      const std::vector<int64_t>& values, std::vector<int64_t> dims) {
    return editor.add_initializer(g, (node.name().empty() ? node.op_type() : node.name()) + what,
                                  onnx::TensorProto::INT64, dims, values.data(),
                                  values.size() * sizeof(int64_t));
  };
  for (const auto& graph : index.graphs()) {
    onnx::GraphProto& g = *graph->proto;
    for (auto& node : *g.mutable_node()) {
      if (!is_default_domain(node)) continue;
      const std::string& op = node.op_type();
      if (crosses(18) && kReduceWithAxesInput.count(op) && node.input_size() == 1) {
        std::vector<int64_t> axes = attr_ints(node, "axes");
        remove_attribute(node, "axes");
        if (!axes.empty()) {
          node.add_input(add_ints(g, node, "_axes", axes, {static_cast<int64_t>(axes.size())}));
        }
      } else if (crosses(18) && op == "Split" && (node.input_size() < 2 || node.input(1).empty())) {
        set_attr(node, "num_outputs", static_cast<int64_t>(node.output_size()));
      } else if (crosses(20) && op == "GridSample") {
        const std::string mode = attr_string(node, "mode", "bilinear");
        if (mode == "bilinear" || mode == "bicubic") {
          for (auto& a : *node.mutable_attribute()) {
            if (a.name() == "mode") a.set_s(mode.substr(2));
          }
        }
      } else if (crosses(20) && op == "DFT") {
        const int64_t axis = attr_int(node, "axis", 1);
        remove_attribute(node, "axis");
        while (node.input_size() < 2) node.add_input("");
        node.add_input(add_ints(g, node, "_axis", {axis}, {}));
      }
    }
  }
}

class OpsetPass final : public Pass {
 public:
  explicit OpsetPass(OpsetConfig config) : config_(std::move(config)) {}
  const char* name() const override { return "opset"; }

  PassResult run(Model& model) override {
    PassResult result;
    result.pass = name();
    const int from = opset_of(model.proto, "");
    if (from >= config_.minimum || (config_.wanted && !config_.wanted(model.proto))) return result;
    const int to = std::min(config_.target, kConverterLatest);
    auto keep = [&](const std::string& why) { return kept(result, from, why); };
    if (config_.target > kConverterLatest) {
      const int start = std::max(from, kConverterLatest);
      if (auto why = cannot_raise(ModelIndex(model.proto), start, config_.target); !why.empty()) {
        return keep(why);
      }
    }
    if (from < to) {
      if (auto kept = convert(model, from, to, result)) return *kept;
    }
    if (config_.target > kConverterLatest) {
      const int start = std::max(from, kConverterLatest);
      GraphEditor editor(model);
      raise_nodes(editor, ModelIndex(model.proto), start, config_.target);
      for (auto& o : *model.proto.mutable_opset_import()) {
        if (o.domain().empty() || o.domain() == "ai.onnx") o.set_version(config_.target);
      }
      // Opset 21 needs IR version 10.
      if (model.proto.ir_version() < 10) model.proto.set_ir_version(10);
      result.notes.push_back(fmt::format("opset {} -> {} (rewritten by this tool), as {} needs {}",
                                         start, config_.target, config_.needed_by,
                                         config_.minimum));
    }
    return result;
  }

 private:
  // Through ONNX's version converter from `from` to `to` (<= 17); the result when the model
  // stays as it is.
  std::optional<PassResult> convert(Model& model, int from, int to, PassResult& result) {
    auto keep = [&](const std::string& why) { return kept(result, from, why); };
    if (std::string op = body_op_changed(model.proto.graph(), from, to, false); !op.empty()) {
      return keep(
          fmt::format("node {} inside a subgraph changed between opsets {} and {}, and "
                      "ONNX's converter does not convert subgraphs",
                      op, from, to));
    }
    // ONNX's IR drops the payload marks of large tensors (initializers, Constant nodes, in any
    // graph): each mark goes through it as a short tag in raw_data and comes back after.
    onnx::ModelProto stripped = model.proto;
    const size_t tagged = tag_payloads(stripped);
    // Below IR version 4 ONNX's IR knows only initializers that are also graph inputs (as IR 3
    // required); ones added since (folded weights) are declared for the conversion, then not.
    std::set<std::string> declared;
    for (const auto& v : stripped.graph().input()) declared.insert(v.name());
    if (stripped.ir_version() < 4) {
      for (const auto& t : stripped.graph().initializer()) {
        if (declared.count(t.name())) continue;
        auto* v = stripped.mutable_graph()->add_input();
        v->set_name(t.name());
        auto* tt = v->mutable_type()->mutable_tensor_type();
        tt->set_elem_type(t.data_type());
        for (int64_t d : t.dims()) tt->mutable_shape()->add_dim()->set_dim_value(d);
      }
    }
    onnx::ModelProto converted;
    try {
      // Some adapters need value shapes (Softmax 12 -> 13): infer them first, where possible.
      try {
        onnx::shape_inference::InferShapes(stripped);
      } catch (const std::exception&) {
      }
      converted = onnx::version_conversion::ConvertVersion(stripped, to);
    } catch (const std::exception& e) {
      std::string what = e.what();
      if (auto nl = what.find('\n'); nl != std::string::npos) what.resize(nl);
      return keep("ONNX's version converter failed: " + what);
    }
    auto* out = converted.mutable_graph();
    auto* inputs = out->mutable_input();
    for (int i = inputs->size() - 1; i >= 0; --i) {
      if (!declared.count(inputs->Get(i).name())) inputs->DeleteSubrange(i, 1);
    }
    if (untag_payloads(converted) < tagged) {
      return keep("ONNX's version converter dropped tensors of the model");
    }
    // The model's interface must not change (Scan 8 -> 9, say, drops a batch axis from its
    // inputs: the converted model would no longer take the user's data).
    if (std::string what = interface_change(model.proto.graph(), *out); !what.empty()) {
      return keep("the conversion would change the model's " + what);
    }
    // What the converter does not carry: node names, doc strings, metadata, local functions.
    converted.mutable_metadata_props()->CopyFrom(model.proto.metadata_props());
    converted.mutable_functions()->CopyFrom(model.proto.functions());
    converted.set_producer_name(model.proto.producer_name());
    converted.set_producer_version(model.proto.producer_version());
    converted.set_doc_string(model.proto.doc_string());
    converted.set_model_version(model.proto.model_version());
    for (const auto& o : model.proto.opset_import()) {
      if (!o.domain().empty() && o.domain() != "ai.onnx")
        ensure_opset(converted, o.domain(), o.version());
    }
    model.proto = std::move(converted);
    result.notes.push_back(fmt::format("opset {} -> {} (ONNX's version converter), as {} needs {}",
                                       from, to, config_.needed_by, config_.minimum));
    return std::nullopt;
  }

  PassResult kept(PassResult& result, int from, const std::string& why) const {
    result.warnings.push_back(
        fmt::format("{} needs opset {}; the model is opset {} and stays so: {}", config_.needed_by,
                    config_.minimum, from, why));
    return result;
  }

  OpsetConfig config_;
};

}  // namespace

std::unique_ptr<Pass> make_fold_pass(FoldConfig config) {
  return std::make_unique<FoldPass>(std::move(config));
}

std::unique_ptr<Pass> make_opset_pass(OpsetConfig config) {
  return std::make_unique<OpsetPass>(std::move(config));
}

}  // namespace quantize
