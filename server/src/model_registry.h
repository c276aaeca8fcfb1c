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
#include "model_history.h"
#include "qsig/config/config.h"
#include "qsig/feeds/feature_vector.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/model.h"
#include "qsig/models/window.h"

namespace qsig::server {

// What a slot serves, published as one unit: the spec, its FP32 runtime (the shadow, and the
// primary during warm-up) and the INT8 runtime (nullptr until calibrated), with the version
// clients see (0 = FP32 warm-up; every swap increments it).
struct Installed {
  std::shared_ptr<const models::ModelSpec> spec;
  std::shared_ptr<const models::Model> fp32;
  std::shared_ptr<const models::Model> int8;  // INT8 (or mixed) primary; nullptr during warm-up.
  uint64_t version = 0;
  // Automatic FP32 fallback: int8 is nullptr (FP32 serves, signals carry FLAG_FALLBACK) and
  // held_int8 keeps the INT8 runtime that diverged, for status and an operator's way back.
  bool fallback = false;
  std::shared_ptr<const models::Model> held_int8;
  // How int8 (or held_int8) was built, to rebuild it without calibrating (nullptr: unknown).
  std::shared_ptr<const RuntimeRecipe> recipe;
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
  // Per raw feature, the interval the installed INT8 model's input quantization represents
  // (values outside are clipped); empty when the model reads its input in FP32.
  std::vector<float> input_clip_lo, input_clip_hi;
  // Lineage for the history (set when installed).
  std::shared_ptr<const RuntimeRecipe> recipe;
  double relative_rmse_vs_incumbent = -1;  // Candidate vs the INT8 it replaced, / FP32 RMS.
  int64_t samples_first_unix_ns = 0, samples_last_unix_ns = 0;  // Arrival of the windows used.
};

// The clip interval of each raw feature under the INT8 model's input quantization `q` (see
// models::DescribeInt8: s16 quantizes x / std, u8 quantizes (x - mean) / std). False (and
// nothing written) when the input is not quantized.
bool InputClipRange(const models::ModelSpec& spec, const models::QuantizedInput& q,
                    std::vector<float>* lo, std::vector<float>* hi);

class ModelSlot {
 public:
  ModelSlot(std::string name, std::shared_ptr<const models::ModelSpec> spec);

  const std::string& name() const noexcept { return name_; }
  // Floats of scratch every worker reserves for this model; a runtime that needs more is
  // refused.
  size_t workspace_capacity() const noexcept { return workspace_capacity_; }

  // Tick path: what is served now; never nullptr. Valid until the caller's next quiescent
  // point (the worker's epoch), see Reclaim().
  const Installed* current() const noexcept { return current_.load(std::memory_order_acquire); }
  // INT8 calibrated (also while in FP32 fallback: warm-up calibration does not run again).
  bool calibrated() const noexcept {
    const Installed* c = current();
    return c->int8 != nullptr || c->fallback;
  }
  // Shorthands for the current bundle (tick path or under Acquire()).
  const models::Model& fp32() const noexcept { return *current()->fp32; }
  const models::ModelSpec& spec() const noexcept { return *current()->spec; }
  // Cold path (RPC and calibration threads): keeps the bundle alive while in use.
  std::shared_ptr<const Installed> Acquire() const;
  uint64_t version() const noexcept { return current()->version; }

  // Publishes `int8` as the new primary beside the current FP32 model (ending a fallback);
  // returns its version.
  uint64_t Install(std::shared_ptr<const models::Model> int8,
                   std::shared_ptr<const RuntimeRecipe> recipe = nullptr);
  // Enters (FP32 primary, the INT8 runtime held aside) or leaves the automatic FP32 fallback
  // as a new version; returns it, or 0 if there was nothing to change (already in that state,
  // or no INT8 runtime).
  uint64_t SetFallback(bool on);
  // Restart: publishes a restored model under the version it had, and continues numbering at
  // `next_version`. `int8` nullptr keeps the current bundle and only sets the counter.
  absl::Status Restore(std::shared_ptr<const models::ModelSpec> spec,
                       std::shared_ptr<const models::Model> int8,
                       std::shared_ptr<const RuntimeRecipe> recipe, uint64_t version,
                       uint64_t next_version, bool fallback);
  uint64_t next_version() const;
  // Replaces the whole model (hot reload): a new spec and FP32 runtime, with `int8` (from a
  // verified artifact) or nullptr (warm-up calibration follows). The window and input size must
  // match the running model. Returns the new version.
  absl::StatusOr<uint64_t> Replace(std::shared_ptr<const models::ModelSpec> spec,
                                   std::shared_ptr<const models::Model> int8,
                                   std::shared_ptr<const RuntimeRecipe> recipe = nullptr);
  // Frees retired bundles once every worker epoch in `epochs` has moved past the retirement.
  void Reclaim(const std::vector<const std::atomic<uint64_t>*>& epochs);
  size_t retired() const;

 private:
  void PublishLocked(std::shared_ptr<Installed> next);
  absl::Status CheckReplaceLocked(const models::ModelSpec& spec, const Installed& next) const;

  std::string name_;
  size_t workspace_capacity_;
  std::atomic<const Installed*> current_{nullptr};

