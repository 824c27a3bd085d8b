// A deterministic mutation fuzzer for the loader and the pass pipeline: seed models are mutated
// in their bytes (truncations, byte flips, varint edits, dropped, duplicated and swapped byte
// ranges) or in their structure (attribute values, tensor shapes, types and contents, node
// inputs and op types, declared graph types: lies a byte flip rarely makes without breaking the
// protobuf first), and each mutant goes through every mode as the CLI would run it (dry run:
// nothing written; static INT8 calibrated on synthetic inputs, which also runs the executor). A
// mutant may be refused (quantize::Error, the documented exit codes) or quantized; anything else is
// a finding: another exception (an internal error on bad input), or a crash / sanitizer report (run
// it in the ASan + UBSan build). Findings are saved as files to become regression tests.
//
//   quantize_fuzz [--seconds S] [--runs N] [--seed K] [--save DIR] SEED.onnx...
//
// The same seed, files and runs give the same mutants (a run's number and seed reproduce it:
// --seed K --runs 1 --skip N).
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "onnx/onnx_pb.h"
#include "quantize/error.h"
#include "quantize/executor.h"
#include "quantize/log.h"
#include "quantize/run.h"

namespace fs = std::filesystem;
using quantize::Error;

namespace {

// A mutant that runs longer than this hangs (a finding too); the message is prepared before the
// run, as a signal handler may only write() it.
constexpr unsigned kHangSeconds = 30;
char hang_message[256];

void on_hang(int) {
  (void)!::write(2, hang_message, std::strlen(hang_message));
  ::_exit(1);
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// One mutation of `bytes`, chosen and placed by `rng`.
void mutate(std::string& bytes, std::mt19937_64& rng) {
  if (bytes.empty()) return;
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % std::max<size_t>(n, 1)); };
  const size_t at = pick(bytes.size());
  switch (rng() % 7) {
    case 0:  // truncate
      bytes.resize(at);
      break;
    case 1:  // flip bits of one byte
      bytes[at] = static_cast<char>(bytes[at] ^ static_cast<char>(1 + rng() % 255));
      break;
    case 2: {  // a varint-looking byte made large, small or negative-looking
      static const unsigned char values[] = {0x00, 0x01, 0x7f, 0x80, 0xff};
      bytes[at] = static_cast<char>(values[rng() % 5]);
      break;
    }
    case 3: {  // drop a range
      const size_t n = std::min(bytes.size() - at, 1 + pick(64));
      bytes.erase(at, n);
      break;
    }
    case 4: {  // duplicate a range
      const size_t n = std::min(bytes.size() - at, 1 + pick(64));
      bytes.insert(at, bytes.substr(at, n));
      break;
    }
    case 5: {  // copy a range over another place (fields moved between messages)
      const size_t n = std::min(bytes.size() - at, 1 + pick(32));
      const size_t to = pick(bytes.size() - n + 1);
      bytes.replace(to, n, bytes.substr(at, n));
      break;
    }
    default: {  // a 10-byte varint of a huge or negative value where a varint may be
      std::string big(9, static_cast<char>(0xff));
      big.push_back(static_cast<char>(rng() % 2 ? 0x01 : 0x7f));
      bytes.replace(at, std::min<size_t>(bytes.size() - at, 1), big);
      break;
    }
  }
}

// A value a hostile file would put where a count, index or size goes.
int64_t hostile_int(int64_t old, std::mt19937_64& rng) {
  static const int64_t values[] = {0, -1, 1, 2, -2, 3, 1 << 16, INT32_MAX, INT64_MAX, INT64_MIN};
  switch (rng() % 3) {
    case 0:
      return values[rng() % std::size(values)];
    case 1:
      return old + (rng() % 2 ? 1 : -1);
    default:
      return static_cast<int64_t>(rng() % 64) - 8;
  }
}

// The data types of the same element size as `type` (a retyped tensor keeps a valid size).
int32_t same_size_type(int32_t type, std::mt19937_64& rng) {
  using T = onnx::TensorProto;
  static const std::vector<std::vector<int32_t>> groups = {
      {T::FLOAT, T::INT32, T::UINT32},
      {T::INT64, T::DOUBLE, T::UINT64},
      {T::FLOAT16, T::BFLOAT16, T::INT16, T::UINT16},
      {T::INT8, T::UINT8, T::BOOL}};
  for (const auto& g : groups) {
    if (std::find(g.begin(), g.end(), type) != g.end()) return g[rng() % g.size()];
  }
  return type;
}

