// Static INT8 in QDQ form, with calibrated activation ranges.
//
// Before:  x -> Conv(W, b) -> Relu -> r -> MaxPool -> m -> ...
// After:   x -> Q -> DQ -> Conv(DQ(W_q), DQ(b_q)) -> r -> Q -> DQ -> MaxPool -> m -> Q -> DQ -> ...
//
// Every float activation a quantized op reads goes through one QuantizeLinear /
// DequantizeLinear pair (int8 or uint8, scale and zero point from its calibrated range widened to
// include 0); all its readers read the DequantizeLinear output. What a quantized op writes is
// quantized only where a quantized op reads it (so a graph output, or the input of a float op,
// keeps its float value; so do ops that only move a result on its way to a graph output, such as
// a detector head's Transpose -> Reshape -> Concat). Sigmoid and Mul forming a SiLU, x *
// Sigmoid(x), stay float: an 8-bit pre-activation x costs detectors accuracy (YOLOX-nano 0.944 ->
// 0.955); the SiLU's output is quantized where the next op is. Weights are stored quantized (int8
// symmetric, or uint8 asymmetric for U8U8; per channel on the output-channel axis with
// --per-channel) behind a DequantizeLinear; Conv/Gemm bias as int32 with scale = input scale x
// weight scale. Ops that only move or select values (Reshape, Transpose, Squeeze, Unsqueeze,
// Flatten, MaxPool, Resize) give their output the input's scale and zero point, as ONNX Runtime's
// QDQ fusions expect. A Relu, or Clip(0, max), right after a quantized op is folded: that op writes
// the activation's output directly, whose calibrated range starts at 0, so QuantizeLinear clamps
// exactly as the activation did.
//
// The model is calibrated first (the Calibrator runs the float model), asking only for the
// tensors the candidate nodes touch. Calibration observes the main graph: nodes inside If/Loop/
// Scan bodies stay float, each with that reason. Below opset 13 (per-axis DequantizeLinear) with
// per-channel weights, the pairs are ONNX Runtime's com.microsoft QuantizeLinear /
// DequantizeLinear, which take the same inputs and an axis at any opset. A model below opset 10
// (QuantizeLinear) has been raised by the opset preparation pass; if that failed, it stays float.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <unordered_map>

#include "graph/graph.h"
#include "kernels/kernels.h"
#include "model/tensor_data.h"
#include "passes/passes.h"
#include "quantize/error.h"

namespace quantize {
namespace {

using onnx::TensorProto;

enum class Kind { kWeighted, kElementwise, kOwnRange, kShares, kActivation };

const std::map<std::string, Kind>& op_kinds() {
  static const std::map<std::string, Kind> kinds = {
      {"Conv", Kind::kWeighted},
      {"ConvTranspose", Kind::kWeighted},
      {"Gemm", Kind::kWeighted},
      {"MatMul", Kind::kWeighted},
      {"Add", Kind::kElementwise},
      {"Mul", Kind::kElementwise},
      {"Concat", Kind::kElementwise},
      {"AveragePool", Kind::kOwnRange},
      {"GlobalAveragePool", Kind::kOwnRange},
      {"Sigmoid", Kind::kOwnRange},
      {"Softmax", Kind::kOwnRange},
      {"MaxPool", Kind::kShares},
      {"GlobalMaxPool", Kind::kShares},
      {"Resize", Kind::kShares},
      {"Reshape", Kind::kShares},
      {"Transpose", Kind::kShares},
      {"Squeeze", Kind::kShares},
      {"Unsqueeze", Kind::kShares},
      {"Flatten", Kind::kShares},
      {"Relu", Kind::kActivation},
      {"Clip", Kind::kActivation},
  };
  return kinds;
}

// Below this estimated signal-to-noise ratio of any live output channel (noise above signal) a
// Conv stays float. Across YOLOX-nano's 113 Convs the worst channels sit at -3 dB (Conv_44),
// then 10 dB and up; FastestDet's at 2 dB and up.
constexpr double kMinSqnrDb = 0;

struct Params {
  std::string scale, zp;  // initializer names
  float s = 1;
  bool wide = false;  // 16-bit (int16 / uint16)
};

class StaticQdqPass final : public Pass {
 public:
  explicit StaticQdqPass(StaticQdqConfig config) : config_(std::move(config)) {}
  const char* name() const override { return "static_qdq"; }

