// Load-time validation: what a file claims about itself is checked once, before any pass, any
// allocation sized by the file or any ONNX library call sees it. Each lie is refused with
// ExitCode::kInput and a message naming the file and the tensor, node or value:
//   - tensors: a known data type; dims >= 0 with an element count and byte size that fit in 63
//     bits; exactly the bytes (raw_data, payload, external data) or values (typed fields) the dims
//     and type need, no more, no fewer;
//   - attributes: a known kind; strides, dilations, kernel_shape >= 1 and group >= 1 (ONNX's
//     shape inference divides by them);
//   - graphs: every value a node or an output reads is defined (in the graph, or in an enclosing
//     one for bodies), none is defined twice, nodes form no cycle, bodies nest at most
//     kMaxGraphDepth deep; local functions do not call themselves (directly or not).
// Everything here is iterative or depth-bounded: a file cannot exhaust the stack.
#pragma once

#include "quantize/model.h"

namespace quantize {

inline constexpr int kMaxGraphDepth = 64;

void validate_model(const Model& model);

}  // namespace quantize
