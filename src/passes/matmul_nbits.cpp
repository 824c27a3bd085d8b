// MatMul (or Gemm) with a constant 2-D float32 weight -> com.microsoft.MatMulNBits (4 or 8 bits).
//
//   Before:                          After:
//     A [..., K]   B f32 [K, N]        A [..., K]  B_Q4 u8 [N, nb, blob]  B_scales [N, nb]
//          \       /                        \        |        /     (B_zero_points [N, zb])
//           MatMul                           MatMulNBits(K, N, bits, block_size)
//             |                                  |
//          Y [..., N]                         Y [..., N]
//
// nb = ceil(K / block_size); the last block is zero-padded. B may be an initializer (of this or
// an enclosing graph) or a Constant node; a weight shared by several MatMuls is quantized once.
// Gemm: B [K, N], or [N, K] with transB (already the packed layout's order); alpha is folded into
// the scales; beta * C becomes MatMulNBits' bias when C is a constant [N] vector, else an Add
// (C computed at run time, beta 1). Left alone, each with its reason: a B computed at run time,
// not 2-D or not float32; an A known to be 1-D; Gemm with transA, or with a computed C and a beta
// other than 1; nodes filtered out by --include/--exclude. Scales are float32, or float16 for q4f16
// (where A becomes float16 too). The packed bytes are computed when the writer asks for them.
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <unordered_map>

#include "graph/graph.h"
#include "kernels/kernels.h"
#include "model/tensor_data.h"
#include "passes/passes.h"
#include "quantize/error.h"
#include "support/threads.h"

namespace quantize {
namespace {

constexpr char kMsDomain[] = "com.microsoft";

// Quantizes one weight [K, N] into the MatMulNBits layout. The packed bytes are written straight
// into the writer's buffer; scales and zero points (small) are kept until their payload is read.
class NBitsJob {
 public:
  // source: float32 [K, N], or [N, K] when `rows_are_columns` (Gemm with transB). Stored scales
  // are multiplied by `scale_factor` (Gemm's alpha).
  NBitsJob(PayloadPtr source, int64_t k, int64_t n, BlockFormat fmt, bool f16_scales,
           bool rows_are_columns, float scale_factor)
      : source_(std::move(source)),
        k_(k),
        n_(n),
        fmt_(fmt),
        f16_scales_(f16_scales),
        rows_are_columns_(rows_are_columns),
        scale_factor_(scale_factor) {}

  uint64_t blocks() const { return fmt_.blocks(k_); }
  uint64_t packed_bytes() const { return n_ * blocks() * fmt_.blob_bytes(); }
  uint64_t scale_bytes() const { return n_ * blocks() * (f16_scales_ ? 2 : 4); }
  uint64_t zero_point_row() const { return (blocks() * fmt_.bits + 7) / 8; }
  uint64_t zero_point_bytes() const { return fmt_.symmetric ? 0 : n_ * zero_point_row(); }

  void read_packed(uint8_t* out) {
    std::lock_guard<std::mutex> lock(mutex_);
    compute(out);
  }
  void read_scales(uint8_t* out) { read_side(scales_, out); }
  void read_zero_points(uint8_t* out) { read_side(zero_points_, out); }

 private:
  void read_side(std::vector<uint8_t>& part, uint8_t* out) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (part.empty()) {
      std::vector<uint8_t> packed(packed_bytes());
      compute(packed.data());
    }
    std::memcpy(out, part.data(), part.size());
  }

