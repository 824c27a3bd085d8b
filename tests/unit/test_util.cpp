#include "test_util.h"

#include <gtest/gtest.h>
#include <onnx/defs/parser.h>
#include <unistd.h>

#include <cstring>

namespace quantize::testing {
namespace fs = std::filesystem;

namespace {
struct TempRoot {
  fs::path path;
  TempRoot() {
    path = fs::temp_directory_path() / ("quantize_tests_" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~TempRoot() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};
}  // namespace

fs::path temp_dir() {
  static TempRoot root;
  static int counter = 0;
  fs::path dir = root.path / std::to_string(counter++);
  fs::create_directories(dir);
  return dir;
}

onnx::ModelProto parse(const char* text) {
  onnx::ModelProto model;
  auto status = onnx::OnnxParser::Parse(model, text);
  EXPECT_TRUE(status.IsOK()) << status.ErrorMessage();
  return model;
}

void set_floats(onnx::ModelProto& model, const std::string& name, const std::vector<int64_t>& dims,
                const std::vector<float>& values) {
  for (auto& t : *model.mutable_graph()->mutable_initializer()) {
    if (t.name() != name) continue;
    t.clear_dims();
    for (int64_t d : dims) t.add_dims(d);
    t.clear_float_data();
    t.set_data_type(onnx::TensorProto::FLOAT);
    t.set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * 4));
    return;
  }
  auto* t = model.mutable_graph()->add_initializer();
  t->set_name(name);
  for (int64_t d : dims) t->add_dims(d);
  t->set_data_type(onnx::TensorProto::FLOAT);
  t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * 4));
}

void set_constant_floats(onnx::ModelProto& model, int index, const std::vector<float>& values) {
  auto* t = model.mutable_graph()->mutable_node(index)->mutable_attribute(0)->mutable_t();
  t->clear_float_data();
  t->set_raw_data(std::string(reinterpret_cast<const char*>(values.data()), values.size() * 4));
}

std::vector<float> random_floats(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

Model round_trip(const onnx::ModelProto& proto, const std::string& name) {
  fs::path path = temp_dir() / name;
  Model m;
  m.proto = proto;
  save_model(m, path, {});
  return load_model(path);
}

const onnx::TensorProto* find_initializer(const onnx::GraphProto& graph, const std::string& name) {
  for (const auto& t : graph.initializer()) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

const onnx::NodeProto* find_node(const onnx::GraphProto& graph, const std::string& op_type) {
  for (const auto& n : graph.node()) {
    if (n.op_type() == op_type) return &n;
  }
  return nullptr;
}

int count_ops(const onnx::GraphProto& graph, const std::string& op_type) {
  int n = 0;
  for (const auto& node : graph.node()) n += node.op_type() == op_type;
  return n;
}

int64_t int_attr(const onnx::NodeProto& node, const std::string& name, int64_t fallback) {
  for (const auto& a : node.attribute()) {
    if (a.name() == name) return a.i();
  }
  return fallback;
}

}  // namespace quantize::testing
