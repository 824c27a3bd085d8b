// AVX-512 (F, BW, VL, DQ) kernels; byte-identical to kernels_scalar.cpp.
// ISA traps: MAXPS/MINPS return their second operand when either is NaN, or when both are
// zeros: max_ps(x, acc) is exactly the scalar `x > acc ? x : acc`, so the operand order below
// matters. Block statistics start from +0 and lanes only take strictly larger (smaller) values,
// so they never hold -0 or NaN and the horizontal reduction order does not change the result.
#include <immintrin.h>

#include <cmath>

#include "kernels_internal.h"

namespace quantize::detail {
namespace {

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

inline __mmask16 tail_mask(size_t remaining) {
  return remaining >= 16 ? static_cast<__mmask16>(0xffff)
                         : static_cast<__mmask16>((1u << remaining) - 1);
}

// 16 values (0..255 in int32 lanes) -> 16 bytes.
inline __m128i to_bytes(__m512i q) { return _mm512_cvtepi32_epi8(q); }

// 16 bytes of 4-bit values -> 8 bytes: element 2i in the low nibble of byte i.
inline __m128i pack_nibbles(__m128i b) {
  const __m128i lo = _mm_and_si128(b, _mm_set1_epi16(0x000f));
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi16(0x00f0));
  return _mm_packus_epi16(_mm_or_si128(lo, hi), _mm_setzero_si128());
}

void quantize_blocks(const float* x, size_t k, const BlockFormat& fmt, uint8_t* packed,
                     float* scales, uint8_t* zero_points) {
  const size_t bs = fmt.block_size, nb = fmt.blocks(k), blob = fmt.blob_bytes();
  for (size_t b = 0; b < nb; ++b) {
    const size_t begin = b * bs;
    __m512 vmx = _mm512_setzero_ps(), vmn = _mm512_setzero_ps();
    for (size_t j = begin; j < begin + bs; j += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(tail_mask(j < k ? k - j : 0), x + j);
      vmx = _mm512_max_ps(v, vmx);
      vmn = _mm512_min_ps(v, vmn);
    }
    const BlockParams p = block_params(_mm512_reduce_max_ps(vmx), _mm512_reduce_min_ps(vmn), fmt);
    scales[b] = p.scale;
    if (!fmt.symmetric) zero_points[b] = static_cast<uint8_t>(p.zp);
    const __m512 inv = _mm512_set1_ps(p.inv), lo = _mm512_set1_ps(p.lo), hi = _mm512_set1_ps(p.hi);
    const __m512i zp = _mm512_set1_epi32(p.zp);
    uint8_t* out = packed + b * blob;
    for (size_t j = begin; j < begin + bs; j += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(tail_mask(j < k ? k - j : 0), x + j);
      const __m512 c = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, inv), lo), hi);
      const __m512i q = _mm512_add_epi32(_mm512_cvt_roundps_epi32(c, kRound), zp);
      const __m128i bytes = to_bytes(q);
      if (fmt.bits == 8) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out + (j - begin)), bytes);
      } else {
        _mm_storel_epi64(reinterpret_cast<__m128i*>(out + (j - begin) / 2), pack_nibbles(bytes));
      }
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
    _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i))));
  }
  if (i < n) {
    const __mmask16 m = tail_mask(n - i);
    _mm512_mask_storeu_ps(y + i, m, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)));
  }
}

}  // namespace

const Kernels& avx512_kernels() {
  static const Kernels k{Isa::kAvx512, quantize_blocks, scalar_kernels().dequantize_blocks,
                         f32_to_f16, f16_to_f32};
  return k;
}

}  // namespace quantize::detail
