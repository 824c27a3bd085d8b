#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "graph/graph.h"
#include "model/tensor_data.h"
#include "model/validate.h"
#include "model/wire.h"
#include "quantize/error.h"
#include "quantize/model.h"

namespace quantize {
namespace fs = std::filesystem;

namespace {

// Tensors with at least this many data bytes stay in the mapped file instead of the proto.
constexpr uint64_t kStripBytes = 1024;
// Tensors of at least this many bytes go to the data file when writing external data.
constexpr uint64_t kExternalBytes = 1024;
constexpr uint64_t kExternalAlign = 4096;
constexpr uint64_t kWritePiece = uint64_t{512} << 10;  // see TempFile::write
// A protobuf message cannot reach 2 GiB.
constexpr uint64_t kMaxSingleFile = (uint64_t{1} << 31) - 1;

// TensorProto field numbers.
constexpr uint32_t kTensorFloatData = 4;
constexpr uint32_t kTensorName = 8;
constexpr uint32_t kTensorRawData = 9;
constexpr uint32_t kTensorExternalData = 13;
constexpr uint32_t kTensorDataLocation = 14;

std::string marker_entry(uint64_t index) {
  std::string entry;
  wire::put_bytes_field(entry, 1, kPayloadKey);
  wire::put_bytes_field(entry, 2, std::to_string(index));
  return entry;
}

// Loader side: moves raw_data (or packed float_data, which has the same bytes) of a large tensor
// out of the proto, leaving a payload marker pointing into the mapped file.
void strip_tensor(std::string_view tensor, uint64_t offset, const std::shared_ptr<MappedFile>& file,
                  std::vector<PayloadPtr>& payloads, wire::Segments& out) {
  wire::Reader reader(tensor, offset);
  wire::Field field;
  int data_fields = 0;
  wire::Field data{};
  std::string_view name;
  bool reserved = false;
  while (reader.next(field)) {
    if ((field.number == kTensorRawData || field.number == kTensorFloatData) &&
        field.type == wire::kLen) {
      ++data_fields;
      data = field;
    }
    if (field.number == kTensorName && field.type == wire::kLen) name = field.bytes;
    if (field.number == kTensorExternalData && field.type == wire::kLen) {
      // The marker is the loader's own: a file that carries one would alias another tensor.
      onnx::StringStringEntryProto entry;
      if (entry.ParseFromArray(field.bytes.data(), static_cast<int>(field.bytes.size())) &&
          entry.key() == kPayloadKey) {
        reserved = true;
      }
    }
  }
  if (reserved) {
    fail(ExitCode::kInput, "tensor '{}' (at byte {}) uses the reserved key '{}'", name, offset,
         kPayloadKey);
  }
  if (data_fields != 1 || data.bytes.size() < kStripBytes) {
    out.append(tensor);
    return;
  }
  std::string kept;
  wire::Reader again(tensor, offset);
  while (again.next(field)) {
    if (field.offset != data.offset) kept.append(field.whole);
  }
  wire::put_varint_field(kept, kTensorDataLocation, onnx::TensorProto::EXTERNAL);
  wire::put_bytes_field(kept, kTensorExternalData, marker_entry(payloads.size()));
  payloads.push_back(make_mapped_payload(file, data.offset, data.bytes.size()));
  out.append(kept);
}

std::optional<uint64_t> payload_index(const onnx::TensorProto& tensor) {
  if (tensor.data_location() != onnx::TensorProto::EXTERNAL) return std::nullopt;
  for (const auto& entry : tensor.external_data()) {
    if (entry.key() == kPayloadKey) return std::stoull(entry.value());
  }
  return std::nullopt;
}

uint64_t expected_bytes(const onnx::TensorProto& tensor) {
  return tensor_bytes(tensor.data_type(), element_count(tensor));
}

// Replaces real external-data references by payloads over the mapped data files, refusing
// locations that leave the model's folder and ranges beyond the file.
void resolve_external_data(Model& model, const fs::path& folder, bool allow_external) {
  std::map<std::string, std::shared_ptr<MappedFile>> files;
  for_each_tensor(model.proto, [&](onnx::TensorProto& tensor, const std::string& where) {
    if (tensor.data_location() != onnx::TensorProto::EXTERNAL) return;
    std::string location;
    uint64_t offset = 0;
    std::optional<uint64_t> length;
    bool marked = false;
    auto number = [&](const onnx::StringStringEntryProto& entry) {
      // Digits only, all of them (stoull would take "12abc" as 12, and "-1" as 2^64 - 1).
      uint64_t v = 0;
      const std::string& s = entry.value();
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
        fail(ExitCode::kInput, "{}: {}: external data entry '{}' is not a number: '{}'",
             model.source, where, entry.key(), s);
      }
      return v;
    };
    for (const auto& entry : tensor.external_data()) {
      if (entry.key() == "location") {
        location = entry.value();
      } else if (entry.key() == "offset") {
        offset = number(entry);
      } else if (entry.key() == "length") {
        length = number(entry);
      } else if (entry.key() == kPayloadKey) {
        marked = true;
      }
    }
    if (marked) return;  // set by the loader itself
    if (!allow_external) {
      fail(ExitCode::kInput, "{}: {} refers to external data, which a model in memory cannot have",
           model.source, where);
    }
    fs::path rel(location);
    if (location.empty() || rel.is_absolute() || location.find('\\') != std::string::npos) {
      fail(ExitCode::kInput, "{}: {}: external data location '{}' must be a relative path",
           model.source, where, location);
    }
    for (const auto& part : rel) {
      if (part == "..") {
        fail(ExitCode::kInput, "{}: {}: external data location '{}' leaves the model's folder",
             model.source, where, location);
      }
    }
    fs::path full = folder / rel;
    std::error_code ec;
    fs::path canonical = fs::weakly_canonical(full, ec);
    fs::path base = fs::weakly_canonical(folder, ec);
    auto [b, c] = std::mismatch(base.begin(), base.end(), canonical.begin(), canonical.end());
    if (b != base.end()) {
      fail(ExitCode::kInput, "{}: {}: external data location '{}' resolves outside the folder",
           model.source, where, location);
    }
    auto& file = files[canonical.string()];
    if (!file) {
      file = MappedFile::open(full);
      model.files.push_back(full);
      model.bytes += file->size();
    }
    const uint64_t want = expected_bytes(tensor);
    const uint64_t len = length.value_or(want);
    if (offset > file->size() || len > file->size() - offset) {
      fail(ExitCode::kInput, "{}: {}: external data [{}, +{}) is beyond the end of {} ({} bytes)",
           model.source, where, offset, len, full.string(), file->size());
    }
    if (want != 0 && len != want) {
      fail(ExitCode::kInput, "{}: {}: external data holds {} bytes, its shape needs {}",
           model.source, where, len, want);
    }
    tensor.clear_external_data();
    set_tensor_payload(model, tensor, make_mapped_payload(file, offset, len));
  });
}

void check_versions(const Model& model) {
  const auto& proto = model.proto;
  if (proto.ir_version() < 3) {
    fail(ExitCode::kInput, "{}: IR version {} is not supported (3 to 10 are)", model.source,
         proto.ir_version());
  }
  for (const auto& opset : proto.opset_import()) {
    if ((opset.domain().empty() || opset.domain() == "ai.onnx") &&
        (opset.version() < 1 || opset.version() > 21)) {
      fail(ExitCode::kInput, "{}: default-domain opset {} is not supported (1 to 21 are)",
           model.source, opset.version());
    }
  }
  if (!proto.has_graph()) fail(ExitCode::kInput, "{}: the model has no graph", model.source);
}

Model load_mapped(const std::shared_ptr<MappedFile>& file, const fs::path& folder,
                  bool allow_external) {
  Model model;
  model.source = file->name();
  model.bytes = file->size();
  std::string_view bytes(reinterpret_cast<const char*>(file->data()), file->size());
  std::string small;
  try {
    small = wire::rewrite_tensors(bytes, [&](std::string_view tensor, uint64_t offset,
                                             wire::Segments& out) {
              strip_tensor(tensor, offset, file, *model.payloads, out);
            }).flatten();
  } catch (const Error& e) {
    fail(ExitCode::kInput, "{}: not an ONNX model: {}", model.source, e.what());
  }
  // The walk touched every tensor's header, and each touch maps the page cache's whole folio
  // around it (2 MB when the file was read ahead in large folios): 186 MB of a 537 MB model
  // counted in the RSS before any pass ran. Given back here; payloads map what they read again.
  file->release(0, file->size());
  if (!model.proto.ParseFromString(small)) {
    fail(ExitCode::kInput, "{}: not an ONNX model (protobuf parse failed)", model.source);
  }
  check_versions(model);
  resolve_external_data(model, folder, allow_external);
  validate_model(model);
  // ONNX requires nodes in dependency order, and the executor runs them as listed; a file that
  // lists them otherwise is put in order (an ordered graph is left as it is).
  ModelIndex index(model.proto);
  for (const auto& g : index.graphs()) topological_sort(*g->proto);
  return model;
}

// Writer side -----------------------------------------------------------------------------

// The temporary files being written, for the signal handler: fixed slots of plain chars (a
// handler may only unlink() what it can read without locks or allocation).
constexpr int kTempSlots = 64;
struct TempSlot {
  std::atomic<bool> used{false};
  char path[4096];
};
TempSlot temp_slots[kTempSlots];

int register_temp(const fs::path& path) {
  const std::string& s = path.native();
  if (s.size() >= sizeof(TempSlot::path)) return -1;
  for (int i = 0; i < kTempSlots; ++i) {
    bool expected = false;
    if (temp_slots[i].used.load() || !temp_slots[i].used.compare_exchange_strong(expected, true)) {
      continue;
    }
    std::memcpy(temp_slots[i].path, s.c_str(), s.size() + 1);
    return i;
  }
  return -1;  // more files at once than slots: not removed on a signal (still on errors)
}

void unregister_temp(int slot) {
  if (slot >= 0) temp_slots[slot].used.store(false);
}

extern "C" void remove_temps_and_reraise(int sig) {
  for (auto& slot : temp_slots) {
    if (slot.used.load()) ::unlink(slot.path);
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

class TempFile {
 public:
  explicit TempFile(const fs::path& final_path) : final_(final_path) {
    path_ = final_path.parent_path() /
            fmt::format(".{}.tmp{}", final_path.filename().string(), ::getpid());
    slot_ = register_temp(path_);
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) {
      unregister_temp(slot_);
      fail(ExitCode::kOutput, "{}: cannot create: {}", path_.string(), std::strerror(errno));
    }
  }
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
    unregister_temp(slot_);
  }
  // In pieces of kWritePiece bytes: one write() of a 23 MB buffer took this VM's kernel 2-5x
  // the time of the same bytes in pieces of 1 MB or less (--fp16 on tools/bench_llm.sh's
  // 1.1B model: 5.1 -> 2.1 s).
  void write(const uint8_t* data, uint64_t size) {
    while (size > 0) {
      ssize_t n = ::write(fd_, data, std::min(size, kWritePiece));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fail(ExitCode::kOutput, "{}: write failed: {}", final_.string(), std::strerror(errno));
      }
      data += n;
      size -= static_cast<uint64_t>(n);
      written_ += static_cast<uint64_t>(n);
    }
  }
  void pad_to(uint64_t offset) {
    static const uint8_t zeros[kExternalAlign] = {};
    while (written_ < offset) write(zeros, std::min(offset - written_, kExternalAlign));
  }
  uint64_t written() const { return written_; }
  void close() {
    if (::close(fd_) != 0) {
      fd_ = -1;
      fail(ExitCode::kOutput, "{}: write failed: {}", final_.string(), std::strerror(errno));
    }
    fd_ = -1;
  }
  void commit() {
    if (::rename(path_.c_str(), final_.c_str()) != 0) {
      fail(ExitCode::kOutput, "{}: cannot rename into place: {}", final_.string(),
           std::strerror(errno));
    }
    committed_ = true;
  }

