// Modes and options as typed data. One row per mode drives --help, file names and the pipeline;
// the command line is parsed once into Options (enums, sets, compiled patterns), checked in one
// validate(). Nothing downstream parses an option from a string again.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <regex>
#include <set>
#include <span>
#include <string>
#include <vector>

namespace quantize {

// One output per mode. Static (calibrated) and dynamic INT8 are different modes, not a flag.
enum class Mode { kQ4, kQ4F16, kFp16, kInt8, kUInt8, kQ8, kStaticInt8, kStaticUInt8, kNf4, kFp4 };

enum class ModeFamily { kWeightOnly, kFloat16, kDynamicInt8, kStaticInt8 };

struct ModeInfo {
  Mode mode;
  ModeFamily family;
  const char* flag;    // command-line flag without dashes (static modes: with --static)
  const char* suffix;  // output file name: <stem>_<suffix>.onnx
  const char* help;    // one line for --help
};

std::span<const ModeInfo> all_modes();
const ModeInfo& mode_info(Mode mode);
// The static form of --int8 / --uint8 (other modes have none: nullopt).
std::optional<Mode> static_mode(Mode dynamic);

// kAuto: min/max or mse, whichever measures better on the calibration share (with the
// refinements, see choose_refinements in run.cpp); min/max where nothing is measured.
enum class CalibMethod { kMinMax, kPercentile, kEntropy, kMse, kAuto };
const char* calib_method_name(CalibMethod method);  // as --calib-method spells it
// Static INT8 activation type (--activations): the mode's (int8 for --int8, uint8 for --uint8), or
// forced; 16 bits keep 8-bit weights (A16W8).
enum class ActivationType { kDefault, kInt8, kUInt8, kInt16, kUInt16 };
// How 4/8-bit block weights get their codes (--algo): round to nearest (the reference tools'
// bytes), the data-free error-minimising scale search, and with calibration data (--calib) the
// search weighted by each input channel's mean square (imatrix) or GPTQ. kAuto: GPTQ with
// --calib, else the search (Options::weight_algorithm()).
enum class WeightAlgo { kAuto, kRtn, kSearch, kImatrix, kGptq, kAwq, kAwqGptq };
const char* weight_algo_name(WeightAlgo algo);  // as --algo spells it
bool needs_calibration(WeightAlgo algo);        // a data-aware algorithm
// A refinement the tool applies when it measures a gain (kAuto), always, or never.
enum class Toggle { kAuto, kOn, kOff };
// INT8 output form: the mode's default (dynamic: QOperator, static: QDQ), or forced.
enum class Format { kDefault, kQOperator, kQdq };

// A node's precision where it differs from its mode's (--tensor-type, precision plans): float
// (float32), fp16, int8 / uint8 (8-bit), a16 (static INT8 with 16-bit activations), q4 / q8
// (MatMulNBits with 4- or 8-bit weights).
enum class Precision { kFloat, kFp16, kInt8, kUInt8, kA16, kQ4, kQ8 };
const char* precision_name(Precision precision);
// Throws Error(kUsage) naming `what` for an unknown name.
Precision parse_precision(const std::string& name, const std::string& what);

// --tensor-type REGEX=TYPE: nodes whose name, or whose weight's name, matches get TYPE.
struct PrecisionRule {
  std::string pattern;
  std::regex regex;
  Precision precision = Precision::kFloat;
  static PrecisionRule parse(const std::string& text);  // "REGEX=TYPE"; Error(kUsage)
};

// --target NAME: the runtime the output is for. A profile sets the defaults the flags leave open,
// refuses what its runtime cannot run, and checks the output's ops (RuntimeProfile rows in
// modes.cpp; kAny: no profile, today's defaults).
enum class Runtime { kAny, kOrtCpu, kOrtWeb, kQnn, kTensorRt, kGeneric };
struct RuntimeProfile {
  Runtime runtime;
  const char* name;                  // as --target spells it
  const char* help;                  // one line for --help
  Format format = Format::kDefault;  // the form written where the flags do not say
  ActivationType activations = ActivationType::kDefault;  // static INT8, where not given
  bool per_channel = false;                    // static and dynamic INT8 weights per channel
  bool symmetric_activations = false;          // static INT8: zero point 0
  bool standard_ops = false;                   // no com.microsoft op but the 16-bit Q/DQ pair
  bool static_only = false;                    // dynamic INT8 refused
  std::set<std::string> static_op_types = {};  // ops static INT8 quantizes (empty: all it knows)
  bool quantized_results = false;  // static INT8: what moves a result to an output is quantized too
};
std::span<const RuntimeProfile> runtime_profiles();
const RuntimeProfile& runtime_profile(Runtime runtime);
// The profile named `name`, or nullptr.
const RuntimeProfile* find_runtime(const std::string& name);

// --target [OUTPUT:]METRIC=VALUE: what the quantized model must reach on the judged data; the
// run raises precision node by node until it does. METRIC: cosine, top1 (at least VALUE), snr
// (dB, at least), kl (at most); over every output it applies to, or OUTPUT's.
struct Target {
  std::string output;
  std::string metric;
  double value = 0;
  static Target parse(const std::string& text);  // Error(kUsage) naming the flag
  std::string describe() const;                  // "cosine >= 0.99", "scores: kl <= 0.05"
};

// --include / --exclude: regular expressions over node names, compiled once.
class NodeFilter {
 public:
  NodeFilter() = default;
  // Throws Error(kUsage) naming the option when a pattern does not compile.
  NodeFilter(std::string include, std::string exclude);
  // Empty when the node's name passes, else why not ("not matched by --include", ...).
  std::string why_not(const std::string& node_name) const;
  const std::string& include() const { return include_; }
  const std::string& exclude() const { return exclude_; }

