// Kernels: every ISA the CPU has against the scalar reference, byte for byte, for every length
// 1..512 and every block format, with NaN, infinities, signed zeros, subnormals, ties and
// saturation mixed in; the scalar reference against hand-computed values and layouts.
#include "kernels/kernels.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>

namespace quantize {
namespace {

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Random values with specials sprinkled in; `seed` is printed on failure.
std::vector<float> test_data(size_t n, uint32_t seed, bool specials) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-3, 3);
  const float kSpecials[] = {std::numeric_limits<float>::quiet_NaN(),
                             -std::numeric_limits<float>::quiet_NaN(),
                             from_bits(0x7f800001),  // signalling NaN
                             INFINITY,
                             -INFINITY,
                             0.0f,
                             -0.0f,
                             1e-40f,
                             -1e-40f,
                             3e38f,
                             -3e38f,
                             2.5f,
                             -2.5f,
                             0.5f,
                             1e-30f,
                             65504.0f,
                             65520.0f,
                             -70000.0f};
  std::vector<float> v(n);
  for (auto& x : v) {
    x = uniform(rng);
    if (specials && rng() % 7 == 0) x = kSpecials[rng() % std::size(kSpecials)];
  }
  return v;
}

class KernelIsa : public ::testing::TestWithParam<Isa> {};

TEST_P(KernelIsa, BlockQuantizeMatchesScalarForEveryLengthAndFormat) {
  const Kernels& ref = kernels_for(Isa::kScalar);
  const Kernels& simd = kernels_for(GetParam());
  for (int bits : {4, 8}) {
    for (bool symmetric : {true, false}) {
      for (int block : {16, 32, 64, 128, 256}) {
        const BlockFormat fmt{bits, block, symmetric};
        for (size_t k = 1; k <= 512; ++k) {
          const uint32_t seed = static_cast<uint32_t>(k * 7919 + block * 31 + bits * 3 + symmetric);
          SCOPED_TRACE(::testing::Message()
                       << "bits " << bits << " block " << block << (symmetric ? " sym" : " asym")
                       << " k " << k << " seed " << seed);
          const auto x = test_data(k, seed, k % 3 == 0);
          const size_t nb = fmt.blocks(k);
          std::vector<uint8_t> p1(nb * fmt.blob_bytes(), 0xAA), p2(p1.size(), 0x55);
          std::vector<float> s1(nb), s2(nb);
          std::vector<uint8_t> z1(nb, 1), z2(nb, 2);
          ref.quantize_blocks(x.data(), k, fmt, p1.data(), s1.data(), z1.data());
          simd.quantize_blocks(x.data(), k, fmt, p2.data(), s2.data(), z2.data());
          ASSERT_EQ(p1, p2);
          ASSERT_EQ(std::memcmp(s1.data(), s2.data(), nb * 4), 0);
          if (!symmetric) {
            ASSERT_EQ(z1, z2);
          }
        }
      }
    }
  }
}

TEST_P(KernelIsa, Float16ConversionMatchesScalar) {
  const Kernels& ref = kernels_for(Isa::kScalar);
  const Kernels& simd = kernels_for(GetParam());
  for (size_t n = 1; n <= 300; ++n) {
    SCOPED_TRACE(n);
    const auto x = test_data(n, static_cast<uint32_t>(n), true);
    std::vector<uint16_t> h1(n), h2(n);
    ref.f32_to_f16(x.data(), n, h1.data());
    simd.f32_to_f16(x.data(), n, h2.data());
    ASSERT_EQ(h1, h2);
  }
  // Every exponent, many mantissas (including the rounding boundaries), both signs.
  std::vector<float> sweep;
  for (uint32_t e = 0; e < 256; ++e) {
    for (uint32_t m = 0; m < (1u << 23); m += 4093) {
      for (uint32_t s : {0u, 1u}) sweep.push_back(from_bits(s << 31 | e << 23 | m));
    }
    for (uint32_t m : {0x0fffu, 0x1000u, 0x1001u, 0x2fffu, 0x3000u, 0x3001u, 0x7fffffu}) {
      sweep.push_back(from_bits(e << 23 | m));
    }
  }
  std::vector<uint16_t> h1(sweep.size()), h2(sweep.size());
  ref.f32_to_f16(sweep.data(), sweep.size(), h1.data());
  simd.f32_to_f16(sweep.data(), sweep.size(), h2.data());
  for (size_t i = 0; i < sweep.size(); ++i) {
    ASSERT_EQ(h1[i], h2[i]) << std::hex << "input bits 0x" << bits_of(sweep[i]);
  }
}

