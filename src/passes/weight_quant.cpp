// Weight-only quantization: the policy, the round-to-nearest quantizer, the lazy packing job and
// the MatMulNBits emitter (see weight_quant.h).
#include "passes/weight_quant.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>

#include "model/tensor_data.h"
#include "passes/gptq.h"
#include "support/threads.h"

namespace quantize {
namespace {

constexpr char kMsDomain[] = "com.microsoft";

class RoundToNearest final : public BlockQuantizer {
 public:
  const char* name() const override { return "rtn"; }
  void quantize(const float* column, size_t k, const BlockFormat& format, const float*,
                uint8_t* packed, float* scales, uint8_t* zero_points) const override {
    kernels().quantize_blocks(column, k, format, packed, scales, zero_points);
  }
};

class Bnb4Codebook final : public BlockQuantizer {
 public:
  Bnb4Codebook(const char* name, int quant_type)
      : name_(name), values_(kBnb4Codebooks[quant_type]) {
    // The distinct values in ascending order, each with its code (+0 over -0), and the
    // midpoints between neighbours: a value above midpoint i takes level i + 1.
    std::vector<std::pair<float, int>> levels;
    for (int c = 0; c < 16; ++c) {
      const bool seen = std::any_of(levels.begin(), levels.end(),
                                    [&](const auto& l) { return l.first == values_[c]; });
      if (!seen) levels.emplace_back(values_[c], c);
    }
    std::sort(levels.begin(), levels.end());
    for (size_t i = 0; i < levels.size(); ++i) {
      codes_.push_back(levels[i].second);
      if (i > 0) midpoints_.push_back((levels[i - 1].first + levels[i].first) / 2);
    }
  }
  const char* name() const override { return name_; }
  void quantize(const float* column, size_t k, const BlockFormat& format, const float*,
                uint8_t* packed, float* scales, uint8_t*) const override {
    const size_t bs = format.block_size;
    for (size_t b = 0; b < format.blocks(k); ++b) {
      const size_t begin = b * bs, n = std::min(bs, k - begin);
      float absmax = 0;
      for (size_t j = 0; j < n; ++j) absmax = std::max(absmax, std::fabs(column[begin + j]));
      const float inv = absmax > 0 ? 1.0f / absmax : 0.0f;
      uint8_t* blob = packed + b * format.blob_bytes();
      for (size_t j = 0; j < bs; j += 2) {
        const int hi = code(j < n ? column[begin + j] * inv : 0.0f);
        const int lo = code(j + 1 < n ? column[begin + j + 1] * inv : 0.0f);
        blob[j / 2] = static_cast<uint8_t>(hi << 4 | lo);
      }
      scales[b] = absmax;
    }
  }
  void dequantize(const uint8_t* packed, const float* scales, const uint8_t*, size_t k,
                  const BlockFormat& format, float* y) const override {
    for (size_t i = 0; i < k; ++i) {
      const size_t b = i / format.block_size, j = i % format.block_size;
      const uint8_t byte = packed[b * format.blob_bytes() + j / 2];
      y[i] = values_[j % 2 == 0 ? byte >> 4 : byte & 15] * scales[b];
    }
  }

