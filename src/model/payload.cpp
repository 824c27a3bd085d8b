#include "model/payload.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "quantize/error.h"

namespace quantize {

void require_regular_file(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    fail(ExitCode::kInput, "{}: not a regular file", path.string());
  }
}

std::shared_ptr<MappedFile> MappedFile::open(const std::filesystem::path& path) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused just below).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail(ExitCode::kInput, "{}: cannot open: {}", path.string(), std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ExitCode::kInput, "{}: not a regular file", path.string());
  }
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->name_ = path.string();
  file->size_ = static_cast<uint64_t>(st.st_size);
  if (file->size_ > 0) {
    void* p = ::mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      fail(ExitCode::kInput, "{}: cannot map: {}", path.string(), std::strerror(err));
    }
    file->data_ = static_cast<const uint8_t*>(p);
    file->mapped_ = true;
  }
  ::close(fd);
  return file;
}

std::shared_ptr<MappedFile> MappedFile::wrap_static(const uint8_t* data, uint64_t size,
                                                    std::string name) {
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->data_ = data;
  file->size_ = size;
  file->name_ = std::move(name);
  return file;
}

MappedFile::~MappedFile() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

void MappedFile::release(uint64_t offset, uint64_t length) const {
  if (!mapped_ || length == 0) return;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  uint64_t begin = (offset + page - 1) / page * page;  // only whole pages inside the range
  uint64_t end = (offset + length) / page * page;
  if (end > begin) ::madvise(const_cast<uint8_t*>(data_) + begin, end - begin, MADV_DONTNEED);
}

namespace {

class MappedPayload final : public Payload {
 public:
  MappedPayload(std::shared_ptr<MappedFile> file, uint64_t offset, uint64_t length)
      : file_(std::move(file)), offset_(offset), length_(length) {}
  uint64_t size() const override { return length_; }
  // Copied a piece at a time, each piece's pages given back once copied: a copy of a 98 MB
  // table (unaligned raw_data, PayloadBytes) would otherwise count twice in the RSS.
  void read(uint8_t* out) const override {
    constexpr uint64_t kPiece = uint64_t{4} << 20;
    for (uint64_t at = 0; at < length_; at += kPiece) {  // an empty file has no mapping
      const uint64_t n = std::min(kPiece, length_ - at);
      std::memcpy(out + at, data() + at, n);
      file_->release(offset_ + at, n);
    }
  }
  const uint8_t* data() const override { return file_->data() + offset_; }
  void release() const override { file_->release(offset_, length_); }

 private:
  std::shared_ptr<MappedFile> file_;
  uint64_t offset_, length_;
};

class OwnedPayload final : public Payload {
 public:
  explicit OwnedPayload(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {}
  uint64_t size() const override { return bytes_.size(); }
  void read(uint8_t* out) const override {
    if (!bytes_.empty()) std::memcpy(out, bytes_.data(), bytes_.size());
  }
  const uint8_t* data() const override { return bytes_.data(); }

 private:
  std::vector<uint8_t> bytes_;
};

class LazyPayload final : public Payload {
 public:
  LazyPayload(uint64_t size, std::function<void(uint8_t*)> produce)
      : size_(size), produce_(std::move(produce)) {}
  uint64_t size() const override { return size_; }
  void read(uint8_t* out) const override { produce_(out); }

 private:
  uint64_t size_;
  std::function<void(uint8_t*)> produce_;
};

}  // namespace

PayloadPtr make_mapped_payload(std::shared_ptr<MappedFile> file, uint64_t offset, uint64_t length) {
  return std::make_shared<MappedPayload>(std::move(file), offset, length);
}

PayloadPtr make_owned_payload(std::vector<uint8_t> bytes) {
  return std::make_shared<OwnedPayload>(std::move(bytes));
}

PayloadPtr make_lazy_payload(uint64_t size, std::function<void(uint8_t*)> produce) {
  return std::make_shared<LazyPayload>(size, std::move(produce));
}

PayloadBytes::PayloadBytes(const PayloadPtr& payload) : payload_(payload) {
  size_ = payload->size();
  data_ = payload->data();
  // Bytes in place but not 8-byte aligned (raw_data inside a mapped file sits wherever the
  // protobuf put it): copied, so that readers may load floats and int64s from them without
  // undefined behaviour. new[] memory is aligned for any scalar type.
  if (data_ == nullptr || reinterpret_cast<uintptr_t>(data_) % alignof(int64_t) != 0) {
    copy_.resize(size_);
    payload->read(copy_.data());
    data_ = copy_.data();
  }
}

PayloadBytes::~PayloadBytes() { payload_->release(); }

}  // namespace quantize