  PassResult run(Model& model) override {
    result_ = {};
    result_.pass = name();
    model_ = &model;
    graph_ = model.proto.mutable_graph();
    opset_ = opset_of(model.proto);
    ModelIndex index(model.proto);
    GraphEditor editor(model);
    index_ = &index;
    editor_ = &editor;
    if (opset_ < 10) {
      result_.warnings.push_back(fmt::format(
          "static QDQ needs opset 10 (QuantizeLinear); the model is opset {} and stays float",
          opset_));
      return result_;
    }
    // A model that quantizes its activations already (quantization-aware training, or an earlier
    // tool) keeps its ranges: a second pair on an activation would only add rounding.
    if (const int quantized = activation_quantizers(index); quantized > 0) {
      result_.notes.push_back(fmt::format(
          "the model is quantized already ({} QuantizeLinear on activations): its ranges are "
          "kept, nothing is calibrated",
          quantized));
      return result_;
    }
    if (opset_ < 13 && config_.per_channel) q_domain_ = "com.microsoft";  // per-axis DQ is 13+
    if (config_.op_types.empty()) {  // the default: every op for conv nets, MatMul/Gemm otherwise
      bool conv = false;
      for (const auto& node : graph_->node())
        conv |= node.op_type() == "Conv" || node.op_type() == "ConvTranspose";
      if (!conv) {
        config_.op_types = {"MatMul", "Gemm"};
        result_.notes.push_back(
            "no Conv: only MatMul and Gemm are quantized (activations of norms, softmax and "
            "residual sums need more than 8 bits: TinyStories top-1 88% -> 23%); choose others "
            "with --op-types");
      }
    }

    report_bodies(index);

    // 1. Which tensors the candidates touch; 2. their ranges from the float model.
    std::set<std::string> wanted;
    for (const auto& node : graph_->node()) {
      if (!candidate(node).empty()) continue;
      for (const auto& in : node.input()) {
        if (!in.empty() && !constant(in)) wanted.insert(in);
      }
      for (const auto& out : node.output()) wanted.insert(out);
    }
    if (!config_.calibrate) fail(ExitCode::kInternal, "static_qdq: no calibrator");
    Calibration calibration = config_.calibrate(model, wanted);
    ranges_ = std::move(calibration.ranges);
    channel_stats_ = std::move(calibration.channel_stats);
    if (calibration.synthetic) {
      result_.warnings.push_back(
          "calibrated on RANDOM inputs (--calib random): activation ranges are only as good as "
          "random data is like real data, usually poor; pass real samples with --calib PATH");
    }
    result_.notes.push_back("calibration: " + calibration.description);

    select();
    rewrite();
    editor.apply();
    if (config_.qoperator) to_qoperator();
    if (uses_ms_) ensure_opset(model.proto, "com.microsoft", 1);
    return result_;
  }

 private:
  // QOperator form: DQ -> Conv/MatMul -> Q becomes one QLinearConv / QLinearMatMul on the
  // quantized tensors (the float op's output must be read by its QuantizeLinear alone; a Conv bias
  // must be the int32 one). Other ops keep their pairs; DequantizeLinears left unread go.
  void to_qoperator() {
    ModelIndex index(model_->proto);
    const ModelIndex::Graph& main = index.main();
    auto dq_of = [&](const std::string& t) -> onnx::NodeProto* {
      onnx::NodeProto* n = index.producer(main, t);
      return n && n->op_type() == "DequantizeLinear" ? n : nullptr;
    };
    // The QuantizeLinear that is the only reader of t, if any.
    auto sole_quantizer = [&](const std::string& t) -> onnx::NodeProto* {
      const auto& readers = index.readers(main, t);
      if (readers.size() != 1 || !readers[0].node || readers[0].input != 0) return nullptr;
      onnx::NodeProto* q = readers[0].node;
      return q->op_type() == "QuantizeLinear" && q->input_size() >= 3 ? q : nullptr;
    };
    auto eight_bit = [&](const onnx::NodeProto& qdq) {  // its zero point is 8-bit
      auto zp = index.constant(main, qdq.input(2));
      return zp && (zp->tensor->data_type() == TensorProto::INT8 ||
                    zp->tensor->data_type() == TensorProto::UINT8);
    };
    std::set<onnx::NodeProto*> used_dq;  // DequantizeLinears a QLinear op absorbed
    int converted = 0;
    for (auto& n : *graph_->mutable_node()) {
      const bool conv = n.op_type() == "Conv" && n.domain().empty();
      if (!conv && !(n.op_type() == "MatMul" && n.domain().empty())) continue;
      onnx::NodeProto* dx = dq_of(n.input(0));
      onnx::NodeProto* dw = dq_of(n.input(1));
      const bool has_bias = conv && n.input_size() > 2 && !n.input(2).empty();
      onnx::NodeProto* db = has_bias ? dq_of(n.input(2)) : nullptr;
      if (!dx || !dw || dx->input_size() < 3 || dw->input_size() < 3) continue;
      if (!eight_bit(*dx) || !eight_bit(*dw)) continue;  // QLinear ops take 8 bits only
      if (has_bias && !db) continue;                     // a float bias
      onnx::NodeProto* q = sole_quantizer(n.output(0));
      if (!q || !eight_bit(*q)) continue;
      std::vector<std::string> inputs;
      for (const auto* src : {dx, dw}) {
        for (int k = 0; k < 3; ++k) inputs.push_back(src->input(k));
      }
      inputs.push_back(q->input(1));
      inputs.push_back(q->input(2));
      if (db) inputs.push_back(db->input(0));
      const std::string op = conv ? "QLinearConv" : "QLinearMatMul";
      auto& fused = editor_->add_node(*graph_, op, n.name().empty() ? op : n.name() + "_qlinear",
                                      std::move(inputs), {q->output(0)}, "", &n);
      if (conv) *fused.mutable_attribute() = n.attribute();
      editor_->remove_node(n);
      editor_->remove_node(*q);
      for (onnx::NodeProto* dq : {dx, dw, db}) {
        if (dq) used_dq.insert(dq);
      }
      ++converted;
    }
    // DequantizeLinears nothing else reads any more (their inputs stay read by the QLinear ops).
    for (onnx::NodeProto* dq : used_dq) {
      bool read = false;
      for (const auto& use : index.readers(main, dq->output(0))) {
        read |= !use.node || !editor_->removed(*use.node);
      }
      if (!read) editor_->remove_node(*dq);
    }
    editor_->apply();
    result_.notes.push_back(
        fmt::format("QOperator form: {} node(s) became QLinearConv/QLinearMatMul", converted));
  }

