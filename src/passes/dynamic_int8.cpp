// Dynamic INT8: weights quantized offline to 8 bits, activations at run time (ONNX Runtime's
// "IntegerOps" form), for MatMul, Gemm and Conv with a constant weight, and Gather on a constant
// table.
//
//   MatMul:   A -> DynamicQuantizeLinear -> (A_q, a_scale, a_zp)
//             MatMulInteger(A_q, W_q, a_zp, w_zp) -> Cast(float) -> Mul(a_scale * w_scale) -> Y
//   Gemm:     the same on W = B or B^T, alpha folded into w_scale, then Add(beta * C)
//   Conv:     ConvInteger(X_q, W_q, x_zp, w_zp) -> Cast -> Mul(x_scale * w_scale) -> Add(bias)
//   Gather:   Gather(W_q, ids) -> DequantizeLinear(., w_scale, w_zp) -> Y
//   --format qdq: W_q -> DequantizeLinear -> the float op, unchanged (activations stay float).
//
// Weights: int8 symmetric or uint8 asymmetric (kernels.h), per tensor or per output channel
// (MatMul/Gemm: the N columns; Conv: the M filters). ConvInteger takes a single weight zero
// point, so per-channel uint8 Conv weights are symmetric around 128. Models below opset 11 have
// no DynamicQuantizeLinear: their MatMul/Gemm become com.microsoft.DynamicQuantizeMatMul and
// their Conv stays float, with the reason. A weight read by several nodes is quantized once;
// weights in Constant nodes and in subgraphs count. Weight bytes are produced when written.
#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "graph/graph.h"
#include "kernels/kernels.h"
#include "model/tensor_data.h"
#include "passes/passes.h"
#include "quantize/error.h"
#include "support/threads.h"

namespace quantize {
namespace {

using onnx::TensorProto;

// How a weight is quantized: its dims seen as [outer, channels, inner] with one parameter set
// per channel (channels = 1: per tensor), stored transposed from [R, C] to [C, R] when asked.
struct Layout {
  std::vector<int64_t> dims;
  int axis = -1;  // -1: per tensor
  bool transpose = false;
  bool centered_uint8 = false;  // uint8 symmetric around 128 (per-channel ConvInteger)
};

struct QuantizedWeight {
  std::string q, scale, zp;
  std::vector<float> scales;  // one per channel
  int64_t channels = 1;
};

// A weight's float32 values a range at a time: a view of float32 bytes, or the float16 /
// bfloat16 bytes a widened weight is stored as, converted into the caller's buffer, so that no
// float32 copy of the whole weight is made (at LLM scale those copies cost more than the
// quantization: a fresh 46 MB of page faults per weight).
class WeightValues {
 public:
  static constexpr int64_t kChunk = int64_t{1} << 16;  // values converted at a time

