// MinMaxObserver: turning an observed range into quantization parameters.
#include "qsig/quant/observer.h"

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

}  // namespace qsig::quant
