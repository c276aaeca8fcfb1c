// MinMaxObserver: turning an observed range into quantization parameters.
#include "qsig/quant/observer.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qsig::quant {

absl::StatusOr<QuantParams> MinMaxObserver::Params(int32_t qmin, int32_t qmax,
                                                   bool symmetric) const {
  if (non_finite_ > 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "observer saw ", non_finite_, " non-finite value(s) among ", count_ + non_finite_,
        "; clean the calibration data (NaN/Inf features) before calibrating"));
  }
  if (count_ == 0) {
    return absl::FailedPreconditionError("observer has seen no values; run calibration data first");
  }
  return ChooseQuantParams(min_, max_, qmin, qmax, symmetric);
}

bool PerChannelMinMaxObserver::Observe(std::span<const float> x, int rows, int cols) noexcept {
  if (rows < 0 || cols < 0 || (axis_ != 0 && axis_ != 1) ||
      x.size() != static_cast<size_t>(rows) * static_cast<size_t>(cols) ||
      (axis_ == 0 ? rows : cols) != channels()) {
    return false;
  }
  for (int r = 0; r < rows; ++r) {
    const float* row = x.data() + static_cast<size_t>(r) * static_cast<size_t>(cols);
    if (axis_ == 0) {
      channel_[static_cast<size_t>(r)].Observe({row, static_cast<size_t>(cols)});
    } else {
      for (int c = 0; c < cols; ++c) channel_[static_cast<size_t>(c)].Observe(row[c]);
    }
  }
  return true;
}

absl::StatusOr<std::vector<QuantParams>> PerChannelMinMaxObserver::Params(int32_t qmin,
                                                                          int32_t qmax,
                                                                          bool symmetric) const {
  std::vector<QuantParams> out;
  out.reserve(channel_.size());
  for (size_t c = 0; c < channel_.size(); ++c) {
    const MinMaxObserver& o = channel_[c];
    if (o.count() > 0 && o.non_finite() == 0 && o.min() == 0.0f && o.max() == 0.0f) {
      QuantParams p;
      p.scale = 1.0f;
      p.zero_point = symmetric ? 0 : std::clamp<int32_t>(0, qmin, qmax);
      p.qmin = qmin;
      p.qmax = qmax;
      out.push_back(p);
      continue;
    }
    auto p = o.Params(qmin, qmax, symmetric);
    if (!p.ok()) {
      return absl::Status(p.status().code(),
                          absl::StrCat("channel ", c, ": ", p.status().message()));
    }
    out.push_back(*p);
  }
  return out;
}

}  // namespace qsig::quant
