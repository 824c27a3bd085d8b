// Tensor bytes kept outside the protobuf. A loaded model's large tensors point into the mapped
// input file; passes replace them with payloads that compute their bytes only when the writer
// asks. So a model proto stays small (cheap to copy for several modes), and memory follows the
// largest tensor, not the model.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace quantize {

// A read-only view of a whole file (mmap), or of bytes that live as long as the program.
class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::filesystem::path& path);
  static std::shared_ptr<MappedFile> wrap_static(const uint8_t* data, uint64_t size,
                                                 std::string name);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& name() const { return name_; }
  // Gives the pages of [offset, offset + length) back to the OS; they are read again on access.
  void release(uint64_t offset, uint64_t length) const;

 private:
  MappedFile() = default;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool mapped_ = false;
  std::string name_;
};

// Refuses (ExitCode::kInput) a path that exists but is not a regular file (a FIFO, a device, a
// folder), before anything opens it: opening a FIFO to read blocks until a writer comes.
void require_regular_file(const std::filesystem::path& path);

class Payload {
 public:
  virtual ~Payload() = default;
  virtual uint64_t size() const = 0;
  // Writes size() bytes to out. Safe to call from several threads.
  virtual void read(uint8_t* out) const = 0;
  // The bytes in place when they already exist in memory, else null.
  virtual const uint8_t* data() const { return nullptr; }
  // The caller is done with the bytes for now: memory may be given back.
  virtual void release() const {}
};
using PayloadPtr = std::shared_ptr<const Payload>;

// Bytes [offset, offset + length) of a mapped file.
PayloadPtr make_mapped_payload(std::shared_ptr<MappedFile> file, uint64_t offset, uint64_t length);
PayloadPtr make_owned_payload(std::vector<uint8_t> bytes);
// Bytes computed by `produce` (which fills exactly `size` bytes) each time they are read.
PayloadPtr make_lazy_payload(uint64_t size, std::function<void(uint8_t*)> produce);

// A payload's bytes in memory for the duration of a scope: a view when possible, else a copy.
class PayloadBytes {
 public:
  explicit PayloadBytes(const PayloadPtr& payload);
  ~PayloadBytes();
  PayloadBytes(const PayloadBytes&) = delete;
  PayloadBytes& operator=(const PayloadBytes&) = delete;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  PayloadPtr payload_;
  std::vector<uint8_t> copy_;
  const uint8_t* data_;
  uint64_t size_;
};

}  // namespace quantize
