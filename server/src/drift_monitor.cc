#include "drift_monitor.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <utility>

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
    case DriftKind::kOutputPsi:
      return "output_psi";
    case DriftKind::kOutputKs:
      return "output_ks";
  }
  return "unknown";
}

namespace {

constexpr int K(DriftKind k) { return static_cast<int>(k); }

}  // namespace

DriftMonitor::DriftMonitor(std::string model, int n_features, const config::DriftConfig& config,
                           std::vector<std::string> feature_names)
    : model_(std::move(model)),
      n_features_(n_features),
      config_(config),
      names_(std::move(feature_names)) {
  const auto fixed = [&](DriftKind k, double t) {
    thresholds_[K(k)] = t;
    clear_[K(k)] = 0.8 * t;
  };
  fixed(DriftKind::kInputDrift, config_.input_z);
  fixed(DriftKind::kSaturation, config_.saturation_ratio);
  fixed(DriftKind::kShadowDivergence, config_.shadow_relative_rmse);
  for (auto& w : worst_) w = -1;
}

std::string DriftMonitor::FeatureName(int f) const {
  if (f < 0) return "";
  if (static_cast<size_t>(f) < names_.size()) return names_[f];
  return fmt::format("f{}", f);
}

std::string DriftMonitor::worst_feature(DriftKind k) const {
  if (k == DriftKind::kOutputPsi || k == DriftKind::kOutputKs) return "";
  return FeatureName(worst_[K(k)].load(std::memory_order_relaxed));
}

DistributionReference::Options DriftMonitor::ReferenceOptions(uint64_t salt) const {
  DistributionReference::Options o;
  o.live_rows = config_.window;
  o.alarm_quantile = config_.alarm_quantile;
  o.clear_quantile = config_.clear_quantile;
  o.seed = std::hash<std::string>()(model_) ^ salt;
  return o;
}

void DriftMonitor::InstallDistribution(bool output,
                                       std::shared_ptr<const DistributionReference> ref) {
  const DriftKind psi = output ? DriftKind::kOutputPsi : DriftKind::kPsi;
  const DriftKind ks = output ? DriftKind::kOutputKs : DriftKind::kKs;
  {
    std::lock_guard<std::mutex> lock(mu_);
    (output ? output_ : features_) = ref;
    generation_[output].fetch_add(1, std::memory_order_release);
  }
  const DistributionThresholds t = ref ? ref->thresholds() : DistributionThresholds{};
  thresholds_[K(psi)].store(t.psi, std::memory_order_relaxed);
  clear_[K(psi)].store(t.psi_clear, std::memory_order_relaxed);
  thresholds_[K(ks)].store(t.ks, std::memory_order_relaxed);
  clear_[K(ks)].store(t.ks_clear, std::memory_order_relaxed);
  if (!output) block_.store(ref ? ref->block() : 0, std::memory_order_relaxed);
  for (DriftKind k : {psi, ks}) {
    if (alarms_[K(k)].exchange(false, std::memory_order_relaxed)) {
      spdlog::info("drift alarm cleared: model {} {}: a new baseline was installed", model_,
                   DriftKindName(k));
    }
  }
}