  void compute(uint8_t* packed) {
    const uint64_t nb = blocks(), blob = fmt_.blob_bytes(), zrow = zero_point_row();
    const int64_t k = k_, n = n_;
    std::vector<float> scales(n * nb);
    std::vector<uint8_t> zps(fmt_.symmetric ? 0 : n * nb);
    zero_points_.assign(zero_point_bytes(), 0);
    PayloadBytes source(source_);
    const float* w = reinterpret_cast<const float*>(source.data());
    const Kernels& kern = kernels();
    constexpr int64_t kTile = 16;  // columns per tile: one 64-byte line of each row of B
    parallel_for((n + kTile - 1) / kTile, 4, [&](size_t t0, size_t t1) {
      std::vector<float> rows(rows_are_columns_ ? 0 : kTile * k);
      for (size_t t = t0; t < t1; ++t) {
        const int64_t c0 = static_cast<int64_t>(t) * kTile, cols = std::min(kTile, n - c0);
        if (!rows_are_columns_) {  // gather the tile's columns of [K, N] into rows
          for (int64_t r = 0; r < k; ++r) {
            const float* src = w + r * n + c0;
            for (int64_t j = 0; j < cols; ++j) rows[j * k + r] = src[j];
          }
        }
        for (int64_t j = 0; j < cols; ++j) {
          const int64_t col = c0 + j;
          const float* column = rows_are_columns_ ? w + col * k : rows.data() + j * k;
          kern.quantize_blocks(column, k, fmt_, packed + col * nb * blob, scales.data() + col * nb,
                               fmt_.symmetric ? nullptr : zps.data() + col * nb);
        }
      }
    });
    if (scale_factor_ != 1.0f) {
      for (float& v : scales) v *= scale_factor_;
    }
    if (f16_scales_) {
      scales_.resize(scales.size() * 2);
      kern.f32_to_f16(scales.data(), scales.size(), reinterpret_cast<uint16_t*>(scales_.data()));
    } else {
      scales_.resize(scales.size() * 4);
      std::memcpy(scales_.data(), scales.data(), scales_.size());
    }
    if (!fmt_.symmetric) {  // pack per row like B: low bits first, rows padded to whole bytes
      for (int64_t col = 0; col < n; ++col) {
        for (uint64_t b = 0; b < nb; ++b) {
          uint8_t z = zps[col * nb + b];
          uint8_t& dst = zero_points_[col * zrow + b * fmt_.bits / 8];
          dst |= fmt_.bits == 8 ? z : static_cast<uint8_t>(z << (4 * (b & 1)));
        }
      }
    }
  }

  PayloadPtr source_;
  int64_t k_, n_;
  BlockFormat fmt_;
  bool f16_scales_;
  bool rows_are_columns_;
  float scale_factor_;
  std::mutex mutex_;
  std::vector<uint8_t> scales_, zero_points_;
};

// How a weight feeds its node: MatMul's B [K, N], or Gemm's B ([N, K] with transB) and alpha.
struct Orientation {
  bool rows_are_columns = false;
  float alpha = 1.0f;
};

int64_t int_attribute(const onnx::NodeProto& node, const char* name, int64_t fallback) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return a.i();
  }
  return fallback;
}

float float_attribute(const onnx::NodeProto& node, const char* name, float fallback) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return a.f();
  }
  return fallback;
}

struct Quantized {
  std::string packed, scales, zero_points;
  int64_t k = 0, n = 0;
};

class MatMulNBitsPass final : public Pass {
 public:
  explicit MatMulNBitsPass(NBitsConfig config) : config_(std::move(config)) {}
  const char* name() const override { return "matmul_nbits"; }

