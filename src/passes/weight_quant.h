// Weight-only quantization in three parts, each replaceable on its own:
//   policy     which nodes get quantized weights, and at which precision (one precision for all
//              today; per-node overrides are where mixed precision plugs in);
//   quantizer  a float matrix -> block codes, scales and zero points (round-to-nearest today);
//   emitter    the ops that consume them (com.microsoft.MatMulNBits today).
// The quantizer runs lazily: the packed bytes are computed when the writer asks for them, and
// written straight into its buffer.
#pragma once

#include <onnx/onnx_pb.h>

#include <map>
#include <optional>
#include <string>
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
  BlockFormat format() const { return {bits, block_size, symmetric}; }
};

// Which nodes are quantized, at which precision.
struct WeightPolicy {
  WeightPrecision precision;
  NodeFilter filter;
  // By node_key(): q4 / q8 (int8, uint8: 8 bits too) or float / fp16 (the weight stays float).
  std::map<std::string, Precision> overrides;

  // The node's precision, or why its weight stays float.
  std::variant<WeightPrecision, std::string> decide(const onnx::NodeProto& node) const;
};

// Quantizes one column of a weight (its K values along the reduction axis) into
// format.blocks(k) blocks: packed codes (MatMulNBits' blob layout), one scale per block and,
// when asymmetric, one zero point per block (unpacked).
class BlockQuantizer {
 public:
  virtual ~BlockQuantizer() = default;
  virtual const char* name() const = 0;
  virtual void quantize(const float* column, size_t k, const BlockFormat& format, uint8_t* packed,
                        float* scales, uint8_t* zero_points) const = 0;
};
// Round to nearest with the reference tools' scales (kernels.h): the SIMD kernels.
const BlockQuantizer& round_to_nearest();
// Data-free error-minimising scales, starting from round to nearest (weight_quant.cpp).
const BlockQuantizer& scale_search();

// How a weight feeds its node: MatMul's B [K, N], or Gemm's B ([N, K] with transB), whose alpha
// multiplies the stored scales.
struct Orientation {
  bool rows_are_columns = false;
  float alpha = 1.0f;
};

// A quantized weight as initializers of MatMulNBits' layout.
struct PackedWeight {
  std::string packed;       // uint8 [N, blocks, blob]
  std::string scales;       // [N, blocks], of `scale_type`
  std::string zero_points;  // uint8 [N, ceil(blocks * bits / 8)], or "" when symmetric
  int64_t k = 0, n = 0;
};

// Adds the quantized form of the float32 2-D weight `ref` to the graph holding it (the bytes are
// computed when written) and describes the change in `change`. scale_type: FLOAT or FLOAT16.
PackedWeight add_packed_weight(GraphEditor& editor, const ConstantRef& ref, const Orientation& how,
                               const WeightPrecision& precision, int scale_type,
                               const BlockQuantizer& quantizer, TensorChange& change);

// Emitter: replaces MatMul/Gemm `node` (removed when the editor applies) by MatMulNBits reading
// `a` and the packed weight, with `bias` (an initializer of A's type, or "") as its bias input.
void emit_matmul_nbits(GraphEditor& editor, onnx::GraphProto& graph, onnx::NodeProto& node,
                       const PackedWeight& weight, const WeightPrecision& precision,
                       int accuracy_level, const std::string& bias, const std::string& output);

}  // namespace quantize
