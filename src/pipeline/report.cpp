#include "quantize/report.h"

#include <fmt/format.h>

#include <map>

namespace quantize {

std::string format_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  return unit == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.1f} {}", value, units[unit]);
}

namespace {

std::string dims(const std::vector<int64_t>& d) { return fmt::format("[{}]", fmt::join(d, " x ")); }

void print_pass(const PassResult& pass, int verbosity, std::FILE* out) {
  std::map<std::string, int> changed, skipped;
  for (const auto& c : pass.changed) ++changed[c.reason];
  for (const auto& s : pass.skipped) ++skipped[s.reason];
  if (pass.changed.empty() && pass.skipped.empty()) {  // a pass with no candidate nodes
    if (pass.notes.empty()) return;                    // ... and nothing to say
    fmt::print(out, "  {}:\n", pass.pass);
  } else {
    fmt::print(out, "  {}: {} node(s) changed, {} left alone\n", pass.pass, pass.changed.size(),
               pass.skipped.size());
  }
  for (const auto& [what, count] : changed) fmt::print(out, "      {:>4} -> {}\n", count, what);
  for (const auto& [why, count] : skipped) fmt::print(out, "      {:>4} kept: {}\n", count, why);
  if (verbosity > 0) {
    for (const auto& t : pass.tensors) {
      fmt::print(out, "    {} {} {} -> {}: {} -> {}\n", t.name, dims(t.dims), t.from, t.to,
                 format_bytes(t.bytes_before), format_bytes(t.bytes_after));
    }
    for (const auto& c : pass.changed) fmt::print(out, "    {} -> {}\n", c.node, c.reason);
    for (const auto& s : pass.skipped) fmt::print(out, "    kept {}: {}\n", s.node, s.reason);
  }
  for (const auto& n : pass.notes) fmt::print(out, "    {}\n", n);
}

}  // namespace

void print_report(const OutputReport& report, int verbosity, std::FILE* out) {
  fmt::print(out, "{} -> {}  [{}]\n", report.input, report.dry_run ? "(dry run)" : report.output,
             report.options);
  for (const auto& pass : report.passes) print_pass(pass, verbosity, out);
  const double ratio =
      report.bytes_before ? static_cast<double>(report.bytes_after) / report.bytes_before : 0.0;
  fmt::print(out, "  size: {} -> {} (x{:.2f}){}, {:.2f} s\n", format_bytes(report.bytes_before),
             format_bytes(report.bytes_after), ratio,
             report.dry_run ? " if written (dry run: nothing was)" : "", report.seconds);
}

}  // namespace quantize
