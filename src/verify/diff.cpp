// quantize diff (see quantize/run.h): every value of the quantized model compared with the float
// model's value it stands for, sample by sample, as both run in the executor.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "graph/graph.h"
#include "passes/passes.h"
#include "quantize/error.h"
#include "quantize/pipeline.h"
#include "quantize/run.h"
#include "verify/verify.h"

namespace quantize {
namespace {

constexpr double kCapDb = 120;  // an exact value (infinite SNR) counts as this

// The quantized model's tensor map (new value -> the float value it stands for).
std::map<std::string, std::string> tensor_map(const Model& model) {
  std::map<std::string, std::string> map;
  for (const auto& entry : model.proto.metadata_props()) {
    if (entry.key() != kTensorMapKey) continue;
    std::istringstream lines(entry.value());
    std::string line;
    while (std::getline(lines, line)) {
      const auto tab = line.find('\t');
      if (tab != std::string::npos) map[line.substr(0, tab)] = line.substr(tab + 1);
    }
  }
  return map;
}

double capped(double snr) { return std::isfinite(snr) ? std::min(snr, kCapDb) : kCapDb; }

}  // namespace

DiffResult diff_models(const DiffRequest& request) {
  Model float_model = load_model(request.float_model);
  Model quant_model = load_model(request.quant_model);
  return diff(float_model, quant_model,
              open_calibration_data(request.data, float_model, request.samples));
}

DiffResult diff(const Model& float_model, const Model& quant_model, const CalibrationData& data) {
  const auto map = tensor_map(quant_model);

  // What the float model has: node outputs (observed while it runs) and initializers.
  std::set<std::string> float_values;
  std::map<std::string, const onnx::TensorProto*> float_constants;
  for (const auto& t : float_model.proto.graph().initializer()) float_constants[t.name()] = &t;
  for (const auto& n : float_model.proto.graph().node()) {
    for (const auto& o : n.output()) float_values.insert(o);
  }
  for (const auto& v : float_model.proto.graph().input()) float_values.insert(v.name());

  // The quantized model's values in order, each with the float value it stands for.
  DiffResult result;
  result.data = data.description;
  result.samples = data.count;
  std::map<std::string, size_t> slot;  // quantized value -> index in result.values
  std::map<std::string, std::vector<std::string>> inputs_of;  // value -> its node's inputs
  for (const auto& node : quant_model.proto.graph().node()) {
    for (const auto& o : node.output()) {
      if (o.empty()) continue;
      auto it = map.find(o);
      const std::string stands_for = it != map.end() ? it->second : o;
      if (!float_values.count(stands_for) && !float_constants.count(stands_for)) continue;
      slot[o] = result.values.size();
      DiffResult::Value v;
      v.name = o;
      v.float_name = stands_for;
      v.op = node.op_type();
      result.values.push_back(std::move(v));
      inputs_of[o].assign(node.input().begin(), node.input().end());
    }
  }
  std::vector<MetricsAccumulator> acc;
  for (const auto& v : result.values) acc.emplace_back(v.name);
  std::set<std::string> wanted;
  for (const auto& v : result.values) wanted.insert(v.float_name);
  std::map<std::string, Tensor> constant_values;
  for (const auto& name : wanted) {
    if (float_constants.count(name)) {
      constant_values[name] = tensor_from_proto(float_model, *float_constants[name]);
    }
  }

  Executor float_run(float_model), quant_run(quant_model);
  std::vector<MetricsAccumulator> outputs;
  for (const auto& name : quant_run.output_names()) outputs.emplace_back(name);
  for (size_t i = 0; i < data.count; ++i) {
    const auto inputs = data.sample(i);
    std::map<std::string, Tensor> seen;  // this sample's float values
    for (size_t k = 0; k < inputs.size() && k < float_run.input_names().size(); ++k) {
      if (wanted.count(float_run.input_names()[k])) seen[float_run.input_names()[k]] = inputs[k];
    }
    const auto float_outputs =
        float_run.run(inputs, [&](const std::string& name, const Tensor& value) {
          if (wanted.count(name)) seen[name] = value;
        });
    const auto quant_outputs =
        quant_run.run(inputs, [&](const std::string& name, const Tensor& value) {
          auto s = slot.find(name);
          if (s == slot.end()) return;
          const std::string& f = result.values[s->second].float_name;
          const Tensor* reference = nullptr;
          if (auto it = seen.find(f); it != seen.end()) reference = &it->second;
          if (auto it = constant_values.find(f); it != constant_values.end()) {
            reference = &it->second;
          }
          if (reference && reference->shape() == value.shape()) {
            acc[s->second].add(*reference, value);
          }
        });
    for (size_t k = 0; k < quant_outputs.size() && k < float_outputs.size(); ++k) {
      outputs[k].add(float_outputs[k], quant_outputs[k]);
    }
  }
  for (size_t k = 0; k < result.values.size(); ++k) result.values[k].metrics = acc[k].result();
  for (const auto& o : outputs) {
    DiffResult::Value v;
    v.name = v.float_name = o.result().name;
    v.metrics = o.result();
    result.outputs.push_back(std::move(v));
  }

  // Loss at each node: the worst SNR among the values it reads that depend on the graph's
  // inputs (reaching through nodes the float model has no value for, so a DequantizeLinear reads
  // the tensor its QuantizeLinear quantized), minus its own SNR. Values computed from constants
  // alone (dequantized weights) lose nothing themselves: their error shows at their readers.
  const auto& qgraph = quant_model.proto.graph();
  std::map<std::string, const onnx::NodeProto*> producer;
  for (const auto& n : qgraph.node()) {
    for (const auto& o : n.output()) producer[o] = &n;
  }
  std::set<std::string> dynamic;  // values that depend on a graph input
  for (const auto& v : qgraph.input()) dynamic.insert(v.name());
  for (const auto& n : qgraph.node()) {
    const bool reads = std::any_of(n.input().begin(), n.input().end(),
                                   [&](const std::string& i) { return dynamic.count(i) > 0; });
    if (reads) dynamic.insert(n.output().begin(), n.output().end());
  }
  std::function<void(const std::string&, int, double&)> worst_input = [&](const std::string& name,
                                                                          int depth, double& in) {
    if (!dynamic.count(name)) return;
    if (auto s = slot.find(name); s != slot.end()) {
      if (result.values[s->second].metrics.is_float) {
        in = std::min(in, capped(result.values[s->second].metrics.snr_db));
      }
      return;
    }
    auto p = producer.find(name);
    if (p == producer.end() || depth == 0) return;
    for (const auto& i : p->second->input()) worst_input(i, depth - 1, in);
  };
  for (auto& v : result.values) {
    if (!v.metrics.is_float || v.metrics.elements == 0 || !dynamic.count(v.name)) continue;
    double in = kCapDb;
    for (const auto& input : inputs_of[v.name]) worst_input(input, 3, in);
    v.loss_db = std::max(0.0, in - capped(v.metrics.snr_db));
    v.added_noise =
        std::max(0.0, std::pow(10.0, -capped(v.metrics.snr_db) / 10) - std::pow(10.0, -in / 10));
  }
  double output_snr = kCapDb;
  for (const auto& o : result.outputs) {
    if (o.metrics.is_float) output_snr = std::min(output_snr, capped(o.metrics.snr_db));
  }
  for (size_t k = 0; k < result.values.size(); ++k) {
    const auto& v = result.values[k];
    if (v.metrics.is_float && capped(v.metrics.snr_db) <= output_snr + 3 && v.loss_db >= 1) {
      result.entry = static_cast<int>(k);
      break;
    }
  }
  std::vector<int> order(result.values.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = static_cast<int>(k);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
    return result.values[a].added_noise > result.values[b].added_noise;
  });
  for (int k : order) {
    if (result.worst.size() == 10 || result.values[k].added_noise <= 0) break;
    result.worst.push_back(k);
  }
  return result;
}

}  // namespace quantize
