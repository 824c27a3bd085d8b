// The `quantize` command: parses the command line, calls the library (quantize/run.h) and prints
// what it reports: the report on stdout, diagnostics through spdlog on stderr. The only place
// that catches quantize::Error and turns it into an exit code.
#include <fmt/ranges.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "quantize/error.h"
#include "quantize/log.h"
#include "quantize/run.h"
#include "quantize/threads.h"

namespace fs = std::filesystem;
using namespace quantize;

namespace {

struct Cli {
  RunRequest request;
  std::map<Mode, bool> mode_flags;
  bool asymmetric = false, symmetric = false, static_quant = false, fp16_io = false;
  std::string include, exclude, op_types, format, calib_method = "auto", keep_float, activations;
  std::string equalize = "auto", bias_correction = "auto", algo = "auto", float_fallback = "on";
  std::string shard, json;
  std::vector<std::string> tensor_types, targets;
  bool no_fold = false, no_convert = false, no_holdout = false, verify = false, no_verify = false;
  unsigned threads = 0;
  int verbosity = 0;
  bool quiet = false;
  std::string log_level;
};

std::set<std::string> split_list(const std::string& list) {
  std::set<std::string> items;
  size_t start = 0;
  while (start < list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    if (end > start) items.insert(list.substr(start, end - start));
    start = end + 1;
  }
  return items;
}

// The modes the flags ask for: --static turns --int8 / --uint8 into their static forms.
std::vector<Mode> chosen_modes(const Cli& cli) {
  std::vector<Mode> modes;
  for (const auto& info : all_modes()) {
    if (info.family == ModeFamily::kStaticInt8 || !cli.mode_flags.at(info.mode)) continue;
    if (!cli.static_quant) {
      modes.push_back(info.mode);
    } else if (auto m = static_mode(info.mode)) {
      modes.push_back(*m);
    } else {
      fail(ExitCode::kUsage, "--static goes with --int8 or --uint8, not --{}", info.flag);
    }
  }
  if (cli.static_quant && modes.empty()) {
    bool runtime = false;  // --target NAME picks (finish_options reads the name)
    for (const auto& t : cli.targets) runtime = runtime || t.find('=') == std::string::npos;
    if (!runtime) {
      fail(ExitCode::kUsage,
           "--static needs --int8 (S8S8) or --uint8 (U8U8), or --target NAME to choose");
    }
  }
  return modes;
}

// The string-valued flags as typed options.
void finish_options(const Cli& cli, Options& options) {
  options.static_open = cli.static_quant && options.modes.empty();
  options.symmetric = !cli.asymmetric;
  options.keep_io_types = !cli.fp16_io;
  options.fold_constants = !cli.no_fold;
  options.holdout = !cli.no_holdout;
  if (cli.verify && cli.no_verify) fail(ExitCode::kUsage, "--verify and --no-verify contradict");
  options.verify = cli.verify      ? Options::Verify::kAlways
                   : cli.no_verify ? Options::Verify::kNever
                                   : Options::Verify::kAuto;
  options.convert_opset = !cli.no_convert;
  options.filter = NodeFilter(cli.include, cli.exclude);
  options.op_types = split_list(cli.op_types);
  for (const auto& t : cli.tensor_types) options.tensor_types.push_back(PrecisionRule::parse(t));
  for (const auto& t : cli.targets) {
    if (t.find('=') != std::string::npos) {
      options.targets.push_back(Target::parse(t));
      continue;
    }
    const RuntimeProfile* p = find_runtime(t);
    if (!p) {
      std::vector<std::string> names;
      for (const auto& r : runtime_profiles()) names.push_back(r.name);
      fail(ExitCode::kUsage, "--target {}: not a runtime ({}) nor [OUTPUT:]METRIC=VALUE", t,
           fmt::join(names, ", "));
    }
    if (options.runtime != Runtime::kAny && options.runtime != p->runtime) {
      fail(ExitCode::kUsage, "--target {}: one runtime per run ({} given already)", t,
           runtime_profile(options.runtime).name);
    }
    options.runtime = p->runtime;
  }
  options.keep_float = split_list(cli.keep_float);
  static const std::map<std::string, Format> formats = {{"qoperator", Format::kQOperator},
                                                        {"qdq", Format::kQdq}};
  if (!cli.format.empty()) {
    auto it = formats.find(cli.format);
    if (it == formats.end()) {
      fail(ExitCode::kUsage, "--format {}: must be qoperator or qdq", cli.format);
    }
    options.format = it->second;
  }
  static const std::map<std::string, CalibMethod> methods = {
      {"minmax", CalibMethod::kMinMax},
      {"percentile", CalibMethod::kPercentile},
      {"entropy", CalibMethod::kEntropy},
      {"mse", CalibMethod::kMse},
      {"auto", CalibMethod::kAuto}};
  auto it = methods.find(cli.calib_method);
  if (it == methods.end()) {
    fail(ExitCode::kUsage, "--calib-method {}: must be auto, minmax, percentile, entropy or mse",
         cli.calib_method);
  }
  options.calib_method = it->second;
  static const std::map<std::string, ActivationType> activation_types = {
      {"int8", ActivationType::kInt8},
      {"uint8", ActivationType::kUInt8},
      {"int16", ActivationType::kInt16},
      {"uint16", ActivationType::kUInt16}};
  if (!cli.activations.empty()) {
    auto a = activation_types.find(cli.activations);
    if (a == activation_types.end()) {
      fail(ExitCode::kUsage, "--activations {}: expected int8, uint8, int16 or uint16",
           cli.activations);
    }
    options.activations = a->second;
  }
  static const std::map<std::string, WeightAlgo> algos = {
      {"auto", WeightAlgo::kAuto},       {"rtn", WeightAlgo::kRtn},
      {"search", WeightAlgo::kSearch},   {"imatrix", WeightAlgo::kImatrix},
      {"gptq", WeightAlgo::kGptq},       {"awq", WeightAlgo::kAwq},
      {"awq+gptq", WeightAlgo::kAwqGptq}};
  if (auto a = algos.find(cli.algo); a != algos.end()) {
    options.weight_algo = a->second;
  } else {
    fail(ExitCode::kUsage, "--algo {}: expected auto, rtn, search, imatrix, gptq, awq or awq+gptq",
         cli.algo);
  }
  static const std::map<std::string, Toggle> toggles = {
      {"auto", Toggle::kAuto}, {"on", Toggle::kOn}, {"off", Toggle::kOff}};
  for (auto [value, name, out] :
       {std::tuple{&cli.equalize, "--equalize", &options.equalize},
        std::tuple{&cli.bias_correction, "--bias-correction", &options.bias_correction}}) {
    auto t = toggles.find(*value);
    if (t == toggles.end()) fail(ExitCode::kUsage, "{} {}: expected auto, on or off", name, *value);
    *out = t->second;
  }
  if (cli.float_fallback != "on" && cli.float_fallback != "off") {
    fail(ExitCode::kUsage, "--float-fallback {}: expected on or off", cli.float_fallback);
  }
  options.float_fallback = cli.float_fallback == "on";
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// One progress line on stderr, for a person at a terminal (none with -q or when stderr is not a
// terminal), shown once the work has taken a second: show() rewrites it, clear() erases it.
class ProgressLine {
 public:
  explicit ProgressLine(const Cli& cli) : on_(!cli.quiet && ::isatty(STDERR_FILENO)) {}
  bool on() const { return on_; }
  void start() { start_ = std::chrono::steady_clock::now(); }
  double elapsed() const { return seconds_since(start_); }
  template <typename... Args>
  void show(fmt::format_string<Args...> format, Args&&... args) {
    if (!on_ || elapsed() < 1.0) return;
    fmt::print(stderr, "\r\033[K  {}", fmt::format(format, std::forward<Args>(args)...));
    std::fflush(stderr);
    shown_ = true;
  }
  void clear() {
    if (!shown_) return;
    std::fputs("\r\033[K", stderr);
    std::fflush(stderr);
    shown_ = false;
  }

 private:
  bool on_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// While writing: the share of the output's bytes written.
std::function<void(const fs::path&, uint64_t, uint64_t)> write_progress(
    std::shared_ptr<ProgressLine> line) {
  if (!line->on()) return {};
  return [line](const fs::path& out, uint64_t done, uint64_t total) {
    if (done == 0) line->start();
    line->show("writing {}: {:3d}%", out.filename().string(),
               total ? static_cast<int>(100 * done / total) : 100);
    if (done == total) line->clear();
  };
}

// While calibrating: samples done / total, and the time left.
std::function<void(size_t, size_t)> calibration_progress(std::shared_ptr<ProgressLine> line) {
  if (!line->on()) return {};
  return [line](size_t done, size_t total) {
    if (done == 1) line->start();
    const double left = done > 1 ? line->elapsed() / (done - 1) * (total - done) : 0;
    line->show("calibrating: {}/{} samples, {:.0f} s left", done, total, left);
    if (done == total) line->clear();
  };
}

nlohmann::json metrics_json(const OutputMetrics& m);

// One output of a run as JSON (the schema is in README.md, "JSON reports").
nlohmann::json report_json(const OutputReport& r) {
  const char* status = r.up_to_date             ? "up_to_date"
                       : r.dry_run              ? "dry_run"
                       : !r.not_written.empty() ? "not_written"
                                                : "written";
  nlohmann::json j = {{"input", r.input},
                      {"output", r.output},
                      {"mode", r.mode},
                      {"options", r.options},
                      {"status", status},
                      {"bytes_before", r.bytes_before},
                      {"bytes_after", r.bytes_after},
                      {"seconds", r.seconds},
                      {"passes", nlohmann::json::array()},
                      {"verification", nullptr}};
  if (!r.not_written.empty()) j["reason"] = r.not_written;
  for (const auto& p : r.passes) {
    nlohmann::json pj = {{"pass", p.pass},
                         {"changed", nlohmann::json::array()},
                         {"kept", nlohmann::json::array()},
                         {"tensors", nlohmann::json::array()},
                         {"warnings", p.warnings},
                         {"notes", p.notes}};
    for (const auto& c : p.changed) pj["changed"].push_back({{"node", c.node}, {"what", c.reason}});
    for (const auto& k : p.skipped) pj["kept"].push_back({{"node", k.node}, {"why", k.reason}});
    for (const auto& t : p.tensors) {
      const bool known = t.error && std::isfinite(*t.error);
      pj["tensors"].push_back({{"name", t.name},
                               {"dims", t.dims},
                               {"from", t.from},
                               {"to", t.to},
                               {"bytes_before", t.bytes_before},
                               {"bytes_after", t.bytes_after},
                               {"rel_rms", known ? nlohmann::json(*t.error) : nlohmann::json()}});
    }
    j["passes"].push_back(std::move(pj));
  }
  if (const auto& v = r.verification) {
    nlohmann::json vj = {{"data", v->data},
                         {"synthetic", v->synthetic},
                         {"samples", v->samples},
                         {"outputs", nlohmann::json::array()}};
    for (const auto& o : v->outputs) vj["outputs"].push_back(metrics_json(o));
    j["verification"] = std::move(vj);
  }
  return j;
}

// Writes the JSON report: to stdout for "-", else to a temporary file renamed into place.
void write_json(const std::string& path, const nlohmann::json& doc) {
  if (path == "-") {
    std::fputs((doc.dump(1) + "\n").c_str(), stdout);
    return;
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp);
    out << doc.dump(1) << "\n";
    if (!out.flush()) fail(ExitCode::kOutput, "{}: cannot write the JSON report", path);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) fail(ExitCode::kOutput, "{}: cannot write the JSON report: {}", path, ec.message());
}

int quantize_command(Cli& cli) {
  RunRequest& request = cli.request;
  request.options.modes = chosen_modes(cli);
  finish_options(cli, request.options);
  auto line = std::make_shared<ProgressLine>(cli);
  request.options.calib_progress = calibration_progress(line);
  request.progress = write_progress(line);
  if (line->on()) {  // a --target search: the candidate models judged so far
    request.options.search_progress = [line](int judged) {
      if (judged == 1) line->start();
      line->show("searching: {} candidate model(s) judged", judged);
    };
  }
  if (!cli.shard.empty()) {
    int i = 0, n = 0;
    char slash = 0, extra = 0;
    if (std::sscanf(cli.shard.c_str(), "%d %c %d %c", &i, &slash, &n, &extra) != 3 ||
        slash != '/' || n < 1 || i < 1 || i > n) {
      fail(ExitCode::kUsage, "--shard {}: expected I/N with 1 <= I <= N", cli.shard);
    }
    request.shard = i, request.shards = n;
  }
  // With --json -, stdout carries the JSON: the human report moves to stderr.
  std::FILE* human = cli.json == "-" ? stderr : stdout;
  nlohmann::json doc = {{"schema_version", 1},
                        {"tool", {{"name", "quantize"}, {"version", QUANTIZE_VERSION}}},
                        {"outputs", nlohmann::json::array()},
                        {"failures", nlohmann::json::array()}};
  BatchSummary summary;
  try {
    summary = quantize_files(request, [&](const OutputReport& report) {
      line->clear();
      for (const auto& pass : report.passes) {
        for (const auto& w : pass.warnings) log().warn("{}: {}", pass.pass, w);
      }
      if (!cli.quiet) print_report(report, cli.verbosity, human);
      if (!cli.json.empty()) doc["outputs"].push_back(report_json(report));
    });
  } catch (const std::exception& e) {
    if (!cli.json.empty()) {
      const auto* err = dynamic_cast<const Error*>(&e);
      doc["exit_code"] = static_cast<int>(err ? err->code() : ExitCode::kInternal);
      doc["error"] = e.what();
      write_json(cli.json, doc);
    }
    throw;
  }
  const bool batch = summary.models > 1 || !summary.failed.empty() || summary.up_to_date > 0;
  if (batch && !cli.quiet) {
    fmt::print(human, "{} model(s): {} output(s) written, {} up to date, {} failed{}\n",
               summary.models, summary.written, summary.up_to_date, summary.failed.size(),
               summary.not_inputs.empty()
                   ? ""
                   : fmt::format(", {} skipped (outputs of this tool)", summary.not_inputs.size()));
    for (const auto& [model, error] : summary.failed) {
      fmt::print(
          human, "  FAILED {}\n",
          error.find(model) == std::string::npos && !model.empty() ? model + ": " + error : error);
    }
  }
  const int code = summary.failed.empty() ? 0 : static_cast<int>(ExitCode::kPartial);
  if (!cli.json.empty()) {
    doc["exit_code"] = code;
    doc["summary"] = {{"models", summary.models},
                      {"written", summary.written},
                      {"up_to_date", summary.up_to_date},
                      {"failed", summary.failed.size()},
                      {"not_inputs", summary.not_inputs}};
    for (const auto& [model, error] : summary.failed) {
      doc["failures"].push_back({{"model", model}, {"error", error}});
    }
    write_json(cli.json, doc);
  }
  return code;
}

std::string snr_text(double db) { return std::isfinite(db) ? fmt::format("{:.1f}", db) : "exact"; }

nlohmann::json metrics_json(const OutputMetrics& m) {
  nlohmann::json j = {{"name", m.name}, {"elements", m.elements}};
  if (!m.is_float) {
    j["identical"] = m.exact;
    return j;
  }
  auto number = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  j.update({{"cosine", m.cosine},
            {"rel_l2", number(m.rel_l2)},
            {"max_abs", m.max_abs},
            {"snr_db", number(m.snr_db)},
            {"finite", m.finite}});
  if (m.logits) j.update({{"top1", m.top1}, {"kl", m.kl}, {"rows", m.rows}});
  return j;
}

int diff_command(const DiffRequest& request, const std::string& json) {
  const DiffResult r = diff_models(request);
  auto value_json = [&](const DiffResult::Value& v) {
    nlohmann::json j = metrics_json(v.metrics);
    j.update({{"name", v.name},
              {"float_name", v.float_name},
              {"op", v.op},
              {"loss_db", v.loss_db},
              {"added_noise", v.added_noise}});
    return j;
  };
  if (!json.empty()) {
    nlohmann::json j = {{"float_model", request.float_model},
                        {"quant_model", request.quant_model},
                        {"data", r.data},
                        {"samples", r.samples},
                        {"values", nlohmann::json::array()},
                        {"outputs", nlohmann::json::array()},
                        {"worst", nlohmann::json::array()}};
    for (const auto& v : r.values) j["values"].push_back(value_json(v));
    for (const auto& v : r.outputs) j["outputs"].push_back(value_json(v));
    for (int k : r.worst) j["worst"].push_back(r.values[k].name);
    j["entry"] = r.entry >= 0 ? nlohmann::json(r.values[r.entry].name) : nlohmann::json();
    write_json(json, j);
    if (json == "-") return 0;
  }
  std::printf("%s vs %s: %zu sample(s) of %s\n", request.float_model.c_str(),
              request.quant_model.c_str(), r.samples, r.data.c_str());
  size_t width = 5;
  for (const auto& v : r.values) width = std::max(width, v.name.size());
  std::printf("  %-*s  %-18s %8s %9s %8s\n", static_cast<int>(width), "value", "op", "SNR dB",
              "cosine", "loss dB");
  for (size_t k = 0; k < r.values.size(); ++k) {
    const auto& v = r.values[k];
    std::string name = v.name == v.float_name ? v.name : v.name + " (" + v.float_name + ")";
    if (!v.metrics.is_float) {
      std::printf("  %-*s  %-18s %s identical\n", static_cast<int>(width), name.c_str(),
                  v.op.c_str(), fmt::format("{:.1f}%", 100 * v.metrics.exact).c_str());
      continue;
    }
    std::printf("  %-*s  %-18s %8s %9.5f %8.1f%s\n", static_cast<int>(width), name.c_str(),
                v.op.c_str(), snr_text(v.metrics.snr_db).c_str(), v.metrics.cosine, v.loss_db,
                static_cast<int>(k) == r.entry ? "  <- damage enters here" : "");
  }
  if (r.entry >= 0) {
    const auto& e = r.values[r.entry];
    std::printf("damage enters at '%s' (%s): SNR %s dB, %.1f dB lost at this node\n",
                e.float_name.c_str(), e.op.c_str(), snr_text(e.metrics.snr_db).c_str(), e.loss_db);
  }
  std::printf("worst contributors (noise power added at the node, relative to the signal):\n");
  for (int k : r.worst) {
    const auto& v = r.values[k];
    std::printf("  %9.3g  '%s' (%s): SNR %s dB, %.1f dB lost here\n", v.added_noise,
                v.float_name.c_str(), v.op.c_str(), snr_text(v.metrics.snr_db).c_str(), v.loss_db);
  }
  std::printf("outputs:\n");
  for (const auto& o : r.outputs)
    std::printf("  %s: %s\n", o.name.c_str(), describe(o.metrics).c_str());
  return 0;
}

int run_command(const DataRunRequest& request) {
  int sets = 0;
  const bool all_within = run_test_data(request, [&](const DataSetResult& set) {
    std::printf("%s (%.6f s)\n", set.dir.string().c_str(), set.seconds);
    for (const auto& out : set.outputs) {
      const Tensor& t = *out.value;
      std::string line =
          t.is_container()
              ? fmt::format("  {} ({} of {})", out.name,
                            t.dtype() == Tensor::kSequence ? "sequence" : "optional", t.size())
              : fmt::format("  {} [{}]", out.name, fmt::join(t.shape(), " x "));
      if (out.compared) {
        const Agreement& a = out.agreement;
        line += a.same_shape ? fmt::format(": max abs error {:.3g}, max rel error {:.3g}: {}",
                                           a.max_abs, a.max_rel, a.within ? "ok" : "MISMATCH")
                             : ": MISMATCH (shape)";
      }
      std::printf("%s\n", line.c_str());
    }
    ++sets;
  });
  std::printf("%d data set(s): %s\n", sets,
              all_within ? "outputs within tolerance" : "outputs differ beyond tolerance");
  return static_cast<int>(all_within ? ExitCode::kOk : ExitCode::kMismatch);
}

}  // namespace

// For unsigned options: CLI11 would read "-1" as 2^64 - 1.
const CLI::Validator kNotNegative(
    [](std::string& value) {
      return value.find('-') == std::string::npos ? std::string() : "must not be negative";
    },
    "N >= 0");

int main(int argc, char** argv) {
  remove_partial_outputs_on_signals();
  Cli cli;
  Options& options = cli.request.options;
  CLI::App app{
      "quantize: turn ONNX models into smaller, faster quantized ONNX models.\n"
      "Each mode writes <stem>_<mode>.onnx beside the input; with no model, the built-in "
      "TinyStories model is used (output in the current folder)."};
  app.set_version_flag("--version", std::string("quantize ") + QUANTIZE_VERSION);
  app.add_option("models", cli.request.models,
                 "ONNX model files (external data is read from beside them), or folders of them");
  auto* modes = app.add_option_group("Modes", "One output per mode (default: --q4f16)");
  for (const auto& info : all_modes()) {
    cli.mode_flags[info.mode] = false;
    if (info.family == ModeFamily::kStaticInt8) continue;  // --static with --int8 / --uint8
    modes->add_flag(std::string("--") + info.flag, cli.mode_flags[info.mode], info.help);
  }
  auto* outputs = app.add_option_group("Output");
  outputs->add_option("-o,--output", cli.request.output, "Output file (one model, one mode)");
  outputs->add_option("--output-dir", cli.request.output_dir, "Folder for the outputs")
      ->check(CLI::ExistingDirectory);
  outputs->add_flag("--force", cli.request.force, "Replace outputs that exist");
  outputs->add_flag("--external-data", cli.request.external_data,
                    "Write tensors to <output>.data (automatic at 2 GiB)");
  outputs->add_flag("--dry-run", cli.request.dry_run, "Run the passes and report, write nothing");
  outputs->add_option("--json", cli.json,
                      "Also write the report as JSON to FILE (schema in README.md); - for "
                      "stdout, the human report then on stderr");
  auto* batch = app.add_option_group("Folders and batches");
  batch->add_flag("--recursive", cli.request.recursive,
                  "A folder argument: every .onnx below it, not only in it (outputs mirror the "
                  "tree under --output-dir)");
  batch->add_flag("--keep-going", cli.request.keep_going,
                  "Go on past a model that fails; end with a summary (exit code 7 if any failed)");
  batch->add_option("--shard", cli.shard,
                    "I/N: only every N-th model of the sorted list, from the I-th (N workers, "
                    "no coordination)");
  auto* q4 = app.add_option_group("Block weights (--q4, --q4f16, --nf4, --fp4)");
  q4->add_option("--block-size", options.block_size,
                 "Weights per block along K: 16, 32 (the default), 64 (--nf4 / --fp4's), 128 or "
                 "256");
  auto* sym = q4->add_flag("--symmetric", cli.symmetric, "No zero points (the default)");
  q4->add_flag("--asymmetric", cli.asymmetric, "Per-block zero points, packed uint8")
      ->excludes(sym);
  q4->add_option("--bits", options.bits, "4, or 8 for 8-bit MatMulNBits")->capture_default_str();
  q4->add_option(
        "--algo", cli.algo,
        "Block codes: rtn (round to nearest, the reference tools' bytes), search "
        "(data-free error-minimising scales and zero points, never worse than rtn per block); "
        "with --calib: imatrix (search weighted by each input channel's mean square), gptq "
        "(rounding errors pushed onto the rows not yet quantized), awq (rows of salient input "
        "channels scaled up, the input divided back; then imatrix) or awq+gptq. auto: gptq "
        "with --calib, else search")
      ->capture_default_str();
  q4->add_option("--output-projection-bits", options.output_projection_bits,
                 "Bits of an output projection (a MatMul whose result is a graph output, an "
                 "LLM's lm_head): 8 by default, as llama.cpp and ModelOpt keep it; 4 for the "
                 "smallest file")
      ->capture_default_str();
  q4->add_option("--accuracy-level", options.accuracy_level,
                 "MatMulNBits accuracy_level 0-4 (0: omitted, runtime default)")
      ->capture_default_str();
  app.add_option("--include", cli.include, "Only quantize nodes whose name matches");
  app.add_option("--exclude", cli.exclude, "Do not quantize nodes whose name matches");
  auto* int8 = app.add_option_group("dynamic INT8 (--int8, --uint8, --q8)");
  int8->add_flag("--per-channel", options.per_channel,
                 "One scale per output channel (MatMul/Gemm columns, Conv filters)");
  int8->add_flag("--reduce-range", options.reduce_range, "7-bit weights, for CPUs without VNNI");
  int8->add_option("--op-types", cli.op_types,
                   "Which ops to quantize, comma-separated (dynamic default: "
                   "MatMul,Gemm,Conv,Gather; static: all it knows)");
  int8->add_option("--format", cli.format,
                   "qoperator (MatMulInteger/ConvInteger, the dynamic default) or qdq (int8 "
                   "weights + DequantizeLinear; the --static form). With --q4/--q4f16: qdq "
                   "writes standard ONNX instead of MatMulNBits, an INT4 DequantizeLinear with "
                   "block_size feeding each MatMul (opset 21), for runtimes without "
                   "com.microsoft ops");
  auto* st = app.add_option_group("static INT8 (--static with --int8 or --uint8)");
  st->add_flag("--static", cli.static_quant,
               "Calibrated static INT8 in QDQ form: int8 activations and weights with --int8 "
               "(S8S8), uint8 with --uint8; writes <stem>_static_int8.onnx");
  st->add_option("--calib", options.calib,
                 "Calibration data (static INT8; any mode: also what the result is judged on): a "
                 "folder of test_data_set_* folders (input_N.pb) or one such folder, .npy/.npz "
                 "files or a folder of them, or 'random' (synthetic inputs)");
  st->add_option("--calib-samples", options.calib_samples,
                 "Use at most N calibration samples (0: all; random: 8)")
      ->check(kNotNegative)  // an unsigned option would take -1 as 2^64 - 1
      ->capture_default_str();
  st->add_option("--calib-method", cli.calib_method,
                 "Activation ranges: minmax, percentile, entropy (KL divergence), mse (least "
                 "squared quantization error), or auto: minmax or mse, whichever measures better "
                 "on the calibration share (cross-fitted, with --equalize / --bias-correction)")
      ->capture_default_str();
  st->add_option("--percentile", options.percentile, "Percentile kept by --calib-method percentile")
      ->capture_default_str();
  st->add_option("--activations", cli.activations,
                 "Activation type: int8, uint8, int16 or uint16 (16 bits: weights stay 8-bit, "
                 "A16W8); default: the mode's");
  st->add_option("--equalize", cli.equalize,
                 "Cross-layer equalization of Conv channels (BatchNormalization folded first): "
                 "auto (applied when it measures better on the calibration data), on or off")
      ->capture_default_str();
  st->add_option("--bias-correction", cli.bias_correction,
                 "Take the weights' rounding shift out of Conv/Gemm biases: auto, on or off")
      ->capture_default_str();
  st->add_option("--keep-float", cli.keep_float, "Tensors (comma-separated names) that stay float");
  st->add_option("--float-fallback", cli.float_fallback,
                 "on: a Conv whose 8-bit input would bury one of its output channels stays float "
                 "(named in the report); off: every Conv is quantized (the report still names "
                 "them)")
      ->capture_default_str();
  auto* check = app.add_option_group(
      "Verification (the quantized model judged against the float one, in the built-in executor)");
  check->add_option("--eval", options.eval,
                    "Samples to judge on (formats as --calib); default: every 4th --calib sample");
  check->add_flag("--no-holdout", cli.no_holdout,
                  "Calibrate on every --calib sample (and judge on them too)");
  check->add_flag("--verify", cli.verify,
                  "Judge even without data, on synthetic inputs from the declared shapes");
  check->add_flag("--no-verify", cli.no_verify, "Do not judge");
  auto* mixed = app.add_option_group("Mixed precision");
  mixed->add_option("--tensor-type", cli.tensor_types,
                    "REGEX=TYPE (repeatable): nodes whose name or weight name matches get TYPE: "
                    "float, fp16, int8, uint8, a16 (16-bit activations, static INT8), q4, q8");
  std::string runtimes;
  for (const auto& r : runtime_profiles()) runtimes += fmt::format("\n  {:<9} {}", r.name, r.help);
  mixed->add_option("--target", cli.targets,
                    "NAME: the runtime the output is for; it sets what the flags leave open, "
                    "refuses what it cannot run, and checks the output's ops:" +
                        runtimes +
                        "\nor [OUTPUT:]METRIC=VALUE (repeatable; METRIC: cosine, top1, snr: at "
                        "least; kl: at most): raise precision node by node until the judged data "
                        "meets it");
  mixed->add_option("--plan", options.plan,
                    "Replay the per-node precisions of a plan file exactly (from --plan-out)");
  mixed->add_option("--plan-out", options.plan_out,
                    "Write this run's per-node precisions and why, as JSON");
  auto* f16 = app.add_option_group("float16 (--fp16, --q4f16)");
  f16->add_flag("--fp16-io", cli.fp16_io,
                "Convert graph inputs and outputs to float16 too (default: keep float32)");
  auto* prep = app.add_option_group("Preparation (before quantizing)");
  prep->add_flag("--no-fold", cli.no_fold,
                 "Do not fold constant subexpressions (weights behind Reshape, Cast, ...)");
  prep->add_flag("--no-opset-conversion", cli.no_convert,
                 "Do not raise the opset where a mode needs a newer one");
  app.add_option("--threads", cli.threads, "Worker threads (default: all cores)");
  app.add_flag("-v,--verbose", cli.verbosity, "Per tensor and per node detail in the report");
  app.add_flag("-q,--quiet", cli.quiet, "No report; errors only on stderr");
  app.add_option("--log-level", cli.log_level,
                 "Diagnostics on stderr: trace, debug, info (the default), warn, error or off");
  DataRunRequest run_request;
  auto* run_cmd = app.add_subcommand(
      "run",
      "Run a model in the built-in executor on ONNX test data (input_N.pb), comparing "
      "with output_N.pb when present");
  run_cmd->add_option("model", run_request.model, "ONNX model")->required();
  run_cmd
      ->add_option("--data", run_request.data,
                   "A test-data folder, or a folder of test_data_set_* folders (repeatable)")
      ->required();
  run_cmd->add_option("--save", run_request.save, "Write the outputs as <save>/<set>/output_N.pb");
  run_cmd->add_option("--rtol", run_request.rtol, "Relative tolerance")->capture_default_str();
  run_cmd->add_option("--atol", run_request.atol, "Absolute tolerance")->capture_default_str();
  run_cmd->add_option("--repeat", run_request.repeat, "Run each set N times, report the best time")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  DiffRequest diff_request;
  std::string diff_json;
  auto* diff_cmd = app.add_subcommand(
      "diff",
      "Where a quantized model's error enters: both models on the same data, every value the "
      "quantized model shares with the float one compared (SNR, cosine, dB lost per node)");
  diff_cmd->add_option("float", diff_request.float_model, "The float model")->required();
  diff_cmd->add_option("quantized", diff_request.quant_model, "Its quantized version")->required();
  diff_cmd->add_option("--data", diff_request.data, "Input samples (formats as --calib)")
      ->required();
  diff_cmd->add_option("--samples", diff_request.samples, "Use at most N samples (0: all)")
      ->capture_default_str();
  diff_cmd->add_option("--json", diff_json,
                       "Also write the figures as JSON to FILE (-: stdout only)");
  app.footer(
      "Exit codes: 0 success, 1 internal error, 2 bad command line, 3 unreadable or invalid "
      "model, 4 output not written, 5 (run) outputs beyond tolerance, 6 --target not met "
      "(nothing written), 7 --keep-going: some models failed (the others written).");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : static_cast<int>(ExitCode::kUsage);
  }
  try {
    set_log_level(!cli.log_level.empty() ? cli.log_level : cli.quiet ? "error" : "info");
    if (cli.threads) set_thread_count(cli.threads);
    if (*run_cmd) return run_command(run_request);
    if (*diff_cmd) return diff_command(diff_request, diff_json);
    return quantize_command(cli);
  } catch (const Error& e) {
    log().error("{}", e.what());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    log().critical("internal error: {}", e.what());
    return static_cast<int>(ExitCode::kInternal);
  }
}
