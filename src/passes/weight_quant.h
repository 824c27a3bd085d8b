// Weight-only quantization in three parts, each replaceable on its own:
//   policy     which nodes get quantized weights, and at which precision (one precision for all
//              today; per-node overrides are where mixed precision plugs in);
//   quantizer  a float matrix -> block codes, scales and zero points: round to nearest, the
//              error-minimising search (data-free, or weighted by the input's importance), GPTQ;
//   emitter    the ops that consume them (com.microsoft.MatMulNBits today).
// The quantizer runs lazily: the packed bytes are computed when the writer asks for them, and
// written straight into its buffer.
#pragma once

#include <onnx/onnx_pb.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>

#include "graph/graph.h"
#include "kernels/kernels.h"
#include "quantize/options.h"
#include "quantize/pass.h"

namespace quantize {

struct WeightPrecision {
  int bits = 4;
  int block_size = 32;
  bool symmetric = true;
  bool output_projection = false;  // raised to 8 bits as an output projection (for the report)
  BlockFormat format() const { return {bits, block_size, symmetric}; }
};

// Which nodes are quantized, at which precision.
struct WeightPolicy {
  WeightPrecision precision;
  NodeFilter filter;
  // By node_key(): q4 / q8 (int8, uint8: 8 bits too) or float / fp16 (the weight stays float).
  std::map<std::string, Precision> overrides;
  // An output projection (a MatMul/Gemm whose result is a graph output: an LLM's lm_head, a
  // classifier's last layer) gets 8 bits where the others get 4, unless overridden.
  bool output_projection_8bit = false;

  // The node's precision, or why its weight stays float. `feeds_output`: the node's result is
  // an output of the main graph.
  std::variant<WeightPrecision, std::string> decide(const onnx::NodeProto& node,
                                                    bool feeds_output = false) const;
};

// Writes code i of a block in MatMulNBits' blob layout (8 bits: one byte each; 4 bits: two per
// byte, the low nibble first); codes are written in order (a low nibble clears its byte).
inline void put_code(uint8_t* blob, size_t i, int bits, int code) {
  if (bits == 8) {
    blob[i] = static_cast<uint8_t>(code);
  } else if (i % 2 == 0) {
    blob[i / 2] = static_cast<uint8_t>(code);
  } else {
    blob[i / 2] |= static_cast<uint8_t>(code << 4);
  }
}

// Quantizes one column of a weight (its K values along the reduction axis) into
// format.blocks(k) blocks: packed codes (MatMulNBits' blob layout), one scale per block and,
// when asymmetric, one zero point per block (unpacked). `importance` (K values, or nullptr): how
// much each input channel's error counts (the mean square of the activation it multiplies).
class BlockQuantizer {
 public:
  virtual ~BlockQuantizer() = default;
  virtual const char* name() const = 0;
  virtual void quantize(const float* column, size_t k, const BlockFormat& format,
                        const float* importance, uint8_t* packed, float* scales,
                        uint8_t* zero_points) const = 0;
  // The K values a quantized column stands for (affine codes: (code - zero point) * scale).
  virtual void dequantize(const uint8_t* packed, const float* scales, const uint8_t* zero_points,
                          size_t k, const BlockFormat& format, float* y) const;
};
// Round to nearest with the reference tools' scales (kernels.h): the SIMD kernels.
const BlockQuantizer& round_to_nearest();
// Error-minimising scales, starting from round to nearest (weight_quant.cpp).
const BlockQuantizer& scale_search();
// bitsandbytes' 4-bit codebooks, as com.microsoft.MatMulBnb4 reads them (quant_type 0: FP4,
// 1: NF4): each block's scale is its absmax, each code the index of the codebook value nearest
// to x / absmax, two per byte with the first in the high nibble. Symmetric 4-bit formats only.
const BlockQuantizer& bnb4_codebook(int quant_type);
bool is_bnb4(const BlockQuantizer& quantizer);

struct Gram;
struct GptqFactor;
// What calibration measured on a weight's input (data-aware algorithms), shared by the weights
// that read it: the mean square per input channel (the importance-weighted search), and with
// `gram` set, the second-moment matrix GPTQ works from (its factor computed once, on first use).
class InputStatistics {
 public:
  std::vector<float> mean_square;
  std::shared_ptr<const Gram> gram;
  const GptqFactor& factor() const;

