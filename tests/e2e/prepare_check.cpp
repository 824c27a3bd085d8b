// prepare_check MODEL [--dim NAME=VALUE ...] [--range INPUT=LO:HI ...]: runs the preparation
// passes (constant folding, then conversion to opset 13) on a real model and checks, in the
// executor on two random input sets, that the prepared model computes exactly what the original
// does. (Preparation must never change a model's outputs: a conversion once lost weights stored
// as Constant nodes without a word.) Exit 0 when identical; 1 when not, or when the prepared
// model fails; 77 (a skip for ctest) when the model file is not there or the original does not
// run here (the graph-only exports whose weights were never published).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>

#include "passes/passes.h"
#include "quantize/error.h"
#include "quantize/executor.h"
#include "quantize/model.h"

using namespace quantize;

namespace {

struct Args {
  std::string model;
  std::map<std::string, int64_t> dims;
  std::map<std::string, std::pair<double, double>> ranges;
};

std::vector<Tensor> random_inputs(const Model& model, const Args& args, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Tensor> inputs;
  const auto names = fed_inputs(model);
  const auto types = declared_types(model.proto.graph(), names);
  for (size_t k = 0; k < names.size(); ++k) {
    if (!types[k] || !types[k]->has_tensor_type()) {
      fail(ExitCode::kInput, "input '{}' is not a declared tensor", names[k]);
    }
    std::vector<int64_t> shape;
    for (const auto& d : types[k]->tensor_type().shape().dim()) {
      auto it = args.dims.find(d.dim_param());
      shape.push_back(d.has_dim_value() ? d.dim_value() : it != args.dims.end() ? it->second : 1);
    }
    Tensor t(types[k]->tensor_type().elem_type(), shape);
    auto range =
        args.ranges.count(names[k]) ? args.ranges.at(names[k]) : std::pair<double, double>{-1, 1};
    const bool floats = t.dtype() == onnx::TensorProto::FLOAT;
    if (!args.ranges.count(names[k]) && !floats) range = {0, 3};
    std::uniform_real_distribution<double> dist(range.first, range.second);
    for (int64_t i = 0; i < t.size(); ++i) {
      const double v = floats ? dist(rng) : std::floor(dist(rng));
      switch (t.dtype()) {
        case onnx::TensorProto::FLOAT:
          t.data<float>()[i] = static_cast<float>(v);
          break;
        case onnx::TensorProto::INT64:
          t.data<int64_t>()[i] = static_cast<int64_t>(v);
          break;
        case onnx::TensorProto::INT32:
          t.data<int32_t>()[i] = static_cast<int32_t>(v);
          break;
        default:
          fail(ExitCode::kInput, "input '{}': element type {}", names[k], t.dtype());
      }
    }
    inputs.push_back(std::move(t));
  }
  return inputs;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if ((a == "--dim" || a == "--range") && i + 1 < argc) {
      const std::string v = argv[++i];
      const auto eq = v.find('=');
      if (a == "--dim") {
        args.dims[v.substr(0, eq)] = std::stoll(v.substr(eq + 1));
      } else {
        const auto colon = v.find(':', eq);
        args.ranges[v.substr(0, eq)] = {std::stod(v.substr(eq + 1, colon - eq - 1)),
                                        std::stod(v.substr(colon + 1))};
      }
    } else if (a.rfind("--", 0) == 0 && i + 1 < argc) {
      ++i;  // compare.mjs flags of the model list that do not concern this check
    } else if (args.model.empty()) {
      args.model = a;
    } else {
      std::fprintf(stderr, "usage: prepare_check MODEL [--dim NAME=V] [--range INPUT=LO:HI]\n");
      return 2;
    }
  }
  if (!std::filesystem::exists(args.model)) {
    std::printf("SKIP: %s is not here\n", args.model.c_str());
    return 77;
  }
  // The original model must load and run here; otherwise there is nothing to compare (a skip).
  Model original;
  std::vector<std::vector<Tensor>> inputs, expected;
  try {
    original = load_model(args.model);
    Executor a(original);
    for (uint32_t seed = 1; seed <= 2; ++seed) {
      inputs.push_back(random_inputs(original, args, seed));
      expected.push_back(a.run(inputs.back()));
    }
  } catch (const Error& e) {
    std::printf("SKIP: the original model does not run here: %s\n", e.what());
    return 77;
  }
  try {
    Model prepared = copy_model(original);
    FoldConfig fold;
    fold.weight_inputs = {{"MatMul", 1}, {"Gemm", 1}, {"Conv", 1}, {"Gather", 0}};
    std::vector<PassResult> results;
    results.push_back(make_fold_pass(fold)->run(prepared));
    results.push_back(make_opset_pass({13, 13, "the check"})->run(prepared));
    for (const auto& r : results) {
      std::printf("%s: %zu node(s) changed%s\n", r.pass.c_str(), r.changed.size(),
                  r.notes.empty() ? "" : (", " + r.notes[0]).c_str());
      for (const auto& w : r.warnings) std::printf("  warning: %s\n", w.c_str());
    }
    Executor b(prepared);
    double worst = 0;
    for (size_t s = 0; s < inputs.size(); ++s) {
      const auto& x = expected[s];
      const auto y = b.run(inputs[s]);
      for (size_t k = 0; k < x.size(); ++k) {
        if (x[k].shape() != y[k].shape() || x[k].dtype() != y[k].dtype()) {
          std::printf("FAILED: output %zu changed shape or type\n", k);
          return 1;
        }
        for (int64_t i = 0; i < x[k].size() && !x[k].is_container(); ++i) {
          const double u = x[k].element_as_double(i), v = y[k].element_as_double(i);
          if (std::isnan(u) && std::isnan(v)) continue;
          worst = std::max(worst, std::fabs(u - v));
        }
      }
    }
    std::printf("%s: prepared model's outputs %s (max abs difference %g)\n", args.model.c_str(),
                worst == 0 ? "identical" : "DIFFER", worst);
    return worst == 0 ? 0 : 1;
  } catch (const Error& e) {
    std::printf("FAILED: the prepared model: %s\n", e.what());
    return 1;
  }
}
