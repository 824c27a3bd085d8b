// Data-aware weight quantization: the second-moment collector, GPTQ against a direct
// column-by-column implementation in double, and the importance-weighted search.
#include "passes/gptq.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "calibration/calibrate.h"
#include "kernels/kernels.h"
#include "passes/weight_quant.h"
#include "test_util.h"

namespace quantize {
namespace {
using testing::gram_of;

// Activations with correlated channels (a shared component) and channels of unequal size, the
// case GPTQ exists for: rows x K.
std::vector<float> activations(int64_t rows, int64_t k, uint32_t seed) {
  std::vector<float> a = testing::random_floats(rows * k, seed);
  const std::vector<float> shared = testing::random_floats(rows, seed + 1);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      a[r * k + i] = (a[r * k + i] + 0.8f * shared[r]) * (1.0f + 3.0f * (i % 7 == 0));
    }
  }
  return a;
}

TEST(Gram, CollectorSumsRowOuterProductsAndSkipsNonFiniteRows) {
  const int64_t k = 5;
  std::vector<float> x = testing::random_floats(2 * 3 * k, 3);
  x[4 * k + 2] = std::numeric_limits<float>::quiet_NaN();  // row 4 is skipped
  Tensor t(onnx::TensorProto::FLOAT, {2, 3, k});
  std::copy(x.begin(), x.end(), t.data<float>());
  GramCollector collector({"x"});
  collector.observe("x", t);
  collector.observe("other", t);  // not tracked
  auto grams = collector.take();
  ASSERT_EQ(grams.size(), 1u);
  const Gram& g = grams.at("x");
  EXPECT_EQ(g.k, k);
  EXPECT_EQ(g.rows, 5u);
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      double want = 0;
      for (int64_t r = 0; r < 6; ++r) {
        if (r != 4) want += double(x[r * k + i]) * x[r * k + j];
      }
      EXPECT_NEAR(g.sum[i * k + j], want, 1e-5) << i << "," << j;
    }
    EXPECT_NEAR(g.mean_square()[i], g.sum[i * k + i] / 5, 1e-6);
  }
}

// The algorithm as the paper states it, unblocked, in double: H += damp I (damp 1% of the mean
// diagonal), U = upper Cholesky factor of H^-1 (by explicit inverse), rows in order, each block's
// scales from RTN on the current values, error feedback w_j -= U_ij (w_i - q_i) / U_ii.
// Returns the dequantized weight [K, N].
std::vector<double> reference_gptq(std::vector<double> w, const Gram& gram, int64_t k, int64_t n,
                                   const BlockFormat& fmt) {
  std::vector<double> h(k * k);
  double mean = 0;
  for (int64_t i = 0; i < k; ++i) mean += gram.sum[i * k + i];
  mean /= static_cast<double>(k);
  for (int64_t i = 0; i < k * k; ++i) h[i] = gram.sum[i];
  for (int64_t i = 0; i < k; ++i) h[i * k + i] += 0.01 * mean;
  // Gauss-Jordan inverse.
  std::vector<double> inv(k * k, 0.0);
  for (int64_t i = 0; i < k; ++i) inv[i * k + i] = 1;
  for (int64_t c = 0; c < k; ++c) {
    const double p = h[c * k + c];
    for (int64_t j = 0; j < k; ++j) h[c * k + j] /= p, inv[c * k + j] /= p;
    for (int64_t r = 0; r < k; ++r) {
      if (r == c) continue;
      const double f = h[r * k + c];
      for (int64_t j = 0; j < k; ++j)
        h[r * k + j] -= f * h[c * k + j], inv[r * k + j] -= f * inv[c * k + j];
    }
  }
  // Upper Cholesky: inv = U^T U.
  std::vector<double> u(k * k, 0.0);
  for (int64_t i = 0; i < k; ++i) {
    double d = inv[i * k + i];
    for (int64_t p = 0; p < i; ++p) d -= u[p * k + i] * u[p * k + i];
    u[i * k + i] = std::sqrt(d);
    for (int64_t j = i + 1; j < k; ++j) {
      double s = inv[i * k + j];
      for (int64_t p = 0; p < i; ++p) s -= u[p * k + i] * u[p * k + j];
      u[i * k + j] = s / u[i * k + i];
    }
  }
  const int top = (1 << fmt.bits) - 1;
  std::vector<double> q(k * n);
  for (int64_t c = 0; c < n; ++c) {
    double s = 0;
    int z = 0;
    for (int64_t i = 0; i < k; ++i) {
      if (i % fmt.block_size == 0) {
        const int64_t len = std::min<int64_t>(fmt.block_size, k - i);
        std::vector<float> seg(len);
        for (int64_t r = 0; r < len; ++r) seg[r] = static_cast<float>(w[(i + r) * n + c]);
        std::vector<uint8_t> packed(fmt.blob_bytes()), zp(1);
        float scale = 0;
        round_to_nearest().quantize(seg.data(), len, fmt, nullptr, packed.data(), &scale,
                                    zp.data());
        s = scale;
        z = fmt.symmetric ? 1 << (fmt.bits - 1) : zp[0];
      }
      const double x = w[i * n + c];
      const int code =
          s == 0 ? z : static_cast<int>(std::clamp(std::nearbyint(x / s) + z, 0.0, double(top)));
      q[i * n + c] = s * (code - z);
      const double e = (x - q[i * n + c]) / u[i * k + i];
      for (int64_t j = i + 1; j < k; ++j) w[j * n + c] -= u[i * k + j] * e;
    }
  }
  return q;
}

