// AVX2 + FMA + F16C kernels; byte-identical to kernels_scalar.cpp.
// ISA traps: see kernels_avx512.cpp (MAXPS/MINPS operand order, +0 starts). Masked loads
// (VMASKMOVPS) read zeros in masked lanes and never touch memory past the end.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "kernels_internal.h"

namespace quantize::detail {
namespace {

inline __m256i tail_mask(size_t remaining) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const int r = remaining >= 8 ? 8 : static_cast<int>(remaining);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(r), lanes);
}

inline float reduce_max(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline float reduce_min(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// Two vectors of 8 values (0..255 in int32 lanes) -> 16 bytes in order.
inline __m128i to_bytes(__m256i q0, __m256i q1) {
  const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xd8);
  return _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
}

inline __m128i pack_nibbles(__m128i b) {
  const __m128i lo = _mm_and_si128(b, _mm_set1_epi16(0x000f));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi16(0x00f0));
  return _mm_packus_epi16(_mm_or_si128(lo, hi), _mm_setzero_si128());
}

inline __m256 load(const float* x, size_t j, size_t k) {
  return j + 8 <= k ? _mm256_loadu_ps(x + j)
                    : _mm256_maskload_ps(x + j, tail_mask(j < k ? k - j : 0));
}

// Lane j of the result = op over the 8 lanes of v[j] (a transposing reduction tree).
template <typename Op>
inline __m256 reduce8(const __m256* v, Op op) {
  __m256 w[4], u[2];
  for (int i = 0; i < 4; ++i) {  // 8 -> 4 lanes of each vector: one 128-bit half each
    w[i] = op(_mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x20),
              _mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x31));
  }
  for (int i = 0; i < 2; ++i) {  // 4 -> 2 lanes of each, within halves
    u[i] = op(_mm256_shuffle_ps(w[2 * i], w[2 * i + 1], 0x44),
              _mm256_shuffle_ps(w[2 * i], w[2 * i + 1], 0xee));
  }
  const __m256 r = op(_mm256_shuffle_ps(u[0], u[1], 0x88), _mm256_shuffle_ps(u[0], u[1], 0xdd));
  // r's lane 4c + p holds v[2p + c].
  return _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// block_params() of kernels_scalar.cpp for 8 blocks at once, with the same IEEE operations.
struct Params8 {
  __m256 scale, inv, lo, hi;
  __m256i zp;
};

