// Preparation for static INT8 on CNNs: BatchNormalization folded into the Conv before it, and
// cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization and
// Bias Correction", 2019), driven by calibrated per-channel ranges.
//
// An activation is quantized per tensor, so a channel whose values span a hundredth of the
// tensor's range keeps under 2 of its 8 bits. Dividing that channel by s < 1 where it is computed
// (the producing Conv's filter and bias rows) and multiplying it back where it is read (the
// reading Conv's input column) leaves the float model's outputs unchanged and spreads the channels
// evenly over the 8 bits. Channel c may be rescaled only when every op between the producer and
// the readers commutes with a positive per-channel scale: Relu, LeakyRelu, PRelu, max and average
// pooling, Resize, Identity, Add/Sum of tensors of the same channels (a residual stream is one
// group: its writers and readers are scaled together), Concat and zero Pad along the channels
// (channel offsets kept). A tensor read by anything else (Clip with a maximum, Sigmoid, Mul,
// Reshape, a graph output, a subgraph) fixes its channels.
//
// The scale of a group of channels, from the calibrated largest magnitude a_c of each channel
// relative to its tensor's largest (the maximum over the group's tensors) and, for the reading
// Convs that are not depthwise, the largest weight r_c of input column c relative to its filter's
// largest (weights are quantized per output channel, so a column scaled down loses resolution;
// r_c = 1 when only depthwise Convs read it, as their weights are per channel):
//   s_c = a_c^0.75 / r_c^0.25, clamped to [1/8, 8]
// The activation weighs more than the column (it is read by every op of a residual stream, the
// column by one Conv); the clamp keeps a channel from being boosted more than 8x: on BlazeFace,
// unbounded full equalization (s_c = a_c) measured well in the tool's executor but lost 0.3 of
// cosine in ONNX Runtime, and 0.5 / unbounded gave 0.966 against 0.988 for this rule (front) and
// 0.950 against 0.966 (back). Dead channels (a_c = 0) keep s_c = 1. Every tensor whose channels
// were rescaled is renamed (<name>_equalized): its calibrated values changed, and statistics are
// keyed by name.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <unordered_map>

#include "graph/graph.h"
#include "model/tensor_data.h"
#include "passes/passes.h"
#include "quantize/log.h"

namespace quantize {
namespace {

using onnx::TensorProto;

bool float_constant(const ModelIndex& index, const ModelIndex::Graph& g, const std::string& name) {
  if (name.empty()) return false;
  auto ref = index.constant(g, name);
  return ref && ref->tensor->data_type() == TensorProto::FLOAT;
}

std::vector<int64_t> int64_values(const Model& model, const TensorProto& t) {
  if (t.int64_data_size() > 0) return {t.int64_data().begin(), t.int64_data().end()};
  PayloadBytes bytes(tensor_payload(model, t));
  std::vector<int64_t> v(bytes.size() / sizeof(int64_t));
  if (!v.empty()) std::memcpy(v.data(), bytes.data(), v.size() * sizeof(int64_t));
  return v;
}

// A Conv whose filter (and bias, if any) are float constants of the usual shapes.
bool scalable_conv(const ModelIndex& index, const ModelIndex::Graph& g,
                   const onnx::NodeProto& node) {
  if (!is_default_domain(node) || node.op_type() != "Conv" || node.input_size() < 2 ||
      node.output_size() != 1 || !float_constant(index, g, node.input(1))) {
    return false;
  }
  const TensorProto& w = *index.constant(g, node.input(1))->tensor;
  if (w.dims_size() < 3 || w.dims(0) <= 0 || w.dims(1) <= 0) return false;
  if (node.input_size() > 2 && !node.input(2).empty()) {
    if (!float_constant(index, g, node.input(2))) return false;
    if (element_count(*index.constant(g, node.input(2))->tensor) !=
        static_cast<uint64_t>(w.dims(0)))
      return false;
  }
  const int64_t group = attr_int(node, "group", 1);
  return group > 0 && w.dims(0) % group == 0;
}

// --- BatchNormalization folding
// -------------------------------------------------------------------

class FoldBatchNormPass final : public Pass {
 public:
  const char* name() const override { return "fold_batchnorm"; }

