// widen: a model's float16 or bfloat16 values made float32, before the passes of a mode that
// computes in float32 (ONNX Runtime's CPU provider has no bfloat16 arithmetic at all, and its
// integer ops take float32 activations):
//
//   Before:  x bf16 -> Mul(gamma bf16) -> MatMul(W bf16) -> y bf16
//   After:   x bf16 -> Cast(float) -> Mul(gamma f32) -> MatMul(W f32) -> Cast(bfloat16) -> y bf16
//
// Every tensor of the type (initializers, Constant and ConstantOfShape values, in bodies too)
// becomes float32 as it is read: its bytes are converted when a later pass or the writer reads
// them, one tensor at a time, so no float32 copy of the model is held. Declared types and the
// `to` / `dtype` attributes that name the type follow. The main graph's inputs and outputs keep
// their type (a Cast at each); the conversion is exact, so the float32 model computes what the
// source model computes, without its intermediate rounding.
#include <functional>
#include <optional>
#include <set>

#include "graph/graph.h"
#include "kernels/kernels.h"
#include "model/tensor_data.h"
#include "passes/passes.h"
#include "quantize/report.h"
#include "support/threads.h"

namespace quantize {

void widen_to_float32(int type, const uint8_t* in, uint64_t n, float* out) {
  if (type == onnx::TensorProto::FLOAT16) {
    kernels().f16_to_f32(reinterpret_cast<const uint16_t*>(in), n, out);
  } else {
    const auto* h = reinterpret_cast<const uint16_t*>(in);
    for (uint64_t i = 0; i < n; ++i) out[i] = bf16_to_f32_scalar(h[i]);
  }
}

void WidenedPayload::read(uint8_t* out) const {
  PayloadBytes in(narrow_);
  const uint64_t n = in.size() / 2;
  parallel_for(n, 1 << 18, [&](size_t b, size_t e) {
    widen_to_float32(type_, in.data() + 2 * b, e - b, reinterpret_cast<float*>(out) + b);
  });
}

PayloadPtr stored_payload(const Model& model, const onnx::TensorProto& tensor, int* type) {
  PayloadPtr payload = tensor_payload(model, tensor);
  *type = tensor.data_type();
  if (const auto* wide = dynamic_cast<const WidenedPayload*>(payload.get())) {
    *type = wide->type();
    return wide->narrow();
  }
  return payload;
}

namespace {

using onnx::TensorProto;

const char* type_label(int type) { return type == TensorProto::FLOAT16 ? "float16" : "bfloat16"; }

// The type `type` declares, float32 where it said `from` (sequence and optional elements too).
bool widen_type(onnx::TypeProto& type, int from) {
  if (type.has_tensor_type() && type.tensor_type().elem_type() == from) {
    type.mutable_tensor_type()->set_elem_type(TensorProto::FLOAT);
    return true;
  }
  if (type.has_sequence_type()) {
    return widen_type(*type.mutable_sequence_type()->mutable_elem_type(), from);
  }
  if (type.has_optional_type()) {
    return widen_type(*type.mutable_optional_type()->mutable_elem_type(), from);
  }
  return false;
}

// A Cast's `to`, or the `dtype` of EyeLike and the random ops, naming `from`: float32.
int widen_type_attributes(onnx::NodeProto& node, int from) {
  int changed = 0;
  for (auto& a : *node.mutable_attribute()) {
    if ((a.name() == "to" || a.name() == "dtype") && a.type() == onnx::AttributeProto::INT &&
        a.i() == from) {
      a.set_i(TensorProto::FLOAT);
      ++changed;
    }
  }
  return changed;
}

class WidenPass final : public Pass {
 public:
  explicit WidenPass(WidenConfig config) : config_(std::move(config)) {}
  const char* name() const override { return "widen"; }

