// AVX2 + FMA kernels (Haswell and later, Zen 1 and later): the 256-bit kernels of
// internal/kernels_ymm.inc with vpmaddubsw on split activations for u8 x s8 (exact for any s8
// weights), or on the activations as they are for 7-bit weights (quantize.h's reduce_range).
// Compiled with per-file ISA flags (quant/CMakeLists.txt); reached only through KernelsFor(),
// which checks the CPU and OS first.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "internal/kernel_tables.h"
#include "qsig/quant/kernels.h"

namespace qsig::quant {
namespace {

#define QSIG_YMM_VNNI 0
#define QSIG_YMM_ISA Avx2
#define QSIG_YMM_ISA_ENUM Isa::kAvx2
#include "internal/kernels_ymm.inc"

}  // namespace

const Kernels& internal::Avx2Kernels() noexcept { return kYmm; }

}  // namespace qsig::quant
