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

#include <cstring>
#include <map>
#include <optional>
#include <tuple>

#include "model/tensor_data.h"
#include "passes/awq.h"
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

// Per-channel constants of an op whose output is x's per-channel scaled copy when they are:
// Mul(x, gamma), the normalizations' scale (and bias). Which inputs to divide by AWQ's s.
std::vector<int> channel_constants(const onnx::NodeProto& node) {
  const std::string& op = node.op_type();
  if (node.domain().empty() && op == "Mul") return {0, 1};  // whichever is the constant
  if (op == "LayerNormalization") return {1, 2};
  if (op == "SimplifiedLayerNormalization") return {1};
  if (node.domain() == kMsDomain && op == "SkipSimplifiedLayerNormalization") return {2};
  if (node.domain() == kMsDomain && op == "SkipLayerNormalization") return {2, 3};
  return {};
}

// An output projection whose weight is an embedding table's transpose.
struct TiedProjection {
  const onnx::NodeProto* node = nullptr;
  ConstantRef weight;
  Orientation how;
};

// Whether w [D, V] holds the transpose of table [V, D] (same type, same values).
bool is_transpose(const Model& model, const onnx::TensorProto& table, const onnx::TensorProto& w) {
  if (w.data_type() != table.data_type() || w.dims_size() != 2 || w.dims(0) != table.dims(1) ||
      w.dims(1) != table.dims(0)) {
    return false;
  }
  const int64_t v = table.dims(0), d = table.dims(1);
  int type_a = 0, type_b = 0;  // as stored: a widened tensor's float16 / bfloat16 bytes
  PayloadBytes a(stored_payload(model, table, &type_a)), b(stored_payload(model, w, &type_b));
  const size_t e = element_size(type_a);
  if (type_a != type_b || a.size() != static_cast<size_t>(v * d) * e || b.size() != a.size()) {
    return false;
  }
  for (int64_t r = 0; r < v; ++r) {
    for (int64_t c = 0; c < d; ++c) {
      if (std::memcmp(a.data() + (r * d + c) * e, b.data() + (c * v + r) * e, e) != 0) return false;
    }
  }
  return true;
}

// The Gathers of `tables` whose table an output projection (a main-graph MatMul/Gemm that
// `projection` accepts) multiplies by, transposed.
template <typename Projection>
std::map<const onnx::NodeProto*, TiedProjection> find_tied(
    const Model& model, const ModelIndex& index, const std::set<const onnx::NodeProto*>& tables,
    const Projection& projection) {
  std::map<const onnx::NodeProto*, TiedProjection> tied;
  for (const auto& node : index.main().proto->node()) {
    if (!node.domain().empty() || (node.op_type() != "MatMul" && node.op_type() != "Gemm") ||
        node.input_size() < 2 || !projection(node)) {
      continue;
    }
    const bool gemm = node.op_type() == "Gemm";
    if (gemm && (attr_int(node, "transA", 0) != 0 || attr_float(node, "alpha", 1.0f) != 1.0f)) {
      continue;
    }
    auto w = index.constant(index.main(), node.input(1));
    if (!w || w->tensor->dims_size() != 2) continue;
    Orientation how;
    how.rows_are_columns = gemm && attr_int(node, "transB", 0) != 0;
    for (const auto& g : index.graphs()) {
      for (const auto& gather : g->proto->node()) {
        if (!tables.count(&gather) || tied.count(&gather)) continue;
        const onnx::TensorProto& table = *index.constant(*g, gather.input(0))->tensor;
        if (how.rows_are_columns ? &table == w->tensor : is_transpose(model, table, *w->tensor)) {
          tied[&gather] = {&node, *w, how};
        }
      }
    }
  }
  return tied;
}

// The weights reading one input that AWQ scales together (the input is divided once).
struct AwqGroup {
  struct Member {
    onnx::NodeProto* node;
    ConstantRef weight;
    Orientation how;
    WeightPrecision precision;
  };
  const ModelIndex::Graph* graph = nullptr;
  std::string input;
  std::vector<Member> members;
  std::shared_ptr<const std::vector<float>> scales;  // s; nullptr: alpha 0, nothing scaled
  std::shared_ptr<const InputStatistics> scaled;     // of x / s
  std::string reads;                                 // what the members read: x / s
};

