#include "drift_monitor.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "spdlog/spdlog.h"

namespace qsig::server {

const char* DriftKindName(DriftKind k) {
  switch (k) {
    case DriftKind::kInputDrift:
      return "input_drift";
    case DriftKind::kSaturation:
      return "saturation";
    case DriftKind::kShadowDivergence:
      return "shadow_divergence";
    case DriftKind::kPsi:
      return "psi";
    case DriftKind::kKs:
      return "ks";
  }
  return "unknown";
}

namespace {

constexpr int kPsiBins = 10;
constexpr int kMaxResamples = 200;
constexpr int kMinResamples = 50;
// Bound on the bootstrap's work (feature values visited over all resamples): about 0.1-0.3 s of
// one core at calibration time.
constexpr double kBootstrapBudget = 5e7;

// Interpolated quantile of sorted values.
double Quantile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t i = static_cast<size_t>(pos);
  if (i + 1 >= sorted.size()) return sorted.back();
  return sorted[i] + (pos - static_cast<double>(i)) * (sorted[i + 1] - sorted[i]);
}

double Lag1Autocorrelation(const std::vector<float>& x) {
  const size_t n = x.size();
  if (n < 3) return 0;
  double mean = 0;
  for (float v : x) mean += v;
  mean /= static_cast<double>(n);
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    den += (x[i] - mean) * (x[i] - mean);
    if (i) num += (x[i] - mean) * (x[i - 1] - mean);
  }
  return den > 0 ? num / den : 0;
}

}  // namespace

DriftMonitor::DriftMonitor(std::string model, int n_features, const config::DriftConfig& config,
                           std::vector<std::string> feature_names)
    : model_(std::move(model)),
      n_features_(n_features),
      config_(config),
      names_(std::move(feature_names)) {
  thresholds_[static_cast<int>(DriftKind::kInputDrift)] = config_.input_z;
  thresholds_[static_cast<int>(DriftKind::kSaturation)] = config_.saturation_ratio;
  thresholds_[static_cast<int>(DriftKind::kShadowDivergence)] = config_.shadow_relative_rmse;
  for (auto& w : worst_) w = -1;
}

std::string DriftMonitor::FeatureName(int f) const {
  if (f < 0) return "";
  if (static_cast<size_t>(f) < names_.size()) return names_[f];
  return fmt::format("f{}", f);
}

std::string DriftMonitor::worst_feature(DriftKind k) const {
  return FeatureName(worst_[static_cast<int>(k)].load(std::memory_order_relaxed));
}

double DriftMonitor::Psi(int f, const std::vector<float>& live,
                         const std::vector<double>& share) const {
  const std::vector<float>& e = edges_[f];
  int counts[kPsiBins] = {};
  for (float v : live) {
    counts[std::upper_bound(e.begin(), e.end(), v) - e.begin()]++;
  }
  // Add-half smoothing so that an empty bin gives a large but finite term.
  const double n = static_cast<double>(live.size()) + 0.5 * kPsiBins;
  double psi = 0;
  for (int b = 0; b < kPsiBins; ++b) {
    const double p = (counts[b] + 0.5) / n, q = share[b];
    psi += (p - q) * std::log(p / q);
  }
  return psi;
}

