// Protobuf wire-format access to the tensors of a serialized ModelProto, without parsing it.
// The loader uses it to leave large tensor bytes in the mapped file; the writer uses it to splice
// payloads into the output as it streams. Only the fields that lead to a TensorProto are entered
// (graph initializers, node attributes t/tensors, subgraphs g/graphs, functions); everything
// else, unknown fields included, is copied byte for byte.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "model/payload.h"

namespace quantize::wire {

enum WireType { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

struct Field {
  uint32_t number = 0;
  WireType type = kVarint;
  std::string_view whole;  // tag and value as in the input
  std::string_view bytes;  // kLen: the payload; otherwise the encoded value
  uint64_t varint = 0;     // kVarint: the value
  uint64_t offset = 0;     // where `bytes` starts, relative to the reader's base
};

// Iterates the fields of one message. Malformed input throws quantize::Error (kInput).
class Reader {
 public:
  Reader(std::string_view message, uint64_t base_offset) : data_(message), base_(base_offset) {}
  bool next(Field& field);

 private:
  uint64_t read_varint();
  std::string_view data_;
  size_t pos_ = 0;
  uint64_t base_;
};

void put_varint(std::string& out, uint64_t value);
void put_tag(std::string& out, uint32_t number, WireType type);
void put_bytes_field(std::string& out, uint32_t number, std::string_view bytes);
void put_varint_field(std::string& out, uint32_t number, uint64_t value);

// A serialized message as literal bytes interleaved with payloads.
class Segments {
 public:
  struct Piece {
    std::string bytes;  // used when payload is null
    PayloadPtr payload;
  };
  void append(std::string_view bytes);
  void append(PayloadPtr payload);
  void append(Segments&& other);
  uint64_t size() const { return size_; }
  const std::vector<Piece>& pieces() const { return pieces_; }
  // The bytes, for segments that hold no payload.
  std::string flatten() const;

 private:
  std::vector<Piece> pieces_;
  uint64_t size_ = 0;
};

// Writes the new encoding of one TensorProto (its fields only, without tag or length).
// `offset` is where the tensor's bytes start in the model bytes given to rewrite_tensors.
using TensorRewrite = std::function<void(std::string_view tensor, uint64_t offset, Segments& out)>;

// Re-encodes a ModelProto with every reachable TensorProto passed through `rewrite`.
Segments rewrite_tensors(std::string_view model, const TensorRewrite& rewrite);

}  // namespace quantize::wire
