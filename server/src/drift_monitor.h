// Drift alarms, evaluated off the tick path (in the calibration thread, about once a second).
//
// Three kinds, per model:
//  - input drift: the recent inputs' per-feature mean moved, in units of the calibration set's
//    standard deviation (the score is the largest over features);
//  - saturation: the fraction of recent feature values outside the interval the INT8 model's
//    input quantization represents (those values are clipped by static quantization; 0 when
//    the model reads its input in FP32);
//  - shadow divergence: INT8-vs-FP32 relative RMSE over the last evaluation interval.
// An alarm is raised when its score crosses the threshold and cleared when it falls back below
// 80% of it (hysteresis), with a log line each way.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "qsig/config/config.h"

namespace qsig::server {

enum class DriftKind { kInputDrift = 0, kSaturation = 1, kShadowDivergence = 2 };
inline constexpr int kDriftKinds = 3;
const char* DriftKindName(DriftKind k);

class DriftMonitor {
 public:
  DriftMonitor(std::string model, int n_features, const config::DriftConfig& config);

  // Baseline from the windows a calibration used (the last timestep of each window) and the
  // installed model's input clip interval per feature (empty: the input is not quantized).
  void SetBaseline(const std::vector<float>& windows, int window, int n_features,
                   const std::vector<float>& clip_lo = {}, const std::vector<float>& clip_hi = {});
  bool has_baseline() const noexcept { return has_baseline_; }
  // The baseline as numbers (for the state directory): per-feature mean and standard deviation,
  // and the clip interval (empty when the input is not quantized). False without a baseline.
  // Same thread as SetBaseline.
  bool GetBaseline(std::vector<double>* mean, std::vector<double>* sd, std::vector<float>* lo,
                   std::vector<float>* hi) const;
  // Restores a baseline GetBaseline returned; false (nothing changed) if the sizes do not fit.
  bool RestoreBaseline(const std::vector<double>& mean, const std::vector<double>& sd,
                       const std::vector<float>& lo, const std::vector<float>& hi);

  // Scores the recent windows (same layout) and the shadow relative RMSE (<0 = unknown);
  // raises or clears alarms.
  void Evaluate(const std::vector<float>& recent, int window, double shadow_relative_rmse);

  double score(DriftKind k) const noexcept {
    return scores_[static_cast<int>(k)].load(std::memory_order_relaxed);
  }
  bool alarm(DriftKind k) const noexcept {
    return alarms_[static_cast<int>(k)].load(std::memory_order_relaxed);
  }
  uint64_t raised(DriftKind k) const noexcept {
    return raised_[static_cast<int>(k)].load(std::memory_order_relaxed);
  }
  const std::string& model() const noexcept { return model_; }

 private:
  void Update(DriftKind k, double score, double threshold);

  std::string model_;
  int n_features_;
  config::DriftConfig config_;
  bool has_baseline_ = false;
  std::vector<double> mean_, std_;
  std::vector<float> min_, max_;
  std::atomic<double> scores_[kDriftKinds] = {};
  std::atomic<bool> alarms_[kDriftKinds] = {};
  std::atomic<uint64_t> raised_[kDriftKinds] = {};
};

}  // namespace qsig::server
