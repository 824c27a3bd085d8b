// Matrix products and linear algebra, float32 unless noted (others are refused with the node's
// name): MatMul, Gemm, Einsum (any numeric type), Det, Trilu (any type).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <map>
#include <type_traits>

#include "executor/core/ops.h"
#include "model/tensor_data.h"
#include "support/threads.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

void matmul(OpContext& c) {
  const Tensor& a0 = c.input(0);
  const Tensor& b0 = c.input(1);
  require_float(c, a0, "A");
  require_float(c, b0, "B");
  if (a0.rank() == 0 || b0.rank() == 0)
    c.fail("MatMul of a scalar (ranks {}, {})", a0.rank(), b0.rank());
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

// Trilu: keep the upper (upper = 1) or lower triangle of the last two axes from diagonal k.
void trilu(OpContext& c) {
  const Tensor& x = c.input(0);
  if (x.rank() < 2) c.fail("input must have rank >= 2");
  const int64_t k = c.has_input(1) ? c.input(1).to_int64().at(0) : 0;
  const bool upper = c.attr_int("upper", 1) != 0;
  const int64_t rows = x.shape()[x.rank() - 2], cols = x.shape()[x.rank() - 1];
  Tensor out = x;
  const size_t size = element_size(x.dtype());
  for (int64_t m = 0; m < x.size() / std::max<int64_t>(rows * cols, 1); ++m) {
    for (int64_t i = 0; i < rows; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        const bool keep = upper ? j - i >= k : j - i <= k;
        if (!keep) std::memset(out.raw() + ((m * rows + i) * cols + j) * size, 0, size);
      }
    }
  }
  c.output(0) = std::move(out);
}

}  // namespace

void register_matmul(Registry& r) {
  r["Det"] = det;
  r["Einsum"] = einsum;
  r["MatMul"] = matmul;
  r["Gemm"] = gemm;
  r["Trilu"] = trilu;
}

}  // namespace quantize::exec
