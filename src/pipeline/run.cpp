// quantize_files and run_test_data (see quantize/run.h).
#include "quantize/run.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <map>
#include <optional>
#include <set>

#include "model/payload.h"
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

// A model to quantize: its path ("" for the built-in one), and for a model found in a folder,
// that folder's path to it (where its outputs go under --output-dir).
struct Job {
  std::string path;
  fs::path subdir;
  bool found = false;  // in a folder
};

// The models of the request, folders expanded (name order).
std::vector<Job> expand_models(const RunRequest& request) {
  if (request.models.empty()) return {Job{}};
  std::vector<Job> jobs;
  for (const auto& m : request.models) {
    std::error_code ec;
    if (!fs::is_directory(m, ec)) {
      jobs.push_back({m, {}, false});
      continue;
    }
    std::vector<fs::path> found;
    auto consider = [&](const fs::directory_entry& e) {
      std::error_code e2;
      if (e.is_regular_file(e2) && e.path().extension() == ".onnx") found.push_back(e.path());
    };
    try {
      if (request.recursive) {
        for (const auto& e :
             fs::recursive_directory_iterator(m, fs::directory_options::skip_permission_denied)) {
          consider(e);
        }
      } else {
        for (const auto& e : fs::directory_iterator(m)) consider(e);
      }
    } catch (const fs::filesystem_error& e) {
      fail(ExitCode::kInput, "{}: cannot list the folder: {}", m, e.code().message());
    }
    if (found.empty()) {
      fail(ExitCode::kInput, "{}: no .onnx file in this folder{}", m,
           request.recursive ? " or below" : " (--recursive looks in subfolders)");
    }
    std::sort(found.begin(), found.end());
    for (const auto& f : found) {
      jobs.push_back({f.string(), f.parent_path().lexically_relative(m), true});
    }
  }
  return jobs;
}

fs::path job_output(const RunRequest& request, const Job& job, Mode mode) {
  fs::path out = output_path(request, job.path, mode);
  if (job.found && !request.output_dir.empty() && request.output.empty()) {
    out = fs::path(request.output_dir) / job.subdir / out.filename();
  }
  return out;
}

void check_outputs(const RunRequest& request, const std::vector<Job>& jobs,
                   const std::vector<Mode>& modes) {
  if (!request.output.empty() && jobs.size() * modes.size() != 1) {
    fail(ExitCode::kUsage,
         "-o/--output names one file: give one model and one mode (or use --output-dir)");
  }
  // The inputs by file identity (links and symlinks included), so a zoo of n models costs n
  // lookups, not n^2 comparisons.
  std::map<std::pair<dev_t, ino_t>, std::string> inputs;
  auto identity = [](const fs::path& p) -> std::optional<std::pair<dev_t, ino_t>> {
    struct stat st;
    if (::stat(p.c_str(), &st) != 0) return std::nullopt;
    return std::make_pair(st.st_dev, st.st_ino);
  };
  for (const auto& job : jobs) {
    if (auto id = identity(job.path)) inputs.emplace(*id, job.path);
  }
  std::set<fs::path> seen;
  for (const auto& job : jobs) {
    for (Mode mode : modes) {
      fs::path out = job_output(request, job, mode);
      if (!seen.insert(fs::absolute(out).lexically_normal()).second) {
        fail(ExitCode::kUsage, "two outputs would both be written to {}", out.string());
      }
      if (auto id = identity(out); id && inputs.count(*id)) {
        fail(ExitCode::kUsage, "{}: refusing to overwrite the input", inputs.at(*id));
      }
      std::error_code ec;
      fs::path parent = out.parent_path().empty() ? fs::path(".") : out.parent_path();
      if (!request.dry_run && !fs::is_directory(parent, ec) && !job.found) {
        fail(ExitCode::kOutput, "{}: the output folder does not exist", parent.string());
      }
    }
  }
}

constexpr uint64_t kFnvOffset = 1469598103934665603ull, kFnvPrime = 1099511628211ull;

// FNV-1a over bytes, continuing from h.
uint64_t fnv1a(const char* p, size_t n, uint64_t h = kFnvOffset) {
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(p[i])) * kFnvPrime;
  return h;
}

