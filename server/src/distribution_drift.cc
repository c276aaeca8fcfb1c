#include "distribution_drift.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"

namespace qsig::server {
namespace {

constexpr int kMinResamples = 200;
constexpr int kMaxResamples = 1000;
constexpr double kWorkBudget = 2e8;  // Row visits over all resamples (~0.1-0.2 s of one core).
constexpr size_t kMaxLag = 512;
constexpr double kAcfCutoff = 0.05;
constexpr double kTailFrom = 0.9;

double EmpiricalQuantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t i = static_cast<size_t>(pos);
  if (i + 1 >= sorted.size()) return sorted.back();
  return sorted[i] + (pos - static_cast<double>(i)) * (sorted[i + 1] - sorted[i]);
}

// Three times the first lag at which the autocorrelation falls below kAcfCutoff (a constant
// column has none), so that a block carries nearly all of the dependence.
size_t BlockLength(const std::vector<float>& x) {
  const size_t n = x.size();
  double mean = 0;
  for (float v : x) mean += v;
  mean /= static_cast<double>(n);
  double var = 0;
  for (float v : x) var += (v - mean) * (v - mean);
  if (!(var > 0)) return 1;
  const size_t max_lag = std::min(kMaxLag, n / 4);
  for (size_t k = 1; k <= max_lag; ++k) {
    double c = 0;
    for (size_t i = 0; i + k < n; ++i) c += (x[i] - mean) * (x[i + k] - mean);
    if (c / var < kAcfCutoff) return 3 * k;
  }
  return n;  // Still correlated at the largest lag: the caller clamps to n / 4.
}

double PsiFromCounts(const int* counts, double n, const std::vector<double>& share) {
  const double total = n + 0.5 * DistributionReference::kBins;
  double psi = 0;
  for (int b = 0; b < DistributionReference::kBins; ++b) {
    const double p = (counts[b] + 0.5) / total;
    psi += (p - share[b]) * std::log(p / share[b]);
  }
  return psi;
}

}  // namespace

double TailQuantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  if (q <= kTailFrom || sorted.size() < 20) return EmpiricalQuantile(sorted, q);
  const double u = EmpiricalQuantile(sorted, kTailFrom);
  double excess = 0;
  size_t k = 0;
  for (double y : sorted) {
    if (y > u) excess += y - u, ++k;
  }
  if (k == 0) return u;
  return u + excess / static_cast<double>(k) * std::log((1 - kTailFrom) / (1 - q));
}

void DistributionReference::Finish() {
  edges_.assign(sorted_.size(), std::vector<float>(kBins - 1));
  shares_.assign(sorted_.size(), std::vector<double>(kBins));
  for (size_t c = 0; c < sorted_.size(); ++c) {
    const std::vector<float>& s = sorted_[c];
    const size_t n = s.size();
    for (int b = 1; b < kBins; ++b) edges_[c][b - 1] = s[std::min(n - 1, n * b / kBins)];
    int counts[kBins] = {};
    for (float v : s)
      counts[std::upper_bound(edges_[c].begin(), edges_[c].end(), v) - edges_[c].begin()]++;
    const double total = static_cast<double>(n) + 0.5 * kBins;
    for (int b = 0; b < kBins; ++b) shares_[c][b] = (counts[b] + 0.5) / total;
  }
}