// One lie in a tensor that still holds as many bytes as it claims: dims reshaped with the same
// product (or a dim moved), the type swapped for one of the same size, or an integer value
// (a shape, an axis, a Slice bound) replaced.
void mutate_tensor(onnx::TensorProto& t, std::mt19937_64& rng) {
  switch (rng() % 3) {
    case 0:
      if (t.dims_size() >= 2) {
        const int a = static_cast<int>(rng() % t.dims_size());
        const int b = static_cast<int>(rng() % t.dims_size());
        if (rng() % 2) {  // swap two dims
          const int64_t d = t.dims(a);
          t.set_dims(a, t.dims(b));
          t.set_dims(b, d);
        } else if (a != b) {  // merge two dims into one, a 1 in the other's place
          t.set_dims(a, t.dims(a) * t.dims(b));
          t.set_dims(b, 1);
        }
      } else if (rng() % 2) {
        t.add_dims(1);
      } else {
        t.clear_dims();  // a scalar, if it held one element
      }
      break;
    case 1:
      t.set_data_type(same_size_type(t.data_type(), rng));
      break;
    default: {
      std::string& raw = *t.mutable_raw_data();
      if (t.data_type() == onnx::TensorProto::INT64 && raw.size() >= 8) {
        const size_t at = 8 * (rng() % (raw.size() / 8));
        int64_t v;
        std::memcpy(&v, raw.data() + at, 8);
        v = hostile_int(v, rng);
        std::memcpy(raw.data() + at, &v, 8);
      } else if (t.int64_data_size() > 0) {
        const int at = static_cast<int>(rng() % t.int64_data_size());
        t.set_int64_data(at, hostile_int(t.int64_data(at), rng));
      } else if (t.data_type() == onnx::TensorProto::INT32 && raw.size() >= 4) {
        const size_t at = 4 * (rng() % (raw.size() / 4));
        const auto v = static_cast<int32_t>(hostile_int(0, rng));
        std::memcpy(raw.data() + at, &v, 4);
      } else if (t.int32_data_size() > 0) {
        const int at = static_cast<int>(rng() % t.int32_data_size());
        t.set_int32_data(at, static_cast<int32_t>(hostile_int(t.int32_data(at), rng)));
      }
      break;
    }
  }
}

void mutate_attribute(onnx::AttributeProto& a, std::mt19937_64& rng) {
  if (a.has_t()) return mutate_tensor(*a.mutable_t(), rng);
  if (a.ints_size() > 0) {
    const int at = static_cast<int>(rng() % a.ints_size());
    switch (rng() % 4) {
      case 0:
        a.add_ints(a.ints(at));  // one value too many
        break;
      case 1:
        a.mutable_ints()->RemoveLast();  // one too few
        break;
      default:
        a.set_ints(at, hostile_int(a.ints(at), rng));
        break;
    }
  } else if (a.type() == onnx::AttributeProto::INT) {
    a.set_i(hostile_int(a.i(), rng));
  } else if (a.type() == onnx::AttributeProto::FLOAT) {
    static const float values[] = {0.0f, -1.0f, 1e30f, -1e30f, NAN, INFINITY};
    a.set_f(values[rng() % std::size(values)]);
  }
}

