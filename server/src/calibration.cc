// Model installation and calibration: Recalibrate (calibrate from the store, validate, install),
// Reload (a model file swapped in), and the calibration thread's loop (warm-up calibration,
// RCU reclamation, drift checks and the schedule on their intervals).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "confined_file.h"
#include "qsig/models/evaluation.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/loader.h"
#include "server_impl.h"
#include "server_state.h"
#include "spdlog/spdlog.h"

namespace qsig::server {

namespace {

// Admin calls wait this long for a running calibration or swap, then answer "busy".
constexpr auto kLockWait = std::chrono::seconds(10);

// The extension the loader may need to tell formats apart (ONNX has no magic it sniffs).
std::string KnownExtension(const std::string& path) {
  const size_t dot = path.rfind('.');
  if (dot == std::string::npos || path.find('/', dot) != std::string::npos) return "";
  const std::string ext = absl::AsciiStrToLower(path.substr(dot));
  for (const char* known : {".json", ".onnx", ".pt", ".ts", ".pth", ".qsig"}) {
    if (ext == known) return ext;
  }
  return "";
}

// The incumbent INT8 model's relative RMSE against FP32 on the validation part of `windows`
// (the newest 20%, as CalibrateAndInstall splits them); < 0 when there is no INT8 model.
double IncumbentRelativeRmse(const ModelSlot& slot, const std::vector<float>& windows) {
  const std::shared_ptr<const Installed> cur = slot.Acquire();
  if (!cur->int8) return -1;
  const size_t stride = static_cast<size_t>(cur->spec->window) * cur->spec->input_size;
  const size_t n = stride ? windows.size() / stride : 0;
  if (n < 16) return -1;
  const size_t n_cal = n - n / 5;
  const std::span<const float> validation(windows.data() + n_cal * stride, (n - n_cal) * stride);
  const models::OutputError err = models::CompareOutputs(models::RunAll(*cur->int8, validation),
                                                         models::RunAll(*cur->fp32, validation));
  return err.rms > 0 ? err.rmse / err.rms : err.rmse;
}

}  // namespace

void ServerState::SetClipRange(size_t model, const void* int8, std::vector<float> lo,
                               std::vector<float> hi, const std::vector<float>& windows) {
  // A model whose first layer stays FP32 (mixed precision) clips inside, on the activations
  // of its first INT8 layer; those ranges were calibrated on `windows`, so inputs well outside
  // what the calibration saw stand in for it.
  const size_t nf = feature_names.size();
  if ((lo.size() != nf || hi.size() != nf) && nf > 0 && windows.size() >= nf) {
    lo.assign(nf, INFINITY);
    hi.assign(nf, -INFINITY);
    for (size_t i = 0; i < windows.size(); ++i) {
      lo[i % nf] = std::min(lo[i % nf], windows[i]);
      hi[i % nf] = std::max(hi[i % nf], windows[i]);
    }
    // Activation ranges carry headroom over the inputs seen: half the span on each side.
    for (size_t f = 0; f < nf; ++f) {
      const float span = std::max(hi[f] - lo[f], 1e-6f);
      lo[f] -= span / 2;
      hi[f] += span / 2;
    }
  }
  auto r = std::make_shared<ClipRange>();
  r->int8 = int8;
  r->lo = std::move(lo);
  r->hi = std::move(hi);
  std::lock_guard<std::mutex> l(clip_mu);
  if (clip_ranges.size() < slots.size()) clip_ranges.resize(slots.size());
  clip_ranges[model] = std::move(r);
}

std::shared_ptr<const ServerState::ClipRange> ServerState::GetClipRange(size_t model) const {
  std::lock_guard<std::mutex> l(clip_mu);
  return model < clip_ranges.size() ? clip_ranges[model] : nullptr;
}

CalibrationReport ServerState::Recalibrate(size_t model, size_t max_samples, const char* reason) {
  const config::CalibrationConfig& cc = config.calibration;
  ModelSlot& slot = *slots[model];
  CalibrationReport r;
  r.model = slot.name();
  r.version = slot.version();
  const bool warmup = std::string_view(reason) == kReasonWarmup;
  std::unique_lock<std::timed_mutex> lock(calibration_mu, std::defer_lock);
  if (warmup ? !lock.try_lock() : !lock.try_lock_for(kLockWait)) {
    r.message = kBusy;
    return r;
  }
  const bool request = !warmup;
  const auto now = std::chrono::steady_clock::now();
  if (last_recalibration.size() < slots.size()) {
    last_recalibration.resize(slots.size(), std::chrono::steady_clock::time_point::min());
  }
  const auto reject = [&](std::string why) {
    r.message = std::move(why);
    calibration_rejections.fetch_add(1);
    return r;
  };
  const size_t n = max_samples ? max_samples : static_cast<size_t>(cc.samples);
  if (request && n < static_cast<size_t>(cc.min_samples)) {
    return reject(absl::StrCat("max_samples ", n, " is below calibration.min_samples (",
                               cc.min_samples, ")"));
  }
  if (request && last_recalibration[model] != std::chrono::steady_clock::time_point::min()) {
    const double since = std::chrono::duration<double>(now - last_recalibration[model]).count();
    if (since < cc.cooldown_s) {
      return reject(absl::StrCat("the last recalibration was installed ",
                                 absl::StrFormat("%.1f", since),
                                 " s ago; calibration.cooldown_s is ", cc.cooldown_s));
    }
  }
  // A scheduled run calibrates on the session since the last calibration; the others on the
  // newest n windows.
  const CalibrationStore::WindowSample sample = std::string_view(reason) == kReasonSchedule
                                                    ? store->Session(model, n)
                                                    : store->Recent(model, n);
  const std::vector<float>& windows = sample.windows;
  const size_t stride = static_cast<size_t>(slot.spec().window) * slot.spec().input_size;
  const size_t have = stride ? windows.size() / stride : 0;
  if (request && have < static_cast<size_t>(cc.min_samples)) {
    r.samples = static_cast<uint32_t>(have);
    return reject(absl::StrCat("only ", have, " windows collected; calibration.min_samples is ",
                               cc.min_samples));
  }
  double gate = cc.max_relative_rmse;
  const double incumbent = request ? IncumbentRelativeRmse(slot, windows) : -1;
  if (incumbent >= 0) {
    gate = std::min(gate, std::max(incumbent * cc.max_worsening, cc.worsening_floor));
  }
  models::io::Artifact artifact;
  const bool persist = state_store && state_store->persistent();
  r = CalibrateAndInstall(slot, windows, Int8OptionsFromConfig(cc), gate,
                          persist ? &artifact : nullptr);
  r.samples_first_unix_ns = sample.first_ns;
  r.samples_last_unix_ns = sample.last_ns;
  (r.installed ? calibrations : calibration_rejections).fetch_add(1);
  if (r.installed) {
    store->ResetReservoir(model);  // The next session starts now.
    if (request) last_recalibration[model] = now;
    SetClipRange(model, slot.Acquire()->int8.get(), r.input_clip_lo, r.input_clip_hi, windows);
    SetDriftBaseline(model, windows, r.input_clip_lo, r.input_clip_hi, warmup);
    RecordInstall(model, reason, &r, persist ? &artifact : nullptr, nullptr);
  } else if (incumbent >= 0 && gate < cc.max_relative_rmse) {
    absl::StrAppend(&r.message, " (calibration.max_worsening ", cc.max_worsening,
                    " x the incumbent's relative RMSE ", incumbent,
                    " on the same windows; calibration.worsening_floor ", cc.worsening_floor, ")");
  }
  return r;
}

absl::StatusOr<ServerState::ReloadResult> ServerState::Reload(size_t model,
                                                              const std::string& path) {
  ModelSlot& slot = *slots[model];
  const bool configured = path.empty();
  const std::string shown = configured ? config.models[model].path : path;
  const auto keeps_serving = [&](const absl::Status& st) {
    return absl::Status(st.code(), absl::StrCat("model '", slot.name(), "': ", st.message(),
                                                " (the running model keeps serving)"));
  };
  // Read once, confined and bounded, into a private copy that only the loader reads: no lock
  // is held and nothing the caller controls can block or grow (FIFOs, devices, huge files).
  std::string real;
  auto bytes = ReadConfinedFile(configured ? "" : config.admin.model_dir, shown,
                                config.admin.max_model_bytes, &real);
  if (!bytes.ok()) return keeps_serving(bytes.status());
  static std::atomic<uint64_t> staged_count{0};
  const std::string staged =
      absl::StrCat(staging_dir, "/reload-", staged_count.fetch_add(1), KnownExtension(real));
  {
    const int fd = ::open(staged.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    bool ok = fd >= 0;
    for (size_t off = 0; ok && off < bytes->size();) {
      const ssize_t w = ::write(fd, bytes->data() + off, bytes->size() - off);
      if (w < 0 && errno == EINTR) continue;
      ok = w > 0;
      if (ok) off += static_cast<size_t>(w);
    }
    if (fd >= 0) ::close(fd);
    if (!ok) {
      ::unlink(staged.c_str());
      return keeps_serving(absl::UnavailableError("cannot stage the model file (disk full?)"));
    }
  }
  struct Unlink {
    const std::string& p;
    ~Unlink() { ::unlink(p.c_str()); }
  } unlink_staged{staged};
  bytes->clear();
  bytes->shrink_to_fit();

  models::io::ImportOptions import;
  import.name = slot.name();
  import.feature_names = feature_names;
  import.window = config.models[model].window ? config.models[model].window : slot.spec().window;
  auto loaded = models::io::LoadAnyModel(staged, import);
  if (!loaded.ok()) {
    return keeps_serving(absl::Status(
        loaded.status().code() == absl::StatusCode::kNotFound ? absl::StatusCode::kInvalidArgument
                                                              : loaded.status().code(),
        SanitizeLoadError(std::string(loaded.status().message()), staged, shown)));
  }
  std::shared_ptr<const models::Model> int8;
  RuntimeRecipe recipe;
  if (loaded->artifact) {
    auto built = BuildVerifiedInt8(*loaded->artifact, nullptr, &recipe);
    if (!built.ok()) {
      return keeps_serving(absl::Status(
          built.status().code(),
          absl::StrCat(shown, ": ",
                       SanitizeLoadError(std::string(built.status().message()), staged, shown))));
    }
    int8 = std::move(*built);
  }
  std::string kept;
  if (loaded->artifact && state_store && state_store->persistent()) {
    // Keep the artifact as it was verified (a later restart serves it at once); read before
    // the lock, from the private staged copy.
    auto read = ReadWholeFile(staged, size_t{1} << 30);
    if (read.ok()) kept = std::move(*read);
  }
  // Only the swap (and its record) is serialized with calibrations.
  std::unique_lock<std::timed_mutex> lock(calibration_mu, std::defer_lock);
  if (!lock.try_lock_for(kLockWait)) return keeps_serving(absl::UnavailableError(kBusy));
  auto version =
      slot.Replace(loaded->spec, int8,
                   loaded->artifact ? std::make_shared<const RuntimeRecipe>(recipe) : nullptr);
  if (!version.ok()) return keeps_serving(version.status());
  if (loaded->artifact) {
    const DriftBaseline b = BaselineFromArtifact(*loaded->artifact, recipe.description);
    SetDriftBaseline(model, b.windows, b.clip_lo, b.clip_hi);
    SetClipRange(model, int8.get(), b.clip_lo, b.clip_hi, b.windows);
  }
  RecordInstall(model, kReasonReload, nullptr, loaded->artifact ? &*loaded->artifact : nullptr,
                kept.empty() ? nullptr : &kept);
  ReloadResult r;
  r.version = *version;
  r.format = loaded->format;
  r.precision = int8 ? int8->precision() : "fp32";
  r.sha256 = loaded->spec->sha256;
  spdlog::info("model {}: reloaded from {} ({}), version {}, {}", slot.name(), real, r.format,
               r.version, int8 ? "INT8 from the artifact" : "FP32 until warm-up calibration");
  return r;
}

void Server::Impl::CalibrationLoop() {
  ServerState& c = state;
  std::vector<const std::atomic<uint64_t>*> epochs;
  for (const auto& w : c.workers) epochs.push_back(&w->epoch());
  feeds::FeatureVector fv;
  auto next_drift = std::chrono::steady_clock::now();
  auto next_samples =
      next_drift + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                       std::chrono::duration<double>(c.config.state.samples_interval_s));
  std::vector<std::pair<double, double>> shadow_sums;
  while (calibration_running.load()) {
    for (auto& w : c.workers) {
      while (w->samples().pop(fv)) c.store->Add(fv);
    }
    // Warm-up: the first INT8 calibration of each model once enough windows have arrived.
    for (size_t m = 0; m < c.slots.size(); ++m) {
      if (c.slots[m]->calibrated()) continue;
      if (c.store->windows(m) < static_cast<size_t>(c.config.calibration.warmup_samples)) continue;
      CalibrationReport r = c.Recalibrate(m, c.config.calibration.warmup_samples, kReasonWarmup);
      if (!r.installed && r.message == ServerState::kBusy) continue;  // Next round.
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
    RunSchedule();
    if (c.config.state.samples_interval_s > 0 && now >= next_samples) {
      next_samples = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::duration<double>(c.config.state.samples_interval_s));
      c.PersistSamples(&samples_saved);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (c.config.state.samples_interval_s > 0) c.PersistSamples(&samples_saved);  // Shutdown.
}

}  // namespace qsig::server
