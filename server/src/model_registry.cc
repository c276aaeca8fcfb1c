#include "model_registry.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "qsig/feeds/clock.h"
#include "qsig/models/evaluation.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/loader.h"
#include "qsig/quant/calibration.h"
#include "qsig/quant/isa.h"
#include "spdlog/spdlog.h"

namespace qsig::server {

ModelSlot::ModelSlot(std::string name, std::shared_ptr<const models::ModelSpec> spec)
    : name_(std::move(name)) {
  auto first = std::make_shared<Installed>();
  first->spec = spec;
  first->fp32 = models::MakeFp32Model(spec);
  workspace_capacity_ = std::max<size_t>(first->fp32->workspace_floats() * 4, 4096);
  owner_ = first;
  current_.store(first.get(), std::memory_order_release);
}

std::shared_ptr<const Installed> ModelSlot::Acquire() const {
  std::lock_guard<std::mutex> lock(mu_);
  return owner_;
}

void ModelSlot::PublishLocked(std::shared_ptr<Installed> next) {
  next->version = next_version_++;
  retired_.push_back({owner_, {}});
  owner_ = next;
  current_.store(next.get(), std::memory_order_release);
}

uint64_t ModelSlot::Install(std::shared_ptr<const models::Model> int8,
                            std::shared_ptr<const RuntimeRecipe> recipe) {
  std::lock_guard<std::mutex> lock(mu_);
  auto next = std::make_shared<Installed>(*owner_);
  next->int8 = std::move(int8);
  next->recipe = std::move(recipe);
  next->fallback = false;
  next->held_int8 = nullptr;
  PublishLocked(next);
  return next->version;
}

uint64_t ModelSlot::SetFallback(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  if (owner_->fallback == on) return 0;
  auto next = std::make_shared<Installed>(*owner_);
  if (on) {
    if (!owner_->int8) return 0;
    next->held_int8 = std::move(next->int8);
    next->int8 = nullptr;
  } else {
    next->int8 = std::move(next->held_int8);
    next->held_int8 = nullptr;
  }
  next->fallback = on;
  PublishLocked(next);
  return next->version;
}

uint64_t ModelSlot::next_version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_version_;
}

absl::Status ModelSlot::CheckReplaceLocked(const models::ModelSpec& spec,
                                           const Installed& next) const {
  const models::ModelSpec& old = *owner_->spec;
  if (spec.window != old.window || spec.input_size != old.input_size ||
      spec.feature_names != old.feature_names) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", name_, "': the new model reads ", spec.window, " x ", spec.input_size,
        " features [", absl::StrJoin(spec.feature_names, ","), "], the running one ", old.window,
        " x ", old.input_size, " [", absl::StrJoin(old.feature_names, ","),
        "]; a different input shape needs a restart"));
  }
  const auto too_big = [&](const std::shared_ptr<const models::Model>& m) {
    return m && m->workspace_floats() > workspace_capacity_;
  };
  if (!next.fp32 || too_big(next.fp32) || too_big(next.int8) || too_big(next.held_int8)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", name_, "': the new model needs more workspace than the workers reserved (",
        workspace_capacity_, " floats); restart to load it"));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ModelSlot::Replace(std::shared_ptr<const models::ModelSpec> spec,
                                            std::shared_ptr<const models::Model> int8,
                                            std::shared_ptr<const RuntimeRecipe> recipe) {
  std::lock_guard<std::mutex> lock(mu_);
  auto next = std::make_shared<Installed>();
  next->spec = spec;
  next->fp32 = models::MakeFp32Model(spec);
  next->int8 = std::move(int8);
  next->recipe = std::move(recipe);
  if (auto st = CheckReplaceLocked(*spec, *next); !st.ok()) return st;
  PublishLocked(next);
  return next->version;
}

