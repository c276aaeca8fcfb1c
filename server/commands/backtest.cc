// `qsig backtest` (and `qsig replay`, its deprecated name): a model in FP32 and INT8 side by
// side over a feature file, with the metrics a desk looks at (models::ComputeTradingMetrics).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "command.h"
#include "nlohmann/json.hpp"
#include "qsig/commands/model_commands.h"
#include "qsig/models/evaluation.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/feature_table.h"
#include "qsig/models/io/loader.h"
#include "qsig/models/status_macros.h"
#include "qsig/quant/calibration.h"
#include "report.h"
#include "table_flags.h"

namespace qsig::commands {
namespace {

using namespace models;      // NOLINT: the model types read plainly in command code.
using namespace models::io;  // NOLINT

nlohmann::json MetricsJson(const TradingMetrics& m) {
  nlohmann::json j = {{"ic_spearman", Num(m.ic_spearman)},
                      {"ic_pearson", Num(m.ic_pearson)},
                      {"hit_rate", Num(m.hit_rate)},
                      {"hit_rows", m.hit_rows},
                      {"mean_pnl_bps", Num(m.mean_pnl)},
                      {"pnl_std_bps", Num(m.pnl_std)},
                      {"sharpe_per_row", Num(m.sharpe)},
                      {"sharpe_per_instrument_mean", Num(m.sharpe_per_instrument)},
                      {"instruments", m.instruments}};
  if (m.non_overlapping_rows > 0) {
    j["sharpe_non_overlapping"] = Num(m.sharpe_non_overlapping);
    j["non_overlapping_rows"] = m.non_overlapping_rows;
  }
  return j;
}

}  // namespace

absl::StatusOr<BacktestReport> RunBacktest(const BacktestOptions& o) {
  std::ostream& log = o.log != nullptr ? *o.log : std::cout;
  if (o.horizon_label < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--horizon-label is ", o.horizon_label, "; expected >= 0"));
  }
  QSIG_ASSIGN_OR_RETURN(LoadedModel lm, LoadAnyModel(o.model_path, o.import));
  TableOptions table_options = o.table;
  table_options.features = lm.spec->feature_names;
  QSIG_ASSIGN_OR_RETURN(FeatureTable t, ReadFeatureTable(o.input_csv, table_options));
  std::string note;
  auto cols = MapColumns(*lm.spec, t, &note);
  if (!cols.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(o.input_csv, ": ", cols.status().message()));
  }
  const int window = lm.spec->window;
  BacktestReport rep;
  rep.model_name = lm.spec->name;
  rep.model_format = lm.format;
  rep.rows = t.rows();
  std::unique_ptr<Model> fp32 = MakeFp32Model(lm.spec);
  std::unique_ptr<Model> int8;
  if (lm.artifact.has_value()) {
    QSIG_ASSIGN_OR_RETURN(int8, BuildInt8Model(*lm.artifact));
    rep.int8_source = "artifact";
  } else {
    const size_t end = std::min(o.calib_rows, t.rows());
    const std::vector<size_t> rows = FullWindowRows(t, window, 0, end);
    if (rows.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          o.input_csv, ": no complete window of ", window, " rows in the first ", o.calib_rows,
          " rows to calibrate INT8 on; raise --calib-rows or use a .qsig artifact"));
    }
    QSIG_ASSIGN_OR_RETURN(int8,
                          CalibrateInt8Model(lm.spec, Windows(t, *cols, window, rows), o.int8));
    rep.first_scored_row = end;
    rep.int8_source = absl::StrCat("calibrated (", quant::CalibrationMethodName(o.int8.method),
                                   ") on rows 0..", end - 1, " of ", o.input_csv);
  }
  rep.int8_precision = int8->precision();
  const std::vector<size_t> rows = FullWindowRows(t, window, rep.first_scored_row, t.rows());
  if (rows.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(o.input_csv, ": no row with a complete window of ", window, " rows after row ",
                     rep.first_scored_row,
                     " (rows before it calibrate INT8); lower --calib-rows, give more "
                     "rows or use a .qsig artifact"));
  }
  rep.output_rows = rows.size();
  const size_t per = static_cast<size_t>(window) * cols->size();
  std::vector<float> x(per), ws(std::max(fp32->workspace_floats(), int8->workspace_floats()));
  std::vector<double> y_all, q_all;  // Every scored row, for the output-error figures.
  y_all.reserve(rows.size());
  q_all.reserve(rows.size());
  std::vector<double> yf, yq, lab;
  std::vector<uint32_t> loc;
  for (size_t r : rows) {
    WindowAt(t, *cols, window, r, x.data());
    const double y = fp32->Run(x, ws.data());
    const double q = int8->Run(x, ws.data());
    y_all.push_back(y);
    q_all.push_back(q);
    if (std::isfinite(t.labels[r])) {
      yf.push_back(y);
      yq.push_back(q);
      lab.push_back(t.labels[r]);
      loc.push_back(t.locate[r]);
    }
  }
  const models::OutputError err = models::CompareOutputs(q_all, y_all);
  rep.rmse = err.rmse;
  rep.rmse_over_rms = err.rmse_over_rms;
  rep.max_abs_error = err.max_abs;
  rep.sign_agreement = err.sign_agreement;
  rep.labelled_rows = lab.size();
  rep.fp32 = ComputeTradingMetrics(yf, lab, loc, o.horizon_label);
  rep.int8 = ComputeTradingMetrics(yq, lab, loc, o.horizon_label);

  nlohmann::json j;
  j["model"] = {{"name", rep.model_name},
                {"path", o.model_path},
                {"format", rep.model_format},
                {"window", window},
                {"input_size", lm.spec->input_size}};
  j["input"] = {{"path", o.input_csv},
                {"rows", rep.rows},
                {"first_scored_row", rep.first_scored_row},
                {"output_rows", rep.output_rows},
                {"labelled_rows", rep.labelled_rows},
                {"columns", note}};
  j["int8"] = {{"source", rep.int8_source}, {"precision", rep.int8_precision}};
  j["int8_vs_fp32"] = {{"rmse", Num(rep.rmse)},
                       {"rmse_over_rms", Num(rep.rmse_over_rms)},
                       {"max_abs_error", Num(rep.max_abs_error)},
                       {"sign_agreement", Num(rep.sign_agreement)}};
  j["fp32"] = MetricsJson(rep.fp32);
  j["int8_metrics"] = MetricsJson(rep.int8);
  j["horizon_label"] = o.horizon_label;
  j["definitions"] =
      "pnl per row = sign(output) * label (bps); sharpe = mean / population std of per-row pnl, "
      "not annualized; hit_rate over rows with non-zero output and label; "
      "sharpe_non_overlapping: every horizon_label-th scored row of each instrument";
  rep.json = j.dump(2);
  if (!o.report_json.empty()) {
    std::ofstream out(o.report_json);
    out << rep.json << "\n";
    if (!out) return absl::DataLossError(absl::StrCat(o.report_json, ": write failed"));
  }

  log << absl::StrFormat("backtest: %s (%s, window %d) over %s\n", rep.model_name, rep.model_format,
                         window, o.input_csv);
  log << "  window: " << WindowSource(o.model_path, lm.format, o.import, *lm.spec)
      << "; features: " << t.format << ", " << note << "\n";
  log << absl::StrFormat("  INT8 (%s): %s\n", rep.int8_precision, rep.int8_source);
  log << absl::StrFormat("  scored rows %zu..%zu: %zu with a full window, %zu labelled\n",
                         rep.first_scored_row, rep.rows - 1, rep.output_rows, rep.labelled_rows);
  log << absl::StrFormat(
      "  INT8 vs FP32: RMSE %.4g (%s of RMS), max |err| %.4g, sign agreement %s\n", rep.rmse,
      Pct(rep.rmse_over_rms), rep.max_abs_error, Pct(rep.sign_agreement));
  log << absl::StrFormat("  %-38s %12s %12s\n", "", "FP32", "INT8");
  auto row = [&log](const char* name, double a, double b) {
    log << absl::StrFormat("  %-38s %12.4f %12.4f\n", name, a, b);
  };
  row("IC vs label (Spearman rank)", rep.fp32.ic_spearman, rep.int8.ic_spearman);
  row("IC vs label (Pearson)", rep.fp32.ic_pearson, rep.int8.ic_pearson);
  log << absl::StrFormat("  %-38s %12s %12s\n", "hit rate (sign(output) == sign(label))",
                         Pct(rep.fp32.hit_rate), Pct(rep.int8.hit_rate));
  row("sign strategy: mean pnl per row (bps)", rep.fp32.mean_pnl, rep.int8.mean_pnl);
  row("sign strategy: pnl std per row (bps)", rep.fp32.pnl_std, rep.int8.pnl_std);
  row("sign strategy: Sharpe per row", rep.fp32.sharpe, rep.int8.sharpe);
  row("  per instrument, averaged", rep.fp32.sharpe_per_instrument, rep.int8.sharpe_per_instrument);
  if (o.horizon_label > 0) {
    row(absl::StrFormat("  non-overlapping (every %d-th row)", o.horizon_label).c_str(),
        rep.fp32.sharpe_non_overlapping, rep.int8.sharpe_non_overlapping);
  }
  if (!o.report_json.empty()) log << "  report " << o.report_json << "\n";
  return rep;
}

