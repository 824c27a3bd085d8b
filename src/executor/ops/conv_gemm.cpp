// The GEMM of float convolutions: C = A B with the bias and the fused Relu/Clip applied while the
// results are still in registers.
#include <algorithm>
#include <limits>
#include <vector>

#include "executor/core/ops.h"

// Convolutions multiply a small weight matrix (tens to hundreds of rows and columns) by a long
// column matrix, where a BLAS spends much of its time packing its operands and clearing C; this
// kernel reads B in place and writes each element of C once.

namespace quantize::exec {
namespace {

typedef float v8 __attribute__((vector_size(32), aligned(4)));  // 8 floats, unaligned access

__attribute__((always_inline)) inline v8 load(const float* p) {
  return *reinterpret_cast<const v8*>(p);
}
__attribute__((always_inline)) inline void store(float* p, v8 v) { *reinterpret_cast<v8*>(p) = v; }

// MR rows by 8 * NV columns of C: sums over k in order (a fused multiply-add where the CPU has
// one), then + bias, then clamped as Clip does (x < lo ? lo : x > hi ? hi : x).
template <int MR, int NV>
__attribute__((always_inline)) inline void tile(const float* a, int64_t k, const float* b,
                                                int64_t ldb, float* c, int64_t ldc,
                                                const float* bias, float lo, float hi) {
  v8 acc[MR][NV] = {};
  for (int64_t p = 0; p < k; ++p) {
    v8 bv[NV];
    for (int j = 0; j < NV; ++j) bv[j] = load(b + p * ldb + 8 * j);
    for (int i = 0; i < MR; ++i) {
      const float av = a[i * k + p];
      for (int j = 0; j < NV; ++j) acc[i][j] += av * bv[j];
    }
  }
  const v8 vlo = v8{} + lo, vhi = v8{} + hi;
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < NV; ++j) {
      v8 v = bias ? acc[i][j] + bias[i] : acc[i][j];
      v = v < vlo ? vlo : v;
      v = v > vhi ? vhi : v;
      store(c + i * ldc + 8 * j, v);
    }
  }
}

// Rows [0, MR) of C for columns [0, n): 16 at a time, then 8; the last n % 8 from `narrow`,
// those columns of B copied into a zero-padded k x 8 block, through a scratch row block.
template <int MR>
__attribute__((always_inline)) inline void row_block(const float* a, int64_t n, int64_t k,
                                                     const float* b, int64_t ldb,
                                                     const float* narrow, float* c, int64_t ldc,
                                                     const float* bias, float lo, float hi) {
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) tile<MR, 2>(a, k, b + j, ldb, c + j, ldc, bias, lo, hi);
  for (; j + 8 <= n; j += 8) tile<MR, 1>(a, k, b + j, ldb, c + j, ldc, bias, lo, hi);
  if (j < n) {
    float scratch[MR * 8];
    tile<MR, 1>(a, k, narrow, 8, scratch, 8, bias, lo, hi);
    for (int i = 0; i < MR; ++i)
      std::copy(scratch + i * 8, scratch + i * 8 + (n - j), c + i * ldc + j);
  }
}

}  // namespace

QUANTIZE_CLONES
void conv_gemm(int64_t m, int64_t n, int64_t k, const float* a, const float* b, int64_t ldb,
               float* c, int64_t ldc, const float* bias, float lo, float hi) {
  // Columns in panels whose B rows stay in the first-level cache while every row block of A
  // passes over them.
  const int64_t panel =
      std::max<int64_t>(16, std::min<int64_t>(256, (16384 / std::max<int64_t>(k, 1)) / 16 * 16));
  std::vector<float> narrow;
  for (int64_t j0 = 0; j0 < n; j0 += panel) {
    const int64_t cols = std::min(panel, n - j0), rest = cols % 8;
    if (rest) {
      narrow.assign(static_cast<size_t>(k * 8), 0.0f);
      const float* src = b + j0 + cols - rest;
      for (int64_t p = 0; p < k; ++p)
        std::copy(src + p * ldb, src + p * ldb + rest, narrow.data() + p * 8);
    }
    const float* bj = b + j0;
    float* cj = c + j0;
    int64_t i = 0;
    for (; i + 6 <= m; i += 6) {
      row_block<6>(a + i * k, cols, k, bj, ldb, narrow.data(), cj + i * ldc, ldc,
                   bias ? bias + i : nullptr, lo, hi);
    }
    const float* bi = bias ? bias + i : nullptr;
    switch (m - i) {
      case 5:
        row_block<5>(a + i * k, cols, k, bj, ldb, narrow.data(), cj + i * ldc, ldc, bi, lo, hi);
        break;
      case 4:
        row_block<4>(a + i * k, cols, k, bj, ldb, narrow.data(), cj + i * ldc, ldc, bi, lo, hi);
        break;
      case 3:
        row_block<3>(a + i * k, cols, k, bj, ldb, narrow.data(), cj + i * ldc, ldc, bi, lo, hi);
        break;
      case 2:
        row_block<2>(a + i * k, cols, k, bj, ldb, narrow.data(), cj + i * ldc, ldc, bi, lo, hi);
        break;
      case 1:
        row_block<1>(a + i * k, cols, k, bj, ldb, narrow.data(), cj + i * ldc, ldc, bi, lo, hi);
        break;
      default:
        break;
    }
  }
}

}  // namespace quantize::exec
