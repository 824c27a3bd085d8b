// Loader and writer: large tensors stay in the mapped file, external data is read safely, and
// the output appears complete or not at all.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <fstream>
#include <mutex>

#include "graph/graph.h"
#include "model/tensor_data.h"
#include "quantize/error.h"
#include "quantize/model.h"
#include "test_util.h"

namespace quantize {
namespace {
namespace fs = std::filesystem;
using testing::find_initializer;

const char* kMatMul = R"(
  <ir_version: 8, opset_import: ["" : 17]>
  g (float[2, 64] a) => (float[2, 32] y) {
    y = MatMul(a, w)
  })";

onnx::ModelProto matmul_model(const std::vector<float>& w) {
  auto proto = testing::parse(kMatMul);
  testing::set_floats(proto, "w", {64, 32}, w);
  return proto;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

TEST(ModelIo, LargeTensorsStayInTheFileAndRoundTrip) {
  auto w = testing::random_floats(64 * 32, 1);
  Model model = testing::round_trip(matmul_model(w));
  const auto* t = find_initializer(model.proto.graph(), "w");
  ASSERT_NE(t, nullptr);
  EXPECT_TRUE(has_payload(*t));
  EXPECT_FALSE(t->has_raw_data());
  EXPECT_EQ(tensor_floats(model, *t), w);
  // Saved again, the bytes are the same model.
  fs::path out = testing::temp_dir() / "again.onnx";
  save_model(model, out, {});
  Model again = load_model(out);
  EXPECT_EQ(tensor_floats(again, *find_initializer(again.proto.graph(), "w")), w);
  onnx::ModelProto plain;
  ASSERT_TRUE(plain.ParseFromString(read_file(out)));
  EXPECT_EQ(plain.graph().initializer(0).raw_data().size(), w.size() * 4);
}

// The kMatMul model's float [64, 32] initializer 'w', with no data yet.
onnx::TensorProto* add_weight(onnx::ModelProto& proto) {
  auto* t = proto.mutable_graph()->add_initializer();
  t->set_name("w");
  t->add_dims(64);
  t->add_dims(32);
  t->set_data_type(onnx::TensorProto::FLOAT);
  return t;
}

TEST(ModelIo, PackedFloatDataIsReadLikeRawData) {
  auto proto = testing::parse(kMatMul);
  auto* t = add_weight(proto);
  auto w = testing::random_floats(64 * 32, 2);
  for (float v : w) t->add_float_data(v);
  Model model = testing::round_trip(proto);
  const auto* loaded = find_initializer(model.proto.graph(), "w");
  EXPECT_TRUE(has_payload(*loaded));
  EXPECT_EQ(tensor_floats(model, *loaded), w);
}

TEST(ModelIo, UnknownFieldsArePreserved) {
  auto proto = matmul_model(testing::random_floats(64 * 32, 3));
  std::string bytes;
  proto.SerializeToString(&bytes);
  bytes += std::string("\xa8\x1f\x2a", 3);  // field 501 (varint 42): unknown to ONNX 1.12
  fs::path in = testing::temp_dir() / "unknown.onnx";
  std::ofstream(in, std::ios::binary) << bytes;
  Model model = load_model(in);
  fs::path out = in.parent_path() / "out.onnx";
  save_model(model, out, {});
  std::string written = read_file(out);
  EXPECT_NE(written.find(std::string("\xa8\x1f\x2a", 3)), std::string::npos);
}

TEST(ModelIo, ExternalDataRoundTrip) {
  auto w = testing::random_floats(64 * 32, 4);
  Model model = testing::round_trip(matmul_model(w));
  fs::path out = testing::temp_dir() / "ext.onnx";
  SaveOptions options;
  options.external_data = true;
  SaveResult result = save_model(model, out, options);
  EXPECT_EQ(result.data_path, out.parent_path() / "ext.onnx.data");
  EXPECT_GE(result.data_bytes, w.size() * 4);
  EXPECT_LT(result.model_bytes, 4096u);
  Model again = load_model(out);
  EXPECT_EQ(tensor_floats(again, *find_initializer(again.proto.graph(), "w")), w);
}

// A model whose tensor 'w' points at external data with the given entries.
fs::path external_model(const std::string& location, const std::string& offset,
                        const std::string& length) {
  auto proto = testing::parse(kMatMul);
  auto* t = add_weight(proto);
  t->set_data_location(onnx::TensorProto::EXTERNAL);
  auto add = [&](const char* k, const std::string& v) {
    auto* e = t->add_external_data();
    e->set_key(k);
    e->set_value(v);
  };
  add("location", location);
  if (!offset.empty()) add("offset", offset);
  if (!length.empty()) add("length", length);
  fs::path dir = testing::temp_dir();
  std::string data(64 * 32 * 4 + 100, '\0');
  std::ofstream(dir / "w.bin", std::ios::binary) << data;
  std::string bytes;
  proto.SerializeToString(&bytes);
  std::ofstream(dir / "model.onnx", std::ios::binary) << bytes;
  return dir / "model.onnx";
}

void expect_input_error(const fs::path& path, const std::string& fragment) {
  try {
    load_model(path);
    FAIL() << "loaded " << path;
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kInput);
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos) << e.what();
  }
}