TEST_P(KernelIsa, Float16ToFloat32MatchesScalarForAllHalves) {
  const Kernels& ref = kernels_for(Isa::kScalar);
  const Kernels& simd = kernels_for(GetParam());
  std::vector<uint16_t> all(65536 + 5);
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint16_t>(i);
  std::vector<float> f1(all.size()), f2(all.size());
  ref.f16_to_f32(all.data(), all.size(), f1.data());
  simd.f16_to_f32(all.data(), all.size(), f2.data());
  for (size_t i = 0; i < all.size(); ++i) {
    ASSERT_EQ(bits_of(f1[i]), bits_of(f2[i])) << std::hex << "half 0x" << all[i];
  }
}

TEST_P(KernelIsa, AffineQuantizeMatchesScalar) {
  const Kernels& ref = kernels_for(Isa::kScalar);
  const Kernels& simd = kernels_for(GetParam());
  for (size_t n = 1; n <= 300; ++n) {
    const auto x = test_data(n, static_cast<uint32_t>(n * 13), n % 2 == 0);
    float mn1, mx1, mn2, mx2;
    ref.minmax(x.data(), n, &mn1, &mx1);
    simd.minmax(x.data(), n, &mn2, &mx2);
    ASSERT_EQ(bits_of(mn1), bits_of(mn2)) << n;
    ASSERT_EQ(bits_of(mx1), bits_of(mx2)) << n;
    for (bool is_signed : {true, false}) {
      for (bool reduce : {false, true}) {
        SCOPED_TRACE(::testing::Message() << "n " << n << (is_signed ? " int8" : " uint8")
                                          << (reduce ? " reduce_range" : ""));
        const AffineParams p = affine_params(mn1, mx1, is_signed, reduce);
        std::vector<uint8_t> q1(n, 1), q2(n, 2);
        ref.quantize_affine(x.data(), n, p, q1.data());
        simd.quantize_affine(x.data(), n, p, q2.data());
        ASSERT_EQ(q1, q2);
      }
    }
  }
  // Per column, for matrices of many shapes.
  for (size_t rows : {1, 3, 17}) {
    for (size_t cols = 1; cols <= 70; ++cols) {
      SCOPED_TRACE(::testing::Message() << rows << " x " << cols);
      const auto x =
          test_data(rows * cols, static_cast<uint32_t>(rows * 1000 + cols), cols % 3 == 0);
      std::vector<float> mn1(cols), mx1(cols), mn2(cols), mx2(cols);
      ref.minmax_columns(x.data(), rows, cols, mn1.data(), mx1.data());
      simd.minmax_columns(x.data(), rows, cols, mn2.data(), mx2.data());
      ASSERT_EQ(std::memcmp(mn1.data(), mn2.data(), cols * 4), 0);
      ASSERT_EQ(std::memcmp(mx1.data(), mx2.data(), cols * 4), 0);
      std::vector<float> inv(cols), lo(cols), hi(cols);
      std::vector<int32_t> zp(cols);
      for (size_t c = 0; c < cols; ++c) {
        const AffineParams p = affine_params(mn1[c], mx1[c], c % 2 == 0, false);
        inv[c] = p.inv, lo[c] = p.lo, hi[c] = p.hi, zp[c] = p.zp;
      }
      const AffineColumns params{inv.data(), lo.data(), hi.data(), zp.data()};
      std::vector<uint8_t> q1(rows * cols, 1), q2(rows * cols, 2);
      ref.quantize_affine_columns(x.data(), rows, cols, params, q1.data());
      simd.quantize_affine_columns(x.data(), rows, cols, params, q2.data());
      ASSERT_EQ(q1, q2);
    }
  }
}

