// MatMul, Gemm, Einsum, Det, Softmax / LogSoftmax / Hardmax, reductions, the two losses, and
// com.microsoft.MatMulNBits. Float types unless noted: others are refused with the node's name.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <map>
#include <type_traits>

#include "kernels/kernels.h"
#include "ops.h"
#include "support/threads.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

void matmul(OpContext& c) {
  const Tensor& a0 = c.input(0);
  const Tensor& b0 = c.input(1);
  require_float(c, a0, "A");
  require_float(c, b0, "B");
  std::vector<int64_t> as = a0.shape(), bs = b0.shape();
  const bool a_vec = as.size() == 1, b_vec = bs.size() == 1;
  if (a_vec) as.insert(as.begin(), 1);
  if (b_vec) bs.push_back(1);
  const int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
  if (bs[bs.size() - 2] != k) c.fail("inner dimensions {} and {} differ", k, bs[bs.size() - 2]);
  const std::vector<int64_t> a_batch(as.begin(), as.end() - 2), b_batch(bs.begin(), bs.end() - 2);
  const auto batch = broadcast_shape(c, a_batch, b_batch);
  const auto oa = broadcast_offsets(a_batch, batch), ob = broadcast_offsets(b_batch, batch);
  std::vector<int64_t> shape = batch;
  if (!a_vec) shape.push_back(m);
  if (!b_vec) shape.push_back(n);
  Tensor out(TensorProto::FLOAT, shape, Tensor::Uninitialized{});
  if (oa.size() > 1 && m * n * k < (1 << 18)) {
    // Many small products (attention heads): one per task; short inner dimensions through the
    // convolution GEMM, which packs nothing.
    parallel_for(oa.size(), 1, [&](size_t t0, size_t t1) {
      for (size_t t = t0; t < t1; ++t) {
        const float* a = a0.data<float>() + oa[t] * m * k;
        const float* b = b0.data<float>() + ob[t] * k * n;
        float* y = out.data<float>() + t * m * n;
        if (k <= 64) {
          conv_gemm(m, n, k, a, b, n, y, n, nullptr, -INFINITY, INFINITY);
        } else {
          sgemm_block(m, n, k, a, b, n, y, n);
        }
      }
    });
  } else {
    for (size_t t = 0; t < oa.size(); ++t) {
      const float* a = a0.data<float>() + oa[t] * m * k;
      const float* b = b0.data<float>() + ob[t] * k * n;
      sgemm(false, m, n, k, a, b, out.data<float>() + t * m * n);
    }
  }
  c.output(0) = std::move(out);
}

void gemm(OpContext& c) {
  const Tensor& a = c.input(0);
  const Tensor& b = c.input(1);
  require_float(c, a, "A");
  require_float(c, b, "B");
  if (a.rank() != 2 || b.rank() != 2) c.fail("A and B must be 2-D");
  const bool ta = c.attr_int("transA", 0) != 0, tb = c.attr_int("transB", 0) != 0;
  const float alpha = c.attr_float("alpha", 1.0f), beta = c.attr_float("beta", 1.0f);
  const int64_t m = ta ? a.shape()[1] : a.shape()[0], k = ta ? a.shape()[0] : a.shape()[1];
  const int64_t n = tb ? b.shape()[0] : b.shape()[1];
  std::vector<float> at;
  const float* pa = a.data<float>();
  if (ta) {  // make A row-major [M, K]
    at.resize(m * k);
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t p = 0; p < k; ++p) at[i * k + p] = pa[p * m + i];
    }
    pa = at.data();
  }
  const float* pb = b.data<float>();
  Tensor out(TensorProto::FLOAT, {m, n});
  sgemm(tb, m, n, k, pa, pb, out.data<float>());
  float* y = out.data<float>();
  for (int64_t i = 0; i < m * n; ++i) y[i] *= alpha;
  if (c.has_input(2)) {
    const Tensor& bias = c.input(2);
    require_float(c, bias, "C");
    const auto offsets = broadcast_offsets(bias.shape(), {m, n});
    for (int64_t i = 0; i < m * n; ++i) y[i] += beta * bias.data<float>()[offsets[i]];
  }
  c.output(0) = std::move(out);
}

