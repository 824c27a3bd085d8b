// A loaded model: the ONNX proto without its large tensor bytes, plus those bytes as payloads.
// A tensor whose bytes live in a payload is marked in the proto by data_location = EXTERNAL and
// one external_data entry {kPayloadKey: index into Model::payloads}. The marker never reaches a
// file: the writer replaces it by the bytes (or by real external-data entries).
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "quantize/payload.h"

namespace quantize {

inline constexpr char kPayloadKey[] = "quantize.payload";

struct Model {
  onnx::ModelProto proto;
  std::shared_ptr<std::vector<PayloadPtr>> payloads = std::make_shared<std::vector<PayloadPtr>>();
  std::string source;                        // the model's path, for messages
  std::vector<std::filesystem::path> files;  // every file the model was read from
  uint64_t bytes = 0;                        // their total size
};

// Reads a model file; external data is resolved relative to its folder. Large tensor bytes stay
// in the mapped files. Throws Error(kInput) naming the file and tensor on any problem.
Model load_model(const std::filesystem::path& path);
// Reads a model held in memory for the life of the program (the embedded default model).
Model load_model_from_memory(const uint8_t* data, uint64_t size, std::string name);

struct SaveOptions {
  bool external_data = false;  // forced on when the single file would reach 2 GiB
  std::function<void(uint64_t done, uint64_t total)> progress;
};

struct SaveResult {
  uint64_t model_bytes = 0;
  uint64_t data_bytes = 0;
  std::filesystem::path data_path;  // empty without external data
};

// Writes the model to `path` (and `path` + ".data" with external data) through temporary files
// renamed at the end: the output appears complete or not at all. Throws Error(kOutput).
SaveResult save_model(const Model& model, const std::filesystem::path& path,
                      const SaveOptions& options);

// The bytes save_model would write (model file and data file), without computing any tensor.
uint64_t encoded_size(const Model& model, bool external_data);

// --- tensor data ---

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

namespace quantize {

// The model bundled into the binary (models/stories260K), used when no model is named.
inline constexpr char kEmbeddedModelName[] = "stories260K.onnx";
Model load_embedded_model();

}  // namespace quantize