  mutable std::mutex mu_;  // Guards owner_, retired_, next_version_ (never on the tick path).
  std::shared_ptr<const Installed> owner_;
  struct Retired {
    std::shared_ptr<const Installed> installed;
    std::vector<uint64_t> epochs_at_retire;
  };
  std::vector<Retired> retired_;
  uint64_t next_version_ = 1;
};

// The drift monitor's baseline for a model installed from a .qsig artifact: the calibration
// windows it carries and the input clip interval of its INT8 runtime (InputClipRange).
struct DriftBaseline {
  std::vector<float> windows;
  std::vector<float> clip_lo, clip_hi;
};
// `built`: how the artifact's rebuilt runtime quantizes (BuildInt8Model's description).
DriftBaseline BaselineFromArtifact(const models::io::Artifact& artifact,
                                   const models::Int8Description& built);

// Loads every configured model; errors name the model and file. `skip_int8[i]` (if given and
// true) leaves model i in FP32 even if its file is an artifact: the caller restores its INT8
// runtime from the state directory instead.
absl::StatusOr<std::vector<std::unique_ptr<ModelSlot>>> LoadModels(
    const std::vector<config::ModelConfig>& configs, const std::vector<std::string>& feature_names,
    std::vector<DriftBaseline>* baselines = nullptr, const std::vector<bool>* skip_int8 = nullptr);

// Builds the INT8 runtime of an artifact fast: from `recipe` (no calibration) when given, checked
// against the artifact's reference outputs (models::io::VerifyInt8Model); without a recipe, or if
// the check fails, by models::io::BuildInt8Model (calibrates again). `described` receives the
// recipe actually used.
absl::StatusOr<std::unique_ptr<models::Model>> BuildVerifiedInt8(
    const models::io::Artifact& artifact, const RuntimeRecipe* recipe, RuntimeRecipe* described);

// Recent inputs per model, as ready-made windows, kept in bounded rings for calibration.
// Thread-safety: all methods lock an internal mutex (cold path only).
// The i-th (0 <= i < n) of n indices evenly spaced over [0, have), n <= have: the last one is
// have - 1 (the newest of a time-ordered sequence).
inline size_t EvenlySpaced(size_t i, size_t n, size_t have) noexcept {
  return (have * (i + 1)) / n - 1;
}

class CalibrationStore {
 public:
  CalibrationStore(const std::vector<std::unique_ptr<ModelSlot>>& slots, int max_locate,
                   int n_features, int capacity_windows);
  void Add(const feeds::FeatureVector& fv);
  size_t windows(size_t model) const;
  // Windows for a calibration, oldest first, contiguous, with the wall-clock arrival (ns since
  // the Unix epoch) of the oldest and newest (0 when empty), read under one lock.
  struct WindowSample {
    std::vector<float> windows;
    int64_t first_ns = 0, last_ns = 0;
  };
  // The most recent `max_windows` windows of a model (all if 0).
  WindowSample Recent(size_t model, size_t max_windows) const;
  // The session (the reservoir, below): at most `max_windows` of its windows (all if 0), evenly
  // spaced in arrival time.
  WindowSample Session(size_t model, size_t max_windows) const;
  // Windows of a model written so far (a count that never wraps).
  uint64_t written(size_t model) const;
  // The newest timestep (n_features floats) of `count` windows evenly spaced among those
  // written after the first `since` (as many as are still held), oldest first.
  std::vector<float> SampleRows(size_t model, uint64_t since, size_t count) const;
  // The reservoir: a uniform sample (Algorithm R) of at most kReservoirWindows of the windows
  // since the model's last calibration (ResetReservoir): the session a scheduled recalibration
  // calibrates on, where the ring holds only the newest windows (seconds of a busy feed). Also
  // what state.dir keeps. Oldest first, with arrival times and the count it stands for.
  static constexpr size_t kReservoirWindows = 4096;
  SampleSnapshot Reservoir(size_t model) const;
  void ResetReservoir(size_t model);
  // Windows since the model's last calibration (what the reservoir is a sample of).
  uint64_t session_windows(size_t model) const;
  // Restores a stored reservoir (its `seen` carries on: the sample stays uniform over the windows
  // before and after the restart) and appends its windows to the ring as if they had just
  // arrived, keeping their arrival times; for a store that holds nothing yet (at start, before the
  // feed). Returns the windows taken: 0 for a snapshot of another shape or a store already
  // written to.
  size_t Import(size_t model, const SampleSnapshot& snapshot);

 private:
  mutable std::mutex mu_;
  int n_features_;
  std::vector<int> model_window_;
  int capacity_;
  // Per locate: the last (largest model window) vectors.
  models::WindowHistory history_;
  // Per model: ring of windows.
  std::vector<std::vector<float>> windows_;
  std::vector<std::vector<int64_t>> window_ns_;  // Per model: arrival time of each window.
  std::vector<size_t> written_;
  struct ReservoirSlots {
    std::vector<float> windows;  // filled x stride.
    std::vector<int64_t> ns;
    size_t filled = 0;
    uint64_t seen = 0;
  };
  std::vector<ReservoirSlots> reservoir_;
  // The reservoir's slots in arrival order (under mu_).
  static std::vector<size_t> ArrivalOrder(const ReservoirSlots& r);
  uint64_t rng_ = 0x9e3779b97f4a7c15ull;  // splitmix64 state.
};

// Calibrates a candidate INT8 model from `windows`, validates it against FP32 on the most
// recent 20% (the gate), and installs it if the relative RMSE is within `max_relative_rmse`.
// With `artifact` (persistence), the candidate is calibrated by models::io::MakeArtifact (on at
// most kMaxStoredWindows windows, evenly spread) and *artifact receives the artifact that
// rebuilds it.
CalibrationReport CalibrateAndInstall(ModelSlot& slot, const std::vector<float>& windows,
                                      const models::Int8Options& options, double max_relative_rmse,
                                      models::io::Artifact* artifact = nullptr);

// The INT8 options the calibration.* keys describe.
models::Int8Options Int8OptionsFromConfig(const config::CalibrationConfig& c);

}  // namespace qsig::server
