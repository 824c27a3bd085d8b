// AVX-512 (F, BW, VL, DQ) kernels; byte-identical to kernels_scalar.cpp.
// ISA traps: MAXPS/MINPS return their second operand when either is NaN, or when both are
// zeros: max_ps(x, acc) is exactly the scalar `x > acc ? x : acc`, so the operand order below
// matters. Block statistics start from +0 and lanes only take strictly larger (smaller) values,
// so they never hold -0 or NaN and the horizontal reduction order does not change the result.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels_internal.h"

namespace quantize::detail {
namespace {

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

inline __mmask16 tail_mask(size_t remaining) {
  return remaining >= 16 ? static_cast<__mmask16>(0xffff)
                         : static_cast<__mmask16>((1u << remaining) - 1);
}

inline __m512 load(const float* x, size_t j, size_t k) {
  return j + 16 <= k ? _mm512_loadu_ps(x + j)
                     : _mm512_maskz_loadu_ps(tail_mask(j < k ? k - j : 0), x + j);
}

// Lane j of the result = op over the 16 lanes of v[j] (a transposing reduction tree).
template <typename Op>
inline __m512 reduce16(const __m512* v, Op op) {
  __m512 w[8], u[4], t[2];
  for (int i = 0; i < 8; ++i) {  // 16 -> 8: 256 bits of each vector
    w[i] = op(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
              _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xee));
  }
  for (int i = 0; i < 4; ++i) {  // 8 -> 4: one 128-bit chunk of each vector
    u[i] = op(_mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0x88),
              _mm512_shuffle_f32x4(w[2 * i], w[2 * i + 1], 0xdd));
  }
  for (int i = 0; i < 2; ++i) {  // 4 -> 2 lanes of each vector, within chunks
    t[i] = op(_mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0x44),
              _mm512_shuffle_ps(u[2 * i], u[2 * i + 1], 0xee));
  }
  const __m512 r = op(_mm512_shuffle_ps(t[0], t[1], 0x88), _mm512_shuffle_ps(t[0], t[1], 0xdd));
  // r's lane 4c + p holds v[4p + c].
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(order, r);
}

// block_params() of kernels_scalar.cpp for 16 blocks at once: the same IEEE operations, lane by
// lane (negation as a sign flip, MAXPS/MINPS operand order as in the scalar ternaries).
struct Params16 {
  __m512 scale, inv, lo, hi;
  __m512i zp;
};

inline Params16 block_params16(__m512 mx, __m512 mn, const BlockFormat& fmt) {
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
  const __m512 sign = _mm512_set1_ps(-0.0f);
  Params16 p;
  if (fmt.symmetric) {
    const float levels = static_cast<float>(1 << (fmt.bits - 1));
    const __mmask16 take_max = _mm512_cmp_ps_mask(mx, _mm512_xor_ps(mn, sign), _CMP_GE_OQ);
    const __m512 m = _mm512_mask_blend_ps(take_max, mn, mx);
    p.scale = _mm512_div_ps(m, _mm512_set1_ps(-levels));
    const __mmask16 nonzero = _mm512_cmp_ps_mask(p.scale, zero, _CMP_NEQ_UQ);
    p.inv = _mm512_maskz_div_ps(nonzero, one, p.scale);
    p.zp = _mm512_set1_epi32(1 << (fmt.bits - 1));
    p.lo = _mm512_set1_ps(-levels);
    p.hi = _mm512_set1_ps(levels - 1.0f);
  } else {
    const __m512 top = _mm512_set1_ps(static_cast<float>((1 << fmt.bits) - 1));
    p.scale = _mm512_div_ps(_mm512_sub_ps(mx, mn), top);
    p.scale = _mm512_mask_mov_ps(p.scale, _mm512_cmp_ps_mask(p.scale, zero, _CMP_EQ_OQ), one);
    p.inv = _mm512_div_ps(one, p.scale);
    __m512 z = _mm512_div_ps(_mm512_xor_ps(mn, sign), p.scale);
    z = _mm512_min_ps(_mm512_max_ps(z, zero), top);
    p.zp = _mm512_cvt_roundps_epi32(z, kRound);
    const __m512 zf = _mm512_cvtepi32_ps(p.zp);
    p.lo = _mm512_sub_ps(zero, zf);
    p.hi = _mm512_sub_ps(top, zf);
  }
  return p;
}

