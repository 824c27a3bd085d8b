// The passes, one per file under src/passes/, and the pipeline of each mode.
#pragma once

#include <functional>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "calibration/calibrate.h"
#include "quantize/options.h"
#include "quantize/pass.h"

namespace quantize {

// The passes of one mode, in order.
std::vector<std::unique_ptr<Pass>> build_pipeline(Mode mode, const Options& options);

struct NBitsConfig {
  int bits = 4;
  int block_size = 32;
  bool symmetric = true;
  int accuracy_level = 0;
  bool float16_scales = false;  // q4f16: scales written as float16 for a float16 A
  NodeFilter filter;
};
std::unique_ptr<Pass> make_matmul_nbits_pass(NBitsConfig config);

struct DynamicInt8Config {
  enum class Weights { kInt8, kUInt8, kPortable };  // kPortable: uint8 if the model has Conv
  Weights weights = Weights::kInt8;
  bool qdq = false;  // int8 weights + DequantizeLinear feeding the float ops (else integer ops)
  bool per_channel = false;
  bool reduce_range = false;
  std::set<std::string> op_types = dynamic_int8_op_types();
  NodeFilter filter;
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
  NodeFilter filter;
  Calibrator calibrate;
};
std::unique_ptr<Pass> make_static_qdq_pass(StaticQdqConfig config);

struct Float16Config {
  bool keep_io_types = true;
};
std::unique_ptr<Pass> make_float16_pass(Float16Config config);

}  // namespace quantize