class MatMulNBitsPass final : public Pass {
  // One quantized form per weight, orientation, alpha, layout (a Gather's table or not) and
  // precision.
  // and AWQ group (a weight AWQ scales is quantized once per input it reads).
  using Done = std::map<
      std::tuple<const onnx::TensorProto*, bool, float, bool, int, int, bool, const AwqGroup*>,
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
    // Block-wise DequantizeLinear is opset 21 (the opset pass raises the model when it can).
    const int opset = opset_of(model.proto);
    const std::string qdq_ready =
        config_.qdq && opset < 21
            ? fmt::format("the model is opset {}; DequantizeLinear with block_size needs 21", opset)
            : "";
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
    // AWQ: the groups of weights sharing an input, by the MatMul nodes in them.
    std::vector<std::unique_ptr<AwqGroup>> groups;
    std::map<const onnx::NodeProto*, AwqGroup*> group_of;
    if (config_.awq && !inputs.empty()) {
      groups = plan_awq(model, index, editor, inputs, feeds_output, result);
      for (const auto& g : groups) {
        for (const auto& m : g->members) group_of[m.node] = g.get();
      }
    }
    auto awq_of = [&](const onnx::NodeProto& node) -> AwqGroup* {
      auto g = group_of.find(&node);
      return g != group_of.end() && g->second->scales ? g->second : nullptr;
    };
    // The packed form of a MatMul/Gemm's weight: once per weight, orientation, precision and AWQ
    // group.
    auto matmul_weight = [&](const onnx::NodeProto& node, const ConstantRef& ref,
                             const Orientation& how,
                             const WeightPrecision& precision) -> const PackedWeight& {
      AwqGroup* awq = awq_of(node);
      const auto key = std::make_tuple(ref.tensor, how.rows_are_columns, how.alpha, how.flat,
                                       precision.bits, precision.block_size, precision.symmetric,
                                       static_cast<const AwqGroup*>(awq));
      auto [it, fresh] = done.try_emplace(key);
      if (fresh) {
        TensorChange change;
        auto input = inputs.find(node.input(0));
        std::shared_ptr<const InputStatistics> stats = awq                     ? awq->scaled
                                                       : input == inputs.end() ? nullptr
                                                                               : input->second;
        Orientation stored = how;
        stored.qdq = config_.qdq;
        it->second = add_packed_weight(editor, ref, stored, precision, scale_type(*ref.tensor),
                                       how.flat ? bnb4_codebook(config_.bnb4) : *config_.quantizer,
                                       std::move(stats), change, awq ? awq->scales : nullptr);
        result.tensors.push_back(std::move(change));
      }
      return it->second;
    };
    // Tied weights: an embedding table whose transpose is an output projection's weight (or the
    // same tensor, read by a Gemm with transB) is stored once, as the projection's packed weight.
    std::map<const onnx::NodeProto*, TiedProjection> tied =
        find_tied(model, index, tables,
                  [&](const onnx::NodeProto& node) { return feeds_output(index.main(), node); });
    auto share_table = [&](const ModelIndex::Graph& graph,
                           onnx::NodeProto& node) -> std::optional<Verdict> {
      auto t = tied.find(&node);
      if (t == tied.end() || config_.policy.overrides.count(node_key(node)) ||
          attr_int(node, "axis", 0) != 0 || awq_of(*t->second.node)) {
        return std::nullopt;
      }
      const TiedProjection& head = t->second;
      auto decision = config_.policy.decide(*head.node, true);
      const auto* p = std::get_if<WeightPrecision>(&decision);
      const int64_t d = head.weight.tensor->dims(head.how.rows_are_columns ? 1 : 0);
      if (!p || d % p->block_size != 0 || bnb4(*p)) return std::nullopt;
      const PackedWeight& packed = matmul_weight(*head.node, head.weight, head.how, *p);
      if (config_.qdq) {  // the table is the projection's weight dequantized, [V, D]
        std::string table = emit_dequantize_weight(editor, *graph.proto, node, packed, *p,
                                                   head.how.rows_are_columns);
        if (!head.how.rows_are_columns) {  // [D, V]
          const std::string transposed = editor.unique(table + "_transposed");
          auto& t = editor.add_node(*graph.proto, "Transpose", table + "_transpose", {table},
                                    {transposed}, "", &node);
          set_ints(t, "perm", {1, 0});
          table = transposed;
        }
        node.set_input(0, table);
        return Verdict::done(fmt::format(
            "DequantizeLinear {} block {} + Gather, the table of the tied output projection {} "
            "(stored once)",
            qdq_type(*p), p->block_size, node_label(*head.node)));
      }
      // GatherBlockQuantized reads the projection's [V, blocks, blob] as [V, blocks * blob].
      const int64_t dims[] = {packed.n, d * p->bits / 8};
      const std::string shape = editor.add_initializer(*graph.proto, packed.packed + "_table_shape",
                                                       onnx::TensorProto::INT64, {2}, dims, 16);
      PackedWeight table = packed;
      table.packed = editor.unique(packed.packed + "_table");
      editor.add_node(*graph.proto, "Reshape", packed.packed + "_table_reshape",
                      {packed.packed, shape}, {table.packed}, "", &node);
      if (scale_type(*head.weight.tensor) == onnx::TensorProto::FLOAT16 &&
          head.weight.tensor->data_type() == onnx::TensorProto::FLOAT) {
        // q4f16: the Gather gets float32 scales like any other until the float16 pass runs.
        table.scales = editor.unique(packed.scales + "_float");
        auto& cast = editor.add_node(*graph.proto, "Cast", packed.scales + "_float_cast",
                                     {packed.scales}, {table.scales}, "", &node);
        set_attr(cast, "to", static_cast<int64_t>(onnx::TensorProto::FLOAT));
      }
      emit_gather_block_quantized(editor, *graph.proto, node, table, *p);
      return Verdict::done(
          fmt::format("GatherBlockQuantized {}-bit block {}, the table of the tied output "
                      "projection {} (stored once)",
                      p->bits, p->block_size, node_label(*head.node)));
    };
    visit_nodes(
        index, result, candidate, [&](const ModelIndex::Graph& graph, onnx::NodeProto& node) {
          auto decision = config_.policy.decide(node, feeds_output(graph, node));
          if (auto* why = std::get_if<std::string>(&decision)) return Verdict::kept(*why);
          const WeightPrecision precision = std::get<WeightPrecision>(decision);
          if (node.op_type() == "Gather") {
            if (auto shared = share_table(graph, node)) return *shared;
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
          if (!is_float_weight(b)) {
            return Verdict::kept(
                fmt::format("B is {}, not float32 or float16",
                            onnx::TensorProto::DataType_Name(
                                static_cast<onnx::TensorProto::DataType>(b.data_type()))));
          }
          if (b.dims_size() != 2 || b.dims(0) <= 0 || b.dims(1) <= 0) {
            return Verdict::kept(fmt::format("B is {}-D, not a 2-D matrix", b.dims_size()));
          }
          if (config_.qdq) {
            if (!qdq_ready.empty()) return Verdict::kept(qdq_ready);
            const PackedWeight& packed = matmul_weight(node, *ref, how, precision);
            if (AwqGroup* awq = awq_of(node)) node.set_input(0, awq_input(editor, *awq, node));
            node.set_input(1, emit_dequantize_weight(editor, *graph.proto, node, packed, precision,
                                                     how.rows_are_columns));
            if (gemm) set_float(node, "alpha", 1.0f);  // (in the scales)
            return Verdict::done(fmt::format("DequantizeLinear {} block {} + {}",
                                             qdq_type(precision), precision.block_size,
                                             node.op_type()));
          }
          if (auto rank = declared_rank(graph, node.input(0)); rank && *rank < 2) {
            return Verdict::kept("A is 1-D (MatMulNBits needs [..., K])");
          }
          // MatMulBnb4's blocks run over the flattened weight: K must be whole blocks, else the
          // weight takes MatMulNBits' 4 bits.
          const int64_t k = b.dims(how.rows_are_columns ? 1 : 0);
          how.flat = bnb4(precision) && k % precision.block_size == 0;
          const std::string instead =
              bnb4(precision) && !how.flat
                  ? fmt::format(" (K = {} is not whole blocks, as MatMulBnb4 needs)", k)
                  : "";
          std::string bias, add_after;  // Gemm's beta * C: MatMulNBits' bias [N], or an Add
          if (gemm && node.input_size() > 2 && !node.input(2).empty()) {
            const int64_t n = b.dims(how.rows_are_columns ? 0 : 1);
            const float beta = attr_float(node, "beta", 1.0f);
            auto c = index.constant(graph, node.input(2));
            if (c && is_float_weight(*c->tensor) &&
                static_cast<int64_t>(element_count(*c->tensor)) == n) {
              bias = add_bias(editor, *c, beta, n, scale_type(b));
            } else if (beta == 1.0f) {
              add_after = node.input(2);
            } else {
              return Verdict::kept("C is not a constant [N] vector and beta is not 1");
            }
          }
          if (how.flat && !bias.empty()) std::swap(bias, add_after);  // MatMulBnb4: no bias
          const PackedWeight& packed = matmul_weight(node, *ref, how, precision);
          if (AwqGroup* awq = awq_of(node)) node.set_input(0, awq_input(editor, *awq, node));
          std::string output = node.output(0);
          if (!add_after.empty()) {  // MatMulNBits writes Y0, then Y = Y0 + C
            std::string y0 = editor.unique(output + "_nobias");
            editor.add_node(*graph.proto, "Add", node.name() + "_bias_add", {y0, add_after},
                            {output}, "", &node);
            output = y0;
          }
          if (how.flat) {
            emit_matmul_bnb4(editor, *graph.proto, node, packed, precision, config_.bnb4, output);
            return Verdict::done(fmt::format(
                "MatMulBnb4 {} block {}", config_.bnb4 == 0 ? "FP4" : "NF4", precision.block_size));
          }
          emit_matmul_nbits(editor, *graph.proto, node, packed, precision, config_.accuracy_level,
                            bias, output);
          return Verdict::done(
              fmt::format("MatMulNBits {}-bit block {}{}", precision.bits, precision.block_size,
                          precision.output_projection
                              ? " (an output projection: --output-projection-bits 4 to keep 4)"
                              : instead));
        });
    if (!done.empty() && !config_.qdq) ensure_opset(model.proto, kMsDomain, 1);
    editor.apply();
    return result;
  }

