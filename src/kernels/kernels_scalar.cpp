// Scalar reference kernels: the specification that every ISA version matches bit for bit.
// Formulas: include/quantize/kernels.h.
#include <cmath>
#include <cstring>

#include "kernels_internal.h"

namespace quantize {
namespace detail {

BlockParams block_params(float mx, float mn, const BlockFormat& fmt) {
  BlockParams p{};
  if (fmt.symmetric) {
    const float levels = static_cast<float>(1 << (fmt.bits - 1));  // L: 8 or 128
    const float m = mx >= -mn ? mx : mn;
    p.scale = m / -levels;
    p.inv = p.scale != 0.0f ? 1.0f / p.scale : 0.0f;
    p.zp = 1 << (fmt.bits - 1);
    p.lo = -levels;
    p.hi = levels - 1.0f;
  } else {
    const float top = static_cast<float>((1 << fmt.bits) - 1);  // Q: 15 or 255
    p.scale = (mx - mn) / top;
    if (p.scale == 0.0f) p.scale = 1.0f;
    p.inv = 1.0f / p.scale;
    float z = -mn / p.scale;
    z = z > 0.0f ? z : 0.0f;  // max_ps(z, 0): NaN becomes 0
    z = z < top ? z : top;
    p.zp = static_cast<int>(std::nearbyint(z));
    p.lo = static_cast<float>(-p.zp);
    p.hi = top - static_cast<float>(p.zp);
  }
  return p;
}

}  // namespace detail

namespace {

inline float max_ps(float a, float b) { return a > b ? a : b; }
inline float min_ps(float a, float b) { return a < b ? a : b; }

void quantize_blocks(const float* x, size_t k, const BlockFormat& fmt, uint8_t* packed,
                     float* scales, uint8_t* zero_points) {
  const size_t bs = fmt.block_size, nb = fmt.blocks(k);
  for (size_t b = 0; b < nb; ++b) {
    const size_t begin = b * bs, end = begin + bs;
    float mx = 0.0f, mn = 0.0f;
    for (size_t j = begin; j < end && j < k; ++j) {
      mx = max_ps(x[j], mx);
      mn = min_ps(x[j], mn);
    }
    const detail::BlockParams p = detail::block_params(mx, mn, fmt);
    scales[b] = p.scale;
    if (!fmt.symmetric) zero_points[b] = static_cast<uint8_t>(p.zp);
    uint8_t* out = packed + b * fmt.blob_bytes();
    for (size_t j = begin; j < end; ++j) {
      const float v = j < k ? x[j] : 0.0f;
      const int q = static_cast<int>(std::nearbyint(min_ps(max_ps(v * p.inv, p.lo), p.hi))) + p.zp;
      const size_t i = j - begin;
      if (fmt.bits == 8) {
        out[i] = static_cast<uint8_t>(q);
      } else if (i % 2 == 0) {
        out[i / 2] = static_cast<uint8_t>(q);
      } else {
        out[i / 2] |= static_cast<uint8_t>(q << 4);
      }
    }
  }
}

void dequantize_blocks(const uint8_t* packed, const float* scales, const uint8_t* zero_points,
                       size_t k, const BlockFormat& fmt, float* y) {
  const size_t bs = fmt.block_size;
  for (size_t j = 0; j < k; ++j) {
    const size_t b = j / bs, i = j % bs;
    const uint8_t* blob = packed + b * fmt.blob_bytes();
    const int q = fmt.bits == 8 ? blob[i] : (blob[i / 2] >> (4 * (i % 2))) & 15;
    const int zp = fmt.symmetric ? 1 << (fmt.bits - 1) : zero_points[b];
    y[j] = static_cast<float>(q - zp) * scales[b];
  }
}

void minmax(const float* x, size_t n, float* mn, float* mx) {
  float lo = 0.0f, hi = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    hi = max_ps(x[i], hi);
    lo = min_ps(x[i], lo);
  }
  *mn = lo;
  *mx = hi;
}

void minmax_columns(const float* x, size_t rows, size_t cols, float* mn, float* mx) {
  for (size_t c = 0; c < cols; ++c) mn[c] = mx[c] = 0.0f;
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) {
      mx[c] = max_ps(x[r * cols + c], mx[c]);
      mn[c] = min_ps(x[r * cols + c], mn[c]);
    }
  }
}

inline uint8_t affine(float x, float inv, float lo, float hi, int32_t zp) {
  return static_cast<uint8_t>(static_cast<int>(std::nearbyint(min_ps(max_ps(x * inv, lo), hi))) +
                              zp);
}

void quantize_affine(const float* x, size_t n, const AffineParams& p, uint8_t* q) {
  for (size_t i = 0; i < n; ++i) q[i] = affine(x[i], p.inv, p.lo, p.hi, p.zp);
}

