// quantize_files and run_test_data (see quantize/run.h).
#include "quantize/run.h"

#include <chrono>
#include <optional>
#include <set>

#include "passes/passes.h"
#include "pipeline/plan.h"
#include "pipeline/search.h"
#include "quantize/error.h"
#include "quantize/log.h"
#include "quantize/model.h"
#include "quantize/pipeline.h"
#include "verify/verify.h"

namespace quantize {
namespace fs = std::filesystem;
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return fs::exists(a, ec) && fs::exists(b, ec) && fs::equivalent(a, b, ec);
}

void check_outputs(const RunRequest& request, const std::vector<std::string>& models,
                   const std::vector<Mode>& modes) {
  if (!request.output.empty() && models.size() * modes.size() != 1) {
    fail(ExitCode::kUsage,
         "-o/--output names one file: give one model and one mode (or use --output-dir)");
  }
  std::set<fs::path> seen;
  for (const auto& model : models) {
    for (Mode mode : modes) {
      fs::path out = output_path(request, model, mode);
      if (!seen.insert(fs::absolute(out).lexically_normal()).second) {
        fail(ExitCode::kUsage, "two outputs would both be written to {}", out.string());
      }
      for (const auto& in : request.models) {
        if (same_file(out, in)) fail(ExitCode::kUsage, "{}: refusing to overwrite the input", in);
      }
      std::error_code ec;
      if (!request.force && !request.dry_run && fs::exists(out, ec)) {
        fail(ExitCode::kOutput, "{} exists (use --force to replace it)", out.string());
      }
      fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
      if (!request.dry_run && !fs::is_directory(parent, ec)) {
        fail(ExitCode::kOutput, "{}: the output folder does not exist", parent.string());
      }
    }
  }
}

// The figures in the output's metadata_props (quantize.verify), one line per output.
void record_verification(Model& model, const Verification& v) {
  std::string text =
      fmt::format("{} sample(s){}: {}", v.samples, v.synthetic ? " (synthetic)" : "", v.data);
  for (const auto& o : v.outputs) text += fmt::format("\n{}: {}", o.name, describe(o));
  for (auto& entry : *model.proto.mutable_metadata_props()) {
    if (entry.key() == "quantize.verify") {
      entry.set_value(text);
      return;
    }
  }
  auto* entry = model.proto.add_metadata_props();
  entry->set_key("quantize.verify");
  entry->set_value(text);
}

std::string describe_targets(const std::vector<Target>& targets) {
  std::string s;
  for (const auto& t : targets) s += (s.empty() ? "" : ", ") + t.describe();
  return s;
}

// Whether `p` is what `mode` gives a node with no plan (4 bits for --q4, 8 for --int8 ...).
bool mode_precision(Mode mode, const Options& options, Precision p) {
  switch (mode_info(mode).family) {
    case ModeFamily::kWeightOnly:
      return options.bits == 8
                 ? p == Precision::kQ8 || p == Precision::kInt8 || p == Precision::kUInt8
                 : p == Precision::kQ4;
    case ModeFamily::kStaticInt8:
    case ModeFamily::kDynamicInt8:
      return p == Precision::kInt8 || p == Precision::kUInt8;
    case ModeFamily::kFloat16:
      return p == Precision::kFp16;
  }
  return false;
}

