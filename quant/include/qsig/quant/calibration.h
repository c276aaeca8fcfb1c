// Calibration: streaming the values one tensor takes over calibration data and choosing the
// clipping range [min, max] that its quantization parameters are computed from (with
// ChooseQuantParams in quantize.h, whose formulas apply unchanged).
//
// Methods (CalibrationMethod):
//   kMinMax               the observed minimum and maximum (PyTorch's MinMaxObserver).
//   kMovingAverageMinMax  PyTorch's MovingAverageMinMaxObserver: per Observe() batch with finite
//                         batch extrema (bmin, bmax), the first batch sets min = bmin, max = bmax,
//                         later ones update, in float arithmetic,
//                           min = min + c * (bmin - min),  max = max + c * (bmax - max),
//                         with c = averaging_constant.
//   kPercentile           two-sided percentile: asymmetric, [P(100 - p), P(p)] of x; symmetric,
//                         [-t, t] with t = P(p) of |x|. Linear interpolation inside a histogram
//                         bin, so the answer is within one bin width of the exact quantile.
//   kEntropy              TensorRT's KL-divergence calibration. Reference distribution P: the
//                         histogram inside a candidate window with the counts outside it folded
//                         into the window's edge bins. Candidate Q: the window's bins merged into
//                         `levels` equal chunks (proportional chunk boundaries, so no chunk takes
//                         a large remainder), each chunk's count spread evenly over the bins where
//                         P is non-zero. Both are smoothed (zero bins get eps = 1e-4, taken from
//                         the non-zero bins, as MXNet/TVM do) and the window minimising KL(P||Q)
//                         wins. Symmetric: histogram of |x|, windows [0, T] of at least
//                         levels = quant_levels / 2 bins (128 for 8 bits: TensorRT's search from
//                         bin 128 up). Asymmetric: histogram of x, windows [-T, T] cut to the
//                         data ([0, T] for non-negative data, [-min(T, -min), T] for skewed data)
//                         of at least quant_levels bins. (KL is not a good objective for clipping
//                         the two sides independently: folding an outlier mass into one edge
//                         costs about as much as coarser bins, so a free 2-D search clips one
//                         side of N(0, 1) + 0.1% outliers and keeps the other at the outliers.)
//                         The scan is coarse-to-fine: ~256 candidates, then every bin within one
//                         stride of the best.
//   kMse                  the window minimising the L2 quantization error sum (x - x_hat)^2, with
//                         x_hat the centre of x's cell on a grid of `levels` cells over the window
//                         and values outside clamped to the edge cell (PyTorch HistogramObserver's
//                         _compute_quantization_error: uniform density inside each source bin).
//                         Windows (any width >= 1 bin) are scanned like kEntropy's when
//                         symmetric; asymmetric windows [lo, hi] containing 0 by alternating scans
//                         of hi and lo (coordinate descent, at most 4 rounds), not by PyTorch's
//                         greedy narrowing, which stops at the first error increase and so never
//                         gets past a far outlier. Note that an honest L2 objective keeps an
//                         outlier mass m at distance D whenever m * D^2 exceeds the rounding noise
//                         (step^2 / 12): 0.1% of samples at 50 sigma are worth keeping, and only
//                         kEntropy or kPercentile clip them.
//
// Histograms. The three histogram methods share one histogram on a grid anchored at 0 whose bin
// width is a power of two: bin k covers [k * w, (k + 1) * w). It holds 2 * `bins` counters (4 *
// `bins` when asymmetric, as it spans both signs) and is widened by doubling w (adding adjacent
// bins, which is exact) whenever a value falls outside; so at least `bins` (2 * `bins`) bins are
// occupied, memory is fixed at construction, Observe() never allocates, and two histograms (whose
// widths are both powers of two) merge exactly. Observing A then B, observing B then A, merging
// calibrators of A and B and observing A ∪ B at once give histograms that differ at most by the
// power-of-two width chosen, i.e. the same answers within one bin width.
//
// Thread-safety: a TensorCalibrator is not thread-safe; give each thread its own and Merge() them.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "qsig/quant/quantize.h"