 private:
  // AWQ's groups: per input of the weights to quantize (with a Gram matrix from calibration), its
  // scales searched on a sample of the weights' columns, and where the division by s goes.
  template <typename FeedsOutput>
  std::vector<std::unique_ptr<AwqGroup>> plan_awq(Model& model, const ModelIndex& index,
                                                  GraphEditor& editor,
                                                  const InputStatisticsMap& inputs,
                                                  const FeedsOutput& feeds_output,
                                                  PassResult& result) {
    std::map<std::pair<const ModelIndex::Graph*, std::string>, std::unique_ptr<AwqGroup>> by_input;
    for (const auto& g : index.graphs()) {
      for (auto& node : *g->proto->mutable_node()) {
        if (!node.domain().empty() || (node.op_type() != "MatMul" && node.op_type() != "Gemm") ||
            node.input_size() < 2) {
          continue;
        }
        auto stats = inputs.find(node.input(0));
        auto ref = index.constant(*g, node.input(1));
        if (stats == inputs.end() || !stats->second->gram || !ref) continue;
        const onnx::TensorProto& b = *ref->tensor;
        const bool gemm = node.op_type() == "Gemm";
        if (b.dims_size() != 2 || !is_float_weight(b) ||
            (gemm && (b.data_type() != onnx::TensorProto::FLOAT || attr_int(node, "transA", 0)))) {
          continue;
        }
        Orientation how;
        how.rows_are_columns = gemm && attr_int(node, "transB", 0) != 0;
        if (b.dims(how.rows_are_columns ? 1 : 0) != stats->second->gram->k ||
            b.dims(how.rows_are_columns ? 0 : 1) <= 0) {
          continue;
        }
        auto decision = config_.policy.decide(node, feeds_output(*g, node));
        if (!std::holds_alternative<WeightPrecision>(decision)) continue;
        auto& group = by_input[{g.get(), node.input(0)}];
        if (!group) {
          group = std::make_unique<AwqGroup>();
          group->graph = g.get();
          group->input = node.input(0);
        }
        group->members.push_back({&node, *ref, how, std::get<WeightPrecision>(decision)});
      }
    }
    std::vector<std::unique_ptr<AwqGroup>> groups;
    for (auto& [key, group] : by_input) groups.push_back(std::move(group));
    std::vector<AwqChoice> choices(groups.size());
    for (size_t i = 0; i < groups.size(); ++i) {  // (each search runs over the threads)
      const AwqGroup& group = *groups[i];
      std::vector<AwqColumns> columns;
      std::set<const onnx::TensorProto*> seen;
      for (const auto& m : group.members) {
        if (!seen.insert(m.weight.tensor).second) continue;
        AwqColumns c;
        c.format = m.precision.format();
        c.values = sample_columns(model, *m.weight.tensor, m.how, kAwqColumns, &c.count);
        columns.push_back(std::move(c));
      }
      choices[i] = awq_search(*inputs.at(group.input)->gram, columns, *config_.quantizer);
    }
    int scaled = 0, folded = 0;
    double before = 0, after = 0;
    for (size_t i = 0; i < groups.size(); ++i) {
      AwqGroup& group = *groups[i];
      const AwqChoice& choice = choices[i];
      before += choice.unscaled_error;
      after += choice.error;
      if (choice.alpha == 0) continue;
      ++scaled;
      const InputStatistics& x = *inputs.at(group.input);
      auto stats = std::make_shared<InputStatistics>();
      stats->mean_square = x.mean_square;
      for (size_t j = 0; j < choice.scales.size(); ++j) {
        stats->mean_square[j] /= choice.scales[j] * choice.scales[j];
      }
      if (config_.awq_gptq) {  // H of x / s: S^-1 H S^-1
        auto gram = std::make_shared<Gram>(*x.gram);
        const int64_t k = gram->k;
        for (int64_t r = 0; r < k; ++r) {
          for (int64_t c = 0; c < k; ++c) {
            gram->sum[r * k + c] /= choice.scales[r] * choice.scales[c];
          }
        }
        stats->gram = std::move(gram);
      }
      group.scaled = std::move(stats);
      group.scales = std::make_shared<const std::vector<float>>(choice.scales);
      if (fold_awq(model, index, editor, group)) ++folded;
    }
    if (!groups.empty()) {
      result.notes.push_back(fmt::format(
          "AWQ: {} of {} weight inputs scaled ({} folded into the op before, {} through a Mul); "
          "output error on the calibration data {:.3g} -> {:.3g} (sampled columns)",
          scaled, groups.size(), folded, scaled - folded, before, after));
    }
    return groups;
  }
  static constexpr int64_t kAwqColumns = 64;