// What the target search did, as the report shows it: the targets before and after, what it
// raised, the share of multiply-adds left at the mode's precision, and the size it costs.
PassResult target_result(const SearchOutcome& o, Mode mode, const Options& options,
                         const Model& source, const Model& model,
                         const std::vector<PassResult>& results, const PrecisionPlan& plan,
                         const CalibrationData& judged) {
  PassResult r;
  r.pass = "target";
  const Target& first = options.targets[0];
  r.notes.push_back(fmt::format(
      "{} on {}: fully quantized {:.5g}, now {:.5g}: {}", describe_targets(options.targets),
      judged.description, o.quantized.worst(first.metric, first.output),
      o.best.worst(first.metric, first.output), o.met ? "met" : "NOT MET"));
  std::map<std::string, int> by_precision;
  for (const auto& e : o.raised) ++by_precision[precision_name(e.precision)];
  std::string how;
  for (const auto& [p, n] : by_precision)
    how += fmt::format("{}{}: {}", how.empty() ? "" : ", ", p, n);
  if (o.raised.empty() && o.met) {
    r.notes.push_back("nothing raised: the fully quantized model meets it");
  } else if (o.candidates == 0) {
    r.notes.push_back("no node left to raise: the plan or --tensor-type fixed every one");
  } else {
    r.notes.push_back(fmt::format("raised {} of {} node(s){}; {} candidate model(s) judged{}",
                                  o.raised.size(), o.candidates,
                                  how.empty() ? "" : " (" + how + ")", o.evaluations,
                                  o.harm_data.empty() ? "" : "; harm measured on " + o.harm_data));
  }
  // Multiply-adds of Conv/MatMul/Gemm left at the mode's precision.
  const auto macs = multiply_adds(source, judged);
  const auto planned = plan.by_node();
  double total = 0, kept = 0;
  std::set<std::string> quantized;
  if (const PassResult* q = quantizing_pass(results)) {
    for (const auto& c : q->changed) quantized.insert(c.key);
  }
  for (const auto& [key, n] : macs) {
    total += n;
    auto p = planned.find(key);
    if (quantized.count(key) && (p == planned.end() || mode_precision(mode, options, p->second))) {
      kept += n;
    }
  }
  if (total > 0) {
    r.notes.push_back(fmt::format(
        "Conv/MatMul/Gemm multiply-adds at the mode's own precision: {:.1f}% (of {:.3g})",
        100 * kept / total, total));
  }
  const uint64_t bytes = encoded_size(model, false);
  r.notes.push_back(fmt::format("size: {} against {} fully quantized (x{:.2f})",
                                format_bytes(bytes), format_bytes(o.quantized_bytes),
                                o.quantized_bytes ? double(bytes) / o.quantized_bytes : 0.0));
  for (const auto& e : o.raised) {
    r.changed.push_back(
        {e.node, fmt::format("{} ({})", precision_name(e.precision), e.why), e.node});
  }
  return r;
}

// --equalize / --bias-correction auto, static INT8 on a model with Conv or Gemm: every
// combination of the refinements left to auto is built and judged on the calibration share,
// cross-fitted: calibrated on its even samples and judged on its odd ones, then the other way
// round (both refinements fit the calibration data, so judging on the samples they were fitted
// on favours them: on BlazeFace front, bias correction measured 0.989 -> 0.994 in-sample but cost
// 0.004 on other photos). At most kRefineSamples samples per half: the cost stays a few candidate
// runs whatever the calibration size; the held-out share stays for the final verdict. The best
// mean of the two halves' worst-output cosines wins; a refinement is kept only when it gains over
// going without. With one calibration sample, it is judged in-sample. Resolves the options to
// on/off and says what was measured.
constexpr size_t kRefineSamples = 4;
std::optional<PassResult> choose_refinements(const Model& source, Mode mode, Options& options,
                                             const RunData& data, const Precisions& precisions) {
  if (mode_info(mode).family != ModeFamily::kStaticInt8 || !data.calibration ||
      (options.equalize != Toggle::kAuto && options.bias_correction != Toggle::kAuto)) {
    return std::nullopt;
  }
  bool weighted = false;
  for (const auto& n : source.proto.graph().node()) {
    weighted |= n.op_type() == "Conv" || n.op_type() == "Gemm";
  }
  auto choices = [](Toggle t) {
    return t == Toggle::kAuto ? std::vector<Toggle>{Toggle::kOff, Toggle::kOn}
                              : std::vector<Toggle>{t};
  };
  const std::vector<Toggle> equalize = choices(options.equalize),
                            correct = choices(options.bias_correction);
  if (options.equalize == Toggle::kAuto) options.equalize = Toggle::kOff;
  if (options.bias_correction == Toggle::kAuto) options.bias_correction = Toggle::kOff;
  if (!weighted) return std::nullopt;  // nothing either refinement applies to

  // Calibrated on `fit`, judged on `judged` against the float outputs, computed once.
  struct Fold {
    RunData fit;
    CalibrationData judged;
    Reference reference;
  };
  std::vector<Fold> folds;
  const CalibrationData& all = *data.calibration;
  if (all.count >= 2) {
    auto half = [&all](size_t parity) {  // every other sample, at most kRefineSamples
      return subset(
          all, [parity](size_t i) { return i % 2 == parity && i / 2 < kRefineSamples; },
          all.description);
    };
    for (size_t k = 0; k < 2; ++k) {
      RunData fit;
      fit.calibration = half(k);
      CalibrationData judged = half(1 - k);
      Reference reference = reference_outputs(source, judged);
      folds.push_back({std::move(fit), std::move(judged), std::move(reference)});
    }
  } else {
    folds.push_back({data, all, reference_outputs(source, all)});
  }
  auto score = [&](const Options& candidate) {
    double cosine = 0;
    for (const Fold& f : folds) {
      Model model = copy_model(source);
      Options quiet = candidate;
      quiet.calib_progress = nullptr;
      run_passes(model, mode, quiet, f.fit, precisions);
      cosine += verify(f.reference, model, f.judged).worst("cosine") / folds.size();
    }
    return cosine;
  };
  PassResult r;
  r.pass = "refine";
  r.notes.push_back(fmt::format(
      "measured on the calibration share ({}){}, worst output cosine:", all.description,
      folds.size() > 1 ? ", calibrated on half and judged on the other half, both ways" : ""));
  double best = -2;
  std::string figures, best_name = "neither";
  const Options base = options;
  for (Toggle bc : correct) {
    for (Toggle eq : equalize) {
      Options candidate = base;
      candidate.equalize = eq;
      candidate.bias_correction = bc;
      const std::string name = eq == Toggle::kOn && bc == Toggle::kOn ? "both"
                               : eq == Toggle::kOn                    ? "equalization"
                               : bc == Toggle::kOn                    ? "bias correction"
                                                                      : "neither";
      const double cosine = score(candidate);
      figures += fmt::format("{}{} {:.5f}", figures.empty() ? "" : ", ", name, cosine);
      if (cosine > best + 1e-5) {  // a later (more refined) candidate must gain
        best = cosine;
        best_name = name;
        options.equalize = eq;
        options.bias_correction = bc;
      }
    }
  }
  r.notes.push_back(fmt::format("refinements: {} -> applied: {}", figures, best_name));
  return r;
}

