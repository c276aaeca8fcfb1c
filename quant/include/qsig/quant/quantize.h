// Affine (linear) quantization: the formulas, the choice of parameters, and per-channel weight
// quantization. Every other file in qsig that quantizes or dequantizes follows the formulas here.
//
// The affine map between a real value r and an integer q in [qmin, qmax]:
//
//   q = clamp(round_half_even(r / scale) + zero_point, qmin, qmax)      (Quantize)
//   r = (q - zero_point) * scale                                         (Dequantize)
//
// round_half_even is std::nearbyint under the default rounding mode (FE_TONEAREST), as PyTorch
// does (0.5 -> 0, 1.5 -> 2, -0.5 -> 0, -1.5 -> -2).
//
// Choosing scale and zero_point from an observed range [min, max] (PyTorch's
// `_calculate_qparams`): the range is first widened to include 0, so that 0 is exactly
// representable (zero padding, ReLU outputs and the LSTM's h0 = 0 quantize without error):
//
//   min' = min(min, 0), max' = max(max, 0)
//   asymmetric: scale = (max' - min') / (qmax - qmin)
//               zero_point = clamp(qmin - round_half_even(min' / scale), qmin, qmax)
//   symmetric:  scale = max(-min', max') / ((qmax - qmin) / 2)
//               zero_point = 0 for signed types, (qmin + qmax + 1) / 2 (= 128) for u8
//
// Weights use symmetric s8 over [-127, 127] (the -128 code is left unused so that -w is
// representable and the VNNI/maddubs kernels cannot overflow), one scale per output row.
// Activations use asymmetric u8 over [0, 255], one scale per tensor.
//
// Other formats, same formulas with other [qmin, qmax]:
//   reduce range  7-bit s8 weights over [-63, 63] (scale = max|w| / 63): u8 x s8 pair sums then
//                 fit s16, so the AVX2 kernel's fast vpmaddubsw path is exact (gemm.h). Costs one
//                 bit of weight precision; only worth it on CPUs without VNNI.
//   s16           [-32768, 32767], symmetric [-32767, 32767]: e.g. an LSTM cell state.
//   s4            [-8, 7], symmetric weights [-7, 7], packed two per byte: element i lives in
//                 byte i / 2, in the low nibble when i is even and the high nibble when odd, as
//                 4-bit two's complement; an odd count leaves the last high nibble 0.
//
// Thread-safety: everything here is a pure function or a value type.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace qsig::quant {

// Integer ranges of the supported types.
inline constexpr int32_t kS8Min = -128;
inline constexpr int32_t kS8Max = 127;
inline constexpr int32_t kS8SymMin = -127;  // Symmetric s8 weights leave -128 unused.
inline constexpr int32_t kU8Min = 0;
inline constexpr int32_t kU8Max = 255;
inline constexpr int32_t kS8ReduceRangeMax = 63;  // 7-bit weights: [-63, 63]
inline constexpr int32_t kS16Min = -32768;
inline constexpr int32_t kS16Max = 32767;
inline constexpr int32_t kS16SymMin = -32767;
inline constexpr int32_t kS4Min = -8;
inline constexpr int32_t kS4Max = 7;
inline constexpr int32_t kS4SymMin = -7;

// Parameters of one affine map; see the file comment for the formulas.
struct QuantParams {
  float scale = 1.0f;
  int32_t zero_point = 0;
  int32_t qmin = kU8Min;
  int32_t qmax = kU8Max;
};

// Round half to even under the default floating-point rounding mode.
inline float RoundHalfEven(float x) noexcept { return std::nearbyint(x); }