  // Empty when the node is a candidate, else why not (for the report).
  std::string candidate(const onnx::NodeProto& node) const {
    if (!node.domain().empty() && node.domain() != "ai.onnx") return "not an ONNX op";
    if (!op_kinds().count(node.op_type())) return "not an op static INT8 quantizes";
    if (!config_.op_types.empty() && !config_.op_types.count(node.op_type()))
      return "not in --op-types";
    if (auto p = precision_of(node); p == Precision::kFloat || p == Precision::kFp16) {
      return "kept float by the precision plan";
    }
    return config_.filter.why_not(node.name());
  }

  std::optional<Precision> precision_of(const onnx::NodeProto& node) const {
    auto it = config_.precisions.find(node_key(node));
    if (it == config_.precisions.end()) return std::nullopt;
    return it->second;
  }

  bool has_range(const std::string& t) const {
    return ranges_.count(t) && !config_.keep_float.count(t);
  }

  // The float activation inputs a node of this kind quantizes.
  std::vector<std::string> data_inputs(const onnx::NodeProto& node, Kind kind) const {
    std::vector<std::string> ins;
    const std::string& op = node.op_type();
    if (kind == Kind::kWeighted) {
      ins.push_back(node.input(0));
      if (op == "MatMul" && !constant(node.input(1))) ins.push_back(node.input(1));
    } else if (kind == Kind::kElementwise) {
      for (const auto& in : node.input()) {
        if (!in.empty() && !constant(in)) ins.push_back(in);
      }
    } else {
      ins.push_back(node.input(0));
    }
    return ins;
  }

  // Decides, in graph order, which nodes are quantized and which tensors get a pair.
  void select() {
    const ModelIndex::Graph& main = index_->main();
    auto uses = [&](const std::string& name) {
      return static_cast<int>(index_->readers(main, name).size());
    };
    std::set<std::string> graph_outputs;
    for (const auto& o : graph_->output()) graph_outputs.insert(o.name());
    const std::set<int> silu = silu_nodes(uses);
    const std::set<std::string> bound = output_bound(graph_outputs);
    for (int i = 0; i < graph_->node_size(); ++i) {
      const auto& node = graph_->node(i);
      if (config_.float_results && moves_data(node) && bound.count(node.output(0))) {
        result_.skipped.push_back(
            {node_label(node),
             "it only moves values on their way to a graph output: stays float, as the "
             "output does (an 8-bit range calibrated on a few samples clips the result)"});
        continue;
      }
      if (silu.count(i)) {
        result_.skipped.push_back({node_label(node),
                                   "part of a SiLU, x * Sigmoid(x): runs in float "
                                   "(its 8-bit input costs detectors accuracy)"});
        continue;
      }
      std::string why = candidate(node);
      if (!why.empty()) {
        if (why != "not an op static INT8 quantizes" && why != "not an ONNX op") {
          result_.skipped.push_back({node_label(node), why});
        }
        continue;
      }
      const Kind kind = op_kinds().at(node.op_type());
      if (kind == Kind::kActivation) {
        why = foldable(node, uses, graph_outputs);
        if (why.empty()) {  // the producer now writes this output, with this output's range
          folded_[node.input(0)] = i;
          if (wide_.count(node.input(0))) wide_.insert(node.output(0));
          produced_.erase(node.input(0));
          produced_.insert(node.output(0));
          result_.changed.push_back(
              {node_label(node), "folded into the range of its input's producer"});
        } else {
          result_.skipped.push_back({node_label(node), why});
        }
        continue;
      }
      if (kind == Kind::kWeighted) {
        auto weight = constant(node.input(1));
        if (node.op_type() != "MatMul" && !weight) {
          result_.skipped.push_back({node_label(node), "the weight is computed at run time"});
          continue;
        }
        if (weight && weight->tensor->data_type() != TensorProto::FLOAT) {
          result_.skipped.push_back({node_label(node), "the weight is not float32"});
          continue;
        }
      }
      const auto planned = precision_of(node);
      const bool wide = planned == Precision::kA16 || (!planned && config_.wide_activations);
      if (node.op_type() == "Conv" && has_range(node.input(0))) {
        why = buried_channel(node, wide);
        if (!why.empty() && config_.float_fallback) {
          result_.skipped.push_back({node_label(node), why + ": kept float"});
          continue;
        }
        if (!why.empty()) {
          result_.notes.push_back(fmt::format("{}: {}; quantized anyway (--float-fallback off)",
                                              node_label(node), why));
        }
      }
      const auto ins = data_inputs(node, kind);
      std::string missing;
      for (const auto& t : ins) missing = has_range(t) ? missing : t;
      if (kind == Kind::kShares && !quantized_.count(ins[0]) && !produced_.count(ins[0])) {
        result_.skipped.push_back({node_label(node), "its input is not quantized"});
        continue;
      }
      if (!missing.empty()) {
        result_.skipped.push_back(
            {node_label(node), config_.keep_float.count(missing)
                                   ? fmt::format("'{}' is in --keep-float", missing)
                                   : fmt::format("'{}' is not a float32 activation", missing)});
        continue;
      }
      selected_.push_back(i);
      keys_[i] = node_key(node);  // before folds rename outputs (plans name nodes as given)
      weighted_ += kind == Kind::kWeighted;
      if (wide) {  // 16 bits
        wide_.insert(ins.begin(), ins.end());
        wide_.insert(node.output().begin(), node.output().end());
      }
      for (const auto& t : ins) quantized_.insert(t);
      for (const auto& t : node.output()) {
        produced_.insert(t);
        if (kind == Kind::kShares) shares_[t] = ins[0];
      }
    }
  }

