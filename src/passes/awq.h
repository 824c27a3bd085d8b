// AWQ (Lin et al. 2023, activation-aware weight quantization) for block-quantized weights: an
// input channel that carries large activations matters more, so its row of the weight is scaled
// up by s_j before quantizing (its rounding error then counts less, relative to its values) and
// the activation is divided by s_j (folded into the op that produces it, or a Mul), which leaves
// the float product unchanged: x W = (x / s) (diag(s) W).
//
// Per input (all the weights reading it share one s, as the activation is scaled once):
//   s_j = m_j^alpha, m_j the RMS of channel j over the calibration data (H's diagonal), then
//   normalised so that max(s) min(s) = 1; alpha from the grid 0, 1/20, ..., 19/20 (alpha = 0:
//   no scaling) chosen to minimise the output error the weights cause on the calibration
//   inputs, sum over columns of d^T H d with d = Q(s w) / s - w and H = sum x x^T, measured on
//   a sample of each weight's columns (the search is a handful of GEMMs, not a model run).
#pragma once

#include <cstdint>
#include <vector>

#include "calibration/calibrate.h"
#include "passes/weight_quant.h"

namespace quantize {

// Columns of one weight the search measures, with the format the weight is quantized to.
struct AwqColumns {
  BlockFormat format;
  int64_t count = 0;
  std::vector<float> values;  // `count` columns of K values each, one after another
};

struct AwqChoice {
  std::vector<float> scales;  // s, K values (all 1 when alpha = 0)
  double alpha = 0;
  double error = 0;           // the output error at that alpha
  double unscaled_error = 0;  // at alpha = 0
};

// `quantizer`: what quantizes the scaled columns (weighted by the scaled input's mean squares,
// as the weights will be).
AwqChoice awq_search(const Gram& gram, const std::vector<AwqColumns>& weights,
                     const BlockQuantizer& quantizer, int grid = 20);

}  // namespace quantize