// The smallest bfloat16 value >= v, for finite v > 0: the grid of the per-row weight scales the
// INT8 model runtime stores in 2 bytes (models/src/internal/kernels.h), and of any exporter that
// must reproduce them (models/io/src/onnx_export.cc).
inline float RoundUpToBf16(float v) noexcept {
  uint32_t u;
  std::memcpy(&u, &v, sizeof u);
  if (u & 0xFFFFu) u = (u & 0xFFFF0000u) + 0x10000u;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// q = clamp(round_half_even(r / scale) + zero_point, qmin, qmax). NaN maps to qmin.
// This is the specification; the row functions below must agree with it bit for bit.
inline int32_t Quantize(float r, const QuantParams& p) noexcept {
  const float v = RoundHalfEven(r / p.scale);
  // Clamp in float first so the conversion to int is always defined (|v| may exceed 2^31).
  const float lo = static_cast<float>(p.qmin - p.zero_point);
  const float hi = static_cast<float>(p.qmax - p.zero_point);
  const float c = v > lo ? (v < hi ? v : hi) : lo;  // NaN compares false: goes to lo.
  return static_cast<int32_t>(c) + p.zero_point;
}

// r = (q - zero_point) * scale.
inline float Dequantize(int32_t q, const QuantParams& p) noexcept {
  return static_cast<float>(q - p.zero_point) * p.scale;
}

// Chooses scale and zero_point for [min, max] as described in the file comment. Fails if a bound
// is not finite, min > max, qmin >= qmax, or the widened range has zero width (all zeros):
// such a tensor carries no information and its scale would be meaningless.
absl::StatusOr<QuantParams> ChooseQuantParams(float min, float max, int32_t qmin, int32_t qmax,
                                              bool symmetric);

// Quantizes n values to u8 with `p` (p.qmin/qmax must lie within [0, 255]). Equal to
// Quantize() element by element, but branch-free so it vectorizes. Hot path: noexcept, no
// allocation.
void QuantizeRowU8(const float* x, size_t n, const QuantParams& p, uint8_t* out) noexcept;

// Quantizes n values to s8 with `p` (p.qmin/qmax must lie within [-128, 127]).
void QuantizeRowS8(const float* x, size_t n, const QuantParams& p, int8_t* out) noexcept;

// Quantizes n values to s16 with `p` (p.qmin/qmax must lie within [-32768, 32767]).
void QuantizeRowS16(const float* x, size_t n, const QuantParams& p, int16_t* out) noexcept;

// Quantizes n values to packed s4 (see the file comment) with `p` (p.qmin/qmax within [-8, 7]);
// out has (n + 1) / 2 bytes.
void QuantizeRowS4(const float* x, size_t n, const QuantParams& p, uint8_t* out) noexcept;

// Element i of a packed s4 row, sign-extended.
inline int32_t UnpackS4(const uint8_t* packed, size_t i) noexcept {
  const int32_t nibble = (i & 1) ? packed[i / 2] >> 4 : packed[i / 2] & 0xf;
  return (nibble ^ 8) - 8;
}

// out[i] = Dequantize(q[i], p) for i < n.
void DequantizeRowU8(const uint8_t* q, size_t n, const QuantParams& p, float* out) noexcept;
void DequantizeRowS8(const int8_t* q, size_t n, const QuantParams& p, float* out) noexcept;
void DequantizeRowS16(const int16_t* q, size_t n, const QuantParams& p, float* out) noexcept;
void DequantizeRowS4(const uint8_t* packed, size_t n, const QuantParams& p, float* out) noexcept;

// A rows x cols matrix quantized symmetrically per output row to s8 in [-127, 127]:
//   data[r*cols + c] = clamp(round_half_even(w[r,c] / scales[r]), -127, 127)
//   scales[r] = max_c |w[r,c]| / 127   (1.0 for an all-zero row, which then quantizes exactly)
//   row_sums[r] = sum_c data[r*cols + c]
// row_sums compensate an asymmetric activation zero point zx:
//   sum_c data[r,c] * (xq[c] - zx) = sum_c data[r,c] * xq[c] - zx * row_sums[r].
struct PerChannelS8 {
  int rows = 0;
  int cols = 0;
  std::vector<int8_t> data;
  std::vector<float> scales;
  std::vector<int32_t> row_sums;

  // Bytes held by data, scales and row_sums.
  size_t bytes() const noexcept {
    return data.size() * sizeof(int8_t) + scales.size() * sizeof(float) +
           row_sums.size() * sizeof(int32_t);
  }
};

// Quantizes a row-major rows x cols matrix (torch.nn.Linear layout: one row per output).
// Fails on a size mismatch or a non-finite weight.
absl::StatusOr<PerChannelS8> QuantizePerChannelSymmetricS8(std::span<const float> w, int rows,
                                                           int cols);

// As above with reduce_range: 7-bit weights over [-63, 63], scales[r] = max_c |w[r,c]| / 63.
absl::StatusOr<PerChannelS8> QuantizePerChannelSymmetricS8(std::span<const float> w, int rows,
                                                           int cols, bool reduce_range);

// A rows x cols matrix quantized symmetrically per output row to s4 in [-7, 7], each row packed
// (file comment) into bytes_per_row() = (cols + 1) / 2 bytes:
//   q[r,c] = clamp(round_half_even(w[r,c] / scales[r]), -7, 7) = UnpackS4(row(r), c)
//   scales[r] = max_c |w[r,c]| / 7   (1.0 for an all-zero row);  row_sums[r] = sum_c q[r,c].
struct PerChannelS4 {
  int rows = 0;
  int cols = 0;
  std::vector<uint8_t> data;
  std::vector<float> scales;
  std::vector<int32_t> row_sums;

  size_t bytes_per_row() const noexcept { return (static_cast<size_t>(cols) + 1) / 2; }
  const uint8_t* row(int r) const noexcept { return data.data() + r * bytes_per_row(); }
  size_t bytes() const noexcept {
    return data.size() + scales.size() * sizeof(float) + row_sums.size() * sizeof(int32_t);
  }
};

absl::StatusOr<PerChannelS4> QuantizePerChannelSymmetricS4(std::span<const float> w, int rows,
                                                           int cols);

// Dequantized value of element (r, c): data[r*cols + c] * scales[r].
inline float DequantizeAt(const PerChannelS8& q, int r, int c) noexcept {
  return static_cast<float>(q.data[static_cast<size_t>(r) * q.cols + c]) * q.scales[r];
}

}  // namespace qsig::quant