 private:
  int code(float v) const {
    const size_t i = std::upper_bound(midpoints_.begin(), midpoints_.end(), v) - midpoints_.begin();
    return codes_[i];
  }
  const char* name_;
  const float* values_;
  std::vector<int> codes_;
  std::vector<float> midpoints_;
};

// The search's candidate scales, in tenths of a level around RTN's (see ScaleSearch). Every
// tenth from -9 to 9 cost 2.5x the time for no gain measured on TinyStories.
constexpr int kSteps[] = {-9, 9};

// Error-minimising scales (k-quant style). A block's values x are coded as s (c - z), codes c in
// [0, Q] (Q = 15 or 255), z = 8 or 128 for symmetric blocks, a per-block zero point otherwise.
// The weighted error of codes c at scale s is sum w (x - s d)^2, d = c - z; for given codes the
// best scale is the least-squares one, s = Sxd / Sdd (Sxd = sum w x d, Sdd = sum w d^2), whose
// error is Sxx - Sxd^2 / Sdd: one pass over the block (round, two sums) scores a candidate at its
// refitted scale. Candidates: round to nearest's codes (the kernels' block, the start), and codes
// rounded at scales around RTN's (symmetric: inverse -(L + i / 10) / m, m the value of largest
// magnitude, L = 8 or 128; asymmetric: (max - min) / (Q + i / 10), z = round(-min / scale); i in
// kSteps). The best is re-rounded once at its refitted scale, kept if better still. RTN's codes
// refitted are a candidate, so no block ends worse than RTN in that error.
// Weights, data-free: w = x^2 (large weights matter most). With an importance per input channel
// (imatrix: the mean square a_j of the activation the weight multiplies, so sum a_j (x_j - q_j)^2
// is the output's error if channels were uncorrelated): w = a_j sqrt(sigma2 + x_j^2), sigma2
// twice the block's mean square (llama.cpp's weighting). Both chosen on TinyStories with an
// earlier, 19-candidate form of this search: plain squared error lost 2 points of top-1 to x^2;
// imatrix KL 0.074, against 0.084 for a_j alone and 0.080 for a_j x_j^2. Each candidate is one
// Kernels::code_sums pass (the same bits on every ISA).
class ScaleSearch final : public BlockQuantizer {
 public:
  const char* name() const override { return "search"; }
  void quantize(const float* column, size_t k, const BlockFormat& format, const float* importance,
                uint8_t* packed, float* scales, uint8_t* zero_points) const override {
    kernels().quantize_blocks(column, k, format, packed, scales, zero_points);  // the start
    const auto sums = kernels().code_sums;
    const int top = (1 << format.bits) - 1, half = 1 << (format.bits - 1);
    const size_t bs = format.block_size;
    std::vector<float> w(bs), wx(bs);
    std::vector<uint8_t> codes(bs);
    for (size_t b = 0; b < format.blocks(k); ++b) {
      const size_t begin = b * bs, n = std::min(bs, k - begin);
      const float* x = column + begin;
      uint8_t* blob = packed + b * format.blob_bytes();
      float mn = 0, mx = 0;
      if (!format.symmetric) {
        for (size_t j = 0; j < n; ++j) {
          mn = std::min(mn, x[j]);
          mx = std::max(mx, x[j]);
        }
      }
      // The value of largest magnitude: RTN's symmetric scale is m / -L.
      const float m = format.symmetric ? -static_cast<float>(half) * scales[b] : 0.0f;
      if (importance) {
        float sigma2 = 0;
#pragma omp simd reduction(+ : sigma2)
        for (size_t j = 0; j < n; ++j) sigma2 += x[j] * x[j];
        sigma2 = 2 * sigma2 / static_cast<float>(n);  // twice the block's mean square
        const float* a = importance + begin;
        for (size_t j = 0; j < n; ++j) w[j] = a[j] * std::sqrt(sigma2 + x[j] * x[j]);
      } else {
        for (size_t j = 0; j < n; ++j) w[j] = x[j] * x[j];
      }
      double sxx = 0;  // the sums in double: an 8-bit block's error is ~1e-5 of sxx
#pragma omp simd reduction(+ : sxx)
      for (size_t j = 0; j < n; ++j) {
        wx[j] = w[j] * x[j];
        sxx += double(wx[j]) * x[j];
      }
      if (!std::isfinite(sxx)) continue;  // an infinity or NaN in the block: RTN's is kept
      // The best so far: codes round(x * inv) + z (inv 0: RTN's own codes) and their sums. Its
      // error sxx - sxd^2 / sdd is lower than another's when sxd^2 / sdd is higher: compared by
      // cross products, no division per candidate.
      struct Pick {
        float inv = 0;
        int z = 0;
        double sxd = 0, sdd = 0;
        float scale() const { return static_cast<float>(sxd / sdd); }  // the least-squares one
      } best;
      auto score = [&](float inv, int z) {  // codes clamp(round(x inv) + z), in one pass
        Pick p{inv, z};
        sums(x, wx.data(), w.data(), n, inv, static_cast<float>(-z), static_cast<float>(top - z),
             &p.sxd, &p.sdd);
        return p;
      };
      // RTN's codes, from the kernel's own inverse scale (kernels.h); inv 0 marks them.
      best = score(format.symmetric ? (scales[b] != 0 ? 1 / scales[b] : 0.0f) : 1 / scales[b],
                   format.symmetric ? half : zero_points[b]);
      best.inv = 0;
      if (best.sdd <= 0) continue;  // an all-zero block: RTN's is exact
      auto consider = [&](float inv, int z) {
        const Pick p = score(inv, z);
        if (p.sdd > 0 && p.sxd * p.sxd * best.sdd > best.sxd * best.sxd * p.sdd) best = p;
      };
      for (int i : kSteps) {
        if (format.symmetric) {
          if (m == 0) break;
          consider(-(half + 0.1f * i) / m, half);
        } else {
          if (mx - mn <= 0) break;
          const float scale = (mx - mn) / (top + 0.1f * i);
          consider(1 / scale, static_cast<int>(std::clamp(std::nearbyint(-mn / scale), 0.0f,
                                                          static_cast<float>(top))));
        }
      }
      if (best.scale() != 0) consider(1 / best.scale(), best.z);  // re-round at the refit scale
      scales[b] = best.scale();
      if (best.inv == 0) continue;  // RTN's codes: only the scale changes
      if (!format.symmetric) zero_points[b] = static_cast<uint8_t>(best.z);
      AffineParams codes_at;  // the codes code_sums scored, by the 8-bit kernel (same formula)
      codes_at.inv = best.inv, codes_at.zp = best.z;
      codes_at.lo = static_cast<float>(-best.z), codes_at.hi = static_cast<float>(top - best.z);
      kernels().quantize_affine(x, n, codes_at, codes.data());
      std::fill(codes.begin() + n, codes.end(), static_cast<uint8_t>(best.z));  // padding: 0.0
      if (format.bits == 8) {
        std::copy(codes.begin(), codes.end(), blob);
      } else {
        for (size_t j = 0; j < bs / 2; ++j) blob[j] = codes[2 * j] | codes[2 * j + 1] << 4;
      }
    }
  }
};

bool uses_gptq(const InputStatistics* input, int64_t k) {
  return input && input->gram && input->gram->k == k;
}
bool uses_importance(const InputStatistics* input, int64_t k) {
  return input && static_cast<int64_t>(input->mean_square.size()) == k;
}

// Quantizes one weight [K, N] into the MatMulNBits layout. The packed bytes are written straight
// into the writer's buffer; scales and zero points (small) are kept until their payload is read.
class NBitsJob {
 public:
  // source: float32 [K, N], or [N, K] when `rows_are_columns` (Gemm with transB). Stored scales
  // are multiplied by `scale_factor` (Gemm's alpha).
  NBitsJob(PayloadPtr source, int source_type, int64_t k, int64_t n, BlockFormat fmt,
           bool f16_scales, bool rows_are_columns, float scale_factor,
           const BlockQuantizer& quantizer, std::shared_ptr<const InputStatistics> input,
           std::shared_ptr<const std::vector<float>> row_scales)
      : source_(std::move(source)),
        source_type_(source_type),
        k_(k),
        n_(n),
        fmt_(fmt),
        f16_scales_(f16_scales),
        rows_are_columns_(rows_are_columns),
        scale_factor_(scale_factor),
        quantizer_(quantizer),
        input_(std::move(input)),
        row_scales_(std::move(row_scales)) {}