TEST_P(KernelIsa, CodeSumsMatchScalar) {
  const Kernels& ref = kernels_for(Isa::kScalar);
  const Kernels& simd = kernels_for(GetParam());
  // The scale search's ranges (4 and 8 bits, symmetric and not), and inverse scales that are
  // typical, zero, huge, infinite and NaN.
  const float kBounds[][2] = {{-8, 7}, {-128, 127}, {0, 15}, {-15, 0}, {-3, 12}, {-200, 55}};
  const float kInv[] = {37.5f, -412.0f, 0.0f, 1e30f, INFINITY, NAN, 2.0f};
  for (size_t n = 1; n <= 260; ++n) {
    const auto x = test_data(n, static_cast<uint32_t>(n * 31), n % 2 == 1);
    // Weights as the search makes them (w = x^2, wx = w x), with specials of their own.
    const auto w = test_data(n, static_cast<uint32_t>(n * 31 + 1), n % 4 == 0);
    std::vector<float> wx(n);
    for (size_t j = 0; j < n; ++j) wx[j] = w[j] * x[j];
    for (const auto& bounds : kBounds) {
      for (float inv : kInv) {
        SCOPED_TRACE(::testing::Message() << "n " << n << " inv " << inv << " [" << bounds[0]
                                          << ", " << bounds[1] << "]");
        double a1 = -1, b1 = -1, a2 = -2, b2 = -2;
        ref.code_sums(x.data(), wx.data(), w.data(), n, inv, bounds[0], bounds[1], &a1, &b1);
        simd.code_sums(x.data(), wx.data(), w.data(), n, inv, bounds[0], bounds[1], &a2, &b2);
        // Bit for bit, except that any NaN matches any NaN (kernels.h).
        ASSERT_TRUE(std::memcmp(&a1, &a2, 8) == 0 || (std::isnan(a1) && std::isnan(a2)))
            << a1 << " vs " << a2;
        ASSERT_TRUE(std::memcmp(&b1, &b2, 8) == 0 || (std::isnan(b1) && std::isnan(b2)))
            << b1 << " vs " << b2;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Supported, KernelIsa, ::testing::ValuesIn(supported_isas()),
                         [](const auto& info) { return std::string(isa_name(info.param)); });

TEST(ScalarKernels, Float16KnownValues) {
  struct Case {
    float in;
    uint16_t out;
  } cases[] = {
      {1.0f, 0x3c00},
      {-2.0f, 0xc000},
      {65504.0f, 0x7bff},
      {65519.0f, 0x7bff},
      {65520.0f, 0x7bff},
      {1e10f, 0x7bff},
      {-1e10f, 0xfbff},
      {INFINITY, 0x7c00},
      {-INFINITY, 0xfc00},
      {0.0f, 0x0000},
      {-0.0f, 0x8000},
      {5.9604645e-8f, 0x0001},
      {2.9802322e-8f, 0x0000} /* tie: to even */,
      {8.940697e-8f, 0x0002} /* 1.5 ulp: to even */,
      {6.1035156e-5f, 0x0400} /* smallest normal */,
      {0.33325195f, 0x3555},
      {1.00048828125f, 0x3c00} /* tie between 0x3c00 and 0x3c01: even */,
      {1.00146484375f, 0x3c02} /* tie between 0x3c01 and 0x3c02: even */,
  };
  for (const auto& c : cases) {
    EXPECT_EQ(f32_to_f16_scalar(c.in), c.out) << c.in;
  }
  EXPECT_EQ(f32_to_f16_scalar(std::numeric_limits<float>::quiet_NaN()) & 0x7e00, 0x7e00);
  for (uint32_t h = 0; h < 0x7c00; ++h) {  // every finite half survives a round trip
    ASSERT_EQ(f32_to_f16_scalar(f16_to_f32_scalar(static_cast<uint16_t>(h))), h);
    ASSERT_EQ(f32_to_f16_scalar(f16_to_f32_scalar(static_cast<uint16_t>(h | 0x8000))), h | 0x8000);
  }
}

TEST(ScalarKernels, BfloatConversionsRoundToNearestEven) {
  for (uint32_t b = 0; b < 0x7f80; ++b) {  // every finite bfloat16 survives a round trip
    ASSERT_EQ(f32_to_bf16_scalar(bf16_to_f32_scalar(static_cast<uint16_t>(b))), b);
    ASSERT_EQ(f32_to_bf16_scalar(bf16_to_f32_scalar(static_cast<uint16_t>(b | 0x8000))),
              b | 0x8000);
  }
  EXPECT_EQ(bf16_to_f32_scalar(0x3f80), 1.0f);
  EXPECT_EQ(f32_to_bf16_scalar(1.00390625f), 0x3f80);    // 1 + 2^-8: a tie, to even
  EXPECT_EQ(f32_to_bf16_scalar(1.01171875f), 0x3f82);    // 1 + 3 * 2^-8: a tie, to even
  EXPECT_EQ(f32_to_bf16_scalar(1.00390631f), 0x3f81);    // just above the tie
  EXPECT_EQ(f32_to_bf16_scalar(3.4028235e38f), 0x7f80);  // float32's largest rounds to inf
  EXPECT_EQ(f32_to_bf16_scalar(-INFINITY), 0xff80);
  const uint16_t nan = f32_to_bf16_scalar(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7f80, 0x7f80);
  EXPECT_NE(nan & 0x7f, 0);  // still a NaN, not inf
}

TEST(ScalarKernels, CodeSumsFollowTheFormula) {
  // Nine values: element 8 goes into partial 0 after element 0. Codes at inv 2, clamped to
  // [-3, 2]: rne(0.5)=0, rne(1.5)=2, -3 (clamped from -8), 2 (from 7), rne(-2.5)=-2, 1, 0, -1, 2.
  const float x[] = {0.25f, 0.75f, -4, 3.5f, -1.25f, 0.5f, 0.1f, -0.5f, 1};
  const float d[] = {0, 2, -3, 2, -2, 1, 0, -1, 2};
  float w[9], wx[9];
  double sxd = 0, sdd = 0;
  for (int j = 0; j < 9; ++j) {
    w[j] = static_cast<float>(j + 1);
    wx[j] = w[j] * x[j];
    sxd += static_cast<double>(wx[j]) * d[j];
    sdd += static_cast<double>(w[j]) * d[j] * d[j];
  }
  double a = 0, b = 0;
  kernels_for(Isa::kScalar).code_sums(x, wx, w, 9, 2.0f, -3, 2, &a, &b);
  EXPECT_DOUBLE_EQ(a, sxd);  // small integers and quarters: exact in any order
  EXPECT_DOUBLE_EQ(b, sdd);
  EXPECT_EQ(b, 1 * 0 + 2 * 4 + 3 * 9 + 4 * 4 + 5 * 4 + 6 * 1 + 7 * 0 + 8 * 1 + 9 * 4);
}

TEST(ScalarKernels, PackingLayoutMatchesHandComputedBytes) {
  const Kernels& k = kernels_for(Isa::kScalar);
  // Symmetric 4-bit, block 16: extreme 8 -> scale = 8 / -8 = -1, q = round(x / -1) + 8.
  float x[16] = {8, -7, 0, 1, 2, 3, -1, -2, 4, -4, 5, -5, 6, -6, 7, 0.5f};
  uint8_t packed[8];
  float scale;
  k.quantize_blocks(x, 16, {4, 16, true}, packed, &scale, nullptr);
  EXPECT_EQ(scale, -1.0f);
  // q: 0, 15, 8, 7, 6, 5, 9, 10, 4, 12, 3, 13, 2, 14, 1, 8 (0.5 ties to even: 0)
  const uint8_t want[8] = {0xf0, 0x78, 0x56, 0xa9, 0xc4, 0xd3, 0xe2, 0x81};
  EXPECT_EQ(std::memcmp(packed, want, 8), 0);

  // Asymmetric 4-bit, block 16, values -1..14: scale = (14 - -1) / 15 = 1, zp = 1, q = x + 1.
  float y[16];
  for (int i = 0; i < 16; ++i) y[i] = static_cast<float>(i) - 1.0f;
  uint8_t zp;
  k.quantize_blocks(y, 16, {4, 16, false}, packed, &scale, &zp);
  EXPECT_EQ(scale, 1.0f);
  EXPECT_EQ(zp, 1);
  EXPECT_EQ(packed[0], 0x10);  // -1 -> 0, 0 -> 1
  EXPECT_EQ(packed[7], 0xfe);  // 13 -> 14, 14 -> 15

  // 8-bit symmetric: one byte per element; the extreme -128 * scale maps to 0.
  float z[16] = {-2.0f, 1.0f};
  uint8_t bytes[16];
  k.quantize_blocks(z, 2, {8, 16, true}, bytes, &scale, nullptr);
  EXPECT_EQ(scale, 2.0f / 128.0f);
  EXPECT_EQ(bytes[0], 0);
  EXPECT_EQ(bytes[1], 192);
  EXPECT_EQ(bytes[2], 128);  // padding and zeros sit on the zero point
}

TEST(ScalarKernels, RoundTripWithinHalfAScale) {
  const Kernels& k = kernels_for(Isa::kScalar);
  for (int bits : {4, 8}) {
    const BlockFormat fmt{bits, 32, false};
    const auto x = test_data(1000, 42, false);
    const size_t nb = fmt.blocks(x.size());
    std::vector<uint8_t> packed(nb * fmt.blob_bytes()), zp(nb);
    std::vector<float> scales(nb), y(x.size());
    k.quantize_blocks(x.data(), x.size(), fmt, packed.data(), scales.data(), zp.data());
    k.dequantize_blocks(packed.data(), scales.data(), zp.data(), x.size(), fmt, y.data());
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_LE(std::fabs(y[i] - x[i]), scales[i / 32] / 2 * 1.0001f)
          << "bits " << bits << " i " << i;
    }
  }
}

TEST(ScalarKernels, AffineParamsFollowTheFormulas) {
  AffineParams p = affine_params(-2.0f, 1.0f, /*is_signed=*/true, /*reduce_range=*/false);
  EXPECT_EQ(p.scale, 2.0f / 127.0f);
  EXPECT_EQ(p.zp, 0);
  EXPECT_EQ(p.lo, -127.0f);
  EXPECT_EQ(p.hi, 127.0f);
  p = affine_params(-2.0f, 1.0f, true, /*reduce_range=*/true);
  EXPECT_EQ(p.scale, 2.0f / 64.0f);
  EXPECT_EQ(p.lo, -64.0f);
  p = affine_params(-1.0f, 3.0f, /*is_signed=*/false, false);
  EXPECT_EQ(p.scale, 4.0f / 255.0f);
  EXPECT_EQ(p.zp, 64);  // rne(1 / (4 / 255)) = rne(63.75)
  EXPECT_EQ(p.lo, -64.0f);
  EXPECT_EQ(p.hi, 191.0f);
  p = affine_params(0.0f, 0.0f, false, false);  // an all-zero channel
  EXPECT_EQ(p.scale, 1.0f);
  EXPECT_EQ(p.zp, 0);
  // Quantized values: int8 stored as two's complement bytes; the extreme maps to +-127.
  const Kernels& k = kernels_for(Isa::kScalar);
  const float x[4] = {-2.0f, 1.0f, 0.0f, 2.0f / 127.0f * 2.5f};
  uint8_t q[4];
  k.quantize_affine(x, 4, affine_params(-2.0f, 1.0f, true, false), q);
  EXPECT_EQ(q[0], static_cast<uint8_t>(-127));
  EXPECT_EQ(q[1], 64);  // rne(63.5)
  EXPECT_EQ(q[2], 0);
  EXPECT_EQ(q[3], 2);  // a tie, to even
}

TEST(ScalarKernels, AffineRoundTripWithinHalfAScale) {
  const Kernels& k = kernels_for(Isa::kScalar);
  const auto x = test_data(4096, 7, false);
  float mn, mx;
  k.minmax(x.data(), x.size(), &mn, &mx);
  for (bool is_signed : {true, false}) {
    const AffineParams p = affine_params(mn, mx, is_signed, false);
    std::vector<uint8_t> q(x.size());
    k.quantize_affine(x.data(), x.size(), p, q.data());
    for (size_t i = 0; i < x.size(); ++i) {
      const int v = is_signed ? static_cast<int8_t>(q[i]) : q[i];
      ASSERT_LE(std::fabs((v - p.zp) * p.scale - x[i]), p.scale / 2 * 1.0001f) << i;
    }
  }
}

TEST(ScalarKernels, AllZeroBlocksDequantizeToZero) {
  const Kernels& k = kernels_for(Isa::kScalar);
  float x[32] = {};
  uint8_t packed[16], zp;
  float scale, y[32];
  for (bool symmetric : {true, false}) {
    k.quantize_blocks(x, 32, {4, 32, symmetric}, packed, &scale, &zp);
    k.dequantize_blocks(packed, &scale, &zp, 32, {4, 32, symmetric}, y);
    for (float v : y) EXPECT_EQ(v, 0.0f);
  }
}

}  // namespace
}  // namespace quantize