 private:
  mutable std::once_flag once_;
  mutable std::shared_ptr<const GptqFactor> factor_;
};
// By input tensor name.
using InputStatisticsMap = std::unordered_map<std::string, std::shared_ptr<const InputStatistics>>;

// How a weight feeds its node: MatMul's B [K, N], or Gemm's B ([N, K] with transB), whose alpha
// multiplies the stored scales; or an embedding table [V, D] read by Gather (rows_are_columns,
// `table`: the packed codes stored 2-D, [V, D * bits / 8], as GatherBlockQuantized reads them).
struct Orientation {
  bool rows_are_columns = false;
  float alpha = 1.0f;
  bool table = false;
  bool flat = false;  // codes and scales stored 1-D, as MatMulBnb4 reads them
  // Codes stored as standard ONNX DequantizeLinear (opset 21) reads them: INT4 / UINT4 (INT8 /
  // UINT8 for 8 bits; signed when symmetric, with no zero point), in the weight's own shape ([K,
  // N], or [N, K] with rows_are_columns), blocks along K; the scales and zero points in that shape
  // with the block count in place of K.
  bool qdq = false;
};

// A quantized weight as initializers of MatMulNBits' layout.
struct PackedWeight {
  std::string packed;       // uint8 [N, blocks, blob] (a table: [N, blocks * blob])
  std::string scales;       // [N, blocks], of `scale_type`
  std::string zero_points;  // uint8 [N, ceil(blocks * bits / 8)], or "" when symmetric
  int64_t k = 0, n = 0;
};

// Adds the quantized form of the float32 2-D weight `ref` to the graph holding it (the bytes are
// computed when written) and describes the change in `change`. scale_type: FLOAT or FLOAT16.
// With `input` (statistics of the input the weight multiplies, K channels): GPTQ when it has a
// Gram matrix (`quantizer` then picks each block's scale), else `quantizer` weighted by its
// mean squares. With `row_scales` (K values, AWQ): row j of the weight is multiplied by
// row_scales[j] before it is quantized (the input must be divided by it; `input` describes the
// divided input).
PackedWeight add_packed_weight(GraphEditor& editor, const ConstantRef& ref, const Orientation& how,
                               const WeightPrecision& precision, int scale_type,
                               const BlockQuantizer& quantizer,
                               std::shared_ptr<const InputStatistics> input, TensorChange& change,
                               std::shared_ptr<const std::vector<float>> row_scales = nullptr);

// Up to `max_columns` columns of a 2-D float32/float16 weight (evenly spaced), as float32: the
// columns one after another, K values each (K, N as `how` reads the weight).
std::vector<float> sample_columns(Model& model, const onnx::TensorProto& weight,
                                  const Orientation& how, int64_t max_columns, int64_t* count);

// Emitter: replaces Gather `node` (axis 0 of a table quantized with Orientation::table) by
// com.microsoft.GatherBlockQuantized reading the packed table.
void emit_gather_block_quantized(GraphEditor& editor, onnx::GraphProto& graph,
                                 onnx::NodeProto& node, const PackedWeight& weight,
                                 const WeightPrecision& precision);

// Emitter: replaces MatMul/Gemm `node` (removed when the editor applies) by MatMulNBits reading
// `a` and the packed weight, with `bias` (an initializer of A's type, or "") as its bias input.
void emit_matmul_nbits(GraphEditor& editor, onnx::GraphProto& graph, onnx::NodeProto& node,
                       const PackedWeight& weight, const WeightPrecision& precision,
                       int accuracy_level, const std::string& bias, const std::string& output);

// Emitter: a DequantizeLinear (axis K, block_size) of a weight quantized with Orientation::qdq,
// added before `before` in `graph`; returns its output, the float weight in its stored shape.
std::string emit_dequantize_weight(GraphEditor& editor, onnx::GraphProto& graph,
                                   const onnx::NodeProto& before, const PackedWeight& weight,
                                   const WeightPrecision& precision, bool rows_are_columns);

// Emitter: replaces MatMul `node` by com.microsoft.MatMulBnb4 reading A and the weight quantized
// by bnb4_codebook(quant_type) with Orientation::flat, writing `output`.
void emit_matmul_bnb4(GraphEditor& editor, onnx::GraphProto& graph, onnx::NodeProto& node,
                      const PackedWeight& weight, const WeightPrecision& precision, int quant_type,
                      const std::string& output);

}  // namespace quantize
