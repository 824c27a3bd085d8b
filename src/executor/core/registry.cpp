// The op registry: OpContext's accessors, and the table of every op family's implementations.
#include <string>
#include <vector>

#include "executor/core/ops.h"
#include "graph/graph.h"

namespace quantize::exec {

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
    register_arithmetic(r);
    register_logic(r);
    register_unary(r);
    register_activation(r);
    register_cast(r);
    register_shape(r);
    register_rearrange(r);
    register_gather_scatter(r);
    register_constant(r);
    register_index(r);
    register_matmul(r);
    register_softmax(r);
    register_reduce(r);
    register_loss(r);
    register_conv(r);
    register_pool(r);
    register_normalization(r);
    register_resample(r);
    register_quantize(r);
    register_rnn(r);
    register_control(r);
    register_signal(r);
    register_sequence(r);
    register_contrib_quantization(r);
    register_contrib_transformer(r);
    return r;
  }();
  return r;
}

std::string op_key(const onnx::NodeProto& node) {
  return node.domain().empty() || node.domain() == "ai.onnx" ? node.op_type()
                                                             : node.domain() + "." + node.op_type();
}

void run_op(OpFn op, OpContext& ctx) {
  try {
    op(ctx);
  } catch (const std::bad_alloc&) {
    ctx.fail("needs more memory than this machine has");
  } catch (const std::length_error&) {
    ctx.fail("needs more memory than this machine has");
  }
}

OpFn find_op(const onnx::NodeProto& node) {
  const auto it = registry().find(op_key(node));
  return it == registry().end() ? nullptr : it->second;
}

}  // namespace quantize::exec