  PassResult run(Model& model) override {
    PassResult result;
    result.pass = name();
    ModelIndex index(model.proto);
    GraphEditor editor(model);
    const ModelIndex::Graph& g = index.main();
    auto candidate = [](const onnx::NodeProto& node) {
      return is_default_domain(node) && node.op_type() == "BatchNormalization";
    };
    visit_nodes(index, result, candidate, [&](const ModelIndex::Graph& graph, onnx::NodeProto& bn) {
      if (&graph != &g) return Verdict::kept("in a subgraph");
      if (bn.input_size() < 5 || bn.output_size() != 1 || attr_int(bn, "training_mode", 0) != 0) {
        return Verdict::kept("training-mode BatchNormalization (more than one output)");
      }
      onnx::NodeProto* conv = index.producer(g, bn.input(0));
      if (!conv || !scalable_conv(index, g, *conv)) return Verdict::kept("its input is not a Conv");
      if (index.readers(g, conv->output(0)).size() != 1) {
        return Verdict::kept("the Conv's output is read elsewhere too");
      }
      for (int i = 1; i < 5; ++i) {
        if (!float_constant(index, g, bn.input(i))) {
          return Verdict::kept(fmt::format("input {} is not a float constant", i));
        }
      }
      const TensorProto& wt = *index.constant(g, conv->input(1))->tensor;
      const int64_t m = wt.dims(0);
      std::vector<std::vector<float>> p;  // scale, B, mean, var
      for (int i = 1; i < 5; ++i) {
        p.push_back(tensor_floats(model, *index.constant(g, bn.input(i))->tensor));
        if (static_cast<int64_t>(p.back().size()) != m) {
          return Verdict::kept("its parameters do not match the Conv's output channels");
        }
      }
      const float eps = attr_float(bn, "epsilon", 1e-5f);
      std::vector<float> w = tensor_floats(model, wt);
      std::vector<float> b(m, 0.0f);
      if (conv->input_size() > 2 && !conv->input(2).empty()) {
        b = tensor_floats(model, *index.constant(g, conv->input(2))->tensor);
      }
      const size_t per = w.size() / m;
      for (int64_t o = 0; o < m; ++o) {
        const float k = p[0][o] / std::sqrt(p[3][o] + eps);
        for (size_t j = 0; j < per; ++j) w[o * per + j] *= k;
        b[o] = (b[o] - p[2][o]) * k + p[1][o];
      }
      const std::vector<int64_t> dims(wt.dims().begin(), wt.dims().end());
      const std::string wname = editor.add_floats(*g.proto, conv->input(1) + "_bn", dims, w);
      const std::string bname = editor.add_floats(*g.proto, conv->input(1) + "_bn_bias", {m}, b);
      conv->set_input(1, wname);
      if (conv->input_size() > 2) {
        conv->set_input(2, bname);
      } else {
        conv->add_input(bname);
      }
      conv->set_output(0, bn.output(0));
      editor.remove_node(bn);
      return Verdict::done("folded into " + node_label(*conv));
    });
    editor.apply();
    return result;
  }
};

// --- cross-layer equalization
// ---------------------------------------------------------------------

constexpr double kActivationWeight = 0.75, kMaxScale = 8;

class Slots {
 public:
  int add(int n) {
    const int first = static_cast<int>(parent_.size());
    for (int i = 0; i < n; ++i) parent_.push_back(first + i);
    fixed_.resize(parent_.size(), 0);
    return first;
  }
  int find(int a) {
    while (parent_[a] != a) a = parent_[a] = parent_[parent_[a]];
    return a;
  }
  void unite(int a, int b) {
    a = find(a), b = find(b);
    if (a != b) parent_[b] = a, fixed_[a] |= fixed_[b];
  }
  void fix(int a) { fixed_[find(a)] = 1; }
  bool fixed(int a) { return fixed_[find(a)] != 0; }
  size_t size() const { return parent_.size(); }

 private:
  std::vector<int> parent_;
  std::vector<char> fixed_;
};

class EqualizePass final : public Pass {
 public:
  explicit EqualizePass(EqualizeConfig config) : config_(std::move(config)) {}
  const char* name() const override { return "equalize"; }