  uint64_t blocks() const { return fmt_.blocks(k_); }
  // Relative RMS of the reconstruction (estimated, see add_error), NaN until the bytes are
  // computed.
  std::shared_ptr<const double> error() const { return error_; }
  uint64_t packed_bytes() const { return n_ * blocks() * fmt_.blob_bytes(); }
  uint64_t scale_bytes() const { return n_ * blocks() * (f16_scales_ ? 2 : 4); }
  uint64_t zero_point_row() const { return (blocks() * fmt_.bits + 7) / 8; }
  uint64_t zero_point_bytes() const { return fmt_.symmetric ? 0 : n_ * zero_point_row(); }

  void read_packed(uint8_t* out) {
    std::lock_guard<std::mutex> lock(mutex_);
    compute(out);
  }
  void read_scales(uint8_t* out) { read_side(scales_, out); }
  void read_zero_points(uint8_t* out) { read_side(zero_points_, out); }

 private:
  void read_side(std::vector<uint8_t>& part, uint8_t* out) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (part.empty()) {
      std::vector<uint8_t> packed(packed_bytes());
      compute(packed.data());
    }
    std::memcpy(out, part.data(), part.size());
  }

  void compute(uint8_t* packed) {
    error_sum_ = weight_sum_ = 0;
    const uint64_t nb = blocks(), zrow = zero_point_row();
    const int64_t k = k_, n = n_;
    std::vector<float> scales(n * nb);
    std::vector<uint8_t> zps(fmt_.symmetric ? 0 : n * nb);
    zero_points_.assign(zero_point_bytes(), 0);
    PayloadBytes source(source_);
    const uint8_t* w = source.data();
    const GptqFactor* gptq = uses_gptq(input_.get(), k) ? &input_->factor() : nullptr;
    const float* importance =
        uses_importance(input_.get(), k) ? input_->mean_square.data() : nullptr;
    if (gptq) {
      compute_gptq(w, *gptq, packed, scales.data(), zps.data());
    } else {
      compute_columns(w, importance, packed, scales.data(), zps.data());
    }
    *error_ = weight_sum_ > 0 ? std::sqrt(error_sum_ / weight_sum_) : 0.0;
    if (scale_factor_ != 1.0f) {
      for (float& v : scales) v *= scale_factor_;
    }
    if (f16_scales_) {
      scales_.resize(scales.size() * 2);
      kernels().f32_to_f16(scales.data(), scales.size(),
                           reinterpret_cast<uint16_t*>(scales_.data()));
    } else {
      scales_.resize(scales.size() * 4);
      std::memcpy(scales_.data(), scales.data(), scales_.size());
    }
    if (!fmt_.symmetric) {  // pack per row like B: low bits first, rows padded to whole bytes
      for (int64_t col = 0; col < n; ++col) {
        for (uint64_t b = 0; b < nb; ++b) {
          uint8_t z = zps[col * nb + b];
          uint8_t& dst = zero_points_[col * zrow + b * fmt_.bits / 8];
          dst |= fmt_.bits == 8 ? z : static_cast<uint8_t>(z << (4 * (b & 1)));
        }
      }
    }
  }

  // `count` source values from element `offset` on, as float32.
  void load(const uint8_t* base, int64_t offset, int64_t count, float* dst) const {
    if (source_type_ != onnx::TensorProto::FLOAT) {
      widen_to_float32(source_type_, base + 2 * offset, count, dst);
    } else {
      std::memcpy(dst, reinterpret_cast<const float*>(base) + offset, count * sizeof(float));
    }
  }

