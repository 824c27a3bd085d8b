#include "test_util.h"

#include <gtest/gtest.h>
#include <onnx/defs/parser.h>
#include <unistd.h>

#include <cmath>
#include <cstring>

#include "kernels/kernels.h"

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

std::vector<Tensor> random_inputs(const Model& model, uint32_t seed, int64_t int_hi) {
  std::mt19937 rng(seed);
  std::vector<Tensor> inputs;
  const auto types = declared_types(model.proto.graph(), fed_inputs(model));
  for (const auto* type : types) {
    EXPECT_TRUE(type && type->has_tensor_type()) << "inputs must be declared tensors";
    if (!type || !type->has_tensor_type()) return {};
    std::vector<int64_t> shape;
    for (const auto& d : type->tensor_type().shape().dim()) {
      shape.push_back(d.has_dim_value() ? d.dim_value() : 1);
    }
    Tensor t(type->tensor_type().elem_type(), shape);
    for (int64_t i = 0; i < t.size(); ++i) {
      switch (t.dtype()) {
        case onnx::TensorProto::FLOAT:
          t.data<float>()[i] = std::uniform_real_distribution<float>(-1, 1)(rng);
          break;
        case onnx::TensorProto::FLOAT16:
        case onnx::TensorProto::BFLOAT16: {
          const float v = std::uniform_real_distribution<float>(-1, 1)(rng);
          t.data<uint16_t>()[i] = t.dtype() == onnx::TensorProto::FLOAT16 ? f32_to_f16_scalar(v)
                                                                          : f32_to_bf16_scalar(v);
          break;
        }
        case onnx::TensorProto::INT64:
          t.data<int64_t>()[i] = std::uniform_int_distribution<int64_t>(0, int_hi - 1)(rng);
          break;
        case onnx::TensorProto::INT32:
          t.data<int32_t>()[i] =
              static_cast<int32_t>(std::uniform_int_distribution<int64_t>(0, int_hi - 1)(rng));
          break;
        case onnx::TensorProto::BOOL:
          t.data<uint8_t>()[i] = static_cast<uint8_t>(rng() & 1);
          break;
        default:
          ADD_FAILURE() << "random_inputs: element type " << t.dtype();
          return {};
      }
    }
    inputs.push_back(std::move(t));
  }
  return inputs;
}

OutputGap output_gap(const Model& before, const Model& after, int samples, uint32_t seed,
                     int64_t int_hi) {
  OutputGap gap;
  Executor a(before), b(after);
  for (int s = 0; s < samples; ++s) {
    const auto inputs = random_inputs(before, seed + s, int_hi);
    const auto x = a.run(inputs), y = b.run(inputs);
    EXPECT_EQ(x.size(), y.size());
    for (size_t k = 0; k < x.size() && k < y.size(); ++k) {
      if (x[k].shape() != y[k].shape() || x[k].dtype() != y[k].dtype()) {
        gap.same_shapes = false;
        continue;
      }
      if (x[k].dtype() != onnx::TensorProto::FLOAT && x[k].dtype() != onnx::TensorProto::FLOAT16) {
        gap.same_others &=
            x[k].bytes() == y[k].bytes() && std::memcmp(x[k].raw(), y[k].raw(), x[k].bytes()) == 0;
        continue;
      }
      double dot = 0, xx = 0, yy = 0;
      for (int64_t i = 0; i < x[k].size(); ++i) {
        const double u = x[k].element_as_double(i), v = y[k].element_as_double(i);
        gap.max_abs = std::max(gap.max_abs, std::fabs(u - v));
        dot += u * v, xx += u * u, yy += v * v;
      }
      const double cosine = xx > 0 && yy > 0 ? dot / std::sqrt(xx * yy) : (xx == yy ? 1 : 0);
      gap.min_cosine = std::min(gap.min_cosine, cosine);
    }
  }
  return gap;
}

Calibrator random_calibrator(size_t count, uint32_t seed, int64_t int_hi) {
  return [=](const Model& m, const std::set<std::string>& tensors) {
    CalibrationData data;
    data.count = count;
    data.sample = [&m, seed, int_hi](size_t i) {
      return random_inputs(m, seed + static_cast<uint32_t>(i), int_hi);
    };
    RangeCollector ranges(tensors, CalibMethod::kMinMax, 99.999);
    ChannelStatsCollector channels(tensors, 1);
    run_calibration(m, data, {&ranges, &channels});
    Calibration c;
    c.ranges = ranges.ranges();
    c.channel_stats = channels.stats();
    return c;
  };
}

Gram gram_of(const std::vector<float>& a, int64_t rows, int64_t k) {
  GramCollector collector({"a"});
  Tensor t(onnx::TensorProto::FLOAT, {rows, k});
  std::copy(a.begin(), a.end(), t.data<float>());
  collector.observe("a", t);
  return std::move(collector.take().at("a"));
}

}  // namespace quantize::testing