absl::Status ModelSlot::Restore(std::shared_ptr<const models::ModelSpec> spec,
                                std::shared_ptr<const models::Model> int8,
                                std::shared_ptr<const RuntimeRecipe> recipe, uint64_t version,
                                uint64_t next_version, bool fallback) {
  std::lock_guard<std::mutex> lock(mu_);
  if (int8 != nullptr) {
    auto next = std::make_shared<Installed>();
    next->spec = spec;
    next->fp32 = models::MakeFp32Model(spec);
    next->recipe = std::move(recipe);
    if (fallback) {
      next->held_int8 = std::move(int8);
      next->fallback = true;
    } else {
      next->int8 = std::move(int8);
    }
    if (auto st = CheckReplaceLocked(*spec, *next); !st.ok()) return st;
    next_version_ = version;
    PublishLocked(next);
  }
  next_version_ = std::max(next_version_, next_version);
  return absl::OkStatus();
}

void ModelSlot::Reclaim(const std::vector<const std::atomic<uint64_t>*>& epochs) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = retired_.begin(); it != retired_.end();) {
    if (it->epochs_at_retire.empty()) {
      // First pass after retirement: remember where every worker was.
      for (const auto* e : epochs)
        it->epochs_at_retire.push_back(e->load(std::memory_order_acquire));
      ++it;
      continue;
    }
    bool all_passed = true;
    for (size_t i = 0; i < epochs.size(); ++i) {
      if (epochs[i]->load(std::memory_order_acquire) == it->epochs_at_retire[i]) {
        all_passed = false;
        break;
      }
    }
    it = all_passed ? retired_.erase(it) : it + 1;
  }
}

size_t ModelSlot::retired() const {
  std::lock_guard<std::mutex> lock(mu_);
  return retired_.size();
}

DriftBaseline BaselineFromArtifact(const models::io::Artifact& a,
                                   const models::Int8Description& built) {
  DriftBaseline b;
  b.windows = a.calibration.windows;
  if (!built.inputs.empty()) InputClipRange(a.spec, built.inputs[0], &b.clip_lo, &b.clip_hi);
  return b;
}

absl::StatusOr<std::vector<std::unique_ptr<ModelSlot>>> LoadModels(
    const std::vector<config::ModelConfig>& configs, const std::vector<std::string>& feature_names,
    std::vector<DriftBaseline>* baselines, const std::vector<bool>* skip_int8) {
  std::vector<std::unique_ptr<ModelSlot>> slots;
  if (baselines != nullptr) baselines->assign(configs.size(), DriftBaseline{});
  for (const auto& mc : configs) {
    models::io::ImportOptions import;
    import.name = mc.name;
    import.feature_names = feature_names;  // Imported graphs carry no feature names.
    import.window = mc.window;
    auto loaded = models::io::LoadAnyModel(mc.path, import);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat("model '", mc.name, "': ", loaded.status().message()));
    }
    const models::ModelSpec& spec = *loaded->spec;
    if (spec.feature_names != feature_names) {
      return absl::InvalidArgumentError(absl::StrCat(
          "model '", mc.name, "' (", mc.path, ") expects features [",
          absl::StrJoin(spec.feature_names, ","), "] but the feed computes [",
          absl::StrJoin(feature_names, ","), "]; retrain it on `qsig features` output"));
    }
    auto slot = std::make_unique<ModelSlot>(mc.name, loaded->spec);
    const bool skip =
        skip_int8 != nullptr && slots.size() < skip_int8->size() && (*skip_int8)[slots.size()];
    if (loaded->artifact && !skip) {
      // A verified artifact carries its calibration: serve its INT8 runtime from the start.
      models::Int8Description described;
      auto int8 = models::io::BuildInt8Model(*loaded->artifact, &described);
      if (!int8.ok()) {
        return absl::Status(int8.status().code(), absl::StrCat("model '", mc.name, "' (", mc.path,
                                                               "): ", int8.status().message()));
      }
      if ((*int8)->workspace_floats() > slot->workspace_capacity()) {
        return absl::InternalError(
            absl::StrCat("model '", mc.name, "': INT8 runtime needs more workspace than reserved"));
      }
      auto recipe = std::make_shared<RuntimeRecipe>();
      recipe->reduce_range = loaded->artifact->calibration.options.reduce_range;
      recipe->precision = (*int8)->precision();
      recipe->description = described;
      if (const models::KernelReport* kr = (*int8)->kernel_report(); kr != nullptr) {
        spdlog::info("model {}: INT8 kernels per GEMM shape:\n{}", mc.name,
                     models::FormatKernelReport(*kr, "  "));
      }
      slot->Install(std::shared_ptr<const models::Model>(std::move(*int8)), std::move(recipe));
      if (baselines != nullptr)
        (*baselines)[slots.size()] = BaselineFromArtifact(*loaded->artifact, described);
    }
    slots.push_back(std::move(slot));
  }
  return slots;
}

