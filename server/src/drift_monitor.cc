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
    case DriftKind::kWasserstein:
      return "wasserstein";
    case DriftKind::kOutputPsi:
      return "output_psi";
    case DriftKind::kOutputWasserstein:
      return "output_wasserstein";
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
      rows_per_evaluation_(static_cast<size_t>(std::ceil(
          config.window * config.interval_s / std::max(config.span_s, config.interval_s)))),
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
  if (k == DriftKind::kOutputPsi || k == DriftKind::kOutputWasserstein) return "";
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

void DriftMonitor::Publish(bool output, const DistributionReference* ref) {
  const DriftKind psi = output ? DriftKind::kOutputPsi : DriftKind::kPsi;
  const DriftKind w1 = output ? DriftKind::kOutputWasserstein : DriftKind::kWasserstein;
  const DistributionThresholds t = ref ? ref->thresholds() : DistributionThresholds{};
  // The effect floor lifts a threshold below it, and its clear level by the same factor (the
  // hysteresis keeps its calibrated proportion).
  const auto store = [this](DriftKind k, double alarm, double clear, double floor) {
    const double lift = alarm > 0 && alarm < floor ? floor / alarm : 1.0;
    thresholds_[K(k)].store(alarm * lift, std::memory_order_relaxed);
    clear_[K(k)].store(clear * lift, std::memory_order_relaxed);
  };
  store(psi, t.psi, t.psi_clear, config_.psi_floor);
  store(w1, t.w1, t.w1_clear, config_.wasserstein_floor);
  if (!output) block_.store(ref ? ref->block() : 0, std::memory_order_relaxed);
  for (DriftKind k : {psi, w1}) {
    if (alarms_[K(k)].exchange(false, std::memory_order_relaxed)) {
      spdlog::info("drift alarm cleared: model {} {}: a new baseline was installed", model_,
                   DriftKindName(k));
    }
  }
}

void DriftMonitor::SetBaseline(const std::vector<float>& windows, int window, int n_features,
                               const std::vector<float>& clip_lo, const std::vector<float>& clip_hi,
                               bool settle) {
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
  for (size_t i = 0; i < n; ++i) {
    const float* x = windows.data() + i * stride + (stride - n_features);
    for (int f = 0; f < n_features; ++f) stats->mean[f] += x[f];
  }
  for (int f = 0; f < n_features; ++f) stats->mean[f] /= static_cast<double>(n);
  for (size_t i = 0; i < n; ++i) {
    const float* x = windows.data() + i * stride + (stride - n_features);
    for (int f = 0; f < n_features; ++f) {
      stats->sd[f] += (x[f] - stats->mean[f]) * (x[f] - stats->mean[f]);
    }
  }
  for (int f = 0; f < n_features; ++f) {
    stats->sd[f] = std::sqrt(stats->sd[f] / static_cast<double>(n - 1));
    if (!(stats->sd[f] > 1e-12)) stats->sd[f] = 1e-12;  // Constant feature: any move is drift.
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats_ = std::move(stats);
    features_ = nullptr;  // A new reference: the next drift.span_s seconds.
    output_ = nullptr;
    settle_ = settle;
    ++generation_;
  }
  has_baseline_.store(true, std::memory_order_release);
  Publish(false, nullptr);
  Publish(true, nullptr);
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
    features_ = features;  // Null: collect a new reference.
    output_ = output;
    settle_ = false;
    ++generation_;
  }
  has_baseline_.store(true, std::memory_order_release);
  Publish(false, features.get());
  Publish(true, output.get());
  return true;
}

