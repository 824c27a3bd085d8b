// Precision plans: which nodes of a mode differ from its default precision, and why. They come
// from --tensor-type rules, a plan file (--plan, replayed exactly), and the target search, and
// are written out with --plan-out (JSON) for pipelines to replay.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "quantize/model.h"
#include "quantize/options.h"

namespace quantize {

struct PlanEntry {
  std::string node;  // node_key(): the node's name, or its first output for an unnamed node
  Precision precision = Precision::kFloat;
  std::string why;
  std::optional<double> effect;  // the target's metric once this entry was applied (search)
};

struct PrecisionPlan {
  std::string mode;  // the mode's flag, checked when a plan is replayed
  std::vector<PlanEntry> entries;

  std::map<std::string, Precision> by_node() const;  // later entries win
};

PrecisionPlan read_plan(const std::string& path);                     // Error(kInput)
void write_plan(const PrecisionPlan& plan, const std::string& path);  // Error(kOutput)

// The entries --tensor-type rules give a model: every node (main graph and bodies) whose name
// or weight name matches, the last matching rule winning.
std::vector<PlanEntry> apply_rules(const Model& model, const std::vector<PrecisionRule>& rules);

}  // namespace quantize
