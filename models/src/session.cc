// Model's default stateful execution (for runtimes without a specialised one) and Session.
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>

#include "qsig/models/model.h"

namespace qsig::models {
namespace {

constexpr size_t kHeaderFloats = 16;  // one cache line: the tick counter
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

size_t Align16(size_t n) { return (n + 15) / 16 * 16; }

}  // namespace

// Default kWindow state: a counter, then the last window() raw ticks oldest first; PushTick
// shifts them and runs the whole window (no caching). kStreaming is not supported by default.
size_t Model::state_floats(Mode mode) const noexcept {
  if (mode == Mode::kStreaming) return kHeaderFloats;
  return kHeaderFloats + Align16(static_cast<size_t>(window()) * input_size());
}

void Model::ResetState(Mode mode, float* state) const noexcept {
  if (state != nullptr) std::memset(state, 0, state_floats(mode) * sizeof(float));
}

float Model::PushTick(std::span<const float> tick, float* state, float* ws) const noexcept {
  const size_t in = static_cast<size_t>(input_size());
  if (tick.size() != in || state == nullptr || ws == nullptr) return kNaN;
  uint64_t count;
  std::memcpy(&count, state, sizeof count);
  float* win = state + kHeaderFloats;
  const size_t n = static_cast<size_t>(window()) * in;
  std::memmove(win, win + in, (n - in) * sizeof(float));
  std::memcpy(win + n - in, tick.data(), in * sizeof(float));
  ++count;
  std::memcpy(state, &count, sizeof count);
  if (count < static_cast<uint64_t>(window())) return kNaN;
  return Run(std::span<const float>(win, n), ws);
}

bool Model::PrecomputeWindow(float*, float*) const noexcept { return false; }
bool Model::WindowPrecomputed(const float*) const noexcept { return false; }

float Model::Step(std::span<const float>, float*, float*) const noexcept { return kNaN; }

void Model::StepBatch(int n, const float* ticks, float* const* states, float* ws,
                      float* out) const noexcept {
  const size_t in = static_cast<size_t>(input_size());
  for (int i = 0; i < n; ++i) {
    out[i] = Step(std::span<const float>(ticks + static_cast<size_t>(i) * in, in), states[i], ws);
  }
}

size_t Model::batch_workspace_floats(int) const noexcept { return workspace_floats(); }

Session::Session(std::shared_ptr<const Model> model, Mode mode)
    : model_(std::move(model)), mode_(mode) {
  const size_t st = Align16(model_->state_floats(mode));
  const size_t ws = Align16(model_->workspace_floats());
  storage_.assign(st + ws + 16, 0.0f);
  // Align both regions to 64 bytes inside the vector.
  float* base = storage_.data();
  const auto addr = reinterpret_cast<uintptr_t>(base);
  const size_t skip = ((64 - addr % 64) % 64) / sizeof(float);
  state_ = base + skip;
  workspace_ = state_ + st;
  Reset();
}

float Session::Push(std::span<const float> tick) noexcept {
  return mode_ == Mode::kWindow ? model_->PushTick(tick, state_, workspace_)
                                : model_->Step(tick, state_, workspace_);
}

void Session::Reset() noexcept { model_->ResetState(mode_, state_); }

}  // namespace qsig::models
