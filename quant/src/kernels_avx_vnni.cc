// AVX-VNNI kernels (Alder Lake, Sapphire Rapids and later): the 256-bit kernels of
// internal/kernels_ymm.inc with the VEX vpdpbusd / vpdpwssd. Compiled with per-file ISA flags
// (quant/CMakeLists.txt); reached only through KernelsFor(), which checks the CPU and OS first.
// quant/testing/avx_vnni_evex_kernels.cc builds the same code with the EVEX encodings, so that
// AVX-512 hosts without AVX-VNNI test it.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "internal/kernel_tables.h"
#include "qsig/quant/kernels.h"

namespace qsig::quant {
namespace {

#define QSIG_YMM_VNNI 1
#define QSIG_YMM_ISA AvxVnni
#define QSIG_YMM_ISA_ENUM Isa::kAvxVnni
#define QSIG_YMM_DPBUSD _mm256_dpbusd_avx_epi32
#define QSIG_YMM_DPWSSD _mm256_dpwssd_avx_epi32
#include "internal/kernels_ymm.inc"

}  // namespace

const Kernels& internal::AvxVnniKernels() noexcept { return kYmm; }

}  // namespace qsig::quant
