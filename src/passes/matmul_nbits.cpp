// MatMul (or Gemm) with a constant 2-D float32 weight -> com.microsoft.MatMulNBits (4 or 8 bits),
// and Gather from a constant 2-D float32 table -> com.microsoft.GatherBlockQuantized (below).
//
//   Before:                          After:
//     A [..., K]   B f32 [K, N]        A [..., K]  B_Q4 u8 [N, nb, blob]  B_scales [N, nb]
//          \       /                        \        |        /     (B_zero_points [N, zb])
//           MatMul                           MatMulNBits(K, N, bits, block_size)
//             |                                  |
//          Y [..., N]                         Y [..., N]
//
// nb = ceil(K / block_size); the last block is zero-padded. Nodes in If/Loop/Scan bodies count;
// B may be an initializer (of this or an enclosing graph) or a Constant node; a weight shared by
// several MatMuls is quantized once. Gemm: B [K, N], or [N, K] with transB (already the packed
// layout's order); alpha is folded into the scales; beta * C becomes MatMulNBits' bias when C is
// a constant [N] vector, else an Add (C computed at run time, beta 1). Left alone, each with its
// reason: a B computed at run time (weights behind Reshape, Cast, ... are folded into constants
// by the preparation pass first), not 2-D or not float32; an A known to be 1-D; Gemm with
// transA, or with a computed C and a beta other than 1; nodes the policy keeps float (--include /
// --exclude). Scales are float32, or float16 for q4f16 (whose float16 pass then makes A float16
// too). A MatMul/Gemm whose result is a main-graph output (an LLM's lm_head) gets 8 bits when the
// policy says so. Gather(table [V, D], ids) on axis 0 with D a multiple of the block: each row
// quantized along D like a MatMulNBits column, stored [V, D * bits / 8] with scales [V, D / block]
// (float32: q4f16's float16 pass converts them with the rest). Policy, quantizer and emitters:
// weight_quant.h.
#include <fmt/format.h>

#include <map>
#include <tuple>

#include "model/tensor_data.h"
#include "passes/passes.h"
#include "passes/weight_quant.h"

namespace quantize {
namespace {

// A weight the pass quantizes: float32, or float16 (read as such, no float32 copy of the model).
bool is_float_weight(const onnx::TensorProto& t) {
  return t.data_type() == onnx::TensorProto::FLOAT || t.data_type() == onnx::TensorProto::FLOAT16;
}

constexpr char kMsDomain[] = "com.microsoft";

// The rank of `name` if a graph on the scope chain declares its shape.
std::optional<int> declared_rank(const ModelIndex::Graph& graph, const std::string& name) {
  for (const ModelIndex::Graph* g = &graph; g; g = g->parent) {
    for (const auto* list : {&g->proto->input(), &g->proto->value_info(), &g->proto->output()}) {
      for (const auto& v : *list) {
        if (v.name() == name && v.type().has_tensor_type() && v.type().tensor_type().has_shape()) {
          return v.type().tensor_type().shape().dim_size();
        }
      }
    }
  }
  return std::nullopt;
}

class MatMulNBitsPass final : public Pass {
  // One quantized form per weight, orientation, alpha, layout (a Gather's table or not) and
  // precision.
  using Done = std::map<std::tuple<const onnx::TensorProto*, bool, float, bool, int, int, bool>,
                        PackedWeight>;

 public:
  explicit MatMulNBitsPass(NBitsConfig config) : config_(std::move(config)) {}
  const char* name() const override { return "matmul_nbits"; }