void quantize_affine_columns(const float* x, size_t rows, size_t cols, const AffineColumns& p,
                             uint8_t* q) {
  for (size_t r = 0; r < rows; ++r) {
    for (size_t c = 0; c < cols; ++c) {
      q[r * cols + c] = affine(x[r * cols + c], p.inv[c], p.lo[c], p.hi[c], p.zp[c]);
    }
  }
}

void f32_to_f16(const float* x, size_t n, uint16_t* y) {
  for (size_t i = 0; i < n; ++i) y[i] = f32_to_f16_scalar(x[i]);
}

void f16_to_f32(const uint16_t* x, size_t n, float* y) {
  for (size_t i = 0; i < n; ++i) y[i] = f16_to_f32_scalar(x[i]);
}

// rne() for |v| < 2^22 in plain arithmetic: the same operations in every ISA's version.
inline float round_small(float v) { return (v + 12582912.0f) - 12582912.0f; }

void code_sums(const float* x, const float* wx, const float* w, size_t n, float inv, float lo,
               float hi, double* sxd, double* sdd) {
  double a[8] = {}, b[8] = {};
  for (size_t j = 0; j < n; ++j) {
    const double d = round_small(min_ps(max_ps(x[j] * inv, lo), hi));
    a[j % 8] += static_cast<double>(wx[j]) * d;
    b[j % 8] += static_cast<double>(w[j]) * d * d;
  }
  *sxd = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
  *sdd = ((b[0] + b[4]) + (b[2] + b[6])) + ((b[1] + b[5]) + (b[3] + b[7]));
}

}  // namespace

AffineParams affine_params(float mn, float mx, bool is_signed, bool reduce_range) {
  AffineParams p;
  const float top = is_signed ? (reduce_range ? 64.0f : 127.0f) : (reduce_range ? 127.0f : 255.0f);
  if (is_signed) {
    const float absmax = mx > -mn ? mx : -mn;
    p.scale = absmax / top;
    if (p.scale == 0.0f) p.scale = 1.0f;
    p.inv = 1.0f / p.scale;
    p.zp = 0;
    p.lo = -top;
  } else {
    p.scale = (mx - mn) / top;
    if (p.scale == 0.0f) p.scale = 1.0f;
    p.inv = 1.0f / p.scale;
    float z = -mn / p.scale;
    z = z > 0.0f ? z : 0.0f;
    z = z < top ? z : top;
    p.zp = static_cast<int32_t>(std::nearbyint(z));
    p.lo = static_cast<float>(-p.zp);
  }
  p.hi = top - static_cast<float>(p.zp);
  return p;
}

uint16_t f32_to_f16_scalar(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));  // NaN
  if (a == 0x7f800000u) return static_cast<uint16_t>(sign | 0x7c00u);                        // inf
  if (a > 0x477fe000u) return static_cast<uint16_t>(sign | 0x7bffu);  // beyond 65504: clamp
  if (a >= 0x38800000u) {  // a normal half: rebias the exponent, round the 13 dropped bits
    uint32_t h = (a - 0x38000000u) >> 13;
    const uint32_t rest = a & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  // Subnormal half (or zero): the value in units of 2^-24, rounded to nearest even. A result of
  // 1024 is the smallest normal half, whose encoding is the same number.
  float f;
  std::memcpy(&f, &a, 4);
  return static_cast<uint16_t>(sign | static_cast<uint32_t>(std::nearbyint(f * 16777216.0f)));
}

float f16_to_f32_scalar(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 31u, m = h & 0x3ffu;
  uint32_t u;
  if (e == 0) {
    float f = static_cast<float>(m) * 5.9604644775390625e-08f;  // m * 2^-24, exact
    std::memcpy(&u, &f, 4);
    u |= sign;
  } else if (e == 31) {
    u = sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u);  // NaN comes out quiet
  } else {
    u = sign | ((e + 112u) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

const float kBnb4Codebooks[2][16] = {
    {0.0f, 5.208333333e-03f, 0.66666667f, 1.0f, 0.33333333f, 0.5f, 0.16666667f, 0.25f, -0.0f,
     -5.208333333e-03f, -0.66666667f, -1.0f, -0.33333333f, -0.5f, -0.16666667f, -0.25f},
    {-1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
     -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
     0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
     0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f}};

uint16_t f32_to_bf16_scalar(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

namespace detail {

const Kernels& scalar_kernels() {
  static const Kernels k{Isa::kScalar,   quantize_blocks, dequantize_blocks,       minmax,
                         minmax_columns, quantize_affine, quantize_affine_columns, f32_to_f16,
                         f16_to_f32,     code_sums};
  return k;
}

}  // namespace detail
}  // namespace quantize