enum class SoftmaxKind { kSoftmax, kLogSoftmax, kHardmax };

// One softmax row: e^(x - max) by exp_poly, in 8 lanes so the loops vectorize, then scaled by
// 1 / sum. No contraction in this file: the same floats on every CPU.
QUANTIZE_CLONES_NO_FMA
void softmax_row(const float* x, float* y, int64_t n) {
  constexpr int kLanes = 8;
  float top[kLanes], sum[kLanes];
  for (int j = 0; j < kLanes; ++j) top[j] = -INFINITY, sum[j] = 0.0f;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) top[j] = x[i + j] > top[j] ? x[i + j] : top[j];
  }
  float mx = -INFINITY;
  for (; i < n; ++i) mx = x[i] > mx ? x[i] : mx;
  for (int j = 0; j < kLanes; ++j) mx = top[j] > mx ? top[j] : mx;
  for (i = 0; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) {
      y[i + j] = exp_poly(x[i + j] - mx);
      sum[j] += y[i + j];
    }
  }
  float total = 0.0f;
  for (; i < n; ++i) {
    y[i] = exp_poly(x[i] - mx);
    total += y[i];
  }
  for (int j = 0; j < kLanes; ++j) total += sum[j];
  const float inv = 1.0f / total;
  for (i = 0; i < n; ++i) y[i] *= inv;
}

template <SoftmaxKind kind = SoftmaxKind::kSoftmax>
void softmax(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "input");
  const int64_t axis = normalize_axis(c, c.attr_int("axis", c.opset >= 13 ? -1 : 1), x.rank());
  // opset >= 13: along one axis; before: over all dimensions from `axis` on.
  int64_t outer = 1, len = 1, inner = 1;
  for (int64_t i = 0; i < x.rank(); ++i) {
    if (i < axis)
      outer *= x.shape()[i];
    else if (i == axis || c.opset < 13)
      len *= x.shape()[i];
    else
      inner *= x.shape()[i];
  }
  Tensor out(TensorProto::FLOAT, x.shape());
  const float* px = x.data<float>();
  float* py = out.data<float>();
  if (kind == SoftmaxKind::kSoftmax && inner == 1) {  // contiguous rows, vectorized
    parallel_for(static_cast<size_t>(outer),
                 std::max<size_t>(1, 16384 / static_cast<size_t>(std::max<int64_t>(len, 1))),
                 [&](size_t o0, size_t o1) {
                   for (size_t o = o0; o < o1; ++o) softmax_row(px + o * len, py + o * len, len);
                 });
    c.output(0) = std::move(out);
    return;
  }
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t in = 0; in < inner; ++in) {
      const int64_t base = o * len * inner + in;
      float mx = -std::numeric_limits<float>::infinity();
      int64_t arg = 0;
      for (int64_t i = 0; i < len; ++i) {
        if (px[base + i * inner] > mx) mx = px[base + i * inner], arg = i;
      }
      if constexpr (kind == SoftmaxKind::kHardmax) {  // 1 at the first maximum
        for (int64_t i = 0; i < len; ++i) py[base + i * inner] = i == arg ? 1.0f : 0.0f;
        continue;
      }
      if constexpr (kind == SoftmaxKind::kLogSoftmax) {  // x - max - log(sum(exp(x - max)))
        double total = 0;
        for (int64_t i = 0; i < len; ++i) total += std::exp(double(px[base + i * inner]) - mx);
        const double log_total = std::log(total);
        for (int64_t i = 0; i < len; ++i)
          py[base + i * inner] = static_cast<float>(px[base + i * inner] - mx - log_total);
        continue;
      }
      double sum = 0;
      for (int64_t i = 0; i < len; ++i) {
        py[base + i * inner] = std::exp(px[base + i * inner] - mx);
        sum += py[base + i * inner];
      }
      for (int64_t i = 0; i < len; ++i)
        py[base + i * inner] = static_cast<float>(py[base + i * inner] / sum);
    }
  }
  c.output(0) = std::move(out);
}

