// Vectorized logistic sigmoid and tanh for the LSTM/GRU gates and MLP activations, with the same
// run-time dispatch as the GEMM kernels (isa.h): AVX-512 (when the active ISA is avx512_vnni),
// AVX2 + FMA (avx2, avx_vnni) or the scalar reference.
//
//   TanhF32:    y = tanh(x). SIMD: SLEEF's Sleef_tanhf{8,16}_u10 (<= 1.0 ulp by SLEEF's spec).
//   SigmoidF32: y = 1 / (1 + exp(-x)). SIMD: SLEEF's Sleef_expf{8,16}_u10, then an IEEE add and
//               divide. Exactly 0 where exp(-x) overflows (x < -88.7; the true value is below
//               3e-39), exactly 1 for x > 17.3, 0.5 at 0.
//   Ref:        the same formulas with glibc's tanhf / expf.
//
// Measured max error against double precision over 2^22 + 1 evenly spaced points of [-20, 20]
// plus special values (tests/quant/vmath_test.cc; ulps where the result is a normal float):
//
//               sigmoid                   tanh
//   Ref         2.48 ulp, 8.9e-8 abs      2.14 ulp, 1.03e-7 abs
//   AVX2        2.48 ulp, 8.9e-8 abs      1.00 ulp, 6.0e-8 abs
//   AVX-512     2.48 ulp, 8.9e-8 abs      1.00 ulp, 6.0e-8 abs
//
// Variants are not bit-identical to each other (the libraries round differently); each is
// within the bounds above of the exact value, and the tests hold them to those bounds.
// NaN gives NaN; +-inf gives the limits. y may alias x (in place).
// Hot path: noexcept, no allocation. Thread-safety: pure functions.
#pragma once

#include <cstddef>

namespace qsig::quant {

using VMathFn = void (*)(const float* x, float* y, size_t n) noexcept;

// Dispatched on ActiveIsa().
void SigmoidF32(const float* x, float* y, size_t n) noexcept;
void TanhF32(const float* x, float* y, size_t n) noexcept;

void SigmoidF32Ref(const float* x, float* y, size_t n) noexcept;
void TanhF32Ref(const float* x, float* y, size_t n) noexcept;
void SigmoidF32Avx2(const float* x, float* y, size_t n) noexcept;  // needs AVX2 + FMA
void TanhF32Avx2(const float* x, float* y, size_t n) noexcept;
void SigmoidF32Avx512(const float* x, float* y, size_t n) noexcept;  // needs AVX512F
void TanhF32Avx512(const float* x, float* y, size_t n) noexcept;

}  // namespace qsig::quant