  // Empty, or why an 8-bit input would drown one of the Conv's output channels: the input's
  // rounding noise (step^2 / 12 per element, step from its per-tensor range) through that
  // channel's weights, sum_k w[o, k]^2 * step^2 / 12, against the channel's calibrated mean
  // square (channels below 1e-4 of the mean, dead ones, ignored). Depthwise convs whose input
  // channels differ widely in scale are the usual victims: YOLOX-nano's Conv_44 (-3 dB) alone
  // takes its output from cosine 0.99 to 0.955.
  std::string buried_channel(const onnx::NodeProto& node, bool wide) const {
    auto stats = channel_stats_.find(node.output(0));
    auto ref = constant(node.input(1));
    if (stats == channel_stats_.end() || !ref || ref->tensor->dims_size() < 2) return {};
    const std::vector<double>& power = stats->second.mean_square;
    const Range r = ranges_.at(node.input(0));
    const double span = std::max(r.hi, 0.0f) - std::min(r.lo, 0.0f);
    const double step = wide ? 4 * span / 65535.0 : span / 255.0;  // a16: 4x the range, 16 bits
    const std::vector<float> w = tensor_floats(*model_, *ref->tensor);
    const int64_t channels = ref->tensor->dims(0);
    if (channels != static_cast<int64_t>(power.size()) || channels == 0) return {};
    const size_t per = w.size() / channels;
    double mean_power = 0;
    for (double p : power) mean_power += p / channels;
    double worst = std::numeric_limits<double>::infinity();
    int64_t worst_channel = 0;
    for (int64_t o = 0; o < channels; ++o) {
      if (power[o] < 1e-4 * mean_power) continue;  // a dead channel carries nothing to bury
      double wsq = 0;
      for (size_t k = 0; k < per; ++k) wsq += double(w[o * per + k]) * w[o * per + k];
      const double noise = wsq * step * step / 12;
      const double sqnr = noise > 0 ? power[o] / noise : std::numeric_limits<double>::infinity();
      if (sqnr < worst) worst = sqnr, worst_channel = o;
    }
    const double db = 10 * std::log10(worst);
    if (db >= kMinSqnrDb) return {};
    return fmt::format(
        "an {}-bit input would bury output channel {} (estimated SNR {:.0f} dB < {} dB)",
        wide ? 16 : 8, worst_channel, db, kMinSqnrDb);
  }

  // Ops that only reorder, reshape or join values.
  static bool moves_data(const onnx::NodeProto& node) {
    static const std::set<std::string> ops = {"Reshape", "Transpose", "Squeeze", "Unsqueeze",
                                              "Flatten", "Concat",    "Identity"};
    return node.domain().empty() && node.output_size() == 1 && ops.count(node.op_type()) > 0;
  }

  // Tensors that are graph outputs, or that reach graph outputs only through ops that move data
  // (BlazeFace: head Conv -> Transpose -> Reshape -> Concat -> output). They are the model's
  // results in another shape; quantizing them clips the results themselves wherever new data
  // exceeds the calibrated range (BlazeFace's classifier logits reach 2.6x it on unseen photos).
  std::set<std::string> output_bound(const std::set<std::string>& graph_outputs) const {
    std::set<std::string> bound = graph_outputs;
    const ModelIndex::Graph& main = index_->main();
    for (int i = graph_->node_size() - 1; i >= 0; --i) {  // readers before producers
      const auto& node = graph_->node(i);
      for (const auto& t : node.output()) {
        const auto readers = index_->readers(main, t);
        bool only_to_outputs = !readers.empty();
        for (const auto& use : readers) {
          only_to_outputs = only_to_outputs && use.node && moves_data(*use.node) &&
                            bound.count(use.node->output(0));
        }
        if (only_to_outputs) bound.insert(t);
      }
    }
    return bound;
  }

  // Sigmoid and Mul computing x * Sigmoid(x) (SiLU), the Sigmoid read by that Mul only.
  std::set<int> silu_nodes(const std::function<int(const std::string&)>& uses) const {
    std::map<std::string, int> sigmoid_of;  // Sigmoid output -> node index
    for (int i = 0; i < graph_->node_size(); ++i) {
      const auto& n = graph_->node(i);
      if (n.op_type() == "Sigmoid" && n.domain().empty() && uses(n.output(0)) == 1) {
        sigmoid_of[n.output(0)] = i;
      }
    }
    std::set<int> nodes;
    for (int i = 0; i < graph_->node_size(); ++i) {
      const auto& n = graph_->node(i);
      if (n.op_type() != "Mul" || !n.domain().empty() || n.input_size() != 2) continue;
      for (int k = 0; k < 2; ++k) {
        auto it = sigmoid_of.find(n.input(k));
        if (it != sigmoid_of.end() && graph_->node(it->second).input(0) == n.input(1 - k)) {
          nodes.insert({it->second, i});
        }
      }
    }
    return nodes;
  }

