// The mode table, option checks and descriptions, and each mode's passes.
#include <fmt/ranges.h>

#include <cmath>

#include "kernels/kernels.h"
#include "passes/passes.h"
#include "quantize/error.h"
#include "verify/verify.h"

namespace quantize {
namespace {

constexpr ModeInfo kModes[] = {
    {Mode::kQ4, ModeFamily::kWeightOnly, "q4", "q4",
     "4-bit block-quantized MatMul weights (com.microsoft.MatMulNBits), the rest float32"},
    {Mode::kQ4F16, ModeFamily::kWeightOnly, "q4f16", "q4f16",
     "q4, then the rest of the model in float16 (float32 inputs and outputs kept)"},
    {Mode::kFp16, ModeFamily::kFloat16, "fp16", "fp16",
     "float16 weights and activations (float32 inputs and outputs kept)"},
    {Mode::kInt8, ModeFamily::kDynamicInt8, "int8", "int8",
     "dynamic INT8: int8 symmetric weights, activations quantized at run time"},
    {Mode::kUInt8, ModeFamily::kDynamicInt8, "uint8", "uint8",
     "dynamic INT8 with uint8 asymmetric weights"},
    {Mode::kQ8, ModeFamily::kDynamicInt8, "q8", "quantized",
     "dynamic INT8, portable: uint8 weights if the model has Conv, else int8"},
    {Mode::kStaticInt8, ModeFamily::kStaticInt8, "int8", "static_int8",
     "static INT8 (--static --int8): calibrated int8 activations and weights, QDQ"},
    {Mode::kStaticUInt8, ModeFamily::kStaticInt8, "uint8", "static_uint8",
     "static INT8 (--static --uint8): calibrated uint8 activations and weights, QDQ"},
    {Mode::kNf4, ModeFamily::kWeightOnly, "nf4", "bnb4",
     "4-bit NormalFloat MatMul weights (com.microsoft.MatMulBnb4, block 64, absmax scales)"},
    {Mode::kFp4, ModeFamily::kWeightOnly, "fp4", "bnb4_fp4",
     "bitsandbytes' 4-bit float MatMul weights (com.microsoft.MatMulBnb4, block 64)"},
};

const std::set<std::string> kDynamicOps = {"MatMul", "Gemm", "Conv", "Gather"};

// The runtimes --target names. Each row: what it sets where the flags are silent, what it
// refuses (Options::validate), and whether the output may hold com.microsoft ops (checked by the
// last pass).
const RuntimeProfile kRuntimes[] = {
    {Runtime::kOrtCpu, "ort-cpu",
     "ONNX Runtime's CPU provider: today's defaults, every com.microsoft op it runs; --static "
     "alone is S8S8 (--int8) on a CPU with VNNI, U8U8 (--uint8) without (this CPU decides)"},
    {Runtime::kOrtWeb, "ort-web",
     "ONNX Runtime Web / Transformers.js: static INT8 with uint8 activations; MatMulNBits, "
     "GatherBlockQuantized and MatMulBnb4 as Transformers.js loads them",
     Format::kDefault, ActivationType::kUInt8},
    {Runtime::kQnn,
     "qnn",
     "Qualcomm QNN (ONNX Runtime's QNN provider): static QDQ only, uint8 activations (or "
     "--activations uint16), symmetric int8 weights per channel; 4-bit weights as INT4 "
     "DequantizeLinear",
     Format::kQdq,
     ActivationType::kUInt8,
     true,
     false,
     true,
     true,
     {},
     true},
    {Runtime::kTensorRt,
     "tensorrt",
     "NVIDIA TensorRT: QDQ on the inputs of Conv, ConvTranspose, MatMul and Gemm only, int8 "
     "symmetric (zero points 0), weights per channel; 4-bit weights as INT4 DequantizeLinear",
     Format::kQdq,
     ActivationType::kInt8,
     true,
     true,
     true,
     false,
     {"Conv", "ConvTranspose", "MatMul", "Gemm"}},
    {Runtime::kGeneric, "generic",
     "any ONNX runtime: standard ONNX ops only (no com.microsoft): 4-bit weights as INT4 "
     "DequantizeLinear (opset 21), INT8 as QDQ",
     Format::kQdq, ActivationType::kDefault, false, false, true, false},
};

// MatMulBnb4's quant_type of a mode (--fp4: 0, --nf4: 1), or -1.
int bnb4_type(Mode mode) { return mode == Mode::kNf4 ? 1 : mode == Mode::kFp4 ? 0 : -1; }

bool has_family(const std::vector<Mode>& modes, ModeFamily family) {
  for (Mode m : modes) {
    if (mode_info(m).family == family) return true;
  }
  return false;
}

std::regex compile(const std::string& pattern, const char* option) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    fail(ExitCode::kUsage, "{} '{}' is not a valid regular expression: {}", option, pattern,
         e.what());
  }
}

