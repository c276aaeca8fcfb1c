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
constexpr double kSoftWidth = 0.25;  // PSI edge ramps: half-width in reference standard deviations.

double EmpiricalQuantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t i = static_cast<size_t>(pos);
  if (i + 1 >= sorted.size()) return sorted.back();
  return sorted[i] + (pos - static_cast<double>(i)) * (sorted[i + 1] - sorted[i]);
}

// Six times the first lag at which the autocorrelation falls below kAcfCutoff (a constant column
// has none), so that a block carries nearly all of the dependence (the moving-block variance is
// biased low by about sum(k rho_k) / b: ~5% for an AR(1) with rho 0.7).
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
    if (c / var < kAcfCutoff) return 6 * k;
  }
  return n;  // Still correlated at the largest lag: the caller clamps to n / 4.
}

double PsiFromCounts(const double* counts, double n, const std::vector<double>& share) {
  const double total = n + 0.5 * DistributionReference::kBins;
  double psi = 0;
  for (int b = 0; b < DistributionReference::kBins; ++b) {
    const double p = (counts[b] + 0.5) / total;
    psi += (p - share[b]) * std::log(p / share[b]);
  }
  return psi;
}

// Soft binning: a value spreads over a ramp of half-width h around each edge (its share below
// edge e is clamp((e - v) / 2h + 1/2, 0, 1)), so an atom of the distribution moving by a hair
// next to an edge moves a hair of mass, not all of it.
void SoftBins(const std::vector<float>& edges, double h, float v, double* weight) {
  double below = 0;
  for (int b = 0; b < DistributionReference::kBins - 1; ++b) {
    const double f = std::clamp((edges[b] - v) / (2 * h) + 0.5, 0.0, 1.0);
    weight[b] = f - below;
    below = f;
  }
  weight[DistributionReference::kBins - 1] = 1 - below;
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
  scale_.assign(sorted_.size(), 1.0);
  for (size_t c = 0; c < sorted_.size(); ++c) {
    const std::vector<float>& s = sorted_[c];
    const size_t n = s.size();
    // Each edge at the widest gap between neighbouring values within 2.5% of the decile.
    const size_t reach = std::max<size_t>(1, n / 40);
    float prev = -INFINITY;
    for (int b = 1; b < kBins; ++b) {
      const size_t t = n * b / kBins;
      const size_t lo = t > reach ? t - reach : 0, hi = std::min(n - 1, t + reach);
      const auto from_t = [t](size_t i) { return i > t ? i - t : t - i; };
      size_t best = std::min(t, n - 1);
      float gap = 0;
      for (size_t i = lo; i < hi; ++i) {
        const float g = s[i + 1] - s[i];
        if (g > gap || (g == gap && g > 0 && from_t(i) < from_t(best))) {
          gap = g;
          best = i;
        }
      }
      float edge = gap > 0 ? s[best] + 0.5f * gap : s[best];
      edge = std::max(edge, prev);
      edges_[c][b - 1] = prev = edge;
    }
    double mean = 0, var = 0;
    for (float v : s) mean += v;
    mean /= static_cast<double>(n);
    for (float v : s) var += (v - mean) * (v - mean);
    const double sd = std::sqrt(var / static_cast<double>(n));
    scale_[c] = sd > 0 ? sd : 1.0;  // A constant column: W1 in its own units.
    double counts[kBins] = {}, w[kBins];
    for (float v : s) {
      SoftBins(edges_[c], kSoftWidth * scale_[c], v, w);
      for (int b = 0; b < kBins; ++b) counts[b] += w[b];
    }
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
  std::vector<std::vector<float>> bin(cols, std::vector<float>(n * kBins));  // Soft weights.
  std::vector<std::vector<uint32_t>> distinct(cols, std::vector<uint32_t>(n));
  std::vector<std::vector<double>> ecdf(cols), gap(cols);  // Per distinct value.
  for (int c = 0; c < cols; ++c) {
    const std::vector<float>& s = r.sorted_[c];
    std::vector<float> values;
    for (size_t i = 0; i < n; ++i) {
      if (values.empty() || s[i] != values.back()) values.push_back(s[i]);
      if (i + 1 == n || s[i + 1] != s[i]) ecdf[c].push_back(static_cast<double>(i + 1) / n);
    }
    // Width to the next distinct value, in units of the column's scale (W1 is the sum of
    // |F_sample - F_reference| over these steps).
    for (size_t v = 0; v < values.size(); ++v) {
      gap[c].push_back(v + 1 < values.size()
                           ? (static_cast<double>(values[v + 1]) - values[v]) / r.scale_[c]
                           : 0.0);
    }
    for (size_t i = 0; i < n; ++i) {
      const float v = columns[c][i];
      double w[kBins];
      SoftBins(r.edges_[c], kSoftWidth * r.scale_[c], v, w);
      for (int b = 0; b < kBins; ++b) bin[c][i * kBins + b] = static_cast<float>(w[b]);
      distinct[c][i] =
          static_cast<uint32_t>(std::lower_bound(values.begin(), values.end(), v) - values.begin());
    }
  }

  double per_resample = 0;
  for (int c = 0; c < cols; ++c) per_resample += static_cast<double>(n + m + ecdf[c].size());
  const int resamples =
      static_cast<int>(std::clamp(kWorkBudget / per_resample, static_cast<double>(kMinResamples),
                                  static_cast<double>(kMaxResamples)));
  r.resamples_ = resamples;

  // Each resample is a pair: a pseudo-reference of n rows and a pseudo-live window of m rows,
  // both block resamples of the reference, scored against each other as a live window is against
  // the reference (PSI on the reference's edges, W1 between the two ECDFs): the null of two
  // samples of one process, the reference's own sampling error and the live values it never saw
  // included, with no large-sample correction.
  std::mt19937_64 rng(options.seed ^ (static_cast<uint64_t>(n) << 32) ^ m);
  std::uniform_int_distribution<size_t> start(0, n - 1);
  const auto draw = [&](std::vector<uint32_t>* rows) {
    for (size_t i = 0; i < rows->size();) {
      const size_t s = start(rng);
      for (size_t j = 0; j < block && i < rows->size(); ++j) {
        (*rows)[i++] = static_cast<uint32_t>((s + j) % n);
      }
    }
  };
  std::vector<uint32_t> rows_ref(n), rows_live(m);
  std::vector<uint32_t> hist_ref, hist_live;
  std::vector<double> psi_null(resamples), w1_null(resamples), share(kBins);
  const double dm = static_cast<double>(m), dn = static_cast<double>(n);
  const auto soft_counts = [&](int c, const std::vector<uint32_t>& rows, double* counts,
                               std::vector<uint32_t>* hist) {
    hist->assign(ecdf[c].size(), 0);
    for (uint32_t row : rows) {
      const float* w = &bin[c][static_cast<size_t>(row) * kBins];
      for (int b = 0; b < kBins; ++b) counts[b] += w[b];
      (*hist)[distinct[c][row]]++;
    }
  };
  for (int k = 0; k < resamples; ++k) {
    draw(&rows_ref);
    draw(&rows_live);
    double psi = 0, w1 = 0;
    for (int c = 0; c < cols; ++c) {
      double counts_ref[kBins] = {}, counts_live[kBins] = {};
      soft_counts(c, rows_ref, counts_ref, &hist_ref);
      soft_counts(c, rows_live, counts_live, &hist_live);
      for (int b = 0; b < kBins; ++b) share[b] = (counts_ref[b] + 0.5) / (dn + 0.5 * kBins);
      psi = std::max(psi, PsiFromCounts(counts_live, dm, share));
      // Both ECDFs step only at reference values.
      double cum_ref = 0, cum_live = 0, area = 0;
      for (size_t v = 0; v < hist_ref.size(); ++v) {
        cum_ref += hist_ref[v];
        cum_live += hist_live[v];
        area += std::fabs(cum_live / dm - cum_ref / dn) * gap[c][v];
      }
      w1 = std::max(w1, area);
    }
    psi_null[k] = psi;
    w1_null[k] = w1 * w1;
  }
  std::sort(psi_null.begin(), psi_null.end());
  std::sort(w1_null.begin(), w1_null.end());
  // Resamples of a finite reference vary less than the process: blocks are centred on the
  // reference's own mean, which hides the slow components longer than the reference (the
  // long-run variance the blocks carry is low by about b/n). Measured on AR(1) references of
  // 500 rows (phi 0.7, b/n ~0.15, 300 references): uncorrected, exceedances ran 2-7x nominal at
  // the 0.9-0.999 quantiles; PSI x 1/(1 - b/n) and W1^2 x 1/(1 - 2 b/n) bring them to 0.9-1.4x.
  const double bn = static_cast<double>(block) / dn;  // <= 1/4.
  const double psi_scale = 1 / (1 - bn), w1_scale = 1 / (1 - 2 * bn);
  r.thresholds_.psi = TailQuantile(psi_null, options.alarm_quantile) * psi_scale;
  r.thresholds_.psi_clear = TailQuantile(psi_null, options.clear_quantile) * psi_scale;
  r.thresholds_.w1 = std::sqrt(TailQuantile(w1_null, options.alarm_quantile) * w1_scale);
  r.thresholds_.w1_clear = std::sqrt(TailQuantile(w1_null, options.clear_quantile) * w1_scale);
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
  for (double v : {t.psi, t.psi_clear, t.w1, t.w1_clear}) {
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
  double counts[kBins] = {}, w[kBins];
  for (size_t i = 0; i < n; ++i) {
    SoftBins(e, kSoftWidth * scale_[column], values[i], w);
    for (int b = 0; b < kBins; ++b) counts[b] += w[b];
  }
  return PsiFromCounts(counts, static_cast<double>(n), shares_[column]);
}

double DistributionReference::W1(int column, std::vector<float>* live) const {
  const std::vector<float>& r = sorted_[column];
  std::sort(live->begin(), live->end());
  const double nl = static_cast<double>(live->size()), nr = static_cast<double>(r.size());
  size_t i = 0, j = 0;
  double area = 0, x = std::min(live->front(), r.front());
  // Sweep the merged values: between consecutive ones both ECDFs are constant.
  while (i < live->size() || j < r.size()) {
    const float next = j == r.size()       ? (*live)[i]
                       : i == live->size() ? r[j]
                                           : std::min((*live)[i], r[j]);
    area += std::fabs(static_cast<double>(i) / nl - static_cast<double>(j) / nr) * (next - x);
    x = next;
    while (i < live->size() && (*live)[i] <= next) ++i;
    while (j < r.size() && r[j] <= next) ++j;
  }
  return area / scale_[column];
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
    const double w1 = W1(c, scratch);
    if (s.worst_psi < 0 || psi > s.psi) s.psi = psi, s.worst_psi = c;
    if (s.worst_w1 < 0 || w1 > s.w1) s.w1 = w1, s.worst_w1 = c;
  }
  return s;
}

}  // namespace qsig::server
