// Internal: the quantization ops ONNX Runtime's contrib versions share (contrib/quantization.cpp).
#pragma once

#include "executor/core/ops.h"

namespace quantize::exec {

void quantize_linear(OpContext& c);
void dequantize_linear(OpContext& c);

// DynamicQuantizeLinear's three outputs for a float tensor.
struct Dynamic {
  Tensor q, scale, zp;
};
Dynamic dynamic_quantize(const OpContext& c, const Tensor& x);

// (A - a_zp)(B - b_zp) in int32, A [..., M, K] (batched) and B [K, N] (b_zp per tensor or per
// column).
Tensor integer_matmul(const OpContext& c, const Tensor& a, const Tensor& b, const Tensor* a_zp,
                      const Tensor* b_zp);

}  // namespace quantize::exec
