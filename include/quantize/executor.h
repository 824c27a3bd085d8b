// A CPU interpreter for ONNX graphs: runs float models and their quantized
// versions without ONNX Runtime, for calibration and verification. Values are freed as soon as
// their last reader ran, so memory follows the live set; an observer sees every value produced.
// An op or attribute it does not support is an Error naming the node, never a wrong answer.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "quantize/model.h"

namespace quantize {

// The largest tensor the executor makes, in bytes (0, the default: the machine's physical
// memory). A larger one, as a hostile shape asks for, is an Error (ExitCode::kInput).
void set_max_tensor_bytes(uint64_t bytes);

// A dense tensor; the element type is an ONNX TensorProto::DataType.
class Tensor {
 public:
  struct Uninitialized {};

  Tensor() = default;
  Tensor(int dtype, std::vector<int64_t> shape);  // zero-filled
  // Contents left undefined, for ops that write every element (saves a pass over memory).
  Tensor(int dtype, std::vector<int64_t> shape, Uninitialized);

  int dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t rank() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size() const { return size_; }  // elements
  size_t bytes() const { return storage_.size(); }

  // Never null, even for an empty tensor (memcpy and friends must not be given null pointers,
  // even for 0 bytes): an empty one points at a shared block nothing reads or writes.
  template <typename T>
  T* data() {
    return reinterpret_cast<T*>(raw());
  }
  template <typename T>
  const T* data() const {
    return reinterpret_cast<const T*>(raw());
  }
  uint8_t* raw() { return storage_.empty() ? empty_block() : storage_.data(); }
  const uint8_t* raw() const { return storage_.empty() ? empty_block() : storage_.data(); }
  // The elements of a STRING tensor (which has no raw bytes); empty for other types.
  std::vector<std::string>& strings() { return strings_; }
  const std::vector<std::string>& strings() const { return strings_; }

  // Sequences and optionals are values of dtype kSequence / kOptional with no data of their own:
  // their elements (an optional holds none or one), and for a sequence the ONNX type of its
  // tensors (0 when not known).
  static constexpr int kSequence = -1, kOptional = -2;
  static Tensor container(int kind, std::vector<Tensor> items, int elem_type = 0);
  bool is_container() const { return dtype_ < 0; }
  const std::vector<Tensor>& items() const { return items_; }
  int elem_type() const { return elem_type_; }

  // Values converted to int64 (for shapes, axes, indices) or double (any numeric type).
  std::vector<int64_t> to_int64() const;
  double element_as_double(int64_t i) const;

 private:
  static uint8_t* empty_block() {
    alignas(64) static uint8_t block[64];
    return block;
  }
  int dtype_ = 0;
  std::vector<int64_t> shape_;
  int64_t size_ = 1;
  // Bytes that resize() leaves uninitialized; the zero-filling constructor clears them itself.
  struct ByteAllocator : std::allocator<uint8_t> {
    template <typename U>
    struct rebind {
      using other = ByteAllocator;
    };
    void construct(uint8_t*) {}
    void construct(uint8_t* p, uint8_t v) { *p = v; }
  };
  std::vector<uint8_t, ByteAllocator> storage_;
  std::vector<std::string> strings_;
  std::vector<Tensor> items_;
  int elem_type_ = 0;
};

// The tensor held by a TensorProto of the model (payload, raw or typed fields).
Tensor tensor_from_proto(const Model& model, const onnx::TensorProto& proto);

using Observer = std::function<void(const std::string& name, const Tensor& value)>;

class Executor {
 public:
  // Checks every node's op is supported (Error naming the first one that is not).
  explicit Executor(const Model& model);
  ~Executor();

  // The graph inputs to feed (initializers listed as inputs excluded), in order.
  const std::vector<std::string>& input_names() const { return inputs_; }
  const std::vector<std::string>& output_names() const { return outputs_; }

  std::vector<Tensor> run(const std::vector<Tensor>& inputs, const Observer& observer = {});

 private:
  const Model& model_;
  std::vector<std::string> inputs_, outputs_;
  std::unordered_map<std::string, std::shared_ptr<const Tensor>> constants_;
  // Conv nodes whose output's only reader is a Relu or a Clip with constant bounds: when no
  // observer watches, the Conv clamps its own output and that reader is skipped.
  struct Fusion {
    size_t reader;  // node index of the Relu or Clip
    float lo, hi;
  };
  std::unordered_map<size_t, Fusion> fusions_;
  void plan_fusions();

  // Values by name; a subgraph's scope (If branches, Loop and Scan bodies) falls back to the
  // enclosing one.
  struct Scope {
    std::unordered_map<std::string, std::shared_ptr<const Tensor>> values;
    const Scope* outer = nullptr;
    const Tensor* find(const std::string& name) const;
  };
  // Runs a graph's nodes in `scope`, freeing each value of the scope after its last reader
  // (`keep` names the values to leave); fusions and the observer apply to the main graph.
  void run_nodes(const onnx::GraphProto& graph, Scope& scope, const std::vector<std::string>& keep,
                 const Observer& observer, bool main_graph);
  // A subgraph run inside `outer`: its inputs bound by position, its outputs by name.
  std::vector<Tensor> run_subgraph(const onnx::GraphProto& graph, const Scope& outer,
                                   const std::vector<Tensor>& inputs);
  // Copies of the named values (an Error names one that was not produced).
  std::vector<Tensor> results_of(const Scope& scope, const std::vector<std::string>& names) const;
};

// The graph inputs a run is fed (inputs that are initializers excluded), in order; an Error names
// one that is not a tensor.
std::vector<std::string> fed_inputs(const Model& model);

}  // namespace quantize

namespace quantize {

// ONNX test data: DIR/input_N.pb (serialized TensorProto, matched to inputs by order) and,
// when present, DIR/output_N.pb. A DIR holding test_data_set_* folders stands for all of them.
std::vector<std::filesystem::path> test_data_dirs(const std::filesystem::path& dir);
// `types` (optional) gives the graph's declared type of each value: sequence and optional
// values are stored as SequenceProto / OptionalProto, tensors as TensorProto.
std::vector<Tensor> read_test_inputs(const std::filesystem::path& dir, size_t count,
                                     const std::vector<const onnx::TypeProto*>& types = {});
// output_N.pb of DIR that exist, in order (stops at the first missing one).
std::vector<Tensor> read_test_outputs(const std::filesystem::path& dir,
                                      const std::vector<const onnx::TypeProto*>& types = {});
// The declared types of a graph's values by name (nullptr where not declared).
std::vector<const onnx::TypeProto*> declared_types(const onnx::GraphProto& graph,
                                                   const std::vector<std::string>& names);
void write_tensor_pb(const std::filesystem::path& path, const Tensor& tensor,
                     const std::string& name);

struct Agreement {
  double max_abs = 0, max_rel = 0;  // max |got - want| and that over max(|want|, 1e-6)
  bool within = true;               // |got - want| <= atol + rtol * |want| everywhere
  bool same_shape = true;
};
Agreement compare(const Tensor& got, const Tensor& want, double rtol, double atol);

}  // namespace quantize