// The layer's output error on the calibration inputs: trace((W - Q)^T H (W - Q)).
double output_error(const std::vector<float>& w, const std::vector<double>& q, const Gram& g,
                    int64_t k, int64_t n) {
  double e = 0;
  for (int64_t c = 0; c < n; ++c) {
    for (int64_t i = 0; i < k; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        e += (w[i * n + c] - q[i * n + c]) * g.sum[i * k + j] * (w[j * n + c] - q[j * n + c]);
      }
    }
  }
  return e;
}

// GPTQ agrees with the direct implementation (the same codes but for rare rounding ties, the
// same output error within 1%), and beats round to nearest's output error by a wide margin;
// 4 and 8 bits, symmetric and asymmetric, with a partial last block.
TEST(Gptq, MatchesDirectDoubleImplementationAndBeatsRoundToNearest) {
  const int64_t k = 80, n = 12, rows = 400;
  const std::vector<float> a = activations(rows, k, 11);
  const Gram gram = gram_of(a, rows, k);
  const GptqFactor factor = gptq_factor(gram);
  std::vector<float> w = testing::random_floats(k * n, 12);
  for (const int bits : {4, 8})
    for (const bool symmetric : {true, false}) {
      const BlockFormat fmt{bits, 32, symmetric};
      const int64_t nb = static_cast<int64_t>(fmt.blocks(k)), blob = fmt.blob_bytes();
      std::vector<float> work = w, scales(n * nb);
      std::vector<uint8_t> packed(n * nb * blob), zps(n * nb);
      gptq_quantize(work.data(), k, n, factor, fmt, round_to_nearest(), false, packed.data(),
                    scales.data(), zps.data());
      std::vector<double> ours(k * n), rtn(k * n);
      for (int64_t c = 0; c < n; ++c) {
        std::vector<float> y(k), column(k);
        kernels().dequantize_blocks(packed.data() + c * nb * blob, scales.data() + c * nb,
                                    zps.data() + c * nb, k, fmt, y.data());
        for (int64_t i = 0; i < k; ++i) ours[i * n + c] = y[i], column[i] = w[i * n + c];
        std::vector<uint8_t> p(nb * blob), z(nb);
        std::vector<float> s(nb);
        round_to_nearest().quantize(column.data(), k, fmt, nullptr, p.data(), s.data(), z.data());
        kernels().dequantize_blocks(p.data(), s.data(), z.data(), k, fmt, y.data());
        for (int64_t i = 0; i < k; ++i) rtn[i * n + c] = y[i];
      }
      std::vector<double> wd(w.begin(), w.end());
      const std::vector<double> ref = reference_gptq(wd, gram, k, n, fmt);
      int64_t same = 0;
      for (int64_t i = 0; i < k * n; ++i) {
        same += std::fabs(ours[i] - ref[i]) <= 1e-4 * (std::fabs(ref[i]) + 1e-3);
      }
      const std::string what =
          std::to_string(bits) + " bits, symmetric " + std::to_string(symmetric);
      EXPECT_GE(same, k * n * 98 / 100) << what;
      const double e_ours = output_error(w, ours, gram, k, n);
      const double e_ref = output_error(w, ref, gram, k, n);
      const double e_rtn = output_error(w, rtn, gram, k, n);
      EXPECT_NEAR(e_ours, e_ref, 0.01 * e_ref) << what;
      EXPECT_LT(e_ours, 0.8 * e_rtn) << what;
    }
}