 private:
  fs::path final_, path_;
  int slot_ = -1;
  int fd_ = -1;
  uint64_t written_ = 0;
  bool committed_ = false;
};

struct Progress {
  const SaveOptions& options;
  uint64_t total = 0;
  uint64_t done = 0;
  void add(uint64_t n) {
    done += n;
    if (options.progress) options.progress(done, total);
  }
};

// The payloads without bytes in place (computed ones: quantized weights, converted tensors),
// produced on a thread of their own in write order while the caller writes the ones before:
// computing the next tensors overlaps the kernel's copy of this one into the page cache. It runs
// ahead by at most kAheadBytes of finished bytes (always by one payload), and buffers are
// recycled, so memory stays flat. One payload is produced at a time, in the order the writer
// used to produce them itself, so the bytes written do not depend on the overlap.
class Prefetcher {
 public:
  struct Buffer {
    std::unique_ptr<uint8_t[]> bytes;
    uint64_t capacity = 0, size = 0;
  };

  explicit Prefetcher(std::vector<PayloadPtr> payloads) : payloads_(std::move(payloads)) {
    if (!payloads_.empty()) thread_ = std::thread([this] { run(); });
  }
  ~Prefetcher() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    changed_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  // The next payload's bytes; its error if producing it failed.
  Buffer next() {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return !ready_.empty() || error_; });
    if (ready_.empty()) std::rethrow_exception(error_);
    Buffer b = std::move(ready_.front());
    ready_.pop_front();
    ahead_ -= b.size;
    changed_.notify_all();
    return b;
  }
  // A written buffer, for the next payload that fits in it.
  void recycle(Buffer b) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(b));
  }

 private:
  static constexpr uint64_t kAheadBytes = uint64_t{64} << 20;

  void run() {
    for (const auto& payload : payloads_) {
      const uint64_t size = payload->size();
      Buffer b;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock,
                      [&] { return stop_ || ready_.empty() || ahead_ + size <= kAheadBytes; });
        if (stop_) return;
        auto fits = std::find_if(free_.begin(), free_.end(),
                                 [&](const Buffer& f) { return f.capacity >= size; });
        if (fits != free_.end()) {
          b = std::move(*fits);
          free_.erase(fits);
        } else if (!free_.empty()) {
          free_.pop_back();  // too small: given back rather than kept beside a larger one
        }
      }
      try {
        if (b.capacity < size) {
          b.bytes.reset(new uint8_t[size]);
          b.capacity = size;
        }
        b.size = size;
        payload->read(b.bytes.get());
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        error_ = std::current_exception();
        changed_.notify_all();
        return;
      }
      std::lock_guard<std::mutex> lock(mutex_);
      ahead_ += size;
      ready_.push_back(std::move(b));
      changed_.notify_all();
    }
  }

  std::vector<PayloadPtr> payloads_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Buffer> ready_;
  std::vector<Buffer> free_;
  uint64_t ahead_ = 0;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

