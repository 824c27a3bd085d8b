#include <algorithm>
#include <cmath>
#include <fstream>

#include "quantize/error.h"
#include "quantize/executor.h"

namespace quantize {
namespace fs = std::filesystem;

std::vector<fs::path> test_data_dirs(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(ExitCode::kInput, "{}: not a folder", dir.string());
  if (fs::exists(dir / "input_0.pb")) return {dir};
  std::vector<fs::path> sets;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_directory() && entry.path().filename().string().rfind("test_data_set_", 0) == 0) {
      sets.push_back(entry.path());
    }
  }
  std::sort(sets.begin(), sets.end());
  if (sets.empty()) {
    fail(ExitCode::kInput, "{}: no input_0.pb and no test_data_set_* folders", dir.string());
  }
  return sets;
}

namespace {

Tensor read_pb(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  onnx::TensorProto proto;
  if (!in || !proto.ParseFromIstream(&in)) {
    fail(ExitCode::kInput, "{}: not a serialized TensorProto", path.string());
  }
  return tensor_from_proto(Model{}, proto);
}

}  // namespace

std::vector<Tensor> read_test_inputs(const fs::path& dir, size_t count) {
  std::vector<Tensor> inputs;
  for (size_t i = 0; i < count; ++i) {
    fs::path p = dir / fmt::format("input_{}.pb", i);
    if (!fs::exists(p)) fail(ExitCode::kInput, "{}: missing (the model has {} inputs)", p.string(), count);
    inputs.push_back(read_pb(p));
  }
  return inputs;
}

std::vector<Tensor> read_test_outputs(const fs::path& dir) {
  std::vector<Tensor> outputs;
  for (size_t i = 0; fs::exists(dir / fmt::format("output_{}.pb", i)); ++i) {
    outputs.push_back(read_pb(dir / fmt::format("output_{}.pb", i)));
  }
  return outputs;
}

void write_tensor_pb(const fs::path& path, const Tensor& tensor, const std::string& name) {
  onnx::TensorProto proto;
  proto.set_name(name);
  proto.set_data_type(tensor.dtype());
  for (int64_t d : tensor.shape()) proto.add_dims(d);
  if (tensor.dtype() == onnx::TensorProto::STRING) {
    for (const auto& v : tensor.strings()) proto.add_string_data(v);
  } else {
    proto.set_raw_data(std::string(reinterpret_cast<const char*>(tensor.raw()), tensor.bytes()));
  }
  std::ofstream out(path, std::ios::binary);
  if (!out || !proto.SerializeToOstream(&out)) {
    fail(ExitCode::kOutput, "{}: cannot write", path.string());
  }
}

Agreement compare(const Tensor& got, const Tensor& want, double rtol, double atol) {
  Agreement a;
  if (got.shape() != want.shape()) {
    a.same_shape = a.within = false;
    return a;
  }
  if (got.dtype() == onnx::TensorProto::STRING || want.dtype() == onnx::TensorProto::STRING) {
    a.within = got.dtype() == want.dtype() && got.strings() == want.strings();
    return a;
  }
  for (int64_t i = 0; i < want.size(); ++i) {
    const double g = got.element_as_double(i), w = want.element_as_double(i);
    const double d = std::fabs(g - w);
    if (std::isnan(g) != std::isnan(w) || d > atol + rtol * std::fabs(w)) a.within = false;
    if (std::isnan(d)) continue;
    a.max_abs = std::max(a.max_abs, d);
    a.max_rel = std::max(a.max_rel, d / std::max(std::fabs(w), 1e-6));
  }
  return a;
}

}  // namespace quantize
