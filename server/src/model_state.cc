// What survives a restart and what an operator can undo: the state directory (restore at
// start, a record of every installed version), the automatic FP32 fallback (decided in the
// calibration thread, published by RCU), Rollback, ClearFallback and InjectMiscalibration.
#include <cmath>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "qsig/feeds/clock.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/loader.h"
#include "qsig/quant/calibration.h"
#include "server_state.h"
#include "spdlog/spdlog.h"
#include "state_store.h"

namespace qsig::server {
namespace {

uint64_t RandomEpoch() {
  std::random_device rd;
  uint64_t e = 0;
  while (e == 0) e = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  return e;
}

const char* ServingPrecision(const Installed& i) { return i.int8 ? i.int8->precision() : "fp32"; }

}  // namespace

absl::Status ServerState::OpenState(std::vector<bool>* restorable) {
  epoch = RandomEpoch();
  std::vector<std::string> names;
  for (const auto& m : config.models) names.push_back(m.name);
  auto opened = StateStore::Open(config.state.dir, names, config.state.history_per_model);
  if (!opened.ok()) return opened.status();
  state_store = std::move(*opened);
  for (const std::string& e : state_store->load_errors()) {
    spdlog::error("state.dir: {} (that model starts from its configured file)", e);
  }
  fallback_track = std::make_unique<FallbackTrack[]>(names.size());
  restorable->assign(names.size(), false);
  for (size_t m = 0; m < names.size(); ++m) {
    const ModelState st = state_store->Get(m);
    const HistoryEntry* e = st.Find(st.current_version);
    (*restorable)[m] = e != nullptr && !e->artifact_file.empty();
  }
  return absl::OkStatus();
}

void ServerState::RestoreSamples() {
  if (!state_store || !state_store->persistent()) return;
  const int n_features = static_cast<int>(feature_names.size());
  for (size_t m = 0; m < slots.size(); ++m) {
    const std::string& name = slots[m]->name();
    auto s = state_store->LoadSamples(m, slots[m]->spec().window, n_features);
    if (!s.ok()) {
      if (!absl::IsNotFound(s.status())) {
        spdlog::warn("model {}: calibration samples in {} not used: {}", name, state_store->dir(),
                     std::string(s.status().message()));
      }
      continue;
    }
    const size_t n = store->Import(m, *s);
    if (n == 0) continue;
    spdlog::info(
        "model {}: {} calibration windows restored from {} (a uniform sample of {} windows that "
        "arrived {} to {})",
        name, n, state_store->dir(), s->seen,
        absl::FormatTime(absl::FromUnixNanos(s->arrival_unix_ns.front())),
        absl::FormatTime(absl::FromUnixNanos(s->arrival_unix_ns.back())));
  }
}

void ServerState::PersistSamples(std::vector<uint64_t>* saved) {
  if (!state_store || !state_store->persistent()) return;
  saved->resize(slots.size(), 0);
  for (size_t m = 0; m < slots.size(); ++m) {
    const uint64_t written = store->written(m);
    if (written == (*saved)[m]) continue;
    // Also when empty (a calibration just started a new session): a restart must not bring the
    // previous session back.
    const SampleSnapshot snapshot = store->Reservoir(m);
    if (auto st = state_store->SaveSamples(m, snapshot); !st.ok()) {
      spdlog::error("model {}: cannot write the calibration samples: {}", slots[m]->name(),
                    std::string(st.message()));
      continue;
    }
    (*saved)[m] = written;
  }
}

void ServerState::RestoreState(const std::vector<bool>& restorable) {
  for (size_t m = 0; m < slots.size(); ++m) {
    ModelSlot& slot = *slots[m];
    ModelState st = state_store->Get(m);
    const std::string configured_sha = slot.spec().sha256;
    const bool same_config = st.config_sha256 == configured_sha;
    bool restored = false;
    if (restorable[m] && same_config) {
      const HistoryEntry e = *st.Find(st.current_version);
      const auto t0 = feeds::MonotonicNanos();
      auto artifact = state_store->LoadArtifact(m, e.artifact_file);
      absl::Status status = artifact.status();
      if (artifact.ok()) {
        RuntimeRecipe recipe;
        auto int8 = BuildVerifiedInt8(*artifact, e.has_recipe ? &e.recipe : nullptr, &recipe);
        status = int8.status();
        if (int8.ok()) {
          auto spec = std::make_shared<const models::ModelSpec>(artifact->spec);
          status = slot.Restore(spec, std::shared_ptr<const models::Model>(std::move(*int8)),
                                std::make_shared<const RuntimeRecipe>(recipe), e.version,
                                st.next_version, st.fallback);
          if (status.ok()) {
            restored = true;
            const bool have_baseline = st.has_baseline && drift[m]->RestoreBaseline(st.baseline);
            if (!have_baseline) {
              const DriftBaseline b = BaselineFromArtifact(*artifact, recipe.description);
              SetDriftBaseline(m, b.windows, b.clip_lo, b.clip_hi);
            }
            spdlog::info(
                "model {}: restored version {} ({}{}) from {} in {:.3f} s; next version {}",
                slot.name(), e.version, recipe.precision, st.fallback ? ", FP32 fallback" : "",
                state_store->dir(), static_cast<double>(feeds::MonotonicNanos() - t0) * 1e-9,
                st.next_version);
          }
        }
      }
      if (!restored) {
        spdlog::error(
            "model {}: cannot restore version {} from {}: {}; serving the configured "
            "model",
            slot.name(), e.version, state_store->dir(), std::string(status.message()));
      }
    } else if (restorable[m]) {
      spdlog::warn(
          "model {}: the configured model changed since version {} was installed; "
          "serving it, versions continue at {}",
          slot.name(), st.current_version, st.next_version);
    }
    if (restored) continue;
    // The configured model serves. Its INT8 runtime was skipped for a restore that did not
    // happen: build it now (the slow way).
    if (restorable[m] && !slot.calibrated()) {
      models::io::ImportOptions import;
      import.name = slot.name();
      import.feature_names = feature_names;
      import.window = config.models[m].window;
      auto loaded = models::io::LoadAnyModel(config.models[m].path, import);
      if (loaded.ok() && loaded->artifact) {
        RuntimeRecipe recipe;
        auto int8 = BuildVerifiedInt8(*loaded->artifact, nullptr, &recipe);
        if (int8.ok()) {
          slot.Install(std::shared_ptr<const models::Model>(std::move(*int8)),
                       std::make_shared<const RuntimeRecipe>(recipe));
          const DriftBaseline b = BaselineFromArtifact(*loaded->artifact, recipe.description);
          SetDriftBaseline(m, b.windows, b.clip_lo, b.clip_hi);
        }
      }
    }
    // Versions continue where the state left them; the configured model is recorded.
    (void)slot.Restore(nullptr, nullptr, nullptr, 0, st.next_version, false);
    const std::shared_ptr<const Installed> cur = slot.Acquire();
    const bool renumber = st.current_version != 0 && cur->version < st.next_version;
    st.config_sha256 = configured_sha;
    st.fallback = false;
    (void)state_store->Put(m, std::move(st));
    if (cur->int8) {
      if (renumber) slot.Install(cur->int8, cur->recipe);  // After what the state recorded.
      std::lock_guard<std::timed_mutex> lock(calibration_mu);
      models::io::Artifact* none = nullptr;
      auto loaded = state_store->persistent()
                        ? models::io::LoadAnyModel(config.models[m].path)
                        : absl::StatusOr<models::io::LoadedModel>(absl::NotFoundError(""));
      RecordInstall(m, kReasonConfig, nullptr,
                    loaded.ok() && loaded->artifact ? &*loaded->artifact : none, nullptr);
    }
  }
}

void ServerState::RecordInstall(size_t m, const char* reason, const CalibrationReport* calibration,
                                models::io::Artifact* artifact, const std::string* artifact_bytes,
                                const HistoryEntry* inherit) {
  if (!state_store) return;
  fallback_track[m].diverged_since_ns.store(0, std::memory_order_relaxed);
  const std::shared_ptr<const Installed> cur = slots[m]->Acquire();
  HistoryEntry e;
  if (inherit != nullptr) {
    e = *inherit;
    e.rollback_of = 0;
  }
  e.version = cur->version;
  e.reason = reason;
  e.installed_unix_ns = feeds::WallNanos();
  e.fallback = cur->fallback;
  e.precision = ServingPrecision(*cur);
  e.source_sha256 = cur->spec->sha256;
  e.isa = models::KernelIsa();
  e.has_recipe = cur->recipe != nullptr && (cur->int8 || cur->held_int8);
  if (e.has_recipe) e.recipe = *cur->recipe;
  if (inherit != nullptr && std::string(reason) == kReasonRollback) {
    e.rollback_of = inherit->version;
  }
  if (calibration != nullptr) {
    e.calibration_method = config.calibration.method;
    e.samples = calibration->samples;
    e.samples_first_unix_ns = calibration->samples_first_unix_ns;
    e.samples_last_unix_ns = calibration->samples_last_unix_ns;
    e.relative_rmse_vs_fp32 = calibration->fp32_rms > 0
                                  ? calibration->validation_rmse / calibration->fp32_rms
                                  : calibration->validation_rmse;
    e.relative_rmse_vs_incumbent = calibration->relative_rmse_vs_incumbent;
  }
  if (artifact != nullptr || artifact_bytes != nullptr) {
    e.artifact_file.clear();
    e.artifact_sha256.clear();
    if (artifact != nullptr && calibration == nullptr) {
      e.calibration_method = quant::CalibrationMethodName(artifact->calibration.options.method);
      e.samples = artifact->calibration.windows_seen;
    }
    absl::StatusOr<std::string> file =
        artifact_bytes != nullptr ? state_store->SaveArtifactBytes(m, e.version, *artifact_bytes)
                                  : state_store->SaveArtifact(m, e.version, *artifact);
    if (file.ok()) {
      e.artifact_file = *file;
      if (artifact != nullptr) e.artifact_sha256 = artifact->content_sha256;
    } else {
      spdlog::error("model {}: version {} not kept: {}", slots[m]->name(), e.version,
                    std::string(file.status().message()));
    }
  } else if (inherit == nullptr) {
    e.artifact_file.clear();  // Nothing to rebuild it from (FP32 reload, injected calibration).
  }
  if (!state_store->persistent()) e.artifact_file.clear();
  ModelState st = state_store->Get(m);
  st.current_version = e.version;
  st.next_version = std::max(st.next_version, slots[m]->next_version());
  st.fallback = e.fallback;
  if (st.config_sha256.empty()) st.config_sha256 = slots[m]->spec().sha256;
  st.history.push_back(std::move(e));
  st.has_baseline = drift[m]->GetBaseline(&st.baseline);
  (void)state_store->Put(m, std::move(st));
}

void ServerState::CheckFallback(size_t m, double rel) {
  FallbackTrack& t = fallback_track[m];
  t.shadow_relative_rmse.store(rel, std::memory_order_relaxed);
  const double threshold = config.shadow.fallback_relative_rmse;
  if (!(threshold > 0) || rel < 0) return;  // Off, or no shadow samples this interval.
  if (rel <= threshold) {
    t.diverged_since_ns.store(0, std::memory_order_relaxed);
    return;
  }
  const int64_t now = feeds::MonotonicNanos();
  int64_t since = t.diverged_since_ns.load(std::memory_order_relaxed);
  if (since == 0) {
    since = now;
    t.diverged_since_ns.store(now, std::memory_order_relaxed);
  }
  if (static_cast<double>(now - since) < config.shadow.fallback_after_s * 1e9) return;
  std::lock_guard<std::timed_mutex> lock(calibration_mu);
  const ModelState st = state_store->Get(m);
  const HistoryEntry* prev = st.Find(st.current_version);
  const HistoryEntry inherit = prev ? *prev : HistoryEntry{};
  const uint64_t v = slots[m]->SetFallback(true);
  if (v == 0) return;
  t.fallbacks.fetch_add(1, std::memory_order_relaxed);
  spdlog::error(
      "model {}: INT8 diverged from FP32 (relative RMSE {:.4g} > shadow.fallback_relative_rmse "
      "{:.4g} for {:.1f} s): FP32 serves as version {} until a recalibration passes the gate "
      "or an operator clears the fallback",
      slots[m]->name(), rel, threshold, static_cast<double>(now - since) * 1e-9, v);
  RecordInstall(m, kReasonFallback, nullptr, nullptr, nullptr, prev ? &inherit : nullptr);
}

absl::StatusOr<ServerState::InstallResult> ServerState::Rollback(size_t m, uint64_t version) {
  std::lock_guard<std::timed_mutex> lock(calibration_mu);
  ModelSlot& slot = *slots[m];
  const ModelState st = state_store->Get(m);
  const HistoryEntry* found = st.Find(version);
  if (found == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("model '", slot.name(), "': version ", version, " is not in the history (",
                     st.history.empty() ? std::string("empty")
                                        : absl::StrCat("versions ", st.history.front().version,
                                                       "..", st.history.back().version),
                     "; state.history_per_model = ", config.state.history_per_model, ")"));
  }
  const HistoryEntry entry = *found;
  if (entry.artifact_file.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", slot.name(), "': no artifact is kept for version ", version,
        state_store->persistent() ? " (it had no INT8 artifact: an FP32 model or an injected "
                                    "calibration)"
                                  : " (set state.dir to keep artifacts)"));
  }
  auto artifact = state_store->LoadArtifact(m, entry.artifact_file);
  if (!artifact.ok()) {
    return absl::Status(
        artifact.status().code(),
        absl::StrCat("model '", slot.name(), "': version ", version, ": ",
                     artifact.status().message(), " (the running model keeps serving)"));
  }
  RuntimeRecipe recipe;
  auto int8 = BuildVerifiedInt8(*artifact, entry.has_recipe ? &entry.recipe : nullptr, &recipe);
  if (!int8.ok()) {
    return absl::Status(int8.status().code(), absl::StrCat("model '", slot.name(), "': version ",
                                                           version, ": ", int8.status().message(),
                                                           " (the running model keeps serving)"));
  }
  const std::string precision = (*int8)->precision();
  auto spec = std::make_shared<const models::ModelSpec>(artifact->spec);
  auto v = slot.Replace(spec, std::shared_ptr<const models::Model>(std::move(*int8)),
                        std::make_shared<const RuntimeRecipe>(recipe));
  if (!v.ok()) {
    return absl::Status(v.status().code(),
                        absl::StrCat(v.status().message(), " (the running model keeps serving)"));
  }
  const DriftBaseline b = BaselineFromArtifact(*artifact, recipe.description);
  SetDriftBaseline(m, b.windows, b.clip_lo, b.clip_hi);
  RecordInstall(m, kReasonRollback, nullptr, nullptr, nullptr, &entry);
  rollbacks.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("model {}: rolled back to version {} as version {}", slot.name(), version, *v);
  return InstallResult{*v, precision};
}