  std::string foldable(const onnx::NodeProto& node,
                       const std::function<int(const std::string&)>& uses,
                       const std::set<std::string>& graph_outputs) const {
    const std::string& in = node.input(0);
    if (!produced_.count(in) || shares_.count(in)) return "its input's producer is not quantized";
    if (uses(in) != 1) return "its input has other readers";
    if (graph_outputs.count(in)) return "its input is a graph output";
    if (!has_range(node.output(0))) return "its output is not calibrated";
    if (node.op_type() == "Clip") {
      float lo = -1;
      if (node.input_size() > 1 && !node.input(1).empty()) {
        auto c = constant(node.input(1));
        if (!c) return "Clip min is computed at run time";
        lo = tensor_floats(*model_, *c->tensor).at(0);
      } else {
        for (const auto& a : node.attribute()) lo = a.name() == "min" ? a.f() : lo;
      }
      if (lo != 0) return "Clip's min is not 0 (only Relu-like clips fold exactly)";
    }
    return {};
  }

  void rewrite() {
    // Folds: the producer writes the activation's output.
    std::set<int> removed;
    for (const auto& [input, index] : folded_) {
      const auto& act = graph_->node(index);
      // The producer now writes the activation's output name, but the value before the clamp
      // (its QuantizeLinear clamps): that value stands for the float model's input of the Relu.
      result_.stands_for.emplace_back(act.output(0), input);
      for (auto& node : *graph_->mutable_node()) {
        for (auto& out : *node.mutable_output()) {
          if (out == input) out = act.output(0);
        }
      }
      removed.insert(index);
    }
    // Parameters: own ranges first, then shared ones along chains of pass-through ops.
    std::set<std::string> wide_roots;  // a chain sharing parameters is 16-bit if any part is
    for (const auto& t : wide_) {
      std::string root = t;
      while (shares_.count(root)) root = shares_.at(root);
      wide_roots.insert(root);
    }
    for (const auto& t : quantized_) {
      if (!shares_.count(t)) params_[t] = activation_params(t, wide_roots.count(t) > 0);
    }
    for (const auto& t : quantized_) {  // a chain's root is the quantized input of its first op
      std::string root = t;
      while (shares_.count(root)) root = shares_.at(root);
      params_[t] = params_.at(root);
    }
    // Weights and bias, per selected node.
    for (int index : selected_) {
      auto& node = *graph_->mutable_node(index);
      const Kind kind = op_kinds().at(node.op_type());
      std::string done = "QDQ activations";
      if (kind == Kind::kWeighted) done = quantize_weights(node);
      if (kind == Kind::kShares) done = "QDQ with its input's scale and zero point";
      result_.changed.push_back({node_label(node), done, keys_.at(index)});
    }
    for (int index : removed) editor_->remove_node(*graph_->mutable_node(index));
    // One pair per tensor; every reader but its QuantizeLinear reads the DequantizeLinear output.
    std::map<std::string, std::string> dequantized;
    for (const auto& t : quantized_) dequantized[t] = editor_->unique(t + "_dequantized");
    for (auto& node : *graph_->mutable_node()) {
      for (auto& in : *node.mutable_input()) {
        auto it = dequantized.find(in);
        if (it != dequantized.end()) in = it->second;
      }
    }
    for (const auto& [t, dq_name] : dequantized) {
      const Params& p = params_.at(t);
      const std::string q_name = editor_->unique(t + "_quantized");
      // 16-bit pairs are ONNX Runtime's com.microsoft ops below opset 21.
      const std::string domain = p.wide && opset_ < 21 ? "com.microsoft" : "";
      auto& q = add_node("QuantizeLinear", t + "_quantize", {t, p.scale, p.zp}, {q_name});
      auto& dq =
          add_node("DequantizeLinear", t + "_dequantize", {q_name, p.scale, p.zp}, {dq_name});
      if (!domain.empty()) {
        q.set_domain(domain);
        dq.set_domain(domain);
        uses_ms_ = true;
      }
      result_.stands_for.emplace_back(dq_name, t);
    }
    if (config_.signed_weights && !config_.wide_activations && weighted_ > 0) {
      result_.warnings.push_back(fmt::format(
          "{} Conv/MatMul/Gemm node(s) with int8 weights and 8-bit activations: ONNX Runtime "
          "fuses them into uint8 x int8 kernels that, on x86 CPUs without VNNI, add products "
          "pairwise in 16 bits and can saturate{} (FastestDet: cosine 0.9986 -> 0.97); --uint8 "
          "(U8U8) avoids it",
          weighted_, x86_without_vnni() ? " (this machine has no VNNI)" : ""));
    }
    result_.notes.push_back(fmt::format("{} activation(s) quantized ({})", quantized_.size(),
                                        config_.wide_activations
                                            ? (config_.signed_activations ? "int16" : "uint16")
                                            : (config_.signed_activations ? "int8" : "uint8")));
  }