  // Tiles of `tile` columns over the threads; body(c0, cols, tile) gets the tile's columns
  // gathered as `cols` rows of K values, or, with `row_major`, as K rows of `cols` values
  // (float32 whatever the source's type). A [K, N] weight in column order goes by
  // compute_strips instead.
  template <typename Body>
  void for_tiles(const uint8_t* w, bool row_major, int64_t tile, const Body& body) const {
    const int64_t k = k_, n = n_;
    parallel_for((n + tile - 1) / tile, 1, [&](size_t t0, size_t t1) {
      std::vector<float> buf(tile * k), run(k);
      for (size_t t = t0; t < t1; ++t) {
        const int64_t c0 = static_cast<int64_t>(t) * tile, cols = std::min(tile, n - c0);
        if (rows_are_columns_ && row_major) {  // [N, K] -> K rows of the tile
          for (int64_t j = 0; j < cols; ++j) {
            load(w, (c0 + j) * k, k, run.data());
            for (int64_t r = 0; r < k; ++r) buf[r * cols + j] = run[r];
          }
        } else if (rows_are_columns_) {
          load(w, c0 * k, cols * k, buf.data());
        } else {  // [K, N]: one contiguous run of each row (columns go by compute_strips)
          for (int64_t r = 0; r < k; ++r) load(w, r * n + c0, cols, buf.data() + r * cols);
        }
        if (row_scales_) scale_rows(buf.data(), cols, row_major);
        body(c0, cols, buf.data());
      }
    });
  }

  // Multiplies row r of a gathered tile by row_scales_[r] (AWQ).
  void scale_rows(float* buf, int64_t cols, bool row_major) const {
    const float* s = row_scales_->data();
    for (int64_t r = 0; r < k_; ++r) {
      for (int64_t j = 0; j < cols; ++j) buf[row_major ? r * cols + j : j * k_ + r] *= s[r];
    }
  }

  // Adds column `col`'s squared reconstruction error and squared norm to the totals (x: its K
  // original values). The error is estimated on one column in kErrorStride (all of a narrow
  // weight): measuring every column cost as much as round to nearest itself.
  static constexpr int64_t kErrorStride = 8;
  bool measures_error(int64_t col) const {
    return n_ < 8 * kErrorStride || col % kErrorStride == 0;
  }
  void add_error(const float* x, int64_t col, const uint8_t* packed, const float* scales,
                 const uint8_t* zps, std::vector<float>& y, double& err, double& norm) const {
    if (!measures_error(col)) return;
    const uint64_t nb = blocks();
    add_segment_error(x, 0, k_, packed + col * nb * fmt_.blob_bytes(), scales + col * nb,
                      fmt_.symmetric ? nullptr : zps + col * nb, y, err, norm);
  }
  // The same for `rows` values of a column from row r0 on (x, and the blocks that code them).
  void add_segment_error(const float* x, int64_t r0, int64_t rows, const uint8_t* packed,
                         const float* scales, const uint8_t* zps, std::vector<float>& y,
                         double& err, double& norm) const {
    y.resize(rows);
    quantizer_.dequantize(packed, scales, zps, rows, fmt_, y.data());
    // The error of the weight itself, not of its scaled rows (AWQ).
    const float* s = row_scales_ ? row_scales_->data() + r0 : nullptr;
    float e = 0, w = 0;
#pragma omp simd reduction(+ : e, w)
    for (int64_t i = 0; i < rows; ++i) {
      const float inv = s ? 1.0f / s[i] : 1.0f;
      e += (x[i] - y[i]) * (x[i] - y[i]) * inv * inv;
      w += x[i] * x[i] * inv * inv;
    }
    err += e, norm += w;
  }
  void merge_error(double err, double norm) {
    std::lock_guard<std::mutex> lock(error_mutex_);
    error_sum_ += err;
    weight_sum_ += norm;
  }

  void compute_columns(const uint8_t* w, const float* importance, uint8_t* packed, float* scales,
                       uint8_t* zps) {
    if (!rows_are_columns_) return compute_strips(w, importance, packed, scales, zps);
    const uint64_t nb = blocks(), blob = fmt_.blob_bytes();
    auto one = [&](int64_t col, const float* column) {
      quantizer_.quantize(column, k_, fmt_, importance, packed + col * nb * blob, scales + col * nb,
                          fmt_.symmetric ? nullptr : zps + col * nb);
    };
    for_tiles(w, false, 16, [&](int64_t c0, int64_t cols, const float* tile) {
      double err = 0, norm = 0;
      std::vector<float> y;
      for (int64_t j = 0; j < cols; ++j) {
        one(c0 + j, tile + j * k_);
        add_error(tile + j * k_, c0 + j, packed, scales, zps, y, err, norm);
      }
      merge_error(err, norm);
    });
  }

