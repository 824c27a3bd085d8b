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
#include "support/threads.h"

namespace quantize {
namespace {

constexpr char kMsDomain[] = "com.microsoft";

class RoundToNearest final : public BlockQuantizer {
 public:
  const char* name() const override { return "rtn"; }
  void quantize(const float* column, size_t k, const BlockFormat& format, uint8_t* packed,
                float* scales, uint8_t* zero_points) const override {
    kernels().quantize_blocks(column, k, format, packed, scales, zero_points);
  }
};

// Error-minimising scales, data-free, symmetric blocks (k-quant style). Per block, with L = 8 (4
// bits) or 128 (8 bits) and m the value of largest magnitude: for each candidate inverse scale
// -(L + i / 10) / m, i = -9..9, codes q = clamp(round(x * inv), -L, L - 1), then the weighted
// least-squares scale for those codes, s = sum(w x q) / sum(w q^2), and the codes re-rounded at
// s, up to three times while they change; the (s, q) of least weighted error sum w (x - s q)^2
// wins, w = x^2 (large weights matter most: on TinyStories, plain squared error gave top-1 85.1%,
// KL 0.084, perplexity x1.100; x^2-weighted 87.0%, 0.085, x1.074; RTN 84.6%, 0.092, x1.096).
// Candidate i = 0 has round-to-nearest's codes, whose least-squares scale is never worse than
// round-to-nearest's own: no block ends worse than RTN in that error. Asymmetric blocks: round
// to nearest.
class ScaleSearch final : public BlockQuantizer {
 public:
  const char* name() const override { return "search"; }
  void quantize(const float* column, size_t k, const BlockFormat& format, uint8_t* packed,
                float* scales, uint8_t* zero_points) const override {
    if (!format.symmetric) {
      kernels().quantize_blocks(column, k, format, packed, scales, zero_points);
      return;
    }
    const int levels = 1 << (format.bits - 1);
    const size_t bs = format.block_size;
    std::vector<int> codes(bs), trial(bs), best(bs);
    for (size_t b = 0; b < format.blocks(k); ++b) {
      const size_t begin = b * bs, n = std::min(bs, k - begin);
      const float* x = column + begin;
      float m = 0;
      for (size_t j = 0; j < n; ++j) {
        if (std::fabs(x[j]) > std::fabs(m)) m = x[j];
      }
      std::fill(best.begin(), best.end(), 0);
      double best_err = std::numeric_limits<double>::infinity(), best_scale = 0;
      auto round_at = [&](double inv, std::vector<int>& q) {
        for (size_t j = 0; j < n; ++j) {
          q[j] = static_cast<int>(
              std::clamp(std::nearbyint(x[j] * inv), double(-levels), double(levels - 1)));
        }
      };
      for (int i = -9; i <= 9 && m != 0; ++i) {
        round_at(-(levels + 0.1 * i) / m, codes);
        for (int refit = 0; refit < 3; ++refit) {
          double sxq = 0, sqq = 0, sxx = 0;
          for (size_t j = 0; j < n; ++j) {
            const double w = double(x[j]) * x[j];
            sxq += w * x[j] * codes[j];
            sqq += w * codes[j] * codes[j];
            sxx += w * x[j] * x[j];
          }
          if (sqq == 0) break;
          const double s = sxq / sqq, err = sxx - sxq * sxq / sqq;
          if (err < best_err) {
            best_err = err;
            best_scale = s;
            std::copy(codes.begin(), codes.begin() + n, best.begin());
          }
          round_at(1 / s, trial);
          if (std::equal(trial.begin(), trial.begin() + n, codes.begin())) break;
          std::swap(trial, codes);
        }
      }
      scales[b] = static_cast<float>(best_scale);
      uint8_t* out = packed + b * format.blob_bytes();
      for (size_t j = 0; j < bs; ++j) {
        const uint8_t q = static_cast<uint8_t>((j < n ? best[j] : 0) + levels);
        if (format.bits == 8) {
          out[j] = q;
        } else if (j % 2 == 0) {
          out[j / 2] = q;
        } else {
          out[j / 2] |= static_cast<uint8_t>(q << 4);
        }
      }
    }
  }
};

// Quantizes one weight [K, N] into the MatMulNBits layout. The packed bytes are written straight
// into the writer's buffer; scales and zero points (small) are kept until their payload is read.
class NBitsJob {
 public:
  // source: float32 [K, N], or [N, K] when `rows_are_columns` (Gemm with transB). Stored scales
  // are multiplied by `scale_factor` (Gemm's alpha).
  NBitsJob(PayloadPtr source, int64_t k, int64_t n, BlockFormat fmt, bool f16_scales,
           bool rows_are_columns, float scale_factor, const BlockQuantizer& quantizer)
      : source_(std::move(source)),
        k_(k),
        n_(n),
        fmt_(fmt),
        f16_scales_(f16_scales),
        rows_are_columns_(rows_are_columns),
        scale_factor_(scale_factor),
        quantizer_(quantizer) {}

