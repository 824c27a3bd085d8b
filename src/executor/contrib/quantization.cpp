// ONNX Runtime's contrib quantization ops (domain com.microsoft): MatMulNBits, MatMulBnb4,
// DynamicQuantizeMatMul, QuantizeLinear and DequantizeLinear.
#include <algorithm>
#include <cmath>
#include <vector>

#include "executor/core/ops.h"
#include "executor/ops/quantize.h"
#include "kernels/kernels.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

// com.microsoft.MatMulNBits with float32 A and scales: B is dequantized column by column.
void matmul_nbits(OpContext& c) {
  const Tensor& a = c.input(0);
  require_float(c, a, "A");
  require_float(c, c.input(2), "scales");
  if (c.has_input(4)) c.fail("g_idx is not supported");
  const int64_t k = c.attr_int("K", 0), n = c.attr_int("N", 0);
  const BlockFormat fmt{static_cast<int>(c.attr_int("bits", 4)),
                        static_cast<int>(c.attr_int("block_size", 0)), !c.has_input(3)};
  if ((fmt.bits != 4 && fmt.bits != 8) || fmt.block_size < 16 || k <= 0 || n <= 0 || a.rank() < 1 ||
      a.shape().back() != k) {
    c.fail("unsupported attributes (bits {}, block_size {}, K {}, N {})", fmt.bits, fmt.block_size,
           k, n);
  }
  if (n > (int64_t{1} << 31) / k) c.fail("N x K = {} x {} is too large", n, k);
  const int64_t nb = static_cast<int64_t>(fmt.blocks(k)),
                blob = static_cast<int64_t>(fmt.blob_bytes());
  // A file's initializers, not trusted: every read below stays inside them.
  if (c.input(1).bytes() != static_cast<size_t>(n * nb * blob) || c.input(2).size() != n * nb ||
      (!fmt.symmetric &&
       c.input(3).bytes() != static_cast<size_t>(n * ((nb * fmt.bits + 7) / 8))) ||
      (c.has_input(5) && c.input(5).size() != n)) {
    c.fail("B ({} bytes), scales ({}), zero points or bias do not fit N {} x {} blocks of {} bits",
           c.input(1).bytes(), c.input(2).size(), n, nb, fmt.bits);
  }
  const uint8_t* packed = c.input(1).data<uint8_t>();
  const float* scales = c.input(2).data<float>();
  std::vector<float> wt(static_cast<size_t>(n * k));  // [N, K]
  std::vector<uint8_t> zp(static_cast<size_t>(nb));
  for (int64_t col = 0; col < n; ++col) {
    if (!fmt.symmetric) {
      const Tensor& z = c.input(3);
      if (z.dtype() != TensorProto::UINT8)
        c.fail("zero_points of data type {} are not supported", z.dtype());
      const int64_t row = (nb * fmt.bits + 7) / 8;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t byte = z.data<uint8_t>()[col * row + b * fmt.bits / 8];
        zp[b] = fmt.bits == 8 ? byte : (byte >> (4 * (b & 1))) & 15;
      }
    }
    kernels().dequantize_blocks(packed + col * nb * blob, scales + col * nb, zp.data(), k, fmt,
                                wt.data() + col * k);
  }
  std::vector<int64_t> shape = a.shape();
  shape.back() = n;
  const int64_t m = a.size() / k;
  Tensor out(TensorProto::FLOAT, shape);
  sgemm(true, m, n, k, a.data<float>(), wt.data(), out.data<float>());
  if (c.has_input(5)) {
    require_float(c, c.input(5), "bias");
    float* y = out.data<float>();
    for (int64_t i = 0; i < m * n; ++i) y[i] += c.input(5).data<float>()[i % n];
  }
  c.output(0) = std::move(out);
}