namespace qsig::quant {

enum class CalibrationMethod { kMinMax, kMovingAverageMinMax, kPercentile, kEntropy, kMse };

// Parses "minmax", "ema", "percentile", "entropy" or "mse" (the names CalibrationMethodName
// returns). Fails with a message listing the accepted names.
absl::StatusOr<CalibrationMethod> ParseCalibrationMethod(std::string_view name);

// The name ParseCalibrationMethod accepts for `m`; a static string.
const char* CalibrationMethodName(CalibrationMethod m);

struct CalibrationOptions {
  CalibrationMethod method = CalibrationMethod::kMinMax;
  double percentile = 99.99;         // kPercentile, in (50, 100]: two-sided, of |x| for symmetric.
  double averaging_constant = 0.01;  // kMovingAverageMinMax, in (0, 1]: per Observe() batch.
  int bins = 2048;                   // Histogram methods: minimum resolution, in [16, 1 << 20].
  bool symmetric = false;            // Symmetric: the range is [-t, t].
  int quant_levels = 256;            // 256 for 8-bit, 128 for 7-bit reduce-range; >= 4.
};

// OK if every field is within the documented bounds (and quant_levels <= bins for the histogram
// methods); otherwise names the field and its bounds.
absl::Status ValidateCalibrationOptions(const CalibrationOptions& options);

// Streams values of one tensor and chooses its clipping range. Histogram-based methods keep a
// bounded histogram that re-bins as the range grows; two calibrators merge, so calibration can
// stream over days of samples in bounded memory (2 or 4 * bins * 8 bytes).
// Thread-safety: not thread-safe; one calibrator per thread, then Merge().
class TensorCalibrator {
 public:
  explicit TensorCalibrator(const CalibrationOptions& options = {});

  // Adds `values`. Non-finite values are ignored and counted in non_finite(). Never allocates.
  void Observe(std::span<const float> values) noexcept;

  // Adds everything `other` observed, as if this calibrator had observed it too. Both must have
  // been built with the same method, symmetric and bins; otherwise the merge is refused and
  // Range() reports it. kMovingAverageMinMax treats other's current range as one more batch.
  void Merge(const TensorCalibrator& other);

  // Chosen [min, max]; always contains 0 (and is [-t, t] when symmetric). Fails with a clear
  // Status if nothing finite was observed, the options are invalid or a merge was refused.
  // Cost: O(1) for the min-max methods, O(bins) for kPercentile, O(bins * ~300) for kEntropy /
  // kMse (milliseconds at bins = 2048): call it once per tensor at the end of calibration.
  absl::StatusOr<std::pair<float, float>> Range() const;

  // ChooseQuantParams(Range(), qmin, qmax, options().symmetric).
  absl::StatusOr<QuantParams> Params(int32_t qmin, int32_t qmax) const;

  // Number of finite / non-finite values observed.
  uint64_t count() const { return count_; }
  uint64_t non_finite() const { return non_finite_; }
  // Exact smallest / largest finite value observed (+inf / -inf before the first).
  float min() const { return min_; }
  float max() const { return max_; }
  const CalibrationOptions& options() const { return options_; }

  // Forgets everything observed; keeps the options and the histogram storage.
  void Reset() noexcept;

 private:
  bool UsesHistogram() const noexcept;
  // Makes the histogram cover [lo, hi] (lo <= 0 <= hi) by doubling the width and shifting.
  void CoverHistogram(double lo, double hi) noexcept;
  // Re-bins counts to width 2^log2w starting at grid index base.
  void Rebin(int log2w, int64_t base) noexcept;

  CalibrationOptions options_;
  uint64_t count_ = 0;
  uint64_t non_finite_ = 0;
  float min_;
  float max_;
  float ema_min_;
  float ema_max_;
  bool merge_refused_ = false;

  // Histogram: hist_[i] counts values (of |x| when symmetric) in [(base_ + i) * w, +w), with
  // w = 2^log2w_. Empty until the first finite value (hist_empty_).
  std::vector<uint64_t> hist_;
  std::vector<uint64_t> scratch_;  // Re-binning buffer, same size, so Observe never allocates.
  bool hist_empty_ = true;
  int log2w_ = 0;
  int64_t base_ = 0;
};

}  // namespace qsig::quant
