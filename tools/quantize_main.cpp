// The `quantize` command: parse options -> load each model once -> for each mode, run its
// passes and write the output -> report. The only place that catches quantize::Error.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "quantize/error.h"
#include "quantize/executor.h"
#include "quantize/model.h"
#include "quantize/options.h"
#include "quantize/pipeline.h"
#include "quantize/report.h"
#include "support/threads.h"

namespace fs = std::filesystem;
using namespace quantize;

namespace {

struct Cli {
  std::vector<std::string> models;
  std::map<Mode, bool> mode_flags;
  Options options;
  std::string output, output_dir;
  bool force = false, external_data = false, dry_run = false, fp16_io = false;
  bool asymmetric = false, symmetric = false, static_quant = false;
  std::string include, exclude, op_types, format, calib_method = "minmax", keep_float;
  unsigned threads = 0;
  int verbosity = 0;
  bool quiet = false;
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

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec);
}

fs::path output_path(const Cli& cli, const std::string& model, Mode mode) {
  if (!cli.output.empty()) return cli.output;
  fs::path in = model.empty() ? fs::path(kEmbeddedModelName) : fs::path(model);
  fs::path dir = !cli.output_dir.empty() ? fs::path(cli.output_dir)
                 : model.empty()         ? fs::path(".")
                                         : in.parent_path();
  return dir / (in.stem().string() + "_" + cli.options.suffix(mode) + ".onnx");
}

void check_outputs(const Cli& cli, const std::vector<std::pair<std::string, Mode>>& jobs) {
  std::set<fs::path> seen;
  for (const auto& [model, mode] : jobs) {
    fs::path out = output_path(cli, model, mode);
    if (!seen.insert(fs::absolute(out).lexically_normal()).second) {
      fail(ExitCode::kUsage, "two outputs would both be written to {}", out.string());
    }
    for (const auto& in : cli.models) {
      if (same_file(out, in)) fail(ExitCode::kUsage, "{}: refusing to overwrite the input", in);
    }
    std::error_code ec;
    if (!cli.force && !cli.dry_run && fs::exists(out, ec)) {
      fail(ExitCode::kOutput, "{} exists (use --force to replace it)", out.string());
    }
    fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
    if (!cli.dry_run && !fs::is_directory(parent, ec)) {
      fail(ExitCode::kOutput, "{}: the output folder does not exist", parent.string());
    }
  }
}

// Progress on stderr while writing, only for a person at a terminal.
std::function<void(uint64_t, uint64_t)> progress_line(const Cli& cli, const fs::path& out) {
  if (cli.quiet || !::isatty(STDERR_FILENO)) return {};
  auto last = std::make_shared<int>(-1);
  std::string name = out.filename().string();
  return [last, name](uint64_t done, uint64_t total) {
    int pct = total ? static_cast<int>(100 * done / total) : 100;
    if (pct == *last) return;
    *last = pct;
    std::fprintf(stderr, "\r  writing %s: %3d%%%s", name.c_str(), pct,
                 pct == 100 ? "\r\033[K" : "");
    std::fflush(stderr);
  };
}

// Calibration progress on stderr (samples done / total, time left), for a person at a terminal.
std::function<void(size_t, size_t)> calibration_progress(const Cli& cli) {
  if (cli.quiet || !::isatty(STDERR_FILENO)) return {};
  auto start = std::make_shared<std::chrono::steady_clock::time_point>();
  return [start](size_t done, size_t total) {
    if (done == 1) *start = std::chrono::steady_clock::now();
    const double elapsed = seconds_since(*start);
    const double left = done > 1 ? elapsed / (done - 1) * (total - done) : 0;
    std::fprintf(stderr, "\r  calibrating: %zu/%zu samples, %.0f s left%s", done, total, left,
                 done == total ? "\r\033[K" : "");
    std::fflush(stderr);
  };
}

