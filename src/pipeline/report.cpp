#include "quantize/report.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
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
      fmt::print(
          out, "    {} {} {} -> {}: {} -> {}{}\n", t.name, dims(t.dims), t.from, t.to,
          format_bytes(t.bytes_before), format_bytes(t.bytes_after),
          t.error && std::isfinite(*t.error) ? fmt::format(", rel RMS {:.3g}", *t.error) : "");
    }
    for (const auto& c : pass.changed) fmt::print(out, "    {} -> {}\n", c.node, c.reason);
    for (const auto& s : pass.skipped) fmt::print(out, "    kept {}: {}\n", s.node, s.reason);
  }
  for (const auto& n : pass.notes) fmt::print(out, "    {}\n", n);
}

}  // namespace

std::string describe(const OutputMetrics& m) {
  if (!m.is_float) return fmt::format("{:.1f}% identical", 100 * m.exact);
  std::string s = fmt::format("cosine {:.5f}, rel L2 {:.3g}, max abs {:.3g}, SNR {:.1f} dB",
                              m.cosine, m.rel_l2, m.max_abs, m.snr_db);
  if (m.logits) {
    s += fmt::format(", top-1 {:.1f}%, KL {:.3g}", 100 * m.top1, m.kl < 1e-12 ? 0.0 : m.kl);
  }
  if (!m.finite) s += ", NOT FINITE";
  return s;
}

void print_report(const OutputReport& report, int verbosity, std::FILE* out) {
  if (report.up_to_date) {
    fmt::print(out,
               "{} -> {}  up to date (same input bytes, tool version and options; --force "
               "rebuilds it)\n",
               report.input, report.output);
    return;
  }
  const std::string to = report.dry_run ? "(dry run)"
                         : report.not_written.empty()
                             ? report.output
                             : fmt::format("{} NOT WRITTEN: {}", report.output, report.not_written);
  fmt::print(out, "{} -> {}  [{}]\n", report.input, to, report.options);
  for (const auto& pass : report.passes) print_pass(pass, verbosity, out);
  if (const auto& v = report.verification) {
    fmt::print(out, "  verify{}: {} sample(s): {}\n", v->synthetic ? " (SYNTHETIC inputs)" : "",
               v->samples, v->data);
    size_t width = 0;
    for (const auto& o : v->outputs) width = std::max(width, o.name.size());
    for (const auto& o : v->outputs) {
      fmt::print(out, "    {:<{}}  {}\n", o.name + ":", width + 1, describe(o));
    }
  }
  const double ratio =
      report.bytes_before ? static_cast<double>(report.bytes_after) / report.bytes_before : 0.0;
  fmt::print(out, "  size: {} -> {} (x{:.2f}){}, {:.2f} s\n", format_bytes(report.bytes_before),
             format_bytes(report.bytes_after), ratio,
             report.dry_run               ? " if written (dry run: nothing was)"
             : report.not_written.empty() ? ""
                                          : " if written",
             report.seconds);
}

}  // namespace quantize