// One lie in a node, a tensor or a declared type, made in the parsed model so that the protobuf
// stays well formed and the lie reaches the checks behind the parser.
void mutate_structure(onnx::ModelProto& model, std::mt19937_64& rng) {
  auto* g = model.mutable_graph();
  auto pick = [&](int n) { return static_cast<int>(rng() % std::max(n, 1)); };
  switch (rng() % 6) {
    case 0:  // an attribute value
      if (g->node_size() > 0) {
        auto* node = g->mutable_node(pick(g->node_size()));
        if (node->attribute_size() > 0) {
          mutate_attribute(*node->mutable_attribute(pick(node->attribute_size())), rng);
        }
      }
      break;
    case 1:  // an initializer
      if (g->initializer_size() > 0)
        mutate_tensor(*g->mutable_initializer(pick(g->initializer_size())), rng);
      break;
    case 2:  // a node reads another value, or one input fewer, or two inputs swapped
      if (g->node_size() > 1) {
        const int n = pick(g->node_size());
        auto* node = g->mutable_node(n);
        if (node->input_size() == 0) break;
        const int at = pick(node->input_size());
        switch (rng() % 3) {
          case 0: {  // a value an earlier node writes, or a graph input or an initializer
            const int from = pick(n + 1);
            if (from < n && g->node(from).output_size() > 0) {
              node->set_input(at, g->node(from).output(0));
            } else if (g->input_size() > 0) {
              node->set_input(at, g->input(pick(g->input_size())).name());
            } else if (g->initializer_size() > 0) {
              node->set_input(at, g->initializer(pick(g->initializer_size())).name());
            }
            break;
          }
          case 1:
            node->mutable_input()->RemoveLast();
            break;
          default:
            node->mutable_input()->SwapElements(at, pick(node->input_size()));
            break;
        }
      }
      break;
    case 3:  // a node made another op of the model
      if (g->node_size() > 1) {
        g->mutable_node(pick(g->node_size()))->set_op_type(g->node(pick(g->node_size())).op_type());
      }
      break;
    case 4:  // an attribute dropped
      if (g->node_size() > 0) {
        auto* node = g->mutable_node(pick(g->node_size()));
        if (node->attribute_size() > 0) {
          node->mutable_attribute()->SwapElements(pick(node->attribute_size()),
                                                  node->attribute_size() - 1);
          node->mutable_attribute()->RemoveLast();
        }
      }
      break;
    default: {  // a declared input or output type or dim
      auto* values = rng() % 2 ? g->mutable_input() : g->mutable_output();
      if (values->empty()) break;
      auto* type = (*values)[pick(values->size())].mutable_type()->mutable_tensor_type();
      if (rng() % 3 == 0 || type->shape().dim_size() == 0) {
        type->set_elem_type(same_size_type(type->elem_type(), rng));
      } else {
        auto* dim = type->mutable_shape()->mutable_dim(pick(type->shape().dim_size()));
        dim->set_dim_value(hostile_int(dim->has_dim_value() ? dim->dim_value() : 1, rng));
      }
      break;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  double seconds = 0;
  uint64_t runs = 0, seed = 1, skip = 0;
  fs::path save;
  std::vector<fs::path> seeds;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--seconds") {
      seconds = std::stod(value());
    } else if (a == "--runs") {
      runs = std::stoull(value());
    } else if (a == "--seed") {
      seed = std::stoull(value());
    } else if (a == "--skip") {
      skip = std::stoull(value());
    } else if (a == "--save") {
      save = value();
    } else {
      seeds.emplace_back(a);
    }
  }
  if (seeds.empty() || (seconds <= 0 && runs == 0)) {
    std::fprintf(stderr,
                 "usage: quantize_fuzz [--seconds S] [--runs N] [--seed K] [--skip N] "
                 "[--save DIR] SEED.onnx...\n");
    return 2;
  }
  quantize::set_log_level("off");
  // The seeds' real tensors are at most a few MB: a mutated shape asking for more is refused
  // at once, not computed for minutes (not a hang, but it would stop the run as one).
  quantize::set_max_tensor_bytes(uint64_t{16} << 20);
  ::signal(SIGALRM, on_hang);
  std::vector<std::string> corpus;
  for (const auto& s : seeds) corpus.push_back(read_file(s));
  const fs::path work = fs::temp_directory_path() / fmt::format("quantize_fuzz_{}", ::getpid());
  fs::create_directories(work);
  const fs::path mutant = work / "mutant.onnx";

  quantize::RunRequest request;
  request.models = {mutant.string()};
  request.dry_run = true;
  request.options.modes = {quantize::Mode::kQ4,   quantize::Mode::kQ4F16,
                           quantize::Mode::kFp16, quantize::Mode::kInt8,
                           quantize::Mode::kQ8,   quantize::Mode::kStaticUInt8};
  request.options.calib = "random";
  request.options.calib_samples = 1;

  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  uint64_t done = 0, refused = 0, quantized = 0, findings = 0;
  for (uint64_t run = skip;; ++run) {  // each run seeds its own generator: skipping is free
    if (runs && run >= skip + runs) break;
    if (seconds > 0 && elapsed() >= seconds) break;
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + run);
    std::string bytes = corpus[rng() % corpus.size()];
    const int mutations = 1 + static_cast<int>(rng() % 4);
    onnx::ModelProto parsed;
    if (rng() % 2 && parsed.ParseFromString(bytes)) {
      for (int m = 0; m < mutations; ++m) mutate_structure(parsed, rng);
      parsed.SerializeToString(&bytes);
    } else {
      for (int m = 0; m < mutations; ++m) mutate(bytes, rng);
    }
    std::ofstream(mutant, std::ios::binary | std::ios::trunc) << bytes;
    if (!save.empty()) {  // kept until the run ends, in case it never does
      fs::create_directories(save);
      std::ofstream(save / "running.onnx", std::ios::binary | std::ios::trunc) << bytes;
    }
    std::snprintf(hang_message, sizeof hang_message,
                  "FINDING run %llu (--seed %llu --skip %llu --runs 1): still running after %u s\n",
                  static_cast<unsigned long long>(run), static_cast<unsigned long long>(seed),
                  static_cast<unsigned long long>(run), kHangSeconds);
    ::alarm(kHangSeconds);
    ++done;
    try {
      quantize::quantize_files(request, [](const quantize::OutputReport&) {});
      ++quantized;
    } catch (const Error&) {
      ++refused;
    } catch (const std::exception& e) {
      ++findings;
      std::fprintf(stderr, "FINDING run %llu (--seed %llu --skip %llu --runs 1): %s\n",
                   static_cast<unsigned long long>(run), static_cast<unsigned long long>(seed),
                   static_cast<unsigned long long>(run), e.what());
      if (!save.empty()) {
        fs::create_directories(save);
        std::ofstream(save / fmt::format("finding_{}_{}.onnx", seed, run), std::ios::binary)
            << bytes;
      }
    }
  }
  ::alarm(0);
  if (!save.empty()) fs::remove(save / "running.onnx");
  fs::remove_all(work);
  std::printf(
      "%llu mutants of %zu seeds in %.1f s (%.1f/s): %llu refused, %llu quantized, "
      "%llu findings\n",
      static_cast<unsigned long long>(done), corpus.size(), elapsed(),
      done / std::max(elapsed(), 1e-9), static_cast<unsigned long long>(refused),
      static_cast<unsigned long long>(quantized), static_cast<unsigned long long>(findings));
  return findings ? 1 : 0;
}