const char* activation_type_name(ActivationType type) {
  switch (type) {
    case ActivationType::kDefault:
      return "default";
    case ActivationType::kInt8:
      return "int8";
    case ActivationType::kUInt8:
      return "uint8";
    case ActivationType::kInt16:
      return "int16";
    case ActivationType::kUInt16:
      return "uint16";
  }
  return "?";
}

std::string filter_description(const NodeFilter& filter) {
  std::string s;
  if (!filter.include().empty()) s += fmt::format(" include={}", filter.include());
  if (!filter.exclude().empty()) s += fmt::format(" exclude={}", filter.exclude());
  return s;
}

}  // namespace

const char* weight_algo_name(WeightAlgo algo) {
  switch (algo) {
    case WeightAlgo::kAuto:
      return "auto";
    case WeightAlgo::kRtn:
      return "rtn";
    case WeightAlgo::kSearch:
      return "search";
    case WeightAlgo::kImatrix:
      return "imatrix";
    case WeightAlgo::kGptq:
      return "gptq";
    case WeightAlgo::kAwq:
      return "awq";
    case WeightAlgo::kAwqGptq:
      return "awq+gptq";
  }
  return "?";
}

bool needs_calibration(WeightAlgo algo) {
  return algo == WeightAlgo::kImatrix || algo == WeightAlgo::kGptq || algo == WeightAlgo::kAwq ||
         algo == WeightAlgo::kAwqGptq;
}

const char* calib_method_name(CalibMethod method) {
  switch (method) {
    case CalibMethod::kMinMax:
      return "minmax";
    case CalibMethod::kPercentile:
      return "percentile";
    case CalibMethod::kEntropy:
      return "entropy";
    case CalibMethod::kMse:
      return "mse";
    case CalibMethod::kAuto:
      return "auto";
  }
  return "?";
}

std::span<const ModeInfo> all_modes() { return kModes; }

std::span<const RuntimeProfile> runtime_profiles() { return kRuntimes; }

const RuntimeProfile& runtime_profile(Runtime runtime) {
  for (const auto& p : kRuntimes) {
    if (p.runtime == runtime) return p;
  }
  fail(ExitCode::kUsage, "no runtime profile {}", static_cast<int>(runtime));
}

const RuntimeProfile* find_runtime(const std::string& name) {
  for (const auto& p : kRuntimes) {
    if (name == p.name) return &p;
  }
  return nullptr;
}

namespace {
constexpr std::pair<Precision, const char*> kPrecisions[] = {
    {Precision::kFloat, "float"}, {Precision::kFp16, "fp16"}, {Precision::kInt8, "int8"},
    {Precision::kUInt8, "uint8"}, {Precision::kA16, "a16"},   {Precision::kQ4, "q4"},
    {Precision::kQ8, "q8"}};
}  // namespace

const char* precision_name(Precision precision) {
  for (const auto& [p, name] : kPrecisions) {
    if (p == precision) return name;
  }
  return "?";
}

Precision parse_precision(const std::string& name, const std::string& what) {
  for (const auto& [p, n] : kPrecisions) {
    if (name == n) return p;
  }
  fail(ExitCode::kUsage, "{}: '{}' is not a precision (float, fp16, int8, uint8, a16, q4, q8)",
       what, name);
}

Target Target::parse(const std::string& text) {
  const auto eq = text.rfind('=');
  if (eq == std::string::npos) fail(ExitCode::kUsage, "--target {}: expected METRIC=VALUE", text);
  Target t;
  std::string left = text.substr(0, eq);
  if (const auto colon = left.rfind(':'); colon != std::string::npos) {
    t.output = left.substr(0, colon);
    left = left.substr(colon + 1);
  }
  t.metric = left;
  if (t.metric != "cosine" && t.metric != "top1" && t.metric != "kl" && t.metric != "snr") {
    fail(ExitCode::kUsage, "--target {}: metric '{}' is not cosine, top1, kl or snr", text,
         t.metric);
  }
  try {
    size_t used = 0;
    t.value = std::stod(text.substr(eq + 1), &used);
    if (used != text.size() - eq - 1) throw std::invalid_argument("trailing characters");
  } catch (const std::exception&) {
    fail(ExitCode::kUsage, "--target {}: '{}' is not a number", text, text.substr(eq + 1));
  }
  const bool fraction = t.metric == "cosine" || t.metric == "top1";
  if (!std::isfinite(t.value) || (fraction && (t.value < 0 || t.value > 1)) ||
      (t.metric == "kl" && t.value < 0)) {
    fail(ExitCode::kUsage, "--target {}: {} must be {}", text, t.metric,
         fraction           ? "between 0 and 1"
         : t.metric == "kl" ? "at least 0"
                            : "a finite number of dB");
  }
  return t;
}