  uint64_t blocks() const { return fmt_.blocks(k_); }
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
    const uint64_t nb = blocks(), blob = fmt_.blob_bytes(), zrow = zero_point_row();
    const int64_t k = k_, n = n_;
    std::vector<float> scales(n * nb);
    std::vector<uint8_t> zps(fmt_.symmetric ? 0 : n * nb);
    zero_points_.assign(zero_point_bytes(), 0);
    PayloadBytes source(source_);
    const float* w = reinterpret_cast<const float*>(source.data());
    constexpr int64_t kTile = 16;  // columns per tile: one 64-byte line of each row of B
    parallel_for((n + kTile - 1) / kTile, 4, [&](size_t t0, size_t t1) {
      std::vector<float> rows(rows_are_columns_ ? 0 : kTile * k);
      for (size_t t = t0; t < t1; ++t) {
        const int64_t c0 = static_cast<int64_t>(t) * kTile, cols = std::min(kTile, n - c0);
        if (!rows_are_columns_) {  // gather the tile's columns of [K, N] into rows
          for (int64_t r = 0; r < k; ++r) {
            const float* src = w + r * n + c0;
            for (int64_t j = 0; j < cols; ++j) rows[j * k + r] = src[j];
          }
        }
        for (int64_t j = 0; j < cols; ++j) {
          const int64_t col = c0 + j;
          const float* column = rows_are_columns_ ? w + col * k : rows.data() + j * k;
          quantizer_.quantize(column, k, fmt_, packed + col * nb * blob, scales.data() + col * nb,
                              fmt_.symmetric ? nullptr : zps.data() + col * nb);
        }
      }
    });
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

  PayloadPtr source_;
  int64_t k_, n_;
  BlockFormat fmt_;
  bool f16_scales_;
  bool rows_are_columns_;
  float scale_factor_;
  const BlockQuantizer& quantizer_;
  std::mutex mutex_;
  std::vector<uint8_t> scales_, zero_points_;
};

}  // namespace

std::variant<WeightPrecision, std::string> WeightPolicy::decide(const onnx::NodeProto& node) const {
  if (std::string why = filter.why_not(node.name()); !why.empty()) return why;
  auto it = overrides.find(node_key(node));
  if (it == overrides.end()) return precision;
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

PackedWeight add_packed_weight(GraphEditor& editor, const ConstantRef& ref, const Orientation& how,
                               const WeightPrecision& precision, int scale_type,
                               const BlockQuantizer& quantizer, TensorChange& change) {
  const onnx::TensorProto& b = *ref.tensor;
  PackedWeight q;
  q.k = b.dims(how.rows_are_columns ? 1 : 0);
  q.n = b.dims(how.rows_are_columns ? 0 : 1);
  const BlockFormat fmt = precision.format();
  const bool f16 = scale_type == onnx::TensorProto::FLOAT16;
  auto job = std::make_shared<NBitsJob>(tensor_payload(editor.model(), b), q.k, q.n, fmt, f16,
                                        how.rows_are_columns, how.alpha, quantizer);
  const std::string base = b.name().empty() ? "weight" : b.name();
  auto add = [&](const std::string& suffix, int type, std::vector<int64_t> dims, uint64_t size,
                 void (NBitsJob::*read)(uint8_t*)) {
    return editor.add_initializer(
        *ref.graph, base + suffix, type, dims,
        make_lazy_payload(size, [job, read](uint8_t* out) { ((*job).*read)(out); }));
  };
  const int64_t nb = static_cast<int64_t>(job->blocks());
  q.packed = add(fmt.bits == 4 ? "_Q4" : "_Q8", onnx::TensorProto::UINT8,
                 {q.n, nb, static_cast<int64_t>(fmt.blob_bytes())}, job->packed_bytes(),
                 &NBitsJob::read_packed);
  q.scales = add("_scales", scale_type, {q.n, nb}, job->scale_bytes(), &NBitsJob::read_scales);
  if (!fmt.symmetric) {
    q.zero_points = add("_zero_points", onnx::TensorProto::UINT8,
                        {q.n, static_cast<int64_t>(job->zero_point_row())}, job->zero_point_bytes(),
                        &NBitsJob::read_zero_points);
  }
  change.name = b.name();
  change.dims = {q.k, q.n};
  change.from = "f32";
  change.to =
      fmt::format("q{} b{}{}{}", fmt.bits, fmt.block_size, fmt.symmetric ? "" : " asym",
                  &quantizer == &round_to_nearest() ? "" : fmt::format(" {}", quantizer.name()));
  change.bytes_before = static_cast<uint64_t>(q.k * q.n) * 4;
  change.bytes_after = job->packed_bytes() + job->scale_bytes() + job->zero_point_bytes();
  return q;
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
