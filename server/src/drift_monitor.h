// Drift alarms, evaluated off the tick path (in the calibration thread, about once a second).
//
// Kinds, per model:
//  - input_drift: the recent inputs' per-feature mean moved, in units of the calibration set's
//    standard deviation (the score is the largest over features);
//  - saturation: the fraction of recent feature values outside the interval the INT8 model's
//    input quantization represents (those values are clipped by static quantization; 0 when
//    the model reads its input in FP32);
//  - shadow_divergence: INT8-vs-FP32 relative RMSE over the last evaluation interval;
//  - psi / wasserstein: distribution drift of the features (population stability index and
//    normalized Wasserstein-1 distance, see distribution_drift.h) between drift.window rows
//    sampled evenly over
//    the last drift.span_s seconds and a reference of as many rows sampled the same way over the
//    first drift.span_s seconds after the baseline was set (the model installed); the score is
//    the largest over features and the worst feature is named in the log and GetModelStatus;
//  - output_psi / output_wasserstein: the same for the model's published outputs.
// The first three alarm when the score crosses its configured threshold and clear below 80% of
// it. The distribution kinds' thresholds are calibrated when their reference is complete
// (DistributionReference: block bootstrap of the reference, see distribution_drift.h); they
// alarm after drift.consecutive evaluations above the drift.alarm_quantile quantile of their
// null and clear below its drift.clear_quantile quantile. A new baseline (a recalibration)
// clears them and starts a new reference. Every raise and clear is logged.
//
// Thread-safety: SetBaseline / RestoreBaseline / GetBaseline may run on any thread
// (calibration, admin RPCs) concurrently with Evaluate (the drift thread, one at a time); the
// bootstrap runs on the drift thread outside the internal mutex. The getters are lock-free.
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
  kWasserstein = 4,
  kOutputPsi = 5,
  kOutputWasserstein = 6,
};
inline constexpr int kDriftKinds = 7;
const char* DriftKindName(DriftKind k);

class DriftMonitor {
 public:
  // feature_names: one per feature for log lines and status (empty: "f<i>").
  DriftMonitor(std::string model, int n_features, const config::DriftConfig& config,
               std::vector<std::string> feature_names = {});

  // Baseline from the windows a calibration used (the last timestep of each window: input_drift)
  // and the installed model's input clip interval per feature (empty: the input is not
  // quantized: saturation). Starts a new psi / wasserstein reference (the next drift.span_s
  // seconds). `settle`: the first model of a fresh process (warm-up): features computed from cold
  // books (multi-update returns, flow averages) and the opening market are not the regime, so the
  // reference starts after drift.span_s more seconds.
  void SetBaseline(const std::vector<float>& windows, int window, int n_features,
                   const std::vector<float>& clip_lo = {}, const std::vector<float>& clip_hi = {},
                   bool settle = false);
  bool has_baseline() const noexcept { return has_baseline_.load(std::memory_order_acquire); }
  // The baseline for the state directory; false without one.
  bool GetBaseline(StoredBaseline* out) const;
  // Restores what GetBaseline returned (no bootstrap is rerun); false (nothing changed) if it
  // does not fit this model.
  bool RestoreBaseline(const StoredBaseline& stored);

  // How many of the rows (and outputs) that arrive between two evaluations the caller should
  // pass: drift.window rows per drift.span_s, evenly spaced.
  size_t rows_per_evaluation() const noexcept { return rows_per_evaluation_; }
  // Scores the newest drift.window windows (same layout, oldest first: input_drift and
  // saturation), the shadow relative RMSE (<0 = unknown), and takes `rows` (last timesteps,
  // n_features each) and `outputs` sampled evenly from what arrived since the last call (at most
  // rows_per_evaluation() each) into the psi / wasserstein windows, or into the reference while it
  // is being collected; raises or clears alarms. One thread at a time.
  void Evaluate(const std::vector<float>& recent, int window, double shadow_relative_rmse,
                const std::vector<float>& rows = {}, const std::vector<float>& outputs = {});
  // True once after a psi / wasserstein reference was completed (or restored): the state directory
  // should store the baseline again.
  bool TakeReferenceCompleted() noexcept { return completed_.exchange(false); }

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
  // The feature with the largest score of the last evaluation (input_drift / psi / wasserstein; ""
  // for the others or before any evaluation).
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
  // The one hysteresis: stores the score and worst feature (-1: none), raises after `needed`
  // evaluations in a row above threshold(k), clears below clear_threshold(k).
  void Update(DriftKind k, double score, int worst, int needed);
  // Sets the thresholds of a reference's two kinds and clears their alarms.
  void Publish(bool output, const DistributionReference* ref);
  // Appends to a rolling sample (columns, at most drift.window rows each).
  void Append(std::vector<std::vector<float>>* sample, const std::vector<float>& rows, int width);
  void ScoreDistribution(bool output, const DistributionReference& ref,
                         const std::vector<std::vector<float>>& sample);
  std::string FeatureName(int f) const;
  DistributionReference::Options ReferenceOptions(uint64_t salt) const;

  const std::string model_;
  const int n_features_;
  const config::DriftConfig config_;
  const size_t rows_per_evaluation_;
  const std::vector<std::string> names_;

  mutable std::mutex mu_;  // Guards the three below (swapped whole; never held for a bootstrap).
  // features_ / output_ null: the reference is being collected.
  std::shared_ptr<const Stats> stats_;
  std::shared_ptr<const DistributionReference> features_;
  std::shared_ptr<const DistributionReference> output_;
  std::atomic<bool> has_baseline_{false};
  uint64_t generation_ = 0;  // Bumped by each baseline (guarded by mu_).
  bool settle_ = false;      // Guarded by mu_: the baseline asked to settle first.
  std::atomic<bool> completed_{false};

  // Evaluate's thread only: the rolling samples (features: n_features columns; output: one).
  uint64_t seen_generation_ = 0;
  size_t settle_rows_ = 0;  // Rows still to discard before the reference starts.
  std::vector<std::vector<float>> sample_[2];
  int above_[kDriftKinds] = {};
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
