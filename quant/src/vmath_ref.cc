// Scalar sigmoid / tanh and the dispatch of the vectorized ones (vmath.h).
#include <cmath>

#include "qsig/quant/isa.h"
#include "qsig/quant/vmath.h"

namespace qsig::quant {

void SigmoidF32Ref(const float* x, float* y, size_t n) noexcept {
  for (size_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
}

void TanhF32Ref(const float* x, float* y, size_t n) noexcept {
  for (size_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

void SigmoidF32(const float* x, float* y, size_t n) noexcept {
  switch (ActiveIsa()) {
    case Isa::kAvx512Vnni:
      return SigmoidF32Avx512(x, y, n);
    case Isa::kAvxVnni:
    case Isa::kAvx2:
      return SigmoidF32Avx2(x, y, n);
    case Isa::kScalar:
      break;
  }
  SigmoidF32Ref(x, y, n);
}

void TanhF32(const float* x, float* y, size_t n) noexcept {
  switch (ActiveIsa()) {
    case Isa::kAvx512Vnni:
      return TanhF32Avx512(x, y, n);
    case Isa::kAvxVnni:
    case Isa::kAvx2:
      return TanhF32Avx2(x, y, n);
    case Isa::kScalar:
      break;
  }
  TanhF32Ref(x, y, n);
}

}  // namespace qsig::quant
