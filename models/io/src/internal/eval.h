// Evaluation helpers shared by the model commands (commands.cc) and `qsig train` / `qsig qat`
// (models/train): the windows a model reads over a feature table, running a model over them,
// and rank / linear correlation for information coefficients.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

#include "internal/feature_csv.h"
#include "qsig/models/model.h"

namespace qsig::models::io::internal {

// Evenly spread subset of `v` of at most `keep` elements (all of it if smaller), in order.
std::vector<size_t> Spread(const std::vector<size_t>& v, size_t keep);

// Rows in [begin, end) whose window (`window` rows of the same locate) is complete.
std::vector<size_t> FullWindowRows(const FeatureTable& t, int window, size_t begin, size_t end);

// The windows ending at `rows`, contiguous (rows.size() x window x cols.size() floats).
std::vector<float> Windows(const FeatureTable& t, const std::vector<int>& cols, int window,
                           const std::vector<size_t>& rows);

// m.Run() over each window of `windows` (contiguous, as Windows() returns).
std::vector<float> RunAll(const Model& m, const std::vector<float>& windows);

// Outputs `got` (e.g. INT8) against reference outputs `ref` (FP32) of the same length.
struct OutputError {
  double rmse = 0;
  double rmse_over_rms = NAN;  // RMSE / RMS of ref; NaN when ref is all 0.
  double max_abs = 0;
  double sign_agreement = NAN;  // Fraction with (got > 0) == (ref > 0); NaN when empty.
};
template <class T>
OutputError CompareOutputs(const std::vector<T>& got, const std::vector<T>& ref) {
  OutputError e;
  double se = 0, ss = 0;
  size_t agree = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - static_cast<double>(ref[i]);
    se += d * d;
    ss += static_cast<double>(ref[i]) * static_cast<double>(ref[i]);
    e.max_abs = std::max(e.max_abs, std::fabs(d));
    agree += (got[i] > 0) == (ref[i] > 0);
  }
  if (got.empty()) return e;
  const double n = static_cast<double>(got.size());
  e.rmse = std::sqrt(se / n);
  e.rmse_over_rms = ss > 0 ? std::sqrt(se / ss) : NAN;
  e.sign_agreement = static_cast<double>(agree) / n;
  return e;
}

// Pearson correlation; NaN for fewer than 2 values or zero variance.
double Pearson(const std::vector<double>& a, const std::vector<double>& b);
// Ranks 1..n; ties get their average rank.
std::vector<double> Ranks(const std::vector<double>& v);
// Spearman rank correlation: Pearson of the ranks.
double Spearman(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace qsig::models::io::internal
