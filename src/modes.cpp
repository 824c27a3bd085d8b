#include <fmt/ranges.h>

#include "quantize/error.h"
#include "quantize/options.h"

namespace quantize {
namespace {

constexpr ModeInfo kModes[] = {
    {Mode::kQ4, "q4", "q4",
     "4-bit block-quantized MatMul weights (com.microsoft.MatMulNBits), the rest float32"},
    {Mode::kQ4F16, "q4f16", "q4f16",
     "q4, then the rest of the model in float16 (float32 inputs and outputs kept)"},
    {Mode::kFp16, "fp16", "fp16",
     "float16 weights and activations (float32 inputs and outputs kept)"},
    {Mode::kInt8, "int8", "int8",
     "dynamic INT8: int8 symmetric weights, activations quantized at run time"},
    {Mode::kUInt8, "uint8", "uint8", "dynamic INT8 with uint8 asymmetric weights"},
    {Mode::kQ8, "q8", "quantized",
     "dynamic INT8, portable: uint8 weights if the model has Conv, else int8"},
};

bool is_dynamic_int8(Mode mode) {
  return mode == Mode::kInt8 || mode == Mode::kUInt8 || mode == Mode::kQ8;
}

// --int8 / --uint8 under --static.
bool is_static_int8(const Options& options, Mode mode) {
  return options.static_quant && (mode == Mode::kInt8 || mode == Mode::kUInt8);
}

std::set<std::string> split_list(const std::string& list) {
  std::set<std::string> items;
  size_t start = 0;
  while (start < list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    if (end > start) items.insert(list.substr(start, end - start));
    start = end + 1;
  }
  return items;
}

const std::set<std::string> kDynamicOps = {"MatMul", "Gemm", "Conv", "Gather"};

// --op-types for a dynamic or a static mode; empty: the mode's default (static: every op).
std::set<std::string> split_op_types(const std::string& list, bool static_quant) {
  const std::set<std::string>& known = static_quant ? static_qdq_op_types() : kDynamicOps;
  if (list.empty()) return static_quant ? std::set<std::string>{} : kDynamicOps;
  std::set<std::string> ops = split_list(list);
  for (const auto& op : ops) {
    if (!known.count(op)) {
      fail(ExitCode::kUsage, "--op-types: '{}' is not one of {}", op, fmt::join(known, ", "));
    }
  }
  return ops;
}

std::regex compile(const std::string& pattern, const char* option) {
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    fail(ExitCode::kUsage, "{} '{}' is not a valid regular expression: {}", option, pattern,
         e.what());
  }
}

}  // namespace

std::span<const ModeInfo> all_modes() { return kModes; }

const ModeInfo& mode_info(Mode mode) {
  for (const auto& info : kModes) {
    if (info.mode == mode) return info;
  }
  fail(ExitCode::kInternal, "unknown mode {}", static_cast<int>(mode));
}

void Options::validate() const {
  if (block_size < 16 || block_size > 256 || (block_size & (block_size - 1)) != 0) {
    fail(ExitCode::kUsage, "--block-size {}: must be a power of two from 16 to 256", block_size);
  }
  if (bits != 4 && bits != 8) fail(ExitCode::kUsage, "--bits {}: must be 4 or 8", bits);
  if (accuracy_level < 0 || accuracy_level > 4) {
    fail(ExitCode::kUsage, "--accuracy-level {}: must be 0 to 4", accuracy_level);
  }
  if (!format.empty() && format != "qoperator" && format != "qdq") {
    fail(ExitCode::kUsage, "--format {}: must be qoperator or qdq", format);
  }
  split_op_types(op_types, static_quant);
  if (!static_quant && !calib.empty()) {
    fail(ExitCode::kUsage,
         "--calib is for static quantization: add --static (with --int8 or --uint8)");
  }
  if (static_quant) {
    bool int8_mode = false;
    for (Mode m : modes) {
      if (m == Mode::kQ8) fail(ExitCode::kUsage, "--static goes with --int8 or --uint8, not --q8");
      int8_mode |= m == Mode::kInt8 || m == Mode::kUInt8;
    }
    if (!int8_mode) fail(ExitCode::kUsage, "--static needs --int8 (S8S8) or --uint8 (U8U8)");
    if (calib.empty()) {
      fail(ExitCode::kUsage,
           "--static needs calibration data: --calib PATH (test-data folders, "
           ".npy/.npz), or --calib random to calibrate on synthetic inputs");
    }
    if (calib_method != "minmax" && calib_method != "percentile" && calib_method != "entropy") {
      fail(ExitCode::kUsage, "--calib-method {}: must be minmax, percentile or entropy",
           calib_method);
    }
    if (!(percentile > 50 && percentile <= 100)) {
      fail(ExitCode::kUsage, "--percentile {}: must be above 50 and at most 100", percentile);
    }
  }
  if (!include.empty()) compile(include, "--include");
  if (!exclude.empty()) compile(exclude, "--exclude");
}

std::string Options::suffix(Mode mode) const {
  std::string s = mode_info(mode).suffix;
  if (is_static_int8(*this, mode)) return "static_" + s;
  if (bits == 8 && (mode == Mode::kQ4 || mode == Mode::kQ4F16)) s.replace(0, 2, "nbits8");
  return s;
}