std::string Target::describe() const {
  return fmt::format("{}{} {} {}", output.empty() ? "" : output + ": ", metric,
                     metric == "kl" ? "<=" : ">=", value);
}

PrecisionRule PrecisionRule::parse(const std::string& text) {
  const auto eq = text.rfind('=');
  if (eq == std::string::npos || eq == 0) {
    fail(ExitCode::kUsage, "--tensor-type {}: expected REGEX=TYPE", text);
  }
  PrecisionRule r;
  r.pattern = text.substr(0, eq);
  r.regex = compile(r.pattern, "--tensor-type");
  r.precision = parse_precision(text.substr(eq + 1), "--tensor-type " + text);
  return r;
}

RunData open_run_data(const Options& options, const Model& model) {
  RunData d;
  std::optional<CalibrationData> calib;
  if (!options.calib.empty()) {
    calib = open_calibration_data(options.calib, model, options.calib_samples);
  }
  const bool verify = options.verify != Options::Verify::kNever;
  if (!options.eval.empty()) {
    d.calibration = calib;
    if (verify) d.evaluation = open_calibration_data(options.eval, model, 0);
  } else if (calib && verify && options.holdout && calib->count >= 2) {
    // Every 4th sample judges, the rest calibrates (at least one of each).
    const size_t n = calib->count;
    auto held = [n](size_t i) { return i % 4 == 3 || (n < 4 && i == n - 1); };
    const size_t judged = n / 4 + (n < 4 ? 1 : 0);
    d.evaluation = subset(*calib, held,
                          fmt::format("{} held-out sample(s) of {} (every 4th; --no-holdout "
                                      "calibrates on all)",
                                      judged, calib->description));
    d.calibration = subset(
        *calib, [held](size_t i) { return !held(i); },
        fmt::format("{} of {}", n - judged, calib->description));
  } else {
    d.calibration = calib;
    if (calib && verify) {
      d.evaluation = *calib;
      d.evaluation->description =
          fmt::format("{} (the calibration data itself{})", calib->description,
                      calib->count < 2 ? ": too few samples to hold one out" : "");
    }
  }
  if (!d.evaluation && options.verify == Options::Verify::kAlways) {
    d.evaluation = open_calibration_data("random", model, 4);
  }
  return d;
}

const ModeInfo& mode_info(Mode mode) {
  for (const auto& info : kModes) {
    if (info.mode == mode) return info;
  }
  fail(ExitCode::kInternal, "unknown mode {}", static_cast<int>(mode));
}

std::optional<Mode> static_mode(Mode dynamic) {
  if (dynamic == Mode::kInt8) return Mode::kStaticInt8;
  if (dynamic == Mode::kUInt8) return Mode::kStaticUInt8;
  return std::nullopt;
}

const std::set<std::string>& dynamic_int8_op_types() { return kDynamicOps; }

NodeFilter::NodeFilter(std::string include, std::string exclude)
    : include_(std::move(include)), exclude_(std::move(exclude)) {
  if (!include_.empty()) include_re_ = compile(include_, "--include");
  if (!exclude_.empty()) exclude_re_ = compile(exclude_, "--exclude");
}

std::string NodeFilter::why_not(const std::string& node_name) const {
  if (include_re_ && !std::regex_search(node_name, *include_re_)) return "not matched by --include";
  if (exclude_re_ && std::regex_search(node_name, *exclude_re_)) return "matched by --exclude";
  return {};
}

