// Element-wise functions of one float input: Sqrt, Exp, Log, Erf, Abs, Floor, Ceil, Round,
// Sign, Reciprocal, and the trigonometric and hyperbolic functions and their inverses.
#include <cmath>

#include "executor/core/ops.h"
#include "executor/ops/elementwise.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

void sqrt_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::sqrt(x); });
}
void exp_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::exp(x); });
}
void log_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::log(x); });
}

void erf_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::erf(x); });
}
void abs_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::fabs(x); });
}
void floor_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::floor(x); });
}
void ceil_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::ceil(x); });
}
void reciprocal(OpContext& c) {
  unary_float(c, [](auto x) { return decltype(x)(1) / x; });
}

void sin_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::sin(x); });
}
void cos_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::cos(x); });
}
void round_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::nearbyint(x); });
}
void sign_op(OpContext& c) {
  unary_float(c, [](auto x) { return decltype(x)(x > 0) - decltype(x)(x < 0); });
}

void tan_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::tan(x); });
}
void sinh_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::sinh(x); });
}
void cosh_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::cosh(x); });
}
void asin_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::asin(x); });
}
void acos_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::acos(x); });
}
void atan_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::atan(x); });
}
void asinh_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::asinh(x); });
}
void acosh_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::acosh(x); });
}
void atanh_op(OpContext& c) {
  unary_float(c, [](auto x) { return std::atanh(x); });
}

}  // namespace

void register_unary(Registry& r) {
  r["Sin"] = sin_op;
  r["Cos"] = cos_op;
  r["Round"] = round_op;
  r["Sign"] = sign_op;
  r["Sqrt"] = sqrt_op;
  r["Exp"] = exp_op;
  r["Log"] = log_op;
  r["Erf"] = erf_op;
  r["Abs"] = abs_op;
  r["Floor"] = floor_op;
  r["Ceil"] = ceil_op;
  r["Reciprocal"] = reciprocal;
  r["Tan"] = tan_op;
  r["Sinh"] = sinh_op;
  r["Cosh"] = cosh_op;
  r["Asin"] = asin_op;
  r["Acos"] = acos_op;
  r["Atan"] = atan_op;
  r["Asinh"] = asinh_op;
  r["Acosh"] = acosh_op;
  r["Atanh"] = atanh_op;
}

}  // namespace quantize::exec