enum class Reduce { kMean, kSum, kMax, kMin, kProd, kL1, kL2, kLogSum, kLogSumExp, kSumSquare };

template <Reduce kind>
void reduce(OpContext& c) {
  const Tensor& x = c.input(0);
  if (x.dtype() != TensorProto::FLOAT && x.dtype() != TensorProto::DOUBLE) {
    c.fail("input is data type {}: float32 and float64 are supported", x.dtype());
  }
  const bool axes_input = c.opset >= 18 || (kind == Reduce::kSum && c.opset >= 13);
  std::vector<int64_t> axes =
      axes_input ? (c.has_input(1) ? c.input(1).to_int64() : std::vector<int64_t>{})
                 : c.attr_ints("axes");
  const bool keep = c.attr_int("keepdims", 1) != 0;
  if (axes.empty() && c.attr_int("noop_with_empty_axes", 0) != 0) {
    c.output(0) = x;
    return;
  }
  std::vector<bool> reduced(x.rank(), axes.empty());
  for (int64_t a : axes) reduced[normalize_axis(c, a, x.rank())] = true;
  std::vector<int64_t> kept_shape(x.rank()), out_shape;
  for (int64_t i = 0; i < x.rank(); ++i) {
    kept_shape[i] = reduced[i] ? 1 : x.shape()[i];
    if (keep || !reduced[i]) out_shape.push_back(kept_shape[i]);
  }
  // Each input element's position in the (keepdims) output: broadcast offsets, backwards.
  const auto target = broadcast_offsets(kept_shape, x.shape());
  Tensor tmp(TensorProto::FLOAT, kept_shape);
  std::vector<double> acc(static_cast<size_t>(tmp.size()), kind == Reduce::kMax    ? -INFINITY
                                                           : kind == Reduce::kMin  ? INFINITY
                                                           : kind == Reduce::kProd ? 1.0
                                                                                   : 0.0);
  const bool is_double = x.dtype() == TensorProto::DOUBLE;
  for (int64_t i = 0; i < x.size(); ++i) {
    double& a = acc[target[i]];
    const double v = is_double ? x.data<double>()[i] : x.data<float>()[i];
    if (kind == Reduce::kMax)
      a = std::max<double>(a, v);
    else if (kind == Reduce::kMin)
      a = std::min<double>(a, v);
    else if (kind == Reduce::kProd)
      a *= v;
    else if (kind == Reduce::kL1)
      a += std::fabs(v);
    else if (kind == Reduce::kL2 || kind == Reduce::kSumSquare)
      a += v * v;
    else if (kind == Reduce::kLogSumExp)
      a += std::exp(v);
    else
      a += v;
  }
  const double count = tmp.size() ? static_cast<double>(x.size()) / tmp.size() : 1.0;
  Tensor out(x.dtype(), out_shape);
  for (int64_t i = 0; i < out.size(); ++i) {
    double v = acc[i];
    if (kind == Reduce::kMean)
      v /= count;
    else if (kind == Reduce::kL2)
      v = std::sqrt(v);
    else if (kind == Reduce::kLogSum || kind == Reduce::kLogSumExp)
      v = std::log(v);
    if (is_double)
      out.data<double>()[i] = v;
    else
      out.data<float>()[i] = static_cast<float>(v);
  }
  c.output(0) = std::move(out);
}