  // Scale and zero point of an activation from its calibrated range (widened to include 0), in
  // 8 bits or, `wide`, 16.
  Params activation_params(const std::string& t, bool wide) {
    Range r = ranges_.at(t);
    // 16-bit activations have resolution to spare: four times the calibrated range (two of
    // sixteen bits) keeps data the calibration never saw from clipping.
    const float headroom = wide ? 4.0f : 1.0f;
    const float lo = headroom * std::min(r.lo, 0.0f), hi = headroom * std::max(r.hi, 0.0f);
    const int levels = wide ? 65535 : 255;
    const int qmin = config_.signed_activations ? -(levels + 1) / 2 : 0, qmax = qmin + levels;
    // Symmetric (TensorRT): zero point 0, +-max|x| over the codes -qmax..qmax.
    const bool symmetric = config_.symmetric_activations && config_.signed_activations;
    float scale = symmetric ? std::max(-lo, hi) / static_cast<float>(qmax)
                            : (hi - lo) / static_cast<float>(levels);
    if (!(scale > 0) || !std::isfinite(scale)) scale = 1;
    const int zp = symmetric ? 0
                             : static_cast<int>(std::clamp(std::nearbyint(qmin - lo / scale),
                                                           float(qmin), float(qmax)));
    Params p;
    p.s = scale;
    p.wide = wide;
    p.scale = add_initializer(t + "_scale", TensorProto::FLOAT, {}, &scale, 4);
    const int type = wide ? (config_.signed_activations ? TensorProto::INT16 : TensorProto::UINT16)
                          : (config_.signed_activations ? TensorProto::INT8 : TensorProto::UINT8);
    const uint16_t z = static_cast<uint16_t>(zp);  // little-endian: the low byte for 8 bits
    p.zp = add_initializer(t + "_zero_point", type, {}, &z, wide ? 2 : 1);
    return p;
  }

  // The weight's output-channel axis for this op, or -1 (per tensor).
  int weight_axis(const onnx::NodeProto& node, int rank) const {
    if (!config_.per_channel) return -1;
    const std::string& op = node.op_type();
    if (op == "Conv") return 0;
    if (op == "ConvTranspose") {
      for (const auto& a : node.attribute()) {
        if (a.name() == "group" && a.i() != 1) return -1;
      }
      return 1;
    }
    if (op == "Gemm") {
      for (const auto& a : node.attribute()) {
        if (a.name() == "transB" && a.i()) return 0;
      }
      return 1;
    }
    return rank == 2 ? 1 : -1;  // MatMul [K, N]
  }

  std::string quantize_weights(onnx::NodeProto& node) {
    auto ref = constant(node.input(1));
    if (!ref) return "QDQ activations (activation x activation)";
    const TensorProto& w = *ref->tensor;
    const std::vector<int64_t> dims(w.dims().begin(), w.dims().end());
    const int axis = weight_axis(node, static_cast<int>(dims.size()));
    const std::string key = w.name() + "|" + std::to_string(axis);
    if (!weights_.count(key)) weights_[key] = quantize_weight(w, dims, axis);
    const QuantizedWeight& qw = weights_[key];
    node.set_input(1, qw.dequantized);
    std::string done = fmt::format("QDQ, {} weights{}", config_.signed_weights ? "int8" : "uint8",
                                   axis >= 0 ? " per channel" : "");
    const std::string& op = node.op_type();
    std::vector<float> b;
    if (config_.bias_correction && correct_bias(node, w, qw, b)) done += ", bias corrected";
    // Bias: int32 at input scale x weight scale (Conv, ConvTranspose; Gemm with alpha = beta = 1).
    if (node.input_size() < 3 || node.input(2).empty() || op == "MatMul") return done;
    if (op == "Gemm") {
      for (const auto& a : node.attribute()) {
        if ((a.name() == "alpha" || a.name() == "beta") && a.f() != 1.0f) return done;
      }
    }
    std::string base = node.input(2);
    if (b.empty()) {
      auto bias = constant(node.input(2));
      if (!bias || bias->tensor->data_type() != TensorProto::FLOAT ||
          bias->tensor->dims_size() != 1)
        return done;
      b = tensor_floats(*model_, *bias->tensor);
      if (!bias->tensor->name().empty()) base = bias->tensor->name();
    }
    const size_t channels = qw.scales.size();
    if (channels > 1 && b.size() != channels) return done;
    const float sx = params_.at(node.input(0)).s;
    std::vector<int32_t> q(b.size());
    std::vector<float> scales(channels);
    for (size_t c = 0; c < channels; ++c) scales[c] = sx * qw.scales[c];
    for (size_t i = 0; i < b.size(); ++i) {
      const float s = scales[channels > 1 ? i : 0];
      if (!(s > 0)) return done;
      q[i] = static_cast<int32_t>(
          std::clamp(std::nearbyint(double(b[i]) / s), -2147483647.0, 2147483647.0));
    }
    const std::string qb =
        add_initializer(base + "_quantized", TensorProto::INT32, {static_cast<int64_t>(b.size())},
                        q.data(), q.size() * 4);
    const std::string sb =
        add_initializer(base + "_scale", TensorProto::FLOAT,
                        channels > 1 ? std::vector<int64_t>{static_cast<int64_t>(channels)}
                                     : std::vector<int64_t>{},
                        scales.data(), channels * 4);
    auto& dq = add_node("DequantizeLinear", base + "_dequantize", {qb, sb}, {});
    if (channels > 1) set_attr(dq, "axis", int64_t{0});
    const std::string out = editor_->unique(base + "_dequantized");
    result_.stands_for.emplace_back(out, node.input(2));
    dq.add_output(out);
    node.set_input(2, out);
    record(base, {static_cast<int64_t>(b.size())}, "int32", b.size() * 4,
           b.size() * 4 + channels * 4);
    return done + ", int32 bias";
  }

