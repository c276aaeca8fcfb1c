// `qsig predict`: any loadable model over a feature CSV, one output line per row.
#include <cinttypes>
#include <cstdio>
#include <iostream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "command.h"
#include "qsig/commands/model_commands.h"
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

}  // namespace

absl::StatusOr<PredictSummary> RunPredict(const PredictCommandOptions& o) {
  std::ostream& log = o.log != nullptr ? *o.log : std::cout;
  if (o.precision != "fp32" && o.precision != "int8") {
    return absl::InvalidArgumentError(
        absl::StrCat("--precision is '", o.precision, "'; expected fp32 or int8"));
  }
  if (o.output_csv.empty()) return absl::InvalidArgumentError("-o OUT.csv is required");
  QSIG_ASSIGN_OR_RETURN(LoadedModel lm, LoadAnyModel(o.model_path, o.import));
  TableOptions table_options = o.table;
  table_options.features = lm.spec->feature_names;
  QSIG_ASSIGN_OR_RETURN(FeatureTable t, ReadFeatureTable(o.input_csv, table_options));
  PredictSummary s;
  s.format = lm.format;
  s.rows = t.rows();
  auto cols = MapColumns(*lm.spec, t, &s.column_note);
  if (!cols.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(o.input_csv, ": ", cols.status().message()));
  }
  const int window = lm.spec->window;
  std::unique_ptr<Model> model;
  if (o.precision == "fp32") {
    model = MakeFp32Model(lm.spec);
  } else if (lm.artifact.has_value()) {
    QSIG_ASSIGN_OR_RETURN(model, BuildInt8Model(*lm.artifact));
  } else {
    const std::vector<size_t> rows = FullWindowRows(t, window, 0, std::min(o.calib_rows, t.rows()));
    if (rows.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          o.input_csv, ": no complete window of ", window, " rows in the first ", o.calib_rows,
          " rows to calibrate INT8 on; raise --calib-rows or use a .qsig artifact"));
    }
    QSIG_ASSIGN_OR_RETURN(model,
                          CalibrateInt8Model(lm.spec, Windows(t, *cols, window, rows), o.int8));
  }
  s.precision = model->precision();
  std::FILE* out = std::fopen(o.output_csv.c_str(), "w");
  if (out == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(o.output_csv, ": cannot open for writing"));
  }
  std::fputs("locate,msg_seq,exchange_ts_ns,output\n", out);
  const size_t per = static_cast<size_t>(window) * cols->size();
  std::vector<float> x(per), ws(model->workspace_floats());
  for (size_t r = 0; r < t.rows(); ++r) {
    std::fprintf(out, "%" PRIu32 ",%" PRIu64 ",%" PRId64 ",", t.locate[r], t.msg_seq[r],
                 t.exchange_ts_ns[r]);
    if (WindowAt(t, *cols, window, r, x.data())) {
      std::fprintf(out, "%.9g", model->Run(x, ws.data()));
      ++s.outputs;
    }
    std::fputc('\n', out);
  }
  const bool write_ok = std::ferror(out) == 0;
  if (std::fclose(out) != 0 || !write_ok) {
    return absl::DataLossError(absl::StrCat(o.output_csv, ": write failed"));
  }
  log << "predict: " << lm.spec->name << " (" << s.format << ", " << s.precision << ", window "
      << window << ") over " << s.rows << " rows of " << o.input_csv << ": " << s.outputs
      << " outputs, " << s.rows - s.outputs << " rows without a full window -> " << o.output_csv
      << "\n"
      << "  window: " << WindowSource(o.model_path, lm.format, o.import, *lm.spec)
      << "; features: " << t.format << ", " << s.column_note << "\n";
  return s;
}

Command AddPredictCommand(CLI::App& app) {
  auto po = std::make_shared<PredictCommandOptions>();
  CLI::App* sub = app.add_subcommand(
      "predict", "Run any loadable model (.json, .onnx, .pt, .qsig) over a feature CSV");
  sub->add_option("--model", po->model_path, "Model file")->required();
  sub->add_option("--input", po->input_csv, kFeatureTableHelp)->required();
  AddTableFlags(sub, po->table);
  sub->add_option("-o,--output", po->output_csv, "Output CSV (one line per row)")->required();
  sub->add_option("--precision", po->precision, "int8 or fp32")
      ->check(CLI::IsMember({"int8", "fp32"}))
      ->capture_default_str();
  sub->add_option("--calib-rows", po->calib_rows,
                  "INT8: calibrate on the first N rows (unless the model is a .qsig)")
      ->capture_default_str();
  sub->add_option("--window", po->import.window,
                  "Timesteps of an imported recurrent model whose file does not fix it");
  AddFeatureNamesFlag(sub, po->import);
  return {sub, [po] {
            auto r = RunPredict(*po);
            return r.ok() ? 0 : Fail("qsig", "predict", r.status());
          }};
}

}  // namespace qsig::commands
