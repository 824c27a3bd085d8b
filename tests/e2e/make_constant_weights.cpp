// make_constant_weights IN OUT: writes IN with every initializer turned into a Constant node,
// the way paddle2onnx and other exporters store weights.
#include <cstdio>
#include <set>
#include <string>

#include "quantize/error.h"
#include "quantize/model.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_constant_weights IN.onnx OUT.onnx\n");
    return 2;
  }
  try {
    quantize::Model model = quantize::load_model(argv[1]);
    auto* graph = model.proto.mutable_graph();
    google::protobuf::RepeatedPtrField<onnx::NodeProto> nodes;
    for (auto& t : *graph->mutable_initializer()) {
      auto* node = nodes.Add();
      node->set_op_type("Constant");
      node->set_name(t.name() + "_constant");
      node->add_output(t.name());
      auto* attr = node->add_attribute();
      attr->set_name("value");
      attr->set_type(onnx::AttributeProto::TENSOR);
      *attr->mutable_t() = t;
    }
    for (auto& n : *graph->mutable_node()) *nodes.Add() = n;
    graph->mutable_node()->Swap(&nodes);
    // IR < 4 models list initializers among the inputs: those are Constant outputs now.
    std::set<std::string> moved;
    for (const auto& t : graph->initializer()) moved.insert(t.name());
    auto* inputs = graph->mutable_input();
    for (int i = inputs->size() - 1; i >= 0; --i) {
      if (moved.count(inputs->Get(i).name())) inputs->DeleteSubrange(i, 1);
    }
    graph->clear_initializer();
    quantize::save_model(model, argv[2], {});
  } catch (const quantize::Error& e) {
    std::fprintf(stderr, "make_constant_weights: %s\n", e.what());
    return 1;
  }
  return 0;
}
