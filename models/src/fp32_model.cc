// The FP32 reference runtime (also the shadow model).
#include <limits>
#include <memory>

#include "internal/fp32_forward.h"
#include "qsig/models/model.h"

namespace qsig::models {
namespace {

class Fp32Model final : public Model {
 public:
  explicit Fp32Model(std::shared_ptr<const ModelSpec> spec)
      : Model(std::move(spec)), layout_(internal::Fp32Layout::For(*spec_)) {
    size_t n = 0;
    for (const LstmLayer& l : spec_->lstm) {
      n += l.w_ih.size() + l.w_hh.size() + l.b_ih.size() + l.b_hh.size();
    }
    for (const LinearLayer& l : spec_->layers) n += l.weight.size() + l.bias.size();
    n += spec_->feature_mean.size() + spec_->feature_std.size();
    weight_bytes_ = n * sizeof(float);
  }

  float Run(std::span<const float> window, float* workspace) const noexcept override {
    const size_t need = static_cast<size_t>(spec_->window) * spec_->input_size;
    if (window.size() != need || workspace == nullptr) {
      return std::numeric_limits<float>::quiet_NaN();
    }
    internal::NoHooks hooks;
    return internal::ForwardF32(*spec_, layout_, window.data(), workspace, hooks);
  }
  size_t workspace_floats() const noexcept override { return layout_.total; }
  size_t weight_bytes() const noexcept override { return weight_bytes_; }
  const char* precision() const noexcept override { return "fp32"; }

 private:
  internal::Fp32Layout layout_;
  size_t weight_bytes_ = 0;
};

}  // namespace

std::unique_ptr<Model> MakeFp32Model(std::shared_ptr<const ModelSpec> spec) {
  if (spec == nullptr || !ValidateSpec(*spec).ok()) return nullptr;
  return std::make_unique<Fp32Model>(std::move(spec));
}

}  // namespace qsig::models
