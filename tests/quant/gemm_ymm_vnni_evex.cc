// The AVX-VNNI kernel code (quant/src/internal/gemm_ymm.inc in its VNNI flavour) built with the
// EVEX-encoded vpdpbusd ymm of AVX512-VNNI + AVX512-VL, which computes exactly what the VEX
// (AVX-VNNI) form does. It lets hosts with AVX-512 but no AVX-VNNI (Zen 4, Ice Lake) test that
// code; the production AvxVnni variant differs only in the instruction's encoding.
#include "gemm_ymm_vnni_evex.h"

#include <immintrin.h>

#include <cstring>
#include <type_traits>

namespace qsig::quant::testing {
namespace {

#define QSIG_YMM_VNNI 1
#define QSIG_YMM_DPBUSD _mm256_dpbusd_epi32
#include "internal/gemm_ymm.inc"
#undef QSIG_YMM_DPBUSD
#undef QSIG_YMM_VNNI

void U8S8S32(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w, int32_t* y,
             ptrdiff_t ldy) noexcept {
  Gemm<false>(m, x, ldx, w, OutS32{y, ldy});
}
void S8S8S32(int m, const int8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w, int32_t* y,
             ptrdiff_t ldy) noexcept {
  Gemm<true>(m, reinterpret_cast<const uint8_t*>(x), ldx, w, OutS32{y, ldy});
}
void U8S8F32(int m, const uint8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
             const DequantEpilogue& e, float* y, ptrdiff_t ldy) noexcept {
  Gemm<false>(m, x, ldx, w, OutF32{y, ldy, &e});
}
void S8S8F32(int m, const int8_t* x, ptrdiff_t ldx, const PackedWeightsS8& w,
             const DequantEpilogue& e, float* y, ptrdiff_t ldy) noexcept {
  Gemm<true>(m, reinterpret_cast<const uint8_t*>(x), ldx, w, OutF32{y, ldy, &e});
}

}  // namespace

const GemmKernels& AvxVnniViaEvexKernels() {
  static constexpr GemmKernels kKernels{Isa::kAvxVnni, U8S8S32, S8S8S32, U8S8F32, S8S8F32};
  return kKernels;
}

}  // namespace qsig::quant::testing
