// ONNX test data: input_N.pb / output_N.pb read (tensors, sequences, optionals), outputs written,
// and outputs compared within tolerance.
#include <onnx/onnx-data_pb.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "model/payload.h"
#include "quantize/error.h"
#include "quantize/executor.h"

namespace quantize {
namespace fs = std::filesystem;

std::vector<fs::path> test_data_dirs(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(ExitCode::kInput, "{}: not a folder", dir.string());
  // A set of its own (a model without inputs has only expected outputs), or a folder of sets.
  if (fs::exists(dir / "input_0.pb") || fs::exists(dir / "output_0.pb")) return {dir};
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

template <typename Proto>
Proto parse_pb(const fs::path& path, const char* what) {
  require_regular_file(path);
  std::ifstream in(path, std::ios::binary);
  Proto proto;
  if (!in || !proto.ParseFromIstream(&in))
    fail(ExitCode::kInput, "{}: not a serialized {}", path.string(), what);
  return proto;
}

Tensor from_sequence(const onnx::SequenceProto& seq, const fs::path& path);

// An OptionalProto's value: empty, a tensor or a sequence.
Tensor from_optional(const onnx::OptionalProto& opt, const fs::path& path) {
  std::vector<Tensor> item;
  if (opt.has_tensor_value())
    item.push_back(tensor_from_proto(Model{}, opt.tensor_value()));
  else if (opt.has_sequence_value())
    item.push_back(from_sequence(opt.sequence_value(), path));
  else if (opt.elem_type() != onnx::OptionalProto::UNDEFINED &&
           opt.elem_type() != onnx::OptionalProto::TENSOR &&
           opt.elem_type() != onnx::OptionalProto::SEQUENCE) {
    fail(ExitCode::kInput, "{}: optional of element type {} is not supported", path.string(),
         opt.elem_type());
  }
  return Tensor::container(Tensor::kOptional, std::move(item));
}

Tensor from_sequence(const onnx::SequenceProto& seq, const fs::path& path) {
  std::vector<Tensor> items;
  for (const auto& t : seq.tensor_values()) items.push_back(tensor_from_proto(Model{}, t));
  for (const auto& s : seq.sequence_values()) items.push_back(from_sequence(s, path));
  for (const auto& o : seq.optional_values()) items.push_back(from_optional(o, path));
  if (seq.sparse_tensor_values_size() > 0 || seq.map_values_size() > 0) {
    fail(ExitCode::kInput, "{}: sequences of sparse tensors or maps are not supported",
         path.string());
  }
  return Tensor::container(Tensor::kSequence, std::move(items));
}

// A value stored as its declared type says: TensorProto unless a sequence or an optional.
// bfloat16 tensors stored as uint16 (as ONNX writes them: numpy has no bfloat16) are read as
// the bfloat16 the graph declares.
Tensor read_value(const fs::path& path, const onnx::TypeProto* type) {
  if (type && type->has_sequence_type())
    return from_sequence(parse_pb<onnx::SequenceProto>(path, "SequenceProto"), path);
  if (type && type->has_optional_type())
    return from_optional(parse_pb<onnx::OptionalProto>(path, "OptionalProto"), path);
  auto proto = parse_pb<onnx::TensorProto>(path, "TensorProto");
  if (type && type->tensor_type().elem_type() == onnx::TensorProto::BFLOAT16 &&
      proto.data_type() == onnx::TensorProto::UINT16) {
    proto.set_data_type(onnx::TensorProto::BFLOAT16);
  }
  return tensor_from_proto(Model{}, proto);
}

}  // namespace

std::vector<const onnx::TypeProto*> declared_types(const onnx::GraphProto& graph,
                                                   const std::vector<std::string>& names) {
  std::vector<const onnx::TypeProto*> types;
  for (const auto& name : names) {
    const onnx::TypeProto* found = nullptr;
    for (const auto* values : {&graph.input(), &graph.output()}) {
      for (const auto& v : *values) {
        if (v.name() == name) found = &v.type();
      }
    }
    types.push_back(found);
  }
  return types;
}

std::vector<Tensor> read_test_inputs(const fs::path& dir, size_t count,
                                     const std::vector<const onnx::TypeProto*>& types) {
  std::vector<Tensor> inputs;
  for (size_t i = 0; i < count; ++i) {
    fs::path p = dir / fmt::format("input_{}.pb", i);
    if (!fs::exists(p))
      fail(ExitCode::kInput, "{}: missing (the model has {} inputs)", p.string(), count);
    inputs.push_back(read_value(p, i < types.size() ? types[i] : nullptr));
  }
  return inputs;
}

std::vector<Tensor> read_test_outputs(const fs::path& dir,
                                      const std::vector<const onnx::TypeProto*>& types) {
  std::vector<Tensor> outputs;
  for (size_t i = 0; fs::exists(dir / fmt::format("output_{}.pb", i)); ++i) {
    outputs.push_back(
        read_value(dir / fmt::format("output_{}.pb", i), i < types.size() ? types[i] : nullptr));
  }
  return outputs;
}

void write_tensor_pb(const fs::path& path, const Tensor& tensor, const std::string& name) {
  if (tensor.is_container()) {
    fail(ExitCode::kOutput, "{}: writing sequence or optional values is not supported",
         path.string());
  }
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
  if (got.is_container() || want.is_container()) {  // element by element
    if (got.dtype() != want.dtype() || got.items().size() != want.items().size()) {
      a.same_shape = a.within = false;
      return a;
    }
    for (size_t i = 0; i < got.items().size(); ++i) {
      const Agreement e = compare(got.items()[i], want.items()[i], rtol, atol);
      a.within &= e.within, a.same_shape &= e.same_shape;
      a.max_abs = std::max(a.max_abs, e.max_abs), a.max_rel = std::max(a.max_rel, e.max_rel);
    }
    return a;
  }
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