void quantize_blocks(const float* x, size_t k, const BlockFormat& fmt, uint8_t* packed,
                     float* scales, uint8_t* zero_points) {
  const size_t bs = fmt.block_size, nb = fmt.blocks(k), blob = fmt.blob_bytes();
  alignas(64) float inv_a[16], lo_a[16], hi_a[16];
  alignas(64) int32_t zp_a[16];
  for (size_t b0 = 0; b0 < nb; b0 += 16) {
    const size_t group = std::min<size_t>(16, nb - b0);
    const __mmask16 lanes = tail_mask(group);
    __m512 mx[16], mn[16];
    for (size_t j = 0; j < 16; ++j) {
      __m512 vmx = _mm512_setzero_ps(), vmn = _mm512_setzero_ps();
      for (size_t e = (b0 + j) * bs, end = e + bs; j < group && e < end; e += 16) {
        const __m512 v = load(x, e, k);
        vmx = _mm512_max_ps(v, vmx);
        vmn = _mm512_min_ps(v, vmn);
      }
      mx[j] = vmx;
      mn[j] = vmn;
    }
    const Params16 p =
        block_params16(reduce16(mx, [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); }),
                       reduce16(mn, [](__m512 a, __m512 b) { return _mm512_min_ps(a, b); }), fmt);
    _mm512_mask_storeu_ps(scales + b0, lanes, p.scale);
    if (!fmt.symmetric) _mm_mask_storeu_epi8(zero_points + b0, lanes, _mm512_cvtepi32_epi8(p.zp));
    _mm512_store_ps(inv_a, p.inv);
    _mm512_store_ps(lo_a, p.lo);
    _mm512_store_ps(hi_a, p.hi);
    _mm512_store_si512(zp_a, p.zp);
    for (size_t j = 0; j < group; ++j) {
      const __m512 inv = _mm512_set1_ps(inv_a[j]), lo = _mm512_set1_ps(lo_a[j]);
      const __m512 hi = _mm512_set1_ps(hi_a[j]);
      const __m512i zp = _mm512_set1_epi32(zp_a[j]);
      const size_t begin = (b0 + j) * bs;
      uint8_t* out = packed + (b0 + j) * blob;
      for (size_t e = begin; e < begin + bs; e += 16) {
        const __m512 c = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(load(x, e, k), inv), lo), hi);
        const __m512i q = _mm512_add_epi32(_mm512_cvt_roundps_epi32(c, kRound), zp);
        if (fmt.bits == 8) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (e - begin)), _mm512_cvtepi32_epi8(q));
        } else {  // each 64-bit lane holds elements 2i, 2i+1: fold the odd one into bits 4..7
          const __m512i pairs = _mm512_or_si512(q, _mm512_srli_epi64(q, 28));
          _mm_storel_epi64(reinterpret_cast<__m128i*>(out + (e - begin) / 2),
                           _mm512_cvtepi64_epi8(pairs));
        }
      }
    }
  }
}

void minmax(const float* x, size_t n, float* mn, float* mx) {
  __m512 vmx = _mm512_setzero_ps(), vmn = _mm512_setzero_ps();
  for (size_t i = 0; i < n; i += 16) {
    const __m512 v = load(x, i, n);
    vmx = _mm512_max_ps(v, vmx);
    vmn = _mm512_min_ps(v, vmn);
  }
  *mx = _mm512_reduce_max_ps(vmx);
  *mn = _mm512_reduce_min_ps(vmn);
}