  PassResult run(Model& model) override {
    PassResult result;
    result.pass = name();
    NameSet names(model.proto);
    std::map<std::tuple<const onnx::TensorProto*, bool, float>, Quantized> done;
    std::vector<onnx::NodeProto> adds;
    std::vector<std::pair<onnx::GraphProto*, int>> dead_constants;
    for_each_graph(model.proto, [&](onnx::GraphProto& graph, const Scope& scope) {
      auto ranks = known_ranks(graph);
      for (auto& node : *graph.mutable_node()) {
        const bool gemm = node.op_type() == "Gemm";
        if ((node.op_type() != "MatMul" && !gemm) || !node.domain().empty()) continue;
        std::string label = node_label(node);
        auto skip = [&](std::string reason) { result.skipped.push_back({label, reason}); };
        if (std::string why = config_.filter.why_not(node.name()); !why.empty()) {
          skip(why);
          continue;
        }
        if (node.input_size() < 2) continue;
        Orientation how;
        if (gemm) {
          if (int_attribute(node, "transA", 0) != 0) {
            skip("Gemm with transA");
            continue;
          }
          how.rows_are_columns = int_attribute(node, "transB", 0) != 0;
          how.alpha = float_attribute(node, "alpha", 1.0f);
        }
        auto ref = find_constant(scope, node.input(1));
        if (!ref) {
          skip(producer_reason(scope, node.input(1)));
          continue;
        }
        const onnx::TensorProto& b = *ref->tensor;
        if (b.data_type() != onnx::TensorProto::FLOAT) {
          skip(fmt::format("B is {}, not float32",
                           onnx::TensorProto::DataType_Name(
                               static_cast<onnx::TensorProto::DataType>(b.data_type()))));
          continue;
        }
        if (b.dims_size() != 2 || b.dims(0) <= 0 || b.dims(1) <= 0) {
          skip(fmt::format("B is {}-D, not a 2-D matrix", b.dims_size()));
          continue;
        }
        if (auto it = ranks.find(node.input(0)); it != ranks.end() && it->second < 2) {
          skip("A is 1-D (MatMulNBits needs [..., K])");
          continue;
        }
        std::string bias, add_after;  // Gemm's beta * C: MatMulNBits' bias [N], or an Add
        if (gemm && node.input_size() > 2 && !node.input(2).empty()) {
          const int64_t n = b.dims(how.rows_are_columns ? 0 : 1);
          const float beta = float_attribute(node, "beta", 1.0f);
          auto c = find_constant(scope, node.input(2));
          if (c && c->tensor->data_type() == onnx::TensorProto::FLOAT &&
              static_cast<int64_t>(element_count(*c->tensor)) == n) {
            bias = add_bias(model, *c, beta, n, names);
          } else if (beta == 1.0f) {
            add_after = node.input(2);
          } else {
            skip("C is not a constant [N] vector and beta is not 1");
            continue;
          }
        }
        const auto key = std::make_tuple(ref->tensor, how.rows_are_columns, how.alpha);
        auto [it, fresh] = done.try_emplace(key);
        if (fresh) {
          it->second = quantize_weight(model, *ref, how, names, result);
          if (ref->node_index >= 0) dead_constants.emplace_back(ref->graph, ref->node_index);
        }
        if (!add_after.empty()) {  // MatMulNBits writes Y0, then Y = Y0 + C
          onnx::NodeProto add;
          add.set_op_type("Add");
          add.set_name(names.unique(node.name() + "_bias_add"));
          add.add_input(names.unique(node.output(0) + "_nobias"));
          add.add_input(add_after);
          add.add_output(node.output(0));
          node.set_output(0, add.input(0));
          adds.push_back(std::move(add));
        }
        rewrite_node(node, it->second, bias, names);
        result.changed.push_back(
            {label, fmt::format("MatMulNBits {}-bit block {}", config_.bits, config_.block_size)});
      }
      if (!adds.empty()) {  // appended after the loop over the graph's nodes
        for (auto& add : adds) *graph.add_node() = std::move(add);
        adds.clear();
        topological_sort(graph);
      }
    });
    if (!done.empty()) {
      ensure_opset(model.proto, kMsDomain, 1);
      remove_dead_constants(model.proto, dead_constants);
      remove_unused_initializers(model.proto);
    }
    return result;
  }

 private:
  // Why a B that is not a constant is not one: a graph input, or which op computes it.
  static std::string producer_reason(const Scope& scope, const std::string& name) {
    for (const Scope* s = &scope; s != nullptr; s = s->parent) {
      for (const auto& n : s->graph->node()) {
        for (const auto& o : n.output()) {
          if (o == name) return fmt::format("B is computed at run time (by {})", n.op_type());
        }
      }
      for (const auto& v : s->graph->input()) {
        if (v.name() == name) return "B is a graph input, not a constant";
      }
    }
    return "B is not a constant";
  }

  static std::unordered_map<std::string, int> known_ranks(const onnx::GraphProto& graph) {
    std::unordered_map<std::string, int> ranks;
    auto add = [&](const onnx::ValueInfoProto& v) {
      if (v.type().has_tensor_type() && v.type().tensor_type().has_shape()) {
        ranks[v.name()] = v.type().tensor_type().shape().dim_size();
      }
    };
    for (const auto& v : graph.input()) add(v);
    for (const auto& v : graph.value_info()) add(v);
    return ranks;
  }

  // beta * C as a float [N] initializer (of A's type: float16 in q4f16) for MatMulNBits' bias.
  std::string add_bias(Model& model, const ConstantRef& c, float beta, int64_t n, NameSet& names) {
    std::vector<float> v = tensor_floats(model, *c.tensor);
    for (float& x : v) x *= beta;
    onnx::TensorProto* t = c.graph->add_initializer();
    t->set_name(names.unique(c.tensor->name() + "_bias"));
    t->add_dims(n);
    std::vector<uint8_t> bytes;
    if (config_.float16_scales) {
      t->set_data_type(onnx::TensorProto::FLOAT16);
      bytes.resize(v.size() * 2);
      kernels().f32_to_f16(v.data(), v.size(), reinterpret_cast<uint16_t*>(bytes.data()));
    } else {
      t->set_data_type(onnx::TensorProto::FLOAT);
      bytes.resize(v.size() * 4);
      std::memcpy(bytes.data(), v.data(), bytes.size());
    }
    set_tensor_payload(model, *t, make_owned_payload(std::move(bytes)));
    return t->name();
  }