  PassResult run(Model& model) override {
    PassResult result;
    result.pass = name();
    model_ = &model;
    ModelIndex index(model.proto);
    const ModelIndex::Graph& g = index.main();
    onnx::GraphProto& graph = *g.proto;

    // Tensors that can take part: what scalable Convs read (input 0) and write, and what the
    // channel-wise ops read and write.
    std::set<std::string> tensors;
    for (auto& node : *graph.mutable_node()) {
      if (scalable_conv(index, g, node)) {
        tensors.insert(node.input(0));
        tensors.insert(node.output(0));
      } else if (transparent(index, g, node)) {
        for (int i : data_inputs(node)) tensors.insert(node.input(i));
        tensors.insert(node.output(0));
      }
    }
    tensors.erase("");
    if (tensors.empty()) {
      result.notes.push_back("no Conv to equalize");
      return result;
    }
    stats_ = config_.channel_stats(model, tensors);

    // One slot per channel of each tensor; channel-wise ops join slots into groups.
    Slots slots;
    std::unordered_map<std::string, int> first;
    for (const auto& t : tensors) {
      auto it = stats_.find(t);
      if (it != stats_.end() && !it->second.max_abs.empty()) {
        first[t] = slots.add(static_cast<int>(it->second.max_abs.size()));
      }
    }
    std::map<std::string, std::string> fixed;  // tensor -> why its channels keep their scale
    auto channels = [&](const std::string& t) -> int64_t {
      if (first.count(t)) return static_cast<int64_t>(stats_.at(t).max_abs.size());
      auto ref = index.constant(g, t);  // constant zero channels of a Concat
      return ref && ref->tensor->dims_size() >= 2 ? ref->tensor->dims(1) : -1;
    };
    auto join = [&](const std::string& a, int64_t a_offset, const std::string& b, int64_t n) {
      for (int64_t c = 0; c < n; ++c) slots.unite(first[a] + a_offset + c, first[b] + c);
    };
    for (auto& node : *graph.mutable_node()) {
      if (scalable_conv(index, g, node) || !transparent(index, g, node)) continue;
      const std::string& out = node.output(0);
      std::vector<std::string> ins;
      for (int i : data_inputs(node)) ins.push_back(node.input(i));
      bool ok = channels(out) > 0;
      for (const auto& in : ins) ok = ok && channels(in) > 0;
      if (ok && node.op_type() == "Concat") {
        int64_t offset = 0;
        for (const auto& in : ins) offset += channels(in);
        ok = offset == channels(out);
        offset = 0;
        for (const auto& in : ins) {
          if (!ok) break;
          if (!zeros(index, g, in)) join(out, offset, in, channels(in));  // zeros take any scale
          offset += channels(in);
        }
      } else if (ok && node.op_type() == "Pad") {
        const int64_t begin = channel_pad(index, g, node);
        ok = begin >= 0 && begin + channels(ins[0]) <= channels(out);
        if (ok) join(out, begin, ins[0], channels(ins[0]));
      } else if (ok) {
        for (const auto& in : ins) ok = ok && channels(in) == channels(out);
        for (const auto& in : ins) {
          if (ok) join(out, 0, in, channels(in));
        }
      }
      if (!ok) {
        const std::string why = fmt::format("{}: channel counts do not line up", node_label(node));
        fixed.emplace(out, why);
        for (const auto& in : ins) fixed.emplace(in, why);
      }
    }
    // A tensor is free only when every producer and reader is one of the above.
    std::set<std::string> outputs;
    for (const auto& o : graph.output()) outputs.insert(o.name());
    for (const auto& t : tensors) {
      if (!first.count(t) || zeros(index, g, t)) continue;
      const onnx::NodeProto* producer = index.producer(g, t);
      if (!producer || outputs.count(t)) {
        fixed.emplace(t, producer ? "a graph output" : "a graph input");
        continue;
      }
      if (!scalable_conv(index, g, *producer) && !transparent(index, g, *producer)) {
        fixed.emplace(t, "written by " + node_label(*producer));
        continue;
      }
      for (const auto& use : index.readers(g, t)) {
        const bool ok =
            use.node && (scalable_conv(index, g, *use.node) ? use.input == 0
                         : transparent(index, g, *use.node) ? is_data_input(*use.node, use.input)
                                                            : false);
        if (!ok) {
          fixed.emplace(t, use.node ? "read by " + node_label(*use.node) : "read by a subgraph");
          break;
        }
      }
    }
    for (const auto& [t, why] : fixed) {
      log().debug("equalize: '{}' keeps its channel scales: {}", t, why);
      if (!first.count(t)) continue;
      for (int64_t c = 0; c < channels(t); ++c) slots.fix(first[t] + static_cast<int>(c));
    }

    // Per group: the largest relative magnitude, and the largest relative weight column of the
    // non-depthwise Convs reading it.
    std::vector<double> a(slots.size(), 0.0), r(slots.size(), -1.0);
    for (const auto& [t, base] : first) {
      const std::vector<float>& m = stats_.at(t).max_abs;
      const float top = *std::max_element(m.begin(), m.end());
      if (top <= 0) continue;
      for (size_t c = 0; c < m.size(); ++c) {
        double& v = a[slots.find(base + static_cast<int>(c))];
        v = std::max(v, double(m[c]) / top);
      }
    }
    for (auto& node : *graph.mutable_node()) {
      if (!scalable_conv(index, g, node) || !first.count(node.input(0))) continue;
      const std::vector<double> col = column_share(model, index, g, node);
      const int base = first[node.input(0)];
      if (static_cast<int64_t>(col.size()) != channels(node.input(0))) {
        for (size_t c = 0; c < col.size(); ++c) slots.fix(base + static_cast<int>(c));
        continue;
      }
      for (size_t c = 0; c < col.size(); ++c) {
        if (col[c] < 0) continue;  // depthwise: scaling its column costs nothing
        double& v = r[slots.find(base + static_cast<int>(c))];
        v = std::max(v, col[c]);
      }
    }
    std::vector<double> scale(slots.size(), 1.0);
    for (size_t s = 0; s < slots.size(); ++s) {
      const int root = slots.find(static_cast<int>(s));
      if (slots.fixed(root) || a[root] <= 0) continue;
      const double v = std::pow(a[root], kActivationWeight) /
                       (r[root] > 0 ? std::pow(r[root], 1 - kActivationWeight) : 1.0);
      scale[s] = std::clamp(v, 1 / kMaxScale, kMaxScale);
    }

    // Rewrite: Conv weights, then the names of the tensors whose channels changed.
    GraphEditor editor(model);
    auto scales_of = [&](const std::string& t) -> std::vector<double> {
      if (!first.count(t)) return {};
      std::vector<double> v(channels(t));
      for (size_t c = 0; c < v.size(); ++c) v[c] = scale[first[t] + c];
      bool trivial = true;
      for (double x : v) trivial = trivial && x == 1.0;
      return trivial ? std::vector<double>{} : v;
    };
    std::map<std::string, std::string> renamed;
    int convs = 0;
    for (auto& node : *graph.mutable_node()) {
      if (!scalable_conv(index, g, node)) continue;
      const std::vector<double> in = scales_of(node.input(0)), out = scales_of(node.output(0));
      if (in.empty() && out.empty()) continue;
      rescale_conv(model, index, g, editor, node, in, out);
      ++convs;
      result.changed.push_back(
          {node_label(node),
           fmt::format("equalized ({}{}{})", in.empty() ? "" : "input",
                       !in.empty() && !out.empty() ? " and " : "", out.empty() ? "" : "output"),
           node_key(node)});
    }
    double worst_before = 1, worst_after = 1;
    for (const auto& [t, base] : first) {
      const std::vector<double> s = scales_of(t);
      if (s.empty()) continue;
      renamed[t] = editor.unique(t + "_equalized");
      const std::vector<float>& m = stats_.at(t).max_abs;
      std::vector<double> after(m.size());
      for (size_t c = 0; c < m.size(); ++c) after[c] = m[c] / s[c];
      worst_before = std::max(worst_before, spread(std::vector<double>(m.begin(), m.end())));
      worst_after = std::max(worst_after, spread(after));
    }
    for (auto& node : *graph.mutable_node()) {
      for (auto& in : *node.mutable_input()) {
        if (auto it = renamed.find(in); it != renamed.end()) in = it->second;
      }
      for (auto& out : *node.mutable_output()) {
        if (auto it = renamed.find(out); it != renamed.end()) out = it->second;
      }
    }
    for (auto& vi : *graph.mutable_value_info()) {
      if (auto it = renamed.find(vi.name()); it != renamed.end()) vi.set_name(it->second);
    }
    editor.apply();
    if (convs == 0) {
      result.notes.push_back("no channel group to equalize (every one fixed, or already even)");
    } else {
      result.notes.push_back(fmt::format(
          "{} Conv(s) rescaled, {} activation(s) equalized: the largest channel-range spread "
          "(widest channel / median channel) {:.0f}x -> {:.0f}x",
          convs, renamed.size(), worst_before, worst_after));
    }
    return result;
  }