double DriftMonitor::Ks(std::vector<float>* live, const std::vector<float>& r) {
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

void DriftMonitor::CalibrateThresholds(int live_rows) {
  const int n = static_cast<int>(ref_[0].size());
  const int m = std::min(live_rows, n);
  // Block length: b = ceil(n^(1/3) (2 rho / (1 - rho^2))^(2/3)) with rho the largest lag-1
  // autocorrelation over features (clamped to [0, 0.99]), then clamped to [1, n / 4].
  double rho = 0;
  for (int f = 0; f < n_features_; ++f) rho = std::max(rho, Lag1Autocorrelation(ref_[f]));
  rho = std::clamp(rho, 0.0, 0.99);
  double b =
      std::ceil(std::cbrt(static_cast<double>(n)) * std::pow(2 * rho / (1 - rho * rho), 2.0 / 3.0));
  block_ = static_cast<int>(std::clamp(b, 1.0, std::max(1.0, std::floor(n / 4.0))));
  const double per_resample =
      static_cast<double>(n_features_) * (2.0 * m + 3.0 * static_cast<double>(n));
  const int resamples = static_cast<int>(std::clamp(kBootstrapBudget / per_resample,
                                                    static_cast<double>(kMinResamples),
                                                    static_cast<double>(kMaxResamples)));
  std::mt19937_64 rng(0x5eed0f0d0a7aULL ^ static_cast<uint64_t>(n));
  std::uniform_int_distribution<int> start(0, n - block_);
  // Each resample compares a block-bootstrap window of m rows with an independent block-bootstrap
  // replicate of the whole reference (n rows): the live window is compared with a reference
  // that is itself a finite sample of the process, so the null must include both sampling errors.
  std::vector<int> rows(m), ref_rows(n);
  std::vector<float> live(m), replica(n);
  std::vector<double> share(kPsiBins);
  auto draw = [&](std::vector<int>* out) {
    for (size_t i = 0; i < out->size();) {
      const int s = start(rng);
      for (int k = 0; k < block_ && i < out->size(); ++k) (*out)[i++] = s + k;
    }
  };
  std::vector<double> psi_null(resamples), ks_null(resamples);
  for (int r = 0; r < resamples; ++r) {
    draw(&rows);
    draw(&ref_rows);
    double psi = 0, ks = 0;
    for (int f = 0; f < n_features_; ++f) {
      for (int i = 0; i < m; ++i) live[i] = ref_[f][rows[i]];
      for (int i = 0; i < n; ++i) replica[i] = ref_[f][ref_rows[i]];
      int counts[kPsiBins] = {};
      for (float v : replica) {
        counts[std::upper_bound(edges_[f].begin(), edges_[f].end(), v) - edges_[f].begin()]++;
      }
      const double total = static_cast<double>(n) + 0.5 * kPsiBins;
      for (int b = 0; b < kPsiBins; ++b) share[b] = (counts[b] + 0.5) / total;
      std::sort(replica.begin(), replica.end());
      psi = std::max(psi, Psi(f, live, share));
      ks = std::max(ks, Ks(&live, replica));
    }
    psi_null[r] = psi;
    ks_null[r] = ks;
  }
  std::sort(psi_null.begin(), psi_null.end());
  std::sort(ks_null.begin(), ks_null.end());
  for (auto [k, null] :
       {std::pair{DriftKind::kPsi, &psi_null}, std::pair{DriftKind::kKs, &ks_null}}) {
    const int i = static_cast<int>(k);
    thresholds_[i].store(Quantile(*null, config_.alarm_quantile), std::memory_order_relaxed);
    clear_[i].store(Quantile(*null, config_.clear_quantile), std::memory_order_relaxed);
  }
  calibrated_rows_ = m;
  spdlog::info(
      "drift: model {} calibrated psi/ks thresholds from {} reference rows ({} resamples of {} "
      "rows, block {}): psi {:.4g} (clear {:.4g}), ks {:.4g} (clear {:.4g})",
      model_, n, resamples, m, block_, threshold(DriftKind::kPsi), clear_threshold(DriftKind::kPsi),
      threshold(DriftKind::kKs), clear_threshold(DriftKind::kKs));
}

void DriftMonitor::SetBaseline(const std::vector<float>& windows, int window, int n_features,
                               const std::vector<float>& clip_lo,
                               const std::vector<float>& clip_hi) {
  const size_t stride = static_cast<size_t>(window) * n_features;
  const size_t n = stride ? windows.size() / stride : 0;
  if (n < 2 || n_features != n_features_) return;
  mean_.assign(n_features, 0.0);
  std_.assign(n_features, 0.0);
  const bool clipped = clip_lo.size() == static_cast<size_t>(n_features) &&
                       clip_hi.size() == static_cast<size_t>(n_features);
  min_.assign(n_features, clipped ? 0.0f : -INFINITY);
  max_.assign(n_features, clipped ? 0.0f : INFINITY);
  if (clipped) {
    std::copy(clip_lo.begin(), clip_lo.end(), min_.begin());
    std::copy(clip_hi.begin(), clip_hi.end(), max_.begin());
  }
  for (size_t i = 0; i < n; ++i) {
    const float* x = windows.data() + i * stride + (stride - n_features);
    for (int f = 0; f < n_features; ++f) mean_[f] += x[f];
  }
  for (int f = 0; f < n_features; ++f) mean_[f] /= static_cast<double>(n);
  for (size_t i = 0; i < n; ++i) {
    const float* x = windows.data() + i * stride + (stride - n_features);
    for (int f = 0; f < n_features; ++f) std_[f] += (x[f] - mean_[f]) * (x[f] - mean_[f]);
  }
  for (int f = 0; f < n_features; ++f) {
    std_[f] = std::sqrt(std_[f] / static_cast<double>(n - 1));
    if (!(std_[f] > 1e-12)) std_[f] = 1e-12;  // Constant feature: any move is drift.
  }
  has_baseline_ = true;

  // The reference sample for psi / ks, its deciles and the share of it in each decile bin (not
  // exactly 10% when values repeat).
  ref_.assign(n_features, std::vector<float>(n));
  for (size_t i = 0; i < n; ++i) {
    const float* x = windows.data() + i * stride + (stride - n_features);
    for (int f = 0; f < n_features; ++f) ref_[f][i] = x[f];
  }
  ref_sorted_ = ref_;
  edges_.assign(n_features, std::vector<float>(kPsiBins - 1));
  ref_share_.assign(n_features, std::vector<double>(kPsiBins));
  for (int f = 0; f < n_features; ++f) {
    std::sort(ref_sorted_[f].begin(), ref_sorted_[f].end());
    for (int b = 1; b < kPsiBins; ++b) {
      edges_[f][b - 1] = ref_sorted_[f][std::min(n - 1, n * static_cast<size_t>(b) / kPsiBins)];
    }
    int counts[kPsiBins] = {};
    for (float v : ref_sorted_[f]) {
      counts[std::upper_bound(edges_[f].begin(), edges_[f].end(), v) - edges_[f].begin()]++;
    }
    const double total = static_cast<double>(n) + 0.5 * kPsiBins;
    for (int b = 0; b < kPsiBins; ++b) ref_share_[f][b] = (counts[b] + 0.5) / total;
  }
  for (int k : {static_cast<int>(DriftKind::kPsi), static_cast<int>(DriftKind::kKs)}) {
    above_[k] = 0;
    alarms_[k].store(false, std::memory_order_relaxed);
  }
  CalibrateThresholds(config_.window);
}

bool DriftMonitor::GetBaseline(std::vector<double>* mean, std::vector<double>* sd,
                               std::vector<float>* lo, std::vector<float>* hi) const {
  if (!has_baseline_) return false;
  *mean = mean_;
  *sd = std_;
  const bool clipped = !min_.empty() && std::isfinite(min_[0]);
  *lo = clipped ? min_ : std::vector<float>{};
  *hi = clipped ? max_ : std::vector<float>{};
  return true;
}

bool DriftMonitor::RestoreBaseline(const std::vector<double>& mean, const std::vector<double>& sd,
                                   const std::vector<float>& lo, const std::vector<float>& hi) {
  const size_t n = static_cast<size_t>(n_features_);
  if (mean.size() != n || sd.size() != n || lo.size() != hi.size() ||
      (!lo.empty() && lo.size() != n)) {
    return false;
  }
  mean_ = mean;
  std_ = sd;
  // No reference sample: psi / ks stay off until the next SetBaseline.
  ref_.clear();
  calibrated_rows_ = 0;
  min_ = lo.empty() ? std::vector<float>(n, -INFINITY) : lo;
  max_ = hi.empty() ? std::vector<float>(n, INFINITY) : hi;
  has_baseline_ = true;
  return true;
}

void DriftMonitor::Evaluate(const std::vector<float>& recent, int window,
                            double shadow_relative_rmse) {
  if (shadow_relative_rmse >= 0) {
    Update(DriftKind::kShadowDivergence, shadow_relative_rmse, config_.shadow_relative_rmse);
  }
  const size_t stride = static_cast<size_t>(window) * n_features_;
  const size_t n = stride ? recent.size() / stride : 0;
  if (!has_baseline_ || n == 0) return;
  std::vector<double> mean(n_features_, 0.0);
  uint64_t outside = 0;
  for (size_t i = 0; i < n; ++i) {
    const float* x = recent.data() + i * stride + (stride - n_features_);
    for (int f = 0; f < n_features_; ++f) {
      mean[f] += x[f];
      outside += (x[f] < min_[f] || x[f] > max_[f]);
    }
  }
  double drift = 0;
  int worst = -1;
  for (int f = 0; f < n_features_; ++f) {
    const double z = std::fabs(mean[f] / static_cast<double>(n) - mean_[f]) / std_[f];
    if (worst < 0 || z > drift) drift = z, worst = f;
  }
  worst_[static_cast<int>(DriftKind::kInputDrift)].store(worst, std::memory_order_relaxed);
  Update(DriftKind::kInputDrift, drift, config_.input_z);
  Update(DriftKind::kSaturation,
         static_cast<double>(outside) / static_cast<double>(n * n_features_),
         config_.saturation_ratio);

  // psi / ks over the most recent rows, as many as the thresholds were calibrated for (a shorter
  // window would be noisier than the null distribution assumes: wait until there are enough).
  const size_t m = static_cast<size_t>(calibrated_rows_);
  if (ref_.empty() || m == 0 || n < m) return;
  std::vector<float> live(m);
  double psi = 0, ks = 0;
  int worst_psi = 0, worst_ks = 0;
  for (int f = 0; f < n_features_; ++f) {
    for (size_t i = 0; i < m; ++i) {
      live[i] = recent[(n - m + i) * stride + (stride - n_features_) + f];
    }
    const double p = Psi(f, live), k = Ks(f, &live);
    if (p > psi) psi = p, worst_psi = f;
    if (k > ks) ks = k, worst_ks = f;
  }
  UpdateCalibrated(DriftKind::kPsi, psi, worst_psi);
  UpdateCalibrated(DriftKind::kKs, ks, worst_ks);
}

void DriftMonitor::UpdateCalibrated(DriftKind k, double score, int worst) {
  const int i = static_cast<int>(k);
  scores_[i].store(score, std::memory_order_relaxed);
  worst_[i].store(worst, std::memory_order_relaxed);
  const double threshold = thresholds_[i].load(std::memory_order_relaxed);
  const double clear = clear_[i].load(std::memory_order_relaxed);
  above_[i] = score > threshold ? above_[i] + 1 : 0;
  const bool on = alarms_[i].load(std::memory_order_relaxed);
  if (!on && above_[i] >= config_.consecutive) {
    alarms_[i].store(true, std::memory_order_relaxed);
    raised_[i].fetch_add(1, std::memory_order_relaxed);
    spdlog::warn(
        "drift alarm RAISED: model {} {} = {:.4g} > {:.4g} for {} evaluations; worst feature {}",
        model_, DriftKindName(k), score, threshold, above_[i], FeatureName(worst));
  } else if (on && score < clear) {
    alarms_[i].store(false, std::memory_order_relaxed);
    spdlog::info("drift alarm cleared: model {} {} = {:.4g} < {:.4g}; worst feature {}", model_,
                 DriftKindName(k), score, clear, FeatureName(worst));
  }
}

void DriftMonitor::Update(DriftKind k, double score, double threshold) {
  const int i = static_cast<int>(k);
  scores_[i].store(score, std::memory_order_relaxed);
  const bool on = alarms_[i].load(std::memory_order_relaxed);
  if (!on && score > threshold) {
    alarms_[i].store(true, std::memory_order_relaxed);
    raised_[i].fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("drift alarm RAISED: model {} {} = {:.4g} > {:.4g}", model_, DriftKindName(k),
                 score, threshold);
  } else if (on && score < 0.8 * threshold) {
    alarms_[i].store(false, std::memory_order_relaxed);
    spdlog::info("drift alarm cleared: model {} {} = {:.4g}", model_, DriftKindName(k), score);
  }
}

}  // namespace qsig::server