// com.microsoft.MatMulBnb4 with float32 A and absmax: B is the [N, K] weight flattened, two
// codes per byte (the even index in the high nibble), each a codebook value times its block's
// absmax (blocks over the flattened weight).
void matmul_bnb4(OpContext& c) {
  const Tensor& a = c.input(0);
  require_float(c, a, "A");
  require_float(c, c.input(2), "absmax");
  const int64_t k = c.attr_int("K", 0), n = c.attr_int("N", 0), bs = c.attr_int("block_size", 0);
  const int64_t type = c.attr_int("quant_type", 1);
  if (k <= 0 || n <= 0 || bs < 16 || (type != 0 && type != 1) || a.rank() < 1 ||
      a.shape().back() != k || c.attr_int("transB", 1) != 1 || c.attr_int("training_mode", 0)) {
    c.fail("unsupported attributes (K {}, N {}, block_size {}, quant_type {})", k, n, bs, type);
  }
  if (n > (int64_t{1} << 31) / k) c.fail("N x K = {} x {} is too large", n, k);
  const int64_t count = n * k;
  if (c.input(1).bytes() != static_cast<size_t>((count + 1) / 2) ||
      c.input(2).size() != (count + bs - 1) / bs) {
    c.fail("B ({} bytes) or absmax ({} values) do not hold N x K = {} codes in blocks of {}",
           c.input(1).bytes(), c.input(2).size(), count, bs);
  }
  const uint8_t* packed = c.input(1).data<uint8_t>();
  const float* absmax = c.input(2).data<float>();
  const float* values = kBnb4Codebooks[type];
  std::vector<float> wt(static_cast<size_t>(count));  // [N, K]
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t byte = packed[i / 2];
    wt[i] = values[i % 2 == 0 ? byte >> 4 : byte & 15] * absmax[i / bs];
  }
  std::vector<int64_t> shape = a.shape();
  shape.back() = n;
  const int64_t m = a.size() / k;
  Tensor out(TensorProto::FLOAT, shape);
  sgemm(true, m, n, k, a.data<float>(), wt.data(), out.data<float>());
  c.output(0) = std::move(out);
}

// com.microsoft.DynamicQuantizeMatMul: DynamicQuantizeLinear(A), MatMulInteger, scaled, + bias.
void dynamic_quantize_matmul(OpContext& c) {
  Dynamic a = dynamic_quantize(c, c.input(0));
  const Tensor& b_scale = c.input(2);
  Tensor y = integer_matmul(c, a.q, c.input(1), &a.zp, c.has_input(3) ? &c.input(3) : nullptr);
  const int64_t n = y.rank() > 0 ? y.shape().back() : 1;
  if ((b_scale.size() != 1 && b_scale.size() != n) || (c.has_input(4) && c.input(4).size() != n))
    c.fail("{} B scales or a bias of {} values for N = {}", b_scale.size(),
           c.has_input(4) ? c.input(4).size() : 0, n);
  Tensor out(TensorProto::FLOAT, y.shape());
  for (int64_t i = 0; i < y.size(); ++i) {
    const float s =
        a.scale.data<float>()[0] * b_scale.data<float>()[b_scale.size() > 1 ? i % n : 0];
    out.data<float>()[i] = static_cast<float>(y.data<int32_t>()[i]) * s +
                           (c.has_input(4) ? c.input(4).data<float>()[i % n] : 0.0f);
  }
  c.output(0) = std::move(out);
}

}  // namespace

void register_contrib_quantization(Registry& r) {
  r["com.microsoft.MatMulNBits"] = matmul_nbits;
  r["com.microsoft.MatMulBnb4"] = matmul_bnb4;
  r["com.microsoft.DynamicQuantizeMatMul"] = dynamic_quantize_matmul;
  // ONNX Runtime's contrib versions (any opset, per-axis): the same formulas.
  r["com.microsoft.QuantizeLinear"] = quantize_linear;
  r["com.microsoft.DequantizeLinear"] = dequantize_linear;
}

}  // namespace quantize::exec