  // Divides x by s inside the op computing it, when that op scales x per channel by constants
  // (an RMSNorm's Mul, a LayerNormalization's scale and bias) and nothing but the group reads x.
  bool fold_awq(Model& model, const ModelIndex& index, GraphEditor& editor, AwqGroup& group) {
    const ModelIndex::Graph& g = *group.graph;
    onnx::NodeProto* producer = index.producer(g, group.input);
    if (!producer || producer->output_size() < 1 || producer->output(0) != group.input) {
      return false;
    }
    if (std::none_of(g.proto->node().begin(), g.proto->node().end(),
                     [&](const onnx::NodeProto& n) { return &n == producer; })) {
      return false;  // computed in an enclosing graph
    }
    if (auto rank = declared_rank(g, group.input); rank && *rank < 2) return false;
    std::set<const onnx::NodeProto*> members;
    for (const auto& m : group.members) {
      if (m.node->op_type() != "MatMul") return false;  // a Gemm may yet be kept (transA, C)
      members.insert(m.node);
    }
    for (const auto& use : index.readers(g, group.input)) {
      if (!use.node || use.input != 0 || !members.count(use.node)) return false;
    }
    const int64_t k = static_cast<int64_t>(group.scales->size());
    std::vector<std::pair<int, ConstantRef>> targets;
    const bool mul = producer->op_type() == "Mul";
    for (int i : channel_constants(*producer)) {
      if (i >= producer->input_size() || producer->input(i).empty()) continue;
      auto c = index.constant(g, producer->input(i));
      if (!c && mul) continue;  // x
      if (!c) return false;     // a scale or bias computed at run time
      const auto& t = *c->tensor;
      if (!is_float_weight(t) || t.dims_size() < 1 || t.dims(t.dims_size() - 1) != k ||
          static_cast<int64_t>(element_count(t)) != k) {
        return false;
      }
      targets.emplace_back(i, *c);
    }
    // A Mul: exactly one constant operand; a normalization: its scale at least.
    if (targets.empty() || (mul && targets.size() != 1)) return false;
    for (auto& [i, c] : targets) {
      const bool f16 = c.tensor->data_type() == onnx::TensorProto::FLOAT16;
      std::vector<float> v(k);
      std::vector<uint16_t> half(f16 ? k : 0);
      {
        PayloadBytes bytes(tensor_payload(model, *c.tensor));
        if (f16) {
          std::memcpy(half.data(), bytes.data(), k * 2);
          kernels().f16_to_f32(half.data(), k, v.data());
        } else {
          std::memcpy(v.data(), bytes.data(), k * 4);
        }
      }
      for (int64_t j = 0; j < k; ++j) v[j] /= (*group.scales)[j];
      if (f16) kernels().f32_to_f16(v.data(), k, half.data());
      std::vector<int64_t> dims(c.tensor->dims().begin(), c.tensor->dims().end());
      producer->set_input(
          i, editor.add_initializer(
                 *g.proto, producer->input(i) + "_awq", c.tensor->data_type(), dims,
                 f16 ? static_cast<const void*>(half.data()) : static_cast<const void*>(v.data()),
                 k * (f16 ? 2 : 4)));
    }
    group.reads = group.input;  // x itself is now x / s
    return true;
  }