  WeightValues(PayloadPtr stored, int type) : type_(type), bytes_(stored) {}
  bool narrow() const { return type_ != TensorProto::FLOAT; }
  // Values [begin, begin + n): in place, or converted into `buffer`.
  const float* range(int64_t begin, int64_t n, std::vector<float>& buffer) const {
    if (!narrow()) return reinterpret_cast<const float*>(bytes_.data()) + begin;
    buffer.resize(static_cast<size_t>(n));
    widen_to_float32(type_, bytes_.data() + begin * 2, static_cast<uint64_t>(n), buffer.data());
    return buffer.data();
  }
  // Each channel's min and max from +0, as channel_minmax, a chunk at a time.
  void channel_minmax(const ChannelLayout& cl, float* mn, float* mx) const {
    std::vector<float> buffer;
    if (!narrow()) {
      quantize::channel_minmax(range(0, 0, buffer), cl, mn, mx);
      return;
    }
    std::fill(mn, mn + cl.channels, 0.0f);
    std::fill(mx, mx + cl.channels, 0.0f);
    auto merge = [&](const float* x, const ChannelLayout& part, int64_t first) {
      std::vector<float> a(static_cast<size_t>(part.channels)), b(a.size());
      quantize::channel_minmax(x, part, a.data(), b.data());
      for (int64_t c = 0; c < part.channels; ++c) {
        mn[first + c] = std::min(mn[first + c], a[c]);
        mx[first + c] = std::max(mx[first + c], b[c]);
      }
    };
    if (cl.inner == 1) {  // rows of `channels` values
      const int64_t step = std::max<int64_t>(1, kChunk / cl.channels);
      for (int64_t o = 0; o < cl.outer; o += step) {
        const int64_t rows = std::min(step, cl.outer - o);
        merge(range(o * cl.channels, rows * cl.channels, buffer), {rows, cl.channels, 1}, 0);
      }
      return;
    }
    for (int64_t r = 0; r < cl.outer * cl.channels; ++r) {  // rows of `inner` values, one channel
      for (int64_t off = 0; off < cl.inner; off += kChunk) {
        const int64_t n = std::min(kChunk, cl.inner - off);
        merge(range(r * cl.inner + off, n, buffer), {1, 1, n}, r % cl.channels);
      }
    }
  }

 private:
  int type_;
  PayloadBytes bytes_;
};

class DynamicInt8Pass final : public Pass {
 public:
  explicit DynamicInt8Pass(DynamicInt8Config config) : config_(std::move(config)) {}
  const char* name() const override { return "dynamic_int8"; }

  PassResult run(Model& model) override {
    result_ = {};
    result_.pass = name();
    model_ = &model;
    opset_ = opset_of(model.proto);
    ModelIndex index(model.proto);
    GraphEditor editor(model);
    index_ = &index;
    editor_ = &editor;
    signed_ = weights_signed(index);
    int convs = 0;
    auto candidate = [&](const onnx::NodeProto& node) {
      return node.domain().empty() && config_.op_types.count(node.op_type()) > 0;
    };
    visit_nodes(
        index, result_, candidate,
        [&](const ModelIndex::Graph& graph, onnx::NodeProto& node) {
          graph_ = &graph;
          node_ = &node;
          if (auto it = config_.precisions.find(node_key(node));
              it != config_.precisions.end() &&
              (it->second == Precision::kFloat || it->second == Precision::kFp16)) {
            return Verdict::kept("kept float by the precision plan");
          }
          if (std::string why = rewrite(node); !why.empty()) return Verdict::kept(why);
          editor.remove_node(node);
          convs += node.op_type() == "Conv";
          return Verdict::done(done_);
        },
        &config_.filter);
    if (uses_ms_) ensure_opset(model.proto, "com.microsoft", 1);
    editor.apply();
    if (config_.weights == DynamicInt8Config::Weights::kPortable) {
      result_.warnings.push_back(signed_ ? "q8: int8 weights (the model has no Conv)"
                                         : "q8: uint8 weights, as the model has Conv (ConvInteger "
                                           "with int8 weights is missing from older runtimes)");
    }
    if (convs > 0 && !config_.qdq) {
      result_.warnings.push_back(fmt::format(
          "{} Conv node(s) quantized dynamically: activations are quantized per tensor at run "
          "time, which often costs conv nets much accuracy (YOLOX-nano: cosine 0.92; static: "
          "0.99). Use static quantization (--static --calib DATA) or keep Conv float with "
          "--op-types MatMul,Gemm,Gather",
          convs));
    }
    if (signed_ && integer_ops_ > 0 && !config_.reduce_range) {
      result_.warnings.push_back(fmt::format(
          "{} MatMulInteger op(s) multiply uint8 activations by int8 weights: on x86 CPUs without "
          "VNNI ONNX Runtime adds their products pairwise in 16 bits, which saturates and costs "
          "accuracy{}; --reduce-range (7-bit weights) or --uint8 avoid it",
          integer_ops_, x86_without_vnni() ? " (this machine has no VNNI)" : ""));
    }
    return result_;
  }