absl::StatusOr<std::unique_ptr<models::Model>> BuildVerifiedInt8(
    const models::io::Artifact& artifact, const RuntimeRecipe* recipe, RuntimeRecipe* described) {
  if (recipe != nullptr && recipe->reduce_range == artifact.calibration.options.reduce_range) {
    auto spec = std::make_shared<const models::ModelSpec>(artifact.spec);
    auto fast = models::BuildInt8FromDescription(spec, recipe->description,
                                                 artifact.calibration.options, recipe->precision);
    if (fast.ok()) {
      // The reference outputs were recorded when the artifact was made: the same check a full
      // rebuild passes, on the runtime that will serve.
      const absl::Status st = models::io::VerifyInt8Model(artifact, **fast);
      if (st.ok()) {
        if (described != nullptr) *described = *recipe;
        return std::move(*fast);
      }
      spdlog::warn(
          "model {}: the recorded INT8 recipe does not reproduce the artifact ({}); "
          "rebuilding by calibration",
          artifact.spec.name, std::string(st.message()));
    }
  }
  models::Int8Description d;
  auto built = models::io::BuildInt8Model(artifact, &d);
  if (!built.ok()) return built.status();
  if (described != nullptr) {
    described->description = std::move(d);
    described->reduce_range = artifact.calibration.options.reduce_range;
    described->precision = (*built)->precision();
  }
  return built;
}

CalibrationStore::CalibrationStore(const std::vector<std::unique_ptr<ModelSlot>>& slots,
                                   int max_locate, int n_features, int capacity_windows)
    : n_features_(n_features), capacity_(capacity_windows) {
  int max_window = 1;
  for (const auto& s : slots) {
    model_window_.push_back(s->spec().window);
    max_window = std::max(max_window, s->spec().window);
  }
  history_ = models::WindowHistory(static_cast<size_t>(max_locate) + 1, max_window, n_features_);
  for (int w : model_window_) {
    windows_.emplace_back(static_cast<size_t>(capacity_) * w * n_features_);
    window_ns_.emplace_back(static_cast<size_t>(capacity_), 0);
    written_.push_back(0);
    ReservoirSlots r;
    r.windows.resize(kReservoirWindows * w * n_features_);
    r.ns.resize(kReservoirWindows);
    reservoir_.push_back(std::move(r));
  }
}

void CalibrationStore::Add(const feeds::FeatureVector& fv) {
  if (fv.locate >= history_.streams() || fv.n_features != n_features_) return;
  if (fv.flags & feeds::kFeatureFlagNonFinite) return;  // Never calibrate on repaired inputs.
  const int64_t now_ns = fv.recv_wall_ns != 0 ? fv.recv_wall_ns : feeds::WallNanos();
  std::lock_guard<std::mutex> lock(mu_);
  history_.Push(fv.locate, fv.values);
  for (size_t m = 0; m < model_window_.size(); ++m) {
    const int w = model_window_[m];
    const size_t per = static_cast<size_t>(w) * n_features_;
    float* dst = windows_[m].data() + static_cast<size_t>(written_[m] % capacity_) * per;
    if (!history_.CopyWindow(fv.locate, w, std::span<float>(dst, per))) continue;
    window_ns_[m][written_[m] % capacity_] = now_ns;
    ++written_[m];
    // Algorithm R: the window takes slot j of the reservoir if j < size (j uniform in [0, seen)).
    ReservoirSlots& r = reservoir_[m];
    size_t slot = r.filled;
    if (r.filled == kReservoirWindows) {
      rng_ += 0x9e3779b97f4a7c15ull;
      uint64_t z = rng_;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
      z ^= z >> 31;
      const uint64_t j = z % (r.seen + 1);  // Bias below 2^-40 for any realistic count.
      slot = j < kReservoirWindows ? static_cast<size_t>(j) : kReservoirWindows;
    } else {
      ++r.filled;
    }
    ++r.seen;
    if (slot < kReservoirWindows) {
      std::copy_n(dst, per, r.windows.begin() + slot * per);
      r.ns[slot] = now_ns;
    }
  }
}

