// Scalar reference GEMV kernels: the specification the ISA variants are tested against.
#include "qsig/quant/gemv.h"

namespace qsig::quant {

void GemvU8S8S32Ref(int rows, int cols, const int8_t* w, ptrdiff_t ldw, const uint8_t* x,
                    int32_t* y) noexcept {
  // Simple widening dot products: g++ -O3 turns the inner loop into pmovsx/pmaddwd (SSE2) or
  // vpmaddwd (AVX2) sequences without intrinsics, and the scalar tail handles any cols.
  for (int r = 0; r < rows; ++r) {
    const int8_t* wr = w + r * ldw;
    int32_t acc = 0;
    for (int c = 0; c < cols; ++c) {
      acc += static_cast<int32_t>(wr[c]) * static_cast<int32_t>(x[c]);
    }
    y[r] = acc;
  }
}

}  // namespace qsig::quant
