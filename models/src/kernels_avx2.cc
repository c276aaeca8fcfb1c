// AVX2 + FMA kernels (Haswell and later, Zen 1 and later): the 256-bit kernels of
// kernels_ymm.inc with vpmaddubsw on split activations for u8 x s8 (exact for any s8 weights),
// or on the activations as they are for 7-bit weights (Int8Options::reduce_range).
// Compiled with per-file ISA flags (models/CMakeLists.txt); chosen at run time only when cpuid
// and the OS allow them.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "internal/kernels.h"
#include "qsig/quant/isa.h"

namespace qsig::models::internal {
namespace {

#define QSIG_MODELS_YMM_VNNI 0
#define QSIG_MODELS_YMM_NAME "avx2"
#include "kernels_ymm.inc"

}  // namespace

const Kernels* Avx2Kernels() noexcept {
  // quant's probe: cpuid AVX2 + FMA and XCR0's SSE + AVX state (xgetbv).
  static const bool ok = quant::IsaSupported(quant::Isa::kAvx2);
  return ok ? &kYmm : nullptr;
}

}  // namespace qsig::models::internal
