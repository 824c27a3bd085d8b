// Tensor: construction, containers (sequences, optionals), elements as double or int64, and the
// tensors of TensorProtos (payload, raw or typed fields).
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "executor/core/ops.h"
#include "kernels/kernels.h"
#include "model/tensor_data.h"

namespace quantize {
namespace {

uint64_t physical_memory() {
  return static_cast<uint64_t>(::sysconf(_SC_PHYS_PAGES)) *
         static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
}

std::atomic<uint64_t> max_tensor_bytes{0};  // 0: the machine's memory

}  // namespace

void set_max_tensor_bytes(uint64_t bytes) { max_tensor_bytes = bytes; }

Tensor::Tensor(int dtype, std::vector<int64_t> shape)
    : Tensor(dtype, std::move(shape), Uninitialized{}) {
  if (!storage_.empty()) std::memset(storage_.data(), 0, storage_.size());
}

Tensor::Tensor(int dtype, std::vector<int64_t> shape, Uninitialized)
    : dtype_(dtype), shape_(std::move(shape)) {
  const bool text = dtype == onnx::TensorProto::STRING;
  const size_t size = text ? 0 : element_size(dtype);
  if (size == 0 && !text)
    fail(ExitCode::kInput, "tensors of data type {} are not supported", dtype);
  int64_t count = 1;
  for (int64_t d : shape_) {
    if (d < 0 || (d > 0 && count > (int64_t{1} << 40) / d)) {
      fail(ExitCode::kInput, "a tensor of shape [{}] cannot be made", fmt::join(shape_, ", "));
    }
    count *= d;
  }
  size_ = count;
  // A shape computed from a file's values (Reshape, Expand, ConstantOfShape, ...) may ask for
  // more than the machine has: refused here, not left to std::bad_alloc or the OOM killer.
  static const uint64_t memory = physical_memory();
  const uint64_t limit = max_tensor_bytes ? max_tensor_bytes.load() : memory;
  if (static_cast<uint64_t>(count) * size > limit) {
    fail(ExitCode::kInput, "a tensor of shape [{}] needs {:.1f} GiB, more than {}",
         fmt::join(shape_, ", "), static_cast<double>(count) * size / (1 << 30),
         max_tensor_bytes
             ? fmt::format("the limit of {:.1f} GiB", static_cast<double>(limit) / (1 << 30))
             : std::string("this machine's memory"));
  }
  storage_.resize(static_cast<size_t>(count) * size);
  if (text) strings_.resize(static_cast<size_t>(count));
}

Tensor Tensor::container(int kind, std::vector<Tensor> items, int elem_type) {
  Tensor t;
  t.dtype_ = kind;
  t.size_ = static_cast<int64_t>(items.size());
  if (elem_type == 0 && !items.empty() && !items[0].is_container()) elem_type = items[0].dtype();
  t.elem_type_ = elem_type;
  t.items_ = std::move(items);
  return t;
}

double Tensor::element_as_double(int64_t i) const {
  switch (dtype_) {
    case onnx::TensorProto::FLOAT:
      return data<float>()[i];
    case onnx::TensorProto::DOUBLE:
      return data<double>()[i];
    case onnx::TensorProto::INT64:
      return static_cast<double>(data<int64_t>()[i]);
    case onnx::TensorProto::INT32:
      return data<int32_t>()[i];
    case onnx::TensorProto::INT8:
      return data<int8_t>()[i];
    case onnx::TensorProto::INT16:
      return data<int16_t>()[i];
    case onnx::TensorProto::UINT16:
      return data<uint16_t>()[i];
    case onnx::TensorProto::UINT32:
      return data<uint32_t>()[i];
    case onnx::TensorProto::UINT64:
      return static_cast<double>(data<uint64_t>()[i]);
    case onnx::TensorProto::BFLOAT16:
      return bf16_to_f32_scalar(data<uint16_t>()[i]);
    case onnx::TensorProto::UINT8:
    case onnx::TensorProto::BOOL:
      return data<uint8_t>()[i];
    case onnx::TensorProto::FLOAT16:
      return f16_to_f32_scalar(data<uint16_t>()[i]);
    default:
      fail(ExitCode::kInput, "data type {} is not numeric here", dtype_);
  }
}

std::vector<int64_t> Tensor::to_int64() const {
  std::vector<int64_t> v(static_cast<size_t>(size()));
  if (dtype_ == onnx::TensorProto::INT64) {
    if (bytes() > 0) std::memcpy(v.data(), raw(), bytes());
    return v;
  }
  for (int64_t i = 0; i < size(); ++i) v[i] = static_cast<int64_t>(element_as_double(i));
  return v;
}

Tensor tensor_from_proto(const Model& model, const onnx::TensorProto& proto) {
  if (is_4bit(proto.data_type())) {  // computed on as 8-bit values
    const bool is_signed = proto.data_type() == kInt4;
    Tensor t(is_signed ? onnx::TensorProto::INT8 : onnx::TensorProto::UINT8,
             {proto.dims().begin(), proto.dims().end()});
    PayloadBytes bytes(tensor_payload(model, proto));
    if (bytes.size() != tensor_bytes(proto.data_type(), t.size())) {
      fail(ExitCode::kInput, "tensor '{}': {} data bytes for {} 4-bit values", proto.name(),
           bytes.size(), t.size());
    }
    for (int64_t i = 0; i < t.size(); ++i) {
      const int nibble = (bytes.data()[i / 2] >> (i % 2 * 4)) & 0xF;
      t.raw()[i] = static_cast<uint8_t>(is_signed && nibble >= 8 ? nibble - 16 : nibble);
    }
    return t;
  }
  Tensor t(proto.data_type(), {proto.dims().begin(), proto.dims().end()});
  if (proto.data_type() == onnx::TensorProto::STRING) {
    if (proto.string_data_size() != t.size()) {
      fail(ExitCode::kInput, "tensor '{}': {} strings for {} elements", proto.name(),
           proto.string_data_size(), t.size());
    }
    std::copy(proto.string_data().begin(), proto.string_data().end(), t.strings().begin());
    return t;
  }
  PayloadBytes bytes(tensor_payload(model, proto));
  if (bytes.size() != t.bytes()) {
    fail(ExitCode::kInput, "tensor '{}': {} data bytes for shape of {} bytes", proto.name(),
         bytes.size(), t.bytes());
  }
  if (t.bytes() > 0) std::memcpy(t.raw(), bytes.data(), t.bytes());  // no null pointers
  return t;
}

}  // namespace quantize
