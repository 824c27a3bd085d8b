// Hostile input: models that lie about themselves, built here deterministically, are refused at
// load time with ExitCode::kInput and a message naming the file and the tensor, node or value,
// before anything is allocated from their claims or handed to ONNX's own code.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "model/tensor_data.h"
#include "model/validate.h"
#include "model/wire.h"
#include "quantize/error.h"
#include "quantize/executor.h"
#include "quantize/model.h"
#include "quantize/pipeline.h"
#include "quantize/run.h"
#include "test_util.h"

namespace quantize {
namespace {
namespace fs = std::filesystem;

const char* kConvModel = R"(
  <ir_version: 8, opset_import: ["" : 17]>
  g (float[1, 2, 8, 8] x) => (float[1, 4, 8, 8] y) {
    c = Conv <pads = [1, 1, 1, 1]> (x, w, b)
    y = Relu(c)
  })";

onnx::ModelProto conv_model() {
  auto proto = testing::parse(kConvModel);
  testing::set_floats(proto, "w", {4, 2, 3, 3}, testing::random_floats(4 * 2 * 9, 1));
  testing::set_floats(proto, "b", {4}, testing::random_floats(4, 2));
  return proto;
}

onnx::TensorProto* initializer(onnx::ModelProto& proto, const std::string& name) {
  for (auto& t : *proto.mutable_graph()->mutable_initializer()) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

fs::path write(const std::string& bytes, const std::string& name = "hostile.onnx") {
  fs::path path = testing::temp_dir() / name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

fs::path write(const onnx::ModelProto& proto) {
  std::string bytes;
  proto.SerializeToString(&bytes);
  return write(bytes);
}

std::string file_bytes(const fs::path& path) {
  if (!fs::is_regular_file(path)) return "";  // a FIFO: reading it would block
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// `error` is a refusal of the input (kInput), one line naming the file and every fragment.
void expect_input_error(const Error& error, const fs::path& path,
                        std::initializer_list<std::string> fragments) {
  const std::string what = error.what();
  EXPECT_EQ(error.code(), ExitCode::kInput) << what;
  EXPECT_NE(what.find(path.filename().string()), std::string::npos) << what;
  for (const auto& f : fragments) EXPECT_NE(what.find(f), std::string::npos) << what;
  EXPECT_EQ(what.find('\n'), std::string::npos) << "one line: " << what;
}

// Quantizing `path` in `modes` as the command line does (written to an empty folder) is
// refused as expect_input_error says, with nothing left in the folder and the input unchanged.
void expect_quantize_refused(const fs::path& path, const std::vector<Mode>& modes,
                             std::initializer_list<std::string> fragments) {
  const std::string before = file_bytes(path);
  const fs::path out = testing::temp_dir() / "hostile_out";
  fs::remove_all(out);
  fs::create_directories(out);
  RunRequest request;
  request.models = {path.string()};
  request.output_dir = out.string();
  request.options.modes = modes;
  request.options.calib = "random";
  request.options.calib_samples = 1;
  try {
    quantize_files(request, [](const OutputReport&) {});
    ADD_FAILURE() << "quantized " << path;
  } catch (const Error& e) {
    expect_input_error(e, path, fragments);
  }
  EXPECT_TRUE(fs::is_empty(out)) << path << " left " << fs::directory_iterator(out)->path();
  EXPECT_EQ(file_bytes(path), before) << path << " changed";
}

// Loading `path` fails with kInput, naming the file and every fragment; so does quantizing it
// in every mode at once, before anything is written.
void expect_refused(const fs::path& path, std::initializer_list<std::string> fragments) {
  try {
    load_model(path);
    FAIL() << "loaded " << path;
  } catch (const Error& e) {
    expect_input_error(e, path, fragments);
  }
  expect_quantize_refused(path,
                          {Mode::kQ4, Mode::kQ4F16, Mode::kFp16, Mode::kInt8, Mode::kUInt8,
                           Mode::kQ8, Mode::kStaticInt8, Mode::kStaticUInt8},
                          fragments);
}

TEST(Hostile, TheBaseModelLoads) { EXPECT_NO_THROW(load_model(write(conv_model()))); }

TEST(Hostile, TensorDataThatDisagreesWithItsShape) {
  {  // float_data with fewer values than the dims need (was zero-padded)
    auto p = conv_model();
    auto* b = initializer(p, "b");
    b->clear_raw_data();
    b->add_float_data(1.0f);
    expect_refused(write(p), {"'b'", "holds 1 values", "needs 4"});
  }
  {  // raw_data short for a bias
    auto p = conv_model();
    initializer(p, "b")->mutable_raw_data()->resize(12);
    expect_refused(write(p), {"'b'", "holds 12 raw bytes", "needs 16"});
  }
  {  // no data at all
    auto p = conv_model();
    initializer(p, "b")->clear_raw_data();
    expect_refused(write(p), {"'b'", "holds 0 values"});
  }
  {  // a large tensor (kept in the mapped file) one byte short
    auto p = conv_model();
    testing::set_floats(p, "w", {4, 2, 3, 3}, testing::random_floats(4 * 2 * 9, 1));
    initializer(p, "w")->mutable_raw_data()->resize(4 * 2 * 9 * 4 - 1);
    expect_refused(write(p), {"'w'", "needs 288"});
  }
}

TEST(Hostile, ImpossibleTypesAndDims) {
  for (int type : {0, 999, static_cast<int>(onnx::TensorProto::STRING)}) {
    auto p = conv_model();
    initializer(p, "b")->set_data_type(type);
    expect_refused(write(p), {"'b'"});
  }
  {
    auto p = conv_model();
    auto* b = initializer(p, "b");
    b->set_dims(0, -4);
    expect_refused(write(p), {"'b'", "negative dimension"});
  }
  {  // terabytes claimed with a tiny payload: refused before anything is allocated
    auto p = conv_model();
    auto* b = initializer(p, "b");
    b->clear_dims();
    b->add_dims(int64_t{1} << 20);
    b->add_dims(int64_t{1} << 20);
    expect_refused(write(p), {"'b'", "needs 4398046511104"});
  }
  {  // a product of dims that overflows 64 bits
    auto p = conv_model();
    auto* b = initializer(p, "b");
    b->clear_dims();
    for (int i = 0; i < 4; ++i) b->add_dims(int64_t{1} << 40);
    expect_refused(write(p), {"'b'", "more than 2^62"});
  }
}

TEST(Hostile, ExternalDataKeysParsedStrictly) {
  auto p = conv_model();
  auto* w = initializer(p, "w");
  w->clear_raw_data();
  w->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* offset = w->add_external_data();
  offset->set_key("offset");
  offset->set_value("12abc");
  expect_refused(write(p), {"'w'", "not a number"});
  offset->set_value("0");
  expect_refused(write(p), {"'w'", "relative path"});  // no location at all
}

TEST(Hostile, GraphsThatDoNotHold) {
  {  // a node reading what nothing defines
    auto p = conv_model();
    p.mutable_graph()->mutable_node(1)->set_input(0, "ghost");
    expect_refused(write(p), {"reads 'ghost'", "nothing defines"});
  }
  {  // two nodes writing one value
    auto p = conv_model();
    p.mutable_graph()->mutable_node(1)->set_output(0, "c");
    p.mutable_graph()->mutable_output(0)->set_name("c");
    expect_refused(write(p), {"'c'", "written by two nodes"});
  }
  {  // a cycle: Relu feeds the Conv that feeds it
    auto p = conv_model();
    p.mutable_graph()->mutable_node(0)->set_input(0, "y");
    expect_refused(write(p), {"cycle"});
  }
  {  // an output nothing writes
    auto p = conv_model();
    p.mutable_graph()->mutable_output(0)->set_name("nowhere");
    expect_refused(write(p), {"'nowhere'", "never defined"});
  }
}

TEST(Hostile, AttributesOnnxWouldDivideByOrCannotRead) {
  for (const char* attr : {"strides", "dilations", "kernel_shape"}) {
    auto p = conv_model();
    auto* a = p.mutable_graph()->mutable_node(0)->add_attribute();
    a->set_name(attr);
    a->set_type(onnx::AttributeProto::INTS);
    a->add_ints(attr == std::string("kernel_shape") ? 3 : 1);
    a->add_ints(0);
    expect_refused(write(p), {attr, "must be positive"});
  }
  {
    auto p = conv_model();
    auto* a = p.mutable_graph()->mutable_node(0)->add_attribute();
    a->set_name("group");
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(0);
    expect_refused(write(p), {"group 0"});
  }
  {
    auto p = conv_model();
    p.mutable_graph()->mutable_node(0)->mutable_attribute(0)->set_type(
        static_cast<onnx::AttributeProto::AttributeType>(0));
    expect_refused(write(p), {"'pads'", "kind 0"});
  }
}

TEST(Hostile, LocalFunctionCallingItself) {
  auto p = conv_model();
  auto* f = p.add_functions();
  f->set_name("Loop1");
  f->set_domain("local");
  f->add_input("a");
  f->add_output("b");
  auto* n = f->add_node();
  n->set_op_type("Loop2");
  n->set_domain("local");
  n->add_input("a");
  n->add_output("b");
  auto* g = p.add_functions();
  *g = *f;
  g->set_name("Loop2");
  g->mutable_node(0)->set_op_type("Loop1");
  expect_refused(write(p), {"local function", "calls itself"});
}

// 10,000 nested If bodies, encoded by hand (no recursion here either): refused, not a stack
// overflow.
TEST(Hostile, DeeplyNestedBodies) {
  std::string graph;  // the innermost body: empty
  for (int i = 0; i < 10000; ++i) {
    std::string attribute, node;
    wire::put_bytes_field(attribute, 1, "then_branch");
    wire::put_bytes_field(attribute, 6, graph);
    wire::put_varint_field(attribute, 20, onnx::AttributeProto::GRAPH);
    wire::put_bytes_field(node, 4, "If");
    wire::put_bytes_field(node, 5, attribute);
    graph.clear();
    wire::put_bytes_field(graph, 1, node);
  }
  std::string model;
  wire::put_varint_field(model, 1, 8);
  wire::put_bytes_field(model, 7, graph);
  std::string opset;
  wire::put_varint_field(opset, 2, 17);
  wire::put_bytes_field(model, 8, opset);
  expect_refused(write(model), {"nest too deep"});
}

TEST(Hostile, SpecialFilesAreRefusedWithoutBlocking) {
  const fs::path fifo = testing::temp_dir() / "fifo.onnx";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  expect_refused(fifo, {"not a regular file"});
}

}  // namespace
}  // namespace quantize

namespace quantize {
namespace {

// The executor trusts no input: ops given impossible arguments (as a hostile model computes them)
// throw Error, never read or write out of bounds (checked under ASan by asan_unit).
TEST(Hostile, ExecutorOpsRefuseImpossibleArguments) {
  const char* cases[] = {
      // duplicate Unsqueeze axes
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[3] x) => (float[1, 3] y) { a = Constant <value = int64[2] {0, 0}> ()
                                            y = Unsqueeze(x, a) })",
      // Gather on a scalar table
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (int64[2] i) => (float[2] y) { t = Constant <value = float {1.0}> ()
                                          y = Gather(t, i) })",
      // MatMul with a 0-d operand
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[2, 3] x) => (float[2] y) { w = Constant <value = float {2.0}> ()
                                              y = MatMul(x, w) })",
      // Reshape to 2^40 elements
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[1] x) => (float[1, 1] y) { s = Constant <value = int64[2] {1048576, 1048576}> ()
                                              e = Expand(x, s)
                                              y = ReduceSum(e) })",
      // Slice with its starts and ends dropped
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[4] x) => (float[4] y) { y = Slice(x) })",
      // GRU with hidden_size 0
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[1, 1, 2] x) => (float[1, 1, 1, 0] y) {
           w = Constant <value = float[1, 0, 2] {}> ()
           r = Constant <value = float[1, 0, 0] {}> ()
           y = GRU <hidden_size = 0> (x, w, r) })",
      // Gather indices out of range
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (int64[2] i) => (float[2, 2] y) { t = Constant <value = float[2, 2] {1, 2, 3, 4}> ()
                                             y = Gather(t, i) })",
      // kernel_shape that is not W's (the GEMM read W past its end)
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[1, 1, 8, 8] x) => (float[1, 1, 4, 4] y) {
           w = Constant <value = float[1, 1, 1, 1] {1}> ()
           y = Conv <kernel_shape = [5, 5]> (x, w) })",
      // a kernel larger than the padded input (no output positions: a division by zero)
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[1, 1, 2, 2] x) => (float[1, 1, 1, 1] y) {
           w = Constant <value = float[1, 1, 3, 3] {1, 1, 1, 1, 1, 1, 1, 1, 1}> ()
           y = Conv(x, w) })",
      // ConvTranspose with a bias of the wrong size
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[1, 1, 2, 2] x) => (float[1, 1, 2, 2] y) {
           w = Constant <value = float[1, 1, 1, 1] {1}> ()
           b = Constant <value = float[3] {1, 2, 3}> ()
           y = ConvTranspose(x, w, b) })",
      // Concat of tensors whose other dims differ
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[2, 3] x) => (float[4, 3] y) { t = Constant <value = float[2, 1] {1, 2}> ()
                                                 y = Concat <axis = 0> (x, t) })",
      // Split sizes that do not add up to the axis
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[4] x) => (float[2] a, float[9] b) { s = Constant <value = int64[2] {2, 9}> ()
                                                      a, b = Split(x, s) })",
      // BatchNormalization with fewer parameters than channels
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[1, 4, 2] x) => (float[1, 4, 2] y) {
           p = Constant <value = float[1] {1}> ()
           y = BatchNormalization(x, p, p, p, p) })",
      // MatMulNBits whose B holds fewer bytes than N x blocks x blob (it read past B)
      R"(<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
         g (float[1, 32] x) => (float[1, 4] y) {
           b = Constant <value = uint8[1, 1, 16] {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
                                                  15, 16}> ()
           s = Constant <value = float[4, 1] {1, 1, 1, 1}> ()
           y = com.microsoft.MatMulNBits <K = 32, N = 4, bits = 4, block_size = 32> (x, b, s) })",
      // MatMulNBits with a bias shorter than N
      R"(<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
         g (float[1, 16] x) => (float[1, 2] y) {
           b = Constant <value = uint8[2, 1, 8] {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4, 5, 6, 7, 8}> ()
           s = Constant <value = float[2, 1] {1, 1}> ()
           c = Constant <value = float[1] {1}> ()
           y = com.microsoft.MatMulNBits <K = 16, N = 2, bits = 4, block_size = 16> (x, b, s, , , c)
         })",
      // block-wise DequantizeLinear with a scale too small for its blocks
      R"(<ir_version: 10, opset_import: ["" : 21]>
         g (float[1] u) => (float[4, 2] y) {
           q = Constant <value = int8[4, 2] {1, 2, 3, 4, 5, 6, 7, 8}> ()
           s = Constant <value = float[1, 2] {1, 1}> ()
           y = DequantizeLinear <axis = 0, block_size = 2> (q, s) })",
      // DequantizeLinear with more scales than zero points
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[1] u) => (float[2, 3] y) {
           q = Constant <value = uint8[2, 3] {1, 2, 3, 4, 5, 6}> ()
           s = Constant <value = float[3] {1, 1, 1}> ()
           z = Constant <value = uint8[1] {0}> ()
           y = DequantizeLinear <axis = 1> (q, s, z) })",
      // DynamicQuantizeMatMul with fewer B scales than columns
      R"(<ir_version: 8, opset_import: ["" : 17, "com.microsoft" : 1]>
         g (float[1, 2] x) => (float[1, 3] y) {
           b = Constant <value = int8[2, 3] {1, 2, 3, 4, 5, 6}> ()
           s = Constant <value = float[2] {1, 1}> ()
           y = com.microsoft.DynamicQuantizeMatMul (x, b, s) })",
      // ReduceSum over axis 0 of a scalar
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[2] x) => (float y) { s = Constant <value = float {1}> ()
                                       a = Constant <value = int64[1] {0}> ()
                                       y = ReduceSum(s, a) })",
  };
  for (const char* text : cases) {
    Model model = testing::round_trip(testing::parse(text));
    Executor executor(model);
    std::vector<Tensor> inputs = testing::random_inputs(model, 1, 4);
    for (auto& t : inputs) {
      if (t.dtype() == onnx::TensorProto::INT64) t.data<int64_t>()[0] = 1000;
    }
    EXPECT_THROW(executor.run(inputs), Error) << text;
  }
}

