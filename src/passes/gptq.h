// GPTQ (Frantar et al. 2022) for block-quantized weights: the weight's rows (its K input
// channels) are quantized one at a time, and each row's rounding error, weighted by the inverse
// of the input's second-moment matrix H = sum x x^T (from calibration), is pushed onto the rows
// not yet quantized, so that the layer's output error on the calibration inputs, not the weight's
// own error, is what gets minimised.
//
// Per weight [K, N] and its input's H [K, K]:
//   H += damp I, damp = 1% of H's mean diagonal (x10 until H is positive definite); a channel the
//   calibration never saw (row i of H zero) is then decoupled from the others and its weights
//   are rounded to nearest (not zeroed, as the paper's code does: the data may have missed it);
//   U: the upper-triangular factor with U^T U = H^-1 (computed as the reversed lower Cholesky
//   factor of H, inverted: no explicit inverse);
//   rows i = 0 .. K-1 in blocks of block_size: at a block's first row, each column's scale (and
//   zero point) comes from the block quantizer on that column's current (already corrected)
//   values; then per row i, codes c = clamp(round(w_i / s) + z), e = (w_i - s (c - z)) / U_ii,
//   and w_j -= U_ij e for the rows j > i (within the block at once, beyond it one GEMM per block).
// Columns are independent of each other, so a tile of columns is processed at a time.
#pragma once

#include <cstdint>
#include <vector>

#include "calibration/calibrate.h"
#include "passes/weight_quant.h"

namespace quantize {

struct GptqFactor {
  int64_t k = 0;
  std::vector<float> u;  // k x k, row-major, upper triangular: U^T U = (H + damp I)^-1
  double damp = 0;       // as added
};
// Throws Error(kInternal) when H stays indefinite after raising the damping 6 times.
GptqFactor gptq_factor(const Gram& gram, double relative_damp = 0.01);

// Quantizes `t` columns of a weight, given as a k x t row-major tile `w` (overwritten: it ends
// holding the corrected values), into MatMulNBits' layout: column j's blocks at
// packed + j * blocks * blob_bytes, its scales at scales + j * blocks, its zero points (unpacked,
// asymmetric only) at zero_points + j * blocks. `scales_from` picks each block's scale and zero
// point; with `f16_scales` the scale is rounded to float16 first, as it will be stored.
void gptq_quantize(float* w, int64_t k, int64_t t, const GptqFactor& factor,
                   const BlockFormat& format, const BlockQuantizer& scales_from, bool f16_scales,
                   uint8_t* packed, float* scales, uint8_t* zero_points);

}  // namespace quantize
