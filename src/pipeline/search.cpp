// The target search (see search.h).
#include "pipeline/search.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "graph/graph.h"
#include "quantize/error.h"
#include "quantize/log.h"
#include "verify/verify.h"

namespace quantize {
namespace {

// The cheapest fix first, then the next, for nodes of a mode.
std::vector<Precision> fixes(Mode mode) {
  switch (mode_info(mode).family) {
    case ModeFamily::kStaticInt8:
      return {Precision::kA16, Precision::kFloat};
    case ModeFamily::kWeightOnly:
      return {Precision::kQ8, mode == Mode::kQ4F16 ? Precision::kFp16 : Precision::kFloat};
    case ModeFamily::kDynamicInt8:
    case ModeFamily::kFloat16:
      break;
  }
  return {Precision::kFloat};
}

}  // namespace

const PassResult* quantizing_pass(const std::vector<PassResult>& results) {
  for (const char* name : {"matmul_nbits", "static_qdq", "dynamic_int8", "float16"}) {
    for (const auto& r : results) {
      if (r.pass == name) return &r;
    }
  }
  return nullptr;
}

bool targets_met(const std::vector<Target>& targets, const Verification& v) {
  for (const auto& t : targets) {
    const double worst = v.worst(t.metric, t.output);
    if (std::isnan(worst)) {
      fail(ExitCode::kUsage, "--target {}: {}", t.describe(),
           t.output.empty() ? "no output of the model has this metric (top1 and kl need "
                              "logit-like outputs: float, last axis >= 2)"
                            : "no output of that name has this metric");
    }
    if (t.metric == "kl" ? worst > t.value : worst < t.value) return false;
  }
  return true;
}

std::map<std::string, double> multiply_adds(const Model& model, const CalibrationData& data) {
  std::map<std::string, std::vector<int64_t>> shapes;
  Executor executor(model);
  const auto inputs = data.sample(0);
  for (size_t k = 0; k < inputs.size() && k < executor.input_names().size(); ++k) {
    shapes[executor.input_names()[k]] = inputs[k].shape();
  }
  executor.run(inputs,
               [&](const std::string& name, const Tensor& value) { shapes[name] = value.shape(); });
  onnx::ModelProto proto = model.proto;
  ModelIndex index(proto);
  auto elements = [](const std::vector<int64_t>& s) {
    double n = 1;
    for (int64_t d : s) n *= static_cast<double>(d);
    return n;
  };
  std::map<std::string, double> macs;
  for (const auto& node : proto.graph().node()) {
    const std::string& op = node.op_type();
    if ((op != "Conv" && op != "ConvTranspose" && op != "MatMul" && op != "Gemm") ||
        node.input_size() < 2 || !shapes.count(node.input(0)) || !shapes.count(node.output(0))) {
      continue;
    }
    const auto& a = shapes[node.input(0)];
    const double out = elements(shapes[node.output(0)]);
    double k = 0;
    if (op == "Conv" || op == "ConvTranspose") {
      auto w = index.constant(index.main(), node.input(1));
      if (!w || w->tensor->dims_size() < 2 || w->tensor->dims(0) == 0) continue;
      double per = 1;
      for (int i = 1; i < w->tensor->dims_size(); ++i) per *= w->tensor->dims(i);
      macs[node_key(node)] = op == "Conv" ? out * per : elements(a) * per;
      continue;
    }
    // Products of two activations (attention) are not the weights a mode quantizes.
    if (a.empty() || !index.constant(index.main(), node.input(1))) continue;
    k = op == "Gemm" && attr_int(node, "transA", 0) ? a.front() : a.back();
    macs[node_key(node)] = out * k;
  }
  return macs;
}

SearchOutcome search_precisions(const Model& source, Mode mode, const Options& options,
                                const RunData& data, const PrecisionPlan& base) {
  SearchOutcome out;
  // A candidate must meet the targets on the judged data and on the calibration share too:
  // the held-out share alone is often a single sample.
  const CalibrationData& judged = *data.evaluation;
  const Reference reference = reference_outputs(source, judged);
  std::optional<Reference> calibration_reference;
  if (data.calibration) calibration_reference = reference_outputs(source, *data.calibration);
  auto build = [&](const Precisions& precisions, std::vector<PassResult>* results) {
    Model m = copy_model(source);
    auto r = run_passes(m, mode, options, data, precisions);
    if (results) *results = std::move(r);
    return m;
  };
  auto judge = [&](const Model& m) {
    ++out.evaluations;
    if (options.search_progress) options.search_progress(out.evaluations);
    return verify(reference, m, judged);
  };
  // Each sample on its own must meet the targets (a pooled figure hides the one photo that
  // breaks): the judged data first, then the calibration share; the first miss ends it.
  auto holds = [&](const Model& m, const Verification& on_judged) {
    if (!targets_met(options.targets, on_judged)) return false;
    Executor executor(m);
    auto each = [&](const Reference& ref, const CalibrationData& samples) {
      for (size_t i = 0; i < samples.count; ++i) {
        const auto outputs = executor.run(samples.sample(i));
        Verification one;
        for (size_t k = 0; k < outputs.size(); ++k) {
          MetricsAccumulator acc(ref.names[k]);
          acc.add(ref.outputs[i][k], outputs[k]);
          one.outputs.push_back(acc.result());
        }
        if (!targets_met(options.targets, one)) return false;
      }
      return true;
    };
    return each(reference, judged) &&
           (!calibration_reference || each(*calibration_reference, *data.calibration));
  };
  const Precisions start = base.by_node();
  std::vector<PassResult> results;
  const Model quantized = build(start, &results);
  out.quantized = judge(quantized);
  out.quantized_bytes = encoded_size(quantized, false);
  out.best = out.quantized;
  out.met = holds(quantized, out.quantized);
  if (out.met) return out;

  // Candidates: the nodes the mode quantized, not already set by the plan.
  std::vector<std::string> candidates;
  if (const PassResult* r = quantizing_pass(results)) {
    for (const auto& c : r->changed) {
      if (!c.key.empty() && !start.count(c.key) &&
          std::find(candidates.begin(), candidates.end(), c.key) == candidates.end()) {
        candidates.push_back(c.key);
      }
    }
  }
  out.candidates = static_cast<int>(candidates.size());
  if (candidates.empty()) return out;

  // Harm: the noise each node adds, on the calibration share (the judged data if none).
  const CalibrationData& harm_data = data.calibration ? *data.calibration : judged;
  out.harm_data = harm_data.description;
  const DiffResult d = diff(source, quantized, harm_data);
  // Where noise enters: in a QDQ model, at each activation's DequantizeLinear (the noise of
  // quantizing that tensor: raising the node that writes it, or a node that reads it, widens it)
  // and at each quantized weight (its relative noise power, counted for its reader); elsewhere at
  // the output of each node the mode rewrote. Nodes that only pass noise on (a Sigmoid between
  // pairs) add none.
  std::map<std::string, std::string> producer_key;              // float value -> its node
  std::map<std::string, std::vector<std::string>> reader_keys;  // float value -> its readers
  for (const auto& n : source.proto.graph().node()) {
    for (const auto& o : n.output()) producer_key[o] = node_key(n);
    for (const auto& i : n.input()) reader_keys[i].push_back(node_key(n));
  }
  const std::set<std::string> candidate_set(candidates.begin(), candidates.end());
  const bool qdq = std::any_of(d.values.begin(), d.values.end(), [](const auto& v) {
    return v.op == "DequantizeLinear" && v.loss_db > 0;
  });
  std::set<std::string> weights;  // the float model's constants
  for (const auto& t : source.proto.graph().initializer()) weights.insert(t.name());
  std::map<std::string, double> harm, weight_harm;
  for (const auto& v : d.values) {
    if (qdq && v.op == "DequantizeLinear" && weights.count(v.float_name)) {
      // A quantized weight: its relative noise power, which its reader passes on.
      if (!v.metrics.is_float || !std::isfinite(v.metrics.snr_db)) continue;
      for (const auto& r : reader_keys[v.float_name]) {
        if (candidate_set.count(r)) weight_harm[r] += std::pow(10.0, -v.metrics.snr_db / 10);
      }
    } else if (qdq && v.op == "DequantizeLinear") {
      std::vector<std::string> owners = reader_keys[v.float_name];
      if (auto p = producer_key.find(v.float_name); p != producer_key.end()) {
        owners.push_back(p->second);
      }
      for (const auto& o : owners) {
        if (candidate_set.count(o)) harm[o] += v.added_noise;
      }
    } else if (!qdq) {
      if (auto p = producer_key.find(v.float_name); p != producer_key.end()) {
        harm[p->second] += v.added_noise;
      }
    }
  }
  // Local noise says where noise enters, not how much of it reaches the outputs. That is
  // measured on blocks of candidates (graph order): each block raised alone, with each fix, on
  // the sample the fully quantized model does worst on; what its outputs' relative noise power
  // drops by is the block's weight, and the fix that buys more (the cheaper one unless the other
  // gains half as much again) is the block's.
  const std::vector<Precision> levels = fixes(mode);
  const CalibrationData& probe_pool = data.calibration ? *data.calibration : judged;
  const Reference& probe_reference = data.calibration ? *calibration_reference : reference;
  auto output_noise = [&](const Model& m, size_t sample) {  // sum of 1 / SNR over the outputs
    Executor executor(m);
    const auto outputs = executor.run(probe_pool.sample(sample));
    double noise = 0;
    for (size_t k = 0; k < outputs.size(); ++k) {
      MetricsAccumulator acc(probe_reference.names[k]);
      acc.add(probe_reference.outputs[sample][k], outputs[k]);
      const OutputMetrics o = acc.result();
      if (o.is_float && o.elements)
        noise += std::isfinite(o.snr_db) ? std::pow(10.0, -o.snr_db / 10) : 0;
    }
    return noise;
  };
  size_t probe = 0;
  double base_noise = -1;
  for (size_t i = 0; i < probe_pool.count; ++i) {
    const double n = output_noise(quantized, i);
    if (n > base_noise) base_noise = n, probe = i;
  }
  const size_t blocks = std::min<size_t>(16, candidates.size());
  struct Block {
    double gain = 0;  // output noise power removed by raising the block alone
    Precision fix = Precision::kFloat;
    size_t index = 0, size = 0;
  };
  std::map<std::string, Block> block_of;  // node -> its block
  for (size_t b = 0; b < blocks; ++b) {
    const size_t first = b * candidates.size() / blocks,
                 last = (b + 1) * candidates.size() / blocks;
    double best_gain = 0;
    Precision best_fix = levels.front();
    for (size_t l = 0; l < levels.size(); ++l) {
      Precisions p = start;
      for (size_t i = first; i < last; ++i) p[candidates[i]] = levels[l];
      ++out.evaluations;
      if (options.search_progress) options.search_progress(out.evaluations);
      const double gain = base_noise - output_noise(build(p, nullptr), probe);
      if (l == 0 || gain > 1.5 * std::max(best_gain, 0.0)) {
        best_gain = gain;
        best_fix = levels[l];
      }
    }
    for (size_t i = first; i < last; ++i)
      block_of[candidates[i]] = {best_gain, best_fix, b, last - first};
  }
  // Stage 1: blocks by gain, nodes within a block by local noise, each with its block's fix;
  // stage 2, if all of stage 1 is not enough: float (the mode's last fix) on top, same order.
  struct Step {
    std::string node;
    Precision fix;
    double harm;
  };
  auto steps_for = [&](size_t stage) {
    std::vector<Step> steps;
    for (const auto& c : candidates) {
      const double local =
          (harm.count(c) ? harm.at(c) : 0) + (weight_harm.count(c) ? weight_harm.at(c) : 0);
      steps.push_back({c, stage == 0 ? block_of.at(c).fix : levels.back(), local});
    }
    std::stable_sort(steps.begin(), steps.end(), [&](const Step& a, const Step& b) {
      const double ga = block_of.at(a.node).gain, gb = block_of.at(b.node).gain;
      return ga != gb ? ga > gb : a.harm > b.harm;
    });
    return steps;
  };
  const std::vector<Step> stage1 = steps_for(0);
  auto plan_for = [&](const std::vector<Step>& steps, size_t k, bool on_stage1) {
    Precisions p = start;
    if (on_stage1) {
      for (const auto& st : stage1) p[st.node] = st.fix;
    }
    for (size_t i = 0; i < k; ++i) p[steps[i].node] = steps[i].fix;
    return p;
  };
  auto entries_for = [&](const std::vector<Step>& steps, size_t k, bool on_stage1,
                         const Verification& v) {
    const Precisions p = plan_for(steps, k, on_stage1);
    const double reached = v.worst(options.targets[0].metric, options.targets[0].output);
    std::vector<PlanEntry> entries;
    for (const auto& st : stage1) {
      auto it = p.find(st.node);
      if (it == p.end() || start.count(st.node)) continue;
      const Block& block = block_of.at(st.node);
      entries.push_back(
          {st.node, it->second,
           fmt::format("--target: block {} of {} ({} node(s)), raised alone, removes {:.0f}% of "
                       "the output noise",
                       block.index + 1, blocks, block.size,
                       base_noise > 0 ? 100 * block.gain / base_noise : 0.0),
           reached});
    }
    std::stable_sort(entries.begin(), entries.end(), [&](const auto& a, const auto& b) {
      return std::find_if(stage1.begin(), stage1.end(),
                          [&](const Step& x) { return x.node == a.node; }) <
             std::find_if(
                 stage1.begin(), stage1.end(), [&](const Step& x) { return x.node == b.node; });
    });
    // Only the raised prefix (stage 1) or everything (stage 2) is in the plan.
    if (!on_stage1) entries.resize(std::min(entries.size(), k));
    return entries;
  };
  for (size_t stage = 0; stage < (levels.size() > 1 ? 2u : 1u); ++stage) {
    const std::vector<Step> steps = stage == 0 ? stage1 : steps_for(1);
    const bool on_stage1 = stage == 1;  // stage 2 starts from all of stage 1
    const size_t n = steps.size();
    size_t lo = 0, hi = 0;  // the targets fail with lo steps, hold with hi
    Verification at_hi;
    for (size_t k = 1;; k = std::min(n, 2 * k)) {
      const Model m = build(plan_for(steps, k, on_stage1), nullptr);
      Verification v = judge(m);
      log().debug("target search: stage {}, {} of {} node(s): {} {:.5f}", stage + 1, k, n,
                  options.targets[0].metric,
                  v.worst(options.targets[0].metric, options.targets[0].output));
      if (holds(m, v)) {
        hi = k, at_hi = std::move(v);
        break;
      }
      lo = k;
      if (k == n) {
        out.best = std::move(v);
        out.raised = entries_for(steps, n, on_stage1, out.best);
        break;
      }
    }
    if (hi == 0) continue;  // not even all of this stage: the next
    while (hi - lo > 1) {
      const size_t mid = (lo + hi) / 2;
      const Model m = build(plan_for(steps, mid, on_stage1), nullptr);
      Verification v = judge(m);
      if (holds(m, v)) {
        hi = mid, at_hi = std::move(v);
      } else {
        lo = mid;
      }
    }
    out.best = std::move(at_hi);
    out.raised = entries_for(steps, hi, on_stage1, out.best);
    out.met = true;
    return out;
  }
  return out;
}

}  // namespace quantize
