// Internal: the op registry of the executor (core/registry.cpp). One file per op family registers
// its kernels.
#pragma once

#include <onnx/onnx_pb.h>

#include <cstring>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "quantize/error.h"
#include "quantize/executor.h"

namespace quantize::exec {

// Bounds an op applies to its own results: a Relu or Clip the executor fused into it.
struct Clamp {
  float lo, hi;
};

class OpContext {
 public:
  OpContext(const Model& model, const onnx::NodeProto& node, int opset,
            std::vector<const Tensor*> inputs, std::vector<Tensor>& outputs)
      : model(model), node(node), opset(opset), inputs_(std::move(inputs)), outputs_(outputs) {}

  const Model& model;
  const onnx::NodeProto& node;
  const int opset;  // of the node's domain
  // Set when the executor fused the node's only reader, a Relu or Clip, into it (no observer
  // watches the run): the op clamps its output to [lo, hi] as that node would have.
  const Clamp* fused = nullptr;
  // Runs a graph attribute (If branch, Loop body) in the scope of this node: inputs bound by
  // position, outputs returned in order.
  std::function<std::vector<Tensor>(const onnx::GraphProto&, const std::vector<Tensor>&)>
      run_subgraph;

  int input_count() const { return static_cast<int>(inputs_.size()); }
  bool has_input(int i) const { return i < input_count() && inputs_[i] != nullptr; }
  const Tensor& input(int i) const;  // fails (naming the node) when absent
  Tensor& output(int i) { return outputs_.at(i); }
  int output_count() const { return static_cast<int>(outputs_.size()); }

  bool has_attr(const char* name) const { return find(name) != nullptr; }
  int64_t attr_int(const char* name, int64_t fallback) const;
  float attr_float(const char* name, float fallback) const;
  std::vector<int64_t> attr_ints(const char* name) const;
  std::string attr_string(const char* name, const std::string& fallback) const;
  const onnx::TensorProto* attr_tensor(const char* name) const;
  const onnx::GraphProto* attr_graph(const char* name) const;

