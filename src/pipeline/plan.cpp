#include "pipeline/plan.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "graph/graph.h"
#include "model/payload.h"
#include "quantize/error.h"

namespace quantize {
namespace {

constexpr char kSchema[] = "quantize.plan/1";

// The weight a node reads (MatMul/Gemm/Conv's B or W, Gather's table), or "".
std::string weight_of(const onnx::NodeProto& node) {
  const std::string& op = node.op_type();
  if (op == "Gather" && node.input_size() > 0) return node.input(0);
  if ((op == "MatMul" || op == "Gemm" || op == "Conv" || op == "ConvTranspose" ||
       op == "MatMulNBits" || op == "MatMulBnb4") &&
      node.input_size() > 1) {
    return node.input(1);
  }
  return "";
}

}  // namespace

std::map<std::string, Precision> PrecisionPlan::by_node() const {
  std::map<std::string, Precision> map;
  for (const auto& e : entries) map[e.node] = e.precision;
  return map;
}

PrecisionPlan read_plan(const std::string& path) {
  require_regular_file(path);
  std::ifstream in(path);
  if (!in) fail(ExitCode::kInput, "{}: cannot read the plan", path);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    fail(ExitCode::kInput, "{}: not a JSON plan: {}", path, e.what());
  }
  if (!j.is_object() || j.value("schema", "") != kSchema || !j.contains("nodes") ||
      !j["nodes"].is_array()) {
    fail(ExitCode::kInput, "{}: not a plan (expected {{\"schema\": \"{}\", \"nodes\": [...]}})",
         path, kSchema);
  }
  PrecisionPlan plan;
  plan.mode = j.value("mode", "");
  for (const auto& n : j["nodes"]) {
    if (!n.is_object() || !n.contains("node") || !n.contains("precision") ||
        !n["node"].is_string() || !n["precision"].is_string()) {
      fail(ExitCode::kInput, "{}: a node entry needs \"node\" and \"precision\" strings", path);
    }
    PlanEntry e;
    e.node = n["node"];
    e.precision = parse_precision(n["precision"], path);
    e.why = n.value("why", "");
    if (n.contains("effect") && n["effect"].is_number()) e.effect = n["effect"].get<double>();
    plan.entries.push_back(std::move(e));
  }
  return plan;
}

void write_plan(const PrecisionPlan& plan, const std::string& path) {
  nlohmann::json nodes = nlohmann::json::array();
  for (const auto& e : plan.entries) {
    nlohmann::json n = {
        {"node", e.node}, {"precision", precision_name(e.precision)}, {"why", e.why}};
    if (e.effect) n["effect"] = *e.effect;
    nodes.push_back(n);
  }
  const nlohmann::json j = {{"schema", kSchema}, {"mode", plan.mode}, {"nodes", nodes}};
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << j.dump(1) << "\n";
    if (!out) fail(ExitCode::kOutput, "{}: cannot write the plan", path);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail(ExitCode::kOutput, "{}: cannot write the plan: {}", path, ec.message());
}

std::vector<PlanEntry> apply_rules(const Model& model, const std::vector<PrecisionRule>& rules) {
  std::vector<PlanEntry> entries;
  if (rules.empty()) return entries;
  std::function<void(const onnx::GraphProto&)> walk = [&](const onnx::GraphProto& graph) {
    for (const auto& node : graph.node()) {
      const std::string key = node_key(node), weight = weight_of(node);
      const PrecisionRule* match = nullptr;
      for (const auto& r : rules) {
        if (std::regex_search(key, r.regex) ||
            (!node.name().empty() && std::regex_search(node.name(), r.regex)) ||
            (!weight.empty() && std::regex_search(weight, r.regex))) {
          match = &r;
        }
      }
      if (match) {
        entries.push_back(
            {key, match->precision,
             fmt::format("--tensor-type {}={}", match->pattern, precision_name(match->precision)),
             std::nullopt});
      }
      for (const auto& a : node.attribute()) {
        if (a.has_g()) walk(a.g());
        for (const auto& g : a.graphs()) walk(g);
      }
    }
  };
  walk(model.proto.graph());
  return entries;
}

}  // namespace quantize