  // A [K, N] weight by strips of whole blocks of rows, each cut into tiles of 64 columns
  // gathered into column order: a task reads 64-value runs of a few hundred consecutive rows,
  // which the two threads share (tasks go strip by strip), instead of one cache line from each
  // of K rows (a TLB miss apiece) per column tile. Blocks are quantized independently, so a
  // column quantized a strip at a time is byte-identical to the whole column at once.
  void compute_strips(const uint8_t* w, const float* importance, uint8_t* packed, float* scales,
                      uint8_t* zps) {
    const int64_t k = k_, n = n_, bs = fmt_.block_size, blob = fmt_.blob_bytes();
    const int64_t nb = static_cast<int64_t>(blocks());
    const int64_t strip = bs * std::max<int64_t>(1, 256 / bs), tile = 64;
    const int64_t tiles = (n + tile - 1) / tile, strips = (k + strip - 1) / strip;
    const float* s = row_scales_ ? row_scales_->data() : nullptr;
    parallel_for(strips * tiles, 1, [&](size_t t0, size_t t1) {
      std::vector<float> run(16 * tile), cols_buf(tile * strip), y;
      for (size_t t = t0; t < t1; ++t) {
        const int64_t r0 = static_cast<int64_t>(t) / tiles * strip, rows = std::min(strip, k - r0);
        const int64_t c0 = static_cast<int64_t>(t) % tiles * tile, cols = std::min(tile, n - c0);
        for (int64_t g = 0; g < rows; g += 16) {  // 16 rows at a time: one line per column
          const int64_t h = std::min<int64_t>(16, rows - g);
          for (int64_t r = 0; r < h; ++r) load(w, (r0 + g + r) * n + c0, cols, &run[r * cols]);
          for (int64_t j = 0; j < cols; ++j) {
            float* dst = &cols_buf[j * rows + g];
            for (int64_t r = 0; r < h; ++r) dst[r] = run[r * cols + j];
          }
        }
        if (s) {  // AWQ: row r scaled by s[r]
          for (int64_t j = 0; j < cols; ++j) {
            for (int64_t r = 0; r < rows; ++r) cols_buf[j * rows + r] *= s[r0 + r];
          }
        }
        double err = 0, norm = 0;
        const int64_t b0 = r0 / bs;
        for (int64_t j = 0; j < cols; ++j) {
          const int64_t col = c0 + j;
          const float* x = &cols_buf[j * rows];
          uint8_t* col_packed = packed + (col * nb + b0) * blob;
          float* col_scales = scales + col * nb + b0;
          uint8_t* col_zps = fmt_.symmetric ? nullptr : zps + col * nb + b0;
          quantizer_.quantize(x, rows, fmt_, importance ? importance + r0 : nullptr, col_packed,
                              col_scales, col_zps);
          if (measures_error(col)) {
            add_segment_error(x, r0, rows, col_packed, col_scales, col_zps, y, err, norm);
          }
        }
        merge_error(err, norm);
      }
    });
  }

  void compute_gptq(const uint8_t* w, const GptqFactor& factor, uint8_t* packed, float* scales,
                    uint8_t* zps) {
    const uint64_t nb = blocks(), blob = fmt_.blob_bytes();
    // Columns are independent: tiles of 64 keep the per-block GEMM efficient.
    for_tiles(w, true, 64, [&](int64_t c0, int64_t cols, const float* tile) {
      std::vector<float> work(tile, tile + k_ * cols);
      std::vector<uint8_t> tile_packed(cols * nb * blob);
      std::vector<float> tile_scales(cols * nb);
      std::vector<uint8_t> tile_zps(cols * nb);
      // Each block's scale by round to nearest: on TinyStories KL 0.053 (asymmetric 0.044),
      // against 0.055 (0.046) with the search's.
      gptq_quantize(work.data(), k_, cols, factor, fmt_, round_to_nearest(), f16_scales_,
                    tile_packed.data(), tile_scales.data(), tile_zps.data());
      std::memcpy(packed + c0 * nb * blob, tile_packed.data(), tile_packed.size());
      std::memcpy(scales + c0 * nb, tile_scales.data(), tile_scales.size() * 4);
      if (!fmt_.symmetric) std::memcpy(zps + c0 * nb, tile_zps.data(), tile_zps.size());
      double err = 0, norm = 0;
      std::vector<float> x(k_), y;
      for (int64_t j = 0; j < cols; ++j) {
        if (n_ >= 8 * kErrorStride && (c0 + j) % kErrorStride != 0) continue;
        for (int64_t r = 0; r < k_; ++r) x[r] = tile[r * cols + j];
        add_error(x.data(), c0 + j, packed, scales, zps, y, err, norm);
      }
      merge_error(err, norm);
    });
  }

  PayloadPtr source_;
  int source_type_;  // FLOAT, FLOAT16 or BFLOAT16
  int64_t k_, n_;
  BlockFormat fmt_;
  bool f16_scales_;
  bool rows_are_columns_;
  float scale_factor_;
  const BlockQuantizer& quantizer_;
  std::shared_ptr<const InputStatistics> input_;
  std::shared_ptr<const std::vector<float>> row_scales_;  // AWQ's s, or nullptr
  std::shared_ptr<double> error_ =
      std::make_shared<double>(std::numeric_limits<double>::quiet_NaN());
  std::mutex mutex_, error_mutex_;
  double error_sum_ = 0, weight_sum_ = 0;
  std::vector<uint8_t> scales_, zero_points_;
};

}  // namespace

std::variant<WeightPrecision, std::string> WeightPolicy::decide(const onnx::NodeProto& node,
                                                                bool feeds_output) const {
  if (std::string why = filter.why_not(node.name()); !why.empty()) return why;
  auto it = overrides.find(node_key(node));
  if (it == overrides.end()) {
    WeightPrecision p = precision;
    if (feeds_output && output_projection_8bit && p.bits < 8) {
      p.bits = 8;
      p.output_projection = true;
    }
    return p;
  }
  WeightPrecision p = precision;
  switch (it->second) {
    case Precision::kFloat:
    case Precision::kFp16:
      return std::string("kept float by the precision plan");
    case Precision::kQ4:
      p.bits = 4;
      break;
    case Precision::kQ8:
    case Precision::kInt8:
    case Precision::kUInt8:
      p.bits = 8;
      break;
    case Precision::kA16:
      break;  // no activations to widen here
  }
  return p;
}