absl::StatusOr<DistributionReference> DistributionReference::Build(
    std::vector<std::vector<float>> columns, const Options& options) {
  if (columns.empty()) return absl::InvalidArgumentError("no columns");
  const size_t all = columns[0].size();
  for (const auto& c : columns) {
    if (c.size() != all) return absl::InvalidArgumentError("columns differ in length");
    for (float v : c) {
      if (!std::isfinite(v)) return absl::InvalidArgumentError("non-finite reference value");
    }
  }
  if (all < kMinRows) {
    return absl::InvalidArgumentError(
        absl::StrCat("reference has ", all, " rows, at least ", kMinRows, " are needed"));
  }
  if (all > kMaxRows) {
    for (auto& c : columns) c.erase(c.begin(), c.end() - static_cast<std::ptrdiff_t>(kMaxRows));
  }
  const size_t n = columns[0].size();
  const size_t m = std::clamp<size_t>(static_cast<size_t>(std::max(options.live_rows, 1)), 1, n);
  const int cols = static_cast<int>(columns.size());

  DistributionReference r;
  r.sorted_ = columns;
  for (auto& s : r.sorted_) std::sort(s.begin(), s.end());
  r.Finish();
  r.live_rows_ = static_cast<int>(m);

  size_t block = 1;
  for (const auto& c : columns) block = std::max(block, BlockLength(c));
  block = std::clamp<size_t>(block, 1, std::max<size_t>(1, n / 4));
  r.block_ = static_cast<int>(block);

  // Per row and column: the row's PSI bin and its value's index among the column's distinct
  // values, with the reference ECDF at each distinct value.
  std::vector<std::vector<uint8_t>> bin(cols, std::vector<uint8_t>(n));
  std::vector<std::vector<uint32_t>> distinct(cols, std::vector<uint32_t>(n));
  std::vector<std::vector<double>> ecdf(cols);
  for (int c = 0; c < cols; ++c) {
    const std::vector<float>& s = r.sorted_[c];
    std::vector<float> values;
    for (size_t i = 0; i < n; ++i) {
      if (values.empty() || s[i] != values.back()) values.push_back(s[i]);
      if (i + 1 == n || s[i + 1] != s[i]) ecdf[c].push_back(static_cast<double>(i + 1) / n);
    }
    for (size_t i = 0; i < n; ++i) {
      const float v = columns[c][i];
      bin[c][i] = static_cast<uint8_t>(std::upper_bound(r.edges_[c].begin(), r.edges_[c].end(), v) -
                                       r.edges_[c].begin());
      distinct[c][i] =
          static_cast<uint32_t>(std::lower_bound(values.begin(), values.end(), v) - values.begin());
    }
  }

  double per_resample = 0;
  for (int c = 0; c < cols; ++c) per_resample += static_cast<double>(m + ecdf[c].size());
  const int resamples =
      static_cast<int>(std::clamp(kWorkBudget / per_resample, static_cast<double>(kMinResamples),
                                  static_cast<double>(kMaxResamples)));
  r.resamples_ = resamples;

  std::mt19937_64 rng(options.seed ^ (static_cast<uint64_t>(n) << 32) ^ m);
  std::uniform_int_distribution<size_t> start(0, n - 1);
  std::vector<uint32_t> rows(m);
  std::vector<uint32_t> hist;
  std::vector<double> psi_null(resamples), ks_null(resamples);
  const double dm = static_cast<double>(m);
  for (int k = 0; k < resamples; ++k) {
    for (size_t i = 0; i < m;) {
      const size_t s = start(rng);
      for (size_t j = 0; j < block && i < m; ++j) rows[i++] = static_cast<uint32_t>((s + j) % n);
    }
    double psi = 0, ks = 0;
    for (int c = 0; c < cols; ++c) {
      int counts[kBins] = {};
      hist.assign(ecdf[c].size(), 0);
      for (uint32_t row : rows) {
        counts[bin[c][row]]++;
        hist[distinct[c][row]]++;
      }
      psi = std::max(psi, PsiFromCounts(counts, dm, r.shares_[c]));
      // Both ECDFs jump only at reference values: the sup is at one of them.
      double cum = 0, d = 0;
      for (size_t v = 0; v < hist.size(); ++v) {
        cum += hist[v];
        d = std::max(d, std::fabs(cum / dm - ecdf[c][v]));
      }
      ks = std::max(ks, d);
    }
    psi_null[k] = psi;
    ks_null[k] = ks * ks;
  }
  std::sort(psi_null.begin(), psi_null.end());
  std::sort(ks_null.begin(), ks_null.end());
  const double two_sample = 1 + dm / static_cast<double>(n);
  r.thresholds_.psi = TailQuantile(psi_null, options.alarm_quantile) * two_sample;
  r.thresholds_.psi_clear = TailQuantile(psi_null, options.clear_quantile) * two_sample;
  r.thresholds_.ks = std::sqrt(TailQuantile(ks_null, options.alarm_quantile) * two_sample);
  r.thresholds_.ks_clear = std::sqrt(TailQuantile(ks_null, options.clear_quantile) * two_sample);
  return r;
}

