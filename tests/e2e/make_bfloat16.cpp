// make_bfloat16 IN OUT: writes IN with its float16 tensors and types made bfloat16 (values
// rounded to nearest even): from the tool's --fp16 output, a bfloat16 model to quantize.
#include <cstdio>
#include <cstring>
#include <functional>

#include "graph/graph.h"
#include "kernels/kernels.h"
#include "model/tensor_data.h"
#include "quantize/error.h"
#include "quantize/model.h"

namespace {

using onnx::TensorProto;

void retype(onnx::TypeProto& type) {
  if (type.has_tensor_type() && type.tensor_type().elem_type() == TensorProto::FLOAT16) {
    type.mutable_tensor_type()->set_elem_type(TensorProto::BFLOAT16);
  }
}

void retype_graph(onnx::GraphProto& graph) {
  for (auto* list : {graph.mutable_input(), graph.mutable_output(), graph.mutable_value_info()}) {
    for (auto& v : *list) retype(*v.mutable_type());
  }
  for (auto& node : *graph.mutable_node()) {
    for (auto& a : *node.mutable_attribute()) {
      if (a.name() == "to" && a.i() == TensorProto::FLOAT16) a.set_i(TensorProto::BFLOAT16);
      if (a.has_g()) retype_graph(*a.mutable_g());
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_bfloat16 IN.onnx OUT.onnx\n");
    return 2;
  }
  try {
    quantize::Model model = quantize::load_model(argv[1]);
    quantize::for_each_tensor(model.proto, [&](TensorProto& t, const std::string&) {
      if (t.data_type() != TensorProto::FLOAT16) return;
      quantize::PayloadBytes half(quantize::tensor_payload(model, t));
      std::vector<uint8_t> bytes(half.size());
      for (size_t i = 0; i < half.size() / 2; ++i) {
        uint16_t h;
        std::memcpy(&h, half.data() + 2 * i, 2);
        const uint16_t b = quantize::f32_to_bf16_scalar(quantize::f16_to_f32_scalar(h));
        std::memcpy(bytes.data() + 2 * i, &b, 2);
      }
      t.set_data_type(TensorProto::BFLOAT16);
      quantize::set_tensor_payload(model, t, quantize::make_owned_payload(std::move(bytes)));
    });
    retype_graph(*model.proto.mutable_graph());
    quantize::save_model(model, argv[2], {});
  } catch (const quantize::Error& e) {
    std::fprintf(stderr, "make_bfloat16: %s\n", e.what());
    return 1;
  }
  return 0;
}