const BlockQuantizer& round_to_nearest() {
  static const RoundToNearest rtn;
  return rtn;
}

const BlockQuantizer& scale_search() {
  static const ScaleSearch search;
  return search;
}

void BlockQuantizer::dequantize(const uint8_t* packed, const float* scales,
                                const uint8_t* zero_points, size_t k, const BlockFormat& format,
                                float* y) const {
  kernels().dequantize_blocks(packed, scales, zero_points, k, format, y);
}

const BlockQuantizer& bnb4_codebook(int quant_type) {
  static const Bnb4Codebook fp4("fp4", 0), nf4("nf4", 1);
  return quant_type == 0 ? fp4 : nf4;
}

bool is_bnb4(const BlockQuantizer& quantizer) {
  return &quantizer == &bnb4_codebook(0) || &quantizer == &bnb4_codebook(1);
}

const GptqFactor& InputStatistics::factor() const {
  std::call_once(once_, [this] { factor_ = std::make_shared<GptqFactor>(gptq_factor(*gram)); });
  return *factor_;
}

// MatMulNBits' layout (per column of the weight: its K codes in blocks, symmetric codes offset
// by 2^(bits-1); scales and zero points [N, blocks]) re-laid as DequantizeLinear reads the
// weight's own shape (Orientation::qdq).
struct QdqLayout {
  int64_t k, n;
  BlockFormat fmt;
  bool rows_are_columns;

  // Element (column c, position j along K) of a [K, N] or [N, K] tensor.
  int64_t at(int64_t c, int64_t j, int64_t along_k) const {
    return rows_are_columns ? c * along_k + j : j * n + c;
  }
  static int get(const uint8_t* data, int64_t i, int bits) {
    return bits == 8 ? data[i] : (data[i / 2] >> (i % 2 * 4)) & 0xF;
  }
  static void put(uint8_t* data, int64_t i, int bits, int v) {  // 4 bits: into zeroed bytes
    if (bits == 8) {
      data[i] = static_cast<uint8_t>(v);
    } else {
      data[i / 2] |= static_cast<uint8_t>(v << (i % 2 * 4));
    }
  }

  void codes(const uint8_t* packed, uint8_t* out) const {
    const int64_t nb = fmt.blocks(k), blob = fmt.blob_bytes();
    if (fmt.bits == 4) std::memset(out, 0, tensor_bytes(kInt4, k * n));
    // Symmetric codes become signed: code - 2^(bits-1), in two's complement an XOR of the top bit.
    const int flip = fmt.symmetric ? 1 << (fmt.bits - 1) : 0;
    for (int64_t c = 0; c < n; ++c) {
      for (int64_t j = 0; j < k; ++j) {
        const uint8_t* block = packed + (c * nb + j / fmt.block_size) * blob;
        put(out, at(c, j, k), fmt.bits, get(block, j % fmt.block_size, fmt.bits) ^ flip);
      }
    }
  }
  template <typename T>
  void transpose_side(const uint8_t* in, uint8_t* out) const {
    const int64_t nb = fmt.blocks(k);
    for (int64_t c = 0; c < n; ++c) {
      for (int64_t b = 0; b < nb; ++b) {
        std::memcpy(out + at(c, b, nb) * sizeof(T), in + (c * nb + b) * sizeof(T), sizeof(T));
      }
    }
  }
  void scales32(const uint8_t* in, uint8_t* out) const { transpose_side<float>(in, out); }
  void scales16(const uint8_t* in, uint8_t* out) const { transpose_side<uint16_t>(in, out); }
  void zero_points(const uint8_t* in, uint8_t* out) const {
    const int64_t nb = fmt.blocks(k), row = (nb * fmt.bits + 7) / 8;
    if (fmt.bits == 4) std::memset(out, 0, tensor_bytes(kUInt4, nb * n));
    for (int64_t c = 0; c < n; ++c) {
      for (int64_t b = 0; b < nb; ++b) {
        put(out, at(c, b, nb), fmt.bits, get(in + c * row, b, fmt.bits));
      }
    }
  }
};

