// Modes and options as typed data. One row per mode drives --help, file names and the pipeline;
// the command-line flags map one to one onto Options, checked in one validate().
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "quantize/calibrate.h"
#include "quantize/pass.h"

namespace quantize {

enum class Mode { kQ4, kQ4F16, kFp16, kInt8, kUInt8, kQ8 };

struct ModeInfo {
  Mode mode;
  const char* flag;    // command-line flag without dashes
  const char* suffix;  // output file name: <stem>_<suffix>.onnx
  const char* help;    // one line for --help
};

std::span<const ModeInfo> all_modes();
const ModeInfo& mode_info(Mode mode);

struct Options {
  std::vector<Mode> modes;
  // MatMulNBits
  int block_size = 32;
  bool symmetric = true;
  int bits = 4;
  int accuracy_level = 0;
  std::string include;  // regexes over node names; empty: no filter
  std::string exclude;
  // float16
  bool keep_io_types = true;  // graph inputs and outputs stay float32
  // dynamic INT8
  bool per_channel = false;
  bool reduce_range = false;
  std::string op_types;  // comma-separated; empty: the mode's default
  std::string format;    // "qoperator" or "qdq"; empty: the mode's default (dynamic: qoperator)
  // static INT8 (--static with --int8 / --uint8)
  bool static_quant = false;
  std::string calib;  // --calib PATH | random
  size_t calib_samples = 0;
  std::string calib_method = "minmax";
  double percentile = 99.999;
  std::string keep_float;                              // comma-separated tensor names
  std::function<void(size_t, size_t)> calib_progress;  // samples done / total

  // Throws Error(kUsage) naming the bad option.
  void validate() const;
  // Output file name suffix of a mode under these options ("q4", or "nbits8" for --bits 8).
  std::string suffix(Mode mode) const;
  // The options that shape the output, for the report and the model's metadata.
  std::string describe(Mode mode) const;
};

// The passes of one mode, in order.
std::vector<std::unique_ptr<Pass>> build_pipeline(Mode mode, const Options& options);

// Pass factories (one pass per file under src/passes/).
struct NBitsConfig {
  int bits = 4;
  int block_size = 32;
  bool symmetric = true;
  int accuracy_level = 0;
  bool float16_scales = false;  // q4f16: scales written as float16 for a float16 A
  std::optional<std::regex> include, exclude;
};
std::unique_ptr<Pass> make_matmul_nbits_pass(NBitsConfig config);

struct DynamicInt8Config {
  enum class Weights { kInt8, kUInt8, kPortable };  // kPortable: uint8 if the model has Conv
  enum class Format { kQOperator, kQdq };
  Weights weights = Weights::kInt8;
  Format format = Format::kQOperator;
  bool per_channel = false;
  bool reduce_range = false;
  std::set<std::string> op_types = {"MatMul", "Gemm", "Conv", "Gather"};
  std::optional<std::regex> include, exclude;
};
std::unique_ptr<Pass> make_dynamic_int8_pass(DynamicInt8Config config);

// Ranges of the tensors a static pass asks for, from the float model (calibration).
struct Calibration {
  std::unordered_map<std::string, Range> ranges;
  std::unordered_map<std::string, std::vector<double>> channel_power;  // mean square per channel
  std::string description;                                             // what the samples were
  bool synthetic = false;
};
using Calibrator =
    std::function<Calibration(const Model& model, const std::set<std::string>& tensors)>;

struct StaticQdqConfig {
  bool signed_activations = true;  // int8 activations and symmetric int8 weights (S8S8), else U8U8
  bool per_channel = false;
  bool qoperator = false;          // QLinearConv / QLinearMatMul where the pattern allows
  std::set<std::string> op_types;  // empty: every op the pass knows
  std::set<std::string> keep_float;
  std::optional<std::regex> include, exclude;
  Calibrator calibrate;
};
std::unique_ptr<Pass> make_static_qdq_pass(StaticQdqConfig config);
// Op types the static pass quantizes.
const std::set<std::string>& static_qdq_op_types();

struct Float16Config {
  bool keep_io_types = true;
};
std::unique_ptr<Pass> make_float16_pass(Float16Config config);

}  // namespace quantize

namespace quantize {

// Runs the mode's passes over the model and records provenance (tool version, mode, options) in
// its metadata_props.
std::vector<PassResult> run_pipeline(Model& model, Mode mode, const Options& options);

}  // namespace quantize
