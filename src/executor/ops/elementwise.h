// Internal: the broadcasting loops of the element-wise op files (arithmetic, logic,
// activations): binary ops of two inputs by type, and float functions of one input.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "executor/core/ops.h"
#include "support/threads.h"

namespace quantize::exec {

template <typename T, typename R, typename F>
void binary_typed(OpContext& ctx, const Tensor& a, const Tensor& b, int out_type, F f) {
  const auto shape = broadcast_shape(ctx, a.shape(), b.shape());
  Tensor out(out_type, shape, Tensor::Uninitialized{});
  const T* pa = a.data<T>();
  const T* pb = b.data<T>();
  R* po = out.data<R>();
  const int64_t n = out.size();
  if (a.shape() == shape && b.shape() == shape) {
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[i]);
  } else if (a.shape() == shape && b.size() == 1) {
    for (int64_t i = 0; i < n; ++i) po[i] = f(pa[i], pb[0]);
  } else {
    // Runs over the longest suffix of axes along which each input is either whole or
    // broadcast (a per-channel bias over [N, C, H, W] runs over H x W): offsets per run only.
    const size_t rank = shape.size();
    auto padded = [&](const std::vector<int64_t>& s) {
      std::vector<int64_t> p(rank - s.size(), 1);
      p.insert(p.end(), s.begin(), s.end());
      return p;
    };
    const std::vector<int64_t> sa = padded(a.shape()), sb = padded(b.shape());
    int whole_a = -1, whole_b = -1;  // along the suffix: 1 whole, 0 broadcast, -1 either
    auto fits = [](int& state, int64_t d, int64_t o) {
      if (o == 1) return true;
      const int want = d == o ? 1 : 0;
      if (state >= 0 && state != want) return false;
      state = want;
      return true;
    };
    size_t k = rank;
    int64_t inner = 1;
    while (k > 0 && fits(whole_a, sa[k - 1], shape[k - 1]) &&
           fits(whole_b, sb[k - 1], shape[k - 1])) {
      --k;
      inner *= shape[k];
    }
    const std::vector<int64_t> outer_shape(shape.begin(), shape.begin() + k);
    const auto oa = broadcast_offsets({sa.begin(), sa.begin() + k}, outer_shape),
               ob = broadcast_offsets({sb.begin(), sb.begin() + k}, outer_shape);
    const int64_t step_a = whole_a == 1 ? inner : 1, step_b = whole_b == 1 ? inner : 1;
    for (size_t r = 0; r < oa.size(); ++r) {
      const T* ra = pa + oa[r] * step_a;
      const T* rb = pb + ob[r] * step_b;
      R* ro = po + static_cast<int64_t>(r) * inner;
      if (whole_a == 1 && whole_b == 1) {
        for (int64_t i = 0; i < inner; ++i) ro[i] = f(ra[i], rb[i]);
      } else if (whole_a == 1) {
        for (int64_t i = 0; i < inner; ++i) ro[i] = f(ra[i], rb[0]);
      } else if (whole_b == 1) {
        for (int64_t i = 0; i < inner; ++i) ro[i] = f(ra[0], rb[i]);
      } else {
        for (int64_t i = 0; i < inner; ++i) ro[i] = f(ra[0], rb[0]);
      }
    }
  }
  ctx.output(0) = std::move(out);
}

// Dispatches on the (common) input type; F is a generic lambda.
template <typename F>
void arithmetic(OpContext& ctx, F f) {
  if (ctx.input_count() != 2) ctx.fail("{} inputs (2 are supported)", ctx.input_count());
  const Tensor& a = ctx.input(0);
  const Tensor& b = ctx.input(1);
  if (a.dtype() != b.dtype()) ctx.fail("input types {} and {} differ", a.dtype(), b.dtype());
  switch (a.dtype()) {
    case onnx::TensorProto::FLOAT:
      return binary_typed<float, float>(ctx, a, b, a.dtype(), f);
    case onnx::TensorProto::DOUBLE:
      return binary_typed<double, double>(ctx, a, b, a.dtype(), f);
    case onnx::TensorProto::INT64:
      return binary_typed<int64_t, int64_t>(ctx, a, b, a.dtype(), f);
    case onnx::TensorProto::INT32:
      return binary_typed<int32_t, int32_t>(ctx, a, b, a.dtype(), f);
    case onnx::TensorProto::INT16:
      return binary_typed<int16_t, int16_t>(ctx, a, b, a.dtype(), f);
    case onnx::TensorProto::INT8:
      return binary_typed<int8_t, int8_t>(ctx, a, b, a.dtype(), f);
    case onnx::TensorProto::UINT8:
      return binary_typed<uint8_t, uint8_t>(ctx, a, b, a.dtype(), f);
    case onnx::TensorProto::UINT16:
      return binary_typed<uint16_t, uint16_t>(ctx, a, b, a.dtype(), f);
    case onnx::TensorProto::UINT32:
      return binary_typed<uint32_t, uint32_t>(ctx, a, b, a.dtype(), f);
    case onnx::TensorProto::UINT64:
      return binary_typed<uint64_t, uint64_t>(ctx, a, b, a.dtype(), f);
    default:
      ctx.fail("data type {} is not supported", a.dtype());
  }
}

template <typename F>
void unary_float(OpContext& ctx, F f) {
  const Tensor& x = ctx.input(0);
  Tensor out(x.dtype(), x.shape(), Tensor::Uninitialized{});
  if (x.dtype() == onnx::TensorProto::FLOAT) {
    const float* px = x.data<float>();
    float* po = out.data<float>();
    parallel_for(static_cast<size_t>(x.size()), 1 << 16, [&](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) po[i] = f(px[i]);
    });
  } else if (x.dtype() == onnx::TensorProto::DOUBLE) {
    const double* px = x.data<double>();
    double* po = out.data<double>();
    for (int64_t i = 0; i < x.size(); ++i) po[i] = f(px[i]);
  } else {
    ctx.fail("data type {} is not supported (float32 and float64 are)", x.dtype());
  }
  ctx.output(0) = std::move(out);
}

}  // namespace quantize::exec