PackedWeight add_packed_weight(GraphEditor& editor, const ConstantRef& ref, const Orientation& how,
                               const WeightPrecision& precision, int scale_type,
                               const BlockQuantizer& quantizer,
                               std::shared_ptr<const InputStatistics> input, TensorChange& change,
                               std::shared_ptr<const std::vector<float>> row_scales) {
  const onnx::TensorProto& b = *ref.tensor;
  PackedWeight q;
  q.k = b.dims(how.rows_are_columns ? 1 : 0);
  q.n = b.dims(how.rows_are_columns ? 0 : 1);
  const BlockFormat fmt = precision.format();
  const bool f16 = scale_type == onnx::TensorProto::FLOAT16;
  // A widened weight is read as its float16 / bfloat16 bytes, converted a tile at a time.
  int source_type = 0;
  PayloadPtr source = stored_payload(editor.model(), b, &source_type);
  const bool narrow = source_type != onnx::TensorProto::FLOAT;
  auto job =
      std::make_shared<NBitsJob>(std::move(source), source_type, q.k, q.n, fmt, f16,
                                 how.rows_are_columns, how.alpha, quantizer, input, row_scales);
  const std::string base = b.name().empty() ? "weight" : b.name();
  auto add = [&](const std::string& suffix, int type, std::vector<int64_t> dims, uint64_t size,
                 void (NBitsJob::*read)(uint8_t*)) {
    return editor.add_initializer(
        *ref.graph, base + suffix, type, dims,
        make_lazy_payload(size, [job, read](uint8_t* out) { ((*job).*read)(out); }));
  };
  const int64_t nb = static_cast<int64_t>(job->blocks());
  const int64_t blob = static_cast<int64_t>(fmt.blob_bytes());
  if (how.qdq) {
    const int code_type =
        fmt.bits == 4 ? (fmt.symmetric ? kInt4 : kUInt4)
                      : (fmt.symmetric ? onnx::TensorProto::INT8 : onnx::TensorProto::UINT8);
    const int zero_type = fmt.bits == 4 ? kUInt4 : onnx::TensorProto::UINT8;
    const QdqLayout layout{q.k, q.n, fmt, how.rows_are_columns};
    auto add_relaid = [&](const std::string& suffix, int type, std::vector<int64_t> dims,
                          uint64_t source_bytes, void (NBitsJob::*read)(uint8_t*),
                          void (QdqLayout::*relay)(const uint8_t*, uint8_t*) const) {
      uint64_t count = 1;
      for (int64_t d : dims) count *= static_cast<uint64_t>(d);
      const uint64_t size = tensor_bytes(type, count);
      return editor.add_initializer(
          *ref.graph, base + suffix, type, dims,
          make_lazy_payload(size, [job, read, relay, layout, source_bytes](uint8_t* out) {
            std::vector<uint8_t> stored(source_bytes);
            ((*job).*read)(stored.data());
            (layout.*relay)(stored.data(), out);
          }));
    };
    const std::vector<int64_t> side =
        how.rows_are_columns ? std::vector<int64_t>{q.n, nb} : std::vector<int64_t>{nb, q.n};
    q.packed = add_relaid(
        fmt.bits == 4 ? "_Q4" : "_Q8", code_type,
        how.rows_are_columns ? std::vector<int64_t>{q.n, q.k} : std::vector<int64_t>{q.k, q.n},
        job->packed_bytes(), &NBitsJob::read_packed, &QdqLayout::codes);
    const bool f16 = scale_type == onnx::TensorProto::FLOAT16;
    q.scales = add_relaid("_scales", scale_type, side, job->scale_bytes(), &NBitsJob::read_scales,
                          f16 ? &QdqLayout::scales16 : &QdqLayout::scales32);
    if (!fmt.symmetric) {
      q.zero_points = add_relaid("_zero_points", zero_type, side, job->zero_point_bytes(),
                                 &NBitsJob::read_zero_points, &QdqLayout::zero_points);
    }
  } else {
    q.packed = add(fmt.bits == 4 ? "_Q4" : "_Q8", onnx::TensorProto::UINT8,
                   how.flat    ? std::vector<int64_t>{q.n * nb * blob}
                   : how.table ? std::vector<int64_t>{q.n, nb * blob}
                               : std::vector<int64_t>{q.n, nb, blob},
                   job->packed_bytes(), &NBitsJob::read_packed);
    q.scales = add(is_bnb4(quantizer) ? "_absmax" : "_scales", scale_type,
                   how.flat ? std::vector<int64_t>{q.n * nb} : std::vector<int64_t>{q.n, nb},
                   job->scale_bytes(), &NBitsJob::read_scales);
    if (!fmt.symmetric) {
      q.zero_points = add("_zero_points", onnx::TensorProto::UINT8,
                          {q.n, static_cast<int64_t>(job->zero_point_row())},
                          job->zero_point_bytes(), &NBitsJob::read_zero_points);
    }
  }
  change.name = b.name();
  change.dims = {q.k, q.n};
  change.from = source_type == onnx::TensorProto::FLOAT16    ? "f16"
                : source_type == onnx::TensorProto::BFLOAT16 ? "bf16"
                                                             : "f32";
  // The algorithm, unless round to nearest (the reference tools' bytes).
  std::string algo = &quantizer == &round_to_nearest() ? "" : quantizer.name();
  if (uses_gptq(input.get(), q.k)) {
    algo = "gptq";
  } else if (uses_importance(input.get(), q.k) && !algo.empty()) {
    algo = "imatrix";
  }
  if (row_scales) algo = "awq+" + algo;
  change.to = is_bnb4(quantizer)
                  ? fmt::format("{} b{}", quantizer.name(), fmt.block_size)
                  : fmt::format("q{} b{}{}{}", fmt.bits, fmt.block_size,
                                fmt.symmetric ? "" : " asym", algo.empty() ? "" : " " + algo);
  change.bytes_before = static_cast<uint64_t>(q.k * q.n) * (narrow ? 2 : 4);
  change.error = job->error();
  change.bytes_after = job->packed_bytes() + job->scale_bytes() + job->zero_point_bytes();
  return q;
}