int run(const Cli& cli) {
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
    fail(ExitCode::kUsage, "--static needs --int8 (S8S8) or --uint8 (U8U8)");
  }
  Options options = cli.options;
  options.filter = NodeFilter(cli.include, cli.exclude);
  options.op_types = split_list(cli.op_types);
  options.keep_float = split_list(cli.keep_float);
  if (cli.format == "qoperator") {
    options.format = Format::kQOperator;
  } else if (cli.format == "qdq") {
    options.format = Format::kQdq;
  } else if (!cli.format.empty()) {
    fail(ExitCode::kUsage, "--format {}: must be qoperator or qdq", cli.format);
  }
  if (cli.calib_method == "minmax") {
    options.calib_method = CalibMethod::kMinMax;
  } else if (cli.calib_method == "percentile") {
    options.calib_method = CalibMethod::kPercentile;
  } else if (cli.calib_method == "entropy") {
    options.calib_method = CalibMethod::kEntropy;
  } else {
    fail(ExitCode::kUsage, "--calib-method {}: must be minmax, percentile or entropy",
         cli.calib_method);
  }
  options.calib_progress = calibration_progress(cli);
  if (modes.empty()) {
    modes.push_back(Mode::kQ4F16);
    if (!cli.quiet) std::fprintf(stderr, "quantize: no mode given, using --q4f16\n");
  }
  options.modes = modes;
  options.validate();
  const std::vector<std::string> models =
      cli.models.empty() ? std::vector<std::string>{""} : cli.models;
  if (!cli.output.empty() && models.size() * modes.size() != 1) {
    fail(ExitCode::kUsage,
         "-o/--output names one file: give one model and one mode "
         "(or use --output-dir)");
  }
  std::vector<std::pair<std::string, Mode>> jobs;
  for (const auto& m : models) {
    for (Mode mode : modes) jobs.emplace_back(m, mode);
  }
  Cli checked = cli;
  checked.options = options;
  check_outputs(checked, jobs);

  for (const auto& model_path : models) {
    auto start = std::chrono::steady_clock::now();
    Model source = model_path.empty() ? load_embedded_model() : load_model(model_path);
    const double load_seconds = seconds_since(start);
    for (Mode mode : modes) {
      auto mode_start = std::chrono::steady_clock::now();
      Model model = copy_model(source);
      OutputReport report;
      report.input = source.source;
      report.mode = mode_info(mode).flag;
      report.options = options.describe(mode);
      report.passes = run_pipeline(model, mode, options);
      report.bytes_before = source.bytes;
      report.dry_run = cli.dry_run;
      fs::path out = output_path(checked, model_path, mode);
      report.output = out.string();
      if (cli.dry_run) {
        report.bytes_after = encoded_size(model, cli.external_data);
      } else {
        for (const auto& file : source.files) {  // e.g. a data file named like <output>.data
          if (same_file(file, out) || same_file(file, fs::path(out.string() + ".data"))) {
            fail(ExitCode::kUsage, "{}: writing {} would overwrite this input file", file.string(),
                 out.string());
          }
        }
        SaveOptions save;
        save.external_data = cli.external_data;
        save.progress = progress_line(cli, out);
        SaveResult saved = save_model(model, out, save);
        report.bytes_after = saved.model_bytes + saved.data_bytes;
        if (!saved.data_path.empty()) report.output += " + " + saved.data_path.filename().string();
      }
      report.seconds = seconds_since(mode_start) + load_seconds / modes.size();
      if (!cli.quiet) print_report(report, cli.verbosity, stdout);
    }
  }
  return 0;
}

struct RunCli {
  std::string model;
  std::vector<std::string> data;
  std::string save;
  double rtol = 1e-3, atol = 1e-4;
  int repeat = 1;
};