// Empty tensors (a hostile shape's 0 dim) hand out no null pointers: memcpy with one, even for
// 0 bytes, is undefined (UBSan under asan_unit found a Reshape doing it).
TEST(Hostile, EmptyTensorsHandOutNoNullPointers) {
  const Tensor empty(onnx::TensorProto::FLOAT, {0, 3});
  EXPECT_NE(empty.raw(), nullptr);
  EXPECT_NE(empty.data<float>(), nullptr);
  Model model = testing::round_trip(testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[0, 3] x) => (float[3, 0] y) { s = Constant <value = int64[2] {3, 0}> ()
                                           r = Reshape <allowzero = 1> (x, s)
                                           c = Concat <axis = 1> (r, r)
                                           y = Identity(c) })"));
  Executor executor(model);
  const auto out = executor.run({empty});
  EXPECT_EQ(out[0].shape(), (std::vector<int64_t>{3, 0}));
}

// The same through static INT8, whose calibration runs the executor: refused with nothing
// written and the input unchanged. Values that only running reveals (no load-time check can).
TEST(Hostile, ImpossibleComputationsAreRefusedByStaticQuantization) {
  const char* cases[] = {
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[1, 1, 8, 8] x) => (float[1, 1, 4, 4] y) {
           w = Constant <value = float[1, 1, 1, 1] {1}> ()
           c = Conv <kernel_shape = [5, 5]> (x, w)
           y = Relu(c) })",
      R"(<ir_version: 8, opset_import: ["" : 17]>
         g (float[3] x) => (float[1, 3] y) { a = Constant <value = int64[2] {0, 0}> ()
                                            u = Unsqueeze(x, a)
                                            y = Relu(u) })",
  };
  for (const char* text : cases) {
    std::string bytes;
    testing::parse(text).SerializeToString(&bytes);
    expect_quantize_refused(write(bytes), {Mode::kStaticUInt8}, {"node"});
  }
}

}  // namespace
}  // namespace quantize

