// The AVX-VNNI kernels built with the EVEX (AVX512-VL) encodings of the same instructions, so the
// VNNI flavour of kernels_ymm.inc is tested on AVX-512 hosts without AVX-VNNI (Zen 4): the
// arithmetic is identical, only the instruction encoding differs from the production variant.
#include "kernels_ymm_vnni_evex.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

namespace qsig::models::testing {
namespace {
using namespace ::qsig::models::internal;

#define QSIG_MODELS_YMM_VNNI 1
#define QSIG_MODELS_YMM_NAME "avxvnni-evex"
#define QSIG_MODELS_DPBUSD _mm256_dpbusd_epi32
#define QSIG_MODELS_DPWSSD _mm256_dpwssd_epi32
#include "kernels_ymm.inc"

}  // namespace

const internal::Kernels& AvxVnniViaEvexKernels() noexcept { return kYmm; }

}  // namespace qsig::models::testing