void DriftMonitor::Evaluate(const std::vector<float>& recent, int window,
                            double shadow_relative_rmse, const std::vector<float>& rows,
                            const std::vector<float>& outputs) {
  if (shadow_relative_rmse >= 0) {
    Update(DriftKind::kShadowDivergence, shadow_relative_rmse, -1, 1);
  }
  std::shared_ptr<const Stats> stats;
  std::shared_ptr<const DistributionReference> ref[2];
  uint64_t generation;
  bool settle;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stats = stats_;
    ref[0] = features_;
    ref[1] = output_;
    generation = generation_;
    settle = settle_;
  }
  if (generation != seen_generation_) {  // A new baseline: new samples, counts restart.
    seen_generation_ = generation;
    for (auto& sample : sample_) sample.clear();
    for (int& a : above_) a = 0;
    settle_rows_ = settle ? static_cast<size_t>(config_.window) : 0;
  }
  if (settle_rows_ > 0) {  // drift.span_s worth of rows before the reference starts.
    settle_rows_ -= std::min(settle_rows_, rows.size() / std::max(n_features_, 1));
  } else if (stats) {
    Append(&sample_[0], rows, n_features_);
    Append(&sample_[1], outputs, 1);
  }
  const size_t window_rows = static_cast<size_t>(config_.window);
  for (int o = 0; o < 2; ++o) {
    if (sample_[o].empty() || sample_[o][0].size() < window_rows) continue;
    if (ref[o]) {
      ScoreDistribution(o == 1, *ref[o], sample_[o]);
      continue;
    }
    // The reference is complete: calibrate its thresholds (off the tick path, ~0.1 s).
    const auto t0 = std::chrono::steady_clock::now();
    auto built = DistributionReference::Build(sample_[o], ReferenceOptions(o));
    if (!built.ok()) {
      spdlog::warn("drift: model {}: no {} reference: {}", model_, o ? "output" : "feature",
                   std::string(built.status().message()));
      sample_[o].clear();
      continue;
    }
    ref[o] = std::make_shared<const DistributionReference>(std::move(*built));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (generation_ != generation) break;  // A newer baseline arrived meanwhile.
      (o ? output_ : features_) = ref[o];
    }
    Publish(o == 1, ref[o].get());
    completed_.store(true);
    const DistributionThresholds& t = ref[o]->thresholds();
    spdlog::info(
        "drift: model {}: {} reference complete ({} rows over drift.span_s {} s; {} resamples, "
        "block {}, {:.0f} ms): psi {:.4g} (clears below {:.4g}), wasserstein {:.4g} (clears below "
        "{:.4g}); effect floors psi {}, wasserstein {}",
        model_, o ? "output" : "feature", ref[o]->rows(), config_.span_s, ref[o]->resamples(),
        ref[o]->block(),
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
        t.psi, t.psi_clear, t.w1, t.w1_clear, config_.psi_floor, config_.wasserstein_floor);
  }

  const size_t stride = static_cast<size_t>(window) * n_features_;
  const size_t total = stride ? recent.size() / stride : 0;
  if (!stats || total == 0) return;
  // input_drift and saturation: the newest drift.window windows.
  const size_t n = std::min(total, window_rows);
  std::vector<double> mean(n_features_, 0.0);
  uint64_t outside = 0;
  for (size_t i = total - n; i < total; ++i) {
    const float* x = recent.data() + i * stride + (stride - n_features_);
    for (int f = 0; f < n_features_; ++f) {
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
  Update(DriftKind::kInputDrift, drift, worst, 1);
  Update(DriftKind::kSaturation,
         static_cast<double>(outside) / static_cast<double>(n * n_features_), -1, 1);
}

void DriftMonitor::Append(std::vector<std::vector<float>>* sample, const std::vector<float>& rows,
                          int width) {
  if (width <= 0 || rows.size() < static_cast<size_t>(width)) return;
  sample->resize(width);
  const size_t n = rows.size() / width;
  for (size_t i = 0; i < n; ++i) {
    for (int c = 0; c < width; ++c) (*sample)[c].push_back(rows[i * width + c]);
  }
  const size_t keep = static_cast<size_t>(config_.window);
  for (auto& col : *sample) {
    if (col.size() > keep) col.erase(col.begin(), col.end() - static_cast<std::ptrdiff_t>(keep));
  }
}

void DriftMonitor::ScoreDistribution(bool output, const DistributionReference& ref,
                                     const std::vector<std::vector<float>>& sample) {
  const DistributionReference::Score s = ref.Evaluate(sample, &scratch_);
  if (s.worst_w1 < 0) return;
  Update(output ? DriftKind::kOutputPsi : DriftKind::kPsi, s.psi, output ? -1 : s.worst_psi,
         config_.consecutive);
  Update(output ? DriftKind::kOutputWasserstein : DriftKind::kWasserstein, s.w1,
         output ? -1 : s.worst_w1, config_.consecutive);
}

void DriftMonitor::Update(DriftKind k, double score, int worst, int needed) {
  const int i = K(k);
  scores_[i].store(score, std::memory_order_relaxed);
  worst_[i].store(worst, std::memory_order_relaxed);
  const double threshold = thresholds_[i].load(std::memory_order_relaxed);
  const double clear = clear_[i].load(std::memory_order_relaxed);
  if (!(threshold > 0)) return;  // A distribution kind whose reference is being collected.
  above_[i] = score > threshold ? above_[i] + 1 : 0;
  const bool on = alarms_[i].load(std::memory_order_relaxed);
  const std::string where = worst >= 0 ? "; worst feature " + FeatureName(worst) : "";
  if (!on && above_[i] >= needed) {
    alarms_[i].store(true, std::memory_order_relaxed);
    raised_[i].fetch_add(1, std::memory_order_relaxed);
    spdlog::warn("drift alarm RAISED: model {} {} = {:.4g} > {:.4g}{}{}", model_, DriftKindName(k),
                 score, threshold,
                 needed > 1 ? fmt::format(" for {} evaluations", above_[i]) : std::string(), where);
  } else if (on && score < clear) {
    alarms_[i].store(false, std::memory_order_relaxed);
    spdlog::info("drift alarm cleared: model {} {} = {:.4g} < {:.4g}{}", model_, DriftKindName(k),
                 score, clear, where);
  }
}

}  // namespace qsig::server