namespace quantize {
namespace {

// 100,000 nodes listed in reverse order: put in order at load (linear-time passes; this took
// minutes in float16 type inference, a pass per node), then float16 and the executor run it.
TEST(Hostile, ReverseOrderedChainIsPutInOrder) {
  const int n = 100000;
  onnx::ModelProto proto = testing::parse(R"(
    <ir_version: 8, opset_import: ["" : 17]>
    g (float[4] v0) => (float[4] out) { out = Identity(v0) })");
  auto* g = proto.mutable_graph();
  g->clear_node();
  for (int i = n - 1; i >= 0; --i) {
    auto* node = g->add_node();
    node->set_op_type("Relu");
    node->add_input("v" + std::to_string(i));
    node->add_output(i == n - 1 ? std::string("out") : "v" + std::to_string(i + 1));
  }
  Model model = load_model(write(proto));
  EXPECT_EQ(model.proto.graph().node(0).input(0), "v0");
  EXPECT_EQ(model.proto.graph().node(n - 1).output(0), "out");
  Options options;
  run_pipeline(model, Mode::kFp16, options);
  Executor executor(model);
  Tensor x(onnx::TensorProto::FLOAT, {4});
  x.data<float>()[0] = -1.0f;
  x.data<float>()[1] = 2.0f;
  const auto out = executor.run({x});
  EXPECT_EQ(out[0].data<float>()[0], 0.0f);
  EXPECT_EQ(out[0].data<float>()[1], 2.0f);
}

}  // namespace
}  // namespace quantize