// `quantize run`: the model on ONNX test data in the built-in executor, checked against the
// expected outputs when the data has them.
int run_command(const RunCli& cli) {
  Model model = load_model(cli.model);
  Executor executor(model);
  bool all_within = true;
  int sets = 0;
  for (const auto& data : cli.data) {
    for (const fs::path& dir : test_data_dirs(data)) {
      const auto inputs =
          read_test_inputs(dir, executor.input_names().size(),
                           declared_types(model.proto.graph(), executor.input_names()));
      std::vector<Tensor> outputs;
      double seconds = 1e30;
      for (int r = 0; r < std::max(1, cli.repeat); ++r) {  // the best of --repeat runs
        auto start = std::chrono::steady_clock::now();
        outputs = executor.run(inputs);
        seconds = std::min(seconds, seconds_since(start));
      }
      auto expected =
          read_test_outputs(dir, declared_types(model.proto.graph(), executor.output_names()));
      std::printf("%s (%.6f s)\n", dir.string().c_str(), seconds);
      for (size_t i = 0; i < outputs.size(); ++i) {
        const auto& shape = outputs[i].shape();
        std::string line =
            outputs[i].is_container()
                ? fmt::format("  {} ({} of {})", executor.output_names()[i],
                              outputs[i].dtype() == Tensor::kSequence ? "sequence" : "optional",
                              outputs[i].size())
                : fmt::format("  {} [{}]", executor.output_names()[i], fmt::join(shape, " x "));
        if (i < expected.size()) {
          Agreement a = compare(outputs[i], expected[i], cli.rtol, cli.atol);
          all_within &= a.within;
          line += a.same_shape ? fmt::format(": max abs error {:.3g}, max rel error {:.3g}: {}",
                                             a.max_abs, a.max_rel, a.within ? "ok" : "MISMATCH")
                               : ": MISMATCH (shape)";
        }
        std::printf("%s\n", line.c_str());
        if (!cli.save.empty()) {
          fs::path out_dir = fs::path(cli.save) / dir.filename();
          fs::create_directories(out_dir);
          write_tensor_pb(out_dir / fmt::format("output_{}.pb", i), outputs[i],
                          executor.output_names()[i]);
        }
      }
      ++sets;
    }
  }
  std::printf("%d data set(s): %s\n", sets,
              all_within ? "outputs within tolerance" : "outputs differ beyond tolerance");
  return static_cast<int>(all_within ? ExitCode::kOk : ExitCode::kMismatch);
}

}  // namespace

