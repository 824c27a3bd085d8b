// Reductions along axes: the Reduce ops (float32 and float64, sums in double), ArgMax, ArgMin
// and CumSum.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "executor/core/ops.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

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

// CumSum along an axis (input), exclusive and reverse attributes; float, double, int32, int64.
void cumsum(OpContext& c) {
  const Tensor& x = c.input(0);
  const int64_t axis = normalize_axis(c, c.input(1).to_int64().at(0), x.rank());
  const bool exclusive = c.attr_int("exclusive", 0) != 0, reverse = c.attr_int("reverse", 0) != 0;
  int64_t outer = 1, len = x.shape()[axis], inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= x.shape()[i];
  for (int64_t i = axis + 1; i < x.rank(); ++i) inner *= x.shape()[i];
  Tensor out(x.dtype(), x.shape());
  auto run = [&](auto* px, auto* po) {
    using T = std::remove_const_t<std::remove_pointer_t<decltype(px)>>;
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t in = 0; in < inner; ++in) {
        T acc = 0;
        for (int64_t s = 0; s < len; ++s) {
          const int64_t i = reverse ? len - 1 - s : s;
          const int64_t at = (o * len + i) * inner + in;
          if (exclusive) {
            po[at] = acc;
            acc += px[at];
          } else {
            acc += px[at];
            po[at] = acc;
          }
        }
      }
    }
  };
  switch (x.dtype()) {
    case TensorProto::FLOAT:
      run(x.data<float>(), out.data<float>());
      break;
    case TensorProto::DOUBLE:
      run(x.data<double>(), out.data<double>());
      break;
    case TensorProto::INT32:
      run(x.data<int32_t>(), out.data<int32_t>());
      break;
    case TensorProto::INT64:
      run(x.data<int64_t>(), out.data<int64_t>());
      break;
    default:
      c.fail("data type {} is not supported", x.dtype());
  }
  c.output(0) = std::move(out);
}

}  // namespace

void register_reduce(Registry& r) {
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
  r["CumSum"] = cumsum;
}

}  // namespace quantize::exec
