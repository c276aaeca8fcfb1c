// `qsig predict`, `qsig quantize`, `qsig backtest`, `qsig inspect` and `qsig export` as
// functions with option structs (one file each in server/commands/, which also maps the
// command-line flags onto them); they print for a person to `log`. They read the CSV written by
// `qsig features` (header `locate,symbol,msg_seq,exchange_ts_ns,mid,<feature names>,label`); a
// recurrent model's window for a row is that row and the window()-1 rows before it of the same
// locate, oldest first. Model features are matched to CSV columns by name (or by position when an
// imported model has only the default names f0.. and the counts match). Thread-safety: reentrant;
// each call owns everything it uses.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/models/evaluation.h"
#include "qsig/models/io/feature_file.h"
#include "qsig/models/io/import.h"
#include "qsig/models/io/onnx_export.h"
#include "qsig/models/model.h"

namespace qsig::commands {

using models::Int8Options;
using models::io::ImportOptions;

// qsig predict --model FILE --input FEATURES.csv [--precision int8|fp32] -o OUT.csv
struct PredictCommandOptions {
  std::string model_path;  // --model: .json, .onnx, .pt/.ts or .qsig.
  std::string input_csv;   // --input: any table ReadFeatureTable reads (CSV, .npy, .npz, ...).
  models::io::TableOptions table;  // --instrument-col / --time-col (features: the model's).
  std::string output_csv;  // -o: `locate,msg_seq,exchange_ts_ns,output`, one line per input row;
                           // output is empty for rows without a full window.
  std::string precision = "fp32";  // --precision: "fp32" or "int8".
  // INT8 from a model that is not a .qsig artifact: calibrate on the windows ending in the first
  // `calib_rows` rows (--calib-rows) with `int8` (--method / --per-channel as for quantize).
  size_t calib_rows = 5000;
  Int8Options int8;
  ImportOptions import;         // --window, --feature-names, ... for ONNX / TorchScript.
  std::ostream* log = nullptr;  // Summary lines; nullptr = std::cout.
};

struct PredictSummary {
  std::string format;       // Model format read.
  std::string precision;    // precision() of the runtime that ran: fp32, int8 or mixed.
  size_t rows = 0;          // Input rows.
  size_t outputs = 0;       // Rows with a full window (non-empty output).
  std::string column_note;  // How features were matched to columns.
};

absl::StatusOr<PredictSummary> RunPredict(const PredictCommandOptions& options);

// qsig quantize --model FILE --calib FEATURES.csv --method minmax|ema|percentile|entropy|mse
//               [--per-channel] [--mixed auto --budget X] -o MODEL.qsig
struct QuantizeCommandOptions {
  std::string model_path;             // --model.
  std::string calib_csv;              // --calib: any table ReadFeatureTable reads.
  models::io::TableOptions table;     // --instrument-col / --time-col.
  std::string output_path;            // -o: the .qsig artifact.
  std::string report_json;            // --report; "" = output_path + ".report.json".
  std::string method = "percentile";  // --method (quant::ParseCalibrationMethod names).
  double percentile = 99.99;          // --percentile, for method percentile.
  // --per-channel: weights are always per-channel (one scale per output row: the only form the
  // runtime has); this adds per-feature (per-channel) quantization of the model's input
  // (Int8Options::per_feature_input) and keeps it at u8 rather than s16.
  bool per_channel = false;
  // --mixed auto: choose a mixed-precision plan (Int8Options::layers, stored in the artifact)
  // whose INT8 output error stays within `budget` (--budget: RMSE as a fraction of the FP32
  // output's RMS) on the calibration windows, upgrading the most sensitive layers first
  // (models::ChooseMixedPlan): each to s16 activations, then, if still over budget, to FP32.
  // "off" (default): the default plan with its accuracy guard (Int8Options::max_rmse).
  std::string mixed = "off";
  double budget = 0.01;
  // --reduce-range: 7-bit weights (Int8Options::reduce_range), for serving on CPUs without VNNI.
  bool reduce_range = false;
  // --no-source-ranges: calibrate every tensor, ignoring input ranges the model file carries
  // (ModelSpec::input_ranges from ONNX QDQ scales or `qsig qat`); Int8Options::use_source_ranges.
  bool source_ranges = true;
  // The last `holdout_fraction` of the rows (by file order, i.e. time) is held out: never used for
  // calibration, only for the report.
  double holdout_fraction = 0.2;
  size_t max_calib_windows = 4096;        // Sub-sampled evenly; <= kMaxStoredWindows.
  size_t max_eval_windows = 50000;        // Held-out windows scored (sub-sampled evenly).
  size_t max_sensitivity_windows = 5000;  // Of those, for the per-layer analysis.
  ImportOptions import;
  std::ostream* log = nullptr;  // The readable table; nullptr = std::cout.
};

struct LayerReport {
  std::string layer;         // QuantizableLayers name: "lstm[0]", "layers[0]", ...
  double rmse_over_rms = 0;  // Model output error with only this layer INT8.
  double sign_agreement = 0;
  double output_sqnr_db = 0;  // -20 log10(rmse_over_rms).
  double weight_sqnr_db = 0;  // Per-channel s8 weights vs FP32 (all matrices of the layer).
};

struct QuantizeReport {
  std::string model_name, model_format, source_sha256, artifact_sha256, method;
  bool per_channel_input = false;
  size_t rows = 0, calib_windows_seen = 0, calib_windows_used = 0, eval_windows = 0;
  size_t labelled_eval_windows = 0;
  int64_t calib_first_ts_ns = -1, calib_last_ts_ns = -1;
  size_t fp32_weight_bytes = 0, int8_weight_bytes = 0;
  std::string int8_precision;  // "int8" or "mixed".
  double rmse = 0, rmse_over_rms = 0, max_abs_error = 0, sign_agreement = 0;
  // Information coefficient against the labels: Spearman rank correlation (and Pearson).
  double ic_spearman_fp32 = 0, ic_spearman_int8 = 0, ic_pearson_fp32 = 0, ic_pearson_int8 = 0;
  std::vector<LayerReport> layers;  // Most sensitive first.
  // The plan in the artifact, per QuantizableLayers name ("int8", "int8_s16", "fp32"); empty
  // for the default plan. With --mixed auto, the search that chose it and whether it met the
  // budget.
  std::vector<std::pair<std::string, std::string>> plan;
  std::vector<models::PlanStep> plan_search;  // models::ChooseMixedPlan's steps.
  bool budget_met = true;
  size_t source_ranges_used = 0;  // Layer inputs quantized on the model file's own ranges.
  std::string json;               // The report as written to report_json.
};

absl::StatusOr<QuantizeReport> RunQuantize(const QuantizeCommandOptions& options);

// qsig backtest --model FILE --input FEATURES.csv [--calib-rows N] [--horizon-label H]
//               [-o REPORT.json]   (`qsig replay`: the same, deprecated name)
// Runs the model in FP32 and INT8 side by side over a feature CSV and reports, for both, what a
// desk looks at: INT8-vs-FP32 output error, information coefficient against the label, hit rate
// and the Sharpe ratio of a naive sign strategy (pnl per row = sign(output) * label, in bps;
// models::ComputeTradingMetrics).
// Scored rows: every row with a full window and a finite label, except, when INT8 is calibrated
// on this file (the model is not a .qsig artifact), the first `calib_rows` rows (in-sample for
// the calibration); rows without a label still count for the output-error figures.
struct BacktestOptions {
  std::string model_path;  // --model: .json, .onnx, .pt/.ts or .qsig (INT8 from the artifact).
  std::string input_csv;   // --input: any table ReadFeatureTable reads, with labels.
  models::io::TableOptions table;  // --instrument-col / --time-col.
  std::string report_json;         // -o: the JSON report; "" = none (the table is always printed).
  // --calib-rows: INT8 for a model that is not a .qsig artifact is calibrated on the windows
  // ending in the first calib_rows rows, with `int8` (--method / --per-channel as quantize).
  size_t calib_rows = 5000;
  // --horizon-label H: the label is a forward return over H updates of the instrument (`qsig
  // features --horizon`), so consecutive rows' pnl overlap and the per-row Sharpe overstates
  // the independent bets. With H > 0 the report adds the Sharpe over non-overlapping rows
  // (every H-th scored row of each instrument). 0 = not reported.
  int horizon_label = 0;
  Int8Options int8;
  ImportOptions import;
  std::ostream* log = nullptr;  // The readable table; nullptr = std::cout.
};

// qsig bench --model FILE [--calib FEATURES] [--mode full|window|step|all]
//            [--precision int8|fp32|both] [--iterations N] [--json]
// Latency of one inference on this core with the server's runtimes: `full` runs Run() on the
// whole window; `window` pushes one tick with the next window's prefix precomputed between ticks
// (Model::PrecomputeWindow, untimed, as the server does in idle time); `step` one streaming
// Step(). MACs are those of the timed path (the same for INT8 and FP32).
struct BenchOptions {
  std::string model_path;  // --model.
  std::string calib_path;  // --calib: any feature table; "" = synthetic from the normalization.
  models::io::TableOptions table;  // --instrument-col / --time-col.
  std::string mode = "all";        // --mode.
  std::string precision = "both";  // --precision.
  int iterations = 10000;          // --iterations, per (mode, precision).
  bool json = false;               // --json: print BenchReport::json only.
  ImportOptions import;            // --window.
  std::ostream* log = nullptr;     // nullptr = std::cout.
};

struct BenchResult {
  std::string mode, precision;
  double p50_us = 0, p99_us = 0, p999_us = 0;
  int iterations = 0;
  int64_t macs = 0;        // Multiply-accumulates per inference on the timed path.
  double gmacs_per_s = 0;  // macs / p50 inference time.
};

struct BenchReport {
  std::string model, arch, isa;
  std::vector<BenchResult> results;
  std::vector<std::string> notes;  // Calibration source, window source.
  // {"model","arch","isa","results":[{"mode","precision","p50_us","p99_us","p999_us",
  //  "iterations","macs","gmacs_per_s"}]}
  std::string json;
};

absl::StatusOr<BenchReport> RunBench(const BenchOptions& options);

struct BacktestReport {
  std::string model_name, model_format;
  std::string int8_precision;  // "int8" or "mixed".
  std::string int8_source;     // "artifact" or "calibrated on rows 0..N-1 of <csv>".
  size_t rows = 0;             // Rows in the file.
  size_t first_scored_row = 0;
  size_t output_rows = 0;    // Scored rows with a full window (output-error figures).
  size_t labelled_rows = 0;  // Of those, with a finite label (trading figures).
  // INT8 vs FP32 over output_rows.
  double rmse = 0, rmse_over_rms = 0, max_abs_error = 0, sign_agreement = 0;
  models::TradingMetrics fp32, int8;  // Over the labelled rows.
  std::string json;                   // The report as written to report_json.
};

absl::StatusOr<BacktestReport> RunBacktest(const BacktestOptions& options);

// qsig inspect MODEL [--json]
// What a model file is, without running it on data: format, architecture, features and
// normalization, source hash; for a .qsig artifact also its provenance (format version, content
// SHA-256, qsig build, creation time, source file and format), the calibration (method, options,
// plan, windows stored and seen, their time span, kernel ISA of the reference outputs) and the
// recorded activation ranges, and whether this build rebuilds the INT8 runtime the artifact
// validated (BuildInt8Model). Fails only if the file cannot be loaded; a rebuild that fails is
// reported (verified = false, with the reason).
struct InspectOptions {
  std::string model_path;
  bool json = false;            // --json: print the JSON document instead of the table.
  ImportOptions import;         // --window for an imported recurrent model.
  std::ostream* log = nullptr;  // nullptr = std::cout.
};

struct InspectReport {
  std::string format;
  bool artifact = false;
  bool verified = false;  // Artifacts: the INT8 runtime rebuilt and matched its reference.
  std::string verify_message;
  std::string json;
};

absl::StatusOr<InspectReport> RunInspect(const InspectOptions& options);

// qsig export --onnx-qdq MODEL.qsig -o OUT.onnx: models::io::ExportOnnxQdq
// (qsig/models/io/onnx_export.h), with a summary printed to `log`.
struct ExportOptions {
  std::string artifact_path;    // --onnx-qdq: a .qsig artifact (ReadArtifact verifies it).
  std::string output_path;      // -o: the .onnx file.
  std::ostream* log = nullptr;  // Summary lines; nullptr = std::cout.
};

using ExportSummary = models::io::OnnxExportSummary;

absl::StatusOr<ExportSummary> RunExportOnnxQdq(const ExportOptions& options);

}  // namespace qsig::commands
