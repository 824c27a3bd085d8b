// Helpers shared by the op files: broadcasting, axes, strides, int64 tensors, float32 checks and
// the GEMM (OpenBLAS, split over the executor's threads).
#include <cblas.h>

#include <algorithm>
#include <cstring>

#include "executor/core/ops.h"
#include "support/threads.h"

namespace quantize::exec {

std::vector<int64_t> broadcast_shape(const OpContext& ctx, const std::vector<int64_t>& a,
                                     const std::vector<int64_t>& b) {
  const size_t rank = std::max(a.size(), b.size());
  std::vector<int64_t> out(rank);
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    if (da != db && da != 1 && db != 1) {
      ctx.fail("shapes [{}] and [{}] do not broadcast", fmt::join(a, ","), fmt::join(b, ","));
    }
    out[i] = da == 1 ? db : da;
  }
  return out;
}

std::vector<int64_t> broadcast_offsets(const std::vector<int64_t>& shape,
                                       const std::vector<int64_t>& out) {
  const size_t rank = out.size(), pad = rank - shape.size();
  std::vector<int64_t> stride(rank, 0);
  int64_t s = 1;
  for (size_t i = rank; i-- > pad;) {
    const int64_t d = shape[i - pad];
    stride[i] = d == 1 ? 0 : s;
    s *= d;
  }
  int64_t total = 1;
  for (int64_t d : out) total *= d;
  std::vector<int64_t> offsets(static_cast<size_t>(total));
  std::vector<int64_t> index(rank, 0);
  int64_t offset = 0;
  for (int64_t n = 0; n < total; ++n) {
    offsets[n] = offset;
    for (size_t i = rank; i-- > 0;) {  // odometer increment
      ++index[i];
      offset += stride[i];
      if (index[i] < out[i]) break;
      offset -= stride[i] * index[i];
      index[i] = 0;
    }
  }
  return offsets;
}

int64_t normalize_axis(const OpContext& ctx, int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank) {
    ctx.fail("axis {} is out of range for rank {}", axis, rank);
  }
  return axis < 0 ? axis + rank : axis;
}

std::vector<int64_t> strides_of(const std::vector<int64_t>& shape) {
  std::vector<int64_t> st(shape.size(), 1);
  for (size_t i = shape.size(); i-- > 1;) st[i - 1] = st[i] * shape[i];
  return st;
}

void unflatten(int64_t flat, const std::vector<int64_t>& shape, std::vector<int64_t>& index) {
  index.resize(shape.size());
  for (size_t i = shape.size(); i-- > 0;) {
    index[i] = shape[i] ? flat % shape[i] : 0;
    flat = shape[i] ? flat / shape[i] : 0;
  }
}

Tensor int64_tensor(const std::vector<int64_t>& v, std::vector<int64_t> shape) {
  Tensor t(onnx::TensorProto::INT64, std::move(shape));
  if (!v.empty()) std::memcpy(t.raw(), v.data(), v.size() * sizeof(int64_t));
  return t;
}

void require_float(const OpContext& ctx, const Tensor& t, const char* what) {
  if (t.dtype() != onnx::TensorProto::FLOAT) {
    ctx.fail("{} is data type {}: only float32 is supported", what, t.dtype());
  }
}

const float* float_values(const OpContext& ctx, int i, const char* what, int64_t count) {
  const Tensor& t = ctx.input(i);
  require_float(ctx, t, what);
  if (t.size() != count) ctx.fail("{} has {} values, not {}", what, t.size(), count);
  return t.data<float>();
}

void blas_single_threaded() { openblas_set_num_threads(1); }

void sgemm(bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, const float* b,
           float* c) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    std::fill(c, c + m * n, 0.0f);
    return;
  }
  // OpenBLAS runs single-threaded (its idle workers spin and starve the executor's own threads);
  // large products are split over the executor's threads by column blocks instead.
  const int64_t block =
      n * m * k >= (1 << 18) && n >= 64 ? std::max<int64_t>(32, n / (4 * thread_count())) : n;
  parallel_for(static_cast<size_t>((n + block - 1) / block), 1, [&](size_t b0, size_t b1) {
    for (size_t blk = b0; blk < b1; ++blk) {
      const int64_t j0 = static_cast<int64_t>(blk) * block, cols = std::min(block, n - j0);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                  static_cast<int>(m), static_cast<int>(cols), static_cast<int>(k), 1.0f, a,
                  static_cast<int>(k), trans_b ? b + j0 * k : b + j0,
                  static_cast<int>(trans_b ? k : n), 0.0f, c + j0, static_cast<int>(n));
    }
  });
}

void sgemm_block(int64_t m, int64_t n, int64_t k, const float* a, const float* b, int64_t ldb,
                 float* c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), 1.0f, a, static_cast<int>(k), b, static_cast<int>(ldb), 0.0f, c,
              static_cast<int>(ldc));
}

}  // namespace quantize::exec
