// Kernel selection: once, at first use, from what the CPU supports (QUANTIZE_ISA may lower it).
#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernels_internal.h"

namespace quantize {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "?";
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> isas{Isa::kScalar};
#if defined(QUANTIZE_X86_KERNELS)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
      __builtin_cpu_supports("f16c")) {
    isas.push_back(Isa::kAvx2);
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
      isas.push_back(Isa::kAvx512);
    }
  }
#endif
  return isas;
}

bool x86_without_vnni() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return !__builtin_cpu_supports("avx512vnni") && !__builtin_cpu_supports("avxvnni");
#else
  return false;
#endif
}

const Kernels& kernels_for(Isa isa) {
#if defined(QUANTIZE_X86_KERNELS)
  if (isa == Isa::kAvx2) return detail::avx2_kernels();
  if (isa == Isa::kAvx512) return detail::avx512_kernels();
#endif
  (void)isa;
  return detail::scalar_kernels();
}

const Kernels& kernels() {
  static const Kernels& chosen = []() -> const Kernels& {
    std::vector<Isa> isas = supported_isas();
    Isa best = isas.back();
    if (const char* want = std::getenv("QUANTIZE_ISA")) {
      for (Isa isa : isas) {
        if (std::strcmp(want, isa_name(isa)) == 0) best = isa;
      }
    }
    return kernels_for(best);
  }();
  return chosen;
}

ChannelLayout channel_layout(const std::vector<int64_t>& dims, int axis) {
  ChannelLayout l;
  for (int i = 0; i < static_cast<int>(dims.size()); ++i) {
    if (axis < 0 || i > axis)
      l.inner *= dims[i];
    else if (i < axis)
      l.outer *= dims[i];
    else
      l.channels = dims[i];
  }
  return l;
}

void channel_minmax(const float* x, const ChannelLayout& l, float* mn, float* mx) {
  const Kernels& k = kernels();
  if (l.inner == 1) {
    k.minmax_columns(x, l.outer, l.channels, mn, mx);
    return;
  }
  std::fill(mn, mn + l.channels, 0.0f);
  std::fill(mx, mx + l.channels, 0.0f);
  for (int64_t o = 0; o < l.outer; ++o) {
    for (int64_t c = 0; c < l.channels; ++c) {
      float lo, hi;
      k.minmax(x + (o * l.channels + c) * l.inner, l.inner, &lo, &hi);
      mn[c] = std::min(mn[c], lo);
      mx[c] = std::max(mx[c], hi);
    }
  }
}

}  // namespace quantize