inline Params8 block_params8(__m256 mx, __m256 mn, const BlockFormat& fmt) {
  const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  Params8 p;
  if (fmt.symmetric) {
    const float levels = static_cast<float>(1 << (fmt.bits - 1));
    const __m256 take_max = _mm256_cmp_ps(mx, _mm256_xor_ps(mn, sign), _CMP_GE_OQ);
    p.scale = _mm256_div_ps(_mm256_blendv_ps(mn, mx, take_max), _mm256_set1_ps(-levels));
    const __m256 nonzero = _mm256_cmp_ps(p.scale, zero, _CMP_NEQ_UQ);
    p.inv = _mm256_and_ps(_mm256_div_ps(one, p.scale), nonzero);
    p.zp = _mm256_set1_epi32(1 << (fmt.bits - 1));
    p.lo = _mm256_set1_ps(-levels);
    p.hi = _mm256_set1_ps(levels - 1.0f);
  } else {
    const __m256 top = _mm256_set1_ps(static_cast<float>((1 << fmt.bits) - 1));
    p.scale = _mm256_div_ps(_mm256_sub_ps(mx, mn), top);
    p.scale = _mm256_blendv_ps(p.scale, one, _mm256_cmp_ps(p.scale, zero, _CMP_EQ_OQ));
    p.inv = _mm256_div_ps(one, p.scale);
    __m256 z = _mm256_div_ps(_mm256_xor_ps(mn, sign), p.scale);
    z = _mm256_min_ps(_mm256_max_ps(z, zero), top);
    p.zp = _mm256_cvtps_epi32(_mm256_round_ps(z, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256 zf = _mm256_cvtepi32_ps(p.zp);
    p.lo = _mm256_sub_ps(zero, zf);
    p.hi = _mm256_sub_ps(top, zf);
  }
  return p;
}

void quantize_blocks(const float* x, size_t k, const BlockFormat& fmt, uint8_t* packed,
                     float* scales, uint8_t* zero_points) {
  const size_t bs = fmt.block_size, nb = fmt.blocks(k), blob = fmt.blob_bytes();
  alignas(32) float scale_a[8], inv_a[8], lo_a[8], hi_a[8];
  alignas(32) int32_t zp_a[8];
  for (size_t b0 = 0; b0 < nb; b0 += 8) {
    const size_t group = std::min<size_t>(8, nb - b0);
    __m256 mx[8], mn[8];
    for (size_t j = 0; j < 8; ++j) {
      __m256 vmx = _mm256_setzero_ps(), vmn = _mm256_setzero_ps();
      for (size_t e = (b0 + j) * bs, end = e + bs; j < group && e < end; e += 8) {
        const __m256 v = load(x, e, k);
        vmx = _mm256_max_ps(v, vmx);
        vmn = _mm256_min_ps(v, vmn);
      }
      mx[j] = vmx;
      mn[j] = vmn;
    }
    const Params8 p =
        block_params8(reduce8(mx, [](__m256 a, __m256 b) { return _mm256_max_ps(a, b); }),
                      reduce8(mn, [](__m256 a, __m256 b) { return _mm256_min_ps(a, b); }), fmt);
    _mm256_store_ps(scale_a, p.scale);
    _mm256_store_ps(inv_a, p.inv);
    _mm256_store_ps(lo_a, p.lo);
    _mm256_store_ps(hi_a, p.hi);
    _mm256_store_si256(reinterpret_cast<__m256i*>(zp_a), p.zp);
    for (size_t j = 0; j < group; ++j) {
      scales[b0 + j] = scale_a[j];
      if (!fmt.symmetric) zero_points[b0 + j] = static_cast<uint8_t>(zp_a[j]);
      const __m256 inv = _mm256_set1_ps(inv_a[j]), lo = _mm256_set1_ps(lo_a[j]);
      const __m256 hi = _mm256_set1_ps(hi_a[j]);
      const __m256i zp = _mm256_set1_epi32(zp_a[j]);
      const size_t begin = (b0 + j) * bs;
      uint8_t* out = packed + (b0 + j) * blob;
      auto quantize8 = [&](size_t e) {
        const __m256 c = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(load(x, e, k), inv), lo), hi);
        return _mm256_add_epi32(
            _mm256_cvtps_epi32(_mm256_round_ps(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)),
            zp);
      };
      for (size_t e = begin; e < begin + bs; e += 16) {
        const __m128i bytes = to_bytes(quantize8(e), quantize8(e + 8));
        if (fmt.bits == 8) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (e - begin)), bytes);
        } else {
          _mm_storel_epi64(reinterpret_cast<__m128i*>(out + (e - begin) / 2), pack_nibbles(bytes));
        }
      }
    }
  }
}

void minmax(const float* x, size_t n, float* mn, float* mx) {
  __m256 vmx = _mm256_setzero_ps(), vmn = _mm256_setzero_ps();
  for (size_t i = 0; i < n; i += 8) {
    const __m256 v = load(x, i, n);
    vmx = _mm256_max_ps(v, vmx);
    vmn = _mm256_min_ps(v, vmn);
  }
  *mx = reduce_max(vmx);
  *mn = reduce_min(vmn);
}

void minmax_columns(const float* x, size_t rows, size_t cols, float* mn, float* mx) {
  std::fill(mn, mn + cols, 0.0f);
  std::fill(mx, mx + cols, 0.0f);
  for (size_t r = 0; r < rows; ++r) {  // row by row: x streams, mn/mx stay in cache
    for (size_t c = 0; c < cols; c += 8) {
      const __m256i m = tail_mask(cols - c);
      const __m256 v = _mm256_maskload_ps(x + r * cols + c, m);
      _mm256_maskstore_ps(mx + c, m, _mm256_max_ps(v, _mm256_maskload_ps(mx + c, m)));
      _mm256_maskstore_ps(mn + c, m, _mm256_min_ps(v, _mm256_maskload_ps(mn + c, m)));
    }
  }
}

// q for 8 lanes, as the low byte of each int32 lane, in the low 8 bytes of the result.
inline __m128i affine8(__m256 v, __m256 inv, __m256 lo, __m256 hi, __m256i zp) {
  const __m256 c = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v, inv), lo), hi);
  const __m256i q = _mm256_add_epi32(
      _mm256_cvtps_epi32(_mm256_round_ps(c, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)), zp);
  const __m256i low = _mm256_shuffle_epi8(
      q, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12,
                          -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1));
  return _mm_unpacklo_epi32(_mm256_castsi256_si128(low), _mm256_extracti128_si256(low, 1));
}

inline void store_bytes(uint8_t* q, size_t count, __m128i bytes) {
  if (count >= 8) {
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q), bytes);
  } else {
    alignas(16) uint8_t tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
    for (size_t i = 0; i < count; ++i) q[i] = tmp[i];
  }
}

