// AWQ scale search (see awq.h).
#include "passes/awq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/kernels.h"
#include "support/threads.h"

namespace quantize {
namespace {

// s = m^alpha, normalised so that max(s) min(s) = 1.
std::vector<float> scales_at(const std::vector<double>& rms, double alpha) {
  std::vector<float> s(rms.size(), 1.0f);
  if (alpha == 0) return s;
  double lo = std::numeric_limits<double>::max(), hi = 0;
  std::vector<double> v(rms.size());
  for (size_t j = 0; j < rms.size(); ++j) {
    v[j] = std::pow(rms[j], alpha);
    lo = std::min(lo, v[j]);
    hi = std::max(hi, v[j]);
  }
  const double norm = std::sqrt(lo * hi);
  for (size_t j = 0; j < rms.size(); ++j) s[j] = static_cast<float>(v[j] / norm);
  return s;
}

// The output error of quantizing `weights` at scales s: sum over columns of d^T H d.
double output_error(const Gram& gram, const std::vector<AwqColumns>& weights,
                    const std::vector<float>& s, const std::vector<float>& importance,
                    const BlockQuantizer& quantizer) {
  const int64_t k = gram.k;
  double total = 0;
  for (const auto& w : weights) {
    const uint64_t nb = w.format.blocks(k);
    std::vector<float> d(w.count * k), scaled(k), y(k), scales(nb), hd(w.count * k);
    std::vector<uint8_t> packed(nb * w.format.blob_bytes()), zps(nb);
    for (int64_t c = 0; c < w.count; ++c) {
      const float* x = w.values.data() + c * k;
      for (int64_t j = 0; j < k; ++j) scaled[j] = x[j] * s[j];
      quantizer.quantize(scaled.data(), k, w.format, importance.data(), packed.data(),
                         scales.data(), w.format.symmetric ? nullptr : zps.data());
      kernels().dequantize_blocks(packed.data(), scales.data(),
                                  w.format.symmetric ? nullptr : zps.data(), k, w.format, y.data());
      for (int64_t j = 0; j < k; ++j) d[c * k + j] = y[j] / s[j] - x[j];
    }
    // (d H) per column, H symmetric: count x K times K x K.
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(w.count),
                static_cast<int>(k), static_cast<int>(k), 1.0f, d.data(), static_cast<int>(k),
                gram.sum.data(), static_cast<int>(k), 0.0f, hd.data(), static_cast<int>(k));
    for (size_t i = 0; i < d.size(); ++i) total += static_cast<double>(d[i]) * hd[i];
  }
  return total;
}

}  // namespace

AwqChoice awq_search(const Gram& gram, const std::vector<AwqColumns>& weights,
                     const BlockQuantizer& quantizer, int grid) {
  const int64_t k = gram.k;
  const std::vector<float> ms = gram.mean_square();
  std::vector<double> rms(k);
  double top = 0;
  for (int64_t j = 0; j < k; ++j) {
    rms[j] = std::sqrt(std::max(0.0, static_cast<double>(ms[j])));
    top = std::max(top, rms[j]);
  }
  // A channel the data never reached would get a scale near 0 (its weights blown up): floor it.
  for (int64_t j = 0; j < k; ++j) rms[j] = std::max(rms[j], top * 1e-3);
  std::vector<double> errors(grid, 0.0);
  if (top > 0) {
    parallel_for(grid, 1, [&](size_t g0, size_t g1) {
      for (size_t g = g0; g < g1; ++g) {
        const std::vector<float> s = scales_at(rms, static_cast<double>(g) / grid);
        std::vector<float> importance(k);  // the scaled input's mean squares: ms / s^2
        for (int64_t j = 0; j < k; ++j) importance[j] = ms[j] / (s[j] * s[j]);
        errors[g] = output_error(gram, weights, s, importance, quantizer);
      }
    });
  }
  AwqChoice choice;
  size_t best = 0;
  for (size_t g = 1; g < errors.size(); ++g) {
    if (errors[g] < errors[best]) best = g;
  }
  choice.alpha = static_cast<double>(best) / grid;
  choice.scales = scales_at(rms, choice.alpha);
  choice.error = errors[best];
  choice.unscaled_error = errors[0];
  return choice;
}

}  // namespace quantize