absl::StatusOr<DistributionReference> DistributionReference::Restore(const StoredDistribution& s) {
  if (s.live_rows <= 0 || s.sorted.empty()) return absl::NotFoundError("no distribution stored");
  const size_t n = s.sorted[0].size();
  if (n < kMinRows || n > kMaxRows) return absl::InvalidArgumentError("stored reference size");
  for (const auto& c : s.sorted) {
    if (c.size() != n || !std::is_sorted(c.begin(), c.end())) {
      return absl::InvalidArgumentError(
          "stored reference columns are not sorted samples of one size");
    }
  }
  const DistributionThresholds& t = s.thresholds;
  for (double v : {t.psi, t.psi_clear, t.ks, t.ks_clear}) {
    if (!(v > 0) || !std::isfinite(v)) return absl::InvalidArgumentError("stored thresholds");
  }
  DistributionReference r;
  r.sorted_ = s.sorted;
  r.Finish();
  r.live_rows_ = std::min(s.live_rows, static_cast<int>(n));
  r.block_ = s.block;
  r.resamples_ = s.resamples;
  r.thresholds_ = t;
  return r;
}

StoredDistribution DistributionReference::Store() const {
  StoredDistribution s;
  s.live_rows = live_rows_;
  s.block = block_;
  s.resamples = resamples_;
  s.thresholds = thresholds_;
  s.sorted = sorted_;
  return s;
}

double DistributionReference::Psi(int column, const float* values, size_t n) const {
  const std::vector<float>& e = edges_[column];
  int counts[kBins] = {};
  for (size_t i = 0; i < n; ++i)
    counts[std::upper_bound(e.begin(), e.end(), values[i]) - e.begin()]++;
  return PsiFromCounts(counts, static_cast<double>(n), shares_[column]);
}

double DistributionReference::Ks(int column, std::vector<float>* live) const {
  const std::vector<float>& r = sorted_[column];
  std::sort(live->begin(), live->end());
  const double nl = static_cast<double>(live->size()), nr = static_cast<double>(r.size());
  size_t i = 0, j = 0;
  double d = 0;
  while (i < live->size() && j < r.size()) {
    const float v = std::min((*live)[i], r[j]);
    while (i < live->size() && (*live)[i] <= v) ++i;
    while (j < r.size() && r[j] <= v) ++j;
    d = std::max(d, std::fabs(static_cast<double>(i) / nl - static_cast<double>(j) / nr));
  }
  return d;
}

DistributionReference::Score DistributionReference::Evaluate(
    const std::vector<std::vector<float>>& live, std::vector<float>* scratch) const {
  Score s;
  const size_t m = static_cast<size_t>(live_rows_);
  for (int c = 0; c < columns() && c < static_cast<int>(live.size()); ++c) {
    const std::vector<float>& x = live[c];
    if (x.size() < m) continue;
    scratch->assign(x.end() - static_cast<std::ptrdiff_t>(m), x.end());
    // Non-finite inputs are flagged INVALID elsewhere; they have no place in an ECDF.
    scratch->erase(
        std::remove_if(scratch->begin(), scratch->end(), [](float v) { return !std::isfinite(v); }),
        scratch->end());
    if (scratch->size() < m / 2 || scratch->empty()) continue;
    const double psi = Psi(c, scratch->data(), scratch->size());
    const double ks = Ks(c, scratch);
    if (s.worst_psi < 0 || psi > s.psi) s.psi = psi, s.worst_psi = c;
    if (s.worst_ks < 0 || ks > s.ks) s.ks = ks, s.worst_ks = c;
  }
  return s;
}

}  // namespace qsig::server