void quantize_affine(const float* x, size_t n, const AffineParams& p, uint8_t* q) {
  const __m256 inv = _mm256_set1_ps(p.inv), lo = _mm256_set1_ps(p.lo), hi = _mm256_set1_ps(p.hi);
  const __m256i zp = _mm256_set1_epi32(p.zp);
  for (size_t i = 0; i < n; i += 8)
    store_bytes(q + i, n - i, affine8(load(x, i, n), inv, lo, hi, zp));
}

void quantize_affine_columns(const float* x, size_t rows, size_t cols, const AffineColumns& p,
                             uint8_t* q) {
  for (size_t r = 0; r < rows; ++r) {  // row by row: x streams, the parameters stay in cache
    for (size_t c = 0; c < cols; c += 8) {
      const __m256i m = tail_mask(cols - c);
      const __m256 inv = _mm256_maskload_ps(p.inv + c, m), lo = _mm256_maskload_ps(p.lo + c, m);
      const __m256 hi = _mm256_maskload_ps(p.hi + c, m);
      const __m256i zp = _mm256_maskload_epi32(p.zp + c, m);
      const __m256 v = _mm256_maskload_ps(x + r * cols + c, m);
      store_bytes(q + r * cols + c, cols - c, affine8(v, inv, lo, hi, zp));
    }
  }
}

inline __m256 clamp_f16_range(__m256 v) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  const __m256 mag = _mm256_andnot_ps(sign_bit, v);
  const __m256 big = _mm256_and_ps(_mm256_cmp_ps(mag, _mm256_set1_ps(65504.0f), _CMP_GT_OQ),
                                   _mm256_cmp_ps(mag, _mm256_set1_ps(INFINITY), _CMP_NEQ_OQ));
  const __m256 clamped = _mm256_or_ps(_mm256_and_ps(v, sign_bit), _mm256_set1_ps(65504.0f));
  return _mm256_blendv_ps(v, clamped, big);
}

void f32_to_f16(const float* x, size_t n, uint16_t* y) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(clamp_f16_range(_mm256_loadu_ps(x + i)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), h);
  }
  for (; i < n; ++i) y[i] = f32_to_f16_scalar(x[i]);
}

void f16_to_f32(const uint16_t* x, size_t n, float* y) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(y + i,
                     _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i))));
  }
  for (; i < n; ++i) y[i] = f16_to_f32_scalar(x[i]);
}

// Partials p0..p3 in lo, p4..p7 in hi: ((p0 + p4) + (p2 + p6)) + ((p1 + p5) + (p3 + p7)).
inline double combine_partials(__m256d lo, __m256d hi) {
  const __m256d q = _mm256_add_pd(lo, hi);  // q_i = p_i + p_(i+4)
  const __m128d r = _mm_add_pd(_mm256_castpd256_pd128(q), _mm256_extractf128_pd(q, 1));
  return _mm_cvtsd_f64(_mm_add_sd(r, _mm_unpackhi_pd(r, r)));
}

void code_sums(const float* x, const float* wx, const float* w, size_t n, float inv, float lo,
               float hi, double* sxd, double* sdd) {
  const __m256 vinv = _mm256_set1_ps(inv), vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  const __m256 magic = _mm256_set1_ps(12582912.0f);  // rne as in the scalar version
  __m256d a_lo = _mm256_setzero_pd(), a_hi = a_lo, b_lo = a_lo, b_hi = a_lo;
  for (size_t j = 0; j < n; j += 8) {  // masked lanes load 0: products of 0, no change
    const __m256 c = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(load(x, j, n), vinv), vlo), vhi);
    const __m256 d = _mm256_sub_ps(_mm256_add_ps(c, magic), magic);
    const __m256d d_lo = _mm256_cvtps_pd(_mm256_castps256_ps128(d));
    const __m256d d_hi = _mm256_cvtps_pd(_mm256_extractf128_ps(d, 1));
    const __m256 vwx = load(wx, j, n), vw = load(w, j, n);
    a_lo = _mm256_add_pd(a_lo, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(vwx)), d_lo));
    a_hi = _mm256_add_pd(a_hi, _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(vwx, 1)), d_hi));
    const __m256d w_lo = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(vw)), d_lo);
    const __m256d w_hi = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(vw, 1)), d_hi);
    b_lo = _mm256_add_pd(b_lo, _mm256_mul_pd(w_lo, d_lo));
    b_hi = _mm256_add_pd(b_hi, _mm256_mul_pd(w_hi, d_hi));
  }
  *sxd = combine_partials(a_lo, a_hi);
  *sdd = combine_partials(b_lo, b_hi);
}

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels k{Isa::kAvx2,
                         quantize_blocks,
                         scalar_kernels().dequantize_blocks,
                         minmax,
                         minmax_columns,
                         quantize_affine,
                         quantize_affine_columns,
                         f32_to_f16,
                         f16_to_f32,
                         code_sums};
  return k;
}

}  // namespace quantize::detail