void Options::apply_runtime() {
  runtime_defaults.clear();
  if (runtime == Runtime::kAny) return;
  const RuntimeProfile& p = runtime_profile(runtime);
  if (static_open) {
    // ONNX Runtime's CPU kernels add uint8 x int8 products pairwise in 16 bits on x86 without
    // VNNI, which saturates: U8U8 there. Web runtimes take uint8; the others signed weights.
    const bool no_vnni = x86_without_vnni();
    const Mode m = runtime == Runtime::kOrtWeb || (runtime == Runtime::kOrtCpu && no_vnni)
                       ? Mode::kStaticUInt8
                       : Mode::kStaticInt8;
    if (std::find(modes.begin(), modes.end(), m) == modes.end()) modes.push_back(m);
    runtime_defaults.push_back(
        fmt::format("--static --{}{}", mode_info(m).flag,
                    runtime != Runtime::kOrtCpu ? ""
                    : no_vnni ? " (this CPU has no VNNI, where S8S8 saturates in ONNX Runtime)"
                              : " (S8S8: this CPU has VNNI)"));
  }
  const bool any_static = has_family(modes, ModeFamily::kStaticInt8);
  const bool any_dynamic = has_family(modes, ModeFamily::kDynamicInt8);
  if (format == Format::kDefault && p.format != Format::kDefault) {
    format = p.format;
    runtime_defaults.push_back(p.format == Format::kQdq ? "--format qdq" : "--format qoperator");
  }
  if (any_static && activations == ActivationType::kDefault &&
      p.activations != ActivationType::kDefault) {
    activations = p.activations;
    runtime_defaults.push_back(fmt::format("--activations {}", activation_type_name(activations)));
  }
  if ((any_static || any_dynamic) && p.per_channel && !per_channel) {
    per_channel = true;
    runtime_defaults.push_back("--per-channel");
  }
  if (any_static && p.symmetric_activations) {
    symmetric_activations = true;
    runtime_defaults.push_back("symmetric activations (zero points 0)");
  }
  if (any_static && p.quantized_results) {
    // An NPU runs a graph whole only when every op in it is quantized: a head's Conv writing a
    // float result, and the Transpose / Reshape / Concat after it, would run on the CPU.
    float_results = false;
    runtime_defaults.push_back("results quantized up to the graph outputs");
  }
  if (any_static && !any_dynamic && op_types.empty() && !p.static_op_types.empty()) {
    op_types = p.static_op_types;
    runtime_defaults.push_back(fmt::format("--op-types {}", fmt::join(op_types, ",")));
  }
}