bool computed(const PayloadPtr& payload) { return payload->data() == nullptr; }

void write_payload(TempFile& file, const PayloadPtr& payload, Prefetcher& computed_bytes,
                   Progress& progress) {
  if (!computed(payload)) {
    file.write(payload->data(), payload->size());
  } else {
    Prefetcher::Buffer b = computed_bytes.next();
    file.write(b.bytes.get(), b.size);
    computed_bytes.recycle(std::move(b));
  }
  payload->release();
  progress.add(payload->size());
}

// Re-encodes a marked tensor with its bytes inline (raw_data) or as a reference into the data
// file; `external` decides per payload and returns the data-file offset.
void expand_tensor(std::string_view tensor, const std::vector<PayloadPtr>& payloads,
                   const std::function<std::optional<uint64_t>(const PayloadPtr&)>& external,
                   const std::string& data_name, wire::Segments& out) {
  wire::Reader reader(tensor, 0);
  wire::Field field;
  std::optional<uint64_t> index;
  while (reader.next(field)) {
    if (field.number != kTensorExternalData || field.type != wire::kLen) continue;
    onnx::StringStringEntryProto entry;
    if (entry.ParseFromArray(field.bytes.data(), static_cast<int>(field.bytes.size())) &&
        entry.key() == kPayloadKey) {
      index = std::stoull(entry.value());
    }
  }
  if (!index) {
    out.append(tensor);
    return;
  }
  std::string kept;
  wire::Reader again(tensor, 0);
  while (again.next(field)) {
    if (field.number != kTensorExternalData && field.number != kTensorDataLocation) {
      kept.append(field.whole);
    }
  }
  const PayloadPtr& payload = payloads.at(*index);
  if (auto offset = external(payload)) {
    auto entry = [&](const char* key, const std::string& value) {
      std::string e;
      wire::put_bytes_field(e, 1, key);
      wire::put_bytes_field(e, 2, value);
      wire::put_bytes_field(kept, kTensorExternalData, e);
    };
    entry("location", data_name);
    entry("offset", std::to_string(*offset));
    entry("length", std::to_string(payload->size()));
    wire::put_varint_field(kept, kTensorDataLocation, onnx::TensorProto::EXTERNAL);
    out.append(kept);
    return;
  }
  wire::put_tag(kept, kTensorRawData, wire::kLen);
  wire::put_varint(kept, payload->size());
  out.append(kept);
  out.append(payload);
}

}  // namespace

