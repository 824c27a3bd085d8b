// Cast and CastLike between every numeric type, bool, float16, bfloat16 and strings; Identity
// and Dropout (at inference, the identity too).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#include "executor/core/ops.h"
#include "kernels/kernels.h"
#include "model/tensor_data.h"

namespace quantize::exec {
namespace {

using onnx::TensorProto;

void identity(OpContext& c) { c.output(0) = c.input(0); }

void cast_to(OpContext& c, int to);

// Cast to STRING: numbers in their shortest round-trip form, NaN and infinities as ONNX spells
// them; from STRING: parsed as numbers (NaN, INF, +INF, -INF in any case included).
Tensor cast_text(OpContext& c, const Tensor& x, int to) {
  Tensor out(to, x.shape());
  if (to == TensorProto::STRING) {
    const bool integral = x.dtype() != TensorProto::FLOAT && x.dtype() != TensorProto::DOUBLE &&
                          x.dtype() != TensorProto::FLOAT16 && x.dtype() != TensorProto::BFLOAT16;
    for (int64_t i = 0; i < x.size(); ++i) {
      const double v = x.element_as_double(i);
      char buf[64];
      if (std::isnan(v)) {
        out.strings()[i] = "NaN";
      } else if (std::isinf(v)) {
        out.strings()[i] = v < 0 ? "-INF" : "INF";
      } else if (integral) {
        out.strings()[i] = x.dtype() == TensorProto::INT64 ? std::to_string(x.data<int64_t>()[i])
                           : x.dtype() == TensorProto::UINT64
                               ? std::to_string(x.data<uint64_t>()[i])
                               : std::to_string(static_cast<int64_t>(v));
      } else {
        const auto r = x.dtype() == TensorProto::DOUBLE
                           ? std::to_chars(buf, buf + sizeof buf, v)
                           : std::to_chars(buf, buf + sizeof buf, static_cast<float>(v));
        out.strings()[i].assign(buf, r.ptr);
      }
    }
    return out;
  }
  Tensor number(TensorProto::DOUBLE, x.shape());
  for (int64_t i = 0; i < x.size(); ++i) {
    const std::string& text = x.strings()[i];
    char* end = nullptr;
    number.data<double>()[i] = std::strtod(text.c_str(), &end);
    if (end == text.c_str() || *end != '\0') c.fail("'{}' is not a number", text);
  }
  if (to == TensorProto::DOUBLE) return number;
  std::vector<Tensor> result(1);
  std::vector<const Tensor*> in{&number};
  OpContext step(c.model, c.node, c.opset, in, result);
  cast_to(step, to);
  return std::move(result[0]);
}

bool plain_number(int dtype) {
  return dtype != TensorProto::FLOAT16 && dtype != TensorProto::BFLOAT16 &&
         dtype != TensorProto::STRING && dtype != TensorProto::BOOL && element_size(dtype) != 0;
}

void cast_to(OpContext& c, int to) {
  const Tensor& x = c.input(0);
  if (x.dtype() == TensorProto::STRING || to == TensorProto::STRING) {
    c.output(0) = x.dtype() == to ? x : cast_text(c, x, to);
    return;
  }
  if (plain_number(x.dtype()) && (plain_number(to) || to == TensorProto::BOOL)) {
    // Between C++ number types: one typed loop (bool: != 0).
    Tensor out(to, x.shape(), Tensor::Uninitialized{});
    with_type(c, x.dtype(), [&](auto from) {
      using F = decltype(from);
      const F* src = x.data<F>();
      if (to == TensorProto::BOOL) {
        for (int64_t i = 0; i < x.size(); ++i) out.data<uint8_t>()[i] = src[i] != F(0);
        return;
      }
      with_type(c, to, [&](auto into) {
        using T = decltype(into);
        T* dst = out.data<T>();
        for (int64_t i = 0; i < x.size(); ++i) dst[i] = static_cast<T>(src[i]);
      });
    });
    c.output(0) = std::move(out);
    return;
  }
  Tensor out(to, x.shape());
  for (int64_t i = 0; i < x.size(); ++i) {
    switch (to) {
      case TensorProto::FLOAT:
        out.data<float>()[i] = x.dtype() == TensorProto::FLOAT16
                                   ? f16_to_f32_scalar(x.data<uint16_t>()[i])
                                   : static_cast<float>(x.element_as_double(i));
        break;
      case TensorProto::FLOAT16:
        out.data<uint16_t>()[i] = f32_to_f16_scalar(static_cast<float>(x.element_as_double(i)));
        break;
      case TensorProto::DOUBLE:
        out.data<double>()[i] = x.element_as_double(i);
        break;
      case TensorProto::INT64:
        out.data<int64_t>()[i] = x.dtype() == TensorProto::INT64
                                     ? x.data<int64_t>()[i]
                                     : static_cast<int64_t>(x.element_as_double(i));
        break;
      case TensorProto::INT32:
        out.data<int32_t>()[i] = static_cast<int32_t>(x.element_as_double(i));
        break;
      case TensorProto::BOOL:
        out.data<uint8_t>()[i] = x.element_as_double(i) != 0;
        break;
      case TensorProto::UINT8:
        out.data<uint8_t>()[i] = static_cast<uint8_t>(x.element_as_double(i));
        break;
      case TensorProto::INT8:
        out.data<int8_t>()[i] = static_cast<int8_t>(x.element_as_double(i));
        break;
      case TensorProto::INT16:
        out.data<int16_t>()[i] = static_cast<int16_t>(x.element_as_double(i));
        break;
      case TensorProto::UINT16:
        out.data<uint16_t>()[i] = static_cast<uint16_t>(x.element_as_double(i));
        break;
      case TensorProto::UINT32:
        out.data<uint32_t>()[i] = static_cast<uint32_t>(x.element_as_double(i));
        break;
      case TensorProto::UINT64:
        out.data<uint64_t>()[i] = x.dtype() == TensorProto::UINT64
                                      ? x.data<uint64_t>()[i]
                                      : static_cast<uint64_t>(x.element_as_double(i));
        break;
      case TensorProto::BFLOAT16:
        out.data<uint16_t>()[i] = f32_to_bf16_scalar(static_cast<float>(x.element_as_double(i)));
        break;
      default:
        c.fail("Cast to data type {} is not supported", to);
    }
  }
  c.output(0) = std::move(out);
}

void cast(OpContext& c) { cast_to(c, static_cast<int>(c.attr_int("to", 0))); }
void cast_like(OpContext& c) { cast_to(c, c.input(1).dtype()); }

// Dropout at inference: the input unchanged, the mask all true. Training mode is refused.
void dropout(OpContext& c) {
  if (c.has_input(2) && c.input(2).element_as_double(0) != 0)
    c.fail("training_mode is not supported");
  c.output(0) = c.input(0);
  if (c.output_count() > 1) {
    Tensor mask(TensorProto::BOOL, c.input(0).shape());
    std::fill(mask.raw(), mask.raw() + mask.bytes(), uint8_t{1});
    c.output(1) = std::move(mask);
  }
}

}  // namespace

void register_cast(Registry& r) {
  r["Identity"] = identity;
  r["Cast"] = cast;
  r["CastLike"] = cast_like;
  r["Dropout"] = dropout;
}

}  // namespace quantize::exec