size_t CalibrationStore::windows(size_t model) const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::min<size_t>(written_[model], capacity_);
}

CalibrationStore::WindowSample CalibrationStore::Recent(size_t model, size_t max_windows) const {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t stride = static_cast<size_t>(model_window_[model]) * n_features_;
  const size_t have = std::min<size_t>(written_[model], capacity_);
  const size_t n = max_windows == 0 ? have : std::min(have, max_windows);
  WindowSample out;
  out.windows.resize(n * stride);
  for (size_t i = 0; i < n; ++i) {
    const size_t idx = (written_[model] - n + i) % capacity_;
    std::copy_n(windows_[model].begin() + idx * stride, stride, out.windows.begin() + i * stride);
  }
  if (n > 0) {
    out.first_ns = window_ns_[model][(written_[model] - n) % capacity_];
    out.last_ns = window_ns_[model][(written_[model] - 1) % capacity_];
  }
  return out;
}

std::vector<size_t> CalibrationStore::ArrivalOrder(const ReservoirSlots& r) {
  std::vector<size_t> order(r.filled);
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&r](size_t a, size_t b) { return r.ns[a] < r.ns[b]; });
  return order;
}

CalibrationStore::WindowSample CalibrationStore::Session(size_t model, size_t max_windows) const {
  std::lock_guard<std::mutex> lock(mu_);
  const ReservoirSlots& r = reservoir_[model];
  const size_t stride = static_cast<size_t>(model_window_[model]) * n_features_;
  const std::vector<size_t> order = ArrivalOrder(r);
  const size_t n = max_windows == 0 ? order.size() : std::min(order.size(), max_windows);
  WindowSample out;
  out.windows.resize(n * stride);
  for (size_t i = 0; i < n; ++i) {
    const size_t slot = order[EvenlySpaced(i, n, order.size())];
    std::copy_n(r.windows.begin() + slot * stride, stride, out.windows.begin() + i * stride);
    if (i == 0) out.first_ns = r.ns[slot];
    out.last_ns = r.ns[slot];
  }
  return out;
}

uint64_t CalibrationStore::written(size_t model) const {
  std::lock_guard<std::mutex> lock(mu_);
  return written_[model];
}

std::vector<float> CalibrationStore::SampleRows(size_t model, uint64_t since, size_t count) const {
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t end = written_[model];
  const uint64_t begin = std::max<uint64_t>(
      since, end > static_cast<uint64_t>(capacity_) ? end - static_cast<uint64_t>(capacity_) : 0);
  const uint64_t have = end > begin ? end - begin : 0;
  const size_t n = static_cast<size_t>(std::min<uint64_t>(have, count));
  std::vector<float> out(n * n_features_);
  const size_t stride = static_cast<size_t>(model_window_[model]) * n_features_;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t w = begin + EvenlySpaced(i, n, static_cast<size_t>(have));
    const size_t idx = static_cast<size_t>(w % static_cast<uint64_t>(capacity_));
    std::copy_n(windows_[model].begin() + idx * stride + (stride - n_features_), n_features_,
                out.begin() + i * n_features_);
  }
  return out;
}