void remove_partial_outputs_on_signals() {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) ::signal(sig, remove_temps_and_reraise);
}

Model load_model(const fs::path& path) {
  auto file = MappedFile::open(path);
  fs::path folder = path.parent_path();
  if (folder.empty()) folder = ".";
  Model model = load_mapped(file, folder, true);
  model.files.insert(model.files.begin(), path);
  return model;
}

Model load_model_from_memory(const uint8_t* data, uint64_t size, std::string name) {
  return load_mapped(MappedFile::wrap_static(data, size, std::move(name)), {}, false);
}

Model copy_model(const Model& model) {
  Model copy;
  copy.proto = model.proto;
  copy.payloads = std::make_shared<std::vector<PayloadPtr>>(*model.payloads);
  copy.source = model.source;
  copy.files = model.files;
  copy.bytes = model.bytes;
  return copy;
}

namespace {

// The output as segments (model file) and data-file items, computed without producing any
// payload: sizes are known up front.
struct Encoded {
  wire::Segments segments;
  std::vector<std::pair<uint64_t, PayloadPtr>> data_items;  // offset in the data file, bytes
  uint64_t data_size = 0;
  bool external = false;
};

Encoded encode_model(const Model& model, bool external_data, const std::string& data_name) {
  std::string skeleton;
  if (!model.proto.SerializeToString(&skeleton)) {
    fail(ExitCode::kInternal, "{}: could not serialize the model", model.source);
  }
  auto encode = [&](bool use_external) {
    Encoded e;
    e.external = use_external;
    auto external = [&](const PayloadPtr& payload) -> std::optional<uint64_t> {
      if (!use_external || payload->size() < kExternalBytes) return std::nullopt;
      uint64_t offset = (e.data_size + kExternalAlign - 1) / kExternalAlign * kExternalAlign;
      e.data_items.emplace_back(offset, payload);
      e.data_size = offset + payload->size();
      return offset;
    };
    e.segments = wire::rewrite_tensors(
        skeleton, [&](std::string_view tensor, uint64_t, wire::Segments& out) {
          expand_tensor(tensor, *model.payloads, external, data_name, out);
        });
    return e;
  };
  Encoded e = encode(external_data);
  if (!external_data && e.segments.size() > kMaxSingleFile) e = encode(true);
  return e;
}

}  // namespace

