#include "drift_monitor.h"

#include <algorithm>
#include <cmath>

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
  }
  return "unknown";
}

DriftMonitor::DriftMonitor(std::string model, int n_features, const config::DriftConfig& config)
    : model_(std::move(model)), n_features_(n_features), config_(config) {}

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
  for (int f = 0; f < n_features_; ++f) {
    drift = std::max(drift, std::fabs(mean[f] / static_cast<double>(n) - mean_[f]) / std_[f]);
  }
  Update(DriftKind::kInputDrift, drift, config_.input_z);
  Update(DriftKind::kSaturation,
         static_cast<double>(outside) / static_cast<double>(n * n_features_),
         config_.saturation_ratio);
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
