#include "model/wire.h"

#include "quantize/error.h"

namespace quantize::wire {

uint64_t Reader::read_varint() {
  uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ >= data_.size()) break;
    uint8_t byte = static_cast<uint8_t>(data_[pos_++]);
    value |= static_cast<uint64_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) return value;
  }
  fail(ExitCode::kInput, "malformed protobuf: bad varint at byte {}", base_ + pos_);
}

bool Reader::next(Field& field) {
  if (pos_ >= data_.size()) return false;
  const size_t start = pos_;
  const uint64_t tag = read_varint();
  field.number = static_cast<uint32_t>(tag >> 3);
  field.type = static_cast<WireType>(tag & 7);
  size_t value_start = pos_;
  switch (field.type) {
    case kVarint:
      field.varint = read_varint();
      break;
    case kFixed64:
      pos_ += 8;
      break;
    case kFixed32:
      pos_ += 4;
      break;
    case kLen: {
      uint64_t length = read_varint();
      value_start = pos_;
      if (length > data_.size() - pos_) {
        fail(ExitCode::kInput, "malformed protobuf: field {} at byte {} runs past its message",
             field.number, base_ + start);
      }
      pos_ += length;
      break;
    }
    default:
      fail(ExitCode::kInput, "malformed protobuf: wire type {} at byte {}",
           static_cast<int>(field.type), base_ + start);
  }
  if (pos_ > data_.size() || field.number == 0) {
    fail(ExitCode::kInput, "malformed protobuf: truncated field at byte {}", base_ + start);
  }
  field.whole = data_.substr(start, pos_ - start);
  field.bytes = data_.substr(value_start, pos_ - value_start);
  field.offset = base_ + value_start;
  return true;
}

void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7f) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void put_tag(std::string& out, uint32_t number, WireType type) {
  put_varint(out, (static_cast<uint64_t>(number) << 3) | type);
}

void put_bytes_field(std::string& out, uint32_t number, std::string_view bytes) {
  put_tag(out, number, kLen);
  put_varint(out, bytes.size());
  out.append(bytes);
}

void put_varint_field(std::string& out, uint32_t number, uint64_t value) {
  put_tag(out, number, kVarint);
  put_varint(out, value);
}

void Segments::append(std::string_view bytes) {
  if (bytes.empty()) return;
  if (pieces_.empty() || pieces_.back().payload) pieces_.push_back({});
  pieces_.back().bytes.append(bytes);
  size_ += bytes.size();
}

void Segments::append(PayloadPtr payload) {
  size_ += payload->size();
  pieces_.push_back({{}, std::move(payload)});
}

void Segments::append(Segments&& other) {
  for (auto& piece : other.pieces_) {
    if (piece.payload) {
      append(std::move(piece.payload));
    } else {
      append(piece.bytes);
    }
  }
}

std::string Segments::flatten() const {
  std::string out;
  out.reserve(size_);
  for (const auto& piece : pieces_) {
    if (piece.payload) {
      PayloadBytes bytes(piece.payload);
      out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    } else {
      out.append(piece.bytes);
    }
  }
  return out;
}

namespace {

// Which messages lead to tensors, and through which fields (numbers from onnx.proto).
enum class Kind { kModel, kGraph, kNode, kAttribute, kFunction, kTensor };

Kind child_kind(Kind parent, uint32_t field, bool& descend) {
  descend = true;
  switch (parent) {
    case Kind::kModel:
      if (field == 7) return Kind::kGraph;      // graph
      if (field == 25) return Kind::kFunction;  // functions
      break;
    case Kind::kGraph:
      if (field == 1) return Kind::kNode;    // node
      if (field == 5) return Kind::kTensor;  // initializer
      break;
    case Kind::kNode:
      if (field == 5) return Kind::kAttribute;  // attribute
      break;
    case Kind::kAttribute:
      if (field == 5 || field == 10) return Kind::kTensor;  // t, tensors
      if (field == 6 || field == 11) return Kind::kGraph;   // g, graphs
      break;
    case Kind::kFunction:
      if (field == 7) return Kind::kNode;  // node
      break;
    case Kind::kTensor:
      break;
  }
  descend = false;
  return Kind::kTensor;
}

// Messages nest 3 levels per body (graph, node, attribute): past this, a file is nesting bodies
// only to exhaust the stack (the validation refuses bodies nested more than 64 deep anyway).
constexpr int kMaxNesting = 3 * 64 + 8;

void rewrite_message(std::string_view message, uint64_t base, Kind kind,
                     const TensorRewrite& rewrite, Segments& out, int depth = 0) {
  if (depth > kMaxNesting) {
    fail(ExitCode::kInput, "subgraphs nest too deep (message at byte {})", base);
  }
  Reader reader(message, base);
  Field field;
  while (reader.next(field)) {
    bool descend = false;
    Kind child = child_kind(kind, field.number, descend);
    if (!descend || field.type != kLen) {
      out.append(field.whole);
      continue;
    }
    Segments inner;
    if (child == Kind::kTensor) {
      rewrite(field.bytes, field.offset, inner);
    } else {
      rewrite_message(field.bytes, field.offset, child, rewrite, inner, depth + 1);
    }
    std::string header;
    put_tag(header, field.number, kLen);
    put_varint(header, inner.size());
    out.append(header);
    out.append(std::move(inner));
  }
}

}  // namespace

Segments rewrite_tensors(std::string_view model, const TensorRewrite& rewrite) {
  Segments out;
  rewrite_message(model, 0, Kind::kModel, rewrite, out);
  return out;
}

}  // namespace quantize::wire
