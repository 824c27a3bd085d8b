// The accuracy-driven run (--target): when the fully quantized model misses a target on the
// judged data, precision is raised node by node until it holds.
//
// `quantize diff` of the fully quantized model on the calibration share says where noise enters
// (an activation's DequantizeLinear counts for the nodes writing and reading the tensor, a
// weight's for its reader). How much of it reaches the outputs is measured on 16 blocks of
// candidates in graph order, each raised alone with each fix of the mode (static INT8: 16-bit
// activations, then float; 4-bit weights: 8-bit, then float or float16; dynamic INT8 and float16:
// float) on the worst calibration sample. Nodes are raised blocks-by-gain, nodes-by-local-noise,
// and the shortest prefix that meets every target on every sample, judged data and calibration
// share alike (a pooled figure over a held-out share of one or two samples says little about
// the next photo), is found by doubling, then bisection; if no prefix does, a second stage raises
// the same order to the mode's last fix. A few dozen candidate models at most.
#pragma once

#include <string>
#include <vector>

#include "passes/passes.h"
#include "pipeline/plan.h"
#include "quantize/verify.h"

namespace quantize {

struct SearchOutcome {
  std::vector<PlanEntry> raised;  // what the search added to the plan, most harmful first
  Verification quantized;         // the fully quantized model (the plan it started from)
  Verification best;              // with `raised`
  bool met = false;
  int candidates = 0;            // nodes it could raise
  int evaluations = 0;           // candidate models judged
  std::string harm_data;         // what harm was measured on
  uint64_t quantized_bytes = 0;  // the fully quantized model's size
};

// The pass whose nodes the search raises: the one that quantizes (q4f16: its 4-bit weights).
const PassResult* quantizing_pass(const std::vector<PassResult>& results);

bool targets_met(const std::vector<Target>& targets, const Verification& v);

SearchOutcome search_precisions(const Model& source, Mode mode, const Options& options,
                                const RunData& data, const PrecisionPlan& base);

// Multiply-adds per Conv/ConvTranspose/MatMul/Gemm node of `model` with a constant weight (by
// node_key) on one sample.
std::map<std::string, double> multiply_adds(const Model& model, const CalibrationData& data);

}  // namespace quantize
