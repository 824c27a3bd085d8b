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

// Bytes per element of a fixed-size ONNX data type; 0 for strings and unknown types.
size_t element_size(int data_type);
uint64_t element_count(const onnx::TensorProto& tensor);
bool has_payload(const onnx::TensorProto& tensor);
// The tensor's bytes (little-endian, as raw_data holds them), wherever they are stored.
PayloadPtr tensor_payload(const Model& model, const onnx::TensorProto& tensor);
// Replaces the tensor's data by `payload` (its dims and data_type are left to the caller).
void set_tensor_payload(Model& model, onnx::TensorProto& tensor, PayloadPtr payload);
// Decoded float32 values of a FLOAT tensor (a copy; for small tensors and tests).
std::vector<float> tensor_floats(const Model& model, const onnx::TensorProto& tensor);

}  // namespace quantize