  PassResult run(Model& model) override {
    PassResult result;
    result.pass = name();
    for (int from : config_.types) {
      uint64_t bytes = 0, tensors = 0, changes = 0;
      for_each_tensor(model.proto, [&](TensorProto& t, const std::string&) {
        if (t.data_type() != from) return;
        bytes += element_count(t) * 2;
        ++tensors;
        auto wide = std::make_shared<WidenedPayload>(tensor_payload(model, t), from);
        t.set_data_type(TensorProto::FLOAT);
        set_tensor_payload(model, t, std::move(wide));
      });
      std::set<const onnx::NodeProto*> io_casts;  // keep their `to`
      const std::vector<onnx::ValueInfoProto*> kept =
          keep_io_types(model, *model.proto.mutable_graph(), from, io_casts, result);
      std::function<void(onnx::GraphProto&)> walk = [&](onnx::GraphProto& g) {
        for (auto* list : {g.mutable_input(), g.mutable_output(), g.mutable_value_info()}) {
          for (auto& v : *list) changes += widen_type(*v.mutable_type(), from);
        }
        for (auto& node : *g.mutable_node()) {
          if (!io_casts.count(&node)) changes += widen_type_attributes(node, from);
          for (auto& a : *node.mutable_attribute()) {
            if (a.has_g()) walk(*a.mutable_g());
            for (auto& body : *a.mutable_graphs()) walk(body);
          }
        }
      };
      walk(*model.proto.mutable_graph());
      for (auto* v : kept) v->mutable_type()->mutable_tensor_type()->set_elem_type(from);
      for (auto& f : *model.proto.mutable_functions()) {
        for (auto& node : *f.mutable_node()) changes += widen_type_attributes(node, from);
      }
      if (tensors + changes == 0) continue;
      if (!kept.empty()) topological_sort(*model.proto.mutable_graph());
      result.notes.push_back(fmt::format(
          "{} values computed in float32 ({} tensor(s), {} as {}): {}", type_label(from), tensors,
          format_bytes(bytes), type_label(from),
          from == TensorProto::BFLOAT16 ? "ONNX Runtime's CPU provider has no bfloat16 arithmetic"
                                        : "integer ops take float32 activations"));
    }
    return result;
  }

 private:
  // Main graph inputs and outputs of type `from` keep it: a Cast to float32 after each input, a
  // Cast back before each output (added to `casts`). Returns their declarations (to be restored
  // after the walk).
  static std::vector<onnx::ValueInfoProto*> keep_io_types(Model& model, onnx::GraphProto& g,
                                                          int from,
                                                          std::set<const onnx::NodeProto*>& casts,
                                                          PassResult& result) {
    std::vector<onnx::ValueInfoProto*> kept;
    std::optional<NameSet> names;  // made on first use: most models have no such input or output
    auto unique = [&](const std::string& base) {
      if (!names) names.emplace(model.proto);
      return names->unique(base);
    };
    std::set<std::string> initializers;
    for (const auto& t : g.initializer()) initializers.insert(t.name());
    auto add_cast = [&](const std::string& in, const std::string& out, int to) {
      onnx::NodeProto& cast = *g.add_node();
      cast.set_op_type("Cast");
      cast.set_name(unique(out + "_cast"));
      cast.add_input(in);
      cast.add_output(out);
      set_attr(cast, "to", static_cast<int64_t>(to));
      casts.insert(&cast);
    };
    for (auto& v : *g.mutable_input()) {
      if (!v.type().has_tensor_type() || v.type().tensor_type().elem_type() != from ||
          initializers.count(v.name())) {
        continue;
      }
      const std::string wide = unique(v.name() + "_float");
      rename_reads(g, v.name(), wide);
      add_cast(v.name(), wide, TensorProto::FLOAT);
      result.stands_for.emplace_back(wide, v.name());
      kept.push_back(&v);
    }
    std::set<std::string> inputs;
    for (const auto& v : g.input()) inputs.insert(v.name());
    for (auto& v : *g.mutable_output()) {
      if (!v.type().has_tensor_type() || v.type().tensor_type().elem_type() != from ||
          inputs.count(v.name())) {
        continue;
      }
      const std::string wide = unique(v.name() + "_float");
      for (auto& node : *g.mutable_node()) {
        for (auto& o : *node.mutable_output()) {
          if (o == v.name()) o = wide;
        }
      }
      for (auto& t : *g.mutable_initializer()) {
        if (t.name() == v.name()) t.set_name(wide);
      }
      rename_reads(g, v.name(), wide);
      add_cast(wide, v.name(), from);
      kept.push_back(&v);
    }
    return kept;
  }

  WidenConfig config_;
};

}  // namespace

std::unique_ptr<Pass> make_widen_pass(WidenConfig config) {
  return std::make_unique<WidenPass>(std::move(config));
}

}  // namespace quantize