absl::StatusOr<ServerState::InstallResult> ServerState::ClearFallback(size_t m) {
  std::lock_guard<std::timed_mutex> lock(calibration_mu);
  const ModelState st = state_store->Get(m);
  const HistoryEntry* prev = st.Find(st.current_version);
  const HistoryEntry inherit = prev ? *prev : HistoryEntry{};
  const uint64_t v = slots[m]->SetFallback(false);
  if (v == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("model '", slots[m]->name(), "' is not in FP32 fallback"));
  }
  RecordInstall(m, kReasonAdmin, nullptr, nullptr, nullptr, prev ? &inherit : nullptr);
  spdlog::warn("model {}: fallback cleared by an operator; INT8 serves again as version {}",
               slots[m]->name(), v);
  return InstallResult{v, ServingPrecision(*slots[m]->Acquire())};
}

absl::StatusOr<ServerState::InstallResult> ServerState::InjectMiscalibration(size_t m,
                                                                             double factor) {
  if (!(factor > 0) || !std::isfinite(factor)) {
    return absl::InvalidArgumentError(
        absl::StrCat("input_scale_factor must be a positive number, got ", factor));
  }
  std::lock_guard<std::timed_mutex> lock(calibration_mu);
  ModelSlot& slot = *slots[m];
  const std::shared_ptr<const Installed> cur = slot.Acquire();
  if (!cur->recipe || !(cur->int8 || cur->held_int8)) {
    return absl::FailedPreconditionError(
        absl::StrCat("model '", slot.name(), "' has no calibrated INT8 runtime yet"));
  }
  RuntimeRecipe recipe = *cur->recipe;
  bool scaled = false;
  for (models::QuantizedInput& q : recipe.description.inputs) {
    if (!q.int8) continue;
    for (float& s : q.scale) s = static_cast<float>(s * factor);
    scaled = true;
    break;  // The model's input: every value it clips reaches every later layer.
  }
  if (!scaled) {
    return absl::FailedPreconditionError(
        absl::StrCat("model '", slot.name(), "': no quantized input to mis-scale"));
  }
  models::Int8Options options;
  options.reduce_range = recipe.reduce_range;
  auto built =
      models::BuildInt8FromDescription(cur->spec, recipe.description, options, recipe.precision);
  if (!built.ok()) return built.status();
  const uint64_t v = slot.Install(std::shared_ptr<const models::Model>(std::move(*built)),
                                  std::make_shared<const RuntimeRecipe>(recipe));
  RecordInstall(m, kReasonAdmin, nullptr, nullptr, nullptr, nullptr);
  spdlog::warn(
      "model {}: installed a deliberately mis-scaled calibration (input scale x {}) "
      "as version {}",
      slot.name(), factor, v);
  return InstallResult{v, recipe.precision};
}

}  // namespace qsig::server