 private:
  // Ops that commute with a positive scale per channel (axis 1).
  bool transparent(const ModelIndex& index, const ModelIndex::Graph& g,
                   const onnx::NodeProto& node) const {
    if (!is_default_domain(node) || node.output_size() < 1) return false;
    const std::string& op = node.op_type();
    if (op == "Relu" || op == "LeakyRelu" || op == "Identity" || op == "AveragePool" ||
        op == "GlobalAveragePool" || op == "GlobalMaxPool" || op == "Add" || op == "Sum" ||
        op == "Concat") {
      if (op == "Concat" && attr_int(node, "axis", 0) != 1) return false;
      for (int i : data_inputs(node)) {
        if (op == "Concat" && zeros(index, g, node.input(i))) continue;  // channel padding
        if (index.constant(g, node.input(i))) return false;
      }
      return node.output_size() == 1;
    }
    if (op == "MaxPool") return node.output_size() == 1;
    if (op == "PRelu") return float_constant(index, g, node.input(1));  // slopes stay right
    if (op == "Resize" || op == "Upsample") return node.output_size() == 1;
    if (op == "Pad") return channel_pad(index, g, node) >= 0;
    return false;
  }

  // A value that is all zeros whatever the input: ConstantOfShape with a zero (or no) value, as
  // tf2onnx writes the zero channels a Concat appends to pad a residual stream, or such a
  // constant once folded.
  bool zeros(const ModelIndex& index, const ModelIndex::Graph& g, const std::string& name) const {
    if (auto ref = index.constant(g, name)) {
      if (ref->tensor->data_type() != TensorProto::FLOAT || ref->tensor->dims_size() < 2) {
        return false;
      }
      for (float x : tensor_floats(*model_, *ref->tensor)) {
        if (x != 0.0f) return false;
      }
      return true;
    }
    const onnx::NodeProto* p = index.producer(g, name);
    if (!p || !is_default_domain(*p) || p->op_type() != "ConstantOfShape") return false;
    const onnx::AttributeProto* value = find_attribute(*p, "value");
    if (!value) return true;
    const TensorProto& t = value->t();
    if (t.data_type() != TensorProto::FLOAT) return false;
    if (t.float_data_size() == 1) return t.float_data(0) == 0.0f;
    if (t.raw_data().size() != sizeof(float)) return false;
    float v;
    std::memcpy(&v, t.raw_data().data(), sizeof v);
    return v == 0.0f;
  }

