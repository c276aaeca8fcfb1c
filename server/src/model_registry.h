// The models a server runs: for each configured model, the FP32 runtime (shadow, and primary
// until the first calibration) and the current INT8 runtime behind an atomic pointer.
//
// Swaps are RCU-style: a new INT8 model is published with one release store; workers load the
// pointer once per tick (acquire) and never block. The old model is retired and freed only after
// every worker has passed a tick boundary since the swap (each worker advances an epoch counter
// every loop iteration).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/config/config.h"
#include "qsig/feeds/feature_vector.h"
#include "qsig/models/model.h"

namespace qsig::server {

// An installed INT8 model and the version clients see.
struct Installed {
  std::shared_ptr<const models::Model> model;
  uint64_t version = 0;
};

struct CalibrationReport {
  std::string model;
  uint64_t version = 0;  // Version installed (unchanged if rejected).
  uint32_t samples = 0;
  double validation_rmse = 0;
  double fp32_rms = 0;
  double sign_agreement = 0;
  bool installed = false;
  std::string precision;  // "int8" or "mixed" (some layers kept FP32 by the accuracy guard).
  std::string message;
};

class ModelSlot {
 public:
  ModelSlot(std::string name, std::shared_ptr<const models::ModelSpec> spec);

  const std::string& name() const noexcept { return name_; }
  // Floats of scratch every worker reserves for this model; an INT8 candidate that needs more
  // is refused.
  size_t workspace_capacity() const noexcept { return workspace_capacity_; }
  const models::Model& fp32() const noexcept { return *fp32_; }
  const models::ModelSpec& spec() const noexcept { return *spec_; }
  std::shared_ptr<const models::ModelSpec> spec_ptr() const { return spec_; }

  // Tick path: the current INT8 model or nullptr before the first calibration.
  const Installed* current() const noexcept { return current_.load(std::memory_order_acquire); }
  // Cold path (RPC threads): keeps the model alive while in use.
  std::shared_ptr<const Installed> Acquire() const;
  uint64_t version() const noexcept;

  // Publishes `model` as the new INT8 primary; returns its version.
  uint64_t Install(std::shared_ptr<const models::Model> model);
  // Frees retired models once every worker epoch in `epochs` has moved past the retirement.
  void Reclaim(const std::vector<const std::atomic<uint64_t>*>& epochs);
  size_t retired() const;

 private:
  std::string name_;
  std::shared_ptr<const models::ModelSpec> spec_;
  std::unique_ptr<models::Model> fp32_;
  size_t workspace_capacity_;
  std::atomic<const Installed*> current_{nullptr};

  mutable std::mutex mu_;  // Guards owner_ and retired_ (never taken on the tick path).
  std::shared_ptr<const Installed> owner_;
  struct Retired {
    std::shared_ptr<const Installed> installed;
    std::vector<uint64_t> epochs_at_retire;
  };
  std::vector<Retired> retired_;
  uint64_t next_version_ = 1;
};

// Loads every configured model; errors name the model and file.
absl::StatusOr<std::vector<std::unique_ptr<ModelSlot>>> LoadModels(
    const std::vector<config::ModelConfig>& configs, const std::vector<std::string>& feature_names);

// Recent inputs per model, as ready-made windows, kept in bounded rings for calibration.
// Thread-safety: all methods lock an internal mutex (cold path only).
class CalibrationStore {
 public:
  CalibrationStore(const std::vector<std::unique_ptr<ModelSlot>>& slots, int max_locate,
                   int n_features, int capacity_windows);
  void Add(const feeds::FeatureVector& fv);
  size_t windows(size_t model) const;
  // The most recent `max_windows` windows of a model (all if 0), oldest first, contiguous.
  std::vector<float> Recent(size_t model, size_t max_windows) const;

 private:
  mutable std::mutex mu_;
  int n_features_;
  int max_window_;
  std::vector<int> model_window_;
  int capacity_;
  // Per locate: ring of the last max_window_ vectors.
  std::vector<std::vector<float>> history_;
  std::vector<int> history_count_;
  // Per model: ring of windows.
  std::vector<std::vector<float>> windows_;
  std::vector<size_t> written_;
};

// Calibrates a candidate INT8 model from `windows`, validates it against FP32 on the most
// recent 20% (the gate), and installs it if the relative RMSE is within `max_relative_rmse`.
CalibrationReport CalibrateAndInstall(ModelSlot& slot, const std::vector<float>& windows,
                                      const models::Int8Options& options, double max_relative_rmse);

// The INT8 options the calibration.* keys describe.
models::Int8Options Int8OptionsFromConfig(const config::CalibrationConfig& c);

}  // namespace qsig::server