  struct QuantizedWeight {
    std::string dequantized;
    std::vector<float> scales;
    std::vector<float> error;  // dequantized - float, with bias correction
  };

  // Bias correction (Nagel et al. 2019): the rounded weights shift each output's mean by
  // sum_c,k (Wq - W)[o, c, k] * E[x_c] (E[x_c]: the calibrated mean of input channel c; zero
  // padding ignored); that shift is taken out of the bias (`corrected`, quantized to int32 like
  // any bias; the node gets a bias input when it has none). Conv (any group) and Gemm (transA 0,
  // alpha = beta = 1). Returns whether the bias changed.
  bool correct_bias(onnx::NodeProto& node, const TensorProto& w, const QuantizedWeight& qw,
                    std::vector<float>& corrected) {
    const std::string& op = node.op_type();
    if (op != "Conv" && op != "Gemm") return false;
    if (op == "Gemm" && (attr_int(node, "transA", 0) != 0 || attr_float(node, "alpha", 1) != 1 ||
                         attr_float(node, "beta", 1) != 1)) {
      return false;
    }
    auto stats = channel_stats_.find(node.input(0));
    if (stats == channel_stats_.end() || qw.error.empty() || w.dims_size() < 2) return false;
    const std::vector<double>& mean = stats->second.mean;
    std::vector<double> shift;
    if (op == "Conv") {
      const int64_t m = w.dims(0), cg = w.dims(1), group = attr_int(node, "group", 1);
      if (group <= 0 || m % group || static_cast<int64_t>(mean.size()) != cg * group) return false;
      const size_t k = qw.error.size() / (m * cg);
      shift.assign(m, 0.0);
      for (int64_t o = 0; o < m; ++o) {
        const int64_t c0 = (o / (m / group)) * cg;
        for (int64_t c = 0; c < cg; ++c) {
          double s = 0;
          for (size_t j = 0; j < k; ++j) s += qw.error[(o * cg + c) * k + j];
          shift[o] += s * mean[c0 + c];
        }
      }
    } else {
      if (w.dims_size() != 2) return false;
      const bool trans = attr_int(node, "transB", 0) != 0;
      const int64_t k = w.dims(trans ? 1 : 0), n = w.dims(trans ? 0 : 1);
      if (static_cast<int64_t>(mean.size()) != k) return false;
      shift.assign(n, 0.0);
      for (int64_t i = 0; i < k; ++i) {
        for (int64_t j = 0; j < n; ++j) {
          shift[j] += qw.error[trans ? j * k + i : i * n + j] * mean[i];
        }
      }
    }
    const bool has_bias = node.input_size() > 2 && !node.input(2).empty();
    std::vector<float> b(shift.size(), 0.0f);
    std::string base = node.input(1) + "_bias";
    if (has_bias) {
      auto ref = constant(node.input(2));
      if (!ref || ref->tensor->data_type() != TensorProto::FLOAT) return false;
      b = tensor_floats(*model_, *ref->tensor);
      if (b.size() != shift.size()) return false;
      base = node.input(2);
    }
    bool changed = false;
    for (size_t i = 0; i < b.size(); ++i) {
      const float corrected = static_cast<float>(b[i] - shift[i]);
      changed |= corrected != b[i];
      b[i] = corrected;
    }
    if (!changed) return false;
    if (!has_bias) {  // a float bias, replaced by its int32 form right after
      const std::string name =
          editor_->add_floats(*graph_, base, {static_cast<int64_t>(b.size())}, b);
      while (node.input_size() < 2) node.add_input("");
      node.add_input(name);
    }
    corrected = std::move(b);
    return true;
  }

