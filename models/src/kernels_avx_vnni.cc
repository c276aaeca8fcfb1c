// AVX-VNNI kernels (Alder Lake, Sapphire Rapids and later): the 256-bit kernels of
// kernels_ymm.inc with the VEX vpdpbusd / vpdpwssd. Compiled with per-file ISA flags
// (models/CMakeLists.txt); chosen at run time only when cpuid and the OS allow them.
// tests/models/kernels_ymm_vnni_evex.cc runs the same code with the EVEX encodings on AVX-512
// hosts that lack AVX-VNNI.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "internal/kernels.h"
#include "qsig/quant/isa.h"

namespace qsig::models::internal {
namespace {

#define QSIG_MODELS_YMM_VNNI 1
#define QSIG_MODELS_YMM_NAME "avxvnni"
#define QSIG_MODELS_DPBUSD _mm256_dpbusd_avx_epi32
#define QSIG_MODELS_DPWSSD _mm256_dpwssd_avx_epi32
#include "kernels_ymm.inc"

}  // namespace

const Kernels* AvxVnniKernels() noexcept {
  // quant's probe: cpuid AVX2 + FMA + AVX-VNNI (leaf 7 subleaf 1) and XCR0's AVX state.
  static const bool ok = quant::IsaSupported(quant::Isa::kAvxVnni);
  return ok ? &kYmm : nullptr;
}

}  // namespace qsig::models::internal