Command AddBacktestCommand(CLI::App& app, std::string_view name) {
  const bool alias = name != "backtest";
  auto ro = std::make_shared<BacktestOptions>();
  CLI::App* sub = app.add_subcommand(
      std::string(name),
      alias ? "Deprecated name of `qsig backtest`"
            : "Run a model in FP32 and INT8 side by side over a feature file (desk metrics)");
  sub->add_option("--model", ro->model_path, "Model file (.json, .onnx, .pt, .qsig)")->required();
  sub->add_option("--input", ro->input_csv, kFeatureTableHelp)->required();
  AddTableFlags(sub, ro->table);
  sub->add_option("-o,--output", ro->report_json, "Report JSON");
  sub->add_option("--calib-rows", ro->calib_rows,
                  "INT8: calibrate on the first N rows (not scored) unless the model is .qsig")
      ->capture_default_str();
  sub->add_option("--horizon-label", ro->horizon_label,
                  "Label horizon H: adds a Sharpe over non-overlapping rows");
  sub->add_option("--window", ro->import.window,
                  "Timesteps of an imported recurrent model whose file does not fix it");
  AddFeatureNamesFlag(sub, ro->import);
  const std::string command(name);
  return {sub, [ro, alias, command] {
            if (alias) {
              std::fprintf(stderr,
                           "qsig %s: deprecated, use `qsig backtest` (same flags and report)\n",
                           command.c_str());
            }
            auto r = RunBacktest(*ro);
            return r.ok() ? 0 : Fail("qsig", command, r.status());
          }};
}

}  // namespace qsig::commands