  QuantizedWeight quantize_weight(const TensorProto& w, const std::vector<int64_t>& dims,
                                  int axis) {
    const std::vector<float> x = tensor_floats(*model_, w);
    const ChannelLayout cl = channel_layout(dims, axis);
    const int64_t outer = cl.outer, channels = cl.channels, inner = cl.inner;
    const bool is_signed = config_.signed_weights;
    std::vector<float> mn(channels), mx(channels);
    channel_minmax(x.data(), cl, mn.data(), mx.data());
    std::vector<AffineParams> p(channels);
    std::vector<float> scales(channels);
    std::vector<uint8_t> zps(channels);
    for (int64_t c = 0; c < channels; ++c) {
      p[c] = affine_params(mn[c], mx[c], is_signed, false);
      scales[c] = p[c].scale;
      zps[c] = static_cast<uint8_t>(p[c].zp);
    }
    std::vector<uint8_t> q(x.size());
    const Kernels& k = kernels();
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t c = 0; c < channels; ++c) {
        const int64_t at = (o * channels + c) * inner;
        k.quantize_affine(x.data() + at, inner, p[c], q.data() + at);
      }
    }
    const int qtype = is_signed ? TensorProto::INT8 : TensorProto::UINT8;
    const std::string base = w.name().empty() ? "weight" : w.name();
    const std::vector<int64_t> cdims =
        axis >= 0 ? std::vector<int64_t>{channels} : std::vector<int64_t>{};
    QuantizedWeight qw;
    qw.scales = scales;
    if (config_.bias_correction) {
      qw.error.resize(x.size());
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t c = 0; c < channels; ++c) {
          for (int64_t i = 0; i < inner; ++i) {
            const int64_t at = (o * channels + c) * inner + i;
            const int v = is_signed ? static_cast<int8_t>(q[at]) : q[at];
            qw.error[at] = (v - p[c].zp) * p[c].scale - x[at];
          }
        }
      }
    }
    const std::string qn = add_initializer(base + "_quantized", qtype, dims, q.data(), q.size());
    const std::string sn =
        add_initializer(base + "_scale", TensorProto::FLOAT, cdims, scales.data(), channels * 4);
    const std::string zn =
        add_initializer(base + "_zero_point", qtype, cdims, zps.data(), channels);
    auto& dq = add_node("DequantizeLinear", base + "_dequantize", {qn, sn, zn}, {});
    if (axis >= 0) set_attr(dq, "axis", static_cast<int64_t>(axis));
    qw.dequantized = editor_->unique(base + "_dequantized");
    result_.stands_for.emplace_back(qw.dequantized, w.name());
    dq.add_output(qw.dequantized);
    record(w.name(), dims,
           fmt::format("{}{}", is_signed ? "int8" : "uint8", axis >= 0 ? " per-channel" : ""),
           x.size() * 4, x.size() + channels * 5);
    return qw;
  }

  void record(const std::string& name, const std::vector<int64_t>& dims, const std::string& to,
              uint64_t before, uint64_t after) {
    TensorChange change;
    change.name = name;
    change.dims = dims;
    change.from = "f32";
    change.to = to;
    change.bytes_before = before;
    change.bytes_after = after;
    result_.tensors.push_back(std::move(change));
  }

  // A Q/DQ or other new node of the main graph (placed by the final sort).
  onnx::NodeProto& add_node(const std::string& op, const std::string& name,
                            std::vector<std::string> inputs, std::vector<std::string> outputs) {
    std::string domain;
    if ((op == "QuantizeLinear" || op == "DequantizeLinear") && !q_domain_.empty()) {
      domain = q_domain_;
      uses_ms_ = true;
    }
    return editor_->add_node(*graph_, op, name, std::move(inputs), std::move(outputs), domain);
  }

  std::string add_initializer(const std::string& base, int type, const std::vector<int64_t>& dims,
                              const void* data, size_t bytes) {
    return editor_->add_initializer(*graph_, base, type, dims, data, bytes);
  }

  std::optional<ConstantRef> constant(const std::string& name) const {
    return index_->constant(index_->main(), name);
  }

  // Nodes in If/Loop/Scan bodies that would be candidates: kept, and said so.
  void report_bodies(const ModelIndex& index) {
    for (const auto& g : index.graphs()) {
      if (!g->parent) continue;
      for (const auto& node : g->proto->node()) {
        if (candidate(node).empty()) {
          result_.skipped.push_back(
              {node_label(*g, node),
               "inside a subgraph: calibration observes the main graph only, so it stays float"});
        }
      }
    }
  }

  StaticQdqConfig config_;
  PassResult result_;
  Model* model_ = nullptr;
  onnx::GraphProto* graph_ = nullptr;
  const ModelIndex* index_ = nullptr;
  GraphEditor* editor_ = nullptr;
  int opset_ = 0;
  std::string q_domain_;
  bool uses_ms_ = false;
  std::unordered_map<std::string, Range> ranges_;
  std::unordered_map<std::string, ChannelStats> channel_stats_;
  std::vector<int> selected_;
  int weighted_ = 0;                 // selected Conv/ConvTranspose/Gemm/MatMul
  std::set<std::string> quantized_;  // read by a quantized node: these get a pair
  std::set<std::string> produced_;  // written by a quantized node (a pair only if also read by one)
  std::set<std::string> wide_;      // tensors of nodes planned with 16-bit activations
  std::map<int, std::string> keys_;  // node_key() of each selected node, as the model gave it
  std::map<std::string, std::string> shares_;  // output -> the input whose parameters it takes
  std::map<std::string, int> folded_;          // activation input -> the activation node
  std::map<std::string, Params> params_;
  std::map<std::string, QuantizedWeight> weights_;
};

}  // namespace

const std::set<std::string>& static_int8_op_types() {
  static const std::set<std::string> ops = [] {
    std::set<std::string> s;
    for (const auto& [op, kind] : op_kinds()) s.insert(op);
    return s;
  }();
  return ops;
}

std::unique_ptr<Pass> make_static_qdq_pass(StaticQdqConfig config) {
  return std::make_unique<StaticQdqPass>(std::move(config));
}

}  // namespace quantize
