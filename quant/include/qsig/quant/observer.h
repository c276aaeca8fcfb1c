// Observers watch the values a tensor takes during calibration and turn them into QuantParams.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>

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

}  // namespace qsig::quant