  PassResult run(Model& model) override {
    PassResult result;
    result.pass = name();
    ModelIndex index(model.proto);
    GraphEditor editor(model);
    Done done;
    auto matmul = [](const onnx::NodeProto& node) {
      return node.domain().empty() && (node.op_type() == "MatMul" || node.op_type() == "Gemm") &&
             node.input_size() >= 2;
    };
    // Gathers from a constant 2-D float32 table (embeddings); other Gathers are no candidates.
    std::set<const onnx::NodeProto*> tables;
    for (const auto& g : index.graphs()) {
      for (const auto& node : g->proto->node()) {
        if (!node.domain().empty() || node.op_type() != "Gather" || node.input_size() < 2) continue;
        auto ref = index.constant(*g, node.input(0));
        if (ref && is_float_weight(*ref->tensor) && ref->tensor->dims_size() == 2) {
          tables.insert(&node);
        }
      }
    }
    auto candidate = [&](const onnx::NodeProto& node) {
      return matmul(node) || tables.count(&node) > 0;
    };
    std::set<std::string> outputs;  // the main graph's, and what a Cast turns into one
    for (const auto& o : model.proto.graph().output()) outputs.insert(o.name());
    for (const auto& n : model.proto.graph().node()) {  // float16 models cast to float32 I/O
      if (n.op_type() == "Cast" && n.input_size() == 1 && n.output_size() == 1 &&
          outputs.count(n.output(0))) {
        outputs.insert(n.input(0));
      }
    }
    auto feeds_output = [&](const ModelIndex::Graph& g, const onnx::NodeProto& node) {
      return matmul(node) && g.parent == nullptr && node.output_size() > 0 &&
             outputs.count(node.output(0)) > 0;
    };
    InputStatisticsMap inputs;  // data-aware algorithms: by A's name
    if (config_.statistics) {
      std::set<std::string> names;
      for (const auto& g : index.graphs()) {
        for (const auto& node : g->proto->node()) {
          if (matmul(node) && index.constant(*g, node.input(1)) &&
              std::holds_alternative<WeightPrecision>(
                  config_.policy.decide(node, feeds_output(*g, node)))) {
            names.insert(node.input(0));
          }
        }
      }
      if (!names.empty()) inputs = config_.statistics(model, names);
    }
    visit_nodes(
        index, result, candidate, [&](const ModelIndex::Graph& graph, onnx::NodeProto& node) {
          auto decision = config_.policy.decide(node, feeds_output(graph, node));
          if (auto* why = std::get_if<std::string>(&decision)) return Verdict::kept(*why);
          const WeightPrecision precision = std::get<WeightPrecision>(decision);
          if (node.op_type() == "Gather") {
            return gather(index, editor, graph, node, precision, done, result);
          }
          const bool gemm = node.op_type() == "Gemm";
          Orientation how;
          if (gemm) {
            if (attr_int(node, "transA", 0) != 0) return Verdict::kept("Gemm with transA");
            how.rows_are_columns = attr_int(node, "transB", 0) != 0;
            how.alpha = attr_float(node, "alpha", 1.0f);
          }
          auto ref = index.constant(graph, node.input(1));
          if (!ref) return Verdict::kept("B is " + index.why_not_constant(graph, node.input(1)));
          const onnx::TensorProto& b = *ref->tensor;
          if (!is_float_weight(b) || (gemm && b.data_type() == onnx::TensorProto::FLOAT16)) {
            return Verdict::kept(
                fmt::format("B is {}, not float32{}",
                            onnx::TensorProto::DataType_Name(
                                static_cast<onnx::TensorProto::DataType>(b.data_type())),
                            gemm ? "" : " or float16"));
          }
          if (b.dims_size() != 2 || b.dims(0) <= 0 || b.dims(1) <= 0) {
            return Verdict::kept(fmt::format("B is {}-D, not a 2-D matrix", b.dims_size()));
          }
          if (auto rank = declared_rank(graph, node.input(0)); rank && *rank < 2) {
            return Verdict::kept("A is 1-D (MatMulNBits needs [..., K])");
          }
          std::string bias, add_after;  // Gemm's beta * C: MatMulNBits' bias [N], or an Add
          if (gemm && node.input_size() > 2 && !node.input(2).empty()) {
            const int64_t n = b.dims(how.rows_are_columns ? 0 : 1);
            const float beta = attr_float(node, "beta", 1.0f);
            auto c = index.constant(graph, node.input(2));
            if (c && c->tensor->data_type() == onnx::TensorProto::FLOAT &&
                static_cast<int64_t>(element_count(*c->tensor)) == n) {
              bias = add_bias(editor, *c, beta, n);
            } else if (beta == 1.0f) {
              add_after = node.input(2);
            } else {
              return Verdict::kept("C is not a constant [N] vector and beta is not 1");
            }
          }
          const auto key =
              std::make_tuple(ref->tensor, how.rows_are_columns, how.alpha, false, precision.bits,
                              precision.block_size, precision.symmetric);
          auto [it, fresh] = done.try_emplace(key);
          if (fresh) {
            TensorChange change;
            auto input = inputs.find(node.input(0));
            it->second =
                add_packed_weight(editor, *ref, how, precision, scale_type(b), *config_.quantizer,
                                  input == inputs.end() ? nullptr : input->second, change);
            result.tensors.push_back(std::move(change));
          }
          std::string output = node.output(0);
          if (!add_after.empty()) {  // MatMulNBits writes Y0, then Y = Y0 + C
            std::string y0 = editor.unique(output + "_nobias");
            editor.add_node(*graph.proto, "Add", node.name() + "_bias_add", {y0, add_after},
                            {output}, "", &node);
            output = y0;
          }
          emit_matmul_nbits(editor, *graph.proto, node, it->second, precision,
                            config_.accuracy_level, bias, output);
          return Verdict::done(
              fmt::format("MatMulNBits {}-bit block {}{}", precision.bits, precision.block_size,
                          precision.output_projection
                              ? " (an output projection: --output-projection-bits 4 to keep 4)"
                              : ""));
        });
    if (!done.empty()) ensure_opset(model.proto, kMsDomain, 1);
    editor.apply();
    return result;
  }