// The plan's entries as the report shows them.
PassResult plan_result(const PrecisionPlan& plan) {
  PassResult r;
  r.pass = "plan";
  for (const auto& e : plan.entries) {
    r.changed.push_back({e.node, fmt::format("{} ({})", precision_name(e.precision), e.why)});
  }
  return r;
}

}  // namespace

fs::path output_path(const RunRequest& request, const std::string& model, Mode mode) {
  if (!request.output.empty()) return request.output;
  fs::path in = model.empty() ? fs::path(kEmbeddedModelName) : fs::path(model);
  fs::path dir = !request.output_dir.empty() ? fs::path(request.output_dir)
                 : model.empty()             ? fs::path(".")
                                             : in.parent_path();
  return dir / (in.stem().string() + "_" + request.options.suffix(mode) + ".onnx");
}

void quantize_files(const RunRequest& request,
                    const std::function<void(const OutputReport&)>& on_report) {
  Options options = request.options;
  if (options.modes.empty()) {
    options.modes.push_back(Mode::kQ4F16);
    log().info("no mode given, using --q4f16");
  }
  options.validate();
  const std::vector<std::string> models =
      request.models.empty() ? std::vector<std::string>{""} : request.models;
  check_outputs(request, models, options.modes);
  if ((!options.plan.empty() || !options.plan_out.empty()) &&
      models.size() * options.modes.size() != 1) {
    fail(ExitCode::kUsage, "--plan and --plan-out are for one model and one mode");
  }
  PrecisionPlan replayed;
  if (!options.plan.empty()) {
    replayed = read_plan(options.plan);
    const std::string mode = mode_info(options.modes[0]).suffix;
    if (!replayed.mode.empty() && replayed.mode != mode) {
      fail(ExitCode::kUsage, "{}: a plan for {}, not {}", options.plan, replayed.mode, mode);
    }
  }

  for (const auto& model_path : models) {
    auto start = std::chrono::steady_clock::now();
    Model source = model_path.empty() ? load_embedded_model() : load_model(model_path);
    const double load_seconds = seconds_since(start);
    log().debug("{}: loaded in {:.2f} s ({} bytes)", source.source, load_seconds, source.bytes);
    const RunData data = open_run_data(options, source);
    for (Mode mode : options.modes) {
      auto mode_start = std::chrono::steady_clock::now();
      Model model = copy_model(source);
      OutputReport report;
      report.input = source.source;
      report.mode = mode_info(mode).flag;
      report.options = options.describe(mode);
      PrecisionPlan plan;
      plan.mode = mode_info(mode).suffix;
      plan.entries = replayed.entries;
      for (auto& e : apply_rules(source, options.tensor_types))
        plan.entries.push_back(std::move(e));
      if (!plan.entries.empty()) report.passes.push_back(plan_result(plan));
      Options mode_options = options;
      if (auto refined = choose_refinements(source, mode, mode_options, data, plan.by_node())) {
        report.passes.push_back(std::move(*refined));
      }
      report.options = mode_options.describe(mode);
      std::optional<SearchOutcome> search;  // its entries are listed by the target section
      if (!options.targets.empty()) {
        search = search_precisions(source, mode, mode_options, data, plan);
        plan.entries.insert(plan.entries.end(), search->raised.begin(), search->raised.end());
      }
      std::vector<PassResult> results = run_passes(model, mode, mode_options, data, plan.by_node());
      if (search) {
        report.passes.push_back(target_result(*search, mode, mode_options, source, model, results,
                                              plan, *data.evaluation));
      }
      for (auto& r : results) report.passes.push_back(std::move(r));
      if (data.evaluation) {
        const auto verify_start = std::chrono::steady_clock::now();
        report.verification = search ? search->best : verify(source, model, *data.evaluation);
        log().debug("verification: {} sample(s), {:.2f} s", data.evaluation->count,
                    seconds_since(verify_start));
        record_verification(model, *report.verification);
      }
      report.bytes_before = source.bytes;
      report.dry_run = request.dry_run;
      const fs::path out = output_path(request, model_path, mode);
      report.output = out.string();
      if (search && !search->met) {
        report.not_written = "the target was not met";
        report.bytes_after = encoded_size(model, request.external_data);
        report.seconds = seconds_since(mode_start) + load_seconds / options.modes.size();
        on_report(report);
        fail(ExitCode::kTarget, "{}: {} not met even with {} of {} node(s) raised; nothing written",
             source.source, describe_targets(options.targets), search->raised.size(),
             search->candidates);
      }
      if (!options.plan_out.empty() && !request.dry_run) write_plan(plan, options.plan_out);
      if (request.dry_run) {
        report.bytes_after = encoded_size(model, request.external_data);
      } else {
        for (const auto& file : source.files) {  // e.g. a data file named like <output>.data
          if (same_file(file, out) || same_file(file, fs::path(out.string() + ".data"))) {
            fail(ExitCode::kUsage, "{}: writing {} would overwrite this input file", file.string(),
                 out.string());
          }
        }
        SaveOptions save;
        save.external_data = request.external_data;
        if (request.progress) {
          save.progress = [&](uint64_t done, uint64_t total) {
            request.progress(out, done, total);
          };
        }
        SaveResult saved = save_model(model, out, save);
        report.bytes_after = saved.model_bytes + saved.data_bytes;
        if (!saved.data_path.empty()) report.output += " + " + saved.data_path.filename().string();
      }
      report.seconds = seconds_since(mode_start) + load_seconds / options.modes.size();
      on_report(report);
    }
  }
}