std::string Options::describe(Mode mode) const {
  if (mode == Mode::kFp16) {
    return fmt::format("fp16 keep_io_types={}", keep_io_types);
  }
  if (is_static_int8(*this, mode)) {
    std::string s = fmt::format("{} static format={} {} calib_method={}", mode_info(mode).flag,
                                format.empty() ? "qdq" : format,
                                per_channel ? "per_channel" : "per_tensor", calib_method);
    if (calib_method == "percentile") s += fmt::format(" percentile={}", percentile);
    if (!op_types.empty()) s += fmt::format(" op_types={}", op_types);
    if (!keep_float.empty()) s += fmt::format(" keep_float={}", keep_float);
    if (!include.empty()) s += fmt::format(" include={}", include);
    if (!exclude.empty()) s += fmt::format(" exclude={}", exclude);
    return s;
  }
  if (is_dynamic_int8(mode)) {
    std::string s = fmt::format("{} format={} {} op_types={}", mode_info(mode).flag,
                                format.empty() ? "qoperator" : format,
                                per_channel ? "per_channel" : "per_tensor",
                                op_types.empty() ? "MatMul,Gemm,Conv,Gather" : op_types);
    if (reduce_range) s += " reduce_range";
    if (!include.empty()) s += fmt::format(" include={}", include);
    if (!exclude.empty()) s += fmt::format(" exclude={}", exclude);
    return s;
  }
  std::string s = fmt::format("{} bits={} block_size={} {}", mode_info(mode).flag, bits, block_size,
                              symmetric ? "symmetric" : "asymmetric");
  if (accuracy_level) s += fmt::format(" accuracy_level={}", accuracy_level);
  if (!include.empty()) s += fmt::format(" include={}", include);
  if (!exclude.empty()) s += fmt::format(" exclude={}", exclude);
  if (mode == Mode::kQ4F16) s += fmt::format(" keep_io_types={}", keep_io_types);
  return s;
}

std::vector<std::unique_ptr<Pass>> build_pipeline(Mode mode, const Options& options) {
  std::vector<std::unique_ptr<Pass>> passes;
  if (mode == Mode::kQ4 || mode == Mode::kQ4F16) {
    NBitsConfig config;
    config.bits = options.bits;
    config.block_size = options.block_size;
    config.symmetric = options.symmetric;
    config.accuracy_level = options.accuracy_level;
    config.float16_scales = mode == Mode::kQ4F16;
    if (!options.include.empty()) config.include = compile(options.include, "--include");
    if (!options.exclude.empty()) config.exclude = compile(options.exclude, "--exclude");
    passes.push_back(make_matmul_nbits_pass(std::move(config)));
  }
  if (is_static_int8(options, mode)) {
    StaticQdqConfig config;
    config.signed_activations = mode == Mode::kInt8;
    config.per_channel = options.per_channel;
    config.qoperator = options.format == "qoperator";
    config.op_types = split_op_types(options.op_types, true);
    config.keep_float = split_list(options.keep_float);
    if (!options.include.empty()) config.include = compile(options.include, "--include");
    if (!options.exclude.empty()) config.exclude = compile(options.exclude, "--exclude");
    CalibrationOptions calib;
    calib.method = options.calib_method == "percentile" ? CalibMethod::kPercentile
                   : options.calib_method == "entropy"  ? CalibMethod::kEntropy
                                                        : CalibMethod::kMinMax;
    calib.percentile = options.percentile;
    calib.progress = options.calib_progress;
    config.calibrate = [spec = options.calib, samples = options.calib_samples, calib](
                           const Model& model, const std::set<std::string>& tensors) {
      CalibrationData data = open_calibration_data(spec, model, samples);
      Calibration c;
      c.ranges = quantize::calibrate(model, data, tensors, calib, &c.channel_power);
      c.description = fmt::format("{}, {} ranges", data.description,
                                  calib.method == CalibMethod::kMinMax       ? "min/max"
                                  : calib.method == CalibMethod::kPercentile ? "percentile"
                                                                             : "entropy (KL)");
      c.synthetic = data.synthetic;
      return c;
    };
    passes.push_back(make_static_qdq_pass(std::move(config)));
    return passes;
  }
  if (is_dynamic_int8(mode)) {
    DynamicInt8Config config;
    config.weights = mode == Mode::kInt8    ? DynamicInt8Config::Weights::kInt8
                     : mode == Mode::kUInt8 ? DynamicInt8Config::Weights::kUInt8
                                            : DynamicInt8Config::Weights::kPortable;
    config.format = options.format == "qdq" ? DynamicInt8Config::Format::kQdq
                                            : DynamicInt8Config::Format::kQOperator;
    config.per_channel = options.per_channel;
    config.reduce_range = options.reduce_range;
    config.op_types = split_op_types(options.op_types, false);
    if (!options.include.empty()) config.include = compile(options.include, "--include");
    if (!options.exclude.empty()) config.exclude = compile(options.exclude, "--exclude");
    passes.push_back(make_dynamic_int8_pass(std::move(config)));
  }
  if (mode == Mode::kQ4F16 || mode == Mode::kFp16) {
    passes.push_back(make_float16_pass({options.keep_io_types}));
  }
  return passes;
}

}  // namespace quantize