  Quantized quantize_weight(Model& model, const ConstantRef& ref, const Orientation& how,
                            NameSet& names, PassResult& result) {
    const onnx::TensorProto& b = *ref.tensor;
    Quantized q;
    q.k = b.dims(how.rows_are_columns ? 1 : 0);
    q.n = b.dims(how.rows_are_columns ? 0 : 1);
    BlockFormat fmt{config_.bits, config_.block_size, config_.symmetric};
    auto job = std::make_shared<NBitsJob>(tensor_payload(model, b), q.k, q.n, fmt,
                                          config_.float16_scales, how.rows_are_columns, how.alpha);
    std::string base = b.name().empty() ? "weight" : b.name();
    const char* tag = config_.bits == 4 ? "_Q4" : "_Q8";
    auto add = [&](const std::string& name, int type, std::vector<int64_t> dims, uint64_t size,
                   void (NBitsJob::*read)(uint8_t*)) {
      onnx::TensorProto* t = ref.graph->add_initializer();
      t->set_name(name);
      t->set_data_type(type);
      for (int64_t d : dims) t->add_dims(d);
      set_tensor_payload(
          model, *t, make_lazy_payload(size, [job, read](uint8_t* out) { ((*job).*read)(out); }));
    };
    const int64_t nb = static_cast<int64_t>(job->blocks());
    q.packed = names.unique(base + tag);
    add(q.packed, onnx::TensorProto::UINT8, {q.n, nb, static_cast<int64_t>(fmt.blob_bytes())},
        job->packed_bytes(), &NBitsJob::read_packed);
    q.scales = names.unique(base + "_scales");
    add(q.scales, config_.float16_scales ? onnx::TensorProto::FLOAT16 : onnx::TensorProto::FLOAT,
        {q.n, nb}, job->scale_bytes(), &NBitsJob::read_scales);
    if (!config_.symmetric) {
      q.zero_points = names.unique(base + "_zero_points");
      add(q.zero_points, onnx::TensorProto::UINT8,
          {q.n, static_cast<int64_t>(job->zero_point_row())}, job->zero_point_bytes(),
          &NBitsJob::read_zero_points);
    }
    TensorChange change;
    change.name = b.name();
    change.dims = {q.k, q.n};
    change.from = "f32";
    change.to = fmt::format("q{} b{}{}", config_.bits, config_.block_size,
                            config_.symmetric ? "" : " asym");
    change.bytes_before = static_cast<uint64_t>(q.k * q.n) * 4;
    change.bytes_after = job->packed_bytes() + job->scale_bytes() + job->zero_point_bytes();
    result.tensors.push_back(std::move(change));
    return q;
  }

  void rewrite_node(onnx::NodeProto& node, const Quantized& q, const std::string& bias,
                    NameSet& names) const {
    onnx::NodeProto out;
    out.set_name(names.unique(node.name().empty()
                                  ? "MatMul_Q" + std::to_string(config_.bits)
                                  : node.name() + "_Q" + std::to_string(config_.bits)));
    out.set_op_type("MatMulNBits");
    out.set_domain(kMsDomain);
    out.add_input(node.input(0));
    out.add_input(q.packed);
    out.add_input(q.scales);
    if (!q.zero_points.empty() || !bias.empty()) out.add_input(q.zero_points);
    if (!bias.empty()) {
      out.add_input("");  // g_idx
      out.add_input(bias);
    }
    out.add_output(node.output(0));
    auto attr = [&](const char* name, int64_t value) {
      auto* a = out.add_attribute();
      a->set_name(name);
      a->set_type(onnx::AttributeProto::INT);
      a->set_i(value);
    };
    attr("K", q.k);
    attr("N", q.n);
    attr("bits", config_.bits);
    attr("block_size", config_.block_size);
    if (config_.accuracy_level) attr("accuracy_level", config_.accuracy_level);
    node = std::move(out);
  }

  // Constant nodes whose weight was quantized and that nothing reads any more.
  static void remove_dead_constants(onnx::ModelProto& model,
                                    std::vector<std::pair<onnx::GraphProto*, int>>& dead) {
    auto uses = count_uses(model);
    std::sort(dead.begin(), dead.end(), [](const auto& a, const auto& b) {
      return a.first != b.first ? a.first < b.first : a.second > b.second;
    });
    for (const auto& [graph, index] : dead) {
      if (uses[graph->node(index).output(0)] == 0) graph->mutable_node()->DeleteSubrange(index, 1);
    }
  }

  NBitsConfig config_;
};

}  // namespace

std::unique_ptr<Pass> make_matmul_nbits_pass(NBitsConfig config) {
  return std::make_unique<MatMulNBitsPass>(std::move(config));
}

}  // namespace quantize