// ArgMax / ArgMin along `axis` (int64 indices; the first extreme, or the last with
// select_last_index).
template <bool kMax>
void arg_extreme(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "data");
  const int64_t axis = normalize_axis(c, c.attr_int("axis", 0), x.rank());
  const bool keep = c.attr_int("keepdims", 1) != 0, last = c.attr_int("select_last_index", 0) != 0;
  int64_t outer = 1, len = x.shape()[axis], inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.shape()[i];
  for (int64_t i = axis + 1; i < x.rank(); ++i) inner *= x.shape()[i];
  std::vector<int64_t> shape;
  for (int64_t i = 0; i < x.rank(); ++i) {
    if (i != axis)
      shape.push_back(x.shape()[i]);
    else if (keep)
      shape.push_back(1);
  }
  Tensor out(TensorProto::INT64, shape);
  const float* px = x.data<float>();
  for (int64_t o = 0; o < outer; ++o) {
    for (int64_t in = 0; in < inner; ++in) {
      int64_t best = 0;
      for (int64_t i = 1; i < len; ++i) {
        const float v = px[(o * len + i) * inner + in], b = px[(o * len + best) * inner + in];
        if (kMax ? (v > b || (last && v == b)) : (v < b || (last && v == b))) best = i;
      }
      out.data<int64_t>()[o * inner + in] = best;
    }
  }
  c.output(0) = std::move(out);
}

// com.microsoft.MatMulNBits with float32 A and scales: B is dequantized column by column.
void matmul_nbits(OpContext& c) {
  const Tensor& a = c.input(0);
  require_float(c, a, "A");
  require_float(c, c.input(2), "scales");
  if (c.has_input(4)) c.fail("g_idx is not supported");
  const int64_t k = c.attr_int("K", 0), n = c.attr_int("N", 0);
  const BlockFormat fmt{static_cast<int>(c.attr_int("bits", 4)),
                        static_cast<int>(c.attr_int("block_size", 0)), !c.has_input(3)};
  if ((fmt.bits != 4 && fmt.bits != 8) || fmt.block_size < 16 || a.shape().back() != k) {
    c.fail("unsupported attributes (bits {}, block_size {}, K {})", fmt.bits, fmt.block_size, k);
  }
  const int64_t nb = static_cast<int64_t>(fmt.blocks(k)),
                blob = static_cast<int64_t>(fmt.blob_bytes());
  const uint8_t* packed = c.input(1).data<uint8_t>();
  const float* scales = c.input(2).data<float>();
  std::vector<float> wt(static_cast<size_t>(n * k));  // [N, K]
  std::vector<uint8_t> zp(static_cast<size_t>(nb));
  for (int64_t col = 0; col < n; ++col) {
    if (!fmt.symmetric) {
      const Tensor& z = c.input(3);
      if (z.dtype() != TensorProto::UINT8)
        c.fail("zero_points of data type {} are not supported", z.dtype());
      const int64_t row = (nb * fmt.bits + 7) / 8;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t byte = z.data<uint8_t>()[col * row + b * fmt.bits / 8];
        zp[b] = fmt.bits == 8 ? byte : (byte >> (4 * (b & 1))) & 15;
      }
    }
    kernels().dequantize_blocks(packed + col * nb * blob, scales + col * nb, zp.data(), k, fmt,
                                wt.data() + col * k);
  }
  std::vector<int64_t> shape = a.shape();
  shape.back() = n;
  const int64_t m = a.size() / k;
  Tensor out(TensorProto::FLOAT, shape);
  sgemm(true, m, n, k, a.data<float>(), wt.data(), out.data<float>());
  if (c.has_input(5)) {
    require_float(c, c.input(5), "bias");
    float* y = out.data<float>();
    for (int64_t i = 0; i < m * n; ++i) y[i] += c.input(5).data<float>()[i % n];
  }
  c.output(0) = std::move(out);
}

