// The AVX-VNNI kernels with EVEX encodings (avx_vnni_evex_kernels.h). Compiled with its own ISA
// flags (quant/CMakeLists.txt).
#include "avx_vnni_evex_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

namespace qsig::quant::testing {
namespace {

#define QSIG_YMM_VNNI 1
#define QSIG_YMM_ISA AvxVnniViaEvex
#define QSIG_YMM_ISA_ENUM Isa::kAvxVnni
#define QSIG_YMM_DPBUSD _mm256_dpbusd_epi32
#define QSIG_YMM_DPWSSD _mm256_dpwssd_epi32
#include "internal/kernels_ymm.inc"

}  // namespace

const Kernels* AvxVnniViaEvexKernels() noexcept {
  return IsaSupported(Isa::kAvx512Vnni) ? &kYmm : nullptr;
}

}  // namespace qsig::quant::testing