  template <typename... Args>
  [[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) const {
    throw Error(ExitCode::kInput,
                fmt::format("{}{}node {}: {}", model.source, model.source.empty() ? "" : ": ",
                            label(), fmt::format(format, std::forward<Args>(args)...)));
  }
  std::string label() const;

 private:
  const onnx::AttributeProto* find(const char* name) const;
  std::vector<const Tensor*> inputs_;
  std::vector<Tensor>& outputs_;
};

using OpFn = void (*)(OpContext&);
// Runs `op`: scratch memory a hostile shape asks for and the machine cannot give
// (std::bad_alloc, std::length_error) is an Error naming the node, as the tensors themselves are.
void run_op(OpFn op, OpContext& ctx);
using Registry = std::unordered_map<std::string, OpFn>;

const Registry& registry();  // key: op type, or "com.microsoft.<op>"
// The registry key of a node's op: its type in the default domain, "<domain>.<type>" in others.
std::string op_key(const onnx::NodeProto& node);
// The implementation of a node's op, or nullptr when the executor has none.
OpFn find_op(const onnx::NodeProto& node);

// One per op family: ops/<family>.cpp, the default domain's ops; contrib/<family>.cpp, ONNX
// Runtime's contrib ops.
void register_arithmetic(Registry& r);
void register_logic(Registry& r);
void register_unary(Registry& r);
void register_activation(Registry& r);
void register_cast(Registry& r);
void register_shape(Registry& r);
void register_rearrange(Registry& r);
void register_gather_scatter(Registry& r);
void register_constant(Registry& r);
void register_index(Registry& r);
void register_matmul(Registry& r);
void register_softmax(Registry& r);
void register_reduce(Registry& r);
void register_loss(Registry& r);
void register_conv(Registry& r);
void register_pool(Registry& r);
void register_normalization(Registry& r);
void register_resample(Registry& r);
void register_quantize(Registry& r);
void register_rnn(Registry& r);
void register_control(Registry& r);
void register_signal(Registry& r);
void register_sequence(Registry& r);
void register_contrib_quantization(Registry& r);
void register_contrib_transformer(Registry& r);

// Inner loops built for the CPU at hand as well (GCC target_clones, chosen at load time): with
// AVX2 and FMA (QUANTIZE_CLONES; where the file allows contraction, sums then differ from the
// plain build in the last bits), or AVX2 alone (QUANTIZE_CLONES_NO_FMA: the same floats on
// every CPU).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QUANTIZE_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#define QUANTIZE_CLONES_NO_FMA __attribute__((target_clones("avx2", "default")))
#else
#define QUANTIZE_CLONES
#define QUANTIZE_CLONES_NO_FMA
#endif

// exp(x) for float without a library call, so loops over it vectorize: x = n ln2 + r with
// |r| <= ln2/2, e^r by its degree-6 Taylor polynomial (relative error < 2e-7 there), 2^n put in
// the exponent bits. Inputs are clamped to [-87, 88], where e^x is a normal float.
inline float exp_poly(float x) {
  x = x < -87.0f ? -87.0f : x;
  x = x > 88.0f ? 88.0f : x;
  const float n = (x * 1.44269504f + 12582912.0f) - 12582912.0f;  // round to nearest, no libm call
  const float r = (x - n * 0.693145752f) - n * 1.42860677e-6f;    // ln2 split for exact n*ln2
  float p = 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return p * scale;
}

// Helpers shared by the op files (core/helpers.cpp unless noted).
std::vector<int64_t> broadcast_shape(const OpContext& ctx, const std::vector<int64_t>& a,
                                     const std::vector<int64_t>& b);
// Offsets into a tensor of `shape` for every element of `out` it broadcasts to, in order.
std::vector<int64_t> broadcast_offsets(const std::vector<int64_t>& shape,
                                       const std::vector<int64_t>& out);
int64_t normalize_axis(const OpContext& ctx, int64_t axis, int64_t rank);
// An int64 tensor of the given shape holding v.
Tensor int64_tensor(const std::vector<int64_t>& v, std::vector<int64_t> shape);
// Row-major strides of a shape, and the multi-index of flat position `flat` in it.
std::vector<int64_t> strides_of(const std::vector<int64_t>& shape);
void unflatten(int64_t flat, const std::vector<int64_t>& shape, std::vector<int64_t>& index);
// Makes OpenBLAS run on the calling thread (sgemm splits large products over the executor's
// threads itself): called before ops run.
void blas_single_threaded();
// C [m, n] = A [m, k] x B, B given as [k, n], or as [n, k] when trans_b (row-major, BLAS).
void sgemm(bool trans_b, int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c);
// C[m x n] (row stride ldc) = A[m x k] * B[k x n] (row stride ldb), on the calling thread.
void sgemm_block(int64_t m, int64_t n, int64_t k, const float* a, const float* b, int64_t ldb,
                 float* c, int64_t ldc);
// C [m x n] = A [m x k] * B [k x n] (rows of B ldb apart, of C ldc apart), then per row i
// + bias[i] (when bias is given) and clamped to [lo, hi]: the GEMM of float convolutions, on the
// calling thread (ops/conv_gemm.cpp).
void conv_gemm(int64_t m, int64_t n, int64_t k, const float* a, const float* b, int64_t ldb,
               float* c, int64_t ldc, const float* bias, float lo, float hi);
// Calls f(T{}) with the C++ type of a numeric ONNX type (bool as uint8).
template <typename F>
void with_type(const OpContext& c, int dtype, F f) {
  switch (dtype) {
    case onnx::TensorProto::FLOAT:
      return f(float{});
    case onnx::TensorProto::DOUBLE:
      return f(double{});
    case onnx::TensorProto::INT64:
      return f(int64_t{});
    case onnx::TensorProto::INT32:
      return f(int32_t{});
    case onnx::TensorProto::INT16:
      return f(int16_t{});
    case onnx::TensorProto::INT8:
      return f(int8_t{});
    case onnx::TensorProto::UINT8:
    case onnx::TensorProto::BOOL:
      return f(uint8_t{});
    case onnx::TensorProto::UINT16:
      return f(uint16_t{});
    case onnx::TensorProto::UINT32:
      return f(uint32_t{});
    case onnx::TensorProto::UINT64:
      return f(uint64_t{});
    default:
      c.fail("data type {} is not supported", dtype);
  }
}

// Fails, naming the node and `what`, unless t is float32.
void require_float(const OpContext& ctx, const Tensor& t, const char* what);
// Input `i` as float32 holding exactly `count` values (a per-channel parameter), or fails naming
// the node and `what`.
const float* float_values(const OpContext& ctx, int i, const char* what, int64_t count);

// Convolution (Conv's attributes) of x by w, accumulated in T; out_shape receives the shape
// (ops/conv.cpp).
template <typename T>
std::vector<T> convolve(const OpContext& c, const std::vector<int64_t>& x_shape, const T* x,
                        const std::vector<int64_t>& w_shape, const T* weight,
                        std::vector<int64_t>& out_shape);

}  // namespace quantize::exec