 private:
  bool weights_signed(const ModelIndex& index) const {
    if (config_.weights != DynamicInt8Config::Weights::kPortable) {
      return config_.weights == DynamicInt8Config::Weights::kInt8;
    }
    for (const auto& g : index.graphs()) {
      for (const auto& n : g->proto->node()) {
        if (n.op_type() == "Conv") return false;
      }
    }
    return true;
  }

  // Builds the replacement of one node (the new nodes go where it was); returns why not, or ""
  // when done (done_ then says what it became).
  std::string rewrite(const onnx::NodeProto& node) {
    const std::string& op = node.op_type();
    const int weight_input = op == "Gather" ? 0 : 1;
    if (node.input_size() <= weight_input) return "missing inputs";
    auto ref = index_->constant(*graph_, node.input(weight_input));
    if (!ref) {
      return "the weight is " + index_->why_not_constant(*graph_, node.input(weight_input));
    }
    const TensorProto& w = *ref->tensor;
    if (w.data_type() != TensorProto::FLOAT) {
      return fmt::format(
          "the weight is {}, not float32",
          TensorProto::DataType_Name(static_cast<TensorProto::DataType>(w.data_type())));
    }
    std::vector<int64_t> dims(w.dims().begin(), w.dims().end());
    const bool qdq = config_.qdq;
    if (qdq && opset_ < 10) {
      return fmt::format("DequantizeLinear needs opset 10 (model: {})", opset_);
    }
    if (op == "MatMul") return rewrite_matmul(node, *ref, dims, qdq);
    if (op == "Gemm") return rewrite_gemm(node, *ref, dims, qdq);
    if (op == "Conv") return rewrite_conv(node, *ref, dims, qdq);
    if (op == "Gather") return rewrite_gather(node, *ref, dims, qdq);
    return "op not handled";
  }

  std::string rewrite_matmul(const onnx::NodeProto& node, const ConstantRef& ref,
                             const std::vector<int64_t>& dims, bool qdq) {
    if (dims.size() != 2) return fmt::format("the weight is {}-D, not 2-D", dims.size());
    Layout layout{dims, per_channel_axis(1, qdq), false, false};
    QuantizedWeight qw = quantize(ref, layout, 1.0f);
    if (qdq) return feed_dequantized(node, 1, qw, layout);
    return emit_integer_matmul(node, node.input(0), qw, "");
  }

  std::string rewrite_gemm(const onnx::NodeProto& node, const ConstantRef& ref,
                           const std::vector<int64_t>& dims, bool qdq) {
    if (dims.size() != 2) return "the weight is not 2-D";
    const bool trans_b = attr_int(node, "transB", 0) != 0;
    if (qdq) {
      Layout layout{dims, per_channel_axis(trans_b ? 0 : 1, qdq), false, false};
      return feed_dequantized(node, 1, quantize(ref, layout, 1.0f), layout);
    }
    if (attr_int(node, "transA", 0) != 0) return "transA is set";
    const float alpha = attr_float(node, "alpha", 1.0f);
    const float beta = attr_float(node, "beta", 1.0f);
    std::string bias;
    if (node.input_size() > 2 && !node.input(2).empty()) {
      auto c = index_->constant(*graph_, node.input(2));
      if (c && c->tensor->data_type() == TensorProto::FLOAT) {
        std::vector<float> v = tensor_floats(*model_, *c->tensor);
        for (float& x : v) x *= beta;
        bias = editor_->add_floats(*graph_->proto, c->tensor->name() + "_scaled",
                                   {c->tensor->dims().begin(), c->tensor->dims().end()}, v);
      } else if (beta == 1.0f) {
        bias = node.input(2);
      } else {
        return "C is computed at run time and beta is not 1";
      }
    }
    // MatMulInteger wants W as [K, N]: B^T is stored when transB is set.
    Layout layout{dims, config_.per_channel ? (trans_b ? 0 : 1) : -1, trans_b, false};
    return emit_integer_matmul(node, node.input(0), quantize(ref, layout, alpha), bias);
  }

