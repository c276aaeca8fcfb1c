// The CSV written by `qsig features` (feeds/include/qsig/feeds/feed.h): header
// `locate,symbol,msg_seq,exchange_ts_ns,mid,<feature names...>,label`. Read here without feeds/
// (models knows nothing of feeds), with the windows a model reads over it.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/models/model.h"

namespace qsig::models::io::internal {

struct FeatureTable {
  std::vector<std::string> feature_names;
  std::vector<uint32_t> locate;
  std::vector<uint64_t> msg_seq;
  std::vector<int64_t> exchange_ts_ns;
  std::vector<float> values;  // rows() x feature_names.size().
  std::vector<float> labels;  // NaN where the file has none.
  std::vector<int64_t> prev;  // Previous row of the same locate, -1 for the first.
  size_t rows() const { return locate.size(); }
};

// Reads up to `max_rows` data rows. Errors name the file, line and column.
absl::StatusOr<FeatureTable> ReadFeatureCsv(const std::string& path,
                                            size_t max_rows = std::numeric_limits<size_t>::max());

// For each model feature, its column in the table: by name when every model name is in the
// header; otherwise by position when the counts match and the model's names are the import
// defaults (f0, f1, ...); otherwise an error listing the missing names. `note` says which.
absl::StatusOr<std::vector<int>> MapColumns(const ModelSpec& spec, const FeatureTable& t,
                                            std::string* note);

// Writes the window ending at `row` (window rows of the same locate, oldest first) into `out`
// (window x columns.size() floats). False if the locate has fewer than `window` rows so far.
bool WindowAt(const FeatureTable& t, const std::vector<int>& columns, int window, size_t row,
              float* out);

}  // namespace qsig::models::io::internal
