// Drift alarms, evaluated off the tick path (in the calibration thread, about once a second).
//
// Three kinds, per model:
//  - input drift: the recent inputs' per-feature mean moved, in units of the calibration set's
//    standard deviation (the score is the largest over features);
//  - saturation: the fraction of recent feature values outside the interval the INT8 model's
//    input quantization represents (those values are clipped by static quantization; 0 when
//    the model reads its input in FP32);
//  - shadow divergence: INT8-vs-FP32 relative RMSE over the last evaluation interval;
//  - psi / ks: distribution drift of each feature (population stability index with 10 bins at
//    the reference's deciles, and the Kolmogorov-Smirnov distance) between the recent windows and
//    the calibration reference; the score is the largest over features (the worst feature's name
//    is kept for the log and GetModelStatus).
// The first three alarm when the score crosses its configured threshold and clear below 80% of it.
// psi / ks thresholds are calibrated in SetBaseline: the null distribution of the max-over-features
// statistic is estimated by moving-block bootstrap of the reference (windows of drift.window rows,
// block length from the lag-1 autocorrelation); they alarm after drift.consecutive evaluations
// above the drift.alarm_quantile quantile and clear below the drift.clear_quantile quantile.
// Each raise and clear is logged.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "qsig/config/config.h"

namespace qsig::server {

enum class DriftKind { kInputDrift = 0, kSaturation = 1, kShadowDivergence = 2, kPsi = 3, kKs = 4 };
inline constexpr int kDriftKinds = 5;
const char* DriftKindName(DriftKind k);

class DriftMonitor {
 public:
  // feature_names: one per feature for log lines and status (empty: "f<i>").
  DriftMonitor(std::string model, int n_features, const config::DriftConfig& config,
               std::vector<std::string> feature_names = {});

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
  // The threshold the score is compared with (psi / ks: calibrated; 0 until a baseline with a
  // reference sample exists).
  double threshold(DriftKind k) const noexcept {
    return thresholds_[static_cast<int>(k)].load(std::memory_order_relaxed);
  }
  // The clear threshold of psi / ks (calibrated), 0 for other kinds.
  double clear_threshold(DriftKind k) const noexcept {
    return clear_[static_cast<int>(k)].load(std::memory_order_relaxed);
  }
  // The feature with the largest score of the last evaluation (psi / ks / input_drift; "" for the
  // others or before any evaluation). Same thread as Evaluate, or any thread after it (copied).
  std::string worst_feature(DriftKind k) const;
  // Block length the last calibration's bootstrap used (0: none).
  int bootstrap_block() const noexcept { return block_; }
  uint64_t raised(DriftKind k) const noexcept {
    return raised_[static_cast<int>(k)].load(std::memory_order_relaxed);
  }
  const std::string& model() const noexcept { return model_; }

 private:
  void Update(DriftKind k, double score, double threshold);
  void UpdateCalibrated(DriftKind k, double score, int worst);
  void CalibrateThresholds(int live_rows);
  // PSI and KS of `live` (one feature, sorted in place) against the reference of feature f.
  double Psi(int f, const std::vector<float>& live) const { return Psi(f, live, ref_share_[f]); }
  double Ks(int f, std::vector<float>* live) const { return Ks(live, ref_sorted_[f]); }
  double Psi(int f, const std::vector<float>& live, const std::vector<double>& share) const;
  static double Ks(std::vector<float>* live, const std::vector<float>& ref_sorted);
  std::string FeatureName(int f) const;

  std::string model_;
  int n_features_;
  config::DriftConfig config_;
  bool has_baseline_ = false;
  std::vector<double> mean_, std_;
  std::vector<float> min_, max_;
  std::vector<std::string> names_;
  // Reference sample per feature (time order) and sorted; decile edges and reference bin shares.
  std::vector<std::vector<float>> ref_, ref_sorted_;
  std::vector<std::vector<float>> edges_;
  std::vector<std::vector<double>> ref_share_;
  int calibrated_rows_ = 0;  // Live-window length the thresholds were calibrated for.
  int block_ = 0;
  int above_[kDriftKinds] = {};
  std::atomic<int> worst_[kDriftKinds] = {};
  std::atomic<double> thresholds_[kDriftKinds] = {};
  std::atomic<double> clear_[kDriftKinds] = {};
  std::atomic<double> scores_[kDriftKinds] = {};
  std::atomic<bool> alarms_[kDriftKinds] = {};
  std::atomic<uint64_t> raised_[kDriftKinds] = {};
};

}  // namespace qsig::server
