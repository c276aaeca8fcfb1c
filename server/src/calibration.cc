// Model installation and calibration: Recalibrate (calibrate from the store, validate, install),
// Reload (a model file swapped in), and the calibration thread's loop (warm-up calibration,
// RCU reclamation, drift checks and the schedule on their intervals).
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/loader.h"
#include "server_impl.h"
#include "server_state.h"
#include "spdlog/spdlog.h"

namespace qsig::server {

CalibrationReport ServerState::Recalibrate(size_t model, size_t max_samples) {
  return Recalibrate(model, max_samples, kReasonAdmin);
}

CalibrationReport ServerState::Recalibrate(size_t model, size_t max_samples, const char* reason) {
  std::lock_guard<std::mutex> lock(calibration_mu);
  const size_t n = max_samples ? max_samples : static_cast<size_t>(config.calibration.samples);
  const std::vector<float> windows = store->Recent(model, n);
  models::io::Artifact artifact;
  const bool persist = state_store && state_store->persistent();
  CalibrationReport r =
      CalibrateAndInstall(*slots[model], windows, Int8OptionsFromConfig(config.calibration),
                          config.calibration.max_relative_rmse, persist ? &artifact : nullptr);
  (r.installed ? calibrations : calibration_rejections).fetch_add(1);
  if (r.installed) {
    drift[model]->SetBaseline(windows, slots[model]->spec().window, slots[model]->spec().input_size,
                              r.input_clip_lo, r.input_clip_hi);
    RecordInstall(model, reason, &r, persist ? &artifact : nullptr, nullptr);
  }
  return r;
}

absl::StatusOr<ServerState::ReloadResult> ServerState::Reload(size_t model,
                                                              const std::string& path) {
  std::lock_guard<std::mutex> lock(calibration_mu);  // Never interleave with a calibration.
  ModelSlot& slot = *slots[model];
  const std::string file = path.empty() ? config.models[model].path : path;
  models::io::ImportOptions import;
  import.name = slot.name();
  import.feature_names = feature_names;
  import.window = config.models[model].window ? config.models[model].window : slot.spec().window;
  auto loaded = models::io::LoadAnyModel(file, import);
  if (!loaded.ok()) {
    return absl::Status(loaded.status().code(),
                        absl::StrCat("model '", slot.name(), "': ", loaded.status().message(),
                                     " (the running model keeps serving)"));
  }
  std::shared_ptr<const models::Model> int8;
  RuntimeRecipe recipe;
  if (loaded->artifact) {
    auto built = BuildVerifiedInt8(*loaded->artifact, nullptr, &recipe);
    if (!built.ok()) {
      return absl::Status(
          built.status().code(),
          absl::StrCat("model '", slot.name(), "' (", file, "): ", built.status().message(),
                       " (the running model keeps serving)"));
    }
    int8 = std::move(*built);
  }
  auto version =
      slot.Replace(loaded->spec, int8,
                   loaded->artifact ? std::make_shared<const RuntimeRecipe>(recipe) : nullptr);
  if (version.ok() && loaded->artifact) {
    const DriftBaseline b = BaselineFromArtifact(*loaded->artifact, recipe.description);
    drift[model]->SetBaseline(b.windows, loaded->spec->window, loaded->spec->input_size, b.clip_lo,
                              b.clip_hi);
  }
  if (!version.ok()) {
    return absl::Status(
        version.status().code(),
        absl::StrCat(version.status().message(), " (the running model keeps serving)"));
  }
  std::string bytes;
  if (loaded->artifact && state_store && state_store->persistent()) {
    // Keep the artifact as it was verified (a later restart serves it at once).
    auto read = ReadWholeFile(file, size_t{1} << 30);
    if (read.ok()) bytes = std::move(*read);
  }
  RecordInstall(model, kReasonReload, nullptr, loaded->artifact ? &*loaded->artifact : nullptr,
                bytes.empty() ? nullptr : &bytes);
  ReloadResult r;
  r.version = *version;
  r.format = loaded->format;
  r.precision = int8 ? int8->precision() : "fp32";
  r.sha256 = loaded->spec->sha256;
  spdlog::info("model {}: reloaded from {} ({}), version {}, {}", slot.name(), file, r.format,
               r.version, int8 ? "INT8 from the artifact" : "FP32 until warm-up calibration");
  return r;
}

void Server::Impl::CalibrationLoop() {
  ServerState& c = state;
  std::vector<const std::atomic<uint64_t>*> epochs;
  for (const auto& w : c.workers) epochs.push_back(&w->epoch());
  feeds::FeatureVector fv;
  auto next_drift = std::chrono::steady_clock::now();
  std::vector<std::pair<double, double>> shadow_sums;
  int64_t last_scheduled_day = -1;
  while (calibration_running.load()) {
    for (auto& w : c.workers) {
      while (w->samples().pop(fv)) c.store->Add(fv);
    }
    // Warm-up: the first INT8 calibration of each model once enough windows have arrived.
    for (size_t m = 0; m < c.slots.size(); ++m) {
      if (c.slots[m]->calibrated()) continue;
      if (c.store->windows(m) < static_cast<size_t>(c.config.calibration.warmup_samples)) continue;
      CalibrationReport r = c.Recalibrate(m, c.config.calibration.warmup_samples, kReasonWarmup);
      if (r.installed) {
        spdlog::info(
            "model {}: {} calibrated on {} warm-up windows ({}{}), version {}, "
            "validation RMSE {:.3g} (FP32 RMS {:.3g}), sign agreement {:.2f}%",
            r.model, r.precision, r.samples, c.config.calibration.method,
            Int8OptionsFromConfig(c.config.calibration).reduce_range ? ", 7-bit weights" : "",
            r.version, r.validation_rmse, r.fp32_rms, 100 * r.sign_agreement);
      } else {
        spdlog::error("model {}: warm-up calibration failed: {}; FP32 keeps serving", r.model,
                      r.message);
      }
    }
    for (auto& slot : c.slots) slot->Reclaim(epochs);

    const auto now = std::chrono::steady_clock::now();
    if (now >= next_drift) {
      next_drift = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                             std::chrono::duration<double>(c.config.drift.interval_s));
      EvaluateDrift(&shadow_sums);
    }
    RunSchedule(&last_scheduled_day);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace qsig::server