void DriftMonitor::SetBaseline(const std::vector<float>& windows, int window, int n_features,
                               const std::vector<float>& clip_lo,
                               const std::vector<float>& clip_hi) {
  const size_t stride = static_cast<size_t>(window) * n_features;
  const size_t n = stride ? windows.size() / stride : 0;
  if (n < 2 || n_features != n_features_) return;
  auto stats = std::make_shared<Stats>();
  stats->mean.assign(n_features, 0.0);
  stats->sd.assign(n_features, 0.0);
  const bool clipped = clip_lo.size() == static_cast<size_t>(n_features) &&
                       clip_hi.size() == static_cast<size_t>(n_features);
  stats->lo = clipped ? clip_lo : std::vector<float>(n_features, -INFINITY);
  stats->hi = clipped ? clip_hi : std::vector<float>(n_features, INFINITY);
  // The newest row of each window, per feature, in time order.
  std::vector<std::vector<float>> columns(n_features, std::vector<float>(n));
  for (size_t i = 0; i < n; ++i) {
    const float* x = windows.data() + i * stride + (stride - n_features);
    for (int f = 0; f < n_features; ++f) {
      columns[f][i] = x[f];
      stats->mean[f] += x[f];
    }
  }
  for (int f = 0; f < n_features; ++f) stats->mean[f] /= static_cast<double>(n);
  for (int f = 0; f < n_features; ++f) {
    for (float v : columns[f]) stats->sd[f] += (v - stats->mean[f]) * (v - stats->mean[f]);
    stats->sd[f] = std::sqrt(stats->sd[f] / static_cast<double>(n - 1));
    if (!(stats->sd[f] > 1e-12)) stats->sd[f] = 1e-12;  // Constant feature: any move is drift.
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_ = std::move(stats);
  }
  has_baseline_.store(true, std::memory_order_release);

  const auto t0 = std::chrono::steady_clock::now();
  auto ref = DistributionReference::Build(std::move(columns), ReferenceOptions(0));
  if (!ref.ok()) {
    spdlog::warn("drift: model {}: no psi/ks reference: {}", model_,
                 std::string(ref.status().message()));
    InstallDistribution(false, nullptr);
    return;
  }
  const auto built = std::make_shared<const DistributionReference>(std::move(*ref));
  spdlog::info(
      "drift: model {}: psi/ks thresholds from {} reference rows for windows of {} rows ({} "
      "resamples, block {}, {:.0f} ms): psi {:.4g} (clears below {:.4g}), ks {:.4g} (clears "
      "below {:.4g})",
      model_, built->rows(), built->live_rows(), built->resamples(), built->block(),
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
      built->thresholds().psi, built->thresholds().psi_clear, built->thresholds().ks,
      built->thresholds().ks_clear);
  InstallDistribution(false, built);
}

void DriftMonitor::SetOutputBaseline(std::vector<float> outputs) {
  auto ref = DistributionReference::Build({std::move(outputs)}, ReferenceOptions(1));
  if (!ref.ok()) {
    spdlog::warn("drift: model {}: no output reference: {}", model_,
                 std::string(ref.status().message()));
    InstallDistribution(true, nullptr);
    return;
  }
  const auto built = std::make_shared<const DistributionReference>(std::move(*ref));
  spdlog::info(
      "drift: model {}: output psi/ks thresholds from {} reference outputs for windows of {} "
      "(block {}): psi {:.4g}, ks {:.4g}",
      model_, built->rows(), built->live_rows(), built->block(), built->thresholds().psi,
      built->thresholds().ks);
  InstallDistribution(true, built);
}

bool DriftMonitor::GetBaseline(StoredBaseline* out) const {
  std::shared_ptr<const Stats> stats;
  std::shared_ptr<const DistributionReference> features, output;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats = stats_;
    features = features_;
    output = output_;
  }
  if (!stats) return false;
  *out = StoredBaseline{};
  out->mean = stats->mean;
  out->std = stats->sd;
  if (!stats->lo.empty() && std::isfinite(stats->lo[0])) {
    out->lo = stats->lo;
    out->hi = stats->hi;
  }
  if (features) out->features = features->Store();
  if (output) out->output = output->Store();
  return true;
}

bool DriftMonitor::RestoreBaseline(const StoredBaseline& s) {
  const size_t n = static_cast<size_t>(n_features_);
  if (s.mean.size() != n || s.std.size() != n || s.lo.size() != s.hi.size() ||
      (!s.lo.empty() && s.lo.size() != n)) {
    return false;
  }
  auto stats = std::make_shared<Stats>();
  stats->mean = s.mean;
  stats->sd = s.std;
  stats->lo = s.lo.empty() ? std::vector<float>(n, -INFINITY) : s.lo;
  stats->hi = s.hi.empty() ? std::vector<float>(n, INFINITY) : s.hi;
  std::shared_ptr<const DistributionReference> features, output;
  if (auto r = DistributionReference::Restore(s.features); r.ok() && r->columns() == n_features_) {
    features = std::make_shared<const DistributionReference>(std::move(*r));
  }
  if (auto r = DistributionReference::Restore(s.output); r.ok() && r->columns() == 1) {
    output = std::make_shared<const DistributionReference>(std::move(*r));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_ = std::move(stats);
  }
  has_baseline_.store(true, std::memory_order_release);
  InstallDistribution(false, std::move(features));
  InstallDistribution(true, std::move(output));
  return true;
}