  std::string rewrite_conv(const onnx::NodeProto& node, const ConstantRef& ref,
                           const std::vector<int64_t>& dims, bool qdq) {
    if (dims.size() < 3) return "the weight is not a convolution filter";
    if (qdq) {
      Layout layout{dims, per_channel_axis(0, qdq), false, false};
      return feed_dequantized(node, 1, quantize(ref, layout, 1.0f), layout);
    }
    if (opset_ < 11) {
      return fmt::format("DynamicQuantizeLinear needs opset 11; the model is opset {}", opset_);
    }
    std::string bias;
    if (node.input_size() > 2 && !node.input(2).empty()) {
      auto b = index_->constant(*graph_, node.input(2));
      if (!b || b->tensor->data_type() != TensorProto::FLOAT) return "the bias is not a constant";
      bias = editor_->add_initializer(*graph_->proto, b->tensor->name() + "_reshaped",
                                      b->tensor->data_type(), channel_shape(dims),
                                      tensor_payload(*model_, *b->tensor));
    }
    Layout layout{dims, config_.per_channel ? 0 : -1, false, config_.per_channel && !signed_};
    QuantizedWeight qw = quantize(ref, layout, 1.0f);
    const auto x = quantized_activation(node.input(0));
    const std::string y = editor_->unique(node.output(0) + "_int32");
    auto& conv = add_node("ConvInteger", node.name() + "_quant", {x.q, qw.q, x.zp, qw.zp}, {y});
    for (const auto& a : node.attribute()) *conv.add_attribute() = a;
    // Per-channel scales broadcast over [N, M, spatial...]: shape them [M, 1, ...].
    std::string scale = qw.scale;
    if (qw.channels > 1) {
      scale = editor_->add_floats(*graph_->proto, qw.scale + "_reshaped", channel_shape(dims),
                                  qw.scales);
    }
    finish_float(node, y, x.scale, scale, bias);
    done_ = fmt::format("ConvInteger ({}{})", signed_ ? "int8" : "uint8",
                        qw.channels > 1 ? ", per channel" : "");
    return {};
  }

  std::string rewrite_gather(const onnx::NodeProto& node, const ConstantRef& ref,
                             const std::vector<int64_t>& dims, bool qdq) {
    if (attr_int(node, "axis", 0) != 0) return "gathers along an axis other than 0";
    if (opset_ < 10) return fmt::format("DequantizeLinear needs opset 10 (model: {})", opset_);
    Layout layout{dims, -1, false, false};  // per tensor: gathered rows share the parameters
    QuantizedWeight qw = quantize(ref, layout, 1.0f);
    if (qdq) return feed_dequantized(node, 0, qw, layout);
    const std::string rows = editor_->unique(node.output(0) + "_quantized");
    add_node("Gather", node.name() + "_quant", {qw.q, node.input(1)}, {rows});
    add_node("DequantizeLinear", node.name() + "_dequantize", {rows, qw.scale, qw.zp},
             {node.output(0)});
    done_ = fmt::format("Gather of a {} table + DequantizeLinear", signed_ ? "int8" : "uint8");
    return {};
  }

  int per_channel_axis(int axis, bool qdq) {
    if (!config_.per_channel) return -1;
    if (qdq && opset_ < 13) {  // DequantizeLinear's axis needs opset 13
      if (!per_tensor_fallback_) {
        result_.warnings.push_back(fmt::format(
            "per-channel QDQ weights need opset 13 (DequantizeLinear axis); the model is opset "
            "{}: weights are per tensor",
            opset_));
        per_tensor_fallback_ = true;
      }
      return -1;
    }
    return axis;
  }