// A 64-bit hash of the files' bytes and sizes, for the up-to-date check: four FNV-1a-style lanes
// over 8-byte words (so it keeps up with the disk), folded together at the end. Read through a
// mapping (no copy into a buffer: that copy was half of --int8's time on a 4.4 GB model), given
// back window by window so memory stays flat.
std::string files_hash(const std::vector<fs::path>& files) {
  constexpr uint64_t kPrime = kFnvPrime;
  constexpr uint64_t kWindow = uint64_t{64} << 20;  // a multiple of 32: only the end has a tail
  uint64_t lane[4] = {kFnvOffset, 2, 3, 4};
  for (const auto& f : files) {
    const auto file = MappedFile::open(f);  // refuses special files
    const char* bytes = reinterpret_cast<const char*>(file->data());
    const uint64_t size = file->size();
    for (uint64_t at = 0; at < size; at += kWindow) {
      const uint64_t n = std::min(kWindow, size - at);
      const char* p = bytes + at;
      uint64_t i = 0;
      for (; i + 32 <= n; i += 32) {
        uint64_t w[4];
        std::memcpy(w, p + i, 32);
        for (int l = 0; l < 4; ++l) lane[l] = (lane[l] ^ w[l]) * kPrime;
      }
      lane[0] = fnv1a(p + i, n - i, lane[0]);  // the tail
      file->release(at, n);
    }
    lane[1] = (lane[1] ^ size) * kPrime;
  }
  uint64_t h = lane[0];
  for (int l = 1; l < 4; ++l) h = (h ^ lane[l]) * kPrime;
  return fmt::format("{:016x}", h);
}

// Everything the user asked that shapes an output: the mode's options as requested, the data,
// and the per-node precisions (whether typed, replayed from a plan or found by --target: a
// replayed plan makes the same output, byte for byte).
std::string request_key(const RunRequest& request, const Options& options, Mode mode,
                        const PrecisionPlan& plan) {
  std::string s = options.describe(mode);
  s += fmt::format(" calib={} calib_samples={} eval={} holdout={}", options.calib,
                   options.calib_samples, options.eval, options.holdout);
  if (request.external_data) s += " external_data";
  for (const auto& [node, precision] : plan.by_node()) {
    s += fmt::format(" {}={}", node, precision_name(precision));
  }
  return fmt::format("{:016x}", fnv1a(s.data(), s.size()));  // the precisions can be many
}

// The output exists and its provenance says this tool made it from these bytes, asked the same.
bool up_to_date(const fs::path& out, const std::string& hash, const std::string& key) {
  try {
    Model made = load_model(out.string());
    return get_metadata(made.proto, "quantize.version") == QUANTIZE_VERSION &&
           get_metadata(made.proto, "quantize.input_hash") == hash &&
           get_metadata(made.proto, "quantize.request") == key;
  } catch (const Error&) {
    return false;  // unreadable: not up to date
  }
}