 private:
  std::string include_, exclude_;
  std::optional<std::regex> include_re_, exclude_re_;
};

struct Options {
  std::vector<Mode> modes;
  // MatMulNBits (--q4, --q4f16)
  int block_size = 0;  // 0: the mode's own (block_size_for)
  bool symmetric = true;
  int bits = 4;
  int accuracy_level = 0;
  WeightAlgo weight_algo = WeightAlgo::kAuto;
  // Bits of an output projection's weight (a MatMul/Gemm whose result is a graph output: an LLM's
  // lm_head), 4 or 8; --tensor-type still decides per node.
  int output_projection_bits = 8;
  NodeFilter filter;
  // float16
  bool keep_io_types = true;  // graph inputs and outputs stay float32
  // INT8
  bool per_channel = false;
  bool reduce_range = false;
  std::set<std::string> op_types;  // empty: the mode's default
  Format format = Format::kDefault;
  // static INT8
  std::string calib;  // --calib PATH | random
  size_t calib_samples = 0;
  CalibMethod calib_method = CalibMethod::kMinMax;
  double percentile = 99.999;
  ActivationType activations = ActivationType::kDefault;
  Toggle equalize = Toggle::kAuto;         // cross-layer equalization (Conv nets)
  Toggle bias_correction = Toggle::kAuto;  // weight rounding's mean shift taken out of the bias
  std::set<std::string> keep_float;        // tensor names
  bool float_fallback = true;  // a Conv whose 8-bit input would bury an output channel stays float
  bool float_results = true;   // what only moves a result to a graph output stays float
  std::function<void(size_t, size_t)> calib_progress;  // samples done / total
  std::function<void(int)> search_progress;            // --target: candidate models judged
  // verification: the quantized model judged against the float model on data it was not
  // calibrated on
  std::string eval;     // --eval PATH: the samples to judge on (formats as --calib)
  bool holdout = true;  // with --calib only: judge on every 4th sample, calibrate on the rest
  enum class Verify { kAuto, kAlways, kNever };
  Verify verify = Verify::kAuto;  // kAuto: when there is data; kAlways: else on synthetic inputs
  // precision overrides, by hand or replayed from a plan (applied in that order: a rule wins)
  std::vector<PrecisionRule> tensor_types;  // --tensor-type
  std::string plan;             // --plan FILE: replay its per-node precisions exactly (no search)
  std::string plan_out;         // --plan-out FILE: write the per-node decisions of this run
  std::vector<Target> targets;  // --target: accuracy-driven mixed precision
  Runtime runtime = Runtime::kAny;  // --target NAME
  bool static_open = false;         // --static without --int8 / --uint8: the --target profile picks
  bool symmetric_activations = false;         // static INT8 activations with zero point 0
  std::vector<std::string> runtime_defaults;  // what apply_runtime() set ("--format qdq", ...)
  // preparation
  bool fold_constants = true;  // fold constant subexpressions (weights behind Reshape, Cast, ...)
  bool convert_opset = true;   // raise the opset where a mode needs a newer one

  // Sets what the --target profile decides and the flags left open (format, activations, per
  // channel, op types), and lists what it set in runtime_defaults, for the report.
  void apply_runtime();
  // Throws Error(kUsage) naming the bad option.
  void validate() const;
  // weight_algo, kAuto resolved.
  WeightAlgo weight_algorithm() const;
  // Weights per block under `mode`: --block-size, else 64 for --nf4 / --fp4 (bitsandbytes'),
  // else 32.
  int block_size_for(Mode mode) const;
  // Output file name suffix of a mode under these options ("q4", or "nbits8" for --bits 8).
  std::string suffix(Mode mode) const;
  // The options that shape the output, for the report and the model's metadata.
  std::string describe(Mode mode) const;

 private:
  std::string describe_mode(Mode mode) const;
};

// Op types the dynamic and the static INT8 modes can quantize (--op-types).
const std::set<std::string>& dynamic_int8_op_types();
const std::set<std::string>& static_int8_op_types();

}  // namespace quantize