TEST(ModelIo, ExternalDataOffsetIsHonoured) {
  Model model = load_model(external_model("w.bin", "100", ""));
  EXPECT_EQ(tensor_floats(model, *find_initializer(model.proto.graph(), "w")).size(), 64u * 32);
}

TEST(ModelIo, ExternalDataOutsideTheFolderIsRefused) {
  expect_input_error(external_model("../w.bin", "", ""), "leaves the model's folder");
  expect_input_error(external_model("/etc/passwd", "", ""), "must be a relative path");
  expect_input_error(external_model("w.bin", "200", ""), "beyond the end");
  expect_input_error(external_model("w.bin", "0", "12"), "its shape needs");
}

TEST(ModelIo, ReservedKeyIsRefused) {
  auto proto = matmul_model(testing::random_floats(64 * 32, 5));
  auto* t = proto.mutable_graph()->mutable_initializer(0);
  t->set_data_location(onnx::TensorProto::EXTERNAL);
  auto* e = t->add_external_data();
  e->set_key(kPayloadKey);
  e->set_value("7");
  t->clear_raw_data();
  fs::path path = testing::temp_dir() / "reserved.onnx";
  std::string bytes;
  proto.SerializeToString(&bytes);
  std::ofstream(path, std::ios::binary) << bytes;
  expect_input_error(path, "reserved");
}

TEST(ModelIo, MalformedFilesNameTheFile) {
  fs::path path = testing::temp_dir() / "junk.onnx";
  std::ofstream(path, std::ios::binary) << std::string("\x0a\xff\xff\xff\x0f junk", 10);
  try {
    load_model(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ExitCode::kInput);
    EXPECT_NE(std::string(e.what()).find("junk.onnx"), std::string::npos) << e.what();
  }
}

TEST(ModelIo, FailedWriteLeavesNothing) {
  Model model = testing::round_trip(matmul_model(testing::random_floats(64 * 32, 6)));
  auto* t = model.proto.mutable_graph()->mutable_initializer(0);
  set_tensor_payload(model, *t, make_lazy_payload(64 * 32 * 4, [](uint8_t*) {
                       throw Error(ExitCode::kInternal, "producer failed");
                     }));
  fs::path dir = testing::temp_dir();
  EXPECT_THROW(save_model(model, dir / "out.onnx", {}), Error);
  EXPECT_TRUE(fs::is_empty(dir));
  EXPECT_THROW(save_model(model, dir / "missing" / "out.onnx", {}), Error);
}

