// The --target check, last in a pipeline: what the runtime profile set, and whether the output
// holds ops its runtime does not run. A runtime of standard ONNX takes the default domain
// ("" or "ai.onnx") and ai.onnx.ml; anything else left in the output (an op of the input model
// the mode does not touch, say) is reported by op, with how many nodes, in every graph.
#include <fmt/ranges.h>

#include <map>

#include "graph/graph.h"
#include "passes/passes.h"

namespace quantize {
namespace {

// Nodes outside the standard domains, by "domain.Op", in every graph.
std::map<std::string, int> foreign_ops(onnx::ModelProto& model, bool ms_qdq) {
  std::map<std::string, int> foreign;
  ModelIndex index(model);
  for (const auto& g : index.graphs()) {
    for (const auto& node : g->proto->node()) {
      const std::string& domain = node.domain();
      const bool standard = is_default_domain(node) || domain == "ai.onnx.ml";
      const bool qdq = domain == "com.microsoft" &&
                       (node.op_type() == "QuantizeLinear" || node.op_type() == "DequantizeLinear");
      if (!standard && !(ms_qdq && qdq)) ++foreign[domain + "." + node.op_type()];
    }
  }
  return foreign;
}

class RuntimeCheckPass final : public Pass {
 public:
  explicit RuntimeCheckPass(RuntimeCheckConfig config) : config_(std::move(config)) {}
  const char* name() const override { return "target"; }

  PassResult run(Model& model) override {
    PassResult result;
    result.pass = name();
    result.notes.push_back(
        config_.defaults.empty()
            ? fmt::format("{}: nothing to set (the flags, or the tool's defaults, match it)",
                          config_.target)
            : fmt::format("{} set {}", config_.target, fmt::join(config_.defaults, ", ")));
    if (!config_.standard_ops) return result;
    for (const auto& [op, count] : foreign_ops(model.proto, config_.ms_qdq)) {
      result.warnings.push_back(
          fmt::format("{} runs standard ONNX ops only, and the output holds {} {} node(s)",
                      config_.target, count, op));
    }
    return result;
  }

 private:
  RuntimeCheckConfig config_;
};

}  // namespace

std::unique_ptr<Pass> make_runtime_check_pass(RuntimeCheckConfig config) {
  return std::make_unique<RuntimeCheckPass>(std::move(config));
}

}  // namespace quantize
