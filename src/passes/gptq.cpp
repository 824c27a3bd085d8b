// GPTQ for block-quantized weights (see gptq.h).
#include "passes/gptq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "quantize/error.h"

extern "C" {
// LAPACK (OpenBLAS ships it): Cholesky factor, inverse of a triangular matrix; column-major.
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dtrtri_(const char* uplo, const char* diag, const int* n, double* a, const int* lda,
             int* info);
}

namespace quantize {

GptqFactor gptq_factor(const Gram& gram, double relative_damp) {
  const int64_t k = gram.k;
  const int n = static_cast<int>(k);
  double mean_diag = 0;
  for (int64_t i = 0; i < k; ++i) mean_diag += gram.sum[i * k + i];
  mean_diag = k && mean_diag > 0 ? mean_diag / static_cast<double>(k) : 1.0;
  GptqFactor f;
  f.k = k;
  f.damp = relative_damp * mean_diag;
  std::vector<double> a(k * k);
  for (int attempt = 0;; ++attempt) {
    if (attempt == 7) {
      fail(ExitCode::kInternal, "GPTQ: the input's second moments stay indefinite (K = {})", k);
    }
    // P H P (P reverses the order), symmetric, so its layout needs no transposing.
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        double h = gram.sum[(k - 1 - i) * k + (k - 1 - j)];
        if (i == j) h += f.damp;
        a[i * k + j] = h;
      }
    }
    int info = 0;
    dpotrf_("L", &n, a.data(), &n, &info);  // P H P = L L^T
    if (info == 0) dtrtri_("L", "N", &n, a.data(), &n, &info);
    if (info == 0) break;
    f.damp *= 10;
  }
  // H = (P L P)(P L P)^T with P L P upper triangular, so H^-1 = U^T U for U = P L^-1 P.
  // L^-1 (i, j), i >= j, is at a[i + j * k] (column-major).
  f.u.assign(k * k, 0.0f);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = i; j < k; ++j) {
      f.u[i * k + j] = static_cast<float>(a[(k - 1 - i) + (k - 1 - j) * k]);
    }
  }
  return f;
}

void gptq_quantize(float* w, int64_t k, int64_t t, const GptqFactor& factor,
                   const BlockFormat& format, const BlockQuantizer& scales_from, bool f16_scales,
                   uint8_t* packed, float* scales, uint8_t* zero_points) {
  const int64_t bs = format.block_size, nb = static_cast<int64_t>(format.blocks(k));
  const int64_t blob = static_cast<int64_t>(format.blob_bytes());
  const int top = (1 << format.bits) - 1, half = 1 << (format.bits - 1);
  const float* u = factor.u.data();
  std::vector<float> segment(bs), err(bs * t), s(t);
  std::vector<int> z(t);
  std::vector<uint8_t> scratch(blob), one_zero(1);
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t r0 = b * bs, r1 = std::min(k, r0 + bs), rows = r1 - r0;
    for (int64_t j = 0; j < t; ++j) {  // this block's scale and zero point, per column
      for (int64_t r = r0; r < r1; ++r) segment[r - r0] = w[r * t + j];
      float scale = 0;
      scales_from.quantize(segment.data(), static_cast<size_t>(rows), format, nullptr,
                           scratch.data(), &scale, one_zero.data());
      if (f16_scales) {
        uint16_t h = 0;
        kernels().f32_to_f16(&scale, 1, &h);
        kernels().f16_to_f32(&h, 1, &scale);
      }
      s[j] = scale;
      z[j] = format.symmetric ? half : one_zero[0];
      scales[j * nb + b] = scale;
      if (!format.symmetric) zero_points[j * nb + b] = static_cast<uint8_t>(z[j]);
    }
    for (int64_t r = r0; r < r1; ++r) {
      const float d = u[r * k + r];
      float* row = w + r * t;
      float* e = err.data() + (r - r0) * t;
      for (int64_t j = 0; j < t; ++j) {
        const int c = s[j] == 0 ? z[j]
                                : static_cast<int>(std::clamp(std::nearbyint(row[j] / s[j]) + z[j],
                                                              0.0f, float(top)));
        e[j] = (row[j] - s[j] * static_cast<float>(c - z[j])) / d;
        put_code(packed + (j * nb + b) * blob, r - r0, format.bits, c);
      }
      for (int64_t q = r + 1; q < r1; ++q) {  // the rest of the block, now
        const float f = u[r * k + q];
        float* target = w + q * t;
        for (int64_t j = 0; j < t; ++j) target[j] -= f * e[j];
      }
    }
    for (int64_t i = rows; i < bs; ++i) {  // padding rows: code z, value 0
      for (int64_t j = 0; j < t; ++j) put_code(packed + (j * nb + b) * blob, i, format.bits, z[j]);
    }
    if (r1 < k) {  // the rows after the block: w[r1:, :] -= U[r0:r1, r1:]^T err
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(k - r1),
                  static_cast<int>(t), static_cast<int>(rows), -1.0f, u + r0 * k + r1,
                  static_cast<int>(k), err.data(), static_cast<int>(t), 1.0f, w + r1 * t,
                  static_cast<int>(t));
    }
  }
}

}  // namespace quantize
