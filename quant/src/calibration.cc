// TensorCalibrator: streaming histograms and the range searches (methods in calibration.h).
#include "qsig/quant/calibration.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"

namespace qsig::quant {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
// Smoothing mass given to empty bins before the KL divergence (MXNet/TVM's _smooth_distribution).
constexpr double kSmoothEps = 1e-4;

// floor(v / 2^log2w) as an integer grid index. Scaling by a power of two is exact, so the bin
// of a value never depends on rounding.
inline int64_t GridIndex(double v, int log2w) noexcept {
  return static_cast<int64_t>(std::floor(std::ldexp(v, -log2w)));
}

// A histogram snapshot in double precision for the range searches (cold path).
struct HistView {
  std::vector<double> h;       // counts
  std::vector<double> prefix;  // prefix[i] = sum h[0, i)
  double w = 1.0;              // bin width
  double origin = 0.0;         // left edge of bin 0
  int first = 0;               // first non-zero bin
  int last = 0;                // last non-zero bin
  int zero = 0;                // bin whose left edge is 0 (0 is always a bin edge)
  std::vector<int> nonzero;    // indices of non-zero bins

  double Edge(int i) const { return origin + w * i; }
  double total() const { return prefix.back(); }
};

// Kullback-Leibler divergence KL(P || Q) of the window [a, b) quantized to `levels` chunks; see
// kEntropy in calibration.h. p, q are scratch of at least b - a entries.
double WindowKl(const HistView& v, int a, int b, int levels, std::vector<double>& p,
                std::vector<double>& q, std::vector<double>& chunk_sum,
                std::vector<int>& chunk_nonzero) {
  const int nb = b - a;
  const double* h = v.h.data() + a;
  for (int k = 0; k < nb; ++k) p[k] = h[k];
  p[0] += v.prefix[a];                   // left outliers fold into the first bin
  p[nb - 1] += v.total() - v.prefix[b];  // right outliers into the last
  std::fill(chunk_sum.begin(), chunk_sum.begin() + levels, 0.0);
  std::fill(chunk_nonzero.begin(), chunk_nonzero.begin() + levels, 0);
  // Proportional chunking: bin k of the window belongs to chunk floor(k * levels / nb).
  for (int k = 0; k < nb; ++k) {
    const int j = static_cast<int>(static_cast<int64_t>(k) * levels / nb);
    chunk_sum[j] += h[k];  // Q is built from the window alone: clipped mass is lost to it.
    chunk_nonzero[j] += p[k] != 0.0;
  }
  for (int k = 0; k < nb; ++k) {
    const int j = static_cast<int>(static_cast<int64_t>(k) * levels / nb);
    q[k] = p[k] != 0.0 ? chunk_sum[j] / chunk_nonzero[j] : 0.0;
  }
  // Smooth both: zero bins get eps, taken evenly from the non-zero ones, so log(p/q) is finite.
  auto smooth = [nb](std::vector<double>& d) -> bool {
    int zeros = 0;
    for (int k = 0; k < nb; ++k) zeros += d[k] == 0.0;
    const int nonzeros = nb - zeros;
    if (nonzeros == 0) return false;
    const double eps1 = kSmoothEps * zeros / nonzeros;
    double sum = 0.0;
    for (int k = 0; k < nb; ++k) {
      d[k] = d[k] == 0.0 ? kSmoothEps : std::max(d[k] - eps1, kSmoothEps * 1e-3);
      sum += d[k];
    }
    for (int k = 0; k < nb; ++k) d[k] /= sum;
    return true;
  };
  if (!smooth(p) || !smooth(q)) return std::numeric_limits<double>::infinity();
  double kl = 0.0;
  for (int k = 0; k < nb; ++k) kl += p[k] * std::log(p[k] / q[k]);
  return kl;
}

// d * integral of x^2 over [begin, end] (PyTorch HistogramObserver._get_norm).
inline double Norm(double begin, double end, double density) {
  return density * (end * end * end - begin * begin * begin) / 3.0;
}

// L2 error of quantizing every histogram value to the centre of its cell on a grid of `levels`
// cells over [Edge(a), Edge(b)), values outside clamped to the edge cells, assuming uniform
// density inside each source bin (PyTorch's _compute_quantization_error).
double WindowL2(const HistView& v, int a, int b, int levels) {
  const double dw = v.w * (b - a) / levels;
  const double half = dw / 2.0;
  const double x0 = v.Edge(a);
  const double full_cell = Norm(-half, half, 1.0);
  double err = 0.0;
  for (int i : v.nonzero) {
    const double density = v.h[i] / v.w;
    const double begin = v.Edge(i) - x0;
    const double end = begin + v.w;
    const double cb = std::clamp(std::floor(begin / dw), 0.0, levels - 1.0);
    const double ce = std::clamp(std::floor(end / dw), 0.0, levels - 1.0);
    if (cb == ce) {
      const double c = (cb + 0.5) * dw;
      err += Norm(begin - c, end - c, density);
    } else {
      // First partial cell, whole cells between, last partial cell.
      err += Norm(begin - (cb + 0.5) * dw, half, density);
      err += (ce - cb - 1.0) * full_cell * density;
      err += Norm(-half, end - (ce + 0.5) * dw, density);
    }
  }
  return err;
}

// Smallest cost over x in [lo, hi]: a scan at stride ~(hi - lo) / 256, then every point within
// one stride of the coarse winner, so a search costs ~260 + 2 * stride evaluations instead of
// hi - lo + 1 (KL and L2 vary smoothly at the scale of a stride). Ties go to `prefer_high` ?
// the larger x : the smaller x, i.e. to the wider window (TensorRT keeps the last argmin).
template <typename Cost>
int Argmin(int lo, int hi, bool prefer_high, const Cost& cost) {
  if (hi <= lo) return lo;
  const int stride = std::max(1, (hi - lo) / 256);
  int best = prefer_high ? hi : lo;
  double best_cost = std::numeric_limits<double>::infinity();
  auto visit = [&](int x) {
    const double c = cost(x);
    if (c < best_cost || (c == best_cost && (prefer_high ? x > best : x < best))) {
      best_cost = c;
      best = x;
    }
  };
  for (int x = lo; x < hi; x += stride) visit(x);
  visit(hi);
  const int center = best;
  for (int x = std::max(lo, center - stride + 1); x <= std::min(hi, center + stride - 1); ++x) {
    visit(x);
  }
  return best;
}

// Best window [a, b) for `cost` with b - a >= min_width. Symmetric (|x| histogram): a = 0, b
// scanned. Asymmetric, `equal_reach`: windows [zero - t, zero + t] cut to the data, one scan of t.
// Asymmetric otherwise: windows containing the zero edge (a <= zero <= b), alternate scans of b
// and a (coordinate descent).
template <typename Cost>
std::pair<int, int> SearchWindow(const HistView& v, bool symmetric, bool equal_reach, int min_width,
                                 const Cost& cost) {
  int a = symmetric ? 0 : v.first;
  int b = v.last + 1;
  if (b - a <= min_width) return {a, b};  // Nothing to clip at this resolution.
  if (symmetric) return {0, Argmin(min_width, b, true, [&](int x) { return cost(0, x); })};
  if (equal_reach) {
    auto window = [&](int t) {
      return std::pair<int, int>{std::max(v.first, v.zero - t), std::min(v.last + 1, v.zero + t)};
    };
    const int t_max = std::max(v.zero - v.first, v.last + 1 - v.zero);
    int t_min = 1;
    while (t_min < t_max && window(t_min).second - window(t_min).first < min_width) ++t_min;
    const int t = Argmin(t_min, t_max, true, [&](int x) {
      const auto [wa, wb] = window(x);
      return cost(wa, wb);
    });
    return window(t);
  }
  for (int round = 0; round < 4; ++round) {
    const int old_a = a;
    const int old_b = b;
    b = Argmin(std::max({a + min_width, v.zero, a + 1}), v.last + 1, true,
               [&](int x) { return cost(a, x); });
    a = Argmin(v.first, std::min(b - min_width, v.zero), false, [&](int x) { return cost(x, b); });
    if (a == old_a && b == old_b) break;
  }
  return {a, b};
}

// The value below which a fraction `frac` of the histogram's mass lies, interpolating linearly
// inside the bin.
double HistQuantile(const HistView& v, double frac) {
  const double target = frac * v.total();
  // First bin whose cumulative count reaches the target.
  const auto it = std::lower_bound(v.prefix.begin() + 1, v.prefix.end(), target);
  const int i = static_cast<int>(it - v.prefix.begin()) - 1;
  if (i >= static_cast<int>(v.h.size())) return v.Edge(static_cast<int>(v.h.size()));
  const double within = v.h[i] > 0.0 ? (target - v.prefix[i]) / v.h[i] : 0.0;
  return v.Edge(i) + v.w * std::clamp(within, 0.0, 1.0);
}

}  // namespace