void Options::validate() const {
  if (runtime != Runtime::kAny) {
    const RuntimeProfile& p = runtime_profile(runtime);
    for (Mode m : modes) {
      const ModeInfo& info = mode_info(m);
      if (p.standard_ops && bnb4_type(m) >= 0) {
        fail(ExitCode::kUsage,
             "--{} writes com.microsoft.MatMulBnb4, which --target {} does not run", info.flag,
             p.name);
      }
      if (p.static_only && info.family == ModeFamily::kDynamicInt8) {
        fail(ExitCode::kUsage, "--target {} runs static QDQ models: --{} needs --static", p.name,
             info.flag);
      }
      if (p.symmetric_activations || p.runtime == Runtime::kQnn) {
        if (m == Mode::kStaticUInt8) {
          fail(ExitCode::kUsage,
               "--target {} takes symmetric int8 weights: --static --int8, not --uint8", p.name);
        }
      }
    }
    const bool signed_acts =
        activations == ActivationType::kInt8 || activations == ActivationType::kInt16;
    if (p.runtime == Runtime::kQnn && signed_acts) {
      fail(ExitCode::kUsage, "--target qnn takes uint8 or uint16 activations, not --activations {}",
           activation_type_name(activations));
    }
    if (p.runtime == Runtime::kTensorRt && activations != ActivationType::kDefault &&
        activations != ActivationType::kInt8) {
      fail(ExitCode::kUsage, "--target tensorrt takes int8 activations, not --activations {}",
           activation_type_name(activations));
    }
    if ((p.runtime == Runtime::kQnn || p.runtime == Runtime::kTensorRt) &&
        format == Format::kQOperator) {
      fail(ExitCode::kUsage, "--target {} takes QDQ models: drop --format qoperator", p.name);
    }
  }
  if (symmetric_activations &&
      (activations == ActivationType::kUInt8 || activations == ActivationType::kUInt16)) {
    fail(ExitCode::kUsage, "symmetric activations are signed: --activations int8 or int16");
  }
  if (block_size != 0 &&
      (block_size < 16 || block_size > 256 || (block_size & (block_size - 1)) != 0)) {
    fail(ExitCode::kUsage, "--block-size {}: must be a power of two from 16 to 256", block_size);
  }
  for (Mode m : modes) {
    if (bnb4_type(m) < 0) continue;
    if (format == Format::kQdq) {
      fail(ExitCode::kUsage,
           "--{} writes com.microsoft.MatMulBnb4, which has no standard form: drop --format qdq",
           mode_info(m).flag);
    }
    if (weight_algo != WeightAlgo::kAuto && weight_algo != WeightAlgo::kRtn) {
      fail(ExitCode::kUsage,
           "--algo {} with --{}: its codes are the nearest codebook values (--algo rtn)",
           weight_algo_name(weight_algo), mode_info(m).flag);
    }
    if (bits != 4 || !symmetric) {
      fail(ExitCode::kUsage, "--{} is 4-bit and symmetric: drop --bits {}{}", mode_info(m).flag,
           bits, symmetric ? "" : " and --asymmetric");
    }
  }
  if (bits != 4 && bits != 8) fail(ExitCode::kUsage, "--bits {}: must be 4 or 8", bits);
  if (output_projection_bits != 4 && output_projection_bits != 8) {
    fail(ExitCode::kUsage, "--output-projection-bits {}: must be 4 or 8", output_projection_bits);
  }
  if (accuracy_level < 0 || accuracy_level > 4) {
    fail(ExitCode::kUsage, "--accuracy-level {}: must be 0 to 4", accuracy_level);
  }
  if (needs_calibration(weight_algo) && calib.empty()) {
    fail(ExitCode::kUsage, "--algo {} needs calibration data: --calib PATH",
         weight_algo_name(weight_algo));
  }
  const bool any_static = has_family(modes, ModeFamily::kStaticInt8);
  const bool any_dynamic = has_family(modes, ModeFamily::kDynamicInt8);
  const std::set<std::string>& known = any_static ? static_int8_op_types() : kDynamicOps;
  for (const auto& op : op_types) {
    if (!known.count(op) || (any_dynamic && !kDynamicOps.count(op))) {
      fail(ExitCode::kUsage, "--op-types: '{}' is not one of {}", op, fmt::join(known, ", "));
    }
  }
  if (!targets.empty()) {
    if (calib.empty() && eval.empty()) {
      fail(ExitCode::kUsage,
           "--target needs data to judge on: --calib (every 4th sample judges) or --eval");
    }
    if (verify == Verify::kNever)
      fail(ExitCode::kUsage, "--target needs verification: drop --no-verify");
    if (!plan.empty())
      fail(ExitCode::kUsage, "--plan replays a plan: it does not search (drop --target)");
  }
  if (activations != ActivationType::kDefault) {
    if (!any_static) fail(ExitCode::kUsage, "--activations needs --static");
    if (format == Format::kQOperator &&
        (activations == ActivationType::kInt16 || activations == ActivationType::kUInt16)) {
      fail(ExitCode::kUsage,
           "--activations {}: QLinearConv/QLinearMatMul take 8-bit activations only; use "
           "--format qdq",
           activation_type_name(activations));
    }
  }
  // --static without --calib fails when calibration is needed: a model quantized already (QAT)
  // needs none.
  if (any_static && !(percentile > 50 && percentile <= 100)) {
    fail(ExitCode::kUsage, "--percentile {}: must be above 50 and at most 100", percentile);
  }
}

WeightAlgo Options::weight_algorithm() const {
  if (weight_algo != WeightAlgo::kAuto) return weight_algo;
  return calib.empty() ? WeightAlgo::kSearch : WeightAlgo::kGptq;
}

int Options::block_size_for(Mode mode) const {
  if (block_size != 0) return block_size;
  return bnb4_type(mode) >= 0 ? 64 : 32;
}

std::string Options::suffix(Mode mode) const {
  std::string s = mode_info(mode).suffix;
  if (bits == 8 && (mode == Mode::kQ4 || mode == Mode::kQ4F16)) s.replace(0, 2, "nbits8");
  return s;
}

std::string Options::describe(Mode mode) const {
  std::string described = describe_mode(mode);
  if (runtime != Runtime::kAny)
    described += fmt::format(" target={}", runtime_profile(runtime).name);
  return described;
}

