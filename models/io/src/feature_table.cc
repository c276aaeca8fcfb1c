// Feature tables and windows (qsig/models/io/feature_table.h).
#include "qsig/models/io/feature_table.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "qsig/models/window.h"

namespace qsig::models::io {

absl::StatusOr<std::vector<int>> MapColumns(const ModelSpec& spec, const FeatureTable& t,
                                            std::string* note) {
  if (t.positional) {
    if (t.feature_names.size() != static_cast<size_t>(spec.input_size)) {
      return absl::InvalidArgumentError(
          absl::StrCat("wrong width: the ", t.format, " array has ", t.feature_names.size(),
                       " columns, the model reads ", spec.input_size, " features (",
                       absl::StrJoin(spec.feature_names, ", "), ") in this order"));
    }
    std::vector<int> cols(static_cast<size_t>(spec.input_size));
    for (int j = 0; j < spec.input_size; ++j) cols[static_cast<size_t>(j)] = j;
    if (note) *note = absl::StrCat("the ", t.format, " columns are the model's features in order");
    return cols;
  }
  std::map<std::string, int> index;
  for (size_t j = 0; j < t.feature_names.size(); ++j) {
    index.emplace(t.feature_names[j], static_cast<int>(j));
  }
  std::vector<int> cols;
  std::vector<std::string> missing;
  for (const std::string& name : spec.feature_names) {
    auto it = index.find(name);
    if (it == index.end()) {
      missing.push_back(name);
    } else {
      cols.push_back(it->second);
    }
  }
  if (missing.empty() && cols.size() == static_cast<size_t>(spec.input_size)) {
    if (note) *note = "features matched by name";
    return cols;
  }
  bool default_names = true;
  for (size_t i = 0; i < spec.feature_names.size(); ++i) {
    default_names = default_names && spec.feature_names[i] == absl::StrCat("f", i);
  }
  if (default_names && t.feature_names.size() == static_cast<size_t>(spec.input_size)) {
    cols.clear();
    for (int j = 0; j < spec.input_size; ++j) cols.push_back(j);
    if (note) {
      *note = "the model has no feature names: the file's feature columns are used in order";
    }
    return cols;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "missing column: the feature file lacks the model's features ", absl::StrJoin(missing, ", "),
      " (file has ", absl::StrJoin(t.feature_names, ", "),
      "); pass feature names when importing ONNX / TorchScript (--feature-names)"));
}

bool WindowAt(const FeatureTable& t, const std::vector<int>& columns, int window, size_t row,
              float* out) {
  return CopyTableWindow(t.values, t.feature_names.size(), t.prev, columns, window, row, out);
}

std::vector<size_t> FullWindowRows(const FeatureTable& t, int window, size_t begin, size_t end) {
  // Rows seen so far per locate = 1 + that of the previous row of the same locate.
  std::vector<int> depth(t.rows());
  std::vector<size_t> rows;
  for (size_t r = 0; r < t.rows() && r < end; ++r) {
    depth[r] = t.prev[r] < 0 ? 1 : std::min(depth[static_cast<size_t>(t.prev[r])] + 1, window);
    if (r >= begin && depth[r] >= window) rows.push_back(r);
  }
  return rows;
}

std::vector<float> Windows(const FeatureTable& t, const std::vector<int>& columns, int window,
                           const std::vector<size_t>& rows) {
  const size_t per = static_cast<size_t>(window) * columns.size();
  std::vector<float> out(rows.size() * per);
  for (size_t i = 0; i < rows.size(); ++i)
    WindowAt(t, columns, window, rows[i], out.data() + i * per);
  return out;
}

std::vector<size_t> Spread(const std::vector<size_t>& v, size_t keep) {
  if (v.size() <= keep) return v;
  std::vector<size_t> out;
  out.reserve(keep);
  for (size_t i = 0; i < keep; ++i) out.push_back(v[i * v.size() / keep]);
  return out;
}

}  // namespace qsig::models::io