// Einsum: the equation's terms (letters, "..." for broadcast axes, an implicit output of the
// letters used once, in order, after the broadcast axes), summed over every label not in the
// output. A direct loop over all label values: exact, not fast.
void einsum(OpContext& c) {
  std::string eq;
  for (char ch : c.attr_string("equation", "")) {
    if (ch != ' ') eq += ch;
  }
  const size_t arrow = eq.find("->");
  const std::string lhs = eq.substr(0, arrow);
  std::vector<std::string> terms(1);
  for (char ch : lhs) {
    if (ch == ',')
      terms.emplace_back();
    else
      terms.back() += ch;
  }
  if (static_cast<int>(terms.size()) != c.input_count())
    c.fail("equation '{}' has {} terms for {} inputs", eq, terms.size(), c.input_count());
  const int dtype = c.input(0).dtype();
  // Labels: letters as themselves, broadcast axes as 256 + their position from the right.
  auto labels_of = [&](const std::string& term, int64_t rank, int64_t& ellipsis_rank) {
    std::vector<int> labels;
    const size_t dots = term.find("...");
    const int64_t letters = static_cast<int64_t>(term.size()) - (dots == std::string::npos ? 0 : 3);
    ellipsis_rank = dots == std::string::npos ? 0 : rank - letters;
    if (ellipsis_rank < 0 || (dots == std::string::npos && letters != rank))
      c.fail("term '{}' does not fit rank {}", term, rank);
    for (size_t i = 0; i < term.size(); ++i) {
      if (i == dots) {
        for (int64_t e = ellipsis_rank; e-- > 0;) labels.push_back(256 + static_cast<int>(e));
        i += 2;
        continue;
      }
      if (!std::isalpha(static_cast<unsigned char>(term[i])))
        c.fail("equation '{}' is not supported", eq);
      labels.push_back(term[i]);
    }
    return labels;
  };
  std::vector<std::vector<int>> in_labels;
  std::map<int, int64_t> size;
  std::map<int, int> uses;
  int64_t max_ellipsis = 0;
  for (int t = 0; t < c.input_count(); ++t) {
    const Tensor& x = c.input(t);
    if (x.dtype() != dtype) c.fail("inputs differ in type");
    int64_t er = 0;
    in_labels.push_back(labels_of(terms[t], x.rank(), er));
    max_ellipsis = std::max(max_ellipsis, er);
    for (size_t i = 0; i < in_labels.back().size(); ++i) {
      const int l = in_labels.back()[i];
      const int64_t d = x.shape()[i];
      auto it = size.find(l);
      if (it == size.end() || it->second == 1)
        size[l] = d;
      else if (d != 1 && d != it->second)
        c.fail("label '{}' has sizes {} and {}",
               l < 256 ? std::string(1, static_cast<char>(l)) : "...", it->second, d);
      if (l < 256) ++uses[l];
    }
  }
  std::vector<int> out_labels;
  if (arrow == std::string::npos) {
    for (int64_t e = max_ellipsis; e-- > 0;) out_labels.push_back(256 + static_cast<int>(e));
    for (const auto& [l, n] : uses) {
      if (n == 1) out_labels.push_back(l);
    }
  } else {
    int64_t ignored = 0;
    const std::string rhs = eq.substr(arrow + 2);
    const size_t dots = rhs.find("...");
    out_labels = labels_of(
        rhs, static_cast<int64_t>(rhs.size()) - (dots == std::string::npos ? 0 : 3) + max_ellipsis,
        ignored);
  }
  std::vector<int> all = out_labels;
  for (const auto& [l, d] : size) {
    if (std::find(all.begin(), all.end(), l) == all.end()) all.push_back(l);
  }
  std::vector<int64_t> out_shape, dims;
  for (int l : out_labels) out_shape.push_back(size.at(l));
  for (int l : all) dims.push_back(size.at(l));
  // For each input, the stride of each label in `all` (0 where absent or broadcast).
  std::vector<std::vector<int64_t>> strides(c.input_count(), std::vector<int64_t>(all.size(), 0));
  for (int t = 0; t < c.input_count(); ++t) {
    const auto st = strides_of(c.input(t).shape());
    for (size_t i = 0; i < in_labels[t].size(); ++i) {
      const size_t at = std::find(all.begin(), all.end(), in_labels[t][i]) - all.begin();
      if (c.input(t).shape()[i] != 1) strides[t][at] += st[i];
    }
  }
  Tensor out(dtype, out_shape);
  int64_t out_count = 1, inner_count = 1;
  for (size_t i = 0; i < out_labels.size(); ++i) out_count *= dims[i];
  for (size_t i = out_labels.size(); i < all.size(); ++i) inner_count *= dims[i];
  with_type(c, dtype, [&](auto zero) {
    using T = decltype(zero);
    using Acc = std::conditional_t<std::is_floating_point_v<T>, double, T>;
    std::vector<int64_t> index;
    for (int64_t o = 0; o < out_count; ++o) {
      Acc acc = 0;
      for (int64_t r = 0; r < inner_count; ++r) {
        unflatten(o * inner_count + r, dims, index);
        Acc prod = 1;
        for (int t = 0; t < c.input_count(); ++t) {
          int64_t off = 0;
          for (size_t i = 0; i < all.size(); ++i) off += index[i] * strides[t][i];
          prod *= static_cast<Acc>(c.input(t).data<T>()[off]);
        }
        acc += prod;
      }
      out.data<T>()[o] = static_cast<T>(acc);
    }
  });
  c.output(0) = std::move(out);
}

