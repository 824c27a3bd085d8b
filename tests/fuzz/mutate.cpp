// A deterministic mutation fuzzer for the loader and the pass pipeline: seed models are mutated
// (truncations, byte flips, varint edits, dropped, duplicated and swapped byte ranges) and each
// mutant goes through every mode as the CLI would run it (dry run: nothing written; static INT8
// calibrated on synthetic inputs, which also runs the executor). A mutant may be refused
// (quantize::Error, the documented exit codes) or quantized; anything else is a finding: another
// exception (an internal error on bad input), or a crash / sanitizer report (run it in the
// ASan + UBSan build). Findings are saved as files to become regression tests.
//
//   quantize_fuzz [--seconds S] [--runs N] [--seed K] [--save DIR] SEED.onnx...
//
// The same seed, files and runs give the same mutants (a run's number and seed reproduce it:
// --seed K --runs 1 --skip N).
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "quantize/error.h"
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
    for (int m = 0; m < mutations; ++m) mutate(bytes, rng);
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