void DriftMonitor::Evaluate(const std::vector<float>& recent, int window,
                            double shadow_relative_rmse, const std::vector<float>& outputs) {
  if (shadow_relative_rmse >= 0) {
    Update(DriftKind::kShadowDivergence, shadow_relative_rmse, config_.shadow_relative_rmse);
  }
  std::shared_ptr<const Stats> stats;
  std::shared_ptr<const DistributionReference> features, output;
  uint64_t generation[2];
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats = stats_;
    features = features_;
    output = output_;
    generation[0] = generation_[0].load(std::memory_order_relaxed);
    generation[1] = generation_[1].load(std::memory_order_relaxed);
  }
  // A new reference restarts the consecutive counts of its kinds.
  for (int g = 0; g < 2; ++g) {
    if (generation[g] == seen_generation_[g]) continue;
    seen_generation_[g] = generation[g];
    const DriftKind a = g ? DriftKind::kOutputPsi : DriftKind::kPsi;
    const DriftKind b = g ? DriftKind::kOutputKs : DriftKind::kKs;
    above_[K(a)] = above_[K(b)] = 0;
  }

  if (output && !outputs.empty() && outputs.size() >= static_cast<size_t>(output->live_rows())) {
    columns_.resize(1);
    columns_[0] = outputs;
    const DistributionReference::Score s = output->Evaluate(columns_, &scratch_);
    if (s.worst_ks >= 0) {
      UpdateCalibrated(DriftKind::kOutputPsi, s.psi, -1);
      UpdateCalibrated(DriftKind::kOutputKs, s.ks, -1);
    }
  }

  const size_t stride = static_cast<size_t>(window) * n_features_;
  const size_t n = stride ? recent.size() / stride : 0;
  if (!stats || n == 0) return;
  columns_.resize(n_features_);
  for (auto& c : columns_) c.resize(n);
  std::vector<double> mean(n_features_, 0.0);
  uint64_t outside = 0;
  for (size_t i = 0; i < n; ++i) {
    const float* x = recent.data() + i * stride + (stride - n_features_);
    for (int f = 0; f < n_features_; ++f) {
      columns_[f][i] = x[f];
      mean[f] += x[f];
      outside += (x[f] < stats->lo[f] || x[f] > stats->hi[f]);
    }
  }
  double drift = 0;
  int worst = -1;
  for (int f = 0; f < n_features_; ++f) {
    const double z = std::fabs(mean[f] / static_cast<double>(n) - stats->mean[f]) / stats->sd[f];
    if (worst < 0 || z > drift) drift = z, worst = f;
  }
  worst_[K(DriftKind::kInputDrift)].store(worst, std::memory_order_relaxed);
  Update(DriftKind::kInputDrift, drift, config_.input_z);
  Update(DriftKind::kSaturation,
         static_cast<double>(outside) / static_cast<double>(n * n_features_),
         config_.saturation_ratio);

  // psi / ks over as many of the newest rows as the thresholds were calibrated for (a shorter
  // window would be noisier than the null assumes: wait until there are enough).
  if (!features || n < static_cast<size_t>(features->live_rows())) return;
  const DistributionReference::Score s = features->Evaluate(columns_, &scratch_);
  if (s.worst_ks < 0) return;
  UpdateCalibrated(DriftKind::kPsi, s.psi, s.worst_psi);
  UpdateCalibrated(DriftKind::kKs, s.ks, s.worst_ks);
}

void DriftMonitor::UpdateCalibrated(DriftKind k, double score, int worst) {
  const int i = K(k);
  scores_[i].store(score, std::memory_order_relaxed);
  worst_[i].store(worst, std::memory_order_relaxed);
  const double threshold = thresholds_[i].load(std::memory_order_relaxed);
  const double clear = clear_[i].load(std::memory_order_relaxed);
  if (!(threshold > 0)) return;
  above_[i] = score > threshold ? above_[i] + 1 : 0;
  const bool on = alarms_[i].load(std::memory_order_relaxed);
  const std::string where = worst >= 0 ? "; worst feature " + FeatureName(worst) : "";
  if (!on && above_[i] >= config_.consecutive) {
    alarms_[i].store(true, std::memory_order_relaxed);
    raised_[i].fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("drift alarm RAISED: model {} {} = {:.4g} > {:.4g} for {} evaluations{}", model_,
                 DriftKindName(k), score, threshold, above_[i], where);
  } else if (on && score < clear) {
    alarms_[i].store(false, std::memory_order_relaxed);
    spdlog::info("drift alarm cleared: model {} {} = {:.4g} < {:.4g}{}", model_, DriftKindName(k),
                 score, clear, where);
  }
}

void DriftMonitor::Update(DriftKind k, double score, double threshold) {
  const int i = K(k);
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
