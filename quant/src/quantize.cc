// Affine quantization: parameter choice and row quantizers (formulas in quantize.h).
#include "qsig/quant/quantize.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qsig::quant {
namespace {

// Adding and subtracting 1.5 * 2^23 rounds a float with |v| < 2^22 to the nearest integer, ties
// to even, under the default rounding mode: the sum lies in [2^23, 2^24), where the spacing of
// floats is exactly 1. Unlike std::nearbyint it needs no SSE4.1 and vectorizes on baseline
// x86-64. (Neither -ffast-math nor FMA contraction is used in qsig, so the pair is not folded.)
constexpr float kRoundMagic = 12582912.0f;

// v clamped to [lo, hi] (integers) and rounded half to even. Clamping first is equivalent to
// clamping after rounding because lo and hi are integers; it keeps |v| small for the magic
// rounding and sends NaN to lo, exactly like Quantize().
inline float ClampRound(float v, float lo, float hi) noexcept {
  v = v > lo ? v : lo;
  v = v < hi ? v : hi;
  return (v + kRoundMagic) - kRoundMagic;
}

}  // namespace

absl::StatusOr<QuantParams> ChooseQuantParams(float min, float max, int32_t qmin, int32_t qmax,
                                              bool symmetric) {
  if (!std::isfinite(min) || !std::isfinite(max)) {
    return absl::InvalidArgumentError(
        absl::StrCat("quantization range [", min, ", ", max, "] is not finite"));
  }
  if (min > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("quantization range [", min, ", ", max, "] has min > max"));
  }
  if (qmin >= qmax) {
    return absl::InvalidArgumentError(
        absl::StrCat("integer range [", qmin, ", ", qmax, "] is empty"));
  }
  const float lo = std::min(min, 0.0f);
  const float hi = std::max(max, 0.0f);
  if (!(hi - lo > 0.0f)) {
    return absl::InvalidArgumentError(
        "quantization range is degenerate: every observed value was 0, so no scale can be "
        "chosen; check that the calibration data exercises this tensor");
  }
  QuantParams p;
  p.qmin = qmin;
  p.qmax = qmax;
  if (symmetric) {
    const float max_abs = std::max(-lo, hi);
    p.scale = max_abs / (static_cast<float>(qmax - qmin) / 2.0f);
    p.zero_point = qmin < 0 ? 0 : (qmin + qmax + 1) / 2;
  } else {
    p.scale = (hi - lo) / static_cast<float>(qmax - qmin);
    const float zp = static_cast<float>(qmin) - RoundHalfEven(lo / p.scale);
    p.zero_point =
        static_cast<int32_t>(std::clamp(zp, static_cast<float>(qmin), static_cast<float>(qmax)));
  }
  if (!(p.scale > 0.0f) || !std::isfinite(p.scale)) {
    return absl::InvalidArgumentError(absl::StrCat("quantization range [", min, ", ", max,
                                                   "] gives an unusable scale ", p.scale));
  }
  return p;
}

// The affine formula of quantize.h for one row, for every integer type that holds a whole
// quantized value (s4 packs two per byte and has its own loop below).
namespace {
template <typename T>
void QuantizeRowAs(const float* x, size_t n, const QuantParams& p, T* out) noexcept {
  const float lo = static_cast<float>(p.qmin - p.zero_point);
  const float hi = static_cast<float>(p.qmax - p.zero_point);
  const float scale = p.scale;
  const int32_t zp = p.zero_point;
  for (size_t i = 0; i < n; ++i) {
    out[i] = static_cast<T>(static_cast<int32_t>(ClampRound(x[i] / scale, lo, hi)) + zp);
  }
}
}  // namespace

void QuantizeRowU8(const float* x, size_t n, const QuantParams& p, uint8_t* out) noexcept {
  QuantizeRowAs(x, n, p, out);
}

void QuantizeRowS8(const float* x, size_t n, const QuantParams& p, int8_t* out) noexcept {
  QuantizeRowAs(x, n, p, out);
}

namespace {

// Checks shape and finiteness and gives each row's symmetric params over [-qmax, qmax].
absl::StatusOr<std::vector<QuantParams>> PerRowSymmetricParams(std::span<const float> w, int rows,
                                                               int cols, int32_t qmax) {
  if (rows <= 0 || cols <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("per-channel quantization of a ", rows, " x ", cols, " matrix"));
  }
  const size_t expected = static_cast<size_t>(rows) * static_cast<size_t>(cols);
  if (w.size() != expected) {
    return absl::InvalidArgumentError(absl::StrCat("per-channel quantization: matrix has ",
                                                   w.size(), " values, expected ", expected, " (",
                                                   rows, " x ", cols, ")"));
  }
  std::vector<QuantParams> params(static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    const float* row = w.data() + static_cast<size_t>(r) * cols;
    float max_abs = 0.0f;
    for (int c = 0; c < cols; ++c) {
      if (!std::isfinite(row[c])) {
        return absl::InvalidArgumentError(absl::StrCat("per-channel quantization: weight [", r,
                                                       ", ", c, "] is not finite (", row[c], ")"));
      }
      max_abs = std::max(max_abs, std::fabs(row[c]));
    }
    QuantParams& p = params[static_cast<size_t>(r)];
    p.scale = max_abs > 0.0f ? max_abs / static_cast<float>(qmax) : 1.0f;
    p.zero_point = 0;
    p.qmin = -qmax;
    p.qmax = qmax;
  }
  return params;
}

}  // namespace

