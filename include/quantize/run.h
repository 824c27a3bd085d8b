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
  // Model files, or folders: every .onnx in one (`recursive`: in its subfolders too), in name
  // order, outputs under output_dir mirroring the folder's tree. Empty: the built-in model.
  std::vector<std::string> models;
  bool recursive = false;
  bool keep_going = false;    // a model that fails is reported and skipped; the others go on
  int shard = 0, shards = 0;  // --shard I/N: the I-th (1-based) of N shares of the models
  Options options;            // options.modes: one output per mode (empty: --q4f16)
  std::string output;         // one model, one mode: this file
  std::string output_dir;     // else <stem>_<suffix>.onnx here (default: beside the model)
  bool force = false;         // replace outputs that exist
  bool external_data = false;
  bool dry_run = false;  // run the passes, write nothing
  // While an output is written (done / total bytes).
  std::function<void(const std::filesystem::path& file, uint64_t done, uint64_t total)> progress;
};

// The output file of a model and mode ("" model: the built-in one).
std::filesystem::path output_path(const RunRequest& request, const std::string& model, Mode mode);

// What a batch did.
struct BatchSummary {
  size_t models = 0, written = 0, up_to_date = 0;
  std::vector<std::string> not_inputs;  // found in a folder, but outputs of this tool: skipped
  std::vector<std::pair<std::string, std::string>> failed;  // model, error (with keep_going)
};

// Checks the whole request first (Error kUsage / kOutput before anything is written: bad
// options, two outputs to one file, the input as output), then loads each model once and for
// each mode runs its passes and writes the output, calling on_report after each. An output that
// exists is replaced with `force`; without, it is skipped when up to date (its provenance
// metadata names this tool version, the same request and the same input bytes) and an error
// otherwise. Throws Error on the first failure (outputs already written stay), or with
// keep_going records it and goes on to the next model.
BatchSummary quantize_files(const RunRequest& request,
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

// `quantize diff`: where a quantized model's error enters. Both models run in the executor on the
// same data; every value of the quantized model that the float model has too (by name, or through
// the quantize.tensor_map the passes write: a DequantizeLinear output stands for the tensor it
// quantizes) is compared as it is produced.
struct DiffRequest {
  std::string float_model, quant_model;
  std::string data;    // formats as --calib
  size_t samples = 0;  // 0: all
};

struct DiffResult {
  struct Value {
    std::string name;        // in the quantized model
    std::string float_name;  // what it stands for in the float model
    std::string op;          // the node producing it in the quantized model
    OutputMetrics metrics;
    double loss_db = 0;      // SNR lost at this node: its inputs' worst SNR minus its own (>= 0)
    double added_noise = 0;  // noise power added at this node, relative to the signal's
  };
  std::string data;
  size_t samples = 0;
  std::vector<Value> values;  // in the quantized model's topological order
  std::vector<Value> outputs;
  int entry = -1;          // index into values: the first value as bad as the outputs
  std::vector<int> worst;  // indices into values: the ten that add the most noise, first
};

DiffResult diff_models(const DiffRequest& request);

}  // namespace quantize