SampleSnapshot CalibrationStore::Reservoir(size_t model) const {
  std::lock_guard<std::mutex> lock(mu_);
  const ReservoirSlots& r = reservoir_[model];
  SampleSnapshot s;
  s.window = model_window_[model];
  s.n_features = n_features_;
  s.seen = r.seen;
  const size_t stride = static_cast<size_t>(s.window) * n_features_;
  const std::vector<size_t> order = ArrivalOrder(r);
  s.windows.resize(r.filled * stride);
  s.arrival_unix_ns.resize(r.filled);
  for (size_t i = 0; i < order.size(); ++i) {
    std::copy_n(r.windows.begin() + order[i] * stride, stride, s.windows.begin() + i * stride);
    s.arrival_unix_ns[i] = r.ns[order[i]];
  }
  return s;
}

uint64_t CalibrationStore::session_windows(size_t model) const {
  std::lock_guard<std::mutex> lock(mu_);
  return reservoir_[model].seen;
}

void CalibrationStore::ResetReservoir(size_t model) {
  std::lock_guard<std::mutex> lock(mu_);
  reservoir_[model].filled = 0;
  reservoir_[model].seen = 0;
}

size_t CalibrationStore::Import(size_t model, const SampleSnapshot& s) {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t stride = static_cast<size_t>(model_window_[model]) * n_features_;
  if (s.window != model_window_[model] || s.n_features != n_features_ || written_[model] != 0 ||
      s.windows.size() != s.count() * stride) {
    return 0;
  }
  ReservoirSlots& r = reservoir_[model];
  r.filled = std::min(s.count(), kReservoirWindows);
  r.seen = std::max<uint64_t>(s.seen, r.filled);
  std::copy_n(s.windows.begin(), r.filled * stride, r.windows.begin());
  std::copy_n(s.arrival_unix_ns.begin(), r.filled, r.ns.begin());
  const size_t n = std::min(s.count(), static_cast<size_t>(capacity_));
  const size_t first = s.count() - n;  // The newest ones when the ring is smaller.
  for (size_t i = 0; i < n; ++i) {
    std::copy_n(s.windows.begin() + (first + i) * stride, stride,
                windows_[model].begin() + i * stride);
    window_ns_[model][i] = s.arrival_unix_ns[first + i];
  }
  written_[model] = n;
  return std::max(n, r.filled);
}

models::Int8Options Int8OptionsFromConfig(const config::CalibrationConfig& c) {
  models::Int8Options o;
  o.method = *quant::ParseCalibrationMethod(c.method);  // Validated with the config.
  o.percentile = c.percentile;
  o.max_rmse = c.layer_guard_rmse;
  // auto: 7-bit weights where the kernel layer prefers them (AVX2 without VNNI splits u8
  // activations otherwise).
  o.reduce_range = c.reduce_range == "on" ||
                   (c.reduce_range == "auto" && quant::IsaPrefersReducedRange(quant::ActiveIsa()));
  return o;
}

bool InputClipRange(const models::ModelSpec& spec, const models::QuantizedInput& q,
                    std::vector<float>* lo, std::vector<float>* hi) {
  if (!q.int8 || q.scale.empty()) return false;
  const size_t n = static_cast<size_t>(spec.input_size);
  lo->assign(n, 0.0f);
  hi->assign(n, 0.0f);
  for (size_t k = 0; k < n; ++k) {
    const float sc = q.scale.size() > 1 ? q.scale[k] : q.scale[0];
    const int32_t zp = q.zero_point.size() > 1 ? q.zero_point[k] : q.zero_point[0];
    const float mean = k < spec.feature_mean.size() ? spec.feature_mean[k] : 0.0f;
    float sd = k < spec.feature_std.size() ? spec.feature_std[k] : 1.0f;
    if (sd == 0.0f) sd = 1.0f;
    if (q.s16) {  // x / std on [-32767, 32767] steps (the mean is folded into the bias)
      (*lo)[k] = -32767.0f * sc * sd;
      (*hi)[k] = 32767.0f * sc * sd;
    } else {  // (x - mean) / std on [0, 255] steps around the zero point
      (*lo)[k] = mean + sd * static_cast<float>(0 - zp) * sc;
      (*hi)[k] = mean + sd * static_cast<float>(255 - zp) * sc;
    }
  }
  return true;
}