// Computed tensors are produced on a thread of their own while earlier ones are written: each
// exactly once, in write order, with its own bytes in its own place, in the model file and in
// external data. Tensors of 1 MB, so the producer has to wait for the writer (it runs ahead by a
// bounded number of bytes) and buffers are reused.
TEST(ModelIo, ComputedTensorsAreProducedOnceInOrderWhileWriting) {
  constexpr int kLayers = 80;
  std::string text = R"(<ir_version: 8, opset_import: ["" : 17]>
  g (float[1, 512] x0) => (float[1, 512] y) {)";
  for (int i = 0; i < kLayers; ++i) {
    text += fmt::format("\n    x{} = MatMul(x{}, w{})", i + 1, i, i);
  }
  text += fmt::format("\n    y = Identity(x{})\n  }}", kLayers);
  for (bool external : {false, true}) {
    auto proto = testing::parse(text.c_str());
    for (int i = 0; i < kLayers; ++i) {
      testing::set_floats(proto, fmt::format("w{}", i), {512, 512}, std::vector<float>(512 * 512));
    }
    Model model = testing::round_trip(proto);
    std::mutex mutex;
    std::vector<int> order;
    for (int i = 0; i < kLayers; ++i) {
      auto* t = model.proto.mutable_graph()->mutable_initializer(i);
      set_tensor_payload(model, *t, make_lazy_payload(512 * 512 * 4, [&, i](uint8_t* out) {
                           {
                             std::lock_guard<std::mutex> lock(mutex);
                             order.push_back(i);
                           }
                           auto* f = reinterpret_cast<float*>(out);
                           for (int j = 0; j < 512 * 512; ++j) f[j] = static_cast<float>(i + j);
                         }));
    }
    const fs::path out = testing::temp_dir() / "computed.onnx";
    SaveOptions options;
    options.external_data = external;
    save_model(model, out, options);
    std::vector<int> expected(kLayers);
    for (int i = 0; i < kLayers; ++i) expected[i] = i;
    EXPECT_EQ(order, expected) << (external ? "external" : "inline");
    Model again = load_model(out);
    for (int i = 0; i < kLayers; ++i) {
      const auto values =
          tensor_floats(again, *find_initializer(again.proto.graph(), fmt::format("w{}", i)));
      ASSERT_EQ(values.size(), 512u * 512);
      EXPECT_EQ(values[0], static_cast<float>(i));
      EXPECT_EQ(values[512 * 512 - 1], static_cast<float>(i + 512 * 512 - 1));
    }
  }
}

// Interrupted while writing (SIGTERM, SIGINT): the temporary file goes, nothing is left, and the
// process still ends by the signal. The writer is held inside a tensor's bytes until killed.
TEST(ModelIo, InterruptedWriteLeavesNothing) {
  for (int sig : {SIGTERM, SIGINT}) {
    const fs::path dir = testing::temp_dir() / ("signal" + std::to_string(sig));
    fs::create_directories(dir);
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      remove_partial_outputs_on_signals();
      Model model = testing::round_trip(matmul_model(testing::random_floats(64 * 32, 7)));
      auto* t = model.proto.mutable_graph()->mutable_initializer(0);
      set_tensor_payload(model, *t, make_lazy_payload(64 * 32 * 4, [](uint8_t*) {
                           for (;;) ::pause();
                         }));
      save_model(model, dir / "out.onnx", {});
      ::_exit(0);
    }
    bool started = false;  // the temporary file is there: the writer is inside the payload
    for (int i = 0; i < 500 && !started; ++i) {
      started = !fs::is_empty(dir);
      if (!started) ::usleep(10000);
    }
    EXPECT_TRUE(started);
    ::kill(child, sig);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == sig) << status;
    EXPECT_TRUE(fs::is_empty(dir)) << fs::directory_iterator(dir)->path();
  }
}

TEST(ModelIo, EmbeddedModelLoads) {
  Model model = load_embedded_model();
  EXPECT_GT(model.proto.graph().node_size(), 100);
  int payloads = 0;
  for_each_tensor(model.proto,
                  [&](onnx::TensorProto& t, const std::string&) { payloads += has_payload(t); });
  EXPECT_GT(payloads, 30);
}

}  // namespace
}  // namespace quantize
