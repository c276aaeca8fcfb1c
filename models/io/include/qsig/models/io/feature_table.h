// Feature tables: the files `qsig features` writes (CSV or binary, qsig/models/io/feature_file.h),
// read without feeds/ (models knows nothing of feeds), and the windows a model reads over it: a
// recurrent model's window for a row is that row and the window()-1 rows before it of the same
// locate, oldest first. Used by the model commands (server/commands) and by training
// (models/train). Thread-safety: reentrant.
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/models/io/feature_file.h"
#include "qsig/models/model.h"

namespace qsig::models::io {

// FeatureTable and ReadFeatureTable (CSV or binary, told apart by its first bytes) are in
// qsig/models/io/feature_file.h, beside the writer.

// For each model feature, its column in the table: by name when every model name is in the
// header; otherwise by position when the counts match and the model's names are the import
// defaults (f0, f1, ...); otherwise an error listing the missing names. `note` says which.
absl::StatusOr<std::vector<int>> MapColumns(const ModelSpec& spec, const FeatureTable& t,
                                            std::string* note);

// Writes the window ending at `row` (window rows of the same locate, oldest first) into `out`
// (window x columns.size() floats). False if the locate has fewer than `window` rows so far.
// The table's use of models::CopyTableWindow (qsig/models/window.h), the one window builder.
bool WindowAt(const FeatureTable& t, const std::vector<int>& columns, int window, size_t row,
              float* out);

// Rows in [begin, end) whose window (`window` rows of the same locate) is complete.
std::vector<size_t> FullWindowRows(const FeatureTable& t, int window, size_t begin, size_t end);

// The windows ending at `rows`, contiguous (rows.size() x window x columns.size() floats).
std::vector<float> Windows(const FeatureTable& t, const std::vector<int>& columns, int window,
                           const std::vector<size_t>& rows);

// Evenly spread subset of `v` of at most `keep` elements (all of it if smaller), in order.
std::vector<size_t> Spread(const std::vector<size_t>& v, size_t keep);

}  // namespace qsig::models::io