absl::StatusOr<CalibrationMethod> ParseCalibrationMethod(std::string_view name) {
  if (name == "minmax") return CalibrationMethod::kMinMax;
  if (name == "ema") return CalibrationMethod::kMovingAverageMinMax;
  if (name == "percentile") return CalibrationMethod::kPercentile;
  if (name == "entropy") return CalibrationMethod::kEntropy;
  if (name == "mse") return CalibrationMethod::kMse;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown calibration method \"", std::string(name),
                   "\"; expected one of: minmax, ema, percentile, entropy, mse"));
}

const char* CalibrationMethodName(CalibrationMethod m) {
  switch (m) {
    case CalibrationMethod::kMinMax:
      return "minmax";
    case CalibrationMethod::kMovingAverageMinMax:
      return "ema";
    case CalibrationMethod::kPercentile:
      return "percentile";
    case CalibrationMethod::kEntropy:
      return "entropy";
    case CalibrationMethod::kMse:
      return "mse";
  }
  return "unknown";
}

absl::Status ValidateCalibrationOptions(const CalibrationOptions& o) {
  if (!(o.percentile > 50.0 && o.percentile <= 100.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration percentile ", o.percentile, " is outside (50, 100]"));
  }
  if (!(o.averaging_constant > 0.0 && o.averaging_constant <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("calibration averaging_constant ",
                                                   o.averaging_constant, " is outside (0, 1]"));
  }
  if (o.bins < 16 || o.bins > (1 << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration bins ", o.bins, " is outside [16, 1048576]"));
  }
  if (o.quant_levels < 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("calibration quant_levels ", o.quant_levels, " is below 4"));
  }
  const bool histogram = o.method == CalibrationMethod::kPercentile ||
                         o.method == CalibrationMethod::kEntropy ||
                         o.method == CalibrationMethod::kMse;
  if (histogram && o.quant_levels > o.bins) {
    return absl::InvalidArgumentError(absl::StrCat("calibration quant_levels ", o.quant_levels,
                                                   " exceeds bins ", o.bins,
                                                   "; use at least as many bins as levels"));
  }
  return absl::OkStatus();
}

TensorCalibrator::TensorCalibrator(const CalibrationOptions& options) : options_(options) {
  Reset();
  if (UsesHistogram()) {
    // 2 * bins counters: doubling the width when the range grows leaves at least `bins` in use.
    // An asymmetric histogram spans both signs, so it gets twice that to resolve each side as
    // finely as the |x| histogram does (the entropy search needs >= 1 bin per level on a side).
    const size_t n =
        (options_.symmetric ? 2 : 4) * static_cast<size_t>(std::clamp(options_.bins, 16, 1 << 20));
    hist_.assign(n, 0);
    scratch_.assign(n, 0);
  }
}

void TensorCalibrator::Reset() noexcept {
  count_ = 0;
  non_finite_ = 0;
  min_ = kInf;
  max_ = -kInf;
  ema_min_ = kInf;
  ema_max_ = -kInf;
  merge_refused_ = false;
  std::fill(hist_.begin(), hist_.end(), 0);
  hist_empty_ = true;
  log2w_ = 0;
  base_ = 0;
}

bool TensorCalibrator::UsesHistogram() const noexcept {
  return options_.method == CalibrationMethod::kPercentile ||
         options_.method == CalibrationMethod::kEntropy ||
         options_.method == CalibrationMethod::kMse;
}

void TensorCalibrator::Rebin(int log2w, int64_t base) noexcept {
  const int shift = log2w - log2w_;  // >= 0: widths only grow.
  std::fill(scratch_.begin(), scratch_.end(), 0);
  const int64_t n = static_cast<int64_t>(hist_.size());
  for (int64_t i = 0; i < n; ++i) {
    if (hist_[i] == 0) continue;
    // Arithmetic shift is floor division by 2^shift (defined for negatives since C++20).
    const int64_t j = ((base_ + i) >> shift) - base;
    scratch_[static_cast<size_t>(std::clamp<int64_t>(j, 0, n - 1))] += hist_[i];
  }
  hist_.swap(scratch_);
  log2w_ = log2w;
  base_ = base;
}

void TensorCalibrator::CoverHistogram(double lo, double hi) noexcept {
  const int64_t n = static_cast<int64_t>(hist_.size());
  // Smallest power-of-two width that spans [lo, hi] in n bins, never below the current one.
  int log2w = std::numeric_limits<double>::min_exponent - 1;
  const double span = hi - lo;
  if (span > 0.0) log2w = std::ilogb(span / static_cast<double>(n));
  if (!hist_empty_) log2w = std::max(log2w, log2w_);
  while (GridIndex(hi, log2w) - GridIndex(lo, log2w) + 1 > n) ++log2w;
  const int64_t base = GridIndex(lo, log2w);
  if (hist_empty_) {
    log2w_ = log2w;
    base_ = base;
    hist_empty_ = false;
  } else if (log2w != log2w_ || base != base_) {
    Rebin(log2w, base);
  }
}

void TensorCalibrator::Observe(std::span<const float> values) noexcept {
  float bmin = kInf;
  float bmax = -kInf;
  uint64_t finite = 0;
  for (float v : values) {
    if (!std::isfinite(v)) continue;
    bmin = std::min(bmin, v);
    bmax = std::max(bmax, v);
    ++finite;
  }
  non_finite_ += values.size() - finite;
  if (finite == 0) return;
  count_ += finite;
  min_ = std::min(min_, bmin);
  max_ = std::max(max_, bmax);

  switch (options_.method) {
    case CalibrationMethod::kMinMax:
      return;
    case CalibrationMethod::kMovingAverageMinMax:
      if (ema_min_ == kInf && ema_max_ == -kInf) {
        ema_min_ = bmin;
        ema_max_ = bmax;
      } else {
        // Three float roundings (sub, mul, add), as PyTorch's tensor ops do; no FMA contraction
        // (qsig builds in ISO mode, where GCC does not contract).
        const float c = static_cast<float>(options_.averaging_constant);
        ema_min_ = ema_min_ + c * (bmin - ema_min_);
        ema_max_ = ema_max_ + c * (bmax - ema_max_);
      }
      return;
    default:
      break;
  }

  // Histogram methods: of |x| over [0, max|x|] when symmetric, of x over [min', max'] (widened to
  // include 0, so that 0 is a bin edge and every candidate window can contain it) otherwise.
  const bool sym = options_.symmetric;
  const double lo = sym ? 0.0 : std::min(static_cast<double>(min_), 0.0);
  const double hi = sym ? std::max(-static_cast<double>(min_), static_cast<double>(max_))
                        : std::max(static_cast<double>(max_), 0.0);
  CoverHistogram(lo, hi);
  const int64_t last = static_cast<int64_t>(hist_.size()) - 1;
  for (float v : values) {
    if (!std::isfinite(v)) continue;
    const double x = sym ? std::fabs(static_cast<double>(v)) : static_cast<double>(v);
    const int64_t i = std::clamp<int64_t>(GridIndex(x, log2w_) - base_, 0, last);
    ++hist_[static_cast<size_t>(i)];
  }
}

void TensorCalibrator::Merge(const TensorCalibrator& other) {
  if (other.options_.method != options_.method || other.options_.symmetric != options_.symmetric ||
      other.hist_.size() != hist_.size()) {
    merge_refused_ = true;
    return;
  }
  merge_refused_ = merge_refused_ || other.merge_refused_;
  non_finite_ += other.non_finite_;
  if (other.count_ == 0) return;
  const bool was_empty = count_ == 0;
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  if (options_.method == CalibrationMethod::kMovingAverageMinMax) {
    if (was_empty) {
      ema_min_ = other.ema_min_;
      ema_max_ = other.ema_max_;
    } else {
      const float c = static_cast<float>(options_.averaging_constant);
      ema_min_ = ema_min_ + c * (other.ema_min_ - ema_min_);
      ema_max_ = ema_max_ + c * (other.ema_max_ - ema_max_);
    }
  }
  if (!UsesHistogram() || other.hist_empty_) return;
  // Bring this histogram to at least other's width and over the union of both ranges, then add
  // other's bins: both widths are powers of two, so other's bins nest exactly in ours.
  if (!hist_empty_ && other.log2w_ > log2w_) {
    Rebin(other.log2w_, base_ >> (other.log2w_ - log2w_));
  } else if (hist_empty_) {
    log2w_ = other.log2w_;
    base_ = other.base_;
    hist_empty_ = false;
  }
  const bool sym = options_.symmetric;
  const double lo = sym ? 0.0 : std::min(static_cast<double>(min_), 0.0);
  const double hi = sym ? std::max(-static_cast<double>(min_), static_cast<double>(max_))
                        : std::max(static_cast<double>(max_), 0.0);
  CoverHistogram(lo, hi);
  const int shift = log2w_ - other.log2w_;
  const int64_t n = static_cast<int64_t>(hist_.size());
  for (int64_t i = 0; i < n; ++i) {
    if (other.hist_[i] == 0) continue;
    const int64_t j = ((other.base_ + i) >> shift) - base_;
    hist_[static_cast<size_t>(std::clamp<int64_t>(j, 0, n - 1))] += other.hist_[i];
  }
}

absl::StatusOr<std::pair<float, float>> TensorCalibrator::Range() const {
  if (absl::Status s = ValidateCalibrationOptions(options_); !s.ok()) return s;
  if (merge_refused_) {
    return absl::FailedPreconditionError(
        "calibrator was merged with one of a different method, symmetry or bin count; merge only "
        "calibrators built from the same CalibrationOptions");
  }
  if (count_ == 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "calibrator (", CalibrationMethodName(options_.method), ") has seen no finite values (",
        non_finite_, " non-finite); run calibration data through this tensor first"));
  }
  const bool sym = options_.symmetric;
  // Widens [lo, hi] to contain 0 (and to [-t, t] when symmetric), as ChooseQuantParams would.
  auto finish = [sym](double lo, double hi) -> std::pair<float, float> {
    float l = std::min(static_cast<float>(lo), 0.0f);
    float h = std::max(static_cast<float>(hi), 0.0f);
    if (sym) {
      const float t = std::max(-l, h);
      return {-t, t};
    }
    return {l, h};
  };
  if (options_.method == CalibrationMethod::kMinMax) return finish(min_, max_);
  if (options_.method == CalibrationMethod::kMovingAverageMinMax) {
    return finish(ema_min_, ema_max_);
  }

  HistView v;
  const size_t n = hist_.size();
  v.h.assign(hist_.begin(), hist_.end());
  v.prefix.assign(n + 1, 0.0);
  for (size_t i = 0; i < n; ++i) v.prefix[i + 1] = v.prefix[i] + v.h[i];
  v.w = std::ldexp(1.0, log2w_);
  v.origin = static_cast<double>(base_) * v.w;
  v.first = static_cast<int>(n);
  for (size_t i = 0; i < n; ++i) {
    if (hist_[i] == 0) continue;
    v.first = std::min(v.first, static_cast<int>(i));
    v.last = static_cast<int>(i);
    v.nonzero.push_back(static_cast<int>(i));
  }
  v.zero = static_cast<int>(-base_);
  // Exact data bounds in the histogram's domain: window edges are clamped to them.
  const double data_lo = sym ? 0.0 : static_cast<double>(min_);
  const double data_hi =
      sym ? std::max(-static_cast<double>(min_), static_cast<double>(max_)) : max_;
  auto window_range = [&](int a, int b) {
    const double lo = std::max(v.Edge(a), data_lo);
    const double hi = std::min(v.Edge(b), data_hi);
    return sym ? finish(-hi, hi) : finish(lo, hi);
  };

  // Symmetric methods see |x| on one side of 0: half the levels.
  const int levels = sym ? options_.quant_levels / 2 : options_.quant_levels;
  switch (options_.method) {
    case CalibrationMethod::kPercentile: {
      const double p = options_.percentile / 100.0;
      const double hi = std::min(HistQuantile(v, p), data_hi);
      if (sym) return finish(-hi, hi);
      const double lo = std::max(HistQuantile(v, 1.0 - p), data_lo);
      return finish(lo, hi);
    }
    case CalibrationMethod::kEntropy: {
      std::vector<double> p(n), q(n), chunk_sum(static_cast<size_t>(levels));
      std::vector<int> chunk_nonzero(static_cast<size_t>(levels));
      auto cost = [&](int a, int b) {
        return WindowKl(v, a, b, levels, p, q, chunk_sum, chunk_nonzero);
      };
      const auto [a, b] = SearchWindow(v, sym, /*equal_reach=*/true, levels, cost);
      return window_range(a, b);
    }
    case CalibrationMethod::kMse: {
      auto cost = [&](int a, int b) { return WindowL2(v, a, b, levels); };
      const auto [a, b] = SearchWindow(v, sym, /*equal_reach=*/false, 1, cost);
      return window_range(a, b);
    }
    default:
      break;
  }
  return absl::InternalError("unhandled calibration method");
}

absl::StatusOr<QuantParams> TensorCalibrator::Params(int32_t qmin, int32_t qmax) const {
  absl::StatusOr<std::pair<float, float>> r = Range();
  if (!r.ok()) return r.status();
  return ChooseQuantParams(r->first, r->second, qmin, qmax, options_.symmetric);
}

}  // namespace qsig::quant