 private:
  // Gather(table [V, D], ids) on axis 0 -> GatherBlockQuantized: each row quantized along D in
  // blocks like a MatMulNBits column, stored [V, D * bits / 8].
  Verdict gather(const ModelIndex& index, GraphEditor& editor, const ModelIndex::Graph& graph,
                 onnx::NodeProto& node, const WeightPrecision& precision, Done& done,
                 PassResult& result) {
    if (const int64_t axis = attr_int(node, "axis", 0); axis != 0) {
      return Verdict::kept(fmt::format("Gather along axis {} (GatherBlockQuantized: rows)", axis));
    }
    auto ref = index.constant(graph, node.input(0));
    const onnx::TensorProto& table = *ref->tensor;
    const int64_t d = table.dims(1);
    if (table.dims(0) <= 0 || d <= 0 || d % precision.block_size != 0) {
      return Verdict::kept(
          fmt::format("rows of {} values are not whole blocks of {}", d, precision.block_size));
    }
    Orientation how;
    how.rows_are_columns = true;
    how.table = true;
    auto key = std::make_tuple(ref->tensor, true, 1.0f, true, precision.bits, precision.block_size,
                               precision.symmetric);
    auto [it, fresh] = done.try_emplace(key);
    if (fresh) {
      TensorChange change;
      // Float32 scales whatever the mode (float16 for a float16 table): q4f16's float16 pass then
      // makes the output float16 where its readers take float16 (with MatMulNBits, A's type says so
      // instead).
      it->second = add_packed_weight(editor, *ref, how, precision,
                                     table.data_type() == onnx::TensorProto::FLOAT16
                                         ? onnx::TensorProto::FLOAT16
                                         : onnx::TensorProto::FLOAT,
                                     *config_.quantizer, nullptr, change);
      result.tensors.push_back(std::move(change));
    }
    emit_gather_block_quantized(editor, *graph.proto, node, it->second, precision);
    return Verdict::done(
        fmt::format("GatherBlockQuantized {}-bit block {}", precision.bits, precision.block_size));
  }

  // The scales' type: float16 for q4f16, and for a float16 weight (its MatMul's A is float16).
  int scale_type(const onnx::TensorProto& weight) const {
    return config_.float16_scales || weight.data_type() == onnx::TensorProto::FLOAT16
               ? onnx::TensorProto::FLOAT16
               : onnx::TensorProto::FLOAT;
  }

  // beta * C as an [N] initializer of the scales' type, for MatMulNBits' bias.
  std::string add_bias(GraphEditor& editor, const ConstantRef& c, float beta, int64_t n) {
    std::vector<float> v = tensor_floats(editor.model(), *c.tensor);
    for (float& x : v) x *= beta;
    const std::string base = c.tensor->name() + "_bias";
    if (!config_.float16_scales) return editor.add_floats(*c.graph, base, {n}, v);
    std::vector<uint16_t> half(v.size());
    kernels().f32_to_f16(v.data(), v.size(), half.data());
    return editor.add_initializer(*c.graph, base, onnx::TensorProto::FLOAT16, {n}, half.data(),
                                  half.size() * 2);
  }

  NBitsConfig config_;
};

}  // namespace

std::unique_ptr<Pass> make_matmul_nbits_pass(NBitsConfig config) {
  return std::make_unique<MatMulNBitsPass>(std::move(config));
}

}  // namespace quantize