// Det: the determinant of each [M, M] matrix of [..., M, M], by LU decomposition with partial
// pivoting in double.
void det(OpContext& c) {
  const Tensor& x = c.input(0);
  require_float(c, x, "X");
  if (x.rank() < 2 || x.shape()[x.rank() - 1] != x.shape()[x.rank() - 2])
    c.fail("X must be [..., M, M]");
  const int64_t m = x.shape().back();
  const std::vector<int64_t> shape(x.shape().begin(), x.shape().end() - 2);
  Tensor out(TensorProto::FLOAT, shape);
  std::vector<double> a(static_cast<size_t>(m * m));
  for (int64_t b = 0; b < out.size(); ++b) {
    for (int64_t i = 0; i < m * m; ++i) a[i] = x.data<float>()[b * m * m + i];
    double d = 1;
    for (int64_t col = 0; col < m && d != 0; ++col) {
      int64_t pivot = col;
      for (int64_t r = col + 1; r < m; ++r) {
        if (std::fabs(a[r * m + col]) > std::fabs(a[pivot * m + col])) pivot = r;
      }
      if (a[pivot * m + col] == 0) {
        d = 0;
        break;
      }
      if (pivot != col) {
        for (int64_t k = 0; k < m; ++k) std::swap(a[pivot * m + k], a[col * m + k]);
        d = -d;
      }
      d *= a[col * m + col];
      for (int64_t r = col + 1; r < m; ++r) {
        const double f = a[r * m + col] / a[col * m + col];
        for (int64_t k = col; k < m; ++k) a[r * m + k] -= f * a[col * m + k];
      }
    }
    out.data<float>()[b] = static_cast<float>(d);
  }
  c.output(0) = std::move(out);
}

// NegativeLogLikelihoodLoss: loss[n, d...] = -input[n, target[n, d...], d...] * weight[target]
// (0 where target == ignore_index); reduction none, sum, or mean (the sum over the summed
// weights of the targets counted). In double.
Tensor nll_loss(const OpContext& c, const Tensor& input, const Tensor& target,
                const Tensor* weight) {
  if (input.rank() < 2 || target.rank() != input.rank() - 1 ||
      target.shape()[0] != input.shape()[0]) {
    c.fail("input must be [N, C, d...] and target [N, d...]");
  }
  const auto labels = target.to_int64();
  const std::string reduction = c.attr_string("reduction", "mean");
  if (reduction != "mean" && reduction != "sum" && reduction != "none")
    c.fail("reduction '{}' is not supported", reduction);
  const bool ignoring = c.has_attr("ignore_index");
  const int64_t ignore = c.attr_int("ignore_index", 0);
  const int64_t batch = input.shape()[0], classes = input.shape()[1],
                inner = target.size() / std::max<int64_t>(batch, 1);
  std::vector<double> loss(static_cast<size_t>(target.size()));
  double total = 0, weights = 0;
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t d = 0; d < inner; ++d) {
      const int64_t at = n * inner + d, label = labels[at];
      if (ignoring && label == ignore) continue;
      if (label < 0 || label >= classes) c.fail("target {} is not a class of {}", label, classes);
      const double w = weight ? weight->data<float>()[label] : 1.0;
      loss[at] = -static_cast<double>(input.data<float>()[(n * classes + label) * inner + d]) * w;
      total += loss[at];
      weights += w;
    }
  }
  if (reduction == "none") {
    Tensor out(TensorProto::FLOAT, target.shape());
    for (int64_t i = 0; i < out.size(); ++i) out.data<float>()[i] = static_cast<float>(loss[i]);
    return out;
  }
  Tensor out(TensorProto::FLOAT, {});
  out.data<float>()[0] = static_cast<float>(reduction == "sum" ? total : total / weights);
  return out;
}