  static std::vector<int64_t> channel_shape(const std::vector<int64_t>& conv_dims) {
    std::vector<int64_t> shape(conv_dims.size() - 1, 1);
    shape[0] = conv_dims[0];
    return shape;
  }

  // node's float weight input replaced by DequantizeLinear(W_q): the QDQ weight form.
  std::string feed_dequantized(const onnx::NodeProto& node, int input, const QuantizedWeight& qw,
                               const Layout& layout) {
    const std::string w = editor_->unique(node.input(input) + "_dequantized");
    result_.stands_for.emplace_back(w, node.input(input));
    auto& dq = add_node("DequantizeLinear", node.name() + "_weight_dequantize",
                        {qw.q, qw.scale, qw.zp}, {w});
    if (layout.axis >= 0) set_attr(dq, "axis", static_cast<int64_t>(layout.axis));
    editor_->add_copy(*graph_->proto, node, node_).set_input(input, w);
    done_ = fmt::format("{} weights + DequantizeLinear ({})", signed_ ? "int8" : "uint8",
                        layout.axis >= 0 ? "per channel" : "per tensor");
    return {};
  }

  std::string emit_integer_matmul(const onnx::NodeProto& node, const std::string& a,
                                  const QuantizedWeight& qw, const std::string& bias) {
    if (opset_ < 11) {  // no DynamicQuantizeLinear: ORT's fused contrib op instead
      std::vector<std::string> inputs = {a, qw.q, qw.scale, qw.zp};
      if (!bias.empty()) inputs.push_back(bias);
      add_node("DynamicQuantizeMatMul", node.name() + "_quant", std::move(inputs), {node.output(0)},
               "com.microsoft");
      uses_ms_ = true;
      ++integer_ops_;
      done_ =
          fmt::format("DynamicQuantizeMatMul ({}{}; opset {} has no DynamicQuantizeLinear)",
                      signed_ ? "int8" : "uint8", qw.channels > 1 ? ", per channel" : "", opset_);
      return {};
    }
    const auto x = quantized_activation(a);
    const std::string y = editor_->unique(node.output(0) + "_int32");
    add_node("MatMulInteger", node.name() + "_quant", {x.q, qw.q, x.zp, qw.zp}, {y});
    finish_float(node, y, x.scale, qw.scale, bias);
    ++integer_ops_;
    done_ = fmt::format("MatMulInteger ({}{})", signed_ ? "int8" : "uint8",
                        qw.channels > 1 ? ", per channel" : "");
    return {};
  }

  // int32 y -> Cast(float) -> Mul(x_scale * w_scale) [-> Add(bias)] -> the node's output.
  void finish_float(const onnx::NodeProto& node, const std::string& y, const std::string& x_scale,
                    const std::string& w_scale, const std::string& bias) {
    const std::string base = node.name().empty() ? node.output(0) : node.name();
    const std::string yf = editor_->unique(node.output(0) + "_float");
    auto& cast = add_node("Cast", base + "_output_cast", {y}, {yf});
    set_attr(cast, "to", static_cast<int64_t>(TensorProto::FLOAT));
    const std::string s = editor_->unique(node.output(0) + "_scale");
    add_node("Mul", base + "_scales_mul", {x_scale, w_scale}, {s});
    if (bias.empty()) {
      add_node("Mul", base + "_output_scale_mul", {yf, s}, {node.output(0)});
      return;
    }
    const std::string scaled = editor_->unique(node.output(0) + "_scaled");
    add_node("Mul", base + "_output_scale_mul", {yf, s}, {scaled});
    add_node("Add", base + "_bias_add", {scaled, bias}, {node.output(0)});
  }

  struct Activation {
    std::string q, scale, zp;
  };

  // One DynamicQuantizeLinear per activation and graph, shared by its readers.
  Activation quantized_activation(const std::string& a) {
    auto key = std::make_pair(graph_->proto, a);
    auto it = activations_.find(key);
    if (it != activations_.end()) return it->second;
    Activation x{editor_->unique(a + "_quantized"), editor_->unique(a + "_scale"),
                 editor_->unique(a + "_zero_point")};
    add_node("DynamicQuantizeLinear", a + "_quantize", {a}, {x.q, x.scale, x.zp});
    activations_[key] = x;
    return x;
  }

