// Integer GEMV / small GEMM on prepacked s8 weights (packed.h), with run-time ISA dispatch
// (isa.h) and an optional fused dequantization epilogue.
//
// For a batch of m activation rows x (row i at x + i * ldx, w.cols entries each) and packed
// weights W (w.rows x w.cols), the kernels compute, for i < m and r < w.rows:
//
//   acc[i, r] = sum_{c < cols} int32(W[r, c]) * int32(x[i, c])                        (s32)
//   y[i * ldy + r] = acc[i, r]                                          (...S32 kernels)
//   y[i * ldy + r] = float(acc[i, r] - zx * row_sum[r]) * (scale[r] * sx) + bias[r]   (...F32)
//
// where zx = epilogue.x_zero_point, sx = epilogue.x_scale, scale[r] and row_sum[r] come from the
// packed weights and bias is optional (nullptr: 0, and the addition is skipped). This is the
// affine dequantization of quantize.h: sum_c (W[r,c] * scale[r]) * ((x[i,c] - zx) * sx). The
// float operations are performed in exactly this order, each rounded to float, without FMA, so
// every variant is bit-exact to the reference on the F32 outputs too.
//
// Types: U8S8 takes u8 activations (asymmetric, zx typically 128 or the calibrated zero point),
// S8S8 takes s8 activations (symmetric, zx = 0). The SIMD variants compute S8S8 as
// u8 (x + 128) x s8 minus 128 * row_sum[r], exact in s32.
//
// Overflow: none, because PackWeightsS8 refuses cols > kMaxPackedCols (32768): |acc| and
// |zx * row_sum| are each at most 255 * 128 * cols < 2^30.
//
// Variants: ...Ref (scalar, the specification), ...Avx2 (vpmaddubsw + vpmaddwd; exact for any s8
// weights: a fast path when |w| <= 63 (7-bit, reduce-range weights), where u8 x s8 pair sums
// cannot saturate s16, and otherwise activations split as x = (x & 127) + 128 * (x >> 7), each
// part safe), ...AvxVnni (vpdpbusd ymm) and ...Avx512Vnni (vpdpbusd zmm). Calling a variant the
// CPU lacks is undefined (SIGILL); use the dispatched functions without a suffix unless testing.
//
// Hot path: noexcept, no allocation, no locks. Outputs must not alias inputs.
// Thread-safety: pure functions of their arguments.
#pragma once

#include <cstddef>
#include <cstdint>

#include "qsig/quant/isa.h"
#include "qsig/quant/packed.h"

namespace qsig::quant {

// Fused dequantization: see the file comment.
struct DequantEpilogue {
  float x_scale = 1.0f;         // activation scale sx
  int32_t x_zero_point = 0;     // activation zero point zx
  const float* bias = nullptr;  // w.rows entries, or nullptr
};

using GemmU8S8S32Fn = void (*)(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                               int32_t* y, ptrdiff_t ldy) noexcept;
using GemmS8S8S32Fn = void (*)(int m, const int8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                               int32_t* y, ptrdiff_t ldy) noexcept;
using GemmU8S8F32Fn = void (*)(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                               const DequantEpilogue& e, float* y, ptrdiff_t ldy) noexcept;
using GemmS8S8F32Fn = void (*)(int m, const int8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                               const DequantEpilogue& e, float* y, ptrdiff_t ldy) noexcept;

// One row of the dispatch table: every kernel of one ISA.
struct GemmKernels {
  Isa isa;
  GemmU8S8S32Fn u8s8s32;
  GemmS8S8S32Fn s8s8s32;
  GemmU8S8F32Fn u8s8f32;
  GemmS8S8F32Fn s8s8f32;
};

// The kernels of `isa` (whether or not this CPU supports it), and the ones chosen now.
const GemmKernels& KernelsFor(Isa isa) noexcept;
const GemmKernels& ActiveKernels() noexcept;

#define QSIG_DECLARE_GEMM_VARIANT(Isa)                                                    \
  void GemmU8S8S32##Isa(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w, \
                        int32_t* y, ptrdiff_t ldy) noexcept;                              \
  void GemmS8S8S32##Isa(int m, const int8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,  \
                        int32_t* y, ptrdiff_t ldy) noexcept;                              \
  void GemmU8S8F32##Isa(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w, \
                        const DequantEpilogue& e, float* y, ptrdiff_t ldy) noexcept;      \
  void GemmS8S8F32##Isa(int m, const int8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,  \
                        const DequantEpilogue& e, float* y, ptrdiff_t ldy) noexcept;
QSIG_DECLARE_GEMM_VARIANT(Ref)
QSIG_DECLARE_GEMM_VARIANT(Avx2)
QSIG_DECLARE_GEMM_VARIANT(AvxVnni)
QSIG_DECLARE_GEMM_VARIANT(Avx512Vnni)
#undef QSIG_DECLARE_GEMM_VARIANT

// Dispatched entry points: ActiveKernels().
inline void GemmU8S8S32(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                        int32_t* y, ptrdiff_t ldy) noexcept {
  ActiveKernels().u8s8s32(m, x, ldx, w, y, ldy);
}
inline void GemmS8S8S32(int m, const int8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w, int32_t* y,
                        ptrdiff_t ldy) noexcept {
  ActiveKernels().s8s8s32(m, x, ldx, w, y, ldy);
}
inline void GemmU8S8F32(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                        const DequantEpilogue& e, float* y, ptrdiff_t ldy) noexcept {
  ActiveKernels().u8s8f32(m, x, ldx, w, e, y, ldy);
}
inline void GemmS8S8F32(int m, const int8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                        const DequantEpilogue& e, float* y, ptrdiff_t ldy) noexcept {
  ActiveKernels().s8s8f32(m, x, ldx, w, e, y, ldy);
}

// GEMV (m = 1) conveniences: y has w.rows entries.
inline void GemvU8S8S32(const PackedWeightsS8& w, const uint8_t* x, int32_t* y) noexcept {
  GemmU8S8S32(1, x, w.cols, w, y, w.rows);
}
inline void GemvS8S8S32(const PackedWeightsS8& w, const int8_t* x, int32_t* y) noexcept {
  GemmS8S8S32(1, x, w.cols, w, y, w.rows);
}
inline void GemvU8S8F32(const PackedWeightsS8& w, const uint8_t* x, const DequantEpilogue& e,
                        float* y) noexcept {
  GemmU8S8F32(1, x, w.cols, w, e, y, w.rows);
}
inline void GemvS8S8F32(const PackedWeightsS8& w, const int8_t* x, const DequantEpilogue& e,
                        float* y) noexcept {
  GemmS8S8F32(1, x, w.cols, w, e, y, w.rows);
}

}  // namespace qsig::quant