std::string Options::describe_mode(Mode mode) const {
  const ModeInfo& info = mode_info(mode);
  switch (info.family) {
    case ModeFamily::kFloat16:
      return fmt::format("fp16 keep_io_types={}", keep_io_types);
    case ModeFamily::kStaticInt8: {
      std::string s =
          fmt::format("{} static format={} {} calib_method={}", info.flag,
                      format == Format::kQOperator ? "qoperator" : "qdq",
                      per_channel ? "per_channel" : "per_tensor", calib_method_name(calib_method));
      if (calib_method == CalibMethod::kPercentile) s += fmt::format(" percentile={}", percentile);
      if (activations != ActivationType::kDefault) {
        s += fmt::format(" activations={}", activation_type_name(activations));
      }
      if (symmetric_activations) s += " symmetric_activations";
      auto toggle = [](Toggle t) {
        return t == Toggle::kOn ? "on" : t == Toggle::kOff ? "off" : "auto";
      };
      s +=
          fmt::format(" equalize={} bias_correction={}", toggle(equalize), toggle(bias_correction));
      if (!op_types.empty()) s += fmt::format(" op_types={}", fmt::join(op_types, ","));
      if (!keep_float.empty()) s += fmt::format(" keep_float={}", fmt::join(keep_float, ","));
      if (!float_fallback) s += " float_fallback=off";
      if (!float_results) s += " quantized_results";
      return s + filter_description(filter);
    }
    case ModeFamily::kDynamicInt8: {
      std::string s = fmt::format("{} format={} {} op_types={}", info.flag,
                                  format == Format::kQdq ? "qdq" : "qoperator",
                                  per_channel ? "per_channel" : "per_tensor",
                                  fmt::join(op_types.empty() ? kDynamicOps : op_types, ","));
      if (reduce_range) s += " reduce_range";
      return s + filter_description(filter);
    }
    case ModeFamily::kWeightOnly:
      break;
  }
  if (bnb4_type(mode) >= 0) {
    return fmt::format("{} block_size={}{}{}", info.flag, block_size_for(mode),
                       output_projection_bits == 8 ? " output_projection=8bit" : "",
                       filter_description(filter));
  }
  std::string s = fmt::format("{} bits={} block_size={} {}", info.flag, bits, block_size_for(mode),
                              symmetric ? "symmetric" : "asymmetric");
  if (format == Format::kQdq) s += " format=qdq";
  if (accuracy_level) s += fmt::format(" accuracy_level={}", accuracy_level);
  if (bits == 4 && output_projection_bits == 8) s += " output_projection=8bit";
  s += fmt::format(" algo={}", weight_algo_name(weight_algorithm()));
  s += filter_description(filter);
  if (mode == Mode::kQ4F16) s += fmt::format(" keep_io_types={}", keep_io_types);
  return s;
}

// The (op, input) slots a mode quantizes as weights.
std::set<std::pair<std::string, int>> weight_inputs(ModeFamily family) {
  switch (family) {
    case ModeFamily::kWeightOnly:
      return {{"MatMul", 1}, {"Gemm", 1}, {"Gemm", 2}, {"Gather", 0}};
    case ModeFamily::kDynamicInt8:
      return {{"MatMul", 1}, {"Gemm", 1}, {"Gemm", 2}, {"Conv", 1}, {"Conv", 2}, {"Gather", 0}};
    case ModeFamily::kStaticInt8:
      return {{"MatMul", 1}, {"Gemm", 1},          {"Gemm", 2},         {"Conv", 1},
              {"Conv", 2},   {"ConvTranspose", 1}, {"ConvTranspose", 2}};
    case ModeFamily::kFloat16:
      break;
  }
  return {};
}

namespace {

// Whether a MatMul or Gemm B, or a Gather's table, is a constant (a weight the weight-only modes
// may quantize), in any graph.
bool has_weight(onnx::ModelProto& model) {
  ModelIndex index(model);
  for (const auto& g : index.graphs()) {
    for (const auto& node : g->proto->node()) {
      if (!is_default_domain(node) || node.input_size() < 2) continue;
      const std::string& op = node.op_type();
      if (((op == "MatMul" || op == "Gemm") && index.constant(*g, node.input(1))) ||
          (op == "Gather" && index.constant(*g, node.input(0)))) {
        return true;
      }
    }
  }
  return false;
}

}  // namespace

