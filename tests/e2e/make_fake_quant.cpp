// make_fake_quant IN OUT: writes IN (a statically quantized QDQ model) in the form
// quantization-aware training exports: each DequantizeLinear that reads an 8-bit integer
// initializer reads QuantizeLinear(the float weight it stands for) instead, with the same scale
// and zero point (a fake-quantized float weight).
#include <cstdio>
#include <cstring>
#include <map>
#include <string>

#include "graph/graph.h"
#include "model/tensor_data.h"
#include "quantize/error.h"
#include "quantize/model.h"

namespace {

using onnx::TensorProto;

// The integer values of an 8-bit tensor, as float.
std::vector<float> integers(const quantize::Model& model, const TensorProto& t) {
  quantize::PayloadBytes bytes(quantize::tensor_payload(model, t));
  std::vector<float> v(bytes.size());
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] =
        t.data_type() == TensorProto::INT8 ? static_cast<int8_t>(bytes.data()[i]) : bytes.data()[i];
  }
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_fake_quant IN.onnx OUT.onnx\n");
    return 2;
  }
  try {
    quantize::Model model = quantize::load_model(argv[1]);
    auto* graph = model.proto.mutable_graph();
    std::map<std::string, const TensorProto*> inits;
    for (const auto& t : graph->initializer()) inits[t.name()] = &t;
    google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
    std::vector<TensorProto> weights;
    int count = 0;
    for (auto& node : *graph->mutable_node()) {
      auto q = node.op_type() == "DequantizeLinear" && node.input_size() >= 2
                   ? inits.find(node.input(0))
                   : inits.end();
      if (q == inits.end() || (q->second->data_type() != TensorProto::INT8 &&
                               q->second->data_type() != TensorProto::UINT8)) {
        *nodes.Add() = node;
        continue;
      }
      const TensorProto& qt = *q->second;
      const std::vector<float> values = integers(model, qt);
      const std::vector<float> scale = quantize::tensor_floats(model, *inits.at(node.input(1)));
      std::vector<float> zp(scale.size(), 0.0f);
      if (node.input_size() > 2 && !node.input(2).empty())
        zp = integers(model, *inits.at(node.input(2)));
      // Per axis: the channel of element i along `axis`; per tensor: 0.
      int64_t axis = quantize::attr_int(node, "axis", 1), inner = 1;
      if (axis < 0) axis += qt.dims_size();
      for (int d = static_cast<int>(axis) + 1; d < qt.dims_size(); ++d) inner *= qt.dims(d);
      std::vector<float> w(values.size());
      for (size_t i = 0; i < w.size(); ++i) {
        const size_t c = scale.size() == 1 ? 0 : (i / inner) % scale.size();
        w[i] = (values[i] - zp[c]) * scale[c];
      }
      TensorProto wt;
      wt.set_name(qt.name() + "_float");
      wt.set_data_type(TensorProto::FLOAT);
      *wt.mutable_dims() = qt.dims();
      wt.set_raw_data(std::string(reinterpret_cast<const char*>(w.data()), w.size() * 4));
      weights.push_back(wt);
      onnx::NodeProto& fake = *nodes.Add();
      fake.set_op_type("QuantizeLinear");
      fake.set_domain(node.domain());
      fake.set_name(node.name() + "_fake_quantize");
      fake.add_input(wt.name());
      for (int i = 1; i < node.input_size(); ++i) fake.add_input(node.input(i));
      fake.add_output(qt.name() + "_fake");
      *fake.mutable_attribute() = node.attribute();
      onnx::NodeProto& dq = *nodes.Add();
      dq = node;
      dq.set_input(0, fake.output(0));
      ++count;
    }
    graph->mutable_node()->Swap(&nodes);
    for (auto& t : weights) *graph->add_initializer() = std::move(t);
    quantize::remove_unused_constants(model.proto);
    quantize::save_model(model, argv[2], {});
    std::printf("make_fake_quant: %d weight(s) fake-quantized\n", count);
  } catch (const quantize::Error& e) {
    std::fprintf(stderr, "make_fake_quant: %s\n", e.what());
    return 1;
  }
  return 0;
}