  // The name a member of an AWQ group reads: x / s (its Mul added on first use).
  std::string awq_input(GraphEditor& editor, AwqGroup& group, onnx::NodeProto& before) {
    if (!group.reads.empty()) return group.reads;
    const ModelIndex::Graph& g = *group.graph;
    const int64_t k = static_cast<int64_t>(group.scales->size());
    std::vector<float> inverse(k);
    for (int64_t j = 0; j < k; ++j) inverse[j] = 1.0f / (*group.scales)[j];
    std::string divisor;
    if (group.members.front().weight.tensor->data_type() == onnx::TensorProto::FLOAT16) {
      std::vector<uint16_t> half(k);  // a float16 model: x is float16
      kernels().f32_to_f16(inverse.data(), k, half.data());
      divisor = editor.add_initializer(*g.proto, group.input + "_awq_inverse_scale",
                                       onnx::TensorProto::FLOAT16, {k}, half.data(), k * 2);
    } else {
      divisor = editor.add_floats(*g.proto, group.input + "_awq_inverse_scale", {k}, inverse);
    }
    group.reads = editor.unique(group.input + "_awq");
    editor.add_node(*g.proto, "Mul", group.input + "_awq_mul", {group.input, divisor},
                    {group.reads}, "", &before);
    return group.reads;
  }

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
    how.table = !config_.qdq;
    how.qdq = config_.qdq;
    auto key = std::make_tuple(ref->tensor, true, 1.0f, true, precision.bits, precision.block_size,
                               precision.symmetric, static_cast<const AwqGroup*>(nullptr));
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
    if (config_.qdq) {
      node.set_input(
          0, emit_dequantize_weight(editor, *graph.proto, node, it->second, precision, true));
      return Verdict::done(fmt::format("DequantizeLinear {} block {} + Gather", qdq_type(precision),
                                       precision.block_size));
    }
    emit_gather_block_quantized(editor, *graph.proto, node, it->second, precision);
    return Verdict::done(
        fmt::format("GatherBlockQuantized {}-bit block {}", precision.bits, precision.block_size));
  }

  // The codes' type in the QDQ form.
  static const char* qdq_type(const WeightPrecision& p) {
    return p.bits == 4 ? (p.symmetric ? "INT4" : "UINT4") : (p.symmetric ? "INT8" : "UINT8");
  }

  // Whether a weight of this precision becomes MatMulBnb4's (4-bit, in a bnb4 mode).
  bool bnb4(const WeightPrecision& precision) const {
    return config_.bnb4 >= 0 && precision.bits == 4;
  }

  // The scales' type: float16 for q4f16, and for a float16 weight (its MatMul's A is float16).
  int scale_type(const onnx::TensorProto& weight) const {
    return config_.float16_scales || weight.data_type() == onnx::TensorProto::FLOAT16
               ? onnx::TensorProto::FLOAT16
               : onnx::TensorProto::FLOAT;
  }

  // beta * C (float32 or float16) as an [N] initializer of the scales' type, for MatMulNBits'
  // bias.
  std::string add_bias(GraphEditor& editor, const ConstantRef& c, float beta, int64_t n, int type) {
    std::vector<float> v(static_cast<size_t>(n));
    {
      PayloadBytes bytes(tensor_payload(editor.model(), *c.tensor));
      if (c.tensor->data_type() == onnx::TensorProto::FLOAT16) {
        widen_to_float32(onnx::TensorProto::FLOAT16, bytes.data(), v.size(), v.data());
      } else {
        std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
      }
    }
    for (float& x : v) x *= beta;
    const std::string base = c.tensor->name() + "_bias";
    if (type != onnx::TensorProto::FLOAT16) return editor.add_floats(*c.graph, base, {n}, v);
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