void negative_log_likelihood_loss(OpContext& c) {
  require_float(c, c.input(0), "input");
  if (c.has_input(2)) require_float(c, c.input(2), "weight");
  c.output(0) = nll_loss(c, c.input(0), c.input(1), c.has_input(2) ? &c.input(2) : nullptr);
}

// SoftmaxCrossEntropyLoss: NegativeLogLikelihoodLoss of the log-softmax over axis 1 of the
// scores; the log-probabilities as the second output.
void softmax_cross_entropy_loss(OpContext& c) {
  const Tensor& scores = c.input(0);
  require_float(c, scores, "scores");
  if (c.has_input(2)) require_float(c, c.input(2), "weights");
  if (scores.rank() < 2) c.fail("scores must be [N, C, d...]");
  const int64_t batch = scores.shape()[0], classes = scores.shape()[1],
                inner = scores.size() / std::max<int64_t>(batch * classes, 1);
  Tensor log_prob(TensorProto::FLOAT, scores.shape());
  for (int64_t n = 0; n < batch; ++n) {
    for (int64_t d = 0; d < inner; ++d) {
      const float* x = scores.data<float>() + n * classes * inner + d;
      double top = -INFINITY, sum = 0;
      for (int64_t k = 0; k < classes; ++k) top = std::max(top, static_cast<double>(x[k * inner]));
      for (int64_t k = 0; k < classes; ++k) sum += std::exp(x[k * inner] - top);
      const double log_sum = std::log(sum);
      for (int64_t k = 0; k < classes; ++k) {
        log_prob.data<float>()[(n * classes + k) * inner + d] =
            static_cast<float>(x[k * inner] - top - log_sum);
      }
    }
  }
  c.output(0) = nll_loss(c, log_prob, c.input(1), c.has_input(2) ? &c.input(2) : nullptr);
  if (c.output_count() > 1) c.output(1) = std::move(log_prob);
}

}  // namespace

void register_math(Registry& r) {
  r["NegativeLogLikelihoodLoss"] = negative_log_likelihood_loss;
  r["SoftmaxCrossEntropyLoss"] = softmax_cross_entropy_loss;
  r["Det"] = det;
  r["Einsum"] = einsum;
  r["MatMul"] = matmul;
  r["Gemm"] = gemm;
  r["Softmax"] = softmax<SoftmaxKind::kSoftmax>;
  r["LogSoftmax"] = softmax<SoftmaxKind::kLogSoftmax>;
  r["Hardmax"] = softmax<SoftmaxKind::kHardmax>;
  r["ReduceProd"] = reduce<Reduce::kProd>;
  r["ReduceL1"] = reduce<Reduce::kL1>;
  r["ReduceL2"] = reduce<Reduce::kL2>;
  r["ReduceLogSum"] = reduce<Reduce::kLogSum>;
  r["ReduceLogSumExp"] = reduce<Reduce::kLogSumExp>;
  r["ReduceSumSquare"] = reduce<Reduce::kSumSquare>;
  r["ArgMax"] = arg_extreme<true>;
  r["ArgMin"] = arg_extreme<false>;
  r["ReduceMean"] = reduce<Reduce::kMean>;
  r["ReduceSum"] = reduce<Reduce::kSum>;
  r["ReduceMax"] = reduce<Reduce::kMax>;
  r["ReduceMin"] = reduce<Reduce::kMin>;
  r["com.microsoft.MatMulNBits"] = matmul_nbits;
}

}  // namespace quantize::exec
