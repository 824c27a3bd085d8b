// A pass rewrites a model in place and says what it did: the nodes it changed, the tensors it
// re-encoded, and for every candidate node it left alone, why. Passes never read the command
// line, write files or print; the pipeline's caller reports.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "quantize/model.h"

namespace quantize {

struct TensorChange {
  std::string name;
  std::vector<int64_t> dims;
  std::string from, to;  // "f32", "q4 b32", "f16", ...
  uint64_t bytes_before = 0, bytes_after = 0;
  // The reconstruction error, relative RMS (||W - dequantized W|| / ||W||): filled in when the
  // quantized bytes are computed (lazily, as they are written); null or NaN when unknown.
  std::shared_ptr<const double> error;
};

struct NodeNote {
  NodeNote() = default;
  NodeNote(std::string node_, std::string reason_, std::string key_ = {})
      : node(std::move(node_)), reason(std::move(reason_)), key(std::move(key_)) {}
  std::string node;    // node_label()
  std::string reason;  // why it was left alone, or what it became
  std::string key;     // the node's name, or its first output (how plans name it)
};

struct PassResult {
  std::string pass;
  std::vector<NodeNote> changed;
  std::vector<NodeNote> skipped;
  std::vector<TensorChange> tensors;
  std::vector<std::string> notes;  // facts for the report (what calibration used, ...)
  // New values that stand for a value of the float model (a DequantizeLinear output for the
  // tensor it quantizes, a cast for its source): `quantize diff` compares them with it.
  std::vector<std::pair<std::string, std::string>> stands_for;
  std::vector<std::string> warnings;  // worth a user's attention (clamped values, ...)
};

class Pass {
 public:
  virtual ~Pass() = default;
  virtual const char* name() const = 0;
  virtual PassResult run(Model& model) = 0;
};

}  // namespace quantize
