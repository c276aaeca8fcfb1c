// Sigmoid / tanh on 8 floats at a time with SLEEF's AVX2 (+FMA) functions (vmath.h).
// Compiled with -mavx2 -mfma; internal linkage only (see gemm_avx512_vnni.cc).
#include <immintrin.h>
#include <sleef.h>

#include "qsig/quant/vmath.h"

namespace qsig::quant {
namespace {

template <typename Op>
inline void Apply(const float* x, float* y, size_t n, Op op) noexcept {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, op(_mm256_loadu_ps(x + i)));
  if (i < n) {
    // Tail through a zero-padded buffer: never reads or writes past n.
    alignas(32) float buf[8] = {};
    for (size_t j = i; j < n; ++j) buf[j - i] = x[j];
    _mm256_store_ps(buf, op(_mm256_load_ps(buf)));
    for (size_t j = i; j < n; ++j) y[j] = buf[j - i];
  }
}

}  // namespace

void SigmoidF32Avx2(const float* x, float* y, size_t n) noexcept {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  Apply(x, y, n, [&](__m256 v) {
    const __m256 e = Sleef_expf8_u10avx2(_mm256_xor_ps(v, sign));  // exp(-x)
    return _mm256_div_ps(one, _mm256_add_ps(one, e));
  });
}

void TanhF32Avx2(const float* x, float* y, size_t n) noexcept {
  Apply(x, y, n, [](__m256 v) { return Sleef_tanhf8_u10avx2(v); });
}

}  // namespace qsig::quant
