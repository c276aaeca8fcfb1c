// Distribution drift against a reference sample: the population stability index (PSI, 10 bins
// with edges at the widest gap between distinct reference values near each decile, so that an
// atom of the distribution (a spread of one tick) moving slightly does not cross an edge) and the
// Wasserstein-1 distance in units of the reference's standard deviation (W1, binning-free: the
// area between the two CDFs; unlike Kolmogorov-Smirnov it does not jump when an atom moves by a
// hair, e.g. a one-tick spread in basis points as the price level wanders), each the largest over
// the columns compared (features, or a model's output), with alarm and clear thresholds
// calibrated from the reference itself.
//
// The null distribution. Under "no drift" a live window of m consecutive rows and the reference
// (n consecutive rows) are two stretches of one autocorrelated process. Both are mimicked by a
// circular block bootstrap of the reference: each resample is a pair, a pseudo-reference of n rows
// and a pseudo-live window of m rows, made of blocks of b consecutive rows, b from the
// autocorrelation (six times the first lag at which every column's autocorrelation falls below
// 0.05, at most n / 4), scored against each other as a live window is against the reference (the
// same rows for every column, so the max over columns keeps their dependence; the reference's
// own sampling error and live values it never saw are in the null). Blocks centred on a finite
// reference's mean carry too little of the slow variation (about b/n of the long-run variance is
// missing): PSI quantiles are scaled by 1 / (1 - b/n) and W1^2 by 1 / (1 - 2 b/n), which brought
// exceedances on 300 AR(1) references of 500 rows from 2-7x nominal to 1-1.8x.
//
// The tail. An alarm quantile such as 0.999 cannot be read off a few hundred resamples, so the
// upper tail is extrapolated (peaks over threshold, exponential excesses): above the resamples'
// 0.9 quantile u, excesses of y = W1^2 (Gaussian-type tail) or y = PSI (chi-square-type tail)
// have mean e, and the q quantile is u + e ln(0.1 / (1 - q)). Quantiles up to 0.9 are empirical.
//
// Thread-safety: a built reference is immutable; Evaluate is const and reentrant.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace qsig::server {

struct DistributionThresholds {
  double psi = 0, psi_clear = 0;
  double w1 = 0, w1_clear = 0;
};

// What survives a restart: the sorted reference per column, the thresholds and how they were
// calibrated (no bootstrap is rerun on restore).
struct StoredDistribution {
  int live_rows = 0;  // 0: none.
  int block = 0;
  int resamples = 0;
  DistributionThresholds thresholds;
  std::vector<std::vector<float>> sorted;  // Per column.
};

class DistributionReference {
 public:
  // The newest rows kept as the reference (older ones are dropped before anything is computed).
  static constexpr size_t kMaxRows = 4096;
  static constexpr size_t kMinRows = 32;
  static constexpr int kBins = 10;

  struct Options {
    int live_rows = 2000;  // Rows of each live window (clamped to the reference's rows).
    double alarm_quantile = 0.999;
    double clear_quantile = 0.99;
    uint64_t seed = 1;
  };

  // `columns`: time-ordered samples, one vector per column, all the same length (>= kMinRows).
  static absl::StatusOr<DistributionReference> Build(std::vector<std::vector<float>> columns,
                                                     const Options& options);
  static absl::StatusOr<DistributionReference> Restore(const StoredDistribution& stored);
  StoredDistribution Store() const;

  int columns() const noexcept { return static_cast<int>(sorted_.size()); }
  size_t rows() const noexcept { return sorted_.empty() ? 0 : sorted_[0].size(); }
  int live_rows() const noexcept { return live_rows_; }
  int block() const noexcept { return block_; }
  int resamples() const noexcept { return resamples_; }
  const DistributionThresholds& thresholds() const noexcept { return thresholds_; }

  struct Score {
    double psi = 0, w1 = 0;
    int worst_psi = -1, worst_w1 = -1;  // Column with the largest statistic.
  };
  // Scores the newest live_rows() values of each column of `live` (one vector per column, each at
  // least live_rows() long); `scratch` is reused between calls.
  Score Evaluate(const std::vector<std::vector<float>>& live, std::vector<float>* scratch) const;

  // The per-column statistics (exposed for tests).
  double Psi(int column, const float* values, size_t n) const;
  double W1(int column, std::vector<float>* values) const;  // Sorts `values`.

 private:
  void Finish();  // Edges and shares from sorted_.

  std::vector<std::vector<float>> sorted_;
  std::vector<std::vector<float>> edges_;    // kBins - 1 per column.
  std::vector<std::vector<double>> shares_;  // kBins per column (add-half smoothed).
  std::vector<double> scale_;                // Per column: the reference's standard deviation.
  int live_rows_ = 0;
  int block_ = 0;
  int resamples_ = 0;
  DistributionThresholds thresholds_;
};

// Upper-tail quantile of `sorted` (ascending) by exponential peaks over the 0.9 quantile
// (empirical at or below 0.9). Exposed for tests.
double TailQuantile(const std::vector<double>& sorted, double q);

}  // namespace qsig::server
