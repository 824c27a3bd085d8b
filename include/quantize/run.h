// The tool's two jobs as library calls: quantizing model files (each model loaded once, one
// output per mode, written through temporary files), and running a model on ONNX test data.
// Both report through callbacks and print nothing; the command line prints.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "quantize/executor.h"
#include "quantize/options.h"
#include "quantize/report.h"

namespace quantize {

struct RunRequest {
  std::vector<std::string> models;  // model files; empty: the built-in model
  Options options;                  // options.modes: one output per mode (empty: --q4f16)
  std::string output;               // one model, one mode: this file
  std::string output_dir;           // else <stem>_<suffix>.onnx here (default: beside the model)
  bool force = false;               // replace outputs that exist
  bool external_data = false;
  bool dry_run = false;  // run the passes, write nothing
  // While an output is written (done / total bytes).
  std::function<void(const std::filesystem::path& file, uint64_t done, uint64_t total)> progress;
};

// The output file of a model and mode ("" model: the built-in one).
std::filesystem::path output_path(const RunRequest& request, const std::string& model, Mode mode);

// Checks the whole request first (Error kUsage / kOutput before anything is written: bad
// options, two outputs to one file, an output that exists without force, the input as output),
// then loads each model once and for each mode runs its passes and writes the output, calling
// on_report after each. Throws Error on the first failure; outputs already written stay.
void quantize_files(const RunRequest& request,
                    const std::function<void(const OutputReport&)>& on_report);

struct DataRunRequest {
  std::string model;
  std::vector<std::string> data;  // test-data folders, or folders of test_data_set_* folders
  std::string save;               // write outputs as <save>/<set>/output_N.pb ("": do not)
  double rtol = 1e-3, atol = 1e-4;
  int repeat = 1;  // runs per set; the best time is reported
};

struct DataSetResult {
  std::filesystem::path dir;
  double seconds = 0;
  struct Output {
    std::string name;
    const Tensor* value = nullptr;  // valid during the callback
    bool compared = false;          // an expected output_N.pb was there
    Agreement agreement;
  };
  std::vector<Output> outputs;
};

// Runs the model in the executor on every data set, calling on_set after each. Returns whether
// every output with an expected value is within atol + rtol * |expected|.
bool run_test_data(const DataRunRequest& request,
                   const std::function<void(const DataSetResult&)>& on_set);

}  // namespace quantize