// The figures in the output's metadata_props (quantize.verify), one line per output.
void record_verification(Model& model, const Verification& v) {
  std::string text =
      fmt::format("{} sample(s){}: {}", v.samples, v.synthetic ? " (synthetic)" : "", v.data);
  for (const auto& o : v.outputs) text += fmt::format("\n{}: {}", o.name, describe(o));
  set_metadata(model.proto, "quantize.verify", text);
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

// --calib-method auto (min/max or mse ranges), and --equalize / --bias-correction auto on a model
// with Conv or Gemm, static INT8: every combination of what is left to auto is built and judged
// on the calibration share, cross-fitted: calibrated on its even samples and judged on its odd
// ones, then the other way round (the refinements and the ranges fit the calibration data, so
// judging on the samples they were fitted on favours them: on BlazeFace front, bias correction
// measured 0.989 -> 0.994 in-sample but cost 0.004 on other photos). At most kRefineSamples
// samples per half: the cost stays a few candidate runs whatever the calibration size; the
// held-out share stays for the final verdict. The best mean of the two halves' worst-output
// cosines wins; a candidate is kept only when it gains over the ones before it (min/max before
// mse, no refinement before one). With one calibration sample, it is judged in-sample. Resolves
// the options (auto becomes min/max or mse, on or off) and says what was measured.
constexpr size_t kRefineSamples = 4;
// mse ranges clip what the calibration share saw rarely, which unseen inputs may need: they must
// beat the best min/max candidate by this much. On MNIST (fed photos) mse won the cross-fit by
// 0.0012 and lost 0.0015 on other photos; on YOLOX-nano and the PaddleOCR classifier it won by
// 0.0028 and 0.0086 and gained 0.0024 and 0.0073 there (tools/target_check.sh).
constexpr double kMseMargin = 0.002;
std::optional<PassResult> choose_refinements(const Model& source, Mode mode, Options& options,
                                             const RunData& data, const Precisions& precisions) {
  const bool auto_ranges = options.calib_method == CalibMethod::kAuto;
  if (auto_ranges) options.calib_method = CalibMethod::kMinMax;  // unless mse measures better
  auto choices = [](Toggle t) {
    return t == Toggle::kAuto ? std::vector<Toggle>{Toggle::kOff, Toggle::kOn}
                              : std::vector<Toggle>{t};
  };
  bool weighted = false;  // what the refinements apply to
  for (const auto& n : source.proto.graph().node()) {
    weighted |= n.op_type() == "Conv" || n.op_type() == "Gemm";
  }
  const std::vector<Toggle> equalize = choices(weighted ? options.equalize : Toggle::kOff),
                            correct = choices(weighted ? options.bias_correction : Toggle::kOff);
  // mse ranges minimise an 8-bit grid's error: 16-bit activations keep min/max. So does
  // calibration data that cannot judge them: synthetic, or one sample (judged on itself).
  const bool wide = options.activations == ActivationType::kInt16 ||
                    options.activations == ActivationType::kUInt16;
  const bool measurable =
      data.calibration && !data.calibration->synthetic && data.calibration->count >= 2;
  const std::vector<CalibMethod> ranges =
      auto_ranges && !wide && measurable
          ? std::vector<CalibMethod>{CalibMethod::kMinMax, CalibMethod::kMse}
          : std::vector<CalibMethod>{options.calib_method};
  if (options.equalize == Toggle::kAuto) options.equalize = Toggle::kOff;
  if (options.bias_correction == Toggle::kAuto) options.bias_correction = Toggle::kOff;
  if (mode_info(mode).family != ModeFamily::kStaticInt8 || !data.calibration ||
      ranges.size() * equalize.size() * correct.size() == 1) {
    return std::nullopt;
  }

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
  double best = -2, best_minmax = -2;
  std::string figures, best_name;
  const Options base = options;
  for (CalibMethod method : ranges) {
    for (Toggle bc : correct) {
      for (Toggle eq : equalize) {
        Options candidate = base;
        candidate.calib_method = method;
        candidate.equalize = eq;
        candidate.bias_correction = bc;
        std::string name = eq == Toggle::kOn && bc == Toggle::kOn ? "both"
                           : eq == Toggle::kOn                    ? "equalization"
                           : bc == Toggle::kOn                    ? "bias correction"
                                                                  : "neither";
        if (ranges.size() > 1) name = fmt::format("{}, {} ranges", name, calib_method_name(method));
        const double cosine = score(candidate);
        figures += fmt::format("{}{} {:.5f}", figures.empty() ? "" : ", ", name, cosine);
        // A later (more refined) candidate must gain; mse ranges also kMseMargin over min/max's.
        const bool against_minmax = method == CalibMethod::kMse && ranges.size() > 1;
        if (cosine > best + 1e-5 && (!against_minmax || cosine > best_minmax + kMseMargin)) {
          best = cosine;
          best_name = name;
          options.calib_method = method;
          options.equalize = eq;
          options.bias_correction = bc;
        }
        if (method == CalibMethod::kMinMax) best_minmax = std::max(best_minmax, cosine);
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

// Loads one model and writes its outputs, one per mode (see quantize_files).
void quantize_one(const RunRequest& request, const Options& options, const PrecisionPlan& replayed,
                  const Job& job, BatchSummary& summary,
                  const std::function<void(const OutputReport&)>& on_report) {
  auto start = std::chrono::steady_clock::now();
  Model source = job.path.empty() ? load_embedded_model() : load_model(job.path);
  const double load_seconds = seconds_since(start);
  if (job.found && !get_metadata(source.proto, "quantize.version").empty()) {
    log().info("{}: made by quantize ({}), not an input: skipped", job.path,
               get_metadata(source.proto, "quantize.mode"));
    summary.not_inputs.push_back(job.path);
    return;
  }
  // The input's bytes hashed for the provenance (not for the built-in model), on a thread of its
  // own while the passes run: reading gigabytes once more is the price of the up-to-date check.
  std::shared_future<std::string> hashing;
  if (!source.files.empty() && !request.dry_run) {
    hashing = std::async(std::launch::async, files_hash, source.files).share();
  }
  auto input_hash = [&] { return hashing.get(); };
  log().debug("{}: loaded in {:.2f} s ({} bytes)", source.source, load_seconds, source.bytes);
  const RunData data = open_run_data(options, source);
  for (Mode mode : options.modes) {
    auto mode_start = std::chrono::steady_clock::now();
    std::string key;  // the request, for the provenance and the up-to-date check
    // With the final per-node precisions known: true when the output is up to date (reported,
    // counted); an error when it exists otherwise (without --force).
    auto skip_existing = [&](const PrecisionPlan& plan) {
      key = request_key(request, options, mode, plan);
      const fs::path out = job_output(request, job, mode);
      if (std::error_code ec; request.force || request.dry_run || !fs::exists(out, ec)) {
        return false;
      }
      if (source.files.empty() || !up_to_date(out, input_hash(), key)) {
        fail(ExitCode::kOutput, "{} exists (use --force to replace it)", out.string());
      }
      OutputReport skipped;
      skipped.input = source.source;
      skipped.output = out.string();
      skipped.up_to_date = true;
      on_report(skipped);
      ++summary.up_to_date;
      return true;
    };
    OutputReport report;
    report.input = source.source;
    report.mode = mode_info(mode).flag;
    report.options = options.describe(mode);
    PrecisionPlan plan;
    plan.mode = mode_info(mode).suffix;
    plan.entries = replayed.entries;
    for (auto& e : apply_rules(source, options.tensor_types)) plan.entries.push_back(std::move(e));
    if (!plan.entries.empty()) report.passes.push_back(plan_result(plan));
    if (options.targets.empty() && skip_existing(plan)) continue;
    Options mode_options = options;
    if (auto refined = choose_refinements(source, mode, mode_options, data, plan.by_node())) {
      report.passes.push_back(std::move(*refined));
    }
    report.options = mode_options.describe(mode);
    std::optional<SearchOutcome> search;  // its entries are listed by the target section
    if (!options.targets.empty()) {
      search = search_precisions(source, mode, mode_options, data, plan);
      plan.entries.insert(plan.entries.end(), search->raised.begin(), search->raised.end());
      if (skip_existing(plan)) continue;  // only now are the precisions known
    }
    Model model = copy_model(source);
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
    const fs::path out = job_output(request, job, mode);
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
      if (!source.files.empty()) {
        set_metadata(model.proto, "quantize.input_hash", input_hash());
        set_metadata(model.proto, "quantize.request", key);
      }
      if (job.found) fs::create_directories(out.parent_path());
      SaveOptions save;
      save.external_data = request.external_data;
      if (request.progress) {
        save.progress = [&](uint64_t done, uint64_t total) { request.progress(out, done, total); };
      }
      SaveResult saved = save_model(model, out, save);
      report.bytes_after = saved.model_bytes + saved.data_bytes;
      if (!saved.data_path.empty()) report.output += " + " + saved.data_path.filename().string();
    }
    report.seconds = seconds_since(mode_start) + load_seconds / options.modes.size();
    if (!request.dry_run) ++summary.written;
    on_report(report);
  }
}

BatchSummary quantize_files(const RunRequest& request,
                            const std::function<void(const OutputReport&)>& on_report) {
  Options options = request.options;
  options.apply_runtime();  // (it may choose the static mode)
  if (options.modes.empty()) {
    options.modes.push_back(Mode::kQ4F16);
    log().info("no mode given, using --q4f16");
  }
  options.validate();
  std::vector<Job> jobs = expand_models(request);
  BatchSummary summary;
  {  // a file found in a folder that this run would write is an earlier output, not an input
    std::set<fs::path> outputs;
    for (const auto& job : jobs) {
      for (Mode mode : options.modes) {
        outputs.insert(fs::absolute(job_output(request, job, mode)).lexically_normal());
      }
    }
    std::vector<Job> inputs;
    for (auto& job : jobs) {
      if (job.found && outputs.count(fs::absolute(job.path).lexically_normal())) {
        summary.not_inputs.push_back(job.path);
      } else {
        inputs.push_back(std::move(job));
      }
    }
    jobs = std::move(inputs);
  }
  if (request.shards > 0) {  // every N-th model of the list: deterministic for the same list
    std::vector<Job> share;
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (static_cast<int>(i % request.shards) == request.shard - 1) share.push_back(jobs[i]);
    }
    log().info("--shard {}/{}: {} of {} model(s)", request.shard, request.shards, share.size(),
               jobs.size());
    jobs = std::move(share);
  }
  check_outputs(request, jobs, options.modes);
  if ((!options.plan.empty() || !options.plan_out.empty()) &&
      jobs.size() * options.modes.size() != 1) {
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

  summary.models = jobs.size();
  for (const auto& job : jobs) {
    try {
      quantize_one(request, options, replayed, job, summary, on_report);
    } catch (const std::exception& e) {
      if (!request.keep_going) throw;
      log().error("{}", e.what());  // errors name the file they are about
      summary.failed.emplace_back(job.path, e.what());
    }
  }
  return summary;
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