CalibrationReport CalibrateAndInstall(ModelSlot& slot, const std::vector<float>& windows,
                                      const models::Int8Options& options, double max_relative_rmse,
                                      models::io::Artifact* artifact) {
  CalibrationReport r;
  r.model = slot.name();
  r.version = slot.version();
  const std::shared_ptr<const Installed> base = slot.Acquire();
  const size_t stride = static_cast<size_t>(base->spec->window) * base->spec->input_size;
  const size_t n = stride ? windows.size() / stride : 0;
  r.samples = static_cast<uint32_t>(n);
  if (n < 16) {
    r.message = absl::StrCat("only ", n, " samples; need at least 16");
    return r;
  }
  // Calibrate on the older 80%, validate on the newest 20% (what the model will see next).
  const size_t n_cal = n - n / 5;
  models::Int8Description described;
  const std::span<const float> cal(windows.data(), n_cal * stride);
  absl::StatusOr<std::unique_ptr<models::Model>> candidate;
  if (artifact != nullptr) {
    // One calibration gives the runtime and the artifact that rebuilds it (state.dir).
    models::io::ArtifactSource source;
    source.source_path = base->spec->name;
    source.source_format = "calibration";
    source.calibration_source = "live feed";
    std::unique_ptr<models::Model> built;
    auto made = models::io::MakeArtifact(base->spec, cal, options, source, &built, &described);
    if (made.ok()) {
      *artifact = std::move(*made);
      candidate = std::move(built);
    } else {
      candidate = made.status();
    }
  } else {
    candidate = models::CalibrateInt8Model(base->spec, cal, options, &described);
  }
  if (!candidate.ok()) {
    r.message = std::string(candidate.status().message());
    return r;
  }
  if ((*candidate)->workspace_floats() > slot.workspace_capacity()) {
    r.message = absl::StrCat("INT8 model needs ", (*candidate)->workspace_floats(),
                             " workspace floats; workers reserve ", slot.workspace_capacity());
    return r;
  }
  const models::Model& fp32 = *base->fp32;
  const std::span<const float> validation(windows.data() + n_cal * stride, (n - n_cal) * stride);
  const std::vector<float> candidate_out = models::RunAll(**candidate, validation);
  const models::OutputError err =
      models::CompareOutputs(candidate_out, models::RunAll(fp32, validation));
  r.validation_rmse = err.rmse;
  r.fp32_rms = err.rms;
  r.sign_agreement = err.sign_agreement;
  const double rel = r.fp32_rms > 0 ? r.validation_rmse / r.fp32_rms : r.validation_rmse;
  if (!std::isfinite(rel) || rel > max_relative_rmse) {
    r.message = absl::StrCat("rejected by the validation gate: relative RMSE ", rel, " > ",
                             max_relative_rmse, "; the previous model keeps serving");
    return r;
  }
  r.precision = (*candidate)->precision();
  const models::Model* incumbent = base->int8 ? base->int8.get() : base->held_int8.get();
  if (incumbent != nullptr && r.fp32_rms > 0) {
    r.relative_rmse_vs_incumbent =
        models::CompareOutputs(candidate_out, models::RunAll(*incumbent, validation)).rmse /
        r.fp32_rms;
  }
  auto recipe = std::make_shared<RuntimeRecipe>();
  recipe->description = described;
  recipe->reduce_range = options.reduce_range;
  recipe->precision = r.precision;
  r.recipe = recipe;
  // How the installed model clips its input, for the saturation alarm.
  if (!described.inputs.empty()) {
    InputClipRange(*base->spec, described.inputs[0], &r.input_clip_lo, &r.input_clip_hi);
  }
  r.version = slot.Install(std::shared_ptr<const models::Model>(std::move(*candidate)), recipe);
  r.installed = true;
  r.message = "installed";
  return r;
}

}  // namespace qsig::server