void minmax_columns(const float* x, size_t rows, size_t cols, float* mn, float* mx) {
  std::fill(mn, mn + cols, 0.0f);
  std::fill(mx, mx + cols, 0.0f);
  for (size_t r = 0; r < rows; ++r) {  // row by row: x streams, mn/mx stay in cache
    for (size_t c = 0; c < cols; c += 16) {
      const __mmask16 m = tail_mask(cols - c);
      const __m512 v = _mm512_maskz_loadu_ps(m, x + r * cols + c);
      _mm512_mask_storeu_ps(mx + c, m, _mm512_max_ps(v, _mm512_maskz_loadu_ps(m, mx + c)));
      _mm512_mask_storeu_ps(mn + c, m, _mm512_min_ps(v, _mm512_maskz_loadu_ps(m, mn + c)));
    }
  }
}

inline __m128i affine16(__m512 v, __m512 inv, __m512 lo, __m512 hi, __m512i zp) {
  const __m512 c = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, inv), lo), hi);
  return _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvt_roundps_epi32(c, kRound), zp));
}

void quantize_affine(const float* x, size_t n, const AffineParams& p, uint8_t* q) {
  const __m512 inv = _mm512_set1_ps(p.inv), lo = _mm512_set1_ps(p.lo), hi = _mm512_set1_ps(p.hi);
  const __m512i zp = _mm512_set1_epi32(p.zp);
  for (size_t i = 0; i < n; i += 16) {
    _mm_mask_storeu_epi8(q + i, tail_mask(n - i), affine16(load(x, i, n), inv, lo, hi, zp));
  }
}

void quantize_affine_columns(const float* x, size_t rows, size_t cols, const AffineColumns& p,
                             uint8_t* q) {
  for (size_t r = 0; r < rows; ++r) {  // row by row: x streams, the parameters stay in cache
    for (size_t c = 0; c < cols; c += 16) {
      const __mmask16 m = tail_mask(cols - c);
      const __m512 inv = _mm512_maskz_loadu_ps(m, p.inv + c),
                   lo = _mm512_maskz_loadu_ps(m, p.lo + c);
      const __m512 hi = _mm512_maskz_loadu_ps(m, p.hi + c);
      const __m512i zp = _mm512_maskz_loadu_epi32(m, p.zp + c);
      const __m512 v = _mm512_maskz_loadu_ps(m, x + r * cols + c);
      _mm_mask_storeu_epi8(q + r * cols + c, m, affine16(v, inv, lo, hi, zp));
    }
  }
}

// Finite magnitudes beyond 65504 become +-65504 before conversion (never inf).
inline __m512 clamp_f16_range(__m512 v) {
  const __m512 mag = _mm512_abs_ps(v);
  const __mmask16 big = _mm512_cmp_ps_mask(mag, _mm512_set1_ps(65504.0f), _CMP_GT_OQ) &
                        _mm512_cmp_ps_mask(mag, _mm512_set1_ps(INFINITY), _CMP_NEQ_OQ);
  const __m512 sign = _mm512_and_ps(v, _mm512_set1_ps(-0.0f));
  return _mm512_mask_mov_ps(v, big, _mm512_or_ps(sign, _mm512_set1_ps(65504.0f)));
}

void f32_to_f16(const float* x, size_t n, uint16_t* y) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm512_cvtps_ph(clamp_f16_range(_mm512_loadu_ps(x + i)), kRound);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), h);
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    const __m256i h = _mm512_cvtps_ph(clamp_f16_range(_mm512_maskz_loadu_ps(m, x + i)), kRound);
    _mm256_mask_storeu_epi16(y + i, m, h);
  }
}

void f16_to_f32(const uint16_t* x, size_t n, float* y) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    _mm512_storeu_ps(y + i,
                     _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i))));
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)));
  }
}

}  // namespace

const Kernels& avx512_kernels() {
  static const Kernels k{Isa::kAvx512,
                         quantize_blocks,
                         scalar_kernels().dequantize_blocks,
                         minmax,
                         minmax_columns,
                         quantize_affine,
                         quantize_affine_columns,
                         f32_to_f16,
                         f16_to_f32,
                         avx2_kernels().code_sums};  // 4 doubles a vector suffice
  return k;
}

}  // namespace quantize::detail
