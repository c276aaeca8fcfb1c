// Drift alarms, evaluated off the tick path (in the calibration thread, about once a second).
//
// Kinds, per model:
//  - input_drift: the recent inputs' per-feature mean moved, in units of the calibration set's
//    standard deviation (the score is the largest over features);
//  - saturation: the fraction of recent feature values outside the interval the INT8 model's
//    input quantization represents (those values are clipped by static quantization; 0 when
//    the model reads its input in FP32);
//  - shadow_divergence: INT8-vs-FP32 relative RMSE over the last evaluation interval;
//  - psi / ks: distribution drift of the features (population stability index at the reference's
//    deciles, and the Kolmogorov-Smirnov distance) between the newest drift.window rows and the
//    calibration reference; the score is the largest over features and the worst feature is
//    named in the log and in GetModelStatus;
//  - output_psi / output_ks: the same for the model's published outputs against its outputs on
//    the calibration windows.
// The first three alarm when the score crosses its configured threshold and clear below 80% of
// it. The distribution kinds' thresholds are calibrated with the baseline (DistributionReference:
// block bootstrap of the reference, see distribution_drift.h); they alarm after
// drift.consecutive evaluations above the drift.alarm_quantile quantile of their null and clear
// below its drift.clear_quantile quantile. A new baseline (a recalibration) resets them. Every
// raise and clear is logged.
//
// Thread-safety: SetBaseline / SetOutputBaseline / RestoreBaseline may run on any thread
// (calibration, admin RPCs) concurrently with Evaluate (the drift thread); the expensive part
// (the bootstrap) runs outside the internal mutex. The getters are lock-free.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "distribution_drift.h"
#include "model_history.h"
#include "qsig/config/config.h"

namespace qsig::server {

enum class DriftKind {
  kInputDrift = 0,
  kSaturation = 1,
  kShadowDivergence = 2,
  kPsi = 3,
  kKs = 4,
  kOutputPsi = 5,
  kOutputKs = 6,
};
inline constexpr int kDriftKinds = 7;
const char* DriftKindName(DriftKind k);

class DriftMonitor {
 public:
  // feature_names: one per feature for log lines and status (empty: "f<i>").
  DriftMonitor(std::string model, int n_features, const config::DriftConfig& config,
               std::vector<std::string> feature_names = {});

  // Baseline from the windows a calibration used (the last timestep of each window, time
  // order) and the installed model's input clip interval per feature (empty: the input is not
  // quantized). Calibrates the psi / ks thresholds.
  void SetBaseline(const std::vector<float>& windows, int window, int n_features,
                   const std::vector<float>& clip_lo = {}, const std::vector<float>& clip_hi = {});
  // The installed model's outputs on (the newest of) those windows, time order: the reference
  // of output_psi / output_ks.
  void SetOutputBaseline(std::vector<float> outputs);
  bool has_baseline() const noexcept { return has_baseline_.load(std::memory_order_acquire); }
  // The baseline for the state directory; false without one.
  bool GetBaseline(StoredBaseline* out) const;
  // Restores what GetBaseline returned (no bootstrap is rerun); false (nothing changed) if it
  // does not fit this model.
  bool RestoreBaseline(const StoredBaseline& stored);

  // Scores the recent windows (same layout, oldest first), the shadow relative RMSE (<0 =
  // unknown) and the model's recent published outputs (oldest first; may be empty); raises or
  // clears alarms. One thread at a time.
  void Evaluate(const std::vector<float>& recent, int window, double shadow_relative_rmse,
                const std::vector<float>& outputs = {});

  double score(DriftKind k) const noexcept {
    return scores_[static_cast<int>(k)].load(std::memory_order_relaxed);
  }
  bool alarm(DriftKind k) const noexcept {
    return alarms_[static_cast<int>(k)].load(std::memory_order_relaxed);
  }
  // The threshold the score is compared with (distribution kinds: calibrated; 0 until a
  // baseline with a reference exists).
  double threshold(DriftKind k) const noexcept {
    return thresholds_[static_cast<int>(k)].load(std::memory_order_relaxed);
  }
  // Where a raised distribution alarm clears (calibrated); 80% of threshold() for the others.
  double clear_threshold(DriftKind k) const noexcept {
    return clear_[static_cast<int>(k)].load(std::memory_order_relaxed);
  }
  // The feature with the largest score of the last evaluation (input_drift / psi / ks; "" for
  // the others or before any evaluation).
  std::string worst_feature(DriftKind k) const;
  // Block length of the feature reference's bootstrap (0: none).
  int bootstrap_block() const noexcept { return block_.load(std::memory_order_relaxed); }
  uint64_t raised(DriftKind k) const noexcept {
    return raised_[static_cast<int>(k)].load(std::memory_order_relaxed);
  }
  const std::string& model() const noexcept { return model_; }

 private:
  struct Stats {  // input_drift and saturation.
    std::vector<double> mean, sd;
    std::vector<float> lo, hi;  // -inf / +inf: not quantized.
  };
  void Update(DriftKind k, double score, double threshold);
  void UpdateCalibrated(DriftKind k, double score, int worst);
  void InstallDistribution(bool output, std::shared_ptr<const DistributionReference> ref);
  std::string FeatureName(int f) const;
  DistributionReference::Options ReferenceOptions(uint64_t salt) const;

  const std::string model_;
  const int n_features_;
  const config::DriftConfig config_;
  const std::vector<std::string> names_;

  mutable std::mutex mu_;  // Guards the three below (swapped whole; never held for a bootstrap).
  std::shared_ptr<const Stats> stats_;
  std::shared_ptr<const DistributionReference> features_;
  std::shared_ptr<const DistributionReference> output_;
  std::atomic<bool> has_baseline_{false};
  std::atomic<uint64_t> generation_[2] = {};  // Bumped by each features / output reference.

  // Evaluate's thread only.
  uint64_t seen_generation_[2] = {};
  int above_[kDriftKinds] = {};
  std::vector<std::vector<float>> columns_;
  std::vector<float> scratch_;

  std::atomic<int> block_{0};
  std::atomic<int> worst_[kDriftKinds] = {};
  std::atomic<double> thresholds_[kDriftKinds] = {};
  std::atomic<double> clear_[kDriftKinds] = {};
  std::atomic<double> scores_[kDriftKinds] = {};
  std::atomic<bool> alarms_[kDriftKinds] = {};
  std::atomic<uint64_t> raised_[kDriftKinds] = {};
};

}  // namespace qsig::server
