// Quantize / dequantize kernels. The scalar versions in src/kernels/kernels_scalar.cpp are the
// specification; every ISA-specific version produces byte-identical output for every input,
// including NaN, +-inf, +-0, rounding ties and saturation.
//
// Block quantization of one row x[0..k) into nb = ceil(k / block) blocks; elements past k are zero.
// Notation: max_ps(a, b) = a > b ? a : b and min_ps(a, b) = a < b ? a : b (x86 MAXPS/MINPS: the
// second operand wins when either is NaN); rne() = round half to even.
//   mx = max_ps over the block starting from +0, mn = min_ps likewise (NaN is ignored).
//   symmetric, L = 2^(bits-1) (8 or 128):
//     m = mx >= -mn ? mx : mn;  scale = m / -L;  inv = scale != 0 ? 1 / scale : 0
//     q = (int)rne(min_ps(max_ps(x * inv, -L), L - 1)) + L
//   asymmetric, Q = 2^bits - 1 (15 or 255):
//     scale = (mx - mn) / Q, replaced by 1 when it is 0;  inv = 1 / scale
//     zp = (int)rne(min_ps(max_ps(-mn / scale, 0), Q))
//     q = (int)rne(min_ps(max_ps(x * inv, -zp), Q - zp)) + zp
// Dequantization: w = (q - zp) * scale, zp = L when symmetric.
//
// 8-bit affine quantization (dynamic INT8 weights), per tensor or per channel. From the running
// mn/mx (as above, from +0, NaN ignored) of the values sharing parameters:
//   signed (int8, symmetric):  Q = 127 (64 with reduce_range), qmin = -Q;
//     scale = max(mx, -mn) / Q, replaced by 1 when it is 0;  zp = 0
//   unsigned (uint8):          Q = 255 (127 with reduce_range), qmin = 0;
//     scale = (mx - mn) / Q, replaced by 1 when it is 0;
//     zp = (int)rne(min_ps(max_ps(-mn / scale, 0), Q))
//   inv = 1 / scale;  q = (int)rne(min_ps(max_ps(x * inv, qmin - zp), Q - zp)) + zp,
//   stored as its low byte (two's complement for int8).
//
// Weighted code sums (one candidate of the 4-bit scale search, src/passes/weight_quant.cpp): for
// j < n, d_j = rne(min_ps(max_ps(x_j * inv, lo), hi)) and, in double,
//   sxd = sum double(wx_j) * d_j,  sdd = sum (double(w_j) * d_j) * d_j,
// each added into 8 partial sums from +0 (element j into partial j mod 8, in order of j), which
// are combined as ((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7)). lo <= 0 <= hi, |lo|, |hi|
// <= 2^22. A NaN result's sign and payload are unspecified (the search never uses one).
//
// float32 -> float16: IEEE round to nearest even, except that a finite value whose magnitude
// exceeds 65504 becomes +-65504 (clamped, never inf). inf stays inf; NaN becomes a quiet NaN
// with the sign and the top mantissa bits kept (what F16C's VCVTPS2PH does).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace quantize {

enum class Isa { kScalar, kAvx2, kAvx512 };

const char* isa_name(Isa isa);

struct BlockFormat {
  int bits = 4;         // 4 or 8
  int block_size = 32;  // power of two, 16..256
  bool symmetric = true;

  size_t blocks(size_t k) const { return (k + block_size - 1) / block_size; }
  size_t blob_bytes() const { return static_cast<size_t>(block_size) * bits / 8; }
};

struct AffineParams {
  float scale = 1, inv = 1, lo = 0, hi = 0;  // lo = qmin - zp, hi = Q - zp
  int32_t zp = 0;
};
AffineParams affine_params(float mn, float mx, bool is_signed, bool reduce_range);

// Per-column parameters, one entry per column (structure of arrays).
struct AffineColumns {
  const float* inv;
  const float* lo;
  const float* hi;
  const int32_t* zp;
};

struct Kernels {
  Isa isa;
  // Quantizes x[0..k) into fmt.blocks(k) blocks: packed (blob_bytes() per block; 4 bits: element
  // 2i in the low nibble of byte i), scales (one float per block) and, when asymmetric,
  // zero_points (one byte per block, unpacked). zero_points may be null when symmetric.
  void (*quantize_blocks)(const float* x, size_t k, const BlockFormat& fmt, uint8_t* packed,
                          float* scales, uint8_t* zero_points);
  // Inverse of quantize_blocks for the first k elements.
  void (*dequantize_blocks)(const uint8_t* packed, const float* scales, const uint8_t* zero_points,
                            size_t k, const BlockFormat& fmt, float* y);
  // Running min and max from +0 of x[0..n), or of each column of a row-major [rows, cols]
  // matrix (mn and mx then hold cols values).
  void (*minmax)(const float* x, size_t n, float* mn, float* mx);
  void (*minmax_columns)(const float* x, size_t rows, size_t cols, float* mn, float* mx);
  // q for x[0..n) with one parameter set, or for a [rows, cols] matrix with one per column.
  void (*quantize_affine)(const float* x, size_t n, const AffineParams& p, uint8_t* q);
  void (*quantize_affine_columns)(const float* x, size_t rows, size_t cols, const AffineColumns& p,
                                  uint8_t* q);
  void (*f32_to_f16)(const float* x, size_t n, uint16_t* y);
  void (*f16_to_f32)(const uint16_t* x, size_t n, float* y);
  // sxd and sdd of the codes x[0..n) take at 1 / scale = inv, clamped to [lo, hi] (see above).
  void (*code_sums)(const float* x, const float* wx, const float* w, size_t n, float inv, float lo,
                    float hi, double* sxd, double* sdd);
};

// The kernels of one ISA; only valid for an ISA in supported_isas().
const Kernels& kernels_for(Isa isa);
// ISAs this CPU can run, scalar first.
std::vector<Isa> supported_isas();

// True on an x86 CPU with neither AVX512-VNNI nor AVX-VNNI: there ONNX Runtime multiplies uint8
// activations by int8 weights with VPMADDUBSW, whose 16-bit pair sums can saturate.
bool x86_without_vnni();
// The kernels used by the tool: the best supported ISA, chosen once. The environment variable
// QUANTIZE_ISA=scalar|avx2|avx512 lowers the choice (for tests and comparisons).
const Kernels& kernels();

// A tensor of `dims` seen as [outer, channels, inner] around `axis` (axis < 0: one channel).
struct ChannelLayout {
  int64_t outer = 1, channels = 1, inner = 1;
};
ChannelLayout channel_layout(const std::vector<int64_t>& dims, int axis);
// Each channel's running min and max from +0 (as Kernels::minmax), with kernels().
void channel_minmax(const float* x, const ChannelLayout& layout, float* mn, float* mx);

// bitsandbytes' 4-bit codebooks, by com.microsoft.MatMulBnb4's quant_type (0: FP4, 1: NF4): code
// i stands for kBnb4Codebooks[quant_type][i] times its block's absmax.
extern const float kBnb4Codebooks[2][16];

// Scalar helpers that other code uses directly.
uint16_t f32_to_f16_scalar(float x);
float f16_to_f32_scalar(uint16_t h);
// bfloat16 is the high half of a float32: widening is exact; narrowing rounds to nearest even
// (overflowing to inf) and keeps NaN a quiet NaN.
uint16_t f32_to_bf16_scalar(float x);
// Inline so that loops over it vectorise (widen.cpp).
inline float bf16_to_f32_scalar(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace quantize