absl::StatusOr<PerChannelS8> QuantizePerChannelSymmetricS8(std::span<const float> w, int rows,
                                                           int cols) {
  return QuantizePerChannelSymmetricS8(w, rows, cols, /*reduce_range=*/false);
}

absl::StatusOr<PerChannelS8> QuantizePerChannelSymmetricS8(std::span<const float> w, int rows,
                                                           int cols, bool reduce_range) {
  absl::StatusOr<std::vector<QuantParams>> params =
      PerRowSymmetricParams(w, rows, cols, reduce_range ? kS8ReduceRangeMax : kS8Max);
  if (!params.ok()) return params.status();
  PerChannelS8 q;
  q.rows = rows;
  q.cols = cols;
  q.data.resize(w.size());
  q.scales.resize(static_cast<size_t>(rows));
  q.row_sums.resize(static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    const QuantParams& p = (*params)[static_cast<size_t>(r)];
    const float* row = w.data() + static_cast<size_t>(r) * cols;
    int8_t* out = q.data.data() + static_cast<size_t>(r) * cols;
    int32_t sum = 0;
    for (int c = 0; c < cols; ++c) {
      out[c] = static_cast<int8_t>(Quantize(row[c], p));
      sum += out[c];
    }
    q.scales[static_cast<size_t>(r)] = p.scale;
    q.row_sums[static_cast<size_t>(r)] = sum;
  }
  return q;
}

absl::StatusOr<PerChannelS4> QuantizePerChannelSymmetricS4(std::span<const float> w, int rows,
                                                           int cols) {
  absl::StatusOr<std::vector<QuantParams>> params = PerRowSymmetricParams(w, rows, cols, kS4Max);
  if (!params.ok()) return params.status();
  PerChannelS4 q;
  q.rows = rows;
  q.cols = cols;
  q.data.assign(q.bytes_per_row() * static_cast<size_t>(rows), 0);
  q.scales.resize(static_cast<size_t>(rows));
  q.row_sums.resize(static_cast<size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    const QuantParams& p = (*params)[static_cast<size_t>(r)];
    uint8_t* out = q.data.data() + q.bytes_per_row() * static_cast<size_t>(r);
    QuantizeRowS4(w.data() + static_cast<size_t>(r) * cols, static_cast<size_t>(cols), p, out);
    int32_t sum = 0;
    for (int c = 0; c < cols; ++c) sum += UnpackS4(out, static_cast<size_t>(c));
    q.scales[static_cast<size_t>(r)] = p.scale;
    q.row_sums[static_cast<size_t>(r)] = sum;
  }
  return q;
}

void QuantizeRowS16(const float* x, size_t n, const QuantParams& p, int16_t* out) noexcept {
  QuantizeRowAs(x, n, p, out);
}

void QuantizeRowS4(const float* x, size_t n, const QuantParams& p, uint8_t* out) noexcept {
  const float lo = static_cast<float>(p.qmin - p.zero_point);
  const float hi = static_cast<float>(p.qmax - p.zero_point);
  const float scale = p.scale;
  const int32_t zp = p.zero_point;
  auto nibble = [&](float v) {
    return static_cast<uint8_t>((static_cast<int32_t>(ClampRound(v / scale, lo, hi)) + zp) & 0xf);
  };
  size_t i = 0;
  for (; i + 1 < n; i += 2) {
    out[i / 2] = static_cast<uint8_t>(nibble(x[i]) | (nibble(x[i + 1]) << 4));
  }
  if (i < n) out[i / 2] = nibble(x[i]);
}

void DequantizeRowU8(const uint8_t* q, size_t n, const QuantParams& p, float* out) noexcept {
  for (size_t i = 0; i < n; ++i) out[i] = Dequantize(q[i], p);
}
void DequantizeRowS8(const int8_t* q, size_t n, const QuantParams& p, float* out) noexcept {
  for (size_t i = 0; i < n; ++i) out[i] = Dequantize(q[i], p);
}
void DequantizeRowS16(const int16_t* q, size_t n, const QuantParams& p, float* out) noexcept {
  for (size_t i = 0; i < n; ++i) out[i] = Dequantize(q[i], p);
}
void DequantizeRowS4(const uint8_t* packed, size_t n, const QuantParams& p, float* out) noexcept {
  for (size_t i = 0; i < n; ++i) out[i] = Dequantize(UnpackS4(packed, i), p);
}

}  // namespace qsig::quant