uint64_t encoded_size(const Model& model, bool external_data) {
  Encoded e = encode_model(model, external_data, "model.onnx.data");
  return e.segments.size() + e.data_size;
}

SaveResult save_model(const Model& model, const fs::path& path, const SaveOptions& options) {
  const std::string data_name = path.filename().string() + ".data";
  Encoded encoded = encode_model(model, options.external_data, data_name);
  const wire::Segments& segments = encoded.segments;
  const auto& data_items = encoded.data_items;
  const uint64_t data_size = encoded.data_size;
  const bool use_external = encoded.external;

  SaveResult result;
  Progress progress{options};
  progress.total = segments.size() + data_size;
  std::vector<PayloadPtr> to_compute;  // in write order
  for (const auto& item : data_items) {
    if (computed(item.second)) to_compute.push_back(item.second);
  }
  for (const auto& piece : segments.pieces()) {
    if (piece.payload && computed(piece.payload)) to_compute.push_back(piece.payload);
  }
  Prefetcher ahead(std::move(to_compute));
  std::optional<TempFile> data_file;
  if (use_external) {
    result.data_path = path.parent_path() / data_name;
    data_file.emplace(result.data_path);
    for (const auto& [offset, payload] : data_items) {
      data_file->pad_to(offset);
      write_payload(*data_file, payload, ahead, progress);
    }
    result.data_bytes = data_file->written();
    data_file->close();
  }
  TempFile file(path);
  for (const auto& piece : segments.pieces()) {
    if (piece.payload) {
      write_payload(file, piece.payload, ahead, progress);
    } else {
      file.write(reinterpret_cast<const uint8_t*>(piece.bytes.data()), piece.bytes.size());
      progress.add(piece.bytes.size());
    }
  }
  result.model_bytes = file.written();
  file.close();
  if (data_file) data_file->commit();
  file.commit();
  return result;
}