// A channel the calibration never saw (all zeros) does not make H singular: its weights are
// still quantized, with round to nearest's error or close to it, not zeroed.
TEST(Gptq, UnseenChannelKeepsItsWeights) {
  const int64_t k = 32, n = 4, rows = 64;
  std::vector<float> a = activations(rows, k, 21);
  for (int64_t r = 0; r < rows; ++r) a[r * k + 5] = 0;
  const Gram gram = gram_of(a, rows, k);
  const GptqFactor factor = gptq_factor(gram);
  std::vector<float> w = testing::random_floats(k * n, 22, 0.5f, 1.0f);
  const BlockFormat fmt{4, 32, true};
  std::vector<float> work = w, scales(n);
  std::vector<uint8_t> packed(n * fmt.blob_bytes()), zps(n);
  gptq_quantize(work.data(), k, n, factor, fmt, round_to_nearest(), false, packed.data(),
                scales.data(), zps.data());
  for (int64_t c = 0; c < n; ++c) {
    std::vector<float> y(k);
    kernels().dequantize_blocks(packed.data() + c * fmt.blob_bytes(), scales.data() + c,
                                zps.data() + c, k, fmt, y.data());
    EXPECT_NEAR(y[5], w[5 * n + c], 0.15) << "column " << c;
  }
}

// The importance-weighted search never ends a block worse than round to nearest in its own
// error, sum a_j sqrt(sigma2 + x_j^2) (x_j - q_j)^2, and mostly better.
TEST(NBits, ImportanceWeightedSearchNeverWorseThanRoundToNearest) {
  for (const int bits : {4, 8})
    for (const bool symmetric : {true, false}) {
      const BlockFormat fmt{bits, 32, symmetric};
      const size_t k = 32 * 30 + 5, nb = fmt.blocks(k);
      std::vector<float> x = testing::random_floats(k, 40 + bits);
      std::vector<float> importance = testing::random_floats(k, 50 + bits, 0.0f, 1.0f);
      for (size_t j = 0; j < k; j += 9) importance[j] *= 50;  // a few loud channels
      std::vector<uint8_t> p_rtn(nb * fmt.blob_bytes()), p_s(nb * fmt.blob_bytes());
      std::vector<float> s_rtn(nb), s_s(nb), y_rtn(k), y_s(k);
      std::vector<uint8_t> z_rtn(nb), z_s(nb);
      round_to_nearest().quantize(x.data(), k, fmt, nullptr, p_rtn.data(), s_rtn.data(),
                                  z_rtn.data());
      scale_search().quantize(x.data(), k, fmt, importance.data(), p_s.data(), s_s.data(),
                              z_s.data());
      kernels().dequantize_blocks(p_rtn.data(), s_rtn.data(), z_rtn.data(), k, fmt, y_rtn.data());
      kernels().dequantize_blocks(p_s.data(), s_s.data(), z_s.data(), k, fmt, y_s.data());
      int better = 0;
      for (size_t b = 0; b < nb; ++b) {
        const size_t begin = b * 32, end = std::min(k, begin + 32);
        double sigma2 = 0;
        for (size_t j = begin; j < end; ++j) sigma2 += double(x[j]) * x[j];
        sigma2 = 2 * sigma2 / static_cast<double>(end - begin);
        double e_rtn = 0, e_s = 0;
        for (size_t j = begin; j < end; ++j) {
          const double wt = importance[j] * std::sqrt(sigma2 + double(x[j]) * x[j]);
          e_rtn += wt * (x[j] - y_rtn[j]) * (x[j] - y_rtn[j]);
          e_s += wt * (x[j] - y_s[j]) * (x[j] - y_s[j]);
        }
        ASSERT_LE(e_s, e_rtn * (1 + 1e-5) + 1e-30)
            << bits << " bits, symmetric " << symmetric << ", block " << b;
        better += e_s < e_rtn * 0.999;
      }
      EXPECT_GT(better, static_cast<int>(nb) / 2) << bits << " bits, symmetric " << symmetric;
    }
}

}  // namespace
}  // namespace quantize
