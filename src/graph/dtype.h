// Types of the values of a model, in the main graph and in every If/Loop/Scan body: from the
// model's declarations (inputs, outputs, value_info, initializers), ONNX shape inference where it
// applies, and per-op rules for the rest (including the com.microsoft ops this tool writes).
// Value names are unique across a model's graphs, so one map holds them all. Unknown values are
// absent.
#pragma once

#include <onnx/onnx_pb.h>

#include <string>
#include <unordered_map>

namespace quantize {

struct ValueType {
  enum Kind { kTensor, kSequence, kOptional, kOther };  // kOther: maps, sparse tensors
  Kind kind = kTensor;
  int elem = 0;  // TensorProto::DataType of the tensor (of the elements, for a sequence/optional)

  bool is_tensor(int type) const { return kind == kTensor && elem == type; }
};

using TypeMap = std::unordered_map<std::string, ValueType>;

TypeMap infer_types(const onnx::ModelProto& model);

// float32, float16, bfloat16 or float64.
bool is_float_type(int data_type);

// The ValueType a TypeProto declares (elem 0 when it says nothing).
ValueType value_type(const onnx::TypeProto& type);

}  // namespace quantize