size_t element_size(int data_type) {
  switch (data_type) {
    case onnx::TensorProto::FLOAT:
    case onnx::TensorProto::INT32:
    case onnx::TensorProto::UINT32:
      return 4;
    case onnx::TensorProto::UINT8:
    case onnx::TensorProto::INT8:
    case onnx::TensorProto::BOOL:
      return 1;
    case onnx::TensorProto::UINT16:
    case onnx::TensorProto::INT16:
    case onnx::TensorProto::FLOAT16:
    case onnx::TensorProto::BFLOAT16:
      return 2;
    case onnx::TensorProto::INT64:
    case onnx::TensorProto::UINT64:
    case onnx::TensorProto::DOUBLE:
    case onnx::TensorProto::COMPLEX64:
      return 8;
    case onnx::TensorProto::COMPLEX128:
      return 16;
    default:
      return 0;
  }
}

uint64_t tensor_bytes(int data_type, uint64_t count) {
  return is_4bit(data_type) ? (count + 1) / 2 : count * element_size(data_type);
}

uint64_t element_count(const onnx::TensorProto& tensor) {
  uint64_t n = 1;
  for (int64_t d : tensor.dims()) n *= static_cast<uint64_t>(std::max<int64_t>(d, 0));
  return n;
}

bool has_payload(const onnx::TensorProto& tensor) { return payload_index(tensor).has_value(); }

PayloadPtr tensor_payload(const Model& model, const onnx::TensorProto& tensor) {
  if (auto index = payload_index(tensor)) return model.payloads->at(*index);
  if (tensor.has_raw_data()) {
    const std::string& raw = tensor.raw_data();
    return make_owned_payload(std::vector<uint8_t>(raw.begin(), raw.end()));
  }
  // Typed fields: copy the values into their little-endian byte form.
  const size_t size = element_size(tensor.data_type());
  std::vector<uint8_t> bytes(element_count(tensor) * size);
  auto put = [&](auto values, auto cast) {
    size_t i = 0;
    for (auto v : values) {
      if ((i + 1) * size > bytes.size()) break;
      auto x = cast(v);
      std::memcpy(bytes.data() + i * size, &x, size);
      ++i;
    }
  };
  switch (tensor.data_type()) {
    case onnx::TensorProto::FLOAT:
      put(tensor.float_data(), [](float v) { return v; });
      break;
    case onnx::TensorProto::DOUBLE:
      put(tensor.double_data(), [](double v) { return v; });
      break;
    case onnx::TensorProto::INT64:
      put(tensor.int64_data(), [](int64_t v) { return v; });
      break;
    case onnx::TensorProto::UINT32:
    case onnx::TensorProto::UINT64:
      put(tensor.uint64_data(), [](uint64_t v) { return v; });
      break;
    default:  // int32_data carries INT32 and every narrower type, one value per entry
      put(tensor.int32_data(), [](int32_t v) { return v; });
      break;
  }
  return make_owned_payload(std::move(bytes));
}

void set_tensor_payload(Model& model, onnx::TensorProto& tensor, PayloadPtr payload) {
  tensor.clear_raw_data();
  tensor.clear_float_data();
  tensor.clear_int32_data();
  tensor.clear_int64_data();
  tensor.clear_double_data();
  tensor.clear_uint64_data();
  tensor.clear_external_data();
  tensor.set_data_location(onnx::TensorProto::EXTERNAL);
  auto* entry = tensor.add_external_data();
  entry->set_key(kPayloadKey);
  entry->set_value(std::to_string(model.payloads->size()));
  model.payloads->push_back(std::move(payload));
}

std::vector<float> tensor_floats(const Model& model, const onnx::TensorProto& tensor) {
  PayloadBytes bytes(tensor_payload(model, tensor));
  std::vector<float> values(bytes.size() / sizeof(float));
  if (!values.empty()) std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
  return values;
}

}  // namespace quantize

extern "C" const uint8_t quantize_embedded_model_begin[];
extern "C" const uint8_t quantize_embedded_model_end[];

namespace quantize {

Model load_embedded_model() {
  return load_model_from_memory(
      quantize_embedded_model_begin,
      static_cast<uint64_t>(quantize_embedded_model_end - quantize_embedded_model_begin),
      std::string(kEmbeddedModelName) + " (built in)");
}

}  // namespace quantize
