// The feature file `qsig features` writes: feeds' labelled rows (qsig/feeds/labelled_features.h)
// written with models/io's feature file writer (qsig/models/io/feature_file.h; the format, CSV
// and binary, is described there). server joins the two: feeds and models know nothing of each
// other. Thread-safety: reentrant.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "qsig/feeds/labelled_features.h"

namespace qsig::server {

struct FeatureFileOptions {
  feeds::LabelledFeaturesOptions source;  // Simulator or capture, feed options, horizon.
  std::string output_csv;                 // "" = no CSV.
  std::string output_binary = {};         // "" = no binary file. At least one output is required.
};

// Writes every labelled row of options.source to the CSV and/or binary feature file; errors name
// the option or the file.
absl::Status WriteFeatureFile(const FeatureFileOptions& options);

}  // namespace qsig::server