  static std::vector<int> data_inputs(const onnx::NodeProto& node) {
    const std::string& op = node.op_type();
    if (op == "Add" || op == "Sum" || op == "Concat") {
      std::vector<int> all(node.input_size());
      std::iota(all.begin(), all.end(), 0);
      return all;
    }
    return {0};
  }
  static bool is_data_input(const onnx::NodeProto& node, int input) {
    const auto d = data_inputs(node);
    return std::find(d.begin(), d.end(), input) != d.end();
  }

  // For a constant-mode Pad with zero fill: the channels added before the input's (>= 0);
  // -1 when it is not such a Pad.
  int64_t channel_pad(const ModelIndex& index, const ModelIndex::Graph& g,
                      const onnx::NodeProto& node) const {
    if (!is_default_domain(node) || node.op_type() != "Pad") return -1;
    if (attr_string(node, "mode", "constant") != "constant") return -1;
    std::vector<int64_t> pads = attr_ints(node, "pads");
    if (node.input_size() > 1) {  // opset 11: pads (and the value) are inputs
      auto ref = index.constant(g, node.input(1));
      if (!ref || ref->tensor->data_type() != TensorProto::INT64) return -1;
      pads = int64_values(*model_, *ref->tensor);
      if (node.input_size() > 2 && !node.input(2).empty()) {
        auto v = index.constant(g, node.input(2));
        if (!v || v->tensor->data_type() != TensorProto::FLOAT) return -1;
        for (float x : tensor_floats(*model_, *v->tensor)) {
          if (x != 0) return -1;
        }
      }
      if (node.input_size() > 3) return -1;  // axes
    } else if (attr_float(node, "value", 0.0f) != 0) {
      return -1;
    }
    if (pads.size() < 4 || pads.size() % 2) return -1;
    for (int64_t p : pads) {
      if (p < 0) return -1;
    }
    return pads[1];
  }

