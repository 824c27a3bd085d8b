// The passes, one per file under src/passes/, and the pipeline of each mode.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "calibration/calibrate.h"
#include "passes/weight_quant.h"
#include "quantize/options.h"
#include "quantize/pass.h"

namespace quantize {

// The samples a run has: what calibration (and sensitivity measurements) use, and what the
// result is judged on. Both read lazily, one sample at a time.
struct RunData {
  std::optional<CalibrationData> calibration;
  std::optional<CalibrationData> evaluation;
  // Statistics already measured on `calibration` (the target search builds many candidates of
  // one model: each tensor is calibrated once).
  struct Cache {
    std::set<std::string> measured;                 // "<method>|<tensor>"
    std::unordered_map<std::string, Range> ranges;  // by "<method>|<tensor>"
    std::unordered_map<std::string, ChannelStats> channel_stats;
    // Data-aware weight quantization: by "gram|<tensor>" or "ms|<tensor>" (null: not observed).
    std::unordered_map<std::string, std::shared_ptr<const InputStatistics>> inputs;
  };
  std::shared_ptr<Cache> cache = std::make_shared<Cache>();
};
// From --calib and --eval: with --calib only, every 4th sample is held out for judging (at least
// one) unless options.holdout is off; with options.verify kAlways and no data, synthetic inputs.
RunData open_run_data(const Options& options, const Model& model);

// Per-node precisions that differ from the mode's, by node_key().
using Precisions = std::map<std::string, Precision>;

// The passes of one mode, in order.
std::vector<std::unique_ptr<Pass>> build_pipeline(Mode mode, const Options& options,
                                                  const RunData& data,
                                                  const Precisions& precisions = {});
// Runs them and records provenance in the model's metadata.
std::vector<PassResult> run_passes(Model& model, Mode mode, const Options& options,
                                   const RunData& data, const Precisions& precisions = {});

// Preparation (prepare.cpp): constant folding, and raising the opset where a mode needs it.
struct FoldConfig {
  // (op type, input index) the mode quantizes: constants on their way there may grow (a
  // float16 or int8 weight widened to float32) and are still folded.
  std::set<std::pair<std::string, int>> weight_inputs;
  // Quantization-aware training's fake-quantized weights, QuantizeLinear(float constant) ->
  // DequantizeLinear, are finalized: the QuantizeLinear folded (integers stored), the
  // DequantizeLinear kept. Else the pair folds into the float weight the mode quantizes.
  bool finalize_fake_quant = false;
};
std::unique_ptr<Pass> make_fold_pass(FoldConfig config);

// widen (widen.cpp): float16 / bfloat16 values of the types listed computed in float32, the main
// graph's inputs and outputs keeping their type.
struct WidenConfig {
  std::vector<int> types;  // onnx::TensorProto::FLOAT16, BFLOAT16
};
std::unique_ptr<Pass> make_widen_pass(WidenConfig config);

struct OpsetConfig {
  int minimum = 0;        // below this default-domain opset the model is converted...
  int target = 0;         // ...to this one
  std::string needed_by;  // what needs it, for the report ("DynamicQuantizeLinear")
  // Whether the model has anything the mode would write in the new opset; unset: always.
  std::function<bool(onnx::ModelProto&)> wanted = {};
};
std::unique_ptr<Pass> make_opset_pass(OpsetConfig config);

struct NBitsConfig {
  WeightPolicy policy;  // which nodes, at which precision
  int accuracy_level = 0;
  bool float16_scales = false;  // q4f16: scales written as float16 for a float16 A
  const BlockQuantizer* quantizer = &round_to_nearest();
  // Data-aware algorithms: statistics of the inputs named (the MatMuls' A), from calibration;
  // unset: data-free.
  std::function<InputStatisticsMap(const Model&, const std::set<std::string>&)> statistics;
  // AWQ before quantizing (needs statistics with Gram matrices): per input, the weights' rows
  // scaled by s and the input divided by it; then `quantizer` weighted by the scaled input's
  // mean squares, or with `awq_gptq` GPTQ on the scaled input's Gram matrix.
  bool awq = false;
  bool awq_gptq = false;
  // 4-bit MatMul weights as com.microsoft.MatMulBnb4 with this quant_type (0: FP4, 1: NF4),
  // their codes from bnb4_codebook; -1: MatMulNBits. Tables and 8-bit weights keep their form.
  int bnb4 = -1;
  // Standard ONNX instead (--format qdq): each weight an INT4/INT8 DequantizeLinear with
  // block_size (opset 21) feeding the MatMul, Gemm or Gather, which stay.
  bool qdq = false;
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
  Precisions precisions;  // float / fp16: the node stays float
};
std::unique_ptr<Pass> make_dynamic_int8_pass(DynamicInt8Config config);

// Ranges of the tensors a static pass asks for, from the float model (calibration).
struct Calibration {
  std::unordered_map<std::string, Range> ranges;
  std::unordered_map<std::string, ChannelStats> channel_stats;  // along axis 1
  std::string description;                                      // what the samples were
  bool synthetic = false;
};
using Calibrator =
    std::function<Calibration(const Model& model, const std::set<std::string>& tensors)>;

struct StaticQdqConfig {
  bool signed_activations = true;      // int8 / int16 activations, else uint8 / uint16
  bool symmetric_activations = false;  // signed, zero point 0, range +-max|x| (TensorRT)
  bool signed_weights = true;          // symmetric int8 weights, else asymmetric uint8
  bool wide_activations = false;       // 16-bit activations for every node (A16W8) unless planned
  bool per_channel = false;
  bool bias_correction = false;    // Conv/Gemm biases absorb the weights' rounding shift
  bool float_fallback = true;      // a Conv whose 8-bit input buries an output channel stays float
  bool float_results = true;       // what only moves a result to a graph output stays float
  bool qoperator = false;          // QLinearConv / QLinearMatMul where the pattern allows
  std::set<std::string> op_types;  // empty: every op the pass knows
  std::set<std::string> keep_float;
  NodeFilter filter;
  Precisions precisions;  // float / fp16: the node stays float; a16: 16-bit activations
  Calibrator calibrate;
};
std::unique_ptr<Pass> make_static_qdq_pass(StaticQdqConfig config);

// Last, for --target NAME: reports what the profile set, and (standard_ops) warns of every op
// the output holds outside the standard ONNX domains (with `ms_qdq`: but com.microsoft's 16-bit
// QuantizeLinear / DequantizeLinear, which QNN takes).
struct RuntimeCheckConfig {
  std::string target;
  std::vector<std::string> defaults;  // what the profile set ("--format qdq", ...)
  bool standard_ops = false;
  bool ms_qdq = false;
};
std::unique_ptr<Pass> make_runtime_check_pass(RuntimeCheckConfig config);

// BatchNormalization after a Conv folded into the Conv's filter and bias (main graph).
std::unique_ptr<Pass> make_fold_batchnorm_pass();

// Cross-layer equalization (equalize.cpp): Conv channels rescaled so each activation's channels
// span similar ranges, the float model's outputs unchanged; from per-channel statistics (axis 1)
// of the named tensors on the calibration data.
struct EqualizeConfig {
  std::function<std::unordered_map<std::string, ChannelStats>(const Model&,
                                                              const std::set<std::string>&)>
      channel_stats;
};
std::unique_ptr<Pass> make_equalize_pass(EqualizeConfig config);

struct Float16Config {
  bool keep_io_types = true;
  Precisions precisions;  // float: the node stays float32
};
std::unique_ptr<Pass> make_float16_pass(Float16Config config);

}  // namespace quantize
