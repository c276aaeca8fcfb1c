// The feature-table flags every command that reads features shares (predict, quantize,
// backtest / replay, bench, train, qat): how to read a plain CSV (qsig/models/io/feature_file.h).
#pragma once

#include <CLI/CLI.hpp>

#include "qsig/models/io/feature_file.h"
#include "qsig/models/io/import.h"

namespace qsig::commands {

// What --input / --calib accept, for the flag help.
inline constexpr const char* kFeatureTableHelp =
    "Feature table: a CSV whose header names the columns (features matched by name, other "
    "columns ignored, optional `label`), NumPy .npy / .npz (x, y), or a `qsig features` file";

inline void AddTableFlags(CLI::App* sub, models::io::TableOptions& t) {
  sub->add_option("--instrument-col", t.instrument_col,
                  "Plain CSV: the column naming the instrument (default: one instrument)");
  sub->add_option("--time-col", t.time_col,
                  "Plain CSV: the time column rows are ordered by (default: file order)");
}

// --feature-names for an imported ONNX / TorchScript model (which does not record them): the
// names the server and the feature tables match the model's inputs by.
inline void AddFeatureNamesFlag(CLI::App* sub, models::io::ImportOptions& o) {
  sub->add_option("--feature-names", o.feature_names,
                  "ONNX / TorchScript: the model's feature names, in input order (a,b,c; "
                  "default f0,f1,...)")
      ->delimiter(',');
}

}  // namespace qsig::commands
