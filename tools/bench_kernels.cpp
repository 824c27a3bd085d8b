// Kernel throughput per ISA, in bytes of float32 input per second (Google Benchmark's
// bytes_per_second column). Run: build/bench_kernels [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "passes/weight_quant.h"

namespace {
using namespace quantize;

std::vector<float> weights(size_t n) {
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0, 0.02f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

void bench_quantize(benchmark::State& state, Isa isa, BlockFormat fmt, size_t bytes) {
  const Kernels& k = kernels_for(isa);
  const size_t n = bytes / 4, rows = n / 4096, nb = fmt.blocks(4096);
  const auto x = weights(n);
  std::vector<uint8_t> packed(rows * nb * fmt.blob_bytes()), zp(rows * nb);
  std::vector<float> scales(rows * nb);
  for (auto _ : state) {
    for (size_t r = 0; r < rows; ++r) {
      k.quantize_blocks(x.data() + r * 4096, 4096, fmt, packed.data() + r * nb * fmt.blob_bytes(),
                        scales.data() + r * nb, zp.data() + r * nb);
    }
    benchmark::DoNotOptimize(packed.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * rows * 4096 * 4));
}

void bench_f16(benchmark::State& state, Isa isa, size_t bytes) {
  const Kernels& k = kernels_for(isa);
  const auto x = weights(bytes / 4);
  std::vector<uint16_t> y(x.size());
  for (auto _ : state) {
    k.f32_to_f16(x.data(), x.size(), y.data());
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * x.size() * 4));
}

// Per-tensor (min/max pass, then quantize) or per-column 8-bit weights of a [rows, 4096] matrix.
void bench_affine(benchmark::State& state, Isa isa, bool is_signed, bool per_column, size_t bytes) {
  const Kernels& k = kernels_for(isa);
  const size_t cols = 4096, rows = bytes / 4 / cols;
  const auto x = weights(rows * cols);
  std::vector<uint8_t> q(x.size());
  std::vector<float> mn(cols), mx(cols), inv(cols), lo(cols), hi(cols);
  std::vector<int32_t> zp(cols);
  for (auto _ : state) {
    if (per_column) {
      k.minmax_columns(x.data(), rows, cols, mn.data(), mx.data());
      for (size_t c = 0; c < cols; ++c) {
        const AffineParams p = affine_params(mn[c], mx[c], is_signed, false);
        inv[c] = p.inv, lo[c] = p.lo, hi[c] = p.hi, zp[c] = p.zp;
      }
      k.quantize_affine_columns(x.data(), rows, cols, {inv.data(), lo.data(), hi.data(), zp.data()},
                                q.data());
    } else {
      float lo_v, hi_v;
      k.minmax(x.data(), x.size(), &lo_v, &hi_v);
      k.quantize_affine(x.data(), x.size(), affine_params(lo_v, hi_v, is_signed, false), q.data());
    }
    benchmark::DoNotOptimize(q.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * x.size() * 4));
}

// The 4-bit scale search (--q4's default) over whole columns of 4096, with kernels() (lower the
// ISA with QUANTIZE_ISA=scalar|avx2), next to round to nearest alone.
void bench_search(benchmark::State& state, const BlockQuantizer* quantizer, size_t bytes) {
  const BlockFormat fmt{4, 32, true};
  const size_t n = bytes / 4, rows = n / 4096, nb = fmt.blocks(4096);
  const auto x = weights(n);
  std::vector<uint8_t> packed(rows * nb * fmt.blob_bytes());
  std::vector<float> scales(rows * nb);
  for (auto _ : state) {
    for (size_t r = 0; r < rows; ++r) {
      quantizer->quantize(x.data() + r * 4096, 4096, fmt, nullptr,
                          packed.data() + r * nb * fmt.blob_bytes(), scales.data() + r * nb,
                          nullptr);
    }
    benchmark::DoNotOptimize(packed.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * rows * 4096 * 4));
}

void bench_code_sums(benchmark::State& state, Isa isa, size_t bytes) {
  const Kernels& k = kernels_for(isa);
  const auto x = weights(bytes / 4);
  std::vector<float> w(x.size()), wx(x.size());
  for (size_t j = 0; j < x.size(); ++j) w[j] = x[j] * x[j], wx[j] = w[j] * x[j];
  for (auto _ : state) {
    double total = 0;
    for (size_t b = 0; b + 32 <= x.size(); b += 32) {
      double sxd, sdd;
      k.code_sums(x.data() + b, wx.data() + b, w.data() + b, 32, 400.0f, -8, 7, &sxd, &sdd);
      total += sxd + sdd;
    }
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * x.size() * 4));
}

int register_all() {
  struct Size {
    const char* name;
    size_t bytes;
  } sizes[] = {{"16MiB", 16u << 20}, {"256KiB", 256u << 10}};
  struct Format {
    const char* name;
    BlockFormat fmt;
  } formats[] = {{"q4_sym_b32", {4, 32, true}},
                 {"q4_asym_b32", {4, 32, false}},
                 {"q8_sym_b32", {8, 32, true}}};
  for (Isa isa : supported_isas()) {
    for (const auto& size : sizes) {
      for (const auto& f : formats) {
        std::string name =
            std::string("quantize_") + f.name + "/" + isa_name(isa) + "/" + size.name;
        benchmark::RegisterBenchmark(name.c_str(), bench_quantize, isa, f.fmt, size.bytes);
      }
      for (bool is_signed : {true, false}) {
        for (bool per_column : {false, true}) {
          std::string name = std::string("quantize_") + (is_signed ? "int8" : "uint8") +
                             (per_column ? "_per_channel/" : "_per_tensor/") + isa_name(isa) + "/" +
                             size.name;
          benchmark::RegisterBenchmark(name.c_str(), bench_affine, isa, is_signed, per_column,
                                       size.bytes);
        }
      }
      std::string name = std::string("f32_to_f16/") + isa_name(isa) + "/" + size.name;
      benchmark::RegisterBenchmark(name.c_str(), bench_f16, isa, size.bytes);
      name = std::string("code_sums_b32/") + isa_name(isa) + "/" + size.name;
      benchmark::RegisterBenchmark(name.c_str(), bench_code_sums, isa, size.bytes);
    }
  }
  for (const BlockQuantizer* q : {&round_to_nearest(), &scale_search()}) {
    const std::string name = std::string("q4_column_") + q->name() + "/" + isa_name(kernels().isa);
    benchmark::RegisterBenchmark(name.c_str(), bench_search, q, size_t{16} << 20);
  }
  return 0;
}

const int registered = register_all();

}  // namespace

BENCHMARK_MAIN();
