// GEMM kernels for AVX2 (vpmaddubsw + vpmaddwd); the code is in internal/gemm_ymm.inc.
//
// Compiled with its own ISA flags (quant/CMakeLists.txt) and called only after isa.cc has checked
// the CPU and OS. Everything here has internal linkage (see gemm_avx512_vnni.cc for why).
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "qsig/quant/gemm.h"

namespace qsig::quant {
namespace {

#define QSIG_YMM_VNNI 0
#include "internal/gemm_ymm.inc"
#undef QSIG_YMM_VNNI

}  // namespace

void GemmU8S8S32Avx2(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w, int32_t* y,
                     ptrdiff_t ldy) noexcept {
  Gemm<false>(m, x, ldx, w, OutS32{y, ldy});
}
void GemmS8S8S32Avx2(int m, const int8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w, int32_t* y,
                     ptrdiff_t ldy) noexcept {
  Gemm<true>(m, reinterpret_cast<const uint8_t*>(x), ldx, w, OutS32{y, ldy});
}
void GemmU8S8F32Avx2(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                     const DequantEpilogue& e, float* y, ptrdiff_t ldy) noexcept {
  Gemm<false>(m, x, ldx, w, OutF32{y, ldy, &e});
}
void GemmS8S8F32Avx2(int m, const int8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
                     const DequantEpilogue& e, float* y, ptrdiff_t ldy) noexcept {
  Gemm<true>(m, reinterpret_cast<const uint8_t*>(x), ldx, w, OutF32{y, ldy, &e});
}

}  // namespace qsig::quant
