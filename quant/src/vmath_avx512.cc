// Sigmoid / tanh on 16 floats at a time with SLEEF's AVX512F functions (vmath.h).
// Compiled with -mavx512f; internal linkage only (see gemm_avx512_vnni.cc).

// GCC 12: false -Wmaybe-uninitialized inside its AVX-512 intrinsic headers (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#include <sleef.h>

#include "qsig/quant/vmath.h"

namespace qsig::quant {
namespace {

template <typename Op>
inline void Apply(const float* x, float* y, size_t n, Op op) noexcept {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, op(_mm512_loadu_ps(x + i)));
  if (i < n) {
    // Masked tail: lanes past n are neither read nor written (masked loads do not fault).
    const __mmask16 mask = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_storeu_ps(y + i, mask, op(_mm512_maskz_loadu_ps(mask, x + i)));
  }
}

}  // namespace

void SigmoidF32Avx512(const float* x, float* y, size_t n) noexcept {
  const __m512 one = _mm512_set1_ps(1.0f);
  Apply(x, y, n, [&](__m512 v) {
    const __m512 e = Sleef_expf16_u10avx512f(_mm512_sub_ps(_mm512_setzero_ps(), v));  // exp(-x)
    return _mm512_div_ps(one, _mm512_add_ps(one, e));
  });
}

void TanhF32Avx512(const float* x, float* y, size_t n) noexcept {
  Apply(x, y, n, [](__m512 v) { return Sleef_tanhf16_u10avx512f(v); });
}

}  // namespace qsig::quant