  // For each input channel c of a Conv: the largest |w[o, c, ...]| relative to the largest
  // weight of filter o, over the filters reading c; -1 for a depthwise Conv (one input channel
  // per filter).
  static std::vector<double> column_share(const Model& model, const ModelIndex& index,
                                          const ModelIndex::Graph& g, const onnx::NodeProto& node) {
    const TensorProto& wt = *index.constant(g, node.input(1))->tensor;
    const int64_t m = wt.dims(0), cg = wt.dims(1), group = attr_int(node, "group", 1);
    const int64_t c_in = cg * group, per_group_out = m / group;
    if (cg == 1) return std::vector<double>(c_in, -1.0);
    const std::vector<float> w = tensor_floats(model, wt);
    const size_t k = w.size() / (m * cg);
    std::vector<double> share(c_in, 0.0);
    for (int64_t o = 0; o < m; ++o) {
      const float* row = w.data() + o * cg * k;
      float top = 0;
      for (size_t j = 0; j < cg * k; ++j) top = std::max(top, std::fabs(row[j]));
      if (top <= 0) continue;
      const int64_t c0 = (o / per_group_out) * cg;
      for (int64_t c = 0; c < cg; ++c) {
        float col = 0;
        for (size_t j = 0; j < k; ++j) col = std::max(col, std::fabs(row[c * k + j]));
        share[c0 + c] = std::max(share[c0 + c], double(col) / top);
      }
    }
    return share;
  }

  // w[o, c, ...] * in[c] / out[o]; b[o] / out[o] (an empty vector: all ones).
  static void rescale_conv(const Model& model, const ModelIndex& index, const ModelIndex::Graph& g,
                           GraphEditor& editor, onnx::NodeProto& node,
                           const std::vector<double>& in, const std::vector<double>& out) {
    const TensorProto& wt = *index.constant(g, node.input(1))->tensor;
    const int64_t m = wt.dims(0), cg = wt.dims(1), group = attr_int(node, "group", 1);
    const int64_t per_group_out = m / group;
    std::vector<float> w = tensor_floats(model, wt);
    const size_t k = w.size() / (m * cg);
    for (int64_t o = 0; o < m; ++o) {
      const int64_t c0 = (o / per_group_out) * cg;
      for (int64_t c = 0; c < cg; ++c) {
        double f = in.empty() ? 1.0 : in[c0 + c];
        if (!out.empty()) f /= out[o];
        for (size_t j = 0; j < k; ++j) w[(o * cg + c) * k + j] *= static_cast<float>(f);
      }
    }
    const std::vector<int64_t> dims(wt.dims().begin(), wt.dims().end());
    node.set_input(1, editor.add_floats(*g.proto, node.input(1) + "_equalized", dims, w));
    if (!out.empty() && node.input_size() > 2 && !node.input(2).empty()) {
      std::vector<float> b = tensor_floats(model, *index.constant(g, node.input(2))->tensor);
      for (int64_t o = 0; o < m; ++o) b[o] = static_cast<float>(b[o] / out[o]);
      node.set_input(2, editor.add_floats(*g.proto, node.input(2) + "_equalized", {m}, b));
    }
  }

  // The widest channel over the median channel (dead channels left out).
  static double spread(std::vector<double> v) {
    v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return !(x > 0); }), v.end());
    if (v.empty()) return 1;
    const double top = *std::max_element(v.begin(), v.end());
    std::nth_element(v.begin(), v.begin() + v.size() / 2, v.end());
    return top / v[v.size() / 2];
  }

  EqualizeConfig config_;
  const Model* model_ = nullptr;
  std::unordered_map<std::string, ChannelStats> stats_;
};

}  // namespace

std::unique_ptr<Pass> make_fold_batchnorm_pass() { return std::make_unique<FoldBatchNormPass>(); }

std::unique_ptr<Pass> make_equalize_pass(EqualizeConfig config) {
  return std::make_unique<EqualizePass>(std::move(config));
}

}  // namespace quantize
