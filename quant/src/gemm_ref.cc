// Scalar reference kernels on packed weights: the specification of gemm.h, written as the
// formulas read. Each variant in gemm_*.cc must match these bit for bit.
#include "qsig/quant/gemm.h"

namespace qsig::quant {
namespace {

// sum_c W[r, c] * x[c], walking row r's 4-byte slices of its panel's blocks (packed.h) rather
// than calling at() per element: the same sum, ~4x faster, so a scalar-capped run is usable.
template <typename X>
int32_t Dot(const PackedWeightsS8& w, int r, const X* x) noexcept {
  const int8_t* row = w.block(r / kPackRows, 0) + (r % kPackRows) * kPackCols;
  constexpr int kBlock = kPackRows * kPackCols;
  int32_t acc = 0;
  int c = 0;
  for (; c + kPackCols <= w.cols; c += kPackCols, row += kBlock) {
    for (int j = 0; j < kPackCols; ++j) acc += int32_t{row[j]} * int32_t{x[c + j]};
  }
  for (int j = 0; c + j < w.cols; ++j) acc += int32_t{row[j]} * int32_t{x[c + j]};
  return acc;
}

template <typename X>
void GemmS32(int m, const X* x, ptrdiff_t ldx, const PackedWeightsS8& w, int32_t* y,
             ptrdiff_t ldy) noexcept {
  for (int i = 0; i < m; ++i) {
    for (int r = 0; r < w.rows; ++r) y[i * ldy + r] = Dot(w, r, x + i * ldx);
  }
}

template <typename X>
void GemmF32(int m, const X* x, ptrdiff_t ldx, const PackedWeightsS8& w, const DequantEpilogue& e,
             float* y, ptrdiff_t ldy) noexcept {
  for (int i = 0; i < m; ++i) {
    for (int r = 0; r < w.rows; ++r) {
      const int32_t acc = Dot(w, r, x + i * ldx) - e.x_zero_point * w.row_sums[r];
      // Three roundings in this order, no FMA (ISO C++ mode: GCC does not contract).
      const float scale = w.scales[r] * e.x_scale;
      float v = static_cast<float>(acc) * scale;
      if (e.bias != nullptr) v = v + e.bias[r];
      y[i * ldy + r] = v;
    }
  }
}

}  // namespace

void GemmU8S8S32Ref(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w, int32_t* y,
                    ptrdiff_t ldy) noexcept {
  GemmS32(m, x, ldx, w, y, ldy);
}
void GemmS8S8S32Ref(int m, const int8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w, int32_t* y,
                    ptrdiff_t ldy) noexcept {
  GemmS32(m, x, ldx, w, y, ldy);
}
void GemmU8S8F32Ref(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                    const DequantEpilogue& e, float* y, ptrdiff_t ldy) noexcept {
  GemmF32(m, x, ldx, w, e, y, ldy);
}
void GemmS8S8F32Ref(int m, const int8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                    const DequantEpilogue& e, float* y, ptrdiff_t ldy) noexcept {
  GemmF32(m, x, ldx, w, e, y, ldy);
}

}  // namespace qsig::quant
