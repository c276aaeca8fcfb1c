// Observers watch the values a tensor takes during calibration and turn them into QuantParams.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "qsig/quant/quantize.h"

namespace qsig::quant {

// Running minimum and maximum over every value observed (PyTorch's MinMaxObserver). Non-finite
// values are counted separately and do not move the range, so one bad feature cannot blow up a
// scale; Params() refuses to produce parameters if any were seen.
// Thread-safety: not thread-safe; use one observer per thread or lock outside.
class MinMaxObserver {
 public:
  void Observe(float v) noexcept {
    if (!std::isfinite(v)) {
      ++non_finite_;
      return;
    }
    min_ = v < min_ ? v : min_;
    max_ = v > max_ ? v : max_;
    ++count_;
  }
  void Observe(std::span<const float> values) noexcept {
    for (float v : values) Observe(v);
  }
  void Reset() noexcept { *this = MinMaxObserver(); }

  // Smallest / largest finite value observed (+inf / -inf before the first one).
  float min() const noexcept { return min_; }
  float max() const noexcept { return max_; }
  // Number of finite / non-finite values observed.
  uint64_t count() const noexcept { return count_; }
  uint64_t non_finite() const noexcept { return non_finite_; }

  // ChooseQuantParams(min(), max(), qmin, qmax, symmetric). Fails if nothing finite was
  // observed, if any value was not finite, or if the range is degenerate.
  absl::StatusOr<QuantParams> Params(int32_t qmin, int32_t qmax, bool symmetric) const;

 private:
  float min_ = std::numeric_limits<float>::infinity();
  float max_ = -std::numeric_limits<float>::infinity();
  uint64_t count_ = 0;
  uint64_t non_finite_ = 0;
};

// Per-channel minimum and maximum (PyTorch's PerChannelMinMaxObserver): one MinMaxObserver per
// channel of a row-major rows x cols tensor, the channel being the row (axis 0: a weight matrix's
// output channels, torch.nn.Linear layout) or the column (axis 1: the features of a batch of
// input vectors). Streams: Observe() may be called on any number of batches.
// Thread-safety: not thread-safe.
class PerChannelMinMaxObserver {
 public:
  // `channels` > 0; `axis` 0 or 1.
  PerChannelMinMaxObserver(int channels, int axis)
      : axis_(axis), channel_(static_cast<size_t>(channels > 0 ? channels : 0)) {}

  // Observes a rows x cols tensor; the channel dimension (rows for axis 0, cols for axis 1) must
  // equal channels(). Returns false (observing nothing) on a shape mismatch.
  bool Observe(std::span<const float> x, int rows, int cols) noexcept;

  int channels() const noexcept { return static_cast<int>(channel_.size()); }
  int axis() const noexcept { return axis_; }
  const MinMaxObserver& channel(int c) const noexcept { return channel_[static_cast<size_t>(c)]; }

  // One QuantParams per channel. `symmetric` as ChooseQuantParams (PyTorch's
  // per_channel_symmetric). A channel whose every value was 0 gets scale 1, zero point 0 for
  // asymmetric / symmetric alike (any scale represents it exactly; PyTorch does the same via
  // eps), so one dead output row does not fail a weight matrix. Fails, naming the channel, if
  // a channel saw no value or a non-finite one.
  absl::StatusOr<std::vector<QuantParams>> Params(int32_t qmin, int32_t qmax, bool symmetric) const;

 private:
  int axis_;
  std::vector<MinMaxObserver> channel_;
};

}  // namespace qsig::quant