std::vector<std::unique_ptr<Pass>> build_pipeline(Mode mode, const Options& options,
                                                  const RunData& data,
                                                  const Precisions& precisions) {
  std::vector<std::unique_ptr<Pass>> passes;
  const ModeFamily family = mode_info(mode).family;
  // ONNX Runtime's CPU provider runs no bfloat16 arithmetic, and INT8 ops take float32
  // activations: those values are computed in float32 (float16 stays for q4 and fp16).
  WidenConfig widen{{onnx::TensorProto::BFLOAT16}};
  if (family == ModeFamily::kDynamicInt8 || family == ModeFamily::kStaticInt8) {
    widen.types.push_back(onnx::TensorProto::FLOAT16);
  }
  passes.push_back(make_widen_pass(std::move(widen)));
  if (options.fold_constants) {
    passes.push_back(make_fold_pass({weight_inputs(family), family == ModeFamily::kStaticInt8}));
  }
  const bool weight_qdq = family == ModeFamily::kWeightOnly && options.format == Format::kQdq;
  if (options.convert_opset && weight_qdq) {
    passes.push_back(make_opset_pass({21, 21, "DequantizeLinear with block_size", has_weight}));
  } else if (options.convert_opset && family == ModeFamily::kStaticInt8) {
    // Below 13 per-channel pairs are com.microsoft's, and 16-bit ones below 21: a runtime of
    // standard ops (QNN takes com.microsoft's 16-bit pair) needs the standard ones.
    const bool standard =
        options.runtime != Runtime::kAny && runtime_profile(options.runtime).standard_ops;
    const bool wide = options.activations == ActivationType::kInt16 ||
                      options.activations == ActivationType::kUInt16;
    if (standard && wide && options.runtime != Runtime::kQnn) {
      passes.push_back(make_opset_pass({21, 21, "a standard 16-bit QuantizeLinear"}));
    } else if (standard && options.per_channel) {
      passes.push_back(make_opset_pass({13, 13, "a standard per-channel DequantizeLinear"}));
    } else {
      passes.push_back(make_opset_pass({10, 10, "QuantizeLinear"}));
    }
  } else if (options.convert_opset && family == ModeFamily::kDynamicInt8) {
    if (options.format != Format::kQdq) {
      passes.push_back(make_opset_pass({11, 11, "DynamicQuantizeLinear"}));
    } else if (options.per_channel) {
      passes.push_back(make_opset_pass({13, 13, "per-channel DequantizeLinear"}));
    } else {
      passes.push_back(make_opset_pass({10, 10, "DequantizeLinear"}));
    }
  }
  if (family == ModeFamily::kWeightOnly) {
    NBitsConfig config;
    config.policy.precision = {options.bits, options.block_size_for(mode), options.symmetric};
    config.policy.filter = options.filter;
    config.policy.overrides = precisions;
    config.policy.output_projection_8bit = options.output_projection_bits == 8;
    config.accuracy_level = options.accuracy_level;
    config.float16_scales = mode == Mode::kQ4F16;
    // --nf4 / --fp4: codebook codes for the 4-bit weights; tables and 8-bit weights data-free.
    config.bnb4 = bnb4_type(mode);
    config.qdq = weight_qdq;
    const WeightAlgo algo = config.bnb4 >= 0 && options.weight_algorithm() != WeightAlgo::kRtn
                                ? WeightAlgo::kSearch
                                : options.weight_algorithm();
    config.quantizer = algo == WeightAlgo::kRtn ? &round_to_nearest() : &scale_search();
    config.awq = algo == WeightAlgo::kAwq || algo == WeightAlgo::kAwqGptq;
    config.awq_gptq = algo == WeightAlgo::kAwqGptq;
    if (needs_calibration(algo)) {
      config.statistics = [data = data.calibration, cache = data.cache, algo,
                           progress = options.calib_progress](
                              const Model& model, const std::set<std::string>& tensors) {
        if (!data) {
          fail(ExitCode::kUsage, "--algo {} needs calibration data (--calib)",
               weight_algo_name(algo));
        }
        const bool gram = algo != WeightAlgo::kImatrix;
        auto key = [gram](const std::string& t) { return (gram ? "gram|" : "ms|") + t; };
        std::set<std::string> missing;
        for (const auto& t : tensors) {
          if (!cache->inputs.count(key(t))) missing.insert(t);
        }
        if (!missing.empty()) {
          GramCollector grams(gram ? missing : std::set<std::string>{});
          ChannelStatsCollector channels(gram ? std::set<std::string>{} : missing, -1);
          run_calibration(model, *data, {&grams, &channels}, progress);
          for (auto& [t, g] : grams.take()) {
            auto stats = std::make_shared<InputStatistics>();
            stats->mean_square = g.mean_square();
            stats->gram = std::make_shared<const Gram>(std::move(g));
            cache->inputs[key(t)] = std::move(stats);
          }
          for (auto& [t, c] : channels.stats()) {
            auto stats = std::make_shared<InputStatistics>();
            stats->mean_square.assign(c.mean_square.begin(), c.mean_square.end());
            cache->inputs[key(t)] = std::move(stats);
          }
          for (const auto& t : missing) cache->inputs.try_emplace(key(t), nullptr);
        }
        InputStatisticsMap out;
        for (const auto& t : tensors) {
          if (auto s = cache->inputs[key(t)]) out[t] = s;
        }
        return out;
      };
    }
    passes.push_back(make_matmul_nbits_pass(std::move(config)));
  }
  if (family == ModeFamily::kStaticInt8) {
    StaticQdqConfig config;
    config.signed_weights = mode == Mode::kStaticInt8;
    const ActivationType a = options.activations;
    config.signed_activations = a == ActivationType::kDefault
                                    ? config.signed_weights
                                    : a == ActivationType::kInt8 || a == ActivationType::kInt16;
    config.wide_activations = a == ActivationType::kInt16 || a == ActivationType::kUInt16;
    config.per_channel = options.per_channel;
    config.symmetric_activations = options.symmetric_activations;
    config.bias_correction = options.bias_correction == Toggle::kOn;
    config.qoperator = options.format == Format::kQOperator;
    config.op_types = options.op_types;
    config.keep_float = options.keep_float;
    config.float_fallback = options.float_fallback;
    config.float_results = options.float_results;
    config.filter = options.filter;
    config.precisions = precisions;
    // An auto method the run did not resolve by measuring (no calibration share to measure on)
    // is min/max.
    const CalibMethod method =
        options.calib_method == CalibMethod::kAuto ? CalibMethod::kMinMax : options.calib_method;
    Calibrator calibrate = [data = data.calibration, cache = data.cache, method,
                            percentile = options.percentile, progress = options.calib_progress](
                               const Model& model, const std::set<std::string>& tensors) {
      if (!data) {
        fail(ExitCode::kUsage,
             "--static needs calibration data: --calib PATH (test-data folders, .npy/.npz), or "
             "--calib random to calibrate on synthetic inputs");
      }
      // Ranges are cached per method: one cache never mixes two.
      auto range_key = [method](const std::string& t) {
        return std::string(calib_method_name(method)) + "|" + t;
      };
      std::set<std::string> missing;
      for (const auto& t : tensors) {
        if (!cache->measured.count(range_key(t))) missing.insert(t);
      }
      if (!missing.empty()) {
        RangeCollector ranges(missing, method, percentile);
        ChannelStatsCollector channels(missing, 1);
        run_calibration(model, *data, {&ranges, &channels}, progress);
        for (auto& [t, r] : ranges.ranges()) cache->ranges[range_key(t)] = r;
        for (auto& [t, s] : channels.stats()) cache->channel_stats[t] = std::move(s);
        for (const auto& t : missing) cache->measured.insert(range_key(t));
      }
      Calibration c;
      for (const auto& t : tensors) {
        if (auto it = cache->ranges.find(range_key(t)); it != cache->ranges.end()) {
          c.ranges[t] = it->second;
        }
        if (auto it = cache->channel_stats.find(t); it != cache->channel_stats.end()) {
          c.channel_stats[t] = it->second;
        }
      }
      c.description = fmt::format("{}, {} ranges", data->description,
                                  method == CalibMethod::kMinMax       ? "min/max"
                                  : method == CalibMethod::kPercentile ? "percentile"
                                  : method == CalibMethod::kEntropy    ? "entropy (KL)"
                                                                       : "MSE-optimal");
      c.synthetic = data->synthetic;
      return c;
    };
    if (options.equalize == Toggle::kOn) {
      passes.push_back(make_fold_batchnorm_pass());
      passes.push_back(make_equalize_pass(
          {[calibrate](const Model& model, const std::set<std::string>& tensors) {
            return calibrate(model, tensors).channel_stats;
          }}));
    }
    config.calibrate = std::move(calibrate);
    passes.push_back(make_static_qdq_pass(std::move(config)));
  }
  if (family == ModeFamily::kDynamicInt8) {
    DynamicInt8Config config;
    config.weights = mode == Mode::kInt8    ? DynamicInt8Config::Weights::kInt8
                     : mode == Mode::kUInt8 ? DynamicInt8Config::Weights::kUInt8
                                            : DynamicInt8Config::Weights::kPortable;
    config.qdq = options.format == Format::kQdq;
    config.per_channel = options.per_channel;
    config.reduce_range = options.reduce_range;
    if (!options.op_types.empty()) config.op_types = options.op_types;
    config.filter = options.filter;
    config.precisions = precisions;
    passes.push_back(make_dynamic_int8_pass(std::move(config)));
  }
  if (mode == Mode::kQ4F16 || mode == Mode::kFp16) {
    passes.push_back(make_float16_pass({options.keep_io_types, precisions}));
  }
  if (options.runtime != Runtime::kAny) {
    const RuntimeProfile& p = runtime_profile(options.runtime);
    passes.push_back(make_runtime_check_pass(
        {p.name, options.runtime_defaults, p.standard_ops, p.runtime == Runtime::kQnn}));
  }
  return passes;
}

}  // namespace quantize
