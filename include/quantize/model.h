// A loaded model: the ONNX proto without its large tensor bytes, plus those bytes as payloads
// (kept in the mapped input files, or computed when the writer asks for them).
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace quantize {

class Payload;
using PayloadPtr = std::shared_ptr<const Payload>;

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

// A copy that shares the payloads (cheap: large tensor bytes are not copied); passes run on it
// without touching the original.
Model copy_model(const Model& model);

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
// Installs SIGINT / SIGTERM / SIGHUP handlers that remove the temporary files save_model is
// writing (the output appears complete or not at all, even when interrupted), then end the
// process as the signal would have. For programs; call once, early.
void remove_partial_outputs_on_signals();

SaveResult save_model(const Model& model, const std::filesystem::path& path,
                      const SaveOptions& options);

// The bytes save_model would write (model file and data file), without computing any tensor.
uint64_t encoded_size(const Model& model, bool external_data);

// The model bundled into the binary (models/stories260K), used when no model is named.
inline constexpr char kEmbeddedModelName[] = "stories260K.onnx";
Model load_embedded_model();

}  // namespace quantize
