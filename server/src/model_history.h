// What the state directory records per model: every installed version (HistoryEntry, with its
// lineage and validation), the version counter, the current version, the FP32 fallback flag and
// the drift baseline; serialized as JSON (one file per model, see state_store.h).
// Thread-safety: plain data; the functions are reentrant.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "distribution_drift.h"
#include "qsig/models/model.h"

namespace qsig::server {

// Why a version was installed (the history's `reason`).
inline constexpr const char* kReasonWarmup = "warmup";
inline constexpr const char* kReasonSchedule = "schedule";
inline constexpr const char* kReasonAdmin = "admin";
inline constexpr const char* kReasonReload = "reload";
inline constexpr const char* kReasonFallback = "fallback";
inline constexpr const char* kReasonRollback = "rollback";
inline constexpr const char* kReasonRestore = "restore";
inline constexpr const char* kReasonConfig = "config";  // The configured model at start.

// How to rebuild an installed INT8 runtime without calibrating: the quantization it uses, the
// weight range and what precision() reports (models::BuildInt8FromDescription).
struct RuntimeRecipe {
  models::Int8Description description;
  bool reduce_range = false;
  std::string precision = "int8";
};

struct HistoryEntry {
  uint64_t version = 0;
  std::string reason;
  int64_t installed_unix_ns = 0;
  std::string precision;  // int8 | mixed | fp32
  std::string source_sha256, artifact_sha256, calibration_method;
  uint64_t samples = 0;
  int64_t samples_first_unix_ns = 0, samples_last_unix_ns = 0;
  double relative_rmse_vs_fp32 = -1, relative_rmse_vs_incumbent = -1;
  std::string isa;
  uint64_t rollback_of = 0;
  bool fallback = false;      // This version serves FP32 (automatic fallback).
  std::string artifact_file;  // In the model's state folder ("" = none kept).
  bool has_recipe = false;
  RuntimeRecipe recipe;  // Set with has_recipe: restores the runtime without calibrating.
};

// A bounded sample of a model's calibration windows (CalibrationStore::Reservoir), as stored:
// `windows` holds count x window x n_features floats, oldest window first, `arrival_unix_ns`
// their arrival times; `seen` is how many windows they are a uniform sample of.
struct SampleSnapshot {
  int window = 0, n_features = 0;
  uint64_t seen = 0;
  std::vector<int64_t> arrival_unix_ns;
  std::vector<float> windows;
  size_t count() const noexcept { return arrival_unix_ns.size(); }
};

// The drift monitor's baseline (DriftMonitor::GetBaseline), as stored.
struct StoredBaseline {
  std::vector<double> mean, std;
  std::vector<float> lo, hi;            // Empty: the input is not quantized (no clip interval).
  StoredDistribution features, output;  // psi / wasserstein references (live_rows 0: none).
};

struct ModelState {
  std::string model;
  uint64_t next_version = 1;     // The version the next install gets.
  uint64_t current_version = 0;  // 0 = none recorded.
  bool fallback = false;
  std::string config_sha256;          // The configured source file the state was built from.
  std::vector<HistoryEntry> history;  // Oldest first.
  bool has_baseline = false;
  StoredBaseline baseline;

  const HistoryEntry* Find(uint64_t version) const;
};

std::string SerializeModelState(const ModelState& state);
// `origin` names the source in errors (a file path).
absl::StatusOr<ModelState> ParseModelState(std::string_view json, const std::string& origin);

}  // namespace qsig::server
