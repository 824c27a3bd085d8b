// Per-ISA kernel tables, defined in their own files (compiled with their own flags).
#pragma once

#include "kernels/kernels.h"

namespace quantize::detail {

const Kernels& scalar_kernels();
const Kernels& avx2_kernels();
const Kernels& avx512_kernels();

// The per-block parameters of the formulas in kernels.h, shared by every ISA so the scalar math
// around the vector code is the very same operations.
struct BlockParams {
  float scale, inv, lo, hi;  // clamp bounds for x * inv
  int zp;
};
BlockParams block_params(float mx, float mn, const BlockFormat& fmt);

}  // namespace quantize::detail
