// What a run did, for people: per output, the passes' changes and reasons, sizes and time.
#pragma once

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "quantize/pass.h"
#include "quantize/verify.h"

namespace quantize {

struct OutputReport {
  std::string input, output, mode, options;
  std::vector<PassResult> passes;
  uint64_t bytes_before = 0, bytes_after = 0;
  double seconds = 0;
  bool dry_run = false;
  std::string not_written;  // why the output was not written (a --target not met), if it was not
  bool up_to_date = false;  // the output existed, made by this tool from the same input and request
  std::optional<Verification> verification;  // when the run had data to judge on
};

// One line per output: "cosine 0.99991, rel L2 0.013, max abs 0.035, SNR 37.6 dB, top-1 100.0%,
// KL 0.00012".
std::string describe(const OutputMetrics& m);

// verbosity 0: summary; 1 (-v): also every tensor, and every node with what it became or why it
// was left alone. The passes' warnings are not printed here: they are diagnostics (stderr).
void print_report(const OutputReport& report, int verbosity, std::FILE* out);

std::string format_bytes(uint64_t bytes);  // "12.0 MiB"

}  // namespace quantize