  // A node in the current graph, placed where the node being rewritten is.
  onnx::NodeProto& add_node(const std::string& op, const std::string& name,
                            std::vector<std::string> inputs, std::vector<std::string> outputs,
                            const std::string& domain = "") {
    return editor_->add_node(*graph_->proto, op, name, std::move(inputs), std::move(outputs),
                             domain, node_);
  }

  static PayloadPtr floats_payload(const std::vector<float>& v) {
    std::vector<uint8_t> bytes(v.size() * 4);
    std::memcpy(bytes.data(), v.data(), bytes.size());
    return make_owned_payload(std::move(bytes));
  }

  // Computes the parameters now (one pass over the weight) and leaves the quantized bytes to
  // the writer. `scale_factor` multiplies the stored scales (Gemm's alpha).
  QuantizedWeight quantize(const ConstantRef& ref, const Layout& layout, float scale_factor) {
    const TensorProto& w = *ref.tensor;
    const std::string key = fmt::format("{}|{}|{}|{}|{}", static_cast<const void*>(&w), layout.axis,
                                        layout.transpose, layout.centered_uint8, scale_factor);
    auto cached = weights_.find(key);
    if (cached != weights_.end()) return cached->second;

    const ChannelLayout cl = channel_layout(layout.dims, layout.axis);
    const int64_t outer = cl.outer, channels = cl.channels, inner = cl.inner;
    int type = 0;
    PayloadPtr source = stored_payload(*model_, w, &type);
    auto params = std::make_shared<std::vector<AffineParams>>(channels);
    {
      std::vector<float> mn(channels), mx(channels);
      WeightValues(source, type).channel_minmax(cl, mn.data(), mx.data());
      for (int64_t c = 0; c < channels; ++c) {
        AffineParams& p = (*params)[c];
        p = affine_params(mn[c], mx[c], signed_ || layout.centered_uint8, config_.reduce_range);
        if (layout.centered_uint8) p.zp = 128;
      }
    }
    const uint64_t count = element_count(w);
    const bool transpose = layout.transpose;
    const int64_t rows = layout.dims.empty() ? 1 : layout.dims[0];
    auto produce = [source, type, params, outer, channels, inner, count, transpose,
                    rows](uint8_t* out) {
      const WeightValues x(source, type);
      const int64_t step = std::max<int64_t>(1, WeightValues::kChunk / channels);
      const Kernels& k = kernels();
      std::vector<uint8_t> tmp(transpose ? count : 0);
      uint8_t* q = transpose ? tmp.data() : out;
      if (inner == 1) {
        std::vector<float> inv(channels), lo(channels), hi(channels);
        std::vector<int32_t> zp(channels);
        for (int64_t c = 0; c < channels; ++c) {
          const AffineParams& p = (*params)[c];
          inv[c] = p.inv, lo[c] = p.lo, hi[c] = p.hi, zp[c] = p.zp;
        }
        const AffineColumns cols{inv.data(), lo.data(), hi.data(), zp.data()};
        parallel_for(outer, 256, [&](size_t b, size_t e) {
          std::vector<float> buffer;
          for (int64_t r = static_cast<int64_t>(b); r < static_cast<int64_t>(e); r += step) {
            const int64_t n = std::min<int64_t>(step, static_cast<int64_t>(e) - r);
            k.quantize_affine_columns(x.range(r * channels, n * channels, buffer), n, channels,
                                      cols, q + r * channels);
          }
        });
      } else {
        parallel_for(outer * channels, 16, [&](size_t b, size_t e) {
          std::vector<float> buffer;
          for (size_t r = b; r < e; ++r) {
            for (int64_t off = 0; off < inner; off += WeightValues::kChunk) {
              const int64_t n = std::min(WeightValues::kChunk, inner - off);
              const int64_t at = static_cast<int64_t>(r) * inner + off;
              k.quantize_affine(x.range(at, n, buffer), n, (*params)[r % channels], q + at);
            }
          }
        });
      }
      if (transpose) {  // [rows, cols] -> [cols, rows]
        const int64_t cols = static_cast<int64_t>(count) / rows;
        for (int64_t r = 0; r < rows; ++r) {
          for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = tmp[r * cols + c];
        }
      }
    };
    std::vector<int64_t> qdims = layout.dims;
    if (transpose) std::swap(qdims[0], qdims[1]);
    const int qtype = signed_ && !layout.centered_uint8 ? TensorProto::INT8 : TensorProto::UINT8;
    QuantizedWeight qw;
    qw.channels = channels;
    const std::string base = w.name().empty() ? "weight" : w.name();
    qw.q = editor_->add_initializer(*ref.graph, base + "_quantized", qtype, qdims,
                                    make_lazy_payload(count, produce));
    std::vector<float> scales(channels);
    std::vector<uint8_t> zps(channels);
    for (int64_t c = 0; c < channels; ++c) {
      scales[c] = (*params)[c].scale * scale_factor;
      zps[c] = static_cast<uint8_t>((*params)[c].zp);
    }
    const bool per_channel = layout.axis >= 0;
    // One zero point when they are all equal (ConvInteger accepts no other), except in QDQ form,
    // where DequantizeLinear's per-axis zero point must match the scale's shape.
    const bool same_zps =
        std::all_of(zps.begin(), zps.end(), [&](uint8_t z) { return z == zps[0]; });
    const bool scalar_zp = !per_channel || (same_zps && !config_.qdq);
    std::vector<int64_t> cdims =
        per_channel ? std::vector<int64_t>{channels} : std::vector<int64_t>{};
    qw.scale = editor_->add_initializer(*ref.graph, base + "_scale", TensorProto::FLOAT, cdims,
                                        floats_payload(scales));
    std::vector<uint8_t> zp_bytes = scalar_zp ? std::vector<uint8_t>{zps[0]} : zps;
    qw.zp = editor_->add_initializer(*ref.graph, base + "_zero_point", qtype,
                                     scalar_zp ? std::vector<int64_t>{} : cdims,
                                     make_owned_payload(std::move(zp_bytes)));
    qw.scales = std::move(scales);
    TensorChange change;
    change.name = w.name();
    change.dims = layout.dims;
    change.from = "f32";
    change.to = fmt::format("{}{}", qtype == TensorProto::INT8 ? "int8" : "uint8",
                            per_channel ? " per-channel" : "");
    change.bytes_before = count * 4;
    change.bytes_after = count + channels * 5;
    result_.tensors.push_back(std::move(change));
    weights_[key] = qw;
    return qw;
  }

  DynamicInt8Config config_;
  PassResult result_;
  Model* model_ = nullptr;
  int opset_ = 0;
  bool signed_ = true;
  int integer_ops_ = 0;  // MatMulInteger / DynamicQuantizeMatMul written
  bool uses_ms_ = false;
  bool per_tensor_fallback_ = false;  // the opset-13 warning was given
  const ModelIndex* index_ = nullptr;
  GraphEditor* editor_ = nullptr;
  const ModelIndex::Graph* graph_ = nullptr;  // the graph of the node being rewritten
  const onnx::NodeProto* node_ = nullptr;     // new nodes go before it
  std::map<std::pair<const onnx::GraphProto*, std::string>, Activation> activations_;
  std::map<std::string, QuantizedWeight> weights_;
  std::string done_;
};

}  // namespace

std::unique_ptr<Pass> make_dynamic_int8_pass(DynamicInt8Config config) {
  return std::make_unique<DynamicInt8Pass>(std::move(config));
}

}  // namespace quantize
