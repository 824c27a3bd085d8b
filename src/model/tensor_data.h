// Tensor bytes of a loaded model. A tensor whose bytes live in a payload is marked in the proto
// by data_location = EXTERNAL and one external_data entry {kPayloadKey: index into
// Model::payloads}. The marker never reaches a file: the writer replaces it by the bytes (or by
// real external-data entries).
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <vector>

#include "model/payload.h"
#include "quantize/model.h"

namespace quantize {

inline constexpr char kPayloadKey[] = "quantize.payload";

// ONNX's 4-bit integer types (IR 10, opset 21), which the onnx 1.12 protobuf schema predates:
// two values per byte, the first in the low nibble, the total rounded up to whole bytes.
inline constexpr int kUInt4 = 21;
inline constexpr int kInt4 = 22;
inline bool is_4bit(int data_type) { return data_type == kUInt4 || data_type == kInt4; }

// Bytes per element of a fixed-size ONNX data type; 0 for strings, the 4-bit types and unknown
// types.
size_t element_size(int data_type);
// Bytes of `count` elements of a fixed-size type (4-bit types packed); 0 for strings and unknown
// types.
uint64_t tensor_bytes(int data_type, uint64_t count);
uint64_t element_count(const onnx::TensorProto& tensor);
bool has_payload(const onnx::TensorProto& tensor);
// The tensor's bytes (little-endian, as raw_data holds them), wherever they are stored.
PayloadPtr tensor_payload(const Model& model, const onnx::TensorProto& tensor);
// Replaces the tensor's data by `payload` (its dims and data_type are left to the caller).
void set_tensor_payload(Model& model, onnx::TensorProto& tensor, PayloadPtr payload);
// Decoded float32 values of a FLOAT tensor (a copy; for small tensors and tests).
std::vector<float> tensor_floats(const Model& model, const onnx::TensorProto& tensor);

// `n` float16 or bfloat16 values (`type`) from `in`, as float32 (exact).
void widen_to_float32(int type, const uint8_t* in, uint64_t n, float* out);

// The float32 values of a float16 or bfloat16 payload, converted when read (the widen pass
// makes these): a reader that converts as it goes can take the narrow bytes instead.
class WidenedPayload final : public Payload {
 public:
  WidenedPayload(PayloadPtr narrow, int type) : narrow_(std::move(narrow)), type_(type) {}
  uint64_t size() const override { return narrow_->size() * 2; }
  void read(uint8_t* out) const override;
  const PayloadPtr& narrow() const { return narrow_; }
  int type() const { return type_; }  // FLOAT16 or BFLOAT16

 private:
  PayloadPtr narrow_;
  int type_;
};

// The tensor's bytes as stored: a widened tensor's float16 / bfloat16 bytes, with their type in
// `type` (else tensor_payload and the tensor's own type).
PayloadPtr stored_payload(const Model& model, const onnx::TensorProto& tensor, int* type);

}  // namespace quantize