bool run_test_data(const DataRunRequest& request,
                   const std::function<void(const DataSetResult&)>& on_set) {
  Model model = load_model(request.model);
  Executor executor(model);
  bool all_within = true;
  const auto& graph = model.proto.graph();
  for (const auto& data : request.data) {
    for (const fs::path& dir : test_data_dirs(data)) {
      const auto inputs = read_test_inputs(dir, executor.input_names().size(),
                                           declared_types(graph, executor.input_names()));
      std::vector<Tensor> outputs;
      DataSetResult result;
      result.dir = dir;
      result.seconds = 1e30;
      for (int r = 0; r < std::max(1, request.repeat); ++r) {  // the best of `repeat` runs
        auto start = std::chrono::steady_clock::now();
        outputs = executor.run(inputs);
        result.seconds = std::min(result.seconds, seconds_since(start));
      }
      const auto expected = read_test_outputs(dir, declared_types(graph, executor.output_names()));
      for (size_t i = 0; i < outputs.size(); ++i) {
        DataSetResult::Output out;
        out.name = executor.output_names()[i];
        out.value = &outputs[i];
        if (i < expected.size()) {
          out.compared = true;
          out.agreement = compare(outputs[i], expected[i], request.rtol, request.atol);
          all_within &= out.agreement.within;
        }
        if (!request.save.empty()) {
          fs::path out_dir = fs::path(request.save) / dir.filename();
          fs::create_directories(out_dir);
          write_tensor_pb(out_dir / fmt::format("output_{}.pb", i), outputs[i], out.name);
        }
        result.outputs.push_back(std::move(out));
      }
      on_set(result);
    }
  }
  return all_within;
}

}  // namespace quantize
