// Which ops, and which of their inputs and outputs, may hold float16: the one table the float16
// pass consults. Two sources:
//  - ONNX: the op's schema at the model's opset (ONNX 1.12's registry; an opset it does not know
//    reads as the newest it knows). An input or output whose type parameter allows both float
//    and float16 moves to float16 with the node; one whose type is fixed (Resize's scales,
//    QLinearConv's scales, LayerNormalization's statistics, Cast's output) does not.
//  - ONNX Runtime's CPU provider (1.30): ops ONNX allows in float16 that it still cannot load or
//    run so (ScatterND with a reduction, MeanVarianceNormalization expanded into a body that mixes
//    float and float16, ...), ops it crashes on, and ops whose float16 results are too coarse
//    (sums of squares). com.microsoft ops are listed by hand.
#pragma once

#include <onnx/onnx_pb.h>

#include <string>
#include <vector>

namespace quantize {

struct Float16Plan {
  std::string keep;  // why the node stays float32; empty when it may compute in float16
  // Per input and output: whether a float32 value there becomes float16 with the node.
  std::vector<bool> inputs, outputs;
};

// `opset`: the model's import of the node's domain.
Float16Plan float16_plan(const onnx::NodeProto& node, int opset);

}  // namespace quantize