std::vector<float> sample_columns(Model& model, const onnx::TensorProto& weight,
                                  const Orientation& how, int64_t max_columns, int64_t* count) {
  const int64_t k = weight.dims(how.rows_are_columns ? 1 : 0);
  const int64_t n = weight.dims(how.rows_are_columns ? 0 : 1);
  const int64_t stride = (n + max_columns - 1) / max_columns;
  *count = (n + stride - 1) / stride;
  const bool f16 = weight.data_type() == onnx::TensorProto::FLOAT16;
  PayloadBytes bytes(tensor_payload(model, weight));
  auto value = [&](int64_t i) {
    if (!f16) {
      float v;
      std::memcpy(&v, bytes.data() + i * 4, 4);
      return v;
    }
    uint16_t h;
    float v;
    std::memcpy(&h, bytes.data() + i * 2, 2);
    kernels().f16_to_f32(&h, 1, &v);
    return v;
  };
  std::vector<float> out(*count * k);
  for (int64_t c = 0; c < *count; ++c) {
    for (int64_t r = 0; r < k; ++r) {
      out[c * k + r] = value(how.rows_are_columns ? c * stride * k + r : r * n + c * stride);
    }
  }
  return out;
}

void emit_gather_block_quantized(GraphEditor& editor, onnx::GraphProto& graph,
                                 onnx::NodeProto& node, const PackedWeight& weight,
                                 const WeightPrecision& precision) {
  std::vector<std::string> inputs = {weight.packed, node.input(1), weight.scales};
  if (!weight.zero_points.empty()) inputs.push_back(weight.zero_points);
  auto& out =
      editor.add_node(graph, "GatherBlockQuantized",
                      node.name().empty() ? "Gather_Q" + std::to_string(precision.bits)
                                          : node.name() + "_Q" + std::to_string(precision.bits),
                      std::move(inputs), {node.output(0)}, kMsDomain, &node);
  set_attr(out, "bits", static_cast<int64_t>(precision.bits));
  set_attr(out, "block_size", static_cast<int64_t>(precision.block_size));
  set_attr(out, "gather_axis", int64_t{0});
  set_attr(out, "quantize_axis", int64_t{1});
  editor.remove_node(node);
}

std::string emit_dequantize_weight(GraphEditor& editor, onnx::GraphProto& graph,
                                   const onnx::NodeProto& before, const PackedWeight& weight,
                                   const WeightPrecision& precision, bool rows_are_columns) {
  std::vector<std::string> inputs = {weight.packed, weight.scales};
  if (!weight.zero_points.empty()) inputs.push_back(weight.zero_points);
  const std::string output = editor.unique(weight.packed + "_dequantized");
  auto& dq = editor.add_node(graph, "DequantizeLinear", weight.packed + "_DequantizeLinear",
                             std::move(inputs), {output}, "", &before);
  set_attr(dq, "axis", int64_t{rows_are_columns ? 1 : 0});
  set_attr(dq, "block_size", static_cast<int64_t>(precision.block_size));
  return output;
}

void emit_matmul_bnb4(GraphEditor& editor, onnx::GraphProto& graph, onnx::NodeProto& node,
                      const PackedWeight& weight, const WeightPrecision& precision, int quant_type,
                      const std::string& output) {
  auto& out = editor.add_node(
      graph, "MatMulBnb4", node.name().empty() ? "MatMul_Bnb4" : node.name() + "_Bnb4",
      {node.input(0), weight.packed, weight.scales}, {output}, kMsDomain, &node);
  set_attr(out, "K", weight.k);
  set_attr(out, "N", weight.n);
  set_attr(out, "block_size", static_cast<int64_t>(precision.block_size));
  set_attr(out, "quant_type", static_cast<int64_t>(quant_type));
  editor.remove_node(node);
}

void emit_matmul_nbits(GraphEditor& editor, onnx::GraphProto& graph, onnx::NodeProto& node,
                       const PackedWeight& weight, const WeightPrecision& precision,
                       int accuracy_level, const std::string& bias, const std::string& output) {
  const std::string tag = "_Q" + std::to_string(precision.bits);
  std::vector<std::string> inputs = {node.input(0), weight.packed, weight.scales};
  if (!weight.zero_points.empty() || !bias.empty()) inputs.push_back(weight.zero_points);
  if (!bias.empty()) {
    inputs.push_back("");  // g_idx
    inputs.push_back(bias);
  }
  auto& out = editor.add_node(graph, "MatMulNBits",
                              node.name().empty() ? "MatMul" + tag : node.name() + tag,
                              std::move(inputs), {output}, kMsDomain, &node);
  set_attr(out, "K", weight.k);
  set_attr(out, "N", weight.n);
  set_attr(out, "bits", static_cast<int64_t>(precision.bits));
  set_attr(out, "block_size", static_cast<int64_t>(precision.block_size));
  if (accuracy_level) set_attr(out, "accuracy_level", static_cast<int64_t>(accuracy_level));
  editor.remove_node(node);
}

}  // namespace quantize