int main(int argc, char** argv) {
  Cli cli;
  CLI::App app{
      "quantize: turn ONNX models into smaller, faster quantized ONNX models.\n"
      "Each mode writes <stem>_<mode>.onnx beside the input; with no model, the built-in "
      "TinyStories model is used (output in the current folder)."};
  app.set_version_flag("--version", std::string("quantize ") + QUANTIZE_VERSION);
  app.add_option("models", cli.models, "ONNX model files (external data is read from beside them)");
  auto* modes = app.add_option_group("Modes", "One output per mode (default: --q4f16)");
  for (const auto& info : all_modes()) {
    cli.mode_flags[info.mode] = false;
    if (info.family == ModeFamily::kStaticInt8) continue;  // --static with --int8 / --uint8
    modes->add_flag(std::string("--") + info.flag, cli.mode_flags[info.mode], info.help);
  }
  auto* outputs = app.add_option_group("Output");
  outputs->add_option("-o,--output", cli.output, "Output file (one model, one mode)");
  outputs->add_option("--output-dir", cli.output_dir, "Folder for the outputs")
      ->check(CLI::ExistingDirectory);
  outputs->add_flag("--force", cli.force, "Replace outputs that exist");
  outputs->add_flag("--external-data", cli.external_data,
                    "Write tensors to <output>.data (automatic at 2 GiB)");
  outputs->add_flag("--dry-run", cli.dry_run, "Run the passes and report, write nothing");
  auto* q4 = app.add_option_group("MatMulNBits (--q4, --q4f16)");
  q4->add_option("--block-size", cli.options.block_size,
                 "Weights per block along K: 16, 32, 64, 128 or 256")
      ->capture_default_str();
  auto* sym = q4->add_flag("--symmetric", cli.symmetric, "No zero points (the default)");
  q4->add_flag("--asymmetric", cli.asymmetric, "Per-block zero points, packed uint8")
      ->excludes(sym);
  q4->add_option("--bits", cli.options.bits, "4, or 8 for 8-bit MatMulNBits")
      ->capture_default_str();
  q4->add_option("--accuracy-level", cli.options.accuracy_level,
                 "MatMulNBits accuracy_level 0-4 (0: omitted, runtime default)")
      ->capture_default_str();
  app.add_option("--include", cli.include, "Only quantize nodes whose name matches");
  app.add_option("--exclude", cli.exclude, "Do not quantize nodes whose name matches");
  auto* int8 = app.add_option_group("dynamic INT8 (--int8, --uint8, --q8)");
  int8->add_flag("--per-channel", cli.options.per_channel,
                 "One scale per output channel (MatMul/Gemm columns, Conv filters)");
  int8->add_flag("--reduce-range", cli.options.reduce_range,
                 "7-bit weights, for CPUs without VNNI");
  int8->add_option("--op-types", cli.op_types,
                   "Which ops to quantize, comma-separated (dynamic default: "
                   "MatMul,Gemm,Conv,Gather; static: all it knows)");
  int8->add_option("--format", cli.format,
                   "qoperator (MatMulInteger/ConvInteger, the dynamic default) or qdq (int8 "
                   "weights + DequantizeLinear; the --static form)");
  auto* st = app.add_option_group("static INT8 (--static with --int8 or --uint8)");
  st->add_flag("--static", cli.static_quant,
               "Calibrated static INT8 in QDQ form: int8 activations and weights with --int8 "
               "(S8S8), uint8 with --uint8; writes <stem>_static_int8.onnx");
  st->add_option("--calib", cli.options.calib,
                 "Calibration data: a folder of test_data_set_* folders (input_N.pb) or one such "
                 "folder, .npy/.npz files or a folder of them, or 'random' (synthetic inputs)");
  st->add_option("--calib-samples", cli.options.calib_samples,
                 "Use at most N calibration samples (0: all; random: 8)")
      ->capture_default_str();
  st->add_option("--calib-method", cli.calib_method,
                 "Activation ranges: minmax, percentile or entropy (KL divergence)")
      ->capture_default_str();
  st->add_option("--percentile", cli.options.percentile,
                 "Percentile kept by --calib-method percentile")
      ->capture_default_str();
  st->add_option("--keep-float", cli.keep_float, "Tensors (comma-separated names) that stay float");
  auto* f16 = app.add_option_group("float16 (--fp16, --q4f16)");
  f16->add_flag("--fp16-io", cli.fp16_io,
                "Convert graph inputs and outputs to float16 too (default: keep float32)");
  app.add_option("--threads", cli.threads, "Worker threads (default: all cores)");
  app.add_flag("-v,--verbose", cli.verbosity, "Per tensor and per node detail");
  app.add_flag("-q,--quiet", cli.quiet, "Print errors only");
  RunCli run_cli;
  auto* run_cmd = app.add_subcommand(
      "run",
      "Run a model in the built-in executor on ONNX test data (input_N.pb), comparing "
      "with output_N.pb when present");
  run_cmd->add_option("model", run_cli.model, "ONNX model")->required();
  run_cmd
      ->add_option("--data", run_cli.data,
                   "A test-data folder, or a folder of test_data_set_* folders (repeatable)")
      ->required();
  run_cmd->add_option("--save", run_cli.save, "Write the outputs as <save>/<set>/output_N.pb");
  run_cmd->add_option("--rtol", run_cli.rtol, "Relative tolerance")->capture_default_str();
  run_cmd->add_option("--atol", run_cli.atol, "Absolute tolerance")->capture_default_str();
  run_cmd->add_option("--repeat", run_cli.repeat, "Run each set N times, report the best time")
      ->capture_default_str();
  app.footer(
      "Exit codes: 0 success, 1 internal error, 2 bad command line, 3 unreadable or invalid "
      "model, 4 output not written, 5 (run) outputs beyond tolerance.");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : static_cast<int>(ExitCode::kUsage);
  }
  cli.options.symmetric = !cli.asymmetric;
  cli.options.keep_io_types = !cli.fp16_io;
  if (cli.threads) set_thread_count(cli.threads);
  try {
    if (*run_cmd) return run_command(run_cli);
    return run(cli);
  } catch (const Error& e) {
    std::fprintf(stderr, "quantize: error: %s\n", e.what());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "quantize: internal error: %s\n", e.what());
    return static_cast<int>(ExitCode::kInternal);
  }
}
