// ReadFeatureCsv, MapColumns, WindowAt (internal/feature_csv.h).
#include "internal/feature_csv.h"

#include <charconv>
#include <cmath>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace qsig::models::io::internal {
namespace {

constexpr const char* kFixed[] = {"locate", "symbol", "msg_seq", "exchange_ts_ns", "mid"};

template <typename T>
bool Parse(std::string_view s, T& v) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

absl::StatusOr<FeatureTable> ReadFeatureCsv(const std::string& path, size_t max_rows) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open feature file"));
  std::string line;
  if (!std::getline(in, line)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty file (no header)"));
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  const std::vector<std::string> header = absl::StrSplit(line, ',');
  bool fixed_ok = header.size() >= 6;
  for (size_t i = 0; fixed_ok && i < 5; ++i) fixed_ok = header[i] == kFixed[i];
  if (!fixed_ok) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     ":1: header must start with locate,symbol,msg_seq,exchange_ts_ns,mid and list "
                     "the features (a `qsig features` CSV), found '",
                     line.substr(0, 120), "'"));
  }
  const bool has_label = header.back() == "label";
  FeatureTable t;
  t.feature_names.assign(header.begin() + 5, header.end() - (has_label ? 1 : 0));
  const size_t nf = t.feature_names.size();
  if (nf == 0) return absl::InvalidArgumentError(absl::StrCat(path, ":1: no feature columns"));
  std::map<uint32_t, int64_t> last_of_locate;
  size_t lineno = 1;
  std::vector<std::string_view> cols;
  while (t.rows() < max_rows && std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    cols.clear();
    for (size_t at = 0;;) {
      const size_t comma = line.find(',', at);
      cols.emplace_back(line.data() + at, (comma == std::string::npos ? line.size() : comma) - at);
      if (comma == std::string::npos) break;
      at = comma + 1;
    }
    if (cols.size() != header.size()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", lineno, ": ", cols.size(),
                                                     " columns, the header has ", header.size()));
    }
    uint32_t locate = 0;
    uint64_t seq = 0;
    int64_t ts = 0;
    if (!Parse(cols[0], locate) || !Parse(cols[2], seq) || !Parse(cols[3], ts)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", lineno, ": locate, msg_seq and exchange_ts_ns must be integers"));
    }
    for (size_t j = 0; j < nf; ++j) {
      float v = 0;
      if (!Parse(cols[5 + j], v)) {
        // from_chars rejects "nan"/"inf" spellings printf may produce; accept them explicitly.
        const std::string s(cols[5 + j]);
        if (s == "nan" || s == "-nan") {
          v = std::numeric_limits<float>::quiet_NaN();
        } else if (s == "inf" || s == "-inf") {
          v = s[0] == '-' ? -INFINITY : INFINITY;
        } else {
          return absl::InvalidArgumentError(absl::StrCat(path, ":", lineno, ": column '",
                                                         t.feature_names[j], "' value '", s,
                                                         "' is not a number"));
        }
      }
      t.values.push_back(v);
    }
    float label = std::numeric_limits<float>::quiet_NaN();
    if (has_label && !cols.back().empty() && !Parse(cols.back(), label)) {
      label = std::numeric_limits<float>::quiet_NaN();
    }
    t.labels.push_back(label);
    t.locate.push_back(locate);
    t.msg_seq.push_back(seq);
    t.exchange_ts_ns.push_back(ts);
    auto [it, inserted] = last_of_locate.try_emplace(locate, -1);
    t.prev.push_back(it->second);
    it->second = static_cast<int64_t>(t.rows() - 1);
  }
  if (t.rows() == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": no data rows"));
  return t;
}

absl::StatusOr<std::vector<int>> MapColumns(const ModelSpec& spec, const FeatureTable& t,
                                            std::string* note) {
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
  return absl::InvalidArgumentError(
      absl::StrCat("the feature file lacks the model's features ", absl::StrJoin(missing, ", "),
                   " (file has ", absl::StrJoin(t.feature_names, ", "),
                   "); pass feature names when importing ONNX / TorchScript (--feature-names)"));
}

bool WindowAt(const FeatureTable& t, const std::vector<int>& columns, int window, size_t row,
              float* out) {
  const size_t nf = t.feature_names.size();
  const size_t nc = columns.size();
  int64_t r = static_cast<int64_t>(row);
  for (int step = window - 1; step >= 0; --step) {
    if (r < 0) return false;
    const float* src = t.values.data() + static_cast<size_t>(r) * nf;
    float* dst = out + static_cast<size_t>(step) * nc;
    for (size_t c = 0; c < nc; ++c) dst[c] = src[columns[c]];
    r = t.prev[static_cast<size_t>(r)];
  }
  return true;
}

}  // namespace qsig::models::io::internal
