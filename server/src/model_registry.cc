#include "model_registry.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "qsig/models/evaluation.h"
#include "qsig/models/io/artifact.h"
#include "qsig/models/io/loader.h"
#include "qsig/quant/calibration.h"
#include "qsig/quant/isa.h"

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

uint64_t ModelSlot::Install(std::shared_ptr<const models::Model> int8) {
  std::lock_guard<std::mutex> lock(mu_);
  auto next = std::make_shared<Installed>(*owner_);
  next->int8 = std::move(int8);
  PublishLocked(next);
  return next->version;
}

absl::StatusOr<uint64_t> ModelSlot::Replace(std::shared_ptr<const models::ModelSpec> spec,
                                            std::shared_ptr<const models::Model> int8) {
  std::lock_guard<std::mutex> lock(mu_);
  const models::ModelSpec& old = *owner_->spec;
  if (spec->window != old.window || spec->input_size != old.input_size ||
      spec->feature_names != old.feature_names) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", name_, "': the new model reads ", spec->window, " x ", spec->input_size,
        " features [", absl::StrJoin(spec->feature_names, ","), "], the running one ", old.window,
        " x ", old.input_size, " [", absl::StrJoin(old.feature_names, ","),
        "]; a different input shape needs a restart"));
  }
  auto next = std::make_shared<Installed>();
  next->spec = spec;
  next->fp32 = models::MakeFp32Model(spec);
  if (!next->fp32 || next->fp32->workspace_floats() > workspace_capacity_ ||
      (int8 && int8->workspace_floats() > workspace_capacity_)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "model '", name_, "': the new model needs more workspace than the workers reserved (",
        workspace_capacity_, " floats); restart to load it"));
  }
  next->int8 = std::move(int8);
  PublishLocked(next);
  return next->version;
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
    std::vector<DriftBaseline>* baselines) {
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
    if (loaded->artifact) {
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
      slot->Install(std::shared_ptr<const models::Model>(std::move(*int8)));
      if (baselines != nullptr)
        (*baselines)[slots.size()] = BaselineFromArtifact(*loaded->artifact, described);
    }
    slots.push_back(std::move(slot));
  }
  return slots;
}

CalibrationStore::CalibrationStore(const std::vector<std::unique_ptr<ModelSlot>>& slots,
                                   int max_locate, int n_features, int capacity_windows)
    : n_features_(n_features), max_window_(1), capacity_(capacity_windows) {
  for (const auto& s : slots) {
    model_window_.push_back(s->spec().window);
    max_window_ = std::max(max_window_, s->spec().window);
  }
  history_.assign(max_locate + 1,
                  std::vector<float>(static_cast<size_t>(max_window_) * n_features_));
  history_count_.assign(max_locate + 1, 0);
  for (int w : model_window_) {
    windows_.emplace_back(static_cast<size_t>(capacity_) * w * n_features_);
    written_.push_back(0);
  }
}

void CalibrationStore::Add(const feeds::FeatureVector& fv) {
  if (fv.locate >= history_.size() || fv.n_features != n_features_) return;
  if (fv.flags & feeds::kFeatureFlagNonFinite) return;  // Never calibrate on repaired inputs.
  std::lock_guard<std::mutex> lock(mu_);
  auto& hist = history_[fv.locate];
  int& count = history_count_[fv.locate];
  // history is a ring indexed by count % max_window_.
  std::copy(fv.values, fv.values + n_features_,
            hist.begin() + static_cast<size_t>(count % max_window_) * n_features_);
  ++count;
  for (size_t m = 0; m < model_window_.size(); ++m) {
    const int w = model_window_[m];
    if (count < w) continue;
    float* dst =
        windows_[m].data() + static_cast<size_t>(written_[m] % capacity_) * w * n_features_;
    for (int t = 0; t < w; ++t) {
      const int idx = (count - w + t) % max_window_;
      std::copy_n(hist.begin() + static_cast<size_t>(idx) * n_features_, n_features_,
                  dst + static_cast<size_t>(t) * n_features_);
    }
    ++written_[m];
  }
}

size_t CalibrationStore::windows(size_t model) const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::min<size_t>(written_[model], capacity_);
}

std::vector<float> CalibrationStore::Recent(size_t model, size_t max_windows) const {
  std::lock_guard<std::mutex> lock(mu_);
  const size_t stride = static_cast<size_t>(model_window_[model]) * n_features_;
  const size_t have = std::min<size_t>(written_[model], capacity_);
  const size_t n = max_windows == 0 ? have : std::min(have, max_windows);
  std::vector<float> out(n * stride);
  for (size_t i = 0; i < n; ++i) {
    const size_t idx = (written_[model] - n + i) % capacity_;
    std::copy_n(windows_[model].begin() + idx * stride, stride, out.begin() + i * stride);
  }
  return out;
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
                                      const models::Int8Options& options,
                                      double max_relative_rmse) {
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
  auto candidate = models::CalibrateInt8Model(
      base->spec, std::span<const float>(windows.data(), n_cal * stride), options, &described);
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
  const models::OutputError err = models::CompareOutputs(models::RunAll(**candidate, validation),
                                                         models::RunAll(fp32, validation));
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
  // How the installed model clips its input, for the saturation alarm.
  if (!described.inputs.empty()) {
    InputClipRange(*base->spec, described.inputs[0], &r.input_clip_lo, &r.input_clip_hi);
  }
  r.version = slot.Install(std::shared_ptr<const models::Model>(std::move(*candidate)));
  r.installed = true;
  r.message = "installed";
  return r;
}

}  // namespace qsig::server
